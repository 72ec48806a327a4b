// Unit test of recognising a task process after a restart: start times from /proc, and when a leftover group may be killed.
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { killLeftoverGroup, processIdentity, processStartTime } from './process-group.js';

describe('process identity', () => {
  it('reads this process start time and boot id, and nothing for a pid that does not exist', async () => {
    const identity = await processIdentity(process.pid);
    expect(identity).toMatchObject({ pid: process.pid, startTime: expect.stringMatching(/^\d+$/), bootId: expect.stringMatching(/^[0-9a-f-]{36}$/) });
    expect(await processStartTime(2 ** 22 + 12345)).toBeUndefined();
  });

  it('kills a leftover group only when it is provably the recorded one', async () => {
    // A detached child that ignores SIGTERM, standing in for a task process.
    const child = spawn(process.execPath, ['-e', "process.on('SIGTERM', () => {}); setInterval(() => {}, 1000);"], { detached: true, stdio: 'ignore' });
    const exited = new Promise((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
    try {
      const identity = await processIdentity(child.pid as number);
      if (identity === undefined) throw new Error('no identity');
      expect(await killLeftoverGroup({ ...identity, bootId: 'another-boot' })).toBe('gone');
      expect(await killLeftoverGroup({ ...identity, startTime: String(BigInt(identity.startTime) + 1n) })).toBe('recycled');
      expect(child.exitCode).toBeNull();
      expect(await killLeftoverGroup(identity)).toBe('killed');
      expect(await exited).toBe('SIGKILL');
    } finally {
      child.kill('SIGKILL');
    }
  });
});
