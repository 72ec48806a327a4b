// The closed catalogue of Airlock error codes: every AirlockError carries exactly one of these.

/** One catalogue entry. `retryable` tells callers whether repeating the same request can succeed. */
export interface ErrorCodeInfo {
  readonly description: string;
  readonly retryable: boolean;
}

/**
 * Every error code Airlock can raise. Codes are stable strings: tests and wire mappings depend on
 * them, never on message text. Add codes here (and only here) when a new failure needs one.
 */
export const ERROR_CODES = deepFreeze({
  INTERNAL: { description: 'An unexpected internal error.', retryable: false },
  INVALID_ARGUMENT: { description: 'An argument was missing, malformed or out of range.', retryable: false },
  CONFIG_INVALID: { description: 'A configuration option was missing, malformed or out of range.', retryable: false },
  NOT_FOUND: { description: 'The named resource does not exist.', retryable: false },
  ALREADY_EXISTS: { description: 'The named resource already exists.', retryable: false },
  PERMISSION_DENIED: { description: 'The operating system refused access to a file or resource.', retryable: false },
  DISK_FULL: { description: 'No space left on the device.', retryable: true },
  ABORTED: { description: 'The operation was aborted before it completed.', retryable: true },
  TIMEOUT: { description: 'The operation did not complete in time.', retryable: true },
  UNAVAILABLE: { description: 'A dependency is unreachable or not ready.', retryable: true },

  CIPHERTEXT_MALFORMED: { description: 'Ciphertext is not in the expected format (bad magic, version, algorithm or length).', retryable: false },
  CIPHERTEXT_AUTH_FAILED: { description: 'Ciphertext failed authentication: wrong key, wrong context, or tampered, truncated or reordered data.', retryable: false },
  KEY_UNWRAP_FAILED: { description: 'A wrapped data key could not be unwrapped.', retryable: false },
  SEALED_WRONG_RECIPIENT: { description: 'A sealed message is addressed to a different recipient key.', retryable: false },

  CERTIFICATE_INVALID: { description: 'A certificate or certificate request is malformed or has an invalid signature.', retryable: false },
  CERTIFICATE_EXPIRED: { description: 'A certificate is outside its validity period.', retryable: false },
  CERTIFICATE_UNTRUSTED: { description: 'A certificate does not chain to a trusted authority.', retryable: false },
} as const satisfies Record<string, ErrorCodeInfo>);

function deepFreeze<T extends Record<string, ErrorCodeInfo>>(catalogue: T): Readonly<T> {
  for (const entry of Object.values(catalogue)) Object.freeze(entry);
  return Object.freeze(catalogue);
}

/** A stable Airlock error code. */
export type AirlockErrorCode = keyof typeof ERROR_CODES;

/** True when `value` is a code in the catalogue. */
export function isAirlockErrorCode(value: unknown): value is AirlockErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERROR_CODES, value);
}
