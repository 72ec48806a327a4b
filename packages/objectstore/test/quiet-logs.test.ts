// Expected refusals stay quiet: an unimplemented operation answers 501 NotImplemented and logs one info line naming it, with no stack trace.
import {
  CreateBucketCommand,
  PutBucketPolicyCommand,
  PutBucketVersioningCommand,
  PutObjectCommand,
  PutObjectTaggingCommand,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { captureLogger, type CapturedLogger } from '@airlock/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestObjectStore, type TestObjectStore } from './server-helpers.js';

const BUCKET = 'quiet-logs';
let store: TestObjectStore;
let captured: CapturedLogger;

beforeAll(async () => {
  captured = captureLogger('objectstore');
  store = await startTestObjectStore({ logger: captured.log });
  await store.sdk().send(new CreateBucketCommand({ Bucket: BUCKET }));
  await store.sdk().send(new PutObjectCommand({ Bucket: BUCKET, Key: 'present', Body: 'x' }));
}, 60_000);

afterAll(async () => {
  await store?.stop();
});

describe('unimplemented operations', () => {
  const cases: Array<[operation: string, send: () => Promise<unknown>]> = [
    ['PutBucketPolicy', () => store.sdk().send(new PutBucketPolicyCommand({ Bucket: BUCKET, Policy: JSON.stringify({ Version: '2012-10-17', Statement: [] }) }))],
    ['PutBucketVersioning', () => store.sdk().send(new PutBucketVersioningCommand({ Bucket: BUCKET, VersioningConfiguration: { Status: 'Enabled' } }))],
    ['PutObject', () => store.sdk().send(new PutObjectCommand({ Bucket: BUCKET, Key: 'tagged', Body: 'x', Tagging: 'a=b' }))],
    ['PutObjectTagging', () => store.sdk().send(new PutObjectTaggingCommand({ Bucket: BUCKET, Key: 'present', Tagging: { TagSet: [{ Key: 'a', Value: 'b' }] } }))],
  ];

  it.each(cases)('%s: 501 NotImplemented, one info line naming it, no stack', async (operation, send) => {
    const error = (await send().then(
      () => undefined,
      (e: unknown) => e,
    )) as S3ServiceException | undefined;
    expect(error).toBeInstanceOf(S3ServiceException);
    expect({ name: error?.name, status: error?.$metadata.httpStatusCode }).toEqual({ name: 'NotImplemented', status: 501 });
    const requestId = error?.$metadata.requestId;
    expect(requestId).toMatch(/^[0-9A-F]{16}$/);
    // Everything at info or above that this request logged (the per-request debug line aside).
    const lines = captured.lines.filter((line) => line.requestId === requestId && (line.level as number) >= 30);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 30, operation, code: 'NotImplemented' });
    expect(lines[0]).not.toHaveProperty('err');
    expect(JSON.stringify(lines[0])).not.toMatch(/stack|\n\s+at /);
  });
});
