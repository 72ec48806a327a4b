// CORS as on S3, with the SDK, the AWS CLI and curl: PutBucketCors / GetBucketCors / DeleteBucketCors (sealed at rest), unauthenticated preflights, and the CORS headers on actual requests, presigned GETs and PUTs included.
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  CreateBucketCommand,
  DeleteBucketCorsCommand,
  GetBucketCorsCommand,
  GetObjectCommand,
  PutBucketCorsCommand,
  PutObjectCommand,
  type CORSRule,
  type S3Client,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { makeCanary, scanForCanary } from '@airlock/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { refusal, startTestObjectStore, type TestObjectStore } from './server-helpers.js';

const run = promisify(execFile);
const BUCKET = 'cors';
const CONSOLE = 'https://console.airlock.test';
const RULES: CORSRule[] = [
  {
    ID: 'console',
    AllowedOrigins: [CONSOLE, 'https://*.preview.airlock.test'],
    AllowedMethods: ['GET', 'PUT', 'HEAD'],
    AllowedHeaders: ['content-type', 'x-amz-*'],
    ExposeHeaders: ['ETag', 'x-amz-request-id'],
    MaxAgeSeconds: 600,
  },
  { AllowedOrigins: ['*'], AllowedMethods: ['GET'] },
];
let store: TestObjectStore;
let sdk: S3Client;

interface CurlResponse {
  readonly status: number;
  readonly headers: Map<string, string>;
  readonly body: string;
}

async function curl(url: string, args: string[] = []): Promise<CurlResponse> {
  const out = join(store.dir, 'curl.out');
  const { stdout } = await run('curl', ['-sS', '--cacert', store.caPath, '-D', '-', '-o', out, ...args, url], { timeout: 60_000 });
  const lines = (stdout.split(/\r\n\r\n/).find((b) => b.startsWith('HTTP/')) ?? '').split('\r\n');
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon > 0) headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
  }
  return { status: Number(lines[0]?.split(' ')[1]), headers, body: await readFile(out, 'utf8') };
}

/** An unauthenticated preflight, as a browser sends it. */
function preflight(path: string, origin: string | undefined, method: string | undefined, requestHeaders?: string): Promise<CurlResponse> {
  const args = ['-X', 'OPTIONS'];
  if (origin !== undefined) args.push('-H', `Origin: ${origin}`);
  if (method !== undefined) args.push('-H', `Access-Control-Request-Method: ${method}`);
  if (requestHeaders !== undefined) args.push('-H', `Access-Control-Request-Headers: ${requestHeaders}`);
  return curl(`${store.server.url}${path}`, args);
}

const xmlField = (text: string, name: string): string | undefined => new RegExp(`<${name}>([^<]*)</${name}>`).exec(text)?.[1];

async function aws(args: string[]): Promise<string> {
  const { stdout } = await run('/usr/bin/aws', [...args, '--endpoint-url', store.server.url], { env: store.awsEnv(), timeout: 60_000 });
  return stdout;
}

beforeAll(async () => {
  store = await startTestObjectStore();
  sdk = store.sdk();
  await sdk.send(new CreateBucketCommand({ Bucket: BUCKET }));
  await sdk.send(new CreateBucketCommand({ Bucket: 'no-cors' }));
  await sdk.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'file.txt', Body: 'shared' }));
}, 60_000);

afterAll(async () => {
  await store?.stop();
});

describe('bucket CORS configuration', () => {
  it('GetBucketCors on a bucket without one is 404 NoSuchCORSConfiguration', async () => {
    expect(await refusal(sdk.send(new GetBucketCorsCommand({ Bucket: BUCKET })))).toEqual({ name: 'NoSuchCORSConfiguration', status: 404 });
  });

  it('PutBucketCors stores the rules and GetBucketCors returns them, also after a restart', async () => {
    await sdk.send(new PutBucketCorsCommand({ Bucket: BUCKET, CORSConfiguration: { CORSRules: RULES } }));
    expect((await sdk.send(new GetBucketCorsCommand({ Bucket: BUCKET }))).CORSRules).toEqual(RULES);
    await store.restart();
    sdk = store.sdk();
    expect((await sdk.send(new GetBucketCorsCommand({ Bucket: BUCKET }))).CORSRules).toEqual(RULES);
  });

  it('refuses what S3 refuses: an unsupported method, two wildcards in an origin or header, no rules', async () => {
    const put = (rules: CORSRule[]) => sdk.send(new PutBucketCorsCommand({ Bucket: 'no-cors', CORSConfiguration: { CORSRules: rules } }));
    expect(await refusal(put([{ AllowedOrigins: ['*'], AllowedMethods: ['PATCH'] }]))).toEqual({ name: 'InvalidRequest', status: 400 });
    expect(await refusal(put([{ AllowedOrigins: ['https://*.*.test'], AllowedMethods: ['GET'] }]))).toEqual({ name: 'InvalidRequest', status: 400 });
    expect(await refusal(put([{ AllowedOrigins: ['*'], AllowedMethods: ['GET'], AllowedHeaders: ['x-*-*'] }]))).toEqual({ name: 'InvalidRequest', status: 400 });
    expect(await refusal(put([]))).toEqual({ name: 'MalformedXML', status: 400 });
    expect(await refusal(sdk.send(new GetBucketCorsCommand({ Bucket: 'no-cors' })))).toEqual({ name: 'NoSuchCORSConfiguration', status: 404 });
  });

  it('the AWS CLI puts and gets it', async () => {
    const file = join(store.dir, 'cors.json');
    await writeFile(file, JSON.stringify({ CORSRules: [{ AllowedOrigins: ['https://cli.test'], AllowedMethods: ['GET', 'DELETE'], MaxAgeSeconds: 5 }] }));
    await aws(['s3api', 'put-bucket-cors', '--bucket', 'no-cors', '--cors-configuration', `file://${file}`]);
    expect(JSON.parse(await aws(['s3api', 'get-bucket-cors', '--bucket', 'no-cors']))).toEqual({
      CORSRules: [{ AllowedOrigins: ['https://cli.test'], AllowedMethods: ['GET', 'DELETE'], MaxAgeSeconds: 5 }],
    });
    await aws(['s3api', 'delete-bucket-cors', '--bucket', 'no-cors']);
    expect(await refusal(sdk.send(new GetBucketCorsCommand({ Bucket: 'no-cors' })))).toEqual({ name: 'NoSuchCORSConfiguration', status: 404 });
  }, 60_000);

  it('is sealed at rest like the rest of the bucket record', async () => {
    const canary = makeCanary('cors-origin');
    await sdk.send(new PutBucketCorsCommand({ Bucket: 'no-cors', CORSConfiguration: { CORSRules: [{ AllowedOrigins: [`https://${canary}.test`], AllowedMethods: ['GET'] }] } }));
    const scan = await scanForCanary(join(store.dir, 'objects'), canary);
    expect(scan.filesScanned).toBeGreaterThan(0);
    expect(scan.hits).toEqual([]);
    await sdk.send(new DeleteBucketCorsCommand({ Bucket: 'no-cors' }));
  });
});

describe('preflight (OPTIONS, unauthenticated)', () => {
  it('grants what the first matching rule allows', async () => {
    const response = await preflight(`/${BUCKET}/file.txt`, CONSOLE, 'PUT', 'Content-Type, X-Amz-Date');
    expect(response.status).toBe(200);
    expect(Object.fromEntries([...response.headers].filter(([name]) => name.startsWith('access-control-') || name === 'vary'))).toEqual({
      'access-control-allow-origin': CONSOLE,
      'access-control-allow-methods': 'GET, PUT, HEAD',
      'access-control-allow-headers': 'content-type, x-amz-date',
      'access-control-allow-credentials': 'true',
      'access-control-expose-headers': 'ETag, x-amz-request-id',
      'access-control-max-age': '600',
      vary: 'Origin, Access-Control-Request-Headers, Access-Control-Request-Method',
    });
    // A wildcard origin rule answers '*'; an origin with one wildcard matches its subdomains.
    const any = await preflight(`/${BUCKET}/file.txt`, 'https://elsewhere.test', 'GET');
    expect([any.status, any.headers.get('access-control-allow-origin'), any.headers.get('access-control-allow-credentials')]).toEqual([200, '*', undefined]);
    const preview = await preflight(`/${BUCKET}/file.txt`, 'https://pr-7.preview.airlock.test', 'HEAD');
    expect(preview.headers.get('access-control-allow-origin')).toBe('https://pr-7.preview.airlock.test');
  });

  it('is 403 AccessForbidden when no rule allows the origin, the method or a header, or the bucket has no CORS', async () => {
    const refused = [
      await preflight(`/${BUCKET}/file.txt`, 'https://elsewhere.test', 'PUT'),
      await preflight(`/${BUCKET}/file.txt`, CONSOLE, 'DELETE'),
      await preflight(`/${BUCKET}/file.txt`, CONSOLE, 'PUT', 'authorization'),
      await preflight('/no-cors/file.txt', CONSOLE, 'GET'),
    ];
    for (const response of refused) {
      expect(response.status).toBe(403);
      expect(xmlField(response.body, 'Code')).toBe('AccessForbidden');
      expect(xmlField(response.body, 'Message')).toMatch(/^CORSResponse: /);
      expect(response.headers.get('access-control-allow-origin')).toBeUndefined();
    }
    expect(xmlField(refused[1]?.body ?? '', 'Method')).toBe('DELETE');
    expect(xmlField(refused[1]?.body ?? '', 'ResourceType')).toBe('OBJECT');
    expect(xmlField(refused[3]?.body ?? '', 'Message')).toBe('CORSResponse: CORS is not enabled for this bucket.');
  });

  it('is 400 BadRequest without Origin or Access-Control-Request-Method', async () => {
    for (const response of [await preflight(`/${BUCKET}/file.txt`, undefined, 'GET'), await preflight(`/${BUCKET}/file.txt`, CONSOLE, undefined)]) {
      expect(response.status).toBe(400);
      expect(xmlField(response.body, 'Code')).toBe('BadRequest');
    }
  });
});

describe('actual requests from a page', () => {
  it('a presigned GET and PUT with a matching Origin carry the CORS headers', async () => {
    const getUrl = await getSignedUrl(sdk, new GetObjectCommand({ Bucket: BUCKET, Key: 'file.txt' }), { expiresIn: 60 });
    const got = await curl(getUrl, ['-H', `Origin: ${CONSOLE}`]);
    expect(got.status).toBe(200);
    expect(got.body).toBe('shared');
    expect(got.headers.get('access-control-allow-origin')).toBe(CONSOLE);
    expect(got.headers.get('access-control-expose-headers')).toBe('ETag, x-amz-request-id');
    expect(got.headers.get('vary')).toBe('Origin, Access-Control-Request-Headers, Access-Control-Request-Method');

    const putUrl = await getSignedUrl(sdk, new PutObjectCommand({ Bucket: BUCKET, Key: 'uploaded.txt' }), { expiresIn: 60 });
    const put = await curl(putUrl, ['-X', 'PUT', '--data-binary', 'from the browser', '-H', `Origin: ${CONSOLE}`]);
    expect(put.status).toBe(200);
    expect(put.headers.get('access-control-allow-origin')).toBe(CONSOLE);
    const stored = await sdk.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'uploaded.txt' }));
    expect(await stored.Body?.transformToString()).toBe('from the browser');
  });

  it('an error answer carries them too, so the page can read it', async () => {
    const url = await getSignedUrl(sdk, new GetObjectCommand({ Bucket: BUCKET, Key: 'missing.txt' }), { expiresIn: 60 });
    const missing = await curl(url, ['-H', `Origin: ${CONSOLE}`]);
    expect([missing.status, xmlField(missing.body, 'Code'), missing.headers.get('access-control-allow-origin')]).toEqual([404, 'NoSuchKey', CONSOLE]);
  });

  it('no rule, no CORS headers: another origin, a method the rule lacks, no Origin at all', async () => {
    const url = await getSignedUrl(sdk, new GetObjectCommand({ Bucket: BUCKET, Key: 'file.txt' }), { expiresIn: 60 });
    const putUrl = await getSignedUrl(sdk, new PutObjectCommand({ Bucket: BUCKET, Key: 'other.txt' }), { expiresIn: 60 });
    const other = await curl(putUrl, ['-X', 'PUT', '--data-binary', 'x', '-H', 'Origin: https://elsewhere.test']);
    expect([other.status, other.headers.get('access-control-allow-origin'), other.headers.get('vary')]).toEqual([
      200,
      undefined,
      'Origin, Access-Control-Request-Headers, Access-Control-Request-Method',
    ]);
    const plain = await curl(url);
    expect([plain.status, plain.headers.get('access-control-allow-origin'), plain.headers.get('vary')]).toEqual([200, undefined, undefined]);
  });

  it('DeleteBucketCors removes it: preflights are refused again', async () => {
    await sdk.send(new DeleteBucketCorsCommand({ Bucket: BUCKET }));
    expect((await preflight(`/${BUCKET}/file.txt`, CONSOLE, 'GET')).status).toBe(403);
    expect(await refusal(sdk.send(new GetBucketCorsCommand({ Bucket: BUCKET })))).toEqual({ name: 'NoSuchCORSConfiguration', status: 404 });
  });
});
