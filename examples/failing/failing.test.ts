// Unit tests of the failing example: every attempt fails and retries run out, with the same error record the executor produces.
import { controlPlaneErrorRecord } from '@airlock/sdk';
import { runTaskLocally } from '@airlock/sdk/testing';
import { describe, expect, it } from 'vitest';
import { failing } from './failing.js';

describe('examples/failing', () => {
  it('fails every attempt until its two retries run out', async () => {
    const delays: number[] = [];
    const result = await runTaskLocally(failing, { reason: 'canary-7a0c' }, { sleep: async (ms) => void delays.push(ms) });
    expect(result).toMatchObject({
      ok: false,
      attempt: 3,
      phase: 'FAILED',
      error: { code: 'TASK_FAILED', kind: 'USER', retryable: true, message: 'failing on purpose: canary-7a0c' },
    });
    expect(result.attempts).toHaveLength(3);
    expect(delays).toHaveLength(2);
    expect(result.logs.map((entry) => entry.message)).toEqual(['attempt 1 is about to fail', 'attempt 2 is about to fail', 'attempt 3 is about to fail']);
    if (result.ok) return;
    expect(result.error.stack).toContain('failing.ts');
    expect(controlPlaneErrorRecord(result.error)).toEqual({ code: 'TASK_FAILED', kind: 'USER', retryable: true });
  });

  it('uses the default reason when none is given', async () => {
    const result = await runTaskLocally(failing, {}, { sleep: async () => undefined });
    expect(result).toMatchObject({ ok: false, error: { message: 'failing on purpose: no reason given' } });
  });
});
