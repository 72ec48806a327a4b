// Tests for command tasks against real child processes: arguments, stdin, stdout and file outputs, failures, timeouts, environment.
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { commandTask } from './command-task.js';
import { CommandFailedError } from './errors.js';
import { executeTask } from './execute.js';

const NODE = process.execPath;

describe('commandTask', () => {
  it('builds arguments from the inputs and parses JSON from stdout (no shell involved)', async () => {
    const echo = commandTask({
      name: 'echo-args',
      inputs: z.object({ words: z.array(z.string()) }),
      outputs: z.object({ argv: z.array(z.string()) }),
      command: ({ words }) => [NODE, '-e', 'process.stdout.write(JSON.stringify({ argv: process.argv.slice(1) }))', ...words],
      outputsFrom: 'stdout-json',
    });
    // Shell metacharacters arrive as plain arguments.
    const words = ['a b', '$(touch pwned)', '; rm -rf /', '*'];
    await expect(executeTask(echo, { words })).resolves.toEqual({ ok: true, attempt: 1, outputs: { argv: words } });
    expect(echo.spec).toMatchObject({ kind: 'command', command: { outputsFrom: 'stdout-json', envNames: [] } });
  });

  it('feeds stdin and parses text stdout (wc)', async () => {
    const wc = commandTask({
      name: 'wc',
      inputs: z.object({ text: z.string() }),
      outputs: z.object({ lines: z.number(), words: z.number() }),
      command: () => ['wc', '-l', '-w'],
      stdin: ({ text }) => text,
      outputsFrom: {
        stdout: (out) => {
          const [lines, words] = out.trim().split(/\s+/).map(Number);
          return { lines: lines ?? NaN, words: words ?? NaN };
        },
      },
    });
    await expect(executeTask(wc, { text: 'one two\nthree\n' })).resolves.toMatchObject({ ok: true, outputs: { lines: 2, words: 3 } });
  });

  it('writes input files and reads output files as text or JSON', async () => {
    const sort = commandTask({
      name: 'sort-lines',
      inputs: z.object({ lines: z.array(z.string()) }),
      outputs: z.object({ sorted: z.string(), meta: z.object({ count: z.number() }) }),
      files: ({ lines }) => ({ 'in/lines.txt': `${lines.join('\n')}\n`, 'meta.json': JSON.stringify({ count: lines.length }) }),
      command: () => ['sort', '-o', 'sorted.txt', 'in/lines.txt'],
      outputsFrom: { files: { sorted: 'sorted.txt', meta: { path: 'meta.json', format: 'json' } } },
    });
    await expect(executeTask(sort, { lines: ['pear', 'apple', 'fig'] })).resolves.toMatchObject({ ok: true, outputs: { sorted: 'apple\nfig\npear\n', meta: { count: 3 } } });
    expect(sort.spec.command).toEqual({ outputsFrom: 'files', outputFiles: { sorted: { path: 'sorted.txt', format: 'text' }, meta: { path: 'meta.json', format: 'json' } }, envNames: [] });
  });

  it('fails with COMMAND_FAILED carrying the exit status and the end of stderr', async () => {
    const failing = commandTask({
      name: 'exit-3',
      inputs: z.object({}),
      outputs: z.object({}),
      command: () => [NODE, '-e', "process.stderr.write('x'.repeat(10000) + 'the end'); process.exit(3)"],
      outputsFrom: 'stdout-json',
    });
    const result = await executeTask(failing, {});
    expect(result).toMatchObject({ ok: false, phase: 'FAILED', error: { code: 'COMMAND_FAILED', kind: 'USER', retryable: true, exitCode: 3 } });
    if (result.ok) return;
    expect(result.error.stderrTail?.endsWith('the end')).toBe(true);
    expect(result.error.stderrTail?.length).toBe(4096);
  });

  it('throws CommandFailedError from the handler, with the data on it', async () => {
    const failing = commandTask({ name: 'false', inputs: z.object({}), outputs: z.object({}), command: () => ['false'], outputsFrom: 'stdout-json' });
    const error = await Promise.resolve(failing.handler({}, { signal: new AbortController().signal, attempt: 1, taskName: 'false', workDir: process.cwd(), log: console, runId: undefined, actionId: undefined })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CommandFailedError);
    expect(error).toMatchObject({ code: 'COMMAND_FAILED', exitCode: 1 });
  });

  it('fails with COMMAND_START_FAILED for an executable that does not exist', async () => {
    const missing = commandTask({ name: 'missing', inputs: z.object({}), outputs: z.object({}), command: () => ['airlock-no-such-executable-7d1c'], outputsFrom: 'stdout-json' });
    await expect(executeTask(missing, {})).resolves.toMatchObject({ ok: false, error: { code: 'COMMAND_START_FAILED', kind: 'USER', retryable: false } });
  });

  it('fails with TASK_OUTPUT_INVALID for stdout that is not JSON, a missing output file, or a symlink out of the working directory', async () => {
    const notJson = commandTask({ name: 'not-json', inputs: z.object({}), outputs: z.object({}), command: () => ['echo', 'hello'], outputsFrom: 'stdout-json' });
    await expect(executeTask(notJson, {})).resolves.toMatchObject({ error: { code: 'TASK_OUTPUT_INVALID' } });
    const noFile = commandTask({ name: 'no-file', inputs: z.object({}), outputs: z.object({ out: z.string() }), command: () => ['true'], outputsFrom: { files: { out: 'out.txt' } } });
    await expect(executeTask(noFile, {})).resolves.toMatchObject({ error: { code: 'TASK_OUTPUT_INVALID', issues: [{ path: ['out'] }] } });
    const escape = commandTask({
      name: 'escape',
      inputs: z.object({}),
      outputs: z.object({ out: z.string() }),
      command: () => ['ln', '-s', '/etc/hostname', 'out.txt'],
      outputsFrom: { files: { out: 'out.txt' } },
    });
    await expect(executeTask(escape, {})).resolves.toMatchObject({ error: { code: 'TASK_OUTPUT_INVALID', issues: [{ path: ['out'] }] } });
  });

  it('fails with TASK_OUTPUT_INVALID when stdout outgrows its limit', async () => {
    const chatty = commandTask({
      name: 'chatty',
      inputs: z.object({}),
      outputs: z.object({}),
      command: () => [NODE, '-e', "process.stdout.write('x'.repeat(100000))"],
      outputsFrom: 'stdout-json',
      maxStdoutBytes: 1000,
    });
    await expect(executeTask(chatty, {})).resolves.toMatchObject({ error: { code: 'TASK_OUTPUT_INVALID' } });
  });

  it('passes no environment but PATH, HOME, TMPDIR and its own env; names, not values, go in the spec', async () => {
    process.env.AIRLOCK_TEST_CANARY = 'canary-env-9e3d';
    try {
      const env = commandTask({
        name: 'env',
        inputs: z.object({}),
        outputs: z.object({ env: z.string() }),
        command: () => ['env'],
        env: { GREETING: 'hi' },
        outputsFrom: { stdout: (env) => ({ env }) },
      });
      const result = await executeTask(env, {});
      expect(result.ok).toBe(true);
      if (!result.ok) return;
      const names = result.outputs.env.trim().split('\n').map((line) => line.split('=')[0]).sort();
      expect(names).toEqual(['GREETING', 'HOME', 'PATH', 'TMPDIR']);
      expect(result.outputs.env).not.toContain('canary-env-9e3d');
      expect(env.spec.command?.envNames).toEqual(['GREETING']);
      expect(JSON.stringify(env.spec)).not.toContain('hi');
    } finally {
      delete process.env.AIRLOCK_TEST_CANARY;
    }
  });

  describe('timeouts and aborts', () => {
    const pids: number[] = [];
    afterEach(() => {
      for (const pid of pids.splice(0)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Already gone, as it should be.
        }
      }
    });

    /** Running (a zombie, exited but not yet reaped by whoever inherited it, counts as gone). */
    const alive = (pid: number): boolean => {
      try {
        process.kill(pid, 0);
      } catch {
        return false;
      }
      try {
        // /proc/<pid>/stat: "pid (comm) S …"; the state follows the last ')'.
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
      } catch {
        return false;
      }
    };

    /** A command that starts a grandchild, writes both pids, and ignores SIGTERM when asked to. */
    const sleeper = (ignoreTerm: boolean) =>
      commandTask({
        name: 'sleeper',
        inputs: z.object({}),
        outputs: z.object({}),
        command: () => [
          NODE,
          '-e',
          `${ignoreTerm ? "process.on('SIGTERM', () => {});" : ''}
           const { spawn } = require('node:child_process');
           const grandchild = spawn('sleep', ['60'], { stdio: 'ignore' });
           require('node:fs').writeFileSync('pids', process.pid + ' ' + grandchild.pid);
           setInterval(() => {}, 1000);`,
        ],
        outputsFrom: 'stdout-json',
      });

    async function pidsOf(workDir: string): Promise<number[]> {
      for (let i = 0; i < 200; i += 1) {
        const text = await readFile(join(workDir, 'pids'), 'utf8').catch(() => '');
        if (text.includes(' ')) return text.split(' ').map(Number);
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      throw new Error('the command never wrote its pids');
    }

    it('on abort, stops the command and everything it started, and ends ABORTED', async () => {
      const { mkdtemp, rm } = await import('node:fs/promises');
      const { tmpdir } = await import('node:os');
      const workDir = await mkdtemp(join(tmpdir(), 'airlock-cmd-'));
      try {
        const controller = new AbortController();
        const running = executeTask(sleeper(false), {}, { workDir, signal: controller.signal, timeoutMs: 60_000, killGraceMs: 2000 });
        const started = await pidsOf(workDir);
        pids.push(...started);
        expect(started.every(alive)).toBe(true);
        controller.abort();
        await expect(running).resolves.toMatchObject({ ok: false, phase: 'ABORTED', error: { code: 'TASK_ABORTED' } });
        // Signal delivery is asynchronous: the processes go within moments, not necessarily by now.
        await vi.waitFor(() => expect(started.filter(alive)).toEqual([]), { timeout: 5000, interval: 50 });
      } finally {
        await rm(workDir, { recursive: true, force: true });
      }
    });

    it('sends SIGKILL after the grace period to a command that ignores SIGTERM', async () => {
      const { mkdtemp, rm } = await import('node:fs/promises');
      const { tmpdir } = await import('node:os');
      const workDir = await mkdtemp(join(tmpdir(), 'airlock-cmd-'));
      try {
        const running = executeTask(sleeper(true), {}, { workDir, timeoutMs: 1000, killGraceMs: 300 });
        const started = await pidsOf(workDir);
        pids.push(...started);
        await expect(running).resolves.toMatchObject({ ok: false, phase: 'TIMED_OUT', error: { code: 'TASK_TIMED_OUT' } });
        // Signal delivery is asynchronous: the processes go within moments, not necessarily by now.
        await vi.waitFor(() => expect(started.filter(alive)).toEqual([]), { timeout: 5000, interval: 50 });
      } finally {
        await rm(workDir, { recursive: true, force: true });
      }
    });
  });

  it.each([
    ['an absolute output path', { files: { out: '/etc/passwd' } }],
    ['an output path that climbs out', { files: { out: '../x' } }],
    ['no output files', { files: {} }],
    ['an unknown outputsFrom', 'stdout' as never],
  ])('refuses %s with TASK_DEFINITION_INVALID', (_what, outputsFrom) => {
    expect(() => commandTask({ name: 'bad', inputs: z.object({}), outputs: z.object({ out: z.string() }), command: () => ['true'], outputsFrom })).toThrowError(
      expect.objectContaining({ code: 'TASK_DEFINITION_INVALID' }),
    );
  });

  it('refuses a bad env name at definition', () => {
    expect(() => commandTask({ name: 'bad', inputs: z.object({}), outputs: z.object({}), command: () => ['true'], env: { 'A-B': 'x' }, outputsFrom: 'stdout-json' })).toThrowError(
      expect.objectContaining({ code: 'TASK_DEFINITION_INVALID' }),
    );
  });

  it('fails the attempt when command() returns no executable, or files() escapes the working directory', async () => {
    const empty = commandTask({ name: 'empty', inputs: z.object({}), outputs: z.object({}), command: () => [] as never, outputsFrom: 'stdout-json' });
    await expect(executeTask(empty, {})).resolves.toMatchObject({ error: { code: 'TASK_FAILED_FINAL', kind: 'USER' } });
    const escape = commandTask({ name: 'escape', inputs: z.object({}), outputs: z.object({}), files: () => ({ '../evil': 'x' }), command: () => ['true'], outputsFrom: 'stdout-json' });
    await expect(executeTask(escape, {})).resolves.toMatchObject({ error: { code: 'TASK_FAILED_FINAL', kind: 'USER' } });
  });
});
