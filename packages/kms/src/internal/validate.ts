// Request-field validation for KMS operations, with AWS's ValidationException semantics.
import { AirlockError } from '@airlock/common';
import type { EncryptionContext } from '@airlock/crypto';

export type Input = Readonly<Record<string, unknown>>;

function fail(message: string): AirlockError {
  return new AirlockError('INVALID_ARGUMENT', message);
}

export function requireString(input: Input, field: string, min = 1, max = 2048): string {
  const value = input[field];
  if (typeof value !== 'string') throw fail(`1 validation error detected: Value at '${lower(field)}' failed to satisfy constraint: Member must not be null`);
  return checkLength(value, field, min, max);
}

export function optionalString(input: Input, field: string, min = 0, max = 8192): string | undefined {
  const value = input[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw fail(`Value at '${lower(field)}' must be a string`);
  return checkLength(value, field, min, max);
}

function checkLength(value: string, field: string, min: number, max: number): string {
  if (value.length < min || value.length > max) {
    throw fail(`1 validation error detected: Value at '${lower(field)}' failed to satisfy constraint: Member must have length between ${min} and ${max}`);
  }
  return value;
}

export function optionalInteger(input: Input, field: string, min: number, max: number): number | undefined {
  const value = input[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw fail(`1 validation error detected: Value '${JSON.stringify(value) ?? 'undefined'}' at '${lower(field)}' failed to satisfy constraint: Member must have value between ${min} and ${max}`);
  }
  return value;
}

export function optionalBoolean(input: Input, field: string): boolean | undefined {
  const value = input[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'boolean') throw fail(`Value at '${lower(field)}' must be a boolean`);
  return value;
}

/** A base64 blob field (the JSON protocol's encoding of binary). */
export function requireBlob(input: Input, field: string, min: number, max: number): Buffer {
  const value = input[field];
  if (typeof value !== 'string') throw fail(`1 validation error detected: Value at '${lower(field)}' failed to satisfy constraint: Member must not be null`);
  const bytes = Buffer.from(value, 'base64');
  if (bytes.toString('base64').replace(/=+$/, '') !== value.replace(/=+$/, '').replace(/\s/g, '')) {
    throw new AirlockError('MALFORMED_REQUEST', `Value at '${lower(field)}' is not valid base64`);
  }
  if (bytes.byteLength < min || bytes.byteLength > max) {
    throw fail(`1 validation error detected: Value at '${lower(field)}' failed to satisfy constraint: Member must have length between ${min} and ${max}`);
  }
  return bytes;
}

export function optionalContext(input: Input, field: string): EncryptionContext {
  const value = input[field];
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) throw fail(`Value at '${lower(field)}' must be a map of strings`);
  for (const item of Object.values(value)) {
    if (typeof item !== 'string') throw fail(`Value at '${lower(field)}' must be a map of strings`);
  }
  return value as EncryptionContext;
}

export function optionalEnum<const V extends string>(input: Input, field: string, allowed: readonly V[]): V | undefined {
  const value = input[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw fail(`1 validation error detected: Value '${JSON.stringify(value) ?? 'undefined'}' at '${lower(field)}' failed to satisfy constraint: Member must satisfy enum value set: [${allowed.join(', ')}]`);
  }
  return value as V;
}

function lower(field: string): string {
  return field.charAt(0).toLowerCase() + field.slice(1);
}
