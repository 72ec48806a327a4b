// The ASF1 known-answer cases: inputs are derived from fixed rules, outputs from this implementation.
import { createHash } from 'node:crypto';
import { encryptForVector } from '../src/internal/asf1-vectors.js';
import type { EncryptionContext } from '../src/encryption-context.js';

export interface Asf1PositiveVector {
  readonly name: string;
  readonly key: string;
  readonly context: EncryptionContext;
  readonly keyRef: string;
  readonly salt: string;
  readonly noncePrefix: string;
  readonly plaintextLength: number;
  /** Present for short plaintexts; otherwise the plaintext follows `plaintextRule`. */
  readonly plaintext?: string;
  readonly derivedSegmentKey: string;
  readonly commitment: string;
  readonly ciphertextLength: number;
  readonly ciphertextSha256: string;
  readonly ciphertext?: string;
}

export interface Asf1NegativeVector {
  readonly name: string;
  readonly key: string;
  readonly context: EncryptionContext;
  readonly ciphertext: string;
  readonly expectedError: 'CIPHERTEXT_MALFORMED' | 'CIPHERTEXT_AUTH_FAILED';
}

export interface Asf1VectorFile {
  readonly format: 'ASF1';
  readonly version: 1;
  readonly description: string;
  readonly plaintextRule: string;
  readonly positive: readonly Asf1PositiveVector[];
  readonly negative: readonly Asf1NegativeVector[];
}

const FULL_HEX_LIMIT = 1024;
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const sha256 = (label: string): Buffer => createHash('sha256').update(label).digest();

/** plaintext[i] = i mod 251: reproducible at any length, and not periodic at segment boundaries. */
export function vectorPlaintext(length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) out[i] = i % 251;
  return out;
}

const KEY = Buffer.from(Array.from({ length: 32 }, (_, i) => i));

const CASES: ReadonlyArray<{ name: string; length: number; context: EncryptionContext; keyRef: string }> = [
  { name: 'empty plaintext, empty context', length: 0, context: {}, keyRef: '' },
  { name: 'one byte, bucket/key context', length: 1, context: { bucket: 'reports', key: 'q3/summary.csv' }, keyRef: '' },
  { name: '100 bytes with a key reference', length: 100, context: { project: 'demo', run: 'r-0001' }, keyRef: 'kms:alias/airlock-demo#v1' },
  { name: 'one byte short of a segment', length: 65535, context: { a: '1' }, keyRef: '' },
  { name: 'exactly one segment', length: 65536, context: { a: '1' }, keyRef: '' },
  { name: 'one byte over a segment', length: 65537, context: { a: '1' }, keyRef: '' },
  { name: 'exactly two segments', length: 131072, context: { a: '1', b: '2' }, keyRef: 'ref' },
  { name: 'three segments, unicode context', length: 200000, context: { 'clé': 'valeur ✓', z: '' }, keyRef: '' },
];

export function buildAsf1Vectors(): Asf1VectorFile {
  const positive = CASES.map((c, n): Asf1PositiveVector => {
    const salt = sha256(`asf1 vector salt ${n}`);
    const noncePrefix = sha256(`asf1 vector nonce prefix ${n}`).subarray(0, 7);
    const plaintext = vectorPlaintext(c.length);
    const keyRef = Buffer.from(c.keyRef, 'utf8');
    const { ciphertext, segmentKey, commitment } = encryptForVector({ key: KEY, context: c.context, keyRef, salt, noncePrefix, plaintext });
    return {
      name: c.name,
      key: hex(KEY),
      context: c.context,
      keyRef: hex(keyRef),
      salt: hex(salt),
      noncePrefix: hex(noncePrefix),
      plaintextLength: c.length,
      ...(c.length <= FULL_HEX_LIMIT ? { plaintext: hex(plaintext) } : {}),
      derivedSegmentKey: hex(segmentKey),
      commitment: hex(commitment),
      ciphertextLength: ciphertext.byteLength,
      ciphertextSha256: createHash('sha256').update(ciphertext).digest('hex'),
      ...(ciphertext.byteLength <= FULL_HEX_LIMIT + 200 ? { ciphertext: hex(ciphertext) } : {}),
    };
  });

  const base = positive[2] as Asf1PositiveVector;
  const ct = Buffer.from(base.ciphertext as string, 'hex');
  const headerLength = 79 + base.keyRef.length / 2;
  const edit = (f: (b: Buffer) => Buffer): string => hex(f(Buffer.from(ct)));
  const flip = (index: number) => (b: Buffer): Buffer => {
    b[index] = (b[index] as number) ^ 0x01;
    return b;
  };
  const cases: Array<Pick<Asf1NegativeVector, 'name' | 'ciphertext' | 'expectedError'>> = [
    { name: 'last tag byte flipped', ciphertext: edit(flip(ct.byteLength - 1)), expectedError: 'CIPHERTEXT_AUTH_FAILED' },
    { name: 'first ciphertext byte flipped', ciphertext: edit(flip(headerLength)), expectedError: 'CIPHERTEXT_AUTH_FAILED' },
    { name: 'commitment byte flipped', ciphertext: edit(flip(headerLength - 1)), expectedError: 'CIPHERTEXT_AUTH_FAILED' },
    { name: 'salt byte flipped', ciphertext: edit(flip(headerLength - 32 - 7 - 32)), expectedError: 'CIPHERTEXT_AUTH_FAILED' },
    { name: 'key reference byte flipped', ciphertext: edit(flip(8)), expectedError: 'CIPHERTEXT_AUTH_FAILED' },
    { name: 'truncated by one byte', ciphertext: edit((b) => b.subarray(0, b.byteLength - 1)), expectedError: 'CIPHERTEXT_AUTH_FAILED' },
    { name: 'body shorter than a tag', ciphertext: edit((b) => b.subarray(0, headerLength + 15)), expectedError: 'CIPHERTEXT_MALFORMED' },
    { name: 'header only', ciphertext: edit((b) => b.subarray(0, headerLength)), expectedError: 'CIPHERTEXT_MALFORMED' },
    { name: 'one byte appended', ciphertext: edit((b) => Buffer.concat([b, Buffer.from([0])])), expectedError: 'CIPHERTEXT_AUTH_FAILED' },
    { name: 'unsupported version', ciphertext: edit((b) => ((b[4] = 2), b)), expectedError: 'CIPHERTEXT_MALFORMED' },
    { name: 'bad magic', ciphertext: edit((b) => ((b[0] = 0x42), b)), expectedError: 'CIPHERTEXT_MALFORMED' },
  ];
  const negative: Asf1NegativeVector[] = cases.map((v) => ({ ...v, key: base.key, context: base.context }));
  negative.push({
    name: 'valid ciphertext under a different context',
    key: base.key,
    context: { ...base.context, run: 'r-0002' },
    ciphertext: base.ciphertext as string,
    expectedError: 'CIPHERTEXT_AUTH_FAILED',
  });

  return {
    format: 'ASF1',
    version: 1,
    description:
      'Known-answer vectors for ASF1 (docs/formats/asf1.md). Positive vectors: encrypting the plaintext with the given key, context, key reference, salt and nonce prefix must give a ciphertext with this SHA-256 (and these bytes, where listed); decrypting it must give the plaintext. Negative vectors must be rejected with the named error.',
    plaintextRule: 'plaintext[i] = i mod 251, for i in 0..plaintextLength-1',
    positive,
    negative,
  };
}
