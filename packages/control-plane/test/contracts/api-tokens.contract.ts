// The API token store's contract, run against every database backend: issue, authenticate, revoke, expiry, persistence and hash-only storage.
import { createHash } from 'node:crypto';
import { AirlockError } from '@airlock/common';
import { captureLogger, makeCanary, scanForCanary } from '@airlock/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { API_TOKEN_PREFIX, openApiTokenStore, type ApiProjectRole, type ApiTokenStore, type ApiTokenStoreOptions, type ControlPlaneDatabase } from '../../src/index.js';
import { openAt, testKey, type Backend } from '../backends.js';

async function rejectionCode(promise: Promise<unknown>): Promise<string | undefined> {
  return promise.then(
    () => undefined,
    (error: unknown) => (error instanceof AirlockError ? error.code : `not an AirlockError: ${String(error)}`),
  );
}

/** Defines the API-token suite against the backend `backend()` returns. */
export function apiTokenContract(backend: () => Backend): void {
  const databases: ControlPlaneDatabase[] = [];
  afterEach(async () => {
    await Promise.all(databases.splice(0).map((database) => database.close()));
  });

  async function open(options: Partial<ApiTokenStoreOptions> = {}): Promise<ApiTokenStore> {
    const database = await openAt(await backend().create(), captureLogger('tokens').log);
    databases.push(database);
    return openApiTokenStore({ database, ...options });
  }

  describe('openApiTokenStore', () => {
    it('issues alt_ tokens of 32 random bytes and authenticates them to their subject and roles', async () => {
      const store = await open();
      const roles: ApiProjectRole[] = [
        { project: 'p1', role: 'runner' },
        { project: '*', role: 'viewer' },
      ];
      const created = await store.createToken({ subject: 'alice@example.com', roles });
      expect(created.token).toMatch(/^alt_[A-Za-z0-9_-]{43}$/);
      expect(Buffer.from(created.token.slice(API_TOKEN_PREFIX.length), 'base64url')).toHaveLength(32);
      expect(created.expiresAt).toBeUndefined();
      const other = await store.createToken({ subject: 'alice@example.com', roles });
      expect(other.token).not.toBe(created.token);
      expect(other.id).not.toBe(created.id);

      const principal = await store.authenticate(created.token);
      expect(principal).toEqual({ tokenId: created.id, subject: 'alice@example.com', roles });
      expect((await store.authenticate(other.token)).tokenId).toBe(other.id);
    });

    it('refuses missing, garbage, unknown and near-miss tokens with typed codes', async () => {
      const store = await open();
      const { token } = await store.createToken({ subject: 'bob', roles: [] });
      expect(await rejectionCode(store.authenticate(''))).toBe('AUTH_MISSING');
      expect(await rejectionCode(store.authenticate(undefined as unknown as string))).toBe('AUTH_MISSING');
      expect(await rejectionCode(store.authenticate('garbage'))).toBe('AUTH_UNKNOWN_ACCESS_KEY');
      expect(await rejectionCode(store.authenticate(`${token}x`))).toBe('AUTH_UNKNOWN_ACCESS_KEY');
      // Same shape, one character different.
      const flipped = `${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}`;
      expect(await rejectionCode(store.authenticate(flipped))).toBe('AUTH_UNKNOWN_ACCESS_KEY');
      expect(await rejectionCode(store.authenticate(`alt_${'A'.repeat(43)}`))).toBe('AUTH_UNKNOWN_ACCESS_KEY');
      expect(await rejectionCode(store.authenticate(token))).toBeUndefined();
    });

    it('revokes by id (idempotently) and refuses the revoked token as unknown', async () => {
      const store = await open();
      const keep = await store.createToken({ subject: 'keep', roles: [] });
      const drop = await store.createToken({ subject: 'drop', roles: [] });
      await store.revoke(drop.id);
      await store.revoke(drop.id);
      expect(await rejectionCode(store.authenticate(drop.token))).toBe('AUTH_UNKNOWN_ACCESS_KEY');
      expect((await store.authenticate(keep.token)).subject).toBe('keep');
      expect(await rejectionCode(store.revoke('no-such-id'))).toBe('NOT_FOUND');
      const listed = await store.list();
      // Both may be created in the same millisecond, when list() gives them in id order.
      expect(listed.map((record) => [record.subject, record.revokedAt !== undefined]).sort()).toEqual([
        ['drop', true],
        ['keep', false],
      ]);
    });

    it('expires a token at its TTL on the injected clock', async () => {
      let now = new Date('2030-01-01T00:00:00Z');
      const store = await open({ now: () => now });
      const created = await store.createToken({ subject: 'ci', roles: [{ project: 'p1', role: 'runner' }], ttlMs: 60_000 });
      expect(created.expiresAt).toEqual(new Date('2030-01-01T00:01:00Z'));
      now = new Date('2030-01-01T00:00:59.999Z');
      expect((await store.authenticate(created.token)).expiresAt).toEqual(created.expiresAt);
      now = new Date('2030-01-01T00:01:00Z');
      expect(await rejectionCode(store.authenticate(created.token))).toBe('AUTH_REQUEST_EXPIRED');
    });

    it('validates subject, roles and TTL', async () => {
      const store = await open();
      const bad = [
        { subject: '', roles: [] },
        { subject: 'line\nbreak', roles: [] },
        { subject: 'x'.repeat(257), roles: [] },
        { subject: 'a', roles: [{ project: 'p1', role: 'owner' }] },
        { subject: 'a', roles: [{ project: 'has space', role: 'viewer' }] },
        { subject: 'a', roles: [{ project: 'p1', role: 'viewer' }, { project: 'p1', role: 'admin' }] },
        { subject: 'a', roles: 'admin' },
        { subject: 'a', roles: [], ttlMs: 0 },
        { subject: 'a', roles: [], ttlMs: 1.5 },
      ];
      for (const options of bad) {
        expect(await rejectionCode(store.createToken(options as never)), JSON.stringify(options)).toBe('INVALID_ARGUMENT');
      }
      expect(await store.list()).toEqual([]);
    });

    it('persists across reopen, storing only SHA-256 hashes of tokens and sealed subjects and roles', async () => {
      const location = await backend().create();
      const key = testKey('tokens');
      const database = await openAt(location, captureLogger('tokens').log, key);
      databases.push(database);
      const first = openApiTokenStore({ database });
      const subject = makeCanary('subject');
      const project = `p-${makeCanary('project').slice(-12)}`;
      const admin = await first.createToken({ subject, roles: [{ project, role: 'admin' }] });
      const revoked = await first.createToken({ subject: 'gone', roles: [] });
      await first.revoke(revoked.id);
      await backend().flush(database);
      for (const secret of [admin.token, admin.token.slice(API_TOKEN_PREFIX.length), revoked.token, subject, project]) {
        expect((await scanForCanary(location.atRest, secret)).hits).toEqual([]);
      }
      await database.close();

      const reopened = await openAt(location, captureLogger('tokens').log, key);
      databases.push(reopened);
      const second = openApiTokenStore({ database: reopened });
      expect(await second.authenticate(admin.token)).toMatchObject({ tokenId: admin.id, subject, roles: [{ project, role: 'admin' }] });
      expect(await rejectionCode(second.authenticate(revoked.token))).toBe('AUTH_UNKNOWN_ACCESS_KEY');
      // Oldest first; two tokens created in the same millisecond come in id order, so compare as sets.
      expect((await second.list()).map((record) => record.id).sort()).toEqual([admin.id, revoked.id].sort());
      const hashes = await reopened.db.selectFrom('api_tokens').select('token_hash').execute();
      expect(hashes.map((row) => row.token_hash).sort()).toEqual([admin, revoked].map(({ token }) => createHash('sha256').update(token).digest('hex')).sort());
    });
  });
}
