// The built `airlock up` under a low descriptor limit: both planes start with 128, and with too few it fails with an error that names the cause.
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';

// The built CLI (what `npm install` links as `airlock`), not the sources through tsx: tsx's own loader and esbuild
// service take descriptors of their own, and it is Node's loader on the built files that a user runs.
const BIN = fileURLToPath(new URL('../bin/airlock.js', import.meta.url));
const PORT_FLAGS = ['--api-port', '0', '--dispatch-port', '0', '--tunnel-port', '0', '--kms-port', '0', '--s3-port', '0'];

interface Outcome {
  readonly ready: boolean;
  readonly code: number | null;
  readonly output: string;
}

/** Runs `airlock up` under `prlimit --nofile=limit:limit` until it is ready (then stops it with Ctrl-C) or exits. */
async function upUnderLimit(dir: string, limit: number): Promise<Outcome> {
  const child = spawn('prlimit', [`--nofile=${limit}:${limit}`, '--', process.execPath, BIN, 'up', '--data-dir', dir, ...PORT_FLAGS, '--log-level', 'warn'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const ready = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 60_000);
    child.stdout.on('data', () => {
      if (/Press Ctrl-C/.test(output)) {
        clearTimeout(timer);
        resolve(true);
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      resolve(false);
    });
  });
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
  return { ready, code: await exited, output };
}

describe('airlock up under a low descriptor limit (the built CLI, prlimit --nofile, which its planes inherit)', () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    dir = undefined;
  });

  // Node's ES module loader opens all of a module's imports at once. Kysely's ES module index alone
  // imported 263 files, so the control plane failed with EMFILE at 256 until it loaded Kysely's
  // CommonJS build (one file at a time); the data plane loaded the control plane's database code too.
  it('starts both planes with 128 descriptors, and stops cleanly', async () => {
    dir = await mkdtemp(join(tmpdir(), 'airlock-cli-nofile-128-'));
    const outcome = await upUnderLimit(dir, 128);
    expect(outcome.ready, outcome.output).toBe(true);
    expect(outcome.code, outcome.output).toBe(0);
    expect(outcome.output).not.toMatch(/EMFILE|INTERNAL/);
  }, 90_000);

  it('with 64, fails with an error that names the descriptor limit, never INTERNAL', async () => {
    dir = await mkdtemp(join(tmpdir(), 'airlock-cli-nofile-64-'));
    const outcome = await upUnderLimit(dir, 64);
    expect(outcome.ready, outcome.output).toBe(false);
    expect(outcome.code).toBe(1);
    expect(outcome.output).toMatch(/airlock: UNAVAILABLE: (Too many open files: this process has reached its descriptor limit|a module of Airlock could not be loaded: .* ran out of file descriptors while loading it \(its limit is 64)/);
    expect(outcome.output).not.toMatch(/INTERNAL/);
  }, 90_000);
});
