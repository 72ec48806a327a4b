// Unit tests of the local CA's key at rest: sealed under the control plane's key, never in the clear, and a plaintext key from an earlier release sealed and removed.
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCertificateAuthority } from '@airlock/pki';
import { captureLogger } from '@airlock/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { layout } from './data-dir.js';
import { loadLocalCa } from './local-ca.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'airlock-local-ca-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected the promise to reject');
    },
    (reason: unknown) => reason,
  );
}

describe('the local CA key at rest', () => {
  it('is created sealed (0600), never as PEM, and opens again with the same control-plane key only', async () => {
    const { log } = captureLogger('ca');
    const created = await loadLocalCa(dir, {}, log);
    expect(created.created).toBe(true);
    const sealed = await readFile(layout.caKeySealed(dir));
    expect(sealed.includes('PRIVATE KEY')).toBe(false);
    expect(sealed.includes(Buffer.from(created.key.split('\n')[1] ?? 'x'))).toBe(false);
    expect((await stat(layout.caKeySealed(dir))).mode & 0o777).toBe(0o600);
    await expect(stat(layout.legacyCaKey(dir))).rejects.toMatchObject({ code: 'ENOENT' });

    const again = await loadLocalCa(dir, {}, log);
    expect(again).toMatchObject({ created: false, cert: created.cert, key: created.key });

    // Another control-plane key cannot open it.
    await writeFile(join(dir, 'other.key'), `${Buffer.alloc(32, 7).toString('base64')}\n`, { mode: 0o600 });
    expect(await rejection(loadLocalCa(dir, { cpKeyFile: join(dir, 'other.key') }, log))).toMatchObject({ code: 'DB_KEY_INVALID' });
  });

  it('seals a plaintext key left by an earlier release and removes it', async () => {
    const { log, lines } = captureLogger('ca');
    const old = await createCertificateAuthority({ commonName: 'earlier release CA' });
    await mkdir(join(dir, 'ca'), { recursive: true });
    await writeFile(layout.caCert(dir), old.cert);
    await writeFile(layout.legacyCaKey(dir), old.key, { mode: 0o600 });
    const loaded = await loadLocalCa(dir, {}, log);
    expect(loaded).toMatchObject({ created: false, cert: old.cert, key: old.key });
    await expect(stat(layout.legacyCaKey(dir))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(lines.some((line) => line.event === 'ca.key_sealed')).toBe(true);
    expect((await loadLocalCa(dir, {}, log)).key).toBe(old.key);
  });

  it('refuses a CA certificate without its key, saying where the key should be', async () => {
    await mkdir(join(dir, 'ca'), { recursive: true });
    await writeFile(layout.caCert(dir), (await createCertificateAuthority({ commonName: 'orphan' })).cert);
    const error = await rejection(loadLocalCa(dir, {}, captureLogger('ca').log));
    expect(error).toMatchObject({ code: 'NOT_FOUND' });
    expect((error as Error).message).toContain(layout.caKeySealed(dir));
  });
});
