// The data plane's default executor: each action a child process in its own working directory, process group and minimal environment (docs/runs.md, "The executor").
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, readdir, rm, writeFile } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { durationMs } from '@bufbuild/protobuf/wkt';
import { AirlockError, configCheck, configError, freezeConfig, type DeepReadonly, type Logger } from '@airlock/common';
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
import { killLeftoverGroup, processIdentity, signalGroup } from './process-group.js';
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
}> & { readonly storage: ExecutorStorage; readonly log: Logger };

const DEFAULT_MAX_RESULT_BYTES = 4 * 1024 * 1024;
const DEFAULT_MAX_STDERR_BYTES = 64 * 1024;
const DEFAULT_KILL_GRACE_MS = 5000;
/** How long to wait for the task's standard error to close once its group is gone (a process that escaped the group may hold it). */
const STDERR_CLOSE_WAIT_MS = 2000;
const SHA256_HEX = /^[0-9a-f]{64}$/;

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
  });
  return Object.freeze({ ...settings, storage, log: options.log });
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

class LocalProcessExecutor implements Executor {
  private readonly journal: ExecutorJournal;

  constructor(private readonly config: ResolvedLocalProcessExecutorConfig) {
    this.journal = new ExecutorJournal(config.journalDir);
  }

  private get log(): Logger {
    return this.config.log;
  }

  async execute(action: Action, signal: AbortSignal, hooks: ExecutionHooks): Promise<ActionOutcome> {
    const { config } = this;
    const ids = { actionId: action.actionId, runId: action.runId, attempt: action.attempt };
    const workDirName = `action-${randomUUID()}`;
    const workDir = join(config.workRoot, workDirName);
    const project = action.task?.project ?? '';
    let journaled = false;
    try {
      const bundle = checkAction(action);
      const timeoutMs = action.timeout === undefined ? 0 : durationMs(action.timeout);
      // The journal comes first: whatever exists of this action from here on, a restart finds.
      await this.journal.put(journalEntry(action, workDirName));
      journaled = true;
      await mkdir(config.workRoot, { recursive: true, mode: 0o700 });
      await mkdir(workDir, { mode: 0o700 });
      if (signal.aborted) return await this.stopped(action, signal, timeoutMs);

      const bundlePath = join(workDir, 'bundle.mjs');
      await config.storage.fetchBundle(project, bundle, bundlePath);
      const inputs = await config.storage.readInputs(project, action.runId, action.inputsRef, action.task?.name ?? '');
      const inputsPath = join(workDir, 'inputs.json');
      // A task run without inputs gets an empty object, as the CLI sends for no --input.
      await writeFile(inputsPath, inputs ?? '{}', { mode: 0o600, flag: 'wx' });
      await mkdir(join(workDir, 'tmp'), { mode: 0o700 });
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
      const requestPath = join(workDir, 'request.json');
      await writeFile(requestPath, JSON.stringify(request), { mode: 0o600, flag: 'wx' });
      if (signal.aborted) return await this.stopped(action, signal, timeoutMs);

      try {
        hooks.onRunning();
      } catch {
        // A reporting hook must not fail the action.
      }
      const end = await this.runProcess(action, workDirName, workDir, bundlePath, requestPath, signal);
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
      await rm(workDir, { recursive: true, force: true }).catch((error: unknown) =>
        this.log.error({ event: 'executor.workdir_not_removed', ...ids, code: AirlockError.from(error).code }, 'could not remove an action working directory'),
      );
      if (journaled) {
        await this.journal.remove(workDirName).catch((error: unknown) =>
          this.log.error({ event: 'executor.journal_not_cleared', ...ids, code: AirlockError.from(error).code }, 'could not clear a journal entry'),
        );
      }
    }
  }

  /** Starts the task's process, records it in the journal, and waits until it and its group are gone. */
  private async runProcess(action: Action, workDirName: string, workDir: string, bundlePath: string, requestPath: string, signal: AbortSignal): Promise<ProcessEnd> {
    const { config } = this;
    const child = spawn(config.nodePath, [bundlePath, 'run', '--request', requestPath], {
      cwd: workDir,
      // The whole environment: nothing of the agent's (its KMS credentials, AIRLOCK_* settings, NODE_OPTIONS) reaches the task.
      env: { PATH: config.path, HOME: workDir, TMPDIR: join(workDir, 'tmp'), LANG: config.lang },
      // setsid(): a process group (and session) of its own, so signals reach every process the task starts.
      detached: true,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const tail = new BoundedTail(config.maxStderrBytes);
    child.stderr?.on('data', (chunk: Buffer) => tail.push(chunk));
    const stderrClosed = new Promise<void>((resolve) => {
      if (child.stderr === null) resolve();
      else child.stderr.once('close', () => resolve());
    });
    const exited = new Promise<{ exitCode: number | null; signal: NodeJS.Signals | null; spawnError?: Error }>((resolve) => {
      child.once('exit', (exitCode, exitSignal) => resolve({ exitCode, signal: exitSignal }));
      child.once('error', (error) => resolve({ exitCode: null, signal: null, spawnError: error }));
    });

    const pid = child.pid;
    if (pid !== undefined) {
      const identity = await processIdentity(pid);
      if (identity !== undefined) {
        await this.journal.put({ ...journalEntry(action, workDirName), process: identity }).catch((error: unknown) =>
          this.log.warn({ event: 'executor.journal_not_updated', actionId: action.actionId, code: AirlockError.from(error).code }, 'could not record the task process in the journal'),
        );
      }
      this.log.info({ event: 'executor.process_started', actionId: action.actionId, attempt: action.attempt, pid }, 'task process started');
    }

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

    const end = await exited;
    signal.removeEventListener('abort', onAbort);
    clearTimeout(killTimer);
    if (end.spawnError !== undefined) throw AirlockError.from(end.spawnError);
    // The leader is gone; nothing it started outlives it (a task's background processes, a command that ignored SIGTERM).
    if (pid !== undefined) signalGroup(pid, 'SIGKILL');
    await waitAtMost(stderrClosed, STDERR_CLOSE_WAIT_MS);
    child.stderr?.destroy();
    return { exitCode: end.exitCode, signal: end.signal, stopped, stderrTail: tail.text(STDERR_TAIL_BYTES) };
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
      const buffer = Buffer.alloc(limit + 1);
      let length = 0;
      while (length < buffer.length) {
        const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length);
        if (bytesRead === 0) break;
        length += bytesRead;
      }
      if (length > limit) throw tooLarge(limit);
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
      if (name.startsWith('action-') && !known.has(name)) await rm(join(this.config.workRoot, name), { recursive: true, force: true });
    }
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
