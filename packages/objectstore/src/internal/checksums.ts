// Body digests computed while streaming: MD5 (the ETag) and the x-amz-checksum-* algorithms S3 clients send.
import { createHash, type Hash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { Crc32c } from '@aws-crypto/crc32c';
import { AirlockError } from '@airlock/common';
import type { ChecksumAlgorithm } from './engine-types.js';

interface Digest {
  update(chunk: Buffer): void;
  /** Base64, as the x-amz-checksum-* headers carry it. */
  base64(): string;
}

function hashDigest(hash: Hash): Digest {
  return { update: (c) => void hash.update(c), base64: () => hash.digest('base64') };
}

function crc32Digest(): Digest {
  let value = 0;
  return {
    update: (c) => void (value = crc32(c, value)),
    base64: () => {
      const out = Buffer.alloc(4);
      out.writeUInt32BE(value >>> 0);
      return out.toString('base64');
    },
  };
}

function crc32cDigest(): Digest {
  const c = new Crc32c();
  return {
    update: (chunk) => void c.update(chunk),
    base64: () => {
      const out = Buffer.alloc(4);
      out.writeUInt32BE(c.digest() >>> 0);
      return out.toString('base64');
    },
  };
}

export function createDigest(algorithm: ChecksumAlgorithm): Digest {
  switch (algorithm) {
    case 'CRC32':
      return crc32Digest();
    case 'CRC32C':
      return crc32cDigest();
    case 'SHA1':
      return hashDigest(createHash('sha1'));
    case 'SHA256':
      return hashDigest(createHash('sha256'));
    case 'CRC64NVME':
      throw new AirlockError('NOT_IMPLEMENTED', 'The CRC64NVME checksum is not supported; use CRC32, CRC32C, SHA1 or SHA256');
  }
}

/** Digests a body as it streams past: byte count, MD5, and any requested checksums. */
export class BodyMeter {
  readonly #md5 = createHash('md5');
  readonly #digests = new Map<ChecksumAlgorithm, Digest>();
  bytes = 0;

  constructor(algorithms: Iterable<ChecksumAlgorithm>) {
    for (const algorithm of algorithms) this.#digests.set(algorithm, createDigest(algorithm));
  }

  update(chunk: Buffer): void {
    this.bytes += chunk.byteLength;
    this.#md5.update(chunk);
    for (const digest of this.#digests.values()) digest.update(chunk);
  }

  /** Finishes: MD5 (raw) and checksum values (base64). Call once. */
  finish(): { md5: Buffer; checksums: Partial<Record<ChecksumAlgorithm, string>> } {
    const checksums: Partial<Record<ChecksumAlgorithm, string>> = {};
    for (const [algorithm, digest] of this.#digests) checksums[algorithm] = digest.base64();
    return { md5: this.#md5.digest(), checksums };
  }
}

/** The reflected polynomials of the CRCs a FULL_OBJECT multipart checksum can combine. */
const CRC_POLYNOMIALS: Readonly<Partial<Record<ChecksumAlgorithm, number>>> = { CRC32: 0xedb88320, CRC32C: 0x82f63b78 };

/** a·b modulo the CRC polynomial, both reflected (zlib's multmodp). */
function multiplyModP(a: number, b: number, polynomial: number): number {
  let m = 0x80000000;
  let product = 0;
  for (;;) {
    if ((a & m) !== 0) {
      product ^= b;
      if ((a & (m - 1)) === 0) break;
    }
    m >>>= 1;
    b = (b & 1) !== 0 ? (b >>> 1) ^ polynomial : b >>> 1;
  }
  return product >>> 0;
}

/** x^(8·bytes) modulo the polynomial: the shift a CRC undergoes across `bytes` bytes (zlib's x8nmodp). */
function shiftFor(bytes: number, polynomial: number): number {
  let power = 0x40000000; // x^1, then x^2, x^4, … by squaring
  const squares: number[] = [];
  for (let k = 0; k < 64; k++) {
    squares.push(power);
    power = multiplyModP(power, power, polynomial);
  }
  let result = 0x80000000; // x^0
  let n = bytes;
  for (let k = 3; n > 0; k++, n = Math.floor(n / 2)) {
    if (n % 2 === 1) result = multiplyModP(squares[k % 64] as number, result, polynomial);
  }
  return result;
}

/** True for the checksums whose values can be combined into the whole body's (S3's FULL_OBJECT multipart checksums). */
export function combinable(algorithm: ChecksumAlgorithm): boolean {
  return CRC_POLYNOMIALS[algorithm] !== undefined;
}

/**
 * The CRC of a body from the CRCs and sizes of its consecutive pieces, without the bytes (zlib's
 * crc32_combine, for any reflected 32-bit CRC): how a FULL_OBJECT checksum is checked at
 * CompleteMultipartUpload. Values are base64, as on the wire.
 */
export function combineChecksums(algorithm: ChecksumAlgorithm, pieces: ReadonlyArray<{ readonly checksum: string; readonly size: number }>): string {
  const polynomial = CRC_POLYNOMIALS[algorithm];
  if (polynomial === undefined) throw new AirlockError('INVALID_ARGUMENT', `A ${algorithm} checksum cannot be combined`);
  let crc = 0;
  for (const piece of pieces) {
    const next = Buffer.from(piece.checksum, 'base64').readUInt32BE(0);
    crc = (multiplyModP(shiftFor(piece.size, polynomial), crc, polynomial) ^ next) >>> 0;
  }
  const out = Buffer.alloc(4);
  out.writeUInt32BE(crc);
  return out.toString('base64');
}

/** S3's COMPOSITE multipart checksum: the checksum of the parts' checksums (raw bytes, in order), then `-<parts>`. */
export function compositeChecksum(algorithm: ChecksumAlgorithm, partChecksums: readonly string[]): string {
  const digest = createDigest(algorithm);
  for (const value of partChecksums) digest.update(Buffer.from(value, 'base64'));
  return `${digest.base64()}-${partChecksums.length}`;
}
