// A fresh clone's `npm install` links a workspace bin only if its target exists before the build: every bin must point at a committed file.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, posix, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

describe('workspace bins on a fresh clone', () => {
  it('every bin of every workspace package is a committed, executable file', () => {
    const tracked = new Set(execFileSync('git', ['ls-files'], { cwd: ROOT, encoding: 'utf8' }).split('\n'));
    const manifests = [...tracked].filter((path) => /^packages\/[^/]+\/package\.json$/.test(path));
    const bins: string[] = [];
    for (const manifest of manifests) {
      const { bin } = JSON.parse(readFileSync(join(ROOT, manifest), 'utf8')) as { bin?: string | Record<string, string> };
      const targets = typeof bin === 'string' ? [bin] : Object.values(bin ?? {});
      for (const target of targets) bins.push(relative(ROOT, join(ROOT, dirname(manifest), target)).split('\\').join(posix.sep));
    }
    expect(bins).toContain('packages/cli/bin/airlock.js');
    for (const bin of bins) {
      expect(tracked.has(bin), `${bin} is not committed`).toBe(true);
      const mode = execFileSync('git', ['ls-files', '-s', bin], { cwd: ROOT, encoding: 'utf8' }).split(' ')[0];
      expect(mode, `${bin} is not executable in git`).toBe('100755');
    }
  });
});
