// Disk full: the store answers S3 InternalError, logs the cause, keeps no partial object, and keeps serving.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { buffer } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, Redactor } from '@airlock/common';
import { createAwsKms } from '@airlock/kms';
import { createKmsServer, resolveKmsServerConfig, type KmsServer } from '@airlock/kms/server';
import { createCertificateAuthority, issueServerCertificate } from '@airlock/pki';
import { createS3ObjectStore } from '../src/s3-object-store.js';
import { createObjectStoreServer, resolveObjectStoreServerConfig, type ObjectStoreServer } from '../src/server.js';

// A real full disk: a 4 MiB tmpfs. Mounting needs root (CI runs as root). Where it cannot be
// mounted the test fails with the reason; AIRLOCK_TEST_SKIP_DISK_FULL=1 is the one explicit way to skip it.
const SKIP_DISK_FULL_ENV = 'AIRLOCK_TEST_SKIP_DISK_FULL';
const skipDiskFull = process.env[SKIP_DISK_FULL_ENV] === '1';
const root = mkdtempSync(join(tmpdir(), 'airlock-diskfull-'));
const mountPoint = join(root, 'small-disk');
mkdirSync(mountPoint);
let mounted = false;
let mountError: string | undefined;
if (!skipDiskFull) {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mountPoint], { stdio: ['ignore', 'ignore', 'pipe'] });
    mounted = true;
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString('utf8').trim();
    mountError = stderr !== undefined && stderr !== '' ? stderr : (error as Error).message;
  }
}

let kmsServer: KmsServer;
let server: ObjectStoreServer;
const logs: string[] = [];
let client: ReturnType<typeof createS3ObjectStore>;
let storeKms: ReturnType<typeof createAwsKms>;

beforeAll(async () => {
  if (!mounted) return;
  const ca = await createCertificateAuthority();
  const tls = await issueServerCertificate({ ca, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  const logger = createLogger({ level: 'info', destination: { write: (l: string) => void logs.push(l) }, redactor: new Redactor() });
  kmsServer = await createKmsServer(resolveKmsServerConfig({ dataDir: join(root, 'kms'), tls: { cert: tls.cert, key: tls.key }, logger }));
  const credentials = kmsServer.createAccessKey('disk full');
  storeKms = createAwsKms({ endpoint: kmsServer.url, credentials, caBundle: ca.cert, maxAttempts: 1 });
  server = await createObjectStoreServer(
    resolveObjectStoreServerConfig({
      dataDir: join(mountPoint, 'objects'),
      tls: { cert: tls.cert, key: tls.key },
      kms: storeKms,
      lookupSecret: (id) => (id === credentials.accessKeyId ? credentials.secretAccessKey : undefined),
      logger,
    }),
  );
  client = createS3ObjectStore({ endpoint: server.url, credentials, caBundle: ca.cert, maxAttempts: 1 });
});

afterAll(async () => {
  if (mounted) {
    client.destroy();
    await server.close();
    storeKms.destroy();
    await kmsServer.close();
    execFileSync('umount', [mountPoint]);
  }
  rmSync(root, { recursive: true, force: true });
});

describe.skipIf(skipDiskFull)('disk full', () => {
  it('a PUT that fills the disk fails cleanly; smaller objects still work afterwards', async () => {
    if (!mounted) {
      throw new Error(`cannot mount a 4 MiB tmpfs for the disk-full test (needs root): ${String(mountError)}. Set ${SKIP_DISK_FULL_ENV}=1 to skip it on purpose.`);
    }
    await client.createBucket('full');
    await client.put('full', 'small', 'fits');
    const error = await client.put('full', 'big', randomBytes(6 * 1024 * 1024)).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ code: 'INTERNAL', details: { s3ErrorCode: 'InternalError' } });
    expect(logs.join('')).toContain('ENOSPC');
    await expect(client.head('full', 'big')).rejects.toMatchObject({ code: 'OBJECT_NOT_FOUND' });
    expect(readdirSync(join(mountPoint, 'objects', 'tmp'))).toEqual([]);
    // Space came back (the partial body was removed), so the store keeps working.
    await client.put('full', 'after', 'still works');
    expect((await buffer(await client.get('full', 'small'))).toString()).toBe('fits');
    expect((await buffer(await client.get('full', 'after'))).toString()).toBe('still works');
  });
});
