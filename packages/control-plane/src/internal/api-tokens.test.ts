// Unit tests of the API token store: issue, authenticate, revoke, expiry, persistence and hash-only storage.
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AirlockError } from '@airlock/common';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { API_TOKEN_PREFIX, hasRole, openApiTokenStore, type ApiProjectRole } from './api-tokens.js';

function thrownCode(action: () => unknown): string | undefined {
  try {
    action();
  } catch (error) {
    return error instanceof AirlockError ? error.code : `not an AirlockError: ${String(error)}`;
  }
  return undefined;
}

async function rejectionCode(promise: Promise<unknown>): Promise<string | undefined> {
  return promise.then(
    () => undefined,
    (error: unknown) => (error instanceof AirlockError ? error.code : `not an AirlockError: ${String(error)}`),
  );
}

let directory: string;
beforeEach(async () => {
  directory = await mkdtemp(join(tmpdir(), 'airlock-api-tokens-'));
});
afterEach(async () => {
  await rm(directory, { recursive: true, force: true });
});

describe('openApiTokenStore', () => {
  it('issues alt_ tokens of 32 random bytes and authenticates them to their subject and roles', async () => {
    const store = await openApiTokenStore({});
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

    const principal = store.authenticate(created.token);
    expect(principal).toEqual({ tokenId: created.id, subject: 'alice@example.com', roles });
    expect(store.authenticate(other.token).tokenId).toBe(other.id);
  });

  it('refuses missing, garbage, unknown and near-miss tokens with typed codes', async () => {
    const store = await openApiTokenStore({});
    const { token } = await store.createToken({ subject: 'bob', roles: [] });
    expect(thrownCode(() => store.authenticate(''))).toBe('AUTH_MISSING');
    expect(thrownCode(() => store.authenticate(undefined as unknown as string))).toBe('AUTH_MISSING');
    expect(thrownCode(() => store.authenticate('garbage'))).toBe('AUTH_UNKNOWN_ACCESS_KEY');
    expect(thrownCode(() => store.authenticate(`${token}x`))).toBe('AUTH_UNKNOWN_ACCESS_KEY');
    // Same shape, one character different.
    const flipped = `${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}`;
    expect(thrownCode(() => store.authenticate(flipped))).toBe('AUTH_UNKNOWN_ACCESS_KEY');
    expect(thrownCode(() => store.authenticate(`alt_${'A'.repeat(43)}`))).toBe('AUTH_UNKNOWN_ACCESS_KEY');
    expect(thrownCode(() => store.authenticate(token))).toBeUndefined();
  });

  it('revokes by id (idempotently) and refuses the revoked token as unknown', async () => {
    const store = await openApiTokenStore({});
    const keep = await store.createToken({ subject: 'keep', roles: [] });
    const drop = await store.createToken({ subject: 'drop', roles: [] });
    await store.revoke(drop.id);
    await store.revoke(drop.id);
    expect(thrownCode(() => store.authenticate(drop.token))).toBe('AUTH_UNKNOWN_ACCESS_KEY');
    expect(store.authenticate(keep.token).subject).toBe('keep');
    expect(await rejectionCode(store.revoke('no-such-id'))).toBe('NOT_FOUND');
    const listed = store.list();
    expect(listed.map((record) => [record.subject, record.revokedAt !== undefined])).toEqual([
      ['keep', false],
      ['drop', true],
    ]);
  });

  it('expires a token at its TTL on the injected clock', async () => {
    let now = new Date('2030-01-01T00:00:00Z');
    const store = await openApiTokenStore({ now: () => now });
    const created = await store.createToken({ subject: 'ci', roles: [{ project: 'p1', role: 'runner' }], ttlMs: 60_000 });
    expect(created.expiresAt).toEqual(new Date('2030-01-01T00:01:00Z'));
    now = new Date('2030-01-01T00:00:59.999Z');
    expect(store.authenticate(created.token).expiresAt).toEqual(created.expiresAt);
    now = new Date('2030-01-01T00:01:00Z');
    expect(thrownCode(() => store.authenticate(created.token))).toBe('AUTH_REQUEST_EXPIRED');
  });

  it('validates subject, roles and TTL', async () => {
    const store = await openApiTokenStore({});
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
    expect(store.list()).toEqual([]);
  });

  it('persists across reopen in a 0600 file that holds only SHA-256 hashes', async () => {
    const path = join(directory, 'api-tokens.json');
    const first = await openApiTokenStore({ path });
    const admin = await first.createToken({ subject: 'admin', roles: [{ project: '*', role: 'admin' }] });
    const revoked = await first.createToken({ subject: 'gone', roles: [] });
    await first.revoke(revoked.id);

    expect((await stat(path)).mode & 0o777).toBe(0o600);
    const text = await readFile(path, 'utf8');
    for (const { token } of [admin, revoked]) {
      expect(text).not.toContain(token);
      expect(text).not.toContain(token.slice(API_TOKEN_PREFIX.length));
      expect(text).toContain(createHash('sha256').update(token).digest('hex'));
    }

    const second = await openApiTokenStore({ path });
    expect(second.authenticate(admin.token)).toMatchObject({ tokenId: admin.id, subject: 'admin', roles: [{ project: '*', role: 'admin' }] });
    expect(thrownCode(() => second.authenticate(revoked.token))).toBe('AUTH_UNKNOWN_ACCESS_KEY');
    expect(second.list().map((record) => record.id)).toEqual([admin.id, revoked.id]);
  });

  it('refuses a state file it cannot read with CONFIG_INVALID', async () => {
    const path = join(directory, 'api-tokens.json');
    await writeFile(path, '{not json');
    expect(await rejectionCode(openApiTokenStore({ path }))).toBe('CONFIG_INVALID');
    await writeFile(path, JSON.stringify({ version: 1, tokens: [{ id: 'x', hash: 'nothex', subject: 's', roles: [], createdAt: 0 }] }));
    expect(await rejectionCode(openApiTokenStore({ path }))).toBe('CONFIG_INVALID');
    await writeFile(path, JSON.stringify({ version: 2, tokens: [] }));
    expect(await rejectionCode(openApiTokenStore({ path }))).toBe('CONFIG_INVALID');
  });
});

describe('hasRole', () => {
  const principal = {
    roles: [
      { project: 'p1', role: 'runner' },
      { project: 'p2', role: 'viewer' },
    ] as const,
  };
  it('orders viewer < runner < admin within one project', () => {
    expect(hasRole(principal, 'p1', 'viewer')).toBe(true);
    expect(hasRole(principal, 'p1', 'runner')).toBe(true);
    expect(hasRole(principal, 'p1', 'admin')).toBe(false);
    expect(hasRole(principal, 'p2', 'runner')).toBe(false);
    expect(hasRole(principal, 'p3', 'viewer')).toBe(false);
  });
  it('applies a grant on * to every project, and only * grants to platform-wide checks', () => {
    const platform = { roles: [{ project: '*', role: 'viewer' }] as const };
    expect(hasRole(platform, 'anything', 'viewer')).toBe(true);
    expect(hasRole(platform, '*', 'viewer')).toBe(true);
    expect(hasRole(platform, '*', 'runner')).toBe(false);
    expect(hasRole(principal, '*', 'viewer')).toBe(false);
    expect(hasRole({ roles: [] }, '*', 'viewer')).toBe(false);
  });
});
