// Tests of the data-plane sealing keys against a real embedded KMS over TLS: created once and reloaded unchanged, stored only sealed (0600), refused under a disabled key, and usable (signed statement verifies, I/O key opens what clients seal).
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '@airlock/common';
import { seal } from '@airlock/crypto';
import { createAwsKms, type KmsAdmin } from '@airlock/kms';
import { createKmsServer, resolveKmsServerConfig, type KmsServer } from '@airlock/kms/server';
import { createCertificateAuthority, issueServerCertificate } from '@airlock/pki';
import { verifyDataPlaneKeys } from '@airlock/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openKmsKeyVault, type DataPlaneKeyVault } from './key-vault.js';
import { loadOrCreateSealingKeys, sealingKeysPath } from './sealing-keys.js';

let directory: string;
let kmsServer: KmsServer;
let kms: KmsAdmin & { destroy(): void };
let vault: DataPlaneKeyVault;
let keyCount = 0;

beforeAll(async () => {
  const ca = await createCertificateAuthority({ commonName: 'sealing keys test CA' });
  directory = await mkdtemp(join(tmpdir(), 'airlock-sealing-keys-'));
  const tls = await issueServerCertificate({ ca, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  kmsServer = await createKmsServer(resolveKmsServerConfig({ dataDir: join(directory, 'kms'), tls: { cert: tls.cert, key: tls.key }, logger: createLogger({ level: 'silent' }) }));
  kms = createAwsKms({ endpoint: kmsServer.url, credentials: kmsServer.createAccessKey('sealing keys tests'), caBundle: ca.cert, maxAttempts: 1 });
  vault = await openKmsKeyVault(kms, 'alias/airlock/data-plane', { create: true });
}, 30_000);

afterAll(async () => {
  kms.destroy();
  await kmsServer.close();
  await rm(directory, { recursive: true, force: true });
});

async function rejection(promise: Promise<unknown>): Promise<{ code?: string; message?: string }> {
  return promise.then(
    () => {
      throw new Error('expected the promise to reject');
    },
    (reason: unknown) => reason as { code?: string; message?: string },
  );
}

describe('data-plane sealing keys', () => {
  it('are created on first use, stored only sealed in a 0600 file, and reloaded unchanged (same pin, same key ids)', async () => {
    const stateDir = join(directory, 'a', 'state');
    const first = await loadOrCreateSealingKeys(stateDir, 'keys-1', { vault });
    expect(first.created).toBe(true);
    expect(first.keys.identityFingerprint).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect((await stat(stateDir)).mode & 0o777).toBe(0o700);
    expect((await stat(sealingKeysPath(stateDir))).mode & 0o777).toBe(0o600);
    const second = await loadOrCreateSealingKeys(stateDir, 'keys-1', { vault });
    expect(second.created).toBe(false);
    expect(second.keys.identityFingerprint).toBe(first.keys.identityFingerprint);
    expect(second.keys.identityPublicKey.equals(first.keys.identityPublicKey)).toBe(true);
    expect(second.keys.io).toEqual(first.keys.io);
    expect(second.keys.secrets).toEqual(first.keys.secrets);
    expect(first.keys.io.keyId).not.toBe(first.keys.secrets.keyId);

    // What the reloaded I/O key opens is what a client sealed to the first one's public key.
    const aad = Buffer.from('run-inputs');
    const sealed = await seal({ recipientPublicKey: first.keys.io.publicKey, purpose: 'io', plaintext: Buffer.from('{"x":1}'), aad });
    expect((await second.keys.openIo(sealed, 'io', aad)).toString()).toBe('{"x":1}');
    await expect(second.keys.openIo(sealed, 'io', Buffer.from('other'))).rejects.toMatchObject({ code: 'CIPHERTEXT_AUTH_FAILED' });
    const toSecrets = await seal({ recipientPublicKey: first.keys.secrets.publicKey, purpose: 'io', plaintext: Buffer.from('x'), aad });
    await expect(second.keys.openIo(toSecrets, 'io', aad)).rejects.toMatchObject({ code: 'SEALED_WRONG_RECIPIENT' });

    // The signed statement verifies against the pin, for this cluster only.
    const verified = verifyDataPlaneKeys(second.keys.sign('keys-1'), first.keys.identityFingerprint, 'keys-1');
    expect(verified.ioKey.keyId).toBe(first.keys.io.keyId);
    expect(() => verifyDataPlaneKeys(second.keys.sign('keys-1'), first.keys.identityFingerprint, 'keys-2')).toThrow(expect.objectContaining({ code: 'DATA_PLANE_PIN_MISMATCH' }));

    // The file holds no private key material: the only base64 blob is the sealed one, and it is not the keys.
    const text = await readFile(sealingKeysPath(stateDir), 'utf8');
    const file = JSON.parse(text) as Record<string, unknown> & { sealedKeys: { keyId: string; ciphertext: string } };
    expect(file).toMatchObject({ version: 1, cluster: 'keys-1', identityFingerprint: first.keys.identityFingerprint, ioKeyId: first.keys.io.keyId, sealedKeys: { keyId: 'alias/airlock/data-plane' } });
    expect(text).not.toContain('PRIVATE KEY');
    first.keys.destroy();
    second.keys.destroy();
    await expect(second.keys.openIo(sealed, 'io', aad)).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });

  it('a disabled KMS key stops the load with KMS_KEY_DISABLED and does not replace the keys', async () => {
    const own = await openKmsKeyVault(kms, `alias/airlock/sealing-test-${keyCount++}`, { create: true });
    const stateDir = join(directory, 'b');
    const created = await loadOrCreateSealingKeys(stateDir, 'keys-1', { vault: own });
    const before = await readFile(sealingKeysPath(stateDir), 'utf8');
    await kms.disableKey(own.keyArn!);
    const error = await rejection(loadOrCreateSealingKeys(stateDir, 'keys-1', { vault: own }));
    expect(error.code).toBe('KMS_KEY_DISABLED');
    expect(error.message).toContain("the data plane's sealing-key set is sealed under KMS key");
    expect(await readFile(sealingKeysPath(stateDir), 'utf8')).toBe(before);
    await kms.enableKey(own.keyArn!);
    const again = await loadOrCreateSealingKeys(stateDir, 'keys-1', { vault: own });
    expect(again.keys.identityFingerprint).toBe(created.keys.identityFingerprint);
  });

  it('refuses another cluster’s file, a file whose public facts do not match its keys, and a blob moved from another file', async () => {
    const stateDir = join(directory, 'c');
    await loadOrCreateSealingKeys(stateDir, 'keys-1', { vault });
    expect((await rejection(loadOrCreateSealingKeys(stateDir, 'keys-2', { vault }))).code).toBe('CONFIG_INVALID');

    const text = await readFile(sealingKeysPath(stateDir), 'utf8');
    const file = JSON.parse(text) as { ioKeyId: string; cluster: string; sealedKeys: { ciphertext: string } };
    await writeFile(sealingKeysPath(stateDir), JSON.stringify({ ...file, ioKeyId: '0'.repeat(32) }));
    expect((await rejection(loadOrCreateSealingKeys(stateDir, 'keys-1', { vault }))).code).toBe('CONFIG_INVALID');

    // The blob is bound to its cluster (KMS encryption context): relabelling the file for another cluster does not open it.
    await writeFile(sealingKeysPath(stateDir), JSON.stringify({ ...file, cluster: 'keys-2' }));
    expect((await rejection(loadOrCreateSealingKeys(stateDir, 'keys-2', { vault }))).code).toBe('KMS_INVALID_CIPHERTEXT');

    await writeFile(sealingKeysPath(stateDir), 'not json');
    expect((await rejection(loadOrCreateSealingKeys(stateDir, 'keys-1', { vault }))).code).toBe('CONFIG_INVALID');
  });
});
