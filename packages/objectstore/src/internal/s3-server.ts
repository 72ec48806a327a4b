// The object store's HTTPS listener: Airlock TLS policy, timeouts and limits that keep bad clients from hurting good ones.
import { STATUS_CODES, type ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { AirlockError, KEEP_ALIVE_TIMEOUT_MS, type Logger } from '@airlock/common';
import type { SecretLookup } from '@airlock/crypto';
import { tlsServerOptions } from '@airlock/pki';
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
}

export interface S3Listener {
  /** `https://host:port`; objects are at `<url>/<bucket>/<key>` (path-style). */
  readonly url: string;
  readonly port: number;
  /** Stops accepting connections, lets in-flight requests finish (forcing them closed after 10 s). */
  close(): Promise<void>;
}

/** How long a client may take to send its request head (slowloris guard). */
const HEADERS_TIMEOUT_MS = 30_000;
/** How long a connection may sit with no bytes moving either way. */
const IDLE_TIMEOUT_MS = 120_000;
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
  });
  const server: Server = createServer({
    ...tlsServerOptions({ cert: options.tls.cert, key: options.tls.key }),
    maxHeaderSize: options.maxHeaderSize ?? 16 * 1024,
    headersTimeout: HEADERS_TIMEOUT_MS,
    // No cap on a whole request: a 5 GiB upload may rightly take long. Stalls are caught by the idle timeout.
    requestTimeout: 0,
    keepAlive: true,
    keepAliveInitialDelay: 30_000,
  });
  server.setTimeout(IDLE_TIMEOUT_MS);
  // Longer than clients' pooled-connection idle time, so a reused connection is not closed under them.
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;

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
  server.on('request', (req, res) => {
    handler(req, res).catch((error: unknown) => crashed(error, res));
  });
  // With a listener here Node no longer answers `Expect: 100-continue` itself: the handler sends
  // 100 only once the request is authenticated and about to read the body.
  server.on('checkContinue', (req, res) => {
    handler.checkContinue(req, res).catch((error: unknown) => crashed(error, res));
  });
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
    log.debug({ code: error.code }, 'malformed S3 client request');
    const inFlight = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (error.code === 'ECONNRESET' || !socket.writable || inFlight?.headersSent === true) {
      socket.destroy();
      return;
    }
    const status = error.code === 'HPE_HEADER_OVERFLOW' ? 431 : error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  });
  server.on('tlsClientError', (error: NodeJS.ErrnoException) => log.debug({ code: error.code }, 'S3 TLS handshake refused'));

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
        const force = setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS);
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
