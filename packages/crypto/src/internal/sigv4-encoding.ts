// SigV4 encoding rules: RFC 3986 percent-encoding, canonical URI and query string, and x-amz-date timestamps.
import { AirlockError } from '@airlock/common';

/**
 * How a JavaScript string maps to the bytes that were (or will be) on the wire. Node's HTTP parser
 * hands over the request target and header values as latin1 strings (one char per byte), while
 * strings a caller writes by hand are Unicode and go out as UTF-8.
 */
export type WireEncoding = 'latin1' | 'utf8';

/** A query parameter both ways: decoded (for reading X-Amz-* values) and in canonical encoded form. */
export interface QueryParam {
  /** The decoded name, read as UTF-8. */
  readonly name: string;
  /** The decoded value, read as UTF-8. */
  readonly value: string;
  /** The name percent-encoded per the SigV4 rules (RFC 3986 unreserved set kept). */
  readonly encodedName: string;
  /** The value percent-encoded per the SigV4 rules. */
  readonly encodedValue: string;
}

const HEX_DIGITS = '0123456789ABCDEF';

/** RFC 3986 §2.3 unreserved characters: the only bytes SigV4 leaves unencoded. */
const UNRESERVED = (() => {
  const table = new Uint8Array(256);
  const unreserved = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~';
  for (let i = 0; i < unreserved.length; i++) table[unreserved.charCodeAt(i)] = 1;
  return table;
})();

const SLASH = 0x2f;
const PERCENT = 0x25;

/** Converts a string to its wire bytes. Latin1 strings must not hold characters above U+00FF. */
export function wireBytes(text: string, encoding: WireEncoding): Buffer {
  if (encoding === 'utf8') return Buffer.from(text, 'utf8');
  // A character above U+00FF cannot have come from Node's HTTP parser; truncating it silently
  // (as Buffer.from(…, 'latin1') would) could make two different strings sign the same.
  for (let i = 0; i < text.length; i++) {
    if (text.charCodeAt(i) > 0xff) {
      throw new AirlockError('INVALID_ARGUMENT', 'a latin1 wire string holds a character above U+00FF', {
        details: { argument: 'wireEncoding', reason: 'not-latin1' },
      });
    }
  }
  return Buffer.from(text, 'latin1');
}

/** Percent-encodes bytes with upper-case hex, keeping only unreserved bytes (and '/' when asked). */
export function percentEncodeBytes(bytes: Uint8Array, keepSlash: boolean): string {
  let out = '';
  for (const byte of bytes) {
    if (UNRESERVED[byte] === 1 || (keepSlash && byte === SLASH)) {
      out += String.fromCharCode(byte);
    } else {
      out += `%${HEX_DIGITS[byte >> 4] as string}${HEX_DIGITS[byte & 0x0f] as string}`;
    }
  }
  return out;
}

/** SigV4's UriEncode of a string's wire bytes. */
export function uriEncode(text: string, encoding: WireEncoding, keepSlash: boolean): string {
  return percentEncodeBytes(wireBytes(text, encoding), keepSlash);
}

function hexValue(byte: number | undefined): number {
  if (byte === undefined) return -1;
  if (byte >= 0x30 && byte <= 0x39) return byte - 0x30;
  if (byte >= 0x41 && byte <= 0x46) return byte - 0x41 + 10;
  if (byte >= 0x61 && byte <= 0x66) return byte - 0x61 + 10;
  return -1;
}

/**
 * Decodes %XX escapes into bytes. A '%' not followed by two hex digits is kept as a literal '%'
 * (which re-encodes as %25) rather than rejected: the signer on the other side saw the same text.
 * '+' stays '+': SigV4 clients encode a space as %20, and RFC 3986 gives '+' no special meaning.
 */
export function percentDecode(text: string, encoding: WireEncoding): Buffer {
  const raw = wireBytes(text, encoding);
  if (!raw.includes(PERCENT)) return raw;
  const out = Buffer.allocUnsafe(raw.byteLength);
  let length = 0;
  for (let i = 0; i < raw.byteLength; i++) {
    const byte = raw[i] as number;
    if (byte === PERCENT) {
      const high = hexValue(raw[i + 1]);
      const low = hexValue(raw[i + 2]);
      if (high >= 0 && low >= 0) {
        out[length++] = (high << 4) | low;
        i += 2;
        continue;
      }
    }
    out[length++] = byte;
  }
  return out.subarray(0, length);
}

/**
 * Removes '.' and '..' segments and empty segments (so '//' collapses), keeping a leading and a
 * trailing slash: the normalisation AWS SDKs apply for every service but S3.
 */
export function normalizeUriPath(path: string): string {
  const segments: string[] = [];
  for (const segment of path.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') segments.pop();
    else segments.push(segment);
  }
  const leading = path.startsWith('/') ? '/' : '';
  const trailing = segments.length > 0 && path.endsWith('/') ? '/' : '';
  return `${leading}${segments.join('/')}${trailing}`;
}

/**
 * Re-encodes a wire path canonically without encoding it a second time: literal '/' stays, every
 * escape is decoded and re-encoded with the SigV4 rules (so %2F inside a segment stays %2F, and a
 * client that left '!' or '~' raw on the wire still matches one that encoded them).
 */
function reencodePath(path: string, encoding: WireEncoding): string {
  return path
    .split('/')
    .map((segment) => percentEncodeBytes(percentDecode(segment, encoding), false))
    .join('/');
}

export interface CanonicalUriOptions {
  /** Remove dot segments and collapse duplicate slashes first. */
  readonly normalize: boolean;
  /**
   * Encode the path as given (so a wire path's escapes are encoded again: '%20' → '%2520'), as
   * every AWS service but S3 expects. When false (S3) the path is used as sent, encoded once.
   */
  readonly escape: boolean;
  readonly encoding: WireEncoding;
}

/** The CanonicalURI line of a canonical request. */
export function canonicalUri(path: string, options: CanonicalUriOptions): string {
  let target = path === '' ? '/' : path;
  if (options.normalize) target = normalizeUriPath(target);
  if (target === '') target = '/';
  return options.escape ? uriEncode(target, options.encoding, true) : reencodePath(target, options.encoding);
}

/** Parses a raw (wire) query string, without its leading '?'. Empty components are skipped. */
export function parseRawQuery(rawQuery: string, encoding: WireEncoding): QueryParam[] {
  const params: QueryParam[] = [];
  if (rawQuery === '') return params;
  for (const component of rawQuery.split('&')) {
    if (component === '') continue;
    const eq = component.indexOf('=');
    // A key without '=' (e.g. S3's `?acl`) signs with an empty value.
    const rawName = eq < 0 ? component : component.slice(0, eq);
    const rawValue = eq < 0 ? '' : component.slice(eq + 1);
    const nameBytes = percentDecode(rawName, encoding);
    const valueBytes = percentDecode(rawValue, encoding);
    params.push({
      name: nameBytes.toString('utf8'),
      value: valueBytes.toString('utf8'),
      encodedName: percentEncodeBytes(nameBytes, false),
      encodedValue: percentEncodeBytes(valueBytes, false),
    });
  }
  return params;
}

/** Builds query parameters from decoded (name, value) pairs written by a caller. */
export function queryParamsFromPairs(pairs: ReadonlyArray<readonly [string, string]>): QueryParam[] {
  return pairs.map(([name, value]) => ({
    name,
    value,
    encodedName: uriEncode(name, 'utf8', false),
    encodedValue: uriEncode(value, 'utf8', false),
  }));
}

function compareAscii(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The CanonicalQueryString line: sorted by encoded name, then encoded value. */
export function canonicalQueryString(params: readonly QueryParam[]): string {
  return [...params]
    .sort((a, b) => compareAscii(a.encodedName, b.encodedName) || compareAscii(a.encodedValue, b.encodedValue))
    .map((param) => `${param.encodedName}=${param.encodedValue}`)
    .join('&');
}

/** Formats a time as an x-amz-date value, e.g. 20150830T123600Z (ISO 8601 basic format, UTC). */
export function formatAmzDate(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z').replace(/[-:]/g, '');
}

const AMZ_DATE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;

/** Parses an x-amz-date value; undefined unless it is a real UTC time in the exact basic format. */
export function parseAmzDate(text: string): Date | undefined {
  const match = AMZ_DATE.exec(text);
  if (match === null) return undefined;
  const [, year, month, day, hour, minute, second] = match.map(Number) as [number, number, number, number, number, number, number];
  const date = new Date(Date.UTC(year, month - 1, day, hour, minute, second));
  // Date.UTC rolls 20150230 over to March; the round trip rejects it.
  return Number.isNaN(date.getTime()) || formatAmzDate(date) !== text ? undefined : date;
}

/** True for a Date holding a real time that x-amz-date can express (years 0000–9999). */
export function isFormattableDate(value: unknown): value is Date {
  if (!(value instanceof Date)) return false;
  const time = value.getTime();
  return Number.isFinite(time) && value.getUTCFullYear() >= 0 && value.getUTCFullYear() <= 9999;
}
