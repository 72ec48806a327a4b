// Multipart checksums as on S3, with the SDK (commands and lib-storage's Upload) and boto3: FULL_OBJECT CRC32 / CRC32C checked as whole-body checksums, COMPOSITE values with and without their -N suffix, and what is refused.
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { promisify } from 'node:util';
import { Crc32c } from '@aws-crypto/crc32c';
import { Upload } from '@aws-sdk/lib-storage';
import {
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  GetObjectAttributesCommand,
  HeadObjectCommand,
  ListPartsCommand,
  UploadPartCommand,
  type CompletedPart,
  type S3Client,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { refusal, startTestObjectStore, type TestObjectStore } from './server-helpers.js';

const run = promisify(execFile);
const BUCKET = 'multipart-checksums';
const PART = 5 * 1024 * 1024;
let store: TestObjectStore;
let sdk: S3Client;

const u32 = (value: number): string => {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(value >>> 0);
  return out.toString('base64');
};
const checksum = {
  CRC32: (data: Buffer) => u32(crc32(data)),
  CRC32C: (data: Buffer) => {
    const c = new Crc32c();
    c.update(data);
    return u32(c.digest());
  },
  SHA256: (data: Buffer) => createHash('sha256').update(data).digest('base64'),
} as const;
const field = { CRC32: 'ChecksumCRC32', CRC32C: 'ChecksumCRC32C', SHA256: 'ChecksumSHA256' } as const;

/** Creates an upload with `algorithm` and `type` and uploads `bodies` as its parts, each with its checksum (the SDK computes it). */
async function uploadParts(key: string, algorithm: keyof typeof checksum, type: 'FULL_OBJECT' | 'COMPOSITE' | undefined, bodies: Buffer[]) {
  const created = await sdk.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key, ChecksumAlgorithm: algorithm, ...(type === undefined ? {} : { ChecksumType: type }) }));
  expect([created.ChecksumAlgorithm, created.ChecksumType]).toEqual([algorithm, type ?? 'COMPOSITE']);
  const parts: CompletedPart[] = [];
  for (const [i, body] of bodies.entries()) {
    const part = await sdk.send(new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId: created.UploadId, PartNumber: i + 1, Body: body, ChecksumAlgorithm: algorithm }));
    expect(part[field[algorithm]]).toBe(checksum[algorithm](body));
    parts.push({ PartNumber: i + 1, ETag: part.ETag, [field[algorithm]]: part[field[algorithm]] });
  }
  return { uploadId: created.UploadId as string, parts };
}

const complete = (key: string, uploadId: string, parts: CompletedPart[], extra: Record<string, unknown> = {}) =>
  sdk.send(new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: key, UploadId: uploadId, MultipartUpload: { Parts: parts }, ...extra }));

beforeAll(async () => {
  store = await startTestObjectStore();
  sdk = store.sdk();
  await sdk.send(new CreateBucketCommand({ Bucket: BUCKET }));
}, 60_000);

afterAll(async () => {
  await store?.stop();
});

describe('FULL_OBJECT', () => {
  it.each(['CRC32', 'CRC32C'] as const)('%s: the whole body’s checksum is checked and kept; a wrong one is BadDigest and the upload stays', async (algorithm) => {
    const bodies = [randomBytes(PART), randomBytes(PART), randomBytes(1234)];
    const whole = checksum[algorithm](Buffer.concat(bodies));
    const key = `full-${algorithm}`;
    const { uploadId, parts } = await uploadParts(key, algorithm, 'FULL_OBJECT', bodies);
    const wrong = u32(Buffer.from(whole, 'base64').readUInt32BE(0) ^ 1);
    expect(await refusal(complete(key, uploadId, parts, { [field[algorithm]]: wrong, ChecksumType: 'FULL_OBJECT' }))).toEqual({ name: 'BadDigest', status: 400 });
    const done = await complete(key, uploadId, parts, { [field[algorithm]]: whole, ChecksumType: 'FULL_OBJECT', MpuObjectSize: 2 * PART + 1234 });
    expect([done[field[algorithm]], done.ChecksumType]).toEqual([whole, 'FULL_OBJECT']);
    const head = await sdk.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key, ChecksumMode: 'ENABLED' }));
    expect([head[field[algorithm]], head.ChecksumType]).toEqual([whole, 'FULL_OBJECT']);
    const attributes = await sdk.send(new GetObjectAttributesCommand({ Bucket: BUCKET, Key: key, ObjectAttributes: ['Checksum', 'ObjectParts'] }));
    expect(attributes.Checksum).toEqual({ [field[algorithm]]: whole, ChecksumType: 'FULL_OBJECT' });
    expect(attributes.ObjectParts?.Parts?.map((p) => p[field[algorithm]])).toEqual(bodies.map((b) => checksum[algorithm](b)));
  }, 60_000);

  it('without a stated value the store still computes and keeps it; SHA256 cannot be FULL_OBJECT', async () => {
    const bodies = [randomBytes(PART), randomBytes(10)];
    const { uploadId, parts } = await uploadParts('full-unstated', 'CRC32C', 'FULL_OBJECT', bodies);
    expect((await complete('full-unstated', uploadId, parts)).ChecksumCRC32C).toBe(checksum.CRC32C(Buffer.concat(bodies)));
    expect(await refusal(sdk.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: 'x', ChecksumAlgorithm: 'SHA256', ChecksumType: 'FULL_OBJECT' })))).toEqual({
      name: 'InvalidRequest',
      status: 400,
    });
  }, 60_000);

  it('lib-storage’s Upload with a FULL_OBJECT CRC32 checksum completes', async () => {
    const data = randomBytes(2 * PART + 77);
    await new Upload({ client: sdk, params: { Bucket: BUCKET, Key: 'lib-storage', Body: data, ChecksumAlgorithm: 'CRC32', ChecksumType: 'FULL_OBJECT' }, partSize: PART }).done();
    const head = await sdk.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'lib-storage', ChecksumMode: 'ENABLED' }));
    expect([head.ChecksumCRC32, head.ChecksumType]).toEqual([checksum.CRC32(data), 'FULL_OBJECT']);
  }, 60_000);
});

describe('COMPOSITE', () => {
  it.each(['CRC32', 'SHA256'] as const)('%s: the checksum of the part checksums is accepted with or without its -N suffix', async (algorithm) => {
    const bodies = [randomBytes(PART), randomBytes(99)];
    // The checksum, in the same algorithm, of the parts' raw checksums in order.
    const raw = Buffer.concat(bodies.map((b) => Buffer.from(checksum[algorithm](b), 'base64')));
    const composite = `${checksum[algorithm](raw)}-2`;
    for (const [key, stated] of [[`composite-${algorithm}-suffix`, composite], [`composite-${algorithm}-bare`, composite.replace(/-2$/, '')]] as const) {
      const { uploadId, parts } = await uploadParts(key, algorithm, undefined, bodies);
      const done = await complete(key, uploadId, parts, { [field[algorithm]]: stated });
      expect([done[field[algorithm]], done.ChecksumType]).toEqual([composite, 'COMPOSITE']);
      const head = await sdk.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key, ChecksumMode: 'ENABLED' }));
      expect([head[field[algorithm]], head.ChecksumType]).toEqual([composite, 'COMPOSITE']);
    }
  }, 60_000);

  it('refuses a wrong composite value, a part checksum that is not the part’s, and a list without part checksums', async () => {
    const bodies = [randomBytes(PART), randomBytes(5)];
    const { uploadId, parts } = await uploadParts('composite-refusals', 'CRC32', 'COMPOSITE', bodies);
    expect(await refusal(complete('composite-refusals', uploadId, parts, { ChecksumCRC32: 'AAAAAA==-2' }))).toEqual({ name: 'BadDigest', status: 400 });
    const tampered = parts.map((p, i) => (i === 1 ? { ...p, ChecksumCRC32: 'AAAAAA==' } : p));
    expect(await refusal(complete('composite-refusals', uploadId, tampered))).toEqual({ name: 'InvalidPart', status: 400 });
    const bare = parts.map(({ PartNumber, ETag }) => ({ PartNumber, ETag }));
    expect(await refusal(complete('composite-refusals', uploadId, bare))).toEqual({ name: 'InvalidRequest', status: 400 });
    expect(await refusal(complete('composite-refusals', uploadId, parts, { ChecksumType: 'FULL_OBJECT' }))).toEqual({ name: 'InvalidRequest', status: 400 });
    const listed = await sdk.send(new ListPartsCommand({ Bucket: BUCKET, Key: 'composite-refusals', UploadId: uploadId }));
    expect([listed.ChecksumAlgorithm, listed.ChecksumType, listed.Parts?.map((p) => p.ChecksumCRC32)]).toEqual(['CRC32', 'COMPOSITE', parts.map((p) => p.ChecksumCRC32)]);
    expect((await complete('composite-refusals', uploadId, parts)).ChecksumCRC32).toMatch(/-2$/);
  }, 60_000);

  it('boto3 completes a COMPOSITE CRC32C upload with the -N value', async () => {
    const script = [
      'import base64, json, os, sys, boto3, botocore.config',
      "s3 = boto3.client('s3', endpoint_url=sys.argv[1], config=botocore.config.Config(s3={'addressing_style': 'path'}, retries={'max_attempts': 1}))",
      "b, k = 'multipart-checksums', 'boto3-composite'",
      "u = s3.create_multipart_upload(Bucket=b, Key=k, ChecksumAlgorithm='CRC32C')['UploadId']",
      'parts = []',
      'for n, body in enumerate([os.urandom(5 * 1024 * 1024), os.urandom(3)], 1):',
      "    r = s3.upload_part(Bucket=b, Key=k, UploadId=u, PartNumber=n, Body=body, ChecksumAlgorithm='CRC32C')",
      "    parts.append({'PartNumber': n, 'ETag': r['ETag'], 'ChecksumCRC32C': r['ChecksumCRC32C']})",
      "done = s3.complete_multipart_upload(Bucket=b, Key=k, UploadId=u, MultipartUpload={'Parts': parts})",
      "head = s3.head_object(Bucket=b, Key=k, ChecksumMode='ENABLED')",
      "print(json.dumps({'done': done['ChecksumCRC32C'], 'head': head['ChecksumCRC32C'], 'parts': [p['ChecksumCRC32C'] for p in parts]}))",
    ].join('\n');
    const { stdout } = await run('/usr/bin/python3', ['-c', script, store.server.url], { env: store.awsEnv(), timeout: 60_000 });
    const result = JSON.parse(stdout.trim()) as { done: string; head: string; parts: string[] };
    const c = new Crc32c();
    c.update(Buffer.concat(result.parts.map((p) => Buffer.from(p, 'base64'))));
    expect(result).toMatchObject({ done: `${u32(c.digest())}-2`, head: `${u32(c.digest())}-2` });
  }, 60_000);
});
