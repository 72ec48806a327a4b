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

/** CRC-64/NVME's reflected polynomial (S3's CRC64NVME): 0xad93d23594c93659 bit-reversed. */
const CRC64NVME_POLYNOMIAL = 0x9a6c9329ac4bc9b5n;

/**
 * Slice-by-8 tables for CRC-64/NVME, each entry split into its high and low 32 bits (the hot loop
 * stays in 32-bit integer arithmetic; BigInt would be two orders of magnitude slower). Table k maps
 * a byte to its CRC after k further zero bytes.
 */
const CRC64NVME_TABLES: ReadonlyArray<{ readonly hi: Uint32Array; readonly lo: Uint32Array }> = (() => {
  const tables = Array.from({ length: 8 }, () => ({ hi: new Uint32Array(256), lo: new Uint32Array(256) }));
  const first = new Array<bigint>(256);
  for (let n = 0; n < 256; n++) {
    let crc = BigInt(n);
    for (let bit = 0; bit < 8; bit++) crc = (crc & 1n) === 1n ? (crc >> 1n) ^ CRC64NVME_POLYNOMIAL : crc >> 1n;
    first[n] = crc;
  }
  for (let n = 0; n < 256; n++) {
    let crc = first[n] as bigint;
    for (const table of tables) {
      table.hi[n] = Number(crc >> 32n);
      table.lo[n] = Number(crc & 0xffffffffn);
      crc = (crc >> 8n) ^ (first[Number(crc & 0xffn)] as bigint);
    }
  }
  return tables;
})();

/** CRC-64/NVME (init and final XOR all ones, reflected): S3's CRC64NVME, the SDKs' and the CLI's newest default. */
function crc64nvmeDigest(): Digest {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = CRC64NVME_TABLES as [
    { hi: Uint32Array; lo: Uint32Array },
    { hi: Uint32Array; lo: Uint32Array },
    { hi: Uint32Array; lo: Uint32Array },
    { hi: Uint32Array; lo: Uint32Array },
    { hi: Uint32Array; lo: Uint32Array },
    { hi: Uint32Array; lo: Uint32Array },
    { hi: Uint32Array; lo: Uint32Array },
    { hi: Uint32Array; lo: Uint32Array },
  ];
  let hi = 0xffffffff;
  let lo = 0xffffffff;
  return {
    update(chunk) {
      let i = 0;
      const end8 = chunk.length - (chunk.length % 8);
      // Eight bytes at a time: the low word's four bytes, then the high word's, each through its table.
      while (i < end8) {
        const a = (lo ^ (chunk[i] as number)) & 0xff;
        const b = ((lo >>> 8) ^ (chunk[i + 1] as number)) & 0xff;
        const c = ((lo >>> 16) ^ (chunk[i + 2] as number)) & 0xff;
        const d = ((lo >>> 24) ^ (chunk[i + 3] as number)) & 0xff;
        const e = (hi ^ (chunk[i + 4] as number)) & 0xff;
        const f = ((hi >>> 8) ^ (chunk[i + 5] as number)) & 0xff;
        const g = ((hi >>> 16) ^ (chunk[i + 6] as number)) & 0xff;
        const h = ((hi >>> 24) ^ (chunk[i + 7] as number)) & 0xff;
        hi = (t7.hi[a] as number) ^ (t6.hi[b] as number) ^ (t5.hi[c] as number) ^ (t4.hi[d] as number) ^ (t3.hi[e] as number) ^ (t2.hi[f] as number) ^ (t1.hi[g] as number) ^ (t0.hi[h] as number);
        lo = (t7.lo[a] as number) ^ (t6.lo[b] as number) ^ (t5.lo[c] as number) ^ (t4.lo[d] as number) ^ (t3.lo[e] as number) ^ (t2.lo[f] as number) ^ (t1.lo[g] as number) ^ (t0.lo[h] as number);
        i += 8;
      }
      for (; i < chunk.length; i++) {
        const n = (lo ^ (chunk[i] as number)) & 0xff;
        lo = ((lo >>> 8) | (hi << 24)) ^ (t0.lo[n] as number);
        hi = (hi >>> 8) ^ (t0.hi[n] as number);
      }
    },
    base64: () => {
      const out = Buffer.alloc(8);
      out.writeUInt32BE((hi ^ 0xffffffff) >>> 0, 0);
      out.writeUInt32BE((lo ^ 0xffffffff) >>> 0, 4);
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
      return crc64nvmeDigest();
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
  return CRC_POLYNOMIALS[algorithm] !== undefined || algorithm === 'CRC64NVME';
}

/** a·b modulo CRC-64/NVME's polynomial, both reflected: multiplyModP in 64 bits. */
function multiplyModP64(a: bigint, b: bigint): bigint {
  let product = 0n;
  for (let m = 1n << 63n; m !== 0n; m >>= 1n) {
    if ((a & m) !== 0n) product ^= b;
    b = (b & 1n) !== 0n ? (b >> 1n) ^ CRC64NVME_POLYNOMIAL : b >> 1n;
  }
  return product;
}

/** x^(2^k) modulo CRC-64/NVME's polynomial, k = 0…63: computed once, on the first FULL_OBJECT CRC64NVME completion. */
let crc64Squares: bigint[] | undefined;

/** x^(8·bytes) modulo CRC-64/NVME's polynomial: shiftFor in 64 bits. */
function shiftFor64(bytes: number): bigint {
  if (crc64Squares === undefined) {
    crc64Squares = [];
    let power = 1n << 62n; // x^1
    for (let k = 0; k < 64; k++) {
      crc64Squares.push(power);
      power = multiplyModP64(power, power);
    }
  }
  let result = 1n << 63n; // x^0
  let n = bytes;
  for (let k = 3; n > 0; k++, n = Math.floor(n / 2)) {
    if (n % 2 === 1) result = multiplyModP64(crc64Squares[k % 64] as bigint, result);
  }
  return result;
}

/**
 * The CRC of a body from the CRCs and sizes of its consecutive pieces, without the bytes (zlib's
 * crc32_combine, for any reflected 32-bit CRC, and the same in 64 bits for CRC64NVME): how a
 * FULL_OBJECT checksum is checked at CompleteMultipartUpload. Values are base64, as on the wire.
 */
export function combineChecksums(algorithm: ChecksumAlgorithm, pieces: ReadonlyArray<{ readonly checksum: string; readonly size: number }>): string {
  if (algorithm === 'CRC64NVME') {
    let crc = 0n;
    for (const piece of pieces) crc = multiplyModP64(shiftFor64(piece.size), crc) ^ Buffer.from(piece.checksum, 'base64').readBigUInt64BE(0);
    const out = Buffer.alloc(8);
    out.writeBigUInt64BE(crc);
    return out.toString('base64');
  }
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
