// Reads the AWS SigV4 test suite (aws-c-auth) from ../shared/vectors/aws-sigv4 and parses its raw HTTP requests.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { sharedVectorsDir } from './shared-vectors.js';

/** The suite lives beside the repository, never inside it (vectors/README.md). */
export const SIGV4_VECTOR_DIR = `${sharedVectorsDir('aws-sigv4')}/`;

export interface SigV4VectorContext {
  readonly credentials: { readonly access_key_id: string; readonly secret_access_key: string; readonly token?: string };
  readonly expiration_in_seconds: number;
  readonly normalize: boolean;
  readonly region: string;
  readonly service: string;
  readonly sign_body: boolean;
  readonly timestamp: string;
  readonly omit_session_token?: boolean;
}

/** A raw HTTP/1.1 request split into its parts. Header pairs keep file order; folded lines are unfolded. */
export interface RawRequest {
  readonly method: string;
  /** The request target exactly as written (path and query). */
  readonly target: string;
  readonly path: string;
  readonly rawQuery: string;
  readonly headers: Array<[string, string]>;
  readonly body: Buffer;
}

export interface SigV4VectorCase {
  readonly name: string;
  readonly context: SigV4VectorContext;
  /** request.txt read as UTF-8: what a caller would hand the signer. */
  readonly request: RawRequest;
  readonly expected: Readonly<Record<'header' | 'query', {
    readonly canonicalRequest: string;
    readonly stringToSign: string;
    readonly signature: string;
    /** The signed request read as latin1, the way Node's HTTP parser presents wire bytes. */
    readonly wire: RawRequest;
    /** The signed request read as UTF-8, for comparing with the signer's output. */
    readonly text: RawRequest;
  }>>;
}

/**
 * Parses a raw request. The request line is `METHOD target HTTP/1.1`, where the target may hold
 * spaces (get-space-*), so the target is everything between the first and the last space.
 * Header lines starting with whitespace continue the previous value (RFC 9112 §5.2 obs-fold,
 * replaced by one space); repeated names stay separate pairs.
 */
export function parseRawRequest(text: string, encoding: 'utf8' | 'latin1' = 'utf8'): RawRequest {
  const normalised = text.replace(/\r\n/g, '\n');
  const split = normalised.indexOf('\n\n');
  const head = split < 0 ? normalised.replace(/\n+$/, '') : normalised.slice(0, split);
  const body = split < 0 ? '' : normalised.slice(split + 2);
  const [requestLine = '', ...lines] = head.split('\n');
  const first = requestLine.indexOf(' ');
  const last = requestLine.lastIndexOf(' ');
  if (first < 0 || last <= first) throw new Error(`bad request line: ${requestLine}`);
  const method = requestLine.slice(0, first);
  const target = requestLine.slice(first + 1, last);
  const q = target.indexOf('?');
  const headers: Array<[string, string]> = [];
  for (const line of lines) {
    if (/^[ \t]/.test(line)) {
      const previous = headers.at(-1);
      if (previous === undefined) throw new Error('continuation line before any header');
      previous[1] = `${previous[1]} ${line.trim()}`;
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) throw new Error(`bad header line: ${line}`);
    headers.push([line.slice(0, colon), line.slice(colon + 1).trim()]);
  }
  return {
    method,
    target,
    path: q < 0 ? target : target.slice(0, q),
    rawQuery: q < 0 ? '' : target.slice(q + 1),
    headers,
    body: Buffer.from(body, encoding),
  };
}

/** Header pairs as Node's `req.headersDistinct` would hold them: lower-case names, every value kept. */
export function headersDistinct(pairs: ReadonlyArray<readonly [string, string]>): Record<string, string[]> {
  const out: Record<string, string[]> = Object.create(null) as Record<string, string[]>;
  for (const [name, value] of pairs) (out[name.toLowerCase()] ??= []).push(value);
  return out;
}

/** The case directories of the suite, sorted. */
export function sigv4CaseNames(): string[] {
  return readdirSync(SIGV4_VECTOR_DIR)
    .filter((name) => statSync(join(SIGV4_VECTOR_DIR, name)).isDirectory())
    .sort();
}

export function readSigV4Case(name: string): SigV4VectorCase {
  const dir = join(SIGV4_VECTOR_DIR, name);
  const read = (file: string): string => readFileSync(join(dir, file), 'utf8');
  const readLatin1 = (file: string): string => readFileSync(join(dir, file), 'latin1');
  const expectedFor = (kind: 'header' | 'query') => ({
    canonicalRequest: read(`${kind}-canonical-request.txt`),
    stringToSign: read(`${kind}-string-to-sign.txt`),
    signature: read(`${kind}-signature.txt`).trim(),
    wire: parseRawRequest(readLatin1(`${kind}-signed-request.txt`), 'latin1'),
    text: parseRawRequest(read(`${kind}-signed-request.txt`)),
  });
  return {
    name,
    context: JSON.parse(read('context.json')) as SigV4VectorContext,
    request: parseRawRequest(read('request.txt')),
    expected: { header: expectedFor('header'), query: expectedFor('query') },
  };
}
