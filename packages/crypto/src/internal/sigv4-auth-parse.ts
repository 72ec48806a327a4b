// Parses SigV4 authentication data from an Authorization header or presigned-URL query parameters.
import { AirlockError, type AirlockErrorCode } from '@airlock/common';
import { MAX_PRESIGN_EXPIRES_SECONDS, SIGV4_ALGORITHM, SIGV4_TERMINATOR } from './sigv4-canonical.js';
import type { QueryParam } from './sigv4-encoding.js';

/** The query parameters of a presigned URL (names are case-sensitive, as AWS treats them). */
export const QUERY_ALGORITHM = 'X-Amz-Algorithm';
export const QUERY_CREDENTIAL = 'X-Amz-Credential';
export const QUERY_DATE = 'X-Amz-Date';
export const QUERY_EXPIRES = 'X-Amz-Expires';
export const QUERY_SIGNED_HEADERS = 'X-Amz-SignedHeaders';
export const QUERY_SIGNATURE = 'X-Amz-Signature';
export const QUERY_SECURITY_TOKEN = 'X-Amz-Security-Token';
export const QUERY_CONTENT_SHA256 = 'X-Amz-Content-Sha256';

const QUERY_AUTH_PARAMS: readonly string[] = [
  QUERY_ALGORITHM,
  QUERY_CREDENTIAL,
  QUERY_DATE,
  QUERY_EXPIRES,
  QUERY_SIGNED_HEADERS,
  QUERY_SIGNATURE,
  QUERY_SECURITY_TOKEN,
  QUERY_CONTENT_SHA256,
];

/** Throws an authentication error with a machine-readable reason and extra non-secret facts. */
export function authError(code: AirlockErrorCode, reason: string, extra: Record<string, string | number | boolean> = {}): AirlockError {
  return new AirlockError(code, undefined, { details: { reason, ...extra } });
}

export interface ParsedCredential {
  readonly accessKeyId: string;
  /** YYYYMMDD. */
  readonly date: string;
  readonly region: string;
  readonly service: string;
  /** date/region/service/aws4_request. */
  readonly scope: string;
}

export interface ParsedAuthorization {
  readonly credential: ParsedCredential;
  /** SignedHeaders exactly as sent. */
  readonly signedHeaders: string;
  readonly signedHeaderNames: readonly string[];
  /** The provided signature as sent: 64 hex digits (AWS compares it as text, so case matters). */
  readonly signature: string;
}

export interface ParsedQueryAuthorization extends ParsedAuthorization {
  readonly amzDate: string;
  readonly expiresSeconds: number;
  readonly sessionToken: string | undefined;
  readonly contentSha256: string | undefined;
}

/** Printable ASCII without '/', for the parts of a credential. */
const CREDENTIAL_PART = /^[\x21-\x2e\x30-\x7e]{1,128}$/;
const SHORT_DATE = /^\d{8}$/;
const SIGNATURE = /^[0-9a-fA-F]{64}$/;
/** Lower-case header-name tokens, as SignedHeaders must list them. */
const SIGNED_HEADER_NAME = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;

function parseCredential(value: string): ParsedCredential {
  const parts = value.split('/');
  if (parts.length !== 5) throw authError('AUTH_MALFORMED', 'credential-malformed');
  const [accessKeyId, date, region, service, terminator] = parts as [string, string, string, string, string];
  if (!CREDENTIAL_PART.test(accessKeyId) || !CREDENTIAL_PART.test(region) || !CREDENTIAL_PART.test(service)) {
    throw authError('AUTH_MALFORMED', 'credential-malformed');
  }
  if (!SHORT_DATE.test(date)) throw authError('AUTH_MALFORMED', 'credential-malformed');
  if (terminator !== SIGV4_TERMINATOR) throw authError('AUTH_MALFORMED', 'credential-malformed');
  return { accessKeyId, date, region, service, scope: `${date}/${region}/${service}/${SIGV4_TERMINATOR}` };
}

function parseSignedHeaders(value: string): string[] {
  const names = value.split(';');
  const seen = new Set<string>();
  for (const name of names) {
    if (!SIGNED_HEADER_NAME.test(name) || seen.has(name)) throw authError('AUTH_MALFORMED', 'signed-headers-malformed');
    seen.add(name);
  }
  return names;
}

function parseSignature(value: string): string {
  if (!SIGNATURE.test(value)) throw authError('AUTH_MALFORMED', 'signature-malformed');
  return value;
}

/**
 * Parses `AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`. Components may come in any
 * order, separated by commas with optional spaces; each must appear exactly once.
 */
export function parseAuthorizationHeader(header: string): ParsedAuthorization {
  const trimmed = header.trim();
  const space = trimmed.search(/[ \t]/);
  const algorithm = space < 0 ? trimmed : trimmed.slice(0, space);
  // `AWS AccessKeyId:Signature` is SigV2, which S3 names as such (it is the usual v1 CLI default).
  if (algorithm === 'AWS') throw authError('AUTH_MALFORMED', 'sigv2-unsupported');
  if (algorithm !== SIGV4_ALGORITHM) throw authError('AUTH_MALFORMED', 'unsupported-algorithm');
  const fields = new Map<string, string>();
  for (const component of trimmed.slice(space < 0 ? trimmed.length : space).split(',')) {
    const part = component.trim();
    if (part === '') continue;
    const eq = part.indexOf('=');
    const name = eq < 0 ? part : part.slice(0, eq);
    if (eq < 0 || !['Credential', 'SignedHeaders', 'Signature'].includes(name) || fields.has(name)) {
      throw authError('AUTH_MALFORMED', 'authorization-header-malformed');
    }
    fields.set(name, part.slice(eq + 1));
  }
  const credential = fields.get('Credential');
  const signedHeaders = fields.get('SignedHeaders');
  const signature = fields.get('Signature');
  if (credential === undefined || signedHeaders === undefined || signature === undefined) {
    throw authError('AUTH_MALFORMED', 'authorization-header-incomplete');
  }
  return {
    credential: parseCredential(credential),
    signedHeaders,
    signedHeaderNames: parseSignedHeaders(signedHeaders),
    signature: parseSignature(signature),
  };
}

/** True when the query carries SigV2 presigned-URL parameters (`AWSAccessKeyId`, `Signature`, `Expires`). */
export function hasSigV2QueryAuth(params: readonly QueryParam[]): boolean {
  return params.some((param) => param.name === 'AWSAccessKeyId' || param.name === 'Signature');
}

/** True when the query carries any presigned-URL authentication parameter. */
export function hasQueryAuth(params: readonly QueryParam[]): boolean {
  return params.some((param) => param.name === QUERY_ALGORITHM || param.name === QUERY_CREDENTIAL || param.name === QUERY_SIGNATURE);
}

/** Parses the X-Amz-* parameters of a presigned URL. */
export function parseQueryAuthorization(params: readonly QueryParam[]): ParsedQueryAuthorization {
  const values = new Map<string, string>();
  for (const param of params) {
    // Presigners hoist x-amz-* headers into the query under the header's own spelling.
    const name = param.name.toLowerCase() === QUERY_CONTENT_SHA256.toLowerCase() ? QUERY_CONTENT_SHA256 : param.name;
    if (!QUERY_AUTH_PARAMS.includes(name)) continue;
    if (values.has(name)) throw authError('AUTH_MALFORMED', 'duplicate-query-parameter', { parameter: name });
    values.set(name, param.value);
  }
  const required = (name: string): string => {
    const value = values.get(name);
    if (value === undefined) throw authError('AUTH_MALFORMED', 'missing-query-parameter', { parameter: name });
    return value;
  };
  if (required(QUERY_ALGORITHM) !== SIGV4_ALGORITHM) throw authError('AUTH_MALFORMED', 'unsupported-algorithm');
  const credential = parseCredential(required(QUERY_CREDENTIAL));
  const amzDate = required(QUERY_DATE);
  const signedHeaders = required(QUERY_SIGNED_HEADERS);
  const signature = parseSignature(required(QUERY_SIGNATURE));
  const expires = required(QUERY_EXPIRES);
  // AWS: X-Amz-Expires is a whole number of seconds from 1 to 604800 (seven days).
  if (!/^\d{1,15}$/.test(expires) || Number(expires) < 1) {
    throw authError('AUTH_EXPIRES_TOO_LARGE', 'expires-invalid');
  }
  const expiresSeconds = Number(expires);
  if (expiresSeconds > MAX_PRESIGN_EXPIRES_SECONDS) {
    throw authError('AUTH_EXPIRES_TOO_LARGE', 'expires-too-large', { maxExpiresSeconds: MAX_PRESIGN_EXPIRES_SECONDS });
  }
  return {
    credential,
    signedHeaders,
    signedHeaderNames: parseSignedHeaders(signedHeaders),
    signature,
    amzDate,
    expiresSeconds,
    sessionToken: values.get(QUERY_SECURITY_TOKEN),
    contentSha256: values.get(QUERY_CONTENT_SHA256),
  };
}
