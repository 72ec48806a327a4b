#!/usr/bin/env node
// The `airlock` command-line entry point: parses arguments and dispatches to commands.
import { readFileSync } from 'node:fs';
import { AirlockError, parseDescriptorLimit } from '@airlock/common';
import { createProgram } from './program.js';

/** This process's descriptor limit, read before any command loads: once the loader has run out, the file cannot be opened. */
function readDescriptorLimit(): string {
  try {
    return String(parseDescriptorLimit(readFileSync('/proc/self/limits', 'utf8')) ?? 'unknown');
  } catch {
    return 'unknown'; // Not Linux.
  }
}
const descriptorLimit = readDescriptorLimit();

/**
 * Node's module resolver reports a package.json that it could not open for want of a descriptor as a
 * missing package (ERR_MODULE_NOT_FOUND, not EMFILE), so a command whose modules fail to load says
 * which of the two it can be, with this process's descriptor limit.
 */
function explain(error: unknown): AirlockError {
  if ((error as { code?: unknown } | undefined)?.code !== 'ERR_MODULE_NOT_FOUND') return AirlockError.from(error);
  return new AirlockError(
    'UNAVAILABLE',
    `a module of Airlock could not be loaded: the installation is incomplete (run npm install), or the process ran out of file descriptors while loading it (its limit is ${descriptorLimit}; the planes need about 128 to start: raise it with \`ulimit -n\`)`,
    { cause: error },
  );
}

// The AWS SDK warns on every start that its 2027 releases will need Node 22. Airlock pins SDK
// versions that support Node 20 (see package.json), so the notice is noise for users. The SDK's own
// switch silences only that notice, and plane processes started by `airlock up` inherit it.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

try {
  await createProgram().parseAsync(process.argv);
} catch (error) {
  const e = explain(error);
  process.stderr.write(`airlock: ${e.code}: ${e.message}\n`);
  process.exitCode = 1;
}
