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

  AUTH_MISSING: { description: 'The request carries no authentication information.', retryable: false },
  AUTH_MALFORMED: { description: 'The authorization header or query parameters are malformed or incomplete.', retryable: false },
  AUTH_UNKNOWN_ACCESS_KEY: { description: 'The access key in the request is not known.', retryable: false },
  AUTH_SIGNATURE_MISMATCH: { description: 'The request signature does not match the signature computed for it.', retryable: false },
  AUTH_REQUEST_EXPIRED: { description: 'The request time is outside the allowed clock skew, or the presigned URL has expired.', retryable: false },
  AUTH_SCOPE_INVALID: { description: 'The credential scope names the wrong region, service or date.', retryable: false },
  AUTH_EXPIRES_TOO_LARGE: { description: 'X-Amz-Expires is above 604800 seconds (seven days) or not a positive integer.', retryable: false },
  ACCESS_DENIED: { description: 'The caller is authenticated but not allowed to perform this operation.', retryable: false },
  MALFORMED_REQUEST: { description: 'The request body could not be parsed.', retryable: false },
  PAYLOAD_TOO_LARGE: { description: 'The request body is larger than the server accepts.', retryable: false },
  UNKNOWN_OPERATION: { description: 'The requested operation does not exist.', retryable: false },

  KMS_KEY_NOT_FOUND: { description: 'The KMS key or alias does not exist (or its deletion has completed).', retryable: false },
  KMS_KEY_DISABLED: { description: 'The KMS key is disabled.', retryable: false },
  KMS_KEY_PENDING_DELETION: { description: 'The KMS key is pending deletion and cannot be used.', retryable: false },
  KMS_INVALID_STATE: { description: 'The KMS key is not in a state that allows this operation.', retryable: false },
  KMS_INVALID_CIPHERTEXT: { description: 'The ciphertext blob is invalid, tampered with, or was encrypted under a different encryption context.', retryable: false },
  KMS_INCORRECT_KEY: { description: 'The ciphertext blob was not encrypted under the KMS key named in the request.', retryable: false },
  KMS_INVALID_ALIAS_NAME: { description: 'The alias name is not valid.', retryable: false },
  KMS_INVALID_MARKER: { description: 'The pagination marker is not valid.', retryable: false },
  KMS_UNSUPPORTED_OPERATION: { description: 'The KMS does not support this request.', retryable: false },
  KMS_UNAVAILABLE: { description: 'The KMS could not be reached or returned an internal error.', retryable: true },

  BUCKET_NOT_FOUND: { description: 'The bucket does not exist.', retryable: false },
  BUCKET_ALREADY_EXISTS: { description: 'A bucket with this name already exists.', retryable: false },
  BUCKET_NOT_EMPTY: { description: 'The bucket still holds objects or uploads.', retryable: false },
  INVALID_BUCKET_NAME: { description: 'The bucket name is not valid.', retryable: false },
  OBJECT_NOT_FOUND: { description: 'The object does not exist.', retryable: false },
  INVALID_OBJECT_KEY: { description: 'The object key is empty, too long or not valid UTF-8.', retryable: false },
  UPLOAD_NOT_FOUND: { description: 'The multipart upload does not exist (completed, aborted or never started).', retryable: false },
  INVALID_PART: { description: 'A listed part was not uploaded or its ETag does not match.', retryable: false },
  INVALID_PART_ORDER: { description: 'The parts are not listed in ascending order.', retryable: false },
  ENTITY_TOO_SMALL: { description: 'A part other than the last is smaller than the 5 MiB minimum.', retryable: false },
  RANGE_NOT_SATISFIABLE: { description: 'The requested range is outside the object.', retryable: false },
  PART_NUMBER_NOT_SATISFIABLE: { description: 'The object has no part with the requested number.', retryable: false },
  DIGEST_MISMATCH: { description: 'The body does not match its Content-MD5 or checksum header.', retryable: false },
  INCOMPLETE_BODY: { description: 'The body ended before its declared length.', retryable: false },
  MALFORMED_XML: { description: 'The XML body is not well formed or does not match the schema.', retryable: false },
  NOT_IMPLEMENTED: { description: 'The request uses a feature that is not implemented.', retryable: false },
  METHOD_NOT_ALLOWED: { description: 'The method is not allowed on this resource.', retryable: false },
  PRECONDITION_FAILED: { description: 'A condition of the request (If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since, or their copy-source forms) does not hold.', retryable: false },
  WRITE_CONFLICT: { description: 'A conditional write lost a race with another write to the same object; read it again, then retry.', retryable: true },

  DB_KEY_INVALID: { description: 'The control-plane database key is missing, wrong, or could not be unwrapped from its key source.', retryable: false },
  DB_SCHEMA_UNSUPPORTED: { description: 'The database schema was written by a newer (or unknown) release than this one.', retryable: false },
  DB_CONNECTION_INSECURE: { description: 'The database connection is not protected by verified TLS.', retryable: false },

  // Tasks (@airlock/sdk). The record an action fails with carries one of these; a user error's message is data.
  TASK_DEFINITION_INVALID: { description: 'A task definition is invalid (name, schemas, retries, timeout or resources).', retryable: false },
  TASK_NOT_FOUND: { description: 'The module exports no task with the requested name.', retryable: false },
  TASK_INPUT_INVALID: { description: "The inputs do not match the task's input schema.", retryable: false },
  TASK_OUTPUT_INVALID: { description: "The outputs do not match the task's output schema.", retryable: false },
  TASK_FAILED: { description: 'The task code threw an error.', retryable: true },
  TASK_FAILED_FINAL: { description: 'The task code threw an error that it marked as not worth retrying.', retryable: false },
  TASK_TIMED_OUT: { description: "The task attempt ran longer than the task's timeout.", retryable: true },
  TASK_ABORTED: { description: 'The task attempt was aborted.', retryable: false },
  COMMAND_START_FAILED: { description: "A command task's executable could not be started (not found or not executable).", retryable: false },
  COMMAND_FAILED: { description: "A command task's executable exited with a non-zero status or was killed by a signal.", retryable: true },
  TASK_CRASHED: { description: "The task's process exited without writing a result (killed, out of memory, or the agent restarted under it).", retryable: true },

  FAILED_PRECONDITION: { description: 'The resource is not in a state that allows the operation (e.g. outputs of a run that has not finished).', retryable: false },
  CLUSTER_REVOKED: { description: 'The data plane was revoked and can no longer run anything or be reached.', retryable: false },
  DATA_PLANE_PIN_MISMATCH: {
    description: "The data plane's signed sealing keys do not verify against the pinned identity fingerprint (wrong key, bad signature, or another cluster's statement).",
    retryable: false,
  },
  DATA_PLANE_LOST: { description: 'The data plane running the action was not heard from within the run lease.', retryable: true },
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
