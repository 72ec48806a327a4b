// Tests for task bundles: esbuild output named by its SHA-256, the same wherever it is built from, described by running it.
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { bundleTaskModule, describeBundle, pickTask } from './bundle.js';

const root = resolve(import.meta.dirname, '..', '..', '..', '..');
const hello = join(root, 'examples', 'hello', 'hello.ts');

describe('task bundles', () => {
  it('bundles a module into one file named by its SHA-256, identical from any working directory', async () => {
    const bundle = await bundleTaskModule(hello);
    expect(bundle.sha256).toBe(createHash('sha256').update(bundle.code).digest('hex'));
    expect(bundle.size).toBe(bundle.code.length);
    const cwd = process.cwd();
    try {
      process.chdir(tmpdir());
      expect((await bundleTaskModule(hello)).sha256).toBe(bundle.sha256);
    } finally {
      process.chdir(cwd);
    }
    // The bundle runs on its own: describe reports the task with its JSON Schemas.
    const description = await describeBundle(bundle);
    const task = pickTask(description, hello, undefined);
    expect(task.spec.name).toBe('hello');
    expect(task.spec.inputSchema).toMatchObject({ type: 'object', required: ['name'] });
    expect(pickTask(description, hello, 'hello').spec.name).toBe('hello');
    expect(() => pickTask(description, hello, 'nope')).toThrow(/has no task "nope"; it has hello/);
  }, 60_000);

  it('carries only what a task process needs: none of the platform\'s logging (pino and its workers)', async () => {
    // Every attempt is a fresh process that compiles the whole bundle; the SDK imports @airlock/common/errors, not the package root.
    const dir = await mkdtemp(join(tmpdir(), 'airlock-bundle-'));
    const bare = join(dir, 'bare.mjs');
    await writeFile(bare, "import { task } from '@airlock/sdk';\nexport const t = task({ name: 't' }, async () => ({}));\n");
    const code = (await bundleTaskModule(bare)).code.toString();
    expect(code).toContain('runActionMain');
    expect(code).not.toMatch(/pino|sonic-boom|thread-stream/u);
    expect(code.length).toBeLessThan(200 * 1024);
  }, 60_000);

  it('refuses a module that does not build, naming the place, and a bundle over the maximum', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'airlock-bundle-'));
    const broken = join(dir, 'broken.ts');
    await writeFile(broken, 'export const x = ;\n');
    await expect(bundleTaskModule(broken)).rejects.toMatchObject({ code: 'TASK_DEFINITION_INVALID', message: expect.stringContaining('broken.ts:1') });
    await expect(bundleTaskModule(join(dir, 'missing.ts'))).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(bundleTaskModule(hello, { maxBytes: 1000 })).rejects.toMatchObject({ code: 'PAYLOAD_TOO_LARGE' });
  }, 60_000);

  it('reports a module that throws while loading, and one that exports no task', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'airlock-bundle-'));
    const throwing = join(dir, 'throwing.mjs');
    await writeFile(throwing, "throw new Error('boom at load');\n");
    await expect(describeBundle(await bundleTaskModule(throwing))).rejects.toMatchObject({ code: 'TASK_DEFINITION_INVALID', message: expect.stringContaining('boom at load') });
    const empty = join(dir, 'empty.mjs');
    await writeFile(empty, 'export const notATask = 1;\n');
    const description = await describeBundle(await bundleTaskModule(empty));
    expect(() => pickTask(description, empty, undefined)).toThrow(/exports no task/);
  }, 60_000);
});
