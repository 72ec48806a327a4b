// Stored object headers as on S3 — Cache-Control, Content-Disposition, Content-Encoding, Content-Language, Expires through PUT, multipart and copy; response-* overrides on signed and presigned GETs; non-ASCII user metadata as RFC 2047 — with the SDK, the AWS CLI, boto3 and curl.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  UploadPartCommand,
  type HeadObjectCommandOutput,
  type S3Client,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { makeCanary, scanForCanary } from '@airlock/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestObjectStore, type TestObjectStore } from './server-helpers.js';

const run = promisify(execFile);
const BUCKET = 'object-headers';
const EXPIRES = new Date('2030-01-02T03:04:05Z');
const HEADERS = {
  CacheControl: 'max-age=3600, must-revalidate',
  ContentDisposition: 'attachment; filename="report.csv"',
  ContentEncoding: 'gzip',
  ContentLanguage: 'de-CH',
  Expires: EXPIRES,
} as const;
let store: TestObjectStore;
let sdk: S3Client;

const stored = (out: HeadObjectCommandOutput) => ({
  CacheControl: out.CacheControl,
  ContentDisposition: out.ContentDisposition,
  ContentEncoding: out.ContentEncoding,
  ContentLanguage: out.ContentLanguage,
  Expires: out.Expires,
});

const head = (key: string): Promise<HeadObjectCommandOutput> => sdk.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));

/** curl's own SigV4 signer sends header bytes exactly as given (as the Rust SDK does: raw UTF-8). */
async function curl(args: string[]): Promise<{ status: number; headers: Map<string, string>; body: string }> {
  const out = join(store.dir, 'curl.out');
  const { stdout } = await run('curl', ['-sS', '--cacert', store.caPath, '-D', '-', '-o', out, ...args], { timeout: 60_000, encoding: 'latin1' });
  const blocks = stdout.split(/\r\n\r\n/).filter((b) => b.startsWith('HTTP/'));
  const lines = (blocks.at(-1) ?? '').split('\r\n');
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon > 0) headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
  }
  const { readFile } = await import('node:fs/promises');
  return { status: Number(lines[0]?.split(' ')[1]), headers, body: await readFile(out, 'utf8') };
}

const signedCurl = (): string[] => [
  '--aws-sigv4',
  'aws:amz:us-east-1:s3',
  '--user',
  `${store.credentials.accessKeyId}:${store.credentials.secretAccessKey}`,
  '-H',
  'x-amz-content-sha256: UNSIGNED-PAYLOAD',
];

async function boto3(script: string): Promise<Record<string, unknown>> {
  const prelude = [
    'import json, sys, boto3, botocore.config',
    'from email.header import Header, decode_header, make_header',
    "s3 = boto3.client('s3', endpoint_url=sys.argv[1], config=botocore.config.Config(s3={'addressing_style': 'path'}, retries={'max_attempts': 1}))",
  ].join('\n');
  const { stdout } = await run('/usr/bin/python3', ['-c', `${prelude}\n${script}`, store.server.url], { env: store.awsEnv(), timeout: 60_000 });
  return JSON.parse(stdout.trim()) as Record<string, unknown>;
}

beforeAll(async () => {
  store = await startTestObjectStore();
  sdk = store.sdk();
  await sdk.send(new CreateBucketCommand({ Bucket: BUCKET }));
}, 60_000);

afterAll(async () => {
  await store?.stop();
});

describe('stored headers', () => {
  it('PutObject stores them and GET and HEAD return them, also after a restart', async () => {
    await sdk.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'put', Body: 'x', ...HEADERS }));
    expect(stored(await head('put'))).toEqual(HEADERS);
    const got = await sdk.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'put' }));
    expect(stored(got as HeadObjectCommandOutput)).toEqual(HEADERS);
    await got.Body?.transformToString();
    await store.restart();
    sdk = store.sdk();
    expect(stored(await head('put'))).toEqual(HEADERS);
  });

  it('an aws-chunked upload keeps only the object’s own Content-Encoding', async () => {
    // A stream of unknown length: the SDK sends it aws-chunked with a trailing checksum, and says so in Content-Encoding.
    const body = Readable.from([Buffer.from('streamed')]);
    await sdk.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'chunked', Body: body, ContentLength: 8, ContentEncoding: 'gzip', ChecksumAlgorithm: 'CRC32' }));
    expect((await head('chunked')).ContentEncoding).toBe('gzip');
    await sdk.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'chunked-plain', Body: Readable.from([Buffer.from('streamed')]), ContentLength: 8, ChecksumAlgorithm: 'CRC32' }));
    expect((await head('chunked-plain')).ContentEncoding).toBeUndefined();
  });

  it('CreateMultipartUpload stores them for the completed object', async () => {
    const created = await sdk.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: 'multipart', ...HEADERS }));
    const part = await sdk.send(new UploadPartCommand({ Bucket: BUCKET, Key: 'multipart', UploadId: created.UploadId, PartNumber: 1, Body: 'part' }));
    await sdk.send(
      new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: 'multipart', UploadId: created.UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.ETag }] } }),
    );
    expect(stored(await head('multipart'))).toEqual(HEADERS);
  });

  it('CopyObject keeps them with COPY and takes the request’s with REPLACE', async () => {
    await sdk.send(new CopyObjectCommand({ Bucket: BUCKET, Key: 'copied', CopySource: `${BUCKET}/put` }));
    expect(stored(await head('copied'))).toEqual(HEADERS);
    await sdk.send(new CopyObjectCommand({ Bucket: BUCKET, Key: 'replaced', CopySource: `${BUCKET}/put`, MetadataDirective: 'REPLACE', CacheControl: 'no-store' }));
    expect(stored(await head('replaced'))).toEqual({ CacheControl: 'no-store', ContentDisposition: undefined, ContentEncoding: undefined, ContentLanguage: undefined, Expires: undefined });
  });

  it('the AWS CLI sets and reads them', async () => {
    const file = join(store.dir, 'cli.txt');
    const { writeFile } = await import('node:fs/promises');
    await writeFile(file, 'cli');
    const env = { env: store.awsEnv(), timeout: 60_000 };
    const url = ['--endpoint-url', store.server.url];
    await run('/usr/bin/aws', ['s3', 'cp', file, `s3://${BUCKET}/cli.txt`, '--cache-control', 'no-cache', '--content-disposition', 'inline', '--content-language', 'fr', ...url], env);
    const { stdout } = await run('/usr/bin/aws', ['s3api', 'head-object', '--bucket', BUCKET, '--key', 'cli.txt', ...url], env);
    expect(JSON.parse(stdout)).toMatchObject({ CacheControl: 'no-cache', ContentDisposition: 'inline', ContentLanguage: 'fr' });
  }, 60_000);

  it('are encrypted at rest with the rest of the metadata', async () => {
    const canary = makeCanary('stored-headers');
    await sdk.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'secret-headers', Body: 'x', ContentDisposition: `attachment; filename="${canary}.pdf"`, CacheControl: canary }));
    expect((await head('secret-headers')).CacheControl).toBe(canary);
    const scan = await scanForCanary(join(store.dir, 'objects'), canary);
    expect(scan.filesScanned).toBeGreaterThan(0);
    expect(scan.hits).toEqual([]);
  });
});

describe('response-* overrides', () => {
  const overrides = {
    ResponseContentType: 'text/csv',
    ResponseContentLanguage: 'en',
    ResponseExpires: new Date('2031-05-06T07:08:09Z'),
    ResponseCacheControl: 'private',
    ResponseContentDisposition: "attachment; filename=\"q3.csv\"; filename*=UTF-8''r%C3%A9sum%C3%A9.csv",
    ResponseContentEncoding: 'identity',
  } as const;

  it('replace the stored headers on a signed GET and HEAD (SDK)', async () => {
    const got = await sdk.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'put', ...overrides }));
    await got.Body?.transformToString();
    expect({
      ContentType: got.ContentType,
      ContentLanguage: got.ContentLanguage,
      Expires: got.Expires,
      CacheControl: got.CacheControl,
      ContentDisposition: got.ContentDisposition,
      ContentEncoding: got.ContentEncoding,
    }).toEqual({
      ContentType: overrides.ResponseContentType,
      ContentLanguage: overrides.ResponseContentLanguage,
      Expires: overrides.ResponseExpires,
      CacheControl: overrides.ResponseCacheControl,
      ContentDisposition: overrides.ResponseContentDisposition,
      ContentEncoding: overrides.ResponseContentEncoding,
    });
    const headed = await sdk.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'put', ResponseContentDisposition: 'inline' }));
    expect(headed.ContentDisposition).toBe('inline');
  });

  it('name the downloaded file on a presigned GET (curl)', async () => {
    const url = await getSignedUrl(sdk, new GetObjectCommand({ Bucket: BUCKET, Key: 'put', ResponseContentDisposition: 'attachment; filename="download.csv"', ResponseContentType: 'text/csv' }), {
      expiresIn: 60,
    });
    const response = await curl([url]);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-disposition')).toBe('attachment; filename="download.csv"');
    expect(response.headers.get('content-type')).toBe('text/csv');
    // The stored headers the URL does not override are still sent.
    expect(response.headers.get('cache-control')).toBe(HEADERS.CacheControl);
  });
});

/** RFC 2047 B words of at most 75 characters, as the store writes them. */
function encodeHeader(text: string): string {
  const words: string[] = [];
  let word = '';
  for (const c of text) {
    if (Buffer.byteLength(word + c) > 45) {
      words.push(word);
      word = '';
    }
    word += c;
  }
  words.push(word);
  return words.map((w) => `=?UTF-8?B?${Buffer.from(w).toString('base64')}?=`).join(' ');
}

describe('non-ASCII user metadata', () => {
  const value = 'Grüße, 你好，世界 😀';
  const encoded = `=?UTF-8?B?${Buffer.from(value).toString('base64')}?=`;

  it('raw UTF-8 bytes (curl) are stored as text and returned RFC 2047-encoded', async () => {
    const put = await curl([...signedCurl(), '-X', 'PUT', '--data-binary', 'raw', '-H', `x-amz-meta-greeting: ${value}`, `${store.server.url}/${BUCKET}/raw-utf8`]);
    expect(put.status).toBe(200);
    expect((await head('raw-utf8')).Metadata).toEqual({ greeting: encoded });
    const got = await curl([...signedCurl(), `${store.server.url}/${BUCKET}/raw-utf8`]);
    expect(got.headers.get('x-amz-meta-greeting')).toBe(encoded);
  });

  it('encoded words sent by the SDK are decoded, stored, and returned encoded; ASCII stays as it is', async () => {
    const qEncoded = '=?utf-8?q?Gr=C3=BC=C3=9Fe?=';
    await sdk.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'sdk-meta', Body: 'x', Metadata: { b: encoded, q: qEncoded, plain: 'just ascii', ascii: '=?utf-8?b?aGVsbG8=?=' } }));
    expect((await head('sdk-meta')).Metadata).toEqual({ b: encoded, q: `=?UTF-8?B?${Buffer.from('Grüße').toString('base64')}?=`, plain: 'just ascii', ascii: 'hello' });
    const got = await sdk.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'sdk-meta' }));
    await got.Body?.transformToString();
    expect(got.Metadata?.b).toBe(encoded);
  });

  it('the SDK sends a Latin-1 value as single bytes, which are not UTF-8 and are read as Latin-1; beyond Latin-1 Node refuses the header itself', async () => {
    await sdk.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'sdk-latin1', Body: 'x', Metadata: { city: 'Zürich' } }));
    expect((await head('sdk-latin1')).Metadata).toEqual({ city: `=?UTF-8?B?${Buffer.from('Zürich').toString('base64')}?=` });
    await expect(sdk.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'sdk-cjk', Body: 'x', Metadata: { a: '中' } }))).rejects.toThrow(/Invalid character in header content/);
  });

  it('boto3 round-trips a value through RFC 2047 with the standard library', async () => {
    const result = await boto3(
      [
        `value = ${JSON.stringify(value)}`,
        "s3.put_object(Bucket='object-headers', Key='boto3-meta', Body=b'x', Metadata={'greeting': Header(value, 'utf-8').encode()})",
        "got = s3.head_object(Bucket='object-headers', Key='boto3-meta')['Metadata']['greeting']",
        "print(json.dumps({'wire': got, 'decoded': str(make_header(decode_header(got)))}))",
      ].join('\n'),
    );
    expect(result).toEqual({ wire: encoded, decoded: value });
  }, 60_000);

  it('counts each character’s UTF-8 bytes once against the 2 KB limit', async () => {
    const put = (key: string, text: string) => curl([...signedCurl(), '-X', 'PUT', '--data-binary', 'x', '-H', `x-amz-meta-m: ${text}`, `${store.server.url}/${BUCKET}/${key}`]);
    // 1,400 bytes of UTF-8: within the limit (read as latin1, each byte would become a two-byte character).
    expect((await put('within-limit', 'é'.repeat(700))).status).toBe(200);
    expect((await head('within-limit')).Metadata?.m).toBe(encodeHeader('é'.repeat(700)));
    const over = await put('over-limit', 'é'.repeat(1100));
    expect(over.status).toBe(400);
    expect(over.body).toContain('<Code>MetadataTooLarge</Code>');
  });
});
