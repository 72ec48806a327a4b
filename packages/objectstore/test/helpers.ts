// Test helpers: a real embedded KMS over TLS and a storage engine on a temporary directory.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger, Redactor } from '@airlock/common';
import { createAwsKms, type KmsAdmin } from '@airlock/kms';
import { createKmsServer, resolveKmsServerConfig, type KmsServer } from '@airlock/kms/server';
import { createCertificateAuthority, issueServerCertificate, type CertificateAuthority } from '@airlock/pki';
import { StorageEngine } from '../src/internal/engine.js';

export interface TestStack {
  readonly dir: string;
  readonly ca: CertificateAuthority;
  readonly kmsServer: KmsServer;
  /** Admin client for the tests themselves (create, disable, enable keys). */
  readonly kms: KmsAdmin & { destroy(): void };
  /** KMS calls the engine made, by operation. */
  readonly calls: Record<string, number>;
  engine: StorageEngine;
  reopen(): Promise<void>;
  stop(): Promise<void>;
}

export async function startTestStack(): Promise<TestStack> {
  const dir = await mkdtemp(join(tmpdir(), 'airlock-os-'));
  const ca = await createCertificateAuthority();
  const tls = await issueServerCertificate({ ca, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  const log = createLogger({ level: 'silent', redactor: new Redactor() });
  const kmsServer = await createKmsServer(resolveKmsServerConfig({ dataDir: join(dir, 'kms'), tls: { cert: tls.cert, key: tls.key }, logger: log }));
  const credentials = kmsServer.createAccessKey('objectstore tests');
  const client = (): KmsAdmin & { destroy(): void } =>
    createAwsKms({ endpoint: kmsServer.url, credentials, caBundle: ca.cert, maxAttempts: 1 });
  const kms = client();
  const calls: Record<string, number> = {};
  const engineKms = client();
  // Counts every KMS call the engine makes, without changing what it does.
  const counted = new Proxy(engineKms, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        calls[String(prop)] = (calls[String(prop)] ?? 0) + 1;
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  const open = (): Promise<StorageEngine> => StorageEngine.open({ dataDir: join(dir, 'objects'), kms: counted, defaultKeyId: 'alias/airlock/s3', log });
  const stack: TestStack = {
    dir,
    ca,
    kmsServer,
    kms,
    calls,
    engine: await open(),
    async reopen() {
      await stack.engine.close();
      stack.engine = await open();
    },
    async stop() {
      await stack.engine.close();
      kms.destroy();
      engineKms.destroy();
      await kmsServer.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
  return stack;
}
