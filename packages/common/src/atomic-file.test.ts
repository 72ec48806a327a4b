// Atomic writes leave either the old or the new content, with the requested mode, and map OS errors.
import { readFileSync } from 'node:fs';
import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { writeFileAtomic } from './atomic-file.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'airlock-atomic-'));
});
afterEach(async () => {
  await chmod(dir, 0o700).catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
});

describe('writeFileAtomic', () => {
  it('replaces content, applies the mode and leaves no temporary files', async () => {
    const path = join(dir, 'state.json');
    await writeFile(path, 'old');
    await writeFileAtomic(path, 'new content');
    expect(await readFile(path, 'utf8')).toBe('new content');
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    await writeFileAtomic(path, Buffer.from('bytes'), { mode: 0o644 });
    expect((await stat(path)).mode & 0o777).toBe(0o644);
    expect(await readdir(dir)).toEqual(['state.json']);
  });

  it('maps a missing directory to NOT_FOUND and keeps nothing behind', async () => {
    await expect(writeFileAtomic(join(dir, 'missing', 'f'), 'x')).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('maps an unwritable directory to PERMISSION_DENIED (as root too, with the effective uid dropped to nobody)', async () => {
    // Readable and searchable by everyone, writable by no one: only the write is refused.
    await chmod(dir, 0o555);
    const outcome = await asUnprivileged(() => writeFileAtomic(join(dir, 'f'), 'x').then(() => undefined, (error: unknown) => error));
    expect(outcome).toMatchObject({ code: 'PERMISSION_DENIED' });
    expect(await readdir(dir)).toEqual([]);
  });
});

/** uid and gid of the `nobody` account, from /etc/passwd (Node has no getpwnam). */
function nobody(): { uid: number; gid: number } {
  for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const [name, , uid, gid] = line.split(':');
    if (name === 'nobody' && uid !== undefined && gid !== undefined) return { uid: Number(uid), gid: Number(gid) };
  }
  throw new Error('no "nobody" account in /etc/passwd: cannot drop root privileges for the permission test');
}

/**
 * Runs `action` without root's power to write anywhere: as root (as CI runs), the effective uid and
 * gid become nobody's for its duration (seteuid applies to every thread, libuv's file-system pool
 * included), then root's come back. Unprivileged users run it as they are. This test file runs in
 * its own worker process, and nothing else runs in it meanwhile.
 */
async function asUnprivileged<T>(action: () => Promise<T>): Promise<T> {
  if (process.geteuid?.() !== 0) return action();
  const { seteuid, setegid } = process;
  if (seteuid === undefined || setegid === undefined) throw new Error('running as root without seteuid: cannot drop privileges for the permission test');
  const { uid, gid } = nobody();
  setegid(gid);
  seteuid(uid);
  try {
    expect(process.geteuid?.()).toBe(uid);
    return await action();
  } finally {
    seteuid(0);
    setegid(0);
  }
}
