// Cross-plane tests of the reverse mTLS tunnel: real TLS sockets, a real agent process, the real socket table (ss).
import { execFileSync, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import http2 from 'node:http2';
import net, { type AddressInfo, type Server, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import tls from 'node:tls';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { startTunnelEndpoint, type TunnelEndpoint, type TunnelEndpointOptions, type TunnelProtocol } from '@airlock/control-plane';
import { ECHO_DELAY_HEADER, startTunnelAgent, tunnelServiceRoutes, type TunnelAgent, type TunnelAgentOptions } from '@airlock/data-plane';
import {
  clusterIdentityUri,
  createCertificateAuthority,
  issueClientCertificate,
  issueServerCertificate,
  tlsClientOptions,
  type CertificateKeyPair,
} from '@airlock/pki';
import { EchoService, HealthStatus, TunnelHealthService } from '@airlock/protocol';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { captureLogger, type LogLine } from '@airlock/testing';
import { eventually } from './helpers.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const AGENT_FIXTURE = fileURLToPath(new URL('../packages/data-plane/test/fixtures/tunnel-agent-process.ts', import.meta.url));




/**
 * Both ends' heartbeat defaults: a PING every 1 s, and a connection whose PING is unanswered for 2 s is
 * dropped, so a silent peer is noticed within 3 s. Timed checks below allow twice that.
 */
const HEARTBEAT_DETECTION_MS = 1000 + 2000;

function sameBytes(actual: Uint8Array, expected: Uint8Array): boolean {
  return Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength).equals(expected);
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected the promise to reject');
    },
    (reason: unknown) => reason,
  );
}

/** Lines of `ss` output (no header), e.g. `ss -Htlnp`. */
function ss(...args: string[]): string[] {
  return execFileSync('ss', args, { encoding: 'utf8' })
    .split('\n')
    .filter((line) => line.trim() !== '');
}

interface Pki {
  ca: CertificateKeyPair;
  foreignCa: CertificateKeyPair;
  server: CertificateKeyPair;
  client(cluster: string, ca?: CertificateKeyPair): Promise<CertificateKeyPair>;
}

let pki: Pki;

beforeAll(async () => {
  const ca = await createCertificateAuthority({ commonName: 'tunnel test CA' });
  const foreignCa = await createCertificateAuthority({ commonName: 'foreign CA' });
  pki = {
    ca,
    foreignCa,
    server: await issueServerCertificate({ ca, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] }),
    client: (cluster, issuer = ca) => issueClientCertificate({ ca: issuer, uri: clusterIdentityUri(cluster) }),
  };
});

/** An endpoint with captured logs and a mutable revocation list. */
async function startEndpoint(
  port = 0,
  options: Partial<TunnelEndpointOptions> = {},
): Promise<{ endpoint: TunnelEndpoint; logs: ReturnType<typeof captureLogger>; revoked: Set<string> }> {
  const logs = captureLogger('tunnel-endpoint');
  const revoked = new Set<string>();
  const endpoint = await startTunnelEndpoint({
    ...options,
    tls: { cert: pki.server.cert, key: pki.server.key },
    ca: pki.ca.cert,
    port,
    log: logs.log,
    isClusterAllowed: async (cluster, fingerprint) => !revoked.has(cluster) && !revoked.has(fingerprint),
  });
  return { endpoint, logs, revoked };
}

function inProcessAgent(endpoint: TunnelEndpoint, options: Partial<TunnelAgentOptions> & Pick<TunnelAgentOptions, 'getCredentials'>): { agent: TunnelAgent; logs: ReturnType<typeof captureLogger> } {
  const logs = captureLogger('tunnel-agent');
  const agent = startTunnelAgent({
    endpoint: endpoint.url,
    ca: pki.ca.cert,
    routes: tunnelServiceRoutes({ maxEchoDelayMs: 10_000 }),
    log: logs.log,
    backoffMaxMs: 1000,
    ...options,
  });
  return { agent, logs };
}

const PROTOCOLS: readonly TunnelProtocol[] = ['connect', 'grpc'];

describe('tunnel round trip with the agent in its own process', () => {
  const cluster = 'eu-1';
  let endpoint: TunnelEndpoint;
  let cpLogs: ReturnType<typeof captureLogger>;
  let port: number;
  let client: CertificateKeyPair;
  let child: ChildProcessWithoutNullStreams;
  const childLines: LogLine[] = [];
  let childText = '';

  beforeAll(async () => {
    ({ endpoint, logs: cpLogs } = await startEndpoint());
    port = endpoint.port;
    client = await pki.client(cluster);
    child = spawn(process.execPath, ['--conditions=airlock-source', '--import', 'tsx', AGENT_FIXTURE], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    let pending = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      childText += chunk;
      pending += chunk;
      let newline: number;
      while ((newline = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        if (line.startsWith('{')) childLines.push(JSON.parse(line) as LogLine);
      }
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => process.stderr.write(`[agent] ${chunk}`));
    child.stdin.end(
      JSON.stringify({ endpoint: endpoint.url, ca: pki.ca.cert, cert: client.cert, key: client.key, maxEchoDelayMs: 10_000, backoffMaxMs: 1000 }),
    );
    await endpoint.waitForCluster(cluster, 20_000);
  });

  afterAll(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGCONT');
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
    await endpoint.close();
  });

  it.each(PROTOCOLS)('the control plane calls Echo on the data plane through the tunnel (%s protocol)', async (protocol) => {
    const echo = createClient(EchoService, endpoint.transportFor(cluster, protocol));
    for (const size of [0, 1, 4096, 256 * 1024]) {
      const payload = new Uint8Array(size).map((_, i) => (i * 7 + size) & 0xff);
      const response = await echo.echo({ payload });
      expect(sameBytes(response.payload, payload), `${size} bytes`).toBe(true);
    }
  });

  it('serves TunnelHealthService.Check through the tunnel', async () => {
    const health = createClient(TunnelHealthService, endpoint.transportFor(cluster));
    const response = await health.check({});
    expect(response.status).toBe(HealthStatus.SERVING);
    expect(response.agentVersion).toBe('0.1.0');
    expect(Math.abs(Number(response.serverTime?.seconds ?? 0n) * 1000 - Date.now())).toBeLessThan(60_000);
  });

  it('the agent process holds no listening socket and owns the outbound tunnel connection (ss)', () => {
    const pid = child.pid;
    expect(pid).toBeTypeOf('number');
    const owner = `pid=${String(pid)},`;
    // No listening TCP socket of any kind belongs to the agent process.
    expect(ss('-Htlnp').filter((line) => line.includes(owner))).toEqual([]);
    // The established connection to the tunnel port was opened by the agent: its peer is the endpoint.
    const established = ss('-Htnp');
    const agentSide = established.filter((line) => line.includes(owner) && line.split(/\s+/)[4] === `127.0.0.1:${port}`);
    expect(agentSide.length).toBe(1);
    // ...and the control plane's side of it is the accepted socket on the tunnel port, owned by this process.
    const agentLocal = agentSide[0]?.split(/\s+/)[3];
    const cpSide = established.filter(
      (line) => line.includes(`pid=${process.pid},`) && line.split(/\s+/)[3] === `127.0.0.1:${port}` && line.split(/\s+/)[4] === agentLocal,
    );
    expect(cpSide.length).toBe(1);
    // The only listener involved is the control plane's tunnel port, in this process.
    expect(ss('-Htlnp').filter((line) => line.split(/\s+/)[3] === `127.0.0.1:${port}` && line.includes(`pid=${process.pid},`)).length).toBe(1);
  });

  it('both sides log the handshake at info level: protocol, cipher, peer fingerprint and expiry, and no key material', () => {
    const agentHandshake = childLines.find((line) => line.event === 'tunnel.handshake');
    expect(agentHandshake).toMatchObject({
      level: 30,
      protocol: 'TLSv1.3',
      cipher: expect.stringMatching(/^TLS_(AES_256_GCM_SHA384|CHACHA20_POLY1305_SHA256|AES_128_GCM_SHA256)$/),
      peerFingerprintSha256: pki.server.info.fingerprintSha256,
      peerValidTo: pki.server.info.notAfter.toISOString(),
      clientFingerprintSha256: client.info.fingerprintSha256,
    });
    const cpHandshake = cpLogs.lines.find((line) => line.event === 'tunnel.handshake' && line.peerFingerprintSha256 === client.info.fingerprintSha256);
    expect(cpHandshake).toMatchObject({
      level: 30,
      protocol: 'TLSv1.3',
      cipher: expect.any(String),
      peerValidTo: client.info.notAfter.toISOString(),
      peerUri: clusterIdentityUri(cluster),
    });
    for (const text of [childText, cpLogs.text()]) {
      expect(text).not.toContain('PRIVATE KEY');
      expect(text).not.toContain(client.key.split('\n')[1] ?? 'unreachable');
      expect(text).not.toContain(pki.server.key.split('\n')[1] ?? 'unreachable');
    }
  });

  it.each(PROTOCOLS)('cutting the tunnel mid-call fails that call with unavailable; the next call succeeds after the agent reconnects (%s)', async (protocol) => {
    const echo = createClient(EchoService, endpoint.transportFor(cluster, protocol));
    const inFlight = echo.echo({ payload: new Uint8Array([1, 2, 3]) }, { headers: { [ECHO_DELAY_HEADER]: '3000' } });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(endpoint.disconnect(cluster)).toBe(true);
    const error = await rejection(inFlight);
    expect(error).toBeInstanceOf(ConnectError);
    expect((error as ConnectError).code).toBe(Code.Unavailable);

    // Until the agent is back, the same client fails fast with the same typed error (the agent may
    // already have reconnected, in which case the call simply succeeds).
    const early = await echo.echo({ payload: new Uint8Array([4]) }).then(
      () => undefined,
      (reason: unknown) => reason,
    );
    if (early !== undefined) {
      expect(early).toBeInstanceOf(ConnectError);
      expect((early as ConnectError).code).toBe(Code.Unavailable);
    }

    await endpoint.waitForCluster(cluster, 10_000);
    const response = await echo.echo({ payload: new Uint8Array([5, 6]) });
    expect(sameBytes(response.payload, new Uint8Array([5, 6]))).toBe(true);
  });

  it('detects a frozen agent within a few seconds (PING timeout), and the agent reconnects once it runs again', async () => {
    child.kill('SIGSTOP');
    try {
      // Twice the contract leaves room for a busy machine; without the heartbeat it never happens.
      await eventually('the frozen tunnel to be dropped', 2 * HEARTBEAT_DETECTION_MS, () => (endpoint.clusters().includes(cluster) ? undefined : true));
      expect(cpLogs.lines.some((line) => line.event === 'tunnel.heartbeat_timeout' && line.cluster === cluster)).toBe(true);
      expect(() => endpoint.transportFor(cluster)).toThrow(expect.objectContaining({ code: 'UNAVAILABLE' }));
    } finally {
      child.kill('SIGCONT');
    }
    await endpoint.waitForCluster(cluster, 15_000);
    const echo = createClient(EchoService, endpoint.transportFor(cluster));
    expect(sameBytes((await echo.echo({ payload: new Uint8Array([9]) })).payload, new Uint8Array([9]))).toBe(true);
  });

  it('kill the endpoint, restart it on the same port, and the agent reconnects by itself', async () => {
    await endpoint.close();
    expect(endpoint.clusters()).toEqual([]);
    // Down long enough for the agent to fail a few reconnects (backoff capped at 1 s in this fixture).
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(child.exitCode).toBeNull();
    ({ endpoint, logs: cpLogs } = await startEndpoint(port));
    expect(endpoint.port).toBe(port);
    await endpoint.waitForCluster(cluster, 10_000);
    const echo = createClient(EchoService, endpoint.transportFor(cluster, 'grpc'));
    expect(sameBytes((await echo.echo({ payload: new Uint8Array([7]) })).payload, new Uint8Array([7]))).toBe(true);
    expect(childLines.some((line) => line.event === 'tunnel.connect_failed')).toBe(true);
    expect(childLines.some((line) => line.event === 'tunnel.backoff')).toBe(true);
  });
});

describe('tunnel endpoint refuses clients in the TLS handshake', () => {
  let endpoint: TunnelEndpoint;
  let logs: ReturnType<typeof captureLogger>;

  beforeAll(async () => {
    ({ endpoint, logs } = await startEndpoint());
  });
  afterAll(async () => {
    await endpoint.close();
  });

  /** Dials with the given client certificate (if any) and reports how the connection ended. */
  async function dial(cert?: CertificateKeyPair): Promise<{ error: string | undefined; received: number }> {
    const socket = tls.connect({
      ...tlsClientOptions({ ca: pki.ca.cert, ...(cert === undefined ? {} : { cert: cert.cert, key: cert.key }) }),
      host: '127.0.0.1',
      port: endpoint.port,
      ALPNProtocols: ['h2'],
    });
    let received = 0;
    socket.on('data', (chunk: Buffer) => (received += chunk.length));
    // With TLS 1.3 the client finishes its side first; the server's verdict on the certificate
    // arrives right after (an alert, or a bare close), so wait for the connection to end either way.
    socket.once('secureConnect', () => socket.write(Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')));
    const outcome = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
      socket.once('error', resolve);
      socket.once('close', () => resolve(undefined));
    });
    socket.destroy();
    return { error: outcome?.code, received };
  }

  it('refuses a client without a certificate', async () => {
    const { error, received } = await dial();
    expect(error).toBe('ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED');
    expect(received).toBe(0);
    expect(logs.lines.some((line) => line.event === 'tunnel.handshake_failed' && line.code === 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE')).toBe(true);
  });

  it('refuses a client whose certificate comes from another CA', async () => {
    const { error, received } = await dial(await pki.client('eu-1', pki.foreignCa));
    // Node verifies a client chain right after OpenSSL's handshake and drops the socket without an
    // alert, so the client sees the connection end before any byte of HTTP/2 arrives.
    expect(error === undefined || error === 'ECONNRESET', String(error)).toBe(true);
    expect(received).toBe(0);
    expect(logs.lines.some((line) => line.event === 'tunnel.handshake_failed' && line.verifyError === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE')).toBe(true);
    // The endpoint never accepted it: no completed handshake was logged, no tunnel exists.
    expect(logs.lines.some((line) => line.event === 'tunnel.handshake')).toBe(false);
    expect(endpoint.clusters()).toEqual([]);
  });

  it('a foreign-CA agent never gets a tunnel, and keeps backing off', async () => {
    const foreign = await pki.client('eu-2', pki.foreignCa);
    const { agent } = inProcessAgent(endpoint, { getCredentials: () => ({ cert: foreign.cert, key: foreign.key }) });
    try {
      const error = await rejection(agent.waitForConnected(1500));
      expect(error).toMatchObject({ code: 'TIMEOUT' });
      expect(agent.stats().established).toBe(0);
      expect(agent.stats().failedAttempts).toBeGreaterThan(0);
      expect(endpoint.clusters()).toEqual([]);
    } finally {
      await agent.stop();
    }
  });

  it('refuses a certificate from the right CA without a cluster identity', async () => {
    const operator = await issueClientCertificate({ ca: pki.ca, uri: 'spiffe://airlock/operator/alice' });
    const { error } = await dial(operator);
    expect(error === undefined || error === 'ECONNRESET').toBe(true);
    expect(logs.lines.some((line) => line.event === 'tunnel.refused' && line.peerFingerprintSha256 === operator.info.fingerprintSha256)).toBe(true);
    expect(endpoint.clusters()).toEqual([]);
  });

  it('transportFor an unknown cluster throws UNAVAILABLE', () => {
    expect(() => endpoint.transportFor('nowhere')).toThrow(expect.objectContaining({ code: 'UNAVAILABLE' }));
  });
});

describe('the agent checks the control plane\'s name, not only its CA', () => {
  it('refuses a tunnel endpoint whose certificate comes from the right CA but names another host', async () => {
    // Signed by the cluster's CA, but for wrong.example only: no 127.0.0.1, no localhost.
    const misnamed = await issueServerCertificate({ ca: pki.ca, dnsNames: ['wrong.example'] });
    const logs = captureLogger('misnamed-endpoint');
    const endpoint = await startTunnelEndpoint({
      tls: { cert: misnamed.cert, key: misnamed.key },
      ca: pki.ca.cert,
      port: 0,
      log: logs.log,
      isClusterAllowed: async () => true,
    });
    const client = await pki.client('eu-9');
    const { agent, logs: agentLogs } = inProcessAgent(endpoint, { getCredentials: () => ({ cert: client.cert, key: client.key }), backoffMaxMs: 200 });
    try {
      // Several attempts, each refused by the agent for the name, none of them a tunnel.
      const failures = await eventually('three refused attempts', 30_000, () => {
        const lines = agentLogs.lines.filter((line) => line.event === 'tunnel.connect_failed');
        return lines.length >= 3 ? lines : undefined;
      });
      for (const line of failures) {
        expect(line).toMatchObject({ code: 'UNAVAILABLE' });
        expect(String(line.msg)).toContain('ERR_TLS_CERT_ALTNAME_INVALID');
      }
      expect(agent.connection()).toBeUndefined();
      expect(agent.stats().established).toBe(0);
      expect(agentLogs.lines.some((line) => line.event === 'tunnel.connected')).toBe(false);
      expect(endpoint.clusters()).toEqual([]);
      expect(() => endpoint.transportFor('eu-9')).toThrow(expect.objectContaining({ code: 'UNAVAILABLE' }));
    } finally {
      await agent.stop();
      await endpoint.close();
    }
  });
});

describe('revocation, certificate rotation and silent network loss (agent in process)', () => {
  let endpoint: TunnelEndpoint;
  let logs: ReturnType<typeof captureLogger>;
  let revoked: Set<string>;
  const agents: TunnelAgent[] = [];

  beforeAll(async () => {
    ({ endpoint, logs, revoked } = await startEndpoint());
  });
  afterEach(async () => {
    await Promise.all(agents.splice(0).map((agent) => agent.stop()));
  });
  afterAll(async () => {
    await endpoint.close();
  });

  it('a revoked cluster is refused at its next handshake, and admitted again once reinstated', async () => {
    const cluster = 'rev-1';
    const cert = await pki.client(cluster);
    const { agent } = inProcessAgent(endpoint, { getCredentials: () => ({ cert: cert.cert, key: cert.key }) });
    agents.push(agent);
    await endpoint.waitForCluster(cluster, 10_000);

    revoked.add(cluster);
    // Revocation applies at the next handshake; force one by dropping the current tunnel.
    endpoint.disconnect(cluster);
    await eventually('a refused reconnect', 10_000, () =>
      logs.lines.some((line) => line.event === 'tunnel.refused' && line.cluster === cluster) ? true : undefined,
    );
    expect(await rejection(endpoint.waitForCluster(cluster, 1500))).toMatchObject({ code: 'TIMEOUT' });
    expect(agent.state()).not.toBe('connected');
    expect(agent.stats().failedAttempts).toBeGreaterThan(0);

    revoked.delete(cluster);
    await endpoint.waitForCluster(cluster, 10_000);
    const echo = createClient(EchoService, endpoint.transportFor(cluster));
    expect(sameBytes((await echo.echo({ payload: new Uint8Array([1]) })).payload, new Uint8Array([1]))).toBe(true);
  });

  it('revoking by certificate fingerprint refuses that certificate only', async () => {
    const cluster = 'rev-2';
    const first = await pki.client(cluster);
    const second = await pki.client(cluster);
    let current = first;
    const { agent } = inProcessAgent(endpoint, { getCredentials: () => ({ cert: current.cert, key: current.key }) });
    agents.push(agent);
    await endpoint.waitForCluster(cluster, 10_000);
    revoked.add(first.info.fingerprintSha256);
    endpoint.disconnect(cluster);
    await eventually('the revoked certificate to be refused', 10_000, () =>
      logs.lines.some((line) => line.event === 'tunnel.refused' && line.peerFingerprintSha256 === first.info.fingerprintSha256) ? true : undefined,
    );
    current = second;
    const info = await endpoint.waitForCluster(cluster, 10_000);
    expect(info.tls.peerFingerprintSha256).toBe(second.info.fingerprintSha256);
  });

  it('rotate() moves to a renewed certificate without failing the call in flight on the old connection', async () => {
    const cluster = 'rot-1';
    let current = await pki.client(cluster);
    const original = current;
    const { agent } = inProcessAgent(endpoint, { getCredentials: () => ({ cert: current.cert, key: current.key }) });
    agents.push(agent);
    await endpoint.waitForCluster(cluster, 10_000);
    const echo = createClient(EchoService, endpoint.transportFor(cluster));

    const slow = echo.echo({ payload: new Uint8Array([42]) }, { headers: { [ECHO_DELAY_HEADER]: '1500' } });
    await new Promise((resolve) => setTimeout(resolve, 200));
    current = await pki.client(cluster);
    const rotated = await agent.rotate();
    expect(rotated.clientFingerprintSha256).toBe(current.info.fingerprintSha256);
    expect(endpoint.connection(cluster)?.tls.peerFingerprintSha256).toBe(current.info.fingerprintSha256);

    // New calls use the new connection at once; the old call completes on the draining one.
    expect(sameBytes((await echo.echo({ payload: new Uint8Array([1]) })).payload, new Uint8Array([1]))).toBe(true);
    expect(sameBytes((await slow).payload, new Uint8Array([42]))).toBe(true);
    expect(current.info.fingerprintSha256).not.toBe(original.info.fingerprintSha256);
    expect(agent.stats().established).toBe(2);
    await eventually('the old connection to close', 5000, () =>
      logs.lines.some((line) => line.event === 'tunnel.closed' && line.peerFingerprintSha256 === original.info.fingerprintSha256) ? true : undefined,
    );
  });

  it('both sides notice a tunnel that goes silent without a FIN, and the agent re-establishes it', async () => {
    const cluster = 'silent-1';
    const cert = await pki.client(cluster);
    // A TCP relay that can stop forwarding existing connections without closing them (a NAT that
    // forgot the flow); new connections still pass.
    const pipes: Array<{ a: Socket; b: Socket }> = [];
    const relay: Server = net.createServer((a) => {
      const b = net.connect(endpoint.port, '127.0.0.1');
      a.pipe(b).pipe(a);
      a.on('error', () => b.destroy());
      b.on('error', () => a.destroy());
      pipes.push({ a, b });
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
    try {
      const relayPort = (relay.address() as AddressInfo).port;
      const agentLogs = captureLogger('tunnel-agent');
      const agent = startTunnelAgent({
        endpoint: `https://127.0.0.1:${relayPort}`,
        ca: pki.ca.cert,
        getCredentials: () => ({ cert: cert.cert, key: cert.key }),
        routes: tunnelServiceRoutes(),
        log: agentLogs.log,
        backoffMaxMs: 500,
      });
      agents.push(agent);
      await agent.waitForConnected(10_000);
      await endpoint.waitForCluster(cluster, 10_000);
      expect(agent.stats().established).toBe(1);

      for (const { a, b } of pipes) {
        a.unpipe(b);
        b.unpipe(a);
        a.pause();
        b.pause();
      }
      // The agent's heartbeat drops the silent connection within HEARTBEAT_DETECTION_MS, and it redials
      // after at most backoffMaxMs (500 ms); twice that leaves room for a busy machine.
      await eventually('the agent to re-establish the tunnel', 2 * (HEARTBEAT_DETECTION_MS + 500), () => (agent.stats().established >= 2 ? true : undefined));
      expect(agentLogs.lines.some((line) => line.event === 'tunnel.heartbeat_timeout')).toBe(true);
      await eventually('the control plane to drop the silent connection', 5000, () =>
        logs.lines.some((line) => line.event === 'tunnel.heartbeat_timeout' && line.cluster === cluster) ? true : undefined,
      );
      await endpoint.waitForCluster(cluster, 5000);
      const echo = createClient(EchoService, endpoint.transportFor(cluster));
      expect(sameBytes((await echo.echo({ payload: new Uint8Array([3]) })).payload, new Uint8Array([3]))).toBe(true);
    } finally {
      for (const { a, b } of pipes) {
        a.destroy();
        b.destroy();
      }
      await new Promise<void>((resolve) => relay.close(() => resolve()));
    }
  });
});

describe('tunnel endpoint under a handshake scan', () => {
  it('logs the first 20 failed handshakes of a burst one by one, and counts the rest instead of flooding the log', async () => {
    const { endpoint, logs } = await startEndpoint();
    try {
      for (let i = 0; i < 30; i++) {
        const socket = tls.connect({ ...tlsClientOptions({ ca: pki.ca.cert }), host: '127.0.0.1', port: endpoint.port, ALPNProtocols: ['h2'] });
        await new Promise<void>((resolve) => {
          socket.once('error', () => resolve());
          socket.once('close', () => resolve());
        });
        socket.destroy();
      }
      await eventually('the failures to be seen by the endpoint', 5000, () =>
        logs.lines.filter((line) => line.event === 'tunnel.handshake_failed').length >= 20 ? true : undefined,
      );
      // Give any stray 21st line time to appear before asserting there is none.
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(logs.lines.filter((line) => line.event === 'tunnel.handshake_failed')).toHaveLength(20);
    } finally {
      await endpoint.close();
    }
  });
});

describe('tunnel ownership: a new connection carries calls only once it has proven itself', () => {
  let endpoint: TunnelEndpoint;
  let logs: ReturnType<typeof captureLogger>;
  const agents: TunnelAgent[] = [];
  const cleanups: Array<() => void | Promise<void>> = [];

  beforeAll(async () => {
    // A short proof timeout, so that the connection which never answers is dropped quickly.
    ({ endpoint, logs } = await startEndpoint(0, { proofTimeoutMs: 1500 }));
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0)) await cleanup();
    await Promise.all(agents.splice(0).map((agent) => agent.stop()));
  });
  afterAll(async () => {
    await endpoint.close();
  });

  /** What the control plane's cluster status reports as `tunnelConnected` (the CLI wires it so). */
  const tunnelConnected = (cluster: string): boolean => endpoint.connection(cluster) !== undefined;

  async function echoThrough(cluster: string, byte: number): Promise<void> {
    const echo = createClient(EchoService, endpoint.transportFor(cluster));
    const response = await echo.echo({ payload: new Uint8Array([byte]) });
    expect(sameBytes(response.payload, new Uint8Array([byte]))).toBe(true);
  }

  /** A TLS connection to the tunnel port with the cluster's own certificate and key, as its agent would open. */
  function impostor(credentials: CertificateKeyPair): tls.TLSSocket {
    const socket = tls.connect({
      ...tlsClientOptions({ ca: pki.ca.cert, cert: credentials.cert, key: credentials.key }),
      host: '127.0.0.1',
      port: endpoint.port,
      ALPNProtocols: ['h2'],
    });
    socket.on('error', () => undefined);
    cleanups.push(() => void socket.destroy());
    return socket;
  }

  function closedLogged(remotePort: number | undefined): true | undefined {
    return logs.lines.some((line) => line.event === 'tunnel.closed' && line.remotePort === remotePort) ? true : undefined;
  }

  it('replays the bogus-connection attack: the cluster\'s own certificate, then garbage, then close; the agent\'s tunnel stays in use', async () => {
    const cluster = 'own-garbage';
    const credentials = await pki.client(cluster);
    const { agent } = inProcessAgent(endpoint, { getCredentials: () => ({ cert: credentials.cert, key: credentials.key }) });
    agents.push(agent);
    const agentSide = await agent.waitForConnected(10_000);
    expect(endpoint.connection(cluster)?.remotePort).toBe(agentSide.localPort);

    const bogus = impostor(credentials);
    // The control plane's HTTP/2 connection preface arriving proves it accepted the certificate
    // (cluster identity, revocation check) and opened its reverse session on this connection.
    const preface = (await once(bogus, 'data')) as [Buffer];
    expect(preface[0].subarray(0, 14).toString('latin1')).toBe('PRI * HTTP/2.0');
    const bogusPort = bogus.localPort;

    // During: the call goes down the agent's connection, not the bogus one.
    await echoThrough(cluster, 1);
    expect(endpoint.connection(cluster)?.remotePort).toBe(agentSide.localPort);
    expect(tunnelConnected(cluster)).toBe(true);

    bogus.end(Buffer.concat([Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), randomBytes(4096)]));
    await eventually('the endpoint to drop the bogus connection', 10_000, () => closedLogged(bogusPort));
    expect(logs.lines.find((line) => line.event === 'tunnel.closed' && line.remotePort === bogusPort)).toMatchObject({ cluster, proven: false });

    // After: still the agent's connection, the one it opened first; it never had to reconnect.
    expect(tunnelConnected(cluster)).toBe(true);
    expect(endpoint.connection(cluster)?.remotePort).toBe(agentSide.localPort);
    await echoThrough(cluster, 2);
    expect(agent.stats().established).toBe(1);
    expect(agent.connection()?.localPort).toBe(agentSide.localPort);
  });

  it('a connection that speaks HTTP/2 but does not answer the health check is dropped and never carries a call', async () => {
    const cluster = 'own-mute';
    const credentials = await pki.client(cluster);
    const { agent } = inProcessAgent(endpoint, { getCredentials: () => ({ cert: credentials.cert, key: credentials.key }) });
    agents.push(agent);
    const agentSide = await agent.waitForConnected(10_000);

    // An HTTP/2 server on the impostor's side that answers PINGs (so the heartbeat keeps it) and
    // holds every request without an answer.
    const paths: string[] = [];
    const mute = http2.createServer();
    mute.on('stream', (stream, headers) => {
      paths.push(String(headers[':path']));
      stream.on('error', () => undefined);
    });
    mute.on('sessionError', () => undefined);
    const bogus = impostor(credentials);
    await once(bogus, 'secureConnect');
    mute.emit('connection', bogus);
    const bogusPort = bogus.localPort;

    await eventually('the proof call to reach the impostor', 10_000, () => (paths.length > 0 ? true : undefined));
    // While its proof is pending, calls keep going to the agent.
    for (let i = 0; i < 5; i++) await echoThrough(cluster, 10 + i);
    expect(endpoint.connection(cluster)?.remotePort).toBe(agentSide.localPort);

    await eventually('the unproven connection to be dropped', 10_000, () => closedLogged(bogusPort));
    expect(logs.lines.find((line) => line.event === 'tunnel.unproven' && line.remotePort === bogusPort)).toMatchObject({ cluster, code: 'TIMEOUT' });
    // The only request the impostor ever saw was the proof call.
    expect(paths).toEqual(['/airlock.v1.TunnelHealthService/Check']);
    expect(tunnelConnected(cluster)).toBe(true);
    await echoThrough(cluster, 20);
    expect(agent.stats().established).toBe(1);
  });

  it('when the current connection drains (GOAWAY), another live connection of the cluster takes over at once', async () => {
    const cluster = 'own-drain';
    const credentials = await pki.client(cluster);
    const getCredentials = (): { cert: string; key: string } => ({ cert: credentials.cert, key: credentials.key });
    const first = inProcessAgent(endpoint, { getCredentials });
    agents.push(first.agent);
    const firstSide = await first.agent.waitForConnected(10_000);
    const second = inProcessAgent(endpoint, { getCredentials });
    agents.push(second.agent);
    // The agent counts its connection as up only once the control plane routes calls to it.
    const secondSide = await second.agent.waitForConnected(10_000);
    expect(endpoint.connection(cluster)?.remotePort).toBe(secondSide.localPort);

    await second.agent.stop();
    await eventually('the first agent\'s connection to take over', 5000, () =>
      endpoint.connection(cluster)?.remotePort === firstSide.localPort ? true : undefined,
    );
    await echoThrough(cluster, 30);
    // Taken over, not re-dialled: the first agent still has the one connection it opened.
    expect(first.agent.stats().established).toBe(1);
    expect(logs.lines.some((line) => line.event === 'tunnel.failover' && line.cluster === cluster && line.remotePort === firstSide.localPort)).toBe(true);
  });

  it('when the current connection is cut, another live connection of the cluster takes over at once', async () => {
    const cluster = 'own-cut';
    const credentials = await pki.client(cluster);
    const getCredentials = (): { cert: string; key: string } => ({ cert: credentials.cert, key: credentials.key });
    const first = inProcessAgent(endpoint, { getCredentials });
    agents.push(first.agent);
    const firstSide = await first.agent.waitForConnected(10_000);

    // The second agent reaches the endpoint through a relay that can cut its connection.
    const pipes: Socket[] = [];
    const relay: Server = net.createServer((a) => {
      const b = net.connect(endpoint.port, '127.0.0.1');
      a.pipe(b).pipe(a);
      a.on('error', () => b.destroy());
      b.on('error', () => a.destroy());
      pipes.push(a, b);
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => relay.close(() => resolve())));
    const second = inProcessAgent(endpoint, { getCredentials, endpoint: `https://127.0.0.1:${(relay.address() as AddressInfo).port}`, servername: 'localhost' });
    agents.push(second.agent);
    await second.agent.waitForConnected(10_000);
    const secondRemotePort = endpoint.connection(cluster)?.remotePort;
    expect(secondRemotePort).not.toBe(firstSide.localPort);

    // No more connections through the relay, then cut the one it carries (a reset, no GOAWAY).
    relay.close();
    for (const socket of pipes) socket.resetAndDestroy();
    await eventually('the first agent\'s connection to take over', 5000, () =>
      endpoint.connection(cluster)?.remotePort === firstSide.localPort ? true : undefined,
    );
    await echoThrough(cluster, 40);
    expect(first.agent.stats().established).toBe(1);
  });
});
