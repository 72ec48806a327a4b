// Tests for runTaskLocally: retries with backoff, the retry rules, abort between attempts, and collected logs.
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { NonRetryableError } from './errors.js';
import { task } from './task.js';
import { runTaskLocally } from './testing.js';

const inputs = z.object({ failures: z.number().int() });
const outputs = z.object({ attempt: z.number() });

/** Fails its first `failures` attempts, then returns the attempt number. */
const flaky = task({ name: 'flaky', inputs, outputs, retries: { limit: 3, initialDelay: '100ms', factor: 2, jitter: 0.5 } }, ({ failures }, ctx) => {
  ctx.log.info(`attempt ${ctx.attempt}`);
  if (ctx.attempt <= failures) throw new Error(`failure ${ctx.attempt}`);
  return { attempt: ctx.attempt };
});

describe('runTaskLocally', () => {
  it('retries retryable failures with exponential backoff until one succeeds', async () => {
    const delays: number[] = [];
    const result = await runTaskLocally(flaky, { failures: 2 }, { sleep: async (ms) => void delays.push(ms), random: () => 0 });
    expect(result).toMatchObject({ ok: true, attempt: 3, outputs: { attempt: 3 } });
    expect(result.attempts.map((attempt) => attempt.ok)).toEqual([false, false, true]);
    expect(delays).toEqual([100, 200]);
    expect(result.attempts.map((attempt) => attempt.retryDelayMs)).toEqual([100, 200, undefined]);
    expect(result.logs.map((entry) => entry.message)).toEqual(['attempt 1', 'attempt 2', 'attempt 3']);
  });

  it('ends with the last error when retries run out', async () => {
    const result = await runTaskLocally(flaky, { failures: 10 }, { sleep: async () => undefined });
    expect(result).toMatchObject({ ok: false, attempt: 4, phase: 'FAILED', error: { code: 'TASK_FAILED', kind: 'USER', message: 'failure 4' } });
    expect(result.attempts).toHaveLength(4);
  });

  it('does not retry invalid inputs or a NonRetryableError', async () => {
    const invalid = await runTaskLocally(flaky, { failures: 'two' }, { sleep: async () => undefined });
    expect(invalid).toMatchObject({ ok: false, error: { code: 'TASK_INPUT_INVALID' } });
    expect(invalid.attempts).toHaveLength(1);
    const final = task({ name: 'final', inputs, outputs, retries: 5 }, () => {
      throw new NonRetryableError('stop');
    });
    const result = await runTaskLocally(final, { failures: 0 }, { sleep: async () => undefined });
    expect(result).toMatchObject({ ok: false, error: { code: 'TASK_FAILED_FINAL' } });
    expect(result.attempts).toHaveLength(1);
  });

  it('retries timeouts', async () => {
    const slowOnce = task({ name: 'slow-once', inputs, outputs, retries: 1, timeout: '50ms' }, async (_inputs, ctx) => {
      if (ctx.attempt === 1) await new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(new Error('stopped'))));
      return { attempt: ctx.attempt };
    });
    const result = await runTaskLocally(slowOnce, { failures: 0 }, { sleep: async () => undefined });
    expect(result).toMatchObject({ ok: true, outputs: { attempt: 2 } });
    expect(result.attempts[0]).toMatchObject({ ok: false, phase: 'TIMED_OUT', error: { code: 'TASK_TIMED_OUT' } });
  });

  it('stops retrying once aborted', async () => {
    const controller = new AbortController();
    const result = await runTaskLocally(flaky, { failures: 10 }, {
      signal: controller.signal,
      sleep: async () => {
        controller.abort();
      },
    });
    expect(result).toMatchObject({ ok: false, phase: 'ABORTED', error: { code: 'TASK_ABORTED' } });
    expect(result.attempts).toHaveLength(2);
  });

  it('waits for real between attempts by default', async () => {
    const quick = task({ name: 'quick', inputs, outputs, retries: { limit: 1, initialDelay: '30ms', jitter: 0 } }, ({ failures }, ctx) => {
      if (ctx.attempt <= failures) throw new Error('again');
      return { attempt: ctx.attempt };
    });
    const started = Date.now();
    const result = await runTaskLocally(quick, { failures: 1 });
    expect(result.ok).toBe(true);
    // A lower bound only: the wait happened (no upper bound, which would be a timing assertion).
    expect(Date.now() - started).toBeGreaterThanOrEqual(25);
  });
});
