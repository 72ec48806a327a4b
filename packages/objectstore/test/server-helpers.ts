// Test helpers: a real KMS and a real object store over TLS, sharing one access key, plus env for the AWS CLI and s3cmd.
import { chmod, cp, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from 'node:https';
import { S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { createLogger, Redactor, type Logger } from '@airlock/common';
import { createAwsKms, type Kms, type KmsAdmin, type KmsKeyEventSource } from '@airlock/kms';
import { createKmsServer, resolveKmsServerConfig, type KmsServer } from '@airlock/kms/server';
import { createCertificateAuthority, issueServerCertificate, tlsClientOptions } from '@airlock/pki';
import { awsCliEnv } from '@airlock/testing';
import { expect } from 'vitest';
import { createS3ObjectStore } from '../src/s3-object-store.js';
import { createObjectStoreServer, resolveObjectStoreServerConfig, type ObjectStoreServer, type ObjectStoreServerOptions } from '../src/server.js';

export interface TestObjectStore {
  readonly dir: string;
  readonly caPath: string;
  readonly caPem: string;
  readonly kmsServer: KmsServer;
  readonly kms: KmsAdmin & { destroy(): void };
  readonly server: ObjectStoreServer;
  readonly credentials: { accessKeyId: string; secretAccessKey: string };
  readonly logs: string[];
  /** A fresh ObjectStore client (the @aws-sdk/client-s3 adapter). */
  client(): ReturnType<typeof createS3ObjectStore>;
  /** A fresh @aws-sdk/client-s3 client for the store (path-style, one attempt), for operations ObjectStore lacks. */
  sdk(): S3Client;
  /** Environment for /usr/bin/aws (v2) against both endpoints. */
  awsEnv(): NodeJS.ProcessEnv;
  /** Path of an s3cmd config file for this store. */
  s3cmdConfig(): Promise<string>;
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export interface TestObjectStoreOptions {
  /** The logger of the KMS and the store. @default a debug-level logger into `logs` */
  readonly logger?: Logger;
  /** A data directory to start from (its `kms/` and `objects/`), copied first: a store written by an earlier release. @default none, a new store */
  readonly from?: string;
  /**
   * Wraps the store's own KMS client (to count its calls, or to route its key-event stream through a
   * proxy the test breaks). @default the client as it is
   */
  readonly wrapStoreKms?: (storeKms: KmsAdmin & KmsKeyEventSource, kms: { url: string; credentials: { accessKeyId: string; secretAccessKey: string }; caPem: string }) => Kms;
  /** Options of the object store server beyond those the helper sets. @default none */
  readonly server?: Partial<Pick<ObjectStoreServerOptions, 'keyCacheTtlMs' | 'kmsKeyEvents' | 'keyEventHolders'>>;
}

/** Copies a data directory with the modes the servers require (git keeps none): files 0600, directories 0700. */
async function copyDataDirectory(from: string, to: string): Promise<void> {
  await cp(from, to, { recursive: true });
  for (const entry of await readdir(to, { recursive: true, withFileTypes: true })) {
    await chmod(join(entry.parentPath, entry.name), entry.isDirectory() ? 0o700 : 0o600);
  }
}

export async function startTestObjectStore(options: TestObjectStoreOptions = {}): Promise<TestObjectStore> {
  const dir = await mkdtemp(join(tmpdir(), 'airlock-s3-'));
  if (options.from !== undefined) await copyDataDirectory(options.from, dir);
  const ca = await createCertificateAuthority();
  const tls = await issueServerCertificate({ ca, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  const caPath = join(dir, 'ca.pem');
  await writeFile(caPath, ca.cert);
  const logs: string[] = [];
  const logger = options.logger ?? createLogger({ level: 'debug', destination: { write: (l: string) => void logs.push(l) }, redactor: new Redactor() });
  const kmsServer = await createKmsServer(resolveKmsServerConfig({ dataDir: join(dir, 'kms'), tls: { cert: tls.cert, key: tls.key }, logger }));
  const credentials = kmsServer.createAccessKey('objectstore tests');
  const kms = createAwsKms({ endpoint: kmsServer.url, credentials, caBundle: ca.cert, maxAttempts: 1 });
  const storeKms = createAwsKms({ endpoint: kmsServer.url, credentials, caBundle: ca.cert, maxAttempts: 1 });
  const storeKmsSeen = options.wrapStoreKms?.(storeKms, { url: kmsServer.url, credentials, caPem: ca.cert }) ?? storeKms;
  const start = (port = 0): Promise<ObjectStoreServer> =>
    createObjectStoreServer(
      resolveObjectStoreServerConfig({
        ...options.server,
        dataDir: join(dir, 'objects'),
        tls: { cert: tls.cert, key: tls.key },
        kms: storeKmsSeen,
        lookupSecret: (id) => (id === credentials.accessKeyId ? credentials.secretAccessKey : undefined),
        port,
        logger,
      }),
    );
  let server = await start();
  const clients: Array<{ destroy(): void }> = [];
  const stack: TestObjectStore = {
    dir,
    caPath,
    caPem: ca.cert,
    kmsServer,
    kms,
    get server() {
      return server;
    },
    credentials,
    logs,
    client() {
      const c = createS3ObjectStore({ endpoint: server.url, credentials, caBundle: ca.cert, maxAttempts: 1 });
      clients.push(c);
      return c;
    },
    sdk() {
      const c = new S3Client({
        region: 'us-east-1',
        endpoint: server.url,
        credentials,
        forcePathStyle: true,
        maxAttempts: 1,
        requestHandler: new NodeHttpHandler({ httpsAgent: new Agent({ keepAlive: true, ...tlsClientOptions({ ca: ca.cert }) }) }),
      });
      clients.push(c);
      return c;
    },
    awsEnv() {
      return awsCliEnv({ credentials, caBundlePath: caPath, home: dir });
    },
    async s3cmdConfig() {
      const host = new URL(server.url).host;
      const path = join(dir, 's3cfg');
      await writeFile(
        path,
        [
          '[default]',
          `access_key = ${credentials.accessKeyId}`,
          `secret_key = ${credentials.secretAccessKey}`,
          `host_base = ${host}`,
          `host_bucket = ${host}`,
          'use_https = True',
          'check_ssl_certificate = True',
          `ca_certs_file = ${caPath}`,
          'signature_v2 = False',
          'bucket_location = us-east-1',
          '',
        ].join('\n'),
        { mode: 0o600 },
      );
      return path;
    },
    async restart() {
      const port = server.port;
      await server.close();
      server = await start(port);
    },
    async stop() {
      for (const c of clients) c.destroy();
      await server.close();
      storeKms.destroy();
      kms.destroy();
      await kmsServer.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
  return stack;
}

/**
 * Makes an SDK client send `headers` with every request, signed like the rest: for headers the
 * SDK has no parameter for (SSE on a GET, SSE-C without its algorithm).
 */
export function sendHeaders<C extends S3Client>(client: C, headers: Readonly<Record<string, string>>): C {
  client.middlewareStack.add(
    (next) => (args) => {
      const request = args.request as { headers?: Record<string, string> };
      if (request.headers !== undefined) Object.assign(request.headers, headers);
      return next(args);
    },
    { step: 'build', name: 'airlockTestExtraHeaders' },
  );
  return client;
}

/** The S3 error a call was refused with (its name and HTTP status); fails the test when the call succeeds or fails some other way. */
export async function refusal(send: Promise<unknown>): Promise<{ name: string; status: number | undefined }> {
  const error = await send.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(S3ServiceException);
  const e = error as S3ServiceException;
  return { name: e.name, status: e.$metadata.httpStatusCode };
}
