// X25519 (RFC 7748) over node:crypto with raw 32-byte keys, rejecting all-zero shared secrets.
import { createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { AirlockError } from '@airlock/common';
import { assertBytes } from './bytes.js';
import { pkcs8FromRaw, rawFromDer, spkiFromRaw, X25519_RAW_LENGTH } from './internal/x25519-der.js';

/** Length in bytes of raw X25519 private keys, public keys and shared secrets. */
export const X25519_KEY_LENGTH = X25519_RAW_LENGTH;

/** A raw X25519 key pair. The caller owns `privateKey` and should zeroize it when done. */
export interface X25519KeyPair {
  readonly publicKey: Buffer;
  readonly privateKey: Buffer;
}

/** Imports a raw private key, zeroing the temporary DER copy (the KeyObject's copy is OpenSSL's to free). */
function importPrivateKey(privateKey: Uint8Array): KeyObject {
  const der = pkcs8FromRaw(privateKey);
  try {
    return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  } catch (error) {
    throw new AirlockError('INVALID_ARGUMENT', 'privateKey is not a valid X25519 key', {
      cause: error,
      details: { argument: 'privateKey' },
    });
  } finally {
    der.fill(0);
  }
}

function importPublicKey(publicKey: Uint8Array): KeyObject {
  try {
    return createPublicKey({ key: spkiFromRaw(publicKey), format: 'der', type: 'spki' });
  } catch (error) {
    throw new AirlockError('INVALID_ARGUMENT', 'publicKey is not a valid X25519 key', {
      cause: error,
      details: { argument: 'publicKey' },
    });
  }
}

function exportRawPrivate(key: KeyObject): Buffer {
  const der = key.export({ format: 'der', type: 'pkcs8' });
  try {
    return rawFromDer(der, 'pkcs8');
  } finally {
    der.fill(0);
  }
}

function exportRawPublic(key: KeyObject): Buffer {
  return rawFromDer(key.export({ format: 'der', type: 'spki' }), 'spki');
}

/** Generates a fresh X25519 key pair from the system CSPRNG. */
export function generateX25519KeyPair(): X25519KeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  return { publicKey: exportRawPublic(publicKey), privateKey: exportRawPrivate(privateKey) };
}

/** The public key X25519(k, 9) of a raw private key (RFC 7748 §6.1). Any 32 bytes are a valid private key. */
export function x25519PublicKey(privateKey: Uint8Array): Buffer {
  assertBytes('privateKey', privateKey, X25519_KEY_LENGTH);
  return exportRawPublic(createPublicKey(importPrivateKey(privateKey)));
}

/**
 * The X25519 shared secret of a raw private key and a raw peer public key (RFC 7748 §5).
 *
 * Public keys are taken as RFC 7748 §5 says: the top bit is masked and non-canonical values
 * (≥ 2^255 − 19) are reduced, so twist points and non-canonical encodings are accepted and give
 * the RFC's result. A peer key of small order yields the all-zero secret, which is refused with
 * INVALID_ARGUMENT, as RFC 7748 §6.1 allows and RFC 9180 §7.1.4 requires for HPKE: such a secret
 * carries no contribution from our private key. OpenSSL already fails that derivation; the explicit
 * check below keeps the guarantee if that ever changes.
 */
export function x25519SharedSecret(privateKey: Uint8Array, publicKey: Uint8Array): Buffer {
  assertBytes('privateKey', privateKey, X25519_KEY_LENGTH);
  assertBytes('publicKey', publicKey, X25519_KEY_LENGTH);
  const peer = importPublicKey(publicKey);
  const own = importPrivateKey(privateKey);
  let shared: Buffer;
  try {
    shared = diffieHellman({ privateKey: own, publicKey: peer });
  } catch (error) {
    throw lowOrder(error);
  }
  // Constant-time all-zero test: OR every byte together, branch once on the result.
  let acc = 0;
  for (const byte of shared) acc |= byte;
  if (acc === 0 || shared.byteLength !== X25519_KEY_LENGTH) {
    shared.fill(0);
    throw lowOrder();
  }
  return shared;
}

function lowOrder(cause?: unknown): AirlockError {
  return new AirlockError('INVALID_ARGUMENT', 'X25519 shared secret is all zero: the public key has small order', {
    ...(cause === undefined ? {} : { cause }),
    details: { argument: 'publicKey' },
  });
}
