// The control plane's tunnel endpoint: accepts data-plane mTLS connections, then reverses roles and calls data-plane services over them.
import { EventEmitter } from 'node:events';
import http2 from 'node:http2';
import { isIPv6, type AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { Code, ConnectError, createClient, type Transport } from '@connectrpc/connect';
import { AirlockError, configCheck, configError, type DeepReadonly, errorCodeOf, freezeConfig, type Logger } from '@airlock/common';
import {
  createLimitedTlsServer,
  describeTlsSocket,
  getPeerIdentity,
  parseClusterIdentity,
  resolveListenerLimits,
  startHttp2Heartbeat,
  tlsServerOptions,
  type ConnectionBudget,
  type ListenerLimitsOptions,
  type PemInput,
  type ResolvedListenerLimits,
  type TlsConnectionDescription,
} from '@airlock/pki';
import { tunnelAcceptedPing, TunnelHealthService } from '@airlock/protocol';
import {
  createConnectionTransport,
  createTunnelTransports,
  type TunnelProtocol,
  type TunnelSession,
  type TunnelTransportOptions,
} from './tunnel-transport.js';

export interface TunnelEndpointOptions {
  /** The endpoint's server certificate chain and key, issued by the Airlock CA. The key is secret and never logged. */
  readonly tls: { readonly cert: PemInput; readonly key: PemInput };
  /** The CA that data-plane client certificates must chain to; any other client fails in the TLS handshake. */
  readonly ca: PemInput;
  /** Interface to listen on. @default "127.0.0.1" */
  readonly host?: string;
  /** Port to listen on; 0 picks a free one (see `TunnelEndpoint.port`). @default 0 */
  readonly port?: number;
  readonly log: Logger;
  /**
   * Revocation and registration check, asked on every handshake with the cluster named by the
   * client certificate's URI SAN and that certificate's SHA-256 fingerprint (lowercase hex). Return
   * false to refuse the connection; a thrown error refuses it too (fail closed).
   */
  readonly isClusterAllowed: (cluster: string, certFingerprintSha256: string) => boolean | Promise<boolean>;
  /** How often each tunnel is probed with an HTTP/2 PING, in milliseconds. @default 1000 */
  readonly pingIntervalMs?: number;
  /** A PING unanswered for this long drops the tunnel, in milliseconds. @default 2000 */
  readonly pingTimeoutMs?: number;
  /**
   * A new connection must answer TunnelHealthService.Check within this time, in milliseconds, before
   * it may carry the cluster's calls; one that fails or is late is dropped. Until it has answered,
   * the cluster's current tunnel (if any) keeps carrying every call. @default 5000
   */
  readonly proofTimeoutMs?: number;
  /**
   * Handshake timeout, connection caps and the idle timeout before a connection becomes a tunnel
   * (see @airlock/pki ListenerLimitsOptions). Over the tunnel the control plane is the HTTP/2
   * client; the stream cap is applied by the data-plane agent, the HTTP/2 server.
   * @default DEFAULT_LISTENER_LIMITS
   */
  readonly limits?: ListenerLimitsOptions;
  /**
   * The process-wide budget of public connections, shared with the process's other listeners
   * (createConnectionBudget in @airlock/pki). @default none (only this listener's own caps)
   */
  readonly connectionBudget?: ConnectionBudget;
  /** Options for the transports that `transportFor` returns. @default connect-es defaults */
  readonly transport?: TunnelTransportOptions;
}

export type ResolvedTunnelEndpointConfig = DeepReadonly<{
  tls: { cert: PemInput; key: PemInput };
  ca: PemInput;
  host: string;
  port: number;
  log: Logger;
  isClusterAllowed: (cluster: string, certFingerprintSha256: string) => boolean | Promise<boolean>;
  pingIntervalMs: number;
  pingTimeoutMs: number;
  proofTimeoutMs: number;
  limits: ResolvedListenerLimits;
  transport: TunnelTransportOptions;
}>;

/** Facts about a cluster's live tunnel. Contains no secrets. */
export interface TunnelConnectionInfo {
  readonly cluster: string;
  readonly connectedAt: Date;
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;
  /** Negotiated protocol and suite, and the data plane's certificate (fingerprint, expiry, identity). */
  readonly tls: TlsConnectionDescription;
}

export interface TunnelEndpoint {
  /** `https://host:port` of the listener, the URL data-plane agents dial. */
  readonly url: string;
  readonly port: number;
  /** Clusters with a usable tunnel right now, sorted. */
  clusters(): string[];
  /** The cluster's current tunnel, or undefined when it has none. */
  connection(cluster: string): TunnelConnectionInfo | undefined;
  /**
   * A transport that sends calls down the cluster's tunnel. Throws AirlockError UNAVAILABLE when the
   * cluster has no tunnel now. The transport stays bound to the cluster, not to one connection: after
   * a reconnect it uses the new tunnel, and while there is none its calls fail with Connect code
   * `unavailable`, as do calls whose tunnel drops mid-flight.
   */
  transportFor(cluster: string, protocol?: TunnelProtocol): Transport;
  /** Resolves when the cluster has a tunnel; rejects with TIMEOUT after `timeoutMs`, or UNAVAILABLE if the endpoint closes. */
  waitForCluster(cluster: string, timeoutMs: number): Promise<TunnelConnectionInfo>;
  /** Drops every connection of the cluster at once (in-flight calls fail `unavailable`); true if there was one. */
  disconnect(cluster: string): boolean;
  /** Stops listening and drops every tunnel at once. */
  close(): Promise<void>;
}

/** Defaults chosen so a dead tunnel is noticed within about three seconds. */
const DEFAULT_PING_INTERVAL_MS = 1000;
const DEFAULT_PING_TIMEOUT_MS = 2000;
/** Half the agent's default connect timeout (10 s), which covers TCP, TLS and this proof. */
const DEFAULT_PROOF_TIMEOUT_MS = 5000;
/** Failed handshakes logged one by one per window; the rest are counted in one summary line. */
const HANDSHAKE_FAILURES_LOGGED_PER_WINDOW = 20;
const HANDSHAKE_FAILURE_WINDOW_MS = 10_000;

export function resolveTunnelEndpointConfig(options: TunnelEndpointOptions): ResolvedTunnelEndpointConfig {
  if (typeof options !== 'object' || options === null) throw configError('tunnelEndpoint', 'options are required');
  if (typeof options.tls !== 'object' || options.tls === null) throw configError('tunnelEndpoint.tls', 'is required');
  if (typeof options.isClusterAllowed !== 'function') throw configError('tunnelEndpoint.isClusterAllowed', 'must be a function');
  if (typeof options.log !== 'object' || options.log === null) throw configError('tunnelEndpoint.log', 'is required');
  const pingIntervalMs = configCheck.integer('tunnelEndpoint.pingIntervalMs', options.pingIntervalMs ?? DEFAULT_PING_INTERVAL_MS, 10, 3_600_000);
  return freezeConfig({
    tls: { cert: options.tls.cert, key: options.tls.key },
    ca: options.ca,
    host: configCheck.nonEmptyString('tunnelEndpoint.host', options.host ?? '127.0.0.1'),
    port: configCheck.integer('tunnelEndpoint.port', options.port ?? 0, 0, 65_535),
    log: options.log,
    isClusterAllowed: options.isClusterAllowed,
    pingIntervalMs,
    pingTimeoutMs: configCheck.integer('tunnelEndpoint.pingTimeoutMs', options.pingTimeoutMs ?? DEFAULT_PING_TIMEOUT_MS, 10, 3_600_000),
    proofTimeoutMs: configCheck.integer('tunnelEndpoint.proofTimeoutMs', options.proofTimeoutMs ?? DEFAULT_PROOF_TIMEOUT_MS, 10, 3_600_000),
    limits: resolveListenerLimits(options.limits, 'tunnelEndpoint.limits'),
    transport: { ...(options.transport ?? {}) },
  });
}

/**
 * The `:authority` the control plane's requests carry down a cluster's tunnel. It is never resolved
 * or dialled (the socket already exists); `.invalid` (RFC 6761) makes that plain in any log.
 */
function tunnelAuthority(cluster: string): string {
  return `https://${cluster}.tunnel.airlock.invalid`;
}

/** A data plane's connection, with this process as the HTTP/2 client over the socket the data plane opened. */
class ReverseConnection implements TunnelSession {
  readonly info: TunnelConnectionInfo;
  /** Set once GOAWAY arrives: in-flight calls finish, new ones go to the cluster's next connection. */
  private draining = false;
  /**
   * When the connection answered the proof call (TunnelHealthService.Check); until then it carries
   * no call but that one. A connection that presents the cluster's certificate and then sends
   * garbage, or nothing, never gets here, so it can never displace the cluster's working tunnel.
   */
  provenAt: number | undefined;
  private closed = false;
  private closeReason: string | undefined;
  private readonly heartbeat: { stop(): void };

  constructor(
    readonly cluster: string,
    readonly socket: TLSSocket,
    readonly session: http2.ClientHttp2Session,
    description: TlsConnectionDescription,
    private readonly config: ResolvedTunnelEndpointConfig,
    private readonly onGone: (connection: ReverseConnection, reason: string) => void,
  ) {
    this.info = Object.freeze({
      cluster,
      connectedAt: new Date(),
      remoteAddress: socket.remoteAddress,
      remotePort: socket.remotePort,
      tls: description,
    });
    this.heartbeat = startHttp2Heartbeat(session, {
      intervalMs: config.pingIntervalMs,
      timeoutMs: config.pingTimeoutMs,
      isAlive: () => !this.lost(),
      onTimeout: () => {
        this.config.log.warn(
          { event: 'tunnel.heartbeat_timeout', cluster: this.cluster, timeoutMs: this.config.pingTimeoutMs },
          'tunnel PING unanswered; dropping the tunnel',
        );
        this.destroy('heartbeat timeout');
      },
      onPingError: (code) => {
        this.closeReason ??= `ping failed ${code}`;
      },
    });
    session.on('goaway', () => {
      this.draining = true;
    });
    session.on('error', (error) => {
      this.closeReason ??= `session error ${errorCodeOf(error)}`;
    });
    session.once('close', () => this.finish('session closed'));
    socket.once('close', () => this.destroy('socket closed'));
  }

  usable(): boolean {
    return !this.draining && !this.lost();
  }

  /** Usable and proven: fit to be the cluster's tunnel. */
  eligible(): boolean {
    return this.provenAt !== undefined && this.usable();
  }

  /** Takes the connection out of the running for new calls at once (it is about to be destroyed). */
  retire(): void {
    this.draining = true;
  }

  lost(): boolean {
    return this.closed || this.session.destroyed || this.session.closed || this.socket.destroyed;
  }

  /** Ends the connection at once; in-flight calls fail with `unavailable`. */
  destroy(reason: string): void {
    this.closeReason ??= reason;
    if (!this.session.destroyed) {
      // Destroyed with an error, never without: Node then closes the open streams with NO_ERROR,
      // and connect-node 2.1 waits forever for the response of a stream that ended that way. The
      // error reaches each pending call as is (a ConnectError passes through connect-node).
      const error = new ConnectError(`tunnel to cluster ${this.cluster} closed: ${reason}`, Code.Unavailable);
      this.session.destroy(error, http2.constants.NGHTTP2_CANCEL);
    }
    if (!this.socket.destroyed) this.socket.destroy();
    this.finish(reason);
  }

  private finish(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.heartbeat.stop();
    this.onGone(this, this.closeReason ?? reason);
  }

}

interface ClusterEntry {
  /**
   * The connection new calls use: the most recently proven one that is still usable; undefined
   * while the cluster has none.
   */
  current: ReverseConnection | undefined;
  readonly connections: Set<ReverseConnection>;
  readonly transports: Readonly<Record<TunnelProtocol, Transport>>;
}

const PROTOCOLS: readonly TunnelProtocol[] = ['connect', 'grpc'];

/** Starts the tunnel endpoint and resolves once it is listening. */
export async function startTunnelEndpoint(options: TunnelEndpointOptions): Promise<TunnelEndpoint> {
  const config = resolveTunnelEndpointConfig(options);
  const log = config.log;
  const listener = createLimitedTlsServer(
    {
      ...tlsServerOptions({ cert: config.tls.cert, key: config.tls.key, ca: config.ca, requestClientCert: true }),
      // Only HTTP/2 runs over the tunnel; a client that cannot speak it fails in the handshake.
      ALPNProtocols: ['h2'],
    },
    // The budget is a collaborator shared with the process's other listeners, taken as given.
    { name: 'tunnel', log: options.log, limits: config.limits, ...(options.connectionBudget === undefined ? {} : { budget: options.connectionBudget }) },
  );
  const { server } = listener;
  const clusters = new Map<string, ClusterEntry>();
  const events = new EventEmitter();
  events.setMaxListeners(0);
  let closing = false;

  const entryFor = (cluster: string): ClusterEntry => {
    let entry = clusters.get(cluster);
    if (entry === undefined) {
      const created: ClusterEntry = {
        current: undefined,
        connections: new Set(),
        transports: createTunnelTransports(cluster, tunnelAuthority(cluster), () => created.current, config.transport),
      };
      entry = created;
      clusters.set(cluster, entry);
    }
    return entry;
  };

  /**
   * Called when the current connection stops being usable (closed, or draining after GOAWAY): the
   * most recently proven other connection of the cluster that is still usable takes over at once,
   * without waiting for the agent to dial again.
   */
  const failOver = (entry: ClusterEntry, leaving: ReverseConnection): void => {
    if (entry.current !== leaving) return;
    let next: ReverseConnection | undefined;
    for (const candidate of entry.connections) {
      if (candidate === leaving || !candidate.eligible()) continue;
      if (next === undefined || (candidate.provenAt ?? 0) >= (next.provenAt ?? 0)) next = candidate;
    }
    entry.current = next;
    if (next === undefined) return;
    log.info(
      { event: 'tunnel.failover', cluster: leaving.cluster, remotePort: next.info.remotePort, peerFingerprintSha256: next.info.tls.peerFingerprintSha256 },
      'tunnel connection gone; another live connection of the cluster took over',
    );
    events.emit('connected', leaving.cluster);
  };

  const onGone = (connection: ReverseConnection, reason: string): void => {
    const entry = clusters.get(connection.cluster);
    if (entry === undefined) return;
    entry.connections.delete(connection);
    failOver(entry, connection);
    log.info(
      {
        event: 'tunnel.closed',
        cluster: connection.cluster,
        reason,
        proven: connection.provenAt !== undefined,
        durationMs: Date.now() - connection.info.connectedAt.getTime(),
        remoteAddress: connection.info.remoteAddress,
        remotePort: connection.info.remotePort,
        peerFingerprintSha256: connection.info.tls.peerFingerprintSha256,
      },
      'tunnel closed',
    );
  };

  /** Makes a connection that just proved itself the cluster's tunnel, and tells the agent so. */
  const promote = (entry: ClusterEntry, connection: ReverseConnection, proofMs: number): void => {
    const previous = entry.current;
    entry.current = connection;
    try {
      // After the switch, on the same connection: when the agent reads it, calls already come here.
      connection.session.ping(tunnelAcceptedPing(), () => undefined);
    } catch {
      // The session died just now; its 'close' fails over.
    }
    log.info(
      {
        event: 'tunnel.connected',
        cluster: connection.cluster,
        remotePort: connection.info.remotePort,
        peerFingerprintSha256: connection.info.tls.peerFingerprintSha256,
        replaced: previous !== undefined && previous !== connection,
        proofMs,
      },
      'tunnel connected; calling the data plane over it',
    );
    events.emit('connected', connection.cluster);
  };

  /**
   * The proof: the new connection must answer TunnelHealthService.Check, sent down that connection
   * only, within proofTimeoutMs. Any answer (SERVING or NOT_SERVING) proves that a working agent
   * serves it; an error, a timeout or garbage drops the connection.
   */
  const prove = async (entry: ClusterEntry, connection: ReverseConnection): Promise<void> => {
    const started = Date.now();
    const health = createClient(TunnelHealthService, createConnectionTransport(connection.cluster, tunnelAuthority(connection.cluster), connection));
    try {
      await health.check({}, { timeoutMs: config.proofTimeoutMs });
    } catch (error) {
      if (connection.lost() || closing) return;
      log.warn(
        {
          event: 'tunnel.unproven',
          cluster: connection.cluster,
          code: ConnectError.from(error).code === Code.DeadlineExceeded ? 'TIMEOUT' : errorCodeOf(error),
          remoteAddress: connection.info.remoteAddress,
          remotePort: connection.info.remotePort,
          peerFingerprintSha256: connection.info.tls.peerFingerprintSha256,
        },
        'new tunnel connection did not answer the health check; dropped, the current tunnel stays',
      );
      connection.destroy('did not answer the proof call');
      return;
    }
    if (!connection.usable() || closing) return;
    connection.provenAt = Date.now();
    promote(entry, connection, connection.provenAt - started);
  };

  const openReverseConnection = (cluster: string, socket: TLSSocket, description: TlsConnectionDescription): void => {
    // From here the tunnel's PING heartbeat watches the connection, not the listener's idle timeout.
    listener.handOver(socket);
    // The role reversal: this process accepted the TCP/TLS connection, and now starts HTTP/2 as the
    // CLIENT on it. createConnection hands http2 the existing socket instead of dialling; any bytes
    // the agent's server side already sent (its SETTINGS) are replayed into the session by Node.
    const session = http2.connect(tunnelAuthority(cluster), {
      createConnection: () => socket,
      settings: { enablePush: false },
    });
    const entry = entryFor(cluster);
    const connection = new ReverseConnection(cluster, socket, session, description, config, onGone);
    entry.connections.add(connection);
    // Not the cluster's tunnel yet: it becomes so only once it has answered the proof call.
    session.once('connect', () => {
      if (connection.lost()) return;
      void prove(entry, connection);
    });
    session.on('goaway', () => {
      // The agent is draining this connection (certificate rotation, shutdown): stop routing new
      // calls to it at once; the agent's newer connection, or another live one, takes over.
      failOver(entry, connection);
      log.info({ event: 'tunnel.draining', cluster, remotePort: connection.info.remotePort }, 'data plane is draining the tunnel');
    });
  };

  const accept = async (socket: TLSSocket): Promise<void> => {
    const description = describeTlsSocket(socket);
    const remote = { remoteAddress: socket.remoteAddress, remotePort: socket.remotePort };
    // The seed's "tunnel logs" check: every handshake, with what was negotiated and who the peer is.
    log.info(
      {
        event: 'tunnel.handshake',
        ...remote,
        protocol: description.protocol,
        cipher: description.cipher,
        cipherStandardName: description.cipherStandardName,
        peerFingerprintSha256: description.peerFingerprintSha256,
        peerValidTo: description.peerValidTo,
        peerSubject: description.peerSubject,
        peerUri: description.peerUri,
      },
      'tunnel TLS handshake',
    );
    // Until http2 owns the socket, an error here (a reset during the identity check) must not crash the process.
    socket.on('error', (error) => log.debug({ event: 'tunnel.socket_error', ...remote, code: errorCodeOf(error) }, 'tunnel socket error'));
    const refuse = (reason: string, cluster?: string): void => {
      log.warn(
        { event: 'tunnel.refused', ...remote, reason, cluster, peerFingerprintSha256: description.peerFingerprintSha256 },
        'tunnel connection refused',
      );
      socket.destroy();
    };

    if (closing) return refuse('endpoint closing');
    if (socket.alpnProtocol !== 'h2') return refuse('ALPN h2 not negotiated');
    let cluster: string | undefined;
    try {
      cluster = parseClusterIdentity(getPeerIdentity(socket));
    } catch {
      cluster = undefined;
    }
    const fingerprint = description.peerFingerprintSha256;
    if (cluster === undefined || fingerprint === undefined) return refuse('client certificate carries no cluster identity');

    let allowed: boolean;
    try {
      allowed = (await config.isClusterAllowed(cluster, fingerprint)) === true;
    } catch (error) {
      log.error({ event: 'tunnel.allow_check_failed', cluster, code: errorCodeOf(error) }, 'cluster check failed; refusing');
      allowed = false;
    }
    if (!allowed) return refuse('cluster not allowed (revoked or not registered)', cluster);
    if (closing) return refuse('endpoint closing', cluster);
    if (socket.destroyed) return;
    openReverseConnection(cluster, socket, description);
  };

  // A scanner (sslscan, `airlock verify`) fails a hundred handshakes in a second: log the first few
  // of each window at warn, then one summary line with the count, so the log stays readable.
  let loggedFailures = 0;
  let suppressedFailures = 0;
  let failureWindow: NodeJS.Timeout | undefined;
  server.on('tlsClientError', (error, socket) => {
    failureWindow ??= setTimeout(() => {
      if (suppressedFailures > 0) {
        log.warn({ event: 'tunnel.handshake_failed_suppressed', count: suppressedFailures }, 'more tunnel TLS handshakes failed (not logged one by one)');
      }
      loggedFailures = 0;
      suppressedFailures = 0;
      failureWindow = undefined;
    }, HANDSHAKE_FAILURE_WINDOW_MS).unref();
    if (loggedFailures >= HANDSHAKE_FAILURES_LOGGED_PER_WINDOW) {
      suppressedFailures++;
      return;
    }
    loggedFailures++;
    // Node checks a client certificate's chain after OpenSSL's handshake and then destroys the
    // socket without a TLS alert, so `error` is a bare ECONNRESET; the verdict is authorizationError.
    // (Not logged under that name: the logger redacts any field named like "authorization".)
    const verdict = socket.authorizationError as unknown;
    log.warn(
      {
        event: 'tunnel.handshake_failed',
        code: errorCodeOf(error),
        verifyError: typeof verdict === 'string' ? verdict : verdict === undefined || verdict === null ? undefined : errorCodeOf(verdict),
        remoteAddress: socket.remoteAddress,
        remotePort: socket.remotePort,
      },
      'tunnel TLS handshake failed',
    );
  });
  server.on('secureConnection', (socket: TLSSocket) => {
    void accept(socket);
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (error) => log.error({ event: 'tunnel.server_error', code: errorCodeOf(error) }, 'tunnel endpoint error'));

  const port = (server.address() as AddressInfo).port;
  const url = `https://${isIPv6(config.host) ? `[${config.host}]` : config.host}:${port}`;
  log.info({ event: 'tunnel.listening', url }, 'tunnel endpoint listening');

  const usableConnection = (cluster: string): ReverseConnection | undefined => {
    const current = clusters.get(cluster)?.current;
    return current !== undefined && current.eligible() ? current : undefined;
  };

  const endpoint: TunnelEndpoint = {
    url,
    port,
    clusters() {
      return [...clusters.keys()].filter((cluster) => usableConnection(cluster) !== undefined).sort();
    },
    connection(cluster) {
      return usableConnection(cluster)?.info;
    },
    transportFor(cluster, protocol = 'connect') {
      if (!PROTOCOLS.includes(protocol)) throw new AirlockError('INVALID_ARGUMENT', `Unknown tunnel protocol: ${String(protocol)}`);
      if (usableConnection(cluster) === undefined) {
        throw new AirlockError('UNAVAILABLE', `No tunnel to cluster ${cluster}`, { details: { cluster } });
      }
      return entryFor(cluster).transports[protocol];
    },
    waitForCluster(cluster, timeoutMs) {
      const ready = usableConnection(cluster);
      if (ready !== undefined) return Promise.resolve(ready.info);
      if (closing) return Promise.reject(new AirlockError('UNAVAILABLE', 'The tunnel endpoint is closed'));
      return new Promise<TunnelConnectionInfo>((resolve, reject) => {
        const cleanup = (): void => {
          clearTimeout(timer);
          events.off('connected', onConnected);
          events.off('closed', onClosed);
        };
        const onConnected = (name: string): void => {
          const connection = name === cluster ? usableConnection(cluster) : undefined;
          if (connection === undefined) return;
          cleanup();
          resolve(connection.info);
        };
        const onClosed = (): void => {
          cleanup();
          reject(new AirlockError('UNAVAILABLE', 'The tunnel endpoint is closed'));
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new AirlockError('TIMEOUT', `Cluster ${cluster} did not connect in ${timeoutMs} ms`, { details: { cluster, timeoutMs } }));
        }, timeoutMs);
        events.on('connected', onConnected);
        events.on('closed', onClosed);
      });
    },
    disconnect(cluster) {
      const entry = clusters.get(cluster);
      if (entry === undefined || entry.connections.size === 0) return false;
      // Retired first, so that none of them is failed over to while the others go.
      for (const connection of entry.connections) connection.retire();
      for (const connection of [...entry.connections]) connection.destroy('disconnected by the control plane');
      return true;
    },
    async close() {
      if (closing) return;
      closing = true;
      clearTimeout(failureWindow);
      events.emit('closed');
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const entry of clusters.values()) {
        for (const connection of entry.connections) connection.retire();
        for (const connection of [...entry.connections]) connection.destroy('endpoint closed');
      }
      // Sockets still in their TLS handshake are not tunnels yet, but they hold the port.
      listener.destroyAll();
      await stopped;
      log.info({ event: 'tunnel.endpoint_closed', url }, 'tunnel endpoint closed');
    },
  };
  return Object.freeze(endpoint);
}
