// What real clients send by default is accepted (the SDK's CRC32 header or aws-chunked trailer, the AWS CLI's plain uploads); CRC64NVME is computed, checked and kept, in single and multipart uploads; the algorithms the store does not compute are refused, never stored unchecked.
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { Upload } from '@aws-sdk/lib-storage';
import {
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { refusal, sendHeaders, startTestObjectStore, type TestObjectStore } from './server-helpers.js';

const run = promisify(execFile);
const BUCKET = 'default-checksums';
const PART = 5 * 1024 * 1024;
let store: TestObjectStore;
let sdk: S3Client;
/** The checksum-related headers of each request the SDK client sent, in order. */
const sent: Array<Record<string, string>> = [];

beforeAll(async () => {
  store = await startTestObjectStore();
  sdk = store.sdk();
  sdk.middlewareStack.add(
    (next) => (args) => {
      const headers = (args.request as { headers?: Record<string, string> }).headers ?? {};
      sent.push(Object.fromEntries(Object.entries(headers).filter(([name]) => /^(x-amz-checksum-|x-amz-sdk-checksum|x-amz-trailer|x-amz-content-sha256|content-md5|content-encoding)/i.test(name))));
      return next(args);
    },
    { step: 'finalizeRequest', name: 'airlockTestSeenHeaders', priority: 'low' },
  );
  await sdk.send(new CreateBucketCommand({ Bucket: BUCKET }));
}, 60_000);

afterAll(async () => {
  await store?.stop();
});

async function read(key: string): Promise<Buffer> {
  const got = await sdk.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
  return Buffer.from((await got.Body?.transformToByteArray()) as Uint8Array);
}

const headChecksums = async (key: string) => {
  const head = await sdk.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key, ChecksumMode: 'ENABLED' }));
  return { crc32: head.ChecksumCRC32, crc64nvme: head.ChecksumCRC64NVME, type: head.ChecksumType };
};

describe('uploads as the clients send them by default', () => {
  it('@aws-sdk/client-s3: a buffer (CRC32 header) and a stream (CRC32 in an aws-chunked trailer)', async () => {
    const data = randomBytes(100_000);
    sent.length = 0;
    const put = await sdk.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'sdk-buffer', Body: data }));
    // The SDK's default (requestChecksumCalculation WHEN_SUPPORTED): a CRC32 of the body.
    expect(sent[0]).toMatchObject({ 'x-amz-checksum-crc32': expect.any(String) });
    expect(put.ChecksumCRC32).toBe(sent[0]?.['x-amz-checksum-crc32']);
    expect((await read('sdk-buffer')).equals(data)).toBe(true);

    sent.length = 0;
    await sdk.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'sdk-stream', Body: Readable.from([data]), ContentLength: data.length }));
    expect(sent[0]).toMatchObject({ 'x-amz-trailer': 'x-amz-checksum-crc32', 'content-encoding': expect.stringContaining('aws-chunked') });
    expect((await read('sdk-stream')).equals(data)).toBe(true);
    expect(await headChecksums('sdk-stream')).toMatchObject({ crc32: put.ChecksumCRC32, type: 'FULL_OBJECT' });
  });

  it('the AWS CLI v2 (/usr/bin/aws s3 cp): a single upload and a multipart one, and back', async () => {
    const small = join(store.dir, 'small.bin');
    const large = join(store.dir, 'large.bin');
    await writeFile(small, randomBytes(1000));
    await writeFile(large, randomBytes(9 * 1024 * 1024)); // over the CLI's 8 MiB multipart threshold
    const aws = (...args: string[]) => run('/usr/bin/aws', [...args, '--endpoint-url', store.server.url], { env: store.awsEnv(), timeout: 120_000 });
    for (const file of [small, large]) {
      await aws('s3', 'cp', file, `s3://${BUCKET}/cli/`);
      await aws('s3', 'cp', `s3://${BUCKET}/cli/${file.split('/').pop() as string}`, `${file}.back`);
      expect((await readFile(`${file}.back`)).equals(await readFile(file))).toBe(true);
    }
  }, 120_000);
});

describe('CRC64NVME', () => {
  it('PutObject: a buffer (header) and a stream (trailer) are checked and kept as FULL_OBJECT; a wrong value is BadDigest and stores nothing', async () => {
    const data = randomBytes(300_001);
    sent.length = 0;
    const put = await sdk.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'crc64-buffer', Body: data, ChecksumAlgorithm: 'CRC64NVME' }));
    const value = sent[0]?.['x-amz-checksum-crc64nvme'];
    expect(value).toMatch(/^[A-Za-z0-9+/]{11}=$/);
    expect([put.ChecksumCRC64NVME, put.ChecksumType]).toEqual([value, 'FULL_OBJECT']);
    expect(await headChecksums('crc64-buffer')).toEqual({ crc32: undefined, crc64nvme: value, type: 'FULL_OBJECT' });

    sent.length = 0;
    await sdk.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'crc64-stream', Body: Readable.from([data]), ContentLength: data.length, ChecksumAlgorithm: 'CRC64NVME' }));
    expect(sent[0]).toMatchObject({ 'x-amz-trailer': 'x-amz-checksum-crc64nvme' });
    expect(await headChecksums('crc64-stream')).toEqual({ crc32: undefined, crc64nvme: value, type: 'FULL_OBJECT' });

    const wrong = Buffer.from(value as string, 'base64');
    wrong[7] = (wrong[7] as number) ^ 1;
    expect(await refusal(sdk.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'crc64-wrong', Body: data, ChecksumCRC64NVME: wrong.toString('base64') })))).toEqual({
      name: 'BadDigest',
      status: 400,
    });
    expect(await refusal(sdk.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'crc64-wrong' })))).toMatchObject({ status: 404 });
  });

  it('multipart (lib-storage’s Upload): the parts’ CRCs combine into the whole body’s, as a single PUT of the same bytes computes it', async () => {
    const data = randomBytes(2 * PART + 12_345);
    const whole = (await sdk.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'crc64-whole', Body: data, ChecksumAlgorithm: 'CRC64NVME' }))).ChecksumCRC64NVME;
    await new Upload({ client: sdk, params: { Bucket: BUCKET, Key: 'crc64-multipart', Body: data, ChecksumAlgorithm: 'CRC64NVME' }, partSize: PART }).done();
    expect(await headChecksums('crc64-multipart')).toEqual({ crc32: undefined, crc64nvme: whole, type: 'FULL_OBJECT' });
    expect((await read('crc64-multipart')).equals(data)).toBe(true);
  }, 60_000);

  it('CopyObject keeps the source’s checksum algorithm (computed over the bytes copied), or takes the one x-amz-checksum-algorithm names', async () => {
    const data = randomBytes(70_001);
    const put = await sdk.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'crc64-source', Body: data, ChecksumAlgorithm: 'CRC64NVME' }));
    const copied = await sdk.send(new CopyObjectCommand({ Bucket: BUCKET, Key: 'crc64-copy', CopySource: `${BUCKET}/crc64-source` }));
    expect([copied.CopyObjectResult?.ChecksumCRC64NVME, copied.CopyObjectResult?.ChecksumType]).toEqual([put.ChecksumCRC64NVME, 'FULL_OBJECT']);
    expect(await headChecksums('crc64-copy')).toEqual({ crc32: undefined, crc64nvme: put.ChecksumCRC64NVME, type: 'FULL_OBJECT' });
    const other = await sdk.send(new CopyObjectCommand({ Bucket: BUCKET, Key: 'sha256-copy', CopySource: `${BUCKET}/crc64-source`, ChecksumAlgorithm: 'SHA256' }));
    expect(other.CopyObjectResult?.ChecksumSHA256).toBe(createHash('sha256').update(data).digest('base64'));
    expect(other.CopyObjectResult?.ChecksumCRC64NVME).toBeUndefined();
  });

  it('cannot be COMPOSITE, as on S3', async () => {
    expect(await refusal(sdk.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: 'x', ChecksumAlgorithm: 'CRC64NVME', ChecksumType: 'COMPOSITE' })))).toEqual({
      name: 'InvalidRequest',
      status: 400,
    });
  });
});

describe('the checksums S3 added after CRC64NVME (SHA512, MD5, XXHASH64, XXHASH3, XXHASH128)', () => {
  it('are refused with 501 NotImplemented, not stored unchecked: as a header (beside the SDK’s own CRC32), and for a multipart upload', async () => {
    const value = Buffer.alloc(64).toString('base64');
    const header = sendHeaders(store.sdk(), { 'x-amz-checksum-sha512': value });
    expect(await refusal(header.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'sha512', Body: 'x' })))).toEqual({ name: 'NotImplemented', status: 501 });
    // The SDK itself refuses to compute SHA512 (and the others): the headers come from other clients.
    expect(await refusal(header.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'sha512', Body: Buffer.alloc(70_000) })))).toEqual({ name: 'NotImplemented', status: 501 });
    expect(await refusal(sdk.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'sha512' })))).toMatchObject({ status: 404 });
    const create = sendHeaders(store.sdk(), { 'x-amz-checksum-algorithm': 'MD5' });
    expect(await refusal(create.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: 'md5' })))).toEqual({ name: 'NotImplemented', status: 501 });
  });
});
