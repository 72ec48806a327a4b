// Process groups of task processes: signalling a whole group, and recognising a process again after an agent restart (pid + start time + boot id).
import { readFile } from 'node:fs/promises';

/** Who a started task process was, as the journal records it, so a recycled pid is never mistaken for it. */
export interface ProcessIdentity {
  /** The process id, which is also its process group id (it was started detached, as a group leader). */
  readonly pid: number;
  /** Field 22 of /proc/<pid>/stat: clock ticks after boot at which the process started. */
  readonly startTime: string;
  /** /proc/sys/kernel/random/boot_id: start times count from this boot only. */
  readonly bootId: string;
}

/** Sends `signal` to every process in the group `pgid`; false when the group no longer exists. */
export function signalGroup(pgid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  }
}

/** The identity of a running process, or undefined where /proc cannot tell (the process is gone, or the system is not Linux). */
export async function processIdentity(pid: number): Promise<ProcessIdentity | undefined> {
  const [startTime, boot] = await Promise.all([processStartTime(pid), bootId()]);
  return startTime === undefined || boot === undefined ? undefined : { pid, startTime, bootId: boot };
}

/** Field 22 (starttime) of /proc/<pid>/stat, or undefined if there is no such process. */
export async function processStartTime(pid: number): Promise<string | undefined> {
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
  return startTime !== undefined && /^\d+$/.test(startTime) ? startTime : undefined;
}

async function bootId(): Promise<string | undefined> {
  try {
    return (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
  } catch {
    return undefined;
  }
}

/**
 * After an agent restart: kills what is left of a task process's group, if it can be shown to be
 * ours. Returns what it did.
 *
 * - Another boot: nothing of it survives.
 * - The leader's pid is alive with the recorded start time: it is ours; SIGKILL the group.
 * - The pid is alive with another start time: it was recycled, so our group had died out (Linux
 *   does not hand out a pid while a process group of that id exists); leave it alone.
 * - No process has the pid: any process still in group `pid` is a member of ours (a group exists
 *   only while it has members, and its id cannot be reused meanwhile); SIGKILL the group, which
 *   is a no-op (ESRCH) when it is empty.
 */
export async function killLeftoverGroup(identity: ProcessIdentity): Promise<'killed' | 'gone' | 'recycled' | 'unknown'> {
  const currentBoot = await bootId();
  if (currentBoot === undefined) return 'unknown';
  if (currentBoot !== identity.bootId) return 'gone';
  const startTime = await processStartTime(identity.pid);
  if (startTime !== undefined && startTime !== identity.startTime) return 'recycled';
  return signalGroup(identity.pid, 'SIGKILL') ? 'killed' : 'gone';
}
