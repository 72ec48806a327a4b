// ListObjectVersions on an unversioned bucket, ListBuckets paging and GetObjectAttributes as on S3, with the SDK, the AWS CLI and boto3 (bucket-cleaning included).
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { promisify } from 'node:util';
import {
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  GetObjectAttributesCommand,
  HeadBucketCommand,
  ListBucketsCommand,
  ListObjectVersionsCommand,
  PutObjectCommand,
  UploadPartCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { refusal, startTestObjectStore, type TestObjectStore } from './server-helpers.js';

const run = promisify(execFile);
const BUCKET = 'listings';
let store: TestObjectStore;
let sdk: S3Client;

async function aws(args: string[]): Promise<string> {
  const { stdout } = await run('/usr/bin/aws', [...args, '--endpoint-url', store.server.url], { env: store.awsEnv(), timeout: 60_000 });
  return stdout;
}

const crc32Base64 = (data: Buffer): string => {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(crc32(data) >>> 0);
  return out.toString('base64');
};

beforeAll(async () => {
  store = await startTestObjectStore();
  sdk = store.sdk();
  await sdk.send(new CreateBucketCommand({ Bucket: BUCKET }));
  for (const key of ['a.txt', 'dir/b.txt', 'dir/c.txt', 'e.txt']) await sdk.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: key }));
}, 60_000);

afterAll(async () => {
  await store?.stop();
});

describe('ListObjectVersions on an unversioned bucket', () => {
  it('lists every object as its one version, null, and pages by key-marker', async () => {
    const all = await sdk.send(new ListObjectVersionsCommand({ Bucket: BUCKET }));
    expect(all.Versions?.map((v) => [v.Key, v.VersionId, v.IsLatest, v.Size])).toEqual([
      ['a.txt', 'null', true, 5],
      ['dir/b.txt', 'null', true, 9],
      ['dir/c.txt', 'null', true, 9],
      ['e.txt', 'null', true, 5],
    ]);
    expect(all.DeleteMarkers).toBeUndefined();
    const seen: string[] = [];
    let markers: { KeyMarker?: string; VersionIdMarker?: string } = {};
    for (;;) {
      const page = await sdk.send(new ListObjectVersionsCommand({ Bucket: BUCKET, MaxKeys: 3, ...markers }));
      seen.push(...(page.Versions ?? []).map((v) => v.Key as string));
      if (page.IsTruncated !== true) break;
      expect(page.NextVersionIdMarker).toBe('null');
      markers = { KeyMarker: page.NextKeyMarker, VersionIdMarker: page.NextVersionIdMarker };
    }
    expect(seen).toEqual(['a.txt', 'dir/b.txt', 'dir/c.txt', 'e.txt']);
    const rolled = await sdk.send(new ListObjectVersionsCommand({ Bucket: BUCKET, Delimiter: '/' }));
    expect([rolled.Versions?.map((v) => v.Key), rolled.CommonPrefixes?.map((p) => p.Prefix)]).toEqual([['a.txt', 'e.txt'], ['dir/']]);
  });

  it('lets boto3 empty a bucket with bucket.object_versions.delete()', async () => {
    await sdk.send(new CreateBucketCommand({ Bucket: 'boto3-clean' }));
    for (const key of ['x', 'y/z']) await sdk.send(new PutObjectCommand({ Bucket: 'boto3-clean', Key: key, Body: key }));
    const script = [
      'import sys, boto3, botocore.config',
      "s3 = boto3.resource('s3', endpoint_url=sys.argv[1], config=botocore.config.Config(s3={'addressing_style': 'path'}, retries={'max_attempts': 1}))",
      "bucket = s3.Bucket('boto3-clean')",
      'bucket.object_versions.delete()',
      'bucket.delete()',
    ].join('\n');
    await run('/usr/bin/python3', ['-c', script, store.server.url], { env: store.awsEnv(), timeout: 60_000 });
    expect(await refusal(sdk.send(new HeadBucketCommand({ Bucket: 'boto3-clean' })))).toMatchObject({ status: 404 });
  }, 60_000);

  it('lets the AWS CLI remove a bucket with aws s3 rb --force, and list versions itself', async () => {
    await sdk.send(new CreateBucketCommand({ Bucket: 'cli-clean' }));
    await sdk.send(new PutObjectCommand({ Bucket: 'cli-clean', Key: 'k', Body: 'k' }));
    expect((JSON.parse(await aws(['s3api', 'list-object-versions', '--bucket', 'cli-clean'])) as { Versions: Array<{ VersionId: string }> }).Versions.map((v) => v.VersionId)).toEqual(['null']);
    await aws(['s3', 'rb', '--force', 's3://cli-clean']);
    expect(await refusal(sdk.send(new HeadBucketCommand({ Bucket: 'cli-clean' })))).toMatchObject({ status: 404 });
  }, 60_000);
});

describe('ListBuckets', () => {
  it('honours max-buckets, prefix, continuation-token and bucket-region', async () => {
    for (const name of ['page-a', 'page-b', 'page-c', 'page-d', 'page-e']) await sdk.send(new CreateBucketCommand({ Bucket: name }));
    const names: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const page = await sdk.send(new ListBucketsCommand({ MaxBuckets: 2, Prefix: 'page-', ...(token === undefined ? {} : { ContinuationToken: token }) }));
      expect(page.Buckets?.length).toBeLessThanOrEqual(2);
      expect(page.Prefix).toBe('page-');
      names.push(...(page.Buckets ?? []).map((b) => b.Name as string));
      token = page.ContinuationToken;
      pages++;
    } while (token !== undefined);
    expect(names).toEqual(['page-a', 'page-b', 'page-c', 'page-d', 'page-e']);
    expect(pages).toBe(3);
    const everything = await sdk.send(new ListBucketsCommand({}));
    expect(everything.ContinuationToken).toBeUndefined();
    expect(everything.Buckets?.map((b) => b.Name)).toEqual(expect.arrayContaining([BUCKET, 'page-a', 'page-e']));
    expect(await refusal(sdk.send(new ListBucketsCommand({ MaxBuckets: 0 })))).toEqual({ name: 'InvalidArgument', status: 400 });
    // bucket-region: the store's one region lists them all, another none.
    expect((await sdk.send(new ListBucketsCommand({ BucketRegion: 'us-east-1', Prefix: 'page-' }))).Buckets?.map((b) => [b.Name, b.BucketRegion])).toHaveLength(5);
    expect((await sdk.send(new ListBucketsCommand({ BucketRegion: 'eu-west-1', Prefix: 'page-' }))).Buckets ?? []).toEqual([]);
  });
});

describe('GetObjectAttributes', () => {
  it('reports ETag (unquoted), ObjectSize, StorageClass and the checksum of a single PUT', async () => {
    const body = Buffer.from('attributes');
    const put = await sdk.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'attrs', Body: body, ChecksumAlgorithm: 'CRC32' }));
    const attributes = await sdk.send(new GetObjectAttributesCommand({ Bucket: BUCKET, Key: 'attrs', ObjectAttributes: ['ETag', 'ObjectSize', 'StorageClass', 'Checksum', 'ObjectParts'] }));
    expect({ ETag: attributes.ETag, ObjectSize: attributes.ObjectSize, StorageClass: attributes.StorageClass, Checksum: attributes.Checksum, ObjectParts: attributes.ObjectParts }).toEqual({
      ETag: put.ETag?.replace(/"/g, ''),
      ObjectSize: body.length,
      StorageClass: 'STANDARD',
      Checksum: { ChecksumCRC32: crc32Base64(body), ChecksumType: 'FULL_OBJECT' },
      ObjectParts: undefined,
    });
    expect(attributes.LastModified).toBeInstanceOf(Date);
    const only = await sdk.send(new GetObjectAttributesCommand({ Bucket: BUCKET, Key: 'attrs', ObjectAttributes: ['ObjectSize'] }));
    expect([only.ObjectSize, only.ETag]).toEqual([body.length, undefined]);
    expect(await refusal(sdk.send(new GetObjectAttributesCommand({ Bucket: BUCKET, Key: 'missing', ObjectAttributes: ['ETag'] })))).toMatchObject({ status: 404 });
  });

  /** Uploads a three-part object, with a CRC32 checksum (COMPOSITE) or none. */
  async function multipart(key: string, checksum: boolean) {
    const created = await sdk.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key, ...(checksum ? { ChecksumAlgorithm: 'CRC32' } : {}) }));
    const sizes = [5 * 1024 * 1024, 5 * 1024 * 1024, 100];
    const parts = [];
    for (const [i, size] of sizes.entries()) {
      const part = await sdk.send(
        new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId: created.UploadId, PartNumber: i + 1, Body: randomBytes(size), ...(checksum ? { ChecksumAlgorithm: 'CRC32' } : {}) }),
      );
      parts.push({ PartNumber: i + 1, ETag: part.ETag as string, ...(checksum ? { ChecksumCRC32: part.ChecksumCRC32 as string } : {}) });
    }
    const done = await sdk.send(new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: key, UploadId: created.UploadId, MultipartUpload: { Parts: parts } }));
    return { sizes, parts, done };
  }

  it('lists the parts of a multipart object with a checksum, paged, and the AWS CLI reads them; its COMPOSITE checksum comes without the -N suffix', async () => {
    const { sizes, parts, done } = await multipart('parts', true);
    expect(done.ChecksumCRC32).toMatch(/-3$/);
    const first = await sdk.send(new GetObjectAttributesCommand({ Bucket: BUCKET, Key: 'parts', ObjectAttributes: ['ObjectParts', 'ObjectSize', 'Checksum'], MaxParts: 2 }));
    expect(first.ObjectSize).toBe(sizes.reduce((a, b) => a + b, 0));
    // As S3 answers (GetObjectAttributes only): the composite value without its part count.
    expect(first.Checksum).toEqual({ ChecksumCRC32: done.ChecksumCRC32?.replace(/-3$/, ''), ChecksumType: 'COMPOSITE' });
    expect(first.ObjectParts).toMatchObject({ TotalPartsCount: 3, IsTruncated: true, NextPartNumberMarker: '2', MaxParts: 2 });
    expect(first.ObjectParts?.Parts?.map((p) => [p.PartNumber, p.Size, p.ChecksumCRC32])).toEqual([
      [1, sizes[0], parts[0]?.ChecksumCRC32],
      [2, sizes[1], parts[1]?.ChecksumCRC32],
    ]);
    const rest = await sdk.send(new GetObjectAttributesCommand({ Bucket: BUCKET, Key: 'parts', ObjectAttributes: ['ObjectParts'], PartNumberMarker: '2' }));
    expect(rest.ObjectParts?.Parts?.map((p) => [p.PartNumber, p.Size])).toEqual([[3, 100]]);
    const cli = JSON.parse(await aws(['s3api', 'get-object-attributes', '--bucket', BUCKET, '--key', 'parts', '--object-attributes', 'ObjectParts', 'StorageClass'])) as Record<string, unknown>;
    expect(cli).toMatchObject({ StorageClass: 'STANDARD', ObjectParts: { TotalPartsCount: 3 } });
  }, 60_000);

  it('gives only the part count of a multipart object without a checksum, as the API reference says', async () => {
    await multipart('parts-plain', false);
    const attributes = await sdk.send(new GetObjectAttributesCommand({ Bucket: BUCKET, Key: 'parts-plain', ObjectAttributes: ['ObjectParts', 'Checksum'] }));
    expect([attributes.ObjectParts, attributes.Checksum]).toEqual([{ TotalPartsCount: 3 }, undefined]);
  }, 60_000);
});
