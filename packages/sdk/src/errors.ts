// Errors a task or its caller can meet: schema violations, command failures, and failures the task marks as final.
import { AirlockError } from '@airlock/common/errors';

/** One schema violation. Both fields can quote the value checked (record keys, enum values), so they are data. */
export interface SchemaIssue {
  /** Where in the value, outermost first: object keys and array indices. Empty for the value itself. */
  readonly path: readonly (string | number)[];
  readonly message: string;
}

/** Formats an issue path as `items[0].name`; the value itself is `(root)`. */
export function formatIssuePath(path: readonly (string | number)[]): string {
  if (path.length === 0) return '(root)';
  let out = '';
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else if (/^[A-Za-z_$][\w$]*$/.test(segment)) out += out === '' ? segment : `.${segment}`;
    else out += `[${JSON.stringify(segment)}]`;
  }
  return out;
}

/**
 * Inputs or outputs that do not match the task's schema: TASK_INPUT_INVALID or TASK_OUTPUT_INVALID.
 * The message names every field at fault (`name: Invalid input: expected string`); `issues` has them
 * structured. Both are data: they can quote the value, so they stay in the data plane.
 */
export class TaskValidationError extends AirlockError {
  readonly issues: readonly SchemaIssue[];

  constructor(code: 'TASK_INPUT_INVALID' | 'TASK_OUTPUT_INVALID', taskName: string, issues: readonly SchemaIssue[]) {
    const what = code === 'TASK_INPUT_INVALID' ? 'inputs' : 'outputs';
    const list = issues.map((issue) => `${formatIssuePath(issue.path)}: ${issue.message}`).join('; ');
    super(code, `Invalid ${what} for task "${taskName}": ${list}`);
    this.issues = Object.freeze(issues.map((issue) => Object.freeze({ path: Object.freeze([...issue.path]), message: issue.message })));
  }
}

/**
 * A command task's executable exited with a non-zero status or was killed by a signal
 * (COMMAND_FAILED). `stderrTail` (the last few KiB of its standard error) is data.
 */
export class CommandFailedError extends AirlockError {
  readonly exitCode: number | undefined;
  readonly signal: string | undefined;
  readonly stderrTail: string;

  constructor(executable: string, exitCode: number | null, signal: string | null, stderrTail: string) {
    const how = exitCode !== null ? `exited with status ${exitCode}` : `was killed by ${signal ?? 'a signal'}`;
    const tail = stderrTail.trim();
    super('COMMAND_FAILED', `Command ${JSON.stringify(executable)} ${how}${tail === '' ? '' : `: ${tail}`}`, {
      details: exitCode !== null ? { exitCode } : { signal: signal ?? 'unknown' },
    });
    this.exitCode = exitCode ?? undefined;
    this.signal = signal ?? undefined;
    this.stderrTail = stderrTail;
  }
}

/**
 * Throw this from a task to fail the attempt without further retries (TASK_FAILED_FINAL), when
 * trying again with the same inputs cannot help. Anything else a task throws is TASK_FAILED, which
 * is retried while the task's retry limit allows.
 */
export class NonRetryableError extends Error {
  override readonly name = 'NonRetryableError';
}
