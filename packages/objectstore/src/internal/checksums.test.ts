// Checksums: CRC64NVME's known answers, and multipart checksums: combining CRCs of consecutive pieces into the whole body's (FULL_OBJECT), and S3's COMPOSITE checksum of checksums.
import { createHash, randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { Crc32c } from '@aws-crypto/crc32c';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { combineChecksums, compositeChecksum, createDigest } from './checksums.js';

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
  CRC64NVME: (data: Buffer) => {
    const digest = createDigest('CRC64NVME');
    digest.update(data);
    return digest.base64();
  },
} as const;
const hex = (value: string): string => Buffer.from(value, 'base64').toString('hex');

describe('CRC64NVME', () => {
  it('gives the known answers: the catalogue check value of "123456789", the empty body, and what the AWS SDK computes', () => {
    // The check value from the CRC catalogue's CRC-64/NVME entry (width 64, poly 0xad93d23594c93659, init and xorout all ones, reflected).
    expect(hex(crcs.CRC64NVME(Buffer.from('123456789')))).toBe('ae8b14860a799888');
    expect(hex(crcs.CRC64NVME(Buffer.alloc(0)))).toBe('0000000000000000');
    // As @aws-sdk/checksums' Crc64NvmeJs (what @aws-sdk/client-s3 sends S3) computes them.
    expect(hex(crcs.CRC64NVME(Buffer.alloc(32, 0)))).toBe('cf3473434d4ecf3b');
    expect(hex(crcs.CRC64NVME(Buffer.alloc(32, 0xff)))).toBe('a0a06974c34d63c4');
    expect(hex(crcs.CRC64NVME(Buffer.from(Array.from({ length: 32 }, (_, i) => i))))).toBe('b9d9d4a8492cbd7f');
  });

  it('is the same whatever the chunking (the 8-byte loop and the byte loop agree)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.array(fc.nat({ max: 300 }), { maxLength: 6 }), (array, cuts) => {
        const data = Buffer.from(array);
        const digest = createDigest('CRC64NVME');
        let at = 0;
        for (const cut of [...cuts.map((c) => Math.min(c, data.length))].sort((a, b) => a - b)) {
          digest.update(data.subarray(at, Math.max(at, cut)));
          at = Math.max(at, cut);
        }
        digest.update(data.subarray(at));
        expect(digest.base64()).toBe(crcs.CRC64NVME(data));
      }),
      { numRuns: 200 },
    );
  });
});

describe('combineChecksums', () => {
  it.each(['CRC32', 'CRC32C', 'CRC64NVME'] as const)('%s of the pieces combines to the %s of the whole', (algorithm) => {
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
