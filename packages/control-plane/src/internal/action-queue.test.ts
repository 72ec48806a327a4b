// What an action's readable history may hold: the queue writes it through encodeActionHistory, which keeps phases, times and event ids and nothing else.
import { describe, expect, it } from 'vitest';
import { encodeActionHistory } from './action-queue.js';

describe('encodeActionHistory', () => {
  it('keeps the phase, the time and the event id of each entry, and drops anything else', () => {
    const history = [
      { phase: 'QUEUED', at: 1 },
      { phase: 'RUNNING', at: 2, eventId: 'e-1', message: 'CANARY-should-not-be-stored' },
    ];
    const encoded = encodeActionHistory(history);
    expect(JSON.parse(encoded)).toEqual([
      { phase: 'QUEUED', at: 1 },
      { phase: 'RUNNING', at: 2, eventId: 'e-1' },
    ]);
    expect(encoded).not.toContain('CANARY');
  });

  it.each([
    ['an unknown phase', { phase: 'SECRET-TEXT', at: 1 }],
    ['a time that is not a number', { phase: 'QUEUED', at: '1' }],
    ['a time that is not finite', { phase: 'QUEUED', at: Number.NaN }],
    ['an event id with a control character', { phase: 'RUNNING', at: 1, eventId: 'line\nbreak' }],
    ['an event id longer than an id', { phase: 'RUNNING', at: 1, eventId: 'x'.repeat(129) }],
  ])('refuses %s with INVALID_ARGUMENT', (_name, entry) => {
    expect(() => encodeActionHistory([entry as { phase: string; at: number }])).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }) as Error);
  });
});
