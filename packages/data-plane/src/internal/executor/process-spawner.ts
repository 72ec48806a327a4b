// Starts task processes from a small launcher process, so that the agent never forks itself: fork() copies the parent's page tables, which for a data plane of 150–250 MB blocks its event loop for 10–25 ms per task.
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { AirlockError, isProcessAlive, type Logger } from '@airlock/common';

/** What to start: always detached (a session and process group of its own), standard output ignored, standard error a pipe. */
export interface SpawnRequest {
  readonly command: string;
  readonly args: readonly string[];
  readonly cwd: string;
  /** The whole environment of the new process. */
  readonly env: Readonly<Record<string, string>>;
  /** `pipe`: the process reads its request from standard input; `ignore`: /dev/null. */
  readonly stdin: 'ignore' | 'pipe';
}

/** How a spawned process ended; both null when the launcher was lost and only its disappearance was seen. */
export interface SpawnedExit {
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface SpawnedProcess {
  readonly pid: number;
  readonly stderr: Readable;
  /** Present when the request asked for `stdin: 'pipe'`. */
  readonly stdin: Writable | undefined;
  readonly exited: Promise<SpawnedExit>;
  /** The exit, once seen. */
  readonly exit: SpawnedExit | undefined;
}

export interface ProcessSpawner {
  /** Starts a process; rejects (with the errno code) when it cannot be started. */
  spawn(request: SpawnRequest): Promise<SpawnedProcess>;
  /** Stops the launcher. Processes it started live on (their groups are the executor's to kill). */
  close(): void;
  /** The launcher's pid while it runs (diagnostics and tests). */
  launcherPid(): number | undefined;
}

/**
 * The launcher: a CommonJS script run with `node -e`, so it works from the sources and from dist alike.
 * It speaks over the IPC channel: `spawn` in; `spawned` (standard error's descriptor attached), `stdin`
 * (standard input's), `exit` and `error` out. It exits when the agent goes.
 */
const LAUNCHER = `
'use strict';
const { spawn } = require('node:child_process');
const send = (message, handle) => { if (process.connected) process.send(message, handle, () => undefined); };
process.on('disconnect', () => process.exit(0));
process.on('message', (m) => {
  if (m === null || typeof m !== 'object' || m.type !== 'spawn') return;
  let child;
  try {
    child = spawn(m.command, m.args, { cwd: m.cwd, env: m.env, detached: true, stdio: [m.stdin, 'ignore', 'pipe'] });
  } catch (error) {
    send({ type: 'error', id: m.id, code: String(error.code || 'EINVAL') });
    return;
  }
  child.once('error', (error) => send({ type: 'error', id: m.id, code: String(error.code || 'EIO') }));
  if (child.pid === undefined) return;
  send({ type: 'spawned', id: m.id, pid: child.pid }, child.stderr);
  if (child.stdin) send({ type: 'stdin', id: m.id }, child.stdin);
  child.once('exit', (code, signal) => send({ type: 'exit', id: m.id, code, signal }));
});
`;

interface Pending {
  readonly request: SpawnRequest;
  /** The launcher that was asked to start it. */
  readonly launcher: ChildProcess;
  resolve: (spawned: SpawnedProcess) => void;
  reject: (error: Error) => void;
  pid?: number;
  stderr?: Readable;
  exit?: SpawnedExit;
  onExit?: (exit: SpawnedExit) => void;
}

/** How often a process whose launcher was lost is checked for, until it is gone. */
const ORPHAN_POLL_MS = 100;

export function createProcessSpawner(options: { readonly nodePath: string; readonly log: Logger }): ProcessSpawner {
  const { log } = options;
  let launcher: ChildProcess | undefined;
  let nextId = 1;
  let closed = false;
  const pending = new Map<number, Pending>();

  /** The IPC channel keeps the process alive only while a process it started is running: an idle executor does not hold an agent (or a test) open. */
  const holdWhileBusy = (): void => {
    const channel = launcher?.channel as { ref(): void; unref(): void } | null | undefined;
    if (pending.size > 0) channel?.ref();
    else channel?.unref();
  };

  const finish = (id: number, exit: SpawnedExit): void => {
    const entry = pending.get(id);
    if (entry === undefined) return;
    pending.delete(id);
    holdWhileBusy();
    entry.exit = exit;
    entry.onExit?.(exit);
  };

  /** The launcher went away: what it started can no longer be waited for, only watched until it is gone. */
  const orphaned = (lost: ChildProcess): void => {
    if (launcher === lost) launcher = undefined;
    for (const [id, entry] of pending) {
      if (entry.launcher !== lost) continue;
      if (entry.pid === undefined) {
        pending.delete(id);
        entry.reject(new AirlockError('UNAVAILABLE', 'The task launcher exited before the process started'));
        continue;
      }
      const pid = entry.pid;
      const timer = setInterval(() => {
        if (isProcessAlive(pid)) return;
        clearInterval(timer);
        finish(id, { exitCode: null, signal: null });
      }, ORPHAN_POLL_MS);
    }
    if (!closed && pending.size > 0) log.warn({ event: 'executor.launcher_lost', processes: pending.size }, 'the task launcher exited; its processes are watched until they end');
  };

  const start = (): ChildProcess => {
    if (launcher !== undefined && launcher.connected) return launcher;
    // Nothing of the agent's environment: PATH only, and no descriptor but the IPC channel.
    const created = spawn(options.nodePath, ['-e', LAUNCHER], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, stdio: ['ignore', 'ignore', 'ignore', 'ipc'] });
    created.on('message', (message: { type?: string; id?: number; pid?: number; code?: unknown; signal?: unknown }, handle?: unknown) => {
      const id = typeof message.id === 'number' ? message.id : -1;
      const entry = pending.get(id);
      if (entry === undefined) return;
      switch (message.type) {
        case 'spawned':
          entry.pid = typeof message.pid === 'number' ? message.pid : undefined;
          entry.stderr = handle as Readable;
          if (entry.request.stdin === 'ignore') settle(id, entry, undefined);
          break;
        case 'stdin':
          settle(id, entry, handle as Writable);
          break;
        case 'exit':
          finish(id, { exitCode: typeof message.code === 'number' ? message.code : null, signal: typeof message.signal === 'string' ? (message.signal as NodeJS.Signals) : null });
          break;
        case 'error':
          pending.delete(id);
          holdWhileBusy();
          entry.reject(new AirlockError('INTERNAL', 'The task process could not be started', { details: { reason: String(message.code) } }));
          break;
        default:
          break;
      }
    });
    created.once('exit', () => orphaned(created));
    created.once('error', () => orphaned(created));
    created.unref();
    launcher = created;
    return created;
  };

  const settle = (id: number, entry: Pending, stdin: Writable | undefined): void => {
    const { pid, stderr } = entry;
    if (pid === undefined || stderr === undefined) {
      pending.delete(id);
      holdWhileBusy();
      entry.reject(new AirlockError('INTERNAL', 'The task launcher sent no process'));
      return;
    }
    const exited = new Promise<SpawnedExit>((resolve) => {
      if (entry.exit !== undefined) resolve(entry.exit);
      else entry.onExit = resolve;
    });
    entry.resolve({
      pid,
      stderr,
      stdin,
      exited,
      get exit() {
        return entry.exit;
      },
    });
  };

  return {
    spawn(request) {
      if (closed) return Promise.reject(new AirlockError('UNAVAILABLE', 'The executor is closed'));
      const target = start();
      const id = nextId;
      nextId += 1;
      return new Promise<SpawnedProcess>((resolve, reject) => {
        const entry: Pending = { request, resolve, reject, launcher: target };
        pending.set(id, entry);
        holdWhileBusy();
        target.send({ type: 'spawn', id, command: request.command, args: request.args, cwd: request.cwd, env: request.env, stdin: request.stdin }, (error: Error | null) => {
          if (error === null || !pending.has(id)) return;
          pending.delete(id);
          holdWhileBusy();
          reject(new AirlockError('UNAVAILABLE', 'The task launcher is not reachable', { cause: error }));
        });
      });
    },
    launcherPid() {
      return launcher?.pid;
    },
    close() {
      closed = true;
      const current = launcher;
      launcher = undefined;
      if (current?.connected === true) current.disconnect();
    },
  };
}
