// Task bundles: esbuild turns a user's module and its dependencies into one ES module behind the SDK runtime's entry, named by its SHA-256 (docs/runs.md).
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { build, type Message } from 'esbuild';
import { AirlockError, failureReason } from '@airlock/common';
import { ACTION_PROTOCOL_VERSION, type BundleDescription } from '@airlock/sdk/runtime';

/** One task a bundle describes. */
export type DescribedTask = BundleDescription['tasks'][number];

const execFileAsync = promisify(execFile);

/** The default largest bundle, as the data plane's default (docs/runs.md, "Limits"). */
export const DEFAULT_MAX_BUNDLE_BYTES = 64 * 1024 * 1024;

export interface TaskBundle {
  /** The bundle's bytes: one ES module that runs `runActionMain` over the user's module. */
  readonly code: Buffer;
  /** SHA-256 of `code`, lowercase hex. */
  readonly sha256: string;
  readonly size: number;
}

/** The directory of the CLI's own node_modules, where `@airlock/sdk/runtime` resolves when the user's project lacks it. */
function cliNodeModules(): string[] {
  const here = dirname(fileURLToPath(import.meta.url));
  // packages/cli/{src,dist}/internal → the package, the workspace root.
  return [resolve(here, '..', '..', 'node_modules'), resolve(here, '..', '..', '..', '..', 'node_modules')];
}

function formatMessages(messages: readonly Message[]): string {
  return messages
    .slice(0, 5)
    .map((message) => (message.location === null ? message.text : `${message.location.file}:${message.location.line}:${message.location.column}: ${message.text}`))
    .join('; ');
}

/**
 * Bundles `modulePath` (TypeScript or JavaScript) with everything it imports into one ES module for
 * Node 20, behind the SDK runtime's entry. Paths in the output are relative to the module's
 * directory, so the same code bundled from anywhere has the same digest. Throws
 * TASK_DEFINITION_INVALID (with esbuild's first errors) when the module does not build, and
 * PAYLOAD_TOO_LARGE above `maxBytes`.
 */
export async function bundleTaskModule(modulePath: string, options: { readonly maxBytes?: number } = {}): Promise<TaskBundle> {
  const entryPath = resolve(modulePath);
  const moduleDir = dirname(entryPath);
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_BUNDLE_BYTES;
  try {
    await stat(entryPath);
  } catch (error) {
    throw new AirlockError('NOT_FOUND', `Cannot read the task module ${modulePath}: ${failureReason(error)}`, { details: { argument: 'file' } });
  }
  const entry = [
    `import * as tasks from ${JSON.stringify(`./${entryPath.slice(moduleDir.length + 1).replaceAll('\\', '/')}`)};`,
    `import { runActionMain } from '@airlock/sdk/runtime';`,
    // Exit as soon as the result is written: a timer or socket the task left open must not keep the attempt alive until its timeout.
    'process.exit(await runActionMain(tasks));',
  ].join('\n');
  let result;
  try {
    result = await build({
      stdin: { contents: entry, resolveDir: moduleDir, sourcefile: 'airlock-entry.mjs', loader: 'js' },
      absWorkingDir: moduleDir,
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      write: false,
      logLevel: 'silent',
      legalComments: 'none',
      nodePaths: cliNodeModules(),
      // CommonJS dependencies call require(); give the ES module one.
      banner: { js: "import { createRequire as __airlockCreateRequire } from 'node:module'; const require = __airlockCreateRequire(import.meta.url);" },
    });
  } catch (error) {
    const errors = (error as { errors?: Message[] }).errors;
    throw new AirlockError('TASK_DEFINITION_INVALID', `Cannot bundle ${modulePath}: ${errors === undefined ? failureReason(error) : formatMessages(errors)}`, {
      details: { argument: 'file' },
    });
  }
  const output = result.outputFiles[0];
  if (output === undefined) throw new AirlockError('INTERNAL', `esbuild produced no output for ${modulePath}`);
  const code = Buffer.from(output.contents);
  if (code.length > maxBytes) {
    throw new AirlockError('PAYLOAD_TOO_LARGE', `The bundle of ${modulePath} is ${code.length} bytes, over the ${maxBytes}-byte maximum`, {
      details: { size: code.length, limit: maxBytes },
    });
  }
  return { code, sha256: createHash('sha256').update(code).digest('hex'), size: code.length };
}

/** What a failed execFile captured on standard error. */
function stderrOf(error: unknown): string {
  const stderr = (error as { stderr?: unknown }).stderr;
  return typeof stderr === 'string' ? stderr : Buffer.isBuffer(stderr) ? stderr.toString('utf8') : '';
}

/** The error line of what Node printed when the module threw at load time (`Error: …`), else its last lines. */
function loadFailure(stderr: string): string | undefined {
  const lines = stderr.split('\n').map((line) => line.trimEnd());
  const thrown = lines.find((line) => /^[A-Za-z]*(?:Error|Exception)\b.*:/.test(line) || /^Uncaught\b/.test(line));
  if (thrown !== undefined) return thrown;
  const tail = lines.filter((line) => line.length > 0 && !/^\s+at /.test(line) && !/^Node\.js v/.test(line)).slice(-3).join(' / ');
  return tail.length > 0 ? tail : undefined;
}

/**
 * Runs the bundle's `describe` command in a scratch directory with a minimal environment, as the
 * executor would, and returns the tasks it defines with their specs.
 */
export async function describeBundle(bundle: TaskBundle, options: { readonly timeoutMs?: number } = {}): Promise<BundleDescription> {
  const dir = await mkdtemp(join(tmpdir(), 'airlock-describe-'));
  try {
    const file = join(dir, 'bundle.mjs');
    await writeFile(file, bundle.code, { mode: 0o600 });
    let stdout: string;
    try {
      ({ stdout } = await execFileAsync(process.execPath, [file, 'describe'], {
        cwd: dir,
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, TMPDIR: dir },
        timeout: options.timeoutMs ?? 30_000,
        maxBuffer: 16 * 1024 * 1024,
      }));
    } catch (error) {
      throw new AirlockError('TASK_DEFINITION_INVALID', `The bundled module failed to load: ${loadFailure(stderrOf(error)) ?? failureReason(error)}`);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(stdout);
    } catch {
      throw new AirlockError('TASK_DEFINITION_INVALID', 'The bundle described itself with something other than JSON');
    }
    const description = parsed as BundleDescription;
    if (description?.version !== ACTION_PROTOCOL_VERSION || !Array.isArray(description.tasks)) {
      throw new AirlockError('TASK_DEFINITION_INVALID', 'The bundle speaks another version of the action protocol; rebuild it with this CLI');
    }
    return description;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The task to run: the named one (by task name or export name), else the module's only task. */
export function pickTask(description: BundleDescription, modulePath: string, name: string | undefined): DescribedTask {
  const tasks = description.tasks;
  if (tasks.length === 0) throw new AirlockError('TASK_NOT_FOUND', `${modulePath} exports no task (define one with task() from @airlock/sdk and export it)`);
  if (name === undefined) {
    if (tasks.length === 1 && tasks[0] !== undefined) return tasks[0];
    throw new AirlockError('INVALID_ARGUMENT', `${modulePath} exports ${tasks.length} tasks (${tasks.map((t) => t.spec.name).join(', ')}): name the one to run`, {
      details: { argument: 'task' },
    });
  }
  const found = tasks.find((t) => t.spec.name === name || t.exportNames.includes(name));
  if (found === undefined) {
    throw new AirlockError('TASK_NOT_FOUND', `${modulePath} has no task "${name}"; it has ${tasks.map((t) => t.spec.name).join(', ')}`, { details: { argument: 'task' } });
  }
  return found;
}
