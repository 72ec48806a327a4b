// The embedded object store driven by real clients: /usr/bin/aws (v2), s3cmd, curl and @aws-sdk/client-s3 — including the seed's kill-switch sequence.
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestObjectStore, type TestObjectStore } from './server-helpers.js';

const run = promisify(execFile);
const AWS = '/usr/bin/aws';
let store: TestObjectStore;

async function aws(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(AWS, [...args, '--endpoint-url', args[0] === 'kms' ? store.kmsServer.url : store.server.url, '--output', 'json'], {
      env: store.awsEnv(),
      timeout: 120_000,
      maxBuffer: 64 * 1024 * 1024,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

async function curl(url: string, out: string): Promise<{ status: number; body: Buffer }> {
  const { stdout } = await run('curl', ['-sS', '--cacert', store.caPath, '-o', out, '-w', '%{http_code}', url], { timeout: 60_000 });
  return { status: Number(stdout.trim()), body: await readFile(out) };
}

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

beforeAll(async () => {
  const { stdout } = await run(AWS, ['--version']).catch(() => {
    throw new Error(`${AWS} is missing: install the Debian awscli package (.ci/run does)`);
  });
  expect(stdout).toMatch(/aws-cli\/2\./);
  store = await startTestObjectStore();
}, 60_000);

afterAll(async () => {
  await store.stop();
});

describe('AWS CLI v2', () => {
  it('creates a bucket, sets and shows SSE-KMS encryption with the full key ARN', async () => {
    expect((await aws(['s3', 'mb', 's3://cli-bucket'])).code).toBe(0);
    const key = await store.kms.createKey({ description: 'cli bucket' });
    const config = JSON.stringify({ Rules: [{ ApplyServerSideEncryptionByDefault: { SSEAlgorithm: 'aws:kms', KMSMasterKeyID: key.keyId }, BucketKeyEnabled: true }] });
    const put = await aws(['s3api', 'put-bucket-encryption', '--bucket', 'cli-bucket', '--server-side-encryption-configuration', config]);
    expect(put.stderr).toBe('');
    const got = JSON.parse((await aws(['s3api', 'get-bucket-encryption', '--bucket', 'cli-bucket'])).stdout) as {
      ServerSideEncryptionConfiguration: { Rules: Array<{ ApplyServerSideEncryptionByDefault: { SSEAlgorithm: string; KMSMasterKeyID: string }; BucketKeyEnabled: boolean }> };
    };
    const rule = got.ServerSideEncryptionConfiguration.Rules[0];
    expect(rule?.ApplyServerSideEncryptionByDefault).toEqual({ SSEAlgorithm: 'aws:kms', KMSMasterKeyID: key.arn });
    expect(rule?.BucketKeyEnabled).toBe(true);
  }, 120_000);

  it('copies a 50 MiB file up (multipart) and back with an identical checksum, and lists it', async () => {
    const data = randomBytes(50 * 1024 * 1024);
    const source = join(store.dir, 'big.bin');
    const back = join(store.dir, 'big.back');
    await writeFile(source, data);
    const up = await aws(['s3', 'cp', source, 's3://cli-bucket/data/big.bin', '--no-progress']);
    expect(up.stderr).toBe('');
    expect(up.code).toBe(0);
    const head = JSON.parse((await aws(['s3api', 'head-object', '--bucket', 'cli-bucket', '--key', 'data/big.bin'])).stdout) as Record<string, unknown>;
    expect(head.ContentLength).toBe(data.length);
    expect(String(head.ETag)).toMatch(/-\d+"$/); // multipart ETag
    expect(head.ServerSideEncryption).toBe('aws:kms');
    expect(String(head.SSEKMSKeyId)).toMatch(/^arn:aws:kms:us-east-1:\d{12}:key\//);
    const down = await aws(['s3', 'cp', 's3://cli-bucket/data/big.bin', back, '--no-progress']);
    expect(down.code).toBe(0);
    expect(sha256(await readFile(back))).toBe(sha256(data));
    const ls = await aws(['s3', 'ls', 's3://cli-bucket/data/']);
    expect(ls.stdout).toContain('big.bin');
    expect(ls.stdout).toContain(String(data.length));
  }, 300_000);

  it('lists multipart uploads (prefix, delimiter, paging across uploads of one key) and reads a multipart object by part number', async () => {
    expect((await aws(['s3', 'mb', 's3://mpu-bucket'])).code).toBe(0);
    const create = async (key: string): Promise<string> =>
      (JSON.parse((await aws(['s3api', 'create-multipart-upload', '--bucket', 'mpu-bucket', '--key', key])).stdout) as { UploadId: string }).UploadId;
    const started = [['mpu/a', await create('mpu/a')], ['mpu/a', await create('mpu/a')], ['mpu/b', await create('mpu/b')], ['mpu/dir/x', await create('mpu/dir/x')], ['other', await create('other')]] as const;
    const expected = started
      .filter(([key]) => key.startsWith('mpu/'))
      .map(([key, uploadId]) => ({ key, uploadId }))
      .sort((a, b) => (a.key === b.key ? (a.uploadId < b.uploadId ? -1 : 1) : a.key < b.key ? -1 : 1));
    type Listing = { Uploads?: Array<{ Key: string; UploadId: string; Initiated: string }>; CommonPrefixes?: Array<{ Prefix: string }> };
    const list = async (...args: string[]): Promise<Listing> => {
      const result = await aws(['s3api', 'list-multipart-uploads', '--bucket', 'mpu-bucket', ...args]);
      expect(result.stderr).toBe('');
      return JSON.parse(result.stdout === '' ? '{}' : result.stdout) as Listing;
    };
    const all = await list('--prefix', 'mpu/');
    expect(all.Uploads?.map((u) => ({ key: u.Key, uploadId: u.UploadId }))).toEqual(expected);
    expect(Number.isNaN(Date.parse(all.Uploads?.[0]?.Initiated ?? ''))).toBe(false);
    // One upload per page: the CLI follows NextKeyMarker and NextUploadIdMarker, including between the two uploads of mpu/a.
    const paged = await list('--prefix', 'mpu/', '--page-size', '1');
    expect(paged.Uploads?.map((u) => ({ key: u.Key, uploadId: u.UploadId }))).toEqual(expected);
    const grouped = await list('--prefix', 'mpu/', '--delimiter', '/');
    expect(grouped.Uploads?.map((u) => u.Key)).toEqual(['mpu/a', 'mpu/a', 'mpu/b']);
    expect(grouped.CommonPrefixes).toEqual([{ Prefix: 'mpu/dir/' }]);
    for (const [key, uploadId] of started) expect((await aws(['s3api', 'abort-multipart-upload', '--bucket', 'mpu-bucket', '--key', key, '--upload-id', uploadId])).code).toBe(0);
    expect((await list()).Uploads ?? []).toEqual([]);

    // A 20 MiB copy is uploaded as parts of 8, 8 and 4 MiB; each part reads back by number.
    const MiB = 1024 * 1024;
    const data = randomBytes(20 * MiB);
    const source = join(store.dir, 'parts.bin');
    await writeFile(source, data);
    expect((await aws(['s3', 'cp', source, 's3://mpu-bucket/parts.bin', '--no-progress'])).code).toBe(0);
    const out = join(store.dir, 'part.out');
    const part2 = JSON.parse((await aws(['s3api', 'get-object', '--bucket', 'mpu-bucket', '--key', 'parts.bin', '--part-number', '2', out])).stdout) as Record<string, unknown>;
    expect(part2).toMatchObject({ ContentLength: 8 * MiB, ContentRange: `bytes ${8 * MiB}-${16 * MiB - 1}/${20 * MiB}`, PartsCount: 3 });
    expect((await readFile(out)).equals(data.subarray(8 * MiB, 16 * MiB))).toBe(true);
    const head3 = JSON.parse((await aws(['s3api', 'head-object', '--bucket', 'mpu-bucket', '--key', 'parts.bin', '--part-number', '3'])).stdout) as Record<string, unknown>;
    expect(head3).toMatchObject({ ContentLength: 4 * MiB, PartsCount: 3 });
    const beyond = await aws(['s3api', 'get-object', '--bucket', 'mpu-bucket', '--key', 'parts.bin', '--part-number', '4', out]);
    expect(beyond.code).not.toBe(0);
    expect(beyond.stderr).toContain('InvalidPartNumber');
  }, 180_000);

  it("runs the seed's kill-switch sequence: presign → curl → disable-key → KMS.DisabledException → enable-key", async () => {
    const key = await store.kms.createKey({ description: 'seed kill switch' });
    expect((await aws(['s3', 'mb', 's3://seed-bucket'])).code).toBe(0);
    const config = JSON.stringify({ Rules: [{ ApplyServerSideEncryptionByDefault: { SSEAlgorithm: 'aws:kms', KMSMasterKeyID: key.arn }, BucketKeyEnabled: true }] });
    expect((await aws(['s3api', 'put-bucket-encryption', '--bucket', 'seed-bucket', '--server-side-encryption-configuration', config])).code).toBe(0);
    const report = Buffer.from('quarterly report\n'.repeat(1000));
    const local = join(store.dir, 'report.txt');
    await writeFile(local, report);
    expect((await aws(['s3', 'cp', local, 's3://seed-bucket/report.txt', '--no-progress'])).code).toBe(0);

    // 1. aws s3api get-bucket-encryption shows the SSE configuration.
    expect((await aws(['s3api', 'get-bucket-encryption', '--bucket', 'seed-bucket'])).stdout).toContain('aws:kms');
    // 2. curl -o out "<presigned-url>" fetches the output.
    const url = (await aws(['s3', 'presign', 's3://seed-bucket/report.txt', '--expires-in', '3600'])).stdout.trim();
    expect(url).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/seed-bucket\/report\.txt\?.*X-Amz-Signature=/);
    const out = join(store.dir, 'out');
    const ok = await curl(url, out);
    expect(ok.status).toBe(200);
    expect(ok.body.equals(report)).toBe(true);
    // 3. aws kms disable-key
    expect((await aws(['kms', 'disable-key', '--key-id', key.keyId])).code).toBe(0);
    // 4. The same curl now fails with KMS.DisabledException, naming the key.
    await sleep(1100);
    const refused = await curl(url, out);
    expect(refused.status).toBe(400);
    expect(refused.body.toString()).toContain('<Code>KMS.DisabledException</Code>');
    expect(refused.body.toString()).toContain(key.arn);
    expect(refused.body.toString()).not.toContain('quarterly');
    // 5. aws kms enable-key restores access.
    expect((await aws(['kms', 'enable-key', '--key-id', key.keyId])).code).toBe(0);
    const restored = await curl(url, out);
    expect(restored.status).toBe(200);
    expect(restored.body.equals(report)).toBe(true);
  }, 180_000);
});

describe('s3cmd', () => {
  it('puts, gets and lists', async () => {
    const config = await store.s3cmdConfig();
    const s3cmd = (args: string[]) => run('s3cmd', ['-c', config, ...args], { timeout: 60_000 });
    await s3cmd(['mb', 's3://s3cmd-bucket']);
    const data = randomBytes(3 * 1024 * 1024 + 17);
    const local = join(store.dir, 's3cmd.bin');
    await writeFile(local, data);
    await s3cmd(['put', local, 's3://s3cmd-bucket/dir/file.bin']);
    const back = join(store.dir, 's3cmd.back');
    await s3cmd(['get', '--force', 's3://s3cmd-bucket/dir/file.bin', back]);
    expect(sha256(await readFile(back))).toBe(sha256(data));
    const { stdout } = await s3cmd(['ls', 's3://s3cmd-bucket/dir/']);
    expect(stdout).toContain('s3://s3cmd-bucket/dir/file.bin');
  }, 120_000);
});

describe('@aws-sdk/client-s3 (default configuration) through the ObjectStore adapter', () => {
  it('puts (flexible checksums, aws-chunked), gets, ranges, heads, lists, presigns GET and PUT', async () => {
    const client = store.client();
    await client.createBucket('sdk-bucket');
    const data = randomBytes(2 * 1024 * 1024 + 5);
    await client.put('sdk-bucket', 'a/b.bin', Readable.from([data]), { contentType: 'application/x-test', metadata: { owner: 'sdk' } });
    expect((await buffer(await client.get('sdk-bucket', 'a/b.bin'))).equals(data)).toBe(true);
    expect((await buffer(await client.get('sdk-bucket', 'a/b.bin', { start: 100, end: 199 }))).equals(data.subarray(100, 200))).toBe(true);
    const head = await client.head('sdk-bucket', 'a/b.bin');
    expect(head).toMatchObject({ size: data.length, contentType: 'application/x-test', metadata: { owner: 'sdk' } });
    expect(head.encryption.algorithm).toBe('AES256');
    const keys: string[] = [];
    for await (const entry of client.list('sdk-bucket', 'a/')) keys.push(entry.key);
    expect(keys).toEqual(['a/b.bin']);

    const getUrl = await client.presign('sdk-bucket', 'a/b.bin', { method: 'GET', expiresInSeconds: 60 });
    const fetched = await curl(getUrl, join(store.dir, 'sdk.out'));
    expect(fetched.status).toBe(200);
    expect(fetched.body.equals(data)).toBe(true);

    const putUrl = await client.presign('sdk-bucket', 'uploaded.txt', { method: 'PUT', expiresInSeconds: 60 });
    const upload = join(store.dir, 'upload.txt');
    await writeFile(upload, 'uploaded through a presigned URL');
    const { stdout } = await run('curl', ['-sS', '--cacert', store.caPath, '-X', 'PUT', '--upload-file', upload, '-o', '/dev/null', '-w', '%{http_code}', putUrl]);
    expect(stdout.trim()).toBe('200');
    expect((await buffer(await client.get('sdk-bucket', 'uploaded.txt'))).toString()).toBe('uploaded through a presigned URL');
    // One object, one method: the GET URL cannot PUT.
    const { stdout: wrongMethod } = await run('curl', ['-sS', '--cacert', store.caPath, '-X', 'PUT', '--upload-file', upload, '-o', '/dev/null', '-w', '%{http_code}', getUrl]);
    expect(wrongMethod.trim()).toBe('403');
  }, 120_000);

  it('the kill switch through the SDK: GET and PUT fail with KMS.DisabledException while the key is disabled', async () => {
    const client = store.client();
    const key = await store.kms.createKey();
    await client.createBucket('sdk-kill', { algorithm: 'aws:kms', kmsKeyId: key.keyId, bucketKeyEnabled: true });
    expect((await client.getBucketEncryption('sdk-kill')).kmsKeyArn).toBe(key.arn);
    await client.put('sdk-kill', 'x', 'secret bytes');
    await store.kms.disableKey(key.keyId);
    await sleep(1100);
    await expect(client.get('sdk-kill', 'x').then((s) => buffer(s))).rejects.toMatchObject({ code: 'KMS_KEY_DISABLED' });
    await expect(client.put('sdk-kill', 'y', 'more')).rejects.toMatchObject({ code: 'KMS_KEY_DISABLED' });
    await store.kms.enableKey(key.keyId);
    expect((await buffer(await client.get('sdk-kill', 'x'))).toString()).toBe('secret bytes');
  }, 60_000);
});
