// Shared helpers for the @airlock/pki tests (unit and integration): error-code assertions and DER tampering.
import { AirlockError, type AirlockErrorCode } from '@airlock/common';
import { x509 } from '../src/internal/x509.js';

/** Resolves to the AirlockError code a promise rejected with, or fails when it resolved or threw something else. */
export async function rejectionCode(promise: Promise<unknown>): Promise<AirlockErrorCode> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof AirlockError) return error.code;
    throw new Error(`expected an AirlockError, got ${String(error)}`, { cause: error });
  }
  throw new Error('expected a rejection, but the promise resolved');
}

/** The AirlockError code a synchronous call threw. */
export function thrownCode(fn: () => unknown): AirlockErrorCode {
  try {
    fn();
  } catch (error) {
    if (error instanceof AirlockError) return error.code;
    throw new Error(`expected an AirlockError, got ${String(error)}`, { cause: error });
  }
  throw new Error('expected a throw, but the call returned');
}

/** DER bytes of the first PEM block. */
export function pemToDer(pem: string): Uint8Array {
  const [first] = x509.PemConverter.decode(pem);
  if (first === undefined) throw new Error('no PEM block');
  return new Uint8Array(first);
}

export function derToPem(der: Uint8Array, label: string): string {
  return x509.PemConverter.encode(der, label);
}

/**
 * Replaces the first occurrence of `find` (ASCII) in a PEM object's DER with `replace` of the same
 * length, keeping the encoding well-formed: a forged field under an unchanged signature.
 */
export function tamperPem(pem: string, label: string, find: string, replace: string): string {
  if (find.length !== replace.length) throw new Error('tamperPem needs same-length strings');
  const der = Buffer.from(pemToDer(pem));
  const at = der.indexOf(Buffer.from(find, 'latin1'));
  if (at < 0) throw new Error(`"${find}" not found in DER`);
  Buffer.from(replace, 'latin1').copy(der, at);
  return derToPem(der, label);
}
