// Deterministic ASF1 encryption (fixed salt and nonce prefix) for known-answer vectors only.
import type { EncryptionContext } from '../encryption-context.js';
import { deriveStreamKeys, newHeaderPrefix, SEGMENT_SIZE, SegmentCipher, segmentCount } from './asf1-core.js';

export interface VectorInput {
  readonly key: Buffer;
  readonly context: EncryptionContext;
  readonly keyRef: Buffer;
  readonly salt: Buffer;
  readonly noncePrefix: Buffer;
  readonly plaintext: Buffer;
}

/** Encrypts with caller-chosen randomness and returns the ciphertext plus intermediate values. */
export function encryptForVector(input: VectorInput): { ciphertext: Buffer; segmentKey: Buffer; commitment: Buffer } {
  const bound = newHeaderPrefix(input.keyRef, Buffer.concat([input.salt, input.noncePrefix]));
  const keys = deriveStreamKeys(input.key, bound, input.context);
  const segmentKey = Buffer.from(keys.segmentKey);
  const commitment = Buffer.from(keys.commitment);
  const cipher = new SegmentCipher(keys, input.noncePrefix);
  const out: Buffer[] = [bound, commitment];
  const segments = segmentCount(input.plaintext.byteLength);
  for (let i = 0; i < segments; i++) {
    cipher.encrypt(i, i === segments - 1, [input.plaintext.subarray(i * SEGMENT_SIZE, (i + 1) * SEGMENT_SIZE)], out);
  }
  cipher.dispose();
  return { ciphertext: Buffer.concat(out), segmentKey, commitment };
}
