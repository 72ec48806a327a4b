// Checks ASF1 against its committed known-answer vectors, and that the committed file is current.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { decryptAsf1 } from '../src/asf1.js';
import { encryptForVector } from '../src/internal/asf1-vectors.js';
import { buildAsf1Vectors, vectorPlaintext, type Asf1VectorFile } from './asf1-vector-cases.js';

const file = JSON.parse(
  readFileSync(fileURLToPath(new URL('../../../docs/formats/vectors/asf1-v1.json', import.meta.url)), 'utf8'),
) as Asf1VectorFile;
const b = (h: string): Buffer => Buffer.from(h, 'hex');

/**
 * An independent ASF1 decoder written from docs/formats/asf1.md with WebCrypto only — no code
 * shared with the implementation — so the vectors are checked against the spec, not against themselves.
 */
async function referenceDecrypt(blob: Buffer, key: Buffer, context: Record<string, string>): Promise<Buffer> {
  const { subtle } = globalThis.crypto;
  if (blob.subarray(0, 4).toString('latin1') !== 'ASF1' || blob[4] !== 1 || blob[5] !== 1) throw new Error('malformed');
  const L = blob.readUInt16BE(6);
  const H = 79 + L;
  const bound = blob.subarray(0, 47 + L);
  const salt = blob.subarray(8 + L, 40 + L);
  const prefix = blob.subarray(40 + L, 47 + L);
  const stored = blob.subarray(47 + L, H);
  const pairs = Object.entries(context)
    .map(([k, v]) => [Buffer.from(k), Buffer.from(v)] as const)
    .sort((x, y) => Buffer.compare(x[0], y[0]));
  const ctx = Buffer.concat([
    Buffer.from([pairs.length >> 8, pairs.length & 0xff]),
    ...pairs.flatMap(([k, v]) => [Buffer.from([k.length >> 8, k.length & 0xff]), k, Buffer.from([v.length >> 8, v.length & 0xff]), v]),
  ]);
  const digest = Buffer.from(await subtle.digest('SHA-256', Buffer.concat([bound, ctx])));
  const ikm = await subtle.importKey('raw', key, 'HKDF', false, ['deriveBits']);
  const okm = Buffer.from(
    await subtle.deriveBits(
      { name: 'HKDF', hash: 'SHA-256', salt, info: Buffer.concat([Buffer.from('airlock asf1 v1 stream keys'), digest]) },
      ikm,
      512,
    ),
  );
  if (!okm.subarray(32).equals(stored)) throw new Error('commitment');
  const segmentKey = await subtle.importKey('raw', okm.subarray(0, 32), 'AES-GCM', false, ['decrypt']);
  const body = blob.subarray(H);
  const n = Math.ceil(body.length / 65552);
  const finalSize = body.length - (n - 1) * 65552;
  if (body.length < 16 || finalSize < 16 || (finalSize === 16 && n > 1)) throw new Error('malformed');
  const out: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const nonce = Buffer.concat([prefix, Buffer.from([i >>> 24, (i >>> 16) & 0xff, (i >>> 8) & 0xff, i & 0xff, i === n - 1 ? 1 : 0])]);
    const segment = body.subarray(i * 65552, (i + 1) * 65552);
    out.push(Buffer.from(await subtle.decrypt({ name: 'AES-GCM', iv: nonce, tagLength: 128 }, segmentKey, segment)));
  }
  return Buffer.concat(out);
}

describe('ASF1 known-answer vectors (docs/formats/vectors/asf1-v1.json)', () => {
  it('has vectors of both kinds', () => {
    expect(file.positive.length).toBeGreaterThanOrEqual(8);
    expect(file.negative.length).toBeGreaterThanOrEqual(10);
  });

  it.each(file.positive.map((v) => [v.name, v] as const))('positive: %s', async (_name, v) => {
    const plaintext = v.plaintext === undefined ? vectorPlaintext(v.plaintextLength) : b(v.plaintext);
    const { ciphertext, segmentKey, commitment } = encryptForVector({
      key: b(v.key),
      context: v.context,
      keyRef: b(v.keyRef),
      salt: b(v.salt),
      noncePrefix: b(v.noncePrefix),
      plaintext,
    });
    expect(segmentKey.toString('hex')).toBe(v.derivedSegmentKey);
    expect(commitment.toString('hex')).toBe(v.commitment);
    expect(ciphertext.byteLength).toBe(v.ciphertextLength);
    expect(createHash('sha256').update(ciphertext).digest('hex')).toBe(v.ciphertextSha256);
    if (v.ciphertext !== undefined) expect(ciphertext.toString('hex')).toBe(v.ciphertext);
    expect(decryptAsf1(ciphertext, { key: b(v.key), context: v.context }).equals(plaintext)).toBe(true);
    expect((await referenceDecrypt(ciphertext, b(v.key), v.context)).equals(plaintext)).toBe(true);
  });

  it.each(file.negative.map((v) => [v.name, v] as const))('negative: %s', async (_name, v) => {
    expect(() => decryptAsf1(b(v.ciphertext), { key: b(v.key), context: v.context })).toThrow(
      expect.objectContaining({ code: v.expectedError }) as Error,
    );
    await expect(referenceDecrypt(b(v.ciphertext), b(v.key), v.context)).rejects.toThrow();
  });

  it('the committed file is exactly what the generator produces (run `npm run vectors:asf1` after a format change)', () => {
    expect(JSON.parse(JSON.stringify(buildAsf1Vectors()))).toEqual(file);
  });
});
