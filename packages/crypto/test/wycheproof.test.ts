// Wycheproof known-answer tests for the AES-256-GCM, HKDF-SHA256, HMAC-SHA256 and X25519 helpers.
import { readFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { AirlockError, type AirlockErrorCode } from '@airlock/common';
import { aesGcmDecrypt, aesGcmEncrypt, aesGcmEncryptInto, hkdfSha256, hmacSha256 } from '../src/aead.js';
import { constantTimeEqual } from '../src/bytes.js';
import { x25519SharedSecret } from '../src/x25519.js';
import { sharedVectorsDir } from './shared-vectors.js';

// The vectors live beside the repository (../shared from the repo root) and are read in place,
// never copied in: this file is packages/crypto/test/, so the repo root is three levels up.
const VECTORS = pathToFileURL(`${sharedVectorsDir('wycheproof')}/`);

type Result = 'valid' | 'invalid' | 'acceptable';
interface WycheproofFile<G> {
  readonly algorithm: string;
  readonly numberOfTests: number;
  readonly testGroups: readonly G[];
}
interface AeadGroup {
  readonly keySize: number;
  readonly ivSize: number;
  readonly tagSize: number;
  readonly tests: ReadonlyArray<{ tcId: number; key: string; iv: string; aad: string; msg: string; ct: string; tag: string; result: Result }>;
}
interface HkdfGroup {
  readonly tests: ReadonlyArray<{ tcId: number; ikm: string; salt: string; info: string; size: number; okm: string; result: Result }>;
}
interface MacGroup {
  readonly keySize: number;
  readonly tagSize: number;
  readonly tests: ReadonlyArray<{ tcId: number; key: string; msg: string; tag: string; result: Result }>;
}
interface XdhGroup {
  readonly curve: string;
  readonly tests: ReadonlyArray<{ tcId: number; public: string; private: string; shared: string; result: Result; flags: string[] }>;
}

function load<G>(name: string): WycheproofFile<G> {
  return JSON.parse(readFileSync(fileURLToPath(new URL(name, VECTORS)), 'utf8')) as WycheproofFile<G>;
}

const hex = (s: string): Buffer => Buffer.from(s, 'hex');

/** The AirlockError code `run` throws, or undefined if it returns. */
function thrownCode(run: () => unknown): AirlockErrorCode | undefined {
  try {
    run();
  } catch (error) {
    if (error instanceof AirlockError) return error.code;
    throw error;
  }
  return undefined;
}

/** Counts vectors per category, so each file can assert that nothing was silently dropped. */
class Tally {
  readonly counts: Record<string, number> = {};
  add(category: string): void {
    this.counts[category] = (this.counts[category] ?? 0) + 1;
  }
  total(): number {
    return Object.values(this.counts).reduce((a, b) => a + b, 0);
  }
}

describe('Wycheproof AES-GCM (aes_gcm_test.json)', () => {
  const file = load<AeadGroup>('aes_gcm_test.json');
  const supported = (g: AeadGroup): boolean => g.keySize === 256 && g.ivSize === 96 && g.tagSize === 128;

  it('every 256-bit-key, 96-bit-IV, 128-bit-tag vector: valid ones match, invalid ones fail authentication', () => {
    const tally = new Tally();
    for (const group of file.testGroups) {
      if (!supported(group)) continue;
      for (const t of group.tests) {
        const key = hex(t.key);
        const iv = hex(t.iv);
        const aad = hex(t.aad);
        const sealed = Buffer.concat([hex(t.ct), hex(t.tag)]);
        if (t.result === 'valid') {
          expect(aesGcmEncrypt(key, iv, hex(t.msg), aad).toString('hex'), `tcId ${t.tcId}`).toBe(sealed.toString('hex'));
          // The same after a 3-byte prefix that the function leaves as it is.
          const into = Buffer.alloc(3 + sealed.byteLength, 0xab);
          expect(aesGcmEncryptInto(key, iv, hex(t.msg), aad, into, 3).toString('hex'), `tcId ${t.tcId}`).toBe(`ababab${sealed.toString('hex')}`);
          expect(aesGcmDecrypt(key, iv, sealed, aad).toString('hex'), `tcId ${t.tcId}`).toBe(t.msg);
          tally.add('checked valid');
        } else {
          // Wycheproof's AES-GCM "invalid" vectors here are modified tags: decryption must refuse.
          expect(t.result, `tcId ${t.tcId}`).toBe('invalid');
          expect(thrownCode(() => aesGcmDecrypt(key, iv, sealed, aad)), `tcId ${t.tcId}`).toBe('CIPHERTEXT_AUTH_FAILED');
          tally.add('checked invalid');
        }
      }
    }
    expect(tally.counts).toEqual({ 'checked valid': 39, 'checked invalid': 27 });
  });

  it('aesGcmEncryptInto refuses an output that does not hold exactly the ciphertext and tag', () => {
    const key = Buffer.alloc(32, 1);
    const nonce = Buffer.alloc(12, 2);
    const plaintext = Buffer.from('abc');
    for (const [out, offset] of [[Buffer.alloc(3 + 16 + 1), 0], [Buffer.alloc(3 + 16 - 1), 0], [Buffer.alloc(3 + 16), 1], [Buffer.alloc(3 + 16), -1]] as const) {
      expect(thrownCode(() => aesGcmEncryptInto(key, nonce, plaintext, Buffer.alloc(0), out, offset))).toBe('INVALID_ARGUMENT');
    }
  });

  it('every vector with another key size or IV length is refused with INVALID_ARGUMENT', () => {
    // Airlock's helpers take only AES-256 keys and 96-bit nonces (NIST SP 800-38D §5.2.1.1), so
    // these vectors, valid or not, must be refused up front rather than computed.
    const tally = new Tally();
    for (const group of file.testGroups) {
      if (supported(group)) continue;
      const reason = group.keySize !== 256 ? `refused: ${group.keySize}-bit key` : `refused: ${group.ivSize}-bit IV`;
      for (const t of group.tests) {
        const key = hex(t.key);
        const iv = hex(t.iv);
        const aad = hex(t.aad);
        expect(thrownCode(() => aesGcmEncrypt(key, iv, hex(t.msg), aad)), `tcId ${t.tcId}`).toBe('INVALID_ARGUMENT');
        expect(thrownCode(() => aesGcmDecrypt(key, iv, Buffer.concat([hex(t.ct), hex(t.tag)]), aad)), `tcId ${t.tcId}`).toBe(
          'INVALID_ARGUMENT',
        );
        tally.add(`${reason} (${t.result})`);
      }
    }
    // Together with the 66 checked above, every vector in the file is accounted for.
    const checked = file.testGroups.filter(supported).reduce((n, g) => n + g.tests.length, 0);
    expect(checked).toBe(66);
    expect(tally.total() + checked).toBe(file.numberOfTests);
    expect(tally.counts).toEqual({
      'refused: 128-bit key (valid)': 79,
      'refused: 128-bit key (invalid)': 29,
      'refused: 192-bit key (valid)': 74,
      'refused: 192-bit key (invalid)': 29,
      'refused: 128-bit IV (valid)': 19,
      'refused: 120-bit IV (valid)': 1,
      'refused: 160-bit IV (valid)': 1,
      'refused: 256-bit IV (valid)': 1,
      'refused: 512-bit IV (valid)': 1,
      'refused: 1024-bit IV (valid)': 1,
      'refused: 2056-bit IV (valid)': 1,
      'refused: 8-bit IV (valid)': 2,
      'refused: 16-bit IV (valid)': 2,
      'refused: 32-bit IV (valid)': 2,
      'refused: 48-bit IV (valid)': 2,
      'refused: 64-bit IV (valid)': 2,
      'refused: 80-bit IV (valid)': 2,
      'refused: 0-bit IV (invalid)': 2,
    });
  });
});

describe('Wycheproof HKDF-SHA256 (hkdf_sha256_test.json)', () => {
  it('every valid vector matches and every invalid one throws', () => {
    const file = load<HkdfGroup>('hkdf_sha256_test.json');
    const tally = new Tally();
    for (const group of file.testGroups) {
      for (const t of group.tests) {
        const run = () => hkdfSha256(hex(t.ikm), hex(t.salt), hex(t.info), t.size);
        if (t.result === 'valid') {
          expect(run().toString('hex'), `tcId ${t.tcId}`).toBe(t.okm);
          tally.add('valid');
        } else {
          // The invalid cases ask for more than 255 · HashLen bytes (RFC 5869 §2.3).
          expect(thrownCode(run), `tcId ${t.tcId}`).toBe('INVALID_ARGUMENT');
          tally.add(t.result);
        }
      }
    }
    expect(tally.total()).toBe(file.numberOfTests);
    expect(tally.counts).toEqual({ valid: 83, invalid: 3 });
  });
});

describe('Wycheproof HMAC-SHA256 (hmac_sha256_test.json)', () => {
  it('every valid tag matches and every invalid one does not, at the vector’s tag size', () => {
    const file = load<MacGroup>('hmac_sha256_test.json');
    const tally = new Tally();
    for (const group of file.testGroups) {
      const tagBytes = group.tagSize / 8;
      for (const t of group.tests) {
        const expected = hex(t.tag);
        expect(expected.byteLength, `tcId ${t.tcId}`).toBe(tagBytes);
        // Truncation keeps the leftmost bytes (RFC 2104 §5).
        const computed = hmacSha256(hex(t.key), hex(t.msg)).subarray(0, tagBytes);
        expect(constantTimeEqual(computed, expected), `tcId ${t.tcId}`).toBe(t.result === 'valid');
        tally.add(`${t.result} (${group.tagSize}-bit tag)`);
      }
    }
    expect(tally.total()).toBe(file.numberOfTests);
    expect(tally.counts).toEqual({
      'valid (256-bit tag)': 33,
      'invalid (256-bit tag)': 54,
      'valid (128-bit tag)': 33,
      'invalid (128-bit tag)': 54,
    });
  });
});

describe('Wycheproof X25519 (x25519_test.json)', () => {
  it('valid vectors match; acceptable ones match unless the secret is all zero, which is refused', () => {
    const file = load<XdhGroup>('x25519_test.json');
    const tally = new Tally();
    for (const group of file.testGroups) {
      expect(group.curve).toBe('curve25519');
      for (const t of group.tests) {
        const run = () => x25519SharedSecret(hex(t.private), hex(t.public));
        const zeroShared = /^(00)+$/.test(t.shared);
        if (t.result === 'invalid' || zeroShared) {
          // All-zero secrets come from small-order public keys (RFC 7748 §6.1): refused. The file
          // marks these "acceptable" (libraries may go either way); none of them is "valid".
          expect(t.result, `tcId ${t.tcId}`).not.toBe('valid');
          expect(thrownCode(run), `tcId ${t.tcId}`).toBe('INVALID_ARGUMENT');
          tally.add(`${t.result} rejected${zeroShared ? ' (zero shared secret)' : ''}`);
        } else {
          // Twist points and non-canonical encodings are "acceptable": RFC 7748 §5 defines their
          // result (mask the top bit, reduce mod p), and we compute exactly that.
          expect(run().toString('hex'), `tcId ${t.tcId}`).toBe(t.shared);
          tally.add(`${t.result} matched`);
        }
      }
    }
    expect(tally.total()).toBe(file.numberOfTests);
    expect(tally.counts).toEqual({
      'valid matched': 264,
      'acceptable matched': 223,
      'acceptable rejected (zero shared secret)': 31,
    });
  });
});
