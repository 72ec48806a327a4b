// `airlock control-plane serve` on its database: PostgreSQL over TLS with --db, refusals of an untrusted server, and kill -9 in the middle of a burst of API writes.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '@airlock/common';
import { openControlPlaneKey, openDatabase, resolveDatabaseConfig } from '@airlock/control-plane';
import { tlsClientOptions } from '@airlock/pki';
import { startTempPostgres, type TempPostgres } from '@airlock/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { interrupt, runCli, startCli } from './run-cli.js';

const READY = /Press Ctrl-C to stop/;

let root: string;
let server: TempPostgres;
let caFile: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'airlock-cp-db-'));
  server = await startTempPostgres();
  caFile = join(root, 'db-ca.pem');
  await writeFile(caFile, server.caPem);
});

afterAll(async () => {
  await server.stop();
  await rm(root, { recursive: true, force: true });
});

/** A task spec as the SDK describes it, as Connect JSON carries bytes (base64). */
const SPEC_JSON = Buffer.from(
  JSON.stringify({
    specVersion: 1,
    name: 'hello',
    kind: 'function',
    inputSchema: { type: 'object' },
    outputSchema: { type: 'object' },
    retries: { limit: 0, initialDelayMs: 1000, maxDelayMs: 60_000, factor: 2, jitter: 0.5 },
    timeoutMs: 60_000,
    resources: {},
    sdkVersion: '0.1.0',
  }),
).toString('base64');
const BUNDLE = { sha256: 'ab'.repeat(32), size: '42' };

const serveArgs = (dataDir: string): string[] => ['control-plane', 'serve', '--data-dir', dataDir, '--api-port', '0', '--dispatch-port', '0', '--tunnel-port', '0', '--log-level', 'warn'];

/** POSTs a Connect JSON call to the data directory's API with its admin token. */
async function call(dataDir: string, method: string, body: unknown): Promise<{ status: number; json: unknown }> {
  const endpoint = JSON.parse(await readFile(join(dataDir, 'control-plane', 'endpoint.json'), 'utf8')) as { api: string; caBundle: string; tokenFile: string };
  const token = (await readFile(endpoint.tokenFile, 'utf8')).trim();
  const ca = await readFile(endpoint.caBundle, 'utf8');
  const payload = Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = request(
      new URL(`/airlock.v1.AirlockService/${method}`, endpoint.api),
      { ...tlsClientOptions({ ca }), method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, 'content-length': payload.length } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as unknown }));
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

describe('airlock control-plane serve --db postgres://…', () => {
  it('keeps its state in PostgreSQL over verify-full TLS, across a restart, and never prints the password', async () => {
    const dataDir = join(root, 'pg');
    const url = new URL(server.url);
    url.searchParams.set('schema', 'cli_test');
    const env = { AIRLOCK_DB_URL: url.toString() };
    const first = await startCli([...serveArgs(dataDir), '--db-ca', caFile], READY, env);
    try {
      expect(first.output()).toMatch(/database:\s+PostgreSQL 127\.0\.0\.1:\d+\/airlock schema cli_test \(TLS, verify-full\)/);
      if (server.password !== undefined) expect(first.output()).not.toContain(server.password);
      expect((await call(dataDir, 'CreateBootstrapToken', { cluster: 'edge-1', reason: 'kept across restarts' })).status).toBe(200);
      expect((await call(dataDir, 'RegisterTask', { project: 'default', specJson: SPEC_JSON, bundle: BUNDLE })).json).toMatchObject({ created: true });
    } finally {
      expect(await interrupt(first.child)).toBe(0);
    }
    // No SQLite file was made: the state is in PostgreSQL.
    await expect(readFile(join(dataDir, 'control-plane', 'control-plane.db'))).rejects.toMatchObject({ code: 'ENOENT' });
    const tokenBefore = await readFile(join(dataDir, 'client', 'token'), 'utf8');
    const second = await startCli([...serveArgs(dataDir), '--db-ca', caFile], READY, env);
    try {
      // The admin token issued on the first start still authenticates: it was not re-issued.
      expect(await readFile(join(dataDir, 'client', 'token'), 'utf8')).toBe(tokenBefore);
      expect((await call(dataDir, 'WhoAmI', {})).json).toMatchObject({ subject: 'local-admin' });
      // The task registered before the restart is still there.
      expect((await call(dataDir, 'GetTask', { project: 'default', name: 'hello' })).json).toMatchObject({ task: { ref: { name: 'hello' }, createdBy: 'local-admin' } });
    } finally {
      expect(await interrupt(second.child)).toBe(0);
    }
  });

  it('refuses to start against a server it cannot verify, saying why', async () => {
    const other = await startTempPostgres({ certificateFromOtherCa: true });
    try {
      const result = await runCli([...serveArgs(join(root, 'untrusted')), '--db-ca', caFile], { AIRLOCK_DB_URL: other.url });
      expect(result.code).not.toBe(0);
      expect(result.stderr).toMatch(/DB_CONNECTION_INSECURE|does not chain to the configured CA/);
      const noCa = await runCli(serveArgs(join(root, 'no-ca')), { AIRLOCK_DB_URL: server.url });
      expect(noCa.code).not.toBe(0);
      expect(noCa.stderr).toMatch(/needs the CA that signed the server certificate/);
    } finally {
      await other.stop();
    }
  });
});

describe('kill -9 of the control plane in the middle of a burst of API writes', () => {
  it('loses no acknowledged write, and the database passes its integrity check', async () => {
    const dataDir = join(root, 'crash');
    const cp = await startCli(serveArgs(dataDir), READY);
    const acknowledged: string[] = [];
    let stop = false;
    const writer = async (worker: number): Promise<void> => {
      for (let index = 0; !stop; index += 1) {
        const reason = `burst-${worker}-${index}`;
        try {
          const { status } = await call(dataDir, 'CreateBootstrapToken', { cluster: 'burst', reason });
          if (status === 200) acknowledged.push(reason);
        } catch {
          return;
        }
      }
    };
    const writers = [0, 1, 2, 3].map(writer);
    while (acknowledged.length < 150) await new Promise((resolve) => setTimeout(resolve, 20));
    cp.child.kill('SIGKILL');
    stop = true;
    await Promise.all(writers);
    await new Promise((resolve) => (cp.child.exitCode === null && cp.child.signalCode === null ? cp.child.once('exit', resolve) : resolve(undefined)));

    // Restarted, it opens the same database.
    const again = await startCli(serveArgs(dataDir), READY);
    expect(await interrupt(again.child)).toBe(0);

    const log = createLogger({ name: 'test', level: 'silent' });
    const key = await openControlPlaneKey({ dir: join(dataDir, 'control-plane') }, log);
    const database = await openDatabase(resolveDatabaseConfig({ path: join(dataDir, 'control-plane', 'control-plane.db'), key, log }));
    try {
      expect(await database.integrityCheck()).toEqual([]);
      const rows = await database.db.selectFrom('bootstrap_tokens').select(['token_hash', 'reason_sealed']).execute();
      const stored = new Set(
        rows.flatMap((row) => (row.reason_sealed === null ? [] : [database.sealer.openText({ table: 'bootstrap_tokens', column: 'reason_sealed', row: row.token_hash }, row.reason_sealed)])),
      );
      expect(acknowledged.length).toBeGreaterThanOrEqual(150);
      expect(acknowledged.filter((reason) => !stored.has(reason))).toEqual([]);
    } finally {
      await database.close();
      key.dispose();
    }
  });
});

describe('airlock control-plane rotate-key', () => {
  /** Starts the control plane, lists clusters through the API, and stops it: what a rotation must leave readable. */
  async function clustersAfterRestart(dataDir: string, extra: readonly string[] = [], env: NodeJS.ProcessEnv = {}): Promise<unknown> {
    const plane = await startCli([...serveArgs(dataDir), ...extra], READY, env);
    try {
      const listed = await call(dataDir, 'ListClusters', {});
      expect(listed.status).toBe(200);
      return listed.json;
    } finally {
      expect(await interrupt(plane.child)).toBe(0);
    }
  }

  it('SQLite: replaces the default key file, re-wraps the data keys and the CA key, keeps every row; the old key no longer opens anything', async () => {
    const dataDir = join(root, 'rotate-sqlite');
    const first = await startCli(serveArgs(dataDir), READY);
    try {
      expect((await call(dataDir, 'CreateBootstrapToken', { cluster: 'rotated-1', reason: 'before the rotation' })).status).toBe(200);
    } finally {
      expect(await interrupt(first.child)).toBe(0);
    }
    const before = await clustersAfterRestart(dataDir);
    const keyFile = join(dataDir, 'control-plane', 'cp-root.key');
    const oldKey = await readFile(keyFile, 'utf8');
    const token = await readFile(join(dataDir, 'client', 'token'), 'utf8');

    // Refused while a stack runs from the directory (this test process stands in for it).
    const runningStack = {
      version: 1,
      region: 'us-east-1',
      caBundle: join(dataDir, 'ca', 'ca.pem'),
      credentials: { file: join(dataDir, 'kms', 'credentials'), profile: 'default' },
      endpoints: [],
      pid: process.pid,
      startedAt: new Date().toISOString(),
    };
    await writeFile(join(dataDir, 'endpoints.json'), JSON.stringify(runningStack));
    const refused = await runCli(['control-plane', 'rotate-key', '--data-dir', dataDir]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('must be stopped first');
    await rm(join(dataDir, 'endpoints.json'));
    expect(await readFile(keyFile, 'utf8')).toBe(oldKey);

    const rotated = await runCli(['control-plane', 'rotate-key', '--data-dir', dataDir, '--json']);
    expect(rotated.code, rotated.stderr).toBe(0);
    expect(JSON.parse(rotated.stdout)).toMatchObject({ rewrappedDataKeys: expect.any(Number), caKey: true, rowsRewritten: 0 });
    expect((JSON.parse(rotated.stdout) as { rewrappedDataKeys: number }).rewrappedDataKeys).toBeGreaterThan(0);
    const newKey = await readFile(keyFile, 'utf8');
    expect(newKey).not.toBe(oldKey);
    await expect(readFile(`${keyFile}.next`)).rejects.toMatchObject({ code: 'ENOENT' });

    // Same state, same admin token (a token that no longer authenticated would have been replaced).
    expect(await clustersAfterRestart(dataDir)).toEqual(before);
    expect(await readFile(join(dataDir, 'client', 'token'), 'utf8')).toBe(token);

    // The old key opens neither the database nor the CA key.
    const oldKeyFile = join(root, 'rotate-sqlite-old.key');
    await writeFile(oldKeyFile, oldKey, { mode: 0o600 });
    const withOld = await runCli([...serveArgs(dataDir), '--cp-key-file', oldKeyFile]);
    expect(withOld.code).not.toBe(0);
    expect(withOld.stderr).toContain('DB_KEY_INVALID');

    // To a key in the environment, named explicitly; the control plane then starts with it.
    const env = { AIRLOCK_TEST_NEW_CP_KEY: Buffer.alloc(32, 7).toString('base64') };
    const toEnv = await runCli(['control-plane', 'rotate-key', '--data-dir', dataDir, '--to-key-env', 'AIRLOCK_TEST_NEW_CP_KEY'], env);
    expect(toEnv.code, toEnv.stderr).toBe(0);
    expect(toEnv.stdout).toContain('no row rewritten');
    expect(await clustersAfterRestart(dataDir, ['--cp-key-env', 'AIRLOCK_TEST_NEW_CP_KEY'], env)).toEqual(before);
    expect((await runCli(serveArgs(dataDir))).code).not.toBe(0);
  }, 120_000);

  it('PostgreSQL: re-wraps the data keys in the database; the control plane starts with the new key and reads the same rows', async () => {
    const dataDir = join(root, 'rotate-pg');
    const url = new URL(server.url);
    url.searchParams.set('schema', 'cli_rotate');
    const env = { AIRLOCK_DB_URL: url.toString() };
    const first = await startCli([...serveArgs(dataDir), '--db-ca', caFile], READY, env);
    try {
      expect((await call(dataDir, 'CreateBootstrapToken', { cluster: 'rotated-pg', reason: 'before the rotation' })).status).toBe(200);
    } finally {
      expect(await interrupt(first.child)).toBe(0);
    }
    const before = await clustersAfterRestart(dataDir, ['--db-ca', caFile], env);
    const rotated = await runCli(['control-plane', 'rotate-key', '--data-dir', dataDir, '--db-ca', caFile, '--json'], env);
    expect(rotated.code, rotated.stderr).toBe(0);
    expect((JSON.parse(rotated.stdout) as { rewrappedDataKeys: number }).rewrappedDataKeys).toBeGreaterThan(0);
    expect(await clustersAfterRestart(dataDir, ['--db-ca', caFile], env)).toEqual(before);
  }, 120_000);
});

describe('airlock up --db postgres://…', () => {
  it('brings the whole stack up on PostgreSQL over TLS: endpoints.json names it, no SQLite file is made, the URL never reaches a command line', async () => {
    const dataDir = join(root, 'up-pg');
    const url = new URL(server.url);
    url.searchParams.set('schema', 'cli_up');
    const ports = ['--api-port', '0', '--dispatch-port', '0', '--tunnel-port', '0', '--kms-port', '0', '--s3-port', '0'];
    const up = await startCli(['up', '--data-dir', dataDir, ...ports, '--db', url.toString(), '--db-ca', caFile], /Press Ctrl-C/);
    try {
      const endpoints = JSON.parse(await readFile(join(dataDir, 'endpoints.json'), 'utf8')) as { database?: { backend: string; description: string }; pids: { controlPlane: number } };
      expect(endpoints.database).toMatchObject({ backend: 'postgres' });
      expect(endpoints.database?.description).toMatch(/PostgreSQL 127\.0\.0\.1:\d+\/airlock schema cli_up \(TLS, verify-full\)/);
      const argv = (await readFile(`/proc/${endpoints.pids.controlPlane}/cmdline`, 'utf8')).split('\0');
      expect(argv.join(' ')).not.toContain('postgres://');
      expect((await call(dataDir, 'ListClusters', {})).json).toMatchObject({ clusters: [expect.objectContaining({ name: 'local' })] });
      // `airlock up` serves the run RPCs: a run of a registered task goes to the only cluster, the local data plane.
      expect((await call(dataDir, 'RegisterTask', { project: 'default', specJson: SPEC_JSON, bundle: BUNDLE })).status).toBe(200);
      const created = (await call(dataDir, 'CreateRun', { project: 'default', taskName: 'hello', idempotencyKey: 'up-1' })).json as { run?: { runId?: string; cluster?: string } };
      expect(created.run?.cluster).toBe('local');
      expect((await call(dataDir, 'ListRuns', { project: 'default' })).json).toMatchObject({ runs: [expect.objectContaining({ runId: created.run?.runId })] });
      expect((await call(dataDir, 'CreateRun', { project: 'default', taskName: 'hello', idempotencyKey: 'up-1' })).json).toMatchObject({ deduplicated: true, run: { runId: created.run?.runId } });
    } finally {
      expect(await interrupt(up.child)).toBe(0);
    }
    await expect(readFile(join(dataDir, 'control-plane', 'control-plane.db'))).rejects.toMatchObject({ code: 'ENOENT' });
  }, 120_000);
});
