#!/usr/bin/env node
// The `airlock` command-line entry point: parses arguments and dispatches to commands.
import { AirlockError } from '@airlock/common';
import { createProgram } from './program.js';

// The AWS SDK warns on every start that its 2027 releases will need Node 22. Airlock pins SDK
// versions that support Node 20 (see package.json), so the notice is noise for users; drop only it.
const emitWarning = process.emitWarning.bind(process);
process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
  const type = typeof rest[0] === 'string' ? rest[0] : (rest[0] as { type?: string } | undefined)?.type;
  const name = warning instanceof Error ? warning.name : type;
  if (name === 'NodeVersionSupportWarning') return;
  (emitWarning as (...args: unknown[]) => void)(warning, ...rest);
});

try {
  await createProgram().parseAsync(process.argv);
} catch (error) {
  const e = AirlockError.from(error);
  process.stderr.write(`airlock: ${e.code}: ${e.message}\n`);
  process.exitCode = 1;
}
