// Attacks on every listener's limits, with real servers and sockets: partial-ClientHello floods counted in descriptors, connection and stream caps, a trickled body.
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import http2 from 'node:http2';
import { request as httpsRequest } from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from '@connectrpc/connect';
import { openApiTokenStore, openClusterRegistry, startApiServer, startTunnelEndpoint, type TunnelEndpoint } from '@airlock/control-plane';
import { startTunnelAgent } from '@airlock/data-plane';
import { signRequest } from '@airlock/crypto';
import { createAwsKms } from '@airlock/kms';
import { createKmsServer, resolveKmsServerConfig, type KmsServer } from '@airlock/kms/server';
import { createS3ObjectStore } from '@airlock/objectstore';
import { createObjectStoreServer, resolveObjectStoreServerConfig, type ObjectStoreServer } from '@airlock/objectstore/server';
import {
  clusterIdentityUri,
  createCertificateAuthority,
  issueClientCertificate,
  issueServerCertificate,
  type CertificateKeyPair,
  type ListenerLimitsOptions,
} from '@airlock/pki';
import { EchoService, HealthStatus, TunnelHealthService } from '@airlock/protocol';
import { captureLogger } from '@airlock/testing';
import { openTestDatabase } from './helpers.js';
import { floodWithPartialHellos, until } from './listener-flood.js';

/** Short server-side timeouts so the attacks play out in seconds; the test waits are generous. */
const FAST: ListenerLimitsOptions = { handshakeTimeoutMs: 1000 };
const FLOOD = 300;
/**
 * Descriptors must be back within the configured handshake timeout plus this margin: generous for
 * a loaded machine, yet well short of Node's own defaults (10 s, 120 s), so that a listener that
 * ignored its configured timeout would fail too.
 */
const RELEASE_WITHIN_MS = 1000 + 6000;

let dir: string;
let ca: CertificateKeyPair;
let leaf: { cert: string; key: string };
const closers: Array<() => Promise<void>> = [];
const logs = captureLogger('listener-limits');

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'airlock-listener-limits-'));
  ca = await createCertificateAuthority({ commonName: 'listener limits test CA' });
  leaf = await issueServerCertificate({ ca, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
});

afterAll(async () => {
  for (const close of closers.reverse()) await close().catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
});

let kmsCount = 0;
async function startKms(limits: ListenerLimitsOptions): Promise<KmsServer> {
  const server = await createKmsServer(resolveKmsServerConfig({ dataDir: join(dir, `kms-${kmsCount++}`), tls: leaf, logger: logs.log, limits }));
  closers.push(() => server.close());
  return server;
}

async function startStore(limits: ListenerLimitsOptions): Promise<{ server: ObjectStoreServer; credentials: { accessKeyId: string; secretAccessKey: string } }> {
  const kmsServer = await startKms({});
  const credentials = kmsServer.createAccessKey('listener limits');
  const kms = createAwsKms({ endpoint: kmsServer.url, credentials, caBundle: ca.cert, maxAttempts: 1 });
  const server = await createObjectStoreServer(
    resolveObjectStoreServerConfig({
      dataDir: join(dir, `objects-${kmsCount}`),
      tls: leaf,
      kms,
      lookupSecret: (id) => (id === credentials.accessKeyId ? credentials.secretAccessKey : undefined),
      logger: logs.log,
      limits,
    }),
  );
  closers.push(async () => {
    await server.close();
    kms.destroy();
  });
  return { server, credentials };
}

async function startApi(limits: ListenerLimitsOptions): Promise<{ url: string; port: number }> {
  const stateDir = join(dir, `cp-${kmsCount++}`);
  await mkdir(stateDir, { recursive: true });
  const database = await openTestDatabase(stateDir, logs.log);
  closers.push(() => database.close());
  const tokens = openApiTokenStore({ database, log: logs.log });
  const registry = openClusterRegistry({ ca, database, log: logs.log });
  const server = await startApiServer({ tls: leaf, tokens, registry, log: logs.log, limits });
  closers.push(() => server.close());
  return server;
}

async function startTunnel(limits: ListenerLimitsOptions): Promise<TunnelEndpoint> {
  const endpoint = await startTunnelEndpoint({ tls: leaf, ca: ca.cert, log: logs.log, isClusterAllowed: () => true, limits });
  closers.push(() => endpoint.close());
  return endpoint;
}

/** GET /health over a fresh TLS connection; the status code. */
function health(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port, path: '/health', ca: ca.cert, servername: 'localhost', agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

/** A TLS connection that completes its handshake, for the listeners whose clients must present nothing more. */
async function tlsHandshake(port: number, alpn?: string[]): Promise<tls.TLSSocket> {
  const socket = tls.connect({ host: '127.0.0.1', port, ca: ca.cert, servername: 'localhost', ...(alpn === undefined ? {} : { ALPNProtocols: alpn }) });
  await once(socket, 'secureConnect');
  return socket;
}

describe('partial ClientHello floods: the handshake timeout destroys the socket and releases its descriptor', () => {
  it('KMS', async () => {
    const kms = await startKms(FAST);
    const result = await floodWithPartialHellos(kms.port, FLOOD, RELEASE_WITHIN_MS);
    expect(result.closedByServer).toBe(FLOOD);
    expect(await health(kms.port)).toBe(200);
    // The flood is logged, but boundedly: the first 20 per window, then one summary line.
    const logged = logs.lines.filter((line) => line.event === 'kms.handshake_timeout').length;
    expect(logged).toBeGreaterThan(0);
    expect(logged).toBeLessThanOrEqual(20);
  });

  it('object store', async () => {
    const { server, credentials } = await startStore(FAST);
    const result = await floodWithPartialHellos(server.port, FLOOD, RELEASE_WITHIN_MS);
    expect(result.closedByServer).toBe(FLOOD);
    const client = createS3ObjectStore({ endpoint: server.url, credentials, caBundle: ca.cert, maxAttempts: 1 });
    try {
      await client.createBucket('after-flood');
      await client.put('after-flood', 'k', 'still serving');
      expect((await client.head('after-flood', 'k')).size).toBe(13);
    } finally {
      client.destroy();
    }
  });

  it('API (Connect over HTTP/2)', async () => {
    const api = await startApi(FAST);
    const result = await floodWithPartialHellos(api.port, FLOOD, RELEASE_WITHIN_MS);
    expect(result.closedByServer).toBe(FLOOD);
    expect(await health(api.port)).toBe(200);
  });

  it('tunnel endpoint', async () => {
    const tunnel = await startTunnel(FAST);
    const result = await floodWithPartialHellos(tunnel.port, FLOOD, RELEASE_WITHIN_MS);
    expect(result.closedByServer).toBe(FLOOD);
  });
});

/** Opens `count` raw TCP connections and reports which the server closed within `waitMs` (having been sent nothing). */
async function openRaw(port: number, count: number, waitMs: number): Promise<{ sockets: net.Socket[]; refused: number }> {
  const sockets: net.Socket[] = [];
  let refused = 0;
  for (let i = 0; i < count; i++) {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.on('error', () => undefined);
    socket.once('close', () => refused++);
    await once(socket, 'connect');
    sockets.push(socket);
  }
  await new Promise((resolve) => setTimeout(resolve, waitMs));
  return { sockets, refused };
}

describe('connection caps: refused sockets are destroyed at once', () => {
  it('per client address', async () => {
    const kms = await startKms({ maxConnectionsPerAddress: 5, handshakeTimeoutMs: 60_000 });
    const { sockets, refused } = await openRaw(kms.port, 8, 500);
    expect(refused).toBe(3);
    // While five are held, a sixth client from the same address is refused too…
    const blocked = await openRaw(kms.port, 1, 300);
    expect(blocked.refused).toBe(1);
    // …and once they go, the address is served again.
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(await health(kms.port)).toBe(200);
  });

  it('per listener', async () => {
    const tunnel = await startTunnel({ maxConnections: 4, handshakeTimeoutMs: 60_000 });
    const { sockets, refused } = await openRaw(tunnel.port, 7, 500);
    expect(refused).toBe(3);
    for (const socket of sockets) socket.destroy();
  });
});

/** An HTTP/2 frame: 9-byte header (RFC 9113 §4.1) and payload. */
function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(payload.length, 0, 3);
  header[3] = type;
  header[4] = flags;
  header.writeUInt32BE(streamId, 5);
  return Buffer.concat([header, payload]);
}

describe('HTTP/2 stream cap', () => {
  it('advertises SETTINGS_MAX_CONCURRENT_STREAMS (default 100) and refuses streams beyond it from a client that ignores it', async () => {
    const byDefault = await startApi({});
    const session = http2.connect(byDefault.url, { ca: ca.cert, servername: 'localhost' });
    await once(session, 'remoteSettings');
    expect(session.remoteSettings.maxConcurrentStreams).toBe(100);
    session.close();

    const api = await startApi({ maxConcurrentStreams: 5 });
    const socket = await tlsHandshake(api.port, ['h2']);
    const received: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    socket.on('error', () => undefined);
    // A raw client: preface, empty SETTINGS, then ten requests at once, none of them ended (no
    // END_STREAM), so all would stay open. HPACK: indexed :method GET (2), :scheme https (7),
    // :path / (4), and :authority as a literal with indexed name (1).
    const authority = Buffer.from('localhost');
    const block = Buffer.concat([Buffer.from([0x82, 0x87, 0x84, 0x41, authority.length]), authority]);
    const streams = Array.from({ length: 10 }, (_, i) => 2 * i + 1);
    socket.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(0x4, 0, 0), ...streams.map((id) => frame(0x1, 0x4, id, block))]));

    const refused = new Set<number>();
    let goaway = false;
    await until('the server to refuse the streams beyond its cap', 10_000, () => {
      const bytes = Buffer.concat(received);
      refused.clear();
      for (let at = 0; at + 9 <= bytes.length; ) {
        const length = bytes.readUIntBE(at, 3);
        const type = bytes[at + 3];
        const id = bytes.readUInt32BE(at + 5) & 0x7fffffff;
        if (at + 9 + length > bytes.length) break;
        // RST_STREAM with REFUSED_STREAM (0x7), RFC 9113 §5.1.2; or the whole connection refused.
        if (type === 0x3 && bytes.readUInt32BE(at + 9) === 0x7) refused.add(id);
        if (type === 0x7) goaway = true;
        at += 9 + length;
      }
      return refused.size >= 5 || goaway;
    });
    // The first five were accepted; every later one was refused (or the connection was).
    for (const id of streams.slice(0, 5)) expect(refused.has(id)).toBe(false);
    if (!goaway) expect([...refused].sort((a, b) => a - b)).toEqual(streams.slice(5));
    socket.destroy();
  });
});

describe('HTTP/2 stream cap over the tunnel, where the data-plane agent is the HTTP/2 server', () => {
  it('the control plane never has more calls in flight on a tunnel than the agent allows; the rest wait, none fail', async () => {
    const endpoint = await startTunnel({});
    const cluster = 'stream-cap';
    const credentials = await issueClientCertificate({ ca, uri: clusterIdentityUri(cluster) });
    let inFlight = 0;
    let most = 0;
    const agent = startTunnelAgent({
      endpoint: endpoint.url,
      ca: ca.cert,
      getCredentials: () => ({ cert: credentials.cert, key: credentials.key }),
      routes: (router) => {
        // The control plane's proof call on every new tunnel connection.
        router.service(TunnelHealthService, { check: () => ({ status: HealthStatus.SERVING, agentVersion: 'test' }) });
        router.service(EchoService, {
          echo: async (request) => {
            inFlight++;
            most = Math.max(most, inFlight);
            await new Promise((resolve) => setTimeout(resolve, 200));
            inFlight--;
            return { payload: request.payload };
          },
        });
      },
      log: logs.log,
      maxConcurrentStreams: 2,
    });
    closers.push(() => agent.stop());
    await endpoint.waitForCluster(cluster, 20_000);
    const echo = createClient(EchoService, endpoint.transportFor(cluster));
    const answers = await Promise.all(Array.from({ length: 6 }, (_, i) => echo.echo({ payload: new Uint8Array([i]) })));
    expect(answers.map((answer) => answer.payload[0])).toEqual([0, 1, 2, 3, 4, 5]);
    expect(most).toBe(2);
  });
});

describe('header timeout', () => {
  it('KMS: a request head sent one byte at a time gets 408 and its connection closed', async () => {
    const kms = await startKms({ headersTimeoutMs: 500 });
    const socket = await tlsHandshake(kms.port);
    socket.on('error', () => undefined);
    let answer = '';
    let closed = false;
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')));
    socket.once('close', () => (closed = true));
    socket.write('POST / HTTP/1.1\r\nHost: localhost\r\n');
    const trickle = setInterval(() => {
      if (!socket.destroyed) socket.write('x');
    }, 100);
    try {
      await until('the server to close the slow head', 10_000, () => closed);
    } finally {
      clearInterval(trickle);
    }
    expect(answer.startsWith('HTTP/1.1 408')).toBe(true);
  });
});

describe('body progress: a trickled body is cut off even without a request timeout', () => {
  it('object store, one byte every 200 ms under a valid signature', async () => {
    const { server, credentials } = await startStore({ bodyProgressTimeoutMs: 500, bodyMinBytes: 1024 });
    const client = createS3ObjectStore({ endpoint: server.url, credentials, caBundle: ca.cert, maxAttempts: 1 });
    try {
      await client.createBucket('slow');
      // A body that flows is not affected by the short window.
      const big = randomBytes(4 * 1024 * 1024);
      await client.put('slow', 'fast', big);
      expect((await client.head('slow', 'fast')).size).toBe(big.length);

      const host = `127.0.0.1:${server.port}`;
      const headers: Record<string, string> = { host, 'content-length': '100000' };
      const signed = signRequest({
        method: 'PUT',
        path: '/slow/trickle',
        headers,
        payloadHash: 'UNSIGNED-PAYLOAD',
        credentials,
        region: 'us-east-1',
        service: 's3',
        date: new Date(),
      });
      const head = Object.entries({ ...headers, ...signed.headers }).map(([name, value]) => `${name}: ${value}\r\n`).join('');
      const socket = await tlsHandshake(server.port);
      socket.on('error', () => undefined);
      let closed = false;
      socket.once('close', () => (closed = true));
      socket.write(`PUT /slow/trickle HTTP/1.1\r\n${head}\r\n`);
      const trickle = setInterval(() => {
        if (!socket.destroyed) socket.write('x');
      }, 200);
      try {
        await until('the server to cut the trickling body off', 15_000, () => closed);
      } finally {
        clearInterval(trickle);
      }
      await expect(client.head('slow', 'trickle')).rejects.toMatchObject({ code: 'OBJECT_NOT_FOUND' });
    } finally {
      client.destroy();
    }
  });
});
