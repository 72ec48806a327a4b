// Process groups of task processes: signalling a whole group, and recognising a process again after an agent restart (pid + start time + boot id).
import { currentBootId, processStartTime, type ProcessIdentity } from '@airlock/common';

/** Sends `signal` to every process in the group `pgid`; false when the group no longer exists. */
export function signalGroup(pgid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false;
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
  const currentBoot = await currentBootId();
  if (currentBoot === undefined) return 'unknown';
  if (currentBoot !== identity.bootId) return 'gone';
  const startTime = await processStartTime(identity.pid);
  if (startTime !== undefined && startTime !== identity.startTime) return 'recycled';
  return signalGroup(identity.pid, 'SIGKILL') ? 'killed' : 'gone';
}
