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

/** Freezes a resolved configuration object and everything it contains (binary buffers excepted). */
export function freezeConfig<T>(value: T): DeepReadonly<T> {
  if (typeof value === 'object' && value !== null && !ArrayBuffer.isView(value) && !Object.isFrozen(value)) {
    for (const key of Reflect.ownKeys(value)) freezeConfig((value as Record<PropertyKey, unknown>)[key]);
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
