// Unit test of process identities: start times from /proc, and a recorded process told apart from whatever holds its pid later.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { currentBootId, isProcessRunning, processIdentity, processStartTime } from './process.js';

describe('process identity', () => {
  it('reads this process start time and boot id, and nothing for a pid that does not exist', async () => {
    const identity = await processIdentity(process.pid);
    expect(identity).toMatchObject({ pid: process.pid, startTime: expect.stringMatching(/^\d+$/), bootId: expect.stringMatching(/^[0-9a-f-]{36}$/) });
    expect(await currentBootId()).toBe(identity?.bootId);
    expect(await processStartTime(2 ** 22 + 12345)).toBeUndefined();
  });

  it('a process is running only while it is the one recorded: not after it exits, not when its pid now holds another start time or boot', async () => {
    const identity = await processIdentity(process.pid);
    if (identity === undefined) throw new Error('no identity');
    expect(await isProcessRunning(process.pid)).toBe(true);
    expect(await isProcessRunning(process.pid, identity)).toBe(true);
    // The same pid, recorded with another start time: the recorded process exited and the pid went to another.
    expect(await isProcessRunning(process.pid, { ...identity, startTime: String(BigInt(identity.startTime) + 1n) })).toBe(false);
    expect(await isProcessRunning(process.pid, { ...identity, bootId: '00000000-0000-0000-0000-000000000000' })).toBe(false);
    // An identity recorded for another pid says nothing about this one.
    expect(await isProcessRunning(process.pid, { ...identity, pid: process.pid + 1, startTime: '1' })).toBe(true);
    expect(await isProcessRunning(2 ** 22 + 12345)).toBe(false);
    expect(await isProcessRunning(0)).toBe(false);
    expect(await isProcessRunning(-1)).toBe(false);

    // A child that has exited is not running.
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)'], { stdio: 'ignore' });
    const pid = child.pid as number;
    expect(await isProcessRunning(pid)).toBe(true);
    child.kill('SIGKILL');
    await once(child, 'exit');
    expect(await isProcessRunning(pid)).toBe(false);
  });
});
