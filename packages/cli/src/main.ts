#!/usr/bin/env node
// The `airlock` command-line entry point: parses arguments and dispatches to commands.
import { AirlockError } from '@airlock/common';
import { createProgram } from './program.js';

try {
  await createProgram().parseAsync(process.argv);
} catch (error) {
  const e = AirlockError.from(error);
  process.stderr.write(`airlock: ${e.code}: ${e.message}\n`);
  process.exitCode = 1;
}
