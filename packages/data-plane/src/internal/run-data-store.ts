// The data plane's run data in its object store (docs/runs.md, "Storage in the data plane"): sealed inputs, result documents, code bundles and the presigned URLs that move bundles and files.
import { createHash, randomBytes } from 'node:crypto';
import { open, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { AirlockError, configCheck, configError, freezeConfig, type DeepReadonly, type Logger } from '@airlock/common';
import { seal, sealingKeyId, zeroize } from '@airlock/crypto';
import type { ObjectStore } from '@airlock/objectstore';
import { IO_SEALING_PURPOSE, presignAad, PRESIGN_SEALING_PURPOSE, runInputsAad, runResultAad } from '@airlock/protocol';
import type { BundleRef, ExecutorStorage } from './executor/types.js';
import { DEFAULT_DATA_PLANE_KEY_ID } from './key-vault.js';
import type { DataPlaneSealingKeys } from './sealing-keys.js';

/** The one bucket of run data, created with SSE-KMS under the data-plane key as its default encryption. */
export const RUN_DATA_BUCKET = 'airlock-data';
/** docs/runs.md, "Limits". */
export const DEFAULT_MAX_BUNDLE_BYTES = 64 * 1024 * 1024;
export const DEFAULT_MAX_SEALED_INPUTS_BYTES = 1024 * 1024;
export const DEFAULT_MAX_RESULT_BYTES = 4 * 1024 * 1024;
export const DEFAULT_BUNDLE_CACHE_BYTES = 64 * 1024 * 1024;
/** The kill switch's bound (DESIGN.md): a bundle read under a key is not used more than a second after the read. */
export const DEFAULT_BUNDLE_CACHE_TTL_MS = 1000;
/** DESIGN.md §2: a presigned URL lives an hour at most by default. */
export const DEFAULT_MAX_PRESIGN_SECONDS = 3600;
export const DEFAULT_PRESIGN_SECONDS = 900;
/** Where Presign may sign URLs for a project: its files, never its inputs, results or bundles. */
const FILES_PREFIX = 'files';

const PROJECT_NAME = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
/** Run and action ids: canonical lower-case UUIDs (v7 for runs and root actions, v8 for child actions). */
const ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
/** The SDK's task-name rule (defineTask). */
const TASK_NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,127}$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;
const INPUTS_REF = /^v1\/([^/]+)\/([^/]+)$/;
/** A segment of an object key under files/<project>/: 1 to 255 characters, no control characters, not `.` or `..`. */
function isFileKeySegment(segment: string): boolean {
  if (segment.length === 0 || segment.length > 255 || segment === '.' || segment === '..') return false;
  for (let index = 0; index < segment.length; index += 1) {
    const code = segment.charCodeAt(index);
    if (code < 0x20 || code === 0x7f) return false;
  }
  return true;
}

export interface RunDataStoreOptions {
  /** The data plane's object store, reached with the data plane's own credentials. */
  readonly objectStore: ObjectStore;
  /** Opens inputs sealed to the I/O key. */
  readonly sealingKeys: DataPlaneSealingKeys;
  /** @default "airlock-data" */
  readonly bucket?: string;
  /** The KMS key of the bucket's default SSE-KMS encryption. @default "alias/airlock/data-plane" */
  readonly kmsKeyId?: string;
  /** Largest bundle PresignBundleUpload signs for, in bytes. @default 67108864 (64 MiB) */
  readonly maxBundleBytes?: number;
  /** Largest sealed inputs PutInputs accepts, in bytes. @default 1048576 (1 MiB) */
  readonly maxSealedInputsBytes?: number;
  /** Largest result document stored or read, in bytes. @default 4194304 (4 MiB) */
  readonly maxResultBytes?: number;
  /** Lifetime of a presigned URL when the request asks for none, in seconds. @default 900 */
  readonly presignSeconds?: number;
  /** Cap on a presigned URL's lifetime, in seconds. @default 3600 */
  readonly maxPresignSeconds?: number;
  /**
   * Verified bundles kept in memory so the next attempts of a bundle do not fetch and decrypt it
   * again, in bytes (0: none). @default 67108864 (64 MiB)
   */
  readonly bundleCacheBytes?: number;
  /** How long a kept bundle is used, in milliseconds: the revocation bound of a disabled key, as the object store's own key cache. @default 1000 */
  readonly bundleCacheTtlMs?: number;
  readonly log?: Logger;
}

export type ResolvedRunDataStoreConfig = DeepReadonly<{
  bucket: string;
  kmsKeyId: string;
  maxBundleBytes: number;
  maxSealedInputsBytes: number;
  maxResultBytes: number;
  presignSeconds: number;
  maxPresignSeconds: number;
  bundleCacheBytes: number;
  bundleCacheTtlMs: number;
}> & { readonly objectStore: ObjectStore; readonly sealingKeys: DataPlaneSealingKeys; readonly log: Logger | undefined };

export function resolveRunDataStoreConfig(options: RunDataStoreOptions): ResolvedRunDataStoreConfig {
  if (typeof options !== 'object' || options === null) throw configError('runData', 'options are required');
  if (typeof options.objectStore?.put !== 'function') throw configError('runData.objectStore', 'must be an ObjectStore');
  if (typeof options.sealingKeys?.openIo !== 'function') throw configError('runData.sealingKeys', 'must be the data plane\'s sealing keys');
  const maxPresignSeconds = configCheck.integer('runData.maxPresignSeconds', options.maxPresignSeconds ?? DEFAULT_MAX_PRESIGN_SECONDS, 1, 604_800);
  const settings = freezeConfig({
    bucket: configCheck.nonEmptyString('runData.bucket', options.bucket ?? RUN_DATA_BUCKET),
    kmsKeyId: configCheck.nonEmptyString('runData.kmsKeyId', options.kmsKeyId ?? DEFAULT_DATA_PLANE_KEY_ID),
    maxBundleBytes: configCheck.integer('runData.maxBundleBytes', options.maxBundleBytes ?? DEFAULT_MAX_BUNDLE_BYTES, 1, 5 * 1024 ** 3),
    maxSealedInputsBytes: configCheck.integer('runData.maxSealedInputsBytes', options.maxSealedInputsBytes ?? DEFAULT_MAX_SEALED_INPUTS_BYTES, 1, 64 * 1024 * 1024),
    maxResultBytes: configCheck.integer('runData.maxResultBytes', options.maxResultBytes ?? DEFAULT_MAX_RESULT_BYTES, 1, 64 * 1024 * 1024),
    presignSeconds: configCheck.integer('runData.presignSeconds', options.presignSeconds ?? Math.min(DEFAULT_PRESIGN_SECONDS, maxPresignSeconds), 1, maxPresignSeconds),
    maxPresignSeconds,
    bundleCacheBytes: configCheck.integer('runData.bundleCacheBytes', options.bundleCacheBytes ?? DEFAULT_BUNDLE_CACHE_BYTES, 0, 4 * 1024 ** 3),
    bundleCacheTtlMs: configCheck.integer('runData.bundleCacheTtlMs', options.bundleCacheTtlMs ?? DEFAULT_BUNDLE_CACHE_TTL_MS, 0, 1000),
  });
  return Object.freeze({ ...settings, objectStore: options.objectStore, sealingKeys: options.sealingKeys, log: options.log });
}

/** A sealed payload as SealedPayload carries it. */
export interface SealedInputs {
  readonly sealed: Uint8Array;
  /** The recipient key id the client says it sealed to; must be the I/O key's. */
  readonly keyId: string;
}

export type PresignBundleUploadResult =
  | { readonly alreadyStored: true }
  | { readonly alreadyStored: false; readonly url: string; readonly headers: Readonly<Record<string, string>>; readonly expiresAt: Date };

export interface PresignFileRequest {
  readonly project: string;
  readonly bucket: string;
  readonly key: string;
  readonly method: 'GET' | 'PUT';
  /** Seconds; 0 or undefined for the default; capped. */
  readonly ttlSeconds?: number;
  /** The client's ephemeral X25519 key: the URL comes back sealed to it. Required for GET, whose URL reads data. */
  readonly recipientPublicKey?: Uint8Array;
}

export type PresignFileResult =
  | { readonly url: string; readonly expiresAt: Date }
  | { readonly sealedUrl: { readonly sealed: Buffer; readonly keyId: string }; readonly expiresAt: Date };

/** The run-data store: what the executor needs (ExecutorStorage) plus what the tunnel services need. */
export interface RunDataStore extends ExecutorStorage {
  readonly config: ResolvedRunDataStoreConfig;
  /**
   * Opens `sealed` once (I/O key, purpose `io`, aad runInputsAad(project, task)) to refuse a tampered
   * or misaddressed payload, then stores the sealed bytes as they are at `runs/<project>/<run>/inputs`.
   * The same bytes again are accepted (a retried call); other bytes for a run that has inputs are
   * ALREADY_EXISTS.
   */
  putInputs(project: string, runId: string, task: { readonly name: string }, sealed: SealedInputs): Promise<{ inputsRef: string; sha256: string }>;
  /** The stored result document of an action; NOT_FOUND when there is none. */
  readResult(project: string, runId: string, actionId: string): Promise<Buffer>;
  /** The result document sealed to a client's ephemeral key (purpose `io`, aad runResultAad(project, run, action)). */
  sealResult(project: string, runId: string, actionId: string, recipientPublicKey: Uint8Array): Promise<{ sealed: Buffer; keyId: string }>;
  /**
   * A PUT URL for `bundles/<project>/<sha256>` bound to the digest and size (signed
   * `x-amz-checksum-sha256` and `content-length`), or `alreadyStored`. A size above the maximum is
   * PAYLOAD_TOO_LARGE before anything is signed.
   */
  presignBundleUpload(project: string, bundle: BundleRef, ttlSeconds?: number): Promise<PresignBundleUploadResult>;
  /** A URL for one object under `files/<project>/` of the run-data bucket (PresignService.Presign). */
  presignFile(request: PresignFileRequest): Promise<PresignFileResult>;
}

function invalid(argument: string, problem: string): AirlockError {
  return new AirlockError('INVALID_ARGUMENT', `${argument} ${problem}`, { details: { argument } });
}

/** Throws INVALID_ARGUMENT unless `project` is 1 to 63 lower-case letters, digits or inner hyphens. */
export function checkProjectName(project: unknown, argument = 'project'): string {
  if (typeof project !== 'string' || !PROJECT_NAME.test(project)) throw invalid(argument, 'must be 1 to 63 lower-case letters, digits or inner hyphens');
  return project;
}

/** Throws INVALID_ARGUMENT unless `id` is a canonical lower-case UUID (run and action ids). */
export function checkRunId(id: unknown, argument = 'run_id'): string {
  if (typeof id !== 'string' || !ID.test(id)) throw invalid(argument, 'must be a lower-case UUID');
  return id;
}

function checkTaskName(name: unknown): string {
  if (typeof name !== 'string' || !TASK_NAME.test(name)) throw invalid('task.name', 'must be a task name (a letter, then letters, digits, "_", "-" or "."; at most 128)');
  return name;
}

function checkBundle(bundle: BundleRef | undefined, maxBytes: number): BundleRef {
  if (bundle === undefined || typeof bundle.sha256 !== 'string' || !SHA256_HEX.test(bundle.sha256)) throw invalid('bundle.sha256', 'must be 64 lower-case hex digits');
  if (!Number.isSafeInteger(bundle.size) || bundle.size < 1) throw invalid('bundle.size', 'must be a positive integer');
  if (bundle.size > maxBytes) {
    throw new AirlockError('PAYLOAD_TOO_LARGE', `The bundle is ${bundle.size} bytes; this data plane accepts bundles of at most ${maxBytes} bytes`, {
      details: { maxSizeAllowed: maxBytes, size: bundle.size },
    });
  }
  return bundle;
}

/** The inputs reference of a run: `v1/<project>/<run>` (docs/runs.md). */
export function inputsRefOf(project: string, runId: string): string {
  return `v1/${checkProjectName(project)}/${checkRunId(runId)}`;
}

const keys = {
  inputs: (project: string, runId: string) => `runs/${project}/${runId}/inputs`,
  result: (project: string, runId: string, actionId: string) => `runs/${project}/${runId}/actions/${actionId}/result.json`,
  bundle: (project: string, sha256: string) => `bundles/${project}/${sha256}`,
};

/** Reads a whole object, refusing more than `maxBytes` (a store that grew an object past our limit is not trusted to be small). */
async function readAll(stream: Readable, maxBytes: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of stream) {
      const bytes = chunk as Buffer;
      total += bytes.byteLength;
      if (total > maxBytes) throw new AirlockError('PAYLOAD_TOO_LARGE', `${what} is larger than ${maxBytes} bytes`, { details: { maxSizeAllowed: maxBytes } });
      chunks.push(bytes);
    }
  } finally {
    stream.destroy();
  }
  return Buffer.concat(chunks, total);
}

/**
 * Verified bundles by project and digest, least recently stored first, each used for at most `ttlMs`
 * after it was read from the store (so a disabled KMS key stops fetches within the same bound as
 * the object store's key cache), at most `maxBytes` in all. A bundle is code, not a key: a dropped
 * one is left to the garbage collector, since an attempt may still be writing it out.
 */
class BundleCache {
  private readonly entries = new Map<string, { readonly bytes: Buffer; readonly readAt: number }>();
  private bytes = 0;

  constructor(
    private readonly maxBytes: number,
    private readonly ttlMs: number,
  ) {}

  accepts(size: number): boolean {
    return this.ttlMs > 0 && size <= this.maxBytes;
  }

  get(project: string, sha256: string): Buffer | undefined {
    const key = `${project}/${sha256}`;
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    if (performance.now() - entry.readAt > this.ttlMs) {
      this.drop(key);
      return undefined;
    }
    return entry.bytes;
  }

  put(project: string, sha256: string, bytes: Buffer): void {
    const key = `${project}/${sha256}`;
    if (!this.accepts(bytes.length)) return;
    this.drop(key);
    const now = performance.now();
    for (const [name, entry] of this.entries) {
      if (this.bytes + bytes.length <= this.maxBytes && now - entry.readAt <= this.ttlMs) break;
      this.drop(name);
    }
    this.entries.set(key, { bytes, readAt: now });
    this.bytes += bytes.length;
  }

  private drop(key: string): void {
    const entry = this.entries.get(key);
    if (entry === undefined) return;
    this.entries.delete(key);
    this.bytes -= entry.bytes.length;
  }
}

function notFoundAs(error: unknown, replacement: AirlockError): never {
  const e = AirlockError.from(error);
  if (e.code === 'OBJECT_NOT_FOUND') throw replacement;
  throw e;
}

function ttlOf(ttlSeconds: number | undefined, config: ResolvedRunDataStoreConfig): number {
  if (ttlSeconds === undefined || ttlSeconds === 0) return config.presignSeconds;
  if (!Number.isFinite(ttlSeconds) || ttlSeconds < 0) throw invalid('ttl', 'must not be negative');
  // Sub-second lifetimes round up: a URL that expires as it is made helps nobody.
  return Math.min(Math.max(1, Math.ceil(ttlSeconds)), config.maxPresignSeconds);
}

/**
 * Opens the run-data store over the data plane's object store: ensures the bucket exists with
 * SSE-KMS under the data-plane key as its default encryption (so every object is ASF1 under a
 * per-object data key), and returns the store.
 */
export async function createRunDataStore(options: RunDataStoreOptions): Promise<RunDataStore> {
  const config = resolveRunDataStoreConfig(options);
  const { objectStore: store, sealingKeys, bucket } = config;
  const encryption = { algorithm: 'aws:kms' as const, kmsKeyId: config.kmsKeyId, bucketKeyEnabled: true };
  try {
    await store.createBucket(bucket, encryption);
    config.log?.info({ event: 'run_data.bucket_created', bucket, kmsKeyId: config.kmsKeyId }, 'created the run-data bucket');
  } catch (error) {
    const e = AirlockError.from(error);
    if (e.code !== 'BUCKET_ALREADY_EXISTS') throw e;
    // An existing bucket gets the default it must have (a no-op when it has it already).
    await store.putBucketEncryption(bucket, encryption);
  }

  const bundleCache = new BundleCache(config.bundleCacheBytes, config.bundleCacheTtlMs);

  const readInputsObject = async (project: string, runId: string): Promise<Buffer> => {
    const stream = await store.get(bucket, keys.inputs(project, runId)).catch((error: unknown) =>
      notFoundAs(error, new AirlockError('NOT_FOUND', 'No inputs are stored for this run', { details: { project, runId } })),
    );
    return readAll(stream, config.maxSealedInputsBytes, 'The stored inputs');
  };

  const readResult = async (project: string, runId: string, actionId: string): Promise<Buffer> => {
    checkProjectName(project);
    checkRunId(runId);
    checkRunId(actionId, 'action_id');
    const stream = await store.get(bucket, keys.result(project, runId, actionId)).catch((error: unknown) =>
      notFoundAs(error, new AirlockError('NOT_FOUND', 'No result is stored for this action', { details: { project, runId, actionId } })),
    );
    return readAll(stream, config.maxResultBytes, 'The stored result');
  };

  return {
    config,

    async putInputs(project, runId, task, sealed) {
      checkProjectName(project);
      checkRunId(runId);
      const taskName = checkTaskName(task?.name);
      if (!(sealed?.sealed instanceof Uint8Array) || sealed.sealed.byteLength === 0) throw invalid('inputs', 'must be a sealed payload');
      if (sealed.sealed.byteLength > config.maxSealedInputsBytes) {
        throw new AirlockError('PAYLOAD_TOO_LARGE', `Sealed inputs are limited to ${config.maxSealedInputsBytes} bytes`, { details: { maxSizeAllowed: config.maxSealedInputsBytes } });
      }
      if (sealed.keyId !== sealingKeys.io.keyId) {
        throw new AirlockError('SEALED_WRONG_RECIPIENT', 'The inputs are not sealed to this data plane\'s I/O key', { details: { keyId: sealingKeys.io.keyId } });
      }
      // Opened only to prove they are intact and addressed to this project and task; the plaintext is dropped at once.
      const plaintext = await sealingKeys.openIo(sealed.sealed, IO_SEALING_PURPOSE, runInputsAad(project, taskName));
      zeroize(plaintext);
      const bytes = Buffer.from(sealed.sealed);
      const sha256 = createHash('sha256').update(bytes).digest('hex');
      const key = keys.inputs(project, runId);
      // Create-only in one request; a retried submission of the same inputs finds them already there.
      const created = await store.put(bucket, key, bytes, { contentLength: bytes.byteLength, contentType: 'application/octet-stream', metadata: { sha256 }, ifNoneMatch: '*' }).then(
        () => true,
        (error: unknown) => {
          const code = AirlockError.from(error).code;
          if (code === 'PRECONDITION_FAILED' || code === 'WRITE_CONFLICT') return false;
          throw AirlockError.from(error);
        },
      );
      if (!created) {
        const existing = await store.head(bucket, key);
        if (existing.metadata.sha256 !== sha256) throw new AirlockError('ALREADY_EXISTS', 'This run already has other inputs', { details: { project, runId } });
      }
      return { inputsRef: inputsRefOf(project, runId), sha256 };
    },

    async readInputs(project, runId, inputsRef, taskName) {
      checkProjectName(project);
      checkRunId(runId);
      if (inputsRef === '') return undefined;
      const match = typeof inputsRef === 'string' ? INPUTS_REF.exec(inputsRef) : null;
      // The data plane reads only under the project and run the action names, whatever the reference says.
      if (match === null || match[1] !== project || match[2] !== runId) throw invalid('inputs_ref', 'does not name this project and run');
      const sealed = await readInputsObject(project, runId);
      return sealingKeys.openIo(sealed, IO_SEALING_PURPOSE, runInputsAad(project, checkTaskName(taskName)));
    },

    async fetchBundle(project, bundle, destination) {
      checkProjectName(project);
      const { sha256, size } = checkBundle(bundle, config.maxBundleBytes);
      const temporary = join(dirname(destination), `.${basename(destination)}.${randomBytes(6).toString('hex')}.tmp`);
      const cached = bundleCache.get(project, sha256);
      // A size that is not the bundle's goes to the store, whose bytes then fail the check.
      if (cached !== undefined && cached.length === size) {
        try {
          await writeFile(temporary, cached, { flag: 'wx', mode: 0o600 });
          await rename(temporary, destination);
          return;
        } catch (error) {
          await rm(temporary, { force: true }).catch(() => undefined);
          throw AirlockError.from(error);
        }
      }
      const stream = await store.get(bucket, keys.bundle(project, sha256)).catch((error: unknown) =>
        notFoundAs(error, new AirlockError('OBJECT_NOT_FOUND', 'The bundle is not stored in this data plane', { details: { project, sha256 } })),
      );
      const hash = createHash('sha256');
      const keep: Buffer[] | undefined = bundleCache.accepts(size) ? [] : undefined;
      let received = 0;
      let handle: Awaited<ReturnType<typeof open>> | undefined;
      try {
        handle = await open(temporary, 'wx', 0o600);
        for await (const chunk of stream) {
          const bytes = chunk as Buffer;
          received += bytes.byteLength;
          // Stop reading at the first byte past the expected size: the bundle is wrong already.
          if (received > size) break;
          hash.update(bytes);
          keep?.push(bytes);
          await handle.write(bytes);
        }
        if (received !== size || hash.digest('hex') !== sha256) {
          throw new AirlockError('DIGEST_MISMATCH', 'The stored bundle does not match its SHA-256 and size', { details: { project, sha256, size } });
        }
        // A working directory is scratch (removed after the attempt, and by recover() after a crash): atomic, not durable.
        await handle.close();
        handle = undefined;
        await rename(temporary, destination);
        if (keep !== undefined) bundleCache.put(project, sha256, Buffer.concat(keep, size));
      } catch (error) {
        await handle?.close().catch(() => undefined);
        await rm(temporary, { force: true }).catch(() => undefined);
        throw AirlockError.from(error);
      } finally {
        stream.destroy();
      }
    },

    async writeResult(project, runId, actionId, result) {
      checkProjectName(project);
      checkRunId(runId);
      checkRunId(actionId, 'action_id');
      if (!(result instanceof Uint8Array)) throw invalid('result', 'must be bytes');
      if (result.byteLength > config.maxResultBytes) {
        throw new AirlockError('PAYLOAD_TOO_LARGE', `A result document is limited to ${config.maxResultBytes} bytes`, { details: { maxSizeAllowed: config.maxResultBytes } });
      }
      // One PUT replaces the object as a whole: a reader sees the old document or the new one.
      await store.put(bucket, keys.result(project, runId, actionId), Buffer.from(result), { contentLength: result.byteLength, contentType: 'application/json' });
    },

    readResult,

    async sealResult(project, runId, actionId, recipientPublicKey) {
      const document = await readResult(project, runId, actionId);
      try {
        const sealed = await seal({ recipientPublicKey, purpose: IO_SEALING_PURPOSE, plaintext: document, aad: runResultAad(project, runId, actionId) });
        return { sealed, keyId: sealingKeyId(recipientPublicKey) };
      } finally {
        zeroize(document);
      }
    },

    async presignBundleUpload(project, bundle, ttlSeconds) {
      checkProjectName(project);
      const { sha256, size } = checkBundle(bundle, config.maxBundleBytes);
      const expiresIn = ttlOf(ttlSeconds, config);
      const key = keys.bundle(project, sha256);
      const existing = await store.head(bucket, key).catch((error: unknown) => {
        if (AirlockError.from(error).code === 'OBJECT_NOT_FOUND') return undefined;
        throw AirlockError.from(error);
      });
      // A stored object of another size cannot be this bundle: let the bound upload replace it.
      if (existing !== undefined && existing.size === size) return { alreadyStored: true };
      const checksum = Buffer.from(sha256, 'hex').toString('base64');
      const expiresAt = new Date(Date.now() + expiresIn * 1000);
      const url = await store.presign(bucket, key, { method: 'PUT', expiresInSeconds: expiresIn, checksumSha256: checksum, contentLength: size });
      return { alreadyStored: false, url, headers: { 'x-amz-checksum-sha256': checksum, 'content-length': String(size) }, expiresAt };
    },

    async presignFile(request) {
      const project = checkProjectName(request.project);
      if (request.bucket !== bucket) throw new AirlockError('ACCESS_DENIED', 'Presigned URLs are only signed for the run-data bucket', { details: { bucket: request.bucket } });
      const segments = typeof request.key === 'string' ? request.key.split('/') : [];
      if (segments.length < 3 || segments[0] !== FILES_PREFIX || segments[1] !== project || !segments.slice(2).every(isFileKeySegment)) {
        throw new AirlockError('ACCESS_DENIED', `Presigned URLs are only signed for keys under ${FILES_PREFIX}/<project>/`, { details: { project } });
      }
      if (request.method !== 'GET' && request.method !== 'PUT') throw invalid('method', 'must be GET or PUT');
      const recipient = request.recipientPublicKey !== undefined && request.recipientPublicKey.byteLength > 0 ? request.recipientPublicKey : undefined;
      // A download URL reads data: the control plane relaying it must not be able to use it.
      if (request.method === 'GET' && recipient === undefined) throw invalid('recipient_public_key', 'is required for a download URL');
      const expiresIn = ttlOf(request.ttlSeconds, config);
      const expiresAt = new Date(Date.now() + expiresIn * 1000);
      const url = await store.presign(bucket, request.key, { method: request.method, expiresInSeconds: expiresIn });
      if (recipient === undefined) return { url, expiresAt };
      const sealed = await seal({
        recipientPublicKey: recipient,
        purpose: PRESIGN_SEALING_PURPOSE,
        plaintext: Buffer.from(url, 'utf8'),
        aad: presignAad(project, bucket, request.key, request.method),
      });
      return { sealedUrl: { sealed, keyId: sealingKeyId(recipient) }, expiresAt };
    },
  };
}
