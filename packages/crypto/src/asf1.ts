// ASF1 (Airlock Segmented Format v1): streaming AEAD for every at-rest blob; one-shot and stream APIs.
import { Transform, type TransformCallback } from 'node:stream';
import { AirlockError } from '@airlock/common';
import { asBuffer } from './bytes.js';
import type { EncryptionContext } from './encryption-context.js';
import {
  ByteQueue,
  checkCommitment,
  deriveStreamKeys,
  FIXED_PREFIX_LENGTH,
  headerLengthFromPrefix,
  malformed,
  newHeaderPrefix,
  parseHeader,
  plaintextLengthOfBody,
  SEGMENT_CIPHERTEXT_SIZE,
  segmentCount,
  SEGMENT_SIZE,
  SegmentCipher,
  splitTag,
  TAG_LENGTH,
  type Asf1Header,
} from './internal/asf1-core.js';

export {
  ciphertextLength as asf1CiphertextLength,
  DATA_KEY_LENGTH as ASF1_DATA_KEY_LENGTH,
  MAX_KEY_REF_LENGTH as ASF1_MAX_KEY_REF_LENGTH,
  SEGMENT_SIZE as ASF1_SEGMENT_SIZE,
  type Asf1Header,
} from './internal/asf1-core.js';

/** Supplies the data key for a stream from its header's key reference (e.g. by unwrapping it with a KMS). */
export type KeyResolver = (keyRef: Buffer) => Uint8Array | Promise<Uint8Array>;

export interface Asf1EncryptOptions {
  /** The 32-byte data key. The caller keeps ownership and zeroes it when done. */
  readonly key: Uint8Array;
  /** Bound as associated data; the same context is needed to decrypt. @default {} */
  readonly context?: EncryptionContext;
  /** Opaque bytes stored (authenticated) in the header that tell a reader which key to use. @default empty */
  readonly keyRef?: Uint8Array;
}

export interface Asf1DecryptOptions {
  /** The 32-byte data key. Either this or `resolveKey`. */
  readonly key?: Uint8Array;
  /** Called with the header's key reference to obtain the data key. Either this or `key`. */
  readonly resolveKey?: KeyResolver;
  /** Must equal the context used to encrypt. @default {} */
  readonly context?: EncryptionContext;
}

const EMPTY = Buffer.alloc(0);
/**
 * Stream buffering on each side of the transforms. Node 20's 16 KiB default is smaller than one
 * segment, which would signal backpressure on every segment; four segments keeps the pipeline
 * busy while bounding memory per stream.
 */
const STREAM_HIGH_WATER_MARK = 4 * SEGMENT_CIPHERTEXT_SIZE;

function startEncryption(options: Asf1EncryptOptions): { header: Buffer; cipher: SegmentCipher } {
  const bound = newHeaderPrefix(options.keyRef ?? EMPTY);
  const keys = deriveStreamKeys(options.key, bound, options.context);
  const header = Buffer.concat([bound, keys.commitment]);
  const noncePrefix = bound.subarray(bound.byteLength - 7);
  return { header, cipher: new SegmentCipher(keys, noncePrefix) };
}

async function startDecryption(header: Asf1Header, options: Asf1DecryptOptions): Promise<SegmentCipher> {
  const key = await keyFor(header, options);
  const keys = deriveStreamKeys(key, header.bound, options.context);
  if (options.key === undefined) key.fill(0);
  checkCommitment(keys, header);
  return new SegmentCipher(keys, header.noncePrefix);
}

function startDecryptionSync(header: Asf1Header, options: Asf1DecryptOptions): SegmentCipher {
  if (options.key === undefined) {
    throw new AirlockError('INVALID_ARGUMENT', 'decryptAsf1 needs `key`; use the stream or reader API for `resolveKey`', {
      details: { argument: 'key' },
    });
  }
  const keys = deriveStreamKeys(options.key, header.bound, options.context);
  checkCommitment(keys, header);
  return new SegmentCipher(keys, header.noncePrefix);
}

/** Resolves the data key for a header, validating the options. The result is owned by the caller only if resolved. */
export async function keyFor(header: Asf1Header, options: Asf1DecryptOptions): Promise<Uint8Array> {
  if ((options.key === undefined) === (options.resolveKey === undefined)) {
    throw new AirlockError('INVALID_ARGUMENT', 'pass exactly one of `key` and `resolveKey`', { details: { argument: 'key' } });
  }
  if (options.key !== undefined) return options.key;
  const resolved = await (options.resolveKey as KeyResolver)(header.keyRef);
  // Copy, so that zeroing after use never touches a buffer the resolver still holds.
  return Buffer.from(resolved);
}

/**
 * Encrypts a whole buffer into an ASF1 blob given as a list of pieces (header, then each segment's
 * ciphertext and tag), ready for vectored writes (`writev`) without a contiguous copy.
 */
export function encryptAsf1ToChunks(plaintext: Uint8Array, options: Asf1EncryptOptions): Buffer[] {
  if (!(plaintext instanceof Uint8Array)) {
    throw new AirlockError('INVALID_ARGUMENT', 'plaintext must be a Uint8Array', { details: { argument: 'plaintext' } });
  }
  const { header, cipher } = startEncryption(options);
  try {
    const input = asBuffer(plaintext);
    const out: Buffer[] = [header];
    const segments = Math.max(1, Math.ceil(input.byteLength / SEGMENT_SIZE));
    for (let i = 0; i < segments; i++) {
      const start = i * SEGMENT_SIZE;
      cipher.encrypt(i, i === segments - 1, [input.subarray(start, Math.min(start + SEGMENT_SIZE, input.byteLength))], out);
    }
    return out;
  } finally {
    cipher.dispose();
  }
}

/** Encrypts a whole buffer into one contiguous ASF1 blob, written straight into one allocation. */
export function encryptAsf1(plaintext: Uint8Array, options: Asf1EncryptOptions): Buffer {
  if (!(plaintext instanceof Uint8Array)) {
    throw new AirlockError('INVALID_ARGUMENT', 'plaintext must be a Uint8Array', { details: { argument: 'plaintext' } });
  }
  const { header, cipher } = startEncryption(options);
  try {
    const input = asBuffer(plaintext);
    const out = Buffer.allocUnsafe(header.byteLength + input.byteLength + segmentCount(input.byteLength) * TAG_LENGTH);
    let offset = header.copy(out, 0);
    const segments = segmentCount(input.byteLength);
    for (let i = 0; i < segments; i++) {
      const start = i * SEGMENT_SIZE;
      offset = cipher.encryptInto(i, i === segments - 1, input.subarray(start, Math.min(start + SEGMENT_SIZE, input.byteLength)), out, offset);
    }
    return out;
  } finally {
    cipher.dispose();
  }
}

/**
 * Decrypts a whole ASF1 blob into plaintext pieces (one per segment). Returns only if every
 * segment authenticates and the stream ends where its final segment says; otherwise throws
 * CIPHERTEXT_MALFORMED or CIPHERTEXT_AUTH_FAILED and returns nothing.
 */
export function decryptAsf1ToChunks(ciphertext: Uint8Array, options: Asf1DecryptOptions): Buffer[] {
  if (!(ciphertext instanceof Uint8Array)) {
    throw new AirlockError('INVALID_ARGUMENT', 'ciphertext must be a Uint8Array', { details: { argument: 'ciphertext' } });
  }
  const input = asBuffer(ciphertext);
  const header = parseHeader(input);
  const plaintextLength = plaintextLengthOfBody(input.byteLength - header.length);
  const cipher = startDecryptionSync(header, options);
  const out: Buffer[] = [];
  try {
    const segments = Math.max(1, Math.ceil(plaintextLength / SEGMENT_SIZE));
    for (let i = 0; i < segments; i++) {
      const start = header.length + i * SEGMENT_CIPHERTEXT_SIZE;
      const end = Math.min(start + SEGMENT_CIPHERTEXT_SIZE, input.byteLength);
      cipher.decrypt(i, i === segments - 1, [input.subarray(start, end - TAG_LENGTH)], input.subarray(end - TAG_LENGTH, end), out);
    }
    return out;
  } catch (error) {
    for (const piece of out) piece.fill(0);
    throw error;
  } finally {
    cipher.dispose();
  }
}

/**
 * Decrypts a whole ASF1 blob into one contiguous buffer, written straight into one allocation.
 * Same guarantees as decryptAsf1ToChunks: all or nothing.
 */
export function decryptAsf1(ciphertext: Uint8Array, options: Asf1DecryptOptions): Buffer {
  if (!(ciphertext instanceof Uint8Array)) {
    throw new AirlockError('INVALID_ARGUMENT', 'ciphertext must be a Uint8Array', { details: { argument: 'ciphertext' } });
  }
  const input = asBuffer(ciphertext);
  const header = parseHeader(input);
  const plaintextLength = plaintextLengthOfBody(input.byteLength - header.length);
  const cipher = startDecryptionSync(header, options);
  const out = Buffer.allocUnsafe(plaintextLength);
  try {
    const segments = segmentCount(plaintextLength);
    let offset = 0;
    for (let i = 0; i < segments; i++) {
      const start = header.length + i * SEGMENT_CIPHERTEXT_SIZE;
      const end = Math.min(start + SEGMENT_CIPHERTEXT_SIZE, input.byteLength);
      offset = cipher.decryptInto(i, i === segments - 1, input.subarray(start, end - TAG_LENGTH), input.subarray(end - TAG_LENGTH, end), out, offset);
    }
    return out;
  } catch (error) {
    out.fill(0);
    throw error;
  } finally {
    cipher.dispose();
  }
}

/** Reads only the header of an ASF1 blob (e.g. to find its key reference). Nothing is authenticated yet. */
export function readAsf1Header(bytes: Uint8Array): Asf1Header {
  return parseHeader(bytes);
}

/** Plaintext length of an ASF1 blob of `ciphertextLength` bytes whose header is `headerLength` bytes. */
export function asf1PlaintextLength(ciphertextLength: number, headerLength: number): number {
  return plaintextLengthOfBody(ciphertextLength - headerLength);
}

/**
 * A Transform that encrypts a byte stream into ASF1. Input chunks of any size are fed to GCM as
 * views; a full segment is held back only until the next byte (or the end) shows whether it is last.
 */
export function createAsf1EncryptStream(options: Asf1EncryptOptions): Transform {
  const { header, cipher } = startEncryption(options);
  const queue = new ByteQueue();
  let index = 0;
  let headerSent = false;
  const emit = (stream: Transform, last: boolean): void => {
    const out: Buffer[] = [];
    if (!headerSent) {
      out.push(header);
      headerSent = true;
    }
    const pieces = queue.take(last ? queue.length : SEGMENT_SIZE);
    cipher.encrypt(index++, last, pieces, out);
    for (const piece of out) stream.push(piece);
  };
  return new Transform({
    highWaterMark: STREAM_HIGH_WATER_MARK,
    transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
      try {
        queue.push(chunk);
        while (queue.length > SEGMENT_SIZE) emit(this, false);
        callback();
      } catch (error) {
        callback(AirlockError.from(error));
      }
    },
    flush(callback: TransformCallback): void {
      try {
        emit(this, true);
        cipher.dispose();
        callback();
      } catch (error) {
        callback(AirlockError.from(error));
      }
    },
    destroy(error: Error | null, callback: (error: Error | null) => void): void {
      cipher.dispose();
      queue.clear();
      callback(error);
    },
  });
}

/**
 * A Transform that decrypts an ASF1 stream. Each segment's plaintext is released only after its tag
 * verifies. Truncation, reordering or extension make the stream fail at the damaged segment, so a
 * consumer must treat the output as complete only once the stream ends without error (write to a
 * temporary file and rename on success).
 */
export function createAsf1DecryptStream(options: Asf1DecryptOptions): Transform {
  const queue = new ByteQueue();
  let header: Asf1Header | undefined;
  let headerLength = 0;
  let cipher: SegmentCipher | undefined;
  let index = 0;

  const decryptSegment = (stream: Transform, length: number, last: boolean): void => {
    const { body, tag } = splitTag(queue.take(length), length);
    const out: Buffer[] = [];
    (cipher as SegmentCipher).decrypt(index++, last, body, tag, out);
    for (const piece of out) stream.push(piece);
  };

  return new Transform({
    highWaterMark: STREAM_HIGH_WATER_MARK,
    transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
      queue.push(chunk);
      const run = async (): Promise<void> => {
        if (cipher === undefined) {
          if (headerLength === 0 && queue.length >= FIXED_PREFIX_LENGTH) {
            headerLength = headerLengthFromPrefix(queue.peek(FIXED_PREFIX_LENGTH));
          }
          if (headerLength === 0 || queue.length < headerLength) return;
          header = parseHeader(queue.takeContiguous(headerLength));
          cipher = await startDecryption(header, options);
        }
        // Strictly more than one segment buffered proves this segment is not the last.
        while (queue.length > SEGMENT_CIPHERTEXT_SIZE) decryptSegment(this, SEGMENT_CIPHERTEXT_SIZE, false);
      };
      run().then(
        () => callback(),
        (error: unknown) => callback(AirlockError.from(error)),
      );
    },
    flush(callback: TransformCallback): void {
      try {
        if (cipher === undefined) throw malformed('ASF1 stream is truncated');
        const remaining = queue.length;
        if (remaining < TAG_LENGTH || (remaining === TAG_LENGTH && index > 0)) throw malformed('ASF1 stream is truncated');
        decryptSegment(this, remaining, true);
        cipher.dispose();
        callback();
      } catch (error) {
        callback(AirlockError.from(error));
      }
    },
    destroy(error: Error | null, callback: (error: Error | null) => void): void {
      cipher?.dispose();
      queue.clear();
      callback(error);
    },
  });
}
