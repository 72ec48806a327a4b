// The agent's gRPC client for the control plane's DispatchService: mTLS with the current certificate, handshake logging, and refusal detection.
import http2 from 'node:http2';
import { isIP } from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { durationMs, timestampDate, type Timestamp } from '@bufbuild/protobuf/wkt';
import { ConnectError, createClient, type Client } from '@connectrpc/connect';
import { createGrpcTransport, Http2SessionManager } from '@connectrpc/connect-node';
import { AirlockError, configCheck, configError, type DeepReadonly, errorCodeOf, freezeConfig, type Logger } from '@airlock/common';
import { certificateFingerprint, describeTlsSocket, tlsClientOptions, type PemInput } from '@airlock/pki';
import {
  DispatchService,
  fromConnectError,
  type HeartbeatRequestSchema,
  type PollActionsRequestSchema,
  type PollActionsResponse,
  type RegisterRequestSchema,
  type ReportEventsRequestSchema,
} from '@airlock/protocol';

/** The certificate and key the client authenticates with. The key is secret and never logged. */
export interface DispatchClientCredentials {
  readonly cert: string;
  readonly key: string;
}

export interface DispatchClientOptions {
  /** The control plane's dispatch listener, `https://host:port`. */
  readonly url: string | URL;
  /** The CA the dispatch server's certificate must chain to. */
  readonly ca: PemInput;
  /**
   * The client certificate for every RPC but Bootstrap, read before each call: when it changes
   * (renewal), new calls go over a new connection while calls in flight finish on the old one.
   */
  readonly getCredentials: () => DispatchClientCredentials | undefined;
  readonly log: Logger;
  /** Name the server certificate must match (and SNI). @default the URL's host name; its IP SAN for an IP address */
  readonly servername?: string;
  /** Limit for TCP connect and TLS handshake, in milliseconds. @default 10000 */
  readonly connectTimeoutMs?: number;
  /** PING interval on a connection with calls in flight, so a dead control plane fails them quickly, in milliseconds. @default 2000 */
  readonly pingIntervalMs?: number;
  /** A PING unanswered this long drops the connection and its calls, in milliseconds. @default 2000 */
  readonly pingTimeoutMs?: number;
}

export type ResolvedDispatchClientConfig = DeepReadonly<{
  url: URL;
  host: string;
  port: number;
  servername: string | undefined;
  ca: PemInput;
  connectTimeoutMs: number;
  pingIntervalMs: number;
  pingTimeoutMs: number;
}> & { readonly getCredentials: () => DispatchClientCredentials | undefined; readonly log: Logger };

/** A certificate the control plane issued (Bootstrap, RenewCertificate). */
export interface IssuedCertificateChain {
  /** The leaf certificate (PEM). */
  readonly certPem: string;
  /** The whole chain as received, leaf first. */
  readonly chainPem: string;
  readonly notAfter: Date | undefined;
}

export interface DispatchClient {
  /** Redeems a bootstrap token (secret, never logged) for a first certificate; no client certificate is presented. */
  bootstrap(request: { token: string; cluster: string; csrPem: string }, timeoutMs: number): Promise<IssuedCertificateChain>;
  /** Renews over mTLS with the current certificate. */
  renewCertificate(csrPem: string, timeoutMs: number): Promise<IssuedCertificateChain>;
  register(request: MessageInitShape<typeof RegisterRequestSchema>, timeoutMs: number, signal?: AbortSignal): Promise<{ serverTime: Date | undefined; heartbeatIntervalMs: number | undefined }>;
  heartbeat(
    request: MessageInitShape<typeof HeartbeatRequestSchema>,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<{ serverTime: Date | undefined; heartbeatIntervalMs: number | undefined; abortActionIds: string[] }>;
  pollActions(request: MessageInitShape<typeof PollActionsRequestSchema>, timeoutMs: number, signal?: AbortSignal): Promise<PollActionsResponse>;
  reportEvents(request: MessageInitShape<typeof ReportEventsRequestSchema>, timeoutMs: number, signal?: AbortSignal): Promise<number>;
  /** `GET /health` without a client certificate: true when the control plane answers 200. Never throws. */
  health(timeoutMs: number): Promise<boolean>;
  /**
   * True when the latest mTLS connection completed its TLS handshake and was then closed before
   * anything was answered on it: what the control plane does to a revoked or unknown certificate.
   * (An outage looks different: the connection is refused or never completes its handshake.)
   */
  refusedAfterHandshake(): boolean;
  /** Closes every connection; calls in flight fail. */
  close(): void;
}

const DEFAULTS = Object.freeze({ connectTimeoutMs: 10_000, pingIntervalMs: 2000, pingTimeoutMs: 2000 });

export function resolveDispatchClientConfig(options: DispatchClientOptions): ResolvedDispatchClientConfig {
  if (typeof options !== 'object' || options === null) throw configError('dispatchClient', 'options are required');
  let url: URL;
  try {
    url = new URL(String(options.url));
  } catch {
    throw configError('dispatchClient.url', 'must be an https:// URL');
  }
  if (url.protocol !== 'https:' || url.hostname === '') throw configError('dispatchClient.url', 'must be an https:// URL');
  if (typeof options.getCredentials !== 'function') throw configError('dispatchClient.getCredentials', 'must be a function');
  if (typeof options.log !== 'object' || options.log === null) throw configError('dispatchClient.log', 'is required');
  // Fail at start-up, not on every call, if the CA cannot be used.
  tlsClientOptions({ ca: options.ca });
  const host = url.hostname.replace(/^\[(.*)\]$/u, '$1');
  const ms = (name: keyof typeof DEFAULTS): number => configCheck.integer(`dispatchClient.${name}`, options[name] ?? DEFAULTS[name], 10, 600_000);
  const settings = freezeConfig({
    url,
    host,
    port: url.port === '' ? 443 : Number(url.port),
    servername: options.servername ?? (isIP(host) === 0 ? host : undefined),
    ca: options.ca,
    connectTimeoutMs: ms('connectTimeoutMs'),
    pingIntervalMs: ms('pingIntervalMs'),
    pingTimeoutMs: ms('pingTimeoutMs'),
  });
  return Object.freeze({ ...settings, getCredentials: options.getCredentials, log: options.log });
}

/** The first PEM certificate of a chain. */
function leafPem(chain: string): string {
  const match = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/u.exec(chain);
  if (match === null) throw new AirlockError('CERTIFICATE_INVALID', 'The control plane returned no certificate');
  return `${match[0]}\n`;
}

interface SocketState {
  readonly socket: TLSSocket;
  secure: boolean;
  answered: boolean;
}

/** One connection pool for one client certificate (or none). */
interface Channel {
  readonly fingerprint: string | undefined;
  readonly manager: Http2SessionManager;
  readonly client: Client<typeof DispatchService>;
  inFlight: number;
  retired: boolean;
  lastSocket: SocketState | undefined;
}

/** Creates the client; connections are opened on first use. */
export function createDispatchClient(options: DispatchClientOptions): DispatchClient {
  const config = resolveDispatchClientConfig(options);
  const { log } = config;
  const endpoint = config.url.origin;
  const channels = new Set<Channel>();
  let current: Channel | undefined;
  let closed = false;
  let lastCert: string | undefined;
  let lastFingerprint: string | undefined;

  const connectSocket = (
    credentials: DispatchClientCredentials | undefined,
    clientFingerprintSha256: string | undefined,
    onSocket: (state: SocketState) => void = () => undefined,
  ): TLSSocket => {
    const socket = tls.connect({
      ...tlsClientOptions({ ca: config.ca, ...(credentials === undefined ? {} : { cert: credentials.cert, key: credentials.key }) }),
      ...(config.servername === undefined ? {} : { servername: config.servername }),
      host: config.host,
      port: config.port,
      ALPNProtocols: ['h2'],
    });
    const state: SocketState = { socket, secure: false, answered: false };
    onSocket(state);
    socket.setTimeout(config.connectTimeoutMs, () => {
      if (!state.secure) socket.destroy(new AirlockError('TIMEOUT', `No TLS connection to the control plane within ${config.connectTimeoutMs} ms`));
    });
    socket.once('secureConnect', () => {
      state.secure = true;
      socket.setTimeout(0);
      const description = describeTlsSocket(socket);
      // Every handshake at info: what was negotiated, and which control-plane certificate we trusted.
      log.info(
        {
          event: 'dispatch.handshake',
          endpoint,
          localPort: socket.localPort,
          protocol: description.protocol,
          cipher: description.cipher,
          cipherStandardName: description.cipherStandardName,
          keyExchangeGroup: description.keyExchangeGroup,
          alpn: socket.alpnProtocol,
          peerFingerprintSha256: description.peerFingerprintSha256,
          peerValidTo: description.peerValidTo,
          peerSubject: description.peerSubject,
          clientFingerprintSha256,
        },
        'dispatch TLS handshake',
      );
    });
    socket.on('error', (error) => {
      // A ConnectError here is the session manager closing the connection on our own behalf.
      if (!(error instanceof ConnectError)) log.debug({ event: 'dispatch.socket_error', endpoint, code: errorCodeOf(error) }, 'dispatch connection error');
    });
    return socket;
  };

  const openChannel = (credentials: DispatchClientCredentials | undefined): Channel => {
    let fingerprint: string | undefined;
    if (credentials !== undefined) {
      try {
        fingerprint = certificateFingerprint(credentials.cert);
      } catch (error) {
        throw new AirlockError('CERTIFICATE_INVALID', 'The agent certificate cannot be parsed', { cause: error });
      }
    }
    const onSocket = (state: SocketState): void => {
      created.lastSocket = state;
    };
    const manager = new Http2SessionManager(
      config.url,
      { pingIntervalMs: config.pingIntervalMs, pingTimeoutMs: config.pingTimeoutMs, idleConnectionTimeoutMs: 5 * 60_000 },
      { createConnection: () => connectSocket(credentials, fingerprint, onSocket) },
    );
    const created: Channel = {
      fingerprint,
      manager,
      client: createClient(DispatchService, createGrpcTransport({ baseUrl: config.url.origin, sessionManager: manager })),
      inFlight: 0,
      retired: false,
      lastSocket: undefined,
    };
    channels.add(created);
    return created;
  };

  const release = (channel: Channel): void => {
    if (channel.retired && channel.inFlight === 0) {
      channel.manager.abort();
      channels.delete(channel);
    }
  };

  /** The channel for the current credentials; a renewed certificate gets a new one, and the old one closes once idle. */
  const mtlsChannel = (): Channel => {
    if (closed) throw new AirlockError('UNAVAILABLE', 'The dispatch client is closed');
    const credentials = config.getCredentials();
    if (credentials === undefined) throw new AirlockError('UNAVAILABLE', 'The agent has no client certificate yet');
    // Parsing a certificate costs milliseconds, and this runs on every call: parse only a certificate not seen before.
    let fingerprint = lastFingerprint;
    if (fingerprint === undefined || credentials.cert !== lastCert) {
      fingerprint = certificateFingerprint(credentials.cert);
      lastFingerprint = fingerprint;
      lastCert = credentials.cert;
    }
    if (current?.fingerprint !== fingerprint) {
      const previous = current;
      current = openChannel(credentials);
      if (previous !== undefined) {
        previous.retired = true;
        log.info({ event: 'dispatch.credentials_switched', clientFingerprintSha256: fingerprint, draining: previous.inFlight }, 'dispatch calls now use the renewed certificate');
        release(previous);
      }
    }
    return current;
  };

  /** Runs one call on a channel, keeping its in-flight count and noting whether the server answered. */
  const run = async <T>(channel: Channel, call: (client: Client<typeof DispatchService>) => Promise<T>): Promise<T> => {
    channel.inFlight += 1;
    try {
      const result = await call(channel.client);
      if (channel.lastSocket !== undefined) channel.lastSocket.answered = true;
      return result;
    } catch (error) {
      const airlock = fromConnectError(error);
      // An error the server itself sent (it carries our error header) proves it answered.
      if (airlock.details?.connectCode === undefined && channel.lastSocket !== undefined) channel.lastSocket.answered = true;
      throw airlock;
    } finally {
      channel.inFlight -= 1;
      release(channel);
    }
  };

  const issued = (chain: string, notAfter: Timestamp | undefined): IssuedCertificateChain => ({
    certPem: leafPem(chain),
    chainPem: chain,
    notAfter: notAfter === undefined ? undefined : timestampDate(notAfter),
  });

  return {
    async bootstrap(request, timeoutMs) {
      if (closed) throw new AirlockError('UNAVAILABLE', 'The dispatch client is closed');
      // A one-off connection without a client certificate: the token is the credential.
      const channel = openChannel(undefined);
      channel.retired = true;
      const response = await run(channel, (client) =>
        client.bootstrap({ bootstrapToken: request.token, cluster: request.cluster, csrPem: request.csrPem }, { timeoutMs }),
      );
      return issued(response.certificateChainPem, response.notAfter);
    },

    async renewCertificate(csrPem, timeoutMs) {
      const response = await run(mtlsChannel(), (client) => client.renewCertificate({ csrPem }, { timeoutMs }));
      return issued(response.certificateChainPem, response.notAfter);
    },

    async register(request, timeoutMs, signal) {
      const response = await run(mtlsChannel(), (client) => client.register(request, { timeoutMs, ...(signal === undefined ? {} : { signal }) }));
      return {
        serverTime: response.serverTime === undefined ? undefined : timestampDate(response.serverTime),
        heartbeatIntervalMs: response.heartbeatInterval === undefined ? undefined : durationMs(response.heartbeatInterval),
      };
    },

    async heartbeat(request, timeoutMs, signal) {
      const response = await run(mtlsChannel(), (client) => client.heartbeat(request, { timeoutMs, ...(signal === undefined ? {} : { signal }) }));
      return {
        serverTime: response.serverTime === undefined ? undefined : timestampDate(response.serverTime),
        heartbeatIntervalMs: response.heartbeatInterval === undefined ? undefined : durationMs(response.heartbeatInterval),
        abortActionIds: [...response.abortActionIds],
      };
    },

    async pollActions(request, timeoutMs, signal) {
      return run(mtlsChannel(), (client) => client.pollActions(request, { timeoutMs, ...(signal === undefined ? {} : { signal }) }));
    },

    async reportEvents(request, timeoutMs, signal) {
      const response = await run(mtlsChannel(), (client) => client.reportEvents(request, { timeoutMs, ...(signal === undefined ? {} : { signal }) }));
      return response.recordedCount;
    },

    health(timeoutMs) {
      if (closed) return Promise.resolve(false);
      return new Promise<boolean>((resolve) => {
        let settled = false;
        const session = http2.connect(config.url, { createConnection: () => connectSocket(undefined, undefined) });
        const finish = (healthy: boolean): void => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          session.destroy();
          resolve(healthy);
        };
        const timer = setTimeout(() => finish(false), timeoutMs);
        session.on('error', () => finish(false));
        session.on('close', () => finish(false));
        try {
          const stream = session.request({ ':method': 'GET', ':path': '/health' });
          stream.on('response', (headers) => finish(headers[':status'] === 200));
          stream.on('error', () => finish(false));
          stream.end();
        } catch {
          finish(false);
        }
      });
    },

    refusedAfterHandshake() {
      const state = current?.lastSocket;
      // `destroyed` rather than a 'close' event: the failed call can be reported before 'close' fires.
      return state !== undefined && state.secure && state.socket.destroyed && !state.answered;
    },

    close() {
      closed = true;
      for (const channel of channels) channel.manager.abort();
      channels.clear();
      current = undefined;
    },
  };
}
