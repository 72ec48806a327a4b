// Byte helpers for key handling: constant-time comparison, zeroisation and argument checks.
import { randomBytes as nodeRandomBytes, timingSafeEqual } from 'node:crypto';
import { AirlockError } from '@airlock/common';

/** Compares two byte strings in time that depends only on their lengths, never on their contents. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  return timingSafeEqual(a, b);
}

/** Overwrites key material with zeros. Call it as soon as a key buffer is no longer needed. */
export function zeroize(...buffers: ReadonlyArray<Uint8Array | undefined>): void {
  for (const buffer of buffers) buffer?.fill(0);
}

/** Cryptographically secure random bytes. */
export function randomBytes(length: number): Buffer {
  assertLength('length', length, 0, 1 << 20);
  return nodeRandomBytes(length);
}

/** Views a Uint8Array as a Buffer without copying. */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Throws INVALID_ARGUMENT unless `value` is a Uint8Array whose length is one of `lengths`. */
export function assertBytes(name: string, value: unknown, ...lengths: number[]): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) {
    throw new AirlockError('INVALID_ARGUMENT', `${name} must be a Uint8Array`, { details: { argument: name } });
  }
  if (lengths.length > 0 && !lengths.includes(value.byteLength)) {
    throw new AirlockError('INVALID_ARGUMENT', `${name} must be ${lengths.join(' or ')} bytes long`, {
      details: { argument: name },
    });
  }
}

/** Throws INVALID_ARGUMENT unless `value` is an integer in [min, max]. */
export function assertLength(name: string, value: number, min: number, max: number): void {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new AirlockError('INVALID_ARGUMENT', `${name} must be an integer from ${min} to ${max}`, {
      details: { argument: name },
    });
  }
}
