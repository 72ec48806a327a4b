// Runs the real `airlock` CLI from its sources in a child process (tsx, workspace sources via the airlock-source condition).
import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);
const MAIN = fileURLToPath(new URL('../src/main.ts', import.meta.url));
const NODE_ARGS = ['--conditions=airlock-source', '--import', 'tsx', MAIN];

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `airlock <args>` to completion. Never throws on a non-zero exit; returns the code. */
export async function runCli(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, [...NODE_ARGS, ...args], {
      env: { ...process.env, ...env },
      timeout: 60_000,
      maxBuffer: 16 * 1024 * 1024,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/**
 * Starts a long-running `airlock <args>` and resolves once `ready` appears on stdout. `launcher` runs it under another
 * command that then executes Node, e.g. `['prlimit', '--nofile=256:256', '--']` for a low descriptor limit.
 */
export async function startCli(
  args: readonly string[],
  ready: RegExp,
  env: NodeJS.ProcessEnv = {},
  launcher: readonly string[] = [],
): Promise<{ child: ChildProcessWithoutNullStreams; output: () => string }> {
  const [command, ...rest] = [...launcher, process.execPath, ...NODE_ARGS, ...args];
  const child = spawn(command ?? process.execPath, rest, { env: { ...process.env, ...env } });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${String(ready)}; stdout: ${out}; stderr: ${err}`)), 30_000);
    const check = (): void => {
      if (ready.test(out)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited with ${String(code)} before ready; stdout: ${out}; stderr: ${err}`));
    });
  });
  return { child, output: () => out + err };
}

/** Sends SIGINT (Ctrl-C) and resolves with the exit code, or the name of the signal that ended the process. */
export async function interrupt(child: ChildProcessWithoutNullStreams): Promise<number | string | null> {
  if (child.exitCode !== null) return child.exitCode;
  if (child.signalCode !== null) return child.signalCode;
  const exited = new Promise<number | string | null>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)));
  child.kill('SIGINT');
  return exited;
}
