// The embedded S3-compatible object store: HTTPS only, SigV4, every object encrypted under KMS keys.
import { configCheck, configError, createLogger, freezeConfig, type DeepReadonly, type Logger } from '@airlock/common';
import { resolveListenerLimits, type ConnectionBudget, type ListenerLimitsOptions, type ResolvedListenerLimits } from '@airlock/pki';
import type { KeyEventStatus, Kms, KmsAdmin } from '@airlock/kms';
import { StorageEngine } from './internal/engine.js';
import { OBJECT_STORE_LISTENER_LIMIT_DEFAULTS, startS3Listener } from './internal/s3-server.js';

export { OBJECT_STORE_LISTENER_LIMIT_DEFAULTS } from './internal/s3-server.js';

export type { BucketEncryption, ObjectEngine } from './internal/engine-types.js';

export interface ObjectStoreServerOptions {
  /** Where buckets, objects and the wrapped store key live. Created if missing. */
  readonly dataDir: string;
  /** TLS certificate and key (PEM) for the listener. */
  readonly tls: { readonly cert: string; readonly key: string };
  /** The KMS holding the keys: `createAwsKms(...)` against the embedded KMS or AWS KMS. */
  readonly kms: Kms | KmsAdmin;
  /** Returns the secret of an access key allowed to use the store (SigV4), or undefined. */
  readonly lookupSecret: (accessKeyId: string) => string | undefined | Promise<string | undefined>;
  /** @default "127.0.0.1" */
  readonly host?: string;
  /** @default 0 (any free port) */
  readonly port?: number;
  /** Region of the SigV4 credential scope. @default "us-east-1" */
  readonly region?: string;
  /** The store-managed key for SSE-S3 (AES256) and the store's metadata; created when it is an alias that does not exist. @default "alias/airlock/s3" */
  readonly defaultKeyId?: string;
  /** Bench-only: store bodies unencrypted, to measure the cost of encryption. @default false */
  readonly benchmarkPlaintextBodies?: boolean;
  /**
   * How long bucket keys and data keys are reused while the KMS's key-event stream is live; they
   * are dropped the moment their key leaves Enabled (docs/kms.md, "Key-state events"). Without a
   * live stream they live at most 1 s, the kill-switch bound. At most 24 h. @default 300000 (5 minutes)
   */
  readonly keyCacheTtlMs?: number;
  /** Subscribe to the KMS's key-state events; false keeps every cached key to 1 s. @default true */
  readonly kmsKeyEvents?: boolean;
  /**
   * Timeouts and connection caps of the listener (see @airlock/pki ListenerLimitsOptions). There is
   * no whole-request timeout: a 5 GiB upload may rightly take long; a body that stops progressing is
   * cut off by the body-progress timeout instead.
   * @default DEFAULT_LISTENER_LIMITS with requestTimeoutMs 0
   */
  readonly limits?: ListenerLimitsOptions;
  /**
   * The process-wide budget of public connections, shared with the process's other listeners
   * (see @airlock/pki ConnectionBudget). @default none: only this listener's own caps
   */
  readonly connectionBudget?: ConnectionBudget;
  /**
   * Other holders of KMS key material in this process, each on a key-event subscription of its own
   * (the data plane's sealing keys), by name: the store's `/health` reports each one's state in
   * `keyEventHolders`, beside its own in `keyEvents`, so that `airlock status` shows every
   * subscription of the data plane. Names are lower-case words joined by `-`. @default none
   */
  readonly keyEventHolders?: Readonly<Record<string, () => KeyEventStatus>>;
  readonly logger?: Logger;
}


export type ResolvedObjectStoreServerConfig = DeepReadonly<{
  dataDir: string;
  tls: { cert: string; key: string };
  host: string;
  port: number;
  region: string;
  defaultKeyId: string;
  benchmarkPlaintextBodies: boolean;
  keyCacheTtlMs: number;
  kmsKeyEvents: boolean;
}> & {
  readonly kms: Kms | KmsAdmin;
  readonly lookupSecret: ObjectStoreServerOptions['lookupSecret'];
  readonly limits: ResolvedListenerLimits;
  readonly connectionBudget: ConnectionBudget | undefined;
  readonly keyEventHolders: Readonly<Record<string, () => KeyEventStatus>>;
  readonly logger: Logger;
};

export function resolveObjectStoreServerConfig(options: ObjectStoreServerOptions): ResolvedObjectStoreServerConfig {
  const region = options.region ?? 'us-east-1';
  if (!/^[a-z]{2}(-[a-z]+)+-\d+$/.test(region)) throw configError('objectStore.region', 'must look like an AWS region, e.g. us-east-1');
  const resolved = freezeConfig({
    dataDir: configCheck.nonEmptyString('objectStore.dataDir', options.dataDir),
    tls: {
      cert: configCheck.nonEmptyString('objectStore.tls.cert', options.tls.cert),
      key: configCheck.nonEmptyString('objectStore.tls.key', options.tls.key),
    },
    host: options.host ?? '127.0.0.1',
    port: configCheck.integer('objectStore.port', options.port ?? 0, 0, 65535),
    region,
    defaultKeyId: configCheck.nonEmptyString('objectStore.defaultKeyId', options.defaultKeyId ?? 'alias/airlock/s3'),
    benchmarkPlaintextBodies: options.benchmarkPlaintextBodies ?? false,
    keyCacheTtlMs: configCheck.integer('objectStore.keyCacheTtlMs', options.keyCacheTtlMs ?? 300_000, 0, 86_400_000),
    kmsKeyEvents: options.kmsKeyEvents ?? true,
  });
  const limits = resolveListenerLimits(options.limits, 'objectStore.limits', OBJECT_STORE_LISTENER_LIMIT_DEFAULTS);
  const keyEventHolders = Object.freeze({ ...(options.keyEventHolders ?? {}) });
  for (const [name, status] of Object.entries(keyEventHolders)) {
    if (!/^[a-z]+(-[a-z]+)*$/.test(name) || name.length > 32) throw configError(`objectStore.keyEventHolders.${name}`, 'must be named with lower-case words joined by -');
    if (typeof status !== 'function') throw configError(`objectStore.keyEventHolders.${name}`, 'must be a function returning a KeyEventStatus');
  }
  return Object.freeze({ ...resolved, limits, connectionBudget: options.connectionBudget, keyEventHolders, kms: options.kms, lookupSecret: options.lookupSecret, logger: options.logger ?? createLogger({ name: 'objectstore' }) });
}

export interface ObjectStoreServer {
  /** `https://host:port` (path-style: `https://host:port/bucket/key`). */
  readonly url: string;
  readonly port: number;
  readonly region: string;
  /** The key cache's KMS key-event subscription: `live` means keys are cached for minutes and revoked on the event. */
  keyEventStatus(): KeyEventStatus;
  /** Resolves true once the key-event subscription is live, false after `timeoutMs` or if it cannot be. */
  waitForKeyEvents(timeoutMs: number): Promise<boolean>;
  close(): Promise<void>;
}

/** Opens the store directory (its key comes from the KMS) and starts the HTTPS listener. */
export async function createObjectStoreServer(config: ResolvedObjectStoreServerConfig): Promise<ObjectStoreServer> {
  const engine = await StorageEngine.open({
    dataDir: config.dataDir,
    kms: config.kms,
    defaultKeyId: config.defaultKeyId,
    log: config.logger,
    benchmarkPlaintextBodies: config.benchmarkPlaintextBodies,
    keyCacheTtlMs: config.keyCacheTtlMs,
    kmsKeyEvents: config.kmsKeyEvents,
  });
  try {
    const listener = await startS3Listener({
      engine,
      lookupSecret: config.lookupSecret,
      tls: config.tls,
      host: config.host,
      port: config.port,
      region: config.region,
      limits: config.limits,
      ...(config.connectionBudget === undefined ? {} : { connectionBudget: config.connectionBudget }),
      keyEventHolders: config.keyEventHolders,
      log: config.logger,
    });
    config.logger.info({ url: listener.url, region: config.region }, 'object store listening');
    let closing: Promise<void> | undefined;
    return {
      url: listener.url,
      port: listener.port,
      region: config.region,
      keyEventStatus: () => engine.keyEventStatus(),
      waitForKeyEvents: (timeoutMs) => engine.waitForKeyEvents(timeoutMs),
      close() {
        closing ??= (async () => {
          await listener.close();
          await engine.close();
        })();
        return closing;
      },
    };
  } catch (error) {
    await engine.close();
    throw error;
  }
}
