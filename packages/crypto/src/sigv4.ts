// AWS Signature Version 4: request signing, presigned URLs, verification, and S3 aws-chunked payloads.
import { AirlockError } from '@airlock/common';
import { zeroize } from './bytes.js';
import {
  authError,
  hasQueryAuth,
  hasSigV2QueryAuth,
  parseAuthorizationHeader,
  parseQueryAuthorization,
  QUERY_ALGORITHM,
  QUERY_CREDENTIAL,
  QUERY_DATE,
  QUERY_EXPIRES,
  QUERY_SECURITY_TOKEN,
  QUERY_SIGNATURE,
  QUERY_SIGNED_HEADERS,
  type ParsedAuthorization,
} from './internal/sigv4-auth-parse.js';
import {
  buildCanonicalRequest,
  cachedSigningKey,
  collectHeaders,
  credentialScope,
  deriveSigningKeyUncached,
  EMPTY_SHA256,
  isHexSha256,
  isPayloadHash,
  MAX_PRESIGN_EXPIRES_SECONDS,
  redactCanonicalQuery,
  sha256Hex,
  signatureMatches,
  signBytes,
  signHex,
  SIGV4_ALGORITHM,
  STREAMING_SIGNED_PAYLOAD,
  STREAMING_SIGNED_PAYLOAD_TRAILER,
  STREAMING_UNSIGNED_PAYLOAD_TRAILER,
  stringToSign,
  UNSIGNED_PAYLOAD,
  type SigV4Headers,
} from './internal/sigv4-canonical.js';
import {
  ChunkedPayloadDecoder,
  ChunkedPayloadEncoder,
  type ChunkedPayloadDecoderOptions,
  type ChunkedPayloadEncoderOptions,
} from './internal/sigv4-chunked.js';
import {
  canonicalQueryString,
  canonicalUri,
  formatAmzDate,
  isFormattableDate,
  parseAmzDate,
  parseRawQuery,
  queryParamsFromPairs,
  uriEncode,
  type QueryParam,
  type WireEncoding,
} from './internal/sigv4-encoding.js';

export {
  EMPTY_SHA256,
  MAX_PRESIGN_EXPIRES_SECONDS,
  SIGV4_ALGORITHM,
  STREAMING_SIGNED_PAYLOAD,
  STREAMING_SIGNED_PAYLOAD_TRAILER,
  STREAMING_UNSIGNED_PAYLOAD_TRAILER,
  UNSIGNED_PAYLOAD,
  clearSigningKeyCache,
  type SigV4HeaderValue,
  type SigV4Headers,
} from './internal/sigv4-canonical.js';
export {
  AWS_CHUNKED_MAX_CHUNK_SIZE,
  ChunkedPayloadDecoder,
  ChunkedPayloadEncoder,
  type ChunkSigningContext,
  type ChunkedPayloadDecoderOptions,
  type ChunkedPayloadEncoderOptions,
} from './internal/sigv4-chunked.js';
export type { WireEncoding } from './internal/sigv4-encoding.js';

/** The default allowed difference between a request's time and the server's clock: 15 minutes, as AWS. */
export const SIGV4_DEFAULT_MAX_SKEW_SECONDS = 900;

export interface SigV4Credentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  /** A temporary-credential session token, sent as x-amz-security-token / X-Amz-Security-Token. */
  readonly sessionToken?: string;
}

/** A query string: raw as on the wire (percent-encoded, no leading '?'), or decoded (name, value) pairs. */
export type SigV4Query = string | ReadonlyArray<readonly [string, string]>;

interface SigV4SigningOptions {
  readonly method: string;
  /** The path as it will be sent on the wire (already percent-encoded where needed), without the query. */
  readonly path: string;
  /** @default '' */
  readonly query?: SigV4Query;
  /** The request headers; `host` is required. Authorization and x-amz-date are replaced. */
  readonly headers: SigV4Headers;
  /**
   * The payload-hash line: a hex SHA-256 or UNSIGNED-PAYLOAD / STREAMING-…. At most one of this
   * and `body`. @default an x-amz-content-sha256 header if present, else the SHA-256 of `body`,
   * else UNSIGNED-PAYLOAD for a presigned S3 URL and the SHA-256 of the empty string otherwise
   */
  readonly payloadHash?: string;
  /** The body, hashed for the payload-hash line (strings as UTF-8). */
  readonly body?: string | Uint8Array;
  readonly credentials: SigV4Credentials;
  readonly region: string;
  readonly service: string;
  /** The signing time. @default new Date() */
  readonly date?: Date;
  /** Remove '.'/'..' segments and collapse duplicate slashes in the canonical URI. @default service !== 's3' */
  readonly normalizePath?: boolean;
  /** URI-encode the (already encoded) path again, as every service but S3 expects. @default service !== 's3' */
  readonly uriEscapePath?: boolean;
  /**
   * Leave the session token out of the signature and add it afterwards (aws-c-auth's
   * `omit_session_token`, needed by a few services). @default false
   */
  readonly omitSessionToken?: boolean;
}

export interface SignRequestOptions extends SigV4SigningOptions {
  /** Add (and sign) an x-amz-content-sha256 header carrying the payload hash; S3 requires it. @default service === 's3' */
  readonly addContentSha256Header?: boolean;
}

export interface SignedRequest {
  /** Headers to set on the request: authorization, x-amz-date and, as applicable, x-amz-security-token and x-amz-content-sha256. */
  readonly headers: Readonly<Record<string, string>>;
  readonly authorization: string;
  /** The x-amz-date value, e.g. 20150830T123600Z. */
  readonly amzDate: string;
  /** The credential scope, e.g. 20150830/us-east-1/s3/aws4_request. */
  readonly scope: string;
  /** Lower-case hex; the seed signature of an aws-chunked body. */
  readonly signature: string;
  /** The SignedHeaders list, e.g. host;x-amz-date. */
  readonly signedHeaders: string;
  readonly payloadHash: string;
  readonly canonicalRequest: string;
  readonly stringToSign: string;
}

export interface PresignUrlOptions extends SigV4SigningOptions {
  /** The URL's lifetime in seconds, from 1 to 604800 (seven days). */
  readonly expiresInSeconds: number;
  /** @default 'https' */
  readonly protocol?: 'https' | 'http';
}

export interface PresignedUrl {
  /** protocol://host/path?query. */
  readonly url: string;
  /** The path as given. */
  readonly path: string;
  /** The full query string, the original parameters first and X-Amz-Signature last (no leading '?'). */
  readonly query: string;
  readonly amzDate: string;
  readonly expiresAt: Date;
  readonly scope: string;
  readonly signature: string;
  readonly signedHeaders: string;
  readonly payloadHash: string;
  readonly canonicalRequest: string;
  readonly stringToSign: string;
}

/** Looks up the secret access key of an access key id; undefined when the key is unknown. */
export type SecretLookup = (accessKeyId: string) => string | undefined | Promise<string | undefined>;

export interface VerifyRequestOptions {
  readonly method: string;
  /** The path exactly as received on the wire (still percent-encoded), without the query. */
  readonly path: string;
  /** The query string as received, without the leading '?'. @default '' */
  readonly rawQuery?: string;
  /**
   * The received headers. Pass Node's `req.headersDistinct` (or rawHeaders pairs): Node's
   * `req.headers` joins repeated headers with ', ', which is not how they were signed.
   */
  readonly headers: SigV4Headers;
  /**
   * The hex SHA-256 of the body as received, when the server has it (e.g. a KMS JSON request).
   * Used when the request declares no x-amz-content-sha256; when it declares a hex digest, the two
   * must agree. Without either, only presigned S3 requests (UNSIGNED-PAYLOAD) can verify.
   */
  readonly payloadHash?: string;
  readonly lookupSecret: SecretLookup;
  /** The region (or regions) this server answers for. */
  readonly region: string | readonly string[];
  /** The signing name of this service, e.g. 'kms' or 's3'. */
  readonly service: string;
  /** The server's clock. @default new Date() */
  readonly now?: Date;
  /** The allowed difference between the request time and `now`. @default 900 */
  readonly maxSkewSeconds?: number;
  /** @default service !== 's3' */
  readonly normalizePath?: boolean;
  /** @default service !== 's3' */
  readonly uriEscapePath?: boolean;
  /** How path, query and header strings map to wire bytes: 'latin1' for Node's http module. @default 'latin1' */
  readonly wireEncoding?: WireEncoding;
  /** Accept presigned URLs whose X-Amz-Security-Token was added after signing (see `omitSessionToken`). @default false */
  readonly unsignedSessionToken?: boolean;
  /** Reject requests that carry an x-amz-* header the signature does not cover (S3 does). @default false */
  readonly requireSignedAmzHeaders?: boolean;
  /**
   * Accept a payload-hash line other than a hex digest (UNSIGNED-PAYLOAD, STREAMING-…), i.e. a
   * body the request signature does not cover. Only S3 does this. @default service === 's3'
   */
  readonly allowUnsignedPayload?: boolean;
}

export interface VerifiedRequest {
  readonly authType: 'header' | 'query';
  readonly accessKeyId: string;
  /** The session token the request carried, for the caller to validate; undefined if none. */
  readonly sessionToken: string | undefined;
  readonly region: string;
  readonly service: string;
  /** The credential scope, e.g. 20130524/us-east-1/s3/aws4_request. */
  readonly scope: string;
  /** The request's x-amz-date, e.g. 20130524T000000Z. */
  readonly date: string;
  readonly requestTime: Date;
  /** When a presigned URL stops being valid; undefined for header authentication. */
  readonly expiresAt: Date | undefined;
  readonly signedHeaders: readonly string[];
  /**
   * The payload-hash line that was signed: a hex digest (checked against `payloadHash` when one was
   * given; otherwise the caller must hash the body and compare), or, only with allowUnsignedPayload,
   * UNSIGNED-PAYLOAD or STREAMING-… (see chunkedPayloadMode).
   */
  readonly payloadHash: string;
  /** The verified request signature (lower-case hex): the seed of an aws-chunked body. */
  readonly seedSignature: string;
  /** The derived signing key, for chunk validation. A fresh copy the caller owns: zeroize it when done. */
  readonly signingKey: Buffer;
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const SCOPE_PART = /^[\x21-\x2e\x30-\x7e]{1,128}$/;
/** Headers no SigV4 signer signs (smithy's list): they change in transit or are added by the HTTP stack. */
const UNSIGNABLE_HEADERS: ReadonlySet<string> = new Set([
  'authorization',
  'cache-control',
  'connection',
  'expect',
  'from',
  'keep-alive',
  'max-forwards',
  'pragma',
  'referer',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'user-agent',
  'x-amzn-trace-id',
]);

function invalid(argument: string, message: string): AirlockError {
  return new AirlockError('INVALID_ARGUMENT', message, { details: { argument } });
}

function checkString(argument: string, value: unknown, pattern: RegExp, what: string): string {
  if (typeof value !== 'string' || !pattern.test(value)) throw invalid(argument, `${argument} must be ${what}`);
  return value;
}

function checkBoolean(argument: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw invalid(argument, `${argument} must be a boolean`);
  return value;
}

function checkPath(value: unknown): string {
  if (typeof value !== 'string' || !(value === '' || value.startsWith('/')) || /[?#\r\n]/.test(value)) {
    throw invalid('path', "path must start with '/' and hold no query, fragment or line break");
  }
  return value;
}

function checkRawQuery(argument: string, value: unknown): string {
  if (value === undefined) return '';
  if (typeof value !== 'string' || /[#\r\n]/.test(value)) throw invalid(argument, `${argument} must be a query string`);
  return value.startsWith('?') ? value.slice(1) : value;
}

interface ResolvedSigning {
  readonly method: string;
  readonly path: string;
  readonly rawQuery: string | undefined;
  readonly queryParams: QueryParam[];
  readonly headers: Map<string, string[]>;
  readonly credentials: SigV4Credentials;
  readonly region: string;
  readonly service: string;
  readonly amzDate: string;
  readonly scope: string;
  readonly normalizePath: boolean;
  readonly uriEscapePath: boolean;
  readonly omitSessionToken: boolean;
}

function resolveSigning(options: SigV4SigningOptions): ResolvedSigning {
  if (typeof options !== 'object' || options === null) throw invalid('options', 'options must be an object');
  const method = checkString('method', options.method, TOKEN, 'an HTTP method token');
  const path = checkPath(options.path);
  const credentials = options.credentials as SigV4Credentials | undefined;
  if (typeof credentials !== 'object' || credentials === null) throw invalid('credentials', 'credentials must be an object');
  checkString('credentials.accessKeyId', credentials.accessKeyId, SCOPE_PART, 'printable ASCII without "/"');
  if (typeof credentials.secretAccessKey !== 'string' || credentials.secretAccessKey === '' || credentials.secretAccessKey.length > 1024) {
    throw invalid('credentials.secretAccessKey', 'credentials.secretAccessKey must be a non-empty string');
  }
  if (credentials.sessionToken !== undefined) {
    checkString('credentials.sessionToken', credentials.sessionToken, /^[^\r\n]{1,65536}$/, 'a non-empty single-line string');
  }
  const region = checkString('region', options.region, SCOPE_PART, 'printable ASCII without "/"');
  const service = checkString('service', options.service, SCOPE_PART, 'printable ASCII without "/"');
  const date = options.date ?? new Date();
  if (!isFormattableDate(date)) throw invalid('date', 'date must be a valid Date');
  const amzDate = formatAmzDate(date);

  let rawQuery: string | undefined;
  let queryParams: QueryParam[];
  if (options.query === undefined || typeof options.query === 'string') {
    rawQuery = checkRawQuery('query', options.query);
    queryParams = parseRawQuery(rawQuery, 'utf8');
  } else if (
    Array.isArray(options.query) &&
    options.query.every((pair) => Array.isArray(pair) && typeof pair[0] === 'string' && typeof pair[1] === 'string')
  ) {
    queryParams = queryParamsFromPairs(options.query);
  } else {
    throw invalid('query', 'query must be a raw query string or a list of [name, value] pairs');
  }
  const headers = collectHeaders(options.headers);
  if (headers.get('host')?.length !== 1) throw invalid('headers', 'headers must hold exactly one host header');
  return {
    method,
    path,
    rawQuery,
    queryParams,
    headers,
    credentials,
    region,
    service,
    amzDate,
    scope: credentialScope(amzDate.slice(0, 8), region, service),
    normalizePath: checkBoolean('normalizePath', options.normalizePath, service !== 's3'),
    uriEscapePath: checkBoolean('uriEscapePath', options.uriEscapePath, service !== 's3'),
    omitSessionToken: checkBoolean('omitSessionToken', options.omitSessionToken, false),
  };
}

function resolvePayloadHash(options: SigV4SigningOptions, headers: ReadonlyMap<string, string[]>, presigned: boolean, service: string): string {
  const declared = headers.get('x-amz-content-sha256');
  if (declared !== undefined && (declared.length !== 1 || !isPayloadHash(declared[0] as string))) {
    throw invalid('headers', 'x-amz-content-sha256 must be one hex SHA-256 or UNSIGNED-PAYLOAD / STREAMING-… value');
  }
  if (options.payloadHash !== undefined && options.body !== undefined) throw invalid('payloadHash', 'give payloadHash or body, not both');
  if (options.payloadHash !== undefined) {
    if (typeof options.payloadHash !== 'string' || !isPayloadHash(options.payloadHash)) {
      throw invalid('payloadHash', 'payloadHash must be a hex SHA-256 or UNSIGNED-PAYLOAD / STREAMING-…');
    }
    if (declared !== undefined && declared[0] !== options.payloadHash) throw invalid('payloadHash', 'payloadHash differs from x-amz-content-sha256');
    return options.payloadHash;
  }
  if (declared !== undefined) return declared[0] as string;
  if (options.body !== undefined) {
    if (typeof options.body !== 'string' && !(options.body instanceof Uint8Array)) throw invalid('body', 'body must be a string or Uint8Array');
    return sha256Hex(options.body);
  }
  return presigned && service === 's3' ? UNSIGNED_PAYLOAD : EMPTY_SHA256;
}

function signedHeaderNames(headers: ReadonlyMap<string, string[]>): string[] {
  return [...headers.keys()].filter((name) => !UNSIGNABLE_HEADERS.has(name) && !/^(?:proxy-|sec-)/.test(name)).sort();
}

function sign(resolved: ResolvedSigning, names: readonly string[], canonicalQuery: string, payloadHash: string) {
  const canonical = buildCanonicalRequest({
    method: resolved.method,
    canonicalUri: canonicalUri(resolved.path, { normalize: resolved.normalizePath, escape: resolved.uriEscapePath, encoding: 'utf8' }),
    canonicalQuery,
    signedHeaderNames: names,
    signedHeaders: names.join(';'),
    headers: resolved.headers,
    payloadHash,
    encoding: 'utf8',
  });
  const toSign = stringToSign(resolved.amzDate, resolved.scope, canonical.bytes);
  const signingKey = cachedSigningKey(resolved.credentials.secretAccessKey, resolved.amzDate.slice(0, 8), resolved.region, resolved.service);
  const signature = signHex(signingKey, toSign);
  zeroize(signingKey);
  return { canonicalRequest: canonical.bytes.toString('utf8'), stringToSign: toSign, signature };
}

/**
 * Signs a request for header authentication (AWS SigV4). Returns the headers to add; the caller
 * sends the request with exactly the path, query and signed headers it passed in.
 */
export function signRequest(options: SignRequestOptions): SignedRequest {
  const resolved = resolveSigning(options);
  const addContentSha256 = checkBoolean('addContentSha256Header', options.addContentSha256Header, resolved.service === 's3');
  const { headers, credentials } = resolved;
  headers.delete('authorization');
  headers.set('x-amz-date', [resolved.amzDate]);
  const token = credentials.sessionToken;
  if (token !== undefined) {
    if (resolved.omitSessionToken) headers.delete('x-amz-security-token');
    else headers.set('x-amz-security-token', [token]);
  }
  const payloadHash = resolvePayloadHash(options, headers, false, resolved.service);
  if (addContentSha256) headers.set('x-amz-content-sha256', [payloadHash]);
  const names = signedHeaderNames(headers);
  const result = sign(resolved, names, canonicalQueryString(resolved.queryParams), payloadHash);
  const signedHeaders = names.join(';');
  const authorization = `${SIGV4_ALGORITHM} Credential=${credentials.accessKeyId}/${resolved.scope}, SignedHeaders=${signedHeaders}, Signature=${result.signature}`;
  const out: Record<string, string> = { authorization, 'x-amz-date': resolved.amzDate };
  if (token !== undefined) out['x-amz-security-token'] = token;
  if (addContentSha256) out['x-amz-content-sha256'] = payloadHash;
  return {
    headers: Object.freeze(out),
    authorization,
    amzDate: resolved.amzDate,
    scope: resolved.scope,
    signature: result.signature,
    signedHeaders,
    payloadHash,
    canonicalRequest: result.canonicalRequest,
    stringToSign: result.stringToSign,
  };
}

const AUTH_QUERY_NAMES: ReadonlySet<string> = new Set([
  QUERY_ALGORITHM,
  QUERY_CREDENTIAL,
  QUERY_DATE,
  QUERY_EXPIRES,
  QUERY_SIGNED_HEADERS,
  QUERY_SIGNATURE,
  QUERY_SECURITY_TOKEN,
]);

/** Creates a presigned URL (SigV4 query authentication). The signed headers must be sent with it. */
export function presignUrl(options: PresignUrlOptions): PresignedUrl {
  const resolved = resolveSigning(options);
  const expires = options.expiresInSeconds;
  if (!Number.isSafeInteger(expires) || expires < 1 || expires > MAX_PRESIGN_EXPIRES_SECONDS) {
    throw invalid('expiresInSeconds', `expiresInSeconds must be an integer from 1 to ${MAX_PRESIGN_EXPIRES_SECONDS}`);
  }
  const protocol = options.protocol ?? 'https';
  if (protocol !== 'https' && protocol !== 'http') throw invalid('protocol', "protocol must be 'https' or 'http'");
  if (resolved.queryParams.some((param) => AUTH_QUERY_NAMES.has(param.name))) {
    throw invalid('query', 'query must not already hold X-Amz-* authentication parameters');
  }
  const { headers, credentials } = resolved;
  // The time and the token travel in the query; as headers they would be signed twice.
  headers.delete('authorization');
  headers.delete('x-amz-date');
  const token = credentials.sessionToken;
  if (token !== undefined) headers.delete('x-amz-security-token');
  const payloadHash = resolvePayloadHash(options, headers, true, resolved.service);
  const names = signedHeaderNames(headers);
  const signedHeaders = names.join(';');
  // The order aws-c-auth writes them in, so URLs match the AWS test suite byte for byte.
  const authPairs: Array<[string, string]> = [
    [QUERY_ALGORITHM, SIGV4_ALGORITHM],
    [QUERY_CREDENTIAL, `${credentials.accessKeyId}/${resolved.scope}`],
    [QUERY_DATE, resolved.amzDate],
    [QUERY_SIGNED_HEADERS, signedHeaders],
    [QUERY_EXPIRES, String(expires)],
  ];
  const signedPairs = token !== undefined && !resolved.omitSessionToken ? [...authPairs, [QUERY_SECURITY_TOKEN, token] as [string, string]] : authPairs;
  const result = sign(resolved, names, canonicalQueryString([...resolved.queryParams, ...queryParamsFromPairs(signedPairs)]), payloadHash);
  const finalPairs = token !== undefined ? [...authPairs, [QUERY_SECURITY_TOKEN, token] as [string, string]] : authPairs;
  finalPairs.push([QUERY_SIGNATURE, result.signature]);
  const original =
    resolved.rawQuery !== undefined
      ? resolved.rawQuery
      : resolved.queryParams.map((param) => `${param.encodedName}=${param.encodedValue}`).join('&');
  const appended = finalPairs.map(([name, value]) => `${name}=${uriEncode(value, 'utf8', false)}`).join('&');
  const query = original === '' ? appended : `${original}&${appended}`;
  const host = (headers.get('host') as string[])[0] as string;
  const requestTime = parseAmzDate(resolved.amzDate) as Date;
  return {
    url: `${protocol}://${host}${resolved.path}?${query}`,
    path: resolved.path,
    query,
    amzDate: resolved.amzDate,
    expiresAt: new Date(requestTime.getTime() + expires * 1000),
    scope: resolved.scope,
    signature: result.signature,
    signedHeaders,
    payloadHash,
    canonicalRequest: result.canonicalRequest,
    stringToSign: result.stringToSign,
  };
}

/** Derives a SigV4 signing key (uncached). `date` is a Date or its YYYYMMDD form. The caller zeroizes it. */
export function deriveSigningKey(secretAccessKey: string, date: Date | string, region: string, service: string): Buffer {
  if (typeof secretAccessKey !== 'string' || secretAccessKey === '') throw invalid('secretAccessKey', 'secretAccessKey must be a non-empty string');
  let shortDate: string;
  if (typeof date === 'string' && /^\d{8}$/.test(date)) shortDate = date;
  else if (isFormattableDate(date)) shortDate = formatAmzDate(date).slice(0, 8);
  else throw invalid('date', 'date must be a Date or a YYYYMMDD string');
  checkString('region', region, SCOPE_PART, 'printable ASCII without "/"');
  checkString('service', service, SCOPE_PART, 'printable ASCII without "/"');
  return deriveSigningKeyUncached(secretAccessKey, shortDate, region, service);
}

interface ResolvedVerify {
  readonly method: string;
  readonly path: string;
  readonly rawQuery: string;
  readonly payloadHash: string | undefined;
  readonly lookupSecret: SecretLookup;
  readonly regions: readonly string[];
  readonly service: string;
  readonly now: Date;
  readonly maxSkewSeconds: number;
  readonly normalizePath: boolean;
  readonly uriEscapePath: boolean;
  readonly wireEncoding: WireEncoding;
  readonly unsignedSessionToken: boolean;
  readonly requireSignedAmzHeaders: boolean;
  readonly allowUnsignedPayload: boolean;
}

function resolveVerify(options: VerifyRequestOptions): ResolvedVerify {
  if (typeof options !== 'object' || options === null) throw invalid('options', 'options must be an object');
  const service = checkString('service', options.service, SCOPE_PART, 'printable ASCII without "/"');
  const regions = typeof options.region === 'string' ? [options.region] : options.region;
  if (!Array.isArray(regions) || regions.length === 0 || !regions.every((region) => typeof region === 'string' && SCOPE_PART.test(region))) {
    throw invalid('region', 'region must be a region name or a non-empty list of them');
  }
  if (typeof options.lookupSecret !== 'function') throw invalid('lookupSecret', 'lookupSecret must be a function');
  const now = options.now ?? new Date();
  if (!isFormattableDate(now)) throw invalid('now', 'now must be a valid Date');
  const maxSkewSeconds = options.maxSkewSeconds ?? SIGV4_DEFAULT_MAX_SKEW_SECONDS;
  if (!Number.isSafeInteger(maxSkewSeconds) || maxSkewSeconds < 0 || maxSkewSeconds > MAX_PRESIGN_EXPIRES_SECONDS) {
    throw invalid('maxSkewSeconds', `maxSkewSeconds must be an integer from 0 to ${MAX_PRESIGN_EXPIRES_SECONDS}`);
  }
  if (options.payloadHash !== undefined && (typeof options.payloadHash !== 'string' || !isHexSha256(options.payloadHash))) {
    throw invalid('payloadHash', 'payloadHash must be a hex SHA-256');
  }
  const wireEncoding = options.wireEncoding ?? 'latin1';
  if (wireEncoding !== 'latin1' && wireEncoding !== 'utf8') throw invalid('wireEncoding', "wireEncoding must be 'latin1' or 'utf8'");
  return {
    method: checkString('method', options.method, TOKEN, 'an HTTP method token'),
    path: checkPath(options.path),
    rawQuery: checkRawQuery('rawQuery', options.rawQuery),
    payloadHash: options.payloadHash,
    lookupSecret: options.lookupSecret,
    regions,
    service,
    now,
    maxSkewSeconds,
    normalizePath: checkBoolean('normalizePath', options.normalizePath, service !== 's3'),
    uriEscapePath: checkBoolean('uriEscapePath', options.uriEscapePath, service !== 's3'),
    wireEncoding,
    unsignedSessionToken: checkBoolean('unsignedSessionToken', options.unsignedSessionToken, false),
    requireSignedAmzHeaders: checkBoolean('requireSignedAmzHeaders', options.requireSignedAmzHeaders, false),
    allowUnsignedPayload: checkBoolean('allowUnsignedPayload', options.allowUnsignedPayload, service === 's3'),
  };
}

/** The one value of a header, undefined if absent; a repeated header is malformed. */
function singleHeader(headers: ReadonlyMap<string, string[]>, name: string): string | undefined {
  const values = headers.get(name);
  if (values === undefined) return undefined;
  if (values.length !== 1) throw authError('AUTH_MALFORMED', 'duplicate-header', { header: name });
  return values[0];
}

/** The request time of a header-authenticated request: x-amz-date, else the HTTP Date header. */
function headerRequestDate(headers: ReadonlyMap<string, string[]>): string {
  const amzDate = singleHeader(headers, 'x-amz-date');
  if (amzDate !== undefined) return amzDate.trim();
  const httpDate = singleHeader(headers, 'date');
  if (httpDate === undefined) throw authError('AUTH_MALFORMED', 'missing-date');
  // RFC 9110 §5.6.7 IMF-fixdate, e.g. "Sun, 30 Aug 2015 12:36:00 GMT".
  const parsed = /^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/.test(httpDate.trim()) ? new Date(httpDate) : undefined;
  if (parsed === undefined || !isFormattableDate(parsed)) throw authError('AUTH_MALFORMED', 'date-malformed');
  return formatAmzDate(parsed);
}

/**
 * Verifies a SigV4-signed request, by Authorization header or presigned-URL query parameters.
 * Only the headers listed in SignedHeaders are used, and `host` must be among them. Failures throw
 * AirlockError with an AUTH_* code and `details.reason`; a mismatch carries the server's canonical
 * request (session token masked) and string to sign, never a key or the expected signature.
 */
export async function verifyRequest(options: VerifyRequestOptions): Promise<VerifiedRequest> {
  const o = resolveVerify(options);
  const headers = collectHeaders(options.headers);
  const params = parseRawQuery(o.rawQuery, o.wireEncoding);
  const authorization = headers.get('authorization');
  const queryAuth = hasQueryAuth(params);
  if (authorization !== undefined && queryAuth) throw authError('AUTH_MALFORMED', 'multiple-auth-mechanisms');
  if (authorization === undefined && !queryAuth) {
    throw hasSigV2QueryAuth(params) ? authError('AUTH_MALFORMED', 'sigv2-unsupported') : authError('AUTH_MISSING', 'no-authentication');
  }

  let parsed: ParsedAuthorization;
  let amzDate: string;
  let expiresSeconds: number | undefined;
  let sessionToken: string | undefined;
  let declaredHash: string | undefined;
  if (authorization !== undefined) {
    if (authorization.length !== 1) throw authError('AUTH_MALFORMED', 'duplicate-header', { header: 'authorization' });
    parsed = parseAuthorizationHeader(authorization[0] as string);
    amzDate = headerRequestDate(headers);
    sessionToken = singleHeader(headers, 'x-amz-security-token');
    declaredHash = singleHeader(headers, 'x-amz-content-sha256');
  } else {
    const query = parseQueryAuthorization(params);
    parsed = query;
    amzDate = query.amzDate;
    expiresSeconds = query.expiresSeconds;
    sessionToken = query.sessionToken;
    declaredHash = query.contentSha256 ?? singleHeader(headers, 'x-amz-content-sha256');
  }
  const requestTime = parseAmzDate(amzDate);
  if (requestTime === undefined) throw authError('AUTH_MALFORMED', 'date-malformed');

  const { credential } = parsed;
  if (!o.regions.includes(credential.region)) {
    throw authError('AUTH_SCOPE_INVALID', 'region-mismatch', { credentialRegion: credential.region, expectedRegion: o.regions[0] as string });
  }
  if (credential.service !== o.service) {
    throw authError('AUTH_SCOPE_INVALID', 'service-mismatch', { credentialService: credential.service, expectedService: o.service });
  }
  if (credential.date !== amzDate.slice(0, 8)) {
    throw authError('AUTH_SCOPE_INVALID', 'date-mismatch', { credentialDate: credential.date, requestDate: amzDate });
  }

  const skewMs = o.maxSkewSeconds * 1000;
  const offsetMs = requestTime.getTime() - o.now.getTime();
  const timing = { requestTime: amzDate, serverTime: formatAmzDate(o.now), maxSkewSeconds: o.maxSkewSeconds };
  let expiresAt: Date | undefined;
  if (expiresSeconds === undefined) {
    if (Math.abs(offsetMs) > skewMs) throw authError('AUTH_REQUEST_EXPIRED', 'request-time-skewed', timing);
  } else {
    if (offsetMs > skewMs) throw authError('AUTH_REQUEST_EXPIRED', 'request-not-yet-valid', timing);
    expiresAt = new Date(requestTime.getTime() + expiresSeconds * 1000);
    if (o.now.getTime() > expiresAt.getTime()) {
      throw authError('AUTH_REQUEST_EXPIRED', 'presigned-url-expired', { ...timing, expiresAt: formatAmzDate(expiresAt) });
    }
  }

  const signed = parsed.signedHeaderNames;
  if (!signed.includes('host')) throw authError('AUTH_MALFORMED', 'host-not-signed');
  for (const name of signed) {
    if (!headers.has(name)) throw authError('AUTH_SIGNATURE_MISMATCH', 'signed-header-missing', { header: name });
  }
  if (o.requireSignedAmzHeaders) {
    for (const name of headers.keys()) {
      if (name.startsWith('x-amz-') && !signed.includes(name)) throw authError('AUTH_MALFORMED', 'amz-header-not-signed', { header: name });
    }
  }

  let payloadHash: string;
  if (declaredHash !== undefined) {
    if (!isPayloadHash(declaredHash)) throw authError('AUTH_MALFORMED', 'content-sha256-invalid');
    payloadHash = declaredHash;
  } else if (expiresSeconds !== undefined && o.service === 's3') {
    // S3 presigned URLs sign UNSIGNED-PAYLOAD unless they say otherwise, whatever the body.
    payloadHash = UNSIGNED_PAYLOAD;
  } else if (o.payloadHash !== undefined) {
    payloadHash = o.payloadHash;
  } else {
    throw authError('AUTH_MALFORMED', 'content-sha256-missing');
  }
  if (!isHexSha256(payloadHash)) {
    if (!o.allowUnsignedPayload) throw authError('AUTH_MALFORMED', 'unsigned-payload-not-allowed', { payloadHash });
    // An aws-chunked body chains from a request signature; a URL anyone may replay cannot seed one.
    if (expiresSeconds !== undefined && payloadHash !== UNSIGNED_PAYLOAD) throw authError('AUTH_MALFORMED', 'streaming-presigned', { payloadHash });
  }

  const canonicalParams = queryAuth
    ? params.filter((param) => param.name !== QUERY_SIGNATURE && !(o.unsignedSessionToken && param.name === QUERY_SECURITY_TOKEN))
    : params;
  const canonicalQuery = canonicalQueryString(canonicalParams);
  const canonical = buildCanonicalRequest({
    method: o.method,
    canonicalUri: canonicalUri(o.path, { normalize: o.normalizePath, escape: o.uriEscapePath, encoding: o.wireEncoding }),
    canonicalQuery,
    displayQuery: redactCanonicalQuery(canonicalQuery),
    signedHeaderNames: signed,
    signedHeaders: parsed.signedHeaders,
    headers,
    payloadHash,
    encoding: o.wireEncoding,
  });
  const toSign = stringToSign(amzDate, credential.scope, canonical.bytes);

  const secret = await o.lookupSecret(credential.accessKeyId);
  if (typeof secret !== 'string' || secret === '') {
    throw authError('AUTH_UNKNOWN_ACCESS_KEY', 'unknown-access-key', { accessKeyId: credential.accessKeyId });
  }
  const signingKey = cachedSigningKey(secret, credential.date, credential.region, credential.service);
  const expected = signBytes(signingKey, toSign);
  const matches = signatureMatches(expected, parsed.signature);
  zeroize(expected);
  if (!matches) {
    zeroize(signingKey);
    throw authError('AUTH_SIGNATURE_MISMATCH', 'signature-mismatch', {
      accessKeyId: credential.accessKeyId,
      canonicalRequest: canonical.display,
      stringToSign: toSign,
      signatureProvided: parsed.signature,
    });
  }
  // The signature covers the declared digest; a body that hashes differently was altered.
  if (o.payloadHash !== undefined && isHexSha256(payloadHash) && payloadHash.toLowerCase() !== o.payloadHash.toLowerCase()) {
    zeroize(signingKey);
    throw authError('AUTH_SIGNATURE_MISMATCH', 'payload-hash-mismatch');
  }
  return {
    authType: queryAuth ? 'query' : 'header',
    accessKeyId: credential.accessKeyId,
    sessionToken,
    region: credential.region,
    service: credential.service,
    scope: credential.scope,
    date: amzDate,
    requestTime,
    expiresAt,
    signedHeaders: signed,
    payloadHash,
    seedSignature: parsed.signature,
    signingKey,
  };
}

/** How an x-amz-content-sha256 value frames the body: aws-chunked mode and trailer, or undefined if not chunked. */
export function chunkedPayloadMode(payloadHash: string): { readonly mode: 'signed' | 'unsigned'; readonly trailer: boolean } | undefined {
  switch (payloadHash) {
    case STREAMING_SIGNED_PAYLOAD:
      return { mode: 'signed', trailer: false };
    case STREAMING_SIGNED_PAYLOAD_TRAILER:
      return { mode: 'signed', trailer: true };
    case STREAMING_UNSIGNED_PAYLOAD_TRAILER:
      return { mode: 'unsigned', trailer: true };
    default:
      return undefined;
  }
}

/**
 * A Transform that decodes an S3 aws-chunked body, checking every chunk signature (signed mode)
 * before emitting its data, and parsing the trailers (`decoder.trailers`). Spread a
 * VerifiedRequest into the options to supply signingKey, seedSignature, scope and date.
 */
export function createChunkedPayloadDecoder(options: ChunkedPayloadDecoderOptions): ChunkedPayloadDecoder {
  return new ChunkedPayloadDecoder(options);
}

/** A Transform that encodes a payload as an aws-chunked body, signing each chunk in signed mode. */
export function createChunkedPayloadEncoder(options: ChunkedPayloadEncoderOptions): ChunkedPayloadEncoder {
  return new ChunkedPayloadEncoder(options);
}
