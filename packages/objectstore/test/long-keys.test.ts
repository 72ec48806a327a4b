// Object keys of the full 1,024 bytes with the longest bucket name, through the SDK (single PUT, multipart, copy) and the AWS CLI: stored, read and listed.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { Upload } from '@aws-sdk/lib-storage';
import {
  CopyObjectCommand,
  CreateBucketCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutBucketEncryptionCommand,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestObjectStore, type TestObjectStore } from './server-helpers.js';

const run = promisify(execFile);
/** 63 characters: the longest bucket name S3 allows. */
const BUCKET = `long-${'b'.repeat(53)}-name`;
let store: TestObjectStore;
let sdk: S3Client;

/** A key of exactly `bytes` UTF-8 bytes, starting with `prefix`; `filler` may be multi-byte. */
function keyOf(prefix: string, bytes: number, filler = 'k'): string {
  let key = prefix;
  while (Buffer.byteLength(key + filler) <= bytes) key += filler;
  while (Buffer.byteLength(key) < bytes) key += 'x';
  return key;
}

beforeAll(async () => {
  store = await startTestObjectStore();
  sdk = store.sdk();
  expect(BUCKET).toHaveLength(63);
  await sdk.send(new CreateBucketCommand({ Bucket: BUCKET }));
}, 60_000);

afterAll(async () => {
  await store?.stop();
});

describe('1,024-byte keys in a bucket with a 63-character name', () => {
  const ascii = keyOf('ascii/', 1024);
  const multibyte = keyOf('utf8/', 1024, 'é€😀');

  it('are stored, read and listed (SSE-S3 bucket keys, PutObject)', async () => {
    for (const key of [ascii, multibyte]) {
      expect(Buffer.byteLength(key)).toBe(1024);
      await sdk.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: `body of ${key.slice(0, 5)}` }));
      const got = await sdk.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
      expect(await got.Body?.transformToString()).toBe(`body of ${key.slice(0, 5)}`);
    }
    const listed = await sdk.send(new ListObjectsV2Command({ Bucket: BUCKET }));
    expect(listed.Contents?.map((o) => o.Key)).toEqual(expect.arrayContaining([ascii, multibyte]));
  });

  it('a 1,025-byte key is still KeyTooLongError', async () => {
    await expect(sdk.send(new PutObjectCommand({ Bucket: BUCKET, Key: keyOf('', 1025), Body: 'x' }))).rejects.toMatchObject({ name: 'KeyTooLongError' });
  });

  it('work as multipart uploads and copies, and with SSE-KMS with and without bucket keys', async () => {
    const kmsKey = await store.kms.createKey({ description: 'long keys' });
    const data = randomBytes(5 * 1024 * 1024 + 17);
    const multipart = keyOf('multipart/', 1024);
    await new Upload({ client: sdk, params: { Bucket: BUCKET, Key: multipart, Body: data }, partSize: 5 * 1024 * 1024 }).done();
    const got = await sdk.send(new GetObjectCommand({ Bucket: BUCKET, Key: multipart }));
    expect(Buffer.from((await got.Body?.transformToByteArray()) as Uint8Array).equals(data)).toBe(true);

    const copy = keyOf('copy/', 1024, 'ü');
    await sdk.send(new CopyObjectCommand({ Bucket: BUCKET, Key: copy, CopySource: `${BUCKET}/${encodeURIComponent(ascii)}` }));
    expect((await sdk.send(new HeadObjectCommand({ Bucket: BUCKET, Key: copy }))).ContentLength).toBe(Buffer.byteLength(`body of ${ascii.slice(0, 5)}`));

    for (const bucketKeyEnabled of [true, false]) {
      await sdk.send(
        new PutBucketEncryptionCommand({
          Bucket: BUCKET,
          ServerSideEncryptionConfiguration: { Rules: [{ ApplyServerSideEncryptionByDefault: { SSEAlgorithm: 'aws:kms', KMSMasterKeyID: kmsKey.keyId }, BucketKeyEnabled: bucketKeyEnabled }] },
        }),
      );
      const key = keyOf(`kms-${String(bucketKeyEnabled)}/`, 1024);
      await sdk.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: 'kms' }));
      expect(await (await sdk.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }))).Body?.transformToString()).toBe('kms');
    }
  }, 60_000);

  it('survive a restart and are listed by the AWS CLI', async () => {
    await store.restart();
    const got = await store.sdk().send(new GetObjectCommand({ Bucket: BUCKET, Key: multibyte }));
    expect(await got.Body?.transformToString()).toBe(`body of ${multibyte.slice(0, 5)}`);
    const { stdout } = await run('/usr/bin/aws', ['s3api', 'list-objects-v2', '--bucket', BUCKET, '--prefix', 'utf8/', '--endpoint-url', store.server.url], { env: store.awsEnv(), timeout: 60_000 });
    expect((JSON.parse(stdout) as { Contents: Array<{ Key: string }> }).Contents.map((o) => o.Key)).toEqual([multibyte]);
  }, 60_000);
});
