// The one mapping between Airlock error codes and AWS KMS JSON-protocol error types (`__type`) and statuses.
import { AirlockError, type AirlockErrorCode } from '@airlock/common';

interface WireError {
  readonly type: string;
  readonly status: number;
}

/** Airlock code → the AWS error type the server sends. Every KMS error is HTTP 400 except internal ones. */
const TO_WIRE: Partial<Record<AirlockErrorCode, WireError>> = {
  KMS_KEY_NOT_FOUND: { type: 'NotFoundException', status: 400 },
  KMS_KEY_DISABLED: { type: 'DisabledException', status: 400 },
  KMS_KEY_PENDING_DELETION: { type: 'KMSInvalidStateException', status: 400 },
  KMS_INVALID_STATE: { type: 'KMSInvalidStateException', status: 400 },
  KMS_INVALID_CIPHERTEXT: { type: 'InvalidCiphertextException', status: 400 },
  KMS_INCORRECT_KEY: { type: 'IncorrectKeyException', status: 400 },
  KMS_INVALID_ALIAS_NAME: { type: 'InvalidAliasNameException', status: 400 },
  KMS_INVALID_MARKER: { type: 'InvalidMarkerException', status: 400 },
  KMS_UNSUPPORTED_OPERATION: { type: 'UnsupportedOperationException', status: 400 },
  ALREADY_EXISTS: { type: 'AlreadyExistsException', status: 400 },
  INVALID_ARGUMENT: { type: 'ValidationException', status: 400 },
  PAYLOAD_TOO_LARGE: { type: 'ValidationException', status: 400 },
  MALFORMED_REQUEST: { type: 'SerializationException', status: 400 },
  INCOMPLETE_BODY: { type: 'SerializationException', status: 400 },
  UNKNOWN_OPERATION: { type: 'UnknownOperationException', status: 400 },
  ACCESS_DENIED: { type: 'AccessDeniedException', status: 400 },
  AUTH_MISSING: { type: 'MissingAuthenticationTokenException', status: 400 },
  AUTH_MALFORMED: { type: 'IncompleteSignatureException', status: 400 },
  AUTH_UNKNOWN_ACCESS_KEY: { type: 'UnrecognizedClientException', status: 400 },
  AUTH_SIGNATURE_MISMATCH: { type: 'InvalidSignatureException', status: 400 },
  AUTH_REQUEST_EXPIRED: { type: 'InvalidSignatureException', status: 400 },
  AUTH_SCOPE_INVALID: { type: 'InvalidSignatureException', status: 400 },
  AUTH_EXPIRES_TOO_LARGE: { type: 'InvalidSignatureException', status: 400 },
};

const INTERNAL: WireError = { type: 'KMSInternalException', status: 500 };

/** The AWS error type and status for an error; anything unmapped is KMSInternalException (500). */
export function kmsWireError(error: AirlockError): WireError {
  return TO_WIRE[error.code] ?? INTERNAL;
}

/** AWS error type → Airlock code, for clients talking to this server or to AWS KMS. */
const FROM_WIRE: Readonly<Record<string, AirlockErrorCode>> = {
  NotFoundException: 'KMS_KEY_NOT_FOUND',
  DisabledException: 'KMS_KEY_DISABLED',
  KMSInvalidStateException: 'KMS_INVALID_STATE',
  InvalidCiphertextException: 'KMS_INVALID_CIPHERTEXT',
  IncorrectKeyException: 'KMS_INCORRECT_KEY',
  InvalidAliasNameException: 'KMS_INVALID_ALIAS_NAME',
  InvalidMarkerException: 'KMS_INVALID_MARKER',
  UnsupportedOperationException: 'KMS_UNSUPPORTED_OPERATION',
  AlreadyExistsException: 'ALREADY_EXISTS',
  ValidationException: 'INVALID_ARGUMENT',
  SerializationException: 'MALFORMED_REQUEST',
  UnknownOperationException: 'UNKNOWN_OPERATION',
  AccessDeniedException: 'ACCESS_DENIED',
  MissingAuthenticationTokenException: 'AUTH_MISSING',
  IncompleteSignatureException: 'AUTH_MALFORMED',
  UnrecognizedClientException: 'AUTH_UNKNOWN_ACCESS_KEY',
  InvalidSignatureException: 'AUTH_SIGNATURE_MISMATCH',
  KMSInternalException: 'KMS_UNAVAILABLE',
  DependencyTimeoutException: 'KMS_UNAVAILABLE',
  KeyUnavailableException: 'KMS_UNAVAILABLE',
};

/** Normalises an error from the AWS SDK (or anything else) into an AirlockError. */
export function kmsErrorFromWire(error: unknown): AirlockError {
  if (error instanceof AirlockError) return error;
  const name = (error as { name?: unknown } | null)?.name;
  const message = (error as { message?: unknown } | null)?.message;
  if (typeof name === 'string') {
    const code = FROM_WIRE[name];
    if (code !== undefined) {
      // KMSInvalidStateException covers several states; keep AWS's wording, which names the state.
      const refined = code === 'KMS_INVALID_STATE' && typeof message === 'string' && /pending deletion/i.test(message) ? 'KMS_KEY_PENDING_DELETION' : code;
      return new AirlockError(refined, typeof message === 'string' ? message : undefined, { cause: error, details: { awsErrorType: name } });
    }
  }
  const fallback = AirlockError.from(error, 'KMS_UNAVAILABLE');
  return fallback.code === 'INTERNAL' ? new AirlockError('KMS_UNAVAILABLE', undefined, { cause: error }) : fallback;
}
