// Tests for LogTail: the last N bytes of the planes' output, passed on unchanged.
import { PassThrough, Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { describe, expect, it } from 'vitest';
import { LogTail } from './log-tail.js';

describe('LogTail', () => {
  it('keeps the most recent bytes, dropping whole chunks oldest first', () => {
    const tail = new LogTail(10);
    for (const part of ['aaaa', 'bbbb', 'cccc', 'dddd']) tail.push(Buffer.from(part));
    // 16 bytes seen; "bbbbccccdddd" still covers the last 10, "ccccdddd" would not.
    expect(tail.contents().toString()).toBe('bbbbccccdddd');
    expect(tail.bytes).toBe(12);
  });

  it('passes what it keeps on to the sink unchanged, and leaves the sink open', async () => {
    const tail = new LogTail(1024);
    const sink = new PassThrough();
    tail.tee(Readable.from([Buffer.from('{"msg":"one"}\n'), Buffer.from('{"msg":"two"}\n')]), sink);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(sink.writableEnded).toBe(false);
    sink.end();
    expect(await text(sink)).toBe('{"msg":"one"}\n{"msg":"two"}\n');
    expect(tail.contents().toString()).toBe('{"msg":"one"}\n{"msg":"two"}\n');
  });
});
