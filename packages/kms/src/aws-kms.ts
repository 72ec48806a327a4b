// The Kms adapter over @aws-sdk/client-kms: talks to Airlock's embedded KMS and, unchanged, to AWS KMS.
import {
  CancelKeyDeletionCommand,
  CreateAliasCommand,
  CreateKeyCommand,
  DecryptCommand,
  DeleteAliasCommand,
  DescribeKeyCommand,
  DisableKeyCommand,
  DisableKeyRotationCommand,
  EnableKeyCommand,
  EnableKeyRotationCommand,
  EncryptCommand,
  GenerateDataKeyCommand,
  GetKeyRotationStatusCommand,
  KMSClient,
  ListAliasesCommand,
  ListKeysCommand,
  ReEncryptCommand,
  RotateKeyOnDemandCommand,
  ScheduleKeyDeletionCommand,
  UpdateAliasCommand,
  type KeyMetadata,
} from '@aws-sdk/client-kms';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { AirlockError, configCheck, freezeConfig, type DeepReadonly } from '@airlock/common';
import type { EncryptionContext } from '@airlock/crypto';
import { createInternalHttpsAgent, resolveInternalPoolConfig, tlsClientOptions, type InternalPoolOptions, type ResolvedInternalPoolConfig } from '@airlock/pki';
import { openKeyEventStream } from './internal/key-event-stream.js';
import type { KmsAdmin, KmsAlias, KmsKeyEventSource, KmsKeyMetadata, KmsKeyState } from './kms.js';
import { kmsErrorFromWire } from './wire-errors.js';

export interface AwsKmsOptions {
  /** KMS endpoint, e.g. `https://127.0.0.1:9443`. @default the SDK's regional AWS endpoint */
  readonly endpoint?: string;
  /** @default "us-east-1" */
  readonly region?: string;
  /** Static credentials. @default the SDK's default provider chain (environment, profile, instance role) */
  readonly credentials?: { readonly accessKeyId: string; readonly secretAccessKey: string; readonly sessionToken?: string };
  /** PEM CA bundle to trust for the endpoint (Airlock's CA). @default the system trust store */
  readonly caBundle?: string;
  /** Per-request timeout. @default 10000 */
  readonly requestTimeoutMs?: number;
  /** SDK retry attempts, including the first. @default 3 */
  readonly maxAttempts?: number;
  /**
   * The client's own bounded connection pool (see @airlock/pki InternalPoolOptions). A listener of
   * the same process (the embedded KMS next to the object store) admits these connections past its
   * public caps and the process's connection budget.
   * @default DEFAULT_INTERNAL_POOL (64 sockets, 16 kept idle, idle ones closed after 30 s)
   */
  readonly pool?: InternalPoolOptions;
}

export type ResolvedAwsKmsConfig = DeepReadonly<{
  endpoint: string | undefined;
  region: string;
  credentials: { accessKeyId: string; secretAccessKey: string; sessionToken?: string } | undefined;
  caBundle: string | undefined;
  requestTimeoutMs: number;
  maxAttempts: number;
}> & { readonly pool: ResolvedInternalPoolConfig };

export function resolveAwsKmsConfig(options: AwsKmsOptions = {}): ResolvedAwsKmsConfig {
  if (options.endpoint !== undefined && !/^https:\/\//.test(options.endpoint)) {
    throw new AirlockError('CONFIG_INVALID', 'kms.endpoint must be an https:// URL', { details: { option: 'kms.endpoint' } });
  }
  const pool = resolveInternalPoolConfig(options.pool, 'kms.pool');
  const resolved = freezeConfig({
    endpoint: options.endpoint,
    region: configCheck.nonEmptyString('kms.region', options.region ?? 'us-east-1'),
    credentials: options.credentials === undefined ? undefined : { ...options.credentials },
    caBundle: options.caBundle,
    requestTimeoutMs: configCheck.integer('kms.requestTimeoutMs', options.requestTimeoutMs ?? 10_000, 100, 600_000),
    maxAttempts: configCheck.integer('kms.maxAttempts', options.maxAttempts ?? 3, 1, 10),
  });
  return Object.freeze({ ...resolved, pool });
}

const toDate = (value: Date | undefined): Date | undefined => (value === undefined ? undefined : new Date(value));

function metadata(m: KeyMetadata | undefined): KmsKeyMetadata {
  if (m?.KeyId === undefined || m.Arn === undefined) throw new AirlockError('KMS_UNAVAILABLE', 'KMS returned no key metadata');
  return {
    keyId: m.KeyId,
    arn: m.Arn,
    state: (m.KeyState ?? 'Unavailable') as KmsKeyState,
    enabled: m.Enabled === true,
    description: m.Description ?? '',
    creationDate: toDate(m.CreationDate),
    deletionDate: toDate(m.DeletionDate),
    keySpec: m.KeySpec ?? 'SYMMETRIC_DEFAULT',
    keyUsage: m.KeyUsage ?? 'ENCRYPT_DECRYPT',
  };
}

function bytes(value: Uint8Array | undefined, what: string): Buffer {
  if (value === undefined) throw new AirlockError('KMS_UNAVAILABLE', `KMS returned no ${what}`);
  return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

/** A KmsAdmin over the AWS KMS JSON protocol, with keep-alive TLS and the Airlock TLS policy. */
export function createAwsKms(options: AwsKmsOptions | ResolvedAwsKmsConfig = {}): KmsAdmin & KmsKeyEventSource & { destroy(): void } {
  const config = resolveAwsKmsConfig(options);
  const agent = createInternalHttpsAgent(config.pool, config.caBundle === undefined ? {} : tlsClientOptions({ ca: config.caBundle }));
  const client = new KMSClient({
    region: config.region,
    ...(config.endpoint === undefined ? {} : { endpoint: config.endpoint }),
    ...(config.credentials === undefined ? {} : { credentials: { ...config.credentials } }),
    maxAttempts: config.maxAttempts,
    // throwOnRequestTimeout: without it the handler only logs a warning and the call waits for ever
    // on a KMS that accepted the connection but never answers (a stopped or descriptor-starved process).
    requestHandler: new NodeHttpHandler({ httpsAgent: agent, requestTimeout: config.requestTimeoutMs, connectionTimeout: config.requestTimeoutMs, throwOnRequestTimeout: true }),
  });
  const call = async <T>(send: () => Promise<T>): Promise<T> => {
    try {
      return await send();
    } catch (error) {
      throw kmsErrorFromWire(error);
    }
  };
  const context = (c: EncryptionContext): Record<string, string> => ({ ...c });

  return {
    async generateDataKey(keyId, encryptionContext, opts = {}) {
      const out = await call(() =>
        client.send(
          new GenerateDataKeyCommand({
            KeyId: keyId,
            EncryptionContext: context(encryptionContext),
            ...(opts.numberOfBytes === undefined ? { KeySpec: 'AES_256' } : { NumberOfBytes: opts.numberOfBytes }),
          }),
        ),
      );
      return { plaintext: bytes(out.Plaintext, 'plaintext'), ciphertextBlob: bytes(out.CiphertextBlob, 'ciphertext'), keyArn: out.KeyId ?? keyId };
    },
    async encrypt(keyId, plaintext, encryptionContext) {
      const out = await call(() => client.send(new EncryptCommand({ KeyId: keyId, Plaintext: plaintext, EncryptionContext: context(encryptionContext) })));
      return { ciphertextBlob: bytes(out.CiphertextBlob, 'ciphertext'), keyArn: out.KeyId ?? keyId };
    },
    async decrypt(ciphertextBlob, encryptionContext, opts = {}) {
      const out = await call(() =>
        client.send(
          new DecryptCommand({
            CiphertextBlob: ciphertextBlob,
            EncryptionContext: context(encryptionContext),
            ...(opts.keyId === undefined ? {} : { KeyId: opts.keyId }),
          }),
        ),
      );
      return { plaintext: bytes(out.Plaintext, 'plaintext'), keyArn: out.KeyId ?? '' };
    },
    async reEncrypt(ciphertextBlob, sourceContext, destinationKeyId, destinationContext) {
      const out = await call(() =>
        client.send(
          new ReEncryptCommand({
            CiphertextBlob: ciphertextBlob,
            SourceEncryptionContext: context(sourceContext),
            DestinationKeyId: destinationKeyId,
            DestinationEncryptionContext: context(destinationContext),
          }),
        ),
      );
      return { ciphertextBlob: bytes(out.CiphertextBlob, 'ciphertext'), keyArn: out.KeyId ?? destinationKeyId };
    },
    async describeKey(keyId) {
      return metadata((await call(() => client.send(new DescribeKeyCommand({ KeyId: keyId })))).KeyMetadata);
    },
    async createKey(opts = {}) {
      return metadata((await call(() => client.send(new CreateKeyCommand({ Description: opts.description ?? '' })))).KeyMetadata);
    },
    async listKeys() {
      const keys: Array<{ keyId: string; arn: string }> = [];
      let marker: string | undefined;
      do {
        const out = await call(() => client.send(new ListKeysCommand({ Limit: 1000, ...(marker === undefined ? {} : { Marker: marker }) })));
        for (const k of out.Keys ?? []) if (k.KeyId !== undefined && k.KeyArn !== undefined) keys.push({ keyId: k.KeyId, arn: k.KeyArn });
        marker = out.Truncated === true ? out.NextMarker : undefined;
      } while (marker !== undefined);
      return keys;
    },
    async enableKey(keyId) {
      await call(() => client.send(new EnableKeyCommand({ KeyId: keyId })));
    },
    async disableKey(keyId) {
      await call(() => client.send(new DisableKeyCommand({ KeyId: keyId })));
    },
    async scheduleKeyDeletion(keyId, pendingWindowInDays) {
      const out = await call(() =>
        client.send(new ScheduleKeyDeletionCommand({ KeyId: keyId, ...(pendingWindowInDays === undefined ? {} : { PendingWindowInDays: pendingWindowInDays }) })),
      );
      return { deletionDate: toDate(out.DeletionDate) };
    },
    async cancelKeyDeletion(keyId) {
      await call(() => client.send(new CancelKeyDeletionCommand({ KeyId: keyId })));
    },
    async createAlias(aliasName, targetKeyId) {
      await call(() => client.send(new CreateAliasCommand({ AliasName: aliasName, TargetKeyId: targetKeyId })));
    },
    async updateAlias(aliasName, targetKeyId) {
      await call(() => client.send(new UpdateAliasCommand({ AliasName: aliasName, TargetKeyId: targetKeyId })));
    },
    async deleteAlias(aliasName) {
      await call(() => client.send(new DeleteAliasCommand({ AliasName: aliasName })));
    },
    async listAliases(keyId) {
      const aliases: KmsAlias[] = [];
      let marker: string | undefined;
      do {
        const out = await call(() =>
          client.send(new ListAliasesCommand({ Limit: 100, ...(keyId === undefined ? {} : { KeyId: keyId }), ...(marker === undefined ? {} : { Marker: marker }) })),
        );
        for (const a of out.Aliases ?? []) {
          if (a.AliasName !== undefined && a.AliasArn !== undefined) aliases.push({ aliasName: a.AliasName, aliasArn: a.AliasArn, targetKeyId: a.TargetKeyId });
        }
        marker = out.Truncated === true ? out.NextMarker : undefined;
      } while (marker !== undefined);
      return aliases;
    },
    async enableKeyRotation(keyId, periodDays) {
      await call(() => client.send(new EnableKeyRotationCommand({ KeyId: keyId, ...(periodDays === undefined ? {} : { RotationPeriodInDays: periodDays }) })));
    },
    async disableKeyRotation(keyId) {
      await call(() => client.send(new DisableKeyRotationCommand({ KeyId: keyId })));
    },
    async getKeyRotationStatus(keyId) {
      const out = await call(() => client.send(new GetKeyRotationStatusCommand({ KeyId: keyId })));
      return { enabled: out.KeyRotationEnabled === true, periodDays: out.RotationPeriodInDays, nextRotationDate: toDate(out.NextRotationDate) };
    },
    async rotateKeyOnDemand(keyId) {
      await call(() => client.send(new RotateKeyOnDemandCommand({ KeyId: keyId })));
    },
    subscribeKeyEvents(handlers, opts = {}) {
      if (config.endpoint === undefined) {
        // AWS KMS itself has no key-event extension: do not send it a request it would refuse.
        let closed = false;
        queueMicrotask(() => {
          if (!closed) handlers.onClose(new AirlockError('KMS_UNSUPPORTED_OPERATION', 'AWS KMS has no key-event extension'));
          closed = true;
        });
        return {
          close() {
            if (!closed) handlers.onClose(undefined);
            closed = true;
          },
        };
      }
      const fixed = config.credentials;
      return openKeyEventStream(
        {
          endpoint: config.endpoint,
          region: config.region,
          credentials: () => (fixed === undefined ? client.config.credentials() : Promise.resolve(fixed)),
          agent,
          openTimeoutMs: config.requestTimeoutMs,
          ...(opts.keyIds === undefined ? {} : { keyIds: opts.keyIds }),
        },
        handlers,
      );
    },
    destroy() {
      client.destroy();
      agent.destroy();
    },
  };
}
