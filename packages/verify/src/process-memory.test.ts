// Tests for scanProcessMemory: a live process's whole memory, off-heap Buffers included, searched through /proc/<pid>/mem.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { ChunkedSearch, readableMappings, scanProcessMemory } from './process-memory.js';

const children: ChildProcessWithoutNullStreams[] = [];
afterEach(() => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
});

/** A Node process that keeps what it reads on stdin in Buffers only (never a string), and says "held" after each chunk. */
async function holder(): Promise<ChildProcessWithoutNullStreams> {
  const child = spawn(process.execPath, ['-e', "const held = []; process.stdin.on('data', (chunk) => { held.push(Buffer.from(chunk)); process.stdout.write('held\\n'); });"]);
  children.push(child);
  return child;
}

const needle = (text: string) => [{ encoding: 'utf-8', bytes: Buffer.from(text) }];

describe('scanProcessMemory', () => {
  it('finds bytes a process holds only off the V8 heap, and not bytes it never had', async () => {
    const child = await holder();
    const canary = `memory-canary-${randomBytes(12).toString('hex')}`;
    const never = `memory-canary-${randomBytes(12).toString('hex')}`;
    child.stdin.write(canary);
    await once(child.stdout, 'data');
    const scan = await scanProcessMemory(child.pid as number, [...needle(canary), { encoding: 'other', bytes: Buffer.from(never) }], 'the holder');
    expect(scan.found).toEqual(['the holder (utf-8)']);
    expect(scan.regions).toBeGreaterThan(10);
    expect(scan.bytes).toBeGreaterThan(10 * 1024 * 1024);
  }, 60_000);

  it('sees a needle that straddles two reads, at every split, and only within one region', async () => {
    const needle = Buffer.from('straddling-needle');
    for (let at = 0; at + needle.length <= 64; at += 1) {
      const region = Buffer.alloc(64, 0x2e);
      needle.copy(region, at);
      const read = async (into: Buffer, offset: number, length: number, position: number): Promise<number> => region.copy(into, offset, position, position + length);
      const search = new ChunkedSearch([{ encoding: 'utf-8', bytes: needle }], 8);
      expect([...(await search.region(0, 64, read)).matched], `needle at ${at}`).toEqual([0]);
      // Split between two regions, it is not one needle.
      const first = await search.region(0, at + 5, read);
      const second = await search.region(at + 5, 64, read);
      expect(first.matched.size + second.matched.size, `needle split at ${at + 5}`).toBe(0);
    }
  });

  it('refuses a process that is gone with NOT_FOUND', async () => {
    const child = await holder();
    const pid = child.pid as number;
    child.kill('SIGKILL');
    await once(child, 'exit');
    await expect(scanProcessMemory(pid, needle('x'))).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('reads the readable mappings of a maps file, leaving out the kernel\'s and unreadable ones', () => {
    const maps = [
      '55d0c0000000-55d0c0001000 r--p 00000000 08:01 123 /usr/bin/node',
      '7f0000000000-7f0000100000 ---p 00000000 00:00 0 ',
      '7f0000100000-7f0000200000 rw-p 00000000 00:00 0 ',
      '7ffd00000000-7ffd00004000 r--p 00000000 00:00 0 [vvar]',
      'ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]',
    ].join('\n');
    expect(readableMappings(maps)).toEqual([
      { start: 0x55d0c0000000, end: 0x55d0c0001000 },
      { start: 0x7f0000100000, end: 0x7f0000200000 },
    ]);
  });
});
