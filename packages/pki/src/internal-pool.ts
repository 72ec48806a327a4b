// The bounded pool the data plane's own calls come from (object store → KMS): its own sockets, which the public listeners cannot starve.
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { configCheck, configError, freezeConfig, type DeepReadonly } from '@airlock/common';
import { registerInternalSocket } from './internal/internal-peers.js';

/**
 * The connection pool of one internal client. Its sockets are its own (an https.Agent per client,
 * never the global agent), and a listener of the same process recognises them: they are admitted
 * past the public connection caps and the process's connection budget (listener-limits.ts), which
 * hold a reserve of descriptors for them. See docs/listener-limits.md.
 */
export interface InternalPoolOptions {
  /** Concurrent connections to one endpoint; further calls queue. @default 64 */
  readonly maxSockets?: number;
  /** Idle keep-alive connections kept for reuse. @default 16 */
  readonly maxFreeSockets?: number;
  /**
   * An idle pooled connection is closed after this long. Shorter than the listeners'
   * keep-alive timeout (65 s), so the server never closes a connection under the pool. @default 30000
   */
  readonly idleTimeoutMs?: number;
}

export type ResolvedInternalPoolConfig = DeepReadonly<Required<InternalPoolOptions>>;

export const DEFAULT_INTERNAL_POOL: ResolvedInternalPoolConfig = Object.freeze({ maxSockets: 64, maxFreeSockets: 16, idleTimeoutMs: 30_000 });

/** Applies defaults and validates; `prefix` names the options in CONFIG_INVALID errors, e.g. `kms.pool`. */
export function resolveInternalPoolConfig(options: InternalPoolOptions | undefined, prefix: string): ResolvedInternalPoolConfig {
  if (options !== undefined && (typeof options !== 'object' || options === null)) throw configError(prefix, 'must be an object');
  const pick = <K extends keyof InternalPoolOptions>(key: K): number => options?.[key] ?? DEFAULT_INTERNAL_POOL[key];
  const maxSockets = configCheck.integer(`${prefix}.maxSockets`, pick('maxSockets'), 1, 4096);
  const maxFreeSockets = configCheck.integer(`${prefix}.maxFreeSockets`, pick('maxFreeSockets'), 0, 4096);
  if (maxFreeSockets > maxSockets) throw configError(`${prefix}.maxFreeSockets`, 'must not exceed maxSockets');
  return freezeConfig({ maxSockets, maxFreeSockets, idleTimeoutMs: configCheck.integer(`${prefix}.idleTimeoutMs`, pick('idleTimeoutMs'), 100, 3_600_000) });
}

/** An https.Agent whose sockets this process's listeners recognise as internal (see InternalPoolOptions). */
class InternalHttpsAgent extends https.Agent {
  override createConnection(options: tls.ConnectionOptions & net.TcpNetConnectOpts): net.Socket {
    const raw = net.connect({
      host: options.host ?? 'localhost',
      port: options.port,
      ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }),
      ...(options.family === undefined ? {} : { family: options.family }),
    });
    registerInternalSocket(raw);
    // Node's own https.Agent passes these options to tls.connect unchanged; only the TCP socket is ours.
    return tls.connect({ ...options, socket: raw });
  }
}

/**
 * The agent of an internal client: keep-alive, at most `maxSockets` connections, idle ones closed
 * after `idleTimeoutMs`. `tlsOptions` come from tlsClientOptions().
 */
export function createInternalHttpsAgent(pool: ResolvedInternalPoolConfig, tlsOptions: https.AgentOptions = {}): https.Agent {
  return new InternalHttpsAgent({
    ...tlsOptions,
    keepAlive: true,
    maxSockets: pool.maxSockets,
    maxFreeSockets: pool.maxFreeSockets,
    // The agent closes a free (idle) socket on this timeout; a request in flight keeps its client's own timeout.
    timeout: pool.idleTimeoutMs,
    scheduling: 'lifo',
  });
}
