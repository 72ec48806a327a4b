// Smaller S3 behaviours of writes, with the SDK and the AWS CLI: a repeated CompleteMultipartUpload, a part uploaded twice at once, and a PutObject whose bucket is deleted while its body streams in.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import {
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteBucketCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  UploadPartCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { refusal, startTestObjectStore, type TestObjectStore } from './server-helpers.js';

const run = promisify(execFile);
const BUCKET = 'multipart-semantics';
let store: TestObjectStore;
let sdk: S3Client;

/** Waits until the store is streaming a body into its temporary directory (the request passed every check). */
async function bodyStreaming(count = 1): Promise<void> {
  const tmp = join(store.dir, 'objects', 'tmp');
  const deadline = Date.now() + 30_000;
  while ((await readdir(tmp)).length < count) {
    if (Date.now() > deadline) throw new Error('the upload never started writing its body');
    await sleep(10);
  }
}

beforeAll(async () => {
  store = await startTestObjectStore();
  sdk = store.sdk();
  await sdk.send(new CreateBucketCommand({ Bucket: BUCKET }));
}, 60_000);

afterAll(async () => {
  await store?.stop();
});

describe('a repeated CompleteMultipartUpload', () => {
  async function upload(key: string): Promise<{ UploadId: string; Parts: Array<{ PartNumber: number; ETag: string }> }> {
    const created = await sdk.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key }));
    const part1 = await sdk.send(new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId: created.UploadId, PartNumber: 1, Body: randomBytes(5 * 1024 * 1024) }));
    const part2 = await sdk.send(new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId: created.UploadId, PartNumber: 2, Body: 'tail' }));
    return { UploadId: created.UploadId as string, Parts: [{ PartNumber: 1, ETag: part1.ETag as string }, { PartNumber: 2, ETag: part2.ETag as string }] };
  }
  const complete = (key: string, uploadId: string, parts: Array<{ PartNumber: number; ETag: string }>) =>
    sdk.send(new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: key, UploadId: uploadId, MultipartUpload: { Parts: parts } }));

  it('answers 200 with the same ETag while the parts list matches (SDK and AWS CLI)', async () => {
    const u = await upload('again');
    const first = await complete('again', u.UploadId, u.Parts);
    const second = await complete('again', u.UploadId, u.Parts);
    expect(second.$metadata.httpStatusCode).toBe(200);
    expect(second.ETag).toBe(first.ETag);
    expect(second.Key).toBe('again');
    const { stdout } = await run(
      '/usr/bin/aws',
      ['s3api', 'complete-multipart-upload', '--bucket', BUCKET, '--key', 'again', '--upload-id', u.UploadId, '--multipart-upload', JSON.stringify({ Parts: u.Parts }), '--endpoint-url', store.server.url],
      { env: store.awsEnv(), timeout: 60_000 },
    );
    expect((JSON.parse(stdout) as { ETag: string }).ETag).toBe(first.ETag);
    expect((await sdk.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'again' }))).ETag).toBe(first.ETag);
  }, 60_000);

  it('is 404 NoSuchUpload with another parts list, or once the object was replaced', async () => {
    const u = await upload('changed');
    await complete('changed', u.UploadId, u.Parts);
    expect(await refusal(complete('changed', u.UploadId, u.Parts.slice(0, 1)))).toEqual({ name: 'NoSuchUpload', status: 404 });
    expect(await refusal(complete('changed', u.UploadId, [u.Parts[0] as { PartNumber: number; ETag: string }, { PartNumber: 2, ETag: '"0123456789abcdef0123456789abcdef"' }]))).toEqual({
      name: 'NoSuchUpload',
      status: 404,
    });
    await sdk.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'changed', Body: 'replaced' }));
    expect(await refusal(complete('changed', u.UploadId, u.Parts))).toEqual({ name: 'NoSuchUpload', status: 404 });
  });
});

describe('one part number uploaded twice at once', () => {
  /** Uploads part 1 twice concurrently, with bodies held open; `order` says which finishes first. Returns both ETags and the upload. */
  async function race(key: string, finishFirst: 'a' | 'b') {
    const created = await sdk.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key }));
    const uploadId = created.UploadId as string;
    const bodies = { a: new PassThrough(), b: new PassThrough() };
    const contents = { a: Buffer.alloc(1000, 'a'), b: Buffer.alloc(1000, 'b') };
    const send = (which: 'a' | 'b') => sdk.send(new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId: uploadId, PartNumber: 1, Body: bodies[which], ContentLength: 1000 }));
    const requests = { a: send('a'), b: send('b') };
    bodies.a.write(contents.a.subarray(0, 10));
    bodies.b.write(contents.b.subarray(0, 10));
    await bodyStreaming(2);
    const finishLast = finishFirst === 'a' ? 'b' : 'a';
    bodies[finishFirst].end(contents[finishFirst].subarray(10));
    const early = await requests[finishFirst];
    bodies[finishLast].end(contents[finishLast].subarray(10));
    const late = await requests[finishLast];
    return { uploadId, early: early.ETag as string, late: late.ETag as string, lateContent: contents[finishLast] };
  }

  it.each(['a', 'b'] as const)('keeps the upload that finishes last (%s first): ListParts reports it and Complete takes it', async (first) => {
    const key = `raced-part-${first}`;
    const { uploadId, early, late, lateContent } = await race(key, first);
    expect(early).not.toBe(late);
    const parts = await sdk.send(new ListPartsCommand({ Bucket: BUCKET, Key: key, UploadId: uploadId }));
    expect(parts.Parts?.map((p) => [p.PartNumber, p.ETag])).toEqual([[1, late]]);
    expect(await refusal(sdk.send(new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: key, UploadId: uploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: early }] } }))))
      .toEqual({ name: 'InvalidPart', status: 400 });
    await sdk.send(new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: key, UploadId: uploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: late }] } }));
    const got = await sdk.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    expect(Buffer.from((await got.Body?.transformToByteArray()) as Uint8Array).equals(lateContent)).toBe(true);
  });
});

describe('a PutObject whose bucket is deleted while its body streams in', () => {
  async function putDuring(bucket: string, meanwhile: () => Promise<unknown>) {
    const body = new PassThrough();
    const put = sdk.send(new PutObjectCommand({ Bucket: bucket, Key: 'in-flight', Body: body, ContentLength: 8 }));
    put.catch(() => undefined);
    body.write('half');
    await bodyStreaming();
    await meanwhile();
    body.end('-way');
    return refusal(put);
  }

  it('is 404 NoSuchBucket, never 500, and leaves nothing behind', async () => {
    await sdk.send(new CreateBucketCommand({ Bucket: 'doomed' }));
    expect(await putDuring('doomed', () => sdk.send(new DeleteBucketCommand({ Bucket: 'doomed' })))).toEqual({ name: 'NoSuchBucket', status: 404 });
    expect(await readdir(join(store.dir, 'objects', 'tmp'))).toEqual([]);
  });

  it('is 404 NoSuchBucket when a bucket of the same name was created meanwhile, which stays empty', async () => {
    await sdk.send(new CreateBucketCommand({ Bucket: 'reborn' }));
    const recreate = async () => {
      await sdk.send(new DeleteBucketCommand({ Bucket: 'reborn' }));
      await sdk.send(new CreateBucketCommand({ Bucket: 'reborn' }));
    };
    expect(await putDuring('reborn', recreate)).toEqual({ name: 'NoSuchBucket', status: 404 });
    expect((await sdk.send(new ListObjectsV2Command({ Bucket: 'reborn' }))).KeyCount).toBe(0);
    await sdk.send(new DeleteBucketCommand({ Bucket: 'reborn' }));
  });
});
