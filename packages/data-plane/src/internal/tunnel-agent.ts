// The data-plane tunnel agent: dials the control plane over mTLS and serves Connect services to it on that outbound connection.
import { EventEmitter } from 'node:events';
import type http2 from 'node:http2';
import { isIP } from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import type { ConnectRouter, ConnectRouterOptions } from '@connectrpc/connect';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import { AirlockError, configCheck, configError, type DeepReadonly, errorCodeOf, freezeConfig, type Logger } from '@airlock/common';
import {
  certificateFingerprint,
  createLimitedHttp2SocketServer,
  describeTlsSocket,
  resolveListenerLimits,
  type ListenerLimitsOptions,
  startHttp2Heartbeat,
  tlsClientOptions,
  type PemInput,
  type ResolvedListenerLimits,
  type TlsConnectionDescription,
} from '@airlock/pki';
import { isTunnelAcceptedPing } from '@airlock/protocol';
import { fullJitterBackoffMs } from './backoff.js';

/** The agent's client certificate and key for one connection. The key is secret and never logged. */
export interface TunnelCredentials {
  /** PEM client certificate chain, leaf first, with URI SAN `spiffe://airlock/cluster/<name>`. */
  readonly cert: PemInput;
  readonly key: PemInput;
}

export interface TunnelAgentOptions {
  /** The control plane's tunnel endpoint, `https://host:port`. */
  readonly endpoint: string | URL;
  /** The CA the tunnel endpoint's server certificate must chain to. */
  readonly ca: PemInput;
  /**
   * Called before every connection attempt, so a renewed certificate is picked up by the next
   * connection (or by `rotate()`) while the current connection keeps serving its in-flight calls.
   */
  readonly getCredentials: () => TunnelCredentials | Promise<TunnelCredentials>;
  /**
   * The Connect services the control plane may call, as for `connectNodeAdapter`. Must include
   * TunnelHealthService (as `tunnelServiceRoutes()` does): the control plane calls its Check on every
   * new connection and uses the connection only once it has answered.
   */
  readonly routes: (router: ConnectRouter) => void;
  readonly log: Logger;
  /** Name the endpoint's certificate must match (and SNI). @default the endpoint's host name; its IP SAN for an IP address */
  readonly servername?: string;
  /** How often the agent PINGs the control plane, in milliseconds. @default 1000 */
  readonly heartbeatIntervalMs?: number;
  /** A PING unanswered for this long drops the tunnel and starts a reconnect, in milliseconds. @default 2000 */
  readonly heartbeatTimeoutMs?: number;
  /**
   * Limit for TCP connect, TLS handshake, and the control plane's acceptance of the connection (it
   * calls TunnelHealthService.Check, then signals with a PING that the connection carries its
   * calls), in milliseconds. @default 10000
   */
  readonly connectTimeoutMs?: number;
  /** How long a connection being replaced or stopped may finish in-flight calls, in milliseconds. @default 30000 */
  readonly drainTimeoutMs?: number;
  /** Ceiling of the first reconnect delay, in milliseconds; it doubles per failure. @default 200 */
  readonly backoffInitialMs?: number;
  /** Cap of the reconnect delay, in milliseconds. @default 30000 */
  readonly backoffMaxMs?: number;
  /** Options for the Connect handler (message size limits and so on). @default connect-es defaults */
  readonly connect?: ConnectRouterOptions;
  /**
   * Concurrent calls the control plane may have in flight over one tunnel: the agent is the HTTP/2
   * server there, so this is its SETTINGS_MAX_CONCURRENT_STREAMS (the listener limit of @airlock/pki).
   * Calls beyond it wait in the control plane's HTTP/2 client for a free stream.
   * @default DEFAULT_LISTENER_LIMITS.maxConcurrentStreams (100)
   */
  readonly maxConcurrentStreams?: number;
  /**
   * The listener limits of the agent's HTTP/2 server (@airlock/pki listener-limits), which serves the
   * control plane on the agent's own outbound connection: the stream caps, the headers timeout, the
   * per-stream request timeout and the body-progress rule apply there as on any listener
   * (connection caps, handshake and idle timeouts do not: the agent dialled the connection, and the
   * PING heartbeat watches it). `maxConcurrentStreams` above, if set, wins over `limits.maxConcurrentStreams`.
   * @default DEFAULT_LISTENER_LIMITS
   */
  readonly limits?: ListenerLimitsOptions;
}

export type ResolvedTunnelAgentConfig = DeepReadonly<{
  endpoint: URL;
  host: string;
  port: number;
  servername: string | undefined;
  ca: PemInput;
  getCredentials: () => TunnelCredentials | Promise<TunnelCredentials>;
  routes: (router: ConnectRouter) => void;
  log: Logger;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  connectTimeoutMs: number;
  drainTimeoutMs: number;
  backoffInitialMs: number;
  backoffMaxMs: number;
  limits: ResolvedListenerLimits;
}> & {
  // Handed to connect-es as is, whose option types are mutable.
  readonly connect: ConnectRouterOptions;
};

export type TunnelAgentState = 'idle' | 'connecting' | 'connected' | 'backoff' | 'stopped';

/** The agent's side of its current tunnel. Contains no secrets. */
export interface TunnelAgentConnectionInfo {
  readonly establishedAt: Date;
  readonly localPort: number | undefined;
  /** SHA-256 of the client certificate this connection presented (lowercase hex). */
  readonly clientFingerprintSha256: string | undefined;
  /** Negotiated protocol and suite, and the control plane's certificate (fingerprint, expiry). */
  readonly tls: TlsConnectionDescription;
}

export interface TunnelAgentStats {
  /** Tunnels established since start (the first connection counts). */
  readonly established: number;
  /** Connection attempts that failed before the tunnel was up. */
  readonly failedAttempts: number;
}

export interface TunnelAgent {
  /** Starts dialling; idempotent. */
  start(): void;
  /** Stops reconnecting, lets in-flight calls finish (up to `drainTimeoutMs`), then closes. */
  stop(): Promise<void>;
  state(): TunnelAgentState;
  /** The current tunnel, or undefined while there is none. */
  connection(): TunnelAgentConnectionInfo | undefined;
  /** Resolves once a tunnel is up; rejects with TIMEOUT after `timeoutMs`, or UNAVAILABLE if the agent stops. */
  waitForConnected(timeoutMs: number): Promise<TunnelAgentConnectionInfo>;
  /**
   * Make-before-break: dials a new connection with fresh `getCredentials()`, switches to it once the
   * control plane has accepted it (and so routes new calls to it), then drains the old one (GOAWAY;
   * its in-flight calls complete). For certificate renewal.
   */
  rotate(): Promise<TunnelAgentConnectionInfo>;
  stats(): TunnelAgentStats;
}

const DEFAULTS = Object.freeze({
  heartbeatIntervalMs: 1000,
  heartbeatTimeoutMs: 2000,
  connectTimeoutMs: 10_000,
  drainTimeoutMs: 30_000,
  backoffInitialMs: 200,
  backoffMaxMs: 30_000,
});

export function resolveTunnelAgentConfig(options: TunnelAgentOptions): ResolvedTunnelAgentConfig {
  if (typeof options !== 'object' || options === null) throw configError('tunnelAgent', 'options are required');
  let endpoint: URL;
  try {
    endpoint = new URL(String(options.endpoint));
  } catch {
    throw configError('tunnelAgent.endpoint', 'must be an https:// URL');
  }
  if (endpoint.protocol !== 'https:' || endpoint.hostname === '') throw configError('tunnelAgent.endpoint', 'must be an https:// URL');
  if (typeof options.getCredentials !== 'function') throw configError('tunnelAgent.getCredentials', 'must be a function');
  if (typeof options.routes !== 'function') throw configError('tunnelAgent.routes', 'must be a function');
  if (typeof options.log !== 'object' || options.log === null) throw configError('tunnelAgent.log', 'is required');
  // URL keeps the brackets of an IPv6 literal; the socket API wants them off.
  const host = endpoint.hostname.replace(/^\[(.*)\]$/u, '$1');
  const servername = options.servername ?? (isIP(host) === 0 ? host : undefined);
  const ms = (name: keyof typeof DEFAULTS, min: number): number =>
    configCheck.integer(`tunnelAgent.${name}`, options[name] ?? DEFAULTS[name], min, 3_600_000);
  const backoffInitialMs = ms('backoffInitialMs', 1);
  const backoffMaxMs = ms('backoffMaxMs', 1);
  if (backoffMaxMs < backoffInitialMs) throw configError('tunnelAgent.backoffMaxMs', 'must not be below backoffInitialMs');
  // Fail at start-up, not on every reconnect, if the CA cannot be used.
  tlsClientOptions({ ca: options.ca });
  const resolved = freezeConfig({
    endpoint,
    host,
    port: endpoint.port === '' ? 443 : Number(endpoint.port),
    servername,
    ca: options.ca,
    getCredentials: options.getCredentials,
    routes: options.routes,
    log: options.log,
    heartbeatIntervalMs: ms('heartbeatIntervalMs', 10),
    heartbeatTimeoutMs: ms('heartbeatTimeoutMs', 10),
    connectTimeoutMs: ms('connectTimeoutMs', 10),
    drainTimeoutMs: ms('drainTimeoutMs', 0),
    backoffInitialMs,
    backoffMaxMs,
    limits: resolveListenerLimits(
      options.maxConcurrentStreams === undefined ? options.limits : { ...options.limits, maxConcurrentStreams: options.maxConcurrentStreams },
      'tunnelAgent.limits',
    ),
  });
  return Object.freeze({ ...resolved, connect: Object.freeze({ ...(options.connect ?? {}) }) });
}

function firstPem(value: PemInput): string | Buffer {
  return typeof value === 'string' || Buffer.isBuffer(value) ? value : (value[0] ?? '');
}

/** One established tunnel: the agent's outbound TLS socket with this process as the HTTP/2 server on it. */
class AgentConnection {
  readonly closed: Promise<string>;
  private resolveClosed!: (reason: string) => void;
  private isClosed = false;
  private closeReason: string | undefined;
  private readonly heartbeat: { stop(): void };
  private drainTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly socket: TLSSocket,
    readonly session: http2.ServerHttp2Session,
    readonly info: TunnelAgentConnectionInfo,
    private readonly config: ResolvedTunnelAgentConfig,
  ) {
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    // Both ends PING: this side notices a control plane that vanished without a FIN (a dead host, a
    // NAT that forgot the flow) and starts reconnecting; the control plane notices a dead agent.
    this.heartbeat = startHttp2Heartbeat(session, {
      intervalMs: config.heartbeatIntervalMs,
      timeoutMs: config.heartbeatTimeoutMs,
      isAlive: () => this.alive(),
      onTimeout: () => {
        this.config.log.warn({ event: 'tunnel.heartbeat_timeout', timeoutMs: this.config.heartbeatTimeoutMs }, 'tunnel PING unanswered; reconnecting');
        this.destroy('heartbeat timeout');
      },
      onPingError: (code) => {
        this.closeReason ??= `ping failed ${code}`;
      },
    });
    session.once('close', () => this.finish('session closed'));
    session.on('goaway', () => {
      this.closeReason ??= 'control plane sent GOAWAY';
    });
    socket.once('close', () => this.destroy('socket closed'));
  }

  alive(): boolean {
    return !this.isClosed && !this.session.destroyed && !this.session.closed && !this.socket.destroyed;
  }

  destroy(reason: string): void {
    this.closeReason ??= reason;
    if (!this.session.destroyed) this.session.destroy();
    if (!this.socket.destroyed) this.socket.destroy();
    this.finish(reason);
  }

  /** GOAWAY: the control plane sends no new calls here; in-flight ones finish, then the connection closes. */
  drain(reason: string): Promise<string> {
    this.closeReason ??= reason;
    if (this.alive()) {
      this.session.close();
      this.drainTimer = setTimeout(() => this.destroy(`${reason}; drain timed out`), this.config.drainTimeoutMs);
      this.drainTimer.unref();
    } else {
      this.destroy(reason);
    }
    return this.closed;
  }

  private finish(reason: string): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.heartbeat.stop();
    clearTimeout(this.drainTimer);
    this.resolveClosed(this.closeReason ?? reason);
  }

}

class TunnelAgentImpl implements TunnelAgent {
  private current: AgentConnection | undefined;
  private readonly connections = new Set<AgentConnection>();
  /** Sockets still dialling; stop() must be able to abort them. */
  private readonly dialling = new Set<TLSSocket>();
  private readonly events = new EventEmitter();
  private readonly server: http2.Http2Server;
  private phase: TunnelAgentState = 'idle';
  private stopController = new AbortController();
  private loopDone: Promise<void> | undefined;
  private stopping: Promise<void> | undefined;
  private established = 0;
  private failedAttempts = 0;

  constructor(private readonly config: ResolvedTunnelAgentConfig) {
    this.events.setMaxListeners(0);
    // An HTTP/2 server that never listens: it is handed the sockets this agent dials out with
    // (emit('connection')), so the data plane serves the control plane without an open port.
    // The listener limits apply as on every server Airlock runs (docs/listener-limits.md).
    this.server = createLimitedHttp2SocketServer(connectNodeAdapter({ ...config.connect, routes: config.routes }), { name: 'tunnel-agent', log: config.log as Logger, limits: config.limits });
    this.server.on('sessionError', (error) => config.log.debug({ event: 'tunnel.session_error', code: errorCodeOf(error) }, 'tunnel session error'));
  }

  start(): void {
    if (this.phase !== 'idle') return;
    this.phase = 'connecting';
    this.config.log.info({ event: 'tunnel.agent_started', endpoint: this.config.endpoint.origin }, 'tunnel agent started');
    this.loopDone = this.loop();
  }

  async stop(): Promise<void> {
    if (this.stopping !== undefined) return this.stopping;
    this.stopping = (async () => {
      this.phase = 'stopped';
      this.stopController.abort();
      this.events.emit('stopped');
      for (const socket of this.dialling) socket.destroy();
      await Promise.all([...this.connections].map((connection) => connection.drain('agent stopping')));
      await this.loopDone;
      this.config.log.info({ event: 'tunnel.agent_stopped' }, 'tunnel agent stopped');
    })();
    return this.stopping;
  }

  state(): TunnelAgentState {
    if (this.phase === 'idle' || this.phase === 'stopped') return this.phase;
    return this.current?.alive() === true ? 'connected' : this.phase;
  }

  connection(): TunnelAgentConnectionInfo | undefined {
    return this.current?.alive() === true ? this.current.info : undefined;
  }

  stats(): TunnelAgentStats {
    return { established: this.established, failedAttempts: this.failedAttempts };
  }

  waitForConnected(timeoutMs: number): Promise<TunnelAgentConnectionInfo> {
    const ready = this.connection();
    if (ready !== undefined) return Promise.resolve(ready);
    if (this.phase === 'stopped') return Promise.reject(new AirlockError('UNAVAILABLE', 'The tunnel agent is stopped'));
    return new Promise((resolve, reject) => {
      const cleanup = (): void => {
        clearTimeout(timer);
        this.events.off('connected', onConnected);
        this.events.off('stopped', onStopped);
      };
      const onConnected = (info: TunnelAgentConnectionInfo): void => {
        cleanup();
        resolve(info);
      };
      const onStopped = (): void => {
        cleanup();
        reject(new AirlockError('UNAVAILABLE', 'The tunnel agent is stopped'));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new AirlockError('TIMEOUT', `The tunnel did not come up in ${timeoutMs} ms`, { details: { timeoutMs } }));
      }, timeoutMs);
      this.events.on('connected', onConnected);
      this.events.on('stopped', onStopped);
    });
  }

  async rotate(): Promise<TunnelAgentConnectionInfo> {
    if (this.phase === 'idle' || this.phase === 'stopped') throw new AirlockError('UNAVAILABLE', 'The tunnel agent is not running');
    const next = await this.dial();
    this.adopt(next, 'rotated to a new connection');
    return next.info;
  }

  /** Keeps one tunnel up: dial, wait for it to close, back off, dial again, until stop(). */
  private async loop(): Promise<void> {
    let attempt = 0;
    const stopped = (): boolean => this.phase === 'stopped';
    while (!stopped()) {
      const live = this.current;
      if (live?.alive() === true) {
        const reason = await live.closed;
        if (this.current === live && !stopped()) {
          this.config.log.warn({ event: 'tunnel.lost', reason }, 'tunnel lost; reconnecting');
        }
        continue;
      }
      this.phase = 'connecting';
      try {
        const connection = await this.dial();
        if (stopped()) {
          connection.destroy('agent stopping');
          break;
        }
        this.adopt(connection);
        attempt = 0;
        continue;
      } catch (error) {
        if (stopped()) break;
        this.failedAttempts += 1;
        this.config.log.warn(
          { event: 'tunnel.connect_failed', endpoint: this.config.endpoint.origin, code: errorCodeOf(error), attempt },
          error instanceof AirlockError ? error.message : 'tunnel connection attempt failed',
        );
      }
      const delayMs = fullJitterBackoffMs(attempt, { initialMs: this.config.backoffInitialMs, maxMs: this.config.backoffMaxMs });
      attempt += 1;
      this.phase = 'backoff';
      this.config.log.info({ event: 'tunnel.backoff', delayMs, attempt }, 'waiting before reconnecting');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, delayMs);
        function done(): void {
          clearTimeout(timer);
          resolve();
        }
        this.stopController.signal.addEventListener('abort', done, { once: true });
      });
    }
  }

  /** Makes `connection` the current tunnel; a previous one drains, so its in-flight calls finish. */
  private adopt(connection: AgentConnection, reason = 'replaced'): void {
    const previous = this.current;
    this.current = connection;
    if (this.phase !== 'stopped') this.phase = 'connecting';
    this.established += 1;
    if (previous !== undefined && previous !== connection) void previous.drain(reason);
    this.events.emit('connected', connection.info);
  }

  /**
   * Opens one connection: TCP, then TLS with the client certificate, then HTTP/2 with this process
   * as the server. Resolves once the control plane's acceptance PING arrives (@airlock/protocol
   * tunnelAcceptedPing). The control plane sends it after the connection passed its certificate and
   * revocation checks (with TLS 1.3 a client's handshake completes before the server has checked the
   * client certificate, so 'secureConnect' alone proves nothing), answered its TunnelHealthService
   * proof call, and became the cluster's tunnel: from then on the control plane's calls come here.
   */
  private async dial(): Promise<AgentConnection> {
    let credentials: TunnelCredentials;
    try {
      credentials = await this.config.getCredentials();
    } catch (error) {
      throw new AirlockError('UNAVAILABLE', 'No tunnel credentials available', { cause: error });
    }
    let clientFingerprintSha256: string | undefined;
    try {
      clientFingerprintSha256 = certificateFingerprint(firstPem(credentials.cert));
    } catch {
      clientFingerprintSha256 = undefined;
    }
    const tlsOptions = tlsClientOptions({
      ca: this.config.ca,
      cert: credentials.cert,
      key: credentials.key,
      ...(this.config.servername === undefined ? {} : { servername: this.config.servername }),
    });

    return new Promise<AgentConnection>((resolve, reject) => {
      const socket = tls.connect({ ...tlsOptions, host: this.config.host, port: this.config.port, ALPNProtocols: ['h2'] });
      this.dialling.add(socket);
      let settled = false;
      const fail = (error: AirlockError): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.dialling.delete(socket);
        socket.destroy();
        reject(error);
      };
      const timer = setTimeout(
        () =>
          fail(
            new AirlockError(
              'TIMEOUT',
              `Tunnel not established within ${this.config.connectTimeoutMs} ms` +
                (session === undefined ? '' : ' (the control plane did not accept the connection: does the agent serve TunnelHealthService?)'),
            ),
          ),
        this.config.connectTimeoutMs,
      );
      let session: http2.ServerHttp2Session | undefined;
      // Kept after the tunnel is up: the HTTP/2 session reports socket errors, but a listener here
      // guarantees a late reset can never surface as an unhandled 'error' event.
      socket.on('error', (error) => {
        if (!settled) fail(new AirlockError(AirlockError.from(error, 'UNAVAILABLE').code, `Tunnel connection failed (${errorCodeOf(error)})`, { cause: error }));
      });
      socket.once('close', () =>
        fail(new AirlockError('UNAVAILABLE', 'The control plane closed the connection before the tunnel was up (refused, revoked or shutting down)')),
      );
      socket.once('secureConnect', () => {
        const description = describeTlsSocket(socket);
        // The seed's "tunnel pod logs" check: protocol, cipher, and the control plane's certificate.
        this.config.log.info(
          {
            event: 'tunnel.handshake',
            endpoint: this.config.endpoint.origin,
            localPort: socket.localPort,
            protocol: description.protocol,
            cipher: description.cipher,
            cipherStandardName: description.cipherStandardName,
            keyExchangeGroup: description.keyExchangeGroup,
            peerFingerprintSha256: description.peerFingerprintSha256,
            peerValidTo: description.peerValidTo,
            peerSubject: description.peerSubject,
            clientFingerprintSha256,
          },
          'tunnel TLS handshake',
        );
        if (socket.alpnProtocol !== 'h2') {
          fail(new AirlockError('UNAVAILABLE', 'The tunnel endpoint did not negotiate HTTP/2 (ALPN h2)'));
          return;
        }
        const capture = (created: http2.ServerHttp2Session): void => {
          session = created;
        };
        // emit('connection') creates the server session synchronously, so 'session' fires inside it.
        this.server.once('session', capture);
        this.server.emit('connection', socket);
        this.server.off('session', capture);
        if (session === undefined) {
          fail(new AirlockError('INTERNAL', 'The HTTP/2 server did not take the tunnel socket'));
          return;
        }
        const established = session;
        established.on('error', (error) => this.config.log.debug({ event: 'tunnel.session_error', code: errorCodeOf(error) }, 'tunnel session error'));
        const accepted = (): void => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          this.dialling.delete(socket);
          const info: TunnelAgentConnectionInfo = Object.freeze({
            establishedAt: new Date(),
            localPort: socket.localPort,
            clientFingerprintSha256,
            tls: description,
          });
          const connection = new AgentConnection(socket, established, info, this.config);
          this.connections.add(connection);
          void connection.closed.then((reason) => {
            this.connections.delete(connection);
            this.config.log.info(
              { event: 'tunnel.closed', reason, durationMs: Date.now() - info.establishedAt.getTime(), localPort: info.localPort },
              'tunnel closed',
            );
          });
          this.config.log.info(
            { event: 'tunnel.connected', endpoint: this.config.endpoint.origin, localPort: socket.localPort, clientFingerprintSha256 },
            'tunnel up; serving the control plane over it',
          );
          resolve(connection);
        };
        // Node's typings declare 'ping' without its payload argument.
        const onPing = (...args: unknown[]): void => {
          if (!isTunnelAcceptedPing(args[0])) return;
          established.off('ping', onPing);
          accepted();
        };
        established.on('ping', onPing);
      });
    });
  }
}

/** Creates a tunnel agent without starting it; call `start()`. */
export function createTunnelAgent(options: TunnelAgentOptions): TunnelAgent {
  return new TunnelAgentImpl(resolveTunnelAgentConfig(options));
}

/** Creates a tunnel agent and starts dialling the control plane. */
export function startTunnelAgent(options: TunnelAgentOptions): TunnelAgent {
  const agent = createTunnelAgent(options);
  agent.start();
  return agent;
}
