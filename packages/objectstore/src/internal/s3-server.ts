// The object store's HTTPS listener: Airlock TLS policy, timeouts and limits that keep bad clients from hurting good ones.
import type { ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AirlockError, type Logger } from '@airlock/common';
import type { SecretLookup } from '@airlock/crypto';
import { createLimitedHttpsServer, resolveListenerLimits, tlsServerOptions, type ConnectionBudget, type ListenerLimitsOptions, type ResolvedListenerLimits } from '@airlock/pki';
import type { KeyEventStatus } from '@airlock/kms';
import type { ObjectEngine } from './engine-types.js';
import { createS3RequestHandler } from './s3-http.js';

export interface S3ListenerOptions {
  readonly engine: ObjectEngine;
  readonly lookupSecret: SecretLookup;
  /** PEM certificate chain and private key. */
  readonly tls: { readonly cert: string; readonly key: string };
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  readonly region: string;
  readonly log: Logger;
  /** The clock signatures are checked against. @default () => new Date() */
  readonly now?: () => Date;
  /** Largest request head (request line and headers); a larger one gets 431. @default 16384 */
  readonly maxHeaderSize?: number;
  /** Largest PutObject / UploadPart body. @default 5 GiB */
  readonly maxObjectBytes?: number;
  /** Timeouts and connection caps. @default resolveListenerLimits(undefined, …, OBJECT_STORE_LISTENER_LIMIT_DEFAULTS) */
  readonly limits?: ResolvedListenerLimits;
  /** The process-wide budget of public connections. @default none */
  readonly connectionBudget?: ConnectionBudget;
  /** Other key-event subscriptions of this process that /health reports (ObjectStoreServerOptions.keyEventHolders). @default none */
  readonly keyEventHolders?: Readonly<Record<string, () => KeyEventStatus>>;
}

export interface S3Listener {
  /** `https://host:port`; objects are at `<url>/<bucket>/<key>` (path-style). */
  readonly url: string;
  readonly port: number;
  /** Stops accepting connections, lets in-flight requests finish (forcing them closed after 10 s). */
  close(): Promise<void>;
}

/**
 * The object store's defaults over DEFAULT_LISTENER_LIMITS: no whole-request timeout, since a 5 GiB
 * upload may rightly take long; a body that stops progressing is cut off by the body-progress timeout.
 */
export const OBJECT_STORE_LISTENER_LIMIT_DEFAULTS: ListenerLimitsOptions = Object.freeze({ requestTimeoutMs: 0 });

/** How long close() waits for in-flight requests before cutting them off. */
const CLOSE_GRACE_MS = 10_000;

/** Starts the S3 HTTPS listener over an engine. */
export async function startS3Listener(options: S3ListenerOptions): Promise<S3Listener> {
  const { log } = options;
  const handler = createS3RequestHandler({
    engine: options.engine,
    lookupSecret: options.lookupSecret,
    region: options.region,
    log,
    ...(options.now === undefined ? {} : { now: options.now }),
    ...(options.maxObjectBytes === undefined ? {} : { maxObjectBytes: options.maxObjectBytes }),
    ...(options.keyEventHolders === undefined ? {} : { keyEventHolders: options.keyEventHolders }),
  });
  const crashed = (error: unknown, res: ServerResponse): void => {
    // The handler maps every error itself; reaching here is a bug, and the connection is all that is left to end.
    log.error({ err: error }, 'S3 request handler crashed');
    if (!res.headersSent) {
      res.writeHead(500, { 'content-type': 'application/xml', connection: 'close' });
      res.end('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message></Error>');
    } else {
      res.destroy();
    }
  };
  const listener = createLimitedHttpsServer(
    { ...tlsServerOptions({ cert: options.tls.cert, key: options.tls.key }), maxHeaderSize: options.maxHeaderSize ?? 16 * 1024 },
    {
      request: (req, res) => {
        handler(req, res).catch((error: unknown) => crashed(error, res));
      },
      // With this handler Node no longer answers `Expect: 100-continue` itself: the handler sends
      // 100 only once the request is authenticated and about to read the body.
      checkContinue: (req, res) => {
        handler.checkContinue(req, res).catch((error: unknown) => crashed(error, res));
      },
    },
    {
      name: 's3',
      log,
      limits: options.limits ?? resolveListenerLimits(undefined, 'objectStore.limits', OBJECT_STORE_LISTENER_LIMIT_DEFAULTS),
      ...(options.connectionBudget === undefined ? {} : { budget: options.connectionBudget }),
    },
  );
  const { server } = listener;
  server.on('tlsClientError', (error: NodeJS.ErrnoException) => {
    // Handshake timeouts are counted by the listener limits, whose log stays bounded under a flood.
    if (error.code !== 'ERR_TLS_HANDSHAKE_TIMEOUT') log.debug({ code: error.code }, 'S3 TLS handshake refused');
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', (error) => reject(AirlockError.from(error)));
    server.listen(options.port, options.host, () => resolve());
  });
  server.on('error', (error) => log.error({ err: error }, 'S3 listener error'));
  const port = (server.address() as AddressInfo).port;
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;

  let closing: Promise<void> | undefined;
  return {
    url: `https://${host}:${port}`,
    port,
    close() {
      closing ??= new Promise<void>((resolve) => {
        const force = setTimeout(() => listener.destroyAll(), CLOSE_GRACE_MS);
        force.unref();
        server.close(() => {
          clearTimeout(force);
          resolve();
        });
        server.closeIdleConnections();
      });
      return closing;
    },
  };
}
