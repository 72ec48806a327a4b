// Integration test of the local process executor: real esbuild bundles run as real child processes, over a directory-backed ExecutorStorage.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { closeSync, existsSync, openSync } from 'node:fs';
import { createRequire } from 'node:module';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { create } from '@bufbuild/protobuf';
import { durationFromMs } from '@bufbuild/protobuf/wkt';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AirlockError } from '@airlock/common';
import { createLocalProcessExecutor, type BundleRef, type Executor, type LocalProcessExecutorOptions } from '@airlock/data-plane';
import { ActionSchema, type Action } from '@airlock/protocol';
import { captureLogger, makeCanary, type CapturedLogger } from '@airlock/testing';
import { buildTaskBundle } from './support/build-bundle.js';
import { DirectoryStorage } from './support/directory-storage.js';
import { isProcessAlive as alive } from '@airlock/common';

const PROJECT = 'default';
const here = (path: string): string => fileURLToPath(new URL(path, import.meta.url));
const bundles: Record<'hello' | 'failing' | 'command' | 'tasks', Buffer> = {} as never;

beforeAll(async () => {
  const [hello, failing, command, tasks] = await Promise.all([
    buildTaskBundle(here('../../../examples/hello/hello.ts')),
    buildTaskBundle(here('../../../examples/failing/failing.ts')),
    buildTaskBundle(here('../../../examples/command/word-count.ts')),
    buildTaskBundle(here('./fixtures/executor-tasks.ts')),
  ]);
  Object.assign(bundles, { hello, failing, command, tasks });
});

let dir: string;
let stateDir: string;
let storage: DirectoryStorage;
let logger: CapturedLogger;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'airlock-executor-'));
  stateDir = join(dir, 'state');
  storage = new DirectoryStorage(join(dir, 'store'));
  logger = captureLogger('executor');
});
const opened: Executor[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map(async (target) => target.close?.()));
  await rm(dir, { recursive: true, force: true });
});

/** An executor without prepared processes (each attempt starts its process cold) unless `options.prepared` says otherwise. */
function executor(options: Partial<LocalProcessExecutorOptions> = {}): Executor {
  const created = createLocalProcessExecutor({ storage, stateDir, log: logger.log, killGraceMs: 500, prepared: { perBundle: 0 }, ...options });
  opened.push(created);
  return created;
}

/** Stores the bundle and the inputs, and returns the action the control plane would lease. */
async function action(bundle: Buffer | BundleRef, taskName: string, inputs: unknown, extra: { timeoutMs?: number; attempt?: number } = {}): Promise<Action> {
  const runId = randomUUID();
  const ref = Buffer.isBuffer(bundle) ? await storage.putBundle(PROJECT, bundle) : bundle;
  const inputsRef = inputs === undefined ? '' : await storage.putInputs(PROJECT, runId, inputs);
  return create(ActionSchema, {
    actionId: randomUUID(),
    runId,
    task: { project: PROJECT, name: taskName, version: 'a'.repeat(64) },
    attempt: extra.attempt ?? 1,
    inputsRef,
    bundle: { sha256: ref.sha256, size: BigInt(ref.size) },
    ...(extra.timeoutMs === undefined ? {} : { timeout: durationFromMs(extra.timeoutMs) }),
  });
}

/** Runs an action to its end, recording the hooks it called. */
async function run(target: Executor, act: Action, signal = new AbortController().signal) {
  let running = 0;
  const outcome = await target.execute(act, signal, { onRunning: () => (running += 1) });
  return { outcome, running, result: await storage.result(PROJECT, act.runId, act.actionId) };
}

async function workDirs(): Promise<string[]> {
  return readdir(join(stateDir, 'work')).catch(() => []);
}

async function journalFiles(): Promise<string[]> {
  return readdir(join(stateDir, 'executor-journal')).catch(() => []);
}

type JournalRecord = { actionId: string; process?: { pid: number } };

/** The journal's entries, read while the executor may be writing: entries are `*.json` (an atomic write in flight is a dot-file ending `.tmp`), and one may go between the listing and the read. */
async function journalEntries(): Promise<JournalRecord[]> {
  const files = (await journalFiles()).filter((file) => file.endsWith('.json'));
  const read = await Promise.all(files.map(async (file) => readFile(join(stateDir, 'executor-journal', file), 'utf8').catch(() => undefined)));
  return read.flatMap((text) => (text === undefined ? [] : [JSON.parse(text) as JournalRecord]));
}

/** Pids of the prepared processes waiting: their journal entries name no action and have a pid. */
function waitingPids(entries: readonly JournalRecord[]): number[] {
  return entries.flatMap((entry) => (entry.actionId === '' && entry.process !== undefined ? [entry.process.pid] : []));
}

function signalGroupQuietly(pgid: number): void {
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

async function until(check: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

async function readPids(path: string): Promise<{ task: number; grandchild?: number }> {
  await until(() => existsSync(path));
  await until(async () => (await readFile(path, 'utf8')).endsWith('}'));
  return JSON.parse(await readFile(path, 'utf8')) as { task: number; grandchild?: number };
}

describe('LocalProcessExecutor', () => {
  it('runs a task and stores its outputs; nothing of the task reaches the log', async () => {
    const name = makeCanary('name');
    const act = await action(bundles.hello, 'hello', { name });
    const { outcome, running, result } = await run(executor(), act);
    expect(outcome).toEqual({ phase: 'SUCCEEDED' });
    expect(running).toBe(1);
    expect(result).toEqual({ version: 1, ok: true, attempt: 1, outputs: { greeting: `Hello, ${name}!` } });
    expect(logger.text()).not.toContain(name);
    expect(logger.text()).not.toContain('greeting someone');
    expect(logger.lines.map((line) => line.event)).toEqual(expect.arrayContaining(['executor.process_started', 'executor.process_exited']));
    expect(await workDirs()).toEqual([]);
    expect(await journalFiles()).toEqual([]);
  });

  it('runs a command task (wc on PATH) with its own attempt number', async () => {
    const act = await action(bundles.command, 'word-count', { text: 'one two three\n' }, { attempt: 3 });
    const { outcome, result } = await run(executor(), act);
    expect(outcome).toEqual({ phase: 'SUCCEEDED' });
    expect(result).toEqual({ version: 1, ok: true, attempt: 3, outputs: { lines: 1, words: 3, bytes: 14 } });
  });

  it('reports a throwing task as a USER error whose message stays in the stored document', async () => {
    const reason = makeCanary('reason');
    const act = await action(bundles.failing, 'failing', { reason });
    const { outcome, result } = await run(executor(), act);
    expect(outcome).toEqual({ phase: 'FAILED', error: { code: 'TASK_FAILED', kind: 'USER', retryable: true } });
    expect(JSON.stringify(outcome)).not.toContain(reason);
    expect(result).toMatchObject({ ok: false, phase: 'FAILED', error: { code: 'TASK_FAILED', kind: 'USER', message: `failing on purpose: ${reason}` } });
    expect(logger.text()).not.toContain(reason);
    expect(await workDirs()).toEqual([]);
  });

  it('fails outputs that do not match the schema (TASK_OUTPUT_INVALID, USER)', async () => {
    const act = await action(bundles.tasks, 'bad-outputs', {});
    const { outcome, result } = await run(executor(), act);
    expect(outcome).toEqual({ phase: 'FAILED', error: { code: 'TASK_OUTPUT_INVALID', kind: 'USER', retryable: false } });
    expect(result).toMatchObject({ ok: false, error: { code: 'TASK_OUTPUT_INVALID', issues: [expect.objectContaining({ path: ['count'] })] } });
  });

  it('runs a task without inputs with an empty object', async () => {
    const act = await action(bundles.tasks, 'inspect', undefined);
    const { outcome } = await run(executor(), act);
    expect(outcome).toEqual({ phase: 'SUCCEEDED' });
  });

  it('runs nothing when the bundle does not match its digest (SYSTEM DIGEST_MISMATCH)', async () => {
    const good = await storage.putBundle(PROJECT, bundles.tasks);
    const markerPath = join(dir, 'marker');
    // The positive control: the genuine bundle does write the marker.
    expect((await run(executor(), await action(good, 'marker', { path: markerPath }))).outcome).toEqual({ phase: 'SUCCEEDED' });
    expect(existsSync(markerPath)).toBe(true);
    await rm(markerPath);

    // The same key and size, one byte changed.
    const tampered = Buffer.from(bundles.tasks);
    tampered.writeUInt8(tampered.readUInt8(tampered.length - 2) ^ 0x01, tampered.length - 2);
    await storage.putObject(join('bundles', PROJECT, good.sha256), tampered);
    const act = await action(good, 'marker', { path: markerPath });
    const { outcome, running, result } = await run(executor(), act);
    expect(outcome).toEqual({ phase: 'FAILED', error: { code: 'DIGEST_MISMATCH', kind: 'SYSTEM', retryable: false } });
    expect(running).toBe(0);
    expect(existsSync(markerPath)).toBe(false);
    expect(result).toMatchObject({ ok: false, phase: 'FAILED', error: { code: 'DIGEST_MISMATCH', kind: 'SYSTEM' } });
    expect(logger.lines.some((line) => line.event === 'executor.process_started' && line.actionId === act.actionId)).toBe(false);
    expect(await workDirs()).toEqual([]);
    expect(await journalFiles()).toEqual([]);
  });

  it("gives the task none of the agent's environment or descriptors, and HOME/TMPDIR in its working directory", async () => {
    const canary = makeCanary('env');
    process.env.AIRLOCK_EXECUTOR_CANARY = canary;
    process.env.AWS_SECRET_ACCESS_KEY = canary;
    const openFile = join(dir, `open-${canary}`);
    const fd = openSync(openFile, 'w');
    try {
      const act = await action(bundles.tasks, 'inspect', {});
      const { outcome, result } = await run(executor(), act);
      expect(outcome).toEqual({ phase: 'SUCCEEDED' });
      const outputs = (result as { outputs: { env: Record<string, string>; fds: string[]; cwd: string } }).outputs;
      expect(Object.keys(outputs.env).sort()).toEqual(['HOME', 'LANG', 'PATH', 'TMPDIR']);
      expect(JSON.stringify(outputs)).not.toContain(canary);
      expect(outputs.env.HOME).toBe(outputs.cwd);
      expect(outputs.env.TMPDIR).toBe(join(outputs.cwd, 'tmp'));
      expect(outputs.cwd.startsWith(join(stateDir, 'work'))).toBe(true);
      expect(outputs.fds.some((target) => target.includes(openFile))).toBe(false);
    } finally {
      closeSync(fd);
      delete process.env.AIRLOCK_EXECUTOR_CANARY;
      delete process.env.AWS_SECRET_ACCESS_KEY;
    }
  });

  it('makes working directories 0700 under the work root', async () => {
    const target = executor();
    const act = await action(bundles.tasks, 'wait', { pidFile: join(dir, 'pids') });
    const controller = new AbortController();
    const running = run(target, act, controller.signal);
    await readPids(join(dir, 'pids'));
    const [name] = await workDirs();
    expect(name).toBeDefined();
    expect((await stat(join(stateDir, 'work', name as string))).mode & 0o777).toBe(0o700);
    expect((await stat(join(stateDir, 'work', name as string, 'inputs.json'))).mode & 0o777).toBe(0o600);
    expect(await journalFiles()).toHaveLength(1);
    controller.abort(new AirlockError('ABORTED'));
    await running;
    expect(await workDirs()).toEqual([]);
  });

  it('on timeout kills a task that ignores SIGTERM, and its grandchild, after the grace period', async () => {
    const pidFile = join(dir, 'pids');
    const act = await action(bundles.tasks, 'stubborn', { pidFile }, { timeoutMs: 60_000 });
    const controller = new AbortController();
    const running = run(executor({ killGraceMs: 700 }), act, controller.signal);
    const pids = await readPids(pidFile);
    expect(pids.grandchild).toEqual(expect.any(Number));
    expect(alive(pids.task) && alive(pids.grandchild ?? 0)).toBe(true);
    const stoppedAt = Date.now();
    controller.abort(new AirlockError('TIMEOUT'));
    const { outcome, result } = await running;
    expect(Date.now() - stoppedAt).toBeGreaterThanOrEqual(650);
    expect(outcome).toEqual({ phase: 'TIMED_OUT', error: { code: 'TASK_TIMED_OUT', kind: 'USER', retryable: true } });
    expect(result).toMatchObject({ ok: false, phase: 'TIMED_OUT', error: { code: 'TASK_TIMED_OUT' } });
    await until(() => !alive(pids.task) && !alive(pids.grandchild ?? 0), 5000);
    expect(await workDirs()).toEqual([]);
    expect(await journalFiles()).toEqual([]);
  });

  it('aborts a running task (ABORTED, TASK_ABORTED)', async () => {
    const pidFile = join(dir, 'pids');
    const act = await action(bundles.tasks, 'wait', { pidFile });
    const controller = new AbortController();
    const running = run(executor(), act, controller.signal);
    const pids = await readPids(pidFile);
    controller.abort(new AirlockError('ABORTED'));
    const { outcome, result } = await running;
    expect(outcome).toEqual({ phase: 'ABORTED', error: { code: 'TASK_ABORTED', kind: 'USER', retryable: false } });
    expect(result).toMatchObject({ ok: false, phase: 'ABORTED' });
    expect(alive(pids.task)).toBe(false);
    expect(await workDirs()).toEqual([]);
  });

  it('does not start a task whose signal is already aborted', async () => {
    const markerPath = join(dir, 'marker');
    const act = await action(bundles.tasks, 'marker', { path: markerPath });
    const { outcome, running } = await run(executor(), act, AbortSignal.abort(new AirlockError('TIMEOUT')));
    expect(outcome).toMatchObject({ phase: 'TIMED_OUT' });
    expect(running).toBe(0);
    expect(existsSync(markerPath)).toBe(false);
  });

  it('reports a process that died without a result as TASK_CRASHED (SYSTEM, retryable), with the end of its stderr in the document only', async () => {
    const act = await action(bundles.tasks, 'crash', {});
    const { outcome, result } = await run(executor(), act);
    expect(outcome).toEqual({ phase: 'FAILED', error: { code: 'TASK_CRASHED', kind: 'SYSTEM', retryable: true } });
    expect(result).toMatchObject({ ok: false, phase: 'FAILED', error: { code: 'TASK_CRASHED', kind: 'SYSTEM', signal: 'SIGKILL', stderrTail: expect.stringContaining('last words before the crash') } });
    expect(logger.text()).not.toContain('last words');
    expect(logger.text()).not.toContain('about to crash');
    expect(await workDirs()).toEqual([]);
  });

  it('treats exit status 2 without a result as a refused request (SYSTEM INTERNAL)', async () => {
    const { outcome } = await run(executor(), await action(bundles.tasks, 'exit-two', {}));
    expect(outcome).toEqual({ phase: 'FAILED', error: { code: 'INTERNAL', kind: 'SYSTEM', retryable: false } });
  });

  it('refuses a result document over the limit (SYSTEM PAYLOAD_TOO_LARGE)', async () => {
    const target = executor({ maxResultBytes: 4096 });
    expect((await run(target, await action(bundles.tasks, 'big', { bytes: 1000 }))).outcome).toEqual({ phase: 'SUCCEEDED' });
    const act = await action(bundles.tasks, 'big', { bytes: 5000 });
    const { outcome, result } = await run(target, act);
    expect(outcome).toEqual({ phase: 'FAILED', error: { code: 'PAYLOAD_TOO_LARGE', kind: 'SYSTEM', retryable: false } });
    expect(result).toMatchObject({ ok: false, error: { code: 'PAYLOAD_TOO_LARGE' } });
    expect(JSON.stringify(result)).not.toContain('xxxx');
  });

  it('reports a storage failure as SYSTEM with its code and catalogue retryability', async () => {
    const act = await action(bundles.hello, 'hello', { name: 'x' });
    storage.failWith = 'KMS_KEY_DISABLED';
    expect((await run(executor(), act)).outcome).toEqual({ phase: 'FAILED', error: { code: 'KMS_KEY_DISABLED', kind: 'SYSTEM', retryable: false } });
    storage.failWith = 'UNAVAILABLE';
    expect((await run(executor(), act)).outcome).toEqual({ phase: 'FAILED', error: { code: 'UNAVAILABLE', kind: 'SYSTEM', retryable: true } });
    expect(await workDirs()).toEqual([]);
    expect(await journalFiles()).toEqual([]);
  });

  it('fails an action without a bundle (SYSTEM INVALID_ARGUMENT)', async () => {
    const act = await action(bundles.hello, 'hello', { name: 'x' });
    act.bundle = undefined;
    expect((await run(executor(), act)).outcome).toEqual({ phase: 'FAILED', error: { code: 'INVALID_ARGUMENT', kind: 'SYSTEM', retryable: false } });
  });

  it('after a restart, recover() kills the unfinished task, removes its directory and returns it once', async () => {
    const pidFile = join(dir, 'pids');
    const act = await action(bundles.tasks, 'stubborn', { pidFile }, { attempt: 2 });
    // The first executor is dropped mid-action, as a crashed agent would drop it.
    const dropped = executor().execute(act, new AbortController().signal, { onRunning: () => undefined });
    const pids = await readPids(pidFile);
    expect(pids.grandchild).toEqual(expect.any(Number));
    expect(await workDirs()).toHaveLength(1);
    await until(async () => {
      const [file] = await journalFiles();
      return file !== undefined && (await readFile(join(stateDir, 'executor-journal', file), 'utf8')).includes('"pid"');
    });

    const restarted = executor();
    expect(await restarted.recover()).toEqual([{ actionId: act.actionId, attempt: 2 }]);
    await until(() => !alive(pids.task) && !alive(pids.grandchild ?? 0), 5000);
    expect(await workDirs()).toEqual([]);
    expect(await journalFiles()).toEqual([]);
    expect(await restarted.recover()).toEqual([]);
    expect(logger.lines.find((line) => line.event === 'executor.action_recovered')).toMatchObject({ actionId: act.actionId, process: 'killed' });
    // (In a real restart the old process is gone; here its promise sees its task killed.)
    expect(await dropped).toMatchObject({ phase: 'FAILED', error: { code: 'TASK_CRASHED' } });
  });

  it('after the agent process itself is killed, its task survives it, and the next one recover()s it', async () => {
    const pidFile = join(dir, 'pids');
    const act = await action(bundles.tasks, 'stubborn', { pidFile });
    const ref = { sha256: act.bundle?.sha256 ?? '', size: Number(act.bundle?.size ?? 0) };
    const argument = JSON.stringify({
      stateDir,
      storeRoot: storage.root,
      action: { actionId: act.actionId, runId: act.runId, taskName: 'stubborn', attempt: 1, inputsRef: act.inputsRef, ...ref },
    });
    const agent = spawn(process.execPath, ['--conditions=airlock-source', '--import', createRequire(import.meta.url).resolve('tsx'), here('./fixtures/executor-process.ts'), argument], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const agentExited = new Promise((resolve) => agent.once('exit', resolve));
    let pids: { task: number; grandchild?: number } | undefined;
    try {
      pids = await readPids(pidFile);
      // The stand-in runs with the default executor: besides the task, two prepared processes (perBundle 2) wait for the bundle's next attempts.
      let preparedPids: number[] = [];
      await until(async () => {
        const entries = await journalEntries();
        preparedPids = waitingPids(entries);
        return entries.some((entry) => entry.actionId === act.actionId && entry.process !== undefined) && preparedPids.length === 2;
      });
      agent.kill('SIGKILL');
      await agentExited;
      // Their own process groups: the task and the prepared processes outlive the agent that started them.
      const { task, grandchild = 0 } = pids;
      expect(alive(task) && alive(grandchild) && preparedPids.every((pid) => alive(pid))).toBe(true);
      expect(await workDirs()).toHaveLength(3);

      expect(await executor().recover()).toEqual([{ actionId: act.actionId, attempt: 1 }]);
      await until(() => !alive(task) && !alive(grandchild) && preparedPids.every((pid) => !alive(pid)), 5000);
      expect(await workDirs()).toEqual([]);
      expect(await journalFiles()).toEqual([]);
    } finally {
      agent.kill('SIGKILL');
      // A failed assertion must not leave the stubborn task behind.
      if (pids !== undefined) signalGroupQuietly(pids.task);
    }
  });

  it('recover() removes unreadable journal entries and working directories no entry names', async () => {
    const { mkdir, writeFile } = await import('node:fs/promises');
    await mkdir(join(stateDir, 'executor-journal'), { recursive: true });
    await writeFile(join(stateDir, 'executor-journal', 'action-bad.json'), '{"version":1,');
    await writeFile(join(stateDir, 'executor-journal', '.action-bad.json.0123.tmp'), '');
    await mkdir(join(stateDir, 'work', 'action-orphan', 'tmp'), { recursive: true });
    expect(await executor().recover()).toEqual([]);
    expect(await journalFiles()).toEqual([]);
    expect(await workDirs()).toEqual([]);
  });

  it('recover() leaves alone a process whose pid was recycled', async () => {
    const { writeFileAtomic } = await import('@airlock/common');
    const { mkdir } = await import('node:fs/promises');
    await mkdir(join(stateDir, 'executor-journal'), { recursive: true });
    // This test process stands in for a process that reused the recorded pid: its start time differs.
    const bootId = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
    const entry = { version: 1, actionId: randomUUID(), runId: randomUUID(), attempt: 1, workDirName: 'action-x', process: { pid: process.pid, startTime: '1', bootId } };
    await writeFileAtomic(join(stateDir, 'executor-journal', 'action-x.json'), JSON.stringify(entry));
    expect(await executor().recover()).toEqual([{ actionId: entry.actionId, attempt: 1 }]);
    expect(logger.lines.find((line) => line.event === 'executor.action_recovered')).toMatchObject({ process: 'recycled' });
    expect(await journalFiles()).toEqual([]);
  });

  describe('isolation (user and mount namespaces)', () => {
    /** A hostile task's view: the agent's data directory and home hold a canary; it reads, lists and writes where it should not. */
    async function peekAt(options: { prepared: boolean }): Promise<{ results: Record<string, string>; agentData: string; home: string; secret: string; canary: string }> {
      const canary = makeCanary('agent-file');
      const agentData = join(dir, 'agent-data');
      const home = join(dir, 'home');
      await mkdir(join(agentData, 'kms'), { recursive: true });
      await mkdir(home, { recursive: true });
      const secret = join(agentData, 'kms', 'credentials');
      await writeFile(secret, canary);
      await writeFile(join(home, '.token'), canary);
      const target = executor({
        isolation: { mode: 'namespaces', hide: [agentData, home, stateDir] },
        ...(options.prepared ? { prepared: { perBundle: 1 } } : {}),
      });
      expect(await target.isolation?.()).toMatchObject({ active: true, mode: 'namespaces', hidden: [stateDir, home, agentData].sort((a, b) => a.length - b.length) });
      const inputs = {
        read: [secret, join(home, '.token'), `/proc/${process.pid}/environ`, 'inputs.json'],
        list: [agentData, home, join(stateDir, 'work')],
        write: [join(agentData, 'planted'), join(home, 'planted'), 'own-file'],
      };
      if (options.prepared) {
        // The first attempt prepares a process for the second, which must be as isolated as a cold one.
        await run(target, await action(bundles.tasks, 'peek', inputs));
      }
      const { outcome, result } = await run(target, await action(bundles.tasks, 'peek', inputs));
      expect(outcome).toEqual({ phase: 'SUCCEEDED' });
      return { results: (result as { outputs: { results: Record<string, string> } }).outputs.results, agentData, home, secret, canary };
    }

    for (const prepared of [false, true]) {
      it(`a task ${prepared ? '(in a prepared process) ' : ''}sees the agent's directories and the home empty and read-only, cannot read the agent's process, and keeps its own working directory`, async () => {
        const { results, agentData, home, secret, canary } = await peekAt({ prepared });
        expect(JSON.stringify(results)).not.toContain(canary);
        expect(results[`read ${secret}`]).toBe('error:ENOENT');
        expect(results[`read ${join(home, '.token')}`]).toBe('error:ENOENT');
        expect(results[`read /proc/${process.pid}/environ`]).toMatch(/^error:E(ACCES|PERM)$/);
        expect(results['read inputs.json']).toMatch(/^ok:/);
        // The agent's data directory is empty; its state directory shows only this action's own working directory.
        expect(results[`list ${agentData}`]).toBe('ok:');
        expect(results[`list ${home}`]).toBe('ok:');
        expect(results[`list ${join(stateDir, 'work')}`]).toMatch(/^ok:action-[0-9a-f-]+$/);
        expect(results[`write ${join(agentData, 'planted')}`]).toBe('error:EROFS');
        expect(results[`write ${join(home, 'planted')}`]).toBe('error:EROFS');
        expect(results['write own-file']).toBe('ok');
        expect(existsSync(join(agentData, 'planted'))).toBe(false);
        expect(await readFile(secret, 'utf8')).toBe(canary);
      });
    }

    it('with isolation off, the same task reads the agent files (what the namespaces prevent)', async () => {
      const canary = makeCanary('agent-file');
      const secret = join(dir, 'agent-secret');
      await writeFile(secret, canary);
      const target = executor({ isolation: { mode: 'off' } });
      expect(await target.isolation?.()).toMatchObject({ active: false, mode: 'off' });
      const { outcome, result } = await run(target, await action(bundles.tasks, 'peek', { read: [secret], list: [], write: [] }));
      expect(outcome).toEqual({ phase: 'SUCCEEDED' });
      expect((result as { outputs: { results: Record<string, string> } }).outputs.results[`read ${secret}`]).toBe(`ok:${canary}`);
      expect(logger.lines.some((line) => line.event === 'executor.isolation_off')).toBe(true);
    });

    it('refuses a bad mode, and a relative directory to hide, with CONFIG_INVALID', () => {
      expect(() => executor({ isolation: { mode: 'maybe' as never } })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }) as Error);
      expect(() => executor({ isolation: { hide: ['relative/dir'] } })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }) as Error);
    });
  });

  describe('prepared processes', () => {
    const prepared = (options: Partial<LocalProcessExecutorOptions> = {}): Executor => executor({ prepared: { perBundle: 1, max: 4, idleMs: 60_000 }, ...options });

    const waiting = async (): Promise<number> => waitingPids(await journalEntries()).length;

    /** Waits until one prepared process is waiting (its journal entry names no action and has its pid); returns the pid. */
    async function preparedPid(): Promise<number> {
      let pid = 0;
      await until(async () => {
        const pids = waitingPids(await journalEntries());
        pid = pids[0] ?? 0;
        return pids.length === 1;
      });
      return pid;
    }

    it('keeps perBundle processes waiting per bundle (two by default), never more, and no more than max in all', async () => {
      const target = executor({ prepared: {} });
      for (let i = 0; i < 3; i++) expect((await run(target, await action(bundles.tasks, 'inspect', {}))).outcome).toEqual({ phase: 'SUCCEEDED' });
      await until(async () => (await waiting()) === 2);
      await sleep(300);
      expect(await waiting()).toBe(2);
      expect(logger.lines.filter((line) => line.event === 'executor.prepared_process_used').length).toBeGreaterThanOrEqual(1);
      // A second bundle shares the pool: max 3 leaves it one.
      const capped = executor({ prepared: { perBundle: 2, max: 3 } });
      await run(capped, await action(bundles.tasks, 'inspect', {}));
      await until(async () => (await waiting()) === 4);
      await run(capped, await action(bundles.hello, 'hello', { name: 'x' }));
      await until(async () => (await waiting()) === 5);
      await sleep(300);
      expect(await waiting()).toBe(5);
    });

    it('refills the pool after an attempt, not beside it, while another prepared process still waits; at once when none is left', async () => {
      const preparedStarts = (): number => logger.lines.filter((line) => line.event === 'executor.process_prepared').length;
      const target = executor({ prepared: { perBundle: 2, max: 4, idleMs: 60_000 } });
      expect((await run(target, await action(bundles.tasks, 'inspect', {}))).outcome).toEqual({ phase: 'SUCCEEDED' });
      await until(async () => (await waiting()) === 2);
      const startsBefore = preparedStarts();

      // One prepared process takes the attempt; the other still waits, so no third one starts while it runs.
      const pidFile = join(dir, 'pids');
      const controller = new AbortController();
      const running = run(target, await action(bundles.tasks, 'wait', { pidFile }), controller.signal);
      await readPids(pidFile);
      await sleep(500);
      expect(await waiting()).toBe(1);
      expect(preparedStarts()).toBe(startsBefore);
      controller.abort(new AirlockError('ABORTED'));
      expect((await running).outcome).toMatchObject({ phase: 'ABORTED' });
      await until(async () => (await waiting()) === 2);
      expect(preparedStarts()).toBe(startsBefore + 1);

      // With perBundle 1, taking the only one leaves none: its replacement starts while the attempt still runs.
      await target.close?.();
      await until(async () => (await waiting()) === 0);
      const single = executor({ prepared: { perBundle: 1, max: 4, idleMs: 60_000 } });
      expect((await run(single, await action(bundles.tasks, 'inspect', {}))).outcome).toEqual({ phase: 'SUCCEEDED' });
      await until(async () => (await waiting()) === 1);
      const pidFile2 = join(dir, 'pids-2');
      const controller2 = new AbortController();
      const second = run(single, await action(bundles.tasks, 'wait', { pidFile: pidFile2 }), controller2.signal);
      await readPids(pidFile2);
      await until(async () => (await waiting()) === 1);
      controller2.abort(new AirlockError('ABORTED'));
      expect((await second).outcome).toMatchObject({ phase: 'ABORTED' });
    });

    it("runs the next attempt of a bundle in a process started before it, as isolated as a cold one, one attempt per process", async () => {
      const canary = makeCanary('env');
      process.env.AWS_SECRET_ACCESS_KEY = canary;
      const openFile = join(dir, `open-${canary}`);
      const fd = openSync(openFile, 'w');
      try {
        const target = prepared();
        const first = await run(target, await action(bundles.tasks, 'inspect', {}));
        expect(first.outcome).toEqual({ phase: 'SUCCEEDED' });
        const pid = await preparedPid();
        expect(alive(pid)).toBe(true);
        const [waitingDir] = await workDirs();
        expect((await stat(join(stateDir, 'work', waitingDir as string))).mode & 0o777).toBe(0o700);

        const second = await run(target, await action(bundles.tasks, 'inspect', {}));
        expect(second.outcome).toEqual({ phase: 'SUCCEEDED' });
        expect(logger.lines.filter((line) => line.event === 'executor.prepared_process_used')).toHaveLength(1);
        const [before, after] = [first, second].map((one) => (one.result as { outputs: { env: Record<string, string>; fds: string[]; cwd: string } }).outputs);
        expect(Object.keys(after?.env ?? {}).sort()).toEqual(['HOME', 'LANG', 'PATH', 'TMPDIR']);
        expect(JSON.stringify(after)).not.toContain(canary);
        expect(after?.cwd).toBe(join(stateDir, 'work', waitingDir as string));
        expect(after?.cwd).not.toBe(before?.cwd);
        expect(after?.env.HOME).toBe(after?.cwd);
        expect(after?.fds.some((target) => target.includes(openFile))).toBe(false);
        // The process that served the attempt is gone; another one waits for the next.
        await until(() => !alive(pid));
        const next = await preparedPid();
        expect(next).not.toBe(pid);

        await target.close?.();
        await until(() => !alive(next));
        expect(await workDirs()).toEqual([]);
        expect(await journalFiles()).toEqual([]);
      } finally {
        closeSync(fd);
        delete process.env.AWS_SECRET_ACCESS_KEY;
      }
    });

    it('kills a prepared process whose attempt cannot read its inputs (a disabled key), so the task never runs', async () => {
      const target = prepared();
      expect((await run(target, await action(bundles.tasks, 'marker', { path: join(dir, 'first') }))).outcome).toEqual({ phase: 'SUCCEEDED' });
      const pid = await preparedPid();
      const markerPath = join(dir, 'second');
      const act = await action(bundles.tasks, 'marker', { path: markerPath });
      storage.failWith = 'KMS_KEY_DISABLED';
      const { outcome, running } = await run(target, act);
      expect(outcome).toMatchObject({ phase: 'FAILED', error: { code: 'KMS_KEY_DISABLED', kind: 'SYSTEM' } });
      expect(running).toBe(0);
      await until(() => !alive(pid));
      expect(existsSync(markerPath)).toBe(false);
      expect(await workDirs()).toEqual([]);
      expect(await journalFiles()).toEqual([]);
    });

    it('aborts an attempt running in a prepared process', async () => {
      const target = prepared();
      expect((await run(target, await action(bundles.tasks, 'marker', { path: join(dir, 'first') }))).outcome).toEqual({ phase: 'SUCCEEDED' });
      await preparedPid();
      const pidFile = join(dir, 'pids');
      const controller = new AbortController();
      const running = run(target, await action(bundles.tasks, 'wait', { pidFile }), controller.signal);
      const pids = await readPids(pidFile);
      controller.abort(new AirlockError('ABORTED'));
      expect((await running).outcome).toEqual({ phase: 'ABORTED', error: { code: 'TASK_ABORTED', kind: 'USER', retryable: false } });
      expect(alive(pids.task)).toBe(false);
      expect(logger.lines.some((line) => line.event === 'executor.prepared_process_used')).toBe(true);
    });

    it('kills a prepared process nobody used after its idle time', async () => {
      const target = prepared({ prepared: { perBundle: 1, max: 4, idleMs: 300 } });
      expect((await run(target, await action(bundles.tasks, 'marker', { path: join(dir, 'first') }))).outcome).toEqual({ phase: 'SUCCEEDED' });
      // Its log line, not its journal entry, names it: the entry may be gone before a poll sees it.
      await until(() => logger.lines.some((line) => line.event === 'executor.process_prepared'));
      const pid = logger.lines.find((line) => line.event === 'executor.process_prepared')?.pid as number;
      expect(pid).toEqual(expect.any(Number));
      await until(() => !alive(pid), 10_000);
      await until(() => logger.lines.some((line) => line.event === 'executor.prepared_process_discarded'));
      expect(logger.lines.find((line) => line.event === 'executor.prepared_process_discarded')).toMatchObject({ reason: 'idle' });
      await until(async () => (await workDirs()).length === 0 && (await journalFiles()).length === 0, 10_000);
    });

    it('after a crash, recover() kills a prepared process and does not report it as an action', async () => {
      const crashed = createLocalProcessExecutor({ storage, stateDir, log: logger.log, prepared: { perBundle: 1 } });
      expect((await run(crashed, await action(bundles.tasks, 'marker', { path: join(dir, 'first') }))).outcome).toEqual({ phase: 'SUCCEEDED' });
      const pid = await preparedPid();
      // `crashed` is dropped without close(), as a killed agent would leave it.
      expect(await executor().recover()).toEqual([]);
      await until(() => !alive(pid));
      expect(await workDirs()).toEqual([]);
      expect(await journalFiles()).toEqual([]);
    });

    it('starts a bundle cold when its prepared process exits before use (a runtime that cannot read its request from standard input)', async () => {
      // A bundle of an older runtime: `run --request <file>` works, `run --request -` is refused with exit status 2.
      const legacy = Buffer.from(
        [
          "import { readFileSync, writeFileSync } from 'node:fs';",
          'const path = process.argv[4];',
          "if (path === '-') process.exit(2);",
          "const request = JSON.parse(readFileSync(path, 'utf8'));",
          'writeFileSync(request.resultPath, JSON.stringify({ version: 1, ok: true, attempt: request.attempt, outputs: {} }));',
        ].join('\n'),
      );
      const target = prepared();
      expect((await run(target, await action(legacy, 'legacy', {}))).outcome).toEqual({ phase: 'SUCCEEDED' });
      await until(() => logger.lines.some((line) => line.event === 'executor.prepared_process_exited'));
      await until(async () => (await workDirs()).length === 0);
      expect((await run(target, await action(legacy, 'legacy', {}))).outcome).toEqual({ phase: 'SUCCEEDED' });
      expect(logger.lines.some((line) => line.event === 'executor.prepared_process_used')).toBe(false);
      // Not prepared again: exactly one prepared process was ever started for it.
      expect(logger.lines.filter((line) => line.event === 'executor.prepared_process_exited')).toHaveLength(1);
    });
  });
});
