// AirlockError: the one error type every Airlock package throws, with a stable code from the catalogue.
import { ERROR_CODES, isAirlockErrorCode, type AirlockErrorCode } from './error-codes.js';
export type { AirlockErrorCode } from './error-codes.js';

/** Structured, non-secret facts about an error (an option name, a limit). Safe to log and to send. */
export type ErrorDetails = Readonly<Record<string, string | number | boolean>>;

export interface AirlockErrorOptions {
  /** The underlying error. Kept for logs and debugging; never serialised onto the wire. */
  readonly cause?: unknown;
  readonly details?: ErrorDetails;
}

/** Operating-system error numbers that map to a catalogue code rather than INTERNAL. */
const ERRNO_CODES: Readonly<Record<string, AirlockErrorCode>> = {
  ENOSPC: 'DISK_FULL',
  EDQUOT: 'DISK_FULL',
  EACCES: 'PERMISSION_DENIED',
  EPERM: 'PERMISSION_DENIED',
  EROFS: 'PERMISSION_DENIED',
  ENOENT: 'NOT_FOUND',
  EEXIST: 'ALREADY_EXISTS',
  ETIMEDOUT: 'TIMEOUT',
  ECONNREFUSED: 'UNAVAILABLE',
  ECONNRESET: 'UNAVAILABLE',
  EPIPE: 'UNAVAILABLE',
  EADDRINUSE: 'UNAVAILABLE',
  EADDRNOTAVAIL: 'UNAVAILABLE',
  EMFILE: 'UNAVAILABLE',
  ENFILE: 'UNAVAILABLE',
};

/** A message for errno codes whose catalogue description alone would not tell the user what to do. */
function errnoMessage(error: NodeJS.ErrnoException & { address?: unknown; port?: unknown }): string | undefined {
  switch (error.code) {
    case 'EADDRINUSE':
    case 'EADDRNOTAVAIL': {
      const where = typeof error.address === 'string' && typeof error.port === 'number' ? ` ${error.address.includes(':') ? `[${error.address}]` : error.address}:${error.port}` : '';
      return error.code === 'EADDRINUSE'
        ? `Cannot listen on${where}: the address is already in use (another process, or another Airlock stack, holds it; pick another port)`
        : `Cannot listen on${where}: the address is not available on this machine`;
    }
    case 'EMFILE':
      return 'Too many open files: this process has reached its descriptor limit (raise it with `ulimit -n`, or LimitNOFILE in a systemd unit)';
    case 'ENFILE':
      return "Too many open files: the system's file table is full (raise fs.file-max, or close other processes' files)";
    default:
      return undefined;
  }
}

export class AirlockError extends Error {
  override readonly name = 'AirlockError';
  readonly code: AirlockErrorCode;
  readonly details: ErrorDetails | undefined;

  constructor(code: AirlockErrorCode, message?: string, options: AirlockErrorOptions = {}) {
    super(message ?? ERROR_CODES[code].description, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options.details === undefined ? undefined : Object.freeze({ ...options.details });
  }

  /** Whether repeating the same request may succeed. */
  get retryable(): boolean {
    return ERROR_CODES[this.code].retryable;
  }

  /**
   * Normalises anything thrown into an AirlockError. AirlockErrors pass through unchanged;
   * operating-system errors map by errno; an AbortError becomes ABORTED; everything else becomes
   * `fallback` with a generic message, so that foreign error text (which may quote data) is kept
   * only as the `cause`.
   */
  static from(error: unknown, fallback: AirlockErrorCode = 'INTERNAL'): AirlockError {
    if (error instanceof AirlockError) return error;
    if (error instanceof Error) {
      const errno = (error as NodeJS.ErrnoException).code;
      if (typeof errno === 'string') {
        const mapped = ERRNO_CODES[errno];
        if (mapped !== undefined) {
          const syscall = (error as NodeJS.ErrnoException).syscall;
          return new AirlockError(mapped, errnoMessage(error), {
            cause: error,
            details: syscall === undefined ? { errno } : { errno, syscall },
          });
        }
      }
      if (error.name === 'AbortError') return new AirlockError('ABORTED', undefined, { cause: error });
      if (error.name === 'TimeoutError') return new AirlockError('TIMEOUT', undefined, { cause: error });
    }
    return new AirlockError(fallback, undefined, { cause: error });
  }

  /** True when `error` is an AirlockError, optionally with the given code. */
  static is(error: unknown, code?: AirlockErrorCode): error is AirlockError {
    return error instanceof AirlockError && (code === undefined || error.code === code);
  }

  /** The wire-safe form: code, message and details. The cause is deliberately left out. */
  toJSON(): { code: AirlockErrorCode; message: string; details?: ErrorDetails } {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }
}

/** Keeps only the scalar entries of a wire `details` object. */
function detailsFromJSON(value: unknown): ErrorDetails | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const out: Record<string, string | number | boolean> = {};
  for (const [key, item] of Object.entries(value)) {
    if (typeof item === 'string' || typeof item === 'number' || typeof item === 'boolean') out[key] = item;
  }
  return out;
}

/** Rebuilds an AirlockError from its wire form; unknown codes become INTERNAL. */
export function airlockErrorFromJSON(value: unknown): AirlockError {
  if (typeof value === 'object' && value !== null) {
    const { code, message, details } = value as { code?: unknown; message?: unknown; details?: unknown };
    if (isAirlockErrorCode(code)) {
      const parsed = detailsFromJSON(details);
      return new AirlockError(code, typeof message === 'string' ? message : undefined, parsed === undefined ? {} : { details: parsed });
    }
  }
  return new AirlockError('INTERNAL');
}

/**
 * A loggable name for anything thrown: its `code` (an errno, an OpenSSL/Node code such as
 * `ERR_SSL_…`, or an AirlockError code), else its class name. Never the message: OpenSSL and socket
 * messages can quote peer-supplied text.
 */
export function errorCodeOf(error: unknown): string {
  const code = (error as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'string' ? code : error instanceof Error ? error.name : 'unknown';
}

/**
 * The most specific reason for a failure, for health reports: the deepest operating-system errno
 * (`EMFILE`, `ECONNREFUSED`, `ETIMEDOUT`) or Node/OpenSSL code (`ERR_…`) along the `cause` chain
 * (and an AirlockError's `details.errno`), else the outermost `code` (errorCodeOf). Never a message.
 */
export function failureReason(error: unknown): string {
  let specific: string | undefined;
  const seen = new Set<unknown>();
  for (let current: unknown = error; current !== null && current !== undefined && !seen.has(current); current = (current as { cause?: unknown }).cause) {
    seen.add(current);
    const code = (current as { code?: unknown }).code;
    const errno = (current as { details?: { errno?: unknown } }).details?.errno;
    for (const candidate of [code, errno]) {
      if (typeof candidate === 'string' && /^(E[A-Z0-9]+|ERR_[A-Z0-9_]+)$/.test(candidate)) specific = candidate;
    }
    if (current instanceof Error && current.name === 'TimeoutError') specific ??= 'ETIMEDOUT';
    if (typeof current !== 'object') break;
  }
  return specific ?? errorCodeOf(error);
}
