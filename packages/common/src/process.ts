// Facts about processes: whether one exists, whether it is still the process a file once named (pid + start time + boot id), and the descriptor limit from /proc.
import { readFile } from 'node:fs/promises';

/** Whether a process with this pid exists (signal 0: nothing is sent; EPERM: it does, but belongs to another user). */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Who a process was when it was recorded, so that a recycled pid is never mistaken for it. */
export interface ProcessIdentity {
  readonly pid: number;
  /** Field 22 of /proc/<pid>/stat: clock ticks after boot at which the process started. */
  readonly startTime: string;
  /** /proc/sys/kernel/random/boot_id: start times count from this boot only. */
  readonly bootId: string;
}

async function procStat(pid: number): Promise<{ state: string; startTime: string | undefined } | undefined> {
  let stat: string;
  try {
    stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) is in parentheses and may itself hold spaces or parentheses.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state), so field 22 is fields[19].
  const startTime = fields[19];
  return { state: fields[0] ?? '', startTime: startTime !== undefined && /^\d+$/.test(startTime) ? startTime : undefined };
}

/** Field 22 (starttime) of /proc/<pid>/stat, or undefined if there is no such process (or no /proc). */
export async function processStartTime(pid: number): Promise<string | undefined> {
  return (await procStat(pid))?.startTime;
}

/** This boot's id, or undefined where the system does not say (not Linux). */
export async function currentBootId(): Promise<string | undefined> {
  try {
    return (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
  } catch {
    return undefined;
  }
}

/** The identity of a running process, or undefined where /proc cannot tell (the process is gone, or the system is not Linux). */
export async function processIdentity(pid: number): Promise<ProcessIdentity | undefined> {
  const [startTime, bootId] = await Promise.all([processStartTime(pid), currentBootId()]);
  return startTime === undefined || bootId === undefined ? undefined : { pid, startTime, bootId };
}

/**
 * Whether `pid` runs and, when its recorded `identity` is given, is still that process: not a
 * zombie, started in this boot at the recorded time. A pid that was recycled for another process
 * (its recorded owner exited long ago) is not running. Without /proc, only existence is known.
 */
export async function isProcessRunning(pid: number, identity?: ProcessIdentity): Promise<boolean> {
  if (!Number.isSafeInteger(pid) || pid <= 0 || !isProcessAlive(pid)) return false;
  const stat = await procStat(pid);
  if (stat === undefined) return isProcessAlive(pid);
  if (stat.state === 'Z' || stat.state === 'X') return false;
  if (identity === undefined || identity.pid !== pid) return true;
  if (identity.bootId !== (await currentBootId())) return false;
  return stat.startTime === identity.startTime;
}

/** The soft "Max open files" limit from the text of /proc/self/limits (Linux); undefined when absent or unlimited. */
export function parseDescriptorLimit(procSelfLimits: string): number | undefined {
  const match = /^Max open files\s+(\d+|unlimited)\s/m.exec(procSelfLimits);
  const value = match?.[1];
  if (value === undefined || value === 'unlimited') return undefined;
  const limit = Number(value);
  return Number.isSafeInteger(limit) && limit > 0 ? limit : undefined;
}
