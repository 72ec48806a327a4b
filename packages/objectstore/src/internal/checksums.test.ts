// Multipart checksums: combining CRCs of consecutive pieces into the whole body's (FULL_OBJECT), and S3's COMPOSITE checksum of checksums.
import { createHash, randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { Crc32c } from '@aws-crypto/crc32c';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { combineChecksums, compositeChecksum } from './checksums.js';

const base64 = (value: number): string => {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(value >>> 0);
  return out.toString('base64');
};
const crcs = {
  CRC32: (data: Buffer) => base64(crc32(data)),
  CRC32C: (data: Buffer) => {
    const c = new Crc32c();
    c.update(data);
    return base64(c.digest());
  },
} as const;

describe('combineChecksums', () => {
  it.each(['CRC32', 'CRC32C'] as const)('%s of the pieces combines to the %s of the whole', (algorithm) => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 70_000 }), { minLength: 1, maxLength: 5 }), (arrays) => {
        const pieces = arrays.map((a) => Buffer.from(a));
        const combined = combineChecksums(algorithm, pieces.map((p) => ({ checksum: crcs[algorithm](p), size: p.length })));
        expect(combined).toBe(crcs[algorithm](Buffer.concat(pieces)));
      }),
      { numRuns: 40 },
    );
  });

  it('refuses algorithms that do not combine', () => {
    expect(() => combineChecksums('SHA256', [{ checksum: 'AAAA', size: 1 }])).toThrow();
  });
});

describe('compositeChecksum', () => {
  it('is the checksum of the raw part checksums, suffixed with the part count', () => {
    const parts = [randomBytes(10), randomBytes(20)].map((p) => createHash('sha256').update(p).digest());
    const expected = createHash('sha256').update(Buffer.concat(parts)).digest('base64');
    expect(compositeChecksum('SHA256', parts.map((p) => p.toString('base64')))).toBe(`${expected}-2`);
  });
});
