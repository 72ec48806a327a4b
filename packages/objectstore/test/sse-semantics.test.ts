// SSE request semantics as on S3, with @aws-sdk/client-s3 and the AWS CLI: SSE headers on reads, SSE-C validation, UploadPart(Copy) encryption headers, and where BucketKeyEnabled is reported.
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  GetBucketEncryptionCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutBucketEncryptionCommand,
  PutObjectCommand,
  UploadPartCommand,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { refusal, sendHeaders, startTestObjectStore, type TestObjectStore } from './server-helpers.js';

const run = promisify(execFile);
const BUCKET = 'sse-semantics';
let store: TestObjectStore;
let kmsKey: { keyId: string; arn: string };

async function aws(args: string[]): Promise<{ code: number; stderr: string }> {
  try {
    await run('/usr/bin/aws', [...args, '--endpoint-url', store.server.url], { env: store.awsEnv(), timeout: 60_000 });
    return { code: 0, stderr: '' };
  } catch (error) {
    const e = error as { code?: number; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stderr: e.stderr ?? '' };
  }
}

beforeAll(async () => {
  store = await startTestObjectStore();
  kmsKey = await store.kms.createKey({ description: 'sse semantics' });
  await store.sdk().send(new CreateBucketCommand({ Bucket: BUCKET }));
  await store.sdk().send(new PutObjectCommand({ Bucket: BUCKET, Key: 'plain', Body: 'plain' }));
}, 60_000);

afterAll(async () => {
  await store?.stop();
});

describe('SSE headers on a read', () => {
  const cases: Array<[string, Record<string, string>]> = [
    ['AES256', { 'x-amz-server-side-encryption': 'AES256' }],
    ['aws:kms', { 'x-amz-server-side-encryption': 'aws:kms' }],
    ['aws:kms with a key id', { 'x-amz-server-side-encryption': 'aws:kms', 'x-amz-server-side-encryption-aws-kms-key-id': 'alias/airlock/s3' }],
  ];
  it.each(cases)('GET and HEAD with %s are 400 InvalidArgument', async (_label, headers) => {
    const client = sendHeaders(store.sdk(), headers);
    expect(await refusal(client.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'plain' })))).toEqual({ name: 'InvalidArgument', status: 400 });
    // A HEAD error has no body, on S3 as here: the status is the answer.
    expect((await refusal(client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'plain' })))).status).toBe(400);
    // Without them, the same reads are served.
    const got = await store.sdk().send(new GetObjectCommand({ Bucket: BUCKET, Key: 'plain' }));
    expect(await got.Body?.transformToString()).toBe('plain');
  });
});

describe('SSE-C headers', () => {
  const key = randomBytes(32);

  it('refuses key headers without the algorithm with 400 InvalidArgument, before looking at the bucket', async () => {
    const md5 = createHash('md5').update(key).digest('base64');
    const client = sendHeaders(store.sdk(), {
      'x-amz-server-side-encryption-customer-key': key.toString('base64'),
      'x-amz-server-side-encryption-customer-key-md5': md5,
    });
    expect(await refusal(client.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'ssec', Body: 'x' })))).toEqual({ name: 'InvalidArgument', status: 400 });
    expect(await refusal(client.send(new GetObjectCommand({ Bucket: 'no-such-bucket', Key: 'ssec' })))).toEqual({ name: 'InvalidArgument', status: 400 });
    // The copy source's SSE-C headers are checked the same way.
    const copy = store.sdk().send(new CopyObjectCommand({ Bucket: BUCKET, Key: 'copy', CopySource: `${BUCKET}/plain`, CopySourceSSECustomerKey: key.toString('base64'), CopySourceSSECustomerKeyMD5: md5 }));
    expect(await refusal(copy)).toEqual({ name: 'InvalidArgument', status: 400 });
  });

  it('refuses a key that is not 32 bytes with 400 InvalidArgument (SDK)', async () => {
    const put = store.sdk().send(new PutObjectCommand({ Bucket: BUCKET, Key: 'ssec', Body: 'x', SSECustomerAlgorithm: 'AES256', SSECustomerKey: randomBytes(16).toString('base64') }));
    expect(await refusal(put)).toEqual({ name: 'InvalidArgument', status: 400 });
  });

  it('refuses a wrong key MD5 and a short key with InvalidArgument (AWS CLI)', async () => {
    const file = join(store.dir, 'ssec.txt');
    await writeFile(file, 'x');
    const base = ['s3api', 'put-object', '--bucket', BUCKET, '--key', 'ssec', '--body', file, '--sse-customer-algorithm', 'AES256'];
    const wrongMd5 = await aws([...base, '--sse-customer-key', 'k'.repeat(32), '--sse-customer-key-md5', Buffer.alloc(16).toString('base64')]);
    expect(wrongMd5.stderr).toMatch(/\(InvalidArgument\)/);
    const short = await aws([...base, '--sse-customer-key', 'k'.repeat(16)]);
    expect(short.stderr).toMatch(/\(InvalidArgument\)/);
  });

  it('answers well-formed SSE-C with 501 NotImplemented', async () => {
    const put = store.sdk().send(new PutObjectCommand({ Bucket: BUCKET, Key: 'ssec', Body: 'x', SSECustomerAlgorithm: 'AES256', SSECustomerKey: key.toString('base64') }));
    expect(await refusal(put)).toEqual({ name: 'NotImplemented', status: 501 });
    // The customer key, sent in every request above, is never logged.
    expect(store.logs.join('')).not.toContain(key.toString('base64'));
  });
});

describe('multipart encryption headers', () => {
  it('UploadPart and UploadPartCopy report the upload encryption, as CreateMultipartUpload does', async () => {
    const bucket = 'sse-multipart';
    const sdk = store.sdk();
    await sdk.send(new CreateBucketCommand({ Bucket: bucket }));
    await sdk.send(
      new PutBucketEncryptionCommand({
        Bucket: bucket,
        ServerSideEncryptionConfiguration: { Rules: [{ ApplyServerSideEncryptionByDefault: { SSEAlgorithm: 'aws:kms', KMSMasterKeyID: kmsKey.keyId }, BucketKeyEnabled: true }] },
      }),
    );
    const expected = { ServerSideEncryption: 'aws:kms', SSEKMSKeyId: kmsKey.arn, BucketKeyEnabled: true };
    const created = await sdk.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'mp' }));
    expect(created).toMatchObject(expected);
    const part = await sdk.send(new UploadPartCommand({ Bucket: bucket, Key: 'mp', UploadId: created.UploadId, PartNumber: 1, Body: randomBytes(1024) }));
    expect(part).toMatchObject(expected);
    const copied = await sdk.send(new UploadPartCopyCommand({ Bucket: bucket, Key: 'mp', UploadId: created.UploadId, PartNumber: 2, CopySource: `${BUCKET}/plain` }));
    expect(copied).toMatchObject(expected);

    // Under the default (SSE-S3), the parts say AES256 and nothing about keys.
    const plain = await sdk.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: 'mp' }));
    const plainPart = await sdk.send(new UploadPartCommand({ Bucket: BUCKET, Key: 'mp', UploadId: plain.UploadId, PartNumber: 1, Body: 'x' }));
    expect([plainPart.ServerSideEncryption, plainPart.SSEKMSKeyId, plainPart.BucketKeyEnabled]).toEqual(['AES256', undefined, undefined]);
  });
});

describe('BucketKeyEnabled', () => {
  it('is false in a new bucket’s default encryption, and in a configuration that does not turn it on', async () => {
    const sdk = store.sdk();
    const fresh = await sdk.send(new GetBucketEncryptionCommand({ Bucket: BUCKET }));
    expect(fresh.ServerSideEncryptionConfiguration?.Rules?.[0]).toMatchObject({ ApplyServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' }, BucketKeyEnabled: false });
    await sdk.send(new CreateBucketCommand({ Bucket: 'sse-kms-no-bucket-key' }));
    await sdk.send(
      new PutBucketEncryptionCommand({
        Bucket: 'sse-kms-no-bucket-key',
        ServerSideEncryptionConfiguration: { Rules: [{ ApplyServerSideEncryptionByDefault: { SSEAlgorithm: 'aws:kms', KMSMasterKeyID: kmsKey.keyId } }] },
      }),
    );
    const kms = await sdk.send(new GetBucketEncryptionCommand({ Bucket: 'sse-kms-no-bucket-key' }));
    expect(kms.ServerSideEncryptionConfiguration?.Rules?.[0]?.BucketKeyEnabled).toBe(false);
    const put = await sdk.send(new PutObjectCommand({ Bucket: 'sse-kms-no-bucket-key', Key: 'k', Body: 'x' }));
    expect([put.ServerSideEncryption, put.SSEKMSKeyId, put.BucketKeyEnabled]).toEqual(['aws:kms', kmsKey.arn, undefined]);
  });

  it('is reported on an SSE-KMS object only when the request turned it on', async () => {
    const sdk = store.sdk();
    const without = await sdk.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'kms-plain', Body: 'x', ServerSideEncryption: 'aws:kms', SSEKMSKeyId: kmsKey.keyId }));
    expect([without.ServerSideEncryption, without.BucketKeyEnabled]).toEqual(['aws:kms', undefined]);
    expect((await sdk.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'kms-plain' }))).BucketKeyEnabled).toBeUndefined();
    const withKey = await sdk.send(
      new PutObjectCommand({ Bucket: BUCKET, Key: 'kms-bucket-key', Body: 'x', ServerSideEncryption: 'aws:kms', SSEKMSKeyId: kmsKey.keyId, BucketKeyEnabled: true }),
    );
    expect(withKey.BucketKeyEnabled).toBe(true);
    expect((await sdk.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'kms-bucket-key' }))).BucketKeyEnabled).toBe(true);
  });
});
