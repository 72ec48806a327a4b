// The cluster registry's contract, run against every database backend: bootstrap tokens, registration, renewal, revocation, and names stored sealed.
import { createCertificateAuthority, createCertificateRequest, type CertificateKeyPair } from '@airlock/pki';
import { captureLogger, makeCanary, scanForCanary } from '@airlock/testing';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BOOTSTRAP_TOKEN_PREFIX, openClusterRegistry, type ClusterRegistry, type ControlPlaneDatabase } from '../../src/index.js';
import { openAt, testKey, type Backend } from '../backends.js';

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected the promise to reject');
    },
    (reason: unknown) => reason,
  );
}

/** Defines the cluster-registry suite against the backend `backend()` returns. */
export function clusterRegistryContract(backend: () => Backend): void {
  let ca: CertificateKeyPair;
  let csr: string;
  const databases: ControlPlaneDatabase[] = [];

  beforeAll(async () => {
    ca = await createCertificateAuthority({ commonName: 'registry contract CA' });
    csr = (await createCertificateRequest({ commonName: 'agent' })).csr;
  });
  afterEach(async () => {
    await Promise.all(databases.splice(0).map((database) => database.close()));
  });

  async function open(clock?: { ms: number }): Promise<{ registry: ClusterRegistry; database: ControlPlaneDatabase }> {
    const database = await openAt(await backend().create(), captureLogger('registry').log);
    databases.push(database);
    return { registry: openClusterRegistry({ ca, database, ...(clock === undefined ? {} : { now: () => new Date(clock.ms) }) }), database };
  }

  describe('cluster registry', () => {
    it('redeems a bootstrap token once for a certificate the registry then allows', async () => {
      const { registry } = await open();
      const bootstrap = await registry.createBootstrapToken('edge-1', 60_000, 'first edge cluster');
      expect(bootstrap.token.startsWith(BOOTSTRAP_TOKEN_PREFIX)).toBe(true);
      const certificate = await registry.redeemBootstrapToken(bootstrap.token, csr);
      expect(await registry.isClusterAllowed('edge-1', certificate.fingerprintSha256)).toBe(true);
      expect(await registry.isClusterAllowed('edge-2', certificate.fingerprintSha256)).toBe(false);
      expect(await registry.isClusterAllowed('edge-1', 'ab'.repeat(32))).toBe(false);
      expect(await registry.cluster('edge-1')).toMatchObject({ name: 'edge-1', revoked: false, certificates: [{ fingerprintSha256: certificate.fingerprintSha256 }] });
      expect(await rejection(registry.redeemBootstrapToken(bootstrap.token, csr))).toMatchObject({ code: 'ACCESS_DENIED', details: { reason: 'token-used' } });
      expect(await rejection(registry.redeemBootstrapToken(`${BOOTSTRAP_TOKEN_PREFIX}nope`, csr))).toMatchObject({ code: 'ACCESS_DENIED', details: { reason: 'token-unknown' } });
      expect((await registry.clusters()).map((record) => record.name)).toEqual(['edge-1']);
    });

    it('lets only one of two concurrent redemptions win', async () => {
      const { registry } = await open();
      const bootstrap = await registry.createBootstrapToken('race', 60_000);
      const results = await Promise.allSettled([registry.redeemBootstrapToken(bootstrap.token, csr), registry.redeemBootstrapToken(bootstrap.token, csr)]);
      expect(results.filter((result) => result.status === 'fulfilled')).toHaveLength(1);
      expect(results.find((result) => result.status === 'rejected')).toMatchObject({ reason: { code: 'ACCESS_DENIED', details: { reason: 'token-used' } } });
    });

    it('refuses an expired token, a token for another cluster (without spending it), and a bad CSR (keeping the token)', async () => {
      const clock = { ms: Date.parse('2030-01-01T00:00:00Z') };
      const { registry } = await open(clock);
      const expiring = await registry.createBootstrapToken('late', 1000);
      clock.ms += 1000;
      expect(await rejection(registry.redeemBootstrapToken(expiring.token, csr, new Date(clock.ms)))).toMatchObject({ details: { reason: 'token-expired' } });
      const token = await registry.createBootstrapToken('right', 60_000);
      expect(await rejection(registry.redeemBootstrapToken(token.token, csr, new Date(clock.ms), 'wrong'))).toMatchObject({ details: { reason: 'cluster-mismatch' } });
      expect(await rejection(registry.redeemBootstrapToken(token.token, 'not a csr', new Date(clock.ms)))).toMatchObject({ code: 'CERTIFICATE_INVALID' });
      await registry.redeemBootstrapToken(token.token, csr, new Date(clock.ms), 'right');
    });

    it('renews with the current certificate, keeps the previous one valid, and forgets older ones', async () => {
      const { registry } = await open();
      const first = await registry.redeemBootstrapToken((await registry.createBootstrapToken('c1', 60_000)).token, csr);
      const second = await registry.renew('c1', first.fingerprintSha256, csr);
      expect(await rejection(registry.renew('c1', first.fingerprintSha256, csr))).toMatchObject({ details: { reason: 'certificate-mismatch' } });
      const third = await registry.renew('c1', second.fingerprintSha256, csr);
      expect(await registry.isClusterAllowed('c1', third.fingerprintSha256)).toBe(true);
      expect(await registry.isClusterAllowed('c1', second.fingerprintSha256)).toBe(true);
      expect(await registry.isClusterAllowed('c1', first.fingerprintSha256)).toBe(false);
      expect((await registry.cluster('c1'))?.certificates.map((cert) => cert.fingerprintSha256)).toEqual([third.fingerprintSha256, second.fingerprintSha256]);
    });

    it('revocation stops the certificates and the pending tokens; a new bootstrap token re-registers', async () => {
      const { registry } = await open();
      const issued = await registry.redeemBootstrapToken((await registry.createBootstrapToken('c1', 60_000)).token, csr);
      const pending = await registry.createBootstrapToken('c1', 60_000);
      await registry.revoke('c1');
      expect(await registry.isClusterAllowed('c1', issued.fingerprintSha256)).toBe(false);
      expect((await registry.cluster('c1'))?.revoked).toBe(true);
      expect(await rejection(registry.redeemBootstrapToken(pending.token, csr))).toMatchObject({ details: { reason: 'token-unknown' } });
      expect(await rejection(registry.renew('c1', issued.fingerprintSha256, csr))).toMatchObject({ details: { reason: 'cluster-revoked' } });
      expect(await rejection(registry.revoke('nope'))).toMatchObject({ code: 'NOT_FOUND' });
      const again = await registry.redeemBootstrapToken((await registry.createBootstrapToken('c1', 60_000)).token, csr);
      expect(await registry.isClusterAllowed('c1', again.fingerprintSha256)).toBe(true);
      expect((await registry.cluster('c1'))?.revoked).toBe(false);
    });

    it('validates names, TTLs and reasons', async () => {
      const { registry } = await open();
      expect(await rejection(registry.createBootstrapToken('Not Valid', 1000))).toMatchObject({ code: 'INVALID_ARGUMENT' });
      expect(await rejection(registry.createBootstrapToken('ok', 0))).toMatchObject({ code: 'INVALID_ARGUMENT' });
      expect(await rejection(registry.createBootstrapToken('ok', 1000, 'line\nbreak'))).toMatchObject({ code: 'INVALID_ARGUMENT', details: { argument: 'reason' } });
      expect(await rejection(registry.createBootstrapToken('ok', 1000, 'x'.repeat(513)))).toMatchObject({ code: 'INVALID_ARGUMENT', details: { argument: 'reason' } });
    });

    it('stores cluster names and token reasons sealed, and token hashes only; all survive a reopen', async () => {
      const location = await backend().create();
      const key = testKey('registry');
      const database = await openAt(location, captureLogger('registry').log, key);
      databases.push(database);
      const registry = openClusterRegistry({ ca, database });
      const name = `c${makeCanary('n').slice(-20)}`;
      const reason = makeCanary('reason');
      const bootstrap = await registry.createBootstrapToken(name, 60_000, reason);
      const pending = await registry.createBootstrapToken(name, 60_000, reason);
      const certificate = await registry.redeemBootstrapToken(bootstrap.token, csr);
      await backend().flush(database);
      for (const secret of [name, reason, bootstrap.token, pending.token]) expect((await scanForCanary(location.atRest, secret)).hits).toEqual([]);
      await database.close();

      const reopened = await openAt(location, captureLogger('registry').log, key);
      databases.push(reopened);
      const again = openClusterRegistry({ ca, database: reopened });
      expect(await again.isClusterAllowed(name, certificate.fingerprintSha256)).toBe(true);
      expect((await again.cluster(name))?.name).toBe(name);
      const stored = await reopened.db.selectFrom('bootstrap_tokens').select(['token_hash', 'reason_sealed']).execute();
      expect(stored).toHaveLength(2);
      const row = stored[0];
      if (row?.reason_sealed == null) throw new Error('expected a sealed reason');
      expect(reopened.sealer.openText({ table: 'bootstrap_tokens', column: 'reason_sealed', row: row.token_hash }, row.reason_sealed)).toBe(reason);
      await again.redeemBootstrapToken(pending.token, csr);
    });
  });
}
