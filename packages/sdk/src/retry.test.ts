// Tests for durations, retry policies, exponential backoff with jitter, and the retry decision.
import { describe, expect, it } from 'vitest';
import { durationMs, resolveRetryPolicy, retryDelayMs, shouldRetry } from './retry.js';

describe('durationMs', () => {
  it.each([
    [250, 250],
    ['250ms', 250],
    ['30s', 30_000],
    ['1.5s', 1500],
    ['5m', 300_000],
    ['2h', 7_200_000],
  ] as const)('%s is %d ms', (value, ms) => {
    expect(durationMs(value, 'timeout')).toBe(ms);
  });

  it.each([0, -1, Number.NaN, '10', '5 m', '1d', '8000h', ''])('refuses %s with TASK_DEFINITION_INVALID', (value) => {
    expect(() => durationMs(value as never, 'timeout')).toThrowError(expect.objectContaining({ code: 'TASK_DEFINITION_INVALID' }));
  });
});

describe('resolveRetryPolicy', () => {
  it('applies defaults to a count', () => {
    expect(resolveRetryPolicy(3)).toEqual({ limit: 3, initialDelayMs: 1000, maxDelayMs: 60_000, factor: 2, jitter: 0.5 });
    expect(resolveRetryPolicy(undefined).limit).toBe(0);
  });

  it.each([
    ['a negative limit', -1],
    ['a fractional limit', 1.5],
    ['a factor below 1', { limit: 1, factor: 0.5 }],
    ['jitter above 1', { limit: 1, jitter: 2 }],
    ['maxDelay below initialDelay', { limit: 1, initialDelay: '10s', maxDelay: '1s' }],
  ] as const)('refuses %s', (_what, retries) => {
    expect(() => resolveRetryPolicy(retries as never)).toThrowError(expect.objectContaining({ code: 'TASK_DEFINITION_INVALID' }));
  });
});

describe('retryDelayMs', () => {
  const policy = resolveRetryPolicy({ limit: 10, initialDelay: '100ms', maxDelay: '1s', factor: 2, jitter: 0.5 });

  it('doubles from the initial delay up to the maximum (no jitter drawn)', () => {
    expect([1, 2, 3, 4, 5, 6].map((attempt) => retryDelayMs(policy, attempt, () => 0))).toEqual([100, 200, 400, 800, 1000, 1000]);
  });

  it('takes off at most the jitter fraction', () => {
    expect(retryDelayMs(policy, 3, () => 1)).toBe(200);
    expect(retryDelayMs(policy, 3, () => 0.5)).toBe(300);
    for (let i = 0; i < 200; i += 1) {
      const delay = retryDelayMs(policy, 4, Math.random);
      expect(delay).toBeGreaterThanOrEqual(400);
      expect(delay).toBeLessThanOrEqual(800);
    }
  });

  it('refuses attempt numbers below 1', () => {
    expect(() => retryDelayMs(policy, 0)).toThrowError(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});

describe('shouldRetry', () => {
  const policy = resolveRetryPolicy(2);

  it('retries retryable errors while retries remain', () => {
    const error = { code: 'TASK_FAILED', retryable: true } as const;
    expect([1, 2, 3].map((attempt) => shouldRetry(policy, attempt, error))).toEqual([true, true, false]);
  });

  it('never retries non-retryable errors or aborts', () => {
    expect(shouldRetry(policy, 1, { code: 'TASK_FAILED_FINAL', retryable: false })).toBe(false);
    expect(shouldRetry(policy, 1, { code: 'TASK_INPUT_INVALID', retryable: false })).toBe(false);
    expect(shouldRetry(policy, 1, { code: 'TASK_ABORTED', retryable: true })).toBe(false);
  });

  it('retries timeouts', () => {
    expect(shouldRetry(policy, 1, { code: 'TASK_TIMED_OUT', retryable: true })).toBe(true);
  });
});
