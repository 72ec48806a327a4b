// @airlock/sdk/runtime: the entry point of a task bundle's process, spoken to by the data plane's executor through files.
import { readFile, writeFile } from 'node:fs/promises';
import { AirlockError } from '@airlock/common/errors';
import { findTask, discoverTasks } from './discover.js';
import { systemErrorRecord, failedPhaseOf } from './error-record.js';
import { executeTask, type ExecuteResult, type TaskLogEntry } from './execute.js';
import { ACTION_EXIT_OK, ACTION_EXIT_USAGE, ACTION_PROTOCOL_VERSION, type ActionRequest, type ActionResult, type BundleDescription } from './action-protocol.js';

// The protocol's types live in the SDK's main entry (the planes may import it, not this runtime); re-exported here for bundles.
export { ACTION_EXIT_OK, ACTION_EXIT_USAGE, ACTION_PROTOCOL_VERSION, type ActionRequest, type ActionResult, type BundleDescription } from './action-protocol.js';

/** Where runActionMain writes; the defaults are the process's own streams. */
export interface RunActionMainOptions {
  readonly argv?: readonly string[];
  readonly stdout?: (text: string) => void;
  readonly stderr?: (text: string) => void;
  /** Where `run --request -` reads its request. @default process.stdin */
  readonly stdin?: NodeJS.ReadableStream;
}

/** The largest request read from standard input: a request is a few hundred bytes of paths and ids. */
const MAX_STDIN_REQUEST_BYTES = 64 * 1024;

/** Reads standard input to its end (the executor closes it after the request), refusing more than MAX_STDIN_REQUEST_BYTES. */
async function readStandardInput(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of stream) {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    length += bytes.length;
    if (length > MAX_STDIN_REQUEST_BYTES) throw new AirlockError('INVALID_ARGUMENT', `the request on standard input is larger than ${MAX_STDIN_REQUEST_BYTES} bytes`);
    chunks.push(bytes);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * The main function of a task bundle. The CLI bundles a user's module behind an entry like
 *
 * ```ts
 * import * as tasks from './user-module.js';
 * import { runActionMain } from '@airlock/sdk/runtime';
 * process.exitCode = await runActionMain(tasks);
 * ```
 *
 * and the executor starts it (in the attempt's working directory, with a minimal environment) as
 * - `describe`: prints a BundleDescription (JSON) on stdout;
 * - `run --request <file>` (or `-`: read from standard input, so the executor can start the process
 *   and load the bundle before an attempt is assigned to it): runs one attempt through executeTask with the working directory as
 *   ctx.workDir, writes the ActionResult to `resultPath`, and writes the task's log entries to
 *   stderr as JSON lines. SIGTERM or SIGINT aborts the attempt (TASK_ABORTED).
 *
 * Returns the exit code: 0 when the result was written (whether the task succeeded or not), 2 for
 * a malformed command line or request (the reason on stderr, and no result file).
 */
export async function runActionMain(moduleNamespace: Readonly<Record<string, unknown>>, options: RunActionMainOptions = {}): Promise<number> {
  const argv = options.argv ?? process.argv.slice(2);
  const stdout = options.stdout ?? ((text: string) => void process.stdout.write(text));
  const stderr = options.stderr ?? ((text: string) => void process.stderr.write(text));
  const usage = (message: string): number => {
    stderr(`${JSON.stringify({ level: 'error', code: 'INVALID_ARGUMENT', message })}\n`);
    return ACTION_EXIT_USAGE;
  };

  if (argv[0] === 'describe' && argv.length === 1) {
    const description: BundleDescription = {
      version: ACTION_PROTOCOL_VERSION,
      tasks: discoverTasks(moduleNamespace).map((found) => ({ exportNames: found.exportNames, spec: found.task.spec })),
    };
    stdout(`${JSON.stringify(description)}\n`);
    return ACTION_EXIT_OK;
  }
  if (argv[0] !== 'run' || argv[1] !== '--request' || argv[2] === undefined || argv.length !== 3) return usage('usage: describe | run --request <file | ->');

  let request: ActionRequest;
  try {
    // `-`: the request arrives on standard input, once the executor assigns this already-loaded process an attempt.
    const text = argv[2] === '-' ? await readStandardInput(options.stdin ?? process.stdin) : await readFile(argv[2], 'utf8');
    request = parseRequest(JSON.parse(text) as unknown);
  } catch (error) {
    return usage(`cannot read the request: ${AirlockError.from(error, 'INVALID_ARGUMENT').message}`);
  }

  const controller = new AbortController();
  const onSignal = (): void => controller.abort();
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  let result: ExecuteResult;
  try {
    const found = findTask(moduleNamespace, request.task);
    const inputs = JSON.parse(await readFile(request.inputsPath, 'utf8')) as unknown;
    result = await executeTask(found, inputs, {
      signal: controller.signal,
      attempt: request.attempt,
      workDir: process.cwd(),
      log: (entry: TaskLogEntry) => stderr(`${JSON.stringify(entry)}\n`),
      ...(request.timeoutMs === undefined ? {} : { timeoutMs: request.timeoutMs }),
      ...(request.killGraceMs === undefined ? {} : { killGraceMs: request.killGraceMs }),
      ...(request.runId === undefined ? {} : { runId: request.runId }),
      ...(request.actionId === undefined ? {} : { actionId: request.actionId }),
    });
  } catch (error) {
    // The bundle lacks the task, or the inputs file is unreadable: the platform's fault, not the task's.
    const record = systemErrorRecord(error);
    result = { ok: false, attempt: request.attempt, phase: failedPhaseOf(record), error: record };
  } finally {
    process.removeListener('SIGTERM', onSignal);
    process.removeListener('SIGINT', onSignal);
  }
  const file: ActionResult = { version: ACTION_PROTOCOL_VERSION, ...result };
  await writeFile(request.resultPath, `${JSON.stringify(file)}\n`, { mode: 0o600 });
  return ACTION_EXIT_OK;
}

function parseRequest(value: unknown): ActionRequest {
  const bad = (field: string): AirlockError => new AirlockError('INVALID_ARGUMENT', `request.${field} is missing or malformed`);
  if (typeof value !== 'object' || value === null) throw bad('(root)');
  const request = value as Record<string, unknown>;
  if (request.version !== ACTION_PROTOCOL_VERSION) throw bad('version');
  for (const field of ['task', 'inputsPath', 'resultPath'] as const) if (typeof request[field] !== 'string' || request[field] === '') throw bad(field);
  if (!Number.isSafeInteger(request.attempt) || (request.attempt as number) < 1) throw bad('attempt');
  for (const field of ['timeoutMs', 'killGraceMs'] as const) {
    if (request[field] !== undefined && (!Number.isSafeInteger(request[field]) || (request[field] as number) < 1)) throw bad(field);
  }
  for (const field of ['runId', 'actionId'] as const) if (request[field] !== undefined && typeof request[field] !== 'string') throw bad(field);
  return request as unknown as ActionRequest;
}
