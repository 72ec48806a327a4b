// AES-256-GCM and HKDF-SHA256 over node:crypto, with argument checks and detail-free auth failures.
import { createCipheriv, createDecipheriv, createHmac, hkdfSync } from 'node:crypto';
import { AirlockError } from '@airlock/common';
import { assertBytes, assertLength, asBuffer } from './bytes.js';

export const AES_256_KEY_LENGTH = 32;
/** GCM nonces are 96 bits (NIST SP 800-38D §5.2.1.1); Airlock uses no other length. */
export const GCM_NONCE_LENGTH = 12;
export const GCM_TAG_LENGTH = 16;

const EMPTY = new Uint8Array(0);

/**
 * Encrypts with AES-256-GCM. Returns ciphertext ‖ tag. The caller guarantees nonce uniqueness per
 * key (every Airlock format derives a fresh key or a fresh random nonce per message).
 */
export function aesGcmEncrypt(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array = EMPTY): Buffer {
  assertBytes('key', key, AES_256_KEY_LENGTH);
  assertBytes('nonce', nonce, GCM_NONCE_LENGTH);
  assertBytes('plaintext', plaintext);
  assertBytes('aad', aad);
  const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: GCM_TAG_LENGTH });
  if (aad.byteLength > 0) cipher.setAAD(aad);
  const head = cipher.update(plaintext);
  const tail = cipher.final();
  return Buffer.concat([head, tail, cipher.getAuthTag()]);
}

/**
 * Encrypts with AES-256-GCM into `out`: ciphertext ‖ tag written from `offset`, which must leave
 * exactly plaintext length + 16 bytes. For formats that put a header before the ciphertext: one
 * buffer, where `aesGcmEncrypt` and a concatenation would allocate and copy it twice.
 */
export function aesGcmEncryptInto(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array, out: Buffer, offset: number): Buffer {
  assertBytes('key', key, AES_256_KEY_LENGTH);
  assertBytes('nonce', nonce, GCM_NONCE_LENGTH);
  assertBytes('plaintext', plaintext);
  assertBytes('aad', aad);
  if (!Buffer.isBuffer(out) || !Number.isSafeInteger(offset) || offset < 0 || out.byteLength - offset !== plaintext.byteLength + GCM_TAG_LENGTH) {
    throw new AirlockError('INVALID_ARGUMENT', 'out must hold exactly the ciphertext and tag from offset', { details: { argument: 'out' } });
  }
  // No options object: GCM's tag is 16 bytes (GCM_TAG_LENGTH) unless asked otherwise, and reading the options cost a tenth of a small seal.
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  if (aad.byteLength > 0) cipher.setAAD(aad);
  let at = offset + cipher.update(plaintext).copy(out, offset);
  // GCM is a stream mode: final() returns nothing, but call it (it computes the tag).
  at += cipher.final().copy(out, at);
  cipher.getAuthTag().copy(out, at);
  return out;
}

/**
 * Decrypts ciphertext ‖ tag with AES-256-GCM. Any authentication failure is CIPHERTEXT_AUTH_FAILED
 * with no detail, and no plaintext is returned.
 */
export function aesGcmDecrypt(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array = EMPTY): Buffer {
  assertBytes('key', key, AES_256_KEY_LENGTH);
  assertBytes('nonce', nonce, GCM_NONCE_LENGTH);
  assertBytes('ciphertext', sealed);
  assertBytes('aad', aad);
  if (sealed.byteLength < GCM_TAG_LENGTH) throw new AirlockError('CIPHERTEXT_MALFORMED');
  const body = asBuffer(sealed);
  const split = body.byteLength - GCM_TAG_LENGTH;
  const decipher = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: GCM_TAG_LENGTH });
  decipher.setAuthTag(body.subarray(split));
  if (aad.byteLength > 0) decipher.setAAD(aad);
  const head = decipher.update(body.subarray(0, split));
  try {
    const tail = decipher.final();
    return tail.byteLength === 0 ? head : Buffer.concat([head, tail]);
  } catch {
    head.fill(0);
    throw new AirlockError('CIPHERTEXT_AUTH_FAILED');
  }
}

/** HKDF-SHA256 (RFC 5869): extract with `salt`, expand with `info` to `length` bytes. */
export function hkdfSha256(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number): Buffer {
  assertBytes('ikm', ikm);
  assertBytes('salt', salt);
  assertBytes('info', info);
  // RFC 5869 §2.3: L <= 255 * HashLen.
  assertLength('length', length, 1, 255 * 32);
  if (info.byteLength > 1024) {
    throw new AirlockError('INVALID_ARGUMENT', 'info must be at most 1024 bytes', { details: { argument: 'info' } });
  }
  return Buffer.from(hkdfSync('sha256', ikm, salt, info, length));
}

/** HMAC-SHA256 (RFC 2104). */
export function hmacSha256(key: Uint8Array, message: Uint8Array): Buffer {
  assertBytes('key', key);
  assertBytes('message', message);
  return createHmac('sha256', key).update(message).digest();
}
