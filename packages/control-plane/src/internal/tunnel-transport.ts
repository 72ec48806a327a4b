// Connect transports that send the control plane's calls down a cluster's reverse tunnel (the HTTP/2 session the CP holds as client).
import type http2 from 'node:http2';
import { Code, ConnectError, type Interceptor, type StreamResponse, type Transport } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport, type GrpcTransportOptions } from '@connectrpc/connect-node';

/**
 * connect-node's `NodeHttp2ClientSessionManager`: the three members its HTTP/2 client uses
 * (`authority`, `request`, `notifyResponseByteRead`). connect-node 2.1 accepts any object of this
 * shape as the transports' `sessionManager` option but does not export the interface by name, so it
 * is derived from the option's type.
 */
export type TunnelSessionManager = NonNullable<GrpcTransportOptions['sessionManager']>;

/** The wire protocols a tunnel transport can speak; the data plane's connect-node adapter serves both. */
export type TunnelProtocol = 'connect' | 'grpc';

/** Transport options the endpoint lets callers tune; everything else is fixed by the tunnel. */
export interface TunnelTransportOptions {
  /** Largest response message accepted, in bytes. @default 0xffffffff (connect-es) */
  readonly readMaxBytes?: number;
  /** Largest request message sent, in bytes. @default 0xffffffff (connect-es) */
  readonly writeMaxBytes?: number;
  /** Deadline for calls that set none, in milliseconds. @default none */
  readonly defaultTimeoutMs?: number;
  /** Interceptors run on every call, inside the tunnel's error normalisation (they see raw errors). @default none */
  readonly interceptors?: readonly Interceptor[];
}

/** One live reverse connection, as the transports see it. */
export interface TunnelSession {
  /** The HTTP/2 session whose client side this process holds over the accepted socket. */
  readonly session: http2.ClientHttp2Session;
  /** False once the connection is closing, draining (GOAWAY) or dead; new calls must not start on it. */
  usable(): boolean;
  /** True once the connection is gone (destroyed or closed), whatever the reason. */
  lost(): boolean;
}

/**
 * A session manager that issues every request on the cluster's current reverse session. It never
 * dials: the data plane is the only side that opens connections, so when there is no tunnel the
 * call fails with `unavailable` at once instead of connecting anywhere.
 */
export function createTunnelSessionManager(cluster: string, authority: string, current: () => TunnelSession | undefined): TunnelSessionManager {
  return {
    authority,
    request(method, path, headers, options) {
      const tunnel = current();
      if (tunnel === undefined || !tunnel.usable()) {
        return Promise.reject(new ConnectError(`no tunnel to cluster ${cluster}`, Code.Unavailable));
      }
      try {
        return Promise.resolve(tunnel.session.request({ ...headers, ':method': method, ':path': path }, options));
      } catch (error) {
        // request() throws synchronously when the session died between usable() and now.
        return Promise.reject(new ConnectError(`tunnel to cluster ${cluster} closed`, Code.Unavailable, undefined, undefined, error));
      }
    },
    // Liveness comes from the endpoint's own PING heartbeat, which runs whether or not calls are
    // in flight, so response bytes need not be reported.
    notifyResponseByteRead() {},
  };
}

/** Error codes that a dying connection produces in connect-node (stream reset, socket reset, session destroyed). */
const CONNECTION_LOSS_CODES: ReadonlySet<Code> = new Set([Code.Canceled, Code.Aborted, Code.Internal, Code.Unknown, Code.Unavailable]);

/**
 * Gives every call that the loss of its tunnel ended the same typed error: `unavailable`, which
 * callers may retry once the agent has reconnected. Without this, connect-node reports the same
 * event as `canceled` (RST_STREAM CANCEL from a destroyed session), `aborted` (ECONNRESET) or
 * `internal`, depending on which side noticed first.
 */
function tunnelLossInterceptor(cluster: string, current: () => TunnelSession | undefined): Interceptor {
  const normalise = (error: unknown, tunnel: TunnelSession | undefined, signal: AbortSignal): unknown => {
    // A caller's own cancellation or deadline keeps its code.
    if (signal.aborted) return error;
    const connectError = ConnectError.from(error);
    const lost = tunnel === undefined || tunnel.lost();
    if (!lost || !CONNECTION_LOSS_CODES.has(connectError.code) || connectError.code === Code.Unavailable) return error;
    return new ConnectError(`tunnel to cluster ${cluster} was lost during the call`, Code.Unavailable, undefined, undefined, error);
  };
  return (next) => async (request) => {
    // The session manager picks the same connection a moment later, inside next().
    const tunnel = current();
    let response;
    try {
      response = await next(request);
    } catch (error) {
      throw normalise(error, tunnel, request.signal);
    }
    if (!response.stream) return response;
    const messages = response.message;
    const wrapped: StreamResponse = {
      ...response,
      message: (async function* () {
        try {
          yield* messages;
        } catch (error) {
          throw normalise(error, tunnel, request.signal);
        }
      })(),
    };
    return wrapped;
  };
}

/** The Connect and gRPC transports for one cluster; both route through the same session manager. */
export function createTunnelTransports(
  cluster: string,
  authority: string,
  current: () => TunnelSession | undefined,
  options: TunnelTransportOptions,
): Readonly<Record<TunnelProtocol, Transport>> {
  const sessionManager = createTunnelSessionManager(cluster, authority, current);
  const common = {
    baseUrl: authority,
    sessionManager,
    interceptors: [tunnelLossInterceptor(cluster, current), ...(options.interceptors ?? [])],
    ...(options.readMaxBytes === undefined ? {} : { readMaxBytes: options.readMaxBytes }),
    ...(options.writeMaxBytes === undefined ? {} : { writeMaxBytes: options.writeMaxBytes }),
    ...(options.defaultTimeoutMs === undefined ? {} : { defaultTimeoutMs: options.defaultTimeoutMs }),
  };
  return Object.freeze({
    connect: createConnectTransport({ ...common, httpVersion: '2' }),
    grpc: createGrpcTransport(common),
  });
}

/**
 * A Connect transport pinned to one connection, whether or not it is the cluster's tunnel: the
 * endpoint's proof call goes down a new connection before that connection may carry other calls.
 */
export function createConnectionTransport(cluster: string, authority: string, connection: TunnelSession): Transport {
  return createConnectTransport({
    baseUrl: authority,
    httpVersion: '2',
    sessionManager: createTunnelSessionManager(cluster, authority, () => connection),
  });
}
