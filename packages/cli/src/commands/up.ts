// `airlock up | down | status | env`: run the local stack — control plane and data plane as separate processes — and tell clients how to reach it.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { AirlockError, createLogger, processIdentity, writeFileAtomic, type ProcessIdentity } from '@airlock/common';
import type { TaskIsolationMode } from '@airlock/data-plane';
import { parseEndpointsFile, stackProcessRunning, type EndpointsFile } from '@airlock/verify';
import { CLIENT_CONFIG_VERSION, writeClientConfig } from '../internal/client-config.js';
import { layout, LOCAL_CLUSTER_NAME, readDataFile, resolveDataDir } from '../internal/data-dir.js';
import { parseCredentialsFile, readKmsEndpoint } from '../internal/kms-client.js';
import { controlPlaneKeyArgs, loadLocalCa } from '../internal/local-ca.js';
import { formatTable, print, printJson } from '../internal/output.js';
import { isPlaneReadyMessage, planeExecArgv, type PlaneReadyMessage } from '../internal/plane-process.js';
import { overallHealth, probeStack, type ServiceHealth } from '../internal/stack-health.js';
import type { ControlPlaneEndpointFile, DatabaseFlags } from './control-plane.js';
import { logRateArgs, logRateLimit, type LogRateFlags } from '../internal/log-flags.js';
import { LogTail } from '../internal/log-tail.js';

/** What `airlock up` writes to endpoints.json: the shape verify reads, with the plane pids and the token file always set. */
type UpEndpointsFile = EndpointsFile & {
  readonly client: { readonly tokenFile: string };
  readonly pids: { readonly controlPlane: number; readonly dataPlane: number };
};

/** The signal the control plane answers with a heap snapshot (never sent to a process started without the flag: it would die). */
const HEAP_SNAPSHOT_SIGNAL = 'SIGUSR2';

type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface UpOptions extends DatabaseFlags, LogRateFlags {
  readonly dataDir?: string;
  readonly apiPort: number;
  readonly dispatchPort: number;
  readonly tunnelPort: number;
  readonly kmsPort: number;
  readonly s3Port: number;
  /** How task processes are isolated from the agent's files (docs/runs.md, "Isolation"). @default "auto" */
  readonly taskIsolation?: TaskIsolationMode;
  readonly logLevel: LogLevel;
}

/**
 * The client configuration of the local stack: its API, CA and admin token, and the local data
 * plane's identity as the data plane itself announced it (trust on first use, over the IPC channel
 * of a process this command started). Client commands (`airlock run`, `runs`, `outputs`) read it.
 */
async function writeLocalClientConfig(dataDir: string, endpoints: UpEndpointsFile, identity: PlaneReadyMessage['identity']): Promise<void> {
  const api = endpoints.endpoints.find((e) => e.name === 'api')?.url;
  if (api === undefined) return;
  await writeClientConfig(layout.clientConfig(dataDir), {
    version: CLIENT_CONFIG_VERSION,
    api,
    caFile: endpoints.caBundle,
    tokenFile: endpoints.client.tokenFile,
    project: 'default',
    cluster: identity?.cluster ?? LOCAL_CLUSTER_NAME,
    pins: identity === undefined ? {} : { [identity.cluster]: identity.pin },
  });
}

/** The stack's endpoints.json, checked by the same parser `airlock verify` uses; undefined when there is none. */
export async function readEndpoints(dataDir: string): Promise<EndpointsFile | undefined> {
  const text = await readDataFile(layout.endpoints(dataDir));
  if (text === undefined) return undefined;
  try {
    return parseEndpointsFile(JSON.parse(text));
  } catch (error) {
    throw new AirlockError('INVALID_ARGUMENT', `${layout.endpoints(dataDir)} is not a valid endpoints.json; remove it if no stack runs`, { cause: error });
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
    /** Extra Node flags for this plane. */
    private readonly nodeFlags: readonly string[] = [],
    /** Where its output passes on the way to this terminal: `airlock verify` searches the planes' recent logs there. */
    private readonly logTail?: LogTail,
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
    const child = spawn(process.execPath, [...planeExecArgv(process.execArgv), ...this.nodeFlags, script, ...this.args], {
      stdio: ['ignore', this.logTail === undefined ? 'inherit' : 'pipe', this.logTail === undefined ? 'inherit' : 'pipe', 'ipc'],
      env: { ...process.env, ...this.env },
    });
    if (this.logTail !== undefined && child.stdout !== null && child.stderr !== null) {
      this.logTail.tee(child.stdout, process.stdout);
      this.logTail.tee(child.stderr, process.stderr);
    }
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

/** Who each of the stack's processes is (pid, start time, boot id), so that `down` never signals a pid recycled after a crash; empty without /proc. */
async function stackIdentities(pids: ReadonlyArray<number | undefined>): Promise<ProcessIdentity[]> {
  const identities = await Promise.all(pids.map(async (pid) => (pid === undefined ? undefined : processIdentity(pid))));
  return identities.filter((identity): identity is ProcessIdentity => identity !== undefined);
}

export async function runUp(options: UpOptions): Promise<void> {
  const dataDir = resolveDataDir(options.dataDir);
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const running = await readEndpoints(dataDir);
  if (running !== undefined && running.pid !== process.pid && (await stackProcessRunning(running, running.pid))) {
    throw new AirlockError('ALREADY_EXISTS', `a stack is already running from ${dataDir} (pid ${running.pid}); stop it with \`airlock down\``);
  }
  print(`Starting Airlock in ${dataDir} …`);
  // Created here, before either plane starts, so the two never race to create it.
  await loadLocalCa(dataDir, options, createLogger({ name: 'airlock', level: options.logLevel, rateLimit: logRateLimit(options) }));

  const common = ['--data-dir', dataDir, '--log-level', options.logLevel, ...logRateArgs(options)];
  // The planes' recent output, kept in this process's memory on its way to the terminal (docs/verify.md, runs.canary).
  const logTail = new LogTail();
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
    // `airlock verify` looks for canary data in the control plane's memory through a heap snapshot.
    [`--heapsnapshot-signal=${HEAP_SNAPSHOT_SIGNAL}`, `--diagnostic-dir=${layout.controlPlaneDiagnostics(dataDir)}`],
    logTail,
  );
  await mkdir(layout.controlPlaneDiagnostics(dataDir), { recursive: true, mode: 0o700 });
  const dataPlane = new PlaneProcess(
    'data plane',
    [
      'data-plane', 'serve', ...common, '--kms-port', String(options.kmsPort), '--s3-port', String(options.s3Port),
      ...(options.taskIsolation === undefined ? [] : ['--task-isolation', options.taskIsolation]),
      ...controlPlaneKeyArgs(options),
    ],
    {},
    [],
    logTail,
  );
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
      processes: await stackIdentities([process.pid, controlPlane.child?.pid, dataPlane.child?.pid]),
      ...(database === undefined ? {} : { database }),
      ...(controlPlane.child?.pid === undefined ? {} : { heapSnapshot: { pid: controlPlane.child.pid, signal: HEAP_SNAPSHOT_SIGNAL, dir: layout.controlPlaneDiagnostics(dataDir) } }),
      logTail: { pid: process.pid, maxBytes: logTail.maxBytes },
      startedAt: new Date().toISOString(),
    };
    await writeFileAtomic(layout.endpoints(dataDir), `${JSON.stringify(endpoints, null, 2)}\n`, { mode: 0o644 });
    await writeLocalClientConfig(dataDir, endpoints, dataPlane.ready?.identity);
    return endpoints;
  };
  const endpoints = await writeEndpoints();

  // Printed once the stop signals are trapped (below): a Ctrl-C right after "Press Ctrl-C" must stop the stack, not kill this process.
  const printReady = (): void => {
    print();
    print(formatTable(['SERVICE', 'PLANE', 'ENDPOINT'], endpoints.endpoints.map((e) => [e.name, e.plane, e.url])));
    print();
    print(`Control plane: pid ${endpoints.pids.controlPlane}    Data plane (cluster "local"): pid ${endpoints.pids.dataPlane}`);
    print(`CA bundle:     ${endpoints.caBundle}`);
    print(`API token:     ${endpoints.client.tokenFile} (admin; send it as "Authorization: Bearer <token>" to the api endpoint)`);
    print(`Credentials:   ${endpoints.credentials.file} (profile "${endpoints.credentials.profile}", for the KMS and the object store)`);
    print(`Endpoints:     ${layout.endpoints(dataDir)}`);
    const identity = dataPlane.ready?.identity;
    if (identity !== undefined) print(`Data plane:    identity ${identity.pin}, pinned in ${layout.clientConfig(dataDir)}`);
    print();
    print('Run a task (in another terminal):');
    print(`  npx airlock run examples/hello/hello.ts --input name=World --wait${dataDir === resolveDataDir(undefined) ? '' : ` --data-dir ${dataDir}`}`);
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
  };

  await new Promise<void>((resolve) => {
    const shutdown = (reason?: string): void => {
      // The signal handlers stay installed while stopping: a second Ctrl-C must not kill this process before its planes are down.
      if (stopping) return;
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
    printReady();
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

/** What `airlock down` found and did for one process of the stack. */
export interface StoppedProcess {
  readonly name: 'airlock up' | 'control plane' | 'data plane';
  readonly pid: number;
  /**
   * already-exited: not running when `down` started; stopped: exited after the signal `down` sent
   * it (or, for a plane, after `airlock up` stopped it); killed: still running after the stop
   * timeout, so `down` sent SIGKILL; survived: still running even after SIGKILL.
   */
  readonly outcome: 'already-exited' | 'stopped' | 'killed' | 'survived';
  /** The signals `down` itself sent this process. */
  readonly signalled: readonly NodeJS.Signals[];
}

async function waitForExit(file: EndpointsFile, pids: readonly number[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const running = await Promise.all(pids.map((pid) => stackProcessRunning(file, pid)));
    if (!running.some(Boolean) || Date.now() >= deadline) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function signal(pid: number, sig: NodeJS.Signals): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch {
    return false;
  }
}

/**
 * Stops the stack: SIGTERM to `airlock up`, which stops its planes (or, when `airlock up` is gone,
 * SIGTERM to each plane still running), then SIGKILL to whatever still runs after `stopTimeoutMs`.
 * Reports, per process, what it found and what it did.
 */
export async function runDown(options: { dataDir?: string; json?: boolean; stopTimeoutMs?: number }): Promise<void> {
  const dataDir = resolveDataDir(options.dataDir);
  const stopTimeoutMs = options.stopTimeoutMs ?? STOP_TIMEOUT_MS;
  const running = await readEndpoints(dataDir);
  if (running === undefined) {
    if (options.json === true) printJson({ dataDir, running: false, processes: [] });
    else print(`No stack is running from ${dataDir}.`);
    return;
  }
  const targets: Array<{ name: StoppedProcess['name']; pid: number; signalled: NodeJS.Signals[]; wasRunning: boolean }> = [
    { name: 'airlock up', pid: running.pid, signalled: [], wasRunning: false },
    { name: 'control plane', pid: running.pids?.controlPlane ?? 0, signalled: [], wasRunning: false },
    { name: 'data plane', pid: running.pids?.dataPlane ?? 0, signalled: [], wasRunning: false },
  ];
  const present = targets.filter((t) => t.pid > 0);
  for (const target of present) target.wasRunning = await stackProcessRunning(running, target.pid);
  const [up, ...planes] = present;
  const send = (target: (typeof targets)[number], sig: NodeJS.Signals): void => {
    if (signal(target.pid, sig)) target.signalled.push(sig);
  };
  if (up?.wasRunning === true) send(up, 'SIGTERM');
  else for (const plane of planes) if (plane.wasRunning) send(plane, 'SIGTERM');
  const alive = present.filter((t) => t.wasRunning).map((t) => t.pid);
  await waitForExit(running, alive, stopTimeoutMs);
  for (const target of present) if (target.wasRunning && (await stackProcessRunning(running, target.pid))) send(target, 'SIGKILL');
  if (present.some((t) => t.signalled.includes('SIGKILL'))) await waitForExit(running, alive, 5000);

  const processes: StoppedProcess[] = [];
  for (const target of present) {
    const still = target.wasRunning && (await stackProcessRunning(running, target.pid));
    const outcome: StoppedProcess['outcome'] = !target.wasRunning ? 'already-exited' : still ? 'survived' : target.signalled.includes('SIGKILL') ? 'killed' : 'stopped';
    processes.push({ name: target.name, pid: target.pid, outcome, signalled: target.signalled });
  }
  const stopped = processes.every((p) => p.outcome !== 'survived');
  // endpoints.json is removed by `airlock up` as it stops; when up was gone or killed, it is left behind.
  if (stopped) await rm(layout.endpoints(dataDir), { force: true });
  if (options.json === true) printJson({ dataDir, running: processes.some((p) => p.outcome !== 'already-exited'), stopped, processes });
  else {
    const describe = (p: StoppedProcess): string => {
      switch (p.outcome) {
        case 'already-exited':
          return 'had already exited';
        case 'stopped':
          return p.signalled.length > 0 ? `sent ${p.signalled.join(', ')}; exited` : 'stopped by airlock up; exited';
        case 'killed':
          return `sent ${p.signalled.join(', ')}: still running after ${stopTimeoutMs / 1000} s, killed`;
        case 'survived':
          return `sent ${p.signalled.join(', ')}; STILL RUNNING`;
      }
    };
    print(`Stack in ${dataDir}:`);
    for (const p of processes) print(`  ${p.name.padEnd(13)} pid ${String(p.pid).padEnd(8)} ${describe(p)}`);
    print(
      processes.every((p) => p.outcome === 'already-exited')
        ? 'Nothing was running; removed the stale endpoints.json.'
        : stopped
          ? 'Stopped.'
          : 'Some processes are still running.',
    );
  }
  if (!stopped) throw new AirlockError('TIMEOUT', `pid ${processes.filter((p) => p.outcome === 'survived').map((p) => p.pid).join(', ')} still running after SIGKILL`);
}

const HEALTH_LABEL: Readonly<Record<ServiceHealth, string>> = { healthy: 'healthy', degraded: 'DEGRADED', down: 'DOWN' };

/**
 * Makes a real request on each service (stack-health.ts) and prints healthy, degraded or down with
 * the reason. Exit status: 0 when every service is healthy, 1 when one is degraded or down, 3 when
 * no stack runs.
 */
export async function runStatus(options: { dataDir?: string; json: boolean; timeoutMs?: number }): Promise<void> {
  const dataDir = resolveDataDir(options.dataDir);
  const running = await readEndpoints(dataDir);
  if (running === undefined || !(await stackProcessRunning(running, running.pid))) {
    if (options.json) printJson({ running: false, dataDir });
    else print(`No stack is running from ${dataDir}. Start one with \`npm start\` or \`npx airlock up\`.`);
    process.exitCode = 3;
    return;
  }
  const ca = await readFile(running.caBundle, 'utf8');
  const credentials = parseCredentialsFile(await readFile(running.credentials.file, 'utf8'), running.credentials.profile);
  const endpoints = await probeStack(running.endpoints, { ca, region: running.region, credentials, ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }) });
  const planes = {
    controlPlane: { pid: running.pids?.controlPlane ?? 0, running: await stackProcessRunning(running, running.pids?.controlPlane) },
    dataPlane: { pid: running.pids?.dataPlane ?? 0, running: await stackProcessRunning(running, running.pids?.dataPlane) },
  };
  const health = overallHealth(endpoints);
  process.exitCode = health === 'healthy' ? 0 : 1;
  if (options.json) {
    printJson({ running: true, health, dataDir, pid: running.pid, pids: running.pids, planes, startedAt: running.startedAt, endpoints });
    return;
  }
  const pidText = (p: { pid: number; running: boolean }): string => `${p.pid}${p.running ? '' : ' (not running)'}`;
  print(`Stack running from ${dataDir} (pid ${running.pid}, since ${running.startedAt}; control plane pid ${pidText(planes.controlPlane)}, data plane pid ${pidText(planes.dataPlane)})`);
  print(
    formatTable(
      ['SERVICE', 'PLANE', 'ENDPOINT', 'HEALTH', 'DETAILS'],
      endpoints.map((e) => [e.name, e.plane, e.url, HEALTH_LABEL[e.health], [e.reason ?? e.check, e.tls === undefined ? undefined : `(${e.tls})`].filter(Boolean).join(' ')]),
    ),
  );
  print();
  print(`Overall: ${HEALTH_LABEL[health]}`);
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
