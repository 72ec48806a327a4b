// Protocol-layer tests of the S3 HTTP handler over real TLS, against an in-memory engine test double (the real engine and real clients are tested in packages/objectstore/test).
import { createHash, randomBytes } from 'node:crypto';
import { request as httpsRequest } from 'node:https';
import type { IncomingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { connect as tlsConnect } from 'node:tls';
import { crc32 } from 'node:zlib';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
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
import { createCertificateAuthority, issueServerCertificate } from '@airlock/pki';
import {
  resolveRange,
  type BucketEncryption,
  type BucketInfo,
  type ChecksumAlgorithm,
  type GetObjectResult,
  type ListObjectsInput,
  type ListObjectsResult,
  type ObjectEngine,
  type ObjectMeta,
  type PartInfo,
  type PutObjectInput,
  type RangeRequest,
  type SseRequest,
  type UploadInfo,
} from './engine-types.js';
import { s3ErrorFor, s3ErrorXml } from './s3-errors.js';
import { parseRange } from './s3-request.js';
import { startS3Listener, type S3Listener } from './s3-server.js';

// --- protocol-layer test double -------------------------------------------------------------------
//
// NOT the storage engine: a minimal in-memory ObjectEngine so the HTTP layer (routing, XML, ranges,
// auth, error mapping) can be tested on its own. It follows the engine contract closely enough for
// that; encryption, durability and the kill switch itself are the real engine's tests.

const ACCOUNT_ARN = 'arn:aws:kms:us-east-1:111122223333:key/';
const DEFAULT_ENCRYPTION: BucketEncryption = { algorithm: 'AES256', kmsKeyArn: undefined, bucketKeyEnabled: false };

interface StoredObject {
  meta: ObjectMeta;
  data: Buffer;
}

function md5Hex(data: Buffer): string {
  return createHash('md5').update(data).digest('hex');
}

function checksumOf(algorithm: ChecksumAlgorithm, data: Buffer): string {
  switch (algorithm) {
    case 'CRC32': {
      const out = Buffer.alloc(4);
      out.writeUInt32BE(crc32(data) >>> 0);
      return out.toString('base64');
    }
    case 'SHA1':
      return createHash('sha1').update(data).digest('base64');
    case 'SHA256':
      return createHash('sha256').update(data).digest('base64');
    default:
      throw new AirlockError('NOT_IMPLEMENTED', `${algorithm} is not in the test double`);
  }
}

function toArn(keyId: string): string {
  return keyId.startsWith('arn:') ? keyId : `${ACCOUNT_ARN}${keyId}`;
}

class MemoryEngine implements ObjectEngine {
  readonly buckets = new Map<string, { info: BucketInfo; objects: Map<string, StoredObject> }>();
  readonly uploads = new Map<string, { info: UploadInfo; contentType: string; userMetadata: Record<string, string>; parts: Map<number, { info: PartInfo; data: Buffer }> }>();
  /** What the last putObject / uploadPart was given, with its checksums settled. */
  lastWrite: { expectedLength?: number; contentMd5?: string; checksums?: Partial<Record<ChecksumAlgorithm, string>>; checksumAlgorithms?: readonly ChecksumAlgorithm[] } | undefined;
  /** The next getObject / headObject throws this (simulates the kill switch or damaged data). */
  failReads: AirlockError | undefined;
  #uploadSeq = 0;

  #bucket(name: string): { info: BucketInfo; objects: Map<string, StoredObject> } {
    const bucket = this.buckets.get(name);
    if (bucket === undefined) throw new AirlockError('BUCKET_NOT_FOUND', 'The specified bucket does not exist');
    return bucket;
  }

  #object(bucket: string, key: string): StoredObject {
    if (this.failReads !== undefined) throw this.failReads;
    const object = this.#bucket(bucket).objects.get(key);
    if (object === undefined) throw new AirlockError('OBJECT_NOT_FOUND', 'The specified key does not exist.');
    return object;
  }

  #encryption(base: BucketEncryption, sse: SseRequest | undefined): BucketEncryption {
    if (sse === undefined) return base;
    const algorithm = sse.algorithm ?? base.algorithm;
    if (algorithm === 'AES256') return { algorithm, kmsKeyArn: undefined, bucketKeyEnabled: false };
    const keyId = sse.kmsKeyId ?? base.kmsKeyArn ?? 'default-s3-key';
    if (keyId.endsWith('disabled-key')) throw new AirlockError('KMS_KEY_DISABLED', `${toArn(keyId)} is disabled.`);
    return { algorithm, kmsKeyArn: toArn(keyId), bucketKeyEnabled: sse.bucketKeyEnabled ?? base.bucketKeyEnabled };
  }

  async #drain(input: Pick<PutObjectInput, 'body' | 'expectedLength' | 'contentMd5' | 'checksums' | 'checksumAlgorithms'>): Promise<{ data: Buffer; checksums: Partial<Record<ChecksumAlgorithm, string>> }> {
    const data = await buffer(input.body);
    const checksums = (await input.checksums) ?? {};
    this.lastWrite = { expectedLength: input.expectedLength, contentMd5: input.contentMd5, checksums, checksumAlgorithms: input.checksumAlgorithms };
    if (input.expectedLength !== undefined && data.byteLength !== input.expectedLength) throw new AirlockError('INCOMPLETE_BODY');
    if (input.contentMd5 !== undefined && createHash('md5').update(data).digest('base64') !== input.contentMd5) {
      throw new AirlockError('DIGEST_MISMATCH', 'The Content-MD5 you specified did not match what we received.', { details: { kind: 'content-md5' } });
    }
    for (const [algorithm, value] of Object.entries(checksums) as Array<[ChecksumAlgorithm, string]>) {
      if (checksumOf(algorithm, data) !== value) {
        throw new AirlockError('DIGEST_MISMATCH', `The ${algorithm} you specified did not match the calculated checksum.`, { details: { kind: 'checksum', algorithm } });
      }
    }
    return { data, checksums };
  }

  listBuckets(): BucketInfo[] {
    return [...this.buckets.values()].map((b) => b.info);
  }

  async createBucket(name: string): Promise<BucketInfo> {
    if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(name)) throw new AirlockError('INVALID_BUCKET_NAME', 'The specified bucket is not valid.');
    if (this.buckets.has(name)) throw new AirlockError('BUCKET_ALREADY_EXISTS');
    const info = { name, createdAt: new Date(), encryption: DEFAULT_ENCRYPTION };
    this.buckets.set(name, { info, objects: new Map() });
    return info;
  }

  headBucket(name: string): BucketInfo {
    return this.#bucket(name).info;
  }

  async deleteBucket(name: string): Promise<void> {
    if (this.#bucket(name).objects.size > 0) throw new AirlockError('BUCKET_NOT_EMPTY');
    this.buckets.delete(name);
  }

  getBucketEncryption(name: string): BucketEncryption {
    return this.#bucket(name).info.encryption;
  }

  async putBucketEncryption(name: string, encryption: SseRequest): Promise<BucketEncryption> {
    const bucket = this.#bucket(name);
    const resolved = this.#encryption(DEFAULT_ENCRYPTION, encryption);
    bucket.info = { ...bucket.info, encryption: resolved };
    return resolved;
  }

  async deleteBucketEncryption(name: string): Promise<void> {
    const bucket = this.#bucket(name);
    bucket.info = { ...bucket.info, encryption: DEFAULT_ENCRYPTION };
  }

  async putObject(input: PutObjectInput): Promise<ObjectMeta> {
    const bucket = this.#bucket(input.bucket);
    const encryption = this.#encryption(bucket.info.encryption, input.sse);
    const { data, checksums } = await this.#drain(input);
    const meta: ObjectMeta = {
      bucket: input.bucket,
      key: input.key,
      size: data.byteLength,
      etag: `"${md5Hex(data)}"`,
      lastModified: new Date(),
      contentType: input.contentType ?? 'binary/octet-stream',
      userMetadata: { ...(input.userMetadata ?? {}) },
      encryption,
      checksums,
      partsCount: undefined,
    };
    bucket.objects.set(input.key, { meta, data });
    return meta;
  }

  async getObject(bucket: string, key: string, range?: RangeRequest): Promise<GetObjectResult> {
    const object = this.#object(bucket, key);
    const resolved = resolveRange(range, object.meta);
    const bytes = resolved === undefined ? object.data : object.data.subarray(resolved.start, resolved.end + 1);
    return { meta: object.meta, body: Readable.from([bytes]), range: resolved };
  }

  headObject(bucket: string, key: string): ObjectMeta {
    return this.#object(bucket, key).meta;
  }

  async deleteObject(bucket: string, key: string): Promise<void> {
    this.#bucket(bucket).objects.delete(key);
  }

  listObjects(input: ListObjectsInput): ListObjectsResult {
    // The same walk as the real engine: UTF-8 order, common prefixes rolled up, `after` exclusive.
    const objects = this.#bucket(input.bucket).objects;
    const sorted = [...objects.keys()].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    const prefix = input.prefix ?? '';
    const maxKeys = Math.max(0, Math.min(input.maxKeys ?? 1000, 1000));
    const out: ObjectMeta[] = [];
    const prefixes: string[] = [];
    let last: string | undefined;
    let truncated = false;
    for (const key of sorted) {
      if (!key.startsWith(prefix)) continue;
      if (input.after !== undefined && Buffer.compare(Buffer.from(key), Buffer.from(input.after)) <= 0) continue;
      let common: string | undefined;
      if (input.delimiter !== undefined && input.delimiter !== '') {
        const at = key.indexOf(input.delimiter, prefix.length);
        if (at >= 0) common = key.slice(0, at + input.delimiter.length);
      }
      if (common !== undefined && common === prefixes.at(-1)) continue;
      if (common !== undefined && input.after !== undefined && Buffer.compare(Buffer.from(common), Buffer.from(input.after)) <= 0) continue;
      if (out.length + prefixes.length >= maxKeys) {
        truncated = true;
        break;
      }
      if (common !== undefined) {
        prefixes.push(common);
        last = common;
      } else {
        out.push((objects.get(key) as StoredObject).meta);
        last = key;
      }
    }
    return { objects: out, commonPrefixes: prefixes, isTruncated: truncated, nextAfter: truncated ? last : undefined };
  }

  async copyObject(input: Parameters<ObjectEngine['copyObject']>[0]): Promise<ObjectMeta> {
    const source = this.#object(input.sourceBucket, input.sourceKey);
    const replace = input.metadataDirective === 'REPLACE';
    return this.putObject({
      bucket: input.bucket,
      key: input.key,
      body: Readable.from([source.data]),
      contentType: replace ? (input.contentType ?? 'binary/octet-stream') : source.meta.contentType,
      userMetadata: replace ? (input.userMetadata ?? {}) : source.meta.userMetadata,
      sse: input.sse,
    });
  }

  async createMultipartUpload(input: Parameters<ObjectEngine['createMultipartUpload']>[0]): Promise<UploadInfo> {
    const bucket = this.#bucket(input.bucket);
    const uploadId = (++this.#uploadSeq).toString(16).padStart(32, '0');
    const info: UploadInfo = { uploadId, bucket: input.bucket, key: input.key, initiated: new Date(), encryption: this.#encryption(bucket.info.encryption, input.sse) };
    this.uploads.set(uploadId, { info, contentType: input.contentType ?? 'binary/octet-stream', userMetadata: { ...(input.userMetadata ?? {}) }, parts: new Map() });
    return info;
  }

  #upload(bucket: string, key: string, uploadId: string) {
    this.#bucket(bucket);
    const upload = this.uploads.get(uploadId);
    if (upload === undefined || upload.info.bucket !== bucket || upload.info.key !== key) throw new AirlockError('UPLOAD_NOT_FOUND');
    return upload;
  }

  async uploadPart(input: Parameters<ObjectEngine['uploadPart']>[0]): Promise<PartInfo> {
    const upload = this.#upload(input.bucket, input.key, input.uploadId);
    const { data } = await this.#drain(input);
    const info = { partNumber: input.partNumber, etag: `"${md5Hex(data)}"`, size: data.byteLength, lastModified: new Date() };
    upload.parts.set(input.partNumber, { info, data });
    return info;
  }

  async completeMultipartUpload(input: Parameters<ObjectEngine['completeMultipartUpload']>[0]): Promise<ObjectMeta> {
    const upload = this.#upload(input.bucket, input.key, input.uploadId);
    let previous = 0;
    const chosen = input.parts.map((listed) => {
      if (listed.partNumber <= previous) throw new AirlockError('INVALID_PART_ORDER');
      previous = listed.partNumber;
      const part = upload.parts.get(listed.partNumber);
      if (part === undefined || part.info.etag !== listed.etag) throw new AirlockError('INVALID_PART');
      return part;
    });
    const data = Buffer.concat(chosen.map((p) => p.data));
    const etag = `"${createHash('md5').update(Buffer.concat(chosen.map((p) => Buffer.from(p.info.etag.slice(1, -1), 'hex')))).digest('hex')}-${chosen.length}"`;
    const meta: ObjectMeta = {
      bucket: input.bucket,
      key: input.key,
      size: data.byteLength,
      etag,
      lastModified: new Date(),
      contentType: upload.contentType,
      userMetadata: upload.userMetadata,
      encryption: upload.info.encryption,
      checksums: {},
      partsCount: chosen.length,
    };
    this.#bucket(input.bucket).objects.set(input.key, { meta, data });
    this.uploads.delete(input.uploadId);
    return meta;
  }

  async abortMultipartUpload(bucket: string, key: string, uploadId: string): Promise<void> {
    this.#upload(bucket, key, uploadId);
    this.uploads.delete(uploadId);
  }

  listMultipartUploads(bucket: string): UploadInfo[] {
    this.#bucket(bucket);
    return [...this.uploads.values()].filter((u) => u.info.bucket === bucket).map((u) => u.info).sort((a, b) => Buffer.compare(Buffer.from(`${a.key}\0${a.uploadId}`), Buffer.from(`${b.key}\0${b.uploadId}`)));
  }

  listParts(bucket: string, key: string, uploadId: string): { upload: UploadInfo; parts: PartInfo[] } {
    const upload = this.#upload(bucket, key, uploadId);
    return { upload: upload.info, parts: [...upload.parts.values()].map((p) => p.info).sort((a, b) => a.partNumber - b.partNumber) };
  }

  async close(): Promise<void> {}
}

// --- harness --------------------------------------------------------------------------------------

const REGION = 'us-east-1';
const credentials = { accessKeyId: 'AKIDPROTOCOLTEST', secretAccessKey: 'protocol-test-secret-key-canary-9f3c1e' };
const engine = new MemoryEngine();
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

beforeAll(async () => {
  const ca = await createCertificateAuthority();
  const tls = await issueServerCertificate({ ca, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  caPem = ca.cert;
  const log = createLogger({ level: 'debug', destination: { write: (line: string) => void logs.push(line) }, redactor: new Redactor() });
  listener = await startS3Listener({
    engine,
    lookupSecret: (id) => (id === credentials.accessKeyId ? credentials.secretAccessKey : undefined),
    tls: { cert: tls.cert, key: tls.key },
    host: '127.0.0.1',
    port: 0,
    region: REGION,
    log,
    maxObjectBytes: 1024 * 1024,
  });
  host = `127.0.0.1:${listener.port}`;
});

afterAll(async () => {
  await listener.close();
});

beforeEach(() => {
  engine.failReads = undefined;
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

  it('passes KMS messages (which name the key ARN) through, and never the message of a server fault', () => {
    const arn = `${ACCOUNT_ARN}1234abcd-12ab-34cd-56ef-1234567890ab`;
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
    expect(JSON.parse(reply.text)).toEqual({ status: 'ok' });
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
    const body =
      '<ServerSideEncryptionConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>aws:kms</SSEAlgorithm><KMSMasterKeyID>1234abcd</KMSMasterKeyID></ApplyServerSideEncryptionByDefault><BucketKeyEnabled>true</BucketKeyEnabled></Rule></ServerSideEncryptionConfiguration>';
    const md5 = createHash('md5').update(body).digest('base64');
    expect((await s3('PUT', '/enc-bucket', { query: 'encryption', body, headers: { 'content-md5': md5 } })).status).toBe(200);
    const got = await s3('GET', '/enc-bucket', { query: 'encryption' });
    expect(got.status).toBe(200);
    expect(xmlField(got.text, 'SSEAlgorithm')).toBe('aws:kms');
    expect(xmlField(got.text, 'KMSMasterKeyID')).toBe(`${ACCOUNT_ARN}1234abcd`);
    expect(xmlField(got.text, 'BucketKeyEnabled')).toBe('true');
    const put = await s3('PUT', '/enc-bucket/object', { body: 'data' });
    expect(put.headers['x-amz-server-side-encryption']).toBe('aws:kms');
    expect(put.headers['x-amz-server-side-encryption-aws-kms-key-id']).toBe(`${ACCOUNT_ARN}1234abcd`);
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
    for (const sub of ['policy', 'lifecycle', 'cors', 'tagging', 'website']) expectS3Error(await s3('GET', '/sub-bucket', { query: sub }), 501, 'NotImplemented');
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
    const crc = checksumOf('CRC32', data);
    const put = await s3('PUT', path, { body: data, headers: { 'content-type': 'text/plain', 'x-amz-meta-owner': 'tests', 'x-amz-checksum-crc32': crc } });
    expect(put.status).toBe(200);
    expect(put.headers.etag).toBe(`"${md5Hex(data)}"`);
    expect(put.headers['x-amz-checksum-crc32']).toBe(crc);
    expect(engine.buckets.get('objects')?.objects.has(key)).toBe(true);

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
    expect(engine.buckets.get('objects')?.objects.has('sha')).toBe(false);
  });

  it('accepts UNSIGNED-PAYLOAD bodies and verifies Content-MD5', async () => {
    const data = Buffer.from('unsigned payload');
    const md5 = createHash('md5').update(data).digest('base64');
    expect((await s3('PUT', '/objects/unsigned', { payloadHash: UNSIGNED_PAYLOAD, body: data, headers: { 'content-md5': md5 } })).status).toBe(200);
    expectS3Error(await s3('PUT', '/objects/unsigned', { payloadHash: UNSIGNED_PAYLOAD, body: data, headers: { 'content-md5': createHash('md5').update('x').digest('base64') } }), 400, 'BadDigest');
    expectS3Error(await s3('PUT', '/objects/unsigned', { payloadHash: UNSIGNED_PAYLOAD, body: data, headers: { 'content-md5': 'not-base64' } }), 400, 'InvalidDigest');
  });

  it('refuses bodies over the size limit with EntityTooLarge', async () => {
    const reply = await s3('PUT', '/objects/big', { payloadHash: UNSIGNED_PAYLOAD, body: Buffer.alloc(1024 * 1024 + 1) });
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
    expect(engine.lastWrite?.expectedLength).toBe(data.length);
    expect(engine.buckets.get('objects')?.objects.get('chunked')?.data.equals(data)).toBe(true);

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
    expect(engine.buckets.get('objects')?.objects.has('chunked2')).toBe(false);
  });

  it('passes an x-amz-checksum-crc32 trailer of an unsigned aws-chunked body to the engine', async () => {
    const data = randomBytes(70_000);
    const crc = checksumOf('CRC32', data);
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
    expect(engine.lastWrite?.checksums).toEqual({ CRC32: crc });
    expect(engine.lastWrite?.checksumAlgorithms).toEqual(['CRC32']);
    expect(engine.buckets.get('objects')?.objects.get('trailer')?.data.equals(data)).toBe(true);
    expectS3Error(await put('trailer-bad', checksumOf('CRC32', Buffer.from('other'))), 400, 'BadDigest');
    expect(engine.buckets.get('objects')?.objects.has('trailer-bad')).toBe(false);
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
    expect(engine.buckets.get('objects')?.objects.has('del-1')).toBe(false);
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
    await s3('PUT', '/objects/guarded', { body: 'guarded data' });
    const arn = `${ACCOUNT_ARN}0f0e0d0c-1111-2222-3333-444455556666`;
    engine.failReads = new AirlockError('KMS_KEY_DISABLED', `${arn} is disabled.`);
    const refused = await s3('GET', '/objects/guarded');
    expectS3Error(refused, 400, 'KMS.DisabledException');
    expect(refused.text).toContain(arn);
    expect(refused.text).not.toContain('guarded data');
    engine.failReads = new AirlockError('CIPHERTEXT_AUTH_FAILED', 'segment 3 of objects/ab12.data failed authentication', { cause: new Error('GCM tag') });
    const broken = await s3('GET', '/objects/guarded');
    expectS3Error(broken, 500, 'InternalError');
    expect(broken.text).not.toContain('segment');
    expect(broken.text).not.toContain('GCM');
    expect(logs.some((line) => line.includes('"level":50') && line.includes('CIPHERTEXT_AUTH_FAILED'))).toBe(true);
  });

  it('survives a client that disconnects mid-upload, storing nothing', async () => {
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
    expect(engine.buckets.get('objects')?.objects.has('cut-short')).toBe(false);
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
    expect(engine.buckets.get('objects')?.objects.get('continued')?.data.toString()).toBe('expect continue body');
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
    const parts = [randomBytes(1000), randomBytes(500)];
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
    expectS3Error(await s3('POST', '/multi/big/file.bin', { query: `uploadId=${uploadId}`, body: complete }), 404, 'NoSuchUpload');
  });

  it('aborts uploads and reports bad part numbers', async () => {
    const uploadId = xmlField((await s3('POST', '/multi/aborted', { query: 'uploads' })).text, 'UploadId') as string;
    expectS3Error(await s3('PUT', '/multi/aborted', { query: `partNumber=0&uploadId=${uploadId}`, body: 'x' }), 400, 'InvalidArgument');
    expectS3Error(await s3('PUT', '/multi/aborted', { query: `partNumber=10001&uploadId=${uploadId}`, body: 'x' }), 400, 'InvalidArgument');
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
    expect(engine.buckets.get('presigned')?.objects.get('uploaded.txt')?.data.toString()).toBe('uploaded through a URL');
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
    expect(engine.buckets.get('presigned')?.objects.get('report.txt')?.data.toString()).toBe('quarterly report');
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
