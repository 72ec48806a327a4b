// Running one attempt of a task: validate inputs, run with a timeout and an abort signal, validate outputs, return a result or an error record.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AirlockError } from '@airlock/common/errors';
import {
  abortedRecord,
  failedPhaseOf,
  systemErrorRecord,
  timedOutRecord,
  userErrorRecord,
  type FailedPhase,
  type TaskErrorRecord,
} from './error-record.js';
import { TaskValidationError } from './errors.js';
import { isSystemError } from './internal/system-error.js';
import { validateInputs, validateOutputs, type AnyTask, type TaskContext, type TaskLogger, type TaskOutputs } from './task.js';

/** One line a task logged through ctx.log. Data: it goes to the data plane's log store only. */
export interface TaskLogEntry {
  readonly level: 'debug' | 'info' | 'warn' | 'error';
  readonly message: string;
  readonly fields?: Readonly<Record<string, unknown>>;
  /** ISO 8601. */
  readonly time: string;
}

/** Receives what a task logs. */
export type TaskLogSink = (entry: TaskLogEntry) => void;

/** The PATH a command task gets unless the executor says otherwise; nothing else of the caller's environment is passed on. */
export const DEFAULT_COMMAND_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** How to run one attempt. */
export interface ExecuteOptions {
  /** Aborting it stops the attempt: it ends ABORTED (TASK_ABORTED). */
  readonly signal?: AbortSignal;
  /** 1-based. @default 1 */
  readonly attempt?: number;
  /** Overrides the spec's timeout for this attempt (an action's own timeout). @default task.spec.timeoutMs */
  readonly timeoutMs?: number;
  /**
   * The attempt's working directory, owned by the caller (the executor makes a 0700 one per
   * action). @default a fresh 0700 temporary directory, removed when the attempt ends
   */
  readonly workDir?: string;
  /** @default discard */
  readonly log?: TaskLogSink;
  /**
   * After an abort or timeout, how long to wait for the task to stop (a command gets SIGTERM, then
   * SIGKILL when this runs out) before the attempt is reported ended anyway. @default 5000
   */
  readonly killGraceMs?: number;
  /** The whole environment of a command task's process, before the task's own `env`. @default { PATH: DEFAULT_COMMAND_PATH } */
  readonly commandEnv?: Readonly<Record<string, string>>;
  readonly runId?: string;
  readonly actionId?: string;
}

/** The outcome of one attempt. `error.message` and `error.stack` are data; see controlPlaneErrorRecord. */
export type ExecuteResult<T extends AnyTask = AnyTask> =
  | { readonly ok: true; readonly attempt: number; readonly outputs: TaskOutputs<T> }
  | { readonly ok: false; readonly attempt: number; readonly phase: FailedPhase; readonly error: TaskErrorRecord };

/** What command tasks need from the executor besides the TaskContext; passed to handlers by executeTask only. */
export interface CommandRuntime {
  readonly env: Readonly<Record<string, string>>;
  readonly killGraceMs: number;
}

const COMMAND_RUNTIME = new WeakMap<TaskContext, CommandRuntime>();

/** The command runtime executeTask attached to a context (undefined when a handler is called some other way). */
export function commandRuntimeOf(ctx: TaskContext): CommandRuntime | undefined {
  return COMMAND_RUNTIME.get(ctx);
}

/**
 * Runs one attempt of `task` with `rawInputs` (parsed JSON): validates the inputs, runs the task
 * with `ctx.signal` aborted on timeout or abort, validates the outputs, and never throws. The
 * local harness (runTaskLocally) and the data plane's executor both run attempts through this,
 * so users' tests see the same validation and error records as production.
 */
export async function executeTask<T extends AnyTask>(task: T, rawInputs: unknown, options: ExecuteOptions = {}): Promise<ExecuteResult<T>> {
  const attempt = options.attempt ?? 1;
  const timeoutMs = options.timeoutMs ?? task.spec.timeoutMs;
  const killGraceMs = options.killGraceMs ?? 5000;
  const fail = (error: TaskErrorRecord): ExecuteResult<T> => ({ ok: false, attempt, phase: failedPhaseOf(error), error });
  if (!Number.isSafeInteger(attempt) || attempt < 1) return fail(systemErrorRecord(new AirlockError('INVALID_ARGUMENT', 'executeTask: attempt must be a positive integer')));
  if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 1) return fail(systemErrorRecord(new AirlockError('INVALID_ARGUMENT', 'executeTask: timeoutMs must be a positive integer')));
  if (options.signal?.aborted === true) return fail(abortedRecord());

  let inputs: unknown;
  try {
    inputs = await validateInputs(task, rawInputs);
  } catch (error) {
    return fail(error instanceof TaskValidationError ? userErrorRecord(error) : systemErrorRecord(error));
  }

  let ownedWorkDir: string | undefined;
  let workDir = options.workDir;
  if (workDir === undefined) {
    try {
      ownedWorkDir = await mkdtemp(join(tmpdir(), 'airlock-task-'));
      workDir = ownedWorkDir;
    } catch (error) {
      return fail(systemErrorRecord(error));
    }
  }

  const controller = new AbortController();
  let stopped: 'timeout' | 'abort' | undefined;
  let wake: () => void = () => undefined;
  const stoppedSignal = new Promise<void>((resolve) => (wake = resolve));
  const stop = (why: 'timeout' | 'abort', reason: unknown): void => {
    if (stopped !== undefined) return;
    stopped = why;
    controller.abort(reason);
    wake();
  };
  const onAbort = (): void => stop('abort', options.signal?.reason);
  options.signal?.addEventListener('abort', onAbort, { once: true });
  const timer = setTimeout(() => stop('timeout', new DOMException(`The task attempt timed out after ${timeoutMs} ms`, 'TimeoutError')), timeoutMs);

  const ctx: TaskContext = Object.freeze({
    signal: controller.signal,
    attempt,
    taskName: task.name,
    workDir,
    log: createTaskLogger(options.log),
    runId: options.runId,
    actionId: options.actionId,
  });
  COMMAND_RUNTIME.set(ctx, { env: options.commandEnv ?? { PATH: DEFAULT_COMMAND_PATH }, killGraceMs });

  try {
    const running = Promise.resolve().then(() => task.handler(inputs, ctx) as unknown);
    const settled = running.then(
      (value) => ({ ok: true as const, value }),
      (error: unknown) => ({ ok: false as const, error }),
    );
    const outcome = await Promise.race([settled, stoppedSignal.then(() => undefined)]);
    if (stopped !== undefined) {
      // Give the task (a command's process group, a fetch) the grace period to wind down before the
      // working directory goes; a task that ignores its signal is reported stopped all the same.
      if (outcome === undefined) await settledWithin(settled, killGraceMs);
      return fail(stopped === 'timeout' ? timedOutRecord(timeoutMs) : abortedRecord());
    }
    if (outcome === undefined) throw new AirlockError('INTERNAL', 'executeTask: no outcome');
    if (!outcome.ok) return fail(isSystemError(outcome.error) ? systemErrorRecord(outcome.error) : userErrorRecord(outcome.error));
    try {
      return { ok: true, attempt, outputs: await validateOutputs(task, outcome.value) };
    } catch (error) {
      return fail(error instanceof TaskValidationError ? userErrorRecord(error) : systemErrorRecord(error));
    }
  } catch (error) {
    return fail(systemErrorRecord(error));
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', onAbort);
    if (ownedWorkDir !== undefined) await rm(ownedWorkDir, { recursive: true, force: true }).catch(() => undefined);
  }
}

function createTaskLogger(sink: TaskLogSink | undefined): TaskLogger {
  const write =
    (level: TaskLogEntry['level']) =>
    (message: string, fields?: Readonly<Record<string, unknown>>): void => {
      if (sink === undefined) return;
      const entry: TaskLogEntry = { level, message: String(message), ...(fields === undefined ? {} : { fields }), time: new Date().toISOString() };
      try {
        sink(entry);
      } catch {
        // A failing log sink must not fail the task.
      }
    };
  return Object.freeze({ debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error') });
}

/** Waits for `promise` to settle, or for `ms` to pass, whichever comes first; leaves no timer behind. */
async function settledWithin(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([promise, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}
