// Unit tests of uuidV7: layout (version, variant, timestamp) and creation-order sorting.
import { describe, expect, it } from 'vitest';
import { uuidV7 } from './ids.js';

describe('uuidV7', () => {
  it('carries version 7, the RFC variant and the millisecond timestamp', () => {
    const id = uuidV7(Date.parse('2030-01-02T03:04:05.678Z'));
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(Number.parseInt(id.replace(/-/g, '').slice(0, 12), 16)).toBeGreaterThanOrEqual(Date.parse('2030-01-02T03:04:05.678Z'));
  });

  it('sorts in creation order, within one millisecond and when the clock goes back', () => {
    const ids: string[] = [];
    for (let index = 0; index < 10_000; index += 1) ids.push(uuidV7(index < 5000 ? 1_900_000_000_000 : 1_899_999_999_000));
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
  });
});
