// Tests of the canary scanner: every form it promises to find, offsets, chunk boundaries, directories, and no vacuous passes.
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CANARY_ENCODINGS, makeCanary, scanForCanary } from './canary.js';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'airlock-canary-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('makeCanary', () => {
  it('makes unique printable-ASCII strings that carry a cleaned label', () => {
    const a = makeCanary('secret value');
    const b = makeCanary('secret value');
    expect(a).not.toBe(b);
    expect(a).toMatch(/^airlock-canary-secret-value-[0-9a-f]{32}$/);
    expect(makeCanary('ünïcode/../x')).toMatch(/^[\x21-\x7e]+$/);
  });
});

describe('scanForCanary', () => {
  it('finds the canary in one file at its byte offset and not in another', async () => {
    const canary = makeCanary('utf8');
    const withIt = join(dir, 'with.bin');
    const without = join(dir, 'without.bin');
    await writeFile(withIt, Buffer.concat([Buffer.from('héllo '), Buffer.from(canary), Buffer.from(' and again '), Buffer.from(canary)]));
    await writeFile(without, `nothing here but ${makeCanary('utf8')}`);
    const first = Buffer.byteLength('héllo ');
    const second = first + canary.length + ' and again '.length;
    const result = await scanForCanary([withIt, without], canary);
    expect(result.hits).toEqual([
      { path: withIt, offset: first, encoding: 'utf8' },
      { path: withIt, offset: second, encoding: 'utf8' },
    ]);
    expect(result.filesScanned).toBe(2);
    expect((await scanForCanary(without, canary)).hits).toEqual([]);
  });

  it('finds UTF-16LE, hex (either case) and base64 / base64url at every alignment', async () => {
    const canary = makeCanary('forms');
    const raw = Buffer.from(canary);
    const cases: Array<{ name: string; body: Buffer; encoding: string }> = [
      { name: 'utf16', body: Buffer.concat([Buffer.from([0, 1, 2]), Buffer.from(canary, 'utf16le')]), encoding: 'utf16le' },
      { name: 'hex-lower', body: Buffer.from(`x=${raw.toString('hex')};`), encoding: 'hex' },
      { name: 'hex-upper', body: Buffer.from(`X=${raw.toString('hex').toUpperCase()};`), encoding: 'hex' },
    ];
    for (let shift = 0; shift < 3; shift += 1) {
      // Embedded in a longer encoded value, so the canary's bytes start mid-group.
      const value = Buffer.concat([Buffer.from('pre'.slice(0, shift)), raw, Buffer.from('post')]);
      cases.push({ name: `b64-${shift}`, body: Buffer.from(`{"v":"${value.toString('base64')}"}`), encoding: 'base64' });
      cases.push({ name: `b64url-${shift}`, body: Buffer.from(`?v=${value.toString('base64url')}`), encoding: 'base64url' });
    }
    for (const { name, body, encoding } of cases) {
      const path = join(dir, `form-${name}`);
      await writeFile(path, body);
      const hits = (await scanForCanary(path, canary)).hits;
      expect(hits.map((hit) => hit.encoding), name).toContain(encoding);
      // Opting out of that form hides it: the options really select what is searched.
      const others = CANARY_ENCODINGS.filter((e) => e !== encoding && !(encoding.startsWith('base64') && e.startsWith('base64')));
      expect((await scanForCanary(path, canary, { encodings: others })).hits, name).toEqual([]);
    }
  });

  it('walks directories recursively, without following symbolic links', async () => {
    const canary = makeCanary('tree');
    const tree = join(dir, 'tree');
    await mkdir(join(tree, 'a', 'b'), { recursive: true });
    await writeFile(join(tree, 'a', 'b', 'deep.txt'), `..${canary}..`);
    await writeFile(join(tree, 'a', 'clean.txt'), 'clean');
    await symlink(join(tree, 'a'), join(tree, 'loop'));
    const result = await scanForCanary(tree, canary);
    expect(result.hits).toEqual([{ path: join(tree, 'a', 'b', 'deep.txt'), offset: 2, encoding: 'utf8' }]);
    expect(result.filesScanned).toBe(2);
  });

  it('finds a canary that straddles the 1 MiB read boundary, exactly once', async () => {
    const canary = makeCanary('boundary');
    const at = 1024 * 1024 - 7;
    const body = Buffer.alloc(3 * 1024 * 1024, 0x2e);
    Buffer.from(canary).copy(body, at);
    const path = join(dir, 'big.bin');
    await writeFile(path, body);
    const result = await scanForCanary(path, canary, { encodings: ['utf8'] });
    expect(result.hits).toEqual([{ path, offset: at, encoding: 'utf8' }]);
    expect(result.bytesScanned).toBe(body.length);
  });

  it('throws for a path that does not exist rather than passing vacuously', async () => {
    await expect(scanForCanary(join(dir, 'missing'), 'x')).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(scanForCanary(dir, '')).rejects.toThrow(/empty/);
  });
});
