// Listener hardening shared by every Airlock TLS listener: timeouts, connection and stream caps, and destroying every socket they refuse.
import type { IncomingMessage, ServerResponse } from 'node:http';
import http2, { type Http2SecureServer, type Http2Server, type Http2Session, type SecureServerOptions, type ServerHttp2Session, type ServerHttp2Stream, type Settings } from 'node:http2';
import https from 'node:https';
import type { Server as NetServer, Socket } from 'node:net';
import tls, { type TLSSocket, type TlsOptions } from 'node:tls';
import { configCheck, configError, errorCodeOf, freezeConfig, KEEP_ALIVE_TIMEOUT_MS, type DeepReadonly, type Logger } from '@airlock/common';
import { isInternalPeer } from './internal/internal-peers.js';

/**
 * Limits applied to one listener. Every Airlock listener (API, dispatch, tunnel, KMS, object store)
 * takes these from its options and hands them to this module; none sets a timeout of its own.
 */
export interface ListenerLimitsOptions {
  /**
   * A client that has not finished the TLS handshake in this time is disconnected: its socket is
   * destroyed, never answered (it has no TLS session to carry an answer). @default 10000
   */
  readonly handshakeTimeoutMs?: number;
  /**
   * Time allowed to send a request's head; slowloris guard. HTTP/1.1: the request line and headers
   * (answered 408). HTTP/2: the connection preface and SETTINGS, once the TLS session is up, and then
   * each request's HEADERS and CONTINUATION frames, from the first HEADERS frame of a stream to its
   * END_HEADERS (the session is cut with GOAWAY ENHANCE_YOUR_CALM, within 1¼ × this time).
   * @default 30000
   */
  readonly headersTimeoutMs?: number;
  /**
   * Time allowed to receive a whole request, head and body; 0 disables it (the object store, whose
   * 5 GiB uploads may rightly take long, relies on the body-progress timeout instead).
   * HTTP/1.1 requests and HTTP/2 streams alike. @default 300000
   */
  readonly requestTimeoutMs?: number;
  /**
   * Body progress: while the server waits for a request body, every window of this length must bring
   * at least `bodyMinBytes` bytes, or the request is cut off (within two windows): an HTTP/1.1
   * connection is destroyed, an HTTP/2 stream is reset (RST_STREAM CANCEL; the session's other
   * streams go on). A body that trickles (one byte every 10 s) is cut off however long the request
   * timeout is. Time the server itself spends not reading (authenticating, or behind on what already
   * arrived) is not counted against the client. @default 30000
   */
  readonly bodyProgressTimeoutMs?: number;
  /** See `bodyProgressTimeoutMs`. @default 16384 */
  readonly bodyMinBytes?: number;
  /** A connection with no bytes moving either way for this long is destroyed (an idle HTTP/2 session too). @default 120000 */
  readonly idleTimeoutMs?: number;
  /**
   * HTTP/1.1: how long an idle keep-alive connection stays open between requests.
   * @default 65000 (KEEP_ALIVE_TIMEOUT_MS: longer than clients' pooled-connection idle time)
   */
  readonly keepAliveTimeoutMs?: number;
  /** Concurrent connections on this listener; more are closed as they arrive. @default 4096 */
  readonly maxConnections?: number;
  /** Concurrent connections from one client address on this listener; more are closed as they arrive. @default 1024 */
  readonly maxConnectionsPerAddress?: number;
  /** HTTP/2: concurrent streams per connection (SETTINGS_MAX_CONCURRENT_STREAMS). RFC 9113 §6.5.2 recommends at least 100. @default 100 */
  readonly maxConcurrentStreams?: number;
  /**
   * HTTP/2: concurrent streams over all of this listener's connections; a stream beyond it is
   * refused with RST_STREAM REFUSED_STREAM before any handler sees it. A held stream costs about
   * 23 KiB, so the default bounds what streams can hold to about 370 MiB per listener, where
   * `maxConnections` × `maxConcurrentStreams` alone would allow 9 GiB. @default 16384
   */
  readonly maxListenerStreams?: number;
}

export type ResolvedListenerLimits = DeepReadonly<Required<ListenerLimitsOptions>>;

/** The defaults of every listener; a listener may pass its own defaults (the KMS's shorter request timeout) to resolveListenerLimits. */
export const DEFAULT_LISTENER_LIMITS: ResolvedListenerLimits = Object.freeze({
  handshakeTimeoutMs: 10_000,
  headersTimeoutMs: 30_000,
  requestTimeoutMs: 300_000,
  bodyProgressTimeoutMs: 30_000,
  bodyMinBytes: 16_384,
  idleTimeoutMs: 120_000,
  keepAliveTimeoutMs: KEEP_ALIVE_TIMEOUT_MS,
  maxConnections: 4096,
  maxConnectionsPerAddress: 1024,
  maxConcurrentStreams: 100,
  maxListenerStreams: 16_384,
});

const HOUR_MS = 3_600_000;

/**
 * Applies defaults (`defaults` over DEFAULT_LISTENER_LIMITS) and validates. `prefix` names the
 * options in CONFIG_INVALID errors, e.g. `kms.limits`.
 */
export function resolveListenerLimits(
  options: ListenerLimitsOptions | undefined,
  prefix: string,
  defaults: ListenerLimitsOptions = {},
): ResolvedListenerLimits {
  if (options !== undefined && (typeof options !== 'object' || options === null)) throw configError(prefix, 'must be an object');
  const base = { ...DEFAULT_LISTENER_LIMITS, ...defaults };
  const pick = <K extends keyof ListenerLimitsOptions>(key: K): number => (options?.[key] ?? base[key]);
  const int = (key: keyof ListenerLimitsOptions, min: number, max: number): number => configCheck.integer(`${prefix}.${key}`, pick(key), min, max);
  const resolved = {
    handshakeTimeoutMs: int('handshakeTimeoutMs', 100, 600_000),
    headersTimeoutMs: int('headersTimeoutMs', 100, 600_000),
    requestTimeoutMs: int('requestTimeoutMs', 0, 24 * HOUR_MS),
    bodyProgressTimeoutMs: int('bodyProgressTimeoutMs', 100, HOUR_MS),
    bodyMinBytes: int('bodyMinBytes', 1, 1024 * 1024 * 1024),
    idleTimeoutMs: int('idleTimeoutMs', 100, 24 * HOUR_MS),
    keepAliveTimeoutMs: int('keepAliveTimeoutMs', 100, HOUR_MS),
    maxConnections: int('maxConnections', 1, 1_000_000),
    maxConnectionsPerAddress: int('maxConnectionsPerAddress', 1, 1_000_000),
    maxConcurrentStreams: int('maxConcurrentStreams', 1, 2 ** 31 - 1),
    maxListenerStreams: int('maxListenerStreams', 1, 10_000_000),
  };
  // Node refuses a head timeout longer than the whole-request timeout; say so in our own terms.
  if (resolved.requestTimeoutMs > 0 && resolved.headersTimeoutMs > resolved.requestTimeoutMs) {
    throw configError(`${prefix}.headersTimeoutMs`, 'must not exceed requestTimeoutMs');
  }
  return freezeConfig(resolved);
}

/**
 * The listeners whose limits the environment may set, by the names they log under. `tunnel-agent` is the
 * data-plane agent's HTTP/2 server on its own outbound tunnel connection (createLimitedHttp2SocketServer);
 * `tunnel` is the control plane's tunnel endpoint.
 */
export type ListenerName = 'api' | 'dispatch' | 'tunnel' | 'kms' | 's3' | 'tunnel-agent';

const LISTENER_NAMES: readonly ListenerName[] = ['api', 'dispatch', 'tunnel', 'kms', 's3', 'tunnel-agent'];
const LIMIT_KEYS = Object.keys(DEFAULT_LISTENER_LIMITS) as Array<keyof ListenerLimitsOptions>;
/** Every listener's limits: AIRLOCK_LISTENER_<OPTION>; one listener's: AIRLOCK_LISTENER_<NAME>_<OPTION>. */
export const LISTENER_LIMITS_ENV_PREFIX = 'AIRLOCK_LISTENER_';

/** `handshakeTimeoutMs` → `HANDSHAKE_TIMEOUT_MS`. */
const envSuffix = (key: string): string => key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase();
/** `tunnel-agent` → `TUNNEL_AGENT`. */
const envName = (listener: ListenerName): string => listener.replace(/-/g, '_').toUpperCase();

/**
 * A listener's limits from the environment, for an entry point to pass as that listener's `limits`
 * option (operators tighten a deployment this way; the attack suite shortens timeouts so attacks
 * play out in seconds). `AIRLOCK_LISTENER_<OPTION>` sets an option for every listener and
 * `AIRLOCK_LISTENER_<NAME>_<OPTION>` for one (NAME is API, DISPATCH, TUNNEL, KMS, S3 or TUNNEL_AGENT), which wins.
 * OPTION is the option's name in upper snake case, e.g. `AIRLOCK_LISTENER_HANDSHAKE_TIMEOUT_MS=3000`,
 * `AIRLOCK_LISTENER_S3_BODY_PROGRESS_TIMEOUT_MS=2000`. Values must be decimal integers; their ranges
 * are checked by resolveListenerLimits. Any other `AIRLOCK_LISTENER_*` variable is CONFIG_INVALID,
 * so a misspelt limit is an error rather than silently ignored. Unset options keep the listener's defaults.
 */
export function listenerLimitsFromEnv(env: Readonly<Record<string, string | undefined>>, name: ListenerName): ListenerLimitsOptions {
  const known = new Map<string, { key: keyof ListenerLimitsOptions; listener: ListenerName | undefined }>();
  for (const key of LIMIT_KEYS) {
    known.set(`${LISTENER_LIMITS_ENV_PREFIX}${envSuffix(key)}`, { key, listener: undefined });
    for (const listener of LISTENER_NAMES) known.set(`${LISTENER_LIMITS_ENV_PREFIX}${envName(listener)}_${envSuffix(key)}`, { key, listener });
  }
  const shared: Partial<Record<keyof ListenerLimitsOptions, number>> = {};
  const own: Partial<Record<keyof ListenerLimitsOptions, number>> = {};
  for (const [variable, text] of Object.entries(env)) {
    if (!variable.startsWith(LISTENER_LIMITS_ENV_PREFIX) || text === undefined) continue;
    const target = known.get(variable);
    if (target === undefined) throw configError(variable, `is not a listener limit (see docs/listener-limits.md)`);
    if (!/^\d{1,15}$/.test(text.trim())) throw configError(variable, 'must be a non-negative decimal integer');
    if (target.listener === undefined) shared[target.key] = Number(text.trim());
    else if (target.listener === name) own[target.key] = Number(text.trim());
  }
  return Object.freeze({ ...shared, ...own });
}

/** HTTP/2 settings for a server (one that listens, or one handed sockets it dialled itself, as the tunnel agent). */
export function http2ServerSettings(limits: ResolvedListenerLimits): Settings {
  return { maxConcurrentStreams: limits.maxConcurrentStreams, enablePush: false };
}

/**
 * How many public connections all the listeners of one process may hold together. It is the
 * process's descriptor limit less a reserve, so that when the process nears the limit its public
 * listeners refuse new connections (`process-budget`) while descriptors remain for what the process
 * needs itself: the internal pool's connections (object store → KMS, agent → control plane), the
 * KMS database, object files and logs. Connections from this process's own internal pool
 * (internal-pool.ts) never count against it.
 */
export interface ConnectionBudgetOptions {
  /** The process's descriptor limit (the soft RLIMIT_NOFILE); an entry point reads it, e.g. with parseDescriptorLimit from @airlock/common. */
  readonly descriptorLimit: number;
  /** Descriptors never given to public connections. @default min(1024, floor(descriptorLimit / 4)) */
  readonly reserve?: number;
}

export interface ConnectionBudget {
  /** descriptorLimit − reserve. */
  readonly maxPublicConnections: number;
  readonly reserve: number;
  /** Public connections held right now, over every listener sharing the budget. */
  inUse(): number;
  /** Takes a slot for a new public connection; false when none is left. */
  tryAcquire(): boolean;
  release(): void;
}

/** A budget shared by every listener of a process (pass the same one to each listener's options). */
export function createConnectionBudget(options: ConnectionBudgetOptions): ConnectionBudget {
  const descriptorLimit = configCheck.integer('connectionBudget.descriptorLimit', options.descriptorLimit, 16, Number.MAX_SAFE_INTEGER);
  const reserve = configCheck.integer('connectionBudget.reserve', options.reserve ?? Math.min(1024, Math.floor(descriptorLimit / 4)), 0, descriptorLimit - 1);
  const maxPublicConnections = descriptorLimit - reserve;
  let held = 0;
  return Object.freeze({
    maxPublicConnections,
    reserve,
    inUse: () => held,
    tryAcquire() {
      if (held >= maxPublicConnections) return false;
      held++;
      return true;
    },
    release() {
      if (held > 0) held--;
    },
  });
}

/** What identifies a listener in its log events, and its limits. */
export interface ListenerContext {
  /** Short name used as the log event prefix, e.g. `kms`, `s3`, `api`, `dispatch`, `tunnel`. */
  readonly name: string;
  readonly log: Logger;
  readonly limits: ResolvedListenerLimits;
  /** The process-wide budget this listener's public connections count against. @default none (only this listener's caps) */
  readonly budget?: ConnectionBudget;
}

/** A server created by this module, with the connections it tracks. */
export interface LimitedListener<S> {
  readonly server: S;
  /** Connections open right now (TCP, any stage). */
  connectionCount(): number;
  /** Destroys every open connection, in-flight requests included (for close()). */
  destroyAll(): void;
}

/** The raw TCP socket under a connection, or the connection itself. */
type AnySocket = Socket | TLSSocket;

/** Refusals and timeouts logged one by one per window; the rest are counted in one summary line. */
const EVENTS_LOGGED_PER_WINDOW = 20;
const EVENT_WINDOW_MS = 10_000;
/** How long a socket that got an HTTP error answer may take to read it before it is destroyed. */
const ERROR_ANSWER_LINGER_MS = 2000;

/** A debug log of refusals and timeouts that stays bounded when a flood causes thousands. */
function createLimitReporter(context: ListenerContext): (event: string, fields?: Record<string, unknown>) => void {
  let logged = 0;
  const suppressed = new Map<string, number>();
  let window: NodeJS.Timeout | undefined;
  return (event, fields = {}) => {
    window ??= setTimeout(() => {
      if (suppressed.size > 0) {
        context.log.warn({ event: `${context.name}.limits_suppressed`, counts: Object.fromEntries(suppressed) }, 'more connections refused or timed out (not logged one by one)');
      }
      logged = 0;
      suppressed.clear();
      window = undefined;
    }, EVENT_WINDOW_MS).unref();
    if (logged >= EVENTS_LOGGED_PER_WINDOW) {
      suppressed.set(event, (suppressed.get(event) ?? 0) + 1);
      return;
    }
    logged++;
    context.log.debug({ event: `${context.name}.${event}`, ...fields }, 'connection refused or timed out by listener limits');
  };
}

type Report = ReturnType<typeof createLimitReporter>;

/**
 * Caps connections per listener and per client address, tracks every socket, and destroys sockets
 * that fail or time out in the TLS handshake. Installed before anything reads from a socket.
 */
function guardConnections(server: tls.Server, context: ListenerContext, report: Report): { sockets: Set<Socket>; secured: WeakSet<object> } {
  const { limits, budget } = context;
  const sockets = new Set<Socket>();
  const perAddress = new Map<string, number>();
  // Connections from this process's own internal pool: admitted past every public cap (they are
  // bounded by the pool's maxSockets), so that a flood of public clients cannot lock the object
  // store out of its own KMS.
  let internal = 0;
  // Node's own 'connection' listeners (the TLS wrapper) are moved behind the caps, so a refused
  // socket is destroyed before any TLS state is created for it. The caps are checked here rather
  // than with net.Server#maxConnections, which would refuse internal connections too.
  const inner = server.rawListeners('connection') as Array<(this: NetServer, socket: Socket) => void>;
  server.removeAllListeners('connection');
  server.on('connection', function admit(this: NetServer, socket: Socket) {
    const address = socket.remoteAddress;
    if (address === undefined) {
      // The peer already went away between accept and here.
      socket.destroy();
      return;
    }
    if (isInternalPeer(address, socket.remotePort)) {
      internal++;
      sockets.add(socket);
      socket.once('close', () => {
        sockets.delete(socket);
        internal--;
      });
      for (const listener of inner) listener.call(this, socket);
      return;
    }
    const count = perAddress.get(address) ?? 0;
    const refusal =
      sockets.size - internal >= limits.maxConnections ? 'listener-cap'
      : count >= limits.maxConnectionsPerAddress ? 'address-cap'
      : budget !== undefined && !budget.tryAcquire() ? 'process-budget'
      : undefined;
    if (refusal !== undefined) {
      report('connection_refused', { reason: refusal, remoteAddress: address });
      socket.destroy();
      return;
    }
    perAddress.set(address, count + 1);
    sockets.add(socket);
    socket.once('close', () => {
      sockets.delete(socket);
      budget?.release();
      const left = (perAddress.get(address) ?? 1) - 1;
      if (left <= 0) perAddress.delete(address);
      else perAddress.set(address, left);
    });
    for (const listener of inner) listener.call(this, socket);
  });

  // Node's handshake timeout (and any other failure before the handshake completed) arrives here.
  // Node leaves such a socket open; an HTTP answer written to it would wait forever for a TLS session
  // that never comes, and the descriptor would never be released (DESIGN §10). Destroy it.
  const secured = new WeakSet<object>();
  server.on('secureConnection', (socket: TLSSocket) => secured.add(socket));
  server.on('tlsClientError', (error: Error, socket: TLSSocket) => {
    const code = errorCodeOf(error);
    if (code === 'ERR_TLS_HANDSHAKE_TIMEOUT') report('handshake_timeout', { remoteAddress: socket.remoteAddress });
    socket.destroy();
  });
  return { sockets, secured };
}

/** Destroys the socket after `ms` unless it closed first. */
function destroyAfter(socket: AnySocket, ms: number): void {
  const timer = setTimeout(() => socket.destroy(), ms);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
}

/**
 * Answers malformed HTTP/1.1 (400, 431, 408 for a head or request timeout) on a connection that
 * finished TLS, then closes it within a bounded time; destroys anything else at once.
 */
function handleClientErrors(server: https.Server | Http2SecureServer, context: ListenerContext, secured: WeakSet<object>, report: Report): void {
  server.on('clientError', (error: NodeJS.ErrnoException, socket: AnySocket) => {
    const code = error.code;
    const inFlight = (socket as AnySocket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (!secured.has(socket) || code === 'ECONNRESET' || !socket.writable || inFlight?.headersSent === true) {
      socket.destroy();
      return;
    }
    const status = code === 'HPE_HEADER_OVERFLOW' ? 431 : code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    if (status === 408) report('request_timeout', { remoteAddress: socket.remoteAddress });
    else context.log.debug({ event: `${context.name}.bad_request`, code }, 'malformed HTTP request');
    socket.end(`HTTP/1.1 ${status} ${status === 431 ? 'Request Header Fields Too Large' : status === 408 ? 'Request Timeout' : 'Bad Request'}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    // end() completes only once the peer reads the answer; a peer that never reads must not keep the socket.
    destroyAfter(socket, ERROR_ANSWER_LINGER_MS);
  });
}

/** Has the handler started reading the body and consumed everything that arrived? Only then is a stall the client's. */
function waitingForBody(req: IncomingMessage): boolean {
  return (req.readableFlowing !== null || req.readableDidRead) && req.readableLength === 0;
}

/**
 * Cuts off an HTTP/1.1 request body that stops progressing (see ListenerLimitsOptions.bodyProgressTimeoutMs).
 * Progress is counted on the connection's decrypted bytes, which the HTTP parser reads without 'data' events.
 */
function watchBodyProgress(req: IncomingMessage, context: ListenerContext, report: Report): void {
  if (req.complete) return;
  const length = req.headers['content-length'];
  if (req.headers['transfer-encoding'] === undefined && (length === undefined || length === '0')) return;
  const socket = req.socket as AnySocket | null;
  if (socket === null) return;
  const { bodyProgressTimeoutMs, bodyMinBytes } = context.limits;
  let last = socket.bytesRead;
  // A window counts only if the server waited for the body during all of it (from one check to the next).
  let armed = false;
  const timer = setInterval(() => {
    if (req.complete || socket.destroyed) {
      clearInterval(timer);
      return;
    }
    const read = socket.bytesRead;
    const progress = read - last;
    last = read;
    if (!waitingForBody(req)) {
      armed = false;
      return;
    }
    if (!armed) {
      armed = true;
      return;
    }
    if (progress < bodyMinBytes) {
      clearInterval(timer);
      report('body_stalled', { remoteAddress: socket.remoteAddress, bytes: progress, windowMs: bodyProgressTimeoutMs });
      socket.destroy();
    }
  }, bodyProgressTimeoutMs);
  timer.unref();
  req.once('close', () => clearInterval(timer));
}

/**
 * Cuts off an HTTP/2 request body that stops progressing (ListenerLimitsOptions.bodyProgressTimeoutMs):
 * the stream is reset with RST_STREAM CANCEL, and the session's other streams are untouched. The
 * rule is HTTP/1.1's (watchBodyProgress): a window counts only while the stream's reader has started
 * and has consumed everything that arrived. Progress is the DATA bytes Node hands the stream, counted
 * as they are pushed to it, before any handler reads them. Installed before any handler sees the stream.
 */
function watchHttp2BodyProgress(stream: ServerHttp2Stream, context: ListenerContext, report: Report): void {
  const { bodyProgressTimeoutMs, bodyMinBytes } = context.limits;
  let received = 0;
  let complete = false;
  const push = stream.push.bind(stream);
  // Node hands every DATA payload to the stream with push() (null at END_STREAM), whether or not anyone reads yet.
  stream.push = (chunk: unknown, encoding?: BufferEncoding): boolean => {
    if (chunk === null) complete = true;
    else if (chunk instanceof Uint8Array) received += chunk.byteLength;
    return push(chunk, encoding);
  };
  let last = 0;
  let armed = false;
  const timer = setInterval(() => {
    if (complete || stream.destroyed || stream.closed) {
      clearInterval(timer);
      return;
    }
    const progress = received - last;
    last = received;
    const waiting = (stream.readableFlowing !== null || stream.readableDidRead) && stream.readableLength === 0;
    if (!waiting) {
      armed = false;
      return;
    }
    if (!armed) {
      armed = true;
      return;
    }
    if (progress < bodyMinBytes) {
      clearInterval(timer);
      const socket = stream.session?.socket;
      report('body_stalled', { protocol: 'h2', remoteAddress: socket?.remoteAddress, bytes: progress, windowMs: bodyProgressTimeoutMs });
      stream.close(http2.constants.NGHTTP2_CANCEL);
    }
  }, bodyProgressTimeoutMs);
  timer.unref();
  stream.once('close', () => clearInterval(timer));
}

/** The socket options every listener shares: TCP keep-alive notices peers that vanished without a FIN. */
const TCP_OPTIONS = { keepAlive: true, keepAliveInitialDelay: 30_000 } as const;

/** Node's HTTP/1.1 timeout options; Node checks them every `connectionsCheckingInterval`, so that follows the shortest. */
function http1TimeoutOptions(limits: ResolvedListenerLimits): { headersTimeout: number; requestTimeout: number; connectionsCheckingInterval: number } {
  const shortest = Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs === 0 ? Infinity : limits.requestTimeoutMs);
  return {
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    connectionsCheckingInterval: checkingInterval(shortest),
  };
}

type RequestListener = (req: IncomingMessage, res: ServerResponse) => void;

export interface HttpsListenerHandlers {
  readonly request: RequestListener;
  /**
   * Requests with `Expect: 100-continue`. Without it, Node answers 100 itself and they go to `request`.
   * @default none
   */
  readonly checkContinue?: RequestListener;
}

/**
 * An HTTPS (HTTP/1.1) server with the listener limits applied. `tlsOptions` come from
 * tlsServerOptions(); `maxHeaderSize` is the one HTTP option a listener may add.
 */
export function createLimitedHttpsServer(
  tlsOptions: TlsOptions & { readonly maxHeaderSize?: number },
  handlers: HttpsListenerHandlers,
  context: ListenerContext,
): LimitedListener<https.Server> {
  const { limits } = context;
  const server = https.createServer({
    ...tlsOptions,
    ...TCP_OPTIONS,
    ...http1TimeoutOptions(limits),
    handshakeTimeout: limits.handshakeTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
  });
  const report = createLimitReporter(context);
  const { sockets, secured } = guardConnections(server, context, report);
  // Node destroys a connection idle for server.timeout when nothing listens for 'timeout'.
  server.timeout = limits.idleTimeoutMs;
  server.keepAliveTimeout = limits.keepAliveTimeoutMs;
  handleClientErrors(server, context, secured, report);
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    watchBodyProgress(req, context, report);
    handlers.request(req, res);
  });
  const checkContinue = handlers.checkContinue;
  if (checkContinue !== undefined) {
    server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
      watchBodyProgress(req, context, report);
      checkContinue(req, res);
    });
  }
  return listenerOf(server, sockets);
}

/**
 * An HTTP/2 server over TLS (HTTP/1.1 too with `allowHTTP1`) with the listener limits applied:
 * stream cap, per-stream request timeout, idle sessions closed, and HTTP/1.1 requests limited as
 * in createLimitedHttpsServer.
 */
export function createLimitedHttp2Server(
  options: SecureServerOptions,
  handler: (req: IncomingMessage | http2.Http2ServerRequest, res: ServerResponse | http2.Http2ServerResponse) => void,
  context: ListenerContext,
): LimitedListener<Http2SecureServer> {
  const { limits } = context;
  const server = http2.createSecureServer({
    ...options,
    ...TCP_OPTIONS,
    handshakeTimeout: limits.handshakeTimeoutMs,
    settings: { ...options.settings, ...http2ServerSettings(limits) },
  });
  const report = createLimitReporter(context);
  const { sockets, secured } = guardConnections(server, context, report);
  // Idle sessions (and idle HTTP/1.1 connections) are destroyed: Node does so when nothing listens for 'timeout'.
  server.setTimeout(limits.idleTimeoutMs);
  if (options.allowHTTP1 === true) {
    // Read by Node's HTTP/1.1 path of an allowHTTP1 server when it starts listening.
    const http1 = server as Http2SecureServer & { headersTimeout: number; requestTimeout: number; connectionsCheckingInterval: number; keepAliveTimeout: number };
    Object.assign(http1, http1TimeoutOptions(limits), { keepAliveTimeout: limits.keepAliveTimeoutMs });
    handleClientErrors(server, context, secured, report);
  }
  server.on('session', (session: ServerHttp2Session) => watchHttp2Heads(session, context, report));
  server.on('request', (req: IncomingMessage | http2.Http2ServerRequest, res: ServerResponse | http2.Http2ServerResponse) => {
    if (!('stream' in req)) watchBodyProgress(req, context, report);
    handler(req, res);
  });
  admitStreams(server, context, report);
  return listenerOf(server, sockets);
}

/**
 * An HTTP/2 server that never listens: its owner hands it sockets it dialled itself (emit('connection')),
 * as the data-plane tunnel agent does, serving the control plane on its outbound connection. It gets
 * the HTTP/2 limits of createLimitedHttp2Server: the stream caps (per session and over the server),
 * the headers timeout, the per-stream request timeout and the body-progress rule. The connection
 * caps, the handshake timeout and the idle timeout do not apply: the owner opened the connection
 * (there is no handshake to wait for, no one else's connection to refuse) and watches its liveness
 * itself (the tunnel's PING heartbeat).
 */
export function createLimitedHttp2SocketServer(
  handler: (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void,
  context: ListenerContext,
): Http2Server {
  const server = http2.createServer({ settings: http2ServerSettings(context.limits) }, handler);
  const report = createLimitReporter(context);
  server.on('session', (session: ServerHttp2Session) => watchHttp2Heads(session, context, report));
  admitStreams(server, context, report);
  return server;
}

/** The highest stream id whose request head the session has completed (its 'stream' event). */
const completedHead = new WeakMap<Http2Session, number>();

/**
 * The HTTP/2 headers timeout (ListenerLimitsOptions.headersTimeoutMs). Node's own timer on a session
 * is reset by every complete frame, so a client that trickles CONTINUATION frames, or sends one
 * HEADERS frame without END_HEADERS and goes quiet, is otherwise only cut by the idle timeout.
 * nghttp2 counts a stream as processed (`lastProcStreamID`) as soon as the 9-byte header of its
 * HEADERS frame arrives, while Node emits 'stream' only at END_HEADERS: the gap between the two is a
 * head in progress. Streams refused by the stream caps never count. Checked on a timer per session,
 * so a head is cut between headersTimeoutMs and 1¼ × headersTimeoutMs after it began.
 */
function watchHttp2Heads(session: ServerHttp2Session, context: ListenerContext, report: Report): void {
  const { headersTimeoutMs } = context.limits;
  const startedAt = Date.now();
  let settings = false;
  session.once('remoteSettings', () => (settings = true));
  // The stream id whose head was first seen in progress, and when.
  let pending: { id: number; since: number } | undefined;
  const cut = (stage: 'preface' | 'headers'): void => {
    clearInterval(timer);
    const socket = session.socket as AnySocket | undefined;
    report('request_timeout', { protocol: 'h2', stage, remoteAddress: socket?.remoteAddress });
    session.goaway(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    session.destroy();
    // GOAWAY is written as the session ends; a client that does not read it must not keep the socket.
    if (socket !== undefined) destroyAfter(socket, ERROR_ANSWER_LINGER_MS);
  };
  const timer = setInterval(() => {
    if (session.destroyed) {
      clearInterval(timer);
      return;
    }
    const now = Date.now();
    if (!settings) {
      // The connection preface (and the SETTINGS frame in it) has not all arrived.
      if (now - startedAt >= headersTimeoutMs) cut('preface');
      return;
    }
    const processed = session.state.lastProcStreamID ?? 0;
    if (processed <= (completedHead.get(session) ?? 0)) {
      pending = undefined;
      return;
    }
    if (pending === undefined || pending.id !== processed) pending = { id: processed, since: now };
    else if (now - pending.since >= headersTimeoutMs) cut('headers');
  }, checkingInterval(headersTimeoutMs));
  timer.unref();
  session.once('close', () => clearInterval(timer));
}

/** How often a timeout of `ms` is checked: a quarter of it, between 50 ms and 30 s. */
function checkingInterval(ms: number): number {
  return Math.max(50, Math.min(30_000, Math.floor(ms / 4)));
}

/**
 * Every stream of an HTTP/2 listener passes here before any handler sees it: the listener-wide
 * stream cap (maxListenerStreams), the per-stream request timeout, and the record of completed heads
 * for watchHttp2Heads. Node's compatibility layer ('request') is one of the server's 'stream'
 * listeners; like guardConnections, it is moved behind the check, so that a refused stream never
 * reaches a handler.
 */
function admitStreams(server: Http2SecureServer | Http2Server, context: ListenerContext, report: Report): void {
  const { limits } = context;
  let open = 0;
  const inner = server.rawListeners('stream') as Array<(this: Http2SecureServer | Http2Server, ...args: unknown[]) => void>;
  server.removeAllListeners('stream');
  server.on('stream', function admit(this: Http2SecureServer | Http2Server, stream: ServerHttp2Stream, ...rest: unknown[]) {
    const session = stream.session;
    if (session !== undefined) completedHead.set(session, Math.max(completedHead.get(session) ?? 0, stream.id ?? 0));
    if (open >= limits.maxListenerStreams) {
      report('stream_refused', { reason: 'listener-stream-cap' });
      // Node reports a stream closed with an error code as an 'error' on it; no handler will ever listen.
      stream.on('error', () => undefined);
      stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    open++;
    stream.once('close', () => open--);
    if (!stream.endAfterHeaders) watchHttp2BodyProgress(stream, context, report);
    if (limits.requestTimeoutMs > 0 && !stream.endAfterHeaders) {
      const timer = setTimeout(() => {
        if (stream.destroyed || stream.readableEnded) return;
        report('request_timeout', { protocol: 'h2' });
        stream.close(http2.constants.NGHTTP2_CANCEL);
      }, limits.requestTimeoutMs);
      timer.unref();
      stream.once('close', () => clearTimeout(timer));
    }
    for (const listener of inner) listener.call(this, stream, ...rest);
  });
}

/** A TLS listener whose sockets are handed over to the caller (the tunnel), with the listener limits applied. */
export interface LimitedTlsListener extends LimitedListener<tls.Server> {
  /**
   * Ends the idle timeout of a socket whose new owner watches its liveness itself (the tunnel's
   * HTTP/2 PING heartbeat), so that the two do not race.
   */
  handOver(socket: TLSSocket): void;
}

/** A raw TLS server: handshake timeout, connection caps, and an idle timeout until the socket is handed over. */
export function createLimitedTlsServer(tlsOptions: TlsOptions, context: ListenerContext): LimitedTlsListener {
  const { limits } = context;
  const server = tls.createServer({ ...tlsOptions, ...TCP_OPTIONS, handshakeTimeout: limits.handshakeTimeoutMs });
  const report = createLimitReporter(context);
  const { sockets } = guardConnections(server, context, report);
  const onIdle = function (this: TLSSocket): void {
    report('idle_timeout', { remoteAddress: this.remoteAddress });
    this.destroy();
  };
  server.on('secureConnection', (socket: TLSSocket) => {
    socket.setTimeout(limits.idleTimeoutMs, onIdle);
  });
  return {
    ...listenerOf(server, sockets),
    handOver(socket) {
      socket.setTimeout(0);
      socket.off('timeout', onIdle);
    },
  };
}

function listenerOf<S>(server: S, sockets: Set<Socket>): LimitedListener<S> {
  return {
    server,
    connectionCount: () => sockets.size,
    destroyAll() {
      for (const socket of sockets) socket.destroy();
    },
  };
}
