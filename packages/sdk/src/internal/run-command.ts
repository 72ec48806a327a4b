// Runs one executable with an argument array (never a shell), capturing stdout and the tail of stderr, stopping it on abort.
import { spawn } from 'node:child_process';
import { AirlockError } from '@airlock/common/errors';
import { CommandFailedError } from '../errors.js';

export interface RunCommandOptions {
  readonly argv: readonly [string, ...string[]];
  readonly cwd: string;
  /** The child's entire environment. */
  readonly env: Readonly<Record<string, string>>;
  readonly stdin?: string | Uint8Array;
  readonly signal: AbortSignal;
  /** After SIGTERM on abort, how long before SIGKILL. */
  readonly killGraceMs: number;
  /** Whether stdout is kept (for stdout outputs) or only drained. */
  readonly captureStdout: boolean;
  readonly maxStdoutBytes: number;
  readonly stderrTailBytes: number;
}

/**
 * Spawns the command in its own process group, so that on abort SIGTERM (then SIGKILL after the
 * grace period) reaches whatever it started too. Resolves with stdout on exit status 0. Rejects
 * with COMMAND_START_FAILED when the executable cannot be started, CommandFailedError on any other
 * exit, TASK_OUTPUT_INVALID when stdout outgrows its limit, and the signal's reason on abort (once
 * the process has exited).
 */
export function runCommand(options: RunCommandOptions): Promise<Buffer> {
  const [executable, ...args] = options.argv;
  return new Promise<Buffer>((resolve, reject) => {
    if (options.signal.aborted) {
      reject(asError(options.signal.reason));
      return;
    }
    const child = spawn(executable, args, {
      cwd: options.cwd,
      env: { ...options.env },
      stdio: [options.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      shell: false,
      detached: true,
      windowsHide: true,
    });

    const stdout: Buffer[] = [];
    let stdoutBytes = 0;
    let stderrTail = Buffer.alloc(0);
    let failure: Error | undefined;
    let killTimer: NodeJS.Timeout | undefined;

    const killGroup = (signal: NodeJS.Signals): void => {
      if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
      try {
        process.kill(-child.pid, signal);
      } catch {
        // Already gone.
      }
    };
    const terminate = (reason: unknown): void => {
      failure ??= asError(reason);
      killGroup('SIGTERM');
      killTimer ??= setTimeout(() => killGroup('SIGKILL'), options.killGraceMs);
    };
    const onAbort = (): void => terminate(options.signal.reason);
    options.signal.addEventListener('abort', onAbort, { once: true });

    child.stdout?.on('data', (chunk: Buffer) => {
      stdoutBytes += chunk.length;
      if (!options.captureStdout) return;
      if (stdoutBytes > options.maxStdoutBytes) {
        terminate(new AirlockError('TASK_OUTPUT_INVALID', `The command wrote more than ${options.maxStdoutBytes} bytes to stdout`));
        return;
      }
      stdout.push(chunk);
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      stderrTail = Buffer.concat([stderrTail, chunk]);
      if (stderrTail.length > options.stderrTailBytes) stderrTail = stderrTail.subarray(stderrTail.length - options.stderrTailBytes);
    });
    if (child.stdin !== null) {
      // A command may exit without reading its input; EPIPE then is not the command's failure.
      child.stdin.on('error', () => undefined);
      child.stdin.end(options.stdin);
    }

    child.on('error', (error: NodeJS.ErrnoException) => {
      // 'error' without a pid means spawn failed (ENOENT, EACCES); 'close' still follows.
      if (child.pid === undefined) {
        failure ??= new AirlockError('COMMAND_START_FAILED', `Cannot start ${JSON.stringify(executable)}: ${error.code ?? error.message}`, {
          cause: error,
          ...(error.code === undefined ? {} : { details: { errno: error.code } }),
        });
      } else {
        terminate(error);
      }
    });
    child.on('close', (exitCode, signal) => {
      options.signal.removeEventListener('abort', onAbort);
      clearTimeout(killTimer);
      // The command is gone, but a background process it started may still hold the group.
      if (child.pid !== undefined) {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          // No process left in the group.
        }
      }
      if (failure !== undefined) reject(failure);
      else if (exitCode === 0) resolve(Buffer.concat(stdout));
      else reject(new CommandFailedError(executable, exitCode, signal, stderrTail.toString('utf8').replace(/^\uFFFD+/, '')));
    });
  });
}

/** An abort reason as an Error (AbortSignal reasons can be anything). */
function asError(reason: unknown): Error {
  return reason instanceof Error ? reason : new AirlockError('ABORTED', undefined, { cause: reason });
}
