// The ObjectStore interface the rest of Airlock uses for bulk data, independent of where the bytes live.
import type { Readable } from 'node:stream';

export interface ObjectStoreEncryption {
  /** AES256 (SSE-S3) or aws:kms (SSE-KMS with `kmsKeyId`). */
  readonly algorithm: 'AES256' | 'aws:kms';
  readonly kmsKeyId?: string;
  readonly bucketKeyEnabled?: boolean;
}

export interface PutOptions {
  readonly contentType?: string;
  readonly metadata?: Readonly<Record<string, string>>;
  /** Overrides the bucket's default encryption for this object. */
  readonly encryption?: ObjectStoreEncryption;
  /** Body length, when known (lets the client send a plain, non-chunked upload). */
  readonly contentLength?: number;
  /**
   * `'*'`: create only, in one request (`If-None-Match: *`). When the key already holds an object the
   * put fails with PRECONDITION_FAILED (WRITE_CONFLICT when a concurrent write of it won) and changes nothing.
   */
  readonly ifNoneMatch?: '*';
}

export interface HeadResult {
  readonly size: number;
  readonly etag: string;
  readonly lastModified: Date | undefined;
  readonly contentType: string | undefined;
  readonly metadata: Readonly<Record<string, string>>;
  readonly encryption: { readonly algorithm: string | undefined; readonly kmsKeyArn: string | undefined; readonly bucketKeyEnabled: boolean };
}

export interface ListEntry {
  readonly key: string;
  readonly size: number;
  readonly etag: string;
  readonly lastModified: Date | undefined;
}

export interface PresignOptions {
  /** GET or PUT: a presigned URL is good for one object and one method. */
  readonly method: 'GET' | 'PUT';
  /** Lifetime in seconds, 1 to 604800. @default 3600 */
  readonly expiresInSeconds?: number;
  /**
   * PUT only: the SHA-256 of the one body the URL may upload, base64 (as `x-amz-checksum-sha256`
   * carries it). It is signed into the URL as a header, so the uploader must send exactly
   * `x-amz-checksum-sha256: <this>`, and the store refuses a body with another digest.
   */
  readonly checksumSha256?: string;
  /** PUT only: the body's exact length, signed into the URL as `content-length`. */
  readonly contentLength?: number;
}

/**
 * Bulk-data storage as Airlock needs it. Errors are AirlockErrors: BUCKET_NOT_FOUND,
 * OBJECT_NOT_FOUND, KMS_KEY_DISABLED (and the other KMS_* kill-switch codes), ACCESS_DENIED,
 * UNAVAILABLE, INTERNAL.
 */
export interface ObjectStore {
  put(bucket: string, key: string, body: Readable | Uint8Array | string, options?: PutOptions): Promise<{ etag: string }>;
  /** The object's bytes as a stream; `range` is inclusive, as in HTTP. */
  get(bucket: string, key: string, range?: { readonly start: number; readonly end: number }): Promise<Readable>;
  head(bucket: string, key: string): Promise<HeadResult>;
  /** Every key under `prefix`, following pagination. */
  list(bucket: string, prefix?: string): AsyncIterable<ListEntry>;
  delete(bucket: string, key: string): Promise<void>;
  /** A presigned HTTPS URL for one object and one method. */
  presign(bucket: string, key: string, options: PresignOptions): Promise<string>;
  createBucket(bucket: string, encryption?: ObjectStoreEncryption): Promise<void>;
  getBucketEncryption(bucket: string): Promise<ObjectStoreEncryption & { readonly kmsKeyArn: string | undefined }>;
  putBucketEncryption(bucket: string, encryption: ObjectStoreEncryption): Promise<void>;
}
