// Runs an external tool (openssl, sslscan, ss) with a timeout and closed stdin; never throws.
import { execFile } from 'node:child_process';

/** What a finished (or failed-to-start) command produced. */
export interface CommandResult {
  /** Exit code; null when the process was killed or never started. */
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** Why the command did not run to completion: `ENOENT` (tool not installed), `TIMEOUT`, `ABORTED` or an errno. */
  readonly failure?: string;
}

export interface RunCommandOptions {
  /** Kill the command after this long. @default 15000 */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

/**
 * Runs `file args…` with stdin closed (like `</dev/null`), capturing stdout and stderr. A non-zero
 * exit is not an error: callers read the exit code and the output.
 */
export async function runCommand(file: string, args: readonly string[], options: RunCommandOptions = {}): Promise<CommandResult> {
  const timeoutMs = options.timeoutMs ?? 15_000;
  return new Promise((resolve) => {
    if (options.signal?.aborted === true) {
      resolve({ code: null, stdout: '', stderr: '', failure: 'ABORTED' });
      return;
    }
    const child = execFile(
      file,
      [...args],
      {
        timeout: timeoutMs,
        killSignal: 'SIGKILL',
        maxBuffer: 8 * 1024 * 1024,
        encoding: 'utf8',
        env: { ...process.env, LC_ALL: 'C' },
        ...(options.signal === undefined ? {} : { signal: options.signal }),
      },
      (error, stdout, stderr) => {
        if (error === null) {
          resolve({ code: 0, stdout, stderr });
          return;
        }
        const e = error as NodeJS.ErrnoException & { killed?: boolean; code?: unknown };
        if (typeof e.code === 'number') {
          resolve({ code: e.code, stdout, stderr });
          return;
        }
        const failure =
          e.name === 'AbortError' ? 'ABORTED' : e.killed === true ? 'TIMEOUT' : typeof e.code === 'string' ? e.code : 'INTERNAL';
        resolve({ code: null, stdout, stderr, failure });
      },
    );
    child.stdin?.end();
  });
}
