// A presigned PUT bound to one body (signed x-amz-checksum-sha256 and content-length), uploaded with curl: only that body is stored.
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestObjectStore, type TestObjectStore } from './server-helpers.js';

const run = promisify(execFile);
let store: TestObjectStore;

beforeAll(async () => {
  store = await startTestObjectStore();
  await store.client().createBucket('bound');
}, 60_000);

afterAll(async () => {
  await store.stop();
});

/** PUTs `body` to `url` with curl and the given headers; returns the HTTP status and the S3 error code, if any. */
async function put(url: string, body: Buffer, headers: Record<string, string>): Promise<{ status: number; code: string | undefined }> {
  const file = join(store.dir, `body-${randomBytes(4).toString('hex')}`);
  await writeFile(file, body);
  const out = join(store.dir, `out-${randomBytes(4).toString('hex')}`);
  const args = ['-sS', '--cacert', store.caPath, '-X', 'PUT', '--data-binary', `@${file}`, '-o', out, '-w', '%{http_code}'];
  // curl sets Content-Length from the body itself; any header here overrides it (a lying length).
  for (const [name, value] of Object.entries(headers)) args.push('-H', `${name}: ${value}`);
  args.push('-H', 'Content-Type:');
  const { stdout } = await run('curl', [...args, url], { timeout: 60_000 }).catch((error: { stdout?: string }) => ({ stdout: error.stdout ?? '0' }));
  const text = await readFile(out, 'utf8').catch(() => '');
  return { status: Number(stdout.trim()), code: /<Code>([^<]+)<\/Code>/.exec(text)?.[1] };
}

const digest = (data: Buffer): string => createHash('sha256').update(data).digest('base64');

async function exists(key: string): Promise<boolean> {
  return store
    .client()
    .head('bound', key)
    .then(
      () => true,
      () => false,
    );
}

describe('presigned PUT bound to a SHA-256 and a length', () => {
  const body = randomBytes(4096);

  it('stores exactly the bound body, sent with the signed headers', async () => {
    const url = await store.client().presign('bound', 'ok', { method: 'PUT', expiresInSeconds: 60, checksumSha256: digest(body), contentLength: body.length });
    expect(url).not.toContain('x-amz-checksum-sha256=');
    expect(new URL(url).searchParams.get('X-Amz-SignedHeaders')).toBe('content-length;host;x-amz-checksum-sha256');
    expect(await put(url, body, { 'x-amz-checksum-sha256': digest(body) })).toEqual({ status: 200, code: undefined });
    expect((await buffer(await store.client().get('bound', 'ok'))).equals(body)).toBe(true);
  });

  it('refuses another body of the same length (BadDigest), another length, a missing or recomputed checksum header', async () => {
    const url = await store.client().presign('bound', 'refused', { method: 'PUT', expiresInSeconds: 60, checksumSha256: digest(body), contentLength: body.length });
    const other = Buffer.from(body);
    other[17] = (other[17] ?? 0) ^ 1;
    // Same length, the signed checksum header: the store computes the digest and refuses.
    expect(await put(url, other, { 'x-amz-checksum-sha256': digest(body) })).toEqual({ status: 400, code: 'BadDigest' });
    // The other body's own checksum: the header is signed, so the signature no longer matches.
    expect(await put(url, other, { 'x-amz-checksum-sha256': digest(other) })).toEqual({ status: 403, code: 'SignatureDoesNotMatch' });
    // Another length (longer and shorter): content-length is signed.
    const longer = Buffer.concat([body, Buffer.from('x')]);
    expect((await put(url, longer, { 'x-amz-checksum-sha256': digest(body) })).status).toBe(403);
    expect((await put(url, body.subarray(1), { 'x-amz-checksum-sha256': digest(body) })).status).toBe(403);
    // Without the checksum header at all.
    expect((await put(url, body, {})).status).toBe(403);
    expect(await exists('refused')).toBe(false);
  });

  it('refuses a checksum that is not a base64 SHA-256, and binding a GET', async () => {
    await expect(store.client().presign('bound', 'x', { method: 'PUT', checksumSha256: 'abc' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(store.client().presign('bound', 'x', { method: 'GET', contentLength: 3 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});
