// Run lifecycle through the real CLI against a real `airlock up`: abort, timeout, a data plane killed with SIGKILL mid-run,
// and oversized inputs. Every run ends in the right phase; none stays stuck.
import { readFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { interrupt, runCli, startCli } from './run-cli.js';

const PORT_FLAGS: readonly string[] = ['--api-port', '0', '--dispatch-port', '0', '--tunnel-port', '0', '--kms-port', '0', '--s3-port', '0'];
const TASKS = resolve(import.meta.dirname, 'fixtures', 'lifecycle-tasks.ts');

let dir: string;
let stack: Awaited<ReturnType<typeof startCli>>;

interface RunJson {
  readonly runId: string;
  readonly phase: string;
  readonly attempts: number;
  readonly error?: { readonly code: string; readonly kind: string };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'airlock-cli-lifecycle-'));
  stack = await startCli(['up', '--data-dir', dir, ...PORT_FLAGS], /Press Ctrl-C/);
}, 120_000);

afterAll(async () => {
  if (stack !== undefined) await interrupt(stack.child);
  await rm(dir, { recursive: true, force: true });
});

async function submit(task: string, inputs: readonly string[]): Promise<string> {
  const result = await runCli(['run', TASKS, task, ...inputs, '--json', '--data-dir', dir]);
  expect(result.code, result.stderr).toBe(0);
  return (JSON.parse(result.stdout) as RunJson).runId;
}

async function getRun(runId: string): Promise<RunJson> {
  const result = await runCli(['runs', 'get', runId, '--json', '--data-dir', dir]);
  expect(result.code, result.stderr).toBe(0);
  return (JSON.parse(result.stdout) as { run: RunJson }).run;
}

/** Polls until the run is in one of `phases`; fails after `timeoutMs` naming the phase it was stuck in. */
async function waitForPhase(runId: string, phases: readonly string[], timeoutMs: number): Promise<RunJson> {
  const deadline = Date.now() + timeoutMs;
  let run = await getRun(runId);
  while (!phases.includes(run.phase)) {
    if (Date.now() > deadline) throw new Error(`run ${runId} stuck in ${run.phase} (waited for ${phases.join('/')})`);
    await sleep(250);
    run = await getRun(runId);
  }
  return run;
}

describe('run lifecycle against airlock up', () => {
  it('aborts a running run: ABORTED, and the task process is gone', async () => {
    const runId = await submit('sleeper', ['--input', 'ms=600000']);
    await waitForPhase(runId, ['RUNNING'], 60_000);
    const aborted = await runCli(['runs', 'abort', runId, '--data-dir', dir]);
    expect(aborted.code, aborted.stderr).toBe(0);
    const run = await waitForPhase(runId, ['ABORTED', 'FAILED', 'SUCCEEDED', 'TIMED_OUT'], 60_000);
    expect(run.phase).toBe('ABORTED');
    expect(run.attempts).toBe(1);
  }, 150_000);

  it('ends a run past its timeout TIMED_OUT with TASK_TIMED_OUT, without retrying it', async () => {
    const runId = await submit('overtime', []);
    const run = await waitForPhase(runId, ['ABORTED', 'FAILED', 'SUCCEEDED', 'TIMED_OUT'], 90_000);
    expect(run.phase).toBe('TIMED_OUT');
    expect(run.error?.code).toBe('TASK_TIMED_OUT');
    expect(run.attempts).toBe(1);
  }, 120_000);

  it('survives a kill -9 of the data plane mid-run: the crashed attempt is reported and the retry finishes the run', async () => {
    // Long enough that the attempt is still running when the kill lands, however slow the CLI polls are.
    const runId = await submit('sleeper', ['--input', 'ms=10000']);
    await waitForPhase(runId, ['RUNNING'], 60_000);
    const endpoints = JSON.parse(await readFile(join(dir, 'endpoints.json'), 'utf8')) as { pids: { dataPlane: number } };
    process.kill(endpoints.pids.dataPlane, 'SIGKILL');
    // airlock up restarts the data plane; its executor finds the attempt it never finished and reports it crashed.
    const run = await waitForPhase(runId, ['ABORTED', 'FAILED', 'SUCCEEDED', 'TIMED_OUT'], 150_000);
    expect(run.phase).toBe('SUCCEEDED');
    expect(run.attempts).toBe(2);
    const detail = await runCli(['runs', 'get', runId, '--json', '--data-dir', dir]);
    const actions = (JSON.parse(detail.stdout) as { actions: Array<{ attempt: number; phase: string; error?: string }> }).actions;
    expect(actions.map((a) => [a.attempt, a.phase, a.error])).toEqual([
      [1, 'FAILED', 'TASK_CRASHED'],
      [2, 'SUCCEEDED', undefined],
    ]);
  }, 240_000);

  it('refuses inputs over the 1 MiB limit with PAYLOAD_TOO_LARGE, and no run is created', async () => {
    const before = JSON.parse((await runCli(['runs', 'list', '--json', '--data-dir', dir])).stdout) as RunJson[];
    const big = join(dir, 'big-inputs.json');
    await writeFile(big, JSON.stringify({ ms: 1, note: 'x'.repeat(1_200_000) }));
    const result = await runCli(['run', TASKS, 'sleeper', '--inputs', big, '--data-dir', dir]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('PAYLOAD_TOO_LARGE');
    const after = JSON.parse((await runCli(['runs', 'list', '--json', '--data-dir', dir])).stdout) as RunJson[];
    expect(after.length).toBe(before.length);
  }, 60_000);
});
