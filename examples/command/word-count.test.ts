// Unit tests of the word-count command example: runs the real `wc` through the SDK's local harness.
import { runTaskLocally } from '@airlock/sdk/testing';
import { describe, expect, it } from 'vitest';
import { wordCount } from './word-count.js';

describe('examples/command', () => {
  it('counts lines, words and bytes with wc', async () => {
    const text = 'one two three\nfour five\nsix\n';
    const result = await runTaskLocally(wordCount, { text });
    expect(result).toMatchObject({ ok: true, outputs: { lines: 3, words: 6, bytes: Buffer.byteLength(text) } });
  });

  it('counts multi-byte characters as bytes', async () => {
    const result = await runTaskLocally(wordCount, { text: 'héllo wörld' });
    expect(result).toMatchObject({ ok: true, outputs: { lines: 0, words: 2, bytes: 13 } });
  });

  it('records the command in the spec without the inputs', () => {
    expect(wordCount.spec).toMatchObject({ kind: 'command', command: { outputsFrom: 'stdout-text', envNames: [] }, retries: { limit: 1 } });
  });
});
