// Proves the checked-in src/gen matches what buf and protoc-gen-es generate from proto/ now, and that the protos pass buf lint.
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);

const PACKAGE_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const ROOT = resolve(PACKAGE_DIR, '../..');
const CHECKED_IN = join(PACKAGE_DIR, 'src', 'gen');

/** What `npm run generate` sees: the package's and the root's node_modules/.bin first (buf, protoc-gen-es). */
const env = {
  ...process.env,
  PATH: [join(PACKAGE_DIR, 'node_modules', '.bin'), join(ROOT, 'node_modules', '.bin'), process.env['PATH'] ?? ''].join(delimiter),
};

async function buf(...args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run(join(ROOT, 'node_modules', '.bin', 'buf'), args, { cwd: PACKAGE_DIR, env, timeout: 60_000 });
}

/** Every file under `directory`, as sorted POSIX paths relative to it. */
async function listFiles(directory: string): Promise<string[]> {
  const entries = await readdir(directory, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => relative(directory, join(entry.parentPath, entry.name)).split(sep).join('/'))
    .sort();
}

describe('generated code', () => {
  let scratch: string;
  let regenerated: string;

  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'airlock-protocol-gen-'));
    // Same template and inputs as `npm run generate`; only the output base differs (-o), so
    // buf.gen.yaml's `out: src/gen` lands in the scratch directory instead of the package.
    await buf('generate', '--template', 'buf.gen.yaml', '-o', scratch);
    regenerated = join(scratch, 'src', 'gen');
  });

  afterAll(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  it('has exactly the files generation produces', async () => {
    const expected = await listFiles(regenerated);
    expect(expected.length, 'generation produced nothing').toBeGreaterThan(0);
    expect(await listFiles(CHECKED_IN), 'src/gen is stale: run `npm run generate`').toEqual(expected);
  });

  it('matches regenerated output byte for byte', async () => {
    const stale: string[] = [];
    for (const file of await listFiles(regenerated)) {
      const want = await readFile(join(regenerated, file));
      const have = await readFile(join(CHECKED_IN, file)).catch(() => undefined);
      if (have === undefined || !have.equals(want)) stale.push(file);
    }
    expect(stale, 'these generated files differ from proto/: run `npm run generate`').toEqual([]);
  });

  it('comes from protos that pass buf lint (STANDARD rules)', async () => {
    // buf lint exits non-zero, rejecting this promise with its findings, on any violation.
    const { stdout } = await buf('lint');
    expect(stdout).toBe('');
  });
});
