// Property tests for ASF1: round trips, tamper detection of every kind, and random-access reads.
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AirlockError } from '@airlock/common';
import {
  asf1CiphertextLength,
  createAsf1DecryptStream,
  createAsf1EncryptStream,
  decryptAsf1,
  decryptAsf1ToChunks,
  encryptAsf1,
  encryptAsf1ToChunks,
  readAsf1Header,
  type Asf1DecryptOptions,
} from './asf1.js';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { asf1OpeningReadBytes, bufferSource, fileSource, openAsf1File, openAsf1Reader } from './asf1-reader.js';
import type { EncryptionContext } from './encryption-context.js';

const SEG = 64 * 1024;
const SEGC = SEG + 16;
const DECRYPT_FAILURES = ['CIPHERTEXT_MALFORMED', 'CIPHERTEXT_AUTH_FAILED'];

/** Sizes around the interesting boundaries: 0, exact multiples of 64 KiB, and ±1. */
const boundarySize = fc.oneof(
  fc.constantFrom(0, 1, SEG - 1, SEG, SEG + 1, 2 * SEG - 1, 2 * SEG, 2 * SEG + 1, 3 * SEG),
  fc.integer({ min: 0, max: 4 * SEG + 7 }),
);
const context = fc.dictionary(fc.string({ maxLength: 12 }), fc.string({ maxLength: 24 }), { maxKeys: 4 });
const key = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((k) => Buffer.from(k));

function plaintextOf(size: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) out[i] = (i * 31 + seed) & 0xff;
  return out;
}

function expectDecryptFailure(run: () => unknown): void {
  let result: unknown;
  try {
    result = run();
  } catch (error) {
    expect(error).toBeInstanceOf(AirlockError);
    expect(DECRYPT_FAILURES).toContain((error as AirlockError).code);
    return;
  }
  throw new Error(`decryption should have failed but returned ${String((result as Buffer | undefined)?.byteLength)} bytes`);
}

/** Feeds `input` through a transform in the given chunk sizes and collects the output. */
async function throughStream(transform: NodeJS.ReadWriteStream, input: Buffer, chunkSizes: number[]): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let offset = 0;
  let i = 0;
  const pieces: Buffer[] = [];
  while (offset < input.byteLength) {
    const size = Math.max(1, chunkSizes[i++ % Math.max(1, chunkSizes.length)] ?? input.byteLength);
    pieces.push(input.subarray(offset, offset + size));
    offset += size;
  }
  await pipeline(
    Readable.from(pieces),
    transform,
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        chunks.push(chunk);
        cb();
      },
    }),
  );
  return Buffer.concat(chunks);
}

async function expectStreamFailure(ciphertext: Buffer, options: Asf1DecryptOptions, chunkSizes: number[] = [7919]): Promise<void> {
  const error = await throughStream(createAsf1DecryptStream(options), ciphertext, chunkSizes).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, 'stream decryption should have failed').toBeInstanceOf(AirlockError);
  expect(DECRYPT_FAILURES).toContain((error as AirlockError).code);
}

describe('ASF1 round trip', () => {
  it('one-shot: decrypt(encrypt(p)) = p at boundary and random sizes', () => {
    fc.assert(
      fc.property(boundarySize, key, context, fc.integer({ min: 0, max: 255 }), (size, k, ctx, seed) => {
        const plaintext = plaintextOf(size, seed);
        const ciphertext = encryptAsf1(plaintext, { key: k, context: ctx });
        expect(ciphertext.byteLength).toBe(asf1CiphertextLength(size));
        expect(decryptAsf1(ciphertext, { key: k, context: ctx }).equals(plaintext)).toBe(true);
      }),
      { numRuns: 60 },
    );
  });

  it('streams: any chunking encrypts and decrypts, and interoperates with the one-shot API', async () => {
    await fc.assert(
      fc.asyncProperty(
        boundarySize,
        key,
        context,
        fc.array(fc.integer({ min: 1, max: 3 * SEG }), { minLength: 1, maxLength: 6 }),
        fc.array(fc.integer({ min: 1, max: 3 * SEG }), { minLength: 1, maxLength: 6 }),
        async (size, k, ctx, inChunks, outChunks) => {
          const plaintext = plaintextOf(size, size);
          const streamed = await throughStream(createAsf1EncryptStream({ key: k, context: ctx }), plaintext, inChunks);
          expect(streamed.byteLength).toBe(asf1CiphertextLength(size));
          expect(decryptAsf1(streamed, { key: k, context: ctx }).equals(plaintext)).toBe(true);
          const oneShot = encryptAsf1(plaintext, { key: k, context: ctx });
          const back = await throughStream(createAsf1DecryptStream({ key: k, context: ctx }), oneShot, outChunks);
          expect(back.equals(plaintext)).toBe(true);
        },
      ),
      { numRuns: 40 },
    );
  });

  it('vectored forms interoperate with the contiguous ones', () => {
    fc.assert(
      fc.property(boundarySize, key, context, (size, k, ctx) => {
        const plaintext = plaintextOf(size, 3);
        const pieces = encryptAsf1ToChunks(plaintext, { key: k, context: ctx });
        const joined = Buffer.concat(pieces);
        expect(decryptAsf1(joined, { key: k, context: ctx }).equals(plaintext)).toBe(true);
        const back = decryptAsf1ToChunks(encryptAsf1(plaintext, { key: k, context: ctx }), { key: k, context: ctx });
        expect(Buffer.concat(back).equals(plaintext)).toBe(true);
      }),
      { numRuns: 30 },
    );
  });

  it('carries a key reference and resolves the key from it', async () => {
    const k = randomBytes(32);
    const keyRef = Buffer.from('kms:key-1:version-3');
    const ciphertext = encryptAsf1(Buffer.from('hello'), { key: k, keyRef, context: { a: 'b' } });
    expect(readAsf1Header(ciphertext).keyRef.equals(keyRef)).toBe(true);
    const seen: Buffer[] = [];
    const out = await throughStream(
      createAsf1DecryptStream({
        context: { a: 'b' },
        resolveKey: async (ref) => {
          seen.push(ref);
          return Promise.resolve(k);
        },
      }),
      ciphertext,
      [3],
    );
    expect(out.toString()).toBe('hello');
    expect(seen[0]?.equals(keyRef)).toBe(true);
    expect(k.equals(Buffer.alloc(32))).toBe(false); // the caller's key is never zeroed by the library
  });

  it('context order does not matter, but every pair does', () => {
    const k = randomBytes(32);
    const ct = encryptAsf1(Buffer.from('x'), { key: k, context: { bucket: 'b', key: 'k' } });
    expect(decryptAsf1(ct, { key: k, context: { key: 'k', bucket: 'b' } }).toString()).toBe('x');
  });
});

describe('ASF1 tamper detection', () => {
  const sizes = fc.constantFrom(0, 1, 100, SEG - 1, SEG, SEG + 1, 2 * SEG, 2 * SEG + 5);

  it('flipping any bit of header or body fails with a typed error', async () => {
    await fc.assert(
      fc.asyncProperty(sizes, key, context, fc.nat(), fc.integer({ min: 0, max: 7 }), async (size, k, ctx, pos, bit) => {
        const ct = encryptAsf1(plaintextOf(size, 1), { key: k, context: ctx });
        const tampered = Buffer.from(ct);
        const index = pos % tampered.byteLength;
        tampered[index] = (tampered[index] as number) ^ (1 << bit);
        expectDecryptFailure(() => decryptAsf1(tampered, { key: k, context: ctx }));
        await expectStreamFailure(tampered, { key: k, context: ctx });
      }),
      { numRuns: 150 },
    );
  });

  it('truncating at any point, including segment boundaries, fails', async () => {
    await fc.assert(
      fc.asyncProperty(sizes, key, fc.double({ min: 0, max: 1, noNaN: true }), async (size, k, fraction) => {
        const ct = encryptAsf1(plaintextOf(size, 2), { key: k });
        const cut = Math.min(ct.byteLength - 1, Math.floor(fraction * ct.byteLength));
        expectDecryptFailure(() => decryptAsf1(ct.subarray(0, cut), { key: k }));
        await expectStreamFailure(ct.subarray(0, cut), { key: k });
      }),
      { numRuns: 80 },
    );
    const k = randomBytes(32);
    const ct = encryptAsf1(plaintextOf(3 * SEG + 10, 3), { key: k });
    const headerLength = readAsf1Header(ct).length;
    for (let segments = 0; segments <= 3; segments++) {
      const cut = ct.subarray(0, headerLength + segments * SEGC);
      expectDecryptFailure(() => decryptAsf1(cut, { key: k }));
      await expectStreamFailure(cut, { key: k }, [SEGC]);
    }
  });

  it('reordering, duplicating or dropping whole segments fails', async () => {
    const k = randomBytes(32);
    const ct = encryptAsf1(plaintextOf(3 * SEG + 100, 4), { key: k });
    const h = readAsf1Header(ct).length;
    const seg = (i: number): Buffer => ct.subarray(h + i * SEGC, Math.min(h + (i + 1) * SEGC, ct.byteLength));
    const header = ct.subarray(0, h);
    const variants = [
      Buffer.concat([header, seg(1), seg(0), seg(2), seg(3)]),
      Buffer.concat([header, seg(0), seg(2), seg(1), seg(3)]),
      Buffer.concat([header, seg(0), seg(1), seg(3), seg(2)]),
      Buffer.concat([header, seg(0), seg(0), seg(2), seg(3)]),
      Buffer.concat([header, seg(0), seg(2), seg(3)]),
      Buffer.concat([header, seg(0), seg(1), seg(2)]),
    ];
    for (const variant of variants) {
      expectDecryptFailure(() => decryptAsf1(variant, { key: k }));
      await expectStreamFailure(variant, { key: k });
    }
  });

  it('appending bytes or a segment fails', async () => {
    await fc.assert(
      fc.asyncProperty(sizes, key, fc.uint8Array({ minLength: 1, maxLength: SEGC + 20 }), async (size, k, extra) => {
        const ct = encryptAsf1(plaintextOf(size, 5), { key: k });
        const extended = Buffer.concat([ct, extra]);
        expectDecryptFailure(() => decryptAsf1(extended, { key: k }));
        await expectStreamFailure(extended, { key: k });
      }),
      { numRuns: 40 },
    );
    // Append the final segment of another stream under the same key.
    const k = randomBytes(32);
    const a = encryptAsf1(plaintextOf(SEG, 6), { key: k });
    const b = encryptAsf1(plaintextOf(10, 7), { key: k });
    const tail = b.subarray(readAsf1Header(b).length);
    expectDecryptFailure(() => decryptAsf1(Buffer.concat([a, tail]), { key: k }));
  });

  it('a body spliced under another stream header fails (swapping)', () => {
    const k = randomBytes(32);
    const a = encryptAsf1(plaintextOf(SEG + 3, 8), { key: k });
    const b = encryptAsf1(plaintextOf(SEG + 3, 8), { key: k });
    const h = readAsf1Header(a).length;
    expectDecryptFailure(() => decryptAsf1(Buffer.concat([a.subarray(0, h), b.subarray(h)]), { key: k }));
  });

  it('a different context or key fails', async () => {
    await fc.assert(
      fc.asyncProperty(sizes, key, key, context, context, async (size, k1, k2, ctx1, ctx2) => {
        const ct = encryptAsf1(plaintextOf(size, 9), { key: k1, context: ctx1 });
        if (!k1.equals(k2)) {
          expectDecryptFailure(() => decryptAsf1(ct, { key: k2, context: ctx1 }));
          await expectStreamFailure(ct, { key: k2, context: ctx1 });
        }
        const same =
          JSON.stringify(Object.entries(ctx1).sort()) === JSON.stringify(Object.entries(ctx2).sort());
        if (!same) {
          expectDecryptFailure(() => decryptAsf1(ct, { key: k1, context: ctx2 }));
          await expectStreamFailure(ct, { key: k1, context: ctx2 });
        }
      }),
      { numRuns: 60 },
    );
    const k = randomBytes(32);
    const ctx: EncryptionContext = { bucket: 'a', key: 'b' };
    const ct = encryptAsf1(Buffer.from('data'), { key: k, context: ctx });
    const others: EncryptionContext[] = [{}, { bucket: 'a' }, { bucket: 'a', key: 'c' }, { bucket: 'a', key: 'b', extra: '' }, { bucketk: 'ey', '': 'b' }];
    for (const other of others) {
      expectDecryptFailure(() => decryptAsf1(ct, { key: k, context: other }));
    }
  });

  it('rejects bad arguments with INVALID_ARGUMENT', () => {
    expect(() => encryptAsf1(Buffer.from('x'), { key: randomBytes(16) })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }) as Error);
    expect(() => encryptAsf1('x' as unknown as Buffer, { key: randomBytes(32) })).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }) as Error,
    );
    const ct = encryptAsf1(Buffer.from('x'), { key: randomBytes(32) });
    expect(() => decryptAsf1(ct, {})).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }) as Error);
  });
});

describe('ASF1 random access', () => {
  it('any byte range equals the same slice of a full decryption', async () => {
    await fc.assert(
      fc.asyncProperty(
        boundarySize,
        key,
        context,
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        async (size, k, ctx, a, b) => {
          const plaintext = plaintextOf(size, 11);
          const ct = encryptAsf1(plaintext, { key: k, context: ctx });
          const reader = await openAsf1Reader(bufferSource(ct), { key: k, context: ctx });
          expect(reader.plaintextLength).toBe(size);
          const start = Math.floor(Math.min(a, b) * size);
          const end = Math.floor(Math.max(a, b) * size);
          const full = decryptAsf1(ct, { key: k, context: ctx });
          expect((await reader.read(start, end)).equals(full.subarray(start, end))).toBe(true);
          const streamed: Buffer[] = [];
          for await (const chunk of reader.createReadStream(start, end)) streamed.push(chunk as Buffer);
          expect(Buffer.concat(streamed).equals(full.subarray(start, end))).toBe(true);
          reader.close();
        },
      ),
      { numRuns: 60 },
    );
  });

  it('decrypts only the segments a range touches (plus the final one, once)', async () => {
    const k = randomBytes(32);
    const plaintext = plaintextOf(10 * SEG, 12);
    const ct = encryptAsf1(plaintext, { key: k });
    const source = bufferSource(ct);
    const reads: Array<[number, number]> = [];
    const counting = { size: source.size, read: (p: number, l: number) => (reads.push([p, l]), source.read(p, l)) };
    const reader = await openAsf1Reader(counting, { key: k });
    reads.length = 0;
    expect((await reader.read(3 * SEG + 5, 3 * SEG + 10)).equals(plaintext.subarray(3 * SEG + 5, 3 * SEG + 10))).toBe(true);
    const bytesRead = reads.reduce((sum, [, l]) => sum + l, 0);
    expect(bytesRead).toBe(2 * SEGC); // the touched segment and the final segment
    reads.length = 0;
    await reader.read(SEG, SEG + 1);
    expect(reads.reduce((sum, [, l]) => sum + l, 0)).toBe(SEGC);
  });

  it('detects truncation and tampering even for ranges that do not reach them', async () => {
    const k = randomBytes(32);
    const ct = encryptAsf1(plaintextOf(5 * SEG, 13), { key: k });
    const h = readAsf1Header(ct).length;
    const truncated = ct.subarray(0, h + 3 * SEGC);
    const reader = await openAsf1Reader(bufferSource(truncated), { key: k });
    await expect(reader.read(0, 10)).rejects.toMatchObject({ code: 'CIPHERTEXT_AUTH_FAILED' });
    const tampered = Buffer.from(ct);
    tampered[h + SEGC + 7] = (tampered[h + SEGC + 7] as number) ^ 1;
    const reader2 = await openAsf1Reader(bufferSource(tampered), { key: k });
    await expect(reader2.read(SEG, SEG + 1)).rejects.toMatchObject({ code: 'CIPHERTEXT_AUTH_FAILED' });
    expect((await reader2.read(0, 1)).length).toBe(1); // untouched segments still read
    await expect(openAsf1Reader(bufferSource(ct), { key: randomBytes(32) })).rejects.toMatchObject({ code: 'CIPHERTEXT_AUTH_FAILED' });
  });

  it('opens with one read, and an opening read of a batch serves the first segments without another', async () => {
    const k = randomBytes(32);
    const plaintext = plaintextOf(10 * SEG + 5, 15);
    const source = bufferSource(encryptAsf1(plaintext, { key: k, keyRef: Buffer.from('a key reference') }));
    const reads: Array<[number, number]> = [];
    const counting = { size: source.size, read: (p: number, l: number) => (reads.push([p, l]), source.read(p, l)) };
    const plain = await openAsf1Reader(counting, { key: k, authenticateLength: false });
    expect(reads).toHaveLength(1); // the whole header in one read
    plain.close();
    reads.length = 0;
    const eager = await openAsf1Reader(counting, { key: k, authenticateLength: false, openingReadBytes: asf1OpeningReadBytes() });
    expect(reads).toEqual([[0, asf1OpeningReadBytes()]]);
    expect((await eager.read(0, 4 * SEG)).equals(plaintext.subarray(0, 4 * SEG))).toBe(true);
    expect(reads).toHaveLength(1); // the first four segments came from the opening read
    const streamed: Buffer[] = [];
    for await (const chunk of eager.createReadStream()) streamed.push(chunk as Buffer);
    expect(Buffer.concat(streamed).equals(plaintext)).toBe(true);
    eager.close();
  });

  it('file readers share pooled read buffers without ever mixing their bytes', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'asf1-pool-'));
    try {
      const k = randomBytes(32);
      const files = await Promise.all(
        [0, 1, 2, 3, 4].map(async (i) => {
          const plaintext = plaintextOf(i === 4 ? 1000 : 9 * SEG + 1000 * i, 20 + i);
          const path = join(dir, `blob-${i}`);
          await writeFile(path, encryptAsf1(plaintext, { key: k, context: { i: String(i) } }));
          return { path, plaintext, context: { i: String(i) } };
        }),
      );
      // Many readers at once, some stopping early (their buffers go back mid-stream), all on the shared pool.
      await Promise.all(
        Array.from({ length: 50 }, async (_, n) => {
          const file = files[n % files.length] as (typeof files)[number];
          const handle = await open(file.path, 'r');
          try {
            // Half of them prefetch the opening read alongside the stat, as the object store does for reads from the start.
            const opening = n % 2 === 0 ? asf1OpeningReadBytes() : 0;
            const reader = await openAsf1Reader(await fileSource(handle, { prefetchBytes: opening }), { key: k, context: file.context, openingReadBytes: opening });
            const start = n % 3 === 0 ? 0 : (n * 7919) % Math.min(SEG, file.plaintext.length);
            const stream = reader.createReadStream(start);
            const got: Buffer[] = [];
            let bytes = 0;
            for await (const chunk of stream) {
              got.push(chunk as Buffer);
              bytes += (chunk as Buffer).byteLength;
              if (n % 5 === 4 && bytes > 2 * SEG) break;
            }
            reader.close();
            expect(Buffer.concat(got).equals(file.plaintext.subarray(start, start + bytes))).toBe(true);
            if (n % 5 !== 4) expect(bytes).toBe(file.plaintext.length - start);
          } finally {
            await handle.close();
          }
        }),
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('reads ranges from a real file and rejects out-of-range requests', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'asf1-'));
    try {
      const k = randomBytes(32);
      const plaintext = plaintextOf(3 * SEG + 17, 14);
      const path = join(dir, 'blob.asf1');
      await writeFile(path, encryptAsf1(plaintext, { key: k, context: { f: '1' } }));
      const { reader, close } = await openAsf1File(path, { key: k, context: { f: '1' } });
      expect((await reader.read(SEG - 3, 2 * SEG + 3)).equals(plaintext.subarray(SEG - 3, 2 * SEG + 3))).toBe(true);
      expect((await reader.read(0, 0)).length).toBe(0);
      await expect(reader.read(0, plaintext.length + 1)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      await expect(reader.read(5, 4)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      await close();
      await expect(reader.read(0, 1)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      await expect(openAsf1File(path, { key: k, context: { f: '2' } })).rejects.toMatchObject({ code: 'CIPHERTEXT_AUTH_FAILED' });
      await expect(openAsf1File(join(dir, 'missing'), { key: k })).rejects.toMatchObject({ code: 'NOT_FOUND' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
