// Every file the KMS and the object store write holds secret or encrypted material: each must be 0600, each directory 0700.
import { lstat, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAwsKms } from '@airlock/kms';
import { createKmsServer, resolveKmsServerConfig, type KmsServer } from '@airlock/kms/server';
import { createS3ObjectStore } from '@airlock/objectstore';
import { createObjectStoreServer, resolveObjectStoreServerConfig, type ObjectStoreServer } from '@airlock/objectstore/server';
import { createCertificateAuthority, issueServerCertificate } from '@airlock/pki';
import { captureLogger } from '@airlock/testing';

/** Every path under `root` with its permission bits, directories marked. */
async function modes(root: string): Promise<Array<{ path: string; mode: number; directory: boolean }>> {
  const found: Array<{ path: string; mode: number; directory: boolean }> = [];
  for (const entry of await readdir(root, { recursive: true })) {
    const info = await lstat(join(root, entry));
    found.push({ path: entry, mode: info.mode & 0o777, directory: info.isDirectory() });
  }
  return found;
}

let dir: string;
let kmsServer: KmsServer;
let store: ObjectStoreServer;
let kms: ReturnType<typeof createAwsKms>;
let client: ReturnType<typeof createS3ObjectStore>;
// The test runner's own umask (typically 022) stays as it is: the servers must not depend on the caller's.
const logs = captureLogger('file-modes');

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'airlock-file-modes-'));
  const ca = await createCertificateAuthority();
  const tls = await issueServerCertificate({ ca, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  kmsServer = await createKmsServer(resolveKmsServerConfig({ dataDir: join(dir, 'kms'), tls, logger: logs.log }));
  const credentials = kmsServer.createAccessKey('file modes');
  kms = createAwsKms({ endpoint: kmsServer.url, credentials, caBundle: ca.cert, maxAttempts: 1 });
  store = await createObjectStoreServer(
    resolveObjectStoreServerConfig({
      dataDir: join(dir, 'objects'),
      tls,
      kms,
      lookupSecret: (id) => (id === credentials.accessKeyId ? credentials.secretAccessKey : undefined),
      logger: logs.log,
    }),
  );
  client = createS3ObjectStore({ endpoint: store.url, credentials, caBundle: ca.cert, maxAttempts: 1 });
});

afterAll(async () => {
  client?.destroy();
  await store?.close();
  kms?.destroy();
  await kmsServer?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('file modes of the KMS and object store data directories', () => {
  it('are 0600 for every file (the KMS database and its WAL and SHM included) and 0700 for every directory', async () => {
    const key = await kms.createKey({ description: 'file modes' });
    await kms.generateDataKey(key.keyId, { purpose: 'file-modes' });
    await client.createBucket('modes');
    await client.put('modes', 'small', 'secret payload');
    await client.put('modes', 'big', Buffer.alloc(12 * 1024 * 1024, 7));
    await kmsServer.verifyAudit();

    const found = await modes(dir);
    // What the test must have seen for it to mean anything: the WAL-mode database and its side files.
    expect(found.map((f) => f.path)).toEqual(expect.arrayContaining([join('kms', 'kms.db'), join('kms', 'kms.db-wal'), join('kms', 'kms.db-shm')]));
    const wrong = found.filter((f) => f.mode !== (f.directory ? 0o700 : 0o600)).map((f) => `${f.path} ${f.mode.toString(8)}`);
    expect(wrong).toEqual([]);
  });
});
