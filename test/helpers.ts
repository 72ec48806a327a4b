// Helpers shared by the repository-level (cross-plane) tests; those shared with package tests live in @airlock/testing.
import { join } from 'node:path';
import { createLogger, type Logger } from '@airlock/common';
import { openControlPlaneKey, openDatabase, resolveDatabaseConfig, type ControlPlaneDatabase } from '@airlock/control-plane';
import { openKmsKeyVault, type DataPlaneKeyVault } from '@airlock/data-plane';
import { createAwsKms } from '@airlock/kms';
import { createKmsServer, resolveKmsServerConfig } from '@airlock/kms/server';
import { issueServerCertificate, type CertificateAuthority } from '@airlock/pki';

/** Polls until `check` returns (or resolves to) a value other than undefined; fails after `timeoutMs`. */
export async function eventually<T>(what: string, timeoutMs: number, check: () => T | undefined | Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/**
 * The control-plane database of a test's directory: `control-plane.db`, its keys wrapped by a root
 * key file in the same directory, so that opening the directory again finds the same state.
 */
export async function openTestDatabase(directory: string, log: Logger): Promise<ControlPlaneDatabase> {
  const key = await openControlPlaneKey({ dir: directory }, log);
  const database = await openDatabase(resolveDatabaseConfig({ path: join(directory, 'control-plane.db'), key, log }));
  return {
    ...database,
    async close() {
      await database.close();
      key.dispose();
    },
  };
}

/**
 * A real embedded KMS over TLS in `directory`, and the data-plane key vault over its
 * `alias/airlock/data-plane` key, for agents started by cross-plane tests.
 */
export async function startTestKeyVault(directory: string, ca: CertificateAuthority): Promise<{ vault: DataPlaneKeyVault; close(): Promise<void> }> {
  const tls = await issueServerCertificate({ ca, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  const server = await createKmsServer(resolveKmsServerConfig({ dataDir: join(directory, 'kms'), tls: { cert: tls.cert, key: tls.key }, logger: createLogger({ level: 'silent' }) }));
  const kms = createAwsKms({ endpoint: server.url, credentials: server.createAccessKey('test key vault'), caBundle: ca.cert });
  const vault = await openKmsKeyVault(kms, undefined, { create: true });
  return {
    vault,
    async close() {
      kms.destroy();
      await server.close();
    },
  };
}
