// The one mapping from Airlock error codes to S3 error codes and HTTP statuses, and the S3 XML error body.
import type { AirlockError, AirlockErrorCode } from '@airlock/common';
import { buildXml, type XmlElement } from './s3-xml.js';

/** How the failed request authenticated: S3 names several errors differently for presigned URLs. */
export type S3AuthType = 'header' | 'query';

export interface S3WireError {
  /** The S3 error code, e.g. NoSuchKey or KMS.DisabledException. */
  readonly code: string;
  readonly status: number;
  /** Safe to send: S3's wording, the error's own message, or a generic one for server faults. */
  readonly message: string;
}

interface Mapping {
  readonly code: string;
  readonly status: number;
  /** A fixed message, used instead of the error's own (auth errors carry none worth sending; server faults must not leak). */
  readonly message?: string;
}

const INTERNAL_MESSAGE = 'We encountered an internal error. Please try again.';
const INTERNAL: Mapping = { code: 'InternalError', status: 500, message: INTERNAL_MESSAGE };
const UNAVAILABLE: Mapping = { code: 'ServiceUnavailable', status: 503, message: 'Service is unable to handle request. Please try again.' };
const SIGNATURE_MISMATCH_MESSAGE = 'The request signature we calculated does not match the signature you provided. Check your key and signing method.';

/**
 * Every catalogue code, so adding one to @airlock/common fails type-checking here until it is
 * mapped. Faults of the server or its stored data (a blob that no longer decrypts, a full disk)
 * are InternalError with a generic message: the cause is logged, never sent.
 */
const BY_CODE: Readonly<Record<AirlockErrorCode, Mapping>> = {
  INTERNAL,
  INVALID_ARGUMENT: { code: 'InvalidArgument', status: 400 },
  CONFIG_INVALID: INTERNAL,
  NOT_FOUND: INTERNAL,
  ALREADY_EXISTS: INTERNAL,
  PERMISSION_DENIED: INTERNAL,
  DISK_FULL: INTERNAL,
  ABORTED: { code: 'IncompleteBody', status: 400, message: 'The request body terminated unexpectedly' },
  TIMEOUT: { code: 'RequestTimeout', status: 400, message: 'Your socket connection to the server was not read from or written to within the timeout period.' },
  UNAVAILABLE,

  CIPHERTEXT_MALFORMED: INTERNAL,
  CIPHERTEXT_AUTH_FAILED: INTERNAL,
  KEY_UNWRAP_FAILED: INTERNAL,
  SEALED_WRONG_RECIPIENT: INTERNAL,

  CERTIFICATE_INVALID: INTERNAL,
  CERTIFICATE_EXPIRED: INTERNAL,
  CERTIFICATE_UNTRUSTED: INTERNAL,

  AUTH_MISSING: { code: 'AccessDenied', status: 403, message: 'Access Denied' },
  AUTH_MALFORMED: { code: 'AuthorizationHeaderMalformed', status: 400, message: 'The authorization header is malformed.' },
  AUTH_UNKNOWN_ACCESS_KEY: { code: 'InvalidAccessKeyId', status: 403, message: 'The AWS Access Key Id you provided does not exist in our records.' },
  AUTH_SIGNATURE_MISMATCH: { code: 'SignatureDoesNotMatch', status: 403, message: SIGNATURE_MISMATCH_MESSAGE },
  AUTH_REQUEST_EXPIRED: { code: 'RequestTimeTooSkewed', status: 403, message: 'The difference between the request time and the current time is too large.' },
  AUTH_SCOPE_INVALID: { code: 'AuthorizationHeaderMalformed', status: 400, message: 'The authorization header is malformed; the credential scope is invalid.' },
  AUTH_EXPIRES_TOO_LARGE: {
    code: 'AuthorizationQueryParametersError',
    status: 400,
    message: 'X-Amz-Expires must be less than a week (in seconds) that is 604800',
  },
  ACCESS_DENIED: { code: 'AccessDenied', status: 403 },
  MALFORMED_REQUEST: { code: 'InvalidRequest', status: 400 },
  PAYLOAD_TOO_LARGE: { code: 'EntityTooLarge', status: 400, message: 'Your proposed upload exceeds the maximum allowed size' },
  UNKNOWN_OPERATION: { code: 'NotImplemented', status: 501, message: 'A header or query you provided implies functionality that is not implemented' },

  KMS_KEY_NOT_FOUND: { code: 'KMS.NotFoundException', status: 400 },
  // The KMS's message names the key ARN; S3 passes it through, and the kill-switch check reads it.
  KMS_KEY_DISABLED: { code: 'KMS.DisabledException', status: 400 },
  KMS_KEY_PENDING_DELETION: { code: 'KMS.KMSInvalidStateException', status: 400 },
  KMS_INVALID_STATE: { code: 'KMS.KMSInvalidStateException', status: 400 },
  // Stored data that no longer unwraps is the server's problem, not the caller's.
  KMS_INVALID_CIPHERTEXT: INTERNAL,
  KMS_INCORRECT_KEY: INTERNAL,
  KMS_INVALID_ALIAS_NAME: { code: 'InvalidArgument', status: 400 },
  KMS_INVALID_MARKER: INTERNAL,
  KMS_UNSUPPORTED_OPERATION: { code: 'InvalidArgument', status: 400 },
  KMS_UNAVAILABLE: UNAVAILABLE,

  BUCKET_NOT_FOUND: { code: 'NoSuchBucket', status: 404, message: 'The specified bucket does not exist' },
  BUCKET_ALREADY_EXISTS: {
    code: 'BucketAlreadyOwnedByYou',
    status: 409,
    message: 'Your previous request to create the named bucket succeeded and you already own it.',
  },
  BUCKET_NOT_EMPTY: { code: 'BucketNotEmpty', status: 409, message: 'The bucket you tried to delete is not empty' },
  INVALID_BUCKET_NAME: { code: 'InvalidBucketName', status: 400, message: 'The specified bucket is not valid.' },
  OBJECT_NOT_FOUND: { code: 'NoSuchKey', status: 404, message: 'The specified key does not exist.' },
  INVALID_OBJECT_KEY: { code: 'InvalidArgument', status: 400 },
  UPLOAD_NOT_FOUND: {
    code: 'NoSuchUpload',
    status: 404,
    message: 'The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.',
  },
  INVALID_PART: { code: 'InvalidPart', status: 400 },
  INVALID_PART_ORDER: { code: 'InvalidPartOrder', status: 400 },
  ENTITY_TOO_SMALL: { code: 'EntityTooSmall', status: 400, message: 'Your proposed upload is smaller than the minimum allowed size' },
  RANGE_NOT_SATISFIABLE: { code: 'InvalidRange', status: 416, message: 'The requested range is not satisfiable' },
  PART_NUMBER_NOT_SATISFIABLE: { code: 'InvalidPartNumber', status: 416, message: 'The requested partnumber is not satisfiable' },
  DIGEST_MISMATCH: { code: 'BadDigest', status: 400 },
  INCOMPLETE_BODY: { code: 'IncompleteBody', status: 400, message: 'You did not provide the number of bytes specified by the Content-Length HTTP header.' },
  MALFORMED_XML: {
    code: 'MalformedXML',
    status: 400,
    message: 'The XML you provided was not well-formed or did not validate against our published schema',
  },
  NOT_IMPLEMENTED: { code: 'NotImplemented', status: 501 },
  METHOD_NOT_ALLOWED: { code: 'MethodNotAllowed', status: 405, message: 'The specified method is not allowed against this resource.' },
  PRECONDITION_FAILED: { code: 'PreconditionFailed', status: 412, message: 'At least one of the pre-conditions you specified did not hold' },
  WRITE_CONFLICT: {
    code: 'ConditionalRequestConflict',
    status: 409,
    message: 'The conditional request cannot succeed due to a conflicting operation against this resource.',
  },
  DB_KEY_INVALID: INTERNAL,
  DB_SCHEMA_UNSUPPORTED: INTERNAL,
  DB_CONNECTION_INSECURE: INTERNAL,
  TASK_DEFINITION_INVALID: INTERNAL,
  TASK_NOT_FOUND: INTERNAL,
  TASK_INPUT_INVALID: INTERNAL,
  TASK_OUTPUT_INVALID: INTERNAL,
  TASK_FAILED: INTERNAL,
  TASK_FAILED_FINAL: INTERNAL,
  TASK_TIMED_OUT: INTERNAL,
  TASK_ABORTED: INTERNAL,
  COMMAND_START_FAILED: INTERNAL,
  COMMAND_FAILED: INTERNAL,
  TASK_CRASHED: INTERNAL,
  FAILED_PRECONDITION: INTERNAL,
  CLUSTER_REVOKED: INTERNAL,
  DATA_PLANE_PIN_MISMATCH: INTERNAL,
  DATA_PLANE_LOST: INTERNAL,
};

/**
 * Refinements by `details.reason` (or `details.kind`): S3 distinguishes failures that share one
 * Airlock code. The reasons come from the SigV4 verifier, the aws-chunked decoder and this layer.
 */
function refine(error: AirlockError, authType: S3AuthType | undefined): Mapping | undefined {
  const reason = error.details?.reason;
  const query = authType === 'query';
  const queryMalformed: Mapping = {
    code: 'AuthorizationQueryParametersError',
    status: 400,
    message: 'Error parsing the X-Amz-Credential or other authentication query parameters.',
  };
  switch (error.code) {
    case 'NOT_FOUND':
      return reason === 'no-such-cors-configuration' ? { code: 'NoSuchCORSConfiguration', status: 404, message: 'The CORS configuration does not exist' } : undefined;
    case 'ACCESS_DENIED':
      return reason === 'cors-forbidden' ? { code: 'AccessForbidden', status: 403 } : undefined;
    case 'INVALID_ARGUMENT':
      switch (reason) {
        case 'cors-bad-request':
          return { code: 'BadRequest', status: 400 };
        case 'chunk-malformed':
        case 'decoded-length-mismatch':
          return { code: 'IncompleteBody', status: 400, message: 'The request body is not a valid aws-chunked payload or ended early' };
        case 'invalid-digest':
          return { code: 'InvalidDigest', status: 400, message: 'The Content-MD5 you specified is not valid.' };
        case 'invalid-uri':
          return { code: 'InvalidURI', status: 400, message: "Couldn't parse the specified URI." };
        case 'metadata-too-large':
          return { code: 'MetadataTooLarge', status: 400, message: 'Your metadata headers exceed the maximum allowed metadata size' };
        case 'invalid-request':
          return { code: 'InvalidRequest', status: 400 };
        case 'invalid-encryption-algorithm':
          return { code: 'InvalidEncryptionAlgorithmError', status: 400 };
        default:
          return undefined;
      }
    case 'INVALID_OBJECT_KEY':
      return reason === 'key-too-long' ? { code: 'KeyTooLongError', status: 400, message: 'Your key is too long' } : undefined;
    case 'DIGEST_MISMATCH':
      return error.details?.kind === 'content-sha256'
        ? { code: 'XAmzContentSHA256Mismatch', status: 400, message: "The provided 'x-amz-content-sha256' header does not match what was computed." }
        : undefined;
    case 'PAYLOAD_TOO_LARGE':
      return reason === 'xml-too-large' ? { code: 'MaxMessageLengthExceeded', status: 400, message: 'Your request was too big.' } : undefined;
    case 'AUTH_SIGNATURE_MISMATCH':
      return reason === 'payload-hash-mismatch'
        ? { code: 'XAmzContentSHA256Mismatch', status: 400, message: "The provided 'x-amz-content-sha256' header does not match what was computed." }
        : undefined;
    case 'AUTH_REQUEST_EXPIRED':
      if (!query) return undefined;
      return reason === 'request-not-yet-valid'
        ? { code: 'AccessDenied', status: 403, message: 'Request is not valid yet' }
        : { code: 'AccessDenied', status: 403, message: 'Request has expired' };
    case 'AUTH_MALFORMED':
      switch (reason) {
        case 'sigv2-unsupported':
          return { code: 'InvalidRequest', status: 400, message: 'The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.' };
        case 'amz-header-not-signed':
          return { code: 'AccessDenied', status: 403, message: 'There were headers present in the request which were not signed' };
        case 'multiple-auth-mechanisms':
          return {
            code: 'InvalidArgument',
            status: 400,
            message: 'Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified',
          };
        case 'content-sha256-invalid':
          return {
            code: 'InvalidArgument',
            status: 400,
            message: 'x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, or a valid sha256 value.',
          };
        case 'content-sha256-missing':
          return { code: 'InvalidRequest', status: 400, message: 'Missing required header for this request: x-amz-content-sha256' };
        case 'missing-date':
        case 'date-malformed':
          return query ? queryMalformed : { code: 'AccessDenied', status: 403, message: 'AWS authentication requires a valid Date or x-amz-date header' };
        default:
          return query ? queryMalformed : undefined;
      }
    case 'AUTH_EXPIRES_TOO_LARGE':
      return reason === 'expires-invalid' ? { ...queryMalformed, message: 'X-Amz-Expires must be a whole number of seconds from 1 to 604800' } : undefined;
    case 'AUTH_SCOPE_INVALID': {
      const expected = error.details?.expectedRegion;
      const got = error.details?.credentialRegion;
      const message =
        reason === 'region-mismatch' && typeof expected === 'string' && typeof got === 'string'
          ? `The authorization ${query ? 'query parameters are' : 'header is'} malformed; the region '${got}' is wrong; expecting '${expected}'`
          : `The authorization ${query ? 'query parameters are' : 'header is'} malformed; the credential scope is invalid.`;
      return { code: query ? 'AuthorizationQueryParametersError' : 'AuthorizationHeaderMalformed', status: 400, message };
    }
    default:
      return undefined;
  }
}

/** The S3 code, status and message for an error. */
export function s3ErrorFor(error: AirlockError, authType?: S3AuthType): S3WireError {
  const mapping = refine(error, authType) ?? BY_CODE[error.code];
  return { code: mapping.code, status: mapping.status, message: mapping.message ?? error.message };
}

/** Extra elements S3 adds for some errors, from non-secret details (never a key or an expected signature). */
function extraElements(error: AirlockError, wire: S3WireError): XmlElement {
  const details = error.details ?? {};
  const text = (name: string): string | undefined => (typeof details[name] === 'string' ? details[name] : undefined);
  switch (wire.code) {
    case 'SignatureDoesNotMatch':
      return {
        AWSAccessKeyId: text('accessKeyId'),
        StringToSign: text('stringToSign'),
        SignatureProvided: text('signatureProvided'),
        CanonicalRequest: text('canonicalRequest'),
      };
    case 'InvalidAccessKeyId':
      return { AWSAccessKeyId: text('accessKeyId') };
    case 'RequestTimeTooSkewed':
      return { RequestTime: text('requestTime'), ServerTime: text('serverTime') };
    case 'AuthorizationHeaderMalformed':
    case 'AuthorizationQueryParametersError':
      return { Region: text('expectedRegion') };
    case 'AccessDenied':
      return error.code === 'AUTH_REQUEST_EXPIRED' ? { Expires: text('expiresAt'), ServerTime: text('serverTime') } : {};
    case 'AccessForbidden':
      return { Method: text('method'), ResourceType: text('resourceType') };
    case 'KeyTooLongError':
      return { MaxSizeAllowed: 1024 };
    case 'EntityTooLarge':
      return typeof details.maxSizeAllowed === 'number' ? { MaxSizeAllowed: details.maxSizeAllowed } : {};
    case 'NotImplemented':
      return { Header: text('header'), additionalMessage: text('additionalMessage') };
    default:
      return {};
  }
}

/** The S3 XML error document: Code, Message, Resource, RequestId, plus what S3 adds for a few codes. */
export function s3ErrorXml(error: AirlockError, wire: S3WireError, resource: string, requestId: string): string {
  return buildXml(
    'Error',
    { Code: wire.code, Message: wire.message, ...extraElements(error, wire), Resource: resource, RequestId: requestId },
    { namespace: false },
  );
}
