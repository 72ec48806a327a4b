// `airlock up | down | status | env`: run the local stack (KMS and object store so far) and tell clients how to reach it.
import { mkdir, readFile, rm } from 'node:fs/promises';
import { request } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { AirlockError, createLogger, writeFileAtomic } from '@airlock/common';
import { tlsClientOptions } from '@airlock/pki';
import { layout, resolveDataDir } from '../internal/data-dir.js';
import { parseCredentialsFile } from '../internal/kms-client.js';
import { formatTable, print, printJson } from '../internal/output.js';
import { startLocalKms } from './kms.js';
import { startLocalObjectStore } from './objectstore.js';

/** <data-dir>/endpoints.json: where everything is. It names files; it never holds a secret value. */
export interface EndpointsFile {
  readonly version: 1;
  readonly region: string;
  readonly caBundle: string;
  readonly credentials: { readonly file: string; readonly profile: string };
  readonly endpoints: ReadonlyArray<{ readonly name: string; readonly plane: 'control' | 'data'; readonly url: string }>;
  readonly pid: number;
  readonly startedAt: string;
}

export interface UpOptions {
  readonly dataDir?: string;
  readonly kmsPort: number;
  readonly s3Port: number;
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
}

async function readEndpoints(dataDir: string): Promise<EndpointsFile | undefined> {
  try {
    return JSON.parse(await readFile(layout.endpoints(dataDir), 'utf8')) as EndpointsFile;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw AirlockError.from(error);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function runUp(options: UpOptions): Promise<void> {
  const dataDir = resolveDataDir(options.dataDir);
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const running = await readEndpoints(dataDir);
  if (running !== undefined && running.pid !== process.pid && isAlive(running.pid)) {
    throw new AirlockError('ALREADY_EXISTS', `a stack is already running from ${dataDir} (pid ${running.pid}); stop it with \`airlock down\``);
  }
  const log = createLogger({ name: 'airlock', level: options.logLevel });
  print(`Starting Airlock in ${dataDir} …`);
  const kms = await startLocalKms(dataDir, { host: '127.0.0.1', port: options.kmsPort, region: 'us-east-1', logLevel: options.logLevel }, log);
  let store: Awaited<ReturnType<typeof startLocalObjectStore>>;
  try {
    store = await startLocalObjectStore(dataDir, { host: '127.0.0.1', port: options.s3Port }, log);
  } catch (error) {
    await kms.server.close();
    throw error;
  }
  const endpoints: EndpointsFile = {
    version: 1,
    region: kms.endpoint.region,
    caBundle: layout.caCert(dataDir),
    credentials: { file: kms.endpoint.credentialsFile, profile: kms.endpoint.profile },
    endpoints: [
      { name: 'kms', plane: 'data', url: kms.endpoint.endpoint },
      { name: 'objectstore', plane: 'data', url: store.endpoint.endpoint },
    ],
    pid: process.pid,
    startedAt: new Date().toISOString(),
  };
  await writeFileAtomic(layout.endpoints(dataDir), `${JSON.stringify(endpoints, null, 2)}\n`, { mode: 0o644 });

  print();
  print(formatTable(['SERVICE', 'PLANE', 'ENDPOINT'], endpoints.endpoints.map((e) => [e.name, e.plane, e.url])));
  print();
  print(`CA bundle:     ${endpoints.caBundle}`);
  print(`Credentials:   ${endpoints.credentials.file} (profile "${endpoints.credentials.profile}")`);
  print(`Endpoints:     ${layout.endpoints(dataDir)}`);
  print();
  print('Use the AWS CLI against it (in another terminal):');
  print(`  eval "$(npx airlock env --data-dir ${dataDir})"`);
  print('  aws s3 mb s3://reports --endpoint-url "$AWS_ENDPOINT_URL_S3"');
  print('  aws s3api get-bucket-encryption --bucket reports --endpoint-url "$AWS_ENDPOINT_URL_S3"');
  print('  aws kms list-keys --endpoint-url "$AWS_ENDPOINT_URL_KMS"');
  print();
  print(`Prove it: npx airlock verify --data-dir ${dataDir}`);
  print('The control plane and the data-plane agent arrive with the planes issue.');
  print('Press Ctrl-C to stop (or run `npx airlock down`).');

  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      print('\nStopping Airlock …');
      void (async () => {
        await store.close().catch(() => undefined);
        await kms.server.close().catch(() => undefined);
        await rm(layout.endpoints(dataDir), { force: true });
        print('Stopped.');
        resolve();
      })();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}

export async function runDown(options: { dataDir?: string }): Promise<void> {
  const dataDir = resolveDataDir(options.dataDir);
  const running = await readEndpoints(dataDir);
  if (running === undefined || !isAlive(running.pid)) {
    print(`No stack is running from ${dataDir}.`);
    if (running !== undefined) await rm(layout.endpoints(dataDir), { force: true });
    return;
  }
  process.kill(running.pid, 'SIGTERM');
  const deadline = Date.now() + 15_000;
  while (isAlive(running.pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  if (isAlive(running.pid)) throw new AirlockError('TIMEOUT', `the stack (pid ${running.pid}) did not stop within 15 s`);
  print(`Stopped the stack running from ${dataDir} (pid ${running.pid}).`);
}

/** GET /health over TLS with the data directory's CA. */
async function probe(url: string, ca: string): Promise<string> {
  return new Promise((resolve) => {
    const req = request(`${url}/health`, { ...tlsClientOptions({ ca }), timeout: 3000 }, (res) => {
      res.resume();
      const tls = res.socket as TLSSocket;
      resolve(`${res.statusCode === 200 ? 'healthy' : `HTTP ${res.statusCode ?? '?'}`} (${tls.getProtocol?.() ?? '?'}, ${tls.getCipher?.().name ?? '?'})`);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (error) => resolve(`unreachable: ${AirlockError.from(error).code}`));
    req.end();
  });
}

export async function runStatus(options: { dataDir?: string; json: boolean }): Promise<void> {
  const dataDir = resolveDataDir(options.dataDir);
  const running = await readEndpoints(dataDir);
  if (running === undefined || !isAlive(running.pid)) {
    if (options.json) printJson({ running: false, dataDir });
    else print(`No stack is running from ${dataDir}. Start one with \`npm start\` or \`npx airlock up\`.`);
    process.exitCode = 3;
    return;
  }
  const ca = await readFile(running.caBundle, 'utf8');
  const health = await Promise.all(running.endpoints.map(async (e) => ({ ...e, health: await probe(e.url, ca) })));
  if (options.json) {
    printJson({ running: true, dataDir, pid: running.pid, startedAt: running.startedAt, endpoints: health });
    return;
  }
  print(`Stack running from ${dataDir} (pid ${running.pid}, since ${running.startedAt})`);
  print(formatTable(['SERVICE', 'PLANE', 'ENDPOINT', 'HEALTH'], health.map((e) => [e.name, e.plane, e.url, e.health])));
}

const shellQuote = (value: string): string => `'${value.replace(/'/g, `'\\''`)}'`;

export async function runEnv(options: { dataDir?: string }): Promise<void> {
  const dataDir = resolveDataDir(options.dataDir);
  const running = await readEndpoints(dataDir);
  if (running === undefined) throw new AirlockError('UNAVAILABLE', `no stack found in ${dataDir}; start one with \`npm start\` or \`npx airlock up\``);
  const credentials = parseCredentialsFile(await readFile(running.credentials.file, 'utf8'), running.credentials.profile);
  const url = (name: string): string => running.endpoints.find((e) => e.name === name)?.url ?? '';
  const lines = [
    `# Airlock stack in ${dataDir}. AWS CLI v2.13+ reads AWS_ENDPOINT_URL_*; older versions (Debian's 2.9) need --endpoint-url "$AWS_ENDPOINT_URL_S3" / "$AWS_ENDPOINT_URL_KMS".`,
    `export AWS_CA_BUNDLE=${shellQuote(running.caBundle)}`,
    `export AWS_ACCESS_KEY_ID=${shellQuote(credentials.accessKeyId)}`,
    `export AWS_SECRET_ACCESS_KEY=${shellQuote(credentials.secretAccessKey)}`,
    `export AWS_REGION=${shellQuote(running.region)}`,
    `export AWS_DEFAULT_REGION=${shellQuote(running.region)}`,
    `export AWS_ENDPOINT_URL_S3=${shellQuote(url('objectstore'))}`,
    `export AWS_ENDPOINT_URL_KMS=${shellQuote(url('kms'))}`,
    `export AIRLOCK_DATA_DIR=${shellQuote(dataDir)}`,
  ];
  print(lines.join('\n'));
}
