// `airlock data-plane serve`: the data plane of a data directory — KMS, object store, run-data store, and the agent that dials the control plane.
import { mkdir, readFile, rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { resolve } from 'node:path';
import { AirlockError, createLogger, type Logger } from '@airlock/common';
import {
  createLocalProcessExecutor,
  createRevocableSealingKeys,
  createRunDataStore,
  DEFAULT_DATA_PLANE_KEY_ID,
  loadOrCreateSealingKeys,
  openKmsKeyVault,
  startDataPlaneAgent,
  tunnelServiceRoutes,
  type DataPlaneAgent,
  type DataPlaneAgentTunnelOptions,
  type RunDataStore,
  type TaskIsolationMode,
} from '@airlock/data-plane';
import { createCachingKms } from '@airlock/kms';
import { createS3ObjectStore } from '@airlock/objectstore';
import { listenerLimitsFromEnv } from '@airlock/pki';
import { processConnectionBudget } from '../internal/connection-budget.js';
import { layout, readDataFile, resolveDataDir } from '../internal/data-dir.js';
import { connectLocalKms, parseCredentialsFile } from '../internal/kms-client.js';
import { pickControlPlaneKeyFlags, type ControlPlaneKeyFlags } from '../internal/local-ca.js';
import { print } from '../internal/output.js';
import { announceReady, planeFlagsHint, restrictFileCreationMode, serveUntilSignalled, type PlaneEndpoint } from '../internal/plane-process.js';
import type { ControlPlaneEndpointFile } from './control-plane.js';
import { startLocalKms } from './kms.js';
import { startLocalObjectStore } from './objectstore.js';
import { logRateLimit, type LogRateFlags } from '../internal/log-flags.js';

export interface DataPlaneServeOptions extends ControlPlaneKeyFlags, LogRateFlags {
  readonly dataDir?: string;
  readonly host: string;
  readonly kmsPort: number;
  readonly s3Port: number;
  /** The control plane's dispatch URL. @default from <data-dir>/control-plane/endpoint.json */
  readonly dispatchUrl?: string;
  /** The control plane's tunnel URL. @default from <data-dir>/control-plane/endpoint.json */
  readonly tunnelUrl?: string;
  readonly cluster: string;
  /** The KMS key that seals the agent's private key at rest. @default "alias/airlock/data-plane" (created on first start) */
  readonly agentKeyId?: string;
  /** How long to wait for registration and the tunnel before giving up, in milliseconds. */
  readonly registerTimeoutMs: number;
  /** How task processes are isolated from the agent's files (docs/runs.md, "Isolation"). @default "auto" */
  readonly taskIsolation?: TaskIsolationMode;
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
}

async function readControlPlaneEndpoint(dataDir: string): Promise<ControlPlaneEndpointFile | undefined> {
  const text = await readDataFile(layout.controlPlaneEndpoint(dataDir));
  return text === undefined ? undefined : (JSON.parse(text) as ControlPlaneEndpointFile);
}

/** The one-time bootstrap token the local control plane left for this agent, if any (secret: never logged). */
async function readBootstrapToken(dataDir: string): Promise<string | undefined> {
  const token = (await readDataFile(layout.bootstrapToken(dataDir)))?.trim();
  return token === undefined || token.length === 0 ? undefined : token;
}

/**
 * A key-state refusal (the agent's key sealed under a disabled key) says how to fix it on a local data
 * directory, where the KMS runs inside the data plane that just failed to start.
 */
function withLocalKeyHint(error: unknown, dataDir: string): unknown {
  const e = AirlockError.from(error);
  const keyId = e.details?.keyId;
  if (typeof keyId !== 'string' || !['KMS_KEY_DISABLED', 'KMS_KEY_PENDING_DELETION'].includes(e.code)) return error;
  const fix = e.code === 'KMS_KEY_DISABLED' ? `airlock keys enable ${keyId}` : `airlock keys cancel-deletion ${keyId}\` and \`airlock keys enable ${keyId}`;
  return new AirlockError(e.code, `${e.message} (here: run the KMS alone with \`airlock kms serve --data-dir ${dataDir}\`, then \`${fix} --data-dir ${dataDir}\`)`, {
    details: e.details,
    cause: error,
  });
}

export interface LocalDataPlane {
  readonly endpoints: readonly PlaneEndpoint[];
  readonly agent: DataPlaneAgent;
  /** What clients pin for this data plane: `sha256:<64 hex>` over its identity key (docs/runs.md). */
  readonly identityFingerprint: string;
  /** The run data in the data plane's object store (sealed inputs, results, bundles), for the executor. */
  readonly runData: RunDataStore;
  close(): Promise<void>;
}

/**
 * The agent's tunnel settings from the environment: the listener limits of its HTTP/2 server on the tunnel,
 * from AIRLOCK_LISTENER_<OPTION> and AIRLOCK_LISTENER_TUNNEL_AGENT_<OPTION> (docs/listener-limits.md), read
 * as the KMS and the object store read theirs.
 */
export function agentTunnelOptions(env: NodeJS.ProcessEnv): DataPlaneAgentTunnelOptions {
  return { limits: listenerLimitsFromEnv(env, 'tunnel-agent') };
}

/**
 * Starts the KMS, the object store and the agent, each with the listener limits `env` sets (AIRLOCK_LISTENER_*);
 * resolves once the agent is registered with the control plane.
 */
export async function startLocalDataPlane(
  dataDir: string,
  options: Omit<DataPlaneServeOptions, 'dataDir' | 'logLevel'>,
  log: Logger,
  env: NodeJS.ProcessEnv = process.env,
): Promise<LocalDataPlane> {
  // Read before anything starts: a bad AIRLOCK_LISTENER_* value stops the plane at once, not after registration.
  const tunnel = agentTunnelOptions(env);
  await mkdir(layout.dataPlaneDir(dataDir), { recursive: true, mode: 0o700 });
  const controlPlane = await readControlPlaneEndpoint(dataDir);
  const dispatchUrl = options.dispatchUrl ?? controlPlane?.dispatch;
  const tunnelUrl = options.tunnelUrl ?? controlPlane?.tunnel;
  if (dispatchUrl === undefined || tunnelUrl === undefined) {
    throw new AirlockError('UNAVAILABLE', `no control plane found: pass --dispatch-url and --tunnel-url, or start one with \`airlock control-plane serve --data-dir ${dataDir}\``);
  }

  const closers: Array<() => Promise<void>> = [];
  const closeAll = async (): Promise<void> => {
    for (const close of closers.reverse()) await close().catch(() => undefined);
  };
  try {
    const keyFlags = pickControlPlaneKeyFlags(options);
    // One budget for both public listeners: near the descriptor limit they refuse new clients while
    // the reserve stays for the store's KMS pool, the agent's connections, files and logs.
    const budget = await processConnectionBudget();
    const shared = budget === undefined ? {} : { connectionBudget: budget };
    const kms = await startLocalKms(dataDir, { host: options.host, port: options.kmsPort, region: 'us-east-1', ...keyFlags, ...shared }, log, env);
    closers.push(() => kms.server.close());

    // The agent's private key is sealed under a data-plane KMS key: disabling that key stops the agent from starting.
    const agentKms = await connectLocalKms(dataDir, { maxAttempts: 3 });
    closers.push(() => Promise.resolve(agentKms.destroy()));
    // The sealing keys (below) follow their KMS key on this client's own key-event subscription,
    // separate from the object store's; the store's /health reports both, and so `airlock status`.
    const keyEvents = createCachingKms(agentKms);
    closers.push(() => Promise.resolve(keyEvents.close()));
    const store = await startLocalObjectStore(
      dataDir,
      { host: options.host, port: options.s3Port, ...keyFlags, ...shared, keyEventHolders: { 'sealing-keys': () => keyEvents.keyEventStatus() } },
      log,
      env,
    );
    closers.push(() => store.close());
    const keyVault = await openKmsKeyVault(agentKms, options.agentKeyId ?? DEFAULT_DATA_PLANE_KEY_ID, { create: true });
    if (keyVault.created) log.info({ event: 'agent.key_created', alias: keyVault.keyId, keyArn: keyVault.keyArn }, 'created the data-plane key that seals the agent\'s private key');

    // The sealing keys sit under the same key as the agent's private key: a disabled key stops the start here too.
    const loadSealingKeys = async () => (await loadOrCreateSealingKeys(layout.agentStateDir(dataDir), options.cluster, { vault: keyVault, log })).keys;
    const loaded = await loadSealingKeys().catch((error: unknown) => {
      throw withLocalKeyHint(error, dataDir);
    });
    // While running, they follow their KMS key: zeroed the moment a key-state event says it left
    // Enabled (without live events, within 1 s), and loaded again once it is enabled.
    const sealingKeys = createRevocableSealingKeys({
      keys: loaded,
      reload: loadSealingKeys,
      kms: keyEvents,
      keyArn: keyVault.keyArn ?? (await agentKms.describeKey(keyVault.keyId)).arn,
      log,
    });
    closers.push(() => Promise.resolve(sealingKeys.destroy()));
    // The run-data store talks S3 to the embedded store with the data plane's own access key, as `aws s3` would.
    const objectStore = createS3ObjectStore({
      endpoint: store.endpoint.endpoint,
      region: store.endpoint.region,
      credentials: parseCredentialsFile(await readFile(store.endpoint.credentialsFile, 'utf8'), store.endpoint.profile),
      caBundle: await readFile(store.endpoint.caBundle, 'utf8'),
    });
    closers.push(() => Promise.resolve(objectStore.destroy()));
    const runData = await createRunDataStore({ objectStore, sealingKeys, kmsKeyId: keyVault.keyId, log });

    // Actions run as child processes in 0700 working directories under the agent's state directory (docs/runs.md, "The executor").
    // Tasks see the data directory (keys, credentials, the stores) and the user's home empty: docs/runs.md, "Isolation".
    const executor = createLocalProcessExecutor({
      storage: runData,
      stateDir: layout.agentStateDir(dataDir),
      isolation: { mode: options.taskIsolation ?? 'auto', hide: [resolve(dataDir), homedir()] },
      log,
    });

    const bootstrapToken = await readBootstrapToken(dataDir);
    const agent = await startDataPlaneAgent({
      executor,
      clusterName: options.cluster,
      stateDir: layout.agentStateDir(dataDir),
      keyVault,
      sealingKeys,
      dispatchUrl,
      tunnelUrl,
      ca: await readFile(layout.caCert(dataDir), 'utf8'),
      ...(bootstrapToken === undefined ? {} : { bootstrapToken }),
      routes: tunnelServiceRoutes({ runData, log }),
      tunnel,
      log,
    }).catch((error: unknown) => {
      throw withLocalKeyHint(error, dataDir);
    });
    closers.push(() => agent.stop());
    await agent.waitForRegistered(options.registerTimeoutMs);
    // Redeemed (or superseded by stored credentials): a used token is worthless, but leave nothing secret behind.
    if (bootstrapToken !== undefined) await rm(layout.bootstrapToken(dataDir), { force: true });

    return {
      endpoints: [
        { name: 'kms', plane: 'data', url: kms.endpoint.endpoint },
        { name: 'objectstore', plane: 'data', url: store.endpoint.endpoint },
      ],
      agent,
      identityFingerprint: agent.identityFingerprint,
      runData,
      close: closeAll,
    };
  } catch (error) {
    await closeAll();
    throw error;
  }
}

export async function runDataPlaneServe(options: DataPlaneServeOptions): Promise<void> {
  restrictFileCreationMode();
  const dataDir = resolveDataDir(options.dataDir);
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const log = createLogger({ name: 'data-plane', level: options.logLevel, rateLimit: logRateLimit(options) });
  const plane = await startLocalDataPlane(dataDir, options, log);
  const child = process.connected;
  // Stop signals are trapped before anything says "Press Ctrl-C": a Ctrl-C right after it must stop the plane, not kill it.
  const stopped = serveUntilSignalled('the data plane', () => plane.close(), { quiet: child });
  if (!child) {
    print(`Airlock data plane "${options.cluster}" running from ${dataDir}`);
    for (const endpoint of plane.endpoints) print(`  ${endpoint.name.padEnd(12)} ${endpoint.url}`);
    print('  agent:       registered; tunnel and dispatch dialled out to the control plane');
    print(`  identity:    ${plane.identityFingerprint}  (clients pin it: airlock login --pin ${plane.identityFingerprint})`);
    const hint = planeFlagsHint(process.execArgv, 'data-plane serve');
    if (hint !== undefined) print(hint);
    print('Press Ctrl-C to stop.');
  }
  announceReady('data', plane.endpoints, { cluster: options.cluster, pin: plane.identityFingerprint });
  await stopped;
}
