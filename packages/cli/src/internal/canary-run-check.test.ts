// Tests for the canary search of `airlock verify`'s runs.canary check: every encoding is found wherever it sits, and nothing else is.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { canaryNeedles, scanControlPlaneFiles } from './canary-run-check.js';

const CANARY = 'airlock-canary-0123456789abcdef0123456789abcdef';
let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'airlock-canary-scan-'));
  await mkdir(join(dir, 'control-plane', 'diagnostics'), { recursive: true });
  await writeFile(join(dir, 'control-plane', 'control-plane.db'), Buffer.alloc(4096, 7));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('the canary search', () => {
  it('finds nothing in files without the canary, and says how much it read', async () => {
    const scan = await scanControlPlaneFiles(dir, CANARY);
    expect(scan.found).toEqual([]);
    expect(scan.looked).toEqual([join(dir, 'control-plane', 'control-plane.db')]);
    expect(scan.scannedBytes).toBe(4096);
  });

  const encodings: ReadonlyArray<readonly [string, (c: string) => Buffer]> = [
    ['utf-8', (c) => Buffer.from(`{"inputs":{"canary":"${c}"}}`)],
    ['utf-16le', (c) => Buffer.from(`x${c}y`, 'utf16le')],
    ['hex', (c) => Buffer.from(`ff${Buffer.from(c).toString('hex')}00`)],
    ...[0, 1, 2].map((shift): readonly [string, (c: string) => Buffer] => [
      `base64 after ${shift} bytes`,
      (c) => Buffer.from(Buffer.concat([Buffer.alloc(shift, 9), Buffer.from(c), Buffer.from('tail')]).toString('base64')),
    ]),
  ];
  it.each(encodings)('finds the canary written as %s, in any file under control-plane/', async (_name, encode) => {
    await mkdir(join(dir, 'control-plane', 'nested'), { recursive: true });
    const path = join(dir, 'control-plane', 'nested', 'leak.bin');
    await writeFile(path, Buffer.concat([Buffer.alloc(100, 1), encode(CANARY), Buffer.alloc(100, 2)]));
    const scan = await scanControlPlaneFiles(dir, CANARY);
    expect(scan.found.length).toBeGreaterThan(0);
    expect(scan.found.every((where) => where.startsWith(path))).toBe(true);
  });

  it('skips the heap-snapshot directory, which the check reads separately and removes', async () => {
    await writeFile(join(dir, 'control-plane', 'diagnostics', 'Heap.1.heapsnapshot'), CANARY);
    expect((await scanControlPlaneFiles(dir, CANARY)).found).toEqual([]);
  });

  it('has distinct needles, none of them shorter than 8 bytes', () => {
    const needles = canaryNeedles(CANARY);
    expect(new Set(needles.map((n) => n.bytes.toString('latin1'))).size).toBe(needles.length);
    expect(needles.every((n) => n.bytes.length >= 8)).toBe(true);
  });
});
