// SigV4 core: canonical headers and request, string to sign, signing-key derivation (with a bounded cache).
import { createHash, createHmac } from 'node:crypto';
import { AirlockError } from '@airlock/common';
import { constantTimeEqual, zeroize } from '../bytes.js';
import { wireBytes, type WireEncoding } from './sigv4-encoding.js';

export const SIGV4_ALGORITHM = 'AWS4-HMAC-SHA256';
export const SIGV4_TERMINATOR = 'aws4_request';
/** SHA-256 of the empty string, the payload hash of a request without a body. */
export const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
export const UNSIGNED_PAYLOAD = 'UNSIGNED-PAYLOAD';
export const STREAMING_SIGNED_PAYLOAD = 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD';
export const STREAMING_SIGNED_PAYLOAD_TRAILER = 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER';
export const STREAMING_UNSIGNED_PAYLOAD_TRAILER = 'STREAMING-UNSIGNED-PAYLOAD-TRAILER';
/** The longest presigned-URL lifetime AWS allows: seven days. */
export const MAX_PRESIGN_EXPIRES_SECONDS = 604_800;

/** x-amz-content-sha256 values other than a hex digest that HMAC-SHA256 SigV4 accepts. */
const PAYLOAD_HASH_TOKENS: ReadonlySet<string> = new Set([
  UNSIGNED_PAYLOAD,
  STREAMING_SIGNED_PAYLOAD,
  STREAMING_SIGNED_PAYLOAD_TRAILER,
  STREAMING_UNSIGNED_PAYLOAD_TRAILER,
]);

const HEX_SHA256 = /^[0-9a-fA-F]{64}$/;

/** True for a 64-digit hex SHA-256 digest. */
export function isHexSha256(value: string): boolean {
  return HEX_SHA256.test(value);
}

/** True for a value that may stand in the payload-hash line of a canonical request. */
export function isPayloadHash(value: string): boolean {
  return isHexSha256(value) || PAYLOAD_HASH_TOKENS.has(value);
}

/** A header value as Node's IncomingHttpHeaders (or a caller) holds it. */
export type SigV4HeaderValue = string | number | readonly string[] | undefined;

/**
 * Request headers: an object (IncomingHttpHeaders-like; pass Node's `req.headersDistinct` to keep
 * repeated headers apart) or an ordered list of (name, value) pairs.
 */
export type SigV4Headers = Readonly<Record<string, SigV4HeaderValue>> | ReadonlyArray<readonly [string, string]>;

/** RFC 9110 §5.1 field-name token. */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** Collects headers by lower-cased name, keeping every value in order of appearance. */
export function collectHeaders(headers: SigV4Headers): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const add = (name: string, value: string): void => {
    if (!HEADER_NAME.test(name)) {
      throw new AirlockError('INVALID_ARGUMENT', 'a header name is not a valid HTTP token', { details: { argument: 'headers' } });
    }
    const key = name.toLowerCase();
    const list = out.get(key);
    if (list === undefined) out.set(key, [value]);
    else list.push(value);
  };
  if (Array.isArray(headers)) {
    for (const entry of headers as ReadonlyArray<readonly [string, string]>) {
      if (!Array.isArray(entry) || typeof entry[0] !== 'string' || typeof entry[1] !== 'string') {
        throw new AirlockError('INVALID_ARGUMENT', 'header pairs must be [name, value] strings', { details: { argument: 'headers' } });
      }
      add(entry[0], entry[1]);
    }
    return out;
  }
  if (typeof headers !== 'object' || headers === null) {
    throw new AirlockError('INVALID_ARGUMENT', 'headers must be an object or a list of pairs', { details: { argument: 'headers' } });
  }
  for (const name of Object.keys(headers)) {
    const value = (headers as Readonly<Record<string, SigV4HeaderValue>>)[name];
    if (value === undefined) continue;
    if (typeof value === 'string') add(name, value);
    else if (typeof value === 'number' && Number.isFinite(value)) add(name, String(value));
    else if (Array.isArray(value) && value.every((item) => typeof item === 'string')) {
      for (const item of value as readonly string[]) add(name, item);
    } else {
      throw new AirlockError('INVALID_ARGUMENT', 'header values must be strings, numbers or string arrays', {
        details: { argument: 'headers' },
      });
    }
  }
  return out;
}

/**
 * One canonical header value: line breaks become spaces, runs of spaces and tabs collapse to one,
 * and the ends are trimmed; repeated headers join with ',' in the order they appeared.
 */
export function canonicalHeaderValue(values: readonly string[]): string {
  return values
    .map((value) =>
      value
        .replace(/[\r\n]/g, ' ')
        .replace(/[ \t]+/g, ' ')
        .replace(/^ | $/g, ''),
    )
    .join(',');
}

export interface CanonicalRequestInput {
  readonly method: string;
  readonly canonicalUri: string;
  readonly canonicalQuery: string;
  /** The canonical query as shown in the display copy (credentials masked). @default canonicalQuery */
  readonly displayQuery?: string;
  /** Signed header names (lower case) in the order they are listed in SignedHeaders. */
  readonly signedHeaderNames: readonly string[];
  /** The SignedHeaders string exactly as signed. */
  readonly signedHeaders: string;
  readonly headers: ReadonlyMap<string, readonly string[]>;
  readonly payloadHash: string;
  /** How the header value strings map to bytes. */
  readonly encoding: WireEncoding;
}

/** Header values whose content is a credential, masked in the copy of a canonical request kept for errors. */
const REDACTED_HEADERS: ReadonlySet<string> = new Set(['x-amz-security-token']);
const REDACTED = '[REDACTED]';

/**
 * Builds the canonical request (AWS SigV4 "Create a canonical request") as a byte string: each
 * char is one byte (latin1), so hashing `Buffer.from(result, 'latin1')` hashes the exact bytes.
 * Also returns a display copy, decoded as UTF-8, with the session token masked.
 */
export function buildCanonicalRequest(input: CanonicalRequestInput): { bytes: Buffer; display: string } {
  const lines: string[] = [];
  const displayLines: string[] = [];
  for (const name of input.signedHeaderNames) {
    const values = input.headers.get(name) ?? [];
    const value = wireBytes(canonicalHeaderValue(values), input.encoding).toString('latin1');
    lines.push(`${name}:${value}\n`);
    displayLines.push(REDACTED_HEADERS.has(name) ? `${name}:${REDACTED}\n` : `${name}:${value}\n`);
  }
  const head = `${input.method}\n${input.canonicalUri}\n`;
  const tail = `\n${input.signedHeaders}\n${input.payloadHash}`;
  const bytes = Buffer.from(`${head}${input.canonicalQuery}\n${lines.join('')}${tail}`, 'latin1');
  const displayQuery = input.displayQuery ?? input.canonicalQuery;
  const display = Buffer.from(`${head}${displayQuery}\n${displayLines.join('')}${tail}`, 'latin1').toString('utf8');
  return { bytes, display };
}

/** Masks X-Amz-Security-Token values in a canonical query string kept for errors. */
export function redactCanonicalQuery(canonicalQuery: string): string {
  return canonicalQuery.replace(/(^|&)(X-Amz-Security-Token=)[^&]*/g, `$1$2${REDACTED}`);
}

export function sha256Hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The credential scope: date/region/service/aws4_request. */
export function credentialScope(shortDate: string, region: string, service: string): string {
  return `${shortDate}/${region}/${service}/${SIGV4_TERMINATOR}`;
}

/** The string to sign (AWS SigV4 "Create a string to sign"). */
export function stringToSign(amzDate: string, scope: string, canonicalRequest: Uint8Array): string {
  return `${SIGV4_ALGORITHM}\n${amzDate}\n${scope}\n${sha256Hex(canonicalRequest)}`;
}

function hmac(key: Uint8Array, data: string): Buffer {
  return createHmac('sha256', key).update(data, 'utf8').digest();
}

/** Derives the SigV4 signing key: HMAC chain over date, region, service and "aws4_request". */
export function deriveSigningKeyUncached(secretAccessKey: string, shortDate: string, region: string, service: string): Buffer {
  const seed = Buffer.from(`AWS4${secretAccessKey}`, 'utf8');
  const kDate = hmac(seed, shortDate);
  const kRegion = hmac(kDate, region);
  const kService = hmac(kRegion, service);
  const kSigning = hmac(kService, SIGV4_TERMINATOR);
  zeroize(seed, kDate, kRegion, kService);
  return kSigning;
}

/** The signature: lower-case hex HMAC-SHA256 of `data` under the signing key. */
export function signHex(signingKey: Uint8Array, data: string): string {
  return hmac(signingKey, data).toString('hex');
}

/** The raw HMAC-SHA256 of `data` under the signing key. */
export function signBytes(signingKey: Uint8Array, data: string): Buffer {
  return hmac(signingKey, data);
}

/**
 * Compares a received signature with the expected raw HMAC in constant time, as AWS does: as
 * text, against the lower-case hex form, so an upper-cased copy of a valid signature is refused.
 */
export function signatureMatches(expected: Buffer, received: string): boolean {
  return constantTimeEqual(Buffer.from(expected.toString('hex'), 'latin1'), Buffer.from(received, 'latin1'));
}

/** How many derived keys the cache holds; smithy's SignatureV4 keeps 50. */
export const SIGNING_KEY_CACHE_SIZE = 64;

/**
 * Derived signing keys by (secret, date, region, service), least recently used first. A key is
 * valid for one day, so a busy server derives each at most once a day per credential. The map key
 * holds an HMAC of the secret, never the secret itself. Callers get copies, so zeroing an evicted
 * entry cannot pull a key out from under a stream still using it.
 */
const signingKeyCache = new Map<string, Buffer>();

function cacheKey(secretAccessKey: string, shortDate: string, region: string, service: string): string {
  const fingerprint = createHmac('sha256', secretAccessKey).update('airlock sigv4 signing-key cache').digest('hex');
  return `${fingerprint}\n${shortDate}\n${region}\n${service}`;
}

/** A copy of the signing key for the scope, derived once and then served from the cache. */
export function cachedSigningKey(secretAccessKey: string, shortDate: string, region: string, service: string): Buffer {
  const key = cacheKey(secretAccessKey, shortDate, region, service);
  let signingKey = signingKeyCache.get(key);
  if (signingKey === undefined) {
    signingKey = deriveSigningKeyUncached(secretAccessKey, shortDate, region, service);
    signingKeyCache.set(key, signingKey);
    while (signingKeyCache.size > SIGNING_KEY_CACHE_SIZE) {
      const oldest = signingKeyCache.keys().next().value as string;
      signingKeyCache.get(oldest)?.fill(0);
      signingKeyCache.delete(oldest);
    }
  } else {
    // Re-insert so iteration order tracks recency.
    signingKeyCache.delete(key);
    signingKeyCache.set(key, signingKey);
  }
  return Buffer.from(signingKey);
}

/** Empties the signing-key cache, zeroing every key (e.g. after a credential is revoked). */
export function clearSigningKeyCache(): void {
  for (const signingKey of signingKeyCache.values()) signingKey.fill(0);
  signingKeyCache.clear();
}

/** The number of keys in the cache (for tests). */
export function signingKeyCacheSize(): number {
  return signingKeyCache.size;
}
