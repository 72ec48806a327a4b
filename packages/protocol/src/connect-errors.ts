// The Connect/gRPC error edge: AirlockError codes ↔ Connect codes, in one place for every server and client of airlock.v1.
import { Code, ConnectError, type Interceptor } from '@connectrpc/connect';
import { AirlockError, airlockErrorFromJSON, isAirlockErrorCode, type AirlockErrorCode } from '@airlock/common';

/**
 * Response metadata that carries the AirlockError's stable code and wire-safe details (JSON), so a
 * client can branch on `KMS_KEY_DISABLED` rather than on the coarser Connect code. Never carries
 * the cause.
 */
export const AIRLOCK_ERROR_HEADER = 'airlock-error';

/** Every catalogue code maps to exactly one Connect code; the compiler checks the table is complete. */
const CONNECT_CODES: Readonly<Record<AirlockErrorCode, Code>> = Object.freeze({
  INTERNAL: Code.Internal,
  INVALID_ARGUMENT: Code.InvalidArgument,
  CONFIG_INVALID: Code.Internal,
  NOT_FOUND: Code.NotFound,
  ALREADY_EXISTS: Code.AlreadyExists,
  PERMISSION_DENIED: Code.Internal,
  DISK_FULL: Code.ResourceExhausted,
  ABORTED: Code.Aborted,
  TIMEOUT: Code.DeadlineExceeded,
  UNAVAILABLE: Code.Unavailable,
  CIPHERTEXT_MALFORMED: Code.InvalidArgument,
  CIPHERTEXT_AUTH_FAILED: Code.InvalidArgument,
  KEY_UNWRAP_FAILED: Code.FailedPrecondition,
  SEALED_WRONG_RECIPIENT: Code.InvalidArgument,
  CERTIFICATE_INVALID: Code.InvalidArgument,
  CERTIFICATE_EXPIRED: Code.Unauthenticated,
  CERTIFICATE_UNTRUSTED: Code.Unauthenticated,
  AUTH_MISSING: Code.Unauthenticated,
  AUTH_MALFORMED: Code.Unauthenticated,
  AUTH_UNKNOWN_ACCESS_KEY: Code.Unauthenticated,
  AUTH_SIGNATURE_MISMATCH: Code.Unauthenticated,
  AUTH_REQUEST_EXPIRED: Code.Unauthenticated,
  AUTH_SCOPE_INVALID: Code.Unauthenticated,
  AUTH_EXPIRES_TOO_LARGE: Code.InvalidArgument,
  ACCESS_DENIED: Code.PermissionDenied,
  MALFORMED_REQUEST: Code.InvalidArgument,
  PAYLOAD_TOO_LARGE: Code.ResourceExhausted,
  UNKNOWN_OPERATION: Code.Unimplemented,
  KMS_KEY_NOT_FOUND: Code.FailedPrecondition,
  KMS_KEY_DISABLED: Code.FailedPrecondition,
  KMS_KEY_PENDING_DELETION: Code.FailedPrecondition,
  KMS_INVALID_STATE: Code.FailedPrecondition,
  KMS_INVALID_CIPHERTEXT: Code.InvalidArgument,
  KMS_INCORRECT_KEY: Code.InvalidArgument,
  KMS_INVALID_ALIAS_NAME: Code.InvalidArgument,
  KMS_INVALID_MARKER: Code.InvalidArgument,
  KMS_UNSUPPORTED_OPERATION: Code.Unimplemented,
  KMS_UNAVAILABLE: Code.Unavailable,
  BUCKET_NOT_FOUND: Code.NotFound,
  BUCKET_ALREADY_EXISTS: Code.AlreadyExists,
  BUCKET_NOT_EMPTY: Code.FailedPrecondition,
  INVALID_BUCKET_NAME: Code.InvalidArgument,
  OBJECT_NOT_FOUND: Code.NotFound,
  INVALID_OBJECT_KEY: Code.InvalidArgument,
  UPLOAD_NOT_FOUND: Code.NotFound,
  INVALID_PART: Code.InvalidArgument,
  INVALID_PART_ORDER: Code.InvalidArgument,
  ENTITY_TOO_SMALL: Code.InvalidArgument,
  RANGE_NOT_SATISFIABLE: Code.OutOfRange,
  PART_NUMBER_NOT_SATISFIABLE: Code.OutOfRange,
  DIGEST_MISMATCH: Code.InvalidArgument,
  INCOMPLETE_BODY: Code.InvalidArgument,
  MALFORMED_XML: Code.InvalidArgument,
  NOT_IMPLEMENTED: Code.Unimplemented,
  METHOD_NOT_ALLOWED: Code.Unimplemented,
  PRECONDITION_FAILED: Code.FailedPrecondition,
  WRITE_CONFLICT: Code.Aborted,
  DB_KEY_INVALID: Code.Internal,
  DB_SCHEMA_UNSUPPORTED: Code.Internal,
  DB_CONNECTION_INSECURE: Code.Internal,
  TASK_DEFINITION_INVALID: Code.InvalidArgument,
  TASK_NOT_FOUND: Code.NotFound,
  TASK_INPUT_INVALID: Code.InvalidArgument,
  TASK_OUTPUT_INVALID: Code.FailedPrecondition,
  TASK_FAILED: Code.FailedPrecondition,
  TASK_FAILED_FINAL: Code.FailedPrecondition,
  TASK_TIMED_OUT: Code.DeadlineExceeded,
  TASK_ABORTED: Code.Aborted,
  COMMAND_START_FAILED: Code.FailedPrecondition,
  COMMAND_FAILED: Code.FailedPrecondition,
  TASK_CRASHED: Code.Aborted,
  FAILED_PRECONDITION: Code.FailedPrecondition,
  CLUSTER_REVOKED: Code.FailedPrecondition,
  DATA_PLANE_PIN_MISMATCH: Code.FailedPrecondition,
  DATA_PLANE_LOST: Code.Unavailable,
});

/** The AirlockError code a Connect code stands for when the peer sent no AIRLOCK_ERROR_HEADER. */
const AIRLOCK_CODES: Readonly<Partial<Record<Code, AirlockErrorCode>>> = Object.freeze({
  [Code.Canceled]: 'ABORTED',
  [Code.InvalidArgument]: 'INVALID_ARGUMENT',
  [Code.DeadlineExceeded]: 'TIMEOUT',
  [Code.NotFound]: 'NOT_FOUND',
  [Code.AlreadyExists]: 'ALREADY_EXISTS',
  [Code.PermissionDenied]: 'ACCESS_DENIED',
  [Code.ResourceExhausted]: 'PAYLOAD_TOO_LARGE',
  [Code.FailedPrecondition]: 'INVALID_ARGUMENT',
  [Code.Aborted]: 'ABORTED',
  [Code.OutOfRange]: 'INVALID_ARGUMENT',
  [Code.Unimplemented]: 'UNKNOWN_OPERATION',
  [Code.Unavailable]: 'UNAVAILABLE',
  [Code.Unauthenticated]: 'AUTH_MISSING',
});

/** The Connect code for an AirlockError code. */
export function connectCodeFor(code: AirlockErrorCode): Code {
  return CONNECT_CODES[code];
}

/**
 * Converts anything thrown by a handler into the ConnectError sent to the client: the Connect code
 * from the table above, the AirlockError's message, and its code and details in AIRLOCK_ERROR_HEADER.
 * A ConnectError passes through unchanged. The cause is never sent.
 */
export function toConnectError(error: unknown): ConnectError {
  if (error instanceof ConnectError) return error;
  const airlock = AirlockError.from(error);
  const metadata = new Headers({ [AIRLOCK_ERROR_HEADER]: JSON.stringify({ code: airlock.code, ...(airlock.details === undefined ? {} : { details: airlock.details }) }) });
  return new ConnectError(airlock.message, connectCodeFor(airlock.code), metadata);
}

/**
 * Converts an error from a Connect client call into an AirlockError: the server's own code when it
 * sent AIRLOCK_ERROR_HEADER, otherwise the nearest catalogue code for the Connect code. The
 * original error is kept as `cause` (local only).
 */
export function fromConnectError(error: unknown): AirlockError {
  if (error instanceof AirlockError) return error;
  if (!(error instanceof ConnectError)) return AirlockError.from(error);
  const raw = error.metadata.get(AIRLOCK_ERROR_HEADER);
  if (raw !== null) {
    try {
      const parsed = JSON.parse(raw) as { code?: unknown; details?: unknown };
      if (isAirlockErrorCode(parsed.code)) {
        const wire = airlockErrorFromJSON({ code: parsed.code, message: error.rawMessage, details: parsed.details });
        return new AirlockError(wire.code, wire.message, { cause: error, ...(wire.details === undefined ? {} : { details: wire.details }) });
      }
    } catch {
      // A malformed header is ignored; the Connect code still says what kind of failure it was.
    }
  }
  const code = AIRLOCK_CODES[error.code] ?? 'INTERNAL';
  return new AirlockError(code, error.rawMessage, { cause: error, details: { connectCode: Code[error.code] } });
}

/** Server interceptor: handlers throw AirlockErrors; clients receive typed Connect errors (see toConnectError). */
export const airlockErrorInterceptor: Interceptor = (next) => async (request) => {
  try {
    return await next(request);
  } catch (error) {
    throw toConnectError(error);
  }
};
