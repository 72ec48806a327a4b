// Protocol-layer tests of the S3 HTTP handler over real TLS, against the real storage engine and the real embedded KMS (test/helpers.ts).
import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import type { IncomingHttpHeaders } from 'node:http';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect as tlsConnect } from 'node:tls';
import { crc32 } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AirlockError, createLogger, Redactor, type AirlockErrorCode } from '@airlock/common';
import {
  createChunkedPayloadEncoder,
  deriveSigningKey,
  presignUrl,
  signRequest,
  STREAMING_SIGNED_PAYLOAD,
  STREAMING_UNSIGNED_PAYLOAD_TRAILER,
  UNSIGNED_PAYLOAD,
} from '@airlock/crypto';
import { issueServerCertificate } from '@airlock/pki';
import { startTestStack, type TestStack } from '../../test/helpers.js';
import { s3ErrorFor, s3ErrorXml } from './s3-errors.js';
import { parseRange } from './s3-request.js';
import { startS3Listener, type S3Listener } from './s3-server.js';

function md5Hex(data: Buffer): string {
  return createHash('md5').update(data).digest('hex');
}

/** x-amz-checksum-crc32 as on the wire: the big-endian CRC32, base64. */
function crc32Base64(data: Buffer): string {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(crc32(data) >>> 0);
  return out.toString('base64');
}

// --- harness --------------------------------------------------------------------------------------

const REGION = 'us-east-1';
const credentials = { accessKeyId: 'AKIDPROTOCOLTEST', secretAccessKey: 'protocol-test-secret-key-canary-9f3c1e' };
/** The listener's body limit: above the engine's 5 MiB minimum for a multipart part that is not the last. */
const MAX_OBJECT_BYTES = 6 * 1024 * 1024;
let stack: TestStack;
const logs: string[] = [];
let listener: S3Listener;
let caPem: string;
let host: string;

interface Reply {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
  readonly text: string;
}

function send(method: string, target: string, headers: Record<string, string | number> = {}, body?: Buffer | string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      { host: '127.0.0.1', port: listener.port, method, path: target, headers, ca: caPem, agent: false },
      (res) => {
        buffer(res).then((data) => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: data, text: data.toString('utf8') }), reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

interface SignOptions {
  readonly query?: string;
  readonly headers?: Record<string, string>;
  readonly body?: Buffer | string;
  readonly payloadHash?: string;
  readonly date?: Date;
}

/** Sends a SigV4 header-signed request (x-amz-content-sha256 added by the signer, as S3 requires). */
function s3(method: string, path: string, options: SignOptions = {}): Promise<Reply> {
  const headers: Record<string, string> = { host, ...(options.headers ?? {}) };
  const signed = signRequest({
    method,
    path,
    query: options.query ?? '',
    headers,
    ...(options.payloadHash !== undefined ? { payloadHash: options.payloadHash } : options.body !== undefined ? { body: options.body } : {}),
    credentials,
    region: REGION,
    service: 's3',
    ...(options.date === undefined ? {} : { date: options.date }),
  });
  const target = options.query === undefined || options.query === '' ? path : `${path}?${options.query}`;
  return send(method, target, { ...headers, ...signed.headers }, options.body);
}

function xmlField(text: string, name: string): string | undefined {
  return new RegExp(`<${name}>([^<]*)</${name}>`).exec(text)?.[1];
}

function xmlFields(text: string, name: string): string[] {
  return [...text.matchAll(new RegExp(`<${name}>([^<]*)</${name}>`, 'g'))].map((m) => m[1] as string);
}

function expectS3Error(reply: Reply, status: number, code: string): void {
  expect({ status: reply.status, code: xmlField(reply.text, 'Code') }).toEqual({ status, code });
  expect(reply.headers['content-type']).toBe('application/xml');
  expect(xmlField(reply.text, 'RequestId')).toBe(reply.headers['x-amz-request-id']);
}

function rawExchange(payload: string | Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port: listener.port, ca: caPem, servername: 'localhost' }, () => socket.write(payload));
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('end', () => resolve(Buffer.concat(chunks).toString('latin1')));
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    socket.on('error', reject);
  });
}

/** The bytes the engine holds for an object, read through its public API. */
async function stored(bucket: string, key: string): Promise<Buffer> {
  return buffer((await stack.engine.getObject(bucket, key)).body);
}

/** The engine holds no such object. */
function expectAbsent(bucket: string, key: string): void {
  expect(() => stack.engine.headObject(bucket, key)).toThrow(expect.objectContaining({ code: 'OBJECT_NOT_FOUND' }) as Error);
}

/** Every stored body file (`*.data`) under the stack's directory, by path. */
async function dataFiles(): Promise<Set<string>> {
  const entries = await readdir(stack.dir, { recursive: true });
  return new Set(entries.filter((entry) => entry.endsWith('.data')).map((entry) => join(stack.dir, entry)));
}

beforeAll(async () => {
  stack = await startTestStack();
  const tls = await issueServerCertificate({ ca: stack.ca, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  caPem = stack.ca.cert;
  const log = createLogger({ level: 'debug', destination: { write: (line: string) => void logs.push(line) }, redactor: new Redactor() });
  listener = await startS3Listener({
    engine: stack.engine,
    lookupSecret: (id) => (id === credentials.accessKeyId ? credentials.secretAccessKey : undefined),
    tls: { cert: tls.cert, key: tls.key },
    host: '127.0.0.1',
    port: 0,
    region: REGION,
    log,
    maxObjectBytes: MAX_OBJECT_BYTES,
  });
  host = `127.0.0.1:${listener.port}`;
});

afterAll(async () => {
  await listener.close();
  await stack.stop();
});

// --- tests ----------------------------------------------------------------------------------------

describe('error mapping', () => {
  const cases: Array<[AirlockErrorCode, string, number]> = [
    ['BUCKET_NOT_FOUND', 'NoSuchBucket', 404],
    ['OBJECT_NOT_FOUND', 'NoSuchKey', 404],
    ['BUCKET_ALREADY_EXISTS', 'BucketAlreadyOwnedByYou', 409],
    ['BUCKET_NOT_EMPTY', 'BucketNotEmpty', 409],
    ['INVALID_BUCKET_NAME', 'InvalidBucketName', 400],
    ['UPLOAD_NOT_FOUND', 'NoSuchUpload', 404],
    ['INVALID_PART', 'InvalidPart', 400],
    ['INVALID_PART_ORDER', 'InvalidPartOrder', 400],
    ['ENTITY_TOO_SMALL', 'EntityTooSmall', 400],
    ['RANGE_NOT_SATISFIABLE', 'InvalidRange', 416],
    ['DIGEST_MISMATCH', 'BadDigest', 400],
    ['INCOMPLETE_BODY', 'IncompleteBody', 400],
    ['MALFORMED_XML', 'MalformedXML', 400],
    ['INVALID_ARGUMENT', 'InvalidArgument', 400],
    ['NOT_IMPLEMENTED', 'NotImplemented', 501],
    ['METHOD_NOT_ALLOWED', 'MethodNotAllowed', 405],
    ['PRECONDITION_FAILED', 'PreconditionFailed', 412],
    ['WRITE_CONFLICT', 'ConditionalRequestConflict', 409],
    ['PAYLOAD_TOO_LARGE', 'EntityTooLarge', 400],
    ['AUTH_MISSING', 'AccessDenied', 403],
    ['AUTH_MALFORMED', 'AuthorizationHeaderMalformed', 400],
    ['AUTH_UNKNOWN_ACCESS_KEY', 'InvalidAccessKeyId', 403],
    ['AUTH_SIGNATURE_MISMATCH', 'SignatureDoesNotMatch', 403],
    ['AUTH_REQUEST_EXPIRED', 'RequestTimeTooSkewed', 403],
    ['AUTH_SCOPE_INVALID', 'AuthorizationHeaderMalformed', 400],
    ['AUTH_EXPIRES_TOO_LARGE', 'AuthorizationQueryParametersError', 400],
    ['KMS_KEY_DISABLED', 'KMS.DisabledException', 400],
    ['KMS_KEY_PENDING_DELETION', 'KMS.KMSInvalidStateException', 400],
    ['KMS_INVALID_STATE', 'KMS.KMSInvalidStateException', 400],
    ['KMS_KEY_NOT_FOUND', 'KMS.NotFoundException', 400],
    ['KMS_INVALID_CIPHERTEXT', 'InternalError', 500],
    ['CIPHERTEXT_AUTH_FAILED', 'InternalError', 500],
    ['CIPHERTEXT_MALFORMED', 'InternalError', 500],
    ['DISK_FULL', 'InternalError', 500],
    ['PERMISSION_DENIED', 'InternalError', 500],
    ['INTERNAL', 'InternalError', 500],
    ['KMS_UNAVAILABLE', 'ServiceUnavailable', 503],
  ];
  it.each(cases)('%s → %s %i', (code, s3Code, status) => {
    expect(s3ErrorFor(new AirlockError(code))).toMatchObject({ code: s3Code, status });
  });

  it('uses the query-auth forms for presigned URLs', () => {
    expect(s3ErrorFor(new AirlockError('AUTH_REQUEST_EXPIRED'), 'query')).toEqual({ code: 'AccessDenied', status: 403, message: 'Request has expired' });
    expect(s3ErrorFor(new AirlockError('AUTH_MALFORMED'), 'query')).toMatchObject({ code: 'AuthorizationQueryParametersError', status: 400 });
    expect(s3ErrorFor(new AirlockError('AUTH_SCOPE_INVALID'), 'query')).toMatchObject({ code: 'AuthorizationQueryParametersError', status: 400 });
    expect(s3ErrorFor(new AirlockError('AUTH_EXPIRES_TOO_LARGE', undefined, { details: { reason: 'expires-too-large' } }), 'query').message).toBe(
      'X-Amz-Expires must be less than a week (in seconds) that is 604800',
    );
  });

  it('refines by reason: content SHA-256, key length, unsigned x-amz headers', () => {
    expect(s3ErrorFor(new AirlockError('DIGEST_MISMATCH', undefined, { details: { kind: 'content-sha256' } })).code).toBe('XAmzContentSHA256Mismatch');
    expect(s3ErrorFor(new AirlockError('INVALID_OBJECT_KEY', undefined, { details: { reason: 'key-too-long' } })).code).toBe('KeyTooLongError');
    expect(s3ErrorFor(new AirlockError('AUTH_MALFORMED', undefined, { details: { reason: 'amz-header-not-signed' } }))).toMatchObject({ code: 'AccessDenied', status: 403 });
  });

  it('passes KMS messages (which name the key ARN) through, and never the message of a server fault', async () => {
    const { arn } = await stack.kms.createKey({ description: 's3-http error mapping' });
    expect(s3ErrorFor(new AirlockError('KMS_KEY_DISABLED', `${arn} is disabled.`)).message).toBe(`${arn} is disabled.`);
    const fault = s3ErrorFor(new AirlockError('CIPHERTEXT_AUTH_FAILED', 'segment 7 of /data/objects/abc failed'));
    expect(fault.message).not.toContain('segment');
  });

  it('writes the S3 XML error document, with StringToSign and CanonicalRequest for a signature mismatch', () => {
    const error = new AirlockError('AUTH_SIGNATURE_MISMATCH', undefined, {
      details: { reason: 'signature-mismatch', stringToSign: 'AWS4-HMAC-SHA256\n…', canonicalRequest: 'GET\n/b/k\n\nhost:x\n\nhost\nUNSIGNED-PAYLOAD', accessKeyId: 'AKID' },
    });
    const xml = s3ErrorXml(error, s3ErrorFor(error), '/b/k', 'REQ1');
    expect(xml).toMatch(/^<\?xml version="1.0" encoding="UTF-8"\?>\n<Error><Code>SignatureDoesNotMatch<\/Code><Message>/);
    expect(xml).toContain('<StringToSign>AWS4-HMAC-SHA256\n…</StringToSign>');
    expect(xml).toContain('<CanonicalRequest>GET\n/b/k\n\nhost:x\n\nhost\nUNSIGNED-PAYLOAD</CanonicalRequest>');
    expect(xml).toContain('<Resource>/b/k</Resource><RequestId>REQ1</RequestId></Error>');
  });
});

describe('Range parsing', () => {
  it('parses single byte ranges and ignores other units and multiple ranges', () => {
    expect(parseRange('bytes=0-9')).toEqual({ start: 0, end: 9 });
    expect(parseRange('bytes=5-')).toEqual({ start: 5 });
    expect(parseRange('bytes=-3')).toEqual({ suffixLength: 3 });
    expect(parseRange('bytes=0-1,4-5')).toBeUndefined();
    expect(parseRange('items=0-1')).toBeUndefined();
    expect(parseRange(undefined)).toBeUndefined();
    expect(parseRange('bytes=0-99999999999999999999')).toEqual({ start: 0, end: Number.MAX_SAFE_INTEGER });
  });

  it.each(['bytes=9-5', 'bytes=abc', 'bytes=-', 'bytes=-0', 'bytes=1-2-3'])('%s is InvalidRange', (value) => {
    expect(() => parseRange(value)).toThrow(expect.objectContaining({ code: 'RANGE_NOT_SATISFIABLE' }) as Error);
  });
});

describe('listener basics', () => {
  it('serves GET /health without authentication, and tags every response with request ids', async () => {
    const reply = await send('GET', '/health');
    expect(reply.status).toBe(200);
    // keyEvents: the state of the subscription to the embedded KMS's key events (live once its first message arrived).
    expect(JSON.parse(reply.text)).toEqual({ status: 'ok', kms: 'ok', keyEvents: expect.stringMatching(/^(connecting|live)$/) });
    expect(reply.headers['x-amz-request-id']).toMatch(/^[0-9A-F]{16}$/);
    expect(reply.headers['x-amz-id-2']).toBeTruthy();
  });

  it('refuses anonymous requests with AccessDenied', async () => {
    const reply = await send('GET', '/', { host });
    expectS3Error(reply, 403, 'AccessDenied');
    expect(xmlField(reply.text, 'Resource')).toBe('/');
  });

  it('refuses an unknown access key, a wrong secret, and an unsigned x-amz-* header', async () => {
    const unknown = signRequest({ method: 'GET', path: '/', headers: { host }, credentials: { accessKeyId: 'AKIDUNKNOWN', secretAccessKey: 'x' }, region: REGION, service: 's3' });
    expectS3Error(await send('GET', '/', { host, ...unknown.headers }), 403, 'InvalidAccessKeyId');
    const wrong = signRequest({ method: 'GET', path: '/', headers: { host }, credentials: { ...credentials, secretAccessKey: 'wrong' }, region: REGION, service: 's3' });
    const mismatch = await send('GET', '/', { host, ...wrong.headers });
    expectS3Error(mismatch, 403, 'SignatureDoesNotMatch');
    expect(mismatch.text).toContain('<CanonicalRequest>GET\n/\n');
    expect(mismatch.text).not.toContain(credentials.secretAccessKey);
    const signed = signRequest({ method: 'GET', path: '/', headers: { host }, credentials, region: REGION, service: 's3' });
    const reply = await send('GET', '/', { host, ...signed.headers, 'x-amz-meta-sneaky': 'added after signing' });
    expectS3Error(reply, 403, 'AccessDenied');
  });

  it('answers an oversized request head with 431', async () => {
    const response = await rawExchange(`GET /health HTTP/1.1\r\nHost: ${host}\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
    expect(response).toMatch(/^HTTP\/1\.1 431 /);
  });

  it('answers garbage with 400 and keeps serving', async () => {
    const response = await rawExchange(Buffer.from([0x00, 0x01, 0xff, 0x47, 0x0d, 0x0a, 0x0d, 0x0a]));
    expect(response).toMatch(/^HTTP\/1\.1 400 /);
    const again = await rawExchange('NOT AN HTTP REQUEST\r\n\r\n');
    expect(again).toMatch(/^HTTP\/1\.1 400 /);
    expect((await send('GET', '/health')).status).toBe(200);
  });

  it('never logs credentials, signatures, query strings or bodies', async () => {
    const url = presignUrl({ method: 'GET', path: '/logbucket/secret-key', headers: { host }, credentials, region: REGION, service: 's3', expiresInSeconds: 60 });
    await send('GET', `/logbucket/secret-key?${url.query}`, { host });
    await s3('PUT', '/logbucket');
    await s3('PUT', '/logbucket/obj', { body: 'BODY-CANARY-71c2' });
    const text = logs.join('\n');
    expect(text).not.toContain(credentials.secretAccessKey);
    expect(text).not.toContain(url.signature);
    expect(text).not.toContain('X-Amz-Credential');
    expect(text).not.toContain('BODY-CANARY-71c2');
    expect(text).not.toContain('AWS4-HMAC-SHA256 Credential');
  });
});

describe('buckets', () => {
  it('creates (with a CreateBucketConfiguration), heads, lists, locates and deletes buckets', async () => {
    const config = '<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><LocationConstraint>us-east-1</LocationConstraint></CreateBucketConfiguration>';
    expect((await s3('PUT', '/bucket-one', { body: config })).status).toBe(200);
    expectS3Error(await s3('PUT', '/bucket-one'), 409, 'BucketAlreadyOwnedByYou');
    const head = await s3('HEAD', '/bucket-one');
    expect(head.status).toBe(200);
    expect(head.headers['x-amz-bucket-region']).toBe(REGION);
    const list = await s3('GET', '/');
    expect(list.status).toBe(200);
    expect(xmlFields(list.text, 'Name')).toContain('bucket-one');
    const location = await s3('GET', '/bucket-one', { query: 'location' });
    expect(location.text).toContain('<LocationConstraint xmlns="http://s3.amazonaws.com/doc/2006-03-01/"></LocationConstraint>');
    expect((await s3('PUT', '/bucket-one/k', { body: 'x' })).status).toBe(200);
    expectS3Error(await s3('DELETE', '/bucket-one'), 409, 'BucketNotEmpty');
    expect((await s3('DELETE', '/bucket-one/k')).status).toBe(204);
    expect((await s3('DELETE', '/bucket-one')).status).toBe(204);
    const missing = await s3('HEAD', '/bucket-one');
    expect(missing.status).toBe(404);
    expect(missing.body.byteLength).toBe(0);
    expectS3Error(await s3('GET', '/bucket-one', { query: 'list-type=2' }), 404, 'NoSuchBucket');
    expectS3Error(await s3('PUT', '/Bad_Name'), 400, 'InvalidBucketName');
  });

  it('sets, gets and deletes bucket encryption; GET shows the full key ARN', async () => {
    await s3('PUT', '/enc-bucket');
    const key = await stack.kms.createKey({ description: 's3-http bucket encryption' });
    expect(key.arn).not.toBe(key.keyId);
    const body = `<ServerSideEncryptionConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>aws:kms</SSEAlgorithm><KMSMasterKeyID>${key.keyId}</KMSMasterKeyID></ApplyServerSideEncryptionByDefault><BucketKeyEnabled>true</BucketKeyEnabled></Rule></ServerSideEncryptionConfiguration>`;
    const md5 = createHash('md5').update(body).digest('base64');
    expect((await s3('PUT', '/enc-bucket', { query: 'encryption', body, headers: { 'content-md5': md5 } })).status).toBe(200);
    const got = await s3('GET', '/enc-bucket', { query: 'encryption' });
    expect(got.status).toBe(200);
    expect(xmlField(got.text, 'SSEAlgorithm')).toBe('aws:kms');
    expect(xmlField(got.text, 'KMSMasterKeyID')).toBe(key.arn);
    expect(xmlField(got.text, 'BucketKeyEnabled')).toBe('true');
    const put = await s3('PUT', '/enc-bucket/object', { body: 'data' });
    expect(put.headers['x-amz-server-side-encryption']).toBe('aws:kms');
    expect(put.headers['x-amz-server-side-encryption-aws-kms-key-id']).toBe(key.arn);
    expect(put.headers['x-amz-server-side-encryption-bucket-key-enabled']).toBe('true');
    expectS3Error(await s3('PUT', '/enc-bucket', { query: 'encryption', body, headers: { 'content-md5': createHash('md5').update('other').digest('base64') } }), 400, 'BadDigest');
    expect((await s3('DELETE', '/enc-bucket', { query: 'encryption' })).status).toBe(204);
    expect(xmlField((await s3('GET', '/enc-bucket', { query: 'encryption' })).text, 'SSEAlgorithm')).toBe('AES256');
  });

  it('refuses malformed XML, DOCTYPEs and entity declarations with MalformedXML', async () => {
    await s3('PUT', '/xml-bucket');
    expectS3Error(await s3('PUT', '/xml-bucket', { query: 'encryption', body: '<ServerSideEncryptionConfiguration><Rule>' }), 400, 'MalformedXML');
    const bomb = '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><Delete><Object><Key>&b;</Key></Object></Delete>';
    expectS3Error(await s3('POST', '/xml-bucket', { query: 'delete', body: bomb }), 400, 'MalformedXML');
    expectS3Error(await s3('POST', '/xml-bucket', { query: 'delete', body: '<Delete><Object><Key>&undeclared;</Key></Object></Delete>' }), 400, 'MalformedXML');
    expectS3Error(await s3('POST', '/xml-bucket', { query: 'delete', body: '<NotDelete/>' }), 400, 'MalformedXML');
    expectS3Error(await s3('PUT', '/xml-bucket', { query: 'encryption', body: Buffer.from([0x3c, 0xff, 0xfe, 0x3e]) }), 400, 'MalformedXML');
  });

  it('answers GET ?acl with a fixed private ACL, and other subresources with NotImplemented', async () => {
    await s3('PUT', '/sub-bucket');
    const acl = await s3('GET', '/sub-bucket', { query: 'acl' });
    expect(acl.status).toBe(200);
    expect(acl.text).toContain('<Permission>FULL_CONTROL</Permission>');
    for (const sub of ['policy', 'lifecycle', 'replication', 'tagging', 'website']) expectS3Error(await s3('GET', '/sub-bucket', { query: sub }), 501, 'NotImplemented');
    expectS3Error(await s3('GET', '/no-such-bucket', { query: 'policy' }), 404, 'NoSuchBucket');
    await s3('PUT', '/sub-bucket/tagged', { body: 'x' });
    const tagging = await s3('GET', '/sub-bucket/tagged', { query: 'tagging' });
    expect(tagging.status).toBe(200);
    expect(tagging.text).toContain('<TagSet></TagSet>');
    expectS3Error(await s3('PUT', '/sub-bucket/tagged', { headers: { 'x-amz-tagging': 'a=b' }, body: 'x' }), 501, 'NotImplemented');
    expectS3Error(await s3('PUT', '/sub-bucket', { query: 'acl', body: '' }), 501, 'NotImplemented');
    expectS3Error(await s3('POST', '/'), 405, 'MethodNotAllowed');
  });
});

describe('objects', () => {
  beforeAll(async () => {
    await s3('PUT', '/objects');
  });

  it('puts and gets an object with metadata, content type, checksums and odd key characters', async () => {
    const key = 'dir/sub/ü x+y&z.txt';
    const path = `/objects/${key.split('/').map(encodeURIComponent).join('/')}`;
    const data = Buffer.from('hello, protocol layer');
    const crc = crc32Base64(data);
    const put = await s3('PUT', path, { body: data, headers: { 'content-type': 'text/plain', 'x-amz-meta-owner': 'tests', 'x-amz-checksum-crc32': crc } });
    expect(put.status).toBe(200);
    expect(put.headers.etag).toBe(`"${md5Hex(data)}"`);
    expect(put.headers['x-amz-checksum-crc32']).toBe(crc);
    expect((await stored('objects', key)).equals(data)).toBe(true);
    expect(stack.engine.headObject('objects', key).checksums).toEqual({ CRC32: crc });

    const get = await s3('GET', path, { headers: { 'x-amz-checksum-mode': 'ENABLED' } });
    expect(get.status).toBe(200);
    expect(get.body.equals(data)).toBe(true);
    expect(get.headers).toMatchObject({
      'content-type': 'text/plain',
      'content-length': String(data.length),
      'accept-ranges': 'bytes',
      'x-amz-meta-owner': 'tests',
      'x-amz-server-side-encryption': 'AES256',
      'x-amz-checksum-crc32': crc,
      etag: `"${md5Hex(data)}"`,
    });
    expect(get.headers['last-modified']).toMatch(/^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/);

    const head = await s3('HEAD', path);
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe(String(data.length));
    expect(head.body.byteLength).toBe(0);

    const overridden = await s3('GET', path, { query: 'response-content-type=application%2Fjson&response-content-disposition=attachment' });
    expect(overridden.headers['content-type']).toBe('application/json');
    expect(overridden.headers['content-disposition']).toBe('attachment');

    expectS3Error(await s3('GET', '/objects/missing'), 404, 'NoSuchKey');
    expect((await s3('HEAD', '/objects/missing')).status).toBe(404);
  });

  it('serves ranges: 206 with Content-Range, 416 InvalidRange, and 200 for multiple ranges', async () => {
    const data = Buffer.from('0123456789abcdefghij');
    await s3('PUT', '/objects/range', { body: data });
    const cases: Array<[string, number, string | undefined, string]> = [
      ['bytes=0-9', 206, 'bytes 0-9/20', '0123456789'],
      ['bytes=5-', 206, 'bytes 5-19/20', '56789abcdefghij'],
      ['bytes=-3', 206, 'bytes 17-19/20', 'hij'],
      ['bytes=15-100', 206, 'bytes 15-19/20', 'fghij'],
      ['bytes=0-1,4-5', 200, undefined, data.toString()],
    ];
    for (const [range, status, contentRange, body] of cases) {
      const reply = await s3('GET', '/objects/range', { headers: { range } });
      expect({ range, status: reply.status, contentRange: reply.headers['content-range'], body: reply.text }).toEqual({ range, status, contentRange, body });
    }
    expect((await s3('GET', '/objects/range')).status).toBe(200);
    expectS3Error(await s3('GET', '/objects/range', { headers: { range: 'bytes=20-' } }), 416, 'InvalidRange');
    expectS3Error(await s3('GET', '/objects/range', { headers: { range: 'bytes=9-5' } }), 416, 'InvalidRange');
    expectS3Error(await s3('GET', '/objects/range', { headers: { range: 'bytes=abc' } }), 416, 'InvalidRange');
    const head = await s3('HEAD', '/objects/range', { headers: { range: 'bytes=2-4' } });
    expect({ status: head.status, length: head.headers['content-length'], range: head.headers['content-range'] }).toEqual({ status: 206, length: '3', range: 'bytes 2-4/20' });
  });

  it('honours If-None-Match (304) and If-Match (412)', async () => {
    const put = await s3('PUT', '/objects/cond', { body: 'conditional' });
    const etag = put.headers.etag as string;
    const notModified = await s3('GET', '/objects/cond', { headers: { 'if-none-match': etag } });
    expect(notModified.status).toBe(304);
    expect(notModified.body.byteLength).toBe(0);
    expectS3Error(await s3('GET', '/objects/cond', { headers: { 'if-match': '"0000"' } }), 412, 'PreconditionFailed');
    expect((await s3('GET', '/objects/cond', { headers: { 'if-match': etag } })).text).toBe('conditional');
  });

  it('rejects a plain body whose SHA-256 differs from the signed x-amz-content-sha256, storing nothing', async () => {
    const headers: Record<string, string> = { host };
    const signed = signRequest({ method: 'PUT', path: '/objects/sha', headers, body: 'the signed body', credentials, region: REGION, service: 's3' });
    const reply = await send('PUT', '/objects/sha', { ...headers, ...signed.headers }, 'the other body!');
    expectS3Error(reply, 400, 'XAmzContentSHA256Mismatch');
    expectAbsent('objects', 'sha');
  });

  it('accepts UNSIGNED-PAYLOAD bodies and verifies Content-MD5', async () => {
    const data = Buffer.from('unsigned payload');
    const md5 = createHash('md5').update(data).digest('base64');
    expect((await s3('PUT', '/objects/unsigned', { payloadHash: UNSIGNED_PAYLOAD, body: data, headers: { 'content-md5': md5 } })).status).toBe(200);
    expectS3Error(await s3('PUT', '/objects/unsigned', { payloadHash: UNSIGNED_PAYLOAD, body: data, headers: { 'content-md5': createHash('md5').update('x').digest('base64') } }), 400, 'BadDigest');
    expectS3Error(await s3('PUT', '/objects/unsigned', { payloadHash: UNSIGNED_PAYLOAD, body: data, headers: { 'content-md5': 'not-base64' } }), 400, 'InvalidDigest');
  });

  it('refuses bodies over the size limit with EntityTooLarge', async () => {
    const reply = await s3('PUT', '/objects/big', { payloadHash: UNSIGNED_PAYLOAD, body: Buffer.alloc(MAX_OBJECT_BYTES + 1) });
    expectS3Error(reply, 400, 'EntityTooLarge');
  });

  it('decodes a signed aws-chunked body, and refuses one with a tampered chunk', async () => {
    const data = randomBytes(150_000);
    const date = new Date();
    const headers: Record<string, string> = {
      host,
      'content-encoding': 'aws-chunked',
      'x-amz-decoded-content-length': String(data.length),
    };
    const signed = signRequest({ method: 'PUT', path: '/objects/chunked', headers, payloadHash: STREAMING_SIGNED_PAYLOAD, credentials, region: REGION, service: 's3', date });
    const encoder = createChunkedPayloadEncoder({
      mode: 'signed',
      signingKey: deriveSigningKey(credentials.secretAccessKey, date, REGION, 's3'),
      seedSignature: signed.signature,
      scope: signed.scope,
      date: signed.amzDate,
      chunkSize: 65_536,
    });
    const encoded = await buffer(Readable.from([data]).pipe(encoder));
    const reply = await send('PUT', '/objects/chunked', { ...headers, ...signed.headers, 'content-length': encoded.length }, encoded);
    expect(reply.status).toBe(200);
    // The length the engine was told is not observable; had it been wrong (e.g. the encoded Content-Length), the engine would have refused the body with IncompleteBody.
    expect(stack.engine.headObject('objects', 'chunked').size).toBe(data.length);
    expect((await stored('objects', 'chunked')).equals(data)).toBe(true);

    const tampered = Buffer.from(encoded);
    (tampered[1000] as number) ^= 0xff;
    const signed2 = signRequest({ method: 'PUT', path: '/objects/chunked2', headers, payloadHash: STREAMING_SIGNED_PAYLOAD, credentials, region: REGION, service: 's3', date });
    const encoder2 = createChunkedPayloadEncoder({
      mode: 'signed',
      signingKey: deriveSigningKey(credentials.secretAccessKey, date, REGION, 's3'),
      seedSignature: signed2.signature,
      scope: signed2.scope,
      date: signed2.amzDate,
      chunkSize: 65_536,
    });
    const encoded2 = await buffer(Readable.from([data]).pipe(encoder2));
    (encoded2[1000] as number) ^= 0xff;
    const refused = await send('PUT', '/objects/chunked2', { ...headers, ...signed2.headers, 'content-length': encoded2.length }, encoded2);
    expectS3Error(refused, 403, 'SignatureDoesNotMatch');
    expectAbsent('objects', 'chunked2');
  });

  it('passes an x-amz-checksum-crc32 trailer of an unsigned aws-chunked body to the engine', async () => {
    const data = randomBytes(70_000);
    const crc = crc32Base64(data);
    const headers: Record<string, string> = {
      host,
      'content-encoding': 'aws-chunked',
      'x-amz-decoded-content-length': String(data.length),
      'x-amz-trailer': 'x-amz-checksum-crc32',
      'x-amz-sdk-checksum-algorithm': 'CRC32',
    };
    const put = async (key: string, trailerValue: string): Promise<Reply> => {
      const signed = signRequest({ method: 'PUT', path: `/objects/${key}`, headers, payloadHash: STREAMING_UNSIGNED_PAYLOAD_TRAILER, credentials, region: REGION, service: 's3' });
      const encoder = createChunkedPayloadEncoder({ mode: 'unsigned', chunkSize: 16_384, trailers: { 'x-amz-checksum-crc32': trailerValue } });
      const encoded = await buffer(Readable.from([data]).pipe(encoder));
      return send('PUT', `/objects/${key}`, { ...headers, ...signed.headers, 'content-length': encoded.length }, encoded);
    };
    const reply = await put('trailer', crc);
    expect(reply.status).toBe(200);
    expect(reply.headers['x-amz-checksum-crc32']).toBe(crc);
    // The trailer reached the engine, which verified and stored it; which algorithms it computed (only the announced CRC32) is internal, but only CRC32 is stored.
    expect(stack.engine.headObject('objects', 'trailer').checksums).toEqual({ CRC32: crc });
    expect((await stored('objects', 'trailer')).equals(data)).toBe(true);
    expect((await s3('HEAD', '/objects/trailer', { headers: { 'x-amz-checksum-mode': 'ENABLED' } })).headers['x-amz-checksum-crc32']).toBe(crc);
    expectS3Error(await put('trailer-bad', crc32Base64(Buffer.from('other'))), 400, 'BadDigest');
    expectAbsent('objects', 'trailer-bad');
  });

  it('copies objects (COPY and REPLACE directives) and refuses a no-op copy onto itself', async () => {
    await s3('PUT', '/objects/src%20key', { body: 'copy me', headers: { 'x-amz-meta-a': '1', 'content-type': 'text/x-src' } });
    const copied = await s3('PUT', '/objects/dst', { headers: { 'x-amz-copy-source': '/objects/src%20key' } });
    expect(copied.status).toBe(200);
    expect(xmlField(copied.text, 'ETag')).toBe(`&quot;${md5Hex(Buffer.from('copy me'))}&quot;`);
    const got = await s3('GET', '/objects/dst');
    expect(got.text).toBe('copy me');
    expect(got.headers['x-amz-meta-a']).toBe('1');
    await s3('PUT', '/objects/dst2', { headers: { 'x-amz-copy-source': 'objects/src%20key', 'x-amz-metadata-directive': 'REPLACE', 'x-amz-meta-b': '2', 'content-type': 'text/x-new' } });
    const replaced = await s3('HEAD', '/objects/dst2');
    expect(replaced.headers['x-amz-meta-a']).toBeUndefined();
    expect(replaced.headers).toMatchObject({ 'x-amz-meta-b': '2', 'content-type': 'text/x-new' });
    expectS3Error(await s3('PUT', '/objects/dst', { headers: { 'x-amz-copy-source': '/objects/dst' } }), 400, 'InvalidRequest');
    expectS3Error(await s3('PUT', '/objects/dst3', { headers: { 'x-amz-copy-source': '/objects/nothing-here' } }), 404, 'NoSuchKey');
  });

  it('deletes many objects, quietly or not, reporting per-key errors', async () => {
    await s3('PUT', '/objects/del-1', { body: '1' });
    await s3('PUT', '/objects/del-2', { body: '2' });
    const body = '<Delete><Object><Key>del-1</Key></Object><Object><Key>del-2</Key></Object><Object><Key>never&amp;was</Key></Object></Delete>';
    const reply = await s3('POST', '/objects', { query: 'delete', body });
    expect(reply.status).toBe(200);
    expect(xmlFields(reply.text, 'Key')).toEqual(['del-1', 'del-2', 'never&amp;was']);
    expectAbsent('objects', 'del-1');
    expectAbsent('objects', 'del-2');
    const quiet = await s3('POST', '/objects', { query: 'delete', body: '<Delete><Quiet>true</Quiet><Object><Key>x</Key></Object></Delete>' });
    expect(quiet.text).not.toContain('<Deleted>');
    const tooLong = await s3('POST', '/objects', { query: 'delete', body: `<Delete><Object><Key>${'k'.repeat(1025)}</Key></Object></Delete>` });
    expect(xmlField(tooLong.text, 'Code')).toBe('KeyTooLongError');
  });

  it('refuses keys longer than 1024 bytes and keys that are not UTF-8', async () => {
    expectS3Error(await s3('PUT', `/objects/${'é'.repeat(513)}`.replace(/é/g, '%C3%A9'), { body: 'x' }), 400, 'KeyTooLongError');
    expectS3Error(await s3('PUT', '/objects/bad%FFkey', { body: 'x' }), 400, 'InvalidArgument');
  });

  it('maps the kill switch to KMS.DisabledException naming the key, and damaged data to a generic InternalError', async () => {
    // A bucket of its own under a customer key, so disabling that key touches no other test's objects.
    const key = await stack.kms.createKey({ description: 's3-http kill switch' });
    await s3('PUT', '/guarded');
    await stack.engine.putBucketEncryption('guarded', { algorithm: 'aws:kms', kmsKeyId: key.keyId, bucketKeyEnabled: true });
    const before = await dataFiles();
    const put = await s3('PUT', '/guarded/object', { body: 'guarded data' });
    expect(put.status).toBe(200);
    expect(put.headers['x-amz-server-side-encryption-aws-kms-key-id']).toBe(key.arn);
    const bodies = [...(await dataFiles())].filter((file) => !before.has(file));
    expect(bodies).toHaveLength(1);
    const bodyFile = bodies[0] as string;
    expect((await s3('GET', '/guarded/object')).text).toBe('guarded data');

    await stack.kms.disableKey(key.keyId);
    let refused: Reply | undefined;
    try {
      // The engine reuses an unwrapped bucket key for at most 1 s: GETs may succeed until then.
      const disabledAt = Date.now();
      while (Date.now() - disabledAt < 3000) {
        const reply = await s3('GET', '/guarded/object');
        if (reply.status !== 200) {
          refused = reply;
          break;
        }
        expect(reply.text).toBe('guarded data');
        await sleep(25);
      }
    } finally {
      await stack.kms.enableKey(key.keyId);
    }
    expect(refused).toBeDefined();
    const disabled = refused as Reply;
    expectS3Error(disabled, 400, 'KMS.DisabledException');
    expect(disabled.text).toContain(key.arn);
    expect(disabled.text).not.toContain('guarded data');
    expect((await s3('GET', '/guarded/object')).text).toBe('guarded data');

    // Flip one bit of the body's key commitment, the last of its ASF1 header (8-byte prefix, key reference, 32-byte salt, 7-byte nonce prefix,
    // 32-byte commitment): the engine then fails authentication when it opens the body, before any response header is sent.
    const original = await readFile(bodyFile);
    const damaged = Buffer.from(original);
    const headerLength = 8 + damaged.readUInt16BE(6) + 32 + 7 + 32;
    (damaged[headerLength - 1] as number) ^= 0x01;
    await writeFile(bodyFile, damaged);
    const logged = logs.length;
    try {
      const broken = await s3('GET', '/guarded/object');
      expectS3Error(broken, 500, 'InternalError');
      expect(xmlField(broken.text, 'Message')).toBe(s3ErrorFor(new AirlockError('INTERNAL')).message);
      expect(broken.text).not.toContain('CIPHERTEXT');
      expect(broken.text).not.toContain(stack.dir);
      expect(broken.text).not.toContain('.data');
      expect(logs.slice(logged).some((line) => line.includes('"level":50') && line.includes('CIPHERTEXT_AUTH_FAILED'))).toBe(true);
    } finally {
      await writeFile(bodyFile, original);
    }
    expect((await s3('GET', '/guarded/object')).text).toBe('guarded data');
  });

  it('survives a client that disconnects mid-upload, storing nothing', async () => {
    const before = await dataFiles();
    const headers: Record<string, string> = { host, 'content-length': '100000' };
    const signed = signRequest({ method: 'PUT', path: '/objects/cut-short', headers, payloadHash: UNSIGNED_PAYLOAD, credentials, region: REGION, service: 's3' });
    const head = Object.entries({ ...headers, ...signed.headers })
      .map(([name, value]) => `${name}: ${value}\r\n`)
      .join('');
    await new Promise<void>((resolve, reject) => {
      const socket = tlsConnect({ host: '127.0.0.1', port: listener.port, ca: caPem, servername: 'localhost' }, () => {
        socket.write(`PUT /objects/cut-short HTTP/1.1\r\n${head}\r\n`);
        socket.write(Buffer.alloc(1000));
        setTimeout(() => {
          socket.destroy();
          resolve();
        }, 50);
      });
      socket.on('error', reject);
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expectAbsent('objects', 'cut-short');
    expect(await dataFiles()).toEqual(before);
    expect((await send('GET', '/health')).status).toBe(200);
  });

  it('sends 100 Continue only once the request is authenticated', async () => {
    const attempt = (secret: string): Promise<{ status: number; sawContinue: boolean; text: string }> =>
      new Promise((resolve, reject) => {
        const data = Buffer.from('expect continue body');
        const headers: Record<string, string | number> = { host, 'content-length': data.length, expect: '100-continue' };
        const signed = signRequest({
          method: 'PUT',
          path: '/objects/continued',
          headers: { host, 'content-length': String(data.length) },
          payloadHash: UNSIGNED_PAYLOAD,
          credentials: { ...credentials, secretAccessKey: secret },
          region: REGION,
          service: 's3',
        });
        let sawContinue = false;
        const req = httpsRequest({ host: '127.0.0.1', port: listener.port, method: 'PUT', path: '/objects/continued', headers: { ...headers, ...signed.headers }, ca: caPem, agent: false });
        req.on('continue', () => {
          sawContinue = true;
          req.end(data);
        });
        req.on('response', (res) => {
          buffer(res).then((body) => {
            resolve({ status: res.statusCode ?? 0, sawContinue, text: body.toString() });
            req.destroy();
          }, reject);
        });
        req.on('error', (error: NodeJS.ErrnoException) => (error.code === 'ECONNRESET' ? undefined : reject(error)));
        req.flushHeaders();
      });
    expect(await attempt(credentials.secretAccessKey)).toMatchObject({ status: 200, sawContinue: true });
    expect((await stored('objects', 'continued')).toString()).toBe('expect continue body');
    const refused = await attempt('wrong-secret');
    expect(refused).toMatchObject({ status: 403, sawContinue: false });
    expect(xmlField(refused.text, 'Code')).toBe('SignatureDoesNotMatch');
  });
});

describe('listing', () => {
  const keys = ['a/1', 'a/2', 'b/1', 'c', 'd e+f&.txt', 'e/ü/1'];

  beforeAll(async () => {
    await s3('PUT', '/listing');
    for (const key of keys) await s3('PUT', `/listing/${key.split('/').map(encodeURIComponent).join('/')}`, { body: key });
  });

  it('pages ListObjectsV2 with a delimiter and encoding-type=url', async () => {
    const seen: { keys: string[]; prefixes: string[] } = { keys: [], prefixes: [] };
    let token: string | undefined;
    let pages = 0;
    do {
      const query = `delimiter=%2F&encoding-type=url&list-type=2&max-keys=2${token === undefined ? '' : `&continuation-token=${encodeURIComponent(token)}`}`;
      const reply = await s3('GET', '/listing', { query });
      expect(reply.status).toBe(200);
      expect(xmlField(reply.text, 'EncodingType')).toBe('url');
      // '/' stays as it is, as S3 writes it; botocore's unquote_plus is a no-op on it.
      expect(xmlField(reply.text, 'Delimiter')).toBe('/');
      expect(Number(xmlField(reply.text, 'KeyCount'))).toBeLessThanOrEqual(2);
      seen.keys.push(...xmlFields(reply.text, 'Key'));
      seen.prefixes.push(...[...reply.text.matchAll(/<CommonPrefixes><Prefix>([^<]*)<\/Prefix><\/CommonPrefixes>/g)].map((m) => m[1] as string));
      token = xmlField(reply.text, 'IsTruncated') === 'true' ? xmlField(reply.text, 'NextContinuationToken') : undefined;
      pages++;
    } while (token !== undefined && pages < 10);
    expect(pages).toBe(3);
    expect(seen.prefixes).toEqual(['a/', 'b/', 'e/']);
    // URL-encoded as S3 does it for the AWS CLI: space and '+' and '&' escaped, so unquote_plus restores the key.
    expect(seen.keys).toEqual(['c', 'd%20e%2Bf%26.txt']);
  });

  it('lists with prefix and start-after, and escapes keys in XML without encoding-type', async () => {
    const reply = await s3('GET', '/listing', { query: 'list-type=2&prefix=a%2F&start-after=a%2F1' });
    expect(xmlFields(reply.text, 'Key')).toEqual(['a/2']);
    const all = await s3('GET', '/listing', { query: 'list-type=2' });
    expect(xmlFields(all.text, 'Key')).toContain('d e+f&amp;.txt');
    expect(xmlFields(all.text, 'Key')).toContain('e/ü/1');
    expectS3Error(await s3('GET', '/listing', { query: 'list-type=2&continuation-token=%%%' }), 400, 'InvalidURI');
    expectS3Error(await s3('GET', '/listing', { query: 'list-type=2&continuation-token=bm90IGEga2V5%3D%3D%3D' }), 400, 'InvalidArgument');
    expectS3Error(await s3('GET', '/listing', { query: 'list-type=2&max-keys=-1' }), 400, 'InvalidArgument');
  });

  it('pages ListObjects (v1) with marker and NextMarker', async () => {
    const first = await s3('GET', '/listing', { query: 'max-keys=3' });
    expect(xmlFields(first.text, 'Key')).toEqual(['a/1', 'a/2', 'b/1']);
    expect(xmlField(first.text, 'IsTruncated')).toBe('true');
    expect(xmlField(first.text, 'NextMarker')).toBe('b/1');
    expect(first.text).toContain('<Owner>');
    const second = await s3('GET', '/listing', { query: 'marker=b%2F1' });
    expect(xmlFields(second.text, 'Key')).toEqual(['c', 'd e+f&amp;.txt', 'e/ü/1']);
    expect(xmlField(second.text, 'IsTruncated')).toBe('false');
  });
});

describe('multipart uploads', () => {
  beforeAll(async () => {
    await s3('PUT', '/multi');
  });

  it('creates, uploads parts, lists parts, completes and reads the object back', async () => {
    const created = await s3('POST', '/multi/big/file.bin', { query: 'uploads' });
    expect(created.status).toBe(200);
    const uploadId = xmlField(created.text, 'UploadId') as string;
    expect(uploadId).toBeTruthy();
    // Every part but the last must be at least 5 MiB, as in S3.
    const parts = [randomBytes(5 * 1024 * 1024), randomBytes(500)];
    const etags: string[] = [];
    for (const [index, part] of parts.entries()) {
      const reply = await s3('PUT', '/multi/big/file.bin', { query: `partNumber=${index + 1}&uploadId=${uploadId}`, body: part });
      expect(reply.status).toBe(200);
      etags.push(reply.headers.etag as string);
    }
    const listed = await s3('GET', '/multi/big/file.bin', { query: `uploadId=${uploadId}` });
    expect(xmlFields(listed.text, 'PartNumber')).toEqual(['1', '2']);
    expectS3Error(await s3('POST', '/multi/big/file.bin', { query: `uploadId=${uploadId}`, body: '<CompleteMultipartUpload><Part>' }), 400, 'MalformedXML');
    const complete = `<CompleteMultipartUpload>${etags.map((etag, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>${etag}</ETag></Part>`).join('')}</CompleteMultipartUpload>`;
    const done = await s3('POST', '/multi/big/file.bin', { query: `uploadId=${uploadId}`, body: complete });
    expect(done.status).toBe(200);
    expect(xmlField(done.text, 'ETag')).toMatch(/^&quot;[0-9a-f]{32}-2&quot;$/);
    expect(xmlField(done.text, 'Location')).toBe(`https://${host}/multi/big/file.bin`);
    expect((await s3('GET', '/multi/big/file.bin')).body.equals(Buffer.concat(parts))).toBe(true);
    // Completing it again with the same parts answers the same, as S3 does; with other parts the upload is gone.
    const again = await s3('POST', '/multi/big/file.bin', { query: `uploadId=${uploadId}`, body: complete });
    expect([again.status, xmlField(again.text, 'ETag')]).toEqual([200, xmlField(done.text, 'ETag')]);
    const fewer = `<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>${etags[0]}</ETag></Part></CompleteMultipartUpload>`;
    expectS3Error(await s3('POST', '/multi/big/file.bin', { query: `uploadId=${uploadId}`, body: fewer }), 404, 'NoSuchUpload');
  });

  it('aborts uploads and reports bad part numbers', async () => {
    const uploadId = xmlField((await s3('POST', '/multi/aborted', { query: 'uploads' })).text, 'UploadId') as string;
    expectS3Error(await s3('PUT', '/multi/aborted', { query: `partNumber=0&uploadId=${uploadId}`, body: 'x' }), 400, 'InvalidArgument');
    expectS3Error(await s3('PUT', '/multi/aborted', { query: `partNumber=10001&uploadId=${uploadId}`, body: 'x' }), 400, 'InvalidArgument');
    const small = [await s3('PUT', '/multi/aborted', { query: `partNumber=1&uploadId=${uploadId}`, body: 'x' }), await s3('PUT', '/multi/aborted', { query: `partNumber=2&uploadId=${uploadId}`, body: 'y' })];
    const tooSmall = `<CompleteMultipartUpload>${small.map((reply, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>${reply.headers.etag as string}</ETag></Part>`).join('')}</CompleteMultipartUpload>`;
    expectS3Error(await s3('POST', '/multi/aborted', { query: `uploadId=${uploadId}`, body: tooSmall }), 400, 'EntityTooSmall');
    expect((await s3('DELETE', '/multi/aborted', { query: `uploadId=${uploadId}` })).status).toBe(204);
    expectS3Error(await s3('GET', '/multi/aborted', { query: `uploadId=${uploadId}` }), 404, 'NoSuchUpload');
  });

  it('reads by part number as S3 does, and refuses part numbers an object lacks or that come with a Range', async () => {
    await s3('PUT', '/multi/single', { body: 'one piece' });
    const whole = await s3('GET', '/multi/single', { query: 'partNumber=1' });
    expect(whole.status).toBe(200);
    expect(whole.body.toString()).toBe('one piece');
    expectS3Error(await s3('GET', '/multi/single', { query: 'partNumber=2' }), 416, 'InvalidPartNumber');
    expectS3Error(await s3('GET', '/multi/single', { query: 'partNumber=1', headers: { range: 'bytes=0-1' } }), 400, 'InvalidRequest');
    expectS3Error(await s3('GET', '/multi/single', { query: 'partNumber=0' }), 400, 'InvalidArgument');
    expect((await s3('HEAD', '/multi/single', { query: 'partNumber=2' })).status).toBe(416);
  });

  it('lists uploads in progress and refuses other methods on ?uploads', async () => {
    const first = xmlField((await s3('POST', '/multi/listed/b', { query: 'uploads' })).text, 'UploadId') as string;
    const second = xmlField((await s3('POST', '/multi/listed/a', { query: 'uploads' })).text, 'UploadId') as string;
    const page = await s3('GET', '/multi', { query: 'uploads&prefix=listed%2F&max-uploads=1' });
    expect(page.status).toBe(200);
    expect(xmlField(page.text, 'Key')).toBe('listed/a');
    expect(xmlField(page.text, 'IsTruncated')).toBe('true');
    expect(xmlField(page.text, 'NextKeyMarker')).toBe('listed/a');
    expect(xmlField(page.text, 'NextUploadIdMarker')).toBe(second);
    const next = await s3('GET', '/multi', { query: `uploads&prefix=listed%2F&key-marker=listed%2Fa&upload-id-marker=${second}` });
    expect(xmlField(next.text, 'Key')).toBe('listed/b');
    expect(xmlField(next.text, 'UploadId')).toBe(first);
    expect(xmlField(next.text, 'IsTruncated')).toBe('false');
    expectS3Error(await s3('PUT', '/multi', { query: 'uploads' }), 405, 'MethodNotAllowed');
    expectS3Error(await s3('GET', '/multi', { query: 'uploads&max-uploads=x' }), 400, 'InvalidArgument');
  });

  it('copies a byte range of an object into a part (UploadPartCopy)', async () => {
    await s3('PUT', '/multi/source', { body: '0123456789' });
    const uploadId = xmlField((await s3('POST', '/multi/copied', { query: 'uploads' })).text, 'UploadId') as string;
    const reply = await s3('PUT', '/multi/copied', {
      query: `partNumber=1&uploadId=${uploadId}`,
      headers: { 'x-amz-copy-source': '/multi/source', 'x-amz-copy-source-range': 'bytes=2-5' },
    });
    expect(reply.status).toBe(200);
    expect(xmlField(reply.text, 'ETag')).toBe(`&quot;${md5Hex(Buffer.from('2345'))}&quot;`);
    expectS3Error(
      await s3('PUT', '/multi/copied', { query: `partNumber=2&uploadId=${uploadId}`, headers: { 'x-amz-copy-source': '/multi/source', 'x-amz-copy-source-range': 'bytes=5-50' } }),
      416,
      'InvalidRange',
    );
  });
});

describe('presigned URLs', () => {
  const path = '/presigned/report.txt';

  beforeAll(async () => {
    await s3('PUT', '/presigned');
    await s3('PUT', path, { body: 'quarterly report' });
  });

  const presign = (options: { method?: string; expires?: number; date?: Date; headers?: Record<string, string>; path?: string } = {}) =>
    presignUrl({
      method: options.method ?? 'GET',
      path: options.path ?? path,
      headers: { host, ...(options.headers ?? {}) },
      credentials,
      region: REGION,
      service: 's3',
      expiresInSeconds: options.expires ?? 3600,
      ...(options.date === undefined ? {} : { date: options.date }),
    });

  it('serves a presigned GET, and a presigned PUT', async () => {
    const url = presign();
    const reply = await send('GET', `${path}?${url.query}`, { host });
    expect(reply.status).toBe(200);
    expect(reply.text).toBe('quarterly report');
    const put = presign({ method: 'PUT', path: '/presigned/uploaded.txt' });
    expect((await send('PUT', `/presigned/uploaded.txt?${put.query}`, { host }, 'uploaded through a URL')).status).toBe(200);
    expect((await stored('presigned', 'uploaded.txt')).toString()).toBe('uploaded through a URL');
  });

  it('refuses an expired URL with AccessDenied "Request has expired"', async () => {
    const url = presign({ date: new Date(Date.now() - 2 * 3600 * 1000), expires: 3600 });
    const reply = await send('GET', `${path}?${url.query}`, { host });
    expectS3Error(reply, 403, 'AccessDenied');
    expect(xmlField(reply.text, 'Message')).toBe('Request has expired');
  });

  it('refuses X-Amz-Expires over a week with AuthorizationQueryParametersError', async () => {
    const url = presign();
    const reply = await send('GET', `${path}?${url.query.replace('X-Amz-Expires=3600', 'X-Amz-Expires=604801')}`, { host });
    expectS3Error(reply, 400, 'AuthorizationQueryParametersError');
    expect(xmlField(reply.text, 'Message')).toBe('X-Amz-Expires must be less than a week (in seconds) that is 604800');
  });

  it('refuses tampered URLs with SignatureDoesNotMatch: key, method, expiry, signed header', async () => {
    const url = presign();
    expectS3Error(await send('GET', `/presigned/other.txt?${url.query}`, { host }), 403, 'SignatureDoesNotMatch');
    expectS3Error(await send('PUT', `${path}?${url.query}`, { host }, 'overwrite'), 403, 'SignatureDoesNotMatch');
    expect((await stored('presigned', 'report.txt')).toString()).toBe('quarterly report');
    expectS3Error(await send('GET', `${path}?${url.query.replace('X-Amz-Expires=3600', 'X-Amz-Expires=7200')}`, { host }), 403, 'SignatureDoesNotMatch');
    const withHeader = presign({ headers: { 'x-custom-tag': 'a' } });
    expect((await send('GET', `${path}?${withHeader.query}`, { host, 'x-custom-tag': 'a' })).status).toBe(200);
    expectS3Error(await send('GET', `${path}?${withHeader.query}`, { host, 'x-custom-tag': 'b' }), 403, 'SignatureDoesNotMatch');
  });

  it('accepts presigned URLs for objects only', async () => {
    const url = presign({ path: '/presigned' });
    expectS3Error(await send('GET', `/presigned?${url.query}`, { host }), 403, 'AccessDenied');
  });
});
