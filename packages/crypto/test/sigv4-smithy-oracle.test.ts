// Cross-checks SigV4 against the AWS SDK's own signer (@smithy/signature-v4) and a real Node HTTP server.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer, request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { pipeline } from 'node:stream/promises';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AirlockError } from '@airlock/common';
import {
  chunkedPayloadMode,
  createChunkedPayloadDecoder,
  createChunkedPayloadEncoder,
  deriveSigningKey,
  EMPTY_SHA256,
  presignUrl,
  signRequest,
  STREAMING_SIGNED_PAYLOAD_TRAILER,
  verifyRequest,
  type VerifyRequestOptions,
} from '../src/sigv4.js';

/** One request for the AWS SDK signer to sign (or presign); bodies travel as base64. */
interface SmithyJob {
  readonly presign: boolean;
  readonly service: string;
  readonly region: string;
  readonly credentials: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  readonly uriEscapePath: boolean;
  readonly applyChecksum: boolean;
  readonly method: string;
  readonly path: string;
  readonly query: Record<string, string | string[]>;
  readonly headers: Record<string, string>;
  readonly body?: string;
  readonly date: string;
  readonly expiresIn?: number;
  readonly unsignableHeaders?: string[];
}
interface SmithyResult {
  readonly headers: Record<string, string>;
  readonly query: Record<string, string | string[]>;
}

/**
 * Runs @smithy/signature-v4 (the signer inside every @aws-sdk v3 client) in a child Node process.
 * It arrives with @aws-crypto/client-node and is no dependency of this package; a child process
 * because vitest's ESM export conditions pick smithy's dist-es build, which plain Node cannot load.
 */
const SMITHY_SCRIPT = `
const { SignatureV4 } = require('@smithy/signature-v4');
const crypto = require('node:crypto');
class Sha256 {
  constructor(secret) { this.h = secret === undefined ? crypto.createHash('sha256') : crypto.createHmac('sha256', secret); }
  update(data) { this.h.update(data); }
  digest() { return Promise.resolve(new Uint8Array(this.h.digest())); }
}
let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => { input += d; });
process.stdin.on('end', async () => {
  const out = [];
  for (const job of JSON.parse(input)) {
    const signer = new SignatureV4({ credentials: job.credentials, region: job.region, service: job.service, sha256: Sha256,
      uriEscapePath: job.uriEscapePath, applyChecksum: job.applyChecksum });
    const request = { method: job.method, protocol: 'https:', hostname: 'example', path: job.path, query: job.query,
      headers: job.headers, body: job.body === undefined ? undefined : Buffer.from(job.body, 'base64') };
    const signed = job.presign
      ? await signer.presign(request, { signingDate: new Date(job.date), expiresIn: job.expiresIn, unsignableHeaders: new Set(job.unsignableHeaders || []) })
      : await signer.sign(request, { signingDate: new Date(job.date) });
    out.push({ headers: signed.headers, query: signed.query });
  }
  process.stdout.write(JSON.stringify(out));
});
`;

/**
 * The one explicit opt-out of the oracle tests. Without it they always run: a signer that cannot be
 * loaded fails them (with the reason) instead of skipping them quietly.
 */
const SKIP_SMITHY_ENV = 'AIRLOCK_TEST_SKIP_SIGV4_ORACLE';
const SKIP_SMITHY = process.env[SKIP_SMITHY_ENV] === '1';

function runSmithy(jobs: readonly SmithyJob[]): SmithyResult[] {
  let output: Buffer;
  try {
    output = execFileSync(process.execPath, ['-e', SMITHY_SCRIPT], {
      cwd: REPO_ROOT,
      input: JSON.stringify(jobs),
      env: { ...process.env, NODE_OPTIONS: '' },
      maxBuffer: 64 * 1024 * 1024,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString('utf8') ?? '';
    throw new Error(
      `the @smithy/signature-v4 oracle did not run (${(error as Error).message.split('\n')[0]}): ${stderr.slice(0, 2000)}\n` +
        `It comes with the root devDependencies (npm install); set ${SKIP_SMITHY_ENV}=1 to skip the oracle tests on purpose.`,
      { cause: error },
    );
  }
  return JSON.parse(output.toString('utf8')) as SmithyResult[];
}

const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

const ACCESS_KEY = 'AKIAORACLEEXAMPLE';
const SECRET = 'oracle/secret+key=0123456789abcdefghijklmnop';
const SESSION_TOKEN = 'FwoGZXIvYXdzEJr//////////wEaDOracle+Token/With=Padding==';
const lookupSecret = (id: string): string | undefined => (id === ACCESS_KEY ? SECRET : undefined);
const sha256 = (data: Uint8Array | string): string => createHash('sha256').update(data).digest('hex');

/** RFC 3986 encoding, as the SDKs put S3 keys on the wire. */
const encodeSegment = (text: string): string => encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

/** Text without lone surrogates (which no client can encode). */
const text = (maxLength: number): fc.Arbitrary<string> => fc.string({ unit: 'grapheme', maxLength });
const segment = fc.oneof(
  { weight: 6, arbitrary: text(12) },
  { weight: 1, arbitrary: fc.constantFrom('.', '..', '', '~user', 'a b', 'a+b', "it's(*)!", '%41', 'ü/ß') },
);
const headerName = fc.stringMatching(/^[a-z][a-z0-9-]{0,14}$/).map((name) => `x-test-${name}`);
const headerValue = fc.stringMatching(/^[\x20-\x7e\t]{0,40}$/).map((value) => value.replace(/^[ \t]+|[ \t]+$/g, ''));

interface RandomRequest {
  readonly method: string;
  readonly segments: string[];
  readonly trailingSlash: boolean;
  readonly query: Array<[string, string]>;
  readonly headers: Array<[string, string]>;
  readonly body: Uint8Array;
  readonly token: boolean;
  readonly date: Date;
  readonly skewSeconds: number;
}

const randomRequest: fc.Arbitrary<RandomRequest> = fc.record({
  method: fc.constantFrom('GET', 'PUT', 'POST', 'DELETE', 'HEAD'),
  segments: fc.array(segment, { maxLength: 5 }),
  trailingSlash: fc.boolean(),
  query: fc.array(fc.tuple(text(8), text(10)), { maxLength: 5 }),
  headers: fc.uniqueArray(fc.tuple(headerName, headerValue), { maxLength: 5, selector: ([name]) => name }),
  body: fc.uint8Array({ maxLength: 64 }),
  token: fc.boolean(),
  date: fc.date({ min: new Date('2001-01-01T00:00:00Z'), max: new Date('2099-12-31T23:59:59Z'), noInvalidDate: true }).map((d) => new Date(Math.floor(d.getTime() / 1000) * 1000)),
  skewSeconds: fc.integer({ min: -900, max: 900 }),
});

function wirePath(request: RandomRequest): string {
  const path = `/${request.segments.map(encodeSegment).join('/')}`;
  return request.trailingSlash && request.segments.length > 0 ? `${path}/` : path;
}

/** Smithy's query object (repeated names become arrays) and the same parameters as a wire query string. */
function queries(pairs: ReadonlyArray<readonly [string, string]>): { object: Record<string, string | string[]>; raw: string } {
  // No prototype: a random name may well be 'toString'.
  const object = Object.create(null) as Record<string, string | string[]>;
  for (const [name, value] of pairs) {
    const existing = object[name];
    object[name] = existing === undefined ? value : Array.isArray(existing) ? [...existing, value] : [existing, value];
  }
  const raw = Object.entries(object)
    .flatMap(([name, value]) => (Array.isArray(value) ? value : [value]).map((item) => `${encodeURIComponent(name)}=${encodeURIComponent(item)}`))
    .join('&');
  return { object, raw };
}

function smithyJob(service: 'kms' | 's3', token: boolean, fields: Omit<SmithyJob, 'service' | 'region' | 'credentials' | 'uriEscapePath' | 'applyChecksum'>): SmithyJob {
  return {
    service,
    region: 'eu-central-1',
    credentials: { accessKeyId: ACCESS_KEY, secretAccessKey: SECRET, ...(token ? { sessionToken: SESSION_TOKEN } : {}) },
    uriEscapePath: service !== 's3',
    // S3 clients send x-amz-content-sha256; other services (and botocore) do not.
    applyChecksum: service === 's3',
    ...fields,
  };
}

function rawQueryOf(query: Record<string, string | string[]>): string {
  return Object.entries(query)
    .flatMap(([name, value]) => (Array.isArray(value) ? value : [value]).map((item) => `${encodeURIComponent(name)}=${encodeURIComponent(item)}`))
    .join('&');
}

const RUNS = 200;

describe.skipIf(SKIP_SMITHY)('@smithy/signature-v4 as an independent oracle', () => {
  for (const service of ['kms', 's3'] as const) {
    it(`verifies ${RUNS} random ${service} requests signed by the AWS SDK signer, signs them identically, and rejects them tampered`, async () => {
      const seed = Date.now();
      const requests = fc.sample(randomRequest, { numRuns: RUNS, seed });
      const headersOf = (request: RandomRequest): Record<string, string> => ({ host: 'kms.eu-central-1.example', ...Object.fromEntries(request.headers) });
      const results = runSmithy(
        requests.map((request) =>
          smithyJob(service, request.token, {
            presign: false,
            method: request.method,
            path: wirePath(request),
            query: queries(request.query).object,
            headers: headersOf(request),
            body: Buffer.from(request.body).toString('base64'),
            date: request.date.toISOString(),
          }),
        ),
      );
      for (const [index, request] of requests.entries()) {
        const signed = results[index] as SmithyResult;
        const path = wirePath(request);
        const { raw } = queries(request.query);
        const context = `seed ${seed}, run ${index}: ${JSON.stringify({ path, raw, method: request.method })}`;
        const options: VerifyRequestOptions = {
          method: request.method,
          path,
          rawQuery: raw,
          headers: signed.headers,
          payloadHash: sha256(request.body),
          lookupSecret,
          region: 'eu-central-1',
          service,
          now: new Date(request.date.getTime() - request.skewSeconds * 1000),
          wireEncoding: 'utf8',
          requireSignedAmzHeaders: true,
        };
        const verified = await verifyRequest(options).catch((error: unknown) => {
          throw new Error(`${context}: ${JSON.stringify(AirlockError.from(error).toJSON())}`);
        });
        expect(verified.authType, context).toBe('header');
        expect(verified.sessionToken, context).toBe(request.token ? SESSION_TOKEN : undefined);
        // Our signer produces the same Authorization for the same request.
        const ours = signRequest({
          method: request.method,
          path,
          query: raw,
          headers: headersOf(request),
          body: request.body,
          credentials: { accessKeyId: ACCESS_KEY, secretAccessKey: SECRET, ...(request.token ? { sessionToken: SESSION_TOKEN } : {}) },
          region: 'eu-central-1',
          service,
          date: request.date,
        });
        expect(ours.authorization, context).toBe(signed.headers.authorization);
        // Another body, or another query, is refused.
        await expect(verifyRequest({ ...options, payloadHash: sha256(Buffer.concat([request.body, Buffer.from([0])])) }), context).rejects.toMatchObject({
          code: 'AUTH_SIGNATURE_MISMATCH',
        });
        await expect(verifyRequest({ ...options, rawQuery: raw === '' ? 'x=1' : `${raw}&x=1` }), context).rejects.toMatchObject({
          code: 'AUTH_SIGNATURE_MISMATCH',
        });
      }
    });

    it(`verifies ${RUNS} random ${service} URLs presigned by the AWS SDK signer`, async () => {
      const seed = Date.now();
      const cases = fc.sample(fc.tuple(randomRequest, fc.integer({ min: 1, max: 604_800 })), { numRuns: RUNS, seed });
      const headersOf = (request: RandomRequest): Record<string, string> => {
        const headers: Record<string, string> = { host: 's3.example:9000', ...Object.fromEntries(request.headers) };
        // What @aws-sdk/s3-request-presigner does: UNSIGNED-PAYLOAD, which presign hoists into the query.
        if (service === 's3') headers['X-Amz-Content-Sha256'] = 'UNSIGNED-PAYLOAD';
        return headers;
      };
      const results = runSmithy(
        cases.map(([request, expiresIn]) =>
          smithyJob(service, request.token, {
            presign: true,
            method: request.method,
            path: wirePath(request),
            query: queries(request.query).object,
            headers: headersOf(request),
            date: request.date.toISOString(),
            expiresIn,
            unsignableHeaders: ['content-type'],
          }),
        ),
      );
      for (const [index, [request, expiresIn]] of cases.entries()) {
        const presigned = results[index] as SmithyResult;
        const path = wirePath(request);
        const context = `seed ${seed}, run ${index}: ${JSON.stringify({ path, query: presigned.query })}`;
        const options: VerifyRequestOptions = {
          method: request.method,
          path,
          rawQuery: rawQueryOf(presigned.query),
          headers: presigned.headers,
          ...(service === 's3' ? {} : { payloadHash: EMPTY_SHA256 }),
          lookupSecret,
          region: 'eu-central-1',
          service,
          now: new Date(request.date.getTime() + Math.floor(expiresIn / 2) * 1000),
          wireEncoding: 'utf8',
        };
        const verified = await verifyRequest(options).catch((error: unknown) => {
          throw new Error(`${context}: ${JSON.stringify(AirlockError.from(error).toJSON())}`);
        });
        expect(verified.authType, context).toBe('query');
        expect(verified.payloadHash, context).toBe(service === 's3' ? 'UNSIGNED-PAYLOAD' : EMPTY_SHA256);
        await expect(verifyRequest({ ...options, now: new Date(request.date.getTime() + (expiresIn + 1) * 1000) }), context).rejects.toMatchObject({
          code: 'AUTH_REQUEST_EXPIRED',
        });
      }
    });
  }
});

/** What the test server saw: the verification result or the error code, and the decoded body. */
interface ServerOutcome {
  readonly verified?: { accessKeyId: string; authType: string; payloadHash: string };
  readonly code?: string;
  readonly reason?: string;
  readonly body?: string;
  readonly trailers?: Record<string, string>;
}

/**
 * A real Node HTTP server verifying with exactly what Node hands it: req.method, req.url split at
 * '?', req.headersDistinct, and the body. aws-chunked bodies go through the chunk decoder.
 */
async function handle(req: IncomingMessage, service: string): Promise<ServerOutcome> {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const pieces: Buffer[] = [];
  for await (const piece of req) pieces.push(piece as Buffer);
  const body = Buffer.concat(pieces);
  const streaming = (req.headersDistinct['x-amz-content-sha256'] ?? [])[0]?.startsWith('STREAMING-') === true;
  try {
    const verified = await verifyRequest({
      method: req.method ?? 'GET',
      path: q < 0 ? url : url.slice(0, q),
      rawQuery: q < 0 ? '' : url.slice(q + 1),
      headers: req.headersDistinct,
      ...(streaming ? {} : { payloadHash: sha256(body) }),
      lookupSecret,
      region: 'eu-central-1',
      service,
      requireSignedAmzHeaders: service === 's3',
    });
    const outcome = { accessKeyId: verified.accessKeyId, authType: verified.authType, payloadHash: verified.payloadHash };
    const mode = chunkedPayloadMode(verified.payloadHash);
    if (mode === undefined) return { verified: outcome, body: body.toString('utf8') };
    const decoded: Buffer[] = [];
    const decoder = createChunkedPayloadDecoder({
      ...verified,
      ...mode,
      expectedDecodedLength: Number((req.headersDistinct['x-amz-decoded-content-length'] ?? ['0'])[0]),
    });
    decoder.on('data', (piece: Buffer) => decoded.push(piece));
    await pipeline(Readable.from([body]), decoder);
    verified.signingKey.fill(0);
    return { verified: outcome, body: Buffer.concat(decoded).toString('utf8'), trailers: Object.fromEntries(await decoder.trailers) };
  } catch (error) {
    const airlock = AirlockError.from(error);
    return { code: airlock.code, reason: String(airlock.details?.reason) };
  }
}

describe('over a real Node HTTP server', () => {
  let server: Server;
  let port = 0;

  beforeAll(async () => {
    server = createServer((req, res) => {
      void handle(req, req.headers['x-test-service'] === 's3' ? 's3' : 'kms').then((outcome) => {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(outcome));
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    server.close();
    await once(server, 'close');
  });

  async function send(method: string, target: string, headers: OutgoingHttpHeaders, body?: Buffer | string): Promise<ServerOutcome> {
    const req = httpRequest({ host: '127.0.0.1', port, method, path: target, headers, setHost: false });
    req.end(body);
    const [res] = (await once(req, 'response')) as [IncomingMessage];
    const pieces: Buffer[] = [];
    for await (const piece of res) pieces.push(piece as Buffer);
    return JSON.parse(Buffer.concat(pieces).toString('utf8')) as ServerOutcome;
  }

  const host = (): string => `127.0.0.1:${port}`;
  const credentials = { accessKeyId: ACCESS_KEY, secretAccessKey: SECRET };

  it('accepts a KMS-style JSON request with repeated and space-padded headers', async () => {
    const body = JSON.stringify({ KeyId: 'alias/airlock', Plaintext: 'aGVsbG8=' });
    const headers: Array<[string, string]> = [
      ['host', host()],
      ['content-type', 'application/x-amz-json-1.1'],
      ['x-amz-target', 'TrentService.Encrypt'],
      ['x-test-service', 'kms'],
      ['x-repeated', 'one'],
      ['x-repeated', '  two   words  '],
    ];
    const signed = signRequest({ method: 'POST', path: '/', headers, body, credentials, region: 'eu-central-1', service: 'kms' });
    const wire: OutgoingHttpHeaders = { ...signed.headers, 'x-repeated': ['one', '  two   words  '] };
    for (const [name, value] of headers) if (name !== 'x-repeated') wire[name] = value;
    const outcome = await send('POST', '/', wire, body);
    expect(outcome.verified).toEqual({ accessKeyId: ACCESS_KEY, authType: 'header', payloadHash: sha256(body) });
    // The same request with a changed body is refused.
    expect(await send('POST', '/', wire, body.replace('aGVsbG8=', 'aGVsbG9=')).then((o) => o.code)).toBe('AUTH_SIGNATURE_MISMATCH');
  });

  it('accepts S3-style requests with awkward keys, and presigned URLs, from our signer and the SDK signer', async () => {
    const key = `/bucket/${["a b+c", "it's (1)*!", 'ünï/cødé', '~tilde', '100%'].map(encodeSegment).join('/')}`;
    const s3 = { region: 'eu-central-1', service: 's3', credentials } as const;
    const signed = signRequest({ ...s3, method: 'GET', path: key, query: 'list-type=2&prefix=a%2Fb&acl', headers: { host: host(), 'x-test-service': 's3' } });
    const outcome = await send('GET', `${key}?list-type=2&prefix=a%2Fb&acl`, { host: host(), 'x-test-service': 's3', ...signed.headers });
    expect(outcome.verified?.authType).toBe('header');

    const presigned = presignUrl({ ...s3, method: 'GET', path: key, headers: { host: host(), 'x-test-service': 's3' }, expiresInSeconds: 60 });
    expect((await send('GET', `${key}?${presigned.query}`, { host: host(), 'x-test-service': 's3' })).verified?.payloadHash).toBe('UNSIGNED-PAYLOAD');
    // An x-amz-* header the URL did not sign is refused by an S3 edge.
    expect(await send('GET', `${key}?${presigned.query}`, { host: host(), 'x-test-service': 's3', 'x-amz-acl': 'public-read' }).then((o) => o.reason)).toBe(
      'amz-header-not-signed',
    );

    if (!SKIP_SMITHY) {
      const [sdk] = runSmithy([
        smithyJob('s3', true, {
          presign: true,
          method: 'GET',
          path: key,
          query: { 'response-content-type': 'text/plain; charset=utf-8' },
          headers: { host: host(), 'x-test-service': 's3', 'X-Amz-Content-Sha256': 'UNSIGNED-PAYLOAD' },
          date: new Date().toISOString(),
          expiresIn: 300,
        }),
      ]);
      const viaSdk = await send('GET', `${key}?${rawQueryOf((sdk as SmithyResult).query)}`, { host: host(), 'x-test-service': 's3' });
      expect(viaSdk.verified?.authType).toBe('query');
    }
  });

  it('decodes a signed aws-chunked upload with a trailer sent over HTTP', async () => {
    const data = Buffer.from('chunked upload over a real socket. '.repeat(5000));
    const date = new Date();
    const headers = {
      host: host(),
      'x-test-service': 's3',
      'content-encoding': 'aws-chunked',
      'x-amz-decoded-content-length': String(data.byteLength),
      'x-amz-trailer': 'x-amz-checksum-sha256',
    };
    const signed = signRequest({
      method: 'PUT',
      path: '/bucket/object',
      headers,
      payloadHash: STREAMING_SIGNED_PAYLOAD_TRAILER,
      credentials,
      region: 'eu-central-1',
      service: 's3',
      date,
    });
    const signingKey = deriveSigningKey(SECRET, date, 'eu-central-1', 's3');
    const checksum = createHash('sha256').update(data).digest('base64');
    const encoder = createChunkedPayloadEncoder({
      mode: 'signed',
      signingKey,
      seedSignature: signed.signature,
      scope: signed.scope,
      date: signed.amzDate,
      chunkSize: 8192,
      trailers: { 'x-amz-checksum-sha256': checksum },
    });
    const encoded: Buffer[] = [];
    encoder.on('data', (piece: Buffer) => encoded.push(piece));
    await pipeline(Readable.from([data]), encoder);
    const outcome = await send('PUT', '/bucket/object', { ...headers, ...signed.headers }, Buffer.concat(encoded));
    expect(outcome.code).toBeUndefined();
    expect(outcome.body).toBe(data.toString('utf8'));
    expect(outcome.trailers).toEqual({ 'x-amz-checksum-sha256': checksum });
  });
});
