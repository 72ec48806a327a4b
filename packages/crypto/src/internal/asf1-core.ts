// ASF1 internals: header encoding, per-stream key derivation and per-segment AES-256-GCM.
import { createCipheriv, createDecipheriv, createHash, hkdfSync } from 'node:crypto';
import { AirlockError } from '@airlock/common';
import { constantTimeEqual, randomBytes } from '../bytes.js';
import { encodeEncryptionContext, type EncryptionContext } from '../encryption-context.js';

export const MAGIC = Buffer.from('ASF1', 'ascii');
export const VERSION = 1;
/** Algorithm 1: AES-256-GCM segments, HKDF-SHA256 stream keys, 64 KiB plaintext segments. */
export const ALGORITHM_AES256GCM_HKDFSHA256_64K = 1;
export const SEGMENT_SIZE = 64 * 1024;
export const TAG_LENGTH = 16;
export const SEGMENT_CIPHERTEXT_SIZE = SEGMENT_SIZE + TAG_LENGTH;
export const SALT_LENGTH = 32;
export const NONCE_PREFIX_LENGTH = 7;
export const COMMITMENT_LENGTH = 32;
export const DATA_KEY_LENGTH = 32;
export const MAX_KEY_REF_LENGTH = 4096;
/** Bytes before the key reference: magic, version, algorithm, key-reference length. */
export const FIXED_PREFIX_LENGTH = 8;
/** Header bytes besides the key reference. */
export const HEADER_OVERHEAD = FIXED_PREFIX_LENGTH + SALT_LENGTH + NONCE_PREFIX_LENGTH + COMMITMENT_LENGTH;
/** The segment counter is 32 bits (the nonce is prefix ‖ u32 counter ‖ last flag). */
export const MAX_SEGMENTS = 2 ** 32;

const KDF_LABEL = Buffer.from('airlock asf1 v1 stream keys', 'ascii');

export interface Asf1Header {
  readonly version: number;
  readonly algorithm: number;
  readonly keyRef: Buffer;
  readonly salt: Buffer;
  readonly noncePrefix: Buffer;
  readonly commitment: Buffer;
  /** Total header length in bytes; the first segment starts here. */
  readonly length: number;
  /** The header bytes up to and including the nonce prefix: what the stream keys are bound to. */
  readonly bound: Buffer;
}

export function malformed(message?: string): AirlockError {
  return new AirlockError('CIPHERTEXT_MALFORMED', message);
}

export function authFailed(): AirlockError {
  return new AirlockError('CIPHERTEXT_AUTH_FAILED');
}

/**
 * Builds a header (through the nonce prefix) with a fresh random salt and nonce prefix. `fixed`
 * supplies those 39 bytes instead, only for known-answer vectors. The commitment is appended by the caller.
 */
export function newHeaderPrefix(keyRef: Uint8Array, fixed?: Uint8Array): Buffer {
  if (keyRef.byteLength > MAX_KEY_REF_LENGTH) {
    throw new AirlockError('INVALID_ARGUMENT', `keyRef must be at most ${MAX_KEY_REF_LENGTH} bytes`, {
      details: { argument: 'keyRef' },
    });
  }
  const bound = Buffer.allocUnsafe(FIXED_PREFIX_LENGTH + keyRef.byteLength + SALT_LENGTH + NONCE_PREFIX_LENGTH);
  MAGIC.copy(bound, 0);
  bound[4] = VERSION;
  bound[5] = ALGORITHM_AES256GCM_HKDFSHA256_64K;
  bound.writeUInt16BE(keyRef.byteLength, 6);
  bound.set(keyRef, FIXED_PREFIX_LENGTH);
  const random = fixed ?? randomBytes(SALT_LENGTH + NONCE_PREFIX_LENGTH);
  if (random.byteLength !== SALT_LENGTH + NONCE_PREFIX_LENGTH) throw new AirlockError('INVALID_ARGUMENT', 'fixed salt/prefix length');
  bound.set(random, FIXED_PREFIX_LENGTH + keyRef.byteLength);
  return bound;
}

/** Header length implied by the first 8 bytes, after checking magic, version and algorithm. */
export function headerLengthFromPrefix(prefix: Uint8Array): number {
  if (prefix.byteLength < FIXED_PREFIX_LENGTH) throw malformed('ASF1 header is truncated');
  if (!constantTimeEqual(prefix.subarray(0, 4), MAGIC)) throw malformed('not an ASF1 stream');
  if (prefix[4] !== VERSION) throw malformed('unsupported ASF1 version');
  if (prefix[5] !== ALGORITHM_AES256GCM_HKDFSHA256_64K) throw malformed('unsupported ASF1 algorithm');
  const keyRefLength = ((prefix[6] ?? 0) << 8) | (prefix[7] ?? 0);
  if (keyRefLength > MAX_KEY_REF_LENGTH) throw malformed('ASF1 key reference is too long');
  return HEADER_OVERHEAD + keyRefLength;
}

/** Parses a complete header from the start of `bytes`. */
export function parseHeader(bytes: Uint8Array): Asf1Header {
  const length = headerLengthFromPrefix(bytes);
  if (bytes.byteLength < length) throw malformed('ASF1 header is truncated');
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, length);
  const keyRefEnd = length - SALT_LENGTH - NONCE_PREFIX_LENGTH - COMMITMENT_LENGTH;
  const saltEnd = keyRefEnd + SALT_LENGTH;
  const prefixEnd = saltEnd + NONCE_PREFIX_LENGTH;
  return {
    version: VERSION,
    algorithm: ALGORITHM_AES256GCM_HKDFSHA256_64K,
    keyRef: Buffer.from(buf.subarray(FIXED_PREFIX_LENGTH, keyRefEnd)),
    salt: Buffer.from(buf.subarray(keyRefEnd, saltEnd)),
    noncePrefix: Buffer.from(buf.subarray(saltEnd, prefixEnd)),
    commitment: Buffer.from(buf.subarray(prefixEnd, length)),
    length,
    bound: Buffer.from(buf.subarray(0, prefixEnd)),
  };
}

export interface StreamKeys {
  readonly segmentKey: Buffer;
  readonly commitment: Buffer;
}

/**
 * Derives the stream's segment key and key commitment:
 * HKDF-SHA256(IKM = data key, salt, info = label ‖ SHA-256(header-through-nonce-prefix ‖ context)),
 * 64 bytes, split 32/32 (RFC 5869 §2). Binding the header and context into the key, rather than
 * into each segment's AAD, makes any change to either fail the commitment check up front.
 */
export function deriveStreamKeys(dataKey: Uint8Array, bound: Buffer, context: EncryptionContext | undefined): StreamKeys {
  if (!(dataKey instanceof Uint8Array) || dataKey.byteLength !== DATA_KEY_LENGTH) {
    throw new AirlockError('INVALID_ARGUMENT', `data key must be ${DATA_KEY_LENGTH} bytes`, { details: { argument: 'key' } });
  }
  const saltStart = bound.byteLength - NONCE_PREFIX_LENGTH - SALT_LENGTH;
  const salt = bound.subarray(saltStart, saltStart + SALT_LENGTH);
  const digest = createHash('sha256').update(bound).update(encodeEncryptionContext(context)).digest();
  const okm = Buffer.from(hkdfSync('sha256', dataKey, salt, Buffer.concat([KDF_LABEL, digest]), 64));
  return { segmentKey: okm.subarray(0, 32), commitment: okm.subarray(32, 64) };
}

/** Checks a stored commitment against the derived one, in constant time. */
export function checkCommitment(keys: StreamKeys, header: Asf1Header): void {
  if (!constantTimeEqual(keys.commitment, header.commitment)) throw authFailed();
}

/** Encrypts and decrypts the segments of one stream. Owns the segment key; call dispose() when done. */
export class SegmentCipher {
  readonly #key: Buffer;
  readonly #nonce = Buffer.alloc(12);

  constructor(keys: StreamKeys, noncePrefix: Buffer) {
    this.#key = keys.segmentKey;
    noncePrefix.copy(this.#nonce, 0, 0, NONCE_PREFIX_LENGTH);
  }

  /** nonce = prefix (7) ‖ u32be segment index ‖ u8 last-segment flag. */
  #nonceFor(index: number, last: boolean): Buffer {
    if (index >= MAX_SEGMENTS) throw new AirlockError('INVALID_ARGUMENT', 'ASF1 stream exceeds 2^32 segments');
    this.#nonce.writeUInt32BE(index, NONCE_PREFIX_LENGTH);
    this.#nonce[11] = last ? 1 : 0;
    return this.#nonce;
  }

  /** Encrypts one segment given as pieces; appends ciphertext pieces and the tag to `out`. */
  encrypt(index: number, last: boolean, pieces: readonly Buffer[], out: Buffer[]): void {
    const cipher = createCipheriv('aes-256-gcm', this.#key, this.#nonceFor(index, last));
    for (const piece of pieces) out.push(cipher.update(piece));
    cipher.final();
    out.push(cipher.getAuthTag());
  }

  /**
   * Decrypts one segment. Plaintext pieces are appended to `out` only after the tag verifies; on
   * failure they are zeroed and CIPHERTEXT_AUTH_FAILED is thrown.
   */
  decrypt(index: number, last: boolean, pieces: readonly Buffer[], tag: Buffer, out: Buffer[]): void {
    const decipher = createDecipheriv('aes-256-gcm', this.#key, this.#nonceFor(index, last), { authTagLength: TAG_LENGTH });
    decipher.setAuthTag(tag);
    const plain: Buffer[] = [];
    for (const piece of pieces) plain.push(decipher.update(piece));
    try {
      decipher.final();
    } catch {
      for (const p of plain) p.fill(0);
      throw authFailed();
    }
    for (const p of plain) out.push(p);
  }

  /** Encrypts one contiguous segment into `out` at `offset`; returns the offset after its tag. */
  encryptInto(index: number, last: boolean, input: Buffer, out: Buffer, offset: number): number {
    const cipher = createCipheriv('aes-256-gcm', this.#key, this.#nonceFor(index, last));
    let at = offset + cipher.update(input).copy(out, offset);
    cipher.final();
    at += cipher.getAuthTag().copy(out, at);
    return at;
  }

  /**
   * Decrypts one contiguous segment into `out` at `offset`; returns the offset after its plaintext.
   * On authentication failure the bytes written are zeroed and CIPHERTEXT_AUTH_FAILED is thrown.
   */
  decryptInto(index: number, last: boolean, body: Buffer, tag: Buffer, out: Buffer, offset: number): number {
    const decipher = createDecipheriv('aes-256-gcm', this.#key, this.#nonceFor(index, last), { authTagLength: TAG_LENGTH });
    decipher.setAuthTag(tag);
    const plain = decipher.update(body);
    const end = offset + plain.copy(out, offset);
    try {
      decipher.final();
    } catch {
      plain.fill(0);
      out.fill(0, offset, end);
      throw authFailed();
    }
    return end;
  }

  dispose(): void {
    this.#key.fill(0);
  }
}

/** Number of segments for a plaintext of `length` bytes (an empty stream still has one segment). */
export function segmentCount(plaintextLength: number): number {
  return plaintextLength === 0 ? 1 : Math.ceil(plaintextLength / SEGMENT_SIZE);
}

/** Total ASF1 length of a plaintext of `plaintextLength` bytes under a `keyRefLength`-byte key reference. */
export function ciphertextLength(plaintextLength: number, keyRefLength = 0): number {
  return HEADER_OVERHEAD + keyRefLength + plaintextLength + segmentCount(plaintextLength) * TAG_LENGTH;
}

/** Plaintext length of a body (everything after the header) of `bodyLength` bytes; throws if impossible. */
export function plaintextLengthOfBody(bodyLength: number): number {
  if (bodyLength < TAG_LENGTH) throw malformed('ASF1 stream is truncated');
  const segments = Math.ceil(bodyLength / SEGMENT_CIPHERTEXT_SIZE);
  const lastSize = bodyLength - (segments - 1) * SEGMENT_CIPHERTEXT_SIZE;
  // Only a lone segment may be empty: a writer never emits an empty final segment after full ones.
  if (lastSize < TAG_LENGTH || (lastSize === TAG_LENGTH && segments > 1)) throw malformed('ASF1 stream is truncated');
  if (segments > MAX_SEGMENTS) throw malformed('ASF1 stream has too many segments');
  return bodyLength - segments * TAG_LENGTH;
}

/**
 * A FIFO of buffers from which exact byte counts can be taken as views, without copying: the
 * stream transforms feed GCM from these views directly.
 */
export class ByteQueue {
  #pieces: Buffer[] = [];
  #length = 0;

  get length(): number {
    return this.#length;
  }

  push(piece: Buffer): void {
    if (piece.byteLength === 0) return;
    this.#pieces.push(piece);
    this.#length += piece.byteLength;
  }

  /** Removes exactly `count` bytes (count <= length) and returns them as views. */
  take(count: number): Buffer[] {
    const out: Buffer[] = [];
    let need = count;
    while (need > 0) {
      const head = this.#pieces[0] as Buffer;
      if (head.byteLength <= need) {
        out.push(head);
        this.#pieces.shift();
        need -= head.byteLength;
      } else {
        out.push(head.subarray(0, need));
        this.#pieces[0] = head.subarray(need);
        need = 0;
      }
    }
    this.#length -= count;
    return out;
  }

  /** Returns a copy of the first `count` bytes (count <= length) without removing them. */
  peek(count: number): Buffer {
    const out = Buffer.allocUnsafe(count);
    let offset = 0;
    for (const piece of this.#pieces) {
      if (offset >= count) break;
      offset += piece.copy(out, offset, 0, Math.min(piece.byteLength, count - offset));
    }
    return out;
  }

  /** Removes exactly `count` bytes as one contiguous buffer (copies only if they span pieces). */
  takeContiguous(count: number): Buffer {
    const pieces = this.take(count);
    return pieces.length === 1 ? (pieces[0] as Buffer) : Buffer.concat(pieces, count);
  }

  clear(): void {
    this.#pieces = [];
    this.#length = 0;
  }
}

/** Splits segment ciphertext pieces into body pieces and a contiguous 16-byte tag. */
export function splitTag(pieces: Buffer[], totalLength: number): { body: Buffer[]; tag: Buffer } {
  const queue = new ByteQueue();
  for (const p of pieces) queue.push(p);
  const body = queue.take(totalLength - TAG_LENGTH);
  return { body, tag: queue.takeContiguous(TAG_LENGTH) };
}
