// `airlock control-plane serve`: the API, dispatch and tunnel listeners of a local control plane, with its registry, tokens and action queue.
import { mkdir, readFile, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { AirlockError, createLogger, writeFileAtomic, type Logger } from '@airlock/common';
import {
  importLegacyState,
  openActionQueue,
  openApiTokenStore,
  openClusterRegistry,
  openDatabase,
  openRunService,
  resolveDatabaseConfig,
  startApiServer,
  startDispatchServer,
  startTunnelEndpoint,
  type ApiTokenStore,
  type ClusterRegistry,
  type ControlPlaneDatabase,
  type ControlPlaneKey,
} from '@airlock/control-plane';
import { listenerLimitsFromEnv } from '@airlock/pki';
import { processConnectionBudget } from '../internal/connection-budget.js';
import { layout, LOCAL_CLUSTER_NAME, readDataFile, resolveDataDir } from '../internal/data-dir.js';
import { ensureLocalCa, issueLocalServerCertificate, openLocalControlPlaneKey, type ControlPlaneKeyFlags } from '../internal/local-ca.js';
import { print } from '../internal/output.js';
import type { ControlPlaneDatabaseInfo } from '@airlock/verify';
import { announceReady, restrictFileCreationMode, serveUntilSignalled, type PlaneEndpoint } from '../internal/plane-process.js';
import { logRateLimit, type LogRateFlags } from '../internal/log-flags.js';

/** Where the control plane keeps its state. PostgreSQL when a URL is given, else the data directory's encrypted SQLite file. */
export interface DatabaseFlags extends ControlPlaneKeyFlags {
  /** `postgres://…`; the password, if any, is better passed in AIRLOCK_DB_URL than on the command line. @default $AIRLOCK_DB_URL, else SQLite */
  readonly db?: string;
  /** PEM file of the CA that signed the PostgreSQL server certificate. @default $AIRLOCK_DB_CA */
  readonly dbCa?: string;
  /** Allow PostgreSQL over a Unix socket without TLS. */
  readonly dbAllowPlaintextSocket?: boolean;
}

export interface ControlPlaneServeOptions extends DatabaseFlags, LogRateFlags {
  readonly dataDir?: string;
  readonly host: string;
  readonly apiPort: number;
  readonly dispatchPort: number;
  readonly tunnelPort: number;
  /** How long a run's data plane may stay silent, while its action waits in the queue, before the run ends FAILED (DATA_PLANE_LOST), in seconds. @default 120 */
  readonly runLease?: number;
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
}

/** <data-dir>/control-plane/endpoint.json: the control plane's listeners, read by the data plane to dial out. */
export interface ControlPlaneEndpointFile {
  readonly api: string;
  readonly dispatch: string;
  readonly tunnel: string;
  readonly caBundle: string;
  /** The admin API token's file (the token itself is never written here). */
  readonly tokenFile: string;
  /** The database, for `airlock verify`: backend, a description without credentials, and the SQLite files. */
  readonly database: ControlPlaneDatabaseInfo;
}

/** How long the local agent's bootstrap token stays redeemable. */
const LOCAL_BOOTSTRAP_TTL_MS = 60 * 60 * 1000;

/**
 * Hands the local data plane a one-time bootstrap token when it has nothing valid to connect with:
 * on first start, after a revocation, or once every certificate it was issued has expired (a stack
 * that stayed down longer than the certificate lifetime).
 */
async function ensureLocalBootstrapToken(dataDir: string, registry: ClusterRegistry, log: Logger): Promise<boolean> {
  const record = await registry.cluster(LOCAL_CLUSTER_NAME);
  const now = Date.now();
  const usable = record !== undefined && !record.revoked && record.certificates.some((certificate) => certificate.expiresAt.getTime() > now + 60_000);
  if (usable) return false;
  const bootstrap = await registry.createBootstrapToken(LOCAL_CLUSTER_NAME, LOCAL_BOOTSTRAP_TTL_MS);
  const path = layout.bootstrapToken(dataDir);
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await writeFileAtomic(path, `${bootstrap.token}\n`, { mode: 0o600 });
  log.info({ event: 'controlplane.bootstrap_token_written', cluster: LOCAL_CLUSTER_NAME, path, expiresAt: bootstrap.expiresAt.toISOString() }, 'bootstrap token for the local data plane written');
  return true;
}

/** Creates the local admin's API token on first start (0600); later starts keep it. */
async function ensureClientToken(dataDir: string, tokens: ApiTokenStore, log: Logger): Promise<void> {
  const path = layout.clientToken(dataDir);
  const stored = await readDataFile(path);
  if (stored !== undefined) {
    try {
      await tokens.authenticate(stored.trim());
      return;
    } catch (error) {
      log.warn({ event: 'controlplane.client_token_replaced', path, code: AirlockError.from(error).code }, 'the stored API token no longer works; issuing a new one');
    }
  }
  const issued = await tokens.createToken({ subject: 'local-admin', roles: [{ project: '*', role: 'admin' }] });
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await writeFileAtomic(path, `${issued.token}\n`, { mode: 0o600 });
  log.info({ event: 'controlplane.client_token_written', path, principalId: issued.id }, 'admin API token written');
}

export interface LocalControlPlane {
  /** Where its state is, without credentials. */
  readonly database: string;
  readonly endpoints: readonly PlaneEndpoint[];
  readonly endpointFile: ControlPlaneEndpointFile;
  close(): Promise<void>;
}

/**
 * Opens the control-plane database of a data directory: PostgreSQL when `--db`/AIRLOCK_DB_URL names
 * one, else `control-plane/control-plane.db`; its keys are wrapped by the control plane's own root key.
 * A data directory of the JSON-file release is imported on the first start.
 */
export async function openLocalDatabase(
  dataDir: string,
  flags: DatabaseFlags,
  key: ControlPlaneKey,
  log: Logger,
  env: NodeJS.ProcessEnv = process.env,
): Promise<ControlPlaneDatabase> {
  const url = flags.db ?? env.AIRLOCK_DB_URL;
  const caFile = flags.dbCa ?? env.AIRLOCK_DB_CA;
  const database = await openDatabase(
    resolveDatabaseConfig({
      ...(url === undefined || url === '' ? { path: layout.controlPlaneDatabase(dataDir) } : { url }),
      ...(caFile === undefined ? {} : { caPem: await readFile(caFile, 'utf8') }),
      ...(flags.dbAllowPlaintextSocket === true ? { allowPlaintextUnixSocket: true } : {}),
      key,
      log,
    }),
  );
  try {
    const imported = await importLegacyState(
      database,
      { clusters: layout.legacyClusterRegistry(dataDir), apiTokens: layout.legacyApiTokens(dataDir), actions: layout.legacyActionQueue(dataDir) },
      log,
    );
    if (imported !== undefined) {
      print(
        `Imported ${imported.clusters} cluster(s), ${imported.apiTokens} API token(s) and ${imported.actions} action(s) from the previous release's JSON files into ${database.description}; the files were removed.`,
      );
    }
  } catch (error) {
    await database.close();
    throw error;
  }
  return database;
}

/**
 * Starts the control plane of a data directory: API, dispatch and tunnel listeners, each with a fresh server certificate
 * and the listener limits that `env` sets (AIRLOCK_LISTENER_*, docs/listener-limits.md).
 */
export async function startLocalControlPlane(
  dataDir: string,
  options: Omit<ControlPlaneServeOptions, 'dataDir' | 'logLevel'>,
  log: Logger,
  env: NodeJS.ProcessEnv = process.env,
): Promise<LocalControlPlane> {
  const key = await openLocalControlPlaneKey(dataDir, options, log);
  let ca: Awaited<ReturnType<typeof ensureLocalCa>>;
  let database: ControlPlaneDatabase;
  try {
    ca = await ensureLocalCa(dataDir, key, log);
    database = await openLocalDatabase(dataDir, options, key, log);
  } catch (error) {
    key.dispose();
    throw error;
  }
  const closers: Array<() => Promise<void>> = [
    async () => {
      await database.close();
      key.dispose();
    },
  ];
  const closeAll = async (): Promise<void> => {
    for (const close of closers.reverse()) await close().catch(() => undefined);
  };
  try {
    const registry = openClusterRegistry({ ca, database, log });
    const tokens = openApiTokenStore({ database, log });
    const queue = await openActionQueue({ database, log });
    closers.push(() => queue.close());
    await ensureClientToken(dataDir, tokens, log);
    await ensureLocalBootstrapToken(dataDir, registry, log);

    // One budget for the three public listeners: near the descriptor limit they refuse new clients
    // while the reserve stays for the database, logs and the control plane's own connections.
    const budget = await processConnectionBudget();
    const shared = budget === undefined ? {} : { connectionBudget: budget };
    const tunnelTls = await issueLocalServerCertificate(ca);
    const tunnel = await startTunnelEndpoint({
      tls: tunnelTls,
      ca: ca.cert,
      host: options.host,
      port: options.tunnelPort,
      log,
      limits: listenerLimitsFromEnv(env, 'tunnel'),
      ...shared,
      isClusterAllowed: (cluster, fingerprint) => registry.isClusterAllowed(cluster, fingerprint),
    });
    closers.push(() => tunnel.close());
    const dispatch = await startDispatchServer({
      tls: await issueLocalServerCertificate(ca),
      ca: ca.cert,
      host: options.host,
      port: options.dispatchPort,
      registry,
      queue,
      log,
      limits: listenerLimitsFromEnv(env, 'dispatch'),
      ...shared,
    });
    closers.push(() => dispatch.close());
    const runs = await openRunService({
      database,
      queue,
      clusters: registry,
      tunnel,
      clusterLastSeen: (cluster) => dispatch.lastHeartbeatAt(cluster),
      ...(options.runLease === undefined ? {} : { runLeaseMs: options.runLease * 1000 }),
      log,
    });
    closers.push(() => runs.close());
    const api = await startApiServer({
      tls: await issueLocalServerCertificate(ca),
      host: options.host,
      port: options.apiPort,
      tokens,
      registry,
      clusterStatus: {
        tunnelConnected: (cluster) => tunnel.connection(cluster) !== undefined,
        lastHeartbeatAt: (cluster) => dispatch.lastHeartbeatAt(cluster),
        agentVersion: (cluster) => dispatch.agentVersion(cluster),
        keys: (cluster) => dispatch.agent(cluster)?.keys,
      },
      runs,
      log,
      limits: listenerLimitsFromEnv(env, 'api'),
      ...shared,
    });
    closers.push(() => api.close());

    const endpointFile: ControlPlaneEndpointFile = {
      api: api.url,
      dispatch: dispatch.url,
      tunnel: tunnel.url,
      caBundle: layout.caCert(dataDir),
      tokenFile: layout.clientToken(dataDir),
      database: { backend: database.backend, description: database.description, files: [...database.files()] },
    };
    await writeFileAtomic(layout.controlPlaneEndpoint(dataDir), `${JSON.stringify(endpointFile, null, 2)}\n`, { mode: 0o644 });
    return {
      database: database.description,
      endpoints: [
        { name: 'api', plane: 'control', url: api.url },
        { name: 'dispatch', plane: 'control', url: dispatch.url },
        { name: 'tunnel', plane: 'control', url: tunnel.url },
      ],
      endpointFile,
      async close() {
        await closeAll();
        await rm(layout.controlPlaneEndpoint(dataDir), { force: true });
      },
    };
  } catch (error) {
    await closeAll();
    throw error;
  }
}

export async function runControlPlaneServe(options: ControlPlaneServeOptions): Promise<void> {
  restrictFileCreationMode();
  const dataDir = resolveDataDir(options.dataDir);
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const log = createLogger({ name: 'control-plane', level: options.logLevel, rateLimit: logRateLimit(options) });
  const plane = await startLocalControlPlane(dataDir, options, log);
  const child = process.connected;
  // Stop signals are trapped before anything says "Press Ctrl-C": a Ctrl-C right after it must stop the plane, not kill it.
  const stopped = serveUntilSignalled('the control plane', () => plane.close(), { quiet: child });
  if (!child) {
    print(`Airlock control plane running from ${dataDir}`);
    print(`  database:  ${plane.database}`);
    print(`  API:       ${plane.endpointFile.api}   (Connect, gRPC and gRPC-web; bearer token in ${plane.endpointFile.tokenFile})`);
    print(`  dispatch:  ${plane.endpointFile.dispatch}   (data-plane agents: registration, heartbeats, actions)`);
    print(`  tunnel:    ${plane.endpointFile.tunnel}   (mTLS; data-plane agents dial it)`);
    print(`  CA bundle: ${plane.endpointFile.caBundle}`);
    print('Press Ctrl-C to stop.');
  }
  announceReady('control', plane.endpoints);
  await stopped;
}
