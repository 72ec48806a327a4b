// `airlock kms serve` and `airlock kms audit verify`: run the embedded KMS alone and check its audit chain.
import { access, mkdir } from 'node:fs/promises';
import { createLogger, writeFileAtomic, type Logger } from '@airlock/common';
import { createKmsServer, resolveKmsServerConfig, verifyKmsAudit, type KmsServer, type RootKeyOptions } from '@airlock/kms/server';
import { listenerLimitsFromEnv, type ConnectionBudget } from '@airlock/pki';
import { processConnectionBudget } from '../internal/connection-budget.js';
import { layout, resolveDataDir } from '../internal/data-dir.js';
import { issueLocalServerCertificate, loadLocalCa, type ControlPlaneKeyFlags } from '../internal/local-ca.js';
import { rootKeySourceFromFlags } from '../internal/root-key-flags.js';
import type { KmsEndpointFile } from '../internal/kms-client.js';
import { print, printJson } from '../internal/output.js';
import { restrictFileCreationMode, serveUntilSignalled } from '../internal/plane-process.js';
import { logRateLimit, type LogRateFlags } from '../internal/log-flags.js';

export interface RootKeyFlags {
  readonly rootKeyFile?: string;
  readonly rootKeyEnv?: string;
  readonly rootKeyPassphraseEnv?: string;
}

/** The KMS's root key source from its --root-key-* flags. */
export function rootKeyFromFlags(flags: RootKeyFlags, env: NodeJS.ProcessEnv = process.env): RootKeyOptions | undefined {
  return rootKeySourceFromFlags('root-key', { file: flags.rootKeyFile, env: flags.rootKeyEnv, passphraseEnv: flags.rootKeyPassphraseEnv }, env);
}

export interface KmsServeOptions extends RootKeyFlags, ControlPlaneKeyFlags, LogRateFlags {
  readonly dataDir?: string;
  readonly host: string;
  readonly port: number;
  readonly region: string;
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
}

/** Starts the KMS for a data directory, with the listener limits `env` sets (AIRLOCK_LISTENER_*), and writes its endpoint file and (first time) credentials. */
export async function startLocalKms(
  dataDir: string,
  options: Omit<KmsServeOptions, 'dataDir' | 'logLevel'> & { readonly connectionBudget?: ConnectionBudget },
  log: Logger,
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ server: KmsServer; endpoint: KmsEndpointFile }> {
  const ca = await loadLocalCa(dataDir, options, log);
  const tls = await issueLocalServerCertificate(ca);
  const rootKey = rootKeyFromFlags(options);
  const server = await createKmsServer(
    resolveKmsServerConfig({
      dataDir: layout.kmsDir(dataDir),
      tls: { cert: tls.cert, key: tls.key },
      host: options.host,
      port: options.port,
      region: options.region,
      logger: log,
      limits: listenerLimitsFromEnv(env, 'kms'),
      ...(rootKey === undefined ? {} : { rootKey }),
      ...(options.connectionBudget === undefined ? {} : { connectionBudget: options.connectionBudget }),
    }),
  );
  const credentialsFile = layout.kmsCredentials(dataDir);
  const haveCredentials = await access(credentialsFile).then(() => true, () => false);
  if (!haveCredentials) {
    const key = server.createAccessKey('issued by airlock kms serve');
    await writeFileAtomic(
      credentialsFile,
      `# Airlock KMS access key, issued ${new Date().toISOString()}. Keep this file private.\n[default]\naws_access_key_id = ${key.accessKeyId}\naws_secret_access_key = ${key.secretAccessKey}\n`,
      { mode: 0o600 },
    );
  }
  const endpoint: KmsEndpointFile = {
    endpoint: server.url,
    region: server.region,
    caBundle: layout.caCert(dataDir),
    credentialsFile,
    profile: 'default',
  };
  await writeFileAtomic(layout.kmsEndpoint(dataDir), `${JSON.stringify(endpoint, null, 2)}\n`, { mode: 0o644 });
  return { server, endpoint };
}

export async function runKmsServe(options: KmsServeOptions): Promise<void> {
  restrictFileCreationMode();
  const dataDir = resolveDataDir(options.dataDir);
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const log = createLogger({ name: 'kms', level: options.logLevel, rateLimit: logRateLimit(options) });
  const budget = await processConnectionBudget();
  const { server, endpoint } = await startLocalKms(dataDir, { ...options, ...(budget === undefined ? {} : { connectionBudget: budget }) }, log);
  const stopped = serveUntilSignalled('the KMS', () => server.close());
  print(`Airlock KMS listening on ${endpoint.endpoint} (region ${endpoint.region})`);
  print(`  CA bundle:   ${endpoint.caBundle}`);
  print(`  credentials: ${endpoint.credentialsFile}  (AWS shared-credentials format, profile "${endpoint.profile}")`);
  print(`  endpoint:    ${layout.kmsEndpoint(dataDir)}`);
  print();
  print('Try it with the AWS CLI:');
  print(`  AWS_CA_BUNDLE=${endpoint.caBundle} AWS_SHARED_CREDENTIALS_FILE=${endpoint.credentialsFile} \\`);
  print(`    aws kms create-key --endpoint-url ${endpoint.endpoint} --region ${endpoint.region}`);
  print('Press Ctrl-C to stop.');
  await stopped;
}

export async function runKmsAuditVerify(options: RootKeyFlags & { dataDir?: string; json: boolean }): Promise<void> {
  const dataDir = resolveDataDir(options.dataDir);
  const rootKey = rootKeyFromFlags(options);
  const result = await verifyKmsAudit({
    dataDir: layout.kmsDir(dataDir),
    logger: createLogger({ name: 'kms', level: 'warn' }),
    ...(rootKey === undefined ? {} : { rootKey }),
  });
  const torn = result.tornTail === undefined ? undefined : { bytes: result.tornTail.bytes };
  if (options.json) printJson({ ok: result.ok, records: result.records, problems: result.problems, ...(torn === undefined ? {} : { tornTail: torn }) });
  else {
    if (result.ok) print(`audit log OK: ${result.records} records, hash chain intact`);
    else {
      print(`audit log FAILED verification after ${result.records} good records:`);
      for (const problem of result.problems) print(`  - ${problem}`);
    }
    if (torn !== undefined) {
      print(`note: the log ends in an incomplete record (${torn.bytes} bytes after the last complete one): an append cut short by a crash.`);
      print('      It is past the last anchored record, not part of the chain, and the KMS removes it when it next starts.');
    }
  }
  if (!result.ok) process.exitCode = 1;
}
