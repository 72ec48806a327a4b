// Unit tests for the X25519 helper: RFC 7748 example, key generation, and argument/low-order checks.
import { describe, expect, it } from 'vitest';
import { AirlockError } from '@airlock/common';
import { generateX25519KeyPair, x25519PublicKey, x25519SharedSecret } from './x25519.js';

const hex = (s: string): Buffer => Buffer.from(s, 'hex');

function codeOf(run: () => unknown): string | undefined {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(AirlockError);
    return (error as AirlockError).code;
  }
  return undefined;
}

describe('x25519', () => {
  it('reproduces the RFC 7748 §6.1 Diffie-Hellman example', () => {
    const alice = hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
    const bob = hex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb');
    const alicePub = x25519PublicKey(alice);
    const bobPub = x25519PublicKey(bob);
    expect(alicePub.toString('hex')).toBe('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
    expect(bobPub.toString('hex')).toBe('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
    const shared = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';
    expect(x25519SharedSecret(alice, bobPub).toString('hex')).toBe(shared);
    expect(x25519SharedSecret(bob, alicePub).toString('hex')).toBe(shared);
  });

  it('generates consistent raw key pairs that agree on a secret', () => {
    const a = generateX25519KeyPair();
    const b = generateX25519KeyPair();
    expect(a.privateKey.byteLength).toBe(32);
    expect(a.publicKey.byteLength).toBe(32);
    expect(x25519PublicKey(a.privateKey).equals(a.publicKey)).toBe(true);
    expect(x25519SharedSecret(a.privateKey, b.publicKey).equals(x25519SharedSecret(b.privateKey, a.publicKey))).toBe(true);
  });

  it('refuses small-order public keys (all-zero shared secret) and malformed arguments', () => {
    const { privateKey } = generateX25519KeyPair();
    // u = 0 and u = 1 have small order; so does u = p + 1 (non-canonical 1), all giving a zero secret.
    const one = Buffer.alloc(32);
    one[0] = 1;
    const pPlusOne = hex('eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f');
    for (const low of [Buffer.alloc(32), one, pPlusOne]) {
      expect(codeOf(() => x25519SharedSecret(privateKey, low))).toBe('INVALID_ARGUMENT');
    }
    expect(codeOf(() => x25519SharedSecret(privateKey, Buffer.alloc(31, 9)))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => x25519SharedSecret(privateKey.subarray(1), Buffer.alloc(32, 9)))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => x25519PublicKey('k' as never))).toBe('INVALID_ARGUMENT');
  });
});
