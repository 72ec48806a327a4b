// Conditional writes, deletes and copies as on S3, with @aws-sdk/client-s3 and the AWS CLI: If-None-Match / If-Match on PutObject, CompleteMultipartUpload and CopyObject, If-Match on DeleteObject and ETags in DeleteObjects, the x-amz-copy-source-if-* conditions, and a write that loses a race.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  UploadPartCommand,
  UploadPartCopyCommand,
  type CopyObjectCommandInput,
  type S3Client,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { refusal, startTestObjectStore, type TestObjectStore } from './server-helpers.js';

const run = promisify(execFile);
const BUCKET = 'conditional';
let store: TestObjectStore;
let sdk: S3Client;

const PRECONDITION_FAILED = { name: 'PreconditionFailed', status: 412 };

async function put(key: string, body: string, extra: { IfMatch?: string; IfNoneMatch?: string } = {}): Promise<string> {
  return (await sdk.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body, ...extra }))).ETag as string;
}

async function read(key: string): Promise<string> {
  return (await (await sdk.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }))).Body?.transformToString()) as string;
}

beforeAll(async () => {
  store = await startTestObjectStore();
  sdk = store.sdk();
  await sdk.send(new CreateBucketCommand({ Bucket: BUCKET }));
}, 60_000);

afterAll(async () => {
  await store?.stop();
});

describe('PutObject', () => {
  it('If-None-Match: * creates once, then refuses with 412 and keeps the first object', async () => {
    await put('create-once', 'first', { IfNoneMatch: '*' });
    expect(await refusal(sdk.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'create-once', Body: 'second', IfNoneMatch: '*' })))).toEqual(PRECONDITION_FAILED);
    expect(await read('create-once')).toBe('first');
  });

  it('If-Match replaces only the version it names; on no object it is 404 NoSuchKey', async () => {
    const v1 = await put('swap', 'v1');
    const v2 = await put('swap', 'v2', { IfMatch: v1 });
    expect(await read('swap')).toBe('v2');
    expect(await refusal(sdk.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'swap', Body: 'stale', IfMatch: v1 })))).toEqual(PRECONDITION_FAILED);
    expect(await read('swap')).toBe('v2');
    await put('swap', 'v3', { IfMatch: v2 });
    expect(await refusal(sdk.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'never-written', Body: 'x', IfMatch: v1 })))).toEqual({ name: 'NoSuchKey', status: 404 });
  });

  it('If-None-Match with an ETag, If-Match: *, or both headers at once are 501 NotImplemented naming the header, as on S3; nothing is written', async () => {
    const etag = await put('etag-none-match', 'x');
    const cases: Array<[{ IfMatch?: string; IfNoneMatch?: string }, string]> = [
      [{ IfNoneMatch: etag }, 'If-None-Match'],
      [{ IfMatch: '*' }, 'If-Match'],
      [{ IfMatch: etag, IfNoneMatch: '*' }, 'If-Match,If-None-Match'],
    ];
    for (const [condition, named] of cases) {
      const error = await sdk.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'etag-none-match', Body: 'y', ...condition })).then(
        () => undefined,
        (e: unknown) => e as { name: string; $metadata: { httpStatusCode?: number }; Header?: string },
      );
      expect([error?.name, error?.$metadata.httpStatusCode, error?.Header]).toEqual(['NotImplemented', 501, named]);
    }
    expect(await read('etag-none-match')).toBe('x');
  });

  /** Starts a conditional PUT of `key`, runs `competitor` once the PUT has passed its condition and is streaming its body, then lets the PUT finish. */
  async function race(key: string, condition: { IfMatch?: string; IfNoneMatch?: string }, competitor: () => Promise<unknown>): Promise<{ name: string; status: number | undefined }> {
    const tmp = join(store.dir, 'objects', 'tmp');
    const body = new PassThrough();
    const outcome = sdk.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body, ContentLength: 8, ...condition }));
    // Awaited below; until then a rejection must not count as unhandled.
    outcome.catch(() => undefined);
    body.write('slow');
    // The PUT has passed its condition once the store streams its body into a temporary file.
    const deadline = Date.now() + 30_000;
    while ((await readdir(tmp)).length === 0) {
      if (Date.now() > deadline) throw new Error('the conditional PUT never started writing its body');
      await sleep(10);
    }
    await competitor();
    body.end('-put');
    return refusal(outcome);
  }

  it('a conditional PUT that a concurrent write beats to the commit gets 409 ConditionalRequestConflict and changes nothing', async () => {
    expect(await race('raced', { IfNoneMatch: '*' }, () => put('raced', 'fast'))).toEqual({ name: 'ConditionalRequestConflict', status: 409 });
    expect(await read('raced')).toBe('fast');
    const current = await put('raced', 'current');
    expect(await race('raced', { IfMatch: current }, () => put('raced', 'newer'))).toEqual({ name: 'ConditionalRequestConflict', status: 409 });
    expect(await read('raced')).toBe('newer');
  });

  it('an If-Match PUT whose object is deleted meanwhile gets 404 NoSuchKey and creates nothing', async () => {
    const current = await put('vanishing', 'current');
    expect(await race('vanishing', { IfMatch: current }, () => sdk.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: 'vanishing' })))).toEqual({ name: 'NoSuchKey', status: 404 });
    expect(await refusal(sdk.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'vanishing' })))).toMatchObject({ status: 404 });
  });
});

describe('CompleteMultipartUpload', () => {
  async function upload(key: string): Promise<{ UploadId: string; Parts: Array<{ PartNumber: number; ETag: string }> }> {
    const created = await sdk.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key }));
    const part = await sdk.send(new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId: created.UploadId, PartNumber: 1, Body: randomBytes(100) }));
    return { UploadId: created.UploadId as string, Parts: [{ PartNumber: 1, ETag: part.ETag as string }] };
  }
  const complete = (key: string, u: Awaited<ReturnType<typeof upload>>, extra: { IfMatch?: string; IfNoneMatch?: string }) =>
    sdk.send(new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: key, UploadId: u.UploadId, MultipartUpload: { Parts: u.Parts }, ...extra }));

  it('honours If-None-Match: * and If-Match, refusing with 412 (501 for If-Match: * or both) and leaving the object as it was', async () => {
    const first = await upload('mp');
    const v1 = (await complete('mp', first, { IfNoneMatch: '*' })).ETag as string;
    const second = await upload('mp');
    expect(await refusal(complete('mp', second, { IfNoneMatch: '*' }))).toEqual(PRECONDITION_FAILED);
    expect(await refusal(complete('mp', second, { IfMatch: '"0123456789abcdef0123456789abcdef-1"' }))).toEqual(PRECONDITION_FAILED);
    // As on PutObject: If-Match takes ETags, not *, and the two headers do not combine.
    expect(await refusal(complete('mp', second, { IfMatch: '*' }))).toEqual({ name: 'NotImplemented', status: 501 });
    expect(await refusal(complete('mp', second, { IfMatch: v1, IfNoneMatch: '*' }))).toEqual({ name: 'NotImplemented', status: 501 });
    expect((await sdk.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'mp' }))).ETag).toBe(v1);
    // The refused upload is still there, and completes under a condition that holds.
    const v2 = (await complete('mp', second, { IfMatch: v1 })).ETag as string;
    expect(v2).toMatch(/-1"$/);
  });
});

describe('DeleteObject', () => {
  it('If-Match deletes only the named version; on no object it is 404 NoSuchKey', async () => {
    const v1 = await put('doomed', 'v1');
    const v2 = await put('doomed', 'v2');
    expect(await refusal(sdk.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: 'doomed', IfMatch: v1 })))).toEqual(PRECONDITION_FAILED);
    expect(await read('doomed')).toBe('v2');
    await sdk.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: 'doomed', IfMatch: v2 }));
    expect(await refusal(sdk.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'doomed' })))).toMatchObject({ status: 404 });
    expect(await refusal(sdk.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: 'doomed', IfMatch: '*' })))).toEqual({ name: 'NoSuchKey', status: 404 });
    // Unconditionally, deleting nothing still succeeds.
    await sdk.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: 'doomed' }));
  });
});

describe('DeleteObjects', () => {
  it('an entry with an ETag is deleted only if it matches (412 PreconditionFailed for that entry, 404 NoSuchKey on no object); entries without one as before', async () => {
    const current = await put('batch-current', 'v2');
    const stale = await put('batch-stale', 'v1');
    await put('batch-stale', 'v1 replaced');
    await put('batch-plain', 'x');
    const result = await sdk.send(
      new DeleteObjectsCommand({
        Bucket: BUCKET,
        Delete: {
          Objects: [
            { Key: 'batch-current', ETag: current },
            { Key: 'batch-stale', ETag: stale },
            { Key: 'batch-never', ETag: stale },
            { Key: 'batch-plain' },
          ],
        },
      }),
    );
    expect(result.Deleted?.map((d) => d.Key).sort()).toEqual(['batch-current', 'batch-plain']);
    expect(result.Errors?.map((e) => [e.Key, e.Code])).toEqual([
      ['batch-stale', 'PreconditionFailed'],
      ['batch-never', 'NoSuchKey'],
    ]);
    expect(await read('batch-stale')).toBe('v1 replaced');
  });
});

describe('copy-source conditions', () => {
  let etag: string;
  let modified: Date;
  const hourBefore = (): Date => new Date(modified.getTime() - 3600_000);
  const hourAfter = (): Date => new Date(modified.getTime() + 3600_000);

  beforeAll(async () => {
    etag = await put('source', 'source bytes');
    modified = (await sdk.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'source' }))).LastModified as Date;
  });

  const copy = (conditions: Partial<CopyObjectCommandInput>) => sdk.send(new CopyObjectCommand({ Bucket: BUCKET, Key: 'copy', CopySource: `${BUCKET}/source`, ...conditions }));

  it('CopyObject: each failing condition is 412, and nothing is written', async () => {
    const failing: Array<Partial<CopyObjectCommandInput>> = [
      { CopySourceIfMatch: '"0123456789abcdef0123456789abcdef"' },
      { CopySourceIfNoneMatch: etag },
      { CopySourceIfModifiedSince: hourAfter() },
      { CopySourceIfUnmodifiedSince: hourBefore() },
      // If-None-Match false and If-Modified-Since true: 412, as S3 documents.
      { CopySourceIfNoneMatch: etag, CopySourceIfModifiedSince: hourBefore() },
    ];
    for (const conditions of failing) expect({ conditions, error: await refusal(copy(conditions)) }).toEqual({ conditions, error: PRECONDITION_FAILED });
    expect(await refusal(sdk.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'copy' })))).toMatchObject({ status: 404 });
  });

  it('CopyObject: conditions that hold copy, including If-Match true with If-Unmodified-Since false, as S3 documents', async () => {
    const holding: Array<Partial<CopyObjectCommandInput>> = [
      { CopySourceIfMatch: etag },
      { CopySourceIfNoneMatch: '"0123456789abcdef0123456789abcdef"' },
      { CopySourceIfModifiedSince: hourBefore() },
      { CopySourceIfUnmodifiedSince: hourAfter() },
      { CopySourceIfMatch: etag, CopySourceIfUnmodifiedSince: hourBefore() },
    ];
    for (const conditions of holding) expect((await copy(conditions)).CopyObjectResult?.ETag).toBe(etag);
    expect(await read('copy')).toBe('source bytes');
  });

  it('CopyObject with the AWS CLI: --copy-source-if-match', async () => {
    const cli = async (match: string): Promise<{ code: number; stderr: string }> => {
      const args = ['s3api', 'copy-object', '--bucket', BUCKET, '--key', 'cli-copy', '--copy-source', `${BUCKET}/source`, '--copy-source-if-match', match];
      return run('/usr/bin/aws', [...args, '--endpoint-url', store.server.url], { env: store.awsEnv(), timeout: 60_000 }).then(
        () => ({ code: 0, stderr: '' }),
        (e: { code?: number; stderr?: string }) => ({ code: e.code ?? 1, stderr: e.stderr ?? '' }),
      );
    };
    expect((await cli('"0123456789abcdef0123456789abcdef"')).stderr).toMatch(/\(PreconditionFailed\)/);
    expect(await cli(etag)).toEqual({ code: 0, stderr: '' });
  }, 60_000);

  it('CopyObject: If-None-Match: * on the destination refuses to overwrite it', async () => {
    await put('copy-target', 'keep me');
    expect(await refusal(sdk.send(new CopyObjectCommand({ Bucket: BUCKET, Key: 'copy-target', CopySource: `${BUCKET}/source`, IfNoneMatch: '*' })))).toEqual(PRECONDITION_FAILED);
    expect(await read('copy-target')).toBe('keep me');
  });

  it('UploadPartCopy: failing conditions are 412, holding ones copy the part', async () => {
    const created = await sdk.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: 'part-copy' }));
    const partCopy = (conditions: Partial<CopyObjectCommandInput>) =>
      sdk.send(new UploadPartCopyCommand({ Bucket: BUCKET, Key: 'part-copy', UploadId: created.UploadId, PartNumber: 1, CopySource: `${BUCKET}/source`, ...conditions }));
    expect(await refusal(partCopy({ CopySourceIfMatch: '"0123456789abcdef0123456789abcdef"' }))).toEqual(PRECONDITION_FAILED);
    expect(await refusal(partCopy({ CopySourceIfUnmodifiedSince: hourBefore() }))).toEqual(PRECONDITION_FAILED);
    expect(await refusal(partCopy({ CopySourceIfModifiedSince: hourAfter() }))).toEqual(PRECONDITION_FAILED);
    expect((await partCopy({ CopySourceIfMatch: etag, CopySourceIfModifiedSince: hourBefore() })).CopyPartResult?.ETag).toBe(etag);
  });
});
