// The control-plane database: one contract suite for SQLite and PostgreSQL, plus what only one backend has (TLS refusals, the SQLite key file, kill -9 mid-write, modes, the JSON import).
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { cp, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createCertificateAuthority } from '@airlock/pki';
import { captureLogger, makeCanary, startTempPostgres, type TempPostgres } from '@airlock/testing';
import { sql } from 'kysely';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { importLegacyState, openActionQueue, openApiTokenStore, openClusterRegistry, openDatabase, resolveDatabaseConfig } from '../src/index.js';
import { openAt, postgresBackend, sqliteBackend, testKey, type Backend } from './backends.js';
import { actionQueueContract } from './contracts/action-queue.contract.js';
import { apiTokenContract } from './contracts/api-tokens.contract.js';
import { clusterRegistryContract } from './contracts/cluster-registry.contract.js';
import { databaseContract } from './contracts/database.contract.js';
import { runServiceContract } from './contracts/runs.contract.js';

const here = dirname(fileURLToPath(import.meta.url));

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected the promise to reject');
    },
    (reason: unknown) => reason,
  );
}

const BACKENDS: ReadonlyArray<readonly [string, () => Promise<Backend>]> = [
  ['sqlite', sqliteBackend],
  ['postgres', () => postgresBackend()],
];

describe.each(BACKENDS)('contract on %s', (_name, start) => {
  let backend: Backend | undefined;
  beforeAll(async () => {
    backend = await start();
  });
  afterAll(async () => {
    await backend?.stop();
  });
  // Registered before the suites' own afterEach hooks, so it runs after them: once their databases are closed.
  afterEach(async () => {
    await backend?.cleanup();
  });
  const current = (): Backend => {
    if (backend === undefined) throw new Error('backend not started');
    return backend;
  };
  databaseContract(current);
  clusterRegistryContract(current);
  apiTokenContract(current);
  actionQueueContract(current);
  runServiceContract(current);
});

describe('PostgreSQL transport', () => {
  const servers: TempPostgres[] = [];
  afterAll(async () => {
    await Promise.all(servers.map((server) => server.stop()));
  });
  const started = async (options: Parameters<typeof startTempPostgres>[0]): Promise<TempPostgres> => {
    const server = await startTempPostgres(options);
    servers.push(server);
    return server;
  };
  const open = (url: string, caPem: string | undefined, extra: { allowPlaintextUnixSocket?: boolean } = {}): Promise<unknown> =>
    openDatabase(resolveDatabaseConfig({ url, ...(caPem === undefined ? {} : { caPem }), ...extra, key: testKey(), log: captureLogger('db').log }));

  it('refuses a server certificate from another CA', async () => {
    const server = await started({ certificateFromOtherCa: true });
    expect(await rejection(open(server.url, server.airlockCaPem))).toMatchObject({ code: 'DB_CONNECTION_INSECURE', details: { reason: 'certificate-untrusted' } });
  });

  it('refuses a plaintext server', async () => {
    const server = await started({ tls: false });
    expect(await rejection(open(server.url, server.airlockCaPem))).toMatchObject({ code: 'DB_CONNECTION_INSECURE', details: { reason: 'server-without-tls' } });
  });

  it('refuses a certificate for another host name', async () => {
    const server = await started({ serverNames: { dnsNames: ['db.example.internal'], ipAddresses: ['10.9.8.7'] } });
    expect(await rejection(open(server.url, server.caPem))).toMatchObject({ code: 'DB_CONNECTION_INSECURE', details: { reason: 'hostname-mismatch' } });
  });

  it('refuses weaker sslmodes, TCP without a CA, and a Unix socket unless allowed', async () => {
    const server = await started({});
    for (const mode of ['disable', 'prefer', 'require', 'verify-ca']) {
      expect(() => resolveDatabaseConfig({ url: `${server.url}?sslmode=${mode}`, caPem: server.caPem, key: testKey(), log: captureLogger('db').log })).toThrow(
        expect.objectContaining({ code: 'DB_CONNECTION_INSECURE', details: { reason: 'sslmode' } }) as Error,
      );
    }
    expect(() => resolveDatabaseConfig({ url: server.url, key: testKey(), log: captureLogger('db').log })).toThrow(
      expect.objectContaining({ code: 'DB_CONNECTION_INSECURE', details: { reason: 'no-ca' } }) as Error,
    );
    const socketUrl = `postgres://${server.user}@localhost:${server.port}/${server.database}?host=${encodeURIComponent(server.socketDir)}`;
    expect(() => resolveDatabaseConfig({ url: socketUrl, key: testKey(), log: captureLogger('db').log })).toThrow(
      expect.objectContaining({ code: 'DB_CONNECTION_INSECURE', details: { reason: 'unix-socket' } }) as Error,
    );
    // Explicitly allowed, the socket works, and the password never shows in the description.
    const database = (await open(socketUrl.replace('@localhost:', `:${encodeURIComponent(server.password ?? 'x')}@localhost:`), undefined, { allowPlaintextUnixSocket: true })) as {
      description: string;
      close(): Promise<void>;
    };
    expect(database.description).toContain('Unix socket');
    if (server.password !== undefined) expect(database.description).not.toContain(server.password);
    await database.close();
    // verify-full is what Airlock does anyway, so saying so is fine.
    await ((await open(`${server.url}?sslmode=verify-full&schema=verify_full`, server.caPem)) as { close(): Promise<void> }).close();
  });
});

describe('SQLite file', () => {
  let directory: string;
  beforeAll(async () => {
    directory = await mkdtemp(join(tmpdir(), 'airlock-sqlite-'));
  });
  afterAll(async () => {
    await rm(directory, { recursive: true, force: true });
  });

  it('writes the database, its WAL and shared memory, and its key file 0600', async () => {
    const path = join(directory, 'modes.db');
    const database = await openAt({ options: { path }, atRest: [] }, captureLogger('db').log);
    await openApiTokenStore({ database }).createToken({ subject: 's', roles: [] });
    for (const file of database.files()) expect({ file, mode: (await stat(file)).mode & 0o777 }).toEqual({ file, mode: 0o600 });
    expect(await database.integrityCheck()).toEqual([]);
    await database.close();
  });

  // SQLite spills a savepoint's journal (page images of the database) to an unlinked temporary file
  // once it passes 64 KiB, and the cipher does not cover temporary files: it must never get that far.
  it.runIf(existsSync('/proc/self/fd'))('keeps savepoint journals in memory: no page of the database reaches a temporary file', async () => {
    const path = join(directory, 'journal.db');
    const database = await openAt({ options: { path }, atRest: [] }, captureLogger('db').log);
    const canary = makeCanary('journal');
    // A table of the test's own, its values written as they are (no column sealing): the pages only the file cipher protects.
    await sql`create table scratch (id integer primary key, body text not null)`.execute(database.db);
    await database.db.transaction().execute(async (trx) => {
      for (let id = 0; id < 400; id += 1) await sql`insert into scratch (id, body) values (${id}, ${`${canary}:${'x'.repeat(900)}`})`.execute(trx);
    });
    // SQLite's temporary files are unlinked as soon as they are opened; the open descriptors still show them, and read them.
    const temporaryFiles = (): Array<{ file: string; holdsCanary: boolean }> =>
      readdirSync('/proc/self/fd').flatMap((fd) => {
        let file: string;
        try {
          file = readlinkSync(`/proc/self/fd/${fd}`);
        } catch {
          return [];
        }
        if (!file.includes('etilqs_')) return [];
        return [{ file, holdsCanary: readFileSync(`/proc/self/fd/${fd}`).includes(canary) }];
      });
    let during: Array<{ file: string; holdsCanary: boolean }> = [];
    // Every transaction runs in a savepoint of its batch; rewriting 400 rows (~100 pages) journals ~400 KiB of pages holding the canary.
    await database.db.transaction().execute(async (trx) => {
      await sql`update scratch set body = ${'y'.repeat(900)}`.execute(trx);
      during = temporaryFiles();
    });
    expect(during).toEqual([]);
    expect((await sql<{ n: number }>`select count(*) as n from scratch where body like 'y%'`.execute(database.db)).rows[0]?.n).toBe(400);
    await database.close();
  });

  it('a missing or foreign key file is a DB_KEY_INVALID that says so, never "file is not a database"', async () => {
    const path = join(directory, 'keyfile.db');
    const other = join(directory, 'other.db');
    const key = testKey();
    await (await openAt({ options: { path }, atRest: [] }, captureLogger('db').log, key)).close();
    await (await openAt({ options: { path: other }, atRest: [] }, captureLogger('db').log, key)).close();
    const keyFile = await readFile(`${path}.key`);
    await rm(`${path}.key`);
    const missing = await rejection(openAt({ options: { path }, atRest: [] }, captureLogger('db').log, key));
    expect(missing).toMatchObject({ code: 'DB_KEY_INVALID' });
    expect((missing as Error).message).toContain(`${path}.key`);
    // Another database's key file, wrapped by the same key, unwraps (its context names its file) only for that file.
    await cp(`${other}.key`, `${path}.key`);
    expect(await rejection(openAt({ options: { path }, atRest: [] }, captureLogger('db').log, key))).toMatchObject({ code: 'DB_KEY_INVALID' });
    await writeFile(`${path}.key`, keyFile);
    await (await openAt({ options: { path }, atRest: [] }, captureLogger('db').log, key)).close();
  });

  it('kill -9 in the middle of a burst of writes loses no acknowledged write and leaves a sound file', async () => {
    const path = join(directory, 'crash.db');
    const keyFile = join(directory, 'crash-root.key');
    const child = spawn(process.execPath, ['--import', 'tsx', join(here, 'fixtures', 'write-burst.ts'), path, keyFile], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, NODE_OPTIONS: '--conditions=airlock-source' },
    });
    const acknowledged: string[] = [];
    let buffered = '';
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => {
        buffered += chunk.toString('utf8');
        const lines = buffered.split('\n');
        buffered = lines.pop() ?? '';
        acknowledged.push(...lines.filter((line) => line.length > 0));
        if (acknowledged.length >= 300 && child.exitCode === null && !child.killed) {
          child.kill('SIGKILL');
          resolve();
        }
      });
      child.once('exit', (code, signal) => (signal === 'SIGKILL' ? resolve() : reject(new Error(`the writer exited on its own (${code ?? signal ?? '?'})`))));
    });
    await new Promise((resolve) => child.once('exit', resolve).exitCode !== null && resolve(undefined));
    const { openControlPlaneKey } = await import('../src/index.js');
    const key = await openControlPlaneKey({ dir: directory, root: { file: keyFile } }, captureLogger('db').log);
    const database = await openDatabase(resolveDatabaseConfig({ path, key, log: captureLogger('db').log }));
    try {
      expect(await database.integrityCheck()).toEqual([]);
      const tokens = await openApiTokenStore({ database }).list();
      const stored = new Set(tokens.map((token) => token.subject));
      expect(acknowledged.filter((subject) => !stored.has(subject))).toEqual([]);
    } finally {
      await database.close();
      key.dispose();
    }
  });

  it("imports a data directory of the JSON-file release once, then removes its files", async () => {
    const dir = await mkdtemp(join(directory, 'legacy-'));
    await cp(join(here, 'fixtures', 'legacy-data-dir'), dir, { recursive: true });
    const files = {
      clusters: join(dir, 'control-plane', 'clusters.json'),
      apiTokens: join(dir, 'control-plane', 'api-tokens.json'),
      actions: join(dir, 'control-plane', 'actions.json'),
    };
    const legacy = JSON.parse(await readFile(files.actions, 'utf8')) as { actions: Array<{ actionId: string; phase: string; history: Array<Record<string, unknown>> }> };
    // One history edited by hand into something that is not only phases, times and ids: it is imported sealed.
    const edited = legacy.actions.find((action) => action.phase !== 'FAILED');
    edited?.history.push({ phase: 'RUNNING', at: 1796234708600, eventId: 'not\tan id' });
    await writeFile(files.actions, JSON.stringify(legacy));
    const legacyActions = legacy.actions;
    const { log } = captureLogger('db');
    const key = testKey();
    const location = { options: { path: join(dir, 'control-plane', 'control-plane.db') }, atRest: [] };
    const database = await openAt(location, log, key);
    try {
      const result = await importLegacyState(database, files, log);
      expect(result).toMatchObject({ clusters: 1, bootstrapTokens: 2, apiTokens: 1, actions: 2 });
      for (const file of Object.values(files)) await expect(stat(file)).rejects.toMatchObject({ code: 'ENOENT' });
      expect(await importLegacyState(database, files, log)).toBeUndefined();

      const token = (await readFile(join(dir, 'client', 'token'), 'utf8')).trim();
      expect(await openApiTokenStore({ database }).authenticate(token)).toMatchObject({ subject: 'local-admin', roles: [{ project: '*', role: 'admin' }] });
      const registry = openClusterRegistry({ ca: await createCertificateAuthority({ commonName: 'import CA' }), database });
      expect(await registry.cluster('local')).toMatchObject({ name: 'local', revoked: false, registeredAt: new Date(1796234680958) });
      const queue = await openActionQueue({ database, log });
      const failed = legacyActions.find((action) => action.phase === 'FAILED');
      expect(await queue.get(failed?.actionId ?? '')).toMatchObject({ phase: 'FAILED', task: { project: 'legacy-project' }, error: { code: 'USER_ERROR', message: 'legacy failure' } });
      expect(await queue.list('local')).toHaveLength(2);
      // Histories are imported readable (phases, times, event ids), the edited one sealed; both read back.
      const stored = await database.db.selectFrom('actions').select(['action_id', 'history', 'history_sealed']).execute();
      expect(JSON.parse(stored.find((row) => row.action_id === failed?.actionId)?.history ?? 'null')).toEqual([
        { phase: 'QUEUED', at: 1796234708546 },
        { phase: 'RUNNING', at: 1796234708573, eventId: 'ev-1' },
        { phase: 'FAILED', at: 1796234708573, eventId: 'ev-2' },
      ]);
      expect(stored.find((row) => row.action_id === failed?.actionId)?.history_sealed).toBeNull();
      expect(stored.find((row) => row.action_id === edited?.actionId)).toMatchObject({ history: null, history_sealed: expect.any(Buffer) as unknown });
      expect((await queue.get(edited?.actionId ?? ''))?.history.map((entry) => entry.eventId)).toEqual([undefined, 'not\tan id']);
      // The event the old release already applied is still recognised as a repeat.
      expect(await queue.record('local', [{ eventId: 'ev-2', actionId: failed?.actionId ?? '', attempt: 1, phase: 'SUCCEEDED' }])).toBe(0);
      await queue.close();
    } finally {
      await database.close();
    }
  });
});
