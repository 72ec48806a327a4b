// Test helpers: a real KMS server over real TLS in a temporary directory, with a movable clock and captured logs.
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger, Redactor } from '@airlock/common';
import { createCertificateAuthority, issueServerCertificate } from '@airlock/pki';
import { awsCliEnv } from '@airlock/testing';
import { createAwsKms } from '../src/aws-kms.js';
import { createKmsServer, resolveKmsServerConfig, type KmsServer, type KmsServerOptions } from '../src/server.js';

export interface TestKms {
  readonly server: KmsServer;
  readonly dir: string;
  readonly caPem: string;
  readonly credentials: { accessKeyId: string; secretAccessKey: string };
  readonly clock: { offsetMs: number };
  readonly logs: string[];
  client(): ReturnType<typeof createAwsKms>;
  /** Environment for /usr/bin/aws against this server. */
  awsEnv(): NodeJS.ProcessEnv;
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A KMS on a new temporary directory. `seedDataDir` is a closed KMS data directory to start from (a
 * copy: the seed is never changed), so that tests can share a prepared store without sharing state.
 */
export async function startTestKms(overrides: Partial<KmsServerOptions> = {}, seedDataDir?: string): Promise<TestKms> {
  const dir = await mkdtemp(join(tmpdir(), 'airlock-kms-'));
  if (seedDataDir !== undefined) await cp(seedDataDir, join(dir, 'kms'), { recursive: true });
  const ca = await createCertificateAuthority();
  const tls = await issueServerCertificate({ ca, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  const clock = { offsetMs: 0 };
  const logs: string[] = [];
  const logger = createLogger({ level: 'trace', destination: { write: (line: string) => void logs.push(line) }, redactor: new Redactor() });
  const { writeFile } = await import('node:fs/promises');
  await writeFile(join(dir, 'ca.pem'), ca.cert);
  const options: KmsServerOptions = {
    dataDir: join(dir, 'kms'),
    tls: { cert: tls.cert, key: tls.key },
    now: () => Date.now() + clock.offsetMs,
    logger,
    ...overrides,
  };
  let server = await createKmsServer(resolveKmsServerConfig(options));
  const credentials = server.createAccessKey('test');
  const clients: Array<ReturnType<typeof createAwsKms>> = [];
  const state: TestKms = {
    get server() {
      return server;
    },
    dir,
    caPem: ca.cert,
    credentials,
    clock,
    logs,
    client() {
      const client = createAwsKms({ endpoint: server.url, region: 'us-east-1', credentials, caBundle: ca.cert, maxAttempts: 1 });
      clients.push(client);
      return client;
    },
    awsEnv() {
      return awsCliEnv({ credentials, caBundlePath: join(dir, 'ca.pem'), home: dir });
    },
    async restart() {
      await server.close();
      server = await createKmsServer(resolveKmsServerConfig({ ...options, port: server.port }));
    },
    async stop() {
      for (const client of clients) client.destroy();
      await server.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
  return state;
}
