// The contract between the S3 HTTP layer and the encrypted storage engine of the embedded object store.
import type { Readable } from 'node:stream';
import { AirlockError } from '@airlock/common';
import type { KeyEventStatus } from '@airlock/kms';

/** Server-side encryption as S3 names it. Every object is encrypted; these choose the key. */
export type SseAlgorithm = 'AES256' | 'aws:kms';

/** A bucket's default encryption (PutBucketEncryption / GetBucketEncryption). */
export interface BucketEncryption {
  readonly algorithm: SseAlgorithm;
  /** Full key ARN for aws:kms; undefined for AES256 (the store-managed key). */
  readonly kmsKeyArn: string | undefined;
  readonly bucketKeyEnabled: boolean;
}

/** Per-request encryption headers (x-amz-server-side-encryption…), overriding the bucket default. */
export interface SseRequest {
  readonly algorithm?: SseAlgorithm;
  /** Any KMS key form (id, ARN, alias); resolved to the full ARN. */
  readonly kmsKeyId?: string;
  readonly bucketKeyEnabled?: boolean;
}

/** The methods a CORS rule may allow, as S3 accepts them. */
export const CORS_METHODS = ['GET', 'PUT', 'HEAD', 'POST', 'DELETE'] as const;
export type CorsMethod = (typeof CORS_METHODS)[number];

/** One rule of a bucket's CORS configuration (PutBucketCors), as S3 defines it. */
export interface CorsRule {
  readonly id?: string;
  /** Origins, each with at most one `*` wildcard; `*` alone allows any origin. */
  readonly allowedOrigins: readonly string[];
  readonly allowedMethods: readonly CorsMethod[];
  /** Headers a preflight may ask for (case-insensitive, at most one `*` each). */
  readonly allowedHeaders: readonly string[];
  /** Response headers a browser may let the page read. */
  readonly exposeHeaders: readonly string[];
  readonly maxAgeSeconds?: number;
}

export interface BucketInfo {
  readonly name: string;
  readonly createdAt: Date;
  readonly encryption: BucketEncryption;
}

/** Checksums S3 can carry (x-amz-checksum-*), base64 as on the wire. */
export type ChecksumAlgorithm = 'CRC32' | 'CRC32C' | 'SHA1' | 'SHA256' | 'CRC64NVME';
/** S3's x-amz-checksum-type for multipart uploads. */
export type ChecksumType = 'COMPOSITE' | 'FULL_OBJECT';

/** The representation headers S3 stores with an object and returns on GET and HEAD, by lower-case name. */
export const STORED_HEADER_NAMES = ['cache-control', 'content-disposition', 'content-encoding', 'content-language', 'expires'] as const;
export type StoredHeaderName = (typeof STORED_HEADER_NAMES)[number];
/** Cache-Control, Content-Disposition, Content-Encoding, Content-Language and Expires, as the writer sent them. */
export type StoredHeaders = Readonly<Partial<Record<StoredHeaderName, string>>>;

export interface ObjectMeta {
  readonly bucket: string;
  readonly key: string;
  /** Plaintext size in bytes. */
  readonly size: number;
  /** Quoted, as S3 sends it: MD5 hex of the plaintext, or `<md5 of part md5s>-<n>` after multipart. */
  readonly etag: string;
  readonly lastModified: Date;
  readonly contentType: string;
  /** x-amz-meta-* (lower-cased names without the prefix). */
  readonly userMetadata: Readonly<Record<string, string>>;
  readonly headers: StoredHeaders;
  readonly encryption: BucketEncryption;
  /** Checksums the writer supplied and the server verified, base64 (a COMPOSITE one ends in `-<parts>`). */
  readonly checksums: Readonly<Partial<Record<ChecksumAlgorithm, string>>>;
  /** How `checksums` cover the object: a checksum of the whole body, or (multipart) of the parts' checksums. @default FULL_OBJECT */
  readonly checksumType?: ChecksumType;
  /** Number of parts for a multipart object; undefined otherwise. */
  readonly partsCount: number | undefined;
  /** The parts' sizes in order, for a multipart object (they locate `?partNumber=` reads). */
  readonly partSizes?: readonly number[];
  /** The parts of a multipart object, in order, as GetObjectAttributes lists them. */
  readonly parts?: readonly ObjectPart[];
}

export interface ObjectPart {
  readonly partNumber: number;
  readonly size: number;
  /** The checksums the part was uploaded with, base64. */
  readonly checksums: Readonly<Partial<Record<ChecksumAlgorithm, string>>>;
}

/**
 * The bytes of part `partNumber` of an object, as S3 serves `?partNumber=`: part 1 of an object
 * that was not uploaded in parts is the whole object (undefined here). PART_NUMBER_NOT_SATISFIABLE
 * for a part the object does not have.
 */
export function partByteRange(meta: Pick<ObjectMeta, 'size' | 'partsCount' | 'partSizes'>, partNumber: number): ByteRange | undefined {
  const sizes = meta.partSizes ?? (meta.partsCount === undefined ? [meta.size] : undefined);
  if (sizes === undefined) throw new AirlockError('NOT_IMPLEMENTED', 'This object was stored before part boundaries were kept; use a Range');
  const size = sizes[partNumber - 1];
  if (!Number.isInteger(partNumber) || partNumber < 1 || size === undefined) {
    throw new AirlockError('PART_NUMBER_NOT_SATISFIABLE', 'The requested partnumber is not satisfiable', { details: { partNumber, partsCount: sizes.length } });
  }
  if (meta.partSizes === undefined) return undefined;
  const start = sizes.slice(0, partNumber - 1).reduce((sum, n) => sum + n, 0);
  if (size === 0) throw new AirlockError('RANGE_NOT_SATISFIABLE', 'The requested part is empty');
  return { start, end: start + size - 1 };
}

/**
 * Resolves a requested range against an object, for GET (in the engine) and HEAD (which reads no
 * body): the satisfied bytes, or undefined for the whole object. RANGE_NOT_SATISFIABLE when the
 * range starts past the end.
 */
export function resolveRange(range: RangeRequest | undefined, meta: Pick<ObjectMeta, 'size' | 'partsCount' | 'partSizes'>): ByteRange | undefined {
  if (range === undefined) return undefined;
  if ('partNumber' in range) return partByteRange(meta, range.partNumber);
  const size = meta.size;
  if ('suffixLength' in range) {
    if (range.suffixLength <= 0 || size === 0) throw new AirlockError('RANGE_NOT_SATISFIABLE', 'The requested range is not satisfiable');
    return { start: Math.max(0, size - range.suffixLength), end: size - 1 };
  }
  if (range.start >= size || (range.end !== undefined && range.end < range.start)) {
    throw new AirlockError('RANGE_NOT_SATISFIABLE', 'The requested range is not satisfiable');
  }
  return { start: range.start, end: Math.min(range.end ?? size - 1, size - 1) };
}

/** True when `etag` is in an If-Match / If-None-Match list (`*` matches any); weak tags compare as strong, as S3 does. */
export function etagListMatches(list: string, etag: string): boolean {
  const bare = etag.replace(/^"|"$/g, '');
  return list.split(',').some((item) => {
    const candidate = item.trim().replace(/^W\//, '');
    return candidate === '*' || candidate.replace(/^"|"$/g, '') === bare;
  });
}

/**
 * A condition on a write (PutObject, CopyObject, CompleteMultipartUpload) or a delete, as S3 reads
 * If-Match and If-None-Match there. The engine checks it before writing, and again where it
 * commits, under the object's lock: failing there means another write won the race (WRITE_CONFLICT).
 */
export interface WriteCondition {
  /** ETags, or `*`: the current object must carry one of them. No current object is OBJECT_NOT_FOUND. */
  readonly ifMatch?: string;
  /** Only `*`: there must be no current object. */
  readonly ifNoneMatch?: '*';
}

/** Throws PRECONDITION_FAILED (or OBJECT_NOT_FOUND for If-Match on nothing) unless `condition` holds for `current`. */
export function checkWriteCondition(condition: WriteCondition | undefined, current: { readonly etag: string } | undefined): void {
  if (condition === undefined) return;
  if (condition.ifNoneMatch !== undefined && current !== undefined) {
    throw new AirlockError('PRECONDITION_FAILED', 'At least one of the pre-conditions you specified did not hold', { details: { condition: 'If-None-Match' } });
  }
  if (condition.ifMatch !== undefined) {
    if (current === undefined) throw new AirlockError('OBJECT_NOT_FOUND', 'The specified key does not exist.');
    if (!etagListMatches(condition.ifMatch, current.etag)) {
      throw new AirlockError('PRECONDITION_FAILED', 'At least one of the pre-conditions you specified did not hold', { details: { condition: 'If-Match' } });
    }
  }
}

export interface ListingPage<T> {
  readonly entries: T[];
  readonly commonPrefixes: string[];
  readonly truncated: boolean;
  /** The page's last key or common prefix, with its entry when it is a key: where the next page starts. */
  readonly last: { readonly key: string; readonly entry?: T } | undefined;
}

/**
 * One page of a listing, as S3 pages ListObjects and ListMultipartUploads: `items` in key order
 * (UTF-8 binary), those under `prefix` and past the marker; keys with `delimiter` after the prefix
 * rolled up into common prefixes (one at or before the marker was on an earlier page); at most `max`
 * entries and prefixes together. `pastMarker` decides for an item whose key compares `order` to the
 * marker (default: a later key).
 */
export function listingPage<T>(
  items: Iterable<T>,
  keyOf: (item: T) => string,
  options: { readonly prefix: string; readonly delimiter?: string; readonly marker?: string; readonly pastMarker?: (item: T, order: number) => boolean; readonly max: number },
): ListingPage<T> {
  const { prefix, delimiter, max } = options;
  const marker = options.marker === undefined ? undefined : Buffer.from(options.marker);
  const pastMarker = options.pastMarker ?? ((_item: T, order: number) => order > 0);
  const entries: T[] = [];
  const commonPrefixes: string[] = [];
  let last: { key: string; entry?: T } | undefined;
  for (const item of items) {
    const key = keyOf(item);
    if (!key.startsWith(prefix)) continue;
    if (marker !== undefined && !pastMarker(item, Buffer.compare(Buffer.from(key), marker))) continue;
    let commonPrefix: string | undefined;
    if (delimiter !== undefined && delimiter !== '') {
      const at = key.indexOf(delimiter, prefix.length);
      if (at >= 0) commonPrefix = key.slice(0, at + delimiter.length);
    }
    if (commonPrefix !== undefined && (commonPrefix === commonPrefixes.at(-1) || (marker !== undefined && Buffer.compare(Buffer.from(commonPrefix), marker) <= 0))) continue;
    if (entries.length + commonPrefixes.length >= max) return { entries, commonPrefixes, truncated: true, last };
    if (commonPrefix !== undefined) {
      commonPrefixes.push(commonPrefix);
      last = { key: commonPrefix };
    } else {
      entries.push(item);
      last = { key, entry: item };
    }
  }
  return { entries, commonPrefixes, truncated: false, last };
}

export interface PutObjectInput {
  readonly bucket: string;
  readonly key: string;
  /** The decoded body (aws-chunked framing already removed by the HTTP layer). */
  readonly body: Readable;
  /** Declared decoded length, when known; a shorter body fails with INCOMPLETE_BODY and nothing is stored. */
  readonly expectedLength?: number;
  /** Content-MD5, base64; a mismatch fails with DIGEST_MISMATCH and nothing is stored. */
  readonly contentMd5?: string;
  /** Checksums to verify (from headers now, or trailers later: the promise settles when the body ends). */
  readonly checksums?: Partial<Record<ChecksumAlgorithm, string>> | Promise<Partial<Record<ChecksumAlgorithm, string>>>;
  /** For trailer checksums (a promise above): the algorithms announced by x-amz-trailer, so only those are computed. */
  readonly checksumAlgorithms?: readonly ChecksumAlgorithm[];
  /** Checksums to compute and keep without a value to check (a copy's). @default none */
  readonly computeChecksums?: readonly ChecksumAlgorithm[];
  readonly contentType?: string;
  readonly userMetadata?: Readonly<Record<string, string>>;
  readonly headers?: StoredHeaders;
  readonly sse?: SseRequest;
  readonly condition?: WriteCondition;
}

export interface ByteRange {
  /** Inclusive start. */
  readonly start: number;
  /** Inclusive end. */
  readonly end: number;
}

/**
 * Bytes to read. From a `Range: bytes=…` header: `bytes=a-b` → {start: a, end: b}; `bytes=a-` →
 * {start: a}; `bytes=-n` → {suffixLength: n} (multiple ranges are not supported: the HTTP layer
 * ignores the header then, as S3 does). From `?partNumber=n`: {partNumber: n}, one part of a
 * multipart object.
 */
export type RangeRequest = { readonly start: number; readonly end?: number } | { readonly suffixLength: number } | { readonly partNumber: number };

export interface GetObjectResult {
  readonly meta: ObjectMeta;
  /** The decrypted bytes (the whole object, or `range`). Errors mid-stream destroy it. */
  readonly body: Readable;
  /** The satisfied range, when one was asked for. */
  readonly range: ByteRange | undefined;
}

export interface ListObjectsInput {
  readonly bucket: string;
  readonly prefix?: string;
  readonly delimiter?: string;
  /** Keys strictly after this (StartAfter, or a decoded ContinuationToken). */
  readonly after?: string;
  /** 0 – 1000. @default 1000 */
  readonly maxKeys?: number;
}

export interface ListObjectsResult {
  readonly objects: readonly ObjectMeta[];
  readonly commonPrefixes: readonly string[];
  readonly isTruncated: boolean;
  /** The last key or prefix returned, to continue after; undefined when not truncated. */
  readonly nextAfter: string | undefined;
}

export interface PartInfo {
  readonly partNumber: number;
  readonly etag: string;
  readonly size: number;
  readonly lastModified: Date;
  /** The part's checksums, base64: those it was sent with, and the upload's algorithm. */
  readonly checksums: Readonly<Partial<Record<ChecksumAlgorithm, string>>>;
}

/** How a multipart upload's object is checksummed (CreateMultipartUpload's x-amz-checksum-algorithm and -type). */
export interface UploadChecksum {
  readonly algorithm: ChecksumAlgorithm;
  readonly type: ChecksumType;
}

/** A part just uploaded, with its upload's encryption (S3 repeats it in the UploadPart response). */
export interface UploadedPart extends PartInfo {
  readonly encryption: BucketEncryption;
}

export interface UploadInfo {
  readonly uploadId: string;
  readonly bucket: string;
  readonly key: string;
  readonly initiated: Date;
  readonly encryption: BucketEncryption;
  readonly checksum: UploadChecksum | undefined;
}

/**
 * The storage engine. Every method throws AirlockError: BUCKET_NOT_FOUND, OBJECT_NOT_FOUND,
 * BUCKET_ALREADY_EXISTS, BUCKET_NOT_EMPTY, INVALID_BUCKET_NAME, INVALID_OBJECT_KEY, UPLOAD_NOT_FOUND,
 * INVALID_PART, INVALID_PART_ORDER, ENTITY_TOO_SMALL, RANGE_NOT_SATISFIABLE, DIGEST_MISMATCH,
 * INCOMPLETE_BODY, PRECONDITION_FAILED, WRITE_CONFLICT, KMS_* (the kill switch: KMS_KEY_DISABLED, KMS_KEY_PENDING_DELETION,
 * KMS_INVALID_STATE, KMS_KEY_NOT_FOUND), DISK_FULL, PERMISSION_DENIED, INTERNAL.
 * Writes are atomic: a failed or interrupted write leaves no partial object visible.
 */
/** Whether the store can reach its KMS right now; `reason` is an errno or error code (failureReason), never a message. */
export type KmsHealth = { readonly ok: true } | { readonly ok: false; readonly reason: string };

export interface ObjectEngine {
  /** A real, uncached KMS call (DescribeKey of the store key), at most one in flight and its answer reused for 1 s. */
  kmsHealth(): Promise<KmsHealth>;
  /** The key cache's KMS key-event subscription (live: keys cached for minutes; otherwise 1 s). */
  keyEventStatus(): KeyEventStatus;
  /** Resolves true once the key-event subscription is live, false after `timeoutMs` or if it cannot be. */
  waitForKeyEvents(timeoutMs: number): Promise<boolean>;
  listBuckets(): BucketInfo[];
  createBucket(name: string): Promise<BucketInfo>;
  headBucket(name: string): BucketInfo;
  deleteBucket(name: string): Promise<void>;
  getBucketEncryption(name: string): BucketEncryption;
  /** Validates the KMS key (it must exist and be usable) before storing the configuration. */
  putBucketEncryption(name: string, encryption: SseRequest): Promise<BucketEncryption>;
  /** Back to the default: AES256 with the store-managed key. */
  deleteBucketEncryption(name: string): Promise<void>;
  /** The bucket's CORS rules; undefined when it has none. */
  getBucketCors(name: string): readonly CorsRule[] | undefined;
  putBucketCors(name: string, rules: readonly CorsRule[]): Promise<void>;
  deleteBucketCors(name: string): Promise<void>;

  putObject(input: PutObjectInput): Promise<ObjectMeta>;
  /** Resolves `range` against the object's size (RANGE_NOT_SATISFIABLE when it starts past the end). */
  getObject(bucket: string, key: string, range?: RangeRequest): Promise<GetObjectResult>;
  headObject(bucket: string, key: string): ObjectMeta;
  /** Deleting a missing key succeeds, as in S3, unless `condition` asks for an object (If-Match: OBJECT_NOT_FOUND). */
  deleteObject(bucket: string, key: string, condition?: WriteCondition): Promise<void>;
  listObjects(input: ListObjectsInput): ListObjectsResult;
  copyObject(input: {
    readonly sourceBucket: string;
    readonly sourceKey: string;
    readonly bucket: string;
    readonly key: string;
    /** REPLACE uses these; COPY keeps the source's. */
    readonly metadataDirective: 'COPY' | 'REPLACE';
    readonly contentType?: string;
    readonly userMetadata?: Readonly<Record<string, string>>;
    readonly headers?: StoredHeaders;
    readonly sse?: SseRequest;
    /** On the destination. */
    readonly condition?: WriteCondition;
    /** Called with the source's metadata, for the version being copied, before anything is written; throws to refuse (the copy-source conditions). */
    readonly checkSource?: (source: ObjectMeta) => void;
    /** The copy's checksum, computed over the bytes copied. @default the source's algorithm, if it has a checksum */
    readonly checksumAlgorithm?: ChecksumAlgorithm;
  }): Promise<ObjectMeta>;

  createMultipartUpload(input: {
    readonly bucket: string;
    readonly key: string;
    readonly contentType?: string;
    readonly userMetadata?: Readonly<Record<string, string>>;
    readonly headers?: StoredHeaders;
    readonly sse?: SseRequest;
    readonly checksum?: UploadChecksum;
  }): Promise<UploadInfo>;
  uploadPart(input: {
    readonly bucket: string;
    readonly key: string;
    readonly uploadId: string;
    readonly partNumber: number;
    readonly body: Readable;
    readonly expectedLength?: number;
    readonly contentMd5?: string;
    readonly checksums?: PutObjectInput['checksums'];
    readonly checksumAlgorithms?: PutObjectInput['checksumAlgorithms'];
  }): Promise<UploadedPart>;
  completeMultipartUpload(input: {
    readonly bucket: string;
    readonly key: string;
    readonly uploadId: string;
    /** With the checksums the client lists for each part (each must be the part's). */
    readonly parts: ReadonlyArray<{ readonly partNumber: number; readonly etag: string; readonly checksums?: Readonly<Partial<Record<ChecksumAlgorithm, string>>> }>;
    /** The object's checksum the client expects (x-amz-checksum-*): the whole body's for FULL_OBJECT, the parts' for COMPOSITE (with or without `-<parts>`). */
    readonly checksum?: { readonly algorithm: ChecksumAlgorithm; readonly value: string };
    /** x-amz-checksum-type, which must be the upload's. */
    readonly checksumType?: ChecksumType;
    /** x-amz-mp-object-size: the object's size the client expects. */
    readonly objectSize?: number;
    readonly condition?: WriteCondition;
  }): Promise<ObjectMeta>;
  abortMultipartUpload(bucket: string, key: string, uploadId: string): Promise<void>;
  listParts(bucket: string, key: string, uploadId: string): { upload: UploadInfo; parts: PartInfo[] };
  /** The bucket's uploads in progress, by key (UTF-8 binary order) and then upload id. */
  listMultipartUploads(bucket: string): UploadInfo[];

  close(): Promise<void>;
}
