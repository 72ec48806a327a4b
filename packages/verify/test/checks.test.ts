// The verify checks against real in-process TLS servers: the pki policy server passes, deliberately weak servers fail with named evidence.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect as netConnect, createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import { clusterIdentityUri, createCertificateAuthority, issueClientCertificate, issueServerCertificate, tlsServerOptions, type CertificateKeyPair } from '@airlock/pki';
import { createCipheriv, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import {
  aeadOnlyCheck,
  allPassed,
  createAeadOnlyCheck,
  databaseSealedCheck,
  defaultChecks,
  loadCheckContext,
  noPlaintextCheck,
  NO_TUNNEL_DETAILS,
  outboundOnlyCheck,
  stackReachableCheck,
  runChecks,
  tlsVersionsCheck,
  tunnelRefusesUnauthenticatedCheck,
  type CheckContext,
  type CheckResult,
  type ControlPlaneDatabaseInfo,
  type StackEndpoint,
} from '@airlock/verify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let dir: string;
let ca: CertificateKeyPair;
let leaf: CertificateKeyPair;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'airlock-verify-'));
  ca = await createCertificateAuthority({ commonName: 'verify test CA' });
  leaf = await issueServerCertificate({ ca, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1', '::1'] });
  await mkdir(join(dir, 'ca'), { recursive: true });
  await writeFile(join(dir, 'ca', 'ca.pem'), ca.cert);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

// tls.Server extends net.Server, so one type covers both.
type AnyServer = NetServer;

async function listen<T extends AnyServer>(server: T): Promise<T & { port: number }> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return Object.assign(server, { port: (server.address() as AddressInfo).port });
}

/** Closes a server and every connection it still holds. */
async function close(server: AnyServer | undefined, sockets: Set<Socket>): Promise<void> {
  for (const socket of sockets) socket.destroy();
  sockets.clear();
  if (server?.listening === true) await new Promise<void>((resolve) => server.close(() => resolve()));
}

function track<T extends AnyServer>(server: T, sockets: Set<Socket>): T {
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
  });
  server.on('tlsClientError', () => undefined);
  return server;
}

/** Writes a synthetic endpoints.json (stack pid = this test process) and loads the check context from it. */
async function stack(
  endpoints: StackEndpoint[],
  pids?: { controlPlane: number; dataPlane: number },
  extra: { database?: ControlPlaneDatabaseInfo; client?: { tokenFile: string } } = {},
): Promise<CheckContext> {
  const file = {
    version: 1,
    region: 'us-east-1',
    caBundle: join(dir, 'ca', 'ca.pem'),
    credentials: { file: join(dir, 'credentials'), profile: 'airlock' },
    endpoints,
    pid: process.pid,
    startedAt: new Date().toISOString(),
    ...(pids === undefined ? {} : { pids }),
    ...extra,
  };
  await writeFile(join(dir, 'endpoints.json'), JSON.stringify(file, null, 2));
  return loadCheckContext(dir);
}

/** The checks that look at transport only: the synthetic stacks below have no control-plane database. */
const transportChecks = (): ReturnType<typeof defaultChecks> => defaultChecks().filter((check) => check.id !== databaseSealedCheck.id);

const byId = (results: readonly CheckResult[], id: string): CheckResult => {
  const result = results.find((r) => r.id === id);
  if (result === undefined) throw new Error(`no result for ${id}`);
  return result;
};
const problems = (result: CheckResult): string => (Array.isArray(result.evidence.problems) ? result.evidence.problems.join('\n') : '');

/** A data-plane stand-in in its own process: dials the tunnel with a CA-issued client certificate and holds the connection. */
async function startDataPlane(tunnelPort: number, options: { listen?: boolean } = {}): Promise<{ child: ChildProcess; listenPort?: number }> {
  const client = await issueClientCertificate({ ca, uri: clusterIdentityUri('verify-test') });
  const script = `
    const tls = require('node:tls');
    const net = require('node:net');
    const s = tls.connect({ host: '127.0.0.1', port: Number(process.env.TUNNEL_PORT), ca: process.env.CA_PEM, cert: process.env.CLIENT_CERT, key: process.env.CLIENT_KEY, servername: 'localhost' });
    s.on('data', () => {});
    s.on('error', (e) => { process.stderr.write(String(e)); process.exit(1); });
    s.on('secureConnect', () => {
      if (process.env.LISTEN !== '1') { process.stdout.write('ready\\n'); return; }
      const server = net.createServer((c) => { c.on('data', () => {}); c.on('error', () => {}); });
      server.listen(0, '127.0.0.1', () => process.stdout.write('ready ' + server.address().port + '\\n'));
    });
  `;
  const child = spawn(process.execPath, ['-e', script], {
    env: { ...process.env, TUNNEL_PORT: String(tunnelPort), CA_PEM: ca.cert, CLIENT_CERT: client.cert, CLIENT_KEY: client.key, LISTEN: options.listen === true ? '1' : '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const line = await new Promise<string>((resolve, reject) => {
    let out = '';
    let err = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(out.trim());
    });
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    child.once('exit', (code) => reject(new Error(`data-plane stand-in exited with ${String(code)}: ${err}`)));
  });
  const port = /ready (\d+)/.exec(line)?.[1];
  // Let the server side register the connection before the socket table is read.
  await new Promise((resolve) => setTimeout(resolve, 200));
  return { child, ...(port === undefined ? {} : { listenPort: Number(port) }) };
}

async function stop(child: ChildProcess | undefined): Promise<void> {
  if (child === undefined || child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

describe('a stack built with the pki TLS policy', () => {
  const sockets = new Set<Socket>();
  let api: TlsServer & { port: number };
  let tunnel: TlsServer & { port: number };
  let dataPlane: ChildProcess | undefined;
  let results: CheckResult[];

  beforeAll(async () => {
    api = await listen(track(createTlsServer(tlsServerOptions({ cert: leaf.cert, key: leaf.key }), (s) => s.end()), sockets));
    tunnel = await listen(
      track(
        createTlsServer(tlsServerOptions({ cert: leaf.cert, key: leaf.key, ca: ca.cert, requestClientCert: true }), (s) => s.on('data', () => undefined)),
        sockets,
      ),
    );
    dataPlane = (await startDataPlane(tunnel.port)).child;
    const ctx = await stack(
      [
        { name: 'kms', plane: 'data', url: `https://127.0.0.1:${api.port}` },
        { name: 'tunnel', plane: 'control', url: `https://127.0.0.1:${tunnel.port}` },
      ],
      { controlPlane: process.pid, dataPlane: dataPlane.pid as number },
    );
    results = await runChecks(transportChecks(), ctx);
  });

  afterAll(async () => {
    await stop(dataPlane);
    await close(api, sockets);
    await close(tunnel, sockets);
  });

  it('passes every check', () => {
    expect(results.map((r) => [r.id, r.status, r.details])).toEqual([
      ['stack.reachable', 'pass', undefined],
      ['tls.versions', 'pass', undefined],
      ['tls.aead-only', 'pass', undefined],
      ['transport.no-plaintext', 'pass', undefined],
      ['tunnel.refuses-unauthenticated', 'pass', undefined],
      ['dataplane.outbound-only', 'pass', undefined],
    ]);
  });

  it('records the protocol and cipher a policy client negotiates, and the refused legacy versions', () => {
    const { evidence } = byId(results, 'tls.versions');
    expect(evidence['kms.protocol']).toBe('TLSv1.3');
    expect(evidence['kms.cipher']).toBe('TLS_AES_256_GCM_SHA384');
    expect(evidence['kms.tls1_3']).toBe('accepted TLSv1.3 TLS_AES_256_GCM_SHA384');
    expect(evidence['kms.tls1_2']).toBe('accepted TLSv1.2 ECDHE-ECDSA-AES256-GCM-SHA384');
    expect(evidence['kms.tls1_1']).toMatch(/^refused \(.*protocol version/);
    expect(evidence['kms.tls1']).toMatch(/^refused/);
  });

  it('lists the accepted suites per endpoint, all AEAD', () => {
    const { evidence } = byId(results, 'tls.aead-only');
    expect(evidence['kms.tls12']).toEqual(['ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305', 'ECDHE-ECDSA-AES128-GCM-SHA256']);
    expect([...(evidence['kms.tls13'] as string[])].sort()).toEqual(['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256']);
    expect(String(evidence.scanner)).toMatch(/sslscan/);
  });

  it("finds the stack's listening sockets from the socket table and shakes hands with each", () => {
    const { evidence } = byId(results, 'transport.no-plaintext');
    expect(evidence.sockets).toEqual(expect.arrayContaining([expect.stringContaining(`127.0.0.1:${api.port} `), expect.stringContaining(`127.0.0.1:${tunnel.port} `)]));
    expect(evidence[`127.0.0.1:${api.port}`]).toMatch(/plaintext GET: (closed, no answer|TLS alert); TLS: TLSv1\.3 TLS_AES_256_GCM_SHA384$/);
    // The mTLS tunnel completes the server side of the handshake, then refuses the certificate-less probe.
    expect(evidence[`127.0.0.1:${tunnel.port}`]).toMatch(/TLS: TLSv1\.3 \S+ then ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED/);
  });

  it('shows the tunnel refusing both unauthenticated clients', () => {
    const { evidence } = byId(results, 'tunnel.refuses-unauthenticated');
    expect(evidence.noCertificate).toMatch(/^refused .*CERTIFICATE_REQUIRED/);
    // Node's TLS server checks the chain after the handshake and closes without an alert.
    expect(evidence.foreignCaCertificate).toMatch(/^refused (in|after) the .*\((CLOSED|ECONNRESET|ERR_SSL_\w+)\)$/);
  });

  it('shows the tunnel connection dialled by the data-plane process from an ephemeral port', () => {
    const { evidence } = byId(results, 'dataplane.outbound-only');
    expect(evidence.dataPlanePid).toBe(dataPlane?.pid);
    expect(evidence.dataPlaneConnections).toEqual([expect.stringMatching(new RegExp(`^tunnel: 127\\.0\\.0\\.1:\\d+ → 127\\.0\\.0\\.1:${tunnel.port} \\(node/${dataPlane?.pid}\\)$`))]);
    expect(evidence.controlPlaneToDataPlane).toEqual([]);
  });
});

describe('a deliberately weak stack', () => {
  const sockets = new Set<Socket>();
  let weak: TlsServer & { port: number };
  let plainHttp: NetServer & { port: number };
  let plainTcp: NetServer & { port: number };
  let ctx: CheckContext;
  let results: CheckResult[];

  beforeAll(async () => {
    weak = await listen(track(createTlsServer({ cert: leaf.cert, key: leaf.key, minVersion: 'TLSv1', ciphers: 'DEFAULT@SECLEVEL=0' }, (s) => s.end()), sockets));
    // Two unlisted plaintext listeners: the socket scan must find them without endpoints.json's help.
    plainHttp = await listen(
      track(
        createNetServer((s) => s.once('data', () => s.end('HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello'))),
        sockets,
      ),
    );
    plainTcp = await listen(track(createNetServer((s) => s.end('220 plaintext banner\r\n')), sockets));
    ctx = await stack([{ name: 'legacy', plane: 'data', url: `https://127.0.0.1:${weak.port}` }]);
    results = await runChecks(transportChecks(), ctx);
  });

  afterAll(async () => {
    await close(weak, sockets);
    await close(plainHttp, sockets);
    await close(plainTcp, sockets);
  });

  it('fails the TLS and plaintext checks, and the tunnel checks of a stack without a tunnel', () => {
    expect(results.map((r) => [r.id, r.status])).toEqual([
      ['stack.reachable', 'pass'],
      ['tls.versions', 'fail'],
      ['tls.aead-only', 'fail'],
      ['transport.no-plaintext', 'fail'],
      ['tunnel.refuses-unauthenticated', 'fail'],
      ['dataplane.outbound-only', 'fail'],
    ]);
    for (const id of ['tunnel.refuses-unauthenticated', 'dataplane.outbound-only']) expect(byId(results, id).details).toBe(NO_TUNNEL_DETAILS);
  });

  it('tls.versions: names TLS 1.1 and 1.0 as accepted, with the real openssl probe results', () => {
    const result = byId(results, 'tls.versions');
    expect(result.evidence['legacy.tls1_1']).toMatch(/^accepted TLSv1\.1 ECDHE-ECDSA-/);
    expect(result.evidence['legacy.tls1']).toMatch(/^accepted TLSv1 ECDHE-ECDSA-/);
    expect(problems(result)).toMatch(/legacy: TLSv1\.1 accepted \(TLSv1\.1 ECDHE-ECDSA-\S+\)/);
    expect(problems(result)).toMatch(/legacy: TLSv1 accepted/);
    // Its modern side still works: the failure is about the legacy versions only.
    expect(result.evidence['legacy.protocol']).toBe('TLSv1.3');
  });

  it('tls.aead-only: names the CBC suites accepted', () => {
    const result = byId(results, 'tls.aead-only');
    expect(result.evidence['legacy.tls12']).toEqual(expect.arrayContaining(['ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-AES256-SHA', 'ECDHE-ECDSA-AES128-SHA256']));
    expect(problems(result)).toMatch(/legacy: TLSv1\.2 suite ECDHE-ECDSA-AES256-SHA accepted: CBC-mode/);
    expect(problems(result)).not.toMatch(/GCM-SHA384 accepted/);
  });

  it('tls.aead-only: the openssl per-suite fallback finds the same CBC suites', async () => {
    const [result] = await runChecks([createAeadOnlyCheck({ scanner: 'openssl' })], ctx);
    expect(result?.status).toBe('fail');
    expect(result?.evidence.scanner).toEqual(['openssl (per-suite probes)']);
    expect([...(result?.evidence['legacy.tls12'] as string[])].sort()).toEqual([...(byId(results, 'tls.aead-only').evidence['legacy.tls12'] as string[])].sort());
    expect(problems(result as CheckResult)).toMatch(/ECDHE-ECDSA-AES256-SHA accepted: CBC-mode/);
  });

  it('transport.no-plaintext: finds the unlisted plaintext listeners and names what they answered', () => {
    const result = byId(results, 'transport.no-plaintext');
    expect(result.evidence.sockets).toEqual(
      expect.arrayContaining([weak.port, plainHttp.port, plainTcp.port].map((port) => expect.stringMatching(new RegExp(`^127\\.0\\.0\\.1:${port} \\(.*/${process.pid}\\)$`)))),
    );
    expect(problems(result)).toContain(`127.0.0.1:${plainHttp.port}: answered a plaintext HTTP request (HTTP/1.0 200 OK)`);
    expect(problems(result)).toContain(`127.0.0.1:${plainTcp.port}: answered plain TCP with non-TLS bytes (220 plaintext banner)`);
    expect(problems(result)).toMatch(new RegExp(`127\\.0\\.0\\.1:${plainHttp.port}: did not complete a TLS handshake`));
    // The weak server is TLS, so it is not a plaintext finding.
    expect(problems(result)).not.toContain(`127.0.0.1:${weak.port}:`);
  });
});

describe('tunnel and outbound-only failures', () => {
  const sockets = new Set<Socket>();
  let servers: AnyServer[] = [];
  let dataPlane: ChildProcess | undefined;
  let held: Socket | undefined;

  afterAll(async () => {
    held?.destroy();
    await stop(dataPlane);
    for (const server of servers) await close(server, sockets);
    servers = [];
  });

  it('fails when the tunnel accepts a client without a certificate or with a foreign-CA certificate', async () => {
    // A "tunnel" that asks for no client certificate at all.
    const open = await listen(track(createTlsServer(tlsServerOptions({ cert: leaf.cert, key: leaf.key }), (s) => s.on('data', () => undefined)), sockets));
    servers.push(open);
    const ctx = await stack([{ name: 'tunnel', plane: 'control', url: `https://127.0.0.1:${open.port}` }]);
    const [result] = await runChecks([tunnelRefusesUnauthenticatedCheck], ctx);
    expect(result?.status).toBe('fail');
    expect(result?.evidence.noCertificate).toMatch(/^ACCEPTED/);
    expect(result?.evidence.foreignCaCertificate).toMatch(/^ACCEPTED/);
    expect(problems(result as CheckResult)).toContain('the tunnel accepted a client without a certificate');
    expect(problems(result as CheckResult)).toContain('the tunnel accepted a client with a foreign-CA certificate');
  });

  it('fails outbound-only when endpoints.json carries no plane pids', async () => {
    const ctx = await stack([{ name: 'tunnel', plane: 'control', url: 'https://127.0.0.1:1' }]);
    const [result] = await runChecks([outboundOnlyCheck], ctx);
    expect(result?.status).toBe('fail');
    expect(result?.details).toMatch(/pids\.controlPlane/);
  });

  it('fails when the control plane connects to a data-plane listening socket', async () => {
    const tunnel = await listen(
      track(
        createTlsServer(tlsServerOptions({ cert: leaf.cert, key: leaf.key, ca: ca.cert, requestClientCert: true }), (s) => s.on('data', () => undefined)),
        sockets,
      ),
    );
    servers.push(tunnel);
    const started = await startDataPlane(tunnel.port, { listen: true });
    dataPlane = started.child;
    // The "control plane" (this process) dials the data plane: exactly what must never happen.
    held = netConnect({ host: '127.0.0.1', port: started.listenPort as number });
    held.on('error', () => undefined);
    await new Promise((resolve) => held?.once('connect', resolve));
    const ctx = await stack([{ name: 'tunnel', plane: 'control', url: `https://127.0.0.1:${tunnel.port}` }], {
      controlPlane: process.pid,
      dataPlane: dataPlane.pid as number,
    });
    const [result] = await runChecks([outboundOnlyCheck], ctx);
    expect(result?.status).toBe('fail');
    expect(result?.evidence.dataPlaneListening).toEqual([`127.0.0.1:${started.listenPort}`]);
    expect(problems(result as CheckResult)).toMatch(
      new RegExp(`the control plane connected to a data-plane listening socket: 127\\.0\\.0\\.1:\\d+ → 127\\.0\\.0\\.1:${started.listenPort} \\(.*/${process.pid}\\)`),
    );
  });

  it('fails when the data plane holds no tunnel connection', async () => {
    const idle = await listen(track(createTlsServer(tlsServerOptions({ cert: leaf.cert, key: leaf.key }), (s) => s.end()), sockets));
    servers.push(idle);
    const ctx = await stack([{ name: 'tunnel', plane: 'control', url: `https://127.0.0.1:${idle.port}` }], { controlPlane: process.pid, dataPlane: process.pid + 1_000_000 });
    const [result] = await runChecks([outboundOnlyCheck], ctx);
    expect(result?.status).toBe('fail');
    expect(problems(result as CheckResult)).toMatch(/tunnel: the data plane \(pid \d+\) holds no connection to 127\.0\.0\.1:\d+/);
  });
});

describe('stack.reachable: an outage is reported as an outage', () => {
  const sockets = new Set<Socket>();
  const servers: AnyServer[] = [];
  afterAll(async () => {
    for (const server of servers) await close(server, sockets);
  });

  it('fails when an endpoint is a closed port or a plane process is gone, and every other check is not run', async () => {
    // A port that was just bound and released: nothing listens there.
    const closed = await listen(createNetServer());
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const answering = await listen(track(createTlsServer(tlsServerOptions({ cert: leaf.cert, key: leaf.key }), (s) => s.end()), sockets));
    servers.push(answering);
    const ctx = await stack(
      [
        { name: 'kms', plane: 'data', url: `https://127.0.0.1:${closed.port}` },
        { name: 'api', plane: 'control', url: `https://127.0.0.1:${answering.port}` },
      ],
      { controlPlane: process.pid, dataPlane: 2 ** 22 + 1 },
    );
    const results = await runChecks(transportChecks(), ctx);
    const reachable = byId(results, 'stack.reachable');
    expect(reachable.status).toBe('fail');
    expect(reachable.evidence.kms).toBe('unreachable (ECONNREFUSED)');
    expect(reachable.evidence.api).toMatch(/^answered \(TLSv1\.3\)$/);
    expect(reachable.evidence.dataPlaneRunning).toBe(false);
    expect(problems(reachable)).toMatch(/kms \(127\.0\.0\.1:\d+\) is unreachable: ECONNREFUSED/);
    expect(problems(reachable)).toMatch(/the data plane process \(pid \d+\) is not running/);
    // No TLS-policy verdict on an outage: every other check is skipped, marked not run.
    for (const result of results.filter((r) => r.id !== 'stack.reachable')) {
      expect([result.id, result.status, result.evidence.notRun, result.details]).toEqual([result.id, 'skip', true, 'not run: stack.reachable failed']);
    }
    expect(allPassed(results)).toBe(false);
  });

  it('counts a server that answers with a TLS alert as reachable: the TLS checks judge it', async () => {
    const foreign = await createCertificateAuthority();
    const other = await issueServerCertificate({ ca: foreign, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
    const server = await listen(track(createTlsServer(tlsServerOptions({ cert: other.cert, key: other.key }), (s) => s.end()), sockets));
    servers.push(server);
    const ctx = await stack([{ name: 'kms', plane: 'data', url: `https://127.0.0.1:${server.port}` }]);
    const [result] = await runChecks([stackReachableCheck], ctx);
    expect(result?.status).toBe('pass');
    expect(result?.evidence.kms).toMatch(/^answered; handshake failed \(/);
  });
});

describe('the individual checks are usable on their own', () => {
  it('exports each check with a stable id', () => {
    expect([stackReachableCheck, tlsVersionsCheck, aeadOnlyCheck, noPlaintextCheck, tunnelRefusesUnauthenticatedCheck, outboundOnlyCheck, databaseSealedCheck].map((c) => c.id)).toEqual(
      defaultChecks().map((c) => c.id),
    );
  });
});

describe('controlplane.database-sealed', () => {
  const sockets = new Set<Socket>();
  let api: HttpsServer & { port: number };
  /** How the stand-in API stores the reason it is given: in the clear, or AES-256-GCM under a key of its own. */
  let storage: 'plaintext' | 'sealed' = 'sealed';
  const databaseFile = (): string => join(dir, 'control-plane.db');
  const walFile = (): string => join(dir, 'control-plane.db-wal');

  beforeAll(async () => {
    await writeFile(join(dir, 'token'), 'alt_test\n');
    await writeFile(databaseFile(), randomBytes(4096));
    api = await listen(
      track(
        createHttpsServer(tlsServerOptions({ cert: leaf.cert, key: leaf.key }), (req, res) => {
          const chunks: Buffer[] = [];
          req.on('data', (chunk: Buffer) => chunks.push(chunk));
          req.on('end', () => {
            const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { reason?: string };
            const reason = Buffer.from(body.reason ?? '', 'utf8');
            let stored = reason;
            if (storage === 'sealed') {
              const cipher = createCipheriv('aes-256-gcm', randomBytes(32), randomBytes(12));
              stored = Buffer.concat([cipher.update(reason), cipher.final(), cipher.getAuthTag()]);
            }
            void writeFile(walFile(), stored).then(() => {
              res.writeHead(req.headers.authorization === 'Bearer alt_test' && req.url === '/airlock.v1.AirlockService/CreateBootstrapToken' ? 200 : 401, {
                'content-type': 'application/json',
              });
              res.end('{"token":"alb_x"}');
            });
          });
        }),
        sockets,
      ),
    );
  });
  afterAll(async () => {
    await close(api, sockets);
  });

  const context = (database?: ControlPlaneDatabaseInfo): Promise<CheckContext> =>
    stack([{ name: 'api', plane: 'control', url: `https://127.0.0.1:${api.port}` }], undefined, {
      client: { tokenFile: join(dir, 'token') },
      ...(database === undefined ? {} : { database }),
    });
  const sqlite = (): ControlPlaneDatabaseInfo => ({ backend: 'sqlite', description: 'SQLite test', files: [databaseFile(), walFile(), join(dir, 'absent-shm')] });

  it('passes when the canary sent through the API is in none of the database files', async () => {
    storage = 'sealed';
    const [result] = await runChecks([databaseSealedCheck], await context(sqlite()));
    expect(result).toMatchObject({ status: 'pass', evidence: { canaryFoundIn: [], filesScanned: [databaseFile(), walFile()] } });
  });

  it('fails, naming the file, when the canary reached a database file in the clear', async () => {
    storage = 'plaintext';
    const [result] = await runChecks([databaseSealedCheck], await context(sqlite()));
    expect(result).toMatchObject({ status: 'fail', evidence: { canaryFoundIn: [walFile()] } });
    expect(await readFile(walFile(), 'utf8')).toMatch(/^airlock-verify-canary-[0-9a-f]{32}$/);
  });

  it('skips PostgreSQL (its data directory is the server\'s) and fails a stack that does not describe its database', async () => {
    const [postgres] = await runChecks([databaseSealedCheck], await context({ backend: 'postgres', description: 'PostgreSQL db:5432/airlock (TLS, verify-full)', files: [] }));
    expect(postgres?.status).toBe('skip');
    const [missing] = await runChecks([databaseSealedCheck], await context());
    expect(missing?.status).toBe('fail');
  });
});
