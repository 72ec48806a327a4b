// Random access into ASF1 blobs: decrypt only the segments a byte range touches (ranged GETs).
import { open as openFile, type FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { AirlockError } from '@airlock/common';
import { asBuffer } from './bytes.js';
import { keyFor, type Asf1DecryptOptions } from './asf1.js';
import {
  checkCommitment,
  deriveStreamKeys,
  FIXED_PREFIX_LENGTH,
  HEADER_OVERHEAD,
  headerLengthFromPrefix,
  malformed,
  MAX_KEY_REF_LENGTH,
  parseHeader,
  plaintextLengthOfBody,
  SEGMENT_CIPHERTEXT_SIZE,
  SEGMENT_SIZE,
  SegmentCipher,
  TAG_LENGTH,
  type Asf1Header,
} from './internal/asf1-core.js';

/** Positional reads from a stored blob of known size (a file, a buffer, an object-store range). */
export interface RandomAccessSource {
  readonly size: number;
  /** Returns exactly `length` bytes starting at `position` (both within `size`). */
  read(position: number, length: number): Promise<Uint8Array>;
  /** Called with bytes from `read` once the reader is done with them, so the source may reuse their memory. */
  release?(bytes: Uint8Array): void;
}

export interface Asf1ReaderOptions extends Asf1DecryptOptions {
  /**
   * Also authenticate the final segment before returning any range, so that a truncated or
   * extended blob is detected even when the range does not reach its end. Costs one extra
   * segment read per reader. @default true
   */
  readonly authenticateLength?: boolean;
  /**
   * Bytes read from the start of the blob in the first read, which parses the header. Bytes past
   * the header are kept and serve the first segments without another read: a caller about to
   * stream from the start passes `asf1OpeningReadBytes(n)` for its first n segments. Any value
   * reads at least the largest possible header, so the header always takes one read.
   * @default the largest possible header
   */
  readonly openingReadBytes?: number;
}

/** Segments decrypted per read when streaming a long range (256 KiB of plaintext): small enough to pipeline. */
const SEGMENTS_PER_READ = 4;

/** The largest possible ASF1 header: one opening read of this many bytes always holds the whole header. */
const MAX_HEADER_LENGTH = HEADER_OVERHEAD + MAX_KEY_REF_LENGTH;

/**
 * An opening read that holds the header and the first `segments` segments of any ASF1 blob; by
 * default one streaming batch, so a stream from the start begins without a second read.
 */
export function asf1OpeningReadBytes(segments = SEGMENTS_PER_READ): number {
  return MAX_HEADER_LENGTH + segments * SEGMENT_CIPHERTEXT_SIZE;
}

/** A source that serves reads within the opening bytes from memory and the rest from `source`. */
function withOpeningBytes(source: RandomAccessSource, opening: Buffer): RandomAccessSource {
  return {
    size: source.size,
    read: (position, length) =>
      position + length <= opening.byteLength ? Promise.resolve(opening.subarray(position, position + length)) : source.read(position, length),
    // Views of the opening bytes are served again; the opening itself goes back when the reader closes.
    release: (bytes) => {
      if (bytes.buffer !== opening.buffer || bytes === opening) source.release?.(bytes);
    },
  };
}

export class Asf1Reader {
  readonly header: Asf1Header;
  /** Length of the plaintext, from the blob's size; authenticated once the final segment has been read. */
  readonly plaintextLength: number;
  readonly #source: RandomAccessSource;
  readonly #cipher: SegmentCipher;
  readonly #segments: number;
  #lengthChecked: boolean;
  #closed = false;

  readonly #opening: Buffer | undefined;

  /** @internal Use openAsf1Reader. */
  constructor(source: RandomAccessSource, header: Asf1Header, cipher: SegmentCipher, authenticateLength: boolean, opening?: Buffer) {
    this.#source = source;
    this.#opening = opening;
    this.header = header;
    this.#cipher = cipher;
    this.plaintextLength = plaintextLengthOfBody(source.size - header.length);
    this.#segments = Math.max(1, Math.ceil(this.plaintextLength / SEGMENT_SIZE));
    this.#lengthChecked = !authenticateLength;
  }

  /** Reads the ciphertext of segments [first, last] (inclusive) in one read. Hand it back with #release. */
  async #readSegments(first: number, last: number): Promise<Buffer> {
    if (this.#closed) throw new AirlockError('INVALID_ARGUMENT', 'ASF1 reader is closed');
    const start = this.header.length + first * SEGMENT_CIPHERTEXT_SIZE;
    const end = Math.min(this.header.length + (last + 1) * SEGMENT_CIPHERTEXT_SIZE, this.#source.size);
    const bytes = asBuffer(await this.#source.read(start, end - start));
    if (bytes.byteLength !== end - start) {
      this.#release(bytes);
      throw malformed('ASF1 source returned a short read');
    }
    return bytes;
  }

  /** Only plaintext leaves the reader: once decrypted, ciphertext memory can be reused. */
  #release(bytes: Buffer): void {
    this.#source.release?.(bytes);
  }

  /** Decrypts segment `index`, whose ciphertext starts at `offset` in `bytes`; returns its plaintext pieces. */
  #decryptSegment(index: number, bytes: Buffer, offset: number): Buffer[] {
    if (this.#closed) throw new AirlockError('INVALID_ARGUMENT', 'ASF1 reader is closed');
    const segmentEnd = Math.min(offset + SEGMENT_CIPHERTEXT_SIZE, bytes.byteLength);
    const out: Buffer[] = [];
    this.#cipher.decrypt(index, index === this.#segments - 1, [bytes.subarray(offset, segmentEnd - TAG_LENGTH)], bytes.subarray(segmentEnd - TAG_LENGTH, segmentEnd), out);
    return out;
  }

  async #checkLength(lastTouched: number): Promise<void> {
    if (this.#lengthChecked) return;
    if (lastTouched !== this.#segments - 1) {
      const final = this.#segments - 1;
      const bytes = await this.#readSegments(final, final);
      try {
        for (const piece of this.#decryptSegment(final, bytes, 0)) piece.fill(0);
      } finally {
        this.#release(bytes);
      }
    }
    this.#lengthChecked = true;
  }

  #validateRange(start: number, end: number): void {
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start || end > this.plaintextLength) {
      throw new AirlockError('INVALID_ARGUMENT', 'range must satisfy 0 <= start <= end <= plaintextLength', {
        details: { argument: 'range', plaintextLength: this.plaintextLength },
      });
    }
  }

  /** Decrypts plaintext bytes [start, end) and returns them. */
  async read(start: number, end: number): Promise<Buffer> {
    this.#validateRange(start, end);
    if (start === end) {
      await this.#checkLength(-1);
      return Buffer.alloc(0);
    }
    const chunks: Buffer[] = [];
    for await (const chunk of this.#iterate(start, end)) chunks.push(chunk);
    return chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, end - start);
  }

  /** A stream of plaintext bytes [start, end): reads 4 segments at a time, one batch ahead, and releases each segment once it verifies. */
  createReadStream(start = 0, end = this.plaintextLength): Readable {
    this.#validateRange(start, end);
    return Readable.from(this.#iterate(start, end), { objectMode: false });
  }

  async *#iterate(start: number, end: number): AsyncGenerator<Buffer> {
    if (start === end) {
      await this.#checkLength(-1);
      return;
    }
    const firstSegment = Math.floor(start / SEGMENT_SIZE);
    const lastSegment = Math.floor((end - 1) / SEGMENT_SIZE);
    await this.#checkLength(lastSegment);
    const batch = (first: number): Promise<Buffer> => this.#readSegments(first, Math.min(first + SEGMENTS_PER_READ - 1, lastSegment));
    // Read ahead: the next batch is read while this one is decrypted and consumed, a segment at a time.
    let next: Promise<Buffer> | undefined = batch(firstSegment);
    try {
      for (let first = firstSegment; next !== undefined; first += SEGMENTS_PER_READ) {
        const bytes: Buffer = await next;
        const following = first + SEGMENTS_PER_READ;
        next = following <= lastSegment ? batch(following) : undefined;
        // A failed read-ahead must not surface as an unhandled rejection if the consumer stops early.
        next?.catch(() => undefined);
        try {
          for (let index = first, offset = 0; index <= Math.min(following - 1, lastSegment); index++, offset += SEGMENT_CIPHERTEXT_SIZE) {
            let pieceStart = index * SEGMENT_SIZE;
            for (const piece of this.#decryptSegment(index, bytes, offset)) {
              const from = Math.max(start, pieceStart) - pieceStart;
              const to = Math.min(end, pieceStart + piece.byteLength) - pieceStart;
              pieceStart += piece.byteLength;
              if (to > from) yield from === 0 && to === piece.byteLength ? piece : piece.subarray(from, to);
            }
          }
        } finally {
          this.#release(bytes);
        }
      }
    } finally {
      // A consumer that stopped early leaves a read-ahead in flight: its buffer goes back when it lands.
      next?.then((bytes) => this.#release(bytes), () => undefined);
    }
  }

  /** Zeroes the stream key. The reader cannot be used afterwards. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#cipher.dispose();
    if (this.#opening !== undefined) this.#source.release?.(this.#opening);
  }
}

/** Parses and authenticates the header of an ASF1 blob (key commitment) and returns a range reader. */
export async function openAsf1Reader(unread: RandomAccessSource, options: Asf1ReaderOptions): Promise<Asf1Reader> {
  if (unread.size < FIXED_PREFIX_LENGTH) throw malformed('ASF1 header is truncated');
  const openingLength = Math.min(unread.size, Math.max(MAX_HEADER_LENGTH, options.openingReadBytes ?? 0));
  const opening = asBuffer(await unread.read(0, openingLength));
  if (opening.byteLength !== openingLength) throw malformed('ASF1 source returned a short read');
  const source = withOpeningBytes(unread, opening);
  const headerLength = headerLengthFromPrefix(opening);
  if (source.size < headerLength) throw malformed('ASF1 header is truncated');
  const header = parseHeader(opening);
  plaintextLengthOfBody(source.size - header.length);
  const key = await keyFor(header, options);
  const keys = deriveStreamKeys(key, header.bound, options.context);
  if (options.key === undefined) key.fill(0);
  try {
    checkCommitment(keys, header);
  } catch (error) {
    keys.segmentKey.fill(0);
    throw error;
  }
  return new Asf1Reader(source, header, new SegmentCipher(keys, header.noncePrefix), options.authenticateLength ?? true, opening);
}

/** A RandomAccessSource over bytes in memory. */
export function bufferSource(bytes: Uint8Array): RandomAccessSource {
  const buffer = asBuffer(bytes);
  return {
    size: buffer.byteLength,
    read: (position, length) => Promise.resolve(buffer.subarray(position, position + length)),
  };
}

/**
 * Read buffers for file sources, reused across readers. Each GET of a large object would otherwise
 * allocate its size again in ciphertext buffers, and that external memory is what drives V8's full
 * collections under load. Only ciphertext passes through them. Bounded: at most POOL_LIMIT are kept.
 */
const POOL_BUFFER_BYTES = asf1OpeningReadBytes();
const POOL_LIMIT = 16;
const pooled: Buffer[] = [];
const poolMembers = new WeakSet<ArrayBufferLike>();

function takeReadBuffer(length: number): Buffer {
  if (length > POOL_BUFFER_BYTES || length < SEGMENT_CIPHERTEXT_SIZE) return Buffer.allocUnsafe(length);
  let buffer = pooled.pop();
  if (buffer === undefined) {
    buffer = Buffer.allocUnsafeSlow(POOL_BUFFER_BYTES);
    poolMembers.add(buffer.buffer);
  }
  return buffer.subarray(0, length);
}

function releaseReadBuffer(bytes: Uint8Array): void {
  if (!poolMembers.has(bytes.buffer) || pooled.length >= POOL_LIMIT) return;
  if (pooled.some((free) => free.buffer === bytes.buffer)) return; // released twice: keep one entry
  pooled.push(Buffer.from(bytes.buffer, 0, POOL_BUFFER_BYTES));
}

async function readFully(handle: FileHandle, buffer: Buffer, position: number): Promise<number> {
  let done = 0;
  while (done < buffer.byteLength) {
    const { bytesRead } = await handle.read(buffer, done, buffer.byteLength - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

export interface FileSourceOptions {
  /**
   * Bytes to read from the start of the file at once, alongside the `stat` that finds its size (one
   * round trip fewer before the first byte). Pass the reader's `openingReadBytes`. @default 0
   */
  readonly prefetchBytes?: number;
}

/** A RandomAccessSource over an open file. The caller closes the handle. */
export async function fileSource(handle: FileHandle, options: FileSourceOptions = {}): Promise<RandomAccessSource> {
  const prefetchBytes = options.prefetchBytes ?? 0;
  let prefetched: Buffer | undefined;
  let size: number;
  if (prefetchBytes > 0) {
    const buffer = takeReadBuffer(prefetchBytes);
    try {
      const [stat, bytesRead] = await Promise.all([handle.stat(), readFully(handle, buffer, 0)]);
      size = stat.size;
      prefetched = buffer.subarray(0, Math.min(bytesRead, size));
    } catch (error) {
      releaseReadBuffer(buffer);
      throw error;
    }
  } else {
    size = (await handle.stat()).size;
  }
  return {
    size,
    async read(position, length) {
      if (prefetched !== undefined && position === 0 && length <= prefetched.byteLength) {
        // The prefetched bytes are handed out once, as the reader's opening read.
        const bytes = prefetched.subarray(0, length);
        prefetched = undefined;
        return bytes;
      }
      const buffer = takeReadBuffer(length);
      try {
        if ((await readFully(handle, buffer, position)) !== length) throw malformed('ASF1 file is shorter than its size');
        return buffer;
      } catch (error) {
        releaseReadBuffer(buffer);
        throw error;
      }
    },
    release: releaseReadBuffer,
  };
}

/** Opens a file and returns a reader over it plus a function that closes both. */
export async function openAsf1File(path: string, options: Asf1ReaderOptions): Promise<{ reader: Asf1Reader; close: () => Promise<void> }> {
  const handle = await openFile(path, 'r').catch((error: unknown) => {
    throw AirlockError.from(error);
  });
  try {
    const reader = await openAsf1Reader(await fileSource(handle), options);
    return {
      reader,
      close: async () => {
        reader.close();
        await handle.close();
      },
    };
  } catch (error) {
    await handle.close();
    throw AirlockError.from(error);
  }
}
