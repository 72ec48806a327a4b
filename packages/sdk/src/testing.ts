// @airlock/sdk/testing: run a task in-process with the executor's validation, retries, timeout and error records.
import { executeTask, type ExecuteOptions, type ExecuteResult, type TaskLogEntry } from './execute.js';
import { retryDelayMs, shouldRetry } from './retry.js';
import type { AnyTask } from './task.js';

/** Options of runTaskLocally: those of executeTask (except the attempt), plus control over the waits between attempts. */
export interface RunLocallyOptions extends Omit<ExecuteOptions, 'attempt' | 'log'> {
  /**
   * Waits between attempts. Tests pass `async () => {}` to skip the real backoff, and can record
   * the delays asked for. @default a real timer, cut short by `signal`
   */
  readonly sleep?: (ms: number, signal: AbortSignal | undefined) => Promise<void>;
  /** The jitter source for retry delays. @default Math.random */
  readonly random?: () => number;
  /** Also receives each log entry as it is written (they are collected in the result either way). */
  readonly log?: (entry: TaskLogEntry) => void;
}

/** One attempt of a local run, and the delay waited after it when another attempt followed. */
export type LocalAttempt<T extends AnyTask = AnyTask> = ExecuteResult<T> & { readonly retryDelayMs?: number };

/** The final attempt's result, every attempt, and every log entry. */
export type LocalRunResult<T extends AnyTask = AnyTask> = ExecuteResult<T> & {
  readonly attempts: readonly LocalAttempt<T>[];
  readonly logs: readonly TaskLogEntry[];
};

/**
 * Runs `task` with `inputs` in this process as the platform would: each attempt through
 * executeTask (input validation, timeout, abort, output validation, the same error records), and
 * retryable failures retried by the task's policy with exponential backoff and jitter. Never
 * throws; check `result.ok`.
 *
 * ```ts
 * const result = await runTaskLocally(hello, { name: 'World' });
 * expect(result.ok && result.outputs.greeting).toBe('Hello, World!');
 * ```
 */
export async function runTaskLocally<T extends AnyTask>(task: T, inputs: unknown, options: RunLocallyOptions = {}): Promise<LocalRunResult<T>> {
  const { sleep = abortableSleep, random = Math.random, log, ...execute } = options;
  const logs: TaskLogEntry[] = [];
  const attempts: LocalAttempt<T>[] = [];
  const sink = (entry: TaskLogEntry): void => {
    logs.push(entry);
    log?.(entry);
  };
  for (let attempt = 1; ; attempt += 1) {
    const result = await executeTask(task, inputs, { ...execute, attempt, log: sink });
    if (result.ok || !shouldRetry(task.spec.retries, attempt, result.error) || options.signal?.aborted === true) {
      attempts.push(result);
      return { ...result, attempts, logs };
    }
    const delayMs = retryDelayMs(task.spec.retries, attempt, random);
    attempts.push({ ...result, retryDelayMs: delayMs });
    await sleep(delayMs, options.signal);
  }
}

function abortableSleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
