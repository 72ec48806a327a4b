// End to end through the real CLI against a real `airlock up`: every example runs (hello, command, failing), outputs come back
// sealed and are opened locally, a failing task's own message reaches the CLI and nowhere in the control plane's files, and
// unchanged code is not uploaded twice.
import { readFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scanProcessMemory } from '@airlock/verify';
import { canaryNeedles, scanControlPlaneFiles, takeHeapSnapshot } from '../src/internal/canary-run-check.js';
import { interrupt, runCli, startCli } from './run-cli.js';

const PORT_FLAGS: readonly string[] = ['--api-port', '0', '--dispatch-port', '0', '--tunnel-port', '0', '--kms-port', '0', '--s3-port', '0'];
const ROOT = resolve(import.meta.dirname, '..', '..', '..');
const example = (path: string): string => join(ROOT, 'examples', path);

let dir: string;
let stack: Awaited<ReturnType<typeof startCli>>;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'airlock-cli-runs-'));
  // At debug level: the control plane's debug logs must not carry a run's data either.
  stack = await startCli(['up', '--data-dir', dir, ...PORT_FLAGS, '--log-level', 'debug'], /Press Ctrl-C/);
}, 120_000);

afterAll(async () => {
  if (stack !== undefined) await interrupt(stack.child);
  await rm(dir, { recursive: true, force: true });
});

describe('airlock run against airlock up', () => {
  it('runs examples/hello: the greeting comes back sealed and is printed; a second run uploads nothing', async () => {
    const first = await runCli(['run', example('hello/hello.ts'), '--input', 'name=World', '--wait', '--data-dir', dir]);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain('Hello, World!');
    expect(first.stderr).toMatch(/QUEUED[\s\S]*RUNNING[\s\S]*SUCCEEDED/);
    expect(first.stderr).toContain('Uploading bundle');

    const second = await runCli(['run', example('hello/hello.ts'), '--input', 'name=again', '--wait', '--json', '--data-dir', dir]);
    expect(second.code, second.stderr).toBe(0);
    const parsed = JSON.parse(second.stdout) as { run: { phase: string; runId: string }; result: { ok: boolean; outputs: { greeting: string } } };
    expect(parsed.run.phase).toBe('SUCCEEDED');
    expect(parsed.result.outputs.greeting).toBe('Hello, again!');
    expect(second.stderr).not.toContain('Uploading bundle');

    const listed = await runCli(['runs', 'list', '--json', '--data-dir', dir]);
    expect(listed.code, listed.stderr).toBe(0);
    expect((JSON.parse(listed.stdout) as Array<{ runId: string }>).map((r) => r.runId)).toContain(parsed.run.runId);
    const outputs = await runCli(['outputs', parsed.run.runId, '--data-dir', dir]);
    expect(outputs.code, outputs.stderr).toBe(0);
    expect(outputs.stdout).toContain('Hello, again!');
    const tasks = await runCli(['tasks', 'list', '--data-dir', dir]);
    expect(tasks.stdout).toContain('hello');
  }, 120_000);

  it('runs examples/command (wc) with outputs parsed from its stdout', async () => {
    const result = await runCli(['run', example('command/word-count.ts'), '--input', 'text=one two three\nfour', '--wait', '--json', '--data-dir', dir]);
    expect(result.code, result.stderr).toBe(0);
    const parsed = JSON.parse(result.stdout) as { result: { outputs: { lines: number; words: number } } };
    expect(parsed.result.outputs).toMatchObject({ lines: 1, words: 4 });
  }, 120_000);

  it('runs examples/failing: retries run out, the CLI shows the typed error record with the task\'s own message, which the control plane never stores', async () => {
    const canary = `canary-${Date.now()}-${Math.random().toString(36).slice(2)}`;
    const result = await runCli(['run', example('failing/failing.ts'), '--input', `reason=${canary}`, '--wait', '--data-dir', dir]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('FAILED: TASK_FAILED');
    expect(result.stdout).toContain(`failing on purpose: ${canary}`);
    expect(result.stderr).toContain('(attempt 3)');
    // Every file under control-plane/, in every encoding runs.canary looks for.
    const files = await scanControlPlaneFiles(dir, canary);
    expect(files.looked.length).toBeGreaterThanOrEqual(3);
    expect(files.found).toEqual([]);
    // The planes' logs, at debug level, reach this process through airlock up's output.
    expect(stack.output()).not.toContain(canary);
    // And the control plane's memory.
    const endpoints = JSON.parse(await readFile(join(dir, 'endpoints.json'), 'utf8')) as { heapSnapshot: { pid: number; signal: 'SIGUSR2'; dir: string } };
    const snapshot = await takeHeapSnapshot(endpoints.heapSnapshot, new AbortController().signal);
    try {
      const heap = await readFile(snapshot);
      expect(heap.length).toBeGreaterThan(1_000_000);
      for (const needle of canaryNeedles(canary)) expect(heap.includes(needle.bytes), needle.encoding).toBe(false);
    } finally {
      await rm(snapshot, { force: true });
    }
    // And its whole live memory, where Buffers hold bytes the heap snapshot does not show.
    const memory = await scanProcessMemory(endpoints.heapSnapshot.pid, canaryNeedles(canary));
    expect(memory.bytes).toBeGreaterThan(50 * 1024 * 1024);
    expect(memory.found).toEqual([]);
  }, 180_000);

  it('passes airlock verify, runs.canary included, with the control plane at debug level', async () => {
    const result = await runCli(['verify', '--data-dir', dir, '--json']);
    expect(result.code, result.stdout).toBe(0);
    const report = JSON.parse(result.stdout) as { checks: Array<{ id: string; status: string; evidence: Record<string, unknown> }> };
    const canary = report.checks.find((c) => c.id === 'runs.canary');
    expect(canary?.status).toBe('pass');
    // The heap snapshot and the whole live memory of the control plane (off-heap Buffers included) were both searched.
    // So were the planes' recent logs, which airlock up keeps in its memory on their way to its terminal.
    expect(canary?.evidence).toMatchObject({ heapSnapshotBytes: expect.any(Number), memoryBytes: expect.any(Number), logTailMaxBytes: 8 * 1024 * 1024, logKeeperMemoryBytes: expect.any(Number), found: [] });
    expect(canary?.evidence.memoryBytes as number).toBeGreaterThan(50 * 1024 * 1024);
  }, 180_000);

  it('airlock login records a control plane and a pin it has checked, and refuses a wrong pin naming both fingerprints', async () => {
    const local = JSON.parse(await readFile(join(dir, 'client', 'config.json'), 'utf8')) as { api: string; caFile: string; tokenFile: string; pins: Record<string, string> };
    const target = join(dir, 'login-config.json');
    const wrong = `sha256:${'ab'.repeat(32)}`;
    const refused = await runCli(['login', '--api', local.api, '--token-file', local.tokenFile, '--ca', local.caFile, '--pin', wrong, '--config', target]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('DATA_PLANE_PIN_MISMATCH');
    expect(refused.stderr).toContain('ab'.repeat(32));
    expect(refused.stderr).toContain(local.pins.local?.replace(/^sha256:/, '') ?? 'missing pin');
    await expect(readFile(target)).rejects.toMatchObject({ code: 'ENOENT' });

    const accepted = await runCli(['login', '--api', local.api, '--token-file', local.tokenFile, '--ca', local.caFile, '--pin', local.pins.local ?? '', '--config', target]);
    expect(accepted.code, accepted.stderr).toBe(0);
    expect(accepted.stdout).toContain('Data plane "local" pinned');
    const written = JSON.parse(await readFile(target, 'utf8')) as { pins: Record<string, string>; cluster: string };
    expect(written).toMatchObject({ cluster: 'local', pins: { local: local.pins.local } });
    const run = await runCli(['run', example('hello/hello.ts'), '--input', 'name=login', '--wait', '--config', target]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain('Hello, login!');
  }, 120_000);

  it('refuses bad inputs before anything leaves the machine, naming the field', async () => {
    const result = await runCli(['run', example('hello/hello.ts'), '--input', 'name=', '--data-dir', dir]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('TASK_INPUT_INVALID');
    expect(result.stderr).toContain('name:');
  }, 60_000);

  it('refuses to seal to a data plane whose identity does not match the pin, naming both fingerprints', async () => {
    const configPath = join(dir, 'client', 'config.json');
    const config = JSON.parse(await readFile(configPath, 'utf8')) as { pins: Record<string, string> };
    const wrong = join(dir, 'wrong-pin.json');
    await writeFile(wrong, JSON.stringify({ ...config, pins: { local: `sha256:${'0'.repeat(64)}` } }));
    const result = await runCli(['run', example('hello/hello.ts'), '--input', 'name=x', '--config', wrong]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('DATA_PLANE_PIN_MISMATCH');
    expect(result.stderr).toContain('0'.repeat(64));
    expect(result.stderr).toContain(config.pins.local?.replace(/^sha256:/, '') ?? 'missing pin');
  }, 60_000);
});
