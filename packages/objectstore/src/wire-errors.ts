// S3 error codes as clients receive them → Airlock codes (the server-side mapping lives in internal/s3-errors.ts).
import { AirlockError, type AirlockErrorCode } from '@airlock/common';

const FROM_S3: Readonly<Record<string, AirlockErrorCode>> = {
  NoSuchBucket: 'BUCKET_NOT_FOUND',
  NoSuchKey: 'OBJECT_NOT_FOUND',
  NotFound: 'OBJECT_NOT_FOUND',
  BucketAlreadyOwnedByYou: 'BUCKET_ALREADY_EXISTS',
  BucketAlreadyExists: 'BUCKET_ALREADY_EXISTS',
  BucketNotEmpty: 'BUCKET_NOT_EMPTY',
  InvalidBucketName: 'INVALID_BUCKET_NAME',
  NoSuchUpload: 'UPLOAD_NOT_FOUND',
  InvalidRange: 'RANGE_NOT_SATISFIABLE',
  BadDigest: 'DIGEST_MISMATCH',
  AccessDenied: 'ACCESS_DENIED',
  SignatureDoesNotMatch: 'AUTH_SIGNATURE_MISMATCH',
  InvalidAccessKeyId: 'AUTH_UNKNOWN_ACCESS_KEY',
  PreconditionFailed: 'PRECONDITION_FAILED',
  ConditionalRequestConflict: 'WRITE_CONFLICT',
  'KMS.DisabledException': 'KMS_KEY_DISABLED',
  'KMS.KMSInvalidStateException': 'KMS_INVALID_STATE',
  'KMS.NotFoundException': 'KMS_KEY_NOT_FOUND',
  ServiceUnavailable: 'UNAVAILABLE',
  SlowDown: 'UNAVAILABLE',
  InternalError: 'INTERNAL',
};

/** Normalises an S3 SDK error into an AirlockError, keeping S3's message (it names the key ARN for KMS errors). */
export function objectStoreErrorFromWire(error: unknown): AirlockError {
  if (error instanceof AirlockError) return error;
  const name = (error as { name?: unknown; Code?: unknown } | null)?.name;
  const message = (error as { message?: unknown } | null)?.message;
  if (typeof name === 'string') {
    const code = FROM_S3[name];
    if (code !== undefined) {
      const refined = code === 'KMS_INVALID_STATE' && typeof message === 'string' && /pending deletion/i.test(message) ? 'KMS_KEY_PENDING_DELETION' : code;
      return new AirlockError(refined, typeof message === 'string' ? message : undefined, { cause: error, details: { s3ErrorCode: name } });
    }
  }
  return AirlockError.from(error, 'UNAVAILABLE');
}
