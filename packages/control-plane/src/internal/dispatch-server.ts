// The control plane's dispatch listener: DispatchService over gRPC (and Connect) on TLS, with cluster client certificates checked at every handshake.
import { configCheck, configError, freezeConfig, type DeepReadonly, type Logger } from '@airlock/common';
import {
  DEFAULT_LISTENER_LIMITS,
  parseClusterIdentity,
  resolveListenerLimits,
  type ConnectionBudget,
  type ListenerLimitsOptions,
  type PemInput,
  type ResolvedListenerLimits,
  type TlsConnectionDescription,
} from '@airlock/pki';
import type { ActionQueue } from './action-queue.js';
import type { ClusterRegistry } from './cluster-registry.js';
import { healthFallback, startConnectServer, type ConnectServer } from './connect-server.js';
import { createDispatchService, DEFAULT_HEARTBEAT_INTERVAL_MS, DEFAULT_MAX_POLL_WAIT_MS, type DispatchAgentInfo } from './dispatch-service.js';

export interface DispatchServerOptions {
  /** Server certificate chain and key (the key is secret and never logged). */
  readonly tls: { readonly cert: PemInput; readonly key: PemInput };
  /** The Airlock CA: client certificates must chain to it. */
  readonly ca: PemInput;
  /** @default "127.0.0.1" */
  readonly host?: string;
  /** 0 picks a free port (see `port`). @default 0 */
  readonly port?: number;
  readonly registry: ClusterRegistry;
  readonly queue: ActionQueue;
  readonly log: Logger;
  /** The heartbeat interval agents are told to use, in milliseconds. @default 5000 */
  readonly heartbeatIntervalMs?: number;
  /** Longest a PollActions call is held open when nothing is queued, in milliseconds. @default 30000 */
  readonly maxPollWaitMs?: number;
  /** Largest request message, in bytes. @default 4194304 (4 MiB) */
  readonly readMaxBytes?: number;
  /**
   * Timeouts, connection caps and the HTTP/2 stream cap (see @airlock/pki ListenerLimitsOptions).
   * The idle timeout outlasts the longest poll, which sends nothing while it waits.
   * @default DEFAULT_LISTENER_LIMITS with idleTimeoutMs at least maxPollWaitMs + 60000
   */
  readonly limits?: ListenerLimitsOptions;
  /**
   * The process-wide budget of public connections, shared with the process's other listeners
   * (createConnectionBudget in @airlock/pki). @default none (only this listener's own caps)
   */
  readonly connectionBudget?: ConnectionBudget;
}

export type ResolvedDispatchServerConfig = DeepReadonly<{
  tls: { cert: PemInput; key: PemInput };
  ca: PemInput;
  host: string;
  port: number;
  heartbeatIntervalMs: number;
  maxPollWaitMs: number;
  readMaxBytes: number;
  limits: ResolvedListenerLimits;
}> & { readonly registry: ClusterRegistry; readonly queue: ActionQueue; readonly connectionBudget: ConnectionBudget | undefined; readonly log: Logger };

/** The dispatch listener, plus what it learns about agents (a ClusterStatusSource for the API server). */
export interface DispatchServer extends ConnectServer {
  /** The version the cluster's agent registered with, or undefined before it registered (since this process started). */
  agentVersion(cluster: string): string | undefined;
  /** When the cluster's agent last heartbeated (since this process started). */
  lastHeartbeatAt(cluster: string): Date | undefined;
  /** Everything known about the cluster's agent, including its signed sealing keys. */
  agent(cluster: string): DispatchAgentInfo | undefined;
}

export function resolveDispatchServerConfig(options: DispatchServerOptions): ResolvedDispatchServerConfig {
  if (typeof options !== 'object' || options === null) throw configError('dispatch', 'options are required');
  if (typeof options.tls !== 'object' || options.tls === null) throw configError('dispatch.tls', 'is required');
  if (options.ca === undefined) throw configError('dispatch.ca', 'is required');
  if (typeof options.registry?.isClusterAllowed !== 'function') throw configError('dispatch.registry', 'must be a ClusterRegistry');
  if (typeof options.queue?.lease !== 'function') throw configError('dispatch.queue', 'must be an ActionQueue');
  if (typeof options.log !== 'object' || options.log === null) throw configError('dispatch.log', 'is required');
  const maxPollWaitMs = configCheck.integer('dispatch.maxPollWaitMs', options.maxPollWaitMs ?? DEFAULT_MAX_POLL_WAIT_MS, 0, 600_000);
  const settings = freezeConfig({
    tls: { cert: options.tls.cert, key: options.tls.key },
    ca: options.ca,
    host: configCheck.nonEmptyString('dispatch.host', options.host ?? '127.0.0.1'),
    port: configCheck.integer('dispatch.port', options.port ?? 0, 0, 65_535),
    heartbeatIntervalMs: configCheck.integer('dispatch.heartbeatIntervalMs', options.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS, 100, 3_600_000),
    maxPollWaitMs,
    readMaxBytes: configCheck.integer('dispatch.readMaxBytes', options.readMaxBytes ?? 4 * 1024 * 1024, 1024, 256 * 1024 * 1024),
    limits: resolveListenerLimits(options.limits, 'dispatch.limits', { idleTimeoutMs: Math.max(DEFAULT_LISTENER_LIMITS.idleTimeoutMs, maxPollWaitMs + 60_000) }),
  });
  return Object.freeze({ ...settings, registry: options.registry, queue: options.queue, connectionBudget: options.connectionBudget, log: options.log });
}

/** Starts the dispatch listener and resolves once it is listening. */
export async function startDispatchServer(options: DispatchServerOptions): Promise<DispatchServer> {
  const config = resolveDispatchServerConfig(options);
  const { registry, log } = config;
  const service = createDispatchService({
    registry,
    queue: config.queue,
    log,
    heartbeatIntervalMs: config.heartbeatIntervalMs,
    maxPollWaitMs: config.maxPollWaitMs,
  });
  // Revocation at the handshake: a connection presenting a certificate the registry no longer
  // allows is closed before any request on it is read. Bootstrap works without a certificate.
  const isAllowed = async (peer: TlsConnectionDescription): Promise<boolean> => {
    const cluster = parseClusterIdentity(peer.peerUri);
    return cluster !== undefined && peer.peerFingerprintSha256 !== undefined && (await registry.isClusterAllowed(cluster, peer.peerFingerprintSha256));
  };
  const server = await startConnectServer({
    name: 'dispatch',
    tls: config.tls,
    clientCertificates: { ca: config.ca, isAllowed },
    host: config.host,
    port: config.port,
    routes: service.routes,
    readMaxBytes: config.readMaxBytes,
    // Long polls must fit under the largest deadline a client may ask for.
    maxTimeoutMs: Math.max(300_000, config.maxPollWaitMs + 60_000),
    // GET /health answers without a client certificate: the agent uses it to tell "the control
    // plane is down" from "the control plane refuses my certificate" (connections presenting a
    // revoked certificate are closed, this is not).
    fallback: healthFallback(),
    limits: config.limits,
    ...(config.connectionBudget === undefined ? {} : { connectionBudget: config.connectionBudget }),
    log,
  });
  return Object.freeze({
    url: server.url,
    port: server.port,
    close: () => server.close(),
    agentVersion: (cluster: string) => service.agentVersion(cluster),
    lastHeartbeatAt: (cluster: string) => service.lastHeartbeatAt(cluster),
    agent: (cluster: string) => service.agent(cluster),
  });
}
