// Cross-plane tests of cluster registration: bootstrap tokens, CSR issuance, tunnel admission, renewal without dropping calls, revocation.
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient } from '@connectrpc/connect';
import type { Logger } from '@airlock/common';
import { openClusterRegistry, startTunnelEndpoint, type ClusterRegistry, type ControlPlaneDatabase, type TunnelEndpoint } from '@airlock/control-plane';
import {
  ECHO_DELAY_HEADER,
  registerWithBootstrapToken,
  renewalDelayMs,
  startCertificateRenewer,
  startTunnelAgent,
  tunnelServiceRoutes,
  type CertificateRenewer,
  type RegisteredCredentials,
  type TunnelAgent,
} from '@airlock/data-plane';
import {
  certificateFingerprint,
  checkCertificateChain,
  createCertificateAuthority,
  createCertificateRequest,
  issueServerCertificate,
  parseCertificate,
  parseClusterIdentity,
  type CertificateKeyPair,
} from '@airlock/pki';
import { EchoService } from '@airlock/protocol';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { captureLogger, scanForCanary } from '@airlock/testing';
import { eventually, openTestDatabase } from './helpers.js';




async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected the promise to reject');
    },
    (reason: unknown) => reason,
  );
}

function sameBytes(actual: Uint8Array, expected: Uint8Array): boolean {
  return Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength).equals(expected);
}

// The PKI's shortest leaf lifetime is 60 s; renewal tests use it and shift the renewer's clock.
const TEST_CERT_SECONDS = 60;

let ca: CertificateKeyPair;
let server: CertificateKeyPair;
let directory: string;
let registry: ClusterRegistry;
let database: ControlPlaneDatabase;
let registryLogs: ReturnType<typeof captureLogger>;
let endpoint: TunnelEndpoint;
let endpointLogs: ReturnType<typeof captureLogger>;
const agents: TunnelAgent[] = [];
const renewers: CertificateRenewer[] = [];
const tokens: string[] = [];

beforeAll(async () => {
  ca = await createCertificateAuthority({ commonName: 'registration test CA' });
  server = await issueServerCertificate({ ca, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  directory = await mkdtemp(join(tmpdir(), 'airlock-registry-'));
  registryLogs = captureLogger('cluster-registry');
  database = await openTestDatabase(directory, registryLogs.log);
  registry = openClusterRegistry({ ca, database, certificateValiditySeconds: TEST_CERT_SECONDS, log: registryLogs.log });
  endpointLogs = captureLogger('tunnel-endpoint');
  endpoint = await startTunnelEndpoint({
    tls: { cert: server.cert, key: server.key },
    ca: ca.cert,
    port: 0,
    log: endpointLogs.log,
    isClusterAllowed: (cluster, fingerprint) => registry.isClusterAllowed(cluster, fingerprint),
  });
});

afterEach(async () => {
  for (const renewer of renewers.splice(0)) renewer.stop();
  await Promise.all(agents.splice(0).map((agent) => agent.stop()));
});

afterAll(async () => {
  await endpoint.close();
  await database.close();
  await rm(directory, { recursive: true, force: true });
});

/** A bootstrap token for `cluster`, remembered for the no-secrets-at-rest check. */
async function token(cluster: string, ttlMs = 60_000): Promise<string> {
  const created = await registry.createBootstrapToken(cluster, ttlMs);
  tokens.push(created.token);
  return created.token;
}

/** Registers `cluster` with the registry through the agent-side flow. */
async function register(cluster: string, log?: Logger): Promise<RegisteredCredentials> {
  return registerWithBootstrapToken({ clusterName: cluster, token: await token(cluster), redeem: (t, csr) => registry.redeemBootstrapToken(t, csr), log });
}

function agentFor(getCredentials: () => RegisteredCredentials): { agent: TunnelAgent; logs: ReturnType<typeof captureLogger> } {
  const logs = captureLogger('tunnel-agent');
  const agent = startTunnelAgent({
    endpoint: endpoint.url,
    ca: getCredentials().ca,
    getCredentials: () => {
      const { cert, key } = getCredentials();
      return { cert, key };
    },
    routes: tunnelServiceRoutes({ maxEchoDelayMs: 10_000 }),
    log: logs.log,
    backoffMaxMs: 500,
  });
  agents.push(agent);
  return { agent, logs };
}

describe('bootstrap tokens', () => {
  it('are alb_-prefixed 32-byte base64url secrets, and are refused on reuse (token-used)', async () => {
    const created = await registry.createBootstrapToken('reuse-1', 60_000);
    tokens.push(created.token);
    expect(created.token).toMatch(/^alb_[A-Za-z0-9_-]{43}$/u);
    const first = await createCertificateRequest({ commonName: 'reuse-1' });
    await registry.redeemBootstrapToken(created.token, first.csr);
    const second = await createCertificateRequest({ commonName: 'reuse-1' });
    expect(await rejection(registry.redeemBootstrapToken(created.token, second.csr))).toMatchObject({
      code: 'ACCESS_DENIED',
      details: { reason: 'token-used' },
    });
  });

  it('cannot be redeemed twice concurrently', async () => {
    const t = await token('race-1');
    const csr = (await createCertificateRequest({ commonName: 'race-1' })).csr;
    const results = await Promise.allSettled([registry.redeemBootstrapToken(t, csr), registry.redeemBootstrapToken(t, csr)]);
    expect(results.filter((result) => result.status === 'fulfilled')).toHaveLength(1);
  });

  it('an expired token is refused (token-expired)', async () => {
    const t = await token('expired-1', 1000);
    const csr = (await createCertificateRequest({ commonName: 'expired-1' })).csr;
    expect(await rejection(registry.redeemBootstrapToken(t, csr, new Date(Date.now() + 1001)))).toMatchObject({
      code: 'ACCESS_DENIED',
      details: { reason: 'token-expired' },
    });
    expect(await registry.cluster('expired-1')).toBeUndefined();
  });

  it('an unknown or tampered token is refused (token-unknown)', async () => {
    const t = await token('unknown-1');
    const csr = (await createCertificateRequest({ commonName: 'unknown-1' })).csr;
    const tampered = `${t.slice(0, -1)}${t.endsWith('A') ? 'B' : 'A'}`;
    for (const candidate of [tampered, 'alb_', '', t.slice(4)]) {
      expect(await rejection(registry.redeemBootstrapToken(candidate, csr))).toMatchObject({ code: 'ACCESS_DENIED', details: { reason: 'token-unknown' } });
    }
  });

  it('a malformed CSR is refused without consuming the token', async () => {
    const t = await token('badcsr-1');
    expect(await rejection(registry.redeemBootstrapToken(t, 'not a csr'))).toMatchObject({ code: 'CERTIFICATE_INVALID' });
    const csr = (await createCertificateRequest({ commonName: 'badcsr-1' })).csr;
    await expect(registry.redeemBootstrapToken(t, csr)).resolves.toMatchObject({ caPem: ca.cert });
  });
});

describe('registration and the tunnel', () => {
  it('a token for cluster A yields a CA-issued cert with URI SAN cluster A, which the tunnel endpoint accepts', async () => {
    const agentLog = captureLogger('registration');
    const credentials = await register('cluster-a', agentLog.log);
    const info = parseCertificate(credentials.cert);
    expect(info.uris).toEqual(['spiffe://airlock/cluster/cluster-a']);
    expect(parseClusterIdentity(info.uri)).toBe('cluster-a');
    expect(info.extendedKeyUsages).toContain('clientAuth');
    expect((info.notAfter.getTime() - Date.now()) / 1000).toBeGreaterThan(TEST_CERT_SECONDS - 5);
    expect((info.notAfter.getTime() - Date.now()) / 1000).toBeLessThanOrEqual(TEST_CERT_SECONDS);
    await checkCertificateChain({ leaf: credentials.cert, trusted: ca.cert, purpose: 'client' });
    expect(await registry.cluster('cluster-a')).toMatchObject({ revoked: false, certificates: [{ fingerprintSha256: credentials.fingerprintSha256 }] });
    expect(await registry.isClusterAllowed('cluster-a', credentials.fingerprintSha256)).toBe(true);
    expect(await registry.isClusterAllowed('cluster-b', credentials.fingerprintSha256)).toBe(false);
    expect(await registry.isClusterAllowed('cluster-a', 'ff'.repeat(32))).toBe(false);
    expect(agentLog.text()).not.toContain(credentials.key.split('\n')[1] ?? 'unreachable');

    agentFor(() => credentials);
    const connection = await endpoint.waitForCluster('cluster-a', 10_000);
    expect(connection.tls.peerFingerprintSha256).toBe(credentials.fingerprintSha256);
    const echo = createClient(EchoService, endpoint.transportFor('cluster-a'));
    const payload = new Uint8Array([1, 2, 3, 4]);
    expect(sameBytes((await echo.echo({ payload })).payload, payload)).toBe(true);
  });

  it('renews at two thirds of the lifetime without breaking an Echo call in flight across the renewal', async () => {
    const cluster = 'renew-1';
    const initial = await register(cluster);
    const renewerLogs = captureLogger('renewer');
    const holder: { renewer?: CertificateRenewer } = {};
    const { agent } = agentFor(() => holder.renewer?.credentials() ?? initial);
    await endpoint.waitForCluster(cluster, 10_000);

    // Shift the renewer's clock so that 2/3 of the 60 s lifetime falls ~4 s from now (the PKI's minimum lifetime is 60 s).
    const offsetMs = (TEST_CERT_SECONDS - 6) * 1000 - (Date.now() - (initial.expiresAt.getTime() - TEST_CERT_SECONDS * 1000));
    const startedAt = Date.now();
    const renewer = startCertificateRenewer({
      clusterName: cluster,
      initial,
      renew: (csr, current) => registry.renew(cluster, current.fingerprintSha256, csr),
      agent,
      log: renewerLogs.log,
      now: () => Date.now() + offsetMs,
      random: () => 0.5,
    });
    holder.renewer = renewer;
    renewers.push(renewer);
    const dueInMs = (renewer.nextRenewalAt() ?? 0) - (Date.now() + offsetMs);
    expect(dueInMs).toBeGreaterThan(3000);
    expect(dueInMs).toBeLessThan(4500);

    const echo = createClient(EchoService, endpoint.transportFor(cluster));
    const slow = echo.echo({ payload: new Uint8Array([42]) }, { headers: { [ECHO_DELAY_HEADER]: '6000' } });
    let slowSettled = false;
    void slow.finally(() => {
      slowSettled = true;
    });

    const renewed = await eventually('the renewal', 10_000, () => {
      const current = renewer.credentials();
      return current.fingerprintSha256 !== initial.fingerprintSha256 ? current : undefined;
    });
    const renewedAfter = Date.now() - startedAt;
    expect(slowSettled, 'the slow call is still in flight when the certificate is renewed').toBe(false);
    expect(renewedAfter).toBeGreaterThan(3000);
    expect(renewedAfter).toBeLessThan(7000);
    expect(parseCertificate(renewed.cert).uri).toBe('spiffe://airlock/cluster/renew-1');
    expect(renewed.key).not.toBe(initial.key);
    // Both the previous and the new certificate are valid until the previous one expires.
    expect(await registry.isClusterAllowed(cluster, initial.fingerprintSha256)).toBe(true);
    expect(await registry.isClusterAllowed(cluster, renewed.fingerprintSha256)).toBe(true);

    // The endpoint can see the new connection a moment before the agent counts it as established.
    await eventually('the tunnel on the renewed certificate, at both ends', 10_000, () =>
      endpoint.connection(cluster)?.tls.peerFingerprintSha256 === renewed.fingerprintSha256 && agent.stats().established >= 2 ? true : undefined,
    );
    expect(agent.stats().established).toBe(2);
    // New calls use the new connection; the slow call finishes on the draining one.
    expect(sameBytes((await echo.echo({ payload: new Uint8Array([7]) })).payload, new Uint8Array([7]))).toBe(true);
    expect(sameBytes((await slow).payload, new Uint8Array([42]))).toBe(true);
    expect(Date.now() - startedAt).toBeGreaterThan(renewedAfter);
    expect(renewerLogs.lines.some((line) => line.event === 'registration.renewed' && line.certFingerprintSha256 === renewed.fingerprintSha256)).toBe(true);
    expect(renewerLogs.text()).not.toContain(renewed.key.split('\n')[1] ?? 'unreachable');

    // Renewal needs the current certificate: the superseded one is refused.
    const csr = (await createCertificateRequest({ commonName: cluster })).csr;
    expect(await rejection(registry.renew(cluster, initial.fingerprintSha256, csr))).toMatchObject({
      code: 'ACCESS_DENIED',
      details: { reason: 'certificate-mismatch' },
    });
  });

  it('a revoked cluster is refused at its next handshake and cannot renew', async () => {
    const cluster = 'revoke-1';
    const credentials = await register(cluster);
    const { agent } = agentFor(() => credentials);
    await endpoint.waitForCluster(cluster, 10_000);

    await registry.revoke(cluster);
    expect(await registry.isClusterAllowed(cluster, credentials.fingerprintSha256)).toBe(false);
    endpoint.disconnect(cluster);
    await eventually('a refused reconnect', 10_000, () =>
      endpointLogs.lines.some((line) => line.event === 'tunnel.refused' && line.cluster === cluster) ? true : undefined,
    );
    expect(await rejection(endpoint.waitForCluster(cluster, 1500))).toMatchObject({ code: 'TIMEOUT' });
    expect(agent.state()).not.toBe('connected');
    expect(agent.stats().failedAttempts).toBeGreaterThan(0);

    const csr = (await createCertificateRequest({ commonName: cluster })).csr;
    expect(await rejection(registry.renew(cluster, credentials.fingerprintSha256, csr))).toMatchObject({
      code: 'ACCESS_DENIED',
      details: { reason: 'cluster-revoked' },
    });
    expect(await rejection(registry.renew('never-registered', credentials.fingerprintSha256, csr))).toMatchObject({
      code: 'ACCESS_DENIED',
      details: { reason: 'cluster-unknown' },
    });
  });
});

describe('registry persistence and renewal scheduling', () => {
  it('stores only token hashes, in the encrypted database, and reloads its state', async () => {
    await register('persist-1');
    expect(tokens.length).toBeGreaterThan(0);
    await database.checkpoint();
    for (const file of database.files()) expect((await stat(file).catch(() => ({ mode: 0o600 }))).mode & 0o777).toBe(0o600);
    for (const t of tokens) {
      expect((await scanForCanary(database.files(), t.slice(4))).hits).toEqual([]);
    }
    expect(registryLogs.text()).not.toMatch(/alb_[A-Za-z0-9_-]{20}/u);
    const reopenedDatabase = await openTestDatabase(directory, registryLogs.log);
    try {
      const reopened = openClusterRegistry({ ca, database: reopenedDatabase });
      const original = await registry.cluster('persist-1');
      expect(await reopened.cluster('persist-1')).toEqual(original);
      expect((await reopened.cluster('revoke-1'))?.revoked).toBe(true);
      const fingerprint = original?.certificates[0]?.fingerprintSha256 ?? '';
      expect(await reopened.isClusterAllowed('persist-1', fingerprint)).toBe(true);
    } finally {
      await reopenedDatabase.close();
    }
  });

  it('schedules renewal at two thirds of the lifetime with ±5% jitter, and stop() cancels it', async () => {
    expect(renewalDelayMs(0, 90_000, () => 0.5)).toBe(60_000);
    expect(renewalDelayMs(0, 90_000, () => 0)).toBe(57_000);
    expect(renewalDelayMs(0, 90_000, () => 0.999_999_9)).toBe(63_000);

    const credentials = await register('sched-1');
    const pending = new Map<number, { callback: () => void; ms: number }>();
    let next = 0;
    let renewCalls = 0;
    const renewer = startCertificateRenewer({
      clusterName: 'sched-1',
      initial: credentials,
      renew: async () => {
        renewCalls += 1;
        return Promise.reject(new Error('not called'));
      },
      log: captureLogger('renewer').log,
      now: () => credentials.expiresAt.getTime() - 90_000,
      random: () => 0.5,
      timers: {
        setTimeout: (callback, ms) => {
          next += 1;
          pending.set(next, { callback, ms });
          return next;
        },
        clearTimeout: (handle) => pending.delete(handle as number),
      },
    });
    expect([...pending.values()].map((entry) => entry.ms)).toEqual([60_000]);
    expect(renewer.nextRenewalAt()).toBe(credentials.expiresAt.getTime() - 30_000);
    renewer.stop();
    expect(pending.size).toBe(0);
    expect(renewer.nextRenewalAt()).toBeUndefined();
    expect(renewCalls).toBe(0);
    expect(certificateFingerprint(credentials.cert)).toBe(credentials.fingerprintSha256);
  });
});
