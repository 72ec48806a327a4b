// S3 aws-chunked payloads: a streaming decoder that checks chunk and trailer signatures, and an encoder for tests.
import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { AirlockError } from '@airlock/common';
import { assertBytes, zeroize } from '../bytes.js';
import { parseAmzDate } from './sigv4-encoding.js';
import { EMPTY_SHA256, sha256Hex, signatureMatches, signBytes, signHex } from './sigv4-canonical.js';
import { authError } from './sigv4-auth-parse.js';

/** The largest chunk the decoder accepts. S3 clients send 64 KiB to 8 MiB; signed chunks are held whole until checked. */
export const AWS_CHUNKED_MAX_CHUNK_SIZE = 16 * 1024 * 1024;
/** The longest chunk-header or trailer line, without its CRLF. A signed chunk header is under 100 bytes. */
const MAX_LINE_LENGTH = 4096;
/** How many trailer lines (the trailer signature included) one body may carry. */
const MAX_TRAILERS = 16;

const PAYLOAD_ALGORITHM = 'AWS4-HMAC-SHA256-PAYLOAD';
const TRAILER_ALGORITHM = 'AWS4-HMAC-SHA256-TRAILER';
const TRAILER_SIGNATURE = 'x-amz-trailer-signature';
const CRLF = Buffer.from('\r\n', 'latin1');
const SIGNED_CHUNK_HEADER = /^([0-9a-fA-F]{1,16});chunk-signature=([0-9a-fA-F]{64})$/;
const UNSIGNED_CHUNK_HEADER = /^([0-9a-fA-F]{1,16})$/;
const TRAILER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const SIGNATURE = /^[0-9a-fA-F]{64}$/;
const SCOPE = /^\d{8}\/[^/\s]+\/[^/\s]+\/aws4_request$/;

/** What signs the chunks: the request's signing key, seed signature, scope and x-amz-date. */
export interface ChunkSigningContext {
  /** The signing key of the request (VerifiedRequest.signingKey). Copied; the caller keeps ownership. */
  readonly signingKey?: Uint8Array;
  /** The request's own signature, which the first chunk signature chains from. */
  readonly seedSignature?: string;
  /** The credential scope, e.g. 20130524/us-east-1/s3/aws4_request. */
  readonly scope?: string;
  /** The request's x-amz-date, e.g. 20130524T000000Z. */
  readonly date?: string;
}

export interface ChunkedPayloadDecoderOptions extends ChunkSigningContext {
  /**
   * 'signed' for STREAMING-AWS4-HMAC-SHA256-PAYLOAD(-TRAILER): every chunk carries a signature,
   * and signingKey, seedSignature, scope and date are required. 'unsigned' for
   * STREAMING-UNSIGNED-PAYLOAD-TRAILER.
   */
  readonly mode: 'signed' | 'unsigned';
  /** Whether trailers follow the last chunk. @default false for 'signed', true for 'unsigned' */
  readonly trailer?: boolean;
  /** x-amz-decoded-content-length: the decoded body must be exactly this long. */
  readonly expectedDecodedLength?: number;
  /** The largest chunk accepted, at most 16 MiB. @default 16 MiB */
  readonly maxChunkSize?: number;
}

export interface ChunkedPayloadEncoderOptions extends ChunkSigningContext {
  readonly mode: 'signed' | 'unsigned';
  /** Decoded bytes per chunk (the last chunk may be shorter). @default 65536 */
  readonly chunkSize?: number;
  /**
   * Trailers to send after the last chunk, or a function called once all data has passed (so it
   * can return a checksum of it). When set, the body is in the *-TRAILER format.
   */
  readonly trailers?: Readonly<Record<string, string>> | (() => Readonly<Record<string, string>>);
}

function malformed(problem: string): AirlockError {
  return new AirlockError('INVALID_ARGUMENT', 'malformed aws-chunked payload', { details: { reason: 'chunk-malformed', problem } });
}

function invalidOption(argument: string, message: string): AirlockError {
  return new AirlockError('INVALID_ARGUMENT', message, { details: { argument } });
}

interface ResolvedSigning {
  readonly signingKey: Buffer;
  readonly seedSignature: string;
  readonly scope: string;
  readonly date: string;
}

function resolveSigning(options: ChunkSigningContext): ResolvedSigning {
  assertBytes('signingKey', options.signingKey, 32);
  if (typeof options.seedSignature !== 'string' || !SIGNATURE.test(options.seedSignature)) {
    throw invalidOption('seedSignature', 'seedSignature must be a 64-digit hex signature');
  }
  if (typeof options.scope !== 'string' || !SCOPE.test(options.scope)) {
    throw invalidOption('scope', 'scope must be date/region/service/aws4_request');
  }
  if (typeof options.date !== 'string' || parseAmzDate(options.date) === undefined) {
    throw invalidOption('date', 'date must be an x-amz-date value such as 20130524T000000Z');
  }
  return {
    signingKey: Buffer.from(options.signingKey),
    seedSignature: options.seedSignature.toLowerCase(),
    scope: options.scope,
    date: options.date,
  };
}

/** The signature of one chunk (S3 "Signature Calculations for the Authorization Header: Transferring Payload in Multiple Chunks"). */
function chunkStringToSign(signing: ResolvedSigning, previous: string, chunkHash: string): string {
  return `${PAYLOAD_ALGORITHM}\n${signing.date}\n${signing.scope}\n${previous}\n${EMPTY_SHA256}\n${chunkHash}`;
}

/** The trailer signature: over `name:value\n` for each trailer, chained from the final chunk's signature. */
function trailerStringToSign(signing: ResolvedSigning, previous: string, canonicalTrailers: Buffer): string {
  return `${TRAILER_ALGORITHM}\n${signing.date}\n${signing.scope}\n${previous}\n${sha256Hex(canonicalTrailers)}`;
}

type DecoderState = 'chunk-header' | 'chunk-data' | 'chunk-crlf' | 'trailer' | 'done';

/**
 * A Transform from an aws-chunked body to the decoded payload. Signed chunks are held until their
 * signature checks, so nothing unauthenticated is emitted; an error (truncation included) destroys
 * the stream, and a consumer must then discard whatever it had already received.
 */
export class ChunkedPayloadDecoder extends Transform {
  /** The trailers (lower-case names), once the whole body has been read and checked. Rejects on any error. */
  readonly trailers: Promise<ReadonlyMap<string, string>>;

  readonly #signing: ResolvedSigning | undefined;
  readonly #trailer: boolean;
  readonly #expectedLength: number | undefined;
  readonly #maxChunkSize: number;
  #resolveTrailers!: (trailers: ReadonlyMap<string, string>) => void;
  #rejectTrailers!: (error: Error) => void;
  #settled = false;

  #state: DecoderState = 'chunk-header';
  #pending: Buffer = Buffer.alloc(0);
  #previousSignature = '';
  #chunkSignature = '';
  #remaining = 0;
  #chunkHash: Hash | undefined;
  #chunkPieces: Buffer[] = [];
  #decodedLength = 0;
  #trailerLines: Array<readonly [string, string]> = [];
  #trailerSignature: string | undefined;

  constructor(options: ChunkedPayloadDecoderOptions) {
    super();
    if (typeof options !== 'object' || options === null) throw invalidOption('options', 'options must be an object');
    if (options.mode !== 'signed' && options.mode !== 'unsigned') throw invalidOption('mode', "mode must be 'signed' or 'unsigned'");
    if (options.trailer !== undefined && typeof options.trailer !== 'boolean') throw invalidOption('trailer', 'trailer must be a boolean');
    const length = options.expectedDecodedLength;
    if (length !== undefined && (!Number.isSafeInteger(length) || length < 0)) {
      throw invalidOption('expectedDecodedLength', 'expectedDecodedLength must be a non-negative integer');
    }
    const maxChunkSize = options.maxChunkSize ?? AWS_CHUNKED_MAX_CHUNK_SIZE;
    if (!Number.isSafeInteger(maxChunkSize) || maxChunkSize < 1 || maxChunkSize > AWS_CHUNKED_MAX_CHUNK_SIZE) {
      throw invalidOption('maxChunkSize', `maxChunkSize must be an integer from 1 to ${AWS_CHUNKED_MAX_CHUNK_SIZE}`);
    }
    this.#signing = options.mode === 'signed' ? resolveSigning(options) : undefined;
    this.#previousSignature = this.#signing?.seedSignature ?? '';
    this.#trailer = options.trailer ?? options.mode === 'unsigned';
    this.#expectedLength = length;
    this.#maxChunkSize = maxChunkSize;
    this.trailers = new Promise<ReadonlyMap<string, string>>((resolve, reject) => {
      this.#resolveTrailers = resolve;
      this.#rejectTrailers = reject;
    });
    // Callers that only consume the data need not await the trailers; the stream reports the error.
    this.trailers.catch(() => undefined);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      this.#pending = this.#pending.byteLength === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
      this.#drain();
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  override _flush(callback: TransformCallback): void {
    if (this.#state !== 'done') {
      callback(malformed('truncated'));
      return;
    }
    if (this.#expectedLength !== undefined && this.#decodedLength !== this.#expectedLength) {
      callback(this.#lengthMismatch());
      return;
    }
    this.#settled = true;
    this.#resolveTrailers(new Map(this.#trailerLines));
    this.#wipe();
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.#settled) {
      this.#settled = true;
      this.#rejectTrailers(error ?? new AirlockError('ABORTED'));
    }
    this.#wipe();
    callback(error);
  }

  #wipe(): void {
    if (this.#signing !== undefined) zeroize(this.#signing.signingKey);
    this.#chunkPieces = [];
    this.#pending = Buffer.alloc(0);
  }

  #lengthMismatch(): AirlockError {
    return new AirlockError('INVALID_ARGUMENT', 'the decoded payload length differs from x-amz-decoded-content-length', {
      details: { reason: 'decoded-length-mismatch', expectedDecodedLength: this.#expectedLength ?? -1 },
    });
  }

  /** Takes one CRLF-terminated line from the pending bytes, or undefined if it has not fully arrived. */
  #takeLine(): string | undefined {
    const end = this.#pending.indexOf(CRLF);
    if (end < 0) {
      // Without a CRLF in the first MAX_LINE_LENGTH + 1 bytes, no valid line can follow.
      if (this.#pending.byteLength > MAX_LINE_LENGTH + 1) throw malformed('line-too-long');
      return undefined;
    }
    if (end > MAX_LINE_LENGTH) throw malformed('line-too-long');
    const line = this.#pending.subarray(0, end).toString('latin1');
    this.#pending = this.#pending.subarray(end + 2);
    return line;
  }

  #drain(): void {
    for (;;) {
      switch (this.#state) {
        case 'chunk-header': {
          const line = this.#takeLine();
          if (line === undefined) return;
          this.#startChunk(line);
          break;
        }
        case 'chunk-data': {
          if (this.#pending.byteLength === 0) return;
          const take = Math.min(this.#remaining, this.#pending.byteLength);
          const piece = this.#pending.subarray(0, take);
          this.#pending = this.#pending.subarray(take);
          this.#remaining -= take;
          if (this.#signing === undefined) this.#emit(piece);
          else {
            this.#chunkHash?.update(piece);
            // Copied: the chunk is held until its signature checks, and the writer owns `piece`.
            this.#chunkPieces.push(Buffer.from(piece));
          }
          if (this.#remaining === 0) this.#state = 'chunk-crlf';
          break;
        }
        case 'chunk-crlf': {
          if (this.#pending.byteLength < 2) return;
          if (this.#pending[0] !== 0x0d || this.#pending[1] !== 0x0a) throw malformed('missing-chunk-crlf');
          this.#pending = this.#pending.subarray(2);
          this.#endChunk();
          this.#state = 'chunk-header';
          break;
        }
        case 'trailer': {
          const line = this.#takeLine();
          if (line === undefined) return;
          if (line === '') this.#endTrailers();
          else this.#addTrailer(line);
          break;
        }
        case 'done': {
          if (this.#pending.byteLength > 0) throw malformed('trailing-data');
          return;
        }
      }
    }
  }

  #startChunk(line: string): void {
    const match = (this.#signing === undefined ? UNSIGNED_CHUNK_HEADER : SIGNED_CHUNK_HEADER).exec(line);
    if (match === null) throw malformed('chunk-header');
    const size = Number.parseInt(match[1] as string, 16);
    if (size > this.#maxChunkSize) throw malformed('chunk-too-large');
    this.#chunkSignature = match[2] ?? '';
    if (size === 0) {
      // The final chunk signs the empty string and ends the data; trailers (or a bare CRLF) follow.
      this.#verifyChunk(EMPTY_SHA256);
      this.#state = 'trailer';
      return;
    }
    this.#remaining = size;
    if (this.#signing !== undefined) {
      this.#chunkHash = createHash('sha256');
      this.#chunkPieces = [];
    }
    this.#state = 'chunk-data';
  }

  #endChunk(): void {
    if (this.#signing === undefined) return;
    this.#verifyChunk((this.#chunkHash as Hash).digest('hex'));
    this.#chunkHash = undefined;
    const pieces = this.#chunkPieces;
    this.#chunkPieces = [];
    for (const piece of pieces) this.#emit(piece);
  }

  #verifyChunk(chunkHash: string): void {
    if (this.#signing === undefined) return;
    const expected = signBytes(this.#signing.signingKey, chunkStringToSign(this.#signing, this.#previousSignature, chunkHash));
    if (!signatureMatches(expected, this.#chunkSignature)) throw authError('AUTH_SIGNATURE_MISMATCH', 'chunk-signature-mismatch');
    this.#previousSignature = expected.toString('hex');
  }

  #emit(piece: Buffer): void {
    this.#decodedLength += piece.byteLength;
    if (this.#expectedLength !== undefined && this.#decodedLength > this.#expectedLength) throw this.#lengthMismatch();
    this.push(piece);
  }

  #addTrailer(line: string): void {
    if (!this.#trailer) throw malformed('unexpected-trailer');
    if (this.#trailerSignature !== undefined) throw malformed('trailer-after-signature');
    if (this.#trailerLines.length + 1 > MAX_TRAILERS) throw malformed('too-many-trailers');
    const colon = line.indexOf(':');
    const name = colon < 0 ? '' : line.slice(0, colon).trim().toLowerCase();
    const value = colon < 0 ? '' : line.slice(colon + 1).trim();
    if (!TRAILER_NAME.test(name)) throw malformed('trailer-line');
    if (name === TRAILER_SIGNATURE) {
      if (this.#signing === undefined) throw malformed('unexpected-trailer-signature');
      if (!SIGNATURE.test(value)) throw malformed('trailer-signature');
      this.#trailerSignature = value;
      return;
    }
    if (this.#trailerLines.some(([existing]) => existing === name)) throw malformed('duplicate-trailer');
    this.#trailerLines.push([name, value]);
  }

  #endTrailers(): void {
    if (this.#signing !== undefined && this.#trailer) {
      if (this.#trailerSignature === undefined) throw authError('AUTH_SIGNATURE_MISMATCH', 'trailer-signature-missing');
      const canonical = Buffer.from(this.#trailerLines.map(([name, value]) => `${name}:${value}\n`).join(''), 'latin1');
      const expected = signBytes(this.#signing.signingKey, trailerStringToSign(this.#signing, this.#previousSignature, canonical));
      if (!signatureMatches(expected, this.#trailerSignature)) throw authError('AUTH_SIGNATURE_MISMATCH', 'trailer-signature-mismatch');
    }
    this.#state = 'done';
    if (this.#pending.byteLength > 0) throw malformed('trailing-data');
  }
}

/** Encodes a payload as an aws-chunked body (what an S3 client sends), for tests and tools. */
export class ChunkedPayloadEncoder extends Transform {
  readonly #signing: ResolvedSigning | undefined;
  readonly #chunkSize: number;
  readonly #trailers: ChunkedPayloadEncoderOptions['trailers'];
  #previousSignature: string;
  #buffered: Buffer[] = [];
  #bufferedLength = 0;

  constructor(options: ChunkedPayloadEncoderOptions) {
    super();
    if (typeof options !== 'object' || options === null) throw invalidOption('options', 'options must be an object');
    if (options.mode !== 'signed' && options.mode !== 'unsigned') throw invalidOption('mode', "mode must be 'signed' or 'unsigned'");
    const chunkSize = options.chunkSize ?? 65_536;
    if (!Number.isSafeInteger(chunkSize) || chunkSize < 1 || chunkSize > AWS_CHUNKED_MAX_CHUNK_SIZE) {
      throw invalidOption('chunkSize', `chunkSize must be an integer from 1 to ${AWS_CHUNKED_MAX_CHUNK_SIZE}`);
    }
    const trailers = options.trailers;
    if (trailers !== undefined && typeof trailers !== 'function' && (typeof trailers !== 'object' || trailers === null)) {
      throw invalidOption('trailers', 'trailers must be an object or a function');
    }
    this.#signing = options.mode === 'signed' ? resolveSigning(options) : undefined;
    this.#previousSignature = this.#signing?.seedSignature ?? '';
    this.#chunkSize = chunkSize;
    this.#trailers = trailers;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#buffered.push(chunk);
    this.#bufferedLength += chunk.byteLength;
    while (this.#bufferedLength >= this.#chunkSize) {
      const all = Buffer.concat(this.#buffered, this.#bufferedLength);
      this.#writeChunk(all.subarray(0, this.#chunkSize));
      const rest = all.subarray(this.#chunkSize);
      this.#buffered = rest.byteLength > 0 ? [rest] : [];
      this.#bufferedLength = rest.byteLength;
    }
    callback();
  }

  override _flush(callback: TransformCallback): void {
    try {
      if (this.#bufferedLength > 0) this.#writeChunk(Buffer.concat(this.#buffered, this.#bufferedLength));
      this.#buffered = [];
      this.#writeChunk(Buffer.alloc(0));
      if (this.#trailers !== undefined) {
        const trailers = typeof this.#trailers === 'function' ? this.#trailers() : this.#trailers;
        const canonical = Object.entries(trailers)
          .map(([name, value]) => `${name.toLowerCase()}:${value}\n`)
          .join('');
        this.push(Buffer.from(canonical.replace(/\n/g, '\r\n'), 'latin1'));
        if (this.#signing !== undefined) {
          const signature = signHex(
            this.#signing.signingKey,
            trailerStringToSign(this.#signing, this.#previousSignature, Buffer.from(canonical, 'latin1')),
          );
          this.push(Buffer.from(`${TRAILER_SIGNATURE}:${signature}\r\n`, 'latin1'));
        }
      }
      this.push(CRLF);
      if (this.#signing !== undefined) zeroize(this.#signing.signingKey);
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  #writeChunk(data: Buffer): void {
    const size = data.byteLength.toString(16);
    if (this.#signing === undefined) {
      this.push(Buffer.from(`${size}\r\n`, 'latin1'));
    } else {
      const signature = signHex(this.#signing.signingKey, chunkStringToSign(this.#signing, this.#previousSignature, sha256Hex(data)));
      this.#previousSignature = signature;
      this.push(Buffer.from(`${size};chunk-signature=${signature}\r\n`, 'latin1'));
    }
    // The final (empty) chunk's CRLF is the one that ends the trailer section, written by _flush.
    if (data.byteLength > 0) this.push(Buffer.concat([data, CRLF]));
  }
}
