// End to end: `airlock kms serve` in its own process, driven by `airlock keys …` and `airlock kms audit verify`.
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { interrupt, runCli, startCli } from './run-cli.js';

let dir: string;
let serve: Awaited<ReturnType<typeof startCli>>;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'airlock-cli-kms-'));
  serve = await startCli(['kms', 'serve', '--data-dir', dir, '--port', '0', '--log-level', 'warn'], /Press Ctrl-C/);
}, 60_000);

afterAll(async () => {
  await interrupt(serve.child);
  await rm(dir, { recursive: true, force: true });
});

describe('airlock kms serve + airlock keys', () => {
  it('writes the endpoint, CA bundle and 0600 credentials to the data directory, without secrets in endpoint.json', async () => {
    const endpoint = JSON.parse(await readFile(join(dir, 'kms', 'endpoint.json'), 'utf8')) as Record<string, string>;
    expect(endpoint.endpoint).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(endpoint.caBundle).toBe(join(dir, 'ca', 'ca.pem'));
    expect((await stat(endpoint.credentialsFile as string)).mode & 0o777).toBe(0o600);
    const credentials = await readFile(endpoint.credentialsFile as string, 'utf8');
    const secret = /aws_secret_access_key = (\S+)/.exec(credentials)?.[1];
    expect(secret).toBeDefined();
    expect(JSON.stringify(endpoint)).not.toContain(secret as string);
    expect(serve.output()).not.toContain(secret as string);
    // The CA key exists only sealed under the control plane's key.
    expect((await stat(join(dir, 'ca', 'ca-key.sealed'))).mode & 0o777).toBe(0o600);
    expect((await readFile(join(dir, 'ca', 'ca-key.sealed'))).includes('PRIVATE KEY')).toBe(false);
    await expect(stat(join(dir, 'ca', 'ca-key.pem'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('creates, lists, describes, disables, enables, rotates, schedules and cancels deletion, with --json', async () => {
    const created = await runCli(['keys', 'create', '--data-dir', dir, '--description', 'cli test', '--alias', 'alias/cli-test', '--json']);
    expect(created.code).toBe(0);
    const key = JSON.parse(created.stdout) as { keyId: string; arn: string; state: string; alias: string };
    expect(key).toMatchObject({ state: 'Enabled', alias: 'alias/cli-test' });

    const list = JSON.parse((await runCli(['keys', 'list', '--data-dir', dir, '--json'])).stdout) as Array<{ keyId: string; aliases: string[] }>;
    expect(list.find((k) => k.keyId === key.keyId)?.aliases).toEqual(['alias/cli-test']);

    const text = await runCli(['keys', 'list', '--data-dir', dir]);
    expect(text.stdout).toMatch(/KEY ID\s+STATE\s+ALIASES/);
    expect(text.stdout).toContain('alias/cli-test');

    const disabled = await runCli(['keys', 'disable', 'alias/cli-test', '--data-dir', dir]);
    expect(disabled.code).toBe(0);
    expect(disabled.stdout).toContain('state is now Disabled');
    const described = JSON.parse((await runCli(['keys', 'describe', key.keyId, '--data-dir', dir, '--json'])).stdout) as { state: string };
    expect(described.state).toBe('Disabled');
    expect((await runCli(['keys', 'enable', key.arn, '--data-dir', dir])).code).toBe(0);
    expect((await runCli(['keys', 'rotate', key.keyId, '--data-dir', dir])).stdout).toContain('rotated');

    const scheduled = JSON.parse((await runCli(['keys', 'schedule-deletion', key.keyId, '--days', '7', '--data-dir', dir, '--json'])).stdout) as { state: string };
    expect(scheduled.state).toBe('PendingDeletion');
    const cancelled = JSON.parse((await runCli(['keys', 'cancel-deletion', key.keyId, '--data-dir', dir, '--json'])).stdout) as { state: string };
    expect(cancelled.state).toBe('Disabled');

    const aliases = JSON.parse((await runCli(['keys', 'alias', 'list', '--data-dir', dir, '--json'])).stdout) as Array<{ aliasName: string }>;
    expect(aliases.map((a) => a.aliasName)).toContain('alias/cli-test');
  }, 120_000);

  it('reports typed errors with a non-zero exit', async () => {
    const missing = await runCli(['keys', 'describe', 'alias/nope', '--data-dir', dir]);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain('KMS_KEY_NOT_FOUND');
    const badDays = await runCli(['keys', 'schedule-deletion', 'alias/cli-test', '--days', '3', '--data-dir', dir]);
    expect(badDays.code).not.toBe(0);
    expect(badDays.stderr).toContain('INVALID_ARGUMENT');
    const noKms = await runCli(['keys', 'list', '--data-dir', join(dir, 'elsewhere')]);
    expect(noKms.code).not.toBe(0);
    expect(noKms.stderr).toContain('UNAVAILABLE');
  }, 60_000);

  it('verifies the audit chain', async () => {
    const result = await runCli(['kms', 'audit', 'verify', '--data-dir', dir, '--json']);
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout) as { ok: boolean; records: number };
    expect(report.ok).toBe(true);
    expect(report.records).toBeGreaterThan(5);
  }, 60_000);

  it('stops gracefully on Ctrl-C', async () => {
    expect(await interrupt(serve.child)).toBe(0);
  });
});

/** An unsigned KMS call: refused (MissingAuthenticationToken), and logged at debug as one `KMS request` line. */
async function unsignedCall(endpoint: string, ca: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(`${endpoint}/`, { method: 'POST', ca, agent: false, headers: { 'content-type': 'application/x-amz-json-1.1' } }, (res) => {
      res.resume();
      res.once('end', () => resolve(res.statusCode ?? 0));
    });
    req.once('error', reject);
    req.end('{}');
  });
}

describe('airlock kms serve --log-rate-burst / --log-rate-window', () => {
  it('writes at most the burst of one kind of line per window, and counts the rest', async () => {
    const own = await mkdtemp(join(tmpdir(), 'airlock-cli-kms-log-'));
    const limited = await startCli(
      ['kms', 'serve', '--data-dir', own, '--port', '0', '--log-level', 'debug', '--log-rate-burst', '3', '--log-rate-window', '60000'],
      /Press Ctrl-C/,
    );
    try {
      const endpoint = JSON.parse(await readFile(join(own, 'kms', 'endpoint.json'), 'utf8')) as { endpoint: string; caBundle: string };
      const ca = await readFile(endpoint.caBundle, 'utf8');
      // Ten lines of one kind in one window: three written (the default burst, 20, would write all ten).
      for (let i = 0; i < 10; i++) expect(await unsignedCall(endpoint.endpoint, ca)).toBe(400);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const written = (): number => limited.output().split('\n').filter((line) => line.includes('"msg":"KMS request"')).length;
      expect(written()).toBe(3);
    } finally {
      await interrupt(limited.child);
      await rm(own, { recursive: true, force: true });
    }
    // The seven held back are counted at exit, in one line.
    expect(limited.output()).toMatch(/"suppressed":7\b/);
  });

  it('refuses a burst that is not a positive integer', async () => {
    const result = await runCli(['kms', 'serve', '--data-dir', dir, '--port', '0', '--log-rate-burst', '0']);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/--log-rate-burst.*must be a positive integer/);
  });
});
