// The data plane's default executor: each action a child process in its own working directory, process group and minimal environment (docs/runs.md, "The executor").
import { randomUUID } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, readdir, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { durationMs } from '@bufbuild/protobuf/wkt';
import { AirlockError, configCheck, configError, freezeConfig, processIdentity, type DeepReadonly, type Logger } from '@airlock/common';
import type { Action } from '@airlock/protocol';
import {
  abortedRecord,
  ACTION_EXIT_OK,
  ACTION_EXIT_USAGE,
  ACTION_PROTOCOL_VERSION,
  DEFAULT_COMMAND_PATH,
  STDERR_TAIL_BYTES,
  systemErrorRecord,
  timedOutRecord,
  type ActionRequest,
  type FailedPhase,
  type TaskErrorRecord,
} from '@airlock/sdk';
import { errorOutcome, failedResultDocument, outcomeOfResult, parseActionResult } from './action-result.js';
import { ExecutorJournal, type JournalEntry } from './executor-journal.js';
import { killLeftoverGroup, signalGroup } from './process-group.js';
import { createProcessSpawner, type ProcessSpawner, type SpawnedProcess } from './process-spawner.js';
import { openTaskSandbox, type TaskIsolationMode, type TaskSandbox, type TaskSandboxStatus } from './task-sandbox.js';
import type { ActionOutcome, ExecutionHooks, Executor, ExecutorStorage } from './types.js';

export interface LocalProcessExecutorOptions {
  /** The data plane's run data: bundles, inputs, result documents. */
  readonly storage: ExecutorStorage;
  /** The agent's state directory: the journal lives in `<stateDir>/executor-journal/`. */
  readonly stateDir: string;
  /** Where each action's working directory is made (0700). @default `<stateDir>/work` */
  readonly workRoot?: string;
  /** After a timeout or abort, how long the task's process group has between SIGTERM and SIGKILL, in milliseconds. @default 5000 */
  readonly killGraceMs?: number;
  /** The largest result document read; a larger one fails the attempt (SYSTEM, PAYLOAD_TOO_LARGE). @default 4 MiB */
  readonly maxResultBytes?: number;
  /** How much of the task's standard error (its JSON log lines) is kept in memory, the newest bytes. Data: never logged. @default 64 KiB */
  readonly maxStderrBytes?: number;
  /** PATH of the task's process (and of the commands it runs). @default DEFAULT_COMMAND_PATH of @airlock/sdk */
  readonly path?: string;
  /** LANG of the task's process. @default "C.UTF-8" */
  readonly lang?: string;
  /** The Node.js binary that runs bundles. @default process.execPath */
  readonly nodePath?: string;
  /**
   * Prepared processes (docs/runs.md, "The executor"): after an attempt of a bundle starts, a fresh
   * process for the next attempt of the same project and bundle is started and loads the bundle, in a
   * working directory of its own, then waits for its request; each serves one attempt. `perBundle`
   * 0 turns this off. @default { perBundle: 2, max: 4, idleMs: 60000 }
   */
  readonly prepared?: { readonly perBundle?: number; readonly max?: number; readonly idleMs?: number };
  /**
   * Task isolation (docs/runs.md, "Isolation"): each task process in user and mount namespaces of its
   * own, where the `hide` directories are empty and read-only and no capability is left. `auto` uses
   * it where the system allows it; `namespaces` refuses to run tasks without it; `off` never uses it.
   * @default { mode: 'auto', hide: [stateDir, the user's home directory] }
   */
  readonly isolation?: { readonly mode?: TaskIsolationMode; readonly hide?: readonly string[] };
  /** Event names, ids and codes only. */
  readonly log: Logger;
}

export type ResolvedLocalProcessExecutorConfig = DeepReadonly<{
  stateDir: string;
  journalDir: string;
  workRoot: string;
  killGraceMs: number;
  maxResultBytes: number;
  maxStderrBytes: number;
  path: string;
  lang: string;
  nodePath: string;
  prepared: { perBundle: number; max: number; idleMs: number };
  isolation: { mode: TaskIsolationMode; hide: string[] };
}> & { readonly storage: ExecutorStorage; readonly log: Logger };

const DEFAULT_MAX_RESULT_BYTES = 4 * 1024 * 1024;
const DEFAULT_MAX_STDERR_BYTES = 64 * 1024;
const DEFAULT_KILL_GRACE_MS = 5000;
/** How long to wait for the task's standard error to close once its group is gone (a process that escaped the group may hold it). */
const STDERR_CLOSE_WAIT_MS = 2000;
const SHA256_HEX = /^[0-9a-f]{64}$/;
const DEFAULT_PREPARED = Object.freeze({ perBundle: 2, max: 4, idleMs: 60_000 });

export function resolveLocalProcessExecutorConfig(options: LocalProcessExecutorOptions): ResolvedLocalProcessExecutorConfig {
  if (typeof options !== 'object' || options === null) throw configError('executor', 'options are required');
  const storage = options.storage as ExecutorStorage | undefined;
  if (typeof storage !== 'object' || storage === null) throw configError('executor.storage', 'is required');
  if (typeof options.log !== 'object' || options.log === null) throw configError('executor.log', 'is required');
  const absolute = (name: string, value: string): string => {
    configCheck.nonEmptyString(name, value);
    if (!isAbsolute(value)) throw configError(name, 'must be an absolute path');
    return value;
  };
  const stateDir = absolute('executor.stateDir', options.stateDir);
  const path = configCheck.nonEmptyString('executor.path', options.path ?? DEFAULT_COMMAND_PATH);
  const lang = configCheck.nonEmptyString('executor.lang', options.lang ?? 'C.UTF-8');
  if (path.includes('\0') || lang.includes('\0')) throw configError('executor.path', 'must not contain NUL bytes');
  const settings = freezeConfig({
    stateDir,
    journalDir: join(stateDir, 'executor-journal'),
    workRoot: absolute('executor.workRoot', options.workRoot ?? join(stateDir, 'work')),
    killGraceMs: configCheck.integer('executor.killGraceMs', options.killGraceMs ?? DEFAULT_KILL_GRACE_MS, 0, 600_000),
    maxResultBytes: configCheck.integer('executor.maxResultBytes', options.maxResultBytes ?? DEFAULT_MAX_RESULT_BYTES, 64, 1024 * 1024 * 1024),
    maxStderrBytes: configCheck.integer('executor.maxStderrBytes', options.maxStderrBytes ?? DEFAULT_MAX_STDERR_BYTES, 0, 64 * 1024 * 1024),
    path,
    lang,
    nodePath: absolute('executor.nodePath', options.nodePath ?? process.execPath),
    prepared: {
      perBundle: configCheck.integer('executor.prepared.perBundle', options.prepared?.perBundle ?? DEFAULT_PREPARED.perBundle, 0, 64),
      max: configCheck.integer('executor.prepared.max', options.prepared?.max ?? DEFAULT_PREPARED.max, 0, 1024),
      idleMs: configCheck.integer('executor.prepared.idleMs', options.prepared?.idleMs ?? DEFAULT_PREPARED.idleMs, 100, 3_600_000),
    },
    isolation: {
      mode: isolationMode(options.isolation?.mode),
      hide: (options.isolation?.hide ?? [stateDir, homedir()]).map((dir, index) => absolute(`executor.isolation.hide[${index}]`, dir)),
    },
  });
  return Object.freeze({ ...settings, storage, log: options.log });
}

function isolationMode(mode: unknown): TaskIsolationMode {
  if (mode === undefined) return 'auto';
  if (mode === 'auto' || mode === 'namespaces' || mode === 'off') return mode;
  throw configError('executor.isolation.mode', 'must be "auto", "namespaces" or "off"');
}

/**
 * The default executor. Each action gets a fresh 0700 working directory, its bundle (digest
 * verified by the storage) and inputs written there, and a child process `node bundle.mjs run
 * --request request.json` with only PATH, HOME, TMPDIR and LANG in its environment, no descriptor
 * of the agent's (stdin and stdout /dev/null, stderr a pipe), in a process group of its own. A timeout or abort (the agent's signal)
 * sends SIGTERM to the group and SIGKILL after the grace period; whatever is left of the group
 * when its leader exits is killed too.
 *
 * It has no concurrency limit of its own: the agent runs at most `maxConcurrentActions` at once.
 * Call recover() once, before the first execute().
 */
export function createLocalProcessExecutor(options: LocalProcessExecutorOptions): Executor {
  return new LocalProcessExecutor(resolveLocalProcessExecutorConfig(options));
}

/** How a task's process ended. */
interface ProcessEnd {
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
  /** The agent's signal aborted before the process exited. */
  readonly stopped: boolean;
  readonly stderrTail: string;
}

/** A started task process: its exit, its standard error and (for a prepared one) its standard input. */
interface StartedProcess {
  readonly pid: number | undefined;
  readonly spawned: SpawnedProcess | undefined;
  readonly tail: BoundedTail;
  readonly exited: Promise<{ exitCode: number | null; signal: NodeJS.Signals | null; spawnError?: Error }>;
  readonly stderrClosed: Promise<void>;
}

/** A process started for the next attempt of one project's bundle, its bundle loaded, waiting for its request on standard input. */
interface PreparedSlot {
  readonly key: string;
  readonly workDirName: string;
  readonly workDir: string;
  readonly bundlePath: string;
  readonly process: StartedProcess;
  idleTimer: NodeJS.Timeout | undefined;
  /** Taken by an attempt, or discarded: no longer in the pool. */
  gone: boolean;
}

class LocalProcessExecutor implements Executor {
  private readonly journal: ExecutorJournal;
  /** Prepared processes by `<project>/<bundle sha256>`. */
  private readonly prepared = new Map<string, PreparedSlot[]>();
  /** Bundles whose prepared process exited before it was used (a runtime without `--request -`, a module that fails to load): started cold from then on. */
  private readonly unpreparable = new Set<string>();
  private preparing = 0;
  /** Prepares under way per `<project>/<bundle sha256>`, so that a bundle's pool never overshoots `perBundle`. */
  private readonly preparingByKey = new Map<string, number>();
  /** Prepares under way, which close() waits for. */
  private readonly inFlight = new Set<Promise<void>>();
  private closed = false;
  private readonly spawner: ProcessSpawner;
  /** Set up once, on the first process start. */
  private sandbox: Promise<TaskSandbox> | undefined;

  constructor(private readonly config: ResolvedLocalProcessExecutorConfig) {
    this.journal = new ExecutorJournal(config.journalDir);
    this.spawner = createProcessSpawner({ nodePath: config.nodePath, log: config.log });
  }

  async isolation(): Promise<TaskSandboxStatus> {
    return (await this.taskSandbox()).status;
  }

  private taskSandbox(): Promise<TaskSandbox> {
    const { config } = this;
    this.sandbox ??= openTaskSandbox({ mode: config.isolation.mode, hide: config.isolation.hide, workRoot: config.workRoot, nodePath: config.nodePath }, config.log);
    return this.sandbox;
  }

  private get log(): Logger {
    return this.config.log;
  }

  async execute(action: Action, signal: AbortSignal, hooks: ExecutionHooks): Promise<ActionOutcome> {
    const { config } = this;
    const ids = { actionId: action.actionId, runId: action.runId, attempt: action.attempt };
    const project = action.task?.project ?? '';
    let slot: PreparedSlot | undefined;
    let workDirName = `action-${randomUUID()}`;
    let journaled = false;
    let started: StartedProcess | undefined;
    /** Set when this attempt's prepared process is replaced only once the attempt is over. */
    let refillAfter: (() => void) | undefined;
    try {
      const bundle = checkAction(action);
      const timeoutMs = action.timeout === undefined ? 0 : durationMs(action.timeout);
      const key = preparedKey(project, bundle.sha256);
      slot = this.takePrepared(key);
      if (slot !== undefined) workDirName = slot.workDirName;
      const workDir = join(config.workRoot, workDirName);
      // Read under the data plane's KMS key for every attempt, prepared or not: a disabled key stops it
      // before the task runs. Read while the journal is written; nothing is written with them until it is.
      const reading = config.storage.readInputs(project, action.runId, action.inputsRef, action.task?.name ?? '');
      reading.catch(() => undefined);
      // The journal comes first: whatever exists of this action from here on, a restart finds.
      const identity = slot?.process.pid === undefined ? undefined : await processIdentity(slot.process.pid);
      await this.journal.put({ ...journalEntry(action, workDirName), ...(identity === undefined ? {} : { process: identity }) });
      journaled = true;
      if (slot === undefined) {
        await mkdir(config.workRoot, { recursive: true, mode: 0o700 });
        await mkdir(workDir, { mode: 0o700 });
      }
      if (signal.aborted) return await this.stopped(action, signal, timeoutMs);

      const bundlePath = join(workDir, 'bundle.mjs');
      if (slot === undefined) await config.storage.fetchBundle(project, bundle, bundlePath);
      const inputs = await reading;
      const inputsPath = join(workDir, 'inputs.json');
      // A task run without inputs gets an empty object, as the CLI sends for no --input.
      await writeFile(inputsPath, inputs ?? '{}', { mode: 0o600, flag: 'wx' });
      if (slot === undefined) await mkdir(join(workDir, 'tmp'), { mode: 0o700 });
      const resultPath = join(workDir, 'result.json');
      const request: ActionRequest = {
        version: ACTION_PROTOCOL_VERSION,
        task: action.task?.name ?? '',
        inputsPath,
        resultPath,
        attempt: action.attempt,
        ...(timeoutMs > 0 ? { timeoutMs } : {}),
        runId: action.runId,
        actionId: action.actionId,
        ...(config.killGraceMs > 0 ? { killGraceMs: config.killGraceMs } : {}),
      };
      let requestPath: string | undefined;
      if (slot === undefined) {
        requestPath = join(workDir, 'request.json');
        await writeFile(requestPath, JSON.stringify(request), { mode: 0o600, flag: 'wx' });
      }
      if (signal.aborted) return await this.stopped(action, signal, timeoutMs);

      try {
        hooks.onRunning();
      } catch {
        // A reporting hook must not fail the action.
      }
      if (slot === undefined) {
        started = await this.startProcess(workDir, bundlePath, requestPath as string, 'ignore');
        await this.recordProcess(action, workDirName, started);
      } else {
        started = slot.process;
        started.spawned?.stdin?.end(JSON.stringify(request));
        this.log.info({ event: 'executor.prepared_process_used', actionId: action.actionId, attempt: action.attempt, pid: started.pid }, 'task process (prepared) started');
      }
      // The next attempts of this bundle find a process ready. Starting one costs a fresh Node.js process's
      // CPU, so while another prepared process still waits for this bundle, the pool is refilled once this
      // attempt is over rather than beside it (on a small machine the two would share its cores); with
      // none left, the next one starts now, after this one.
      const refill = (): void => this.fillPrepared(project, bundle);
      if (this.pooled(key) > 0) refillAfter = refill;
      else setImmediate(refill);
      const end = await this.waitProcess(action, started, signal);
      this.log.info({ event: 'executor.process_exited', ...ids, exitCode: end.exitCode, signal: end.signal, stopped: end.stopped }, 'task process exited');
      if (end.stopped) return await this.stopped(action, signal, timeoutMs);
      if (end.exitCode === ACTION_EXIT_OK) {
        const result = await this.readResult(resultPath, action.attempt);
        if (result === undefined) return await this.fail(action, crashedRecord(end));
        const parsed = parseActionResult(result, action.attempt);
        await config.storage.writeResult(project, action.runId, action.actionId, result);
        return outcomeOfResult(parsed);
      }
      if (end.exitCode === ACTION_EXIT_USAGE) {
        // The runtime refused our request: a fault of this executor (or of the bundle's runtime), not of the task.
        return await this.fail(action, systemErrorRecord(new AirlockError('INTERNAL', 'The task runtime refused the action request', { details: { reason: 'request-refused' } })));
      }
      return await this.fail(action, crashedRecord(end));
    } catch (error) {
      const record = systemErrorRecord(error);
      this.log.warn({ event: 'executor.action_failed', ...ids, code: record.code }, 'the executor could not run the action');
      return await this.fail(action, record);
    } finally {
      // A prepared process never handed its request (the inputs could not be read, the attempt was aborted first) is killed.
      if (slot !== undefined && started === undefined) await this.discard(slot, 'unused');
      await rm(join(config.workRoot, workDirName), { recursive: true, force: true }).catch((error: unknown) =>
        this.log.error({ event: 'executor.workdir_not_removed', ...ids, code: AirlockError.from(error).code }, 'could not remove an action working directory'),
      );
      if (journaled) {
        await this.journal.remove(workDirName).catch((error: unknown) =>
          this.log.error({ event: 'executor.journal_not_cleared', ...ids, code: AirlockError.from(error).code }, 'could not clear a journal entry'),
        );
      }
      if (refillAfter !== undefined) setImmediate(refillAfter);
    }
  }

  /**
   * Starts `node <bundle> run --request <requestArg>` in `workDir`, through the launcher: the minimal
   * environment, a process group of its own. A process that cannot be started is a started process
   * that exited at once with the reason as its spawn error.
   */
  private async startProcess(workDir: string, bundlePath: string, requestArg: string, stdin: 'ignore' | 'pipe'): Promise<StartedProcess> {
    const { config } = this;
    const tail = new BoundedTail(config.maxStderrBytes);
    let spawned: SpawnedProcess;
    try {
      const sandbox = await this.taskSandbox();
      spawned = await this.spawner.spawn(
        sandbox.wrap({
          command: config.nodePath,
          args: [bundlePath, 'run', '--request', requestArg],
          cwd: workDir,
          // The whole environment: nothing of the agent's (its KMS credentials, AIRLOCK_* settings, NODE_OPTIONS) reaches the task.
          env: { PATH: config.path, HOME: workDir, TMPDIR: join(workDir, 'tmp'), LANG: config.lang },
          stdin,
        }),
      );
    } catch (error) {
      return { pid: undefined, spawned: undefined, tail, exited: Promise.resolve({ exitCode: null, signal: null, spawnError: AirlockError.from(error) }), stderrClosed: Promise.resolve() };
    }
    // A process that exits before reading its request closes the pipe under us: that is seen at its exit, not here.
    spawned.stdin?.on('error', () => undefined);
    spawned.stderr.on('error', () => undefined);
    spawned.stderr.on('data', (chunk: Buffer) => tail.push(chunk));
    const stderrClosed = new Promise<void>((resolve) => spawned.stderr.once('close', () => resolve()));
    return { pid: spawned.pid, spawned, tail, exited: spawned.exited, stderrClosed };
  }

  /** Records a cold-started process in its action's journal entry, so a restarted agent can kill what is left of it. */
  private async recordProcess(action: Action, workDirName: string, started: StartedProcess): Promise<void> {
    if (started.pid === undefined) return;
    const identity = await processIdentity(started.pid);
    if (identity !== undefined) {
      await this.journal.put({ ...journalEntry(action, workDirName), process: identity }).catch((error: unknown) =>
        this.log.warn({ event: 'executor.journal_not_updated', actionId: action.actionId, code: AirlockError.from(error).code }, 'could not record the task process in the journal'),
      );
    }
    this.log.info({ event: 'executor.process_started', actionId: action.actionId, attempt: action.attempt, pid: started.pid }, 'task process started');
  }

  /** Waits until the task's process and its group are gone; the agent's signal stops it (SIGTERM, SIGKILL after the grace period). */
  private async waitProcess(action: Action, started: StartedProcess, signal: AbortSignal): Promise<ProcessEnd> {
    const { config } = this;
    const { pid } = started;
    let stopped = false;
    let killTimer: NodeJS.Timeout | undefined;
    const onAbort = (): void => {
      if (pid === undefined || stopped) return;
      stopped = true;
      this.log.info({ event: 'executor.process_stopping', actionId: action.actionId, pid, graceMs: config.killGraceMs }, 'stopping the task process group');
      signalGroup(pid, 'SIGTERM');
      killTimer = setTimeout(() => signalGroup(pid, 'SIGKILL'), config.killGraceMs);
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });

    const end = await started.exited;
    signal.removeEventListener('abort', onAbort);
    clearTimeout(killTimer);
    if (end.spawnError !== undefined) throw AirlockError.from(end.spawnError);
    // The leader is gone; nothing it started outlives it (a task's background processes, a command that ignored SIGTERM).
    if (pid !== undefined) signalGroup(pid, 'SIGKILL');
    await waitAtMost(started.stderrClosed, STDERR_CLOSE_WAIT_MS);
    started.spawned?.stderr.destroy();
    return { exitCode: end.exitCode, signal: end.signal, stopped, stderrTail: started.tail.text(STDERR_TAIL_BYTES) };
  }

  /** A live prepared process for `key`, out of the pool; undefined when there is none. */
  private takePrepared(key: string): PreparedSlot | undefined {
    const slots = this.prepared.get(key);
    while (slots !== undefined && slots.length > 0) {
      const slot = slots.shift() as PreparedSlot;
      if (slots.length === 0) this.prepared.delete(key);
      if (slot.gone || slot.process.spawned === undefined || slot.process.spawned.exit !== undefined) continue;
      slot.gone = true;
      clearTimeout(slot.idleTimer);
      return slot;
    }
    return undefined;
  }

  /** Prepared processes of `key` waiting or starting. */
  private pooled(key: string): number {
    return (this.prepared.get(key)?.length ?? 0) + (this.preparingByKey.get(key) ?? 0);
  }

  private preparedCount(): number {
    let count = this.preparing;
    for (const slots of this.prepared.values()) count += slots.length;
    return count;
  }

  /**
   * Starts a process for the next attempt of `bundle` in `project`, if the pool has room: a fresh working
   * directory, the bundle fetched (digest verified), `run --request -`. Best effort: a failure here
   * only means the next attempt starts cold.
   */
  private fillPrepared(project: string, bundle: { sha256: string; size: number }): void {
    while (this.prepare(project, bundle));
  }

  /** Starts one prepared process when the pool has room for it; false when it has none. */
  private prepare(project: string, bundle: { sha256: string; size: number }): boolean {
    const { config } = this;
    const key = preparedKey(project, bundle.sha256);
    if (this.closed || config.prepared.perBundle === 0 || this.unpreparable.has(key)) return false;
    if (this.pooled(key) >= config.prepared.perBundle || this.preparedCount() >= config.prepared.max) return false;
    this.preparing += 1;
    this.preparingByKey.set(key, (this.preparingByKey.get(key) ?? 0) + 1);
    const workDirName = `action-${randomUUID()}`;
    const workDir = join(config.workRoot, workDirName);
    const entry: JournalEntry = { version: 1, actionId: '', runId: '', attempt: 0, workDirName };
    const preparing = (async () => {
      let started: StartedProcess | undefined;
      try {
        await this.journal.put(entry);
        await mkdir(config.workRoot, { recursive: true, mode: 0o700 });
        await mkdir(workDir, { mode: 0o700 });
        await mkdir(join(workDir, 'tmp'), { mode: 0o700 });
        const bundlePath = join(workDir, 'bundle.mjs');
        await config.storage.fetchBundle(project, bundle, bundlePath);
        if (this.closed) throw new AirlockError('UNAVAILABLE', 'The executor is closed');
        started = await this.startProcess(workDir, bundlePath, '-', 'pipe');
        if (started.spawned === undefined) throw (await started.exited).spawnError ?? new AirlockError('INTERNAL', 'The task process could not be started');
        const identity = started.pid === undefined ? undefined : await processIdentity(started.pid);
        if (identity !== undefined) await this.journal.put({ ...entry, process: identity });
        const slot: PreparedSlot = { key, workDirName, workDir, bundlePath, process: started, idleTimer: undefined, gone: false };
        slot.idleTimer = setTimeout(() => void this.discard(slot, 'idle'), config.prepared.idleMs);
        slot.idleTimer.unref();
        void started.exited.then(() => {
          if (slot.gone) return;
          // Exited before any attempt was handed to it: this bundle cannot be prepared (or fails to load); its attempts start cold.
          this.unpreparable.add(key);
          this.log.info({ event: 'executor.prepared_process_exited', bundleSha256: bundle.sha256, exitCode: slot.process.spawned?.exit?.exitCode }, 'a prepared task process exited unused; this bundle starts cold');
          void this.discard(slot, 'exited');
        });
        const slots = this.prepared.get(key) ?? [];
        slots.push(slot);
        this.prepared.set(key, slots);
        // Closed while it started: close() has already emptied the pool, so this one goes at once.
        if (this.closed) await this.discard(slot, 'closed');
        this.log.debug({ event: 'executor.process_prepared', bundleSha256: bundle.sha256, pid: started.pid }, 'prepared a task process');
      } catch (error) {
        this.log.warn({ event: 'executor.prepare_failed', bundleSha256: bundle.sha256, code: AirlockError.from(error).code }, 'could not prepare a task process');
        if (started?.pid !== undefined) signalGroup(started.pid, 'SIGKILL');
        await rm(workDir, { recursive: true, force: true }).catch(() => undefined);
        await this.journal.remove(workDirName).catch(() => undefined);
      } finally {
        this.preparing -= 1;
        const left = (this.preparingByKey.get(key) ?? 1) - 1;
        if (left > 0) this.preparingByKey.set(key, left);
        else this.preparingByKey.delete(key);
      }
    })();
    this.inFlight.add(preparing);
    void preparing.finally(() => this.inFlight.delete(preparing));
    return true;
  }

  /** Kills a prepared process's group and removes its working directory and journal entry. */
  private async discard(slot: PreparedSlot, reason: 'idle' | 'exited' | 'unused' | 'closed'): Promise<void> {
    clearTimeout(slot.idleTimer);
    if (reason !== 'unused') {
      // Still in the pool: take it out.
      const slots = this.prepared.get(slot.key);
      const index = slots?.indexOf(slot) ?? -1;
      if (slots !== undefined && index >= 0) {
        slots.splice(index, 1);
        if (slots.length === 0) this.prepared.delete(slot.key);
      }
      if (slot.gone) return;
    }
    slot.gone = true;
    const { pid } = slot.process;
    if (pid !== undefined) signalGroup(pid, 'SIGKILL');
    await waitAtMost(slot.process.exited, STDERR_CLOSE_WAIT_MS);
    slot.process.spawned?.stderr.destroy();
    if (reason === 'unused') return; // The attempt that took it removes its directory and journal entry.
    await rm(slot.workDir, { recursive: true, force: true }).catch(() => undefined);
    await this.journal.remove(slot.workDirName).catch(() => undefined);
    this.log.debug({ event: 'executor.prepared_process_discarded', reason }, 'discarded a prepared task process');
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.inFlight]);
    const slots = [...this.prepared.values()].flat();
    await Promise.all(slots.map((slot) => this.discard(slot, 'closed')));
    this.spawner.close();
  }

  /** The result file's bytes, or undefined when the process wrote none. Refuses symbolic links and anything over the limit. */
  private async readResult(resultPath: string, attempt: number): Promise<Uint8Array | undefined> {
    let handle;
    try {
      handle = await open(resultPath, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new AirlockError('INTERNAL', 'The task result document could not be opened', { cause: error, details: { reason: 'result-unreadable', attempt } });
    }
    try {
      const info = await handle.stat();
      if (!info.isFile()) throw new AirlockError('INTERNAL', 'The task result document is not a regular file', { details: { reason: 'result-malformed' } });
      const limit = this.config.maxResultBytes;
      if (info.size > limit) throw tooLarge(limit);
      // Sized by the file, one byte more to notice growth past the limit; not the limit itself (4 MiB zeroed per attempt).
      const buffer = Buffer.allocUnsafe(Math.min(limit, info.size) + 1);
      let length = 0;
      while (length < buffer.length) {
        const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length);
        if (bytesRead === 0) break;
        length += bytesRead;
      }
      if (length > limit) throw tooLarge(limit);
      if (length === buffer.length) {
        // The file grew after stat: read on until the limit, so a growing file is judged by its bytes.
        const rest = Buffer.allocUnsafe(limit + 1 - length);
        let more = 0;
        while (more < rest.length) {
          const { bytesRead } = await handle.read(rest, more, rest.length - more, length + more);
          if (bytesRead === 0) break;
          more += bytesRead;
        }
        if (length + more > limit) throw tooLarge(limit);
        return Buffer.concat([buffer, rest.subarray(0, more)]);
      }
      return buffer.subarray(0, length);
    } finally {
      await handle.close();
    }
  }

  /** The outcome of an attempt the agent's signal stopped: TIMED_OUT for its TIMEOUT reason, ABORTED otherwise. */
  private async stopped(action: Action, signal: AbortSignal, timeoutMs: number): Promise<ActionOutcome> {
    const reason: unknown = signal.reason;
    const record = AirlockError.is(reason, 'TIMEOUT') ? timedOutRecord(timeoutMs) : abortedRecord();
    return this.fail(action, record);
  }

  /** Stores a failed attempt's result document (best effort: the storage may be what failed) and returns its outcome. */
  private async fail(action: Action, record: TaskErrorRecord): Promise<ActionOutcome> {
    const phase: FailedPhase = record.code === 'TASK_TIMED_OUT' ? 'TIMED_OUT' : record.code === 'TASK_ABORTED' ? 'ABORTED' : 'FAILED';
    const project = action.task?.project ?? '';
    if (project !== '' && action.runId !== '' && action.actionId !== '') {
      try {
        await this.config.storage.writeResult(project, action.runId, action.actionId, failedResultDocument(action.attempt, phase, record));
      } catch (error) {
        this.log.warn({ event: 'executor.result_not_stored', actionId: action.actionId, code: AirlockError.from(error).code }, 'could not store the failed attempt result');
      }
    }
    this.log.info({ event: 'executor.action_ended', actionId: action.actionId, attempt: action.attempt, phase, code: record.code, kind: record.kind }, 'action ended');
    return { phase, error: errorOutcome(record) };
  }

  async recover(): Promise<readonly { readonly actionId: string; readonly attempt: number }[]> {
    const { entries, malformed } = await this.journal.list();
    const recovered: { actionId: string; attempt: number }[] = [];
    for (const entry of entries) {
      const killed = entry.process === undefined ? 'none' : await killLeftoverGroup(entry.process);
      await rm(join(this.config.workRoot, entry.workDirName), { recursive: true, force: true });
      await this.journal.remove(entry.workDirName);
      if (entry.actionId === '') {
        // A prepared process that no attempt had taken: nothing to report.
        this.log.info({ event: 'executor.prepared_process_recovered', process: killed }, 'removed a prepared task process a previous agent process left');
        continue;
      }
      this.log.warn({ event: 'executor.action_recovered', actionId: entry.actionId, attempt: entry.attempt, process: killed }, 'an action a previous agent process started never finished');
      recovered.push({ actionId: entry.actionId, attempt: entry.attempt });
    }
    for (const name of malformed) {
      this.log.warn({ event: 'executor.journal_entry_malformed' }, 'removing an unreadable journal entry');
      await this.journal.removeFile(name);
    }
    // Working directories without a journal entry: left by a crash between the two removals at the end of an action.
    const known = new Set(entries.map((entry) => entry.workDirName));
    const names = await readdir(this.config.workRoot).catch(() => [] as string[]);
    for (const name of names) {
      if ((name.startsWith('action-') || name.startsWith('probe-')) && !known.has(name)) await rm(join(this.config.workRoot, name), { recursive: true, force: true });
    }
    // Isolation is tried at start-up, so that a system without it is reported now, not at the first task.
    await this.taskSandbox();
    return recovered;
  }
}

function checkAction(action: Action): { sha256: string; size: number } {
  const bad = (field: string): AirlockError => new AirlockError('INVALID_ARGUMENT', `The action's ${field} is missing or malformed`, { details: { field } });
  if (action.actionId === '') throw bad('action_id');
  if (action.runId === '') throw bad('run_id');
  if (action.task === undefined || action.task.project === '' || action.task.name === '') throw bad('task');
  if (!Number.isSafeInteger(action.attempt) || action.attempt < 1) throw bad('attempt');
  const bundle = action.bundle;
  if (bundle === undefined || !SHA256_HEX.test(bundle.sha256)) throw bad('bundle');
  const size = Number(bundle.size);
  if (!Number.isSafeInteger(size) || size < 1) throw bad('bundle.size');
  return { sha256: bundle.sha256, size };
}

function preparedKey(project: string, sha256: string): string {
  return `${project}/${sha256}`;
}

function journalEntry(action: Action, workDirName: string): JournalEntry {
  return { version: 1, actionId: action.actionId, runId: action.runId, attempt: action.attempt, workDirName };
}

function crashedRecord(end: ProcessEnd): TaskErrorRecord {
  const how = end.signal !== null ? `killed by ${end.signal}` : `exit status ${String(end.exitCode)}`;
  return Object.freeze({
    code: 'TASK_CRASHED',
    kind: 'SYSTEM',
    retryable: true,
    message: `The task's process exited without writing a result (${how})`,
    ...(end.exitCode === null ? {} : { exitCode: end.exitCode }),
    ...(end.signal === null ? {} : { signal: end.signal }),
    ...(end.stderrTail === '' ? {} : { stderrTail: end.stderrTail }),
  });
}

function tooLarge(limit: number): AirlockError {
  return new AirlockError('PAYLOAD_TOO_LARGE', `The task's result document is larger than ${limit} bytes`, { details: { limit } });
}

async function waitAtMost(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([promise, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}

/** Keeps the newest bytes of a stream, at most `limit` of them. */
class BoundedTail {
  private chunks: Buffer[] = [];
  private length = 0;

  constructor(private readonly limit: number) {}

  push(chunk: Buffer): void {
    if (this.limit === 0) return;
    this.chunks.push(chunk);
    this.length += chunk.length;
    while (this.length > this.limit && this.chunks.length > 0) {
      const first = this.chunks[0] as Buffer;
      const excess = this.length - this.limit;
      if (first.length <= excess) {
        this.chunks.shift();
        this.length -= first.length;
      } else {
        this.chunks[0] = first.subarray(excess);
        this.length -= excess;
      }
    }
  }

  /** The last `bytes` bytes as text. */
  text(bytes: number): string {
    const all = Buffer.concat(this.chunks);
    return all.subarray(Math.max(0, all.length - bytes)).toString('utf8');
  }
}
