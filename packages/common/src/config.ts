// Configuration resolution: entry points turn user *Options into frozen Resolved* objects with these helpers.
import { AirlockError } from './errors.js';

/** A deeply read-only view of a resolved configuration. */
export type DeepReadonly<T> = T extends (...args: never[]) => unknown
  ? T
  : T extends Uint8Array
    ? T
    : T extends object
      ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
      : T;

/** Plain data (object literals and arrays) is frozen; anything with behaviour (streams, loggers, buffers) is left alone. */
function isPlainData(value: unknown): value is object {
  if (typeof value !== 'object' || value === null) return false;
  if (Array.isArray(value)) return true;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * Freezes a resolved configuration object and all plain data inside it. Objects with behaviour
 * (a log destination, a redactor, a buffer) are referenced, not frozen: freezing them would break
 * them. Cycles are handled.
 */
export function freezeConfig<T>(value: T, seen: WeakSet<object> = new WeakSet()): DeepReadonly<T> {
  if (isPlainData(value) && !seen.has(value)) {
    seen.add(value);
    for (const key of Reflect.ownKeys(value)) freezeConfig((value as Record<PropertyKey, unknown>)[key], seen);
    Object.freeze(value);
  }
  return value as DeepReadonly<T>;
}

/** The error every resolver throws for a bad option. The message names the option, never its value. */
export function configError(option: string, problem: string): AirlockError {
  return new AirlockError('CONFIG_INVALID', `Invalid configuration: ${option} ${problem}`, { details: { option } });
}

/** Validators used by resolve*Config functions. Each returns the value or throws CONFIG_INVALID. */
export const configCheck = Object.freeze({
  integer(option: string, value: number, min: number, max: number = Number.MAX_SAFE_INTEGER): number {
    if (!Number.isSafeInteger(value) || value < min || value > max) {
      throw configError(option, `must be an integer from ${min} to ${max}`);
    }
    return value;
  },
  oneOf<const V extends string>(option: string, value: string, allowed: readonly V[]): V {
    if (!(allowed as readonly string[]).includes(value)) throw configError(option, `must be one of: ${allowed.join(', ')}`);
    return value as V;
  },
  nonEmptyString(option: string, value: string): string {
    if (typeof value !== 'string' || value.length === 0) throw configError(option, 'must be a non-empty string');
    return value;
  },
});
