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
import {
  openActionQueue,
  openApiTokenStore,
  openClusterRegistry,
  startApiServer,
  startDispatchServer,
  startTunnelEndpoint,
  type TunnelEndpoint,
} from '@airlock/control-plane';
import { startTunnelAgent } from '@airlock/data-plane';
import { signRequest } from '@airlock/crypto';
import { createAwsKms } from '@airlock/kms';
import { createKmsServer, resolveKmsServerConfig, type KmsServer } from '@airlock/kms/server';
import { createS3ObjectStore } from '@airlock/objectstore';
import { createObjectStoreServer, resolveObjectStoreServerConfig, type ObjectStoreServer } from '@airlock/objectstore/server';
import {
  clusterIdentityUri,
  createCertificateAuthority,
  createConnectionBudget,
  createLimitedHttp2SocketServer,
  issueClientCertificate,
  issueServerCertificate,
  resolveListenerLimits,
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

describe('the control plane\'s shared connection budget', () => {
  it('a flood on the tunnel port spends the budget the API and dispatch listeners share, so they refuse new clients too; they serve again once it goes', async () => {
    // 30 public connections for the three listeners together, far below each one's own caps.
    const budget = createConnectionBudget({ descriptorLimit: 40, reserve: 10 });
    expect(budget.maxPublicConnections).toBe(30);
    const stateDir = join(dir, `cp-budget-${kmsCount++}`);
    await mkdir(stateDir, { recursive: true });
    const database = await openTestDatabase(stateDir, logs.log);
    closers.push(() => database.close());
    const registry = openClusterRegistry({ ca, database, log: logs.log });
    const queue = await openActionQueue({ database, log: logs.log });
    closers.push(() => queue.close());
    const slow: ListenerLimitsOptions = { handshakeTimeoutMs: 60_000 };
    const tunnel = await startTunnelEndpoint({ tls: leaf, ca: ca.cert, log: logs.log, isClusterAllowed: () => true, limits: slow, connectionBudget: budget });
    closers.push(() => tunnel.close());
    const dispatch = await startDispatchServer({ tls: leaf, ca: ca.cert, registry, queue, log: logs.log, limits: slow, connectionBudget: budget });
    closers.push(() => dispatch.close());
    const api = await startApiServer({ tls: leaf, tokens: openApiTokenStore({ database, log: logs.log }), registry, log: logs.log, limits: slow, connectionBudget: budget });
    closers.push(() => api.close());
    expect(await health(api.port)).toBe(200);
    await until('the health check\'s connection to be released', 5000, () => budget.inUse() === 0);

    const flood = await openRaw(tunnel.port, 35, 500);
    try {
      expect(flood.refused).toBe(5);
      expect(budget.inUse()).toBe(30);
      // The other two listeners are nowhere near their own caps, yet refuse: the process has no budget left.
      expect((await openRaw(api.port, 1, 300)).refused).toBe(1);
      expect((await openRaw(dispatch.port, 1, 300)).refused).toBe(1);
      await expect(health(api.port)).rejects.toMatchObject({ code: expect.stringMatching(/^(ECONNRESET|EPIPE)$/) as string });
    } finally {
      for (const socket of flood.sockets) socket.destroy();
    }
    await until('the flood\'s connections to be released', 5000, () => budget.inUse() === 0);
    expect(await health(api.port)).toBe(200);
    expect(await health(dispatch.port)).toBe(200);
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

/** What a raw HTTP/2 client received: the streams refused, and the first GOAWAY's error code, if one came. */
interface RawH2Received {
  readonly refused: number[];
  readonly goaway: number | undefined;
}

/** A raw HTTP/2 client over TLS (ALPN h2) that sends exactly the bytes it is given, and parses what comes back. */
async function rawH2(port: number): Promise<{ socket: tls.TLSSocket; chunks: Buffer[]; received: () => RawH2Received; closed: () => boolean }> {
  const socket = await tlsHandshake(port, ['h2']);
  expect(socket.alpnProtocol).toBe('h2');
  const chunks: Buffer[] = [];
  let closed = false;
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('error', () => undefined);
  socket.once('close', () => (closed = true));
  const received = (): RawH2Received => {
    const bytes = Buffer.concat(chunks);
    const refused: number[] = [];
    let goaway: number | undefined;
    for (let at = 0; at + 9 <= bytes.length; ) {
      const length = bytes.readUIntBE(at, 3);
      if (at + 9 + length > bytes.length) break;
      const type = bytes[at + 3];
      const id = bytes.readUInt32BE(at + 5) & 0x7fffffff;
      // RST_STREAM REFUSED_STREAM (0x7); GOAWAY carries its error code after the last stream id.
      if (type === 0x3 && bytes.readUInt32BE(at + 9) === 0x7) refused.push(id);
      if (type === 0x7) goaway ??= bytes.readUInt32BE(at + 13);
      at += 9 + length;
    }
    return { refused, goaway };
  };
  return { socket, chunks, received, closed: () => closed };
}

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

/** One HTTP/2 frame as received (RFC 9113 §4.1). */
interface H2Frame {
  readonly type: number;
  readonly flags: number;
  readonly id: number;
  readonly payload: Buffer;
}

/** The complete frames in `bytes` (after any connection preface the caller stripped). */
function parseFrames(bytes: Buffer): H2Frame[] {
  const frames: H2Frame[] = [];
  for (let at = 0; at + 9 <= bytes.length; ) {
    const length = bytes.readUIntBE(at, 3);
    if (at + 9 + length > bytes.length) break;
    frames.push({ type: bytes[at + 3] ?? 0, flags: bytes[at + 4] ?? 0, id: bytes.readUInt32BE(at + 5) & 0x7fffffff, payload: bytes.subarray(at + 9, at + 9 + length) });
    at += 9 + length;
  }
  return frames;
}

/** The streams reset with RST_STREAM (type 0x3), with their error codes. */
const resets = (frames: readonly H2Frame[]): Array<{ id: number; code: number }> =>
  frames.filter((f) => f.type === 0x3).map((f) => ({ id: f.id, code: f.payload.readUInt32BE(0) }));
/** The first GOAWAY's error code (RFC 9113 §6.8), if one came. */
const goawayCode = (frames: readonly H2Frame[]): number | undefined => frames.find((f) => f.type === 0x7)?.payload.readUInt32BE(4);
const CANCEL = 0x8;
/**
 * HPACK (RFC 7541 §6.1, §6.2.2): indexed :method POST (3) and :scheme https (7); :path (4), :authority (1)
 * and content-type (31: a 4-bit prefix, 15 then 16) as literals without indexing, with indexed names.
 */
function requestHead(path: string): Buffer {
  const literal = (prefix: readonly number[], value: string): Buffer => Buffer.concat([Buffer.from([...prefix, value.length]), Buffer.from(value, 'latin1')]);
  return Buffer.concat([Buffer.from([0x83, 0x87]), literal([0x04], path), literal([0x01], 'localhost'), literal([0x0f, 0x10], 'application/json')]);
}
/** An RPC whose handler waits for the request body, so a stream that never sends one stays open. */
const HELD_PATH = '/airlock.v1.AirlockService/Health';
const ENHANCE_YOUR_CALM = 0xb;

describe('HTTP/2 header timeout: a request head is cut off after headersTimeoutMs, not the idle timeout', () => {
  // The idle timeout stays at its default (120 s), so only the headers timeout can end these within the waits.
  const LIMITS: ListenerLimitsOptions = { headersTimeoutMs: 500 };

  it('a HEADERS frame without END_HEADERS, then CONTINUATION frames one at a time, then silence: GOAWAY ENHANCE_YOUR_CALM and closed', async () => {
    const api = await startApi(LIMITS);
    const client = await rawH2(api.port);
    const head = requestHead(HELD_PATH);
    // Each CONTINUATION is a complete frame, which resets Node's own session timer. Five of them:
    // nghttp2 itself ends a session after 8, and that must not be what ends this one.
    client.socket.write(Buffer.concat([PREFACE, frame(0x4, 0, 0), frame(0x1, 0, 1, head.subarray(0, 2))]));
    let sent = 2;
    const trickle = setInterval(() => {
      if (client.socket.destroyed || sent >= 2 + 5) return;
      client.socket.write(frame(0x9, 0, 1, head.subarray(sent, sent + 1)));
      sent++;
    }, 150);
    const started = Date.now();
    try {
      await until('the server to close the session whose head never ends', 10_000, () => client.closed());
    } finally {
      clearInterval(trickle);
    }
    expect(client.received().goaway).toBe(ENHANCE_YOUR_CALM);
    // Cut once the head has been in progress for the timeout (checked every quarter of it); 10 s allows for a busy machine.
    expect(Date.now() - started).toBeGreaterThanOrEqual(500);
    expect(await health(api.port)).toBe(200);
  });

  it('a HEADERS frame whose payload trickles in one byte at a time', async () => {
    const api = await startApi(LIMITS);
    const client = await rawH2(api.port);
    const headers = frame(0x1, 0x4, 1, requestHead(HELD_PATH));
    client.socket.write(Buffer.concat([PREFACE, frame(0x4, 0, 0), headers.subarray(0, 10)]));
    let sent = 10;
    const trickle = setInterval(() => {
      if (!client.socket.destroyed && sent < headers.length - 1) client.socket.write(headers.subarray(sent, ++sent));
    }, 150);
    try {
      await until('the server to close the session whose HEADERS frame trickles', 10_000, () => client.closed());
    } finally {
      clearInterval(trickle);
    }
    expect(client.received().goaway).toBe(ENHANCE_YOUR_CALM);
  });

  it('a connection preface sent one byte at a time', async () => {
    const api = await startApi(LIMITS);
    const client = await rawH2(api.port);
    let sent = 0;
    const trickle = setInterval(() => {
      if (!client.socket.destroyed && sent < PREFACE.length - 1) client.socket.write(PREFACE.subarray(sent, ++sent));
    }, 150);
    try {
      await until('the server to close the session whose preface trickles', 10_000, () => client.closed());
    } finally {
      clearInterval(trickle);
    }
  });

  it('does not cut a session that sits idle between complete requests, however long past the headers timeout', async () => {
    const api = await startApi(LIMITS);
    const session = http2.connect(api.url, { ca: ca.cert, servername: 'localhost' });
    session.on('error', () => undefined);
    const get = async (): Promise<number> => {
      const stream = session.request({ ':method': 'GET', ':path': '/health' });
      const [headers] = (await once(stream, 'response')) as [http2.IncomingHttpHeaders];
      stream.resume();
      await once(stream, 'end');
      return Number(headers[':status']);
    };
    try {
      expect(await get()).toBe(200);
      await new Promise((resolve) => setTimeout(resolve, 2000));
      expect(session.closed || session.destroyed).toBe(false);
      expect(await get()).toBe(200);
    } finally {
      session.close();
    }
  });
});

describe('HTTP/2 stream cap across a listener', () => {
  it('refuses streams beyond maxListenerStreams over all sessions with REFUSED_STREAM, and admits new ones once streams close', async () => {
    const api = await startApi({ maxListenerStreams: 6, maxConcurrentStreams: 5 });
    const head = requestHead(HELD_PATH);
    // Five held streams on one session, then five on another: each within the per-session cap of 5.
    const first = await rawH2(api.port);
    first.socket.write(Buffer.concat([PREFACE, frame(0x4, 0, 0), ...[1, 3, 5, 7, 9].map((id) => frame(0x1, 0x4, id, head))]));
    await new Promise((resolve) => setTimeout(resolve, 300));
    const second = await rawH2(api.port);
    second.socket.write(Buffer.concat([PREFACE, frame(0x4, 0, 0), ...[1, 3, 5, 7, 9].map((id) => frame(0x1, 0x4, id, head))]));
    await until('the streams beyond the listener cap to be refused', 10_000, () => second.received().refused.length >= 4);
    expect(first.received().refused).toEqual([]);
    expect(second.received().refused).toEqual([3, 5, 7, 9]);
    expect(second.received().goaway).toBeUndefined();

    // The first session's five streams go with it: the second session may open streams again.
    first.socket.destroy();
    await new Promise((resolve) => setTimeout(resolve, 300));
    second.socket.write(Buffer.concat([11, 13, 15].map((id) => frame(0x1, 0x4, id, head))));
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(second.received().refused).toEqual([3, 5, 7, 9]);
    second.socket.destroy();
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

describe('HTTP/2 body progress: a stream whose body trickles is reset after the body-progress timeout, as an HTTP/1.1 request is cut', () => {
  // The request (300 s) and idle (120 s) timeouts stay at their defaults: only body progress can end the stream within the waits.
  const LIMITS: ListenerLimitsOptions = { bodyProgressTimeoutMs: 500, bodyMinBytes: 1024 };

  it('API listener: one DATA byte every 150 ms gets RST_STREAM CANCEL; the session and a flowing body on it are untouched', async () => {
    const api = await startApi(LIMITS);
    const client = await rawH2(api.port);
    // Stream 1 reads its body (the Connect handler waits for all of it); stream 3's body arrives at once and is answered.
    const json = Buffer.from('{}');
    client.socket.write(Buffer.concat([PREFACE, frame(0x4, 0, 0), frame(0x1, 0x4, 1, requestHead(HELD_PATH)), frame(0x0, 0, 1, Buffer.from(' '))]));
    const trickle = setInterval(() => {
      if (!client.socket.destroyed) client.socket.write(frame(0x0, 0, 1, Buffer.from(' ')));
    }, 150);
    const started = Date.now();
    const received = (): H2Frame[] => parseFrames(Buffer.concat(client.chunks));
    try {
      await until('the server to reset the trickling stream', 15_000, () => resets(received()).some((r) => r.id === 1));
    } finally {
      clearInterval(trickle);
    }
    expect(resets(received())).toEqual([{ id: 1, code: CANCEL }]);
    // Within two windows of the timeout, allowing for a busy machine; never before one whole window.
    expect(Date.now() - started).toBeGreaterThanOrEqual(500);
    expect(goawayCode(received())).toBeUndefined();
    expect(client.closed()).toBe(false);
    client.socket.write(Buffer.concat([frame(0x1, 0x4, 3, requestHead(HELD_PATH)), frame(0x0, 0x1, 3, json)]));
    await until('the flowing request on the same session to be answered', 10_000, () => received().some((f) => f.id === 3 && f.type === 0x1));
    expect(resets(received()).filter((r) => r.id === 3)).toEqual([]);
    client.socket.destroy();
    expect(logs.lines.some((line) => line.event === 'api.body_stalled' && line.protocol === 'h2')).toBe(true);
  });
});

describe('HTTP/2 body progress ends with the body', () => {
  it('a stream whose request body has ended is never reset by the rule, however long its answer runs', async () => {
    // A server handed TLS sockets, as the tunnel agent's is; 300 ms windows, and an answer that runs for ten of them.
    const inner = createLimitedHttp2SocketServer(
      (req, res) => {
        req.resume();
        req.on('end', () => {
          res.writeHead(200);
          const tick = setInterval(() => res.write('x'), 100);
          setTimeout(() => {
            clearInterval(tick);
            res.end();
          }, 3000);
        });
      },
      { name: 'long-answer', log: logs.log, limits: resolveListenerLimits({ bodyProgressTimeoutMs: 300, bodyMinBytes: 1024 }, 'test') },
    );
    const outer = tls.createServer({ cert: leaf.cert, key: leaf.key, ALPNProtocols: ['h2'] }, (socket) => inner.emit('connection', socket));
    outer.listen(0, '127.0.0.1');
    await once(outer, 'listening');
    closers.push(() => new Promise<void>((resolve) => outer.close(() => resolve())));
    const session = http2.connect(`https://localhost:${(outer.address() as net.AddressInfo).port}`, { ca: ca.cert });
    session.on('error', () => undefined);
    try {
      const stream = session.request({ ':method': 'POST', ':path': '/' });
      stream.end('a small body, complete at once');
      let received = 0;
      stream.on('data', (chunk: Buffer) => (received += chunk.length));
      await once(stream, 'end');
      expect(received).toBeGreaterThanOrEqual(20);
      expect(stream.rstCode ?? 0).toBe(0);
      expect(logs.lines.filter((line) => line.event === 'long-answer.body_stalled')).toEqual([]);
    } finally {
      session.close();
    }
  });
});

describe('the tunnel agent\'s own HTTP/2 server (serving the control plane on the agent\'s outbound connection) has the listener limits', () => {
  it('advertises the stream cap, resets a trickled body (RST_STREAM CANCEL) and cuts a trickled request head (GOAWAY ENHANCE_YOUR_CALM)', async () => {
    // A control plane that accepts the agent's connection and then misbehaves as its HTTP/2 client.
    const sockets: tls.TLSSocket[] = [];
    const fake = tls.createServer({ cert: leaf.cert, key: leaf.key, ALPNProtocols: ['h2'] }, (socket) => {
      socket.on('error', () => undefined);
      sockets.push(socket);
    });
    fake.listen(0, '127.0.0.1');
    await once(fake, 'listening');
    closers.push(async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => fake.close(() => resolve()));
    });
    const cluster = 'agent-limits';
    const credentials = await issueClientCertificate({ ca, uri: clusterIdentityUri(cluster) });
    const agent = startTunnelAgent({
      endpoint: `https://localhost:${(fake.address() as net.AddressInfo).port}`,
      ca: ca.cert,
      getCredentials: () => ({ cert: credentials.cert, key: credentials.key }),
      routes: (router) => {
        router.service(TunnelHealthService, { check: () => ({ status: HealthStatus.SERVING, agentVersion: 'test' }) });
        router.service(EchoService, { echo: (request) => ({ payload: request.payload }) });
      },
      log: logs.log,
      // Idle and request timeouts at their defaults (120 s, 300 s); the agent waits long for an acceptance that never comes.
      limits: { headersTimeoutMs: 500, bodyProgressTimeoutMs: 500, bodyMinBytes: 1024, maxConcurrentStreams: 7 },
      connectTimeoutMs: 60_000,
    });
    closers.push(() => agent.stop());
    await until('the agent to dial', 10_000, () => sockets.length > 0);
    const socket = sockets[0] as tls.TLSSocket;
    const chunks: Buffer[] = [];
    let closed = false;
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.once('close', () => (closed = true));
    const received = (): H2Frame[] => parseFrames(Buffer.concat(chunks));
    socket.write(Buffer.concat([PREFACE, frame(0x4, 0, 0)]));
    await until('the agent\'s SETTINGS', 10_000, () => received().some((f) => f.type === 0x4 && (f.flags & 0x1) === 0));
    const settings = received().find((f) => f.type === 0x4 && (f.flags & 0x1) === 0) as H2Frame;
    const advertised = new Map<number, number>();
    for (let at = 0; at + 6 <= settings.payload.length; at += 6) advertised.set(settings.payload.readUInt16BE(at), settings.payload.readUInt32BE(at + 2));
    // SETTINGS_MAX_CONCURRENT_STREAMS (0x3).
    expect(advertised.get(0x3)).toBe(7);

    // A call whose body trickles: reset, the session stays.
    const echo = '/airlock.v1.EchoService/Echo';
    socket.write(Buffer.concat([frame(0x1, 0x4, 1, requestHead(echo)), frame(0x0, 0, 1, Buffer.from(' '))]));
    const trickle = setInterval(() => {
      if (!socket.destroyed) socket.write(frame(0x0, 0, 1, Buffer.from(' ')));
    }, 150);
    try {
      await until('the agent to reset the trickling stream', 15_000, () => resets(received()).some((r) => r.id === 1));
    } finally {
      clearInterval(trickle);
    }
    expect(resets(received())).toEqual([{ id: 1, code: CANCEL }]);
    expect(closed).toBe(false);

    // A call whose head never ends: HEADERS without END_HEADERS, then silence. The session is cut.
    socket.write(frame(0x1, 0, 3, requestHead(echo).subarray(0, 2)));
    await until('the agent to cut the session whose head never ends', 15_000, () => closed);
    expect(goawayCode(received())).toBe(ENHANCE_YOUR_CALM);
    expect(logs.lines.some((line) => line.event === 'tunnel-agent.body_stalled')).toBe(true);
    expect(logs.lines.some((line) => line.event === 'tunnel-agent.request_timeout' && line.stage === 'headers')).toBe(true);
  });
});
