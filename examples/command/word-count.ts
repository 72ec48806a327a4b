// Example command task: counts the lines, words and bytes of a text with the standard Unix `wc`.
// Run it: npx airlock run examples/command/word-count.ts --input "text=one two three" --wait
import { commandTask } from '@airlock/sdk';
import { z } from 'zod';

export const wordCount = commandTask({
  name: 'word-count',
  description: 'Counts lines, words and bytes with wc.',
  inputs: z.object({ text: z.string() }),
  outputs: z.object({ lines: z.number().int(), words: z.number().int(), bytes: z.number().int() }),
  // No shell: wc gets exactly these arguments, and the text on its standard input.
  command: () => ['wc', '-l', '-w', '-c'],
  stdin: ({ text }) => text,
  // wc prints "lines words bytes" (in that order, whatever order the flags are in). Anything else
  // parses as NaN, which the output schema rejects (TASK_OUTPUT_INVALID).
  outputsFrom: {
    stdout: (out) => {
      const [lines = NaN, words = NaN, bytes = NaN] = out.trim().split(/\s+/).map(Number);
      return { lines, words, bytes };
    },
  },
  timeout: '1m',
  retries: 1,
});
