// The ObjectStore over @aws-sdk/client-s3: Airlock's embedded store, or external S3 (AWS, MinIO, Ceph) unchanged.
import { Agent } from 'node:https';
import { Readable } from 'node:stream';
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetBucketEncryptionCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutBucketEncryptionCommand,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { AirlockError, configCheck, freezeConfig, type DeepReadonly } from '@airlock/common';
import { tlsClientOptions } from '@airlock/pki';
import type { HeadResult, ListEntry, ObjectStore, ObjectStoreEncryption, PresignOptions, PutOptions } from './object-store.js';
import { objectStoreErrorFromWire } from './wire-errors.js';

export interface S3ObjectStoreOptions {
  /** S3 endpoint, e.g. `https://127.0.0.1:9000`. @default AWS S3 for the region */
  readonly endpoint?: string;
  /** @default "us-east-1" */
  readonly region?: string;
  readonly credentials?: { readonly accessKeyId: string; readonly secretAccessKey: string; readonly sessionToken?: string };
  /** PEM CA bundle for the endpoint. @default the system trust store */
  readonly caBundle?: string;
  /** Path-style addressing (`https://host/bucket/key`), which the embedded store requires. @default true with an endpoint */
  readonly forcePathStyle?: boolean;
  /** Default presigned-URL lifetime. @default 3600 */
  readonly presignExpiresInSeconds?: number;
  /** @default 3 */
  readonly maxAttempts?: number;
  /**
   * A call fails with TIMEOUT when its connection takes this long to open, or then carries no bytes
   * either way for this long: a store that accepted the connection but never answers (stopped, or
   * out of descriptors), or one that stops in the middle of a body. A download that has started
   * fails as a stream error of the same kind (`AirlockError.from` gives TIMEOUT). An upload or a
   * download that keeps moving is never cut, however long it takes. Each attempt has its own
   * timeout. @default 30000
   */
  readonly requestTimeoutMs?: number;
}

export type ResolvedS3ObjectStoreConfig = DeepReadonly<{
  endpoint: string | undefined;
  region: string;
  credentials: { accessKeyId: string; secretAccessKey: string; sessionToken?: string } | undefined;
  caBundle: string | undefined;
  forcePathStyle: boolean;
  presignExpiresInSeconds: number;
  maxAttempts: number;
  requestTimeoutMs: number;
}>;

/** Seven days: the longest SigV4 presigned URL S3 accepts. */
export const MAX_PRESIGN_SECONDS = 604_800;

export function resolveS3ObjectStoreConfig(options: S3ObjectStoreOptions = {}): ResolvedS3ObjectStoreConfig {
  if (options.endpoint !== undefined && !options.endpoint.startsWith('https://')) {
    throw new AirlockError('CONFIG_INVALID', 'objectStore.endpoint must be an https:// URL', { details: { option: 'objectStore.endpoint' } });
  }
  return freezeConfig({
    endpoint: options.endpoint,
    region: configCheck.nonEmptyString('objectStore.region', options.region ?? 'us-east-1'),
    credentials: options.credentials === undefined ? undefined : { ...options.credentials },
    caBundle: options.caBundle,
    forcePathStyle: options.forcePathStyle ?? options.endpoint !== undefined,
    presignExpiresInSeconds: configCheck.integer('objectStore.presignExpiresInSeconds', options.presignExpiresInSeconds ?? 3600, 1, MAX_PRESIGN_SECONDS),
    maxAttempts: configCheck.integer('objectStore.maxAttempts', options.maxAttempts ?? 3, 1, 10),
    requestTimeoutMs: configCheck.integer('objectStore.requestTimeoutMs', options.requestTimeoutMs ?? 30_000, 100, 3_600_000),
  });
}

function sseParams(encryption: ObjectStoreEncryption | undefined): Record<string, unknown> {
  if (encryption === undefined) return {};
  return {
    ServerSideEncryption: encryption.algorithm,
    ...(encryption.kmsKeyId === undefined ? {} : { SSEKMSKeyId: encryption.kmsKeyId }),
    ...(encryption.bucketKeyEnabled === undefined ? {} : { BucketKeyEnabled: encryption.bucketKeyEnabled }),
  };
}

/** An ObjectStore over the S3 API, sending SSE headers as S3 defines them. */
export function createS3ObjectStore(options: S3ObjectStoreOptions | ResolvedS3ObjectStoreConfig = {}): ObjectStore & { destroy(): void } {
  const config = resolveS3ObjectStoreConfig(options);
  const agent = new Agent({ keepAlive: true, maxSockets: 64, ...(config.caBundle === undefined ? {} : tlsClientOptions({ ca: config.caBundle })) });
  const client = new S3Client({
    region: config.region,
    ...(config.endpoint === undefined ? {} : { endpoint: config.endpoint }),
    ...(config.credentials === undefined ? {} : { credentials: { ...config.credentials } }),
    forcePathStyle: config.forcePathStyle,
    maxAttempts: config.maxAttempts,
    // Inactivity, not a deadline for the whole call (which a 5 GiB upload may rightly exceed): the
    // socket timeout fires when no bytes move either way, the connection timeout when a connection
    // does not open. Without them a call waits for ever on a store that accepted it and went silent.
    requestHandler: new NodeHttpHandler({ httpsAgent: agent, connectionTimeout: config.requestTimeoutMs, socketTimeout: config.requestTimeoutMs }),
  });
  const call = async <T>(send: () => Promise<T>): Promise<T> => {
    try {
      return await send();
    } catch (error) {
      throw objectStoreErrorFromWire(error);
    }
  };

  return {
    async put(bucket, key, body, opts: PutOptions = {}) {
      const params = {
        Bucket: bucket,
        Key: key,
        Body: body,
        ...(opts.contentType === undefined ? {} : { ContentType: opts.contentType }),
        ...(opts.metadata === undefined ? {} : { Metadata: { ...opts.metadata } }),
        ...(opts.ifNoneMatch === undefined ? {} : { IfNoneMatch: opts.ifNoneMatch }),
        ...sseParams(opts.encryption),
      };
      if (body instanceof Readable && opts.contentLength === undefined) {
        // A stream of unknown length: lib-storage sends it as one PUT or as multipart, in bounded memory.
        const upload = new Upload({ client, params, queueSize: 4, partSize: 8 * 1024 * 1024 });
        const out = await call(() => upload.done());
        return { etag: out.ETag ?? '' };
      }
      const out = await call(() =>
        client.send(new PutObjectCommand({ ...params, ...(opts.contentLength === undefined ? {} : { ContentLength: opts.contentLength }) })),
      );
      return { etag: out.ETag ?? '' };
    },
    async get(bucket, key, range) {
      const out = await call(() =>
        client.send(new GetObjectCommand({ Bucket: bucket, Key: key, ...(range === undefined ? {} : { Range: `bytes=${range.start}-${range.end}` }) })),
      );
      if (!(out.Body instanceof Readable)) throw new AirlockError('INTERNAL', 'S3 returned no body stream');
      return out.Body;
    },
    async head(bucket, key): Promise<HeadResult> {
      const out = await call(() => client.send(new HeadObjectCommand({ Bucket: bucket, Key: key })));
      return {
        size: out.ContentLength ?? 0,
        etag: out.ETag ?? '',
        lastModified: out.LastModified,
        contentType: out.ContentType,
        metadata: out.Metadata ?? {},
        encryption: { algorithm: out.ServerSideEncryption, kmsKeyArn: out.SSEKMSKeyId, bucketKeyEnabled: out.BucketKeyEnabled === true },
      };
    },
    async *list(bucket, prefix): AsyncIterable<ListEntry> {
      let token: string | undefined;
      do {
        const out = await call(() =>
          client.send(new ListObjectsV2Command({ Bucket: bucket, ...(prefix === undefined ? {} : { Prefix: prefix }), ...(token === undefined ? {} : { ContinuationToken: token }) })),
        );
        for (const o of out.Contents ?? []) {
          if (o.Key !== undefined) yield { key: o.Key, size: o.Size ?? 0, etag: o.ETag ?? '', lastModified: o.LastModified };
        }
        token = out.IsTruncated === true ? out.NextContinuationToken : undefined;
      } while (token !== undefined);
    },
    async delete(bucket, key) {
      await call(() => client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key })));
    },
    async presign(bucket, key, opts: PresignOptions) {
      const expiresIn = configCheck.integer('presign.expiresInSeconds', opts.expiresInSeconds ?? config.presignExpiresInSeconds, 1, MAX_PRESIGN_SECONDS);
      if (opts.method === 'GET') {
        if (opts.checksumSha256 !== undefined || opts.contentLength !== undefined) {
          throw new AirlockError('INVALID_ARGUMENT', 'checksumSha256 and contentLength bind the body of a PUT; a GET has none', { details: { argument: 'method' } });
        }
        return call(() => getSignedUrl(client, new GetObjectCommand({ Bucket: bucket, Key: key }), { expiresIn }));
      }
      const checksum = opts.checksumSha256;
      if (checksum !== undefined && !/^[A-Za-z0-9+/]{43}=$/.test(checksum)) {
        throw new AirlockError('INVALID_ARGUMENT', 'checksumSha256 must be the base64 of a 32-byte SHA-256 digest', { details: { argument: 'checksumSha256' } });
      }
      const length = opts.contentLength === undefined ? undefined : configCheck.integer('presign.contentLength', opts.contentLength, 0, Number.MAX_SAFE_INTEGER);
      const command = new PutObjectCommand({
        Bucket: bucket,
        Key: key,
        ...(checksum === undefined ? {} : { ChecksumSHA256: checksum }),
        ...(length === undefined ? {} : { ContentLength: length }),
      });
      // Both stay headers (not query parameters) and are signed, so the store sees the digest it must
      // verify the body against, and a different length or digest breaks the signature.
      const bound = [...(checksum === undefined ? [] : ['x-amz-checksum-sha256']), ...(length === undefined ? [] : ['content-length'])];
      return call(() => getSignedUrl(client, command, { expiresIn, signableHeaders: new Set(bound), unhoistableHeaders: new Set(bound) }));
    },
    async createBucket(bucket, encryption) {
      await call(() => client.send(new CreateBucketCommand({ Bucket: bucket })));
      if (encryption !== undefined) await this.putBucketEncryption(bucket, encryption);
    },
    async getBucketEncryption(bucket) {
      const out = await call(() => client.send(new GetBucketEncryptionCommand({ Bucket: bucket })));
      const rule = out.ServerSideEncryptionConfiguration?.Rules?.[0];
      const algorithm = rule?.ApplyServerSideEncryptionByDefault?.SSEAlgorithm === 'aws:kms' ? 'aws:kms' : 'AES256';
      const arn = rule?.ApplyServerSideEncryptionByDefault?.KMSMasterKeyID;
      return { algorithm, kmsKeyArn: arn, ...(arn === undefined ? {} : { kmsKeyId: arn }), bucketKeyEnabled: rule?.BucketKeyEnabled === true };
    },
    async putBucketEncryption(bucket, encryption) {
      await call(() =>
        client.send(
          new PutBucketEncryptionCommand({
            Bucket: bucket,
            ServerSideEncryptionConfiguration: {
              Rules: [
                {
                  ApplyServerSideEncryptionByDefault: {
                    SSEAlgorithm: encryption.algorithm,
                    ...(encryption.kmsKeyId === undefined ? {} : { KMSMasterKeyID: encryption.kmsKeyId }),
                  },
                  BucketKeyEnabled: encryption.bucketKeyEnabled ?? encryption.algorithm === 'aws:kms',
                },
              ],
            },
          }),
        ),
      );
    },
    destroy() {
      client.destroy();
      agent.destroy();
    },
  };
}
