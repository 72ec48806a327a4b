// The error record of a failed task attempt: what the executor reports, and the part the control plane may keep.
import { AirlockError, type AirlockErrorCode } from '@airlock/common/errors';
import { CommandFailedError, NonRetryableError, TaskValidationError, type SchemaIssue } from './errors.js';

/** USER: the task's code, inputs, outputs or command were at fault. SYSTEM: the platform was. */
export type TaskErrorKind = 'USER' | 'SYSTEM';

/** The terminal phase of a failed attempt. */
export type FailedPhase = 'FAILED' | 'TIMED_OUT' | 'ABORTED';

/**
 * Why an attempt failed. `code`, `kind` and `retryable` are metadata: the control plane stores
 * them (see controlPlaneErrorRecord). Everything else is data — a user error's message and stack
 * often quote inputs — so it stays in the data plane, stored and returned sealed like outputs.
 */
export interface TaskErrorRecord {
  readonly code: AirlockErrorCode;
  readonly kind: TaskErrorKind;
  readonly retryable: boolean;
  /** Data. */
  readonly message: string;
  /** Data: the stack trace of what the task threw, when it threw an Error. */
  readonly stack?: string;
  /** Data: the schema violations of TASK_INPUT_INVALID and TASK_OUTPUT_INVALID. */
  readonly issues?: readonly SchemaIssue[];
  /** Data: a command task's exit status (COMMAND_FAILED). */
  readonly exitCode?: number;
  /** Data: the signal that killed a command task's process (COMMAND_FAILED). */
  readonly signal?: string;
  /** Data: the end of a command task's standard error (COMMAND_FAILED). */
  readonly stderrTail?: string;
}

/** The part of an error record that the control plane stores and shows: no message, no stack. */
export interface ControlPlaneErrorRecord {
  readonly code: AirlockErrorCode;
  readonly kind: TaskErrorKind;
  readonly retryable: boolean;
}

/** Strips an error record down to what may leave the data plane in the clear. */
export function controlPlaneErrorRecord(record: TaskErrorRecord): ControlPlaneErrorRecord {
  return { code: record.code, kind: record.kind, retryable: record.retryable };
}

/** The phase an attempt that failed with `record` ends in. */
export function failedPhaseOf(record: Pick<TaskErrorRecord, 'code'>): FailedPhase {
  return record.code === 'TASK_TIMED_OUT' ? 'TIMED_OUT' : record.code === 'TASK_ABORTED' ? 'ABORTED' : 'FAILED';
}

/**
 * The record for something a task's own code (or its command) threw. Typed errors the SDK raises
 * keep their code; NonRetryableError is TASK_FAILED_FINAL; anything else is TASK_FAILED.
 */
export function userErrorRecord(error: unknown): TaskErrorRecord {
  if (error instanceof TaskValidationError) {
    return freeze({ code: error.code, kind: 'USER', retryable: error.retryable, message: error.message, issues: error.issues });
  }
  if (error instanceof CommandFailedError) {
    return freeze({
      code: error.code,
      kind: 'USER',
      retryable: error.retryable,
      message: error.message,
      ...(error.exitCode === undefined ? {} : { exitCode: error.exitCode }),
      ...(error.signal === undefined ? {} : { signal: error.signal }),
      stderrTail: error.stderrTail,
    });
  }
  if (error instanceof AirlockError && USER_CODES.has(error.code)) {
    return freeze({ code: error.code, kind: 'USER', retryable: error.retryable, message: error.message, ...stackOf(error) });
  }
  const code = error instanceof NonRetryableError ? 'TASK_FAILED_FINAL' : 'TASK_FAILED';
  return freeze({ code, kind: 'USER', retryable: code === 'TASK_FAILED', message: messageOf(error), ...stackOf(error) });
}

/**
 * The record for a failure of the platform rather than the task: a full disk, an unreachable
 * object store, a bundle that does not load. The executor uses this for its own failures, so they
 * have the same shape as the task's.
 */
export function systemErrorRecord(error: unknown): TaskErrorRecord {
  const normalised = AirlockError.from(error);
  return freeze({ code: normalised.code, kind: 'SYSTEM', retryable: normalised.retryable, message: normalised.message, ...stackOf(error) });
}

/** The record of an attempt stopped by its timeout. */
export function timedOutRecord(timeoutMs: number): TaskErrorRecord {
  return freeze({ code: 'TASK_TIMED_OUT', kind: 'USER', retryable: true, message: `The task attempt did not finish within its timeout of ${timeoutMs} ms` });
}

/** The record of an attempt stopped by an abort (a user's request or the platform's reconciliation). */
export function abortedRecord(): TaskErrorRecord {
  return freeze({ code: 'TASK_ABORTED', kind: 'USER', retryable: false, message: 'The task attempt was aborted' });
}

/** Codes the SDK raises for faults of the task itself, which keep their code when a task throws them. */
const USER_CODES: ReadonlySet<AirlockErrorCode> = new Set<AirlockErrorCode>([
  'TASK_INPUT_INVALID',
  'TASK_OUTPUT_INVALID',
  'TASK_FAILED',
  'TASK_FAILED_FINAL',
  'COMMAND_START_FAILED',
  'COMMAND_FAILED',
]);

function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message;
  if (typeof error === 'string') return error;
  try {
    return `A non-Error value was thrown: ${JSON.stringify(error) ?? String(error)}`;
  } catch {
    return 'A non-Error value was thrown';
  }
}

function stackOf(error: unknown): { stack?: string } {
  return error instanceof Error && typeof error.stack === 'string' ? { stack: error.stack } : {};
}

function freeze(record: TaskErrorRecord): TaskErrorRecord {
  return Object.freeze(record);
}
