// `airlock objectstore serve`: run the embedded S3-compatible store alone, against the data directory's KMS.
import { mkdir, readFile } from 'node:fs/promises';
import { createLogger, writeFileAtomic, type Logger } from '@airlock/common';
import { createAwsKms, type KeyEventStatus } from '@airlock/kms';
import { listenerLimitsFromEnv, type ConnectionBudget } from '@airlock/pki';
import { createObjectStoreServer, resolveObjectStoreServerConfig, type ObjectStoreServer } from '@airlock/objectstore/server';
import { processConnectionBudget } from '../internal/connection-budget.js';
import { layout, resolveDataDir } from '../internal/data-dir.js';
import { parseCredentialsFile, readKmsEndpoint } from '../internal/kms-client.js';
import { issueLocalServerCertificate, loadLocalCa, type ControlPlaneKeyFlags } from '../internal/local-ca.js';
import { print } from '../internal/output.js';
import { planeFlagsHint, restrictFileCreationMode, serveUntilSignalled } from '../internal/plane-process.js';
import { logRateLimit, type LogRateFlags } from '../internal/log-flags.js';

export interface ObjectStoreEndpointFile {
  readonly endpoint: string;
  readonly region: string;
  readonly caBundle: string;
  readonly credentialsFile: string;
  readonly profile: string;
}

export interface ObjectStoreServeOptions extends ControlPlaneKeyFlags, LogRateFlags {
  readonly dataDir?: string;
  readonly host: string;
  readonly port: number;
  /** KMS endpoint; default: the data directory's KMS (kms/endpoint.json). */
  readonly kms?: string;
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
}

/**
 * Starts the store for a data directory. It talks to the KMS with the data directory's access key,
 * and accepts that same key from S3 clients: one credentials file serves `aws s3` and `aws kms`. Its listener limits
 * are the defaults with what `env` sets (AIRLOCK_LISTENER_*, docs/listener-limits.md).
 */
export async function startLocalObjectStore(
  dataDir: string,
  options: Omit<ObjectStoreServeOptions, 'dataDir' | 'logLevel'> & {
    readonly connectionBudget?: ConnectionBudget;
    /** The process's other key-event subscriptions, for the store's /health (ObjectStoreServerOptions.keyEventHolders). */
    readonly keyEventHolders?: Readonly<Record<string, () => KeyEventStatus>>;
  },
  log: Logger,
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ server: ObjectStoreServer; endpoint: ObjectStoreEndpointFile; close: () => Promise<void> }> {
  const kmsEndpoint = await readKmsEndpoint(dataDir);
  const credentials = parseCredentialsFile(await readFile(kmsEndpoint.credentialsFile, 'utf8'), kmsEndpoint.profile);
  const ca = await loadLocalCa(dataDir, options, log);
  // The store's KMS calls come from the client's own bounded pool (DEFAULT_INTERNAL_POOL): when the
  // KMS runs in this process (airlock data-plane serve), its listener admits them past its public caps.
  const kms = createAwsKms({
    endpoint: options.kms ?? kmsEndpoint.endpoint,
    region: kmsEndpoint.region,
    credentials,
    caBundle: await readFile(kmsEndpoint.caBundle, 'utf8'),
  });
  const tls = await issueLocalServerCertificate(ca);
  const server = await createObjectStoreServer(
    resolveObjectStoreServerConfig({
      dataDir: layout.objectStoreDir(dataDir),
      tls: { cert: tls.cert, key: tls.key },
      kms,
      lookupSecret: (id) => (id === credentials.accessKeyId ? credentials.secretAccessKey : undefined),
      host: options.host,
      port: options.port,
      region: kmsEndpoint.region,
      logger: log,
      limits: listenerLimitsFromEnv(env, 's3'),
      ...(options.connectionBudget === undefined ? {} : { connectionBudget: options.connectionBudget }),
      ...(options.keyEventHolders === undefined ? {} : { keyEventHolders: options.keyEventHolders }),
    }),
  ).catch((error: unknown) => {
    kms.destroy();
    throw error;
  });
  const endpoint: ObjectStoreEndpointFile = {
    endpoint: server.url,
    region: server.region,
    caBundle: layout.caCert(dataDir),
    credentialsFile: kmsEndpoint.credentialsFile,
    profile: kmsEndpoint.profile,
  };
  await writeFileAtomic(layout.objectStoreEndpoint(dataDir), `${JSON.stringify(endpoint, null, 2)}\n`, { mode: 0o644 });
  return {
    server,
    endpoint,
    close: async () => {
      await server.close();
      kms.destroy();
    },
  };
}

export async function runObjectStoreServe(options: ObjectStoreServeOptions): Promise<void> {
  restrictFileCreationMode();
  const dataDir = resolveDataDir(options.dataDir);
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const log = createLogger({ name: 'objectstore', level: options.logLevel, rateLimit: logRateLimit(options) });
  const budget = await processConnectionBudget();
  const { endpoint, close } = await startLocalObjectStore(dataDir, { ...options, ...(budget === undefined ? {} : { connectionBudget: budget }) }, log);
  const stopped = serveUntilSignalled('the object store', () => close());
  print(`Airlock object store listening on ${endpoint.endpoint} (region ${endpoint.region}, path-style)`);
  print(`  CA bundle:   ${endpoint.caBundle}`);
  print(`  credentials: ${endpoint.credentialsFile}  (the KMS access key; profile "${endpoint.profile}")`);
  print();
  print('Try it with the AWS CLI:');
  print(`  export AWS_CA_BUNDLE=${endpoint.caBundle} AWS_SHARED_CREDENTIALS_FILE=${endpoint.credentialsFile}`);
  print(`  aws s3 mb s3://reports --endpoint-url ${endpoint.endpoint} --region ${endpoint.region}`);
  print(`  aws s3api get-bucket-encryption --bucket reports --endpoint-url ${endpoint.endpoint}`);
  const hint = planeFlagsHint(process.execArgv, 'objectstore serve');
  if (hint !== undefined) print(hint);
  print('Press Ctrl-C to stop.');
  await stopped;
}
