// Tests for inputDigest (canonical JSON) and childActionId (deterministic UUIDv8 child action ids).
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AirlockError } from '@airlock/common';
import { childActionId, inputDigest, taskVersion } from './ids.js';
import { canonicalJson } from './internal/canonical-json.js';

const UUID_V8 = /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const PARENT = '01912345-6789-7abc-8def-0123456789ab';

describe('canonicalJson', () => {
  it('sorts keys at every depth and writes no whitespace', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, { z: null, y: 'é' }], c: true } })).toBe('{"a":{"c":true,"d":[3,{"y":"é","z":null}]},"b":1}');
  });

  it('leaves out undefined properties, as JSON.stringify does', () => {
    expect(canonicalJson({ a: undefined, b: 1 })).toBe('{"b":1}');
  });

  it.each([
    ['a Date', { when: new Date(0) }],
    ['a Map', new Map()],
    ['NaN', [Number.NaN]],
    ['Infinity', { x: Number.POSITIVE_INFINITY }],
    ['a bigint', { x: 1n }],
    ['undefined in an array', [undefined]],
    ['a function', { f: () => 1 }],
    ['undefined itself', undefined],
  ])('refuses %s with INVALID_ARGUMENT', (_what, value) => {
    expect(() => canonicalJson(value)).toThrowError(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });

  it('refuses cycles but accepts the same object twice', () => {
    const shared = { x: 1 };
    expect(canonicalJson({ a: shared, b: shared })).toBe('{"a":{"x":1},"b":{"x":1}}');
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => canonicalJson(cyclic)).toThrow(AirlockError);
  });

  it('parses back to the same value (property)', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        expect(JSON.parse(canonicalJson(value))).toEqual(JSON.parse(JSON.stringify(value)));
      }),
    );
  });
});

describe('inputDigest', () => {
  it('is SHA-256 over the domain string and the canonical JSON (known answer)', () => {
    const expected = createHash('sha256').update('airlock/v1/input-digest\n{"a":1,"b":[true,null,"x"]}').digest('hex');
    expect(inputDigest({ b: [true, null, 'x'], a: 1 })).toBe(expected);
  });

  it('does not depend on key order (property)', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue()), (record) => {
        const reversed = Object.fromEntries(Object.entries(record).reverse());
        expect(inputDigest(reversed)).toBe(inputDigest(record));
      }),
    );
  });

  it('differs for different values', () => {
    expect(inputDigest({ n: 1 })).not.toBe(inputDigest({ n: 2 }));
    expect(inputDigest({ n: 1 })).not.toBe(inputDigest({ n: '1' }));
    expect(inputDigest([1, 2])).not.toBe(inputDigest([2, 1]));
  });
});

describe('childActionId', () => {
  const digest = inputDigest({ name: 'World' });

  it('is a UUIDv8 and the same for the same call', () => {
    const id = childActionId(PARENT, 'hello', digest, 0);
    expect(id).toMatch(UUID_V8);
    expect(childActionId(PARENT, 'hello', digest, 0)).toBe(id);
  });

  it('changes with each of parent, task, inputs and call sequence', () => {
    const base = childActionId(PARENT, 'hello', digest, 0);
    const variants = [
      childActionId('01912345-6789-7abc-8def-0123456789ac', 'hello', digest, 0),
      childActionId(PARENT, 'hello2', digest, 0),
      childActionId(PARENT, 'hello', inputDigest({ name: 'Moon' }), 0),
      childActionId(PARENT, 'hello', digest, 1),
    ];
    expect(new Set([base, ...variants]).size).toBe(5);
  });

  it('keeps field boundaries unambiguous', () => {
    expect(childActionId('ab', 'c', digest, 0)).not.toBe(childActionId('a', 'bc', digest, 0));
  });

  it('has no collisions over many call sequences (property)', () => {
    const ids = new Set(Array.from({ length: 2000 }, (_, sequence) => childActionId(PARENT, 'fan-out', digest, sequence)));
    expect(ids.size).toBe(2000);
  });

  it.each([
    ['an empty parent', () => childActionId('', 'hello', digest, 0)],
    ['an empty task name', () => childActionId(PARENT, '', digest, 0)],
    ['a digest that is not 64 hex digits', () => childActionId(PARENT, 'hello', 'abc', 0)],
    ['an uppercase digest', () => childActionId(PARENT, 'hello', digest.toUpperCase(), 0)],
    ['a negative call sequence', () => childActionId(PARENT, 'hello', digest, -1)],
    ['a fractional call sequence', () => childActionId(PARENT, 'hello', digest, 1.5)],
  ])('refuses %s with INVALID_ARGUMENT', (_what, call) => {
    expect(call).toThrowError(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});

describe('taskVersion', () => {
  const spec = 'a'.repeat(64);
  const bundle = 'b'.repeat(64);
  it('is a stable digest of the spec digest and the bundle digest, changing with either', () => {
    expect(taskVersion(spec, bundle)).toMatch(/^[0-9a-f]{64}$/);
    expect(taskVersion(spec, bundle)).toBe(taskVersion(spec, bundle));
    expect(taskVersion(spec, 'c'.repeat(64))).not.toBe(taskVersion(spec, bundle));
    expect(taskVersion('c'.repeat(64), bundle)).not.toBe(taskVersion(spec, bundle));
    // Field order matters: swapping the two digests is a different version.
    expect(taskVersion(bundle, spec)).not.toBe(taskVersion(spec, bundle));
  });
  it('refuses anything but 64 lowercase hex digits', () => {
    expect(() => taskVersion('A'.repeat(64), bundle)).toThrow(/specDigest/);
    expect(() => taskVersion(spec, 'b'.repeat(63))).toThrow(/bundleSha256/);
  });
});
