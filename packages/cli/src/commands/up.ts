// `airlock up | down | status | env`: run the local stack — control plane and data plane as separate processes — and tell clients how to reach it.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { request } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { AirlockError, createLogger, writeFileAtomic } from '@airlock/common';
import { tlsClientOptions } from '@airlock/pki';
import { parseEndpointsFile, type EndpointsFile } from '@airlock/verify';
import { layout, readDataFile, resolveDataDir } from '../internal/data-dir.js';
import { parseCredentialsFile, readKmsEndpoint } from '../internal/kms-client.js';
import { controlPlaneKeyArgs, loadLocalCa } from '../internal/local-ca.js';
import { formatTable, print, printJson } from '../internal/output.js';
import { isPlaneReadyMessage, planeExecArgv, type PlaneEndpoint, type PlaneReadyMessage } from '../internal/plane-process.js';
import type { ControlPlaneEndpointFile, DatabaseFlags } from './control-plane.js';

/** What `airlock up` writes to endpoints.json: the shape verify reads, with the plane pids and the token file always set. */
type UpEndpointsFile = EndpointsFile & {
  readonly client: { readonly tokenFile: string };
  readonly pids: { readonly controlPlane: number; readonly dataPlane: number };
};

type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface UpOptions extends DatabaseFlags {
  readonly dataDir?: string;
  readonly apiPort: number;
  readonly dispatchPort: number;
  readonly tunnelPort: number;
  readonly kmsPort: number;
  readonly s3Port: number;
  readonly logLevel: LogLevel;
}

/** The stack's endpoints.json, checked by the same parser `airlock verify` uses; undefined when there is none. */
async function readEndpoints(dataDir: string): Promise<EndpointsFile | undefined> {
  const text = await readDataFile(layout.endpoints(dataDir));
  if (text === undefined) return undefined;
  try {
    return parseEndpointsFile(JSON.parse(text));
  } catch (error) {
    throw new AirlockError('INVALID_ARGUMENT', `${layout.endpoints(dataDir)} is not a valid endpoints.json; remove it if no stack runs`, { cause: error });
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

/** How long a plane may take to report ready (the data plane waits for registration and the tunnel). */
const READY_TIMEOUT_MS = 90_000;
/** A plane that crashes more often than this within RESTART_WINDOW_MS takes the stack down instead of restarting. */
const MAX_RESTARTS = 5;
const RESTART_WINDOW_MS = 60_000;
const STOP_TIMEOUT_MS = 15_000;

const portOf = (url: string): number => Number(new URL(url).port);

/** One plane process, started as `airlock <plane> serve` by the same Node binary and flags as this one, plus PLANE_NODE_FLAGS. */
class PlaneProcess {
  child: ChildProcess | undefined;
  ready: PlaneReadyMessage | undefined;
  private readonly restarts: number[] = [];

  constructor(
    readonly name: 'control plane' | 'data plane',
    private args: string[],
    /** Extra environment: how secrets such as a database URL reach the plane without showing in its command line. */
    private readonly env: Readonly<Record<string, string>> = {},
  ) {}

  /** Pins the listeners to the ports the first start picked (port 0 means "any"), so a restarted plane keeps its endpoints. */
  pinPorts(flags: Record<string, string>): void {
    const args = [...this.args];
    for (const [flag, endpoint] of Object.entries(flags)) {
      const url = this.ready?.endpoints.find((e) => e.name === endpoint)?.url;
      const index = args.indexOf(flag);
      if (url !== undefined && index >= 0) args[index + 1] = String(portOf(url));
    }
    this.args = args;
  }

  async start(): Promise<PlaneReadyMessage> {
    const script = process.argv[1];
    if (script === undefined) throw new AirlockError('INTERNAL', 'cannot tell which script runs `airlock`');
    const child = spawn(process.execPath, [...planeExecArgv(process.execArgv), script, ...this.args], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: { ...process.env, ...this.env },
    });
    this.child = child;
    return new Promise<PlaneReadyMessage>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGTERM');
        reject(new AirlockError('TIMEOUT', `the ${this.name} did not become ready within ${READY_TIMEOUT_MS / 1000} s`));
      }, READY_TIMEOUT_MS);
      const onMessage = (message: unknown): void => {
        if (!isPlaneReadyMessage(message)) return;
        clearTimeout(timer);
        child.off('exit', onExit);
        this.ready = message;
        resolve(message);
      };
      const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
        clearTimeout(timer);
        child.off('message', onMessage);
        reject(new AirlockError('UNAVAILABLE', `the ${this.name} exited before it was ready (${signal ?? `exit code ${code ?? '?'}`}); see its log above`));
      };
      child.on('message', onMessage);
      child.once('exit', onExit);
    });
  }

  /** Records a crash; false when it has crashed too often to restart again. */
  mayRestart(now = Date.now()): boolean {
    this.restarts.push(now);
    while (this.restarts.length > 0 && (this.restarts[0] ?? now) < now - RESTART_WINDOW_MS) this.restarts.shift();
    return this.restarts.length <= MAX_RESTARTS;
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  }
}

export async function runUp(options: UpOptions): Promise<void> {
  const dataDir = resolveDataDir(options.dataDir);
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const running = await readEndpoints(dataDir);
  if (running !== undefined && running.pid !== process.pid && isAlive(running.pid)) {
    throw new AirlockError('ALREADY_EXISTS', `a stack is already running from ${dataDir} (pid ${running.pid}); stop it with \`airlock down\``);
  }
  print(`Starting Airlock in ${dataDir} …`);
  // Created here, before either plane starts, so the two never race to create it.
  await loadLocalCa(dataDir, options, createLogger({ name: 'airlock', level: options.logLevel }));

  const common = ['--data-dir', dataDir, '--log-level', options.logLevel];
  // The database URL may carry a password: it travels in the environment, not in argv (readable in /proc).
  const controlPlane = new PlaneProcess(
    'control plane',
    [
      'control-plane', 'serve', ...common,
      '--api-port', String(options.apiPort), '--dispatch-port', String(options.dispatchPort), '--tunnel-port', String(options.tunnelPort),
      ...(options.dbCa === undefined ? [] : ['--db-ca', options.dbCa]),
      ...(options.dbAllowPlaintextSocket === true ? ['--db-allow-plaintext-socket'] : []),
      ...controlPlaneKeyArgs(options),
    ],
    options.db === undefined ? {} : { AIRLOCK_DB_URL: options.db },
  );
  const dataPlane = new PlaneProcess('data plane', [
    'data-plane', 'serve', ...common, '--kms-port', String(options.kmsPort), '--s3-port', String(options.s3Port), ...controlPlaneKeyArgs(options),
  ]);
  const planes = [controlPlane, dataPlane];
  let stopping = false;
  const stopAll = async (): Promise<void> => {
    stopping = true;
    // The data plane first, so its agent leaves before the control plane goes away.
    await dataPlane.stop();
    await controlPlane.stop();
  };

  try {
    await controlPlane.start();
    controlPlane.pinPorts({ '--api-port': 'api', '--dispatch-port': 'dispatch', '--tunnel-port': 'tunnel' });
    await dataPlane.start();
    dataPlane.pinPorts({ '--kms-port': 'kms', '--s3-port': 'objectstore' });
  } catch (error) {
    await stopAll();
    throw error;
  }

  const kms = await readKmsEndpoint(dataDir);
  const writeEndpoints = async (): Promise<UpEndpointsFile> => {
    const controlPlaneFile = await readDataFile(layout.controlPlaneEndpoint(dataDir));
    const database = controlPlaneFile === undefined ? undefined : (JSON.parse(controlPlaneFile) as Partial<ControlPlaneEndpointFile>).database;
    const endpoints: UpEndpointsFile = {
      version: 1,
      region: kms.region,
      caBundle: layout.caCert(dataDir),
      credentials: { file: kms.credentialsFile, profile: kms.profile },
      client: { tokenFile: layout.clientToken(dataDir) },
      endpoints: planes.flatMap((plane) => plane.ready?.endpoints ?? []),
      pid: process.pid,
      pids: { controlPlane: controlPlane.child?.pid ?? 0, dataPlane: dataPlane.child?.pid ?? 0 },
      ...(database === undefined ? {} : { database }),
      startedAt: new Date().toISOString(),
    };
    await writeFileAtomic(layout.endpoints(dataDir), `${JSON.stringify(endpoints, null, 2)}\n`, { mode: 0o644 });
    return endpoints;
  };
  const endpoints = await writeEndpoints();

  print();
  print(formatTable(['SERVICE', 'PLANE', 'ENDPOINT'], endpoints.endpoints.map((e) => [e.name, e.plane, e.url])));
  print();
  print(`Control plane: pid ${endpoints.pids.controlPlane}    Data plane (cluster "local"): pid ${endpoints.pids.dataPlane}`);
  print(`CA bundle:     ${endpoints.caBundle}`);
  print(`API token:     ${endpoints.client.tokenFile} (admin; send it as "Authorization: Bearer <token>" to the api endpoint)`);
  print(`Credentials:   ${endpoints.credentials.file} (profile "${endpoints.credentials.profile}", for the KMS and the object store)`);
  print(`Endpoints:     ${layout.endpoints(dataDir)}`);
  print();
  print('Log in to the API (in another terminal):');
  const api = endpoints.endpoints.find((e) => e.name === 'api')?.url ?? '';
  print(`  curl --cacert ${endpoints.caBundle} -H "Authorization: Bearer $(cat ${endpoints.client.tokenFile})" \\`);
  print(`    -H 'Content-Type: application/json' -d '{}' ${api}/airlock.v1.AirlockService/WhoAmI`);
  print('Use the AWS CLI against the data plane:');
  print(`  eval "$(npx airlock env --data-dir ${dataDir})"`);
  print('  aws s3 mb s3://reports --endpoint-url "$AWS_ENDPOINT_URL_S3"');
  print('  aws s3api get-bucket-encryption --bucket reports --endpoint-url "$AWS_ENDPOINT_URL_S3"');
  print('  aws kms list-keys --endpoint-url "$AWS_ENDPOINT_URL_KMS"');
  print();
  print(`Prove it: npx airlock verify --data-dir ${dataDir}`);
  print('Press Ctrl-C to stop (or run `npx airlock down`).');

  await new Promise<void>((resolve) => {
    const shutdown = (reason?: string): void => {
      if (stopping) return;
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      print(reason === undefined ? '\nStopping Airlock …' : `\n${reason}; stopping Airlock …`);
      if (reason !== undefined) process.exitCode = 1;
      void (async () => {
        await stopAll();
        await rm(layout.endpoints(dataDir), { force: true });
        print('Stopped.');
        resolve();
      })();
    };
    const onSignal = (): void => shutdown();
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    // A plane that dies is restarted on the same ports: the agent reconnects and re-registers by itself.
    const watch = (plane: PlaneProcess): void => {
      plane.child?.once('exit', (code, signal) => {
        if (stopping) return;
        if (!plane.mayRestart()) {
          shutdown(`the ${plane.name} crashed ${MAX_RESTARTS + 1} times within ${RESTART_WINDOW_MS / 1000} s`);
          return;
        }
        print(`The ${plane.name} exited (${signal ?? `exit code ${code ?? '?'}`}); restarting it …`);
        setTimeout(() => {
          if (stopping) return;
          plane.start().then(
            async () => {
              watch(plane);
              await writeEndpoints();
              print(`The ${plane.name} is back (pid ${plane.child?.pid ?? '?'}).`);
            },
            (error: unknown) => shutdown(`the ${plane.name} could not be restarted (${AirlockError.from(error).message})`),
          );
        }, 1000);
      });
    };
    for (const plane of planes) watch(plane);
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

/** The unauthenticated health path of each endpoint; the others are probed with a TLS handshake only. */
const HEALTH_PATHS: Readonly<Record<string, string>> = { api: '/health', dispatch: '/health', kms: '/health', objectstore: '/health' };

/** A TLS health probe with the data directory's CA: GET the health path, or for the mTLS tunnel just the handshake. */
async function probe(endpoint: PlaneEndpoint, ca: string): Promise<string> {
  const path = HEALTH_PATHS[endpoint.name] ?? '/';
  return new Promise((resolve) => {
    const req = request(`${endpoint.url}${path}`, { ...tlsClientOptions({ ca }), timeout: 3000 }, (res) => {
      res.resume();
      const tls = res.socket as TLSSocket;
      const negotiated = `${tls.getProtocol?.() ?? '?'}, ${tls.getCipher?.().name ?? '?'}`;
      if (HEALTH_PATHS[endpoint.name] === undefined) resolve(`TLS ok (${negotiated})`);
      else resolve(`${res.statusCode === 200 ? 'healthy' : `HTTP ${res.statusCode ?? '?'}`} (${negotiated})`);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (error) => {
      // The tunnel wants a client certificate: a refusal after a completed handshake still shows it is up.
      if (endpoint.name === 'tunnel' && req.socket !== null && (req.socket as TLSSocket).getProtocol?.() !== null) resolve('TLS ok (client certificate required)');
      else resolve(`unreachable: ${AirlockError.from(error).code}`);
    });
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
  const health = await Promise.all(running.endpoints.map(async (e) => ({ ...e, health: await probe(e, ca) })));
  if (options.json) {
    printJson({ running: true, dataDir, pid: running.pid, pids: running.pids, startedAt: running.startedAt, endpoints: health });
    return;
  }
  print(`Stack running from ${dataDir} (pid ${running.pid}, since ${running.startedAt}; control plane pid ${running.pids?.controlPlane ?? '?'}, data plane pid ${running.pids?.dataPlane ?? '?'})`);
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
    `export AIRLOCK_API_URL=${shellQuote(url('api'))}`,
    `export AIRLOCK_TOKEN_FILE=${shellQuote(running.client?.tokenFile ?? layout.clientToken(dataDir))}`,
  ];
  print(lines.join('\n'));
}
