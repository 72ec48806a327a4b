// Unit test of reading a task's result document: the shapes accepted, and what the agent may report of them.
import { describe, expect, it } from 'vitest';
import { AirlockError } from '@airlock/common';
import { outcomeOfResult, parseActionResult } from './action-result.js';

const bytes = (value: unknown): Uint8Array => Buffer.from(JSON.stringify(value));
const failed = { version: 1, ok: false, attempt: 2, phase: 'FAILED', error: { code: 'TASK_FAILED', kind: 'USER', retryable: true, message: 'secret input' } };

describe('parseActionResult', () => {
  it('accepts a success and a failure, and reports code, kind and retryable only', () => {
    expect(outcomeOfResult(parseActionResult(bytes({ version: 1, ok: true, attempt: 1, outputs: { a: 1 } }), 1))).toEqual({ phase: 'SUCCEEDED' });
    const outcome = outcomeOfResult(parseActionResult(bytes(failed), 2));
    expect(outcome).toEqual({ phase: 'FAILED', error: { code: 'TASK_FAILED', kind: 'USER', retryable: true } });
  });

  it.each([
    ['not JSON', Buffer.from('{"version":1,')],
    ['an array', bytes([])],
    ['another version', bytes({ ...failed, version: 2 })],
    ['another attempt', bytes({ ...failed, attempt: 3 })],
    ['a success without outputs', bytes({ version: 1, ok: true, attempt: 2 })],
    ['ok not a boolean', bytes({ ...failed, ok: 'no' })],
    ['an unknown phase', bytes({ ...failed, phase: 'SUCCEEDED' })],
    ['a code outside the catalogue', bytes({ ...failed, error: { ...failed.error, code: 'MADE_UP' } })],
    ['an unknown kind', bytes({ ...failed, error: { ...failed.error, kind: 'OTHER' } })],
    ['retryable missing', bytes({ ...failed, error: { code: 'TASK_FAILED', kind: 'USER', message: 'm' } })],
  ])('refuses %s as INTERNAL without quoting it', (_name, document) => {
    let thrown: unknown;
    try {
      parseActionResult(document, 2);
    } catch (error) {
      thrown = error;
    }
    expect(AirlockError.is(thrown, 'INTERNAL')).toBe(true);
    expect((thrown as Error).message).not.toContain('secret input');
  });
});
