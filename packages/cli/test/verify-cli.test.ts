// End to end: `airlock up` in a fresh data directory, then `airlock verify` (table and --json) against it, and with no stack.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { interrupt, runCli, startCli } from './run-cli.js';

interface JsonReport {
  ok: boolean;
  checks: Array<{ id: string; title: string; status: 'pass' | 'fail' | 'skip'; evidence: Record<string, unknown>; details?: string }>;
}

let dir: string;
let empty: string;
let up: Awaited<ReturnType<typeof startCli>>;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'airlock-cli-verify-'));
  empty = await mkdtemp(join(tmpdir(), 'airlock-cli-verify-empty-'));
  up = await startCli(['up', '--data-dir', dir, '--kms-port', '0', '--s3-port', '0'], /Press Ctrl-C/);
}, 60_000);

afterAll(async () => {
  if (up !== undefined) expect(await interrupt(up.child)).toBe(0);
  await rm(dir, { recursive: true, force: true });
  await rm(empty, { recursive: true, force: true });
});

describe('airlock verify', () => {
  it('exits 0 against a fresh `airlock up`, printing the table and the skipped checks', async () => {
    const result = await runCli(['verify', '--data-dir', dir]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/CHECK\s+STATUS\s+EVIDENCE/);
    expect(result.stdout).toMatch(/tls\.versions\s+PASS\s+2 endpoints: TLSv1\.3 TLS_AES_256_GCM_SHA384; TLS 1\.0\/1\.1 refused/);
    expect(result.stdout).toMatch(/tls\.aead-only\s+PASS/);
    expect(result.stdout).toMatch(/transport\.no-plaintext\s+PASS/);
    expect(result.stdout).toMatch(/tunnel\.refuses-unauthenticated\s+SKIP/);
    expect(result.stdout).toContain('SKIP dataplane.outbound-only: no tunnel endpoint in endpoints.json (arrives with the control plane)');
    expect(result.stdout).toMatch(/3 passed, 0 failed, 2 skipped\. Verification passed \(skipped checks .*do not fail verification\)/);
  });

  it('--json parses, is ok, and carries each endpoint\'s negotiated protocol and cipher', async () => {
    const result = await runCli(['verify', '--data-dir', dir, '--json']);
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout) as JsonReport;
    expect(report.ok).toBe(true);
    expect(report.checks.map((c) => [c.id, c.status])).toEqual([
      ['tls.versions', 'pass'],
      ['tls.aead-only', 'pass'],
      ['transport.no-plaintext', 'pass'],
      ['tunnel.refuses-unauthenticated', 'skip'],
      ['dataplane.outbound-only', 'skip'],
    ]);
    const versions = report.checks[0]?.evidence ?? {};
    const aead = report.checks[1]?.evidence ?? {};
    const endpoints = JSON.parse(await readFile(join(dir, 'endpoints.json'), 'utf8')) as { pid: number; endpoints: Array<{ name: string; url: string }> };
    expect(endpoints.endpoints.map((e) => e.name)).toEqual(['kms', 'objectstore']);
    for (const { name } of endpoints.endpoints) {
      expect(versions[`${name}.protocol`]).toBe('TLSv1.3');
      expect(versions[`${name}.cipher`]).toBe('TLS_AES_256_GCM_SHA384');
      expect(versions[`${name}.tls1_2`]).toMatch(/^accepted TLSv1\.2 ECDHE-ECDSA-\S+-(GCM-SHA\d+|POLY1305)$/);
      expect(versions[`${name}.tls1_1`]).toMatch(/^refused/);
      expect(versions[`${name}.tls1`]).toMatch(/^refused/);
      expect((aead[`${name}.tls12`] as string[]).length).toBeGreaterThan(0);
      expect((aead[`${name}.tls12`] as string[]).every((suite) => /GCM|CHACHA20/.test(suite))).toBe(true);
    }
    // Every listening socket of the `airlock up` process was found, the two endpoints among them.
    const sockets = report.checks[2]?.evidence.sockets as string[];
    for (const { url } of endpoints.endpoints) expect(sockets.some((s) => s.startsWith(`${new URL(url).host} `))).toBe(true);
    expect(sockets.every((s) => s.endsWith(`/${endpoints.pid})`))).toBe(true);
  });

  it('prints no secret: neither the access key secret nor the CA key appears in the report', async () => {
    const result = await runCli(['verify', '--data-dir', dir, '--json']);
    const credentials = await readFile(join(dir, 'kms', 'credentials'), 'utf8');
    const secret = /aws_secret_access_key = (\S+)/.exec(credentials)?.[1];
    expect(secret).toBeDefined();
    expect(result.stdout).not.toContain(secret as string);
    expect(result.stdout).not.toMatch(/PRIVATE KEY|Master-Key/);
  });

  it('says "no running stack" and exits 1 when the data directory has no endpoints.json', async () => {
    const result = await runCli(['verify', '--data-dir', empty]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/no running stack/);
    const viaEnv = await runCli(['verify'], { AIRLOCK_DATA_DIR: empty });
    expect(viaEnv.code).toBe(1);
    expect(viaEnv.stderr).toContain(`no running stack in ${empty}`);
  });
});
