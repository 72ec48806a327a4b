// Reading S3 requests: path-style target and query decoding, Range, SSE/metadata/checksum headers, and request bodies.
import { createHash, type Hash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { AirlockError } from '@airlock/common';
import { chunkedPayloadMode, createChunkedPayloadDecoder, type ChunkedPayloadDecoder, type VerifiedRequest } from '@airlock/crypto';
import { createDigest } from './checksums.js';
import {
  etagListMatches,
  STORED_HEADER_NAMES,
  type ChecksumAlgorithm,
  type ChecksumType,
  type ObjectMeta,
  type RangeRequest,
  type SseAlgorithm,
  type SseRequest,
  type StoredHeaders,
  type StoredHeaderName,
  type UploadChecksum,
  type WriteCondition,
} from './engine-types.js';
import { decodeHeaderText } from './mime-words.js';

/** S3's limit for a single PUT (PutObject, UploadPart): 5 GiB. */
export const MAX_OBJECT_BYTES = 5 * 1024 * 1024 * 1024;
/** S3's limit on the total size of x-amz-meta-* headers (names and values, UTF-8). */
const MAX_METADATA_BYTES = 2048;

function invalidArgument(message: string, reason?: string): AirlockError {
  return new AirlockError('INVALID_ARGUMENT', message, reason === undefined ? {} : { details: { reason } });
}

export function invalidRequest(message: string): AirlockError {
  return invalidArgument(message, 'invalid-request');
}

// --- target ---------------------------------------------------------------------------------------

const HEX = /^[0-9a-fA-F]{2}$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Percent-decodes a path or query component exactly once, as bytes, then reads them as UTF-8.
 * Node hands over the request target as latin1, so each character is one byte on the wire.
 * Returns undefined for a stray '%' or bytes that are not UTF-8. '+' stays '+', as S3 reads paths.
 */
export function percentDecode(raw: string): string | undefined {
  if (!raw.includes('%')) {
    // Fast path: plain ASCII needs no work; raw latin1 bytes above 0x7f must still be valid UTF-8.
    if (!/[^\u0020-\u007e]/.test(raw)) return raw;
  }
  const bytes: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c === 0x25) {
      const hex = raw.slice(i + 1, i + 3);
      if (!HEX.test(hex)) return undefined;
      bytes.push(Number.parseInt(hex, 16));
      i += 2;
    } else if (c > 0xff) {
      return undefined;
    } else {
      bytes.push(c);
    }
  }
  try {
    return utf8.decode(Uint8Array.from(bytes));
  } catch {
    return undefined;
  }
}

export interface S3Target {
  /** The path exactly as received (still percent-encoded): what the signature covers. */
  readonly rawPath: string;
  /** The query exactly as received, without '?'. */
  readonly rawQuery: string;
}

/** Splits the request target. Only origin-form (`/path?query`) is served. */
export function splitTarget(url: string | undefined): S3Target {
  const target = url ?? '';
  if (!target.startsWith('/') || target.includes('#')) throw invalidArgument("Couldn't parse the specified URI.", 'invalid-uri');
  const q = target.indexOf('?');
  return q < 0 ? { rawPath: target, rawQuery: '' } : { rawPath: target.slice(0, q), rawQuery: target.slice(q + 1) };
}

export interface S3Resource {
  /** Undefined for the service root (`/`). */
  readonly bucket: string | undefined;
  /** Undefined for a bucket-level request (`/bucket` or `/bucket/`). */
  readonly key: string | undefined;
}

/** Checks an object key: 1 – 1024 bytes of UTF-8 (any characters; the engine hashes names). */
export function checkKey(key: string): string {
  const length = Buffer.byteLength(key, 'utf8');
  if (length === 0) throw new AirlockError('INVALID_OBJECT_KEY', 'The object key must not be empty', { details: { reason: 'key-empty' } });
  if (length > 1024) throw new AirlockError('INVALID_OBJECT_KEY', 'Your key is too long', { details: { reason: 'key-too-long', size: length } });
  return key;
}

/** Path-style addressing: `/bucket` and `/bucket/key…`; the key is the decoded rest of the path and may hold slashes. */
export function parseResource(rawPath: string): S3Resource {
  if (rawPath === '/') return { bucket: undefined, key: undefined };
  const rest = rawPath.slice(1);
  const slash = rest.indexOf('/');
  const rawBucket = slash < 0 ? rest : rest.slice(0, slash);
  const bucket = percentDecode(rawBucket);
  if (bucket === undefined || bucket === '') throw invalidArgument("Couldn't parse the specified URI.", 'invalid-uri');
  if (slash < 0 || slash === rest.length - 1) return { bucket, key: undefined };
  const key = percentDecode(rest.slice(slash + 1));
  if (key === undefined) throw new AirlockError('INVALID_OBJECT_KEY', 'The object key is not valid UTF-8', { details: { reason: 'key-not-utf8' } });
  return { bucket, key: checkKey(key) };
}

/** The decoded query: first value of each name (S3 ignores repeats of the parameters it reads). */
export function parseQuery(rawQuery: string): ReadonlyMap<string, string> {
  const params = new Map<string, string>();
  if (rawQuery === '') return params;
  for (const component of rawQuery.split('&')) {
    if (component === '') continue;
    const eq = component.indexOf('=');
    const name = percentDecode(eq < 0 ? component : component.slice(0, eq));
    const value = percentDecode(eq < 0 ? '' : component.slice(eq + 1));
    if (name === undefined || value === undefined) throw invalidArgument("Couldn't parse the specified URI.", 'invalid-uri');
    if (!params.has(name)) params.set(name, value);
  }
  return params;
}

// --- headers --------------------------------------------------------------------------------------

/** One header value as a string (Node joins repeats with ', '); undefined when absent. */
export function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  if (value === undefined) return undefined;
  return Array.isArray(value) ? value.join(',') : value;
}

/** Characters Node accepts in a header value; anything else would make setHeader throw. */
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

export function checkHeaderValue(name: string, value: string): string {
  if (!HEADER_VALUE.test(value)) throw invalidArgument(`The value of ${name} is not valid`);
  return value;
}

/** The SSE-C header sets: the object's own key, and the copy source's. */
const SSE_CUSTOMER_PREFIXES: readonly string[] = ['x-amz-server-side-encryption-customer-', 'x-amz-copy-source-server-side-encryption-customer-'];

/**
 * Checks SSE-C headers (`…-customer-algorithm`, `-key`, `-key-md5`) as S3 does before anything
 * else: a missing algorithm, a key that is not 32 bytes of base64 or a wrong MD5 is
 * InvalidArgument. Well-formed SSE-C is NotImplemented: this store encrypts under KMS keys only.
 * The key itself never leaves this function, nor appears in an error.
 */
export function checkSseCustomerHeaders(req: IncomingMessage): void {
  let present = false;
  for (const prefix of SSE_CUSTOMER_PREFIXES) {
    const algorithm = header(req, `${prefix}algorithm`);
    const key = header(req, `${prefix}key`);
    const keyMd5 = header(req, `${prefix}key-md5`);
    if (algorithm === undefined && key === undefined && keyMd5 === undefined) continue;
    present = true;
    if (algorithm === undefined) throw invalidArgument('Requests specifying Server Side Encryption with Customer provided keys must provide a valid encryption algorithm.');
    if (algorithm.trim() !== 'AES256') throw invalidArgument('The encryption request you specified is not valid. The valid value is AES256.', 'invalid-encryption-algorithm');
    if (key === undefined) throw invalidArgument('Requests specifying Server Side Encryption with Customer provided keys must provide an appropriate secret key.');
    const keyText = key.trim();
    const keyBytes = /^[A-Za-z0-9+/]+={0,2}$/.test(keyText) ? Buffer.from(keyText, 'base64') : Buffer.alloc(0);
    try {
      if (keyBytes.byteLength !== 32 || keyBytes.toString('base64') !== keyText) throw invalidArgument('The secret key was invalid for the specified algorithm.');
      if (keyMd5 === undefined) throw invalidArgument('Requests specifying Server Side Encryption with Customer provided keys must provide the client calculated MD5 of the secret key.');
      if (createHash('md5').update(keyBytes).digest('base64') !== keyMd5.trim()) {
        throw invalidArgument('The calculated MD5 hash of the key did not match the hash that was provided.');
      }
    } finally {
      keyBytes.fill(0);
    }
  }
  if (present) throw new AirlockError('NOT_IMPLEMENTED', 'Server-side encryption with customer-provided keys (SSE-C) is not supported');
}

/** SSE request headers other than SSE-C's: they choose how a write is encrypted, and S3 refuses them on a read. */
const SSE_WRITE_HEADERS: readonly string[] = [
  'x-amz-server-side-encryption',
  'x-amz-server-side-encryption-aws-kms-key-id',
  'x-amz-server-side-encryption-context',
  'x-amz-server-side-encryption-bucket-key-enabled',
];

/** GET and HEAD: an object is read with the key it was written under, so SSE headers are InvalidArgument, as on S3. */
export function refuseSseHeadersOnRead(req: IncomingMessage): void {
  const name = SSE_WRITE_HEADERS.find((candidate) => req.headers[candidate] !== undefined);
  if (name !== undefined) throw invalidArgument(`${name} header is not supported for this operation.`);
}

/** x-amz-server-side-encryption… request headers; undefined when none is present (the bucket default applies). */
export function parseSseHeaders(req: IncomingMessage): SseRequest | undefined {
  if (req.headers['x-amz-server-side-encryption-context'] !== undefined) {
    throw new AirlockError('NOT_IMPLEMENTED', 'x-amz-server-side-encryption-context is not supported');
  }
  const algorithm = header(req, 'x-amz-server-side-encryption');
  const kmsKeyId = header(req, 'x-amz-server-side-encryption-aws-kms-key-id');
  const bucketKey = header(req, 'x-amz-server-side-encryption-bucket-key-enabled');
  if (algorithm === undefined && kmsKeyId === undefined && bucketKey === undefined) return undefined;
  let sseAlgorithm: SseAlgorithm | undefined;
  if (algorithm !== undefined) {
    if (algorithm === 'aws:kms:dsse') throw new AirlockError('NOT_IMPLEMENTED', 'Dual-layer SSE-KMS (aws:kms:dsse) is not supported');
    if (algorithm !== 'AES256' && algorithm !== 'aws:kms') throw invalidArgument('The encryption method specified is not supported');
    sseAlgorithm = algorithm;
  }
  let bucketKeyEnabled: boolean | undefined;
  if (bucketKey !== undefined) {
    const lower = bucketKey.trim().toLowerCase();
    if (lower !== 'true' && lower !== 'false') throw invalidArgument('x-amz-server-side-encryption-bucket-key-enabled must be true or false');
    bucketKeyEnabled = lower === 'true';
  }
  if (kmsKeyId !== undefined && kmsKeyId.trim() === '') throw invalidArgument('x-amz-server-side-encryption-aws-kms-key-id must not be empty');
  return {
    ...(sseAlgorithm === undefined ? {} : { algorithm: sseAlgorithm }),
    ...(kmsKeyId === undefined ? {} : { kmsKeyId: kmsKeyId.trim() }),
    ...(bucketKeyEnabled === undefined ? {} : { bucketKeyEnabled }),
  };
}

/**
 * x-amz-meta-* headers, by lower-case name without the prefix. As on S3, a value's bytes are read
 * as UTF-8 and its RFC 2047 encoded-words decoded before it is stored (and counted).
 */
export function parseUserMetadata(req: IncomingMessage): Record<string, string> {
  const metadata: Record<string, string> = {};
  let size = 0;
  for (const [name, value] of Object.entries(req.headers)) {
    if (!name.startsWith('x-amz-meta-') || value === undefined) continue;
    const text = decodeHeaderText(Array.isArray(value) ? value.join(',') : value);
    const short = name.slice('x-amz-meta-'.length);
    if (short === '') throw invalidArgument('A user metadata header name must not be empty');
    size += Buffer.byteLength(short) + Buffer.byteLength(text);
    metadata[short] = text;
  }
  if (size > MAX_METADATA_BYTES) throw invalidArgument('Your metadata headers exceed the maximum allowed metadata size', 'metadata-too-large');
  return metadata;
}

/**
 * Cache-Control, Content-Disposition, Content-Encoding, Content-Language and Expires, stored as sent.
 * `aws-chunked` is the transfer framing of this request's body, not the object's encoding: S3
 * drops it from Content-Encoding, and stores nothing when it was the only coding.
 */
export function parseStoredHeaders(req: IncomingMessage): StoredHeaders {
  const headers: Partial<Record<StoredHeaderName, string>> = {};
  for (const name of STORED_HEADER_NAMES) {
    let value = header(req, name);
    if (name === 'content-encoding' && value !== undefined) {
      value = value
        .split(',')
        .map((coding) => coding.trim())
        .filter((coding) => coding !== '' && coding.toLowerCase() !== 'aws-chunked')
        .join(',');
    }
    if (value !== undefined && value !== '') headers[name] = value;
  }
  return headers;
}

/** Request headers for features this store does not have: refused rather than silently dropped. */
const UNSUPPORTED_HEADERS: ReadonlyArray<readonly [string, string]> = [
  ['x-amz-tagging', 'Object tagging is not supported'],
  ['x-amz-object-lock-mode', 'Object Lock is not supported'],
  ['x-amz-object-lock-retain-until-date', 'Object Lock is not supported'],
  ['x-amz-object-lock-legal-hold', 'Object Lock is not supported'],
  ['x-amz-website-redirect-location', 'Website redirects are not supported'],
];
/** Canned ACLs that grant nothing beyond what this single-owner store already means. */
const HARMLESS_ACLS: ReadonlySet<string> = new Set(['private', 'bucket-owner-full-control', 'bucket-owner-read']);

export function refuseUnsupportedHeaders(req: IncomingMessage): void {
  for (const [name, message] of UNSUPPORTED_HEADERS) {
    if (req.headers[name] !== undefined) throw new AirlockError('NOT_IMPLEMENTED', message);
  }
  const acl = header(req, 'x-amz-acl');
  if (acl !== undefined && !HARMLESS_ACLS.has(acl.trim())) throw new AirlockError('NOT_IMPLEMENTED', 'Only private canned ACLs are supported');
  for (const name of Object.keys(req.headers)) {
    if (name.startsWith('x-amz-grant-')) throw new AirlockError('NOT_IMPLEMENTED', 'ACL grants are not supported');
  }
}

/** x-amz-checksum-<name> header ↔ the engine's algorithm, and each digest's length in bytes. */
export const CHECKSUM_HEADERS: ReadonlyArray<readonly [string, ChecksumAlgorithm, number]> = [
  ['x-amz-checksum-crc32', 'CRC32', 4],
  ['x-amz-checksum-crc32c', 'CRC32C', 4],
  ['x-amz-checksum-sha1', 'SHA1', 20],
  ['x-amz-checksum-sha256', 'SHA256', 32],
  ['x-amz-checksum-crc64nvme', 'CRC64NVME', 8],
];

/**
 * The checksum algorithms S3 added after CRC64NVME. This store does not compute them, so a request
 * that asks for one (a header, a trailer, x-amz-sdk-checksum-algorithm or CreateMultipartUpload's
 * x-amz-checksum-algorithm) is refused rather than stored unchecked.
 */
const UNSUPPORTED_CHECKSUMS: readonly string[] = ['SHA512', 'MD5', 'XXHASH64', 'XXHASH3', 'XXHASH128'];

function unsupportedChecksum(algorithm: string): AirlockError {
  return new AirlockError('NOT_IMPLEMENTED', `The ${algorithm} checksum is not supported; use CRC32, CRC32C, CRC64NVME, SHA1 or SHA256`);
}

/** Refuses a request that names a checksum algorithm this store does not compute (see UNSUPPORTED_CHECKSUMS). */
export function refuseUnsupportedChecksums(req: IncomingMessage): void {
  const named = [header(req, 'x-amz-sdk-checksum-algorithm'), header(req, 'x-amz-checksum-algorithm'), ...(header(req, 'x-amz-trailer') ?? '').split(',')]
    .map((value) => value?.trim().toUpperCase().replace(/^X-AMZ-CHECKSUM-/, ''))
    .concat(Object.keys(req.headers).flatMap((name) => (name.startsWith('x-amz-checksum-') ? [name.slice('x-amz-checksum-'.length).toUpperCase()] : [])));
  const found = UNSUPPORTED_CHECKSUMS.find((algorithm) => named.includes(algorithm));
  if (found !== undefined) throw unsupportedChecksum(found);
}

function checksumValue(name: string, value: string, bytes: number): string {
  const trimmed = value.trim();
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(trimmed) || Buffer.from(trimmed, 'base64').byteLength !== bytes) {
    throw invalidRequest(`Value for ${name} header is invalid.`);
  }
  return trimmed;
}

const CHECKSUM_TYPES: readonly ChecksumType[] = ['COMPOSITE', 'FULL_OBJECT'];

function parseChecksumType(value: string | undefined): ChecksumType | undefined {
  if (value === undefined) return undefined;
  const type = value.trim().toUpperCase();
  if (!(CHECKSUM_TYPES as readonly string[]).includes(type)) throw invalidRequest('Value for x-amz-checksum-type header is invalid.');
  return type as ChecksumType;
}

/**
 * CreateMultipartUpload's x-amz-checksum-algorithm and x-amz-checksum-type. As on S3, the type
 * defaults to COMPOSITE (FULL_OBJECT for CRC64NVME, which has no other), and needs an algorithm.
 */
export function parseUploadChecksum(req: IncomingMessage): UploadChecksum | undefined {
  refuseUnsupportedChecksums(req);
  const name = header(req, 'x-amz-checksum-algorithm')?.trim().toUpperCase();
  const type = parseChecksumType(header(req, 'x-amz-checksum-type'));
  if (name === undefined) {
    if (type !== undefined) throw invalidRequest('The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header.');
    return undefined;
  }
  const algorithm = CHECKSUM_HEADERS.find(([, candidate]) => candidate === name)?.[1];
  if (algorithm === undefined) throw invalidRequest('Checksum algorithm provided is unsupported. Please try again with any of the valid types: [CRC32, CRC32C, CRC64NVME, SHA1, SHA256]');
  if (algorithm === 'CRC64NVME' && type === 'COMPOSITE') throw invalidRequest('The COMPOSITE checksum type cannot be used with the crc64nvme checksum algorithm.');
  return { algorithm, type: type ?? (algorithm === 'CRC64NVME' ? 'FULL_OBJECT' : 'COMPOSITE') };
}

/** CopyObject's x-amz-checksum-algorithm: the copy's checksum, instead of the source's. */
export function parseCopyChecksumAlgorithm(req: IncomingMessage): ChecksumAlgorithm | undefined {
  refuseUnsupportedChecksums(req);
  const name = header(req, 'x-amz-checksum-algorithm')?.trim().toUpperCase();
  if (name === undefined) return undefined;
  const algorithm = CHECKSUM_HEADERS.find(([, candidate]) => candidate === name)?.[1];
  if (algorithm === undefined) throw invalidRequest('Checksum algorithm provided is unsupported. Please try again with any of the valid types: [CRC32, CRC32C, CRC64NVME, SHA1, SHA256]');
  return algorithm;
}

/**
 * CompleteMultipartUpload's view of the object's checksum: one x-amz-checksum-<algorithm> (a
 * COMPOSITE value may end in `-<parts>`), x-amz-checksum-type and x-amz-mp-object-size.
 */
export function parseCompletionChecksum(req: IncomingMessage): {
  checksum?: { algorithm: ChecksumAlgorithm; value: string };
  checksumType?: ChecksumType;
  objectSize?: number;
} {
  const given = CHECKSUM_HEADERS.flatMap(([name, algorithm, bytes]) => {
    const value = header(req, name)?.trim();
    if (value === undefined) return [];
    const [, digest, suffix] = /^([A-Za-z0-9+/]*={0,2})(-\d{1,5})?$/.exec(value) ?? [];
    if (digest === undefined) throw invalidRequest(`Value for ${name} header is invalid.`);
    checksumValue(name, digest, bytes);
    return [{ algorithm, value: digest + (suffix ?? '') }];
  });
  if (given.length > 1) throw invalidRequest('Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.');
  const checksumType = parseChecksumType(header(req, 'x-amz-checksum-type'));
  const objectSize = parseLength('x-amz-mp-object-size', header(req, 'x-amz-mp-object-size'));
  return {
    ...(given[0] === undefined ? {} : { checksum: given[0] }),
    ...(checksumType === undefined ? {} : { checksumType }),
    ...(objectSize === undefined ? {} : { objectSize }),
  };
}

/** The response headers for checksums an object or part carries. */
export function checksumHeaders(checksums: Readonly<Partial<Record<ChecksumAlgorithm, string>>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, algorithm] of CHECKSUM_HEADERS) {
    const value = checksums[algorithm];
    if (value !== undefined) out[name] = value;
  }
  return out;
}

function parseContentMd5(req: IncomingMessage): string | undefined {
  const value = header(req, 'content-md5');
  if (value === undefined) return undefined;
  const trimmed = value.trim();
  if (!/^[A-Za-z0-9+/]{22}==$/.test(trimmed)) throw invalidArgument('The Content-MD5 you specified is not valid.', 'invalid-digest');
  return trimmed;
}

function parseLength(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d{1,16}$/.test(value.trim())) throw invalidArgument(`${name} is not a valid length`);
  return Number(value.trim());
}

// --- Range ----------------------------------------------------------------------------------------

function rangeNumber(digits: string): number {
  // Past 2^53 nothing is addressable anyway; clamping keeps comparisons exact.
  return digits.length > 15 ? Number.MAX_SAFE_INTEGER : Number(digits);
}

function unsatisfiable(): AirlockError {
  return new AirlockError('RANGE_NOT_SATISFIABLE', 'The requested range is not satisfiable');
}

/**
 * Parses `Range: bytes=…` (RFC 9110 §14.1.2) into the engine's RangeRequest. Another unit, or
 * several ranges, are ignored (the whole object is sent, as S3 does); a malformed byte range is
 * InvalidRange.
 */
export function parseRange(value: string | undefined): RangeRequest | undefined {
  if (value === undefined) return undefined;
  const trimmed = value.trim();
  const eq = trimmed.indexOf('=');
  if (eq < 0 || trimmed.slice(0, eq).trim().toLowerCase() !== 'bytes') return undefined;
  const spec = trimmed.slice(eq + 1).trim();
  if (spec.includes(',')) return undefined;
  const suffix = /^-(\d+)$/.exec(spec);
  if (suffix !== null) {
    const length = rangeNumber(suffix[1] as string);
    if (length === 0) throw unsatisfiable();
    return { suffixLength: length };
  }
  const span = /^(\d+)-(\d*)$/.exec(spec);
  if (span === null) throw unsatisfiable();
  const start = rangeNumber(span[1] as string);
  if (span[2] === '') return { start };
  const end = rangeNumber(span[2] as string);
  if (end < start) throw unsatisfiable();
  return { start, end };
}

// --- conditional requests -------------------------------------------------------------------------

function httpDate(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const time = Date.parse(value);
  return Number.isNaN(time) ? undefined : time;
}

function preconditionFailed(condition: string): AirlockError {
  return new AirlockError('PRECONDITION_FAILED', 'At least one of the pre-conditions you specified did not hold', { details: { condition } });
}

/**
 * Evaluates `<prefix>if-match` / `-if-unmodified-since` (412) and `-if-none-match` /
 * `-if-modified-since` (not modified) in RFC 9110 §13.2.2 order, as S3 does: a date condition
 * counts only without its ETag counterpart.
 */
function evaluatePreconditions(req: IncomingMessage, prefix: string, meta: ObjectMeta): 'not-modified' | undefined {
  const seconds = Math.floor(meta.lastModified.getTime() / 1000) * 1000;
  const ifMatch = header(req, `${prefix}if-match`);
  if (ifMatch !== undefined) {
    if (!etagListMatches(ifMatch, meta.etag)) throw preconditionFailed(`${prefix}If-Match`);
  } else {
    const since = httpDate(header(req, `${prefix}if-unmodified-since`));
    if (since !== undefined && seconds > since) throw preconditionFailed(`${prefix}If-Unmodified-Since`);
  }
  const ifNoneMatch = header(req, `${prefix}if-none-match`);
  if (ifNoneMatch !== undefined) {
    if (etagListMatches(ifNoneMatch, meta.etag)) return 'not-modified';
  } else {
    const since = httpDate(header(req, `${prefix}if-modified-since`));
    if (since !== undefined && seconds <= since) return 'not-modified';
  }
  return undefined;
}

/** GET and HEAD: If-Match / If-Unmodified-Since fail with 412; returns 304 when If-None-Match / If-Modified-Since say the client's copy is current. */
export function checkPreconditions(req: IncomingMessage, meta: ObjectMeta): 304 | undefined {
  return evaluatePreconditions(req, '', meta) === 'not-modified' ? 304 : undefined;
}

/** CopyObject and UploadPartCopy: every x-amz-copy-source-if-* condition that fails on the source is 412, as on S3 (there is no 304 for a copy). */
export function checkCopySourcePreconditions(req: IncomingMessage, source: ObjectMeta): void {
  if (evaluatePreconditions(req, 'x-amz-copy-source-', source) === 'not-modified') throw preconditionFailed('x-amz-copy-source-If-None-Match or -If-Modified-Since');
}

/**
 * If-Match and If-None-Match on a write or a delete. If-None-Match takes only `*` there (S3
 * implements nothing else), and a delete takes If-Match only.
 */
export function parseWriteCondition(req: IncomingMessage, options: { readonly ifNoneMatch: boolean }): WriteCondition | undefined {
  const ifMatch = header(req, 'if-match')?.trim();
  if (!options.ifNoneMatch) return ifMatch === undefined ? undefined : { ifMatch };
  // A write (PutObject, CopyObject, CompleteMultipartUpload) takes one condition: If-None-Match: * or
  // If-Match with ETags. As on S3, anything else is 501 naming the header (DeleteObject's If-Match
  // alone also takes *).
  const ifNoneMatch = header(req, 'if-none-match')?.trim();
  const refuse = (name: string, additionalMessage: string): AirlockError =>
    new AirlockError('NOT_IMPLEMENTED', 'A header you provided implies functionality that is not implemented', { details: { header: name, additionalMessage } });
  if (ifMatch !== undefined && ifNoneMatch !== undefined) throw refuse('If-Match,If-None-Match', 'Multiple conditional request headers present in the request');
  if (ifNoneMatch !== undefined && ifNoneMatch !== '*') throw refuse('If-None-Match', "We don't accept the provided value of If-None-Match header for this API");
  if (ifMatch === '*') throw refuse('If-Match', "We don't accept the provided value of If-Match header for this API");
  if (ifMatch === undefined && ifNoneMatch === undefined) return undefined;
  return { ...(ifMatch === undefined ? {} : { ifMatch }), ...(ifNoneMatch === undefined ? {} : { ifNoneMatch }) };
}

// --- bodies ---------------------------------------------------------------------------------------

/** Counts (and caps) the body; for a signed plain body, checks its SHA-256 against x-amz-content-sha256 at the end. */
class BodyGuard extends Transform {
  readonly #maxBytes: number;
  readonly #expectedSha256: string | undefined;
  readonly #hash: Hash | undefined;
  #bytes = 0;

  constructor(maxBytes: number, expectedSha256: string | undefined) {
    super();
    this.#maxBytes = maxBytes;
    this.#expectedSha256 = expectedSha256?.toLowerCase();
    this.#hash = expectedSha256 === undefined ? undefined : createHash('sha256');
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#bytes += chunk.byteLength;
    if (this.#bytes > this.#maxBytes) {
      callback(new AirlockError('PAYLOAD_TOO_LARGE', 'Your proposed upload exceeds the maximum allowed size', { details: { maxSizeAllowed: this.#maxBytes } }));
      return;
    }
    this.#hash?.update(chunk);
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    if (this.#hash !== undefined && this.#hash.digest('hex') !== this.#expectedSha256) {
      callback(
        new AirlockError('DIGEST_MISMATCH', "The provided 'x-amz-content-sha256' header does not match what was computed.", {
          details: { kind: 'content-sha256' },
        }),
      );
      return;
    }
    callback();
  }
}

export type ChecksumValues = Partial<Record<ChecksumAlgorithm, string>>;

export interface RequestBody {
  /**
   * The decoded body (aws-chunked framing removed). Lazy: nothing is read from the socket, and
   * no `100 Continue` is sent, until the consumer first reads, so a request refused before then
   * never has its body transferred.
   */
  readonly body: Readable;
  /** Declared decoded length: x-amz-decoded-content-length for aws-chunked, else Content-Length. */
  readonly expectedLength: number | undefined;
  readonly contentMd5: string | undefined;
  /** From x-amz-checksum-* headers, or a promise of the trailers (settles when the body ends). */
  readonly checksums: ChecksumValues | Promise<ChecksumValues> | undefined;
  /** The algorithms announced by x-amz-trailer, for trailer checksums. */
  readonly checksumAlgorithms: readonly ChecksumAlgorithm[] | undefined;
  /** Releases the socket and the chunk-signing key when the body was never (fully) read. */
  dispose(): void;
}

export interface RequestBodyOptions {
  /** The most decoded bytes accepted. */
  readonly maxBytes: number;
  /** Called once, just before the first byte is read (sends `100 Continue` when the client waits for it). */
  readonly onStart: () => void;
  /** The reason code for a too-large body. */
  readonly tooLargeReason?: string;
  /**
   * Whether x-amz-checksum-* headers are checksums of this body. On CompleteMultipartUpload they are
   * the object's checksum instead. @default true
   */
  readonly checksumHeadersCoverBody?: boolean;
}

/**
 * Prepares a request body for the engine: aws-chunked decoding (chunk signatures checked in
 * signed mode), SHA-256 verification of a signed plain body, the size cap, and the checksums to
 * verify, from headers or from trailers announced by x-amz-trailer.
 */
export function openRequestBody(req: IncomingMessage, verified: VerifiedRequest, options: RequestBodyOptions): RequestBody {
  refuseUnsupportedChecksums(req);
  const mode = chunkedPayloadMode(verified.payloadHash);
  const encodings = (header(req, 'content-encoding') ?? '').split(',').map((e) => e.trim().toLowerCase());
  const hexPayload = /^[0-9a-fA-F]{64}$/.test(verified.payloadHash);
  if (encodings.includes('aws-chunked') && hexPayload) throw invalidRequest('An aws-chunked body cannot be signed with a SHA-256 payload hash');
  const chunked = mode !== undefined || encodings.includes('aws-chunked');

  const trailerNames = (header(req, 'x-amz-trailer') ?? '')
    .split(',')
    .map((name) => name.trim().toLowerCase())
    .filter((name) => name !== '');
  const trailerAlgorithms = trailerNames.map((name) => {
    const entry = CHECKSUM_HEADERS.find(([headerName]) => headerName === name);
    if (entry === undefined) throw invalidArgument(`The trailer ${name} is not supported`);
    return entry;
  });
  const trailer = mode?.trailer ?? trailerNames.length > 0;
  if (trailerNames.length > 0 && (!chunked || !trailer)) throw invalidRequest('x-amz-trailer requires an aws-chunked body with trailers');

  const contentLength = parseLength('Content-Length', header(req, 'content-length'));
  const decodedLength = parseLength('x-amz-decoded-content-length', header(req, 'x-amz-decoded-content-length'));
  const expectedLength = chunked ? decodedLength : contentLength;
  const tooLarge = (): AirlockError =>
    new AirlockError('PAYLOAD_TOO_LARGE', 'Your proposed upload exceeds the maximum allowed size', {
      details: { maxSizeAllowed: options.maxBytes, ...(options.tooLargeReason === undefined ? {} : { reason: options.tooLargeReason }) },
    });
  if (expectedLength !== undefined && expectedLength > options.maxBytes) throw tooLarge();

  const headerChecksums: ChecksumValues = {};
  for (const [name, algorithm, bytes] of options.checksumHeadersCoverBody === false ? [] : CHECKSUM_HEADERS) {
    const value = header(req, name);
    if (value !== undefined) headerChecksums[algorithm] = checksumValue(name, value, bytes);
  }
  const contentMd5 = parseContentMd5(req);

  // Built now, while the request's signing key is still at hand (the decoder keeps its own copy).
  let decoder: ChunkedPayloadDecoder | undefined;
  if (chunked) {
    const signed = mode?.mode === 'signed';
    decoder = createChunkedPayloadDecoder({
      mode: signed ? 'signed' : 'unsigned',
      trailer,
      ...(decodedLength === undefined ? {} : { expectedDecodedLength: decodedLength }),
      ...(signed ? { signingKey: verified.signingKey, seedSignature: verified.seedSignature, scope: verified.scope, date: verified.date } : {}),
    });
  }

  let checksums: RequestBody['checksums'] = Object.keys(headerChecksums).length > 0 ? headerChecksums : undefined;
  let checksumAlgorithms: ChecksumAlgorithm[] | undefined;
  if (decoder !== undefined && trailerAlgorithms.length > 0) {
    checksumAlgorithms = [...new Set([...trailerAlgorithms.map(([, algorithm]) => algorithm), ...(Object.keys(headerChecksums) as ChecksumAlgorithm[])])];
    const fromTrailers = decoder.trailers.then((trailers) => {
      const values: ChecksumValues = { ...headerChecksums };
      for (const [name, algorithm, bytes] of trailerAlgorithms) {
        const value = trailers.get(name);
        if (value === undefined) throw invalidRequest(`The announced trailer ${name} is missing`);
        values[algorithm] = checksumValue(name, value, bytes);
      }
      return values;
    });
    // The engine awaits this only after the body ends; a failed body must not also be an unhandled rejection.
    fromTrailers.catch(() => undefined);
    checksums = fromTrailers;
  }

  const guard = new BodyGuard(options.maxBytes, chunked || !hexPayload ? undefined : verified.payloadHash);
  const head = decoder ?? guard;
  let started = false;
  const onRequestError = (): void => {
    head.destroy(new AirlockError('ABORTED', 'The client closed the connection before sending the whole body'));
  };
  const onRequestClose = (): void => {
    if (!req.complete) onRequestError();
  };

  async function* read(): AsyncGenerator<Buffer> {
    started = true;
    options.onStart();
    if (decoder !== undefined) {
      decoder.pipe(guard);
      decoder.once('error', (error) => guard.destroy(error));
    }
    req.once('error', onRequestError);
    req.once('close', onRequestClose);
    req.pipe(head);
    try {
      for await (const chunk of guard) yield chunk as Buffer;
    } finally {
      req.unpipe(head);
      req.off('error', onRequestError);
      req.off('close', onRequestClose);
      decoder?.destroy();
    }
  }
  const body = Readable.from(read(), { objectMode: false });
  return {
    body,
    expectedLength,
    contentMd5,
    checksums,
    checksumAlgorithms,
    dispose() {
      if (!started) decoder?.destroy();
      if (!body.destroyed) body.destroy();
    },
  };
}

/** Reads a small body (an XML document) whole, verifying Content-MD5 and any x-amz-checksum-* values. */
export async function readSmallBody(prepared: RequestBody): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const md5 = prepared.contentMd5 === undefined ? undefined : createHash('md5');
  try {
    for await (const chunk of prepared.body) {
      chunks.push(chunk as Buffer);
      md5?.update(chunk as Buffer);
    }
  } finally {
    prepared.dispose();
  }
  const body = Buffer.concat(chunks);
  if (md5 !== undefined && md5.digest('base64') !== prepared.contentMd5) {
    throw new AirlockError('DIGEST_MISMATCH', 'The Content-MD5 you specified did not match what we received.', { details: { kind: 'content-md5' } });
  }
  const expected = (await prepared.checksums) ?? {};
  for (const [algorithm, value] of Object.entries(expected) as Array<[ChecksumAlgorithm, string]>) {
    const digest = createDigest(algorithm);
    digest.update(body);
    if (digest.base64() !== value) {
      throw new AirlockError('DIGEST_MISMATCH', `The ${algorithm} you specified did not match the calculated checksum.`, { details: { kind: 'checksum', algorithm } });
    }
  }
  return body;
}
