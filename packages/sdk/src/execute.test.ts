// Tests for executeTask: one attempt with input/output validation, timeout, abort and the error records it produces.
import { access, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { controlPlaneErrorRecord } from './error-record.js';
import { NonRetryableError } from './errors.js';
import { executeTask, type TaskLogEntry } from './execute.js';
import { task, type TaskContext } from './task.js';

const inputs = z.object({ name: z.string() });
const outputs = z.object({ greeting: z.string() });
const hello = task({ name: 'hello', inputs, outputs }, ({ name }) => ({ greeting: `Hello, ${name}!` }));

/** A promise that settles when the signal aborts, as well-behaved task code does. */
function untilAborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true }));
}

describe('executeTask', () => {
  it('returns validated outputs', async () => {
    await expect(executeTask(hello, { name: 'World' })).resolves.toEqual({ ok: true, attempt: 1, outputs: { greeting: 'Hello, World!' } });
  });

  it('reports invalid inputs as TASK_INPUT_INVALID without running the task', async () => {
    let ran = false;
    const spy = task({ name: 'spy', inputs, outputs }, () => {
      ran = true;
      return { greeting: '' };
    });
    const result = await executeTask(spy, { name: 42 });
    expect(ran).toBe(false);
    expect(result).toMatchObject({ ok: false, phase: 'FAILED', error: { code: 'TASK_INPUT_INVALID', kind: 'USER', retryable: false, issues: [{ path: ['name'] }] } });
  });

  it('reports outputs that do not match their schema as TASK_OUTPUT_INVALID', async () => {
    const wrong = task({ name: 'wrong', inputs, outputs }, () => ({ greeting: 7 }) as never);
    await expect(executeTask(wrong, { name: 'x' })).resolves.toMatchObject({ ok: false, phase: 'FAILED', error: { code: 'TASK_OUTPUT_INVALID', kind: 'USER', issues: [{ path: ['greeting'] }] } });
  });

  it('records what the task threw as a retryable USER error, message and stack as data', async () => {
    const canary = 'canary-4f1b2a';
    const failing = task({ name: 'failing', inputs, outputs }, ({ name }) => {
      throw new Error(`cannot greet ${name}`);
    });
    const result = await executeTask(failing, { name: canary });
    expect(result).toMatchObject({ ok: false, phase: 'FAILED', error: { code: 'TASK_FAILED', kind: 'USER', retryable: true, message: `cannot greet ${canary}` } });
    if (result.ok) return;
    expect(result.error.stack).toContain('execute.test.ts');
    // What the control plane may keep carries none of it.
    expect(controlPlaneErrorRecord(result.error)).toEqual({ code: 'TASK_FAILED', kind: 'USER', retryable: true });
    expect(JSON.stringify(controlPlaneErrorRecord(result.error))).not.toContain(canary);
  });

  it('records a NonRetryableError as TASK_FAILED_FINAL, and a thrown non-Error too', async () => {
    const final = task({ name: 'final', inputs, outputs }, () => {
      throw new NonRetryableError('no point');
    });
    await expect(executeTask(final, { name: 'x' })).resolves.toMatchObject({ error: { code: 'TASK_FAILED_FINAL', kind: 'USER', retryable: false, message: 'no point' } });
    const weird = task({ name: 'weird', inputs, outputs }, () => {
      // eslint-disable-next-line @typescript-eslint/only-throw-error -- user code can throw anything
      throw { reason: 'odd' };
    });
    await expect(executeTask(weird, { name: 'x' })).resolves.toMatchObject({ error: { code: 'TASK_FAILED', message: expect.stringContaining('odd') } });
  });

  it('times out: aborts ctx.signal and ends TIMED_OUT', async () => {
    let seen: AbortSignal | undefined;
    const slow = task({ name: 'slow', inputs, outputs }, async (_inputs, ctx) => {
      seen = ctx.signal;
      return untilAborted(ctx.signal);
    });
    const result = await executeTask(slow, { name: 'x' }, { timeoutMs: 50 });
    expect(result).toMatchObject({ ok: false, phase: 'TIMED_OUT', error: { code: 'TASK_TIMED_OUT', kind: 'USER', retryable: true } });
    expect(seen?.aborted).toBe(true);
    expect((seen?.reason as Error).name).toBe('TimeoutError');
  });

  it('ends a task that ignores its signal after the grace period', async () => {
    const stubborn = task({ name: 'stubborn', inputs, outputs }, () => new Promise<never>(() => undefined));
    await expect(executeTask(stubborn, { name: 'x' }, { timeoutMs: 20, killGraceMs: 20 })).resolves.toMatchObject({ phase: 'TIMED_OUT' });
  });

  it('aborts: ends ABORTED with a non-retryable TASK_ABORTED', async () => {
    const controller = new AbortController();
    const waiting = task({ name: 'waiting', inputs, outputs }, async (_inputs, ctx) => {
      setTimeout(() => controller.abort(), 10);
      return untilAborted(ctx.signal);
    });
    const result = await executeTask(waiting, { name: 'x' }, { signal: controller.signal });
    expect(result).toMatchObject({ ok: false, phase: 'ABORTED', error: { code: 'TASK_ABORTED', retryable: false } });
  });

  it('does not start a task whose signal is already aborted', async () => {
    let ran = false;
    const spy = task({ name: 'spy', inputs, outputs }, () => {
      ran = true;
      return { greeting: '' };
    });
    await expect(executeTask(spy, { name: 'x' }, { signal: AbortSignal.abort() })).resolves.toMatchObject({ phase: 'ABORTED' });
    expect(ran).toBe(false);
  });

  it('gives the task its attempt, ids, a logger and a private working directory that is removed afterwards', async () => {
    let ctxSeen: TaskContext | undefined;
    let mode = 0;
    const probe = task({ name: 'probe', inputs, outputs }, async (_inputs, ctx) => {
      ctxSeen = ctx;
      mode = (await stat(ctx.workDir)).mode & 0o777;
      await writeFile(join(ctx.workDir, 'scratch'), 'x');
      ctx.log.info('working', { step: 1 });
      return { greeting: 'done' };
    });
    const logs: TaskLogEntry[] = [];
    await executeTask(probe, { name: 'x' }, { attempt: 3, runId: 'run-1', actionId: 'action-1', log: (entry) => logs.push(entry) });
    expect(ctxSeen).toMatchObject({ attempt: 3, taskName: 'probe', runId: 'run-1', actionId: 'action-1' });
    expect(mode).toBe(0o700);
    await expect(access(ctxSeen?.workDir ?? '/nonexistent')).rejects.toMatchObject({ code: 'ENOENT' });
    expect(logs).toEqual([expect.objectContaining({ level: 'info', message: 'working', fields: { step: 1 } })]);
  });

  it("leaves a caller's working directory in place", async () => {
    const { mkdtemp, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const dir = await mkdtemp(join(tmpdir(), 'airlock-test-'));
    try {
      const writer = task({ name: 'writer', inputs, outputs }, async (_inputs, ctx) => {
        await writeFile(join(ctx.workDir, 'kept'), 'x');
        return { greeting: ctx.workDir };
      });
      await expect(executeTask(writer, { name: 'x' }, { workDir: dir })).resolves.toMatchObject({ ok: true, outputs: { greeting: dir } });
      await expect(access(join(dir, 'kept'))).resolves.toBeUndefined();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses a bad attempt number as a SYSTEM error', async () => {
    await expect(executeTask(hello, { name: 'x' }, { attempt: 0 })).resolves.toMatchObject({ ok: false, error: { code: 'INVALID_ARGUMENT', kind: 'SYSTEM' } });
  });
});
