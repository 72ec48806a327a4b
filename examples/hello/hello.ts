// Example function task: takes a name, returns a greeting that contains it.
// Run it: npx airlock run examples/hello/hello.ts --input name=World --wait
import { task } from '@airlock/sdk';
import { z } from 'zod';

export const hello = task(
  {
    name: 'hello',
    description: 'Greets someone by name.',
    inputs: z.object({ name: z.string().min(1).describe('Who to greet') }),
    outputs: z.object({ greeting: z.string() }),
    timeout: '30s',
  },
  async ({ name }, ctx) => {
    ctx.log.info('greeting someone');
    return { greeting: `Hello, ${name}!` };
  },
);
