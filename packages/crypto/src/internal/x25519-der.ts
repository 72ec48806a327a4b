// X25519 key wrapping: raw 32-byte keys to and from the DER forms that node:crypto and WebCrypto import.
import { AirlockError } from '@airlock/common';

/** Raw X25519 keys are 32 bytes (RFC 7748 §5). */
export const X25519_RAW_LENGTH = 32;

/**
 * PKCS#8 PrivateKeyInfo prefix for an X25519 key (RFC 8410 §7): SEQUENCE { version 0,
 * AlgorithmIdentifier { 1.3.101.110 }, OCTET STRING { OCTET STRING (32) } }. The raw key follows.
 */
const PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');

/**
 * SubjectPublicKeyInfo prefix for an X25519 key (RFC 8410 §4): SEQUENCE { AlgorithmIdentifier
 * { 1.3.101.110 }, BIT STRING (0 unused bits) }. The raw key follows.
 */
const SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');

/** Wraps a raw private key as PKCS#8 DER. The result holds key material: zero it after import. */
export function pkcs8FromRaw(privateKey: Uint8Array): Buffer {
  const der = Buffer.alloc(PKCS8_PREFIX.byteLength + X25519_RAW_LENGTH);
  PKCS8_PREFIX.copy(der, 0);
  der.set(privateKey, PKCS8_PREFIX.byteLength);
  return der;
}

/** Wraps a raw public key as SubjectPublicKeyInfo DER. */
export function spkiFromRaw(publicKey: Uint8Array): Buffer {
  const der = Buffer.alloc(SPKI_PREFIX.byteLength + X25519_RAW_LENGTH);
  SPKI_PREFIX.copy(der, 0);
  der.set(publicKey, SPKI_PREFIX.byteLength);
  return der;
}

/**
 * Extracts the raw key from PKCS#8 or SPKI DER produced by node:crypto for X25519. Both encodings
 * end with the 32 raw bytes, and node always emits the minimal forms above, so the prefix is
 * checked rather than parsed.
 */
export function rawFromDer(der: Buffer, kind: 'pkcs8' | 'spki'): Buffer {
  const prefix = kind === 'pkcs8' ? PKCS8_PREFIX : SPKI_PREFIX;
  if (der.byteLength !== prefix.byteLength + X25519_RAW_LENGTH || !der.subarray(0, prefix.byteLength).equals(prefix)) {
    throw new AirlockError('INTERNAL', `unexpected X25519 ${kind} encoding`);
  }
  return Buffer.from(der.subarray(prefix.byteLength));
}
