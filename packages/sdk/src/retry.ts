// Retry policy and timeouts of a task: durations, exponential backoff with jitter, and when to try again.
import { AirlockError } from '@airlock/common/errors';
import type { TaskErrorRecord } from './error-record.js';

/** Milliseconds, or a string with a unit: `'250ms'`, `'30s'`, `'5m'`, `'1h'`. */
export type Duration = number | `${number}${'ms' | 's' | 'm' | 'h'}`;

/** How a task is retried after a retryable failure. */
export interface RetryOptions {
  /** Attempts after the first (so `limit: 3` means at most four attempts). @default 0 */
  readonly limit: number;
  /** The delay before the first retry, before jitter. @default '1s' */
  readonly initialDelay?: Duration;
  /** The delay never exceeds this, before jitter. @default '1m' */
  readonly maxDelay?: Duration;
  /** Each retry waits this many times longer than the one before. @default 2 */
  readonly factor?: number;
  /**
   * The fraction of each delay that is random: the delay is `d × (1 − jitter × r)` for a uniform
   * `r` in [0, 1), so retries of many actions that failed together spread out. 1 is "full jitter".
   * @default 0.5
   */
  readonly jitter?: number;
}

/** The normalised retry policy, as stored in the task spec. */
export interface ResolvedRetryPolicy {
  readonly limit: number;
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
  readonly factor: number;
  readonly jitter: number;
}

/** The largest timeout or delay accepted: 7 days. */
const MAX_DURATION_MS = 7 * 24 * 60 * 60 * 1000;
const MAX_RETRIES = 100;
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;

/** Parses a Duration into whole milliseconds; `what` names the option in the error. */
export function durationMs(value: Duration, what: string): number {
  let ms: number;
  if (typeof value === 'number') {
    ms = value;
  } else {
    const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(typeof value === 'string' ? value : '');
    if (match === null) throw definitionError(`${what} must be milliseconds or a string such as '30s', '5m' or '1h'`);
    ms = Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS];
  }
  if (!Number.isFinite(ms) || ms <= 0 || ms > MAX_DURATION_MS) throw definitionError(`${what} must be more than 0 and at most 7 days`);
  return Math.ceil(ms);
}

/** Normalises `retries` (a count or RetryOptions) into the policy the spec stores. */
export function resolveRetryPolicy(retries: number | RetryOptions | undefined): ResolvedRetryPolicy {
  const options: RetryOptions = typeof retries === 'number' || retries === undefined ? { limit: retries ?? 0 } : retries;
  const { limit, factor = 2, jitter = 0.5 } = options;
  if (!Number.isSafeInteger(limit) || limit < 0 || limit > MAX_RETRIES) throw definitionError(`retries must be an integer from 0 to ${MAX_RETRIES}`);
  if (typeof factor !== 'number' || !(factor >= 1 && factor <= 10)) throw definitionError('retries.factor must be from 1 to 10');
  if (typeof jitter !== 'number' || !(jitter >= 0 && jitter <= 1)) throw definitionError('retries.jitter must be from 0 to 1');
  const initialDelayMs = durationMs(options.initialDelay ?? '1s', 'retries.initialDelay');
  const maxDelayMs = durationMs(options.maxDelay ?? '1m', 'retries.maxDelay');
  if (maxDelayMs < initialDelayMs) throw definitionError('retries.maxDelay must not be less than retries.initialDelay');
  return Object.freeze({ limit, initialDelayMs, maxDelayMs, factor, jitter });
}

/**
 * The delay before attempt `failedAttempt + 1`, after attempt `failedAttempt` (1-based) failed:
 * `min(maxDelay, initialDelay × factor^(failedAttempt − 1))`, reduced by up to `jitter` of itself.
 * `random` is injectable so tests (and a scheduler that wants reproducible delays) can fix it.
 */
export function retryDelayMs(policy: ResolvedRetryPolicy, failedAttempt: number, random: () => number = Math.random): number {
  if (!Number.isSafeInteger(failedAttempt) || failedAttempt < 1) throw new AirlockError('INVALID_ARGUMENT', 'retryDelayMs: failedAttempt must be a positive integer');
  const exponential = policy.initialDelayMs * policy.factor ** (failedAttempt - 1);
  const capped = Math.min(policy.maxDelayMs, exponential);
  const r = Math.min(Math.max(random(), 0), 1);
  return Math.round(capped * (1 - policy.jitter * r));
}

/**
 * Whether an attempt that ended with `error` gets another: the error must be retryable, the
 * attempt must not have been aborted, and retries must remain. The control plane's scheduler and
 * the in-process harness decide with this same rule.
 */
export function shouldRetry(policy: ResolvedRetryPolicy, failedAttempt: number, error: Pick<TaskErrorRecord, 'code' | 'retryable'>): boolean {
  return error.retryable && error.code !== 'TASK_ABORTED' && failedAttempt <= policy.limit;
}

function definitionError(message: string): AirlockError {
  return new AirlockError('TASK_DEFINITION_INVALID', message);
}
