// The planes' recent log output, kept in `airlock up`'s memory as it passes to the terminal, so that `airlock verify` can search it for a canary (docs/verify.md, runs.canary).
import { Transform, type Readable, type Writable } from 'node:stream';

/** How much of the planes' output `airlock up` keeps: the most recent 8 MiB. */
export const LOG_TAIL_BYTES = 8 * 1024 * 1024;

export class LogTail {
  readonly #chunks: Buffer[] = [];
  #bytes = 0;

  constructor(readonly maxBytes: number = LOG_TAIL_BYTES) {}

  /** Bytes held now: at most `maxBytes` plus one chunk. */
  get bytes(): number {
    return this.#bytes;
  }

  push(chunk: Buffer): void {
    this.#chunks.push(chunk);
    this.#bytes += chunk.length;
    // Whole chunks go, oldest first, while what stays still covers the last `maxBytes`.
    for (let first = this.#chunks[0]; first !== undefined && this.#bytes - first.length >= this.maxBytes; first = this.#chunks[0]) {
      this.#chunks.shift();
      this.#bytes -= first.length;
    }
  }

  /** What is held, oldest first. */
  contents(): Buffer {
    return Buffer.concat(this.#chunks, this.#bytes);
  }

  /** Copies `source` to `sink` as it comes, with the sink's backpressure, keeping what passes; `sink` is not ended with it. */
  tee(source: Readable, sink: Writable): void {
    const push = (chunk: Buffer): void => this.push(chunk);
    source
      .pipe(
        new Transform({
          transform(chunk: Buffer, _encoding, done) {
            push(chunk);
            done(null, chunk);
          },
        }),
      )
      .pipe(sink, { end: false });
  }
}
