// Root-key sources (file, passphrase, environment) and proof that no key material or credential reaches the logs.
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger, Redactor } from '@airlock/common';
import { createCertificateAuthority, issueServerCertificate } from '@airlock/pki';
import { createAwsKms } from '../src/aws-kms.js';
import { createCachingKms } from '../src/data-key-cache.js';
import { createKmsServer, resolveKmsServerConfig, type KmsServerOptions } from '../src/server.js';

let dir: string;
let tls: { cert: string; key: string };
let caPem: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'airlock-root-'));
  const ca = await createCertificateAuthority();
  caPem = ca.cert;
  const leaf = await issueServerCertificate({ ca, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  tls = { cert: leaf.cert, key: leaf.key };
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function capture(): { logger: ReturnType<typeof createLogger>; text: () => string } {
  const lines: string[] = [];
  return { logger: createLogger({ level: 'trace', destination: { write: (l: string) => void lines.push(l) }, redactor: new Redactor() }), text: () => lines.join('') };
}

async function start(options: Partial<KmsServerOptions>, env: NodeJS.ProcessEnv = {}) {
  return createKmsServer(resolveKmsServerConfig({ dataDir: join(dir, 'kms'), tls, ...options }, env));
}

describe('root key', () => {
  it('creates a 0600 root key file on first start, warns naming it, and reuses it', async () => {
    const log = capture();
    const server = await start({ logger: log.logger });
    const file = join(dir, 'kms', 'root.key');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(log.text()).toContain(file);
    expect(log.text()).toContain('"level":40');
    const rootKey = (await readFile(file, 'utf8')).trim();
    const key = server.createAccessKey('t');
    const client = createAwsKms({ endpoint: server.url, credentials: key, caBundle: caPem, maxAttempts: 1 });
    const created = await client.createKey();
    const dk = await client.generateDataKey(created.keyId, { canary: 'ctx' });
    client.destroy();
    await server.close();

    // Restart: same file, same keys.
    const again = await start({ logger: log.logger });
    const client2 = createAwsKms({ endpoint: again.url, credentials: key, caBundle: caPem, maxAttempts: 1 });
    expect((await client2.decrypt(dk.ciphertextBlob, { canary: 'ctx' })).plaintext.equals(dk.plaintext)).toBe(true);
    // The key-event path too: a subscribed cache holding the data key, and a disable/enable published to it.
    const cached = createCachingKms(client2);
    expect(await cached.waitForKeyEvents(5000)).toBe(true);
    expect((await cached.decrypt(dk.ciphertextBlob, { canary: 'ctx' })).plaintext.equals(dk.plaintext)).toBe(true);
    await client2.disableKey(created.keyId);
    await client2.enableKey(created.keyId);
    cached.close();
    expect(log.text()).toContain('KMS key-event stream opened');
    client2.destroy();
    await again.close();

    // Nothing secret ever reached the logs, at trace level.
    const text = log.text();
    for (const secret of [rootKey, key.secretAccessKey, dk.plaintext.toString('base64'), dk.plaintext.toString('hex')]) {
      expect(text.includes(secret)).toBe(false);
    }
  });

  it('refuses a root key file readable by others, and a damaged one', async () => {
    const file = join(dir, 'root.key');
    await writeFile(file, `${randomBytes(32).toString('base64')}\n`, { mode: 0o644 });
    await chmod(file, 0o644);
    await expect(start({ rootKey: { file } })).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
    await writeFile(file, 'not base64 key\n', { mode: 0o600 });
    await chmod(file, 0o600);
    await expect(start({ rootKey: { file } })).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
  });

  it('derives the root key from a passphrase (scrypt) and refuses the wrong one', async () => {
    const server = await start({ rootKey: { passphrase: 'correct horse battery staple' } });
    const key = server.createAccessKey('t');
    await server.close();
    const reopened = await start({ rootKey: { passphrase: 'correct horse battery staple' } });
    await reopened.close();
    await expect(start({ rootKey: { passphrase: 'wrong horse battery staple' } })).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
    await expect(start({ rootKey: { passphrase: 'short' } })).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
    expect(key.accessKeyId).toMatch(/^AKIA[A-Z2-7]{16}$/);
  }, 30_000);

  it('reads the root key from an environment variable and refuses a different one', async () => {
    const value = randomBytes(32).toString('base64');
    const server = await start({ rootKey: { env: 'AIRLOCK_TEST_ROOT' } }, { AIRLOCK_TEST_ROOT: value });
    await server.close();
    await expect(start({ rootKey: { env: 'AIRLOCK_TEST_ROOT' } }, {})).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
    await expect(start({ rootKey: { env: 'AIRLOCK_TEST_ROOT' } }, { AIRLOCK_TEST_ROOT: randomBytes(32).toString('base64') })).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
    });
  });
});
