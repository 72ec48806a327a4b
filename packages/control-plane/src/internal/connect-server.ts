// One HTTPS listener (HTTP/2, with HTTP/1.1 for gRPC-web and curl) serving Connect, gRPC and gRPC-web under the Airlock TLS policy.
import http2 from 'node:http2';
import { isIPv6, type AddressInfo, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { createContextKey, createContextValues, type ConnectRouter, type ContextValues, type Interceptor } from '@connectrpc/connect';
import { connectNodeAdapter, type ConnectNodeAdapterOptions } from '@connectrpc/connect-node';
import { AirlockError, configCheck, configError, freezeConfig, type DeepReadonly, type Logger } from '@airlock/common';
import { describeTlsSocket, tlsServerOptions, type PemInput, type TlsConnectionDescription } from '@airlock/pki';
import { airlockErrorInterceptor } from '@airlock/protocol';

/** A Node request handler, as connect-node's adapter takes for its fallback. */
export type NodeHandlerFn = NonNullable<ConnectNodeAdapterOptions['fallback']>;
type NodeServerRequest = Parameters<NodeHandlerFn>[0];

/**
 * The TLS facts of the connection a request arrived on (protocol, suite, and the client certificate
 * when one was presented and verified). Handlers read it with `context.values.get(tlsPeerKey)`.
 */
export const tlsPeerKey = createContextKey<TlsConnectionDescription | undefined>(undefined, { description: 'airlock TLS peer' });

export interface ClientCertificateOptions {
  /** CA that client certificates must chain to. */
  readonly ca: PemInput;
  /**
   * Asked once per connection that presents a verified client certificate; false (or a throw)
   * closes the connection before any request is read. Connections without a certificate are
   * accepted, and their requests carry no verified peer: each handler decides whether it needs one.
   */
  readonly isAllowed?: (peer: TlsConnectionDescription) => boolean | Promise<boolean>;
}

export interface ConnectServerOptions {
  /** Short name used in log events, e.g. `api` or `dispatch`. */
  readonly name: string;
  /** Server certificate chain and key (secret, never logged). */
  readonly tls: { readonly cert: PemInput; readonly key: PemInput };
  /**
   * Request client certificates. A certificate that does not chain to `ca` fails the connection; a
   * connection without one is accepted (see ClientCertificateOptions). @default none requested
   */
  readonly clientCertificates?: ClientCertificateOptions;
  /** @default "127.0.0.1" */
  readonly host?: string;
  /** 0 picks a free port. @default 0 */
  readonly port?: number;
  readonly routes: (router: ConnectRouter) => void;
  /** Run after the AirlockError → Connect error interceptor (which is always first). @default [] */
  readonly interceptors?: readonly Interceptor[];
  /** Largest request message, in bytes; larger ones get `resource_exhausted`. @default 4194304 (4 MiB) */
  readonly readMaxBytes?: number;
  /** Largest deadline a client may ask for, in milliseconds. @default 300000 */
  readonly maxTimeoutMs?: number;
  /** Serves requests that match no RPC (for example `GET /healthz`). @default 404 */
  readonly fallback?: NodeHandlerFn;
  /** A client that has not finished the TLS handshake in this time is disconnected. @default 10000 */
  readonly handshakeTimeoutMs?: number;
  readonly log: Logger;
}

export type ResolvedConnectServerConfig = DeepReadonly<{
  name: string;
  tls: { cert: PemInput; key: PemInput };
  clientCertificates: ClientCertificateOptions | undefined;
  host: string;
  port: number;
  routes: (router: ConnectRouter) => void;
  interceptors: Interceptor[];
  readMaxBytes: number;
  maxTimeoutMs: number;
  fallback: NodeHandlerFn | undefined;
  handshakeTimeoutMs: number;
  log: Logger;
}>;

export interface ConnectServer {
  /** `https://host:port`. */
  readonly url: string;
  readonly port: number;
  /** Stops listening and closes every connection (in-flight calls are cut). */
  close(): Promise<void>;
}

export function resolveConnectServerConfig(options: ConnectServerOptions): ResolvedConnectServerConfig {
  if (typeof options !== 'object' || options === null) throw configError('connectServer', 'options are required');
  const name = configCheck.nonEmptyString('connectServer.name', options.name);
  if (typeof options.tls !== 'object' || options.tls === null) throw configError(`${name}.tls`, 'is required');
  if (typeof options.routes !== 'function') throw configError(`${name}.routes`, 'must be a function');
  if (typeof options.log !== 'object' || options.log === null) throw configError(`${name}.log`, 'is required');
  if (options.clientCertificates !== undefined && (typeof options.clientCertificates !== 'object' || options.clientCertificates.ca === undefined)) {
    throw configError(`${name}.clientCertificates.ca`, 'is required');
  }
  return freezeConfig({
    name,
    tls: { cert: options.tls.cert, key: options.tls.key },
    clientCertificates: options.clientCertificates,
    host: configCheck.nonEmptyString(`${name}.host`, options.host ?? '127.0.0.1'),
    port: configCheck.integer(`${name}.port`, options.port ?? 0, 0, 65_535),
    routes: options.routes,
    interceptors: [...(options.interceptors ?? [])],
    readMaxBytes: configCheck.integer(`${name}.readMaxBytes`, options.readMaxBytes ?? 4 * 1024 * 1024, 1024, 256 * 1024 * 1024),
    maxTimeoutMs: configCheck.integer(`${name}.maxTimeoutMs`, options.maxTimeoutMs ?? 300_000, 1, 86_400_000),
    fallback: options.fallback,
    handshakeTimeoutMs: configCheck.integer(`${name}.handshakeTimeoutMs`, options.handshakeTimeoutMs ?? 10_000, 100, 600_000),
    log: options.log,
  });
}

/** Node error codes, never messages: OpenSSL and socket messages can quote peer-supplied text. */
function errorCode(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : error instanceof Error ? error.name : 'unknown';
}

/** The TLS socket under a request, for HTTP/2 and HTTP/1.1 alike. */
function requestSocket(req: NodeServerRequest): TLSSocket | undefined {
  const socket = 'stream' in req ? req.stream.session?.socket : req.socket;
  return socket as TLSSocket | undefined;
}

/** Starts the server and resolves once it is listening. */
export async function startConnectServer(options: ConnectServerOptions): Promise<ConnectServer> {
  const config = resolveConnectServerConfig(options);
  const { log, name } = config;
  const described = new WeakMap<object, TlsConnectionDescription>();
  const describe = (socket: TLSSocket): TlsConnectionDescription => {
    let description = described.get(socket);
    if (description === undefined) {
      description = describeTlsSocket(socket);
      described.set(socket, description);
    }
    return description;
  };

  const handler = connectNodeAdapter({
    routes: config.routes,
    interceptors: [airlockErrorInterceptor, ...config.interceptors],
    readMaxBytes: config.readMaxBytes,
    maxTimeoutMs: config.maxTimeoutMs,
    ...(config.fallback === undefined ? {} : { fallback: config.fallback }),
    contextValues: (req) => contextValuesWithPeer(req, describe),
  });

  const clientCerts = config.clientCertificates;
  const server = http2.createSecureServer(
    {
      ...tlsServerOptions({ cert: config.tls.cert, key: config.tls.key, ...(clientCerts === undefined ? {} : { ca: clientCerts.ca }) }),
      // Certificates are requested but optional at the handshake (see ClientCertificateOptions);
      // an untrusted one is refused in 'secureConnection' below, before any request is read.
      ...(clientCerts === undefined ? {} : { requestCert: true, rejectUnauthorized: false }),
      allowHTTP1: true,
      handshakeTimeout: config.handshakeTimeoutMs,
    },
    handler,
  );

  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.on('tlsClientError', (error: Error, socket: TLSSocket) => {
    log.debug({ event: `${name}.handshake_failed`, code: errorCode(error), remoteAddress: socket.remoteAddress, remotePort: socket.remotePort }, 'TLS handshake failed');
  });
  server.on('secureConnection', (socket: TLSSocket) => {
    const peer = describe(socket);
    const fields = {
      event: `${name}.handshake`,
      protocol: peer.protocol,
      cipher: peer.cipher,
      alpn: socket.alpnProtocol,
      remoteAddress: socket.remoteAddress,
      remotePort: socket.remotePort,
      peerFingerprintSha256: peer.peerFingerprintSha256,
      peerValidTo: peer.peerValidTo,
      peerUri: peer.peerUri,
    };
    if (clientCerts === undefined || peer.peerFingerprintSha256 === undefined) {
      log.debug(fields, 'TLS handshake');
      return;
    }
    if (!peer.authorized) {
      log.warn({ ...fields, event: `${name}.client_refused`, reason: 'untrusted-certificate', verifyError: peer.authorizationError }, 'client certificate refused');
      socket.destroy();
      return;
    }
    const check = clientCerts.isAllowed;
    if (check === undefined) {
      log.info(fields, 'TLS handshake with client certificate');
      return;
    }
    // Hold the socket until the verdict: nothing is read from it meanwhile.
    socket.pause();
    Promise.resolve()
      .then(() => check(peer))
      .catch(() => false)
      .then((allowed) => {
        if (!allowed) {
          log.warn({ ...fields, event: `${name}.client_refused`, reason: 'not-allowed' }, 'client certificate refused');
          socket.destroy();
          return;
        }
        log.info(fields, 'TLS handshake with client certificate');
        socket.resume();
      }, () => socket.destroy());
  });
  server.on('sessionError', (error) => log.debug({ event: `${name}.session_error`, code: errorCode(error) }, 'HTTP/2 session error'));

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => {
      server.off('error', reject);
      resolve();
    });
  }).catch((error: unknown) => {
    throw new AirlockError(errorCode(error) === 'EADDRINUSE' ? 'UNAVAILABLE' : AirlockError.from(error).code, `${name}: cannot listen on ${config.host}:${config.port}`, {
      cause: error,
      details: { host: config.host, port: config.port },
    });
  });
  server.on('error', (error) => log.error({ event: `${name}.server_error`, code: errorCode(error) }, 'server error'));

  const port = (server.address() as AddressInfo).port;
  const url = `https://${isIPv6(config.host) ? `[${config.host}]` : config.host}:${port}`;
  log.info({ event: `${name}.listening`, url }, `${name} listening`);

  let closed: Promise<void> | undefined;
  return {
    url,
    port,
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }).then(() => log.info({ event: `${name}.closed`, url }, `${name} closed`));
      return closed;
    },
  };
}

/** The per-request context: the connection's TLS facts under tlsPeerKey (cached per socket). */
function contextValuesWithPeer(req: NodeServerRequest, describe: (socket: TLSSocket) => TlsConnectionDescription): ContextValues {
  const values = createContextValues();
  const socket = requestSocket(req);
  if (socket !== undefined && typeof socket.getPeerX509Certificate === 'function') values.set(tlsPeerKey, describe(socket));
  return values;
}
