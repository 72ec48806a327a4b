// The embedded object store's storage engine: every body in ASF1 under per-object keys from KMS bucket keys, every name hashed, every record sealed.
import { createHash, randomBytes as nodeRandomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { link, mkdir, open, readdir, readFile, rename, rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AirlockError, failureReason, syncDirectory, writeFileAtomic, type Logger } from '@airlock/common';
import {
  asf1OpeningReadBytes,
  createAsf1EncryptStream,
  fileSource,
  hkdfSha256,
  openAsf1Reader,
  zeroize,
  encodeEncryptionContext,
  type EncryptionContext,
} from '@airlock/crypto';
import { createCachingKms, ensureKey, type CachingKms, type KeyEventStatus, type Kms, type KmsAdmin } from '@airlock/kms';
import { BodyMeter, combinable, combineChecksums, compositeChecksum } from './checksums.js';
import {
  checkWriteCondition,
  listingPage,
  resolveRange,
  type BucketEncryption,
  type BucketInfo,
  type ChecksumAlgorithm,
  type ChecksumType,
  type CorsRule,
  type GetObjectResult,
  type KmsHealth,
  type ListObjectsInput,
  type ListObjectsResult,
  type ObjectEngine,
  type ObjectMeta,
  type PartInfo,
  type PutObjectInput,
  type RangeRequest,
  type SseRequest,
  type StoredHeaders,
  type UploadChecksum,
  type UploadedPart,
  type UploadInfo,
  type WriteCondition,
} from './engine-types.js';
import { checkBucketName, checkObjectKey, NameHasher } from './names.js';
import { SealedFiles } from './sealed-file.js';

export interface EngineOptions {
  readonly dataDir: string;
  /** The KMS holding the customer-managed keys (and the store-managed SSE-S3 key). */
  readonly kms: Kms | KmsAdmin;
  /** The store-managed key used for AES256 (SSE-S3) and for the store's own metadata. Created if missing and `kms` can. */
  readonly defaultKeyId: string;
  readonly log: Logger;
  /** Bench-only: store bodies unencrypted to measure the cost of encryption. Never set in production. */
  readonly benchmarkPlaintextBodies?: boolean;
  /**
   * How long bucket keys and data keys are reused while the KMS's key-event stream is live (they are
   * dropped the moment their key changes state); without live events, 1 s. @default 300000
   */
  readonly keyCacheTtlMs?: number;
  /** Subscribe to the KMS's key events (the embedded KMS has them; others refuse and the 1 s bound stays). @default true */
  readonly kmsKeyEvents?: boolean;
}

interface BucketKeyRecord {
  readonly id: string;
  readonly keyArn: string;
  /** The bucket key wrapped by the KMS key (a KMS ciphertext blob, base64). */
  readonly blob: string;
}

interface BucketRecord {
  readonly name: string;
  readonly createdAt: number;
  encryption: BucketEncryption;
  bucketKeys: BucketKeyRecord[];
  /** PutBucketCors; absent when the bucket has no CORS configuration. */
  readonly cors?: readonly CorsRule[];
}

interface ObjectRecord {
  readonly bucket: string;
  readonly key: string;
  readonly size: number;
  readonly etag: string;
  readonly lastModified: number;
  readonly contentType: string;
  readonly userMetadata: Record<string, string>;
  /** Absent in records written before the store kept these headers. */
  readonly headers?: StoredHeaders;
  readonly encryption: BucketEncryption;
  readonly checksums: Partial<Record<ChecksumAlgorithm, string>>;
  readonly checksumType?: ChecksumType;
  readonly partsCount?: number;
  /** A single-body object: its body file within the bucket's objects directory. */
  readonly dataFile?: string;
  readonly plaintext?: boolean;
  /** A completed multipart upload: each part stays its own body, under its part's encryption context. */
  readonly uploadId?: string;
  readonly parts?: readonly StoredPart[];
}

/** One part of a multipart object, in the bucket's objects directory. */
interface StoredPart {
  readonly partNumber: number;
  /** The part's ETag, so a repeated CompleteMultipartUpload can be checked (absent in older records). */
  readonly etag?: string;
  readonly size: number;
  /** The checksums the part was uploaded with (absent in older records). */
  readonly checksums?: Partial<Record<ChecksumAlgorithm, string>>;
  readonly dataFile: string;
  readonly plaintext?: boolean;
}

/** One stored body of an object: where it is, how long it is, and the context it is encrypted under. */
interface StoredBody {
  readonly dataFile: string;
  readonly size: number;
  readonly plaintext: boolean | undefined;
  readonly context: EncryptionContext;
}

interface UploadRecord {
  readonly uploadId: string;
  readonly bucket: string;
  readonly key: string;
  readonly initiated: number;
  readonly contentType: string;
  readonly userMetadata: Record<string, string>;
  readonly headers?: StoredHeaders;
  readonly encryption: BucketEncryption;
  readonly checksum?: UploadChecksum;
}

interface PartRecord {
  readonly partNumber: number;
  readonly etag: string;
  readonly size: number;
  readonly lastModified: number;
  /** Absent in records written before parts kept their checksums. */
  readonly checksums?: Partial<Record<ChecksumAlgorithm, string>>;
  readonly dataFile: string;
  readonly plaintext?: boolean;
}

/**
 * How an ASF1 body names its data key (stored, authenticated, in the ASF1 header's key reference).
 * A bucket-key reference's version chooses how the object key is derived (#objectKeyFromBucketKey):
 * v1 put the encryption context itself in the HKDF info, which HKDF caps at 1,024 bytes, so long
 * keys failed; v2 puts its SHA-256 there. Bodies keep the version they were written with.
 */
type KeyRef =
  | { readonly v: 1 | 2; readonly m: 'bk'; readonly id: string; readonly s: string }
  | { readonly v: 1; readonly m: 'kms'; readonly b: string };

/** How long a KMS health answer is reused, and how long the KMS call behind it may take. */
const KMS_HEALTH_REUSE_MS = 1000;
const KMS_HEALTH_TIMEOUT_MS = 3000;
const MIN_PART_SIZE = 5 * 1024 * 1024;
const MAX_PARTS = 10_000;
// BucketKeyEnabled is what the bucket configuration or a request asked for, as S3 reports it; AES256
// bodies always use the store's bucket key (#newDataKey), whatever the flag says.
const DEFAULT_ENCRYPTION: BucketEncryption = { algorithm: 'AES256', kmsKeyArn: undefined, bucketKeyEnabled: false };

const quote = (hex: string): string => `"${hex}"`;
const unquote = (etag: string): string => etag.trim().replace(/^"|"$/g, '');

/** A chain of promises per name: serialises commits to one object, bucket or upload. */
class Locks {
  readonly #tails = new Map<string, Promise<unknown>>();

  async run<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(name) ?? Promise.resolve();
    const next = previous.then(fn, fn);
    this.#tails.set(name, next);
    try {
      return await next;
    } finally {
      if (this.#tails.get(name) === next) this.#tails.delete(name);
    }
  }
}

function invalidRequest(message: string): AirlockError {
  return new AirlockError('INVALID_ARGUMENT', message, { details: { reason: 'invalid-request' } });
}

function bucketNotFound(name: string): AirlockError {
  return new AirlockError('BUCKET_NOT_FOUND', 'The specified bucket does not exist', { details: { bucket: name } });
}

/** The encryption context of a multipart upload's part: it binds bucket, key, upload and position. */
function partContext(bucket: string, key: string, uploadId: string, partNumber: number): EncryptionContext {
  return { bucket, key, uploadId, part: String(partNumber) };
}

/** An object's bodies in order: one for a single PUT, one per part for a completed multipart upload. */
function bodiesOf(record: ObjectRecord): StoredBody[] {
  if (record.parts !== undefined && record.uploadId !== undefined) {
    const uploadId = record.uploadId;
    return record.parts.map((part) => ({
      dataFile: part.dataFile,
      size: part.size,
      plaintext: part.plaintext,
      context: partContext(record.bucket, record.key, uploadId, part.partNumber),
    }));
  }
  if (record.dataFile === undefined) throw new AirlockError('CIPHERTEXT_MALFORMED', 'stored object record names no body');
  return [{ dataFile: record.dataFile, size: record.size, plaintext: record.plaintext, context: { bucket: record.bucket, key: record.key } }];
}

function toMeta(record: ObjectRecord): ObjectMeta {
  return {
    bucket: record.bucket,
    key: record.key,
    size: record.size,
    etag: record.etag,
    lastModified: new Date(record.lastModified),
    contentType: record.contentType,
    userMetadata: record.userMetadata,
    headers: record.headers ?? {},
    encryption: record.encryption,
    checksums: record.checksums,
    ...(record.checksumType === undefined ? {} : { checksumType: record.checksumType }),
    partsCount: record.partsCount,
    ...(record.parts === undefined
      ? {}
      : { partSizes: record.parts.map((part) => part.size), parts: record.parts.map((part) => ({ partNumber: part.partNumber, size: part.size, checksums: part.checksums ?? {} })) }),
  };
}

export class StorageEngine implements ObjectEngine {
  readonly #root: string;
  readonly #kms: Kms;
  readonly #cachedKms: Kms & CachingKms;
  readonly #log: Logger;
  readonly #plaintextBodies: boolean;
  readonly #sealed: SealedFiles;
  readonly #names: NameHasher;
  readonly #defaultKeyArn: string;
  readonly #buckets = new Map<string, BucketRecord>();
  readonly #objects = new Map<string, Map<string, ObjectRecord>>();
  readonly #sortedKeys = new Map<string, string[]>();
  readonly #uploads = new Map<string, { record: UploadRecord; parts: Map<number, PartRecord> }>();
  readonly #locks = new Locks();
  #kmsHealth: { readonly at: number; readonly result: Promise<KmsHealth> } | undefined;

  private constructor(options: EngineOptions, defaultKeyArn: string, metadataKey: Buffer) {
    this.#root = options.dataDir;
    this.#kms = options.kms;
    // Bucket keys and data keys are reused for at most 1 s (the kill-switch bound), or for minutes while
    // the KMS's key-event stream is live and drops them the moment their key leaves Enabled.
    this.#cachedKms = createCachingKms(options.kms, {
      ttlMs: 1000,
      ...(options.keyCacheTtlMs === undefined ? {} : { subscribedTtlMs: options.keyCacheTtlMs }),
      ...(options.kmsKeyEvents === undefined ? {} : { keyEvents: options.kmsKeyEvents }),
    });
    this.#log = options.log;
    this.#plaintextBodies = options.benchmarkPlaintextBodies === true;
    this.#defaultKeyArn = defaultKeyArn;
    this.#sealed = new SealedFiles(hkdfSha256(metadataKey, Buffer.alloc(0), Buffer.from('airlock objectstore metadata sealing v1'), 32));
    this.#names = new NameHasher(hkdfSha256(metadataKey, Buffer.alloc(0), Buffer.from('airlock objectstore name hashing v1'), 32));
    zeroize(metadataKey);
  }

  /** Opens (or initialises) a store directory: the store key, then every sealed record into memory. */
  static async open(options: EngineOptions): Promise<StorageEngine> {
    await mkdir(join(options.dataDir, 'buckets'), { recursive: true, mode: 0o700 });
    await rm(join(options.dataDir, 'tmp'), { recursive: true, force: true });
    await mkdir(join(options.dataDir, 'tmp'), { recursive: true, mode: 0o700 });
    const defaultKeyArn = await StorageEngine.#ensureDefaultKey(options);
    const metadataKey = await StorageEngine.#metadataKey(options, defaultKeyArn);
    const engine = new StorageEngine(options, defaultKeyArn, metadataKey);
    await engine.#load();
    if (engine.#plaintextBodies) options.log.warn('object bodies are stored WITHOUT encryption (benchmark-only flag)');
    return engine;
  }

  static async #ensureDefaultKey(options: EngineOptions): Promise<string> {
    const key = await ensureKey(options.kms, options.defaultKeyId, 'Airlock object store: SSE-S3 (AES256) and store metadata');
    if (key.created) options.log.info({ keyArn: key.arn, alias: options.defaultKeyId }, 'created the object store key');
    return key.arn;
  }

  /** The store's metadata key: a KMS data key under the store key, kept wrapped in store.key. */
  static async #metadataKey(options: EngineOptions, keyArn: string): Promise<Buffer> {
    const path = join(options.dataDir, 'store.key');
    const context = { purpose: 'airlock-objectstore-metadata' };
    let stored: { keyArn: string; blob: string } | undefined;
    try {
      stored = JSON.parse(await readFile(path, 'utf8')) as { keyArn: string; blob: string };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw AirlockError.from(error);
    }
    if (stored !== undefined) return (await options.kms.decrypt(Buffer.from(stored.blob, 'base64'), context)).plaintext;
    const key = await options.kms.generateDataKey(keyArn, context);
    await writeFileAtomic(path, `${JSON.stringify({ keyArn: key.keyArn, blob: key.ciphertextBlob.toString('base64') })}\n`, { mode: 0o600 });
    return key.plaintext;
  }

  // --- paths -----------------------------------------------------------------------------------

  #bucketDir(bucket: string): string {
    return `buckets/${this.#names.bucket(bucket)}`;
  }

  #objectMetaPath(bucket: string, key: string): string {
    return `${this.#bucketDir(bucket)}/objects/${this.#names.object(bucket, key)}.meta`;
  }

  #uploadDir(bucket: string, uploadId: string): string {
    return `${this.#bucketDir(bucket)}/uploads/${uploadId}`;
  }

  #abs(relative: string): string {
    return join(this.#root, relative);
  }

  async #load(): Promise<void> {
    for (const dir of await readdir(this.#abs('buckets'))) {
      let bucket: BucketRecord;
      try {
        bucket = await this.#sealed.read<BucketRecord>(this.#root, `buckets/${dir}/bucket.meta`);
      } catch (error) {
        if (AirlockError.is(error, 'NOT_FOUND')) continue; // a bucket directory whose creation never committed
        throw error;
      }
      if (this.#names.bucket(bucket.name) !== dir) throw new AirlockError('CIPHERTEXT_AUTH_FAILED', 'a bucket record is in the wrong place');
      this.#buckets.set(bucket.name, bucket);
      const objects = new Map<string, ObjectRecord>();
      this.#objects.set(bucket.name, objects);
      const objectsDir = this.#abs(`buckets/${dir}/objects`);
      await mkdir(objectsDir, { recursive: true });
      const files = await readdir(objectsDir);
      const referenced = new Set<string>();
      for (const file of files.filter((f) => f.endsWith('.meta'))) {
        const record = await this.#sealed.read<ObjectRecord>(this.#root, `buckets/${dir}/objects/${file}`);
        if (`${this.#names.object(record.bucket, record.key)}.meta` !== file || record.bucket !== bucket.name) {
          throw new AirlockError('CIPHERTEXT_AUTH_FAILED', 'an object record is in the wrong place');
        }
        objects.set(record.key, record);
        for (const stored of bodiesOf(record)) referenced.add(stored.dataFile);
      }
      // Bodies written but never committed (a crash between rename and metadata) are garbage.
      for (const file of files.filter((f) => f.endsWith('.data') && !referenced.has(f))) await unlink(join(objectsDir, file));
      const uploadsDir = this.#abs(`buckets/${dir}/uploads`);
      await mkdir(uploadsDir, { recursive: true });
      // An upload whose object was committed, but whose directory a crash kept, is complete: its parts live on as the object's links.
      const completed = new Set([...objects.values()].map((record) => record.uploadId).filter((id) => id !== undefined));
      for (const uploadId of await readdir(uploadsDir)) {
        const base = `buckets/${dir}/uploads/${uploadId}`;
        if (completed.has(uploadId)) {
          await rm(this.#abs(base), { recursive: true, force: true });
          continue;
        }
        let record: UploadRecord;
        try {
          record = await this.#sealed.read<UploadRecord>(this.#root, `${base}/upload.meta`);
        } catch (error) {
          if (!AirlockError.is(error, 'NOT_FOUND')) throw error;
          await rm(this.#abs(base), { recursive: true, force: true });
          continue;
        }
        const parts = new Map<number, PartRecord>();
        const partFiles = await readdir(this.#abs(base));
        for (const file of partFiles.filter((f) => /^part-\d+\.meta$/.test(f))) {
          const part = await this.#sealed.read<PartRecord>(this.#root, `${base}/${file}`);
          parts.set(part.partNumber, part);
        }
        this.#uploads.set(uploadId, { record, parts });
      }
    }
    const objects = [...this.#objects.values()].reduce((sum, m) => sum + m.size, 0);
    this.#log.info({ buckets: this.#buckets.size, objects, uploads: this.#uploads.size }, 'object store loaded');
  }

  // --- keys --------------------------------------------------------------------------------------

  async #resolveEncryption(base: BucketEncryption, sse: SseRequest | undefined): Promise<BucketEncryption> {
    if (sse === undefined || (sse.algorithm === undefined && sse.kmsKeyId === undefined && sse.bucketKeyEnabled === undefined)) return base;
    const algorithm = sse.algorithm ?? (sse.kmsKeyId !== undefined ? 'aws:kms' : base.algorithm);
    if (algorithm === 'AES256') {
      if (sse.kmsKeyId !== undefined) throw new AirlockError('INVALID_ARGUMENT', 'Server Side Encryption with KMS managed key requires HTTP header x-amz-server-side-encryption : aws:kms');
      return { algorithm, kmsKeyArn: undefined, bucketKeyEnabled: false };
    }
    const requested = sse.kmsKeyId ?? (base.algorithm === 'aws:kms' ? base.kmsKeyArn : undefined) ?? this.#defaultKeyArn;
    const arn = (await this.#cachedKms.describeKey(requested)).arn;
    // Only an SSE-KMS bucket configuration passes its bucket-key setting on to SSE-KMS requests.
    return { algorithm: 'aws:kms', kmsKeyArn: arn, bucketKeyEnabled: sse.bucketKeyEnabled ?? (base.algorithm === 'aws:kms' && base.bucketKeyEnabled) };
  }

  #keyArnOf(encryption: BucketEncryption): string {
    return encryption.algorithm === 'aws:kms' && encryption.kmsKeyArn !== undefined ? encryption.kmsKeyArn : this.#defaultKeyArn;
  }

  /** The bucket key for (bucket, KMS key): created once (GenerateDataKey), then unwrapped through the key cache. */
  async #bucketKey(bucket: string, keyArn: string): Promise<{ id: string; plaintext: Buffer }> {
    const context = { bucket, purpose: 'bucket-key' };
    let record = this.#bucketRecord(bucket).bucketKeys.find((k) => k.keyArn === keyArn);
    if (record === undefined) {
      record = await this.#locks.run(`bucket:${bucket}`, async () => {
        const current = this.#bucketRecord(bucket);
        const existing = current.bucketKeys.find((k) => k.keyArn === keyArn);
        if (existing !== undefined) return existing;
        const generated = await this.#kms.generateDataKey(keyArn, context);
        zeroize(generated.plaintext);
        const created: BucketKeyRecord = { id: nodeRandomBytes(12).toString('hex'), keyArn: generated.keyArn, blob: generated.ciphertextBlob.toString('base64') };
        const updated: BucketRecord = { ...current, bucketKeys: [...current.bucketKeys, created] };
        await this.#sealed.write(this.#root, `${this.#bucketDir(bucket)}/bucket.meta`, updated);
        this.#buckets.set(bucket, updated);
        return created;
      });
    }
    const { plaintext } = await this.#cachedKms.decrypt(Buffer.from(record.blob, 'base64'), context, { keyId: record.keyArn });
    return { id: record.id, plaintext };
  }

  #objectKeyFromBucketKey(bucketKey: Buffer, salt: Buffer, context: EncryptionContext, version: 1 | 2): Buffer {
    const encoded = encodeEncryptionContext(context);
    // v2: a fixed-length digest of the context, so a 1,024-byte key in a 63-character bucket fits HKDF's info.
    const info = version === 1 ? encoded : createHash('sha256').update(encoded).digest();
    return hkdfSha256(bucketKey, salt, Buffer.concat([Buffer.from(`airlock objectstore object key v${version}\0`), info]), 32);
  }

  /** A fresh data key for a new body, and the key reference that finds it again. */
  async #newDataKey(bucket: string, encryption: BucketEncryption, context: EncryptionContext): Promise<{ key: Buffer; keyRef: Buffer }> {
    const keyArn = this.#keyArnOf(encryption);
    // SSE-S3 is under the store-managed key: a bucket key always (it costs no customer KMS calls to skip).
    if (encryption.algorithm === 'AES256' || encryption.bucketKeyEnabled) {
      const bucketKey = await this.#bucketKey(bucket, keyArn);
      const salt = nodeRandomBytes(32);
      const key = this.#objectKeyFromBucketKey(bucketKey.plaintext, salt, context, 2);
      zeroize(bucketKey.plaintext);
      const ref: KeyRef = { v: 2, m: 'bk', id: bucketKey.id, s: salt.toString('base64') };
      return { key, keyRef: Buffer.from(JSON.stringify(ref)) };
    }
    const dataKey = await this.#kms.generateDataKey(keyArn, context);
    const ref: KeyRef = { v: 1, m: 'kms', b: dataKey.ciphertextBlob.toString('base64') };
    return { key: dataKey.plaintext, keyRef: Buffer.from(JSON.stringify(ref)) };
  }

  /** Finds the data key of a stored body from its key reference; the KMS is asked (through the key cache) every time. */
  async #existingDataKey(bucket: string, keyRefBytes: Buffer, context: EncryptionContext): Promise<Buffer> {
    let ref: KeyRef;
    try {
      ref = JSON.parse(keyRefBytes.toString('utf8')) as KeyRef;
    } catch {
      throw new AirlockError('CIPHERTEXT_MALFORMED', 'stored object has an unreadable key reference');
    }
    if (ref.m === 'bk') {
      const record = this.#bucketRecord(bucket).bucketKeys.find((k) => k.id === ref.id);
      if (record === undefined) throw new AirlockError('CIPHERTEXT_MALFORMED', 'stored object names an unknown bucket key');
      const { plaintext } = await this.#cachedKms.decrypt(Buffer.from(record.blob, 'base64'), { bucket, purpose: 'bucket-key' }, { keyId: record.keyArn });
      try {
        if (ref.v !== 1 && ref.v !== 2) throw new AirlockError('CIPHERTEXT_MALFORMED', 'stored object has an unknown key reference version');
        return this.#objectKeyFromBucketKey(plaintext, Buffer.from(ref.s, 'base64'), context, ref.v);
      } finally {
        zeroize(plaintext);
      }
    }
    return (await this.#cachedKms.decrypt(Buffer.from(ref.b, 'base64'), context)).plaintext;
  }

  // --- buckets -----------------------------------------------------------------------------------

  #bucketRecord(name: string): BucketRecord {
    const bucket = this.#buckets.get(name);
    if (bucket === undefined) throw bucketNotFound(name);
    return bucket;
  }

  #info(bucket: BucketRecord): BucketInfo {
    return { name: bucket.name, createdAt: new Date(bucket.createdAt), encryption: bucket.encryption };
  }

  listBuckets(): BucketInfo[] {
    // S3 lists buckets by name, in binary order ('-' and '.' before digits and letters).
    return [...this.#buckets.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)).map((b) => this.#info(b));
  }

  async createBucket(name: string): Promise<BucketInfo> {
    checkBucketName(name);
    return this.#locks.run(`bucket:${name}`, async () => {
      if (this.#buckets.has(name)) throw new AirlockError('BUCKET_ALREADY_EXISTS', 'Your previous request to create the named bucket succeeded and you already own it.');
      const dir = this.#bucketDir(name);
      await mkdir(this.#abs(`${dir}/objects`), { recursive: true, mode: 0o700 });
      await mkdir(this.#abs(`${dir}/uploads`), { recursive: true, mode: 0o700 });
      const record: BucketRecord = { name, createdAt: Date.now(), encryption: DEFAULT_ENCRYPTION, bucketKeys: [] };
      await this.#sealed.write(this.#root, `${dir}/bucket.meta`, record);
      this.#buckets.set(name, record);
      this.#objects.set(name, new Map());
      return this.#info(record);
    });
  }

  headBucket(name: string): BucketInfo {
    return this.#info(this.#bucketRecord(name));
  }

  async deleteBucket(name: string): Promise<void> {
    await this.#locks.run(`bucket:${name}`, async () => {
      this.#bucketRecord(name);
      const hasUploads = [...this.#uploads.values()].some((u) => u.record.bucket === name);
      if ((this.#objects.get(name)?.size ?? 0) > 0 || hasUploads) {
        throw new AirlockError('BUCKET_NOT_EMPTY', 'The bucket you tried to delete is not empty');
      }
      // The metadata goes first: a crash part-way leaves a directory without a bucket, cleaned at load.
      await unlink(this.#abs(`${this.#bucketDir(name)}/bucket.meta`));
      await rm(this.#abs(this.#bucketDir(name)), { recursive: true, force: true });
      this.#buckets.delete(name);
      this.#objects.delete(name);
      this.#sortedKeys.delete(name);
    });
  }

  getBucketEncryption(name: string): BucketEncryption {
    return this.#bucketRecord(name).encryption;
  }

  async putBucketEncryption(name: string, sse: SseRequest): Promise<BucketEncryption> {
    this.#bucketRecord(name);
    let encryption: BucketEncryption;
    if ((sse.algorithm ?? 'AES256') === 'AES256') {
      if (sse.kmsKeyId !== undefined) throw new AirlockError('INVALID_ARGUMENT', 'KMSMasterKeyID is only valid with SSEAlgorithm aws:kms');
      encryption = { algorithm: 'AES256', kmsKeyArn: undefined, bucketKeyEnabled: sse.bucketKeyEnabled ?? false };
    } else {
      // The key must exist; its ARN is what GetBucketEncryption reports.
      const meta = await this.#kms.describeKey(sse.kmsKeyId ?? this.#defaultKeyArn);
      if (meta.state === 'PendingDeletion') throw new AirlockError('KMS_KEY_PENDING_DELETION', `${meta.arn} is pending deletion.`);
      encryption = { algorithm: 'aws:kms', kmsKeyArn: meta.arn, bucketKeyEnabled: sse.bucketKeyEnabled ?? false };
    }
    await this.#updateBucket(name, (record) => ({ ...record, encryption }));
    return encryption;
  }

  async deleteBucketEncryption(name: string): Promise<void> {
    await this.#updateBucket(name, (record) => ({ ...record, encryption: DEFAULT_ENCRYPTION }));
  }

  getBucketCors(name: string): readonly CorsRule[] | undefined {
    return this.#bucketRecord(name).cors;
  }

  async putBucketCors(name: string, rules: readonly CorsRule[]): Promise<void> {
    await this.#updateBucket(name, (record) => ({ ...record, cors: rules }));
  }

  async deleteBucketCors(name: string): Promise<void> {
    await this.#updateBucket(name, ({ cors: _removed, ...record }) => record);
  }

  /** Rewrites a bucket's sealed record under the bucket's lock. */
  async #updateBucket(name: string, change: (record: BucketRecord) => BucketRecord): Promise<void> {
    await this.#locks.run(`bucket:${name}`, async () => {
      const updated = change(this.#bucketRecord(name));
      await this.#sealed.write(this.#root, `${this.#bucketDir(name)}/bucket.meta`, updated);
      this.#buckets.set(name, updated);
    });
  }

  // --- writing bodies ------------------------------------------------------------------------------

  /**
   * Streams `body` through the meter and ASF1 into a temporary file, fsyncs it, and renames it to
   * `targetDir/<name>.data`. Returns the digests; on any failure the temporary file is removed and
   * nothing becomes visible.
   */
  async #writeBody(
    body: Readable,
    target: { dir: string; stem: string },
    crypto: { key: Buffer; keyRef: Buffer; context: EncryptionContext } | undefined,
    algorithms: Iterable<ChecksumAlgorithm>,
  ): Promise<{ file: string; meter: BodyMeter }> {
    const meter = new BodyMeter(algorithms);
    const temporary = this.#abs(`tmp/${nodeRandomBytes(12).toString('hex')}`);
    try {
      const measure = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          meter.update(chunk);
          callback(null, chunk);
        },
      });
      // flush: the file is fsynced before it closes, so the rename below publishes durable bytes.
      const sink = createWriteStream(temporary, { flags: 'wx', mode: 0o600, flush: true, highWaterMark: 1024 * 1024 });
      if (crypto === undefined) await pipeline(body, measure, sink);
      else await pipeline(body, measure, createAsf1EncryptStream({ key: crypto.key, context: crypto.context, keyRef: crypto.keyRef }), sink);
      const file = `${target.stem}.${nodeRandomBytes(6).toString('hex')}.data`;
      await rename(temporary, this.#abs(`${target.dir}/${file}`));
      return { file, meter };
    } catch (error) {
      await rm(temporary, { force: true });
      throw AirlockError.from(error);
    } finally {
      if (crypto !== undefined) zeroize(crypto.key);
    }
  }

  async #verifyDigests(
    meter: BodyMeter,
    expectations: { expectedLength?: number; contentMd5?: string; checksums?: PutObjectInput['checksums'] },
  ): Promise<{ md5: Buffer; checksums: Partial<Record<ChecksumAlgorithm, string>> }> {
    const digests = meter.finish();
    if (expectations.expectedLength !== undefined && meter.bytes !== expectations.expectedLength) {
      throw new AirlockError('INCOMPLETE_BODY', 'You did not provide the number of bytes specified by the Content-Length HTTP header.');
    }
    if (expectations.contentMd5 !== undefined && Buffer.from(expectations.contentMd5, 'base64').compare(digests.md5) !== 0) {
      throw new AirlockError('DIGEST_MISMATCH', 'The Content-MD5 you specified did not match what we received.', { details: { kind: 'content-md5' } });
    }
    const expected = (await expectations.checksums) ?? {};
    for (const [algorithm, value] of Object.entries(expected) as Array<[ChecksumAlgorithm, string]>) {
      if (digests.checksums[algorithm] !== value) {
        throw new AirlockError('DIGEST_MISMATCH', `The ${algorithm} you specified did not match the calculated checksum.`, {
          details: { kind: 'checksum', algorithm },
        });
      }
    }
    return digests;
  }

  async #algorithmsOf(checksums: PutObjectInput['checksums'], announced: readonly ChecksumAlgorithm[] | undefined): Promise<ChecksumAlgorithm[]> {
    if (checksums === undefined) return [];
    // Trailer checksums arrive after the body; x-amz-trailer announces which, else compute them all.
    if (checksums instanceof Promise) return announced === undefined ? ['CRC32', 'CRC32C', 'CRC64NVME', 'SHA1', 'SHA256'] : [...announced];
    return Object.keys(await Promise.resolve(checksums)) as ChecksumAlgorithm[];
  }

  /**
   * Replaces an object's record (the commit point) and removes its previous body. `condition` held
   * when the write began; it is checked again here, under the object's lock, and if it no longer
   * holds another write got in first: WRITE_CONFLICT, and nothing changes. (An If-Match object that
   * was deleted meanwhile is OBJECT_NOT_FOUND, as on S3.)
   */
  async #commitObject(record: ObjectRecord, condition?: WriteCondition, bucketCreatedAt?: number): Promise<ObjectMeta> {
    const metaPath = this.#objectMetaPath(record.bucket, record.key);
    return this.#locks.run(`object:${metaPath}`, async () => {
      // A write that began in a bucket since deleted and created again must not land in the new one.
      if (bucketCreatedAt !== undefined && this.#bucketRecord(record.bucket).createdAt !== bucketCreatedAt) throw bucketNotFound(record.bucket);
      this.#bucketRecord(record.bucket);
      const objects = this.#objects.get(record.bucket) as Map<string, ObjectRecord>;
      const previous = objects.get(record.key);
      try {
        checkWriteCondition(condition, previous);
      } catch (error) {
        if (AirlockError.is(error, 'OBJECT_NOT_FOUND')) throw error;
        throw new AirlockError('WRITE_CONFLICT', 'The conditional request cannot succeed due to a conflicting operation against this resource.', { cause: error });
      }
      await this.#sealed.write(this.#root, metaPath, record);
      if (!objects.has(record.key)) this.#sortedKeys.delete(record.bucket);
      objects.set(record.key, record);
      if (previous !== undefined) {
        const kept = new Set(bodiesOf(record).map((b) => b.dataFile));
        await this.#removeBodies(record.bucket, bodiesOf(previous).filter((b) => !kept.has(b.dataFile)));
      }
      return toMeta(record);
    });
  }

  /** Unlinks bodies that no record references any more (best effort: load() collects what is left). */
  async #removeBodies(bucket: string, bodies: ReadonlyArray<{ readonly dataFile: string }>): Promise<void> {
    const dir = `${this.#bucketDir(bucket)}/objects`;
    await Promise.all(bodies.map((b) => unlink(this.#abs(`${dir}/${b.dataFile}`)).catch(() => undefined)));
  }

  async putObject(input: PutObjectInput): Promise<ObjectMeta> {
    const bucket = this.#bucketRecord(input.bucket);
    checkObjectKey(input.key);
    // Before a byte of the body is read: a refused write transfers nothing.
    checkWriteCondition(input.condition, this.#objects.get(input.bucket)?.get(input.key));
    const encryption = await this.#resolveEncryption(bucket.encryption, input.sse);
    const context = { bucket: input.bucket, key: input.key };
    const crypto = this.#plaintextBodies ? undefined : { ...(await this.#newDataKey(input.bucket, encryption, context)), context };
    const dir = `${this.#bucketDir(input.bucket)}/objects`;
    let file: string | undefined;
    try {
      const computed = input.computeChecksums ?? [];
      const algorithms = new Set([...(await this.#algorithmsOf(input.checksums, input.checksumAlgorithms)), ...computed]);
      const written = await this.#writeBody(input.body, { dir, stem: this.#names.object(input.bucket, input.key) }, crypto, algorithms);
      file = written.file;
      const meter = written.meter;
      const digests = await this.#verifyDigests(meter, input);
      const requested = await input.checksums;
      const checksums: Partial<Record<ChecksumAlgorithm, string>> = {};
      for (const algorithm of [...(Object.keys(requested ?? {}) as ChecksumAlgorithm[]), ...computed]) checksums[algorithm] = digests.checksums[algorithm];
      await syncDirectory(this.#abs(dir));
      return await this.#commitObject({
        bucket: input.bucket,
        key: input.key,
        size: meter.bytes,
        etag: quote(digests.md5.toString('hex')),
        lastModified: Date.now(),
        contentType: input.contentType ?? 'binary/octet-stream',
        userMetadata: { ...(input.userMetadata ?? {}) },
        headers: { ...(input.headers ?? {}) },
        encryption,
        checksums,
        dataFile: file,
        ...(this.#plaintextBodies ? { plaintext: true } : {}),
      }, input.condition, bucket.createdAt);
    } catch (error) {
      if (file !== undefined) await unlink(this.#abs(`${dir}/${file}`)).catch(() => undefined);
      // The bucket was deleted (and perhaps created again) while the body streamed in: there is nowhere to put it, as on S3.
      if (this.#buckets.get(input.bucket)?.createdAt !== bucket.createdAt) throw bucketNotFound(input.bucket);
      throw AirlockError.from(error);
    }
  }

  // --- reading bodies -----------------------------------------------------------------------------

  /** Opens a stored body for reading [start, end) of its plaintext; checks its authenticated size. */
  async #openBody(
    bucket: string,
    path: string,
    size: number,
    plaintext: boolean | undefined,
    context: EncryptionContext,
    start: number,
    end: number,
  ): Promise<Readable> {
    if (plaintext === true) return createReadStream(this.#abs(path), { start, end: end - 1 });
    const handle = await open(this.#abs(path), 'r').catch((error: unknown) => {
      throw AirlockError.from(error);
    });
    try {
      // A read from the start gets its header and first segments in one read, issued with the stat, so bytes flow sooner.
      const opening = start === 0 ? asf1OpeningReadBytes() : 0;
      const reader = await openAsf1Reader(await fileSource(handle, { prefetchBytes: opening }), {
        context,
        resolveKey: (keyRef) => this.#existingDataKey(bucket, keyRef, context),
        // The size in the sealed record is authentic; a body of any other length was cut or extended.
        authenticateLength: false,
        openingReadBytes: opening,
      });
      if (reader.plaintextLength !== size) {
        reader.close();
        throw new AirlockError('CIPHERTEXT_MALFORMED', 'stored object body does not match its recorded size');
      }
      const stream = reader.createReadStream(start, end);
      stream.once('close', () => {
        reader.close();
        void handle.close();
      });
      return stream;
    } catch (error) {
      await handle.close();
      throw AirlockError.from(error);
    }
  }

  #objectRecord(bucket: string, key: string): ObjectRecord {
    this.#bucketRecord(bucket);
    const record = this.#objects.get(bucket)?.get(key);
    if (record === undefined) throw new AirlockError('OBJECT_NOT_FOUND', 'The specified key does not exist.', { details: { key } });
    return record;
  }

  async getObject(bucket: string, key: string, range?: RangeRequest): Promise<GetObjectResult> {
    const record = this.#objectRecord(bucket, key);
    const meta = toMeta(record);
    const resolved = resolveRange(range, meta);
    const start = resolved?.start ?? 0;
    const end = resolved === undefined ? record.size : resolved.end + 1;
    const dir = `${this.#bucketDir(bucket)}/objects`;
    // The bodies the range touches, each with the part of the range that falls in it.
    type Piece = { readonly body: StoredBody; readonly from: number; readonly to: number };
    const pieces: Piece[] = [];
    let offset = 0;
    for (const body of bodiesOf(record)) {
      const from = Math.max(start, offset) - offset;
      const to = Math.min(end, offset + body.size) - offset;
      if (to > from || (record.size === 0 && pieces.length === 0)) pieces.push({ body, from, to: Math.max(from, to) });
      offset += body.size;
    }
    const open = (piece: Piece): Promise<Readable> =>
      this.#openBody(bucket, `${dir}/${piece.body.dataFile}`, piece.body.size, piece.body.plaintext, piece.body.context, piece.from, piece.to);
    // The first body opens now, so that a refused key (the kill switch) is an error before any header; later ones as the stream reaches them.
    const first = await open(pieces[0] as Piece);
    if (pieces.length === 1) return { meta, body: first, range: resolved };
    let current = first;
    async function* concatenated(): AsyncGenerator<Buffer> {
      for (let i = 0; i < pieces.length; i++) {
        if (i > 0) current = await open(pieces[i] as Piece);
        for await (const chunk of current) yield chunk as Buffer;
      }
    }
    const body = Readable.from(concatenated(), { objectMode: false });
    // However the stream ends (even destroyed before its first read), the open body's file closes.
    body.once('close', () => current.destroy());
    return { meta, body, range: resolved };
  }

  headObject(bucket: string, key: string): ObjectMeta {
    return toMeta(this.#objectRecord(bucket, key));
  }

  async deleteObject(bucket: string, key: string, condition?: WriteCondition): Promise<void> {
    this.#bucketRecord(bucket);
    const metaPath = this.#objectMetaPath(bucket, key);
    await this.#locks.run(`object:${metaPath}`, async () => {
      const objects = this.#objects.get(bucket);
      const record = objects?.get(key);
      // Checked under the object's lock, so no write can slip in between the check and the delete.
      checkWriteCondition(condition, record);
      if (record === undefined) return;
      await unlink(this.#abs(metaPath));
      objects?.delete(key);
      this.#sortedKeys.delete(bucket);
      await this.#removeBodies(bucket, bodiesOf(record));
    });
  }

  listObjects(input: ListObjectsInput): ListObjectsResult {
    this.#bucketRecord(input.bucket);
    const objects = this.#objects.get(input.bucket) as Map<string, ObjectRecord>;
    let sorted = this.#sortedKeys.get(input.bucket);
    if (sorted === undefined) {
      // S3 lists in UTF-8 binary order.
      sorted = [...objects.keys()].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
      this.#sortedKeys.set(input.bucket, sorted);
    }
    const page = listingPage(sorted, (key) => key, {
      prefix: input.prefix ?? '',
      delimiter: input.delimiter,
      marker: input.after,
      max: Math.max(0, Math.min(input.maxKeys ?? 1000, 1000)),
    });
    return {
      objects: page.entries.map((key) => toMeta(objects.get(key) as ObjectRecord)),
      commonPrefixes: page.commonPrefixes,
      isTruncated: page.truncated,
      nextAfter: page.truncated ? page.last?.key : undefined,
    };
  }

  async copyObject(input: Parameters<ObjectEngine['copyObject']>[0]): Promise<ObjectMeta> {
    // The metadata comes with the body that is read, so the conditions, size and headers all describe what is copied.
    const { meta: source, body } = await this.getObject(input.sourceBucket, input.sourceKey);
    try {
      input.checkSource?.(source);
      const replace = input.metadataDirective === 'REPLACE';
      // As on S3: the algorithm the request names, else the source's, over the bytes copied (a single object's, FULL_OBJECT).
      const checksumAlgorithm = input.checksumAlgorithm ?? (Object.keys(source.checksums) as ChecksumAlgorithm[])[0];
      return await this.putObject({
        bucket: input.bucket,
        key: input.key,
        body,
        expectedLength: source.size,
        contentType: replace ? (input.contentType ?? 'binary/octet-stream') : source.contentType,
        userMetadata: replace ? (input.userMetadata ?? {}) : source.userMetadata,
        headers: replace ? (input.headers ?? {}) : source.headers,
        ...(input.sse === undefined ? {} : { sse: input.sse }),
        ...(input.condition === undefined ? {} : { condition: input.condition }),
        ...(checksumAlgorithm === undefined ? {} : { computeChecksums: [checksumAlgorithm] }),
      });
    } finally {
      // A copy refused before its body was read must still close the source's file.
      if (!body.destroyed) body.destroy();
    }
  }

  // --- multipart --------------------------------------------------------------------------------

  #upload(bucket: string, key: string, uploadId: string): { record: UploadRecord; parts: Map<number, PartRecord> } {
    this.#bucketRecord(bucket);
    const upload = /^[0-9a-f]{32}$/.test(uploadId) ? this.#uploads.get(uploadId) : undefined;
    if (upload === undefined || upload.record.bucket !== bucket || upload.record.key !== key) {
      throw new AirlockError('UPLOAD_NOT_FOUND', 'The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.');
    }
    return upload;
  }

  listMultipartUploads(bucket: string): UploadInfo[] {
    this.#bucketRecord(bucket);
    return [...this.#uploads.values()]
      .filter((upload) => upload.record.bucket === bucket)
      .map((upload) => this.#uploadInfo(upload.record))
      .sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)) || (a.uploadId < b.uploadId ? -1 : a.uploadId > b.uploadId ? 1 : 0));
  }

  #uploadInfo(record: UploadRecord): UploadInfo {
    return { uploadId: record.uploadId, bucket: record.bucket, key: record.key, initiated: new Date(record.initiated), encryption: record.encryption, checksum: record.checksum };
  }

  async createMultipartUpload(input: Parameters<ObjectEngine['createMultipartUpload']>[0]): Promise<UploadInfo> {
    const bucket = this.#bucketRecord(input.bucket);
    checkObjectKey(input.key);
    if (input.checksum?.type === 'FULL_OBJECT' && !combinable(input.checksum.algorithm)) {
      throw invalidRequest(`The FULL_OBJECT checksum type cannot be used with the ${input.checksum.algorithm.toLowerCase()} checksum algorithm.`);
    }
    const encryption = await this.#resolveEncryption(bucket.encryption, input.sse);
    // Fail now, not at the first part, if the key is unusable (the kill switch).
    if (!this.#plaintextBodies) zeroize((await this.#newDataKey(input.bucket, encryption, { bucket: input.bucket, key: input.key })).key);
    const uploadId = nodeRandomBytes(16).toString('hex');
    const record: UploadRecord = {
      uploadId,
      bucket: input.bucket,
      key: input.key,
      initiated: Date.now(),
      contentType: input.contentType ?? 'binary/octet-stream',
      userMetadata: { ...(input.userMetadata ?? {}) },
      headers: { ...(input.headers ?? {}) },
      encryption,
      ...(input.checksum === undefined ? {} : { checksum: input.checksum }),
    };
    const dir = this.#uploadDir(input.bucket, uploadId);
    await mkdir(this.#abs(dir), { recursive: true, mode: 0o700 });
    await this.#sealed.write(this.#root, `${dir}/upload.meta`, record);
    this.#uploads.set(uploadId, { record, parts: new Map() });
    return this.#uploadInfo(record);
  }

  async uploadPart(input: Parameters<ObjectEngine['uploadPart']>[0]): Promise<UploadedPart> {
    const upload = this.#upload(input.bucket, input.key, input.uploadId);
    if (!Number.isInteger(input.partNumber) || input.partNumber < 1 || input.partNumber > MAX_PARTS) {
      throw new AirlockError('INVALID_ARGUMENT', 'Part number must be an integer between 1 and 10000, inclusive');
    }
    const context = partContext(input.bucket, input.key, input.uploadId, input.partNumber);
    const crypto = this.#plaintextBodies ? undefined : { ...(await this.#newDataKey(input.bucket, upload.record.encryption, context)), context };
    const dir = this.#uploadDir(input.bucket, input.uploadId);
    // The upload's own algorithm is computed for every part, sent or not: CompleteMultipartUpload builds the object's checksum from them.
    const uploadAlgorithm = upload.record.checksum?.algorithm;
    const algorithms = new Set(await this.#algorithmsOf(input.checksums, input.checksumAlgorithms));
    if (uploadAlgorithm !== undefined) algorithms.add(uploadAlgorithm);
    const { file, meter } = await this.#writeBody(input.body, { dir, stem: `part-${input.partNumber}` }, crypto, algorithms);
    try {
      const digests = await this.#verifyDigests(meter, input);
      const kept = new Set([...Object.keys((await input.checksums) ?? {}), ...(uploadAlgorithm === undefined ? [] : [uploadAlgorithm])]) as Set<ChecksumAlgorithm>;
      const checksums: Partial<Record<ChecksumAlgorithm, string>> = {};
      for (const algorithm of kept) checksums[algorithm] = digests.checksums[algorithm];
      const part: PartRecord = {
        partNumber: input.partNumber,
        etag: quote(digests.md5.toString('hex')),
        size: meter.bytes,
        lastModified: Date.now(),
        checksums,
        dataFile: file,
        ...(this.#plaintextBodies ? { plaintext: true } : {}),
      };
      return await this.#locks.run(`upload:${input.uploadId}`, async () => {
        this.#upload(input.bucket, input.key, input.uploadId);
        await this.#sealed.write(this.#root, `${dir}/part-${input.partNumber}.meta`, part);
        const previous = upload.parts.get(input.partNumber);
        upload.parts.set(input.partNumber, part);
        if (previous !== undefined) await unlink(this.#abs(`${dir}/${previous.dataFile}`)).catch(() => undefined);
        return { partNumber: part.partNumber, etag: part.etag, size: part.size, lastModified: new Date(part.lastModified), checksums, encryption: upload.record.encryption };
      });
    } catch (error) {
      await unlink(this.#abs(`${dir}/${file}`)).catch(() => undefined);
      throw AirlockError.from(error);
    }
  }

  /**
   * A CompleteMultipartUpload of an upload already completed, with the same parts: S3 answers it
   * again (a client whose first answer was lost retries), as long as the object is still that upload's.
   */
  #completedBefore(input: Parameters<ObjectEngine['completeMultipartUpload']>[0]): ObjectMeta | undefined {
    const record = this.#objects.get(input.bucket)?.get(input.key);
    if (record?.uploadId !== input.uploadId || record.parts === undefined || record.parts.length !== input.parts.length) return undefined;
    const same = record.parts.every((part, i) => {
      const listed = input.parts[i];
      return listed !== undefined && part.etag !== undefined && listed.partNumber === part.partNumber && unquote(listed.etag) === unquote(part.etag);
    });
    return same ? toMeta(record) : undefined;
  }

  async completeMultipartUpload(input: Parameters<ObjectEngine['completeMultipartUpload']>[0]): Promise<ObjectMeta> {
    return this.#locks.run(`upload:${input.uploadId}`, async () => {
      this.#bucketRecord(input.bucket);
      if (!this.#uploads.has(input.uploadId)) {
        const completed = this.#completedBefore(input);
        if (completed !== undefined) return completed;
      }
      const upload = this.#upload(input.bucket, input.key, input.uploadId);
      if (input.parts.length === 0) throw new AirlockError('MALFORMED_XML', 'You must specify at least one part');
      checkWriteCondition(input.condition, this.#objects.get(input.bucket)?.get(input.key));
      const chosen: PartRecord[] = [];
      let previous = 0;
      for (const listed of input.parts) {
        if (listed.partNumber <= previous) throw new AirlockError('INVALID_PART_ORDER', 'The list of parts was not in ascending order. Parts must be ordered by part number.');
        previous = listed.partNumber;
        const part = upload.parts.get(listed.partNumber);
        const checksumsMatch = Object.entries(listed.checksums ?? {}).every(([algorithm, value]) => part?.checksums?.[algorithm as ChecksumAlgorithm] === value);
        if (part === undefined || unquote(part.etag) !== unquote(listed.etag) || !checksumsMatch) {
          throw new AirlockError('INVALID_PART', 'One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part\'s entity tag.');
        }
        chosen.push(part);
      }
      for (const part of chosen.slice(0, -1)) {
        if (part.size < MIN_PART_SIZE) throw new AirlockError('ENTITY_TOO_SMALL', 'Your proposed upload is smaller than the minimum allowed size');
      }
      const size = chosen.reduce((sum, p) => sum + p.size, 0);
      if (input.objectSize !== undefined && input.objectSize !== size) {
        throw invalidRequest(`The provided 'x-amz-mp-object-size' header value ${input.objectSize} does not match what was computed: ${size}`);
      }
      const objectChecksum = this.#multipartChecksum(upload.record, input, chosen);
      const dir = this.#uploadDir(input.bucket, input.uploadId);
      // The parts become the object's bodies as they are: each is already ASF1 under a context that
      // names this bucket, key, upload and part number, so completing copies and re-encrypts nothing.
      // Hard links put them in the objects directory; the upload's own links go when it is removed.
      const objectsDir = `${this.#bucketDir(input.bucket)}/objects`;
      const stem = `${this.#names.object(input.bucket, input.key)}.${nodeRandomBytes(6).toString('hex')}`;
      const stored: StoredPart[] = chosen.map((part) => ({
        partNumber: part.partNumber,
        etag: part.etag,
        size: part.size,
        ...(part.checksums === undefined ? {} : { checksums: part.checksums }),
        dataFile: `${stem}.p${part.partNumber}.data`,
        ...(part.plaintext === true ? { plaintext: true } : {}),
      }));
      const linked: StoredPart[] = [];
      let committed = false;
      try {
        for (const [i, part] of chosen.entries()) {
          const target = stored[i] as StoredPart;
          await link(this.#abs(`${dir}/${part.dataFile}`), this.#abs(`${objectsDir}/${target.dataFile}`));
          linked.push(target);
        }
        await syncDirectory(this.#abs(objectsDir));
        const etagSource = Buffer.concat(chosen.map((p) => Buffer.from(unquote(p.etag), 'hex')));
        const meta = await this.#commitObject({
          bucket: input.bucket,
          key: input.key,
          size,
          etag: quote(`${createHash('md5').update(etagSource).digest('hex')}-${chosen.length}`),
          lastModified: Date.now(),
          contentType: upload.record.contentType,
          userMetadata: upload.record.userMetadata,
          headers: upload.record.headers ?? {},
          encryption: upload.record.encryption,
          checksums: objectChecksum === undefined ? {} : { [objectChecksum.algorithm]: objectChecksum.value },
          ...(objectChecksum === undefined ? {} : { checksumType: objectChecksum.type }),
          partsCount: chosen.length,
          uploadId: input.uploadId,
          parts: stored,
        }, input.condition);
        committed = true;
        this.#uploads.delete(input.uploadId);
        await rm(this.#abs(dir), { recursive: true, force: true });
        return meta;
      } catch (error) {
        if (!committed) await this.#removeBodies(input.bucket, linked);
        throw AirlockError.from(error);
      }
    });
  }

  /**
   * The checksum of a multipart object, as S3 makes it: FULL_OBJECT combines the parts' CRCs into the
   * whole body's; COMPOSITE is the checksum of the parts' checksums, `-<parts>`. A checksum the client
   * states must be it (COMPOSITE with or without the suffix): DIGEST_MISMATCH otherwise.
   */
  #multipartChecksum(
    upload: UploadRecord,
    input: Parameters<ObjectEngine['completeMultipartUpload']>[0],
    chosen: readonly PartRecord[],
  ): { algorithm: ChecksumAlgorithm; type: ChecksumType; value: string } | undefined {
    const expected = upload.checksum;
    if (expected === undefined) {
      if (input.checksum !== undefined || input.checksumType !== undefined) throw invalidRequest('The upload was created without a checksum algorithm, so its object has no checksum to check');
      return undefined;
    }
    const { algorithm, type } = expected;
    if (input.checksumType !== undefined && input.checksumType !== type) {
      throw invalidRequest(`The upload was created using the ${type} checksum mode. The complete request must use the same checksum mode.`);
    }
    if (input.checksum !== undefined && input.checksum.algorithm !== algorithm) {
      throw invalidRequest(`The upload was created using a ${algorithm.toLowerCase()} checksum. The complete request must use the same checksum algorithm.`);
    }
    const values = chosen.map((part, i) => {
      const value = part.checksums?.[algorithm];
      if (value === undefined) throw new AirlockError('INVALID_PART', `Part ${part.partNumber} has no ${algorithm} checksum`);
      if (type === 'COMPOSITE' && input.parts[i]?.checksums?.[algorithm] === undefined) {
        throw invalidRequest(`The upload was created using a ${algorithm.toLowerCase()} checksum. The complete request must include the checksum for each part. It was missing for part ${part.partNumber} in the request.`);
      }
      return value;
    });
    const value =
      type === 'COMPOSITE' ? compositeChecksum(algorithm, values) : combineChecksums(algorithm, chosen.map((part, i) => ({ checksum: values[i] as string, size: part.size })));
    const bare = (text: string): string => text.replace(/-\d+$/, '');
    if (input.checksum !== undefined && bare(input.checksum.value) !== bare(value)) {
      throw new AirlockError('DIGEST_MISMATCH', `The ${algorithm} you specified did not match the calculated checksum.`, { details: { kind: 'checksum', algorithm } });
    }
    return { algorithm, type, value };
  }

  async abortMultipartUpload(bucket: string, key: string, uploadId: string): Promise<void> {
    await this.#locks.run(`upload:${uploadId}`, async () => {
      this.#upload(bucket, key, uploadId);
      const dir = this.#uploadDir(bucket, uploadId);
      // Remove the record first so a crash mid-way never resurrects a half-deleted upload.
      await unlink(this.#abs(`${dir}/upload.meta`));
      this.#uploads.delete(uploadId);
      await rm(this.#abs(dir), { recursive: true, force: true });
    });
  }

  listParts(bucket: string, key: string, uploadId: string): { upload: UploadInfo; parts: PartInfo[] } {
    const upload = this.#upload(bucket, key, uploadId);
    const parts = [...upload.parts.values()]
      .sort((a, b) => a.partNumber - b.partNumber)
      .map((p) => ({ partNumber: p.partNumber, etag: p.etag, size: p.size, lastModified: new Date(p.lastModified), checksums: p.checksums ?? {} }));
    return { upload: this.#uploadInfo(upload.record), parts };
  }

  keyEventStatus(): KeyEventStatus {
    return this.#cachedKms.keyEventStatus();
  }

  waitForKeyEvents(timeoutMs: number): Promise<boolean> {
    return this.#cachedKms.waitForKeyEvents(timeoutMs);
  }

  kmsHealth(): Promise<KmsHealth> {
    const now = Date.now();
    // An unauthenticated /health must not turn into a KMS call per request: one in flight, reused for 1 s.
    if (this.#kmsHealth !== undefined && now - this.#kmsHealth.at < KMS_HEALTH_REUSE_MS) return this.#kmsHealth.result;
    const result = (async (): Promise<KmsHealth> => {
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<KmsHealth>((resolve) => {
        timer = setTimeout(() => resolve({ ok: false, reason: 'ETIMEDOUT' }), KMS_HEALTH_TIMEOUT_MS);
      });
      try {
        return await Promise.race([this.#kms.describeKey(this.#defaultKeyArn).then((): KmsHealth => ({ ok: true })), timedOut]);
      } catch (error) {
        return { ok: false, reason: failureReason(error) };
      } finally {
        clearTimeout(timer);
      }
    })();
    this.#kmsHealth = { at: now, result };
    return result;
  }

  close(): Promise<void> {
    this.#sealed.dispose();
    this.#names.dispose();
    this.#cachedKms.close();
    return Promise.resolve();
  }
}
