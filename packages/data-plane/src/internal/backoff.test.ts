// Unit tests for the tunnel agent's full-jitter exponential backoff.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fullJitterBackoffMs } from './backoff.js';

const schedule = { initialMs: 200, maxMs: 30_000 };

describe('fullJitterBackoffMs', () => {
  it('doubles the ceiling per attempt up to the cap', () => {
    const almostOne = () => 0.999_999;
    expect(fullJitterBackoffMs(0, schedule, almostOne)).toBe(199);
    expect(fullJitterBackoffMs(1, schedule, almostOne)).toBe(399);
    expect(fullJitterBackoffMs(7, schedule, almostOne)).toBe(25_599);
    expect(fullJitterBackoffMs(8, schedule, almostOne)).toBe(29_999);
    expect(fullJitterBackoffMs(10_000, schedule, almostOne)).toBe(29_999);
  });

  it('always lies in [0, ceiling) for any attempt and random value', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 5_000 }), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (attempt, r) => {
        const delay = fullJitterBackoffMs(attempt, schedule, () => r);
        const ceiling = Math.min(schedule.maxMs, schedule.initialMs * 2 ** attempt);
        return Number.isInteger(delay) && delay >= 0 && delay < ceiling;
      }),
    );
  });

  it('treats a negative attempt as the first', () => {
    expect(fullJitterBackoffMs(-3, schedule, () => 0.5)).toBe(100);
  });
});
