// Redaction of credentials and registered secret values from anything that is about to be logged.

/** The text that replaces every redacted value. */
export const REDACTED = '[REDACTED]';

/**
 * Field names whose values are always redacted, at any depth. Matched case-insensitively against
 * the name with `-` and `_` removed, as a substring: `secretAccessKey`, `x-amz-security-token`,
 * `Set-Cookie` and `client_secret` all match.
 */
const SENSITIVE_KEY_PARTS = [
  'authorization',
  'cookie',
  'token',
  'secret',
  'password',
  'passphrase',
  'signature',
  'credential',
  'privatekey',
  'apikey',
  'plaintext',
  'datakey',
  'presign',
] as const;

/** True when a field of this name must never be logged. */
export function isSensitiveKey(key: string): boolean {
  const normalised = key.toLowerCase().replace(/[-_]/g, '');
  return SENSITIVE_KEY_PARTS.some((part) => normalised.includes(part));
}

/** Query parameters that make a URL a credential (SigV4 and SigV2 presigning, OAuth-style tokens). */
const CREDENTIAL_QUERY_PARAM =
  /(?:^|&)(?:x-amz-signature|x-amz-credential|x-amz-security-token|signature|awsaccesskeyid|access_token|token|sig)=/i;

/** Patterns that find credentials inside free text. Order matters: whole headers before their parts. */
const TEXT_PATTERNS: ReadonlyArray<readonly [RegExp, string | ((match: string, ...groups: string[]) => string)]> = [
  // SigV4 Authorization header values: the algorithm followed by its Credential, SignedHeaders and
  // Signature components. Matches never contain a quote or backslash, so scrubbing a JSON line
  // cannot break an escape sequence.
  [/AWS4-HMAC-SHA256(?:[\s,]+(?:Credential|SignedHeaders|Signature)=[^\s"\\,]*)+/g, `AWS4-HMAC-SHA256 ${REDACTED}`],
  // HTTP auth schemes followed by a credential.
  [/\b(Bearer|Basic|Digest|Token)\s+[A-Za-z0-9._~+/=:-]+/g, `$1 ${REDACTED}`],
  // URL query strings that carry a signature or token: the whole query goes, not just the signature.
  [
    /\?([^\s"'<>\\]*)/g,
    (match: string, query: string) => (CREDENTIAL_QUERY_PARAM.test(query) ? `?${REDACTED}` : match),
  ],
  // Loose signing parameters outside a URL (e.g. a query string logged on its own).
  [/\b(X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|Signature)=[^&\s"',]+/gi, `$1=${REDACTED}`],
];

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function scrubPatterns(text: string): string {
  let out = text;
  for (const [pattern, replacement] of TEXT_PATTERNS) out = out.replace(pattern, replacement as string);
  return out;
}

function secretPattern(values: Iterable<string>): RegExp {
  // Longest first, so that a secret containing a shorter one is removed whole.
  return new RegExp([...values].sort((a, b) => b.length - a.length).map(escapeRegExp).join('|'), 'g');
}

/** How a value appears inside a JSON string literal. */
function jsonEscaped(value: string): string {
  return JSON.stringify(value).slice(1, -1);
}

/**
 * Scrubs credentials and registered secret values out of text. One instance can be shared by many
 * loggers; secrets registered later take effect on the next line written.
 */
export class Redactor {
  readonly #secrets = new Set<string>();
  #plainPattern: RegExp | undefined;
  #jsonPattern: RegExp | undefined;

  /** Registers a value that must never appear in output (a secret, a token, a key in text form). */
  addSecret(value: string): void {
    if (typeof value !== 'string' || value.length === 0 || this.#secrets.has(value)) return;
    this.#secrets.add(value);
    this.#plainPattern = this.#jsonPattern = undefined;
  }

  /** Forgets a registered value (e.g. after the secret has been deleted everywhere). */
  removeSecret(value: string): void {
    if (this.#secrets.delete(value)) this.#plainPattern = this.#jsonPattern = undefined;
  }

  /** Returns plain `text` with every credential pattern and registered secret replaced by [REDACTED]. */
  scrub(text: string): string {
    const out = scrubPatterns(text);
    if (this.#secrets.size === 0) return out;
    this.#plainPattern ??= secretPattern(this.#secrets);
    return out.replace(this.#plainPattern, REDACTED);
  }

  /**
   * Like `scrub`, for one serialised JSON line: secrets are matched in their JSON-escaped form, and
   * no replacement can split an escape sequence, so the line stays valid JSON.
   */
  scrubJson(line: string): string {
    const out = scrubPatterns(line);
    if (this.#secrets.size === 0) return out;
    this.#jsonPattern ??= secretPattern([...this.#secrets].map(jsonEscaped));
    return out.replace(this.#jsonPattern, REDACTED);
  }

  /**
   * Returns a copy of a structured log value with sensitive fields replaced, binary data reduced to
   * its length (data content is never logged), and strings scrubbed.
   */
  redactValue(value: unknown, depth = 0): unknown {
    if (typeof value === 'string') return this.scrub(value);
    if (value === null || typeof value !== 'object') return value;
    if (ArrayBuffer.isView(value)) return `[binary ${value.byteLength} bytes]`;
    if (value instanceof ArrayBuffer) return `[binary ${value.byteLength} bytes]`;
    if (depth > 8) return '[nested]';
    if (value instanceof Error) return value; // pino's error serializer runs later; lines are scrubbed again.
    if (Array.isArray(value)) return value.map((item) => this.redactValue(item, depth + 1));
    if (value instanceof Map) return this.redactValue(Object.fromEntries(value), depth);
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) {
      out[key] = isSensitiveKey(key) ? REDACTED : this.redactValue(item, depth + 1);
    }
    return out;
  }
}

/** The process-wide redactor that every logger uses unless given its own. */
export const defaultRedactor = new Redactor();

/** Registers a secret value with the process-wide redactor. */
export function registerSecretValue(value: string): void {
  defaultRedactor.addSecret(value);
}
