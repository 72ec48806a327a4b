// The control plane's public API listener: AirlockService over Connect, gRPC and gRPC-web, plus GET /health, on one TLS port.
import { configCheck, configError, freezeConfig, type DeepReadonly, type Logger } from '@airlock/common';
import { resolveListenerLimits, type ConnectionBudget, type ListenerLimitsOptions, type PemInput, type ResolvedListenerLimits } from '@airlock/pki';
import { createApiService, type ClusterStatusSource } from './api-service.js';
import type { ApiTokenStore } from './api-tokens.js';
import type { ClusterRegistry } from './cluster-registry.js';
import type { RunService } from './run-service.js';
import { healthFallback, startConnectServer, type ConnectServer } from './connect-server.js';

export interface ApiServerOptions {
  /** Server certificate chain and key (the key is secret and never logged). */
  readonly tls: { readonly cert: PemInput; readonly key: PemInput };
  /** @default "127.0.0.1" */
  readonly host?: string;
  /** 0 picks a free port (see ConnectServer.port). @default 0 */
  readonly port?: number;
  /** Authenticates bearer tokens. */
  readonly tokens: ApiTokenStore;
  readonly registry: ClusterRegistry;
  /** Live tunnel and heartbeat facts for the Cluster messages. @default none (those fields stay unset) */
  readonly clusterStatus?: ClusterStatusSource;
  /** Tasks and runs (openRunService). @default none: those RPCs answer `unimplemented` */
  readonly runs?: RunService;
  /** Reported by Health and /health. @default "unknown" */
  readonly version?: string;
  readonly log: Logger;
  /** Largest request message, in bytes; larger ones get `resource_exhausted`. @default 4194304 (4 MiB) */
  readonly readMaxBytes?: number;
  /** Timeouts, connection caps and the HTTP/2 stream cap (see @airlock/pki ListenerLimitsOptions). @default DEFAULT_LISTENER_LIMITS */
  readonly limits?: ListenerLimitsOptions;
  /**
   * The process-wide budget of public connections, shared with the process's other listeners
   * (createConnectionBudget in @airlock/pki). @default none (only this listener's own caps)
   */
  readonly connectionBudget?: ConnectionBudget;
}

/** Plain settings are deeply frozen; the collaborators (objects with behaviour) are passed through as given. */
export type ResolvedApiServerConfig = DeepReadonly<{
  tls: { cert: PemInput; key: PemInput };
  host: string;
  port: number;
  version: string;
  readMaxBytes: number;
  limits: ResolvedListenerLimits;
}> & {
  readonly tokens: ApiTokenStore;
  readonly registry: ClusterRegistry;
  readonly clusterStatus: ClusterStatusSource | undefined;
  readonly runs: RunService | undefined;
  readonly connectionBudget: ConnectionBudget | undefined;
  readonly log: Logger;
};

export function resolveApiServerConfig(options: ApiServerOptions): ResolvedApiServerConfig {
  if (typeof options !== 'object' || options === null) throw configError('api', 'options are required');
  if (typeof options.tls !== 'object' || options.tls === null) throw configError('api.tls', 'is required');
  if (typeof options.tokens?.authenticate !== 'function') throw configError('api.tokens', 'must be an ApiTokenStore');
  if (typeof options.registry?.clusters !== 'function') throw configError('api.registry', 'must be a ClusterRegistry');
  if (typeof options.log !== 'object' || options.log === null) throw configError('api.log', 'is required');
  if (options.clusterStatus !== undefined && (typeof options.clusterStatus !== 'object' || options.clusterStatus === null)) {
    throw configError('api.clusterStatus', 'must be an object');
  }
  const version = configCheck.nonEmptyString('api.version', options.version ?? 'unknown');
  // Printable and short: it is echoed to unauthenticated callers.
  if (version.length > 64 || !/^[\x21-\x7e]+$/.test(version)) throw configError('api.version', 'must be at most 64 printable ASCII characters');
  const settings = freezeConfig({
    tls: { cert: options.tls.cert, key: options.tls.key },
    host: configCheck.nonEmptyString('api.host', options.host ?? '127.0.0.1'),
    port: configCheck.integer('api.port', options.port ?? 0, 0, 65_535),
    version,
    readMaxBytes: configCheck.integer('api.readMaxBytes', options.readMaxBytes ?? 4 * 1024 * 1024, 1024, 256 * 1024 * 1024),
    limits: resolveListenerLimits(options.limits, 'api.limits'),
  });
  if (options.runs !== undefined && typeof options.runs?.createRun !== 'function') throw configError('api.runs', 'must be a RunService');
  return Object.freeze({ ...settings, tokens: options.tokens, registry: options.registry, clusterStatus: options.clusterStatus, runs: options.runs, connectionBudget: options.connectionBudget, log: options.log });
}

/** Starts the API listener and resolves once it is listening. */
export async function startApiServer(options: ApiServerOptions): Promise<ConnectServer> {
  const config = resolveApiServerConfig(options);
  const service = createApiService({
    tokens: config.tokens,
    registry: config.registry,
    clusterStatus: config.clusterStatus,
    runs: config.runs,
    version: config.version,
    log: config.log,
  });
  return startConnectServer({
    name: 'api',
    tls: config.tls,
    host: config.host,
    port: config.port,
    routes: service.routes,
    interceptors: [service.interceptor],
    readMaxBytes: config.readMaxBytes,
    fallback: healthFallback(config.version),
    limits: config.limits,
    ...(config.connectionBudget === undefined ? {} : { connectionBudget: config.connectionBudget }),
    log: config.log,
  });
}
