// Command tasks: run any executable with arguments built from the inputs; outputs from its stdout or from files it writes.
import { lstat, mkdir, readFile, realpath, writeFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, normalize, relative, sep } from 'node:path';
import type { StandardSchemaV1 } from '@standard-schema/spec';
import { AirlockError } from '@airlock/common/errors';
import { commandRuntimeOf, DEFAULT_COMMAND_PATH } from './execute.js';
import { TaskValidationError } from './errors.js';
import { runCommand } from './internal/run-command.js';
import { markSystemError } from './internal/system-error.js';
import { defineTask, type CommandSpec, type Task, type TaskContext, type TaskOptions } from './task.js';

/** One output field read from a file the command wrote, relative to its working directory. */
export type OutputFile = string | { readonly path: string; readonly format?: 'text' | 'json' };

/**
 * Where a command task's outputs come from:
 * - `'stdout-json'`: its standard output, parsed as JSON;
 * - `{ stdout: parse }`: its standard output as text, turned into outputs by `parse`;
 * - `{ files: { field: 'out.txt' | { path, format } } }`: one output field per file it wrote in
 *   its working directory, as text (the default) or parsed as JSON.
 */
export type OutputsFrom<O extends StandardSchemaV1> =
  | 'stdout-json'
  | { readonly stdout: (text: string) => StandardSchemaV1.InferInput<O> }
  | { readonly files: Readonly<Record<string, OutputFile>> };

/** The options of commandTask(). */
export interface CommandTaskOptions<I extends StandardSchemaV1, O extends StandardSchemaV1> extends TaskOptions<I, O> {
  /** The executable and its arguments, from the validated inputs. Never run through a shell; a bare name is looked up on PATH. */
  readonly command: (inputs: StandardSchemaV1.InferOutput<I>) => readonly [string, ...string[]];
  readonly outputsFrom: OutputsFrom<O>;
  /** Standard input for the command, from the inputs. @default none (stdin is /dev/null) */
  readonly stdin?: (inputs: StandardSchemaV1.InferOutput<I>) => string | Uint8Array;
  /** Files to write into the working directory before the command starts: relative path → content. */
  readonly files?: (inputs: StandardSchemaV1.InferOutput<I>) => Readonly<Record<string, string | Uint8Array>>;
  /**
   * Extra environment variables. The command sees only these and PATH: nothing of the executor's
   * own environment. Their names are recorded in the spec; their values are not.
   */
  readonly env?: Readonly<Record<string, string>>;
  /** The most stdout kept for stdout outputs; more fails the attempt (TASK_OUTPUT_INVALID). @default 16 MiB */
  readonly maxStdoutBytes?: number;
}

/** How much of stderr a COMMAND_FAILED record keeps. */
export const STDERR_TAIL_BYTES = 4096;
/** The largest output file read. */
const MAX_OUTPUT_FILE_BYTES = 64 * 1024 * 1024;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Defines a task that runs an executable:
 *
 * ```ts
 * export const wordCount = commandTask({
 *   name: 'word-count',
 *   inputs: z.object({ text: z.string() }),
 *   outputs: z.object({ lines: z.number(), words: z.number(), bytes: z.number() }),
 *   command: () => ['wc', '-l', '-w', '-c'],
 *   stdin: ({ text }) => text,
 *   outputsFrom: { stdout: (out) => { const [lines, words, bytes] = out.trim().split(/\s+/).map(Number); return { lines, words, bytes }; } },
 * });
 * ```
 *
 * A non-zero exit fails the attempt with CommandFailedError (COMMAND_FAILED, a USER error whose
 * exit status and stderr tail are data); an executable that cannot be started, COMMAND_START_FAILED.
 */
export function commandTask<I extends StandardSchemaV1, O extends StandardSchemaV1>(options: CommandTaskOptions<I, O>): Task<I, O> {
  if (typeof options !== 'object' || options === null) throw new AirlockError('TASK_DEFINITION_INVALID', 'commandTask: options must be an object');
  const name = String(options.name);
  const invalid = (message: string): AirlockError => new AirlockError('TASK_DEFINITION_INVALID', `task "${name}": ${message}`);
  if (typeof options.command !== 'function') throw invalid('command must be a function of the inputs returning [executable, ...arguments]');
  if (options.stdin !== undefined && typeof options.stdin !== 'function') throw invalid('stdin must be a function of the inputs');
  if (options.files !== undefined && typeof options.files !== 'function') throw invalid('files must be a function of the inputs');
  const env = options.env ?? {};
  for (const [key, value] of Object.entries(env)) {
    if (!ENV_NAME.test(key) || typeof value !== 'string' || value.includes('\0')) throw invalid(`env.${key} must be a variable name with a string value`);
  }
  const maxStdoutBytes = options.maxStdoutBytes ?? 16 * 1024 * 1024;
  if (!Number.isSafeInteger(maxStdoutBytes) || maxStdoutBytes < 1) throw invalid('maxStdoutBytes must be a positive integer');

  const { outputsFrom } = options;
  let spec: CommandSpec;
  const envNames = Object.keys(env).sort();
  if (outputsFrom === 'stdout-json') {
    spec = { outputsFrom: 'stdout-json', envNames };
  } else if (typeof outputsFrom === 'object' && outputsFrom !== null && 'stdout' in outputsFrom && typeof outputsFrom.stdout === 'function') {
    spec = { outputsFrom: 'stdout-text', envNames };
  } else if (typeof outputsFrom === 'object' && outputsFrom !== null && 'files' in outputsFrom && typeof outputsFrom.files === 'object' && outputsFrom.files !== null) {
    const outputFiles: Record<string, { path: string; format: 'text' | 'json' }> = {};
    for (const [field, file] of Object.entries(outputsFrom.files)) {
      const path = typeof file === 'string' ? file : file.path;
      const format = typeof file === 'string' ? 'text' : (file.format ?? 'text');
      if (format !== 'text' && format !== 'json') throw invalid(`outputsFrom.files.${field}: format must be 'text' or 'json'`);
      outputFiles[field] = { path: checkRelativePath(path, () => invalid(`outputsFrom.files.${field}: the path must be relative and stay inside the working directory`)), format };
    }
    if (Object.keys(outputFiles).length === 0) throw invalid('outputsFrom.files names no files');
    spec = { outputsFrom: 'files', outputFiles, envNames };
  } else {
    throw invalid("outputsFrom must be 'stdout-json', { stdout: parse } or { files: { field: path } }");
  }

  return defineTask(options, 'command', Object.freeze(spec), async (inputs, ctx: TaskContext) => {
    const runtime = commandRuntimeOf(ctx) ?? { env: { PATH: DEFAULT_COMMAND_PATH }, killGraceMs: 5000 };
    const argv = options.command(inputs);
    if (!Array.isArray(argv) || argv.length === 0 || !argv.every((arg) => typeof arg === 'string' && !arg.includes('\0')) || argv[0] === '') {
      throw new AirlockError('TASK_FAILED_FINAL', `task "${name}": command() must return a non-empty array of strings without NUL bytes`);
    }
    const stdin = options.stdin?.(inputs);
    const files = options.files?.(inputs) ?? {};
    for (const [path, content] of Object.entries(files)) {
      const relativePath = checkRelativePath(path, () => new AirlockError('TASK_FAILED_FINAL', `task "${name}": files() path ${JSON.stringify(path)} must be relative and stay inside the working directory`));
      try {
        const target = join(ctx.workDir, relativePath);
        await mkdir(dirname(target), { recursive: true, mode: 0o700 });
        await writeFile(target, content, { mode: 0o600, flag: 'wx' });
      } catch (error) {
        throw markSystemError(error);
      }
    }

    const stdout = await runCommand({
      argv: argv as readonly [string, ...string[]],
      cwd: ctx.workDir,
      env: { ...runtime.env, HOME: ctx.workDir, TMPDIR: ctx.workDir, ...env },
      ...(stdin === undefined ? {} : { stdin }),
      signal: ctx.signal,
      killGraceMs: runtime.killGraceMs,
      captureStdout: spec.outputsFrom !== 'files',
      maxStdoutBytes,
      stderrTailBytes: STDERR_TAIL_BYTES,
    });

    if (outputsFrom === 'stdout-json') return parseJson(name, '(stdout)', stdout.toString('utf8'));
    if ('stdout' in outputsFrom) return outputsFrom.stdout(stdout.toString('utf8'));
    const outputs: Record<string, unknown> = {};
    for (const [field, file] of Object.entries(spec.outputFiles ?? {})) {
      const text = await readOutputFile(name, ctx.workDir, field, file.path);
      outputs[field] = file.format === 'json' ? parseJson(name, field, text) : text;
    }
    return outputs;
  });
}

/** Normalises a relative path, refusing absolute paths and any that climb out of the working directory. */
function checkRelativePath(path: unknown, error: () => AirlockError): string {
  if (typeof path !== 'string' || path === '' || path.includes('\0') || isAbsolute(path)) throw error();
  const normalised = normalize(path);
  if (normalised === '..' || normalised.startsWith(`..${sep}`) || normalised === '.') throw error();
  return normalised;
}

/** Reads an output file; a missing file, a symbolic link, or one resolving outside the working directory is the task's fault. */
async function readOutputFile(taskName: string, workDir: string, field: string, path: string): Promise<string> {
  const missing = (why: string): TaskValidationError => new TaskValidationError('TASK_OUTPUT_INVALID', taskName, [{ path: [field], message: `${why} (${path})` }]);
  const target = join(workDir, path);
  let info;
  try {
    info = await lstat(target);
  } catch {
    throw missing('the command did not write the output file');
  }
  if (!info.isFile()) throw missing('the output is not a regular file');
  const [root, real] = await Promise.all([realpath(workDir), realpath(target)]);
  const inside = relative(root, real);
  if (inside.startsWith('..') || isAbsolute(inside)) throw missing('the output file is outside the working directory');
  if (info.size > MAX_OUTPUT_FILE_BYTES) throw missing(`the output file is larger than ${MAX_OUTPUT_FILE_BYTES} bytes`);
  return readFile(target, 'utf8');
}

function parseJson(taskName: string, field: string, text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new TaskValidationError('TASK_OUTPUT_INVALID', taskName, [{ path: field === '(stdout)' ? [] : [field], message: `${field === '(stdout)' ? 'stdout' : 'the file'} is not valid JSON` }]);
  }
}
