// Example failing task: always throws, so its retries run out and the run ends FAILED with a typed error record.
// Run it: npx airlock run examples/failing/failing.ts --input reason=demo --wait
import { task } from '@airlock/sdk';
import { z } from 'zod';

export const failing = task(
  {
    name: 'failing',
    description: 'Always fails; shows retries and error records.',
    inputs: z.object({ reason: z.string().default('no reason given') }),
    outputs: z.object({}),
    // Two retries, quickly, so the example ends within a second or so.
    retries: { limit: 2, initialDelay: '100ms', maxDelay: '500ms' },
    timeout: '30s',
  },
  async ({ reason }, ctx) => {
    ctx.log.warn(`attempt ${ctx.attempt} is about to fail`);
    // The message quotes an input, so it is data: it stays in the data plane and reaches only the
    // client (sealed); the control plane keeps the code TASK_FAILED, kind USER and retryable only.
    throw new Error(`failing on purpose: ${reason}`);
  },
);
