// Runs end to end (issue 12): submit → SUCCEEDED latency of a no-op function task with sealed I/O, the drain rate of 500 queued
// runs, and graphile-worker's add_job → job done latency on the same PostgreSQL as a durable-queue floor. Writes bench/results/runs.md.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { run as runGraphileWorker, makeWorkerUtils, Logger as GraphileLogger } from 'graphile-worker';
import { generateSealingKeyPair, openSealed, seal } from '@airlock/crypto';
import { tlsClientOptions } from '@airlock/pki';
import { ActionPhase, IO_SEALING_PURPOSE, runInputsAad, runResultAad, verifyDataPlaneKeys } from '@airlock/protocol';
import { startTempPostgres, type TempPostgres } from '@airlock/testing';
import { prepareTask, uploadBundle } from '../packages/cli/src/commands/runs.js';
import { connectApi, type ApiConnection } from '../packages/cli/src/internal/api-client.js';
import { loadClientConfig } from '../packages/cli/src/internal/client-config.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = join(ROOT, 'packages', 'cli', 'bin', 'airlock.js');
const LATENCY_RUNS = Number(process.env.BENCH_LATENCY_RUNS ?? 60);
const WARMUP_RUNS = 5;
const DRAIN_RUNS = Number(process.env.BENCH_DRAIN_RUNS ?? 500);
const SUBMITTERS = 16;
/** The pause before each submission of the "idle stack" latency row: long enough for the stack to settle after a run. */
const IDLE_PAUSE_MS = 500;
const TERMINAL = new Set([ActionPhase.SUCCEEDED, ActionPhase.FAILED, ActionPhase.ABORTED, ActionPhase.TIMED_OUT]);

interface Stack {
  readonly dir: string;
  readonly child: ChildProcess;
  readonly api: ApiConnection;
  readonly project: string;
  readonly cluster: string;
  readonly ioKey: { publicKey: Uint8Array; keyId: string };
  readonly version: string;
  readonly pids: { readonly controlPlane: number; readonly dataPlane: number };
  readonly bundleCode: Buffer;
}

async function startStack(extraArgs: readonly string[]): Promise<Stack> {
  const dir = await mkdtemp(join(tmpdir(), 'airlock-bench-runs-'));
  const ports = ['--api-port', '0', '--dispatch-port', '0', '--tunnel-port', '0', '--kms-port', '0', '--s3-port', '0'];
  const child = spawn(process.execPath, [CLI, 'up', '--data-dir', dir, ...ports, ...extraArgs], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      if (output.includes('Press Ctrl-C')) resolve();
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`airlock up exited (${code}):\n${output.slice(-2000)}`)));
  });
  const config = await loadClientConfig({ dataDir: dir });
  const api = await connectApi(config);
  const project = config.project;
  const cluster = config.cluster ?? 'local';
  const { cluster: found } = await api.client.getCluster({ name: cluster });
  const pin = config.pins[cluster];
  if (pin === undefined) throw new Error('no pin in the client configuration');
  const { ioKey } = verifyDataPlaneKeys(found?.keys, pin, cluster);

  // The CLI's own bundling and upload, so the bench pays exactly what `airlock run` pays.
  const task = await prepareTask(join(ROOT, 'bench', 'fixtures', 'noop-task.ts'), 'noop');
  const bundle = { sha256: task.bundle.sha256, size: BigInt(task.bundle.size) };
  const location = await api.client.createUploadLocation({ project, cluster, bundle });
  if (!location.alreadyStored) await uploadBundle(task.bundle, location.url, location.headers, config.caFile);
  await api.client.registerTask({ project, specJson: Buffer.from(JSON.stringify(task.spec)), bundle });
  const { pids } = JSON.parse(await readFile(join(dir, 'endpoints.json'), 'utf8')) as { pids: Stack['pids'] };
  return { dir, child, api, project, cluster, ioKey, version: task.version, pids, bundleCode: task.bundle.code };
}

async function stopStack(stack: Stack): Promise<void> {
  stack.api.close();
  const exited = new Promise((resolve) => stack.child.once('exit', resolve));
  stack.child.kill('SIGINT');
  await exited;
  await rm(stack.dir, { recursive: true, force: true });
}

/** Seals {n} to the data plane and creates a run; resolves with its id. */
async function submit(stack: Stack, n: number): Promise<string> {
  const sealed = await seal({ recipientPublicKey: stack.ioKey.publicKey, purpose: IO_SEALING_PURPOSE, plaintext: Buffer.from(JSON.stringify({ n })), aad: runInputsAad(stack.project, 'noop') });
  const { run } = await stack.api.client.createRun({ project: stack.project, taskName: 'noop', taskVersion: stack.version, cluster: stack.cluster, inputs: { sealed, keyId: stack.ioKey.keyId } });
  if (run === undefined) throw new Error('no run');
  return run.runId;
}

async function waitDone(stack: Stack, runId: string): Promise<ActionPhase> {
  for await (const message of stack.api.client.watchRun({ project: stack.project, runId }, { timeoutMs: 0 })) {
    if (message.run !== undefined && TERMINAL.has(message.run.phase)) return message.run.phase;
  }
  throw new Error(`watch of ${runId} ended early`);
}

/**
 * submit → SUCCEEDED, then the sealed outputs fetched and opened: milliseconds per run, sequentially. With
 * `pauseMs`, each submission waits that long after the previous run (outside the time measured), as a run
 * submitted to a stack that is not busy: what finished work the last run left (its prepared process's
 * replacement, the result's write-back) is over by then.
 */
async function latency(stack: Stack, pauseMs = 0): Promise<{ done: number[]; withOutputs: number[] }> {
  const done: number[] = [];
  const withOutputs: number[] = [];
  for (let i = 0; i < WARMUP_RUNS + LATENCY_RUNS; i += 1) {
    if (pauseMs > 0) await new Promise((resolve) => setTimeout(resolve, pauseMs));
    const started = performance.now();
    const runId = await submit(stack, i);
    const phase = await waitDone(stack, runId);
    const finished = performance.now();
    if (phase !== ActionPhase.SUCCEEDED) throw new Error(`run ${runId} ended ${ActionPhase[phase]}`);
    const keys = generateSealingKeyPair();
    const outputs = await stack.api.client.getRunOutputs({ project: stack.project, runId, recipientPublicKey: keys.publicKey });
    const opened = JSON.parse((await openSealed({ recipientPrivateKey: keys.privateKey, purpose: IO_SEALING_PURPOSE, sealed: outputs.result?.sealed ?? new Uint8Array(), aad: runResultAad(stack.project, runId, outputs.actionId) })).toString()) as { outputs: { n: number } };
    if (opened.outputs.n !== i) throw new Error('wrong outputs');
    if (i >= WARMUP_RUNS) {
      done.push(finished - started);
      withOutputs.push(performance.now() - started);
    }
  }
  return { done, withOutputs };
}

/** CPU seconds a process has used, and (cutime/cstime) what its waited-for children used: /proc/<pid>/stat, in clock ticks of 10 ms. */
async function cpuSeconds(pid: number): Promise<{ own: number; children: number }> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).replace(/^.*\) /su, '').split(' ').map(Number);
  // After "(comm) ": state is field 3, so utime (14), stime (15), cutime (16), cstime (17) are at 11..14.
  const tick = 100;
  return { own: ((fields[11] ?? 0) + (fields[12] ?? 0)) / tick, children: ((fields[13] ?? 0) + (fields[14] ?? 0)) / tick };
}

/** The data plane's task launcher (docs/runs.md, "The launcher"): the child of the data plane run with `node -e`, whose waited-for children are the task processes. */
async function launcherPid(dataPlanePid: number): Promise<number> {
  for (const tid of await readdir(`/proc/${dataPlanePid}/task`)) {
    const children = (await readFile(`/proc/${dataPlanePid}/task/${tid}/children`, 'utf8')).trim().split(/\s+/u).filter((pid) => pid !== '');
    for (const pid of children) {
      const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
      if (argv[1] === '-e') return Number(pid);
    }
  }
  throw new Error('the data plane has no task launcher (has it run a task yet?)');
}

/** Queues DRAIN_RUNS runs as fast as SUBMITTERS clients can, then waits for all: runs per second from the first submit to the last SUCCEEDED. */
async function drain(stack: Stack): Promise<{ perSecond: number; submitSeconds: number; afterSubmit: { runs: number; perSecond: number }; cpuMsPerRun: { controlPlane: number; dataPlane: number; launcher: number; tasks: number } }> {
  const launcher = await launcherPid(stack.pids.dataPlane);
  const [cpBefore, dpBefore, launcherBefore] = await Promise.all([cpuSeconds(stack.pids.controlPlane), cpuSeconds(stack.pids.dataPlane), cpuSeconds(launcher)]);
  const started = performance.now();
  // Each run is watched from its submission, so the time it ended is known whether or not submitting was still going on.
  const ends: Array<Promise<{ phase: ActionPhase; at: number }>> = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: SUBMITTERS }, async () => {
      while (next < DRAIN_RUNS) {
        next += 1;
        const id = await submit(stack, next);
        ends.push(waitDone(stack, id).then((phase) => ({ phase, at: performance.now() })));
      }
    }),
  );
  const submitted = performance.now();
  const ended = await Promise.all(ends);
  const phases = ended.map((end) => end.phase);
  const seconds = (performance.now() - started) / 1000;
  const lastEnd = Math.max(...ended.map((end) => end.at));
  const leftAtSubmitEnd = ended.filter((end) => end.at > submitted).length;
  const failed = phases.filter((p) => p !== ActionPhase.SUCCEEDED).length;
  if (failed > 0) throw new Error(`${failed} of ${DRAIN_RUNS} runs did not succeed`);
  const [cpAfter, dpAfter, launcherAfter] = await Promise.all([cpuSeconds(stack.pids.controlPlane), cpuSeconds(stack.pids.dataPlane), cpuSeconds(launcher)]);
  const perRun = (seconds: number): number => (seconds * 1000) / DRAIN_RUNS;
  return {
    perSecond: DRAIN_RUNS / seconds,
    submitSeconds: (submitted - started) / 1000,
    afterSubmit: { runs: leftAtSubmitEnd, perSecond: leftAtSubmitEnd / ((lastEnd - submitted) / 1000) },
    cpuMsPerRun: {
      controlPlane: perRun(cpAfter.own - cpBefore.own),
      dataPlane: perRun(dpAfter.own - dpBefore.own),
      launcher: perRun(launcherAfter.own - launcherBefore.own),
      // The launcher's waited-for children (the task processes, prepared ones included) and any the data plane waited for itself.
      tasks: perRun(launcherAfter.children - launcherBefore.children + dpAfter.children - dpBefore.children),
    },
  };
}

/**
 * The floor of a fresh process per attempt, without the platform: the same bundle run by `node` directly,
 * as the executor runs it (minimal environment, own working directory), cold (`run --request <file>`) and
 * prepared (`run --request -`, timed from the request to the exit), and as many processes per second as
 * 4 at a time (the agent's default concurrency) manage on this machine, with their CPU.
 */
async function processFloor(bundleCode: Buffer): Promise<{ cold: number[]; prepared: number[]; perSecond: number; cpuMsPerProcess: number; empty: { perSecond: number; cpuMsPerProcess: number } }> {
  const dir = await mkdtemp(join(tmpdir(), 'airlock-bench-floor-'));
  try {
    const bundlePath = join(dir, 'bundle.mjs');
    await writeFile(bundlePath, bundleCode);
    await writeFile(join(dir, 'inputs.json'), JSON.stringify({ n: 1 }));
    let counter = 0;
    const requestFor = (): string => {
      counter += 1;
      return JSON.stringify({ version: 1, task: 'noop', inputsPath: join(dir, 'inputs.json'), resultPath: join(dir, `result-${counter}.json`), attempt: 1 });
    };
    const start = (requestArg: string): ChildProcess =>
      spawn(process.execPath, [bundlePath, 'run', '--request', requestArg], { cwd: dir, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, TMPDIR: dir, LANG: 'C.UTF-8' }, detached: true, stdio: [requestArg === '-' ? 'pipe' : 'ignore', 'ignore', 'ignore'] });
    const exited = (child: ChildProcess): Promise<number | null> => new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    const cold: number[] = [];
    const prepared: number[] = [];
    for (let i = 0; i < WARMUP_RUNS + LATENCY_RUNS; i += 1) {
      const requestPath = join(dir, `request-${i}.json`);
      await writeFile(requestPath, requestFor());
      let began = performance.now();
      if ((await exited(start(requestPath))) !== 0) throw new Error('the bundle failed');
      if (i >= WARMUP_RUNS) cold.push(performance.now() - began);
      const waiting = start('-');
      // Loaded well before its request, as a prepared process is between attempts.
      await new Promise((resolve) => setTimeout(resolve, 400));
      began = performance.now();
      const done = exited(waiting);
      waiting.stdin?.end(requestFor());
      if ((await done) !== 0) throw new Error('the bundle failed');
      if (i >= WARMUP_RUNS) prepared.push(performance.now() - began);
    }
    const count = Math.min(DRAIN_RUNS, 200);
    /** `count` processes made by `one`, 4 at a time: processes per second and CPU per process. */
    const rate = async (one: (n: number) => Promise<ChildProcess>): Promise<{ perSecond: number; cpuMsPerProcess: number }> => {
      const before = await cpuSeconds(process.pid);
      const began = performance.now();
      let next = 0;
      await Promise.all(
        Array.from({ length: 4 }, async () => {
          while (next < count) {
            next += 1;
            if ((await exited(await one(next))) !== 0) throw new Error('the process failed');
          }
        }),
      );
      const seconds = (performance.now() - began) / 1000;
      const after = await cpuSeconds(process.pid);
      return { perSecond: count / seconds, cpuMsPerProcess: ((after.children - before.children) * 1000) / count };
    };
    const bundle = await rate(async (n) => {
      const requestPath = join(dir, `drain-${n}.json`);
      await writeFile(requestPath, requestFor());
      return start(requestPath);
    });
    // Node.js itself, with no code to load: the least any fresh process per attempt costs here.
    const empty = await rate(async () => spawn(process.execPath, ['-e', '0'], { cwd: dir, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, stdio: 'ignore' }));
    return { cold, prepared, ...bundle, empty };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** graphile-worker on the same PostgreSQL: add_job → job done, one at a time (the latency floor of a durable queue). */
async function graphileLatency(server: TempPostgres): Promise<number[]> {
  const admin = new pg.Client({ connectionString: server.url, ssl: { ...tlsClientOptions({ ca: server.caPem }), host: server.host } });
  await admin.connect();
  await admin.query('create database graphile_runs');
  await admin.end();
  const pool = new pg.Pool({ connectionString: `${server.url.replace(/\/[^/]*$/, '')}/graphile_runs`, ssl: { ...tlsClientOptions({ ca: server.caPem }), host: server.host }, max: 10 });
  const utils = await makeWorkerUtils({ pgPool: pool });
  await utils.migrate();
  const waiters = new Map<number, () => void>();
  const runner = await runGraphileWorker({
    pgPool: pool,
    concurrency: 4,
    noHandleSignals: true,
    pollInterval: 1000,
    logger: new GraphileLogger(() => () => undefined),
    taskList: {
      noop: (payload) => {
        waiters.get((payload as { n: number }).n)?.();
        return Promise.resolve();
      },
    },
  });
  const times: number[] = [];
  for (let i = 0; i < WARMUP_RUNS + LATENCY_RUNS; i += 1) {
    const done = new Promise<void>((resolve) => waiters.set(i, resolve));
    const started = performance.now();
    await utils.addJob('noop', { n: i });
    await done;
    if (i >= WARMUP_RUNS) times.push(performance.now() - started);
  }
  await runner.stop();
  await utils.release();
  await pool.end();
  return times;
}

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

async function main(): Promise<void> {
  const sqlite = await startStack([]);
  let sqliteLatency;
  let sqliteIdle;
  let sqliteDrain;
  let floor;
  try {
    floor = await processFloor(sqlite.bundleCode);
    process.stderr.write(`floor: cold p50 ${percentile(floor.cold, 50).toFixed(0)} ms, prepared p50 ${percentile(floor.prepared, 50).toFixed(0)} ms, ${floor.perSecond.toFixed(1)} processes/s\n`);
    sqliteLatency = await latency(sqlite);
    process.stderr.write(`sqlite: p50 ${percentile(sqliteLatency.done, 50).toFixed(0)} ms back to back\n`);
    sqliteIdle = await latency(sqlite, IDLE_PAUSE_MS);
    process.stderr.write(`sqlite: p50 ${percentile(sqliteIdle.done, 50).toFixed(0)} ms on an idle stack\n`);
    sqliteDrain = await drain(sqlite);
    process.stderr.write(`sqlite: drain ${sqliteDrain.perSecond.toFixed(1)} runs/s, ${sqliteDrain.afterSubmit.perSecond.toFixed(1)} runs/s after the last submit (${sqliteDrain.afterSubmit.runs} runs)\n`);
  } finally {
    await stopStack(sqlite);
  }

  const server = await startTempPostgres({ settings: { max_connections: 100 } });
  let pgLatency;
  let pgIdle;
  let graphile;
  try {
    const caFile = join(server.socketDir, 'bench-ca.pem');
    await writeFile(caFile, server.caPem);
    const postgres = await startStack(['--db', server.url, '--db-ca', caFile]);
    try {
      pgLatency = await latency(postgres);
      process.stderr.write(`postgres: p50 ${percentile(pgLatency.done, 50).toFixed(0)} ms back to back\n`);
      pgIdle = await latency(postgres, IDLE_PAUSE_MS);
      process.stderr.write(`postgres: p50 ${percentile(pgIdle.done, 50).toFixed(0)} ms on an idle stack\n`);
    } finally {
      await stopStack(postgres);
    }
    graphile = await graphileLatency(server);
    process.stderr.write(`graphile-worker: p50 ${percentile(graphile, 50).toFixed(1)} ms\n`);
  } finally {
    await server.stop();
  }

  const p50 = percentile(sqliteLatency.done, 50);
  const idleP50 = percentile(sqliteIdle.done, 50);
  const pgIdleP50 = percentile(pgIdle.done, 50);
  const preparedP50 = percentile(floor.prepared, 50);
  const totalCpu = sqliteDrain.cpuMsPerRun.controlPlane + sqliteDrain.cpuMsPerRun.dataPlane + sqliteDrain.cpuMsPerRun.launcher + sqliteDrain.cpuMsPerRun.tasks;
  const pgP50 = percentile(pgLatency.done, 50);
  const graphileP50 = percentile(graphile, 50);
  const row = (name: string, values: readonly number[]): string =>
    `| ${name} | ${percentile(values, 50).toFixed(0)} | ${percentile(values, 90).toFixed(0)} | ${percentile(values, 99).toFixed(0)} |`;
  const report = `# Runs end to end

\`npm run bench:runs\` on ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version}, ${new Date().toISOString().slice(0, 10)}.
A real \`airlock up\` stack (control plane and data plane as separate processes, everything over TLS); the
client is the CLI's own code (bundle, pin check, HPKE sealing, Connect), with the CLI's start-up excluded.
The task is a no-op function task (\`bench/fixtures/noop-task.ts\`): each attempt is a fresh Node process
running the ${(sqlite.bundleCode.length / 1e6).toFixed(1)} MB bundle, as the local-process executor always runs it; since an attempt's process
is *prepared* (started and loaded before its attempt comes, docs/runs.md), a sequential run finds one waiting.

## Latency: submit → SUCCEEDED (${LATENCY_RUNS} sequential runs after ${WARMUP_RUNS} warm-up, twice)

Measured from sealing the inputs to WatchRun reporting SUCCEEDED; "with outputs" adds GetRunOutputs and
opening the sealed result. *Back to back*: each run is submitted the moment the one before it is done, so it
shares the cores with what that run left behind (starting the replacement of the prepared process it used:
a fresh Node.js process loading the bundle, about ${floor.cpuMsPerProcess.toFixed(0)} ms of CPU). *Idle stack*: each submission
waits ${IDLE_PAUSE_MS} ms after the previous run (not counted), as a run submitted to a stack that is not busy.

| measure (ms) | p50 | p90 | p99 |
|---|---|---|---|
${row('encrypted SQLite, idle stack: submit → SUCCEEDED', sqliteIdle.done)}
${row('encrypted SQLite, idle stack: … + outputs opened', sqliteIdle.withOutputs)}
${row('encrypted SQLite, back to back: submit → SUCCEEDED', sqliteLatency.done)}
${row('encrypted SQLite, back to back: … + outputs opened', sqliteLatency.withOutputs)}
${row('PostgreSQL over TLS, idle stack: submit → SUCCEEDED', pgIdle.done)}
${row('PostgreSQL over TLS, back to back: submit → SUCCEEDED', pgLatency.done)}
${row('graphile-worker on the same PostgreSQL: add_job → done', graphile)}
${row('floor: the bundle run by `node` alone, cold (spawn → exit)', floor.cold)}
${row('floor: the bundle run by `node` alone, prepared (request → exit)', floor.prepared)}

| target | measured | |
|---|---|---|
| p50 ≤ 150 ms (SQLite, idle stack) | ${idleP50.toFixed(0)} ms | ${idleP50 <= 150 ? '✓' : '✗'} |
| p50 ≤ 150 ms (SQLite, back to back) | ${p50.toFixed(0)} ms | ${p50 <= 150 ? '✓' : '✗'} |
| Airlock (PostgreSQL, idle stack) ÷ graphile-worker p50 ≤ 5× | ${(pgIdleP50 / graphileP50).toFixed(1)}× | ${pgIdleP50 / graphileP50 <= 5 ? '✓' : '✗'} |
| Airlock (PostgreSQL, back to back) ÷ graphile-worker p50 | ${(pgP50 / graphileP50).toFixed(1)}× | |
| floor: a prepared process alone ÷ graphile-worker p50 | ${(preparedP50 / graphileP50).toFixed(1)}× | |

Back to back, runs follow each other as a stream, and a stream is bound by CPU: each run costs ${totalCpu.toFixed(0)} ms of
CPU in all (measured while draining, below: its share of the control plane, the data plane and the launcher,
and one fresh task process), so ${cpus().length} cores finish one at best every ${(totalCpu / cpus().length).toFixed(0)} ms, against ${p50.toFixed(0)} ms measured.
On an idle stack the replacement's CPU is spent between runs, outside the time measured.

graphile-worker runs its job in the worker's own process; every Airlock attempt runs in a process of its own
(the isolation the executor promises), so the prepared process's request → exit alone is the floor beside
the durable queue: ${preparedP50.toFixed(0)} ms against graphile-worker's ${graphileP50.toFixed(1)} ms, ${(preparedP50 / graphileP50).toFixed(1)}× before any of the platform's work.

## Throughput: draining ${DRAIN_RUNS} queued runs

${SUBMITTERS} concurrent submitters queue ${DRAIN_RUNS} runs (${sqliteDrain.submitSeconds.toFixed(1)} s to submit all); the rate is from the first
submit to the last SUCCEEDED.

| measure | runs/s | target |
|---|---|---|
| encrypted SQLite | ${sqliteDrain.perSecond.toFixed(1)} | ≥ 20 ${sqliteDrain.perSecond >= 20 ? '✓' : '✗'} |
| … the ${sqliteDrain.afterSubmit.runs} runs still queued or running when the last submit returned, from then on | ${sqliteDrain.afterSubmit.perSecond.toFixed(1)} | |
| floor: the bundle run by \`node\` alone, fresh process each, 4 at a time | ${floor.perSecond.toFixed(1)} | — |
| floor: \`node -e 0\` (Node.js with no code), fresh process each, 4 at a time | ${floor.empty.perSecond.toFixed(1)} | — |

CPU per run while draining (from \`/proc/<pid>/stat\`; the task processes are the launcher's waited-for children):

| control plane | data plane (agent, KMS, object store) | task launcher | task processes | the bundle alone, per process |
|---|---|---|---|---|
| ${sqliteDrain.cpuMsPerRun.controlPlane.toFixed(0)} ms | ${sqliteDrain.cpuMsPerRun.dataPlane.toFixed(0)} ms | ${sqliteDrain.cpuMsPerRun.launcher.toFixed(0)} ms | ${sqliteDrain.cpuMsPerRun.tasks.toFixed(0)} ms | ${floor.cpuMsPerProcess.toFixed(0)} ms |

On ${cpus().length} cores, ${totalCpu.toFixed(0)} ms of CPU per run caps the drain at about ${((cpus().length * 1000) / totalCpu).toFixed(1)} runs/s; a fresh
Node.js process per attempt alone (${floor.cpuMsPerProcess.toFixed(0)} ms with the bundle) caps it at ${((cpus().length * 1000) / floor.cpuMsPerProcess).toFixed(1)}, and \`node -e 0\`
(${floor.empty.cpuMsPerProcess.toFixed(0)} ms of CPU, no code at all) at ${((cpus().length * 1000) / floor.empty.cpuMsPerProcess).toFixed(1)}. At 20 runs/s the ${cpus().length} cores give each run ${((cpus().length * 1000) / 20).toFixed(0)} ms of CPU in all:
the task's own process with its bundle takes ${floor.cpuMsPerProcess.toFixed(0)} ms of that before the platform does anything.
`;
  await writeFile(join(ROOT, 'bench', 'results', 'runs.md'), report);
  process.stdout.write(report);
}

await main();
