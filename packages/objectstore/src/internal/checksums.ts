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
