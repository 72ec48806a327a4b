// Builds a real task bundle with esbuild, as the CLI does: the user's module behind the SDK runtime's entry, one ESM file.
import { build } from 'esbuild';

/** Bundles `modulePath` (absolute) and @airlock/sdk/runtime into one ESM file's bytes. */
export async function buildTaskBundle(modulePath: string): Promise<Buffer> {
  const result = await build({
    stdin: {
      contents: [
        `import * as tasks from ${JSON.stringify(modulePath)};`,
        `import { runActionMain } from '@airlock/sdk/runtime';`,
        'process.exitCode = await runActionMain(tasks);',
      ].join('\n'),
      resolveDir: process.cwd(),
      loader: 'ts',
      sourcefile: 'entry.ts',
    },
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    // The workspace packages' TypeScript sources, as in the tests.
    conditions: ['airlock-source'],
    // CommonJS dependencies bundled into ESM still call require() for Node's built-ins.
    banner: { js: "import { createRequire as __airlockCreateRequire } from 'node:module'; const require = __airlockCreateRequire(import.meta.url);" },
    logLevel: 'silent',
  });
  const [file] = result.outputFiles;
  if (file === undefined) throw new Error('esbuild produced no output');
  return Buffer.from(file.contents);
}
