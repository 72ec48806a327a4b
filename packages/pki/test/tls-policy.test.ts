// Integration test of the TLS policy against real sockets: the real openssl s_client probes a policy server, with permissive control servers proving each probe can fail.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  clusterIdentityUri,
  createCertificateAuthority,
  describeTlsSocket,
  getPeerIdentity,
  issueClientCertificate,
  issueServerCertificate,
  tlsClientOptions,
  tlsServerOptions,
  type CertificateKeyPair,
  type TlsConnectionDescription,
} from '../src/index.js';

const OPENSSL = '/usr/bin/openssl';
const dir = mkdtempSync(join(tmpdir(), 'airlock-pki-tls-'));
const trustFile = join(dir, 'trust.pem');

let ca: CertificateKeyPair;
let ecdsa: CertificateKeyPair;
let rsa: { cert: string; key: string };
const servers: tls.Server[] = [];
const sockets = new Set<Socket>();

interface TestServer {
  readonly port: number;
  /** Connections that completed the handshake and were greeted. */
  readonly greeted: () => number;
  /** Handshakes the server refused (its 'tlsClientError' events). */
  readonly refused: () => number;
}

/** Starts a TLS server on 127.0.0.1:0 that answers each connection with `greet(socket)` and closes it. */
async function startServer(options: tls.TlsOptions, greet: (socket: tls.TLSSocket) => string | undefined = () => 'hello'): Promise<TestServer> {
  let greeted = 0;
  let refused = 0;
  const server = tls.createServer(options, (socket) => {
    socket.on('error', () => undefined);
    greeted++;
    let greeting: string | undefined;
    try {
      greeting = greet(socket);
    } catch {
      socket.destroy();
      return;
    }
    // No greeting: hold the connection open (for the renegotiation cases).
    if (greeting !== undefined) socket.end(`${greeting}\n`);
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  // Handshake failures are the point of most cases here; count them instead of letting them surface.
  server.on('tlsClientError', () => refused++);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as { port: number }).port, greeted: () => greeted, refused: () => refused };
}

interface Probe {
  readonly connected: boolean;
  readonly protocol: string | undefined;
  readonly cipher: string | undefined;
  readonly output: string;
}

/** Runs `openssl s_client` once, feeding `input` on stdin (EOF then makes it close the connection). */
function sClient(port: number, args: readonly string[], input = ''): Promise<Probe> {
  return new Promise((resolve) => {
    const child = execFile(
      OPENSSL,
      ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost', '-CAfile', trustFile, '-verify_return_error', ...args],
      { timeout: 15_000 },
      (error, stdout, stderr) => {
        // "New, TLSv1.2, Cipher is ECDHE-ECDSA-AES256-GCM-SHA384", or "New, (NONE), Cipher is (NONE)" on failure.
        const summary = /^New, (\S+), Cipher is (\S+)/m.exec(stdout);
        const protocol = summary?.[1] === '(NONE)' ? undefined : summary?.[1];
        const cipher = summary?.[2] === '(NONE)' ? undefined : summary?.[2];
        const sessionProtocol = /^\s*Protocol\s*:\s*(\S+)/m.exec(stdout)?.[1];
        resolve({
          // The summary line is printed only after a completed handshake; the exit code also reflects how the
          // peer closed afterwards, which varies with timing, so it is not used.
          connected: cipher !== undefined && protocol !== undefined,
          protocol: protocol ?? (cipher === undefined ? undefined : sessionProtocol),
          cipher,
          output: `${stdout}\n${stderr}`,
        });
      },
    );
    child.stdin?.end(input);
  });
}

interface Attempt {
  readonly data: string | undefined;
  readonly error: string | undefined;
  readonly description: TlsConnectionDescription | undefined;
}

/** Connects with node's TLS client and reports what the server sent, or the error. */
function nodeClient(port: number, options: tls.ConnectionOptions): Promise<Attempt> {
  return new Promise((resolve) => {
    let data = '';
    let error: string | undefined;
    let description: TlsConnectionDescription | undefined;
    const socket = tls.connect({ host: '127.0.0.1', port, ...options }, () => {
      description = describeTlsSocket(socket);
    });
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (data += chunk));
    socket.on('error', (err: NodeJS.ErrnoException) => (error = err.code ?? err.message));
    // A hung connection is a failure to report, not a reason to wait for the test timeout.
    const timer = setTimeout(() => socket.destroy(new Error('client timeout')), 10_000);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ data: data === '' ? undefined : data.trim(), error, description });
    });
  });
}

beforeAll(async () => {
  // Backdated two hours so that the expired-certificate case can be issued in the past.
  ca = await createCertificateAuthority({ now: new Date(Date.now() - 2 * 3_600_000) });
  ecdsa = await issueServerCertificate({ ca, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  // An RSA certificate too, so that suites needing one (ECDHE-RSA, and static-RSA key exchange in
  // the controls) can be offered at all; without it "no ECDHE" would fail for the wrong reason.
  const rsaKey = join(dir, 'rsa-key.pem');
  const rsaCert = join(dir, 'rsa-cert.pem');
  await new Promise<void>((resolve, reject) =>
    execFile(
      OPENSSL,
      ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', rsaKey, '-out', rsaCert, '-subj', '/CN=localhost', '-days', '1', '-addext', 'subjectAltName=DNS:localhost'],
      { timeout: 30_000 },
      (error) => (error === null ? resolve() : reject(new Error(error.message))),
    ),
  );
  rsa = { cert: readFileSync(rsaCert, 'utf8'), key: readFileSync(rsaKey, 'utf8') };
  writeFileSync(trustFile, ca.cert + rsa.cert);
});

afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  rmSync(dir, { recursive: true, force: true });
});

describe('TLS policy probed with openssl s_client', () => {
  let policy: TestServer;
  let permissive: TestServer;
  let nodeDefaults: TestServer;
  // Servers that keep connections open, so that there is time to renegotiate.
  let waitingPolicy: TestServer;
  let waitingDefaults: TestServer;

  beforeAll(async () => {
    const both = { cert: [ecdsa.cert, rsa.cert], key: [ecdsa.key, rsa.key] };
    policy = await startServer(tlsServerOptions(both));
    // Controls: the same certificates behind a deliberately weak server, and behind Node's defaults.
    permissive = await startServer({ ...both, minVersion: 'TLSv1', ciphers: 'DEFAULT@SECLEVEL=0' });
    nodeDefaults = await startServer(both);
    waitingPolicy = await startServer(tlsServerOptions(both), () => undefined);
    waitingDefaults = await startServer(both, () => undefined);
  });

  it('negotiates TLS 1.3 with an AEAD suite and X25519', async () => {
    const probe = await sClient(policy.port, ['-tls1_3']);
    expect(probe.connected, probe.output).toBe(true);
    expect(probe.protocol).toBe('TLSv1.3');
    expect(probe.cipher).toBe('TLS_AES_256_GCM_SHA384');
    expect(probe.output).toMatch(/Server Temp Key: X25519/);
  });

  it('negotiates TLS 1.2 with ECDHE and AES-GCM, in server preference order', async () => {
    const probe = await sClient(policy.port, ['-tls1_2', '-sigalgs', 'ECDSA+SHA256']);
    expect(probe.connected, probe.output).toBe(true);
    expect(probe.protocol).toBe('TLSv1.2');
    expect(probe.cipher).toBe('ECDHE-ECDSA-AES256-GCM-SHA384');
  });

  it.each([
    ['ECDHE-ECDSA-CHACHA20-POLY1305'],
    ['ECDHE-ECDSA-AES128-GCM-SHA256'],
    ['ECDHE-RSA-AES128-GCM-SHA256'],
    ['ECDHE-RSA-CHACHA20-POLY1305'],
  ])('accepts the allowed TLS 1.2 suite %s', async (cipher) => {
    const probe = await sClient(policy.port, ['-tls1_2', '-cipher', cipher]);
    expect(probe.connected, probe.output).toBe(true);
    expect(probe.cipher).toBe(cipher);
  });

  it('accepts each allowed TLS 1.3 suite', async () => {
    for (const suite of ['TLS_AES_128_GCM_SHA256', 'TLS_CHACHA20_POLY1305_SHA256']) {
      const probe = await sClient(policy.port, ['-tls1_3', '-ciphersuites', suite]);
      expect(probe.connected, probe.output).toBe(true);
      expect(probe.cipher).toBe(suite);
    }
  });

  // Each refused probe is first shown to connect to a control server, so a refusal is the policy's doing.
  it.each([
    ['TLS 1.0', ['-tls1', '-cipher', 'DEFAULT@SECLEVEL=0']],
    ['TLS 1.1', ['-tls1_1', '-cipher', 'DEFAULT@SECLEVEL=0']],
    ['TLS 1.2 with CBC (ECDHE-ECDSA-AES128-SHA)', ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-SHA']],
    ['TLS 1.2 with CBC-SHA384 (ECDHE-ECDSA-AES256-SHA384)', ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES256-SHA384']],
    ['TLS 1.2 without ECDHE (AES128-GCM-SHA256)', ['-tls1_2', '-cipher', 'AES128-GCM-SHA256@SECLEVEL=0']],
    ['TLS 1.3 with only P-521 offered', ['-tls1_3', '-groups', 'P-521']],
  ])('refuses %s, which the permissive control accepts', async (_name, args) => {
    const control = await sClient(permissive.port, args);
    expect(control.connected, `control must connect: ${control.output}`).toBe(true);
    const probe = await sClient(policy.port, args);
    expect(probe.connected, probe.output).toBe(false);
    expect(probe.cipher).toBeUndefined();
  });

  it.each([
    ['CCM8', 'ECDHE-ECDSA-AES128-CCM8'],
    ['CCM', 'ECDHE-ECDSA-AES128-CCM'],
    ['ARIA', 'ECDHE-ECDSA-ARIA128-GCM-SHA256'],
    ['CBC', 'ECDHE-ECDSA-AES128-SHA'],
  ])("refuses TLS 1.2 %s suites, which Node's default cipher list accepts", async (_name, cipher) => {
    const control = await sClient(nodeDefaults.port, ['-tls1_2', '-cipher', cipher]);
    expect(control.connected, `control must connect: ${control.output}`).toBe(true);
    expect(control.cipher).toBe(cipher);
    const probe = await sClient(policy.port, ['-tls1_2', '-cipher', cipher]);
    expect(probe.connected, probe.output).toBe(false);
  });

  it('refuses client-initiated renegotiation (openssl "R" command), which Node allows by default', async () => {
    const control = await sClient(waitingDefaults.port, ['-tls1_2'], 'R\n');
    expect(control.output).toMatch(/RENEGOTIATING/);
    expect(control.output, 'control must complete the renegotiation').not.toMatch(/no renegotiation/);
    const probe = await sClient(waitingPolicy.port, ['-tls1_2'], 'R\n');
    expect(probe.output).toMatch(/RENEGOTIATING/);
    expect(probe.output).toMatch(/no renegotiation/);
  });

  it('refuses renegotiation from a Node client, which the default server allows', async () => {
    const renegotiate = (port: number) =>
      new Promise<string>((resolve) => {
        // A plain client: the policy client would refuse to start a renegotiation itself.
        const socket = tls.connect({ host: '127.0.0.1', port, ca: [ca.cert, rsa.cert], servername: 'localhost', maxVersion: 'TLSv1.2' }, () => {
          socket.renegotiate({ rejectUnauthorized: true }, (error) => {
            resolve(error ? `error ${(error as NodeJS.ErrnoException).code ?? error.message}` : 'renegotiated');
            socket.destroy();
          });
        });
        socket.on('error', (error: NodeJS.ErrnoException) => {
          resolve(`error ${error.code ?? error.message}`);
          socket.destroy();
        });
      });
    expect(await renegotiate(waitingDefaults.port)).toBe('renegotiated');
    expect(await renegotiate(waitingPolicy.port)).toBe('error ERR_SSL_NO_RENEGOTIATION');
  });
});

describe('mutual TLS with the policy helpers', () => {
  let mtls: TestServer;
  let client: CertificateKeyPair;
  const accepted: TlsConnectionDescription[] = [];

  beforeAll(async () => {
    client = await issueClientCertificate({ ca, uri: clusterIdentityUri('eu-1') });
    mtls = await startServer(tlsServerOptions({ cert: ecdsa.cert, key: ecdsa.key, ca: ca.cert, requestClientCert: true }), (socket) => {
      accepted.push(describeTlsSocket(socket));
      return getPeerIdentity(socket);
    });
  });

  const clientOptions = (extra: Partial<tls.ConnectionOptions> = {}) => ({ ...tlsClientOptions({ ca: ca.cert, servername: 'localhost' }), ...extra });

  it('accepts a client certificate issued by the CA and exposes its URI identity (TLS 1.3)', async () => {
    const before = accepted.length;
    const attempt = await nodeClient(mtls.port, clientOptions({ cert: client.cert, key: client.key }));
    expect(attempt.error).toBeUndefined();
    expect(attempt.data).toBe('spiffe://airlock/cluster/eu-1');
    expect(attempt.description).toMatchObject({ protocol: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384', keyExchangeGroup: 'X25519', authorized: true });
    expect(attempt.description?.peerFingerprintSha256).toBe(ecdsa.info.fingerprintSha256);

    const server = accepted[before];
    expect(server).toMatchObject({
      protocol: 'TLSv1.3',
      authorized: true,
      peerUri: 'spiffe://airlock/cluster/eu-1',
      peerFingerprintSha256: client.info.fingerprintSha256,
      peerValidTo: client.info.notAfter.toISOString(),
    });
  });

  it('accepts the same client over TLS 1.2', async () => {
    const attempt = await nodeClient(mtls.port, clientOptions({ cert: client.cert, key: client.key, maxVersion: 'TLSv1.2' }));
    expect(attempt.data).toBe('spiffe://airlock/cluster/eu-1');
    expect(attempt.description).toMatchObject({ protocol: 'TLSv1.2', cipher: 'ECDHE-ECDSA-AES256-GCM-SHA384', cipherStandardName: 'TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384' });
  });

  /** A refused client gets no data, and the server saw a failed handshake rather than a connection. */
  async function expectRefused(options: tls.ConnectionOptions): Promise<void> {
    const greeted = mtls.greeted();
    const refused = mtls.refused();
    const attempt = await nodeClient(mtls.port, options);
    expect(attempt.data).toBeUndefined();
    expect(mtls.greeted()).toBe(greeted);
    expect(mtls.refused()).toBe(refused + 1);
  }

  it('rejects a client without a certificate', async () => {
    for (const maxVersion of ['TLSv1.3', 'TLSv1.2'] as const) await expectRefused(clientOptions({ maxVersion }));
  });

  it('rejects a client certificate from another CA, even one with the same name', async () => {
    const otherCa = await createCertificateAuthority();
    const stranger = await issueClientCertificate({ ca: otherCa, uri: clusterIdentityUri('eu-1') });
    for (const maxVersion of ['TLSv1.3', 'TLSv1.2'] as const) await expectRefused(clientOptions({ cert: stranger.cert, key: stranger.key, maxVersion }));
  });

  it('rejects a server certificate presented as a client certificate (EKU)', async () => {
    await expectRefused(clientOptions({ cert: ecdsa.cert, key: ecdsa.key }));
  });

  it('rejects an expired client certificate', async () => {
    const expired = await issueClientCertificate({ ca, uri: clusterIdentityUri('old'), validitySeconds: 60, now: new Date(Date.now() - 3_600_000) });
    await expectRefused(clientOptions({ cert: expired.cert, key: expired.key }));
  });

  it('has refused nothing it should have accepted', () => {
    expect(accepted.every((description) => description.authorized && description.peerUri === 'spiffe://airlock/cluster/eu-1')).toBe(true);
  });
});

describe('the client policy', () => {
  it('refuses a server from another CA and a server with the wrong name', async () => {
    const otherCa = await createCertificateAuthority();
    const other = await issueServerCertificate({ ca: otherCa, dnsNames: ['localhost'] });
    const foreignServer = await startServer(tlsServerOptions({ cert: other.cert, key: other.key }));
    const foreign = await nodeClient(foreignServer.port, tlsClientOptions({ ca: ca.cert, servername: 'localhost' }));
    expect(foreign.error).toBe('UNABLE_TO_VERIFY_LEAF_SIGNATURE');

    const ours = await startServer(tlsServerOptions({ cert: ecdsa.cert, key: ecdsa.key }));
    const wrongName = await nodeClient(ours.port, tlsClientOptions({ ca: ca.cert, servername: 'cp.elsewhere.test' }));
    expect(wrongName.error).toBe('ERR_TLS_CERT_ALTNAME_INVALID');
    const right = await nodeClient(ours.port, tlsClientOptions({ ca: ca.cert, servername: 'localhost' }));
    expect(right.data).toBe('hello');
  });

  it('refuses servers that only offer TLS 1.1 or CBC suites, which a plain Node client accepts', async () => {
    const old = await startServer({ cert: ecdsa.cert, key: ecdsa.key, minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' });
    const cbc = await startServer({ cert: ecdsa.cert, key: ecdsa.key, maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-SHA' });
    const plain = { ca: ca.cert, servername: 'localhost', minVersion: 'TLSv1', ciphers: 'DEFAULT@SECLEVEL=0' } as const;
    expect((await nodeClient(old.port, plain)).data).toBe('hello');
    expect((await nodeClient(cbc.port, plain)).data).toBe('hello');
    const policy = tlsClientOptions({ ca: ca.cert, servername: 'localhost' });
    expect((await nodeClient(old.port, policy)).error).toBeDefined();
    expect((await nodeClient(cbc.port, policy)).error).toBeDefined();
  });
});
