// Reading a task process's result file: its shape checked (the bundle is user code, so the file is untrusted), and the outcome the agent may report.
import { AirlockError, isAirlockErrorCode } from '@airlock/common';
import { ACTION_PROTOCOL_VERSION, type ActionResult, type FailedPhase, type TaskErrorRecord } from '@airlock/sdk';
import type { ActionOutcome } from './types.js';

const FAILED_PHASES: ReadonlySet<string> = new Set<FailedPhase>(['FAILED', 'TIMED_OUT', 'ABORTED']);

/**
 * Parses and checks an ActionResult: version 1, `ok`, the expected attempt, then `outputs` or a
 * failed phase with an error record whose code is in the catalogue. Throws INTERNAL (without
 * quoting the document: it is data) when anything is off.
 */
export function parseActionResult(bytes: Uint8Array, attempt: number): ActionResult {
  const malformed = (field: string): AirlockError =>
    new AirlockError('INTERNAL', `The task's result document is malformed (${field})`, { details: { reason: 'result-malformed', field } });
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8')) as unknown;
  } catch {
    throw malformed('json');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw malformed('(root)');
  const result = value as Record<string, unknown>;
  if (result.version !== ACTION_PROTOCOL_VERSION) throw malformed('version');
  if (result.attempt !== attempt) throw malformed('attempt');
  if (result.ok === true) {
    if (!Object.hasOwn(result, 'outputs')) throw malformed('outputs');
    return result as unknown as ActionResult;
  }
  if (result.ok !== false) throw malformed('ok');
  if (typeof result.phase !== 'string' || !FAILED_PHASES.has(result.phase)) throw malformed('phase');
  const error = result.error;
  if (typeof error !== 'object' || error === null || Array.isArray(error)) throw malformed('error');
  const record = error as Record<string, unknown>;
  if (!isAirlockErrorCode(record.code)) throw malformed('error.code');
  if (record.kind !== 'USER' && record.kind !== 'SYSTEM') throw malformed('error.kind');
  if (typeof record.retryable !== 'boolean') throw malformed('error.retryable');
  if (typeof record.message !== 'string') throw malformed('error.message');
  return result as unknown as ActionResult;
}

/** What the agent reports for a result: SUCCEEDED, or the failed phase with code, kind and retryable only (never the message). */
export function outcomeOfResult(result: ActionResult): ActionOutcome {
  if (result.ok) return { phase: 'SUCCEEDED' };
  return { phase: result.phase, error: errorOutcome(result.error) };
}

/** The control plane's part of an error record. */
export function errorOutcome(record: Pick<TaskErrorRecord, 'code' | 'kind' | 'retryable'>): { code: string; kind: 'USER' | 'SYSTEM'; retryable: boolean } {
  return { code: record.code, kind: record.kind, retryable: record.retryable };
}

/** The result document of a failed attempt, as stored. */
export function failedResultDocument(attempt: number, phase: FailedPhase, error: TaskErrorRecord): Uint8Array {
  const document: ActionResult = { version: ACTION_PROTOCOL_VERSION, ok: false, attempt, phase, error };
  return Buffer.from(`${JSON.stringify(document)}\n`, 'utf8');
}
