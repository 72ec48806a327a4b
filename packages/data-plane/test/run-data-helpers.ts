// Test helpers: the data plane's real embedded KMS and object store over TLS (one access key, as `airlock data-plane serve` runs them), its key vault and sealing keys.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger, type Logger } from '@airlock/common';
import { createAwsKms, type KmsAdmin } from '@airlock/kms';
import { createKmsServer, resolveKmsServerConfig, type KmsServer } from '@airlock/kms/server';
import { createS3ObjectStore } from '@airlock/objectstore';
import { createObjectStoreServer, resolveObjectStoreServerConfig, type ObjectStoreServer } from '@airlock/objectstore/server';
import { createCertificateAuthority, issueServerCertificate, type CertificateKeyPair } from '@airlock/pki';
import { openKmsKeyVault, type DataPlaneKeyVault } from '../src/internal/key-vault.js';
import { loadOrCreateSealingKeys, type DataPlaneSealingKeys } from '../src/internal/sealing-keys.js';

export interface DataPlaneStorage {
  readonly dir: string;
  readonly ca: CertificateKeyPair;
  readonly caPath: string;
  readonly kmsServer: KmsServer;
  /** An admin KMS client (disable and enable keys). */
  readonly kms: KmsAdmin & { destroy(): void };
  readonly vault: DataPlaneKeyVault & { readonly keyArn: string | undefined };
  readonly sealingKeys: DataPlaneSealingKeys;
  readonly server: ObjectStoreServer;
  /** The data plane's own S3 client (the same access key as the KMS, as the CLI wires it). */
  readonly objectStore: ReturnType<typeof createS3ObjectStore>;
  close(): Promise<void>;
}

/** Starts a KMS and an object store with TLS in a temporary directory; `log` receives both servers' logs. */
export async function startDataPlaneStorage(log: Logger = createLogger({ level: 'silent' })): Promise<DataPlaneStorage> {
  const dir = await mkdtemp(join(tmpdir(), 'airlock-run-data-'));
  const ca = await createCertificateAuthority({ commonName: 'run data test CA' });
  const tls = await issueServerCertificate({ ca, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  const caPath = join(dir, 'ca.pem');
  await writeFile(caPath, ca.cert);
  const kmsServer = await createKmsServer(resolveKmsServerConfig({ dataDir: join(dir, 'kms'), tls: { cert: tls.cert, key: tls.key }, logger: log }));
  const credentials = kmsServer.createAccessKey('data plane tests');
  const kms = createAwsKms({ endpoint: kmsServer.url, credentials, caBundle: ca.cert, maxAttempts: 1 });
  const storeKms = createAwsKms({ endpoint: kmsServer.url, credentials, caBundle: ca.cert, maxAttempts: 1 });
  const vault = await openKmsKeyVault(kms, undefined, { create: true });
  const { keys: sealingKeys } = await loadOrCreateSealingKeys(join(dir, 'agent'), 'local', { vault });
  const server = await createObjectStoreServer(
    resolveObjectStoreServerConfig({
      dataDir: join(dir, 'objects'),
      tls: { cert: tls.cert, key: tls.key },
      kms: storeKms,
      lookupSecret: (id) => (id === credentials.accessKeyId ? credentials.secretAccessKey : undefined),
      port: 0,
      logger: log,
    }),
  );
  const objectStore = createS3ObjectStore({ endpoint: server.url, credentials, caBundle: ca.cert, maxAttempts: 1 });
  return {
    dir,
    ca,
    caPath,
    kmsServer,
    kms,
    vault,
    sealingKeys,
    server,
    objectStore,
    async close() {
      objectStore.destroy();
      await server.close();
      storeKms.destroy();
      kms.destroy();
      await kmsServer.close();
      sealingKeys.destroy();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
