// Integration test of @airlock/sdk/runtime: a bundle entry run as a real child process, spoken to through request and result files.
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

const ENTRY = fileURLToPath(new URL('./fixtures/runner-entry.ts', import.meta.url));
const TSX = createRequire(import.meta.url).resolve('tsx');

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'airlock-runtime-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Starts the entry as the executor would: its own working directory, a minimal environment. */
function start(args: readonly string[], stdin: 'ignore' | 'pipe' = 'ignore') {
  const child = spawn(process.execPath, ['--conditions=airlock-source', '--import', TSX, ENTRY, ...args], {
    cwd: dir,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    stdio: [stdin, 'pipe', 'pipe'],
  });
  const { stdout: out, stderr: err } = child;
  if (out === null || err === null) throw new Error('the child has no stdout or stderr pipe');
  let stdout = '';
  let stderr = '';
  out.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  err.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
  /** Resolves once stderr contains `text`. */
  const logged = (text: string): Promise<void> =>
    new Promise((resolve) => {
      const check = (): void => {
        if (!stderr.includes(text)) return;
        err.off('data', check);
        resolve();
      };
      err.on('data', check);
      check();
    });
  return { child, exited, logged };
}

async function request(task: string, inputs: unknown): Promise<string> {
  await writeFile(join(dir, 'inputs.json'), JSON.stringify(inputs));
  const path = join(dir, 'request.json');
  await writeFile(path, JSON.stringify({ version: 1, task, inputsPath: join(dir, 'inputs.json'), resultPath: join(dir, 'result.json'), attempt: 2, actionId: 'a-1' }));
  return path;
}

describe('runActionMain', () => {
  it('describes the tasks in the bundle', async () => {
    const { exited } = start(['describe']);
    const { code, stdout } = await exited;
    expect(code).toBe(0);
    const description = JSON.parse(stdout);
    expect(description.version).toBe(1);
    expect(description.tasks.map((entry: { spec: { name: string } }) => entry.spec.name)).toEqual(['greet', 'wait']);
    expect(description.tasks[0].spec.inputSchema).toMatchObject({ properties: { name: { type: 'string' } } });
  });

  it('runs one attempt and writes its result, logs as JSON lines on stderr', async () => {
    const { exited } = start(['run', '--request', await request('greet', { name: 'World' })]);
    const { code, stderr } = await exited;
    expect(code).toBe(0);
    expect(JSON.parse(await readFile(join(dir, 'result.json'), 'utf8'))).toEqual({ version: 1, ok: true, attempt: 2, outputs: { greeting: 'Hello, World!' } });
    expect(stderr.trim().split('\n').map((line) => JSON.parse(line))).toEqual([expect.objectContaining({ level: 'info', message: 'greeting' })]);
  });

  it('with `--request -`, loads the bundle, then waits for the request on standard input', async () => {
    const { child, exited } = start(['run', '--request', '-'], 'pipe');
    // Loaded and waiting: nothing is written until the request arrives.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(child.exitCode).toBeNull();
    await expect(readFile(join(dir, 'result.json'))).rejects.toThrow();
    child.stdin?.end(await readFile(await request('greet', { name: 'Stdin' })));
    const { code } = await exited;
    expect(code).toBe(0);
    expect(JSON.parse(await readFile(join(dir, 'result.json'), 'utf8'))).toEqual({ version: 1, ok: true, attempt: 2, outputs: { greeting: 'Hello, Stdin!' } });
  });

  it('refuses a request on standard input that is not a request, or too large', async () => {
    const malformed = start(['run', '--request', '-'], 'pipe');
    malformed.child.stdin?.end('{"version":1}');
    expect((await malformed.exited).code).toBe(2);
    const huge = start(['run', '--request', '-'], 'pipe');
    huge.child.stdin?.on('error', () => undefined);
    huge.child.stdin?.end(`"${'x'.repeat(70 * 1024)}"`);
    const { code, stderr } = await huge.exited;
    expect(code).toBe(2);
    expect(stderr).toContain('larger than 65536 bytes');
  });

  it('writes invalid inputs and an unknown task as failed results', async () => {
    expect((await start(['run', '--request', await request('greet', { name: 1 })]).exited).code).toBe(0);
    expect(JSON.parse(await readFile(join(dir, 'result.json'), 'utf8'))).toMatchObject({ ok: false, phase: 'FAILED', error: { code: 'TASK_INPUT_INVALID', kind: 'USER' } });
    expect((await start(['run', '--request', await request('nope', {})]).exited).code).toBe(0);
    expect(JSON.parse(await readFile(join(dir, 'result.json'), 'utf8'))).toMatchObject({ ok: false, error: { code: 'TASK_NOT_FOUND', kind: 'SYSTEM' } });
  });

  it('aborts the attempt on SIGTERM and still writes the result', async () => {
    const { child, exited, logged } = start(['run', '--request', await request('wait', {})]);
    // The task logs once it is running, so the signal handlers are in place.
    await logged('"waiting"');
    child.kill('SIGTERM');
    const { code } = await exited;
    expect(code).toBe(0);
    expect(JSON.parse(await readFile(join(dir, 'result.json'), 'utf8'))).toMatchObject({ ok: false, phase: 'ABORTED', error: { code: 'TASK_ABORTED' } });
  });

  it('exits 2 for a malformed request, writing no result', async () => {
    await writeFile(join(dir, 'bad.json'), JSON.stringify({ version: 1, task: 'greet' }));
    const { code, stderr } = await start(['run', '--request', join(dir, 'bad.json')]).exited;
    expect(code).toBe(2);
    expect(stderr).toContain('INVALID_ARGUMENT');
    await expect(readFile(join(dir, 'result.json'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
