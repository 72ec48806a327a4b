// Task isolation: each task process starts in user and mount namespaces of its own, where the agent's data directory and the user's home are empty, read-only directories, and no capability is left.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { AirlockError, type Logger } from '@airlock/common';
import type { SpawnRequest } from './process-spawner.js';

/**
 * `namespaces`: required; the executor refuses to run a task without it. `auto` (the default): used
 * where the system allows unprivileged user namespaces, else tasks run without it and the agent
 * says so at start-up. `off`: never (tasks can read every file the agent's user can).
 */
export type TaskIsolationMode = 'auto' | 'namespaces' | 'off';

export interface TaskSandboxConfig {
  readonly mode: TaskIsolationMode;
  /** Directories the task sees empty (and read-only): the agent's data directory, the user's home. */
  readonly hide: readonly string[];
  /** Where probe working directories are made. */
  readonly workRoot: string;
  /** The binary that runs bundles: kept visible when it lies in a hidden directory. */
  readonly nodePath: string;
}

export interface TaskSandboxStatus {
  /** Whether task processes start isolated. */
  readonly active: boolean;
  readonly mode: TaskIsolationMode;
  /** The directories hidden from tasks, when active. */
  readonly hidden: readonly string[];
  /** Why not, when not active. */
  readonly reason?: string;
}

export interface TaskSandbox {
  readonly status: TaskSandboxStatus;
  /** The request that starts `request`'s process inside the sandbox (unchanged when it is not active). Throws FAILED_PRECONDITION when isolation is required but unavailable. */
  wrap(request: SpawnRequest): SpawnRequest;
}

/** Where the tools the wrapper runs are looked for: fixed system directories, never the task's PATH. */
const SYSTEM_DIRS = ['/usr/bin', '/bin', '/usr/sbin', '/sbin'];
const TOOLS = ['unshare', 'setpriv', 'mount', 'mkdir', 'sh'] as const;
type Tool = (typeof TOOLS)[number];
const PROBE_TIMEOUT_MS = 10_000;

const quote = (value: string): string => `'${value.replaceAll("'", "'\\''")}'`;
const isWithin = (path: string, dir: string): boolean => path === dir || path.startsWith(dir.endsWith(sep) ? dir : dir + sep);

/** The hidden directories that are not inside another hidden one (mounting over the outer one already hides them). */
export function outermost(dirs: readonly string[]): string[] {
  const sorted = [...new Set(dirs.map((dir) => resolve(dir)))].filter((dir) => dir !== '/').sort((a, b) => a.length - b.length);
  const kept: string[] = [];
  for (const dir of sorted) if (!kept.some((outer) => isWithin(dir, outer))) kept.push(dir);
  return kept;
}

/**
 * The shell script run as namespace root inside fresh user and mount namespaces: opens the working
 * directory (and the node binary, when it is under a hidden directory) first, mounts an empty tmpfs
 * over each hidden directory, binds the opened ones back at their own paths, makes the tmpfs
 * read-only, and executes the task with no capability (bounding set empty, no_new_privs), so it can
 * neither unmount nor remount what hides the agent's files.
 */
export function sandboxScript(tools: Readonly<Record<Tool, string>>, workDir: string, hide: readonly string[], nodePath: string): string {
  const hidden = outermost(hide).filter((dir) => existsSync(dir));
  const keepNode = hidden.some((dir) => isWithin(nodePath, dir));
  const lines = ['set -eu', `exec 3<${quote(workDir)}`];
  if (keepNode) lines.push(`exec 4<${quote(nodePath)}`);
  for (const dir of hidden) lines.push(`${tools.mount} -t tmpfs -o mode=0755,nosuid,nodev,size=64k airlock-hidden ${quote(dir)}`);
  if (hidden.some((dir) => isWithin(workDir, dir))) {
    lines.push(`${tools.mkdir} -p ${quote(workDir)}`, `${tools.mount} --no-canonicalize --bind /proc/self/fd/3 ${quote(workDir)}`);
  }
  if (keepNode) {
    lines.push(`${tools.mkdir} -p ${quote(dirname(nodePath))}`, `: > ${quote(nodePath)}`, `${tools.mount} --no-canonicalize --bind /proc/self/fd/4 ${quote(nodePath)}`);
  }
  lines.push(keepNode ? 'exec 3<&- 4<&-' : 'exec 3<&-');
  for (const dir of hidden) lines.push(`${tools.mount} -o remount,ro,nosuid,nodev ${quote(dir)}`);
  // cd exports PWD and OLDPWD; the task's environment stays exactly what the executor gave it.
  lines.push(`cd ${quote(workDir)}`, 'unset PWD OLDPWD', `exec ${tools.setpriv} --no-new-privs --bounding-set=-all --inh-caps=-all -- "$@"`);
  return lines.join('\n');
}

function findTools(): Record<Tool, string> | string {
  const found: Partial<Record<Tool, string>> = {};
  for (const tool of TOOLS) {
    const path = SYSTEM_DIRS.map((dir) => join(dir, tool)).find((candidate) => existsSync(candidate));
    if (path === undefined) return `${tool} (util-linux) is not installed in ${SYSTEM_DIRS.join(', ')}`;
    found[tool] = path;
  }
  return found as Record<Tool, string>;
}

function wrapWith(tools: Readonly<Record<Tool, string>>, config: TaskSandboxConfig, request: SpawnRequest): SpawnRequest {
  const script = sandboxScript(tools, request.cwd, config.hide, config.nodePath);
  return {
    ...request,
    command: tools.unshare,
    args: ['--user', '--map-root-user', '--mount', '--propagation', 'private', '--', tools.sh, '-c', script, 'airlock-task', request.command, ...request.args],
  };
}

/** Runs `true` in the sandbox once, in a scratch working directory: its failure text, or undefined when it works. */
async function probe(tools: Readonly<Record<Tool, string>>, config: TaskSandboxConfig): Promise<string | undefined> {
  const dir = join(config.workRoot, `probe-${process.pid}-${Date.now()}`);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  try {
    const request = wrapWith(tools, config, { command: tools.sh, args: ['-c', 'exit 0'], cwd: dir, env: { PATH: SYSTEM_DIRS.join(':') }, stdin: 'ignore' });
    return await new Promise<string | undefined>((done) => {
      const child = spawn(request.command, request.args, { cwd: dir, env: request.env, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => {
        if (stderr.length < 2048) stderr += chunk.toString('utf8');
      });
      const timer = setTimeout(() => child.kill('SIGKILL'), PROBE_TIMEOUT_MS);
      child.once('error', (error) => {
        clearTimeout(timer);
        done(`${tools.unshare}: ${error.message}`);
      });
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        done(code === 0 ? undefined : (stderr.trim().split('\n')[0] ?? '') || `exited with ${code ?? signal}`);
      });
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Sets up task isolation (docs/runs.md, "Isolation"): finds the util-linux tools and tries the
 * sandbox once. In `auto` mode a failure leaves tasks unisolated, with a warning; in `namespaces`
 * mode every task start is refused with the reason.
 */
export async function openTaskSandbox(config: TaskSandboxConfig, log: Logger): Promise<TaskSandbox> {
  const hidden = outermost(config.hide);
  if (config.mode === 'off') {
    log.warn({ event: 'executor.isolation_off' }, 'task isolation is off: tasks can read every file the agent can');
    return { status: { active: false, mode: 'off', hidden: [], reason: 'turned off' }, wrap: (request) => request };
  }
  const tools = findTools();
  const reason = typeof tools === 'string' ? tools : await probe(tools, config).catch((error: unknown) => `the probe could not run (${AirlockError.from(error).code})`);
  if (reason === undefined && typeof tools !== 'string') {
    log.info({ event: 'executor.isolation_on', hidden: hidden.length }, 'tasks run in user and mount namespaces of their own');
    return { status: { active: true, mode: config.mode, hidden }, wrap: (request) => wrapWith(tools, config, request) };
  }
  const why = `user and mount namespaces are unavailable: ${reason ?? 'unknown'}`;
  if (config.mode === 'namespaces') {
    log.error({ event: 'executor.isolation_unavailable', mode: config.mode }, `task isolation is required but ${why}`);
    return {
      status: { active: false, mode: config.mode, hidden: [], reason: why },
      wrap: () => {
        throw new AirlockError('FAILED_PRECONDITION', `Task isolation is required (--task-isolation namespaces) but ${why}`, { details: { reason: 'isolation-unavailable' } });
      },
    };
  }
  log.warn({ event: 'executor.isolation_unavailable', mode: config.mode }, `tasks run without isolation (they can read every file the agent can): ${why}`);
  return { status: { active: false, mode: config.mode, hidden: [], reason: why }, wrap: (request) => request };
}
