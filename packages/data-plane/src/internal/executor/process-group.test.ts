// Unit test of when a leftover task process group may be killed after a restart (identities: @airlock/common's process.test.ts).
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { processIdentity } from '@airlock/common';
import { killLeftoverGroup } from './process-group.js';

describe('process identity', () => {
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
