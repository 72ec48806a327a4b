// One HTTPS listener (HTTP/2, with HTTP/1.1 for gRPC-web and curl) serving Connect, gRPC and gRPC-web under the Airlock TLS policy.
import { isIPv6, type AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import {
  Code,
  ConnectError,
  createConnectRouter,
  createContextKey,
  createContextValues,
  type ConnectRouter,
  type ContextValues,
  type Interceptor,
} from '@connectrpc/connect';
import {
  compressionBrotli,
  compressionGzip,
  universalRequestFromNodeRequest,
  universalResponseToNodeResponse,
  type ConnectNodeAdapterOptions,
} from '@connectrpc/connect-node';
import { createAsyncIterable, encodeEnvelope, type UniversalHandler, type UniversalServerResponse } from '@connectrpc/connect/protocol';
import { codeToHttpStatus, errorFromJsonBytes, errorToJsonBytes } from '@connectrpc/connect/protocol-connect';
import { findTrailerError, setTrailerStatus } from '@connectrpc/connect/protocol-grpc';
import { trailerFlag, trailerParse, trailerSerialize } from '@connectrpc/connect/protocol-grpc-web';
import { AirlockError, configCheck, configError, type DeepReadonly, errorCodeOf, freezeConfig, type Logger } from '@airlock/common';
import {
  createLimitedHttp2Server,
  describeTlsSocket,
  resolveListenerLimits,
  tlsServerOptions,
  type ConnectionBudget,
  type ListenerLimitsOptions,
  type PemInput,
  type ResolvedListenerLimits,
  type TlsConnectionDescription,
} from '@airlock/pki';
import { airlockErrorInterceptor, toConnectError } from '@airlock/protocol';

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
  /**
   * Run inside the AirlockError → Connect error interceptor (which is always outside them, so what
   * they throw is mapped too). @default []
   */
  readonly interceptors?: readonly Interceptor[];
  /** Largest request message, in bytes; larger ones get `resource_exhausted`. @default 4194304 (4 MiB) */
  readonly readMaxBytes?: number;
  /** Largest deadline a client may ask for, in milliseconds. @default 300000 */
  readonly maxTimeoutMs?: number;
  /** Serves requests that match no RPC (for example `GET /health`). @default 404 */
  readonly fallback?: NodeHandlerFn;
  /**
   * Timeouts, connection caps and the HTTP/2 stream cap (see @airlock/pki ListenerLimitsOptions).
   * @default DEFAULT_LISTENER_LIMITS
   */
  readonly limits?: ListenerLimitsOptions;
  /**
   * The process-wide budget of public connections, shared with the process's other listeners
   * (createConnectionBudget in @airlock/pki). @default none (only this listener's own caps)
   */
  readonly connectionBudget?: ConnectionBudget;
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
  limits: ResolvedListenerLimits;
  log: Logger;
}> & { readonly connectionBudget: ConnectionBudget | undefined };

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
  const resolved = freezeConfig({
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
    limits: resolveListenerLimits(options.limits, `${name}.limits`),
    log: options.log,
  });
  // A collaborator shared with the process's other listeners: passed through, never frozen or copied.
  return Object.freeze({ ...resolved, connectionBudget: options.connectionBudget });
}

/** The TLS socket under a request, for HTTP/2 and HTTP/1.1 alike. */
function requestSocket(req: NodeServerRequest): TLSSocket | undefined {
  const socket = 'stream' in req ? req.stream.session?.socket : req.socket;
  return socket as TLSSocket | undefined;
}

/**
 * Serves what is not an RPC on a Connect listener: `GET /health` (no credentials; nothing in it but
 * the status and, when given, the version) for load balancers, curl and `airlock status`, and a JSON
 * 404 for everything else. It never reads the body.
 */
export function healthFallback(version?: string): NodeHandlerFn {
  const send = (res: Parameters<NodeHandlerFn>[1], status: number, body: unknown, extra: Record<string, string> = {}): void => {
    const text = `${JSON.stringify(body)}\n`;
    res.writeHead(status, {
      'content-type': 'application/json',
      'content-length': String(Buffer.byteLength(text)),
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      ...extra,
    });
    res.end(text);
  };
  return (req, res) => {
    const path = req.url?.split('?', 2)[0];
    if (path !== '/health') {
      send(res, 404, { code: 'not_found', message: 'no such endpoint' });
      return;
    }
    if (req.method !== 'GET') {
      send(res, 405, { code: 'unimplemented', message: 'use GET' }, { allow: 'GET' });
      return;
    }
    send(res, 200, version === undefined ? { status: 'SERVING' } : { status: 'SERVING', version });
  };
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

  const handler = createNodeHandler(config, (req) => contextValuesWithPeer(req, describe));

  const clientCerts = config.clientCertificates;
  const listener = createLimitedHttp2Server(
    {
      ...tlsServerOptions({ cert: config.tls.cert, key: config.tls.key, ...(clientCerts === undefined ? {} : { ca: clientCerts.ca }) }),
      // Certificates are requested but optional at the handshake (see ClientCertificateOptions);
      // an untrusted one is refused in 'secureConnection' below, before any request is read.
      ...(clientCerts === undefined ? {} : { requestCert: true, rejectUnauthorized: false }),
      allowHTTP1: true,
    },
    handler,
    { name, log: options.log, limits: config.limits, ...(config.connectionBudget === undefined ? {} : { budget: config.connectionBudget }) },
  );
  const { server } = listener;
  server.on('tlsClientError', (error: Error, socket: TLSSocket) => {
    // Handshake timeouts are counted by the listener limits, whose log stays bounded under a flood.
    if (errorCodeOf(error) === 'ERR_TLS_HANDSHAKE_TIMEOUT') return;
    log.debug({ event: `${name}.handshake_failed`, code: errorCodeOf(error), remoteAddress: socket.remoteAddress, remotePort: socket.remotePort }, 'TLS handshake failed');
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
  server.on('sessionError', (error) => log.debug({ event: `${name}.session_error`, code: errorCodeOf(error) }, 'HTTP/2 session error'));

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => {
      server.off('error', reject);
      resolve();
    });
  }).catch((error: unknown) => {
    throw new AirlockError(errorCodeOf(error) === 'EADDRINUSE' ? 'UNAVAILABLE' : AirlockError.from(error).code, `${name}: cannot listen on ${config.host}:${config.port}`, {
      cause: error,
      details: { host: config.host, port: config.port },
    });
  });
  server.on('error', (error) => log.error({ event: `${name}.server_error`, code: errorCodeOf(error) }, 'server error'));

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
        listener.destroyAll();
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

// ---------------------------------------------------------------------------------------------
// The Node request handler: connect-node's adapter, rebuilt so that undecodable requests can be
// answered `invalid_argument` in one place for all three protocols.
//
// connect-es 2.1 reports a request message it cannot decode ("parse binary: …") as `internal`,
// where connect-go and grpc-go say `invalid_argument`: it is the client's mistake, and `internal`
// would page an operator for it. connect-es offers no hook between decoding and its error
// encoding, so the fix works on both sides of it:
//  - streaming RPCs decode inside the interceptor chain, so decodeFailureInterceptor wraps the
//    request stream and rethrows its decode failures as MALFORMED_REQUEST (invalid_argument);
//  - unary RPCs decode before any interceptor runs, so a failure there is recognised in the
//    encoded response (Connect JSON error body, gRPC trailers, gRPC-web trailer frame) of a call
//    that never reached the interceptor chain, and re-encoded with the same library helpers.
// "Never reached the interceptor chain" is what keeps genuine internal errors untouched: a
// handler's own `internal` (including a "parse binary" failure of a call it made downstream)
// always passes through the chain first.

/** Set on a request's context values once the interceptor chain (and so the handler) is entered. */
const reachedInterceptorsKey = createContextKey(false, { description: 'airlock interceptor chain entered' });

/**
 * Messages with which connect-es 2.1 reports, as `internal`, a request it could not decode: a
 * protobuf body that does not parse, and a compressed envelope without a negotiated encoding.
 */
const DECODE_FAILURE_MESSAGES: readonly RegExp[] = [/^parse binary: /, /^received compressed envelope, but do not know how to decompress$/];

function isDecodeFailure(error: ConnectError | undefined): error is ConnectError {
  return error?.code === Code.Internal && DECODE_FAILURE_MESSAGES.some((pattern) => pattern.test(error.rawMessage));
}

/** The error sent instead: invalid_argument, with the airlock-error code MALFORMED_REQUEST. */
function malformedRequestError(): ConnectError {
  return toConnectError(new AirlockError('MALFORMED_REQUEST', 'The request message could not be decoded'));
}

/** Rethrows decode failures of a request stream as MALFORMED_REQUEST. */
async function* decodeFailuresAsMalformed<T>(messages: AsyncIterable<T>): AsyncIterable<T> {
  try {
    yield* messages;
  } catch (error) {
    throw isDecodeFailure(error instanceof ConnectError ? error : undefined) ? malformedRequestError() : error;
  }
}

/** Outermost interceptor: marks the call as having reached the chain, and fixes stream decode failures. */
const decodeFailureInterceptor: Interceptor = (next) => (request) => {
  request.contextValues.set(reachedInterceptorsKey, true);
  return next(request.stream ? { ...request, message: decodeFailuresAsMalformed(request.message) } : request);
};

/** Largest error body read back for re-encoding; Connect error bodies are a few hundred bytes. */
const MAX_ERROR_BODY_BYTES = 64 * 1024;

async function readSmallBody(body: AsyncIterable<Uint8Array>): Promise<Uint8Array | undefined> {
  const chunks: Uint8Array[] = [];
  let length = 0;
  for await (const chunk of body) {
    length += chunk.byteLength;
    if (length > MAX_ERROR_BODY_BYTES) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** Calls `map` on each chunk and `atEnd` once the body is exhausted (before the adapter reads trailers). */
async function* mapBody(body: AsyncIterable<Uint8Array>, map: (chunk: Uint8Array) => Uint8Array, atEnd: () => void): AsyncIterable<Uint8Array> {
  for await (const chunk of body) yield map(chunk);
  atEnd();
}

/**
 * Re-encodes the response of a unary call whose request could not be decoded (see above). Other
 * responses pass through untouched; `reached` is read only once the response is complete.
 */
async function remapUnaryDecodeFailure(
  response: UniversalServerResponse,
  reached: () => boolean,
  onRemap: (original: ConnectError) => void,
): Promise<UniversalServerResponse> {
  const contentType = response.header?.get('content-type') ?? '';
  const { body } = response;
  if (body === undefined || reached()) return response;

  // gRPC-web: the status travels in a trailer frame at the end of the body.
  if (contentType.startsWith('application/grpc-web')) {
    const rewriteTrailerFrame = (chunk: Uint8Array): Uint8Array => {
      // connect-es writes every envelope as one chunk; a compressed trailer frame (flag 0x81) is left alone.
      if (reached() || chunk.byteLength < 5 || chunk[0] !== trailerFlag || Buffer.from(chunk).readUInt32BE(1) !== chunk.byteLength - 5) return chunk;
      const trailer = trailerParse(chunk.subarray(5));
      const original = findTrailerError(trailer);
      if (!isDecodeFailure(original)) return chunk;
      onRemap(original);
      trailer.delete('grpc-status-details-bin');
      return encodeEnvelope(trailerFlag, trailerSerialize(setTrailerStatus(trailer, malformedRequestError())));
    };
    return { ...response, body: mapBody(body, rewriteTrailerFrame, () => undefined) };
  }

  // gRPC: the status travels in HTTP trailers, which the adapter sends after the body.
  if (contentType.startsWith('application/grpc')) {
    const { trailer } = response;
    if (trailer === undefined) return response;
    const rewriteTrailers = (): void => {
      const original = findTrailerError(trailer);
      if (reached() || !isDecodeFailure(original)) return;
      onRemap(original);
      trailer.delete('grpc-status-details-bin');
      setTrailerStatus(trailer, malformedRequestError());
    };
    return { ...response, body: mapBody(body, (chunk) => chunk, rewriteTrailers) };
  }

  // Connect unary: an error is a JSON body under a non-200 status, already complete in memory.
  if (response.status !== 200 && contentType === 'application/json' && !response.header?.has('content-encoding')) {
    const bytes = await readSmallBody(body);
    if (bytes === undefined) return { ...response, status: 500, body: createAsyncIterable([errorToJsonBytes(new ConnectError('internal error', Code.Internal), {})]) };
    const original = errorFromJsonBytes(bytes, undefined, new ConnectError('unparseable error body', Code.Unknown));
    if (!isDecodeFailure(original)) return { ...response, body: createAsyncIterable([bytes]) };
    onRemap(original);
    const replacement = malformedRequestError();
    const encoded = errorToJsonBytes(replacement, {});
    const header = new Headers(response.header);
    replacement.metadata.forEach((value, key) => header.set(key, value));
    header.set('content-length', String(encoded.byteLength));
    return { ...response, status: codeToHttpStatus(replacement.code), header, body: createAsyncIterable([encoded]) };
  }
  return response;
}

/** A Node request handler for the RPCs of `config.routes`, with config.fallback for every other path. */
function createNodeHandler(config: ResolvedConnectServerConfig, contextValues: (req: NodeServerRequest) => ContextValues): NodeHandlerFn {
  const { log, name } = config;
  const router = createConnectRouter({
    interceptors: [decodeFailureInterceptor, airlockErrorInterceptor, ...config.interceptors],
    readMaxBytes: config.readMaxBytes,
    maxTimeoutMs: config.maxTimeoutMs,
    // connect-node's adapter default.
    acceptCompression: [compressionGzip, compressionBrotli],
  });
  config.routes(router);
  const handlers = new Map<string, UniversalHandler>(router.handlers.map((handler) => [handler.requestPath, handler]));
  const fallback: NodeHandlerFn =
    config.fallback ??
    ((_req, res) => {
      res.writeHead(404);
      res.end();
    });

  return (req, res) => {
    const handler = handlers.get(req.url?.split('?', 2)[0] ?? '');
    if (handler === undefined) {
      fallback(req, res);
      return;
    }
    const rpc = handler.requestPath;
    const values = contextValues(req);
    let request: ReturnType<typeof universalRequestFromNodeRequest>;
    try {
      request = universalRequestFromNodeRequest(req, res, undefined, values);
    } catch (error) {
      // An HTTP/1.0 request without a Host header has no authority; connect-node throws, which
      // inside a 'request' listener would crash the process.
      log.debug({ event: `${name}.bad_request`, rpc, code: ConnectError.from(error).code }, 'request refused before decoding');
      if (!res.headersSent) res.writeHead(400, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ code: 'invalid_argument', message: 'bad request' }));
      return;
    }
    const onRemap = (original: ConnectError): void =>
      log.debug({ event: `${name}.malformed_request`, rpc, detail: original.rawMessage }, 'request message could not be decoded');
    handler(request)
      .then((response) => remapUnaryDecodeFailure(response, () => values.get(reachedInterceptorsKey), onRemap))
      .then((response) => {
        // HTTP/1.x: a response that is sent before the request body was read to its end (an
        // oversized or undecodable message) leaves the rest of that body on the connection, where
        // it blocks every later request on it. Close such a connection after the response.
        if (!('stream' in req) && !req.complete && !res.headersSent) res.setHeader('connection', 'close');
        return universalResponseToNodeResponse(response, res);
      })
      .catch((reason: unknown) => {
        // Typically the client went away mid-response; nothing can be sent any more.
        const code = ConnectError.from(reason).code;
        if (code !== Code.Aborted && code !== Code.Canceled) log.debug({ event: `${name}.response_failed`, rpc, code: Code[code] }, 'response not delivered');
        if (!res.headersSent) {
          res.writeHead(500);
          res.end();
        } else if (!res.writableEnded) {
          res.destroy();
        }
      });
  };
}
