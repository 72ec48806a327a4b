// Builds the `airlock` command tree. Entry points resolve options here and pass resolved config down.
import { Command, InvalidArgumentError, Option } from 'commander';
import type { keysCreate } from './commands/keys.js';
import type { runKmsAuditVerify, runKmsServe } from './commands/kms.js';
import type { runLogin } from './commands/login.js';
import type { runControlPlaneServe } from './commands/control-plane.js';
import type { runDataPlaneServe } from './commands/data-plane.js';
import type { runControlPlaneRotateKey } from './commands/rotate-key.js';
import type { runObjectStoreServe } from './commands/objectstore.js';
import type { runUp } from './commands/up.js';
import type { RunCommandOptions } from './commands/runs.js';

/**
 * Each command's module is loaded when that command runs, so a process reads only the code it needs: a plane
 * process started by `airlock up` opens fewer files at start-up (the module loader reads a graph's files
 * concurrently, one descriptor each, which counts against a low `ulimit -n`), and client commands start sooner.
 */
const commands = {
  controlPlane: () => import('./commands/control-plane.js'),
  dataPlane: () => import('./commands/data-plane.js'),
  demo: () => import('./commands/demo.js'),
  keys: () => import('./commands/keys.js'),
  kms: () => import('./commands/kms.js'),
  login: () => import('./commands/login.js'),
  objectstore: () => import('./commands/objectstore.js'),
  rotateKey: () => import('./commands/rotate-key.js'),
  runs: () => import('./commands/runs.js'),
  up: () => import('./commands/up.js'),
  verify: () => import('./commands/verify.js'),
};

function positiveInteger(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

function port(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('must be a port number (0-65535)');
  return n;
}

const dataDirOption = (): Option =>
  new Option('--data-dir <dir>', 'the local stack\'s data directory (default: $AIRLOCK_DATA_DIR or ./.airlock)');
const jsonOption = (): Option => new Option('--json', 'print JSON instead of text').default(false);

function addRootKeyOptions(command: Command): Command {
  return command
    .option('--root-key-file <path>', 'root key file (base64, mode 0600); default <data-dir>/kms/root.key, created on first start')
    .option('--root-key-env <var>', 'read the root key (base64) from this environment variable')
    .option('--root-key-passphrase-env <var>', 'derive the root key with scrypt from the passphrase in this environment variable');
}

/** Where the control plane keeps its state, and the key that wraps the database keys. */
function addDatabaseOptions(command: Command): Command {
  return command
    .option('--db <url>', 'PostgreSQL URL (postgres://user@host:port/db; put a password in $AIRLOCK_DB_URL instead); default $AIRLOCK_DB_URL, else an encrypted SQLite file in the data directory')
    .option('--db-ca <file>', 'PEM CA that signed the PostgreSQL server certificate (verify-full); default $AIRLOCK_DB_CA')
    .option('--db-allow-plaintext-socket', 'allow PostgreSQL over a Unix socket (?host=/dir), which has no TLS');
}

/** The control plane's root key: it wraps the database keys and seals the local CA key. */
/** The rate limit of repeated log lines (docs/listener-limits.md, "Log volume"); unset flags keep the logger's defaults. */
const logRateWindowOption = (): Option =>
  new Option('--log-rate-window <ms>', 'repeated log lines: length of the window, per kind of line (default 10000)').argParser(positiveInteger);
const logRateBurstOption = (): Option =>
  new Option('--log-rate-burst <lines>', 'repeated log lines: lines of one kind written per window, the rest counted in one summary line (default 20)').argParser(positiveInteger);

function addControlPlaneKeyOptions(command: Command): Command {
  return command
    .option('--cp-key-file <path>', "the control plane's root key file (base64, 0600); default <data-dir>/control-plane/cp-root.key, created on first start")
    .option('--cp-key-env <var>', "read the control plane's root key (base64) from this environment variable")
    .option('--cp-key-passphrase-env <var>', "derive the control plane's root key with scrypt from the passphrase in this environment variable");
}

/** How task processes are kept from the agent's files (docs/runs.md, "Isolation"). */
function taskIsolationOption(): Option {
  return new Option('--task-isolation <mode>', "tasks in user and mount namespaces that hide the data directory and home: auto (where the system allows), namespaces (required), off")
    .choices(['auto', 'namespaces', 'off'])
    .default('auto');
}

export function createProgram(): Command {
  const program = new Command('airlock')
    .description('Airlock: split-plane workflow orchestration where your data never leaves your plane unencrypted.')
    .showHelpAfterError();

  addControlPlaneKeyOptions(addDatabaseOptions(
    program
      .command('up')
      .description('Start the local stack in the data directory: the control plane and a data plane (agent, KMS, object store) as separate processes; Ctrl-C stops it.'),
  ))
    .addOption(dataDirOption())
    .option('--api-port <port>', 'control-plane API port (Connect, gRPC, gRPC-web)', port, 8443)
    .option('--dispatch-port <port>', 'control-plane dispatch port (data-plane agents dial it)', port, 8444)
    .option('--tunnel-port <port>', 'control-plane tunnel port (mTLS; data-plane agents dial it)', port, 8445)
    .option('--kms-port <port>', 'KMS port', port, 9443)
    .option('--s3-port <port>', 'object store port', port, 9000)
    .addOption(taskIsolationOption())
    .addOption(new Option('--log-level <level>', 'log level').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('warn'))
    .addOption(logRateWindowOption())
    .addOption(logRateBurstOption())
    .action(async (options: Parameters<typeof runUp>[0]) => (await commands.up()).runUp(options));
  program
    .command('down')
    .description('Stop the stack running from the data directory, and report per process what was running, what was signalled and what had to be killed.')
    .addOption(dataDirOption())
    .addOption(jsonOption())
    .option('--stop-timeout <ms>', 'how long the processes may take to stop before they are killed (SIGKILL)', positiveInteger, 15_000)
    .action(async (options: { dataDir?: string; json: boolean; stopTimeout: number }) => (await commands.up()).runDown({ ...options, stopTimeoutMs: options.stopTimeout }));
  program
    .command('status')
    .description('Make a real request on each service (KMS ListKeys, S3 ListBuckets, API Health) and show it healthy, degraded or down with the reason; exit 1 unless all are healthy, 3 when no stack runs.')
    .addOption(dataDirOption())
    .addOption(jsonOption())
    .option('--timeout <ms>', 'time limit of each request', positiveInteger, 5000)
    .action(async (options: { dataDir?: string; json: boolean; timeout: number }) => (await commands.up()).runStatus({ ...options, timeoutMs: options.timeout }));
  program
    .command('env')
    .description('Print shell exports for the AWS CLI and SDKs: eval "$(airlock env)".')
    .addOption(dataDirOption())
    .action(async (options: { dataDir?: string }) => (await commands.up()).runEnv(options));

  program
    .command('verify')
    .description('Prove the running stack\'s transport security (TLS versions, AEAD suites, no plaintext, tunnel mTLS, outbound-only data plane); exit 0 only when no check fails (skipped checks do not fail).')
    .addOption(dataDirOption())
    .addOption(jsonOption())
    .action(async (options: { dataDir?: string; json: boolean }) => (await commands.verify()).runVerify(options));

  program
    .command('demo')
    .description('Encrypt and decrypt a file with ASF1 envelope encryption, and show what the crypto core does.')
    .option('--size <MiB>', 'size of the demo file in MiB', positiveInteger, 64)
    .option('--dir <dir>', 'working directory for the demo files (default: a new temporary directory)')
    .option('--keep', 'keep the demo files afterwards', false)
    .action(async (options: { size: number; dir?: string; keep: boolean }) => {
      await (await commands.demo()).runDemo(options);
    });

  const logLevelOption = (fallback: string): Option =>
    new Option('--log-level <level>', 'log level').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default(fallback);
  const controlPlane = program.command('control-plane').description('The control plane: API, dispatch and tunnel endpoints.');
  addControlPlaneKeyOptions(addDatabaseOptions(
    controlPlane
      .command('serve')
      .description("Run the control plane of the data directory (what `airlock up` starts); writes control-plane/endpoint.json."),
  ))
    .addOption(dataDirOption())
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--api-port <port>', 'API port (0 = any free port)', port, 8443)
    .option('--dispatch-port <port>', 'dispatch port (0 = any free port)', port, 8444)
    .option('--tunnel-port <port>', 'tunnel port (0 = any free port)', port, 8445)
    .option('--run-lease <seconds>', 'a run whose data plane is not heard from for this long, while its action waits, ends FAILED (DATA_PLANE_LOST)', positiveInteger, 120)
    .addOption(logLevelOption('info'))
    .addOption(logRateWindowOption())
    .addOption(logRateBurstOption())
    .action(async (options: Parameters<typeof runControlPlaneServe>[0]) => (await commands.controlPlane()).runControlPlaneServe(options));
  addControlPlaneKeyOptions(addDatabaseOptions(
    controlPlane
      .command('rotate-key')
      .description(
        "Rotate the control plane's key: re-wrap the database's data keys and the CA key under a new key, without rewriting a row. Stop the stack first. Without --to-key-*, a new default key file replaces control-plane/cp-root.key.",
      ),
  ))
    .addOption(dataDirOption())
    .option('--to-key-file <path>', 'the new root key file (base64, 0600; created if missing)')
    .option('--to-key-env <var>', 'read the new root key (base64) from this environment variable')
    .option('--to-key-passphrase-env <var>', 'derive the new root key with scrypt from the passphrase in this environment variable')
    .option('--json', 'print the result as JSON', false)
    .action(async (options: Parameters<typeof runControlPlaneRotateKey>[0]) => (await commands.rotateKey()).runControlPlaneRotateKey(options));
  addControlPlaneKeyOptions(
    program
      .command('data-plane')
      .description('The data plane: KMS, object store and the agent that dials the control plane.')
      .command('serve'),
  )
    .description("Run the data plane of the data directory (what `airlock up` starts): it registers with the control plane and dials its tunnel; it never listens for the control plane.")
    .addOption(dataDirOption())
    .option('--host <host>', 'address for the KMS and object store to listen on', '127.0.0.1')
    .option('--kms-port <port>', 'KMS port (0 = any free port)', port, 9443)
    .option('--s3-port <port>', 'object store port (0 = any free port)', port, 9000)
    .option('--dispatch-url <url>', "the control plane's dispatch URL (default: from the data directory)")
    .option('--tunnel-url <url>', "the control plane's tunnel URL (default: from the data directory)")
    .option('--cluster <name>', 'this data plane\'s cluster name', 'local')
    .option('--agent-key-id <key>', "the data plane's KMS key that seals the agent's private key (created if it is a missing alias)", 'alias/airlock/data-plane')
    .option('--register-timeout <ms>', 'how long to wait for registration and the tunnel', positiveInteger, 60_000)
    .addOption(taskIsolationOption())
    .addOption(logLevelOption('info'))
    .addOption(logRateWindowOption())
    .addOption(logRateBurstOption())
    .action(async (options: Omit<Parameters<typeof runDataPlaneServe>[0], 'registerTimeoutMs'> & { registerTimeout: number }) => {
      const { registerTimeout, ...rest } = options;
      await (await commands.dataPlane()).runDataPlaneServe({ ...rest, registerTimeoutMs: registerTimeout });
    });

  const kms = program.command('kms').description('The embedded AWS-KMS-compatible key service.');
  addControlPlaneKeyOptions(addRootKeyOptions(
    kms
      .command('serve')
      .description('Run the KMS alone; writes its endpoint, CA bundle and access keys to the data directory.')
      .addOption(dataDirOption())
      .option('--host <host>', 'address to listen on', '127.0.0.1')
      .option('--port <port>', 'port to listen on (0 = any free port)', port, 9443)
      .option('--region <region>', 'AWS region in ARNs and signatures', 'us-east-1')
      .addOption(new Option('--log-level <level>', 'log level').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'))
      .addOption(logRateWindowOption())
      .addOption(logRateBurstOption()),
  )).action(async (options: Parameters<typeof runKmsServe>[0]) => {
    await (await commands.kms()).runKmsServe(options);
  });
  const audit = kms.command('audit').description('The KMS audit log.');
  addRootKeyOptions(
    audit.command('verify').description('Check that no audit record was edited, removed or reordered.').addOption(dataDirOption()).addOption(jsonOption()),
  ).action(async (options: Parameters<typeof runKmsAuditVerify>[0]) => {
    await (await commands.kms()).runKmsAuditVerify(options);
  });

  const objectstore = program.command('objectstore').description('The embedded S3-compatible object store.');
  addControlPlaneKeyOptions(objectstore.command('serve'))
    .description("Run the object store alone, using the data directory's KMS for every object key.")
    .addOption(dataDirOption())
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <port>', 'port to listen on (0 = any free port)', port, 9000)
    .option('--kms <endpoint>', "KMS endpoint (default: the data directory's KMS)")
    .addOption(new Option('--log-level <level>', 'log level').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'))
    .addOption(logRateWindowOption())
    .addOption(logRateBurstOption())
    .action(async (options: Parameters<typeof runObjectStoreServe>[0]) => {
      await (await commands.objectstore()).runObjectStoreServe(options);
    });

  const keys = program.command('keys').description('Customer-managed keys on the local KMS.');
  const common = (c: Command): Command => c.addOption(dataDirOption()).addOption(jsonOption());
  common(keys.command('create').description('Create a key.'))
    .option('--description <text>', 'what the key protects')
    .option('--alias <alias/name>', 'also create this alias for it')
    .action(async (options: Parameters<typeof keysCreate>[0]) => (await commands.keys()).keysCreate(options));
  common(keys.command('list').description('List keys with their state and aliases.')).action(async (options: { dataDir?: string; json: boolean }) =>
    (await commands.keys()).keysList(options),
  );
  common(keys.command('describe <key>').description('Show a key (id, ARN or alias).')).action(async (key: string, options: { dataDir?: string; json: boolean }) =>
    (await commands.keys()).keysDescribe(key, options),
  );
  for (const [name, text] of [
    ['enable', 'Enable a key: data under it becomes readable again.'],
    ['disable', 'Disable a key: data under it becomes unreadable within a second.'],
    ['rotate', 'Rotate a key now: add a key version; old versions still decrypt.'],
    ['cancel-deletion', 'Cancel a scheduled deletion (the key comes back Disabled).'],
  ] as const) {
    common(keys.command(`${name} <key>`).description(text)).action(async (key: string, options: { dataDir?: string; json: boolean }) =>
      (await commands.keys()).keysChangeState(name, key, options),
    );
  }
  common(keys.command('schedule-deletion <key>').description('Schedule a key for deletion (crypto-shredding after the window).'))
    .option('--days <days>', 'waiting period, 7 to 30 days', positiveInteger, 30)
    .action(async (key: string, options: { dataDir?: string; json: boolean; days: number }) => (await commands.keys()).keysScheduleDeletion(key, options));
  const alias = keys.command('alias').description('Key aliases (alias/…).');
  common(alias.command('create <name> <key>').description('Create an alias for a key.')).action(
    async (name: string, key: string, options: { dataDir?: string; json: boolean }) => (await commands.keys()).keysAlias('create', { name, key }, options),
  );
  common(alias.command('update <name> <key>').description('Point an alias at another key.')).action(
    async (name: string, key: string, options: { dataDir?: string; json: boolean }) => (await commands.keys()).keysAlias('update', { name, key }, options),
  );
  common(alias.command('delete <name>').description('Delete an alias.')).action(async (name: string, options: { dataDir?: string; json: boolean }) =>
    (await commands.keys()).keysAlias('delete', { name }, options),
  );
  common(alias.command('list').description('List aliases.'))
    .option('--key <key>', 'only aliases of this key')
    .action(async (options: { dataDir?: string; json: boolean; key?: string }) => (await commands.keys()).keysAlias('list', { ...(options.key === undefined ? {} : { key: options.key }) }, options));

  addClientCommands(program);
  return program;
}

/** Sets the exit code a command returned (commander ignores action return values). */
async function exitWith(code: Promise<number>): Promise<void> {
  process.exitCode = await code;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** The client commands: they call the control plane's API with the client configuration that `airlock up` or `airlock login` wrote. */
function addClientCommands(program: Command): void {
  type ClientFlags = { config?: string; dataDir?: string; project?: string; json: boolean };
  const client = (c: Command): Command =>
    c
      .option('--config <file>', 'client configuration (default: $AIRLOCK_CONFIG, else <data-dir>/client/config.json, which `airlock up` writes)')
      .addOption(dataDirOption())
      .option('--project <name>', 'project (default: the configuration\'s, "default" after `airlock up`)')
      .addOption(jsonOption());

  client(
    program
      .command('run <file> [task]')
      .description('Bundle a TypeScript or JavaScript module, upload it to the data plane, seal the inputs to the data plane\'s pinned key and start a run of one of its tasks.'),
  )
    .option('--input <key=value>', 'an input (repeatable); converted by the task\'s input schema; key may be a dotted path', collect, [])
    .option('--inputs <file>', 'a JSON file with the inputs object ("-" for stdin); --input values apply on top')
    .option('--cluster <name>', 'the data plane to run on (default: the configured one, else the only one)')
    .option('--idempotency-key <key>', 'makes a retried submission return the first run instead of starting another (default: a fresh key per invocation)')
    .option('--wait', 'follow the run\'s phases until it ends, then print its outputs (exit 1 unless it succeeded)', false)
    .action(async (file: string, task: string | undefined, options: RunCommandOptions & ClientFlags) => exitWith((await commands.runs()).runTask(file, task, options)));

  const runs = program.command('runs').description('Runs: list, inspect, follow and abort them.');
  client(runs.command('list').description('List runs of the project, newest first.'))
    .option('--task <name>', 'only runs of this task')
    .option('--phase <phase>', 'only runs in this phase (queued, initializing, running, succeeded, failed, aborted, timed_out)')
    .option('--limit <n>', 'at most this many runs', positiveInteger, 50)
    .action(async (options: ClientFlags & { task?: string; phase?: string; limit: number }) => (await commands.runs()).runsList(options));
  client(runs.command('get <run>').description('Show a run: phases with times, attempts, the error record, and its outputs or error details opened locally.')).action(
    async (run: string, options: ClientFlags) => (await commands.runs()).runsGet(run, options),
  );
  client(runs.command('watch <run>').description('Follow a run until it ends, then print its outputs (exit 1 unless it succeeded).')).action(
    async (run: string, options: ClientFlags) => exitWith((await commands.runs()).runsWatch(run, options)),
  );
  client(runs.command('abort <run>').description('Abort a run: at once if queued, at the data plane\'s next heartbeat if running.')).action(
    async (run: string, options: ClientFlags) => (await commands.runs()).runsAbort(run, options),
  );
  client(program.command('outputs <run>').description('Fetch a finished run\'s outputs sealed to a fresh key and open them here (exit 1 for a failed run, whose error details it shows).')).action(
    async (run: string, options: ClientFlags) => exitWith((await commands.runs()).runOutputs(run, options)),
  );

  const tasks = program.command('tasks').description('Registered tasks.');
  client(tasks.command('list').description('The newest version of each task of the project.')).action(async (options: ClientFlags) => (await commands.runs()).tasksList(options));
  client(tasks.command('get <name>').description('A task version: its schemas, retries and timeout (default: the newest version).'))
    .option('--version <version>', 'a version (as `airlock tasks list` shows)')
    .action(async (name: string, options: ClientFlags & { version?: string }) => (await commands.runs()).tasksGet(name, options));

  program
    .command('login')
    .description('Record a control plane and pin a data plane\'s identity in the client configuration, after checking the token and the pin.')
    .requiredOption('--api <url>', 'the control plane\'s API, https://host:port')
    .requiredOption('--token-file <file>', 'file holding the API token (keep it 0600)')
    .requiredOption('--pin <sha256:hex>', 'the data plane\'s identity fingerprint, as its operator gives it (`airlock up` prints the local one)')
    .option('--ca <file>', 'PEM CA bundle that verifies the API\'s certificate (default: the system\'s)')
    .option('--cluster <name>', 'the data plane the pin belongs to (default: the only one)')
    .option('--project <name>', 'the default project', 'default')
    .option('--config <file>', 'where to write the configuration (default: $AIRLOCK_CONFIG, else <data-dir>/client/config.json)')
    .addOption(dataDirOption())
    .addOption(jsonOption())
    .action(async (options: Parameters<typeof runLogin>[0]) => (await commands.login()).runLogin(options));
}
