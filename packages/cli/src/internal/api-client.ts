// A Connect client of the control plane's AirlockService for CLI commands: TLS with the configured CA, the bearer token, AirlockErrors out.
import { readFile } from 'node:fs/promises';
import { rootCertificates } from 'node:tls';
import { createClient, type Client, type Interceptor } from '@connectrpc/connect';
import { createConnectTransport, Http2SessionManager } from '@connectrpc/connect-node';
import { AirlockError, failureReason } from '@airlock/common';
import { tlsClientOptions } from '@airlock/pki';
import { AirlockService, fromConnectError } from '@airlock/protocol';
import { readClientToken, type ClientConfig } from './client-config.js';

export type AirlockClient = Client<typeof AirlockService>;

export interface ApiConnection {
  readonly client: AirlockClient;
  readonly config: ClientConfig;
  close(): void;
}

/** An async iterable whose failures arrive as AirlockErrors. */
async function* airlockErrorsOf<T>(stream: AsyncIterable<T>): AsyncGenerator<T> {
  try {
    yield* stream;
  } catch (error) {
    throw fromConnectError(error);
  }
}

/**
 * The client with every failed call turned into the AirlockError the server sent (code, message,
 * details). An interceptor cannot do it: connect-es wraps whatever an interceptor throws in a
 * ConnectError of code Unknown.
 */
function withAirlockErrors(client: AirlockClient): AirlockClient {
  return new Proxy(client, {
    get(target, property, receiver) {
      const method: unknown = Reflect.get(target, property, receiver);
      if (typeof method !== 'function') return method;
      return (...args: unknown[]): unknown => {
        let result: unknown;
        try {
          result = (method as (...a: unknown[]) => unknown).apply(target, args);
        } catch (error) {
          throw fromConnectError(error);
        }
        if (result instanceof Promise) return result.catch((error: unknown) => Promise.reject(fromConnectError(error)));
        if (typeof result === 'object' && result !== null && Symbol.asyncIterator in result) return airlockErrorsOf(result as AsyncIterable<unknown>);
        return result;
      };
    },
  });
}

/** Connects to the configured control plane; nothing is sent until the first call. */
export async function connectApi(config: ClientConfig, options: { readonly timeoutMs?: number } = {}): Promise<ApiConnection> {
  const token = await readClientToken(config);
  let ca: string | undefined;
  if (config.caFile !== undefined) {
    try {
      ca = await readFile(config.caFile, 'utf8');
    } catch (error) {
      throw new AirlockError('CONFIG_INVALID', `Cannot read the CA bundle ${config.caFile}: ${failureReason(error)}`);
    }
  }
  const bearer: Interceptor = (next) => (request) => {
    request.header.set('authorization', `Bearer ${token}`);
    return next(request);
  };
  const sessions = new Http2SessionManager(config.api, { idleConnectionTimeoutMs: 60_000 }, tlsClientOptions({ ca: ca ?? rootCertificates.join('\n') }));
  const transport = createConnectTransport({
    baseUrl: config.api,
    httpVersion: '2',
    sessionManager: sessions,
    interceptors: [bearer],
    defaultTimeoutMs: options.timeoutMs ?? 30_000,
  });
  return { client: withAirlockErrors(createClient(AirlockService, transport)), config, close: () => sessions.abort() };
}
