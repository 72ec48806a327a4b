// Atomic writes leave either the old or the new content, with the requested mode, and map OS errors.
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

  it.skipIf(process.getuid?.() === 0)('maps an unwritable directory to PERMISSION_DENIED', async () => {
    await chmod(dir, 0o500);
    await expect(writeFileAtomic(join(dir, 'f'), 'x')).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
  });
});
