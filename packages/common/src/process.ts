// Whether a process exists, for every package that watches one by pid.

/** Whether a process with this pid exists (signal 0: nothing is sent; EPERM: it does, but belongs to another user). */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
