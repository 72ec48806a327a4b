#!/usr/bin/env node
// The `airlock` command-line entry point: parses arguments and dispatches to commands.
import { AirlockError } from '@airlock/common';
import { createProgram } from './program.js';

// The AWS SDK warns on every start that its 2027 releases will need Node 22. Airlock pins SDK
// versions that support Node 20 (see package.json), so the notice is noise for users. The SDK's own
// switch silences only that notice, and plane processes started by `airlock up` inherit it.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

try {
  await createProgram().parseAsync(process.argv);
} catch (error) {
  const e = AirlockError.from(error);
  process.stderr.write(`airlock: ${e.code}: ${e.message}\n`);
  process.exitCode = 1;
}
