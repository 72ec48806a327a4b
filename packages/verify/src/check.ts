// The check registry's contract and runner: each check proves one property of a running stack, with evidence.
import { setMaxListeners } from 'node:events';
import { AirlockError } from '@airlock/common';
import type { CheckContext } from './endpoints-file.js';

export type CheckStatus = 'pass' | 'fail' | 'skip';

/** One piece of evidence: a negotiated protocol, a suite list, a socket address. Never a secret. */
export type EvidenceValue = string | number | boolean | string[];
export type Evidence = Record<string, EvidenceValue>;

/** What a check found. `skip` means the property does not apply yet (e.g. no tunnel); it does not fail verification. */
export interface CheckResult {
  readonly id: string;
  readonly title: string;
  readonly status: CheckStatus;
  /** Machine-readable facts the verdict rests on. */
  readonly evidence: Evidence;
  /** One line for tables, e.g. `2 endpoints: TLSv1.3 TLS_AES_256_GCM_SHA384; TLS 1.0/1.1 refused`. */
  readonly summary?: string;
  /** Why a check failed or was skipped, in words. */
  readonly details?: string;
  /** Wall time the check took. */
  readonly durationMs?: number;
}

/** A verification check. Checks are registered by id; later issues add theirs to `defaultChecks()`. */
export interface Check {
  /** Stable dotted id, e.g. `tls.versions`. */
  readonly id: string;
  readonly title: string;
  /**
   * The check reads the system's connection table, so other checks' probe connections must not
   * run at the same time: it runs alone, after the concurrent checks. @default false
   */
  readonly exclusive?: boolean;
  /**
   * A precondition of every other check (stack.reachable): gates run first, alone, and when one
   * fails, every other check is reported as `skip`, not run, with `notRun` and `blockedBy` as
   * evidence, so that an outage is not reported as TLS-policy failures. @default false
   */
  readonly gate?: boolean;
  /** Per-check time limit. @default the runner's `timeoutMs` */
  readonly timeoutMs?: number;
  /** Runs the check. `signal` aborts when the time limit passes. May throw: the runner turns that into a fail. */
  run(ctx: CheckContext, signal: AbortSignal): Promise<CheckResult>;
}

export interface RunChecksOptions {
  /** Time limit for a check that sets none. @default 60000 */
  readonly timeoutMs?: number;
  /** Called as each check finishes (progress output). */
  readonly onResult?: (result: CheckResult) => void;
}

export const DEFAULT_CHECK_TIMEOUT_MS = 60_000;

/** Builds a result for `check` (id and title filled in). */
export function checkResult(
  check: Pick<Check, 'id' | 'title'>,
  status: CheckStatus,
  evidence: Evidence,
  extra: { readonly summary?: string; readonly details?: string } = {},
): CheckResult {
  return {
    id: check.id,
    title: check.title,
    status,
    evidence,
    ...(extra.summary === undefined ? {} : { summary: extra.summary }),
    ...(extra.details === undefined ? {} : { details: extra.details }),
  };
}

const STATUSES: ReadonlySet<string> = new Set(['pass', 'fail', 'skip']);

function isEvidenceValue(value: unknown): value is EvidenceValue {
  return (
    typeof value === 'string' ||
    typeof value === 'boolean' ||
    (typeof value === 'number' && Number.isFinite(value)) ||
    (Array.isArray(value) && value.every((item) => typeof item === 'string'))
  );
}

/** Keeps what a check returned honest: its own id and title, a known status, well-typed evidence. */
function normalise(check: Check, value: unknown, durationMs: number): CheckResult {
  const result = value as Partial<CheckResult> | null | undefined;
  if (typeof result !== 'object' || result === null || typeof result.status !== 'string' || !STATUSES.has(result.status)) {
    return { ...checkResult(check, 'fail', { error: 'INTERNAL' }, { details: 'the check returned no valid result' }), durationMs };
  }
  const evidence: Evidence = {};
  for (const [key, item] of Object.entries(result.evidence ?? {})) {
    if (isEvidenceValue(item)) evidence[key] = item;
  }
  return {
    ...checkResult(check, result.status, evidence, {
      ...(typeof result.summary === 'string' ? { summary: result.summary } : {}),
      ...(typeof result.details === 'string' ? { details: result.details } : {}),
    }),
    durationMs,
  };
}

function crashed(check: Check, error: unknown, durationMs: number): CheckResult {
  const e = AirlockError.from(error);
  // AirlockError messages are ours; foreign messages were replaced by the catalogue text in from().
  return { ...checkResult(check, 'fail', { error: e.code }, { details: `the check crashed: ${e.message}` }), durationMs };
}

async function runOne(check: Check, ctx: CheckContext, defaultTimeoutMs: number): Promise<CheckResult> {
  const started = performance.now();
  const elapsed = (): number => Math.round(performance.now() - started);
  const timeoutMs = check.timeoutMs ?? defaultTimeoutMs;
  const controller = new AbortController();
  // One signal fans out to every probe and child process of the check (e.g. ~90 per-suite openssl probes).
  setMaxListeners(1000, controller.signal);
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<CheckResult>((resolve) => {
    timer = setTimeout(() => {
      controller.abort(new AirlockError('TIMEOUT', `the check did not finish within ${timeoutMs} ms`));
      resolve({
        ...checkResult(check, 'fail', { error: 'TIMEOUT', timeoutMs }, { details: `the check did not finish within ${timeoutMs} ms` }),
        durationMs: elapsed(),
      });
    }, timeoutMs);
  });
  try {
    const running = (async () => check.run(ctx, controller.signal))().then(
      (value) => normalise(check, value, elapsed()),
      (error: unknown) => crashed(check, error, elapsed()),
    );
    return await Promise.race([running, timedOut]);
  } catch (error) {
    // Only reachable if normalise itself throws (e.g. a getter on the result): still never throw.
    return crashed(check, error, elapsed());
  } finally {
    clearTimeout(timer);
    controller.abort();
  }
}

/**
 * Runs checks against one stack and returns their results in the order given. `gate` checks run
 * first; if one fails, the others are skipped (not run). Checks run
 * concurrently, except `exclusive` ones, which run one at a time after the others. Each check has
 * a time limit. Never throws: a check that throws or times out is a `fail` with the error code as
 * evidence.
 */
export async function runChecks(checks: readonly Check[], ctx: CheckContext, options: RunChecksOptions = {}): Promise<CheckResult[]> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_CHECK_TIMEOUT_MS;
  const results = new Array<CheckResult | undefined>(checks.length);
  const finish = (index: number, result: CheckResult): void => {
    results[index] = result;
    try {
      options.onResult?.(result);
    } catch {
      // A failing progress callback must not lose the result.
    }
  };
  const indexed = checks.map((check, index) => ({ check, index }));
  const blockedBy: string[] = [];
  for (const { check, index } of indexed.filter(({ check }) => check.gate === true)) {
    const result = await runOne(check, ctx, timeoutMs);
    finish(index, result);
    if (result.status === 'fail') blockedBy.push(check.id);
  }
  const rest = indexed.filter(({ check }) => check.gate !== true);
  if (blockedBy.length > 0) {
    for (const { check, index } of rest) {
      const why = `not run: ${blockedBy.join(', ')} failed`;
      finish(index, { ...checkResult(check, 'skip', { notRun: true, blockedBy }, { summary: why, details: why }), durationMs: 0 });
    }
    return results.map((result, index) => result ?? crashed(checks[index] as Check, new AirlockError('INTERNAL'), 0));
  }
  await Promise.all(
    rest.filter(({ check }) => check.exclusive !== true).map(async ({ check, index }) => finish(index, await runOne(check, ctx, timeoutMs))),
  );
  for (const { check, index } of rest.filter(({ check }) => check.exclusive === true)) {
    finish(index, await runOne(check, ctx, timeoutMs));
  }
  return results.map((result, index) => result ?? crashed(checks[index] as Check, new AirlockError('INTERNAL'), 0));
}

/** True when no check failed (skips do not fail verification). */
export function allPassed(results: readonly CheckResult[]): boolean {
  return results.every((result) => result.status !== 'fail');
}
