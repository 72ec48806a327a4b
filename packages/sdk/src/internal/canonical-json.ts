// Canonical JSON (object keys sorted by UTF-16 code units, no whitespace), so equal values always hash alike.
import { AirlockError } from '@airlock/common/errors';

/**
 * Encodes a JSON value canonically: object keys sorted, no insignificant whitespace, numbers and
 * strings as JSON.stringify writes them (which matches RFC 8785 for the values JSON can carry).
 * Throws INVALID_ARGUMENT for anything JSON cannot carry exactly (undefined inside arrays,
 * functions, symbols, bigints, non-finite numbers, cycles, non-plain objects such as Date or Map),
 * rather than silently dropping or converting it: a digest must describe exactly what is sent.
 * Object properties whose value is `undefined` are left out, as JSON.stringify does.
 */
export function canonicalJson(value: unknown): string {
  return encode(value, [], new Set());
}

function encode(value: unknown, path: readonly (string | number)[], seen: Set<object>): string {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) throw notJson(path, 'a non-finite number');
      return JSON.stringify(value);
    case 'object':
      break;
    default:
      throw notJson(path, value === undefined ? 'undefined' : `a ${typeof value}`);
  }
  if (value === null) return 'null';
  if (seen.has(value)) throw notJson(path, 'a cycle');
  seen.add(value);
  try {
    if (Array.isArray(value)) {
      return `[${value.map((item, index) => encode(item, [...path, index], seen)).join(',')}]`;
    }
    const prototype = Object.getPrototypeOf(value) as unknown;
    if (prototype !== Object.prototype && prototype !== null) throw notJson(path, 'a non-plain object');
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, item]) => item !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([key, item]) => `${JSON.stringify(key)}:${encode(item, [...path, key], seen)}`).join(',')}}`;
  } finally {
    seen.delete(value);
  }
}

function notJson(path: readonly (string | number)[], what: string): AirlockError {
  const where = path.length === 0 ? 'the value' : `the value at ${path.join('.')}`;
  return new AirlockError('INVALID_ARGUMENT', `Not JSON: ${where} is ${what}`);
}
