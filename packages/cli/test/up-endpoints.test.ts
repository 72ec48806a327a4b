// End to end: every endpoint a fresh `airlock up` lists in endpoints.json, probed with the real tools (openssl s_client,
// sslscan, nmap, raw TCP): TLS 1.2 and 1.3 with AEAD suites only, TLS 1.0/1.1 and non-AEAD suites refused by the server,
// mTLS on the tunnel, no plaintext answer, and the stack still up and serving afterwards.
import { randomBytes, randomInt } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport, Http2SessionManager } from '@connectrpc/connect-node';
import { createCertificateRequest, tlsClientOptions } from '@airlock/pki';
import { AirlockService, DispatchService } from '@airlock/protocol';
import { parseEndpointsFile, type EndpointsFile } from '@airlock/verify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { interrupt, startCli } from './run-cli.js';
import { PLANE_NODE_FLAGS } from '../src/internal/plane-process.js';
import {
  isAeadSuite,
  nodeTls13Handshake,
  parseNmapSslEnumCiphers,
  parseSslscan,
  plaintextExchange,
  redact,
  runTool,
  sClient,
  type SClientOptions,
} from './tls-tools.js';

/** Every listener of `airlock up` on a free port (0), so this stack never collides with another test's. */
const PORT_FLAGS: readonly string[] = ['--api-port', '0', '--dispatch-port', '0', '--tunnel-port', '0', '--kms-port', '0', '--s3-port', '0'];
/** The endpoint that requires a client certificate from the data directory's CA. */
const MTLS_ENDPOINT = 'tunnel';
/** The cluster this test registers through the API and dispatch, to hold a certificate the tunnel accepts. */
const TEST_CLUSTER = 'up-endpoints-test';
/** Per tool run: every probe here is local and takes well under a second when the server behaves. */
const TOOL_TIMEOUT_MS = 10_000;
/** TLS 1.2 suites without AEAD (CBC with SHA-1/SHA-2 MACs, RSA and ECDHE key exchange); the client must offer them even under Debian's defaults. */
const NON_AEAD_TLS12 = 'AES128-SHA:AES256-SHA256:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA:@SECLEVEL=0';
/** OpenSSL reasons that mean the local client, not the server, gave up (so a failure would prove nothing). */
const LOCAL_FAILURE = /no protocols available|no ciphers available|no cipher match|unsupported protocol|connect:errno|Connection refused|wrong version number/i;
/** TLS alert numbers (RFC 8446 section 6). */
const ALERT = { handshakeFailure: 40, protocolVersion: 70, certificateRequired: 116 } as const;

interface Endpoint {
  readonly name: string;
  readonly url: string;
  /** Host without IPv6 brackets, for SNI and node:net. */
  readonly host: string;
  readonly port: number;
}

let dir: string;
let scratch: string;
let up: Awaited<ReturnType<typeof startCli>> | undefined;
let file: EndpointsFile;
let endpoints: Endpoint[];
let ca: string;
let client: { certFile: string; keyFile: string; cert: string; key: string };

/** The client certificate options for an endpoint: only the mTLS endpoint gets one. */
const clientCertFor = (endpoint: Endpoint): Pick<SClientOptions, 'certFile' | 'keyFile'> =>
  endpoint.name === MTLS_ENDPOINT ? { certFile: client.certFile, keyFile: client.keyFile } : {};
const sClientTo = (endpoint: Endpoint): Pick<SClientOptions, 'host' | 'port' | 'caFile' | 'timeoutMs'> => ({
  host: endpoint.host,
  port: endpoint.port,
  caFile: file.caBundle,
  timeoutMs: TOOL_TIMEOUT_MS,
});
const hostPort = (endpoint: Endpoint): string => new URL(endpoint.url).host;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'airlock-cli-up-endpoints-'));
  scratch = await mkdtemp(join(tmpdir(), 'airlock-cli-up-endpoints-client-'));
  up = await startCli(['up', '--data-dir', dir, ...PORT_FLAGS], /Press Ctrl-C/);
  file = parseEndpointsFile(JSON.parse(await readFile(join(dir, 'endpoints.json'), 'utf8')));
  endpoints = file.endpoints.map(({ name, url }) => {
    const parsed = new URL(url);
    return { name, url, host: parsed.hostname.replace(/^\[|\]$/g, ''), port: Number(parsed.port) };
  });
  ca = await readFile(file.caBundle, 'utf8');
  // A client certificate for a second cluster, registered the way an operator would: an admin creates a bootstrap token
  // through the public API, and the "agent" redeems it over dispatch for a certificate of its own key. The tunnel then
  // accepts it, so every TLS handshake below can run to completion.
  const urlOf = (name: string): string => endpoints.find((e) => e.name === name)?.url ?? '';
  const adminToken = (await readFile(join(dir, 'client', 'token'), 'utf8')).trim();
  const sessions = [new Http2SessionManager(urlOf('api'), {}, tlsClientOptions({ ca })), new Http2SessionManager(urlOf('dispatch'), {}, tlsClientOptions({ ca }))];
  let issued: { cert: string; key: string };
  try {
    const api = createClient(AirlockService, createConnectTransport({ baseUrl: urlOf('api'), httpVersion: '2', sessionManager: sessions[0] }));
    const bootstrap = await api.createBootstrapToken({ cluster: TEST_CLUSTER }, { headers: { authorization: `Bearer ${adminToken}` } });
    const request = await createCertificateRequest({ commonName: TEST_CLUSTER });
    const dispatch = createClient(DispatchService, createGrpcTransport({ baseUrl: urlOf('dispatch'), sessionManager: sessions[1] }));
    const response = await dispatch.bootstrap({ bootstrapToken: bootstrap.token, cluster: TEST_CLUSTER, csrPem: request.csr });
    issued = { cert: response.certificateChainPem, key: request.key };
  } finally {
    for (const session of sessions) session.abort();
  }
  client = { certFile: join(scratch, 'client.pem'), keyFile: join(scratch, 'client-key.pem'), cert: issued.cert, key: issued.key };
  await writeFile(client.certFile, issued.cert, { mode: 0o600 });
  await writeFile(client.keyFile, issued.key, { mode: 0o600 });
}, 60_000);

afterAll(async () => {
  if (up !== undefined && up.child.exitCode === null && up.child.signalCode === null) await interrupt(up.child);
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
});

describe('airlock up: every endpoint in endpoints.json, probed with openssl, sslscan, nmap and raw TCP', () => {
  it('lists a non-empty set of uniquely named HTTPS endpoints on bound ports, kms and objectstore among them', () => {
    const names = endpoints.map((e) => e.name);
    expect(names.length).toBeGreaterThan(0);
    expect(names).toContain('kms');
    expect(names).toContain('objectstore');
    expect(new Set(names).size).toBe(names.length);
    for (const endpoint of endpoints) {
      expect(new URL(endpoint.url).protocol, endpoint.name).toBe('https:');
      expect(endpoint.port, endpoint.name).toBeGreaterThan(0);
    }
    expect(file.caBundle).toBe(join(dir, 'ca', 'ca.pem'));
  });

  it('negotiates TLS 1.2 and TLS 1.3 with an AEAD suite and a server certificate from the data directory CA (openssl s_client)', async () => {
    for (const endpoint of endpoints) {
      const mtls = endpoint.name === MTLS_ENDPOINT;
      for (const [version, protocol] of [['tls1_2', 'TLSv1.2'], ['tls1_3', 'TLSv1.3']] as const) {
        // On the mTLS endpoint: a client certificate, h2 (the tunnel refuses anything else), and a moment's wait so that a
        // rejection of the certificate after the TLS 1.3 handshake would arrive before s_client exits.
        const r = await sClient({ ...sClientTo(endpoint), version, ...clientCertFor(endpoint), ...(mtls ? { alpn: 'h2', holdStdinMs: 1500 } : {}) });
        const what = `${endpoint.name} -${version}${mtls ? ' with a client certificate' : ''}:\n${redact(r.run.stderr)}`;
        expect(r.run.timedOut, what).toBe(false);
        expect(r.serverHello?.protocol, what).toBe(protocol);
        expect(isAeadSuite(r.serverHello?.cipher ?? ''), `${what}\ncipher ${String(r.serverHello?.cipher)} is not AEAD`).toBe(true);
        expect(r.chainVerified, what).toBe(true);
        // No alert from the server: neither a refused handshake nor a rejected client certificate.
        expect(r.alerts, what).toEqual([]);
        expect(r.fatalAlertsRead, what).toEqual([]);
        if (!mtls) {
          expect(r.handshakeDone, what).toBe(true);
          expect(r.reasons, what).toEqual([]);
          expect(r.run.code, what).toBe(0);
        } else {
          // The registered cluster's certificate: the tunnel completes the handshake on both versions.
          expect(r.handshakeDone, what).toBe(true);
        }
      }
    }
  });

  it('the tunnel endpoint refuses a client without a certificate: in the TLS 1.2 handshake, and with an alert right after the TLS 1.3 one', async () => {
    // `airlock up` always runs a tunnel endpoint: a stack without one fails here instead of skipping the probe.
    const endpoint = endpoints.find((e) => e.name === MTLS_ENDPOINT);
    if (endpoint === undefined) throw new Error(`no ${MTLS_ENDPOINT} endpoint in endpoints.json: ${JSON.stringify(endpoints.map((e) => e.name))}`);

    const tls12 = await sClient({ ...sClientTo(endpoint), version: 'tls1_2', alpn: 'h2' });
    const what12 = `tunnel -tls1_2 without a client certificate:\n${redact(tls12.run.stderr)}`;
    expect(tls12.run.timedOut, what12).toBe(false);
    expect(tls12.handshakeDone, what12).toBe(false);
    expect(tls12.run.code, what12).not.toBe(0);
    expect(tls12.alerts.length, what12).toBeGreaterThan(0);
    expect(tls12.reasons.filter((reason) => LOCAL_FAILURE.test(reason)), what12).toEqual([]);

    // TLS 1.3: the client finishes its handshake before the server sees the (empty) certificate, so keep reading:
    // the server must send certificate_required and close, with no application data, while stdin is still open.
    const tls13 = await sClient({ ...sClientTo(endpoint), version: 'tls1_3', alpn: 'h2', brief: true, holdStdinMs: 5000 });
    const what13 = `tunnel -tls1_3 without a client certificate:\n${redact(tls13.run.stderr)}`;
    expect(tls13.run.exitedWithStdinOpen, what13).toBe(true);
    expect(tls13.run.code, what13).not.toBe(0);
    expect(tls13.alerts, what13).toContain(ALERT.certificateRequired);
    expect(tls13.appData, what13).toBe('');

    // The same through Node: the handshake completes, then the alert ends the connection before any byte of data.
    const node = await nodeTls13Handshake(endpoint.host, endpoint.port, { ca, verdictMs: 3000 });
    expect(node.error).toBe('ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED');
    expect(node.closed).toBe(true);
    expect(node.appBytes).toBe(0);
  });

  it('refuses TLS 1.0 and TLS 1.1 with a protocol_version alert from the server, even to a client at security level 0', async () => {
    for (const endpoint of endpoints) {
      for (const version of ['tls1', 'tls1_1'] as const) {
        const r = await sClient({ ...sClientTo(endpoint), version, cipher: 'DEFAULT:@SECLEVEL=0', ...clientCertFor(endpoint) });
        const what = `${endpoint.name} -${version}:\n${redact(r.run.stderr)}`;
        expect(r.run.timedOut, what).toBe(false);
        // No ServerHello at all: the server chose neither a version nor a suite.
        expect(r.serverHello, what).toBeUndefined();
        expect(r.handshakeDone, what).toBe(false);
        expect(r.run.code, what).not.toBe(0);
        // The client did offer the version ("no protocols available" would mean it never did): the server said no.
        expect(r.reasons.filter((reason) => LOCAL_FAILURE.test(reason)), what).toEqual([]);
        expect(r.alerts, what).toContain(ALERT.protocolVersion);
        expect(r.reasons, what).toContain('tlsv1 alert protocol version');
      }
    }
  });

  it('refuses TLS 1.2 with only non-AEAD (CBC) suites offered: handshake_failure from the server', async () => {
    // The local client really offers these suites (else a failure would prove nothing).
    const offered = await runTool('openssl', ['ciphers', '-s', '-tls1_2', NON_AEAD_TLS12], { timeoutMs: TOOL_TIMEOUT_MS });
    const suites = offered.stdout.trim().split(':');
    expect(suites).toEqual(expect.arrayContaining(['AES128-SHA', 'ECDHE-ECDSA-AES128-SHA256', 'ECDHE-ECDSA-AES256-SHA']));
    expect(suites.some(isAeadSuite)).toBe(false);
    for (const endpoint of endpoints) {
      const r = await sClient({ ...sClientTo(endpoint), version: 'tls1_2', cipher: NON_AEAD_TLS12, ...clientCertFor(endpoint) });
      const what = `${endpoint.name} -tls1_2 -cipher ${NON_AEAD_TLS12}:\n${redact(r.run.stderr)}`;
      expect(r.run.timedOut, what).toBe(false);
      expect(r.serverHello, what).toBeUndefined();
      expect(r.handshakeDone, what).toBe(false);
      expect(r.run.code, what).not.toBe(0);
      expect(r.reasons.filter((reason) => LOCAL_FAILURE.test(reason)), what).toEqual([]);
      expect(r.alerts, what).toContain(ALERT.handshakeFailure);
    }
  });

  it('sslscan: SSLv2, SSLv3, TLS 1.0 and 1.1 disabled; TLS 1.2 and 1.3 enabled, each with at least one suite, every suite AEAD', async () => {
    for (const endpoint of endpoints) {
      const certs = endpoint.name === MTLS_ENDPOINT ? [`--certs=${client.certFile}`, `--pk=${client.keyFile}`] : [];
      const flags = ['--no-check-certificate', '--no-heartbleed', '--no-renegotiation', '--no-compression', '--no-fallback', '--no-groups', '--no-cipher-details'];
      const run = await runTool('sslscan', ['--no-colour', ...flags, ...certs, hostPort(endpoint)], { timeoutMs: TOOL_TIMEOUT_MS });
      const what = `${endpoint.name} sslscan:\n${run.stdout}${run.stderr}`;
      expect(run.timedOut, what).toBe(false);
      expect(run.code, what).toBe(0);
      const report = parseSslscan(run.stdout);
      expect(report.protocols, what).toEqual({ SSLv2: 'disabled', SSLv3: 'disabled', 'TLSv1.0': 'disabled', 'TLSv1.1': 'disabled', 'TLSv1.2': 'enabled', 'TLSv1.3': 'enabled' });
      expect(report.suites.filter((s) => s.protocol === 'TLSv1.3').length, what).toBeGreaterThan(0);
      // sslscan counts a TLS 1.2 suite only once the whole handshake completes, and it offers no ALPN: the tunnel, which
      // speaks only h2, hangs up before its Finished reaches the client. nmap (next test) sees the tunnel's TLS 1.2 suites
      // from its ServerHellos, and s_client with -alpn h2 (above) completes a TLS 1.2 handshake with it.
      if (endpoint.name !== MTLS_ENDPOINT) expect(report.suites.filter((s) => s.protocol === 'TLSv1.2').length, what).toBeGreaterThan(0);
      expect(report.suites.filter((s) => s.protocol !== 'TLSv1.2' && s.protocol !== 'TLSv1.3'), what).toEqual([]);
      expect(report.suites.filter((s) => !isAeadSuite(s.name)), what).toEqual([]);
    }
  });

  it('nmap ssl-enum-ciphers and sslv2: only TLS 1.2 and 1.3, each with at least one suite, every suite AEAD; no SSLv2', async () => {
    for (const endpoint of endpoints) {
      const args = ['-Pn', '-n', ...(endpoint.host.includes(':') ? ['-6'] : []), '-p', String(endpoint.port), '--script', 'ssl-enum-ciphers,sslv2', endpoint.host];
      const run = await runTool('nmap', args, { timeoutMs: TOOL_TIMEOUT_MS * 3 });
      const what = `${endpoint.name} nmap:\n${run.stdout}${run.stderr}`;
      expect(run.timedOut, what).toBe(false);
      expect(run.code, what).toBe(0);
      expect(run.stdout, what).toMatch(new RegExp(`^${endpoint.port}/tcp\\s+open\\s`, 'm'));
      expect(run.stdout, what).not.toMatch(/^\|_?\s*sslv2:/m);
      const suites = parseNmapSslEnumCiphers(run.stdout);
      expect(Object.keys(suites).sort(), what).toEqual(['TLSv1.2', 'TLSv1.3']);
      expect(suites['TLSv1.2']?.length, what).toBeGreaterThan(0);
      expect(suites['TLSv1.3']?.length, what).toBeGreaterThan(0);
      expect(Object.values(suites).flat().filter((suite) => !isAeadSuite(suite)), what).toEqual([]);
    }
  });

  it('plaintext TCP: garbage and an HTTP/1.0 request get no HTTP answer, and the server closes the connection within seconds', async () => {
    // Garbage whose first byte is below every TLS content type (20-23) and has the high bit clear (no SSLv2 header), so a
    // server must reject it at once instead of waiting for the rest of a record.
    const garbage = randomBytes(4096);
    garbage[0] = randomInt(0, 20);
    // Garbage framed as one complete ClientHello record: the server must parse it, then refuse it.
    const framed = Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x0f, 0xfb, 0x01, 0x00, 0x0f, 0xf7]), randomBytes(4096 - 9)]);
    const payloads: ReadonlyArray<readonly [string, Buffer]> = [
      ['4 KiB of random bytes', garbage],
      ['a 4 KiB ClientHello record of random bytes', framed],
      ['GET / HTTP/1.0', Buffer.from('GET / HTTP/1.0\r\nHost: x\r\n\r\n', 'latin1')],
    ];
    for (const endpoint of endpoints) {
      for (const [label, payload] of payloads) {
        const r = await plaintextExchange(endpoint.host, endpoint.port, payload, 5000);
        const reply = r.received.subarray(0, 64).toString('hex');
        const what = `${endpoint.name}, ${label}: replied ${r.received.length} bytes (${reply}), closed ${String(r.closed)} after ${String(r.closedAfterMs)} ms`;
        expect(r.received.toString('latin1'), what).not.toContain('HTTP/');
        expect(r.closed, what).toBe(true);
        expect(r.closedAfterMs, what).toBeLessThan(5000);
        // Whatever came back, if anything, is a TLS alert record, never plaintext.
        if (r.received.length > 0) expect([r.received[0], r.received[1]], what).toEqual([0x15, 0x03]);
      }
    }
  });

  it('afterwards the stack is still running and every endpoint still completes a TLS 1.3 handshake', async () => {
    expect(up?.child.exitCode).toBeNull();
    expect(up?.child.signalCode).toBeNull();
    const pids = [file.pid, ...Object.values(file.pids ?? {})];
    for (const pid of pids) expect(() => process.kill(pid, 0), `pid ${pid}`).not.toThrow();
    for (const endpoint of endpoints) {
      const mtls = endpoint.name === MTLS_ENDPOINT;
      const r = await nodeTls13Handshake(endpoint.host, endpoint.port, { ca, ...(mtls ? { cert: client.cert, key: client.key } : {}) });
      expect(r.protocol, `${endpoint.name}: ${String(r.error)}`).toBe('TLSv1.3');
      expect(r.authorized, endpoint.name).toBe(true);
      expect(r.cipher !== undefined && isAeadSuite(r.cipher), `${endpoint.name}: ${String(r.cipher)}`).toBe(true);
      expect(r.error, endpoint.name).toBeUndefined();
    }
  });

  it('runs each plane process with the plane V8 flags', async () => {
    for (const [plane, pid] of Object.entries(file.pids ?? {})) {
      const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
      for (const flag of PLANE_NODE_FLAGS) expect(argv, plane).toContain(flag);
    }
    expect(Object.keys(file.pids ?? {})).toHaveLength(2);
  });

  it('stops on Ctrl-C with exit code 0 and removes endpoints.json', async () => {
    const child = up?.child;
    expect(child).toBeDefined();
    if (child === undefined) return;
    expect(await interrupt(child)).toBe(0);
    await expect(readFile(join(dir, 'endpoints.json'), 'utf8')).rejects.toMatchObject({ code: 'ENOENT' });
    for (const pid of Object.values(file.pids ?? {})) expect(() => process.kill(pid, 0), `plane pid ${pid}`).toThrow();
  });
});
