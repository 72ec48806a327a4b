// Round trip over real HTTP/2 + TLS (Airlock policy): EchoService served by connect-node, called over the Connect and gRPC protocols.
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { Code, ConnectError, createClient, type Client, type Transport } from '@connectrpc/connect';
import { connectNodeAdapter, createConnectTransport, createGrpcTransport, Http2SessionManager } from '@connectrpc/connect-node';
import { createCertificateAuthority, issueServerCertificate, tlsClientOptions, tlsServerOptions } from '@airlock/pki';
import { EchoService } from '@airlock/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/** The server's per-message limit; requests above it must be refused with resource_exhausted. */
const READ_MAX_BYTES = 64 * 1024;

/** Byte equality that ignores the view's class (connect-node hands back Buffers, tests build Uint8Arrays). */
function sameBytes(actual: Uint8Array, expected: Uint8Array): boolean {
  return Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength).equals(expected);
}

describe('EchoService over HTTP/2 + TLS', () => {
  let server: http2.Http2SecureServer;
  let baseUrl: string;
  let ca: string;
  const sessions = new Set<http2.ServerHttp2Session>();
  const managers: Http2SessionManager[] = [];
  const negotiated: Array<{ protocol: string | null; alpn: string | false | null }> = [];
  let echoCalls = 0;

  beforeAll(async () => {
    const authority = await createCertificateAuthority({ commonName: 'protocol test CA' });
    const leaf = await issueServerCertificate({ ca: authority, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
    ca = authority.cert;

    const handler = connectNodeAdapter({
      readMaxBytes: READ_MAX_BYTES,
      routes: (router) => {
        router.service(EchoService, {
          echo: (request) => {
            echoCalls += 1;
            return { payload: request.payload };
          },
        });
      },
    });
    server = http2.createSecureServer(tlsServerOptions({ cert: leaf.cert, key: leaf.key }), handler);
    server.on('session', (session) => {
      sessions.add(session);
      session.once('close', () => sessions.delete(session));
    });
    server.on('secureConnection', (socket: TLSSocket) => {
      negotiated.push({ protocol: socket.getProtocol(), alpn: socket.alpnProtocol });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    baseUrl = `https://localhost:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    for (const manager of managers) manager.abort();
    for (const session of sessions) session.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  /** An HTTP/2 connection that trusts only the test CA, closed in afterAll. */
  function sessionManager(): Http2SessionManager {
    const manager = new Http2SessionManager(baseUrl, {}, tlsClientOptions({ ca }));
    managers.push(manager);
    return manager;
  }

  const transports: ReadonlyArray<readonly [string, () => Transport]> = [
    // The plain form other packages will use: TLS options straight into http2.connect (the
    // connection is torn down from the server side in afterAll).
    ['Connect', () => createConnectTransport({ baseUrl, httpVersion: '2', nodeOptions: tlsClientOptions({ ca }) })],
    // gRPC requires HTTP/2, so its transport has no httpVersion option.
    ['gRPC', () => createGrpcTransport({ baseUrl, sessionManager: sessionManager() })],
  ];

  describe.each(transports)('over the %s protocol', (_name, makeTransport) => {
    let client: Client<typeof EchoService>;
    beforeAll(() => {
      client = createClient(EchoService, makeTransport());
    });

    it('echoes empty, small and near-limit payloads unchanged', async () => {
      for (const size of [0, 1, 4096, READ_MAX_BYTES - 16]) {
        const payload = new Uint8Array(size).map((_, i) => (i * 31 + size) & 0xff);
        const response = await client.echo({ payload });
        expect(sameBytes(response.payload, payload), `payload of ${size} bytes`).toBe(true);
      }
    });

    it('refuses an oversized request with resource_exhausted, without running the handler or harming the server', async () => {
      const before = echoCalls;
      const error = await client.echo({ payload: new Uint8Array(READ_MAX_BYTES + 1) }).then(
        () => undefined,
        (reason: unknown) => reason,
      );
      expect(error).toBeInstanceOf(ConnectError);
      expect((error as ConnectError).code).toBe(Code.ResourceExhausted);
      expect(echoCalls).toBe(before);

      // The same server (and client) still serve the next call.
      const response = await client.echo({ payload: new Uint8Array([1, 2, 3]) });
      expect(sameBytes(response.payload, new Uint8Array([1, 2, 3]))).toBe(true);
    });
  });

  it('answers a malformed protobuf body with a typed Connect error, not a crash', async () => {
    const session = http2.connect(baseUrl, tlsClientOptions({ ca }));
    try {
      const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const stream = session.request({
          ':method': 'POST',
          ':path': '/airlock.v1.EchoService/Echo',
          'content-type': 'application/proto',
          'connect-protocol-version': '1',
        });
        let status = 0;
        let body = '';
        stream.on('response', (headers) => (status = Number(headers[':status'])));
        stream.setEncoding('utf8');
        stream.on('data', (chunk: string) => (body += chunk));
        stream.on('end', () => resolve({ status, body }));
        stream.on('error', reject);
        // Field 1 with wire type 7, which does not exist: no protobuf decoder can accept it.
        stream.end(Buffer.from([0x0f, 0x01, 0x02]));
      });
      // connect-es 2.1 reports any request it cannot decode as `internal` (HTTP 500), where
      // connect-go says `invalid_argument`. Either way it is a typed Connect error body, and the
      // handler never ran; the control plane's error edge may remap it. A change in the library's
      // mapping shows up here.
      expect(status).toBe(500);
      expect(JSON.parse(body)).toMatchObject({ code: 'internal' });
    } finally {
      session.close();
    }

    const client = createClient(EchoService, createConnectTransport({ baseUrl, httpVersion: '2', sessionManager: sessionManager() }));
    expect(sameBytes((await client.echo({ payload: new Uint8Array([9]) })).payload, new Uint8Array([9]))).toBe(true);
  });

  it('negotiated HTTP/2 over TLS 1.3 for every connection (the Airlock policy prefers 1.3)', () => {
    expect(negotiated.length).toBeGreaterThan(0);
    for (const connection of negotiated) expect(connection).toEqual({ protocol: 'TLSv1.3', alpn: 'h2' });
  });
});
