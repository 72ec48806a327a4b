// The task launcher: real processes started from a real launcher process, over its IPC channel.
import { text } from 'node:stream/consumers';
import { afterEach, describe, expect, it } from 'vitest';
import { AirlockError } from '@airlock/common';
import { captureLogger } from '@airlock/testing';
import { createProcessSpawner, type ProcessSpawner } from '../src/internal/executor/process-spawner.js';
import { isProcessAlive as alive } from '@airlock/common';

const opened: ProcessSpawner[] = [];
afterEach(() => {
  for (const spawner of opened.splice(0)) spawner.close();
});

function spawner(): { spawner: ProcessSpawner; logger: ReturnType<typeof captureLogger> } {
  const logger = captureLogger('spawner');
  const created = createProcessSpawner({ nodePath: process.execPath, log: logger.log });
  opened.push(created);
  return { spawner: created, logger };
}

const node = (script: string, stdin: 'ignore' | 'pipe' = 'ignore') => ({
  command: process.execPath,
  args: ['-e', script],
  cwd: process.cwd(),
  env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ONLY: 'this' },
  stdin,
});

describe('createProcessSpawner', () => {
  it('starts a process with exactly the given environment, in a group of its own, and reports its exit and standard error', async () => {
    const { spawner: target } = spawner();
    const started = await target.spawn(node("process.stderr.write(JSON.stringify({ env: process.env, pgid: require('node:child_process').execSync('ps -o pgid= -p ' + process.pid).toString().trim(), pid: process.pid })); process.exit(7)"));
    const [stderr, exit] = await Promise.all([text(started.stderr), started.exited]);
    expect(exit).toEqual({ exitCode: 7, signal: null });
    expect(started.exit).toEqual(exit);
    const seen = JSON.parse(stderr) as { env: Record<string, string>; pgid: string; pid: number };
    expect(seen.pid).toBe(started.pid);
    expect(Object.keys(seen.env).sort()).toEqual(['ONLY', 'PATH']);
    expect(Number(seen.pgid)).toBe(started.pid);
    expect(target.launcherPid()).not.toBe(process.pid);
  });

  it('hands standard input to the caller', async () => {
    const { spawner: target } = spawner();
    const started = await target.spawn(node("let t = ''; process.stdin.on('data', (c) => (t += c)).on('end', () => { process.stderr.write(t.toUpperCase()); process.exit(0); });", 'pipe'));
    started.stdin?.end('hello launcher');
    expect(await text(started.stderr)).toBe('HELLO LAUNCHER');
    expect(await started.exited).toEqual({ exitCode: 0, signal: null });
  });

  it('reports a signal, and refuses a command that does not exist with its errno', async () => {
    const { spawner: target } = spawner();
    const started = await target.spawn(node('setInterval(() => {}, 1000)'));
    process.kill(-started.pid, 'SIGKILL');
    expect(await started.exited).toEqual({ exitCode: null, signal: 'SIGKILL' });
    const error = await target.spawn({ ...node(''), command: '/nonexistent/airlock-command' }).then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(AirlockError.is(error, 'INTERNAL')).toBe(true);
    expect((error as AirlockError).details).toMatchObject({ reason: 'ENOENT' });
  });

  it('when the launcher dies, its processes live on, and their end is still seen', async () => {
    const { spawner: target, logger } = spawner();
    const started = await target.spawn(node('setTimeout(() => process.exit(0), 1500)'));
    const launcher = target.launcherPid() as number;
    process.kill(launcher, 'SIGKILL');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(alive(launcher)).toBe(false);
    expect(alive(started.pid)).toBe(true);
    // The exit status went with the launcher: only the end is known.
    expect(await started.exited).toEqual({ exitCode: null, signal: null });
    expect(alive(started.pid)).toBe(false);
    expect(logger.lines.some((line) => line.event === 'executor.launcher_lost')).toBe(true);
    // A new launcher starts for the next process.
    const next = await target.spawn(node('process.exit(3)'));
    expect(await next.exited).toEqual({ exitCode: 3, signal: null });
    expect(target.launcherPid()).not.toBe(launcher);
  });

  it('refuses to start anything once closed', async () => {
    const { spawner: target } = spawner();
    target.close();
    await expect(target.spawn(node('0'))).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });
});
