// The data plane's sealing keys follow their KMS key, against a real embedded KMS over TLS: zeroed within 100 ms of DisableKey on live key events, within 1 s with the event stream cut, loaded again on EnableKey.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger } from '@airlock/common';
import { seal } from '@airlock/crypto';
import { createAwsKms, createCachingKms, type Kms, type KmsAdmin } from '@airlock/kms';
import { createKmsServer, resolveKmsServerConfig, type KmsServer } from '@airlock/kms/server';
import { createCertificateAuthority, issueServerCertificate } from '@airlock/pki';
import { startTcpProxy, type TcpProxy } from '@airlock/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openKmsKeyVault, type DataPlaneKeyVault } from './key-vault.js';
import { createRevocableSealingKeys } from './revocable-sealing-keys.js';
import { loadOrCreateSealingKeys, type DataPlaneSealingKeys } from './sealing-keys.js';

let directory: string;
let kmsServer: KmsServer;
let caPem: string;
let credentials: { accessKeyId: string; secretAccessKey: string };
let kms: KmsAdmin & { destroy(): void };
let proxy: TcpProxy;
const clients: Array<{ destroy(): void }> = [];

beforeAll(async () => {
  const ca = await createCertificateAuthority({ commonName: 'revocable sealing keys test CA' });
  caPem = ca.cert;
  directory = await mkdtemp(join(tmpdir(), 'airlock-revocable-keys-'));
  const tls = await issueServerCertificate({ ca, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  kmsServer = await createKmsServer(resolveKmsServerConfig({ dataDir: join(directory, 'kms'), tls: { cert: tls.cert, key: tls.key }, logger: createLogger({ level: 'silent' }) }));
  credentials = kmsServer.createAccessKey('revocable sealing keys tests');
  kms = createAwsKms({ endpoint: kmsServer.url, credentials, caBundle: ca.cert, maxAttempts: 1 });
  proxy = await startTcpProxy({ host: '127.0.0.1', port: kmsServer.port });
}, 30_000);

afterAll(async () => {
  for (const c of clients) c.destroy();
  kms.destroy();
  await proxy.close();
  await kmsServer.close();
  await rm(directory, { recursive: true, force: true });
});

/** A data plane's keys under a fresh KMS key; `viaProxy` routes the key-event stream through the relay the test breaks. */
async function setUp(name: string, viaProxy: boolean) {
  const alias = `alias/dp-${name}`;
  const vault: DataPlaneKeyVault & { keyArn: string | undefined } = await openKmsKeyVault(kms, alias, { create: true });
  const stateDir = join(directory, name);
  const load = async (): Promise<DataPlaneSealingKeys> => (await loadOrCreateSealingKeys(stateDir, name, { vault })).keys;
  const stream = createAwsKms({ endpoint: viaProxy ? proxy.url : kmsServer.url, credentials, caBundle: caPem, maxAttempts: 1 });
  clients.push(stream);
  const watched = createCachingKms(Object.assign(Object.create(kms) as Kms, { subscribeKeyEvents: stream.subscribeKeyEvents.bind(stream) }));
  expect(await watched.waitForKeyEvents(5000)).toBe(true);
  const keys = createRevocableSealingKeys({ keys: await load(), reload: load, kms: watched, keyArn: vault.keyArn as string });
  const aad = Buffer.from('run/action');
  const sealed = await seal({ recipientPublicKey: keys.io.publicKey, purpose: 'io', plaintext: Buffer.from('payload'), aad });
  const open = () => keys.openIo(sealed, 'io', aad);
  return { alias, keys, watched, open };
}

/** Opens until refused; the time from `since` to the refusal, and its code. */
async function refusedAfter(open: () => Promise<Buffer>, since: number): Promise<{ ms: number; code: string }> {
  while (performance.now() - since < 3000) {
    try {
      await open();
    } catch (error) {
      return { ms: performance.now() - since, code: (error as { code: string }).code };
    }
    await sleep(5);
  }
  return { ms: Infinity, code: 'none' };
}

describe('revocable data-plane sealing keys', () => {
  it('are zeroed within 100 ms of DisableKey while key events are live, and loaded again on EnableKey', async () => {
    const { alias, keys, watched, open } = await setUp('live', false);
    try {
      expect((await open()).toString()).toBe('payload');
      const fingerprint = keys.identityFingerprint;
      for (let trial = 0; trial < 3; trial++) {
        await kms.disableKey(alias);
        const refused = await refusedAfter(open, performance.now());
        expect(refused.code).toBe('KMS_KEY_DISABLED');
        expect(refused.ms).toBeLessThanOrEqual(100);
        expect(keys.revoked).toBe(true);
        expect(() => keys.sign('live')).toThrow(expect.objectContaining({ code: 'KMS_KEY_DISABLED' }) as Error);
        await kms.enableKey(alias);
        let back = false;
        for (let i = 0; i < 100 && !back; i++) back = await open().then(() => true, async () => (await sleep(10), false));
        expect(back).toBe(true);
        expect(keys.identityFingerprint).toBe(fingerprint);
        expect(() => keys.sign('live')).not.toThrow();
      }
      await kms.scheduleKeyDeletion(alias, 7);
      expect((await refusedAfter(open, performance.now())).code).toBe('KMS_KEY_PENDING_DELETION');
    } finally {
      keys.destroy();
      watched.close();
    }
  });

  for (const mode of ['hang', 'drop'] as const) {
    it(`are refused within 1 s when the key-event stream is made to ${mode}`, async () => {
      proxy.setMode('pass');
      const { alias, keys, watched, open } = await setUp(`cut-${mode}`, true);
      try {
        expect((await open()).toString()).toBe('payload');
        proxy.setMode(mode);
        await kms.disableKey(alias);
        const refused = await refusedAfter(open, performance.now());
        expect(refused.code).toBe('KMS_KEY_DISABLED');
        expect(refused.ms).toBeLessThanOrEqual(1000);
        await kms.enableKey(alias);
        await sleep(1000);
        expect((await open()).toString()).toBe('payload');
      } finally {
        proxy.setMode('pass');
        keys.destroy();
        watched.close();
      }
    });
  }
});
