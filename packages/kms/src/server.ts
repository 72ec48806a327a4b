// The embedded AWS-KMS-compatible server: HTTPS only, AWS JSON 1.1 protocol, SigV4-authenticated, audited.
import { createHash, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { AirlockError, configCheck, configError, createLogger, freezeConfig, type DeepReadonly, type Logger } from '@airlock/common';
import { loadRootKey, resolveRootKeySource, verifyRequest, type RootKeyOptions, type RootKeySource } from '@airlock/crypto';
import { createLimitedHttpsServer, resolveListenerLimits, tlsServerOptions, type ConnectionBudget, type ListenerLimitsOptions, type ResolvedListenerLimits } from '@airlock/pki';
import { AccessKeys, type AccessKey } from './internal/access-keys.js';
import { AuditLog, verifyAuditLog, type AuditAnchor, type AuditVerification } from './internal/audit-log.js';
import { KmsEngine, type KeyStateChange, type OperationAudit } from './internal/engine.js';
import { KEY_EVENTS_OPERATION, KeyEventHub } from './internal/key-events.js';
import { RecordStore } from './internal/record-store.js';
import { kmsWireError } from './wire-errors.js';

export type { AccessKey } from './internal/access-keys.js';
export type { AuditVerification } from './internal/audit-log.js';

export type { RootKeyOptions } from '@airlock/crypto';

export interface KmsServerOptions {
  /** Directory holding the key store, audit log and (by default) the root key file. Created if missing. */
  readonly dataDir: string;
  /** TLS certificate and key (PEM) for the listener. */
  readonly tls: { readonly cert: string; readonly key: string };
  /** @default "127.0.0.1" */
  readonly host?: string;
  /** @default 0 (any free port) */
  readonly port?: number;
  /** Region in ARNs and the SigV4 credential scope. @default "us-east-1" */
  readonly region?: string;
  /** 12-digit account id in ARNs. @default "111122223333" */
  readonly accountId?: string;
  /** Where the root key comes from. @default { file: "<dataDir>/root.key" } */
  readonly rootKey?: RootKeyOptions;
  /** Largest accepted request body. @default 65536 */
  readonly maxBodyBytes?: number;
  /** Allowed clock skew for signed requests, in seconds. @default 900 (15 minutes, as AWS) */
  readonly maxSkewSeconds?: number;
  /** Key-lifecycle clock in epoch milliseconds: deletion windows and rotation dates (tests move it). Signatures are always checked against real time. @default Date.now */
  readonly now?: () => number;
  /**
   * Timeouts and connection caps of the listener (see @airlock/pki ListenerLimitsOptions). KMS
   * requests are small, so a request's head must arrive in 10 s and the whole request in 30 s.
   * @default DEFAULT_LISTENER_LIMITS with headersTimeoutMs 10000 and requestTimeoutMs 30000
   */
  readonly limits?: ListenerLimitsOptions;
  /**
   * The process-wide budget of public connections, shared with the process's other listeners
   * (see @airlock/pki ConnectionBudget). @default none: only this listener's own caps
   */
  readonly connectionBudget?: ConnectionBudget;
  /**
   * Key-event streams (AirlockSubscribeKeyEvents, docs/kms.md): how often each stream carries a
   * heartbeat, at most 250 ms. @default 100
   */
  readonly keyEventHeartbeatMs?: number;
  /**
   * How long a key-state change waits for each stream's connection to take its event before the
   * stream is cut off (and its client falls back to its 1 s cache bound). The request that made the
   * change is answered only after this. @default 100
   */
  readonly keyEventPublishTimeoutMs?: number;
  readonly logger?: Logger;
}

/** The KMS's own defaults over DEFAULT_LISTENER_LIMITS. */
export const KMS_LISTENER_LIMIT_DEFAULTS: ListenerLimitsOptions = Object.freeze({ headersTimeoutMs: 10_000, requestTimeoutMs: 30_000 });

export type ResolvedKmsServerConfig = DeepReadonly<{
  dataDir: string;
  tls: { cert: string; key: string };
  host: string;
  port: number;
  region: string;
  accountId: string;
  rootKey: RootKeySource;
  maxBodyBytes: number;
  maxSkewSeconds: number;
  keyEventHeartbeatMs: number;
  keyEventPublishTimeoutMs: number;
  now: () => number;
}> & { readonly limits: ResolvedListenerLimits; readonly connectionBudget: ConnectionBudget | undefined; readonly logger: Logger };

export function resolveKmsServerConfig(options: KmsServerOptions, env: NodeJS.ProcessEnv = process.env): ResolvedKmsServerConfig {
  const dataDir = configCheck.nonEmptyString('kms.dataDir', options.dataDir);
  const region = options.region ?? 'us-east-1';
  if (!/^[a-z]{2}(-[a-z]+)+-\d+$/.test(region)) throw configError('kms.region', 'must look like an AWS region, e.g. us-east-1');
  const accountId = options.accountId ?? '111122223333';
  if (!/^\d{12}$/.test(accountId)) throw configError('kms.accountId', 'must be 12 digits');
  const rootKey = resolveRootKeySource(dataDir, options.rootKey, env);
  const logger = options.logger ?? createLogger({ name: 'kms' });
  const resolved = freezeConfig({
    dataDir,
    tls: { cert: configCheck.nonEmptyString('kms.tls.cert', options.tls.cert), key: configCheck.nonEmptyString('kms.tls.key', options.tls.key) },
    host: options.host ?? '127.0.0.1',
    port: configCheck.integer('kms.port', options.port ?? 0, 0, 65535),
    region,
    accountId,
    rootKey,
    maxBodyBytes: configCheck.integer('kms.maxBodyBytes', options.maxBodyBytes ?? 65536, 1024, 16 * 1024 * 1024),
    maxSkewSeconds: configCheck.integer('kms.maxSkewSeconds', options.maxSkewSeconds ?? 900, 1, 3600),
    keyEventHeartbeatMs: configCheck.integer('kms.keyEventHeartbeatMs', options.keyEventHeartbeatMs ?? 100, 10, 250),
    keyEventPublishTimeoutMs: configCheck.integer('kms.keyEventPublishTimeoutMs', options.keyEventPublishTimeoutMs ?? 100, 1, 10_000),
    now: options.now ?? Date.now,
  });
  const limits = resolveListenerLimits(options.limits, 'kms.limits', KMS_LISTENER_LIMIT_DEFAULTS);
  return Object.freeze({ ...resolved, limits, connectionBudget: options.connectionBudget, logger });
}

export interface KmsServer {
  /** `https://host:port` */
  readonly url: string;
  readonly port: number;
  readonly region: string;
  /** Issues a new access key (stored sealed; the secret is returned once). */
  createAccessKey(description: string): AccessKey;
  listAccessKeys(): Array<Omit<AccessKey, 'secretAccessKey'>>;
  /** Runs due deletions and rotations now (they also run before every request and every 10 s). */
  maintain(): void;
  /** Open key-event streams (AirlockSubscribeKeyEvents). */
  keyEventSubscribers(): number;
  /** Verifies the audit log's chain against the store's anchor. */
  verifyAudit(): Promise<AuditVerification>;
  close(): Promise<void>;
}

const TARGET_PREFIX = 'TrentService.';
const CONTENT_TYPE = 'application/x-amz-json-1.1';

async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (Number.isFinite(declared) && declared > limit) {
    throw new AirlockError('PAYLOAD_TOO_LARGE', `Request body exceeds the ${limit}-byte limit`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of req) {
      size += (chunk as Buffer).byteLength;
      if (size > limit) throw new AirlockError('PAYLOAD_TOO_LARGE', `Request body exceeds the ${limit}-byte limit`);
      chunks.push(chunk as Buffer);
    }
  } catch (error) {
    // The only other way reading fails is the client going away mid-body ("aborted"): its fault, not ours.
    if (error instanceof AirlockError) throw error;
    throw new AirlockError('INCOMPLETE_BODY', 'The request body ended before it was complete', { cause: error });
  }
  return Buffer.concat(chunks, size);
}

/** Starts the KMS: loads the root key, opens the store and audit log, and listens. */
export async function createKmsServer(config: ResolvedKmsServerConfig): Promise<KmsServer> {
  const log = config.logger;
  await mkdir(config.dataDir, { recursive: true, mode: 0o700 });
  const { key: rootKey, description } = await loadRootKey(config.rootKey, log);
  const auditPath = join(config.dataDir, 'audit.log');
  let store: RecordStore | undefined;
  let audit: AuditLog;
  let engine: KmsEngine;
  let accessKeys: AccessKeys;
  const hub = new KeyEventHub({ heartbeatMs: config.keyEventHeartbeatMs, publishTimeoutMs: config.keyEventPublishTimeoutMs, now: config.now, log });
  try {
    store = RecordStore.open(join(config.dataDir, 'kms.db'), rootKey);
    audit = await AuditLog.open(auditPath, rootKey, store.all<AuditAnchor>('meta')[0], (bytes) =>
      log.warn({ file: auditPath, bytes }, 'the KMS audit log ended in an incomplete record, an append cut short by a crash; it was not anchored and has been removed'),
    );
    const auditLog = audit;
    // Every published change is a record in the audit chain, next to the request that caused it.
    const onKeyStateChange = (change: KeyStateChange): void => {
      const eventSeq = hub.publish(change);
      auditLog.append({
        time: new Date(config.now()).toISOString(),
        accessKeyId: null,
        operation: 'AirlockKeyStateChange',
        keyArn: change.keyArn,
        keyVersion: change.version,
        encryptionContext: null,
        outcome: 'Success',
        sourceIp: null,
        keyState: change.state,
        keyChange: change.change,
        eventSeq,
      });
    };
    engine = new KmsEngine({ store, rootKey, region: config.region, accountId: config.accountId, now: config.now, log, onKeyStateChange });
    accessKeys = new AccessKeys(store);
  } catch (error) {
    // A refused start (tampered audit log or store) leaves no open database and no root key in memory.
    hub.close();
    store?.close();
    rootKey.fill(0);
    throw error;
  }
  log.info({ rootKey: description, keys: engine.keyCount }, 'KMS state loaded');

  const persistAnchor = (): void => {
    const next = audit.flush();
    if (next !== undefined) store.transaction((tx) => tx.put('meta', 'audit-anchor', next));
  };

  /** AirlockSubscribeKeyEvents input: `KeyIds` (any KeyId form, resolved now), or none for every key. */
  const subscribedKeyIds = (input: Record<string, unknown>): ReadonlySet<string> | undefined => {
    const ids = input.KeyIds;
    if (ids === undefined) return undefined;
    if (!Array.isArray(ids) || ids.length === 0 || ids.length > 1000 || !ids.every((id) => typeof id === 'string' && id.length > 0 && id.length <= 2048)) {
      throw new AirlockError('INVALID_ARGUMENT', 'KeyIds must be a list of 1 to 1000 key identifiers');
    }
    return new Set((ids as string[]).map((id) => engine.resolveKeyId(id)));
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const started = performance.now();
    const requestId = randomUUID();
    // Read now: the socket is gone once a refused body has been abandoned.
    const sourceIp = (req.socket as typeof req.socket | null)?.remoteAddress ?? null;
    let operation = 'Unknown';
    let accessKeyId: string | null = null;
    const auditInfo: OperationAudit = {};
    let status = 200;
    let body: string;
    // Set when the request opens a key-event stream: the keys it asked for (undefined: all keys).
    let subscription: { keyIds: ReadonlySet<string> | undefined } | undefined;
    try {
      if (req.method !== 'POST' || (req.url ?? '/').split('?')[0] !== '/') {
        throw new AirlockError('UNKNOWN_OPERATION', 'Only POST / is served (AWS JSON 1.1 protocol)');
      }
      const target = req.headers['x-amz-target'];
      // Named before authentication, so that refused requests are audited under the operation they claimed.
      if (typeof target === 'string' && target.startsWith(TARGET_PREFIX)) operation = target.slice(TARGET_PREFIX.length, TARGET_PREFIX.length + 64);
      const raw = await readBody(req, config.maxBodyBytes);
      const verified = await verifyRequest({
        method: req.method,
        path: '/',
        rawQuery: (req.url ?? '/').split('?')[1] ?? '',
        headers: req.headersDistinct,
        payloadHash: createHash('sha256').update(raw).digest('hex'),
        lookupSecret: (id: string) => accessKeys.secretFor(id),
        region: config.region,
        service: 'kms',
        now: new Date(),
        maxSkewSeconds: config.maxSkewSeconds,
        normalizePath: true,
      });
      verified.signingKey.fill(0);
      // The target selects the operation; unsigned, a signature over one body would authorise any operation on it.
      if (target !== undefined && !verified.signedHeaders.includes('x-amz-target')) {
        throw new AirlockError('AUTH_MALFORMED', 'X-Amz-Target must be included in SignedHeaders');
      }
      accessKeyId = verified.accessKeyId;
      const name = typeof target === 'string' && target.startsWith(TARGET_PREFIX) ? target.slice(TARGET_PREFIX.length) : undefined;
      const handler = name === undefined ? undefined : engine.operations.get(name);
      if (name === undefined || (handler === undefined && name !== KEY_EVENTS_OPERATION)) {
        throw new AirlockError('UNKNOWN_OPERATION', `Unknown operation ${typeof target === 'string' ? target : '(missing X-Amz-Target)'}`);
      }
      let input: unknown;
      try {
        input = raw.byteLength === 0 ? {} : JSON.parse(raw.toString('utf8'));
      } catch {
        throw new AirlockError('MALFORMED_REQUEST', 'Request body is not valid JSON');
      }
      if (typeof input !== 'object' || input === null || Array.isArray(input)) throw new AirlockError('MALFORMED_REQUEST', 'Request body must be a JSON object');
      engine.maintain();
      if (handler === undefined) {
        subscription = { keyIds: subscribedKeyIds(input as Record<string, unknown>) };
        body = '';
      } else {
        body = JSON.stringify(await handler(input as Record<string, unknown>, auditInfo));
      }
      // A change this request caused (or a deletion that maintain() completed) is on its way to every subscriber before the answer.
      await hub.settled();
    } catch (error) {
      const e = AirlockError.from(error);
      const wire = kmsWireError(e);
      status = wire.status;
      if (status >= 500) log.error({ err: error, operation, requestId }, 'KMS request failed');
      body = JSON.stringify({ __type: wire.type, message: status >= 500 ? 'An internal error occurred' : e.message });
    }
    const outcome = status === 200 ? 'Success' : (JSON.parse(body) as { __type: string }).__type;
    if (subscription !== undefined && status === 200) {
      audit.append({ time: new Date(config.now()).toISOString(), accessKeyId, operation, keyArn: null, keyVersion: null, encryptionContext: null, outcome, sourceIp });
      hub.subscribe(res, subscription.keyIds, engine.keyStates(subscription.keyIds), requestId);
      log.debug({ operation, accessKeyId, keys: subscription.keyIds?.size ?? 'all', requestId }, 'KMS key-event stream opened');
      return;
    }
    // Every request is audited, refused ones included: accessKeyId is null unless the signature verified.
    {
      audit.append({
        time: new Date(config.now()).toISOString(),
        accessKeyId,
        operation,
        keyArn: auditInfo.keyArn ?? null,
        keyVersion: auditInfo.keyVersion ?? null,
        encryptionContext: auditInfo.encryptionContext ?? null,
        outcome,
        sourceIp,
      });
    }
    res.writeHead(status, {
      'content-type': CONTENT_TYPE,
      'content-length': Buffer.byteLength(body),
      'x-amzn-requestid': requestId,
      ...(status === 200 ? {} : { 'x-amzn-errortype': outcome }),
    });
    res.end(body);
    log.debug({ operation, status, outcome, accessKeyId, ms: Math.round(performance.now() - started), requestId }, 'KMS request');
  };

  const listener = createLimitedHttpsServer(
    tlsServerOptions({ cert: config.tls.cert, key: config.tls.key }),
    {
      request: (req, res) => {
        // Liveness over TLS like everything else; it does no authentication and touches no key.
        if (req.method === 'GET' && req.url === '/health') {
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': 15 });
          res.end('{"status":"ok"}');
          return;
        }
        handle(req, res).catch((error: unknown) => {
          log.error({ err: error }, 'KMS request handler crashed');
          if (!res.headersSent) res.writeHead(500, { 'content-type': CONTENT_TYPE });
          res.end(JSON.stringify({ __type: 'KMSInternalException', message: 'An internal error occurred' }));
        });
      },
    },
    { name: 'kms', log, limits: config.limits, ...(config.connectionBudget === undefined ? {} : { budget: config.connectionBudget }) },
  );
  const { server } = listener;
  server.on('tlsClientError', (error: NodeJS.ErrnoException) => {
    // Handshake timeouts are counted by the listener limits, whose log stays bounded under a flood.
    if (error.code !== 'ERR_TLS_HANDSHAKE_TIMEOUT') log.debug({ err: error }, 'TLS handshake refused');
  });

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', (error) => reject(AirlockError.from(error)));
      server.listen(config.port, config.host, resolve);
    });
  } catch (error) {
    // E.g. the port is taken: release what start opened, as close() would.
    hub.close();
    audit.close();
    engine.close();
    store.close();
    rootKey.fill(0);
    throw error;
  }
  const port = (server.address() as AddressInfo).port;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  const url = `https://${host}:${port}`;
  const timers = [setInterval(persistAnchor, 1000), setInterval(() => engine.maintain(), 10_000)];
  for (const timer of timers) timer.unref();
  log.info({ url, region: config.region }, 'KMS listening');

  let closed: Promise<void> | undefined;
  return {
    url,
    port,
    region: config.region,
    createAccessKey: (desc) => accessKeys.create(desc, config.now()),
    listAccessKeys: () => accessKeys.list(),
    maintain: () => engine.maintain(),
    keyEventSubscribers: () => hub.subscriberCount,
    verifyAudit: () => {
      persistAnchor();
      return verifyAuditLog(auditPath, rootKey, store.all<AuditAnchor>('meta')[0]);
    },
    close() {
      closed ??= (async () => {
        for (const timer of timers) clearInterval(timer);
        // Streams never end by themselves; their clients see the end and fall back to their short bound.
        hub.close();
        server.closeIdleConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
        const last = audit.close();
        if (last !== undefined) store.transaction((tx) => tx.put('meta', 'audit-anchor', last));
        engine.close();
        store.close();
        rootKey.fill(0);
      })();
      return closed;
    },
  };
}

/** Verifies a KMS data directory's audit log offline (the `airlock kms audit verify` command). */
export async function verifyKmsAudit(
  options: Pick<KmsServerOptions, 'dataDir' | 'rootKey' | 'logger'>,
  env: NodeJS.ProcessEnv = process.env,
): Promise<AuditVerification> {
  const log = options.logger ?? createLogger({ name: 'kms' });
  const dbPath = join(options.dataDir, 'kms.db');
  // Opening would create a fresh store (and root key file), which then "verifies" as an empty log.
  if (!existsSync(dbPath)) throw new AirlockError('NOT_FOUND', `no KMS store at ${dbPath}`);
  const { key } = await loadRootKey(resolveRootKeySource(options.dataDir, options.rootKey, env), log);
  const store = RecordStore.open(dbPath, key);
  try {
    return await verifyAuditLog(join(options.dataDir, 'audit.log'), key, store.all<AuditAnchor>('meta')[0]);
  } finally {
    store.close();
    key.fill(0);
  }
}
