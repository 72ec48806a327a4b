// A store written before key references v2 (test/fixtures/store-v1: its KMS and object directories) stays readable after the upgrade: objects under each kind of key, a completed multipart object, and an upload still in progress.
import { fileURLToPath } from 'node:url';
import {
  CompleteMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListPartsCommand,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestObjectStore, type TestObjectStore } from './server-helpers.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/store-v1', import.meta.url));
const BUCKET = 'old-bucket';
let store: TestObjectStore;
let sdk: S3Client;

const read = async (key: string): Promise<string> => (await (await sdk.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }))).Body?.transformToString()) as string;

beforeAll(async () => {
  store = await startTestObjectStore({ from: FIXTURE });
  sdk = store.sdk();
}, 60_000);

afterAll(async () => {
  await store?.stop();
});

describe('a store written with key references v1', () => {
  it('serves its objects: SSE-S3, SSE-KMS with and without a bucket key, multipart', async () => {
    expect(await read('sse-s3.txt')).toBe('written by v1, SSE-S3');
    expect(await read('kms-bucket-key.txt')).toBe('written by v1, SSE-KMS with a bucket key');
    expect(await read('kms.txt')).toBe('written by v1, SSE-KMS');
    expect(await read('multipart.txt')).toBe('written by v1, one part');
    const head = await sdk.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'sse-s3.txt' }));
    expect([head.ContentType, head.Metadata, head.CacheControl]).toEqual(['text/plain', { era: 'v1' }, undefined]);
  });

  it('completes an upload begun before the upgrade, from its v1 part', async () => {
    const uploads = await sdk.send(new ListMultipartUploadsCommand({ Bucket: BUCKET }));
    const uploadId = uploads.Uploads?.[0]?.UploadId as string;
    const parts = await sdk.send(new ListPartsCommand({ Bucket: BUCKET, Key: 'in-flight.txt', UploadId: uploadId }));
    expect(parts.Parts?.[0]?.ChecksumCRC32).toBeUndefined();
    await sdk.send(
      new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: 'in-flight.txt', UploadId: uploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: parts.Parts?.[0]?.ETag }] } }),
    );
    expect(await read('in-flight.txt')).toBe('part 1 by v1;');
  });

  it('writes new objects next to the old ones, and reads both after a restart', async () => {
    await sdk.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'new.txt', Body: 'written by v2' }));
    await store.restart();
    sdk = store.sdk();
    expect(await read('new.txt')).toBe('written by v2');
    expect(await read('kms-bucket-key.txt')).toBe('written by v1, SSE-KMS with a bucket key');
  });
});
