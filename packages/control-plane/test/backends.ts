// The two database backends the contract suites run against: an encrypted SQLite file, and a temporary PostgreSQL cluster over verified TLS.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { Logger } from '@airlock/common';
import { createLocalKeyWrapper, randomBytes } from '@airlock/crypto';
import { startTempPostgres, type TempPostgres } from '@airlock/testing';
import { openDatabase, resolveDatabaseConfig, type ControlPlaneDatabase, type ControlPlaneKey } from '../src/index.js';

/** A control-plane key made for one test: a random local root key. */
export function testKey(name = 'test'): ControlPlaneKey & { dispose(): void } {
  const wrapper = createLocalKeyWrapper({ keyId: `local:${name}-${randomBytes(4).toString('hex')}`, key: randomBytes(32) });
  return { wrapper, description: `test key ${name}`, dispose: () => wrapper.dispose() };
}

/** Where one database lives, so that it can be opened again (after a restart, or with another key). */
export interface DatabaseLocation {
  /** SQLite: the file; PostgreSQL: the URL of a database of its own. */
  readonly options: { readonly path: string } | { readonly url: string; readonly caPem: string };
  /** Files that hold its bytes at rest: the SQLite file and companions, or the cluster's data directory. */
  readonly atRest: readonly string[];
}

export interface Backend {
  readonly name: 'sqlite' | 'postgres';
  /** A fresh, empty database location. */
  create(): Promise<DatabaseLocation>;
  /** Drops every database created so far (after each test, once they are closed), so a PostgreSQL cluster does not fill up. */
  cleanup(): Promise<void>;
  /** Runs after the suite. */
  stop(): Promise<void>;
  /** Makes written data reach the files `atRest` names. */
  flush(database: ControlPlaneDatabase): Promise<void>;
}

/** Opens a database at `location` with `key` (a fresh test key by default). */
export async function openAt(location: DatabaseLocation, log: Logger, key: ControlPlaneKey = testKey()): Promise<ControlPlaneDatabase> {
  return openDatabase(resolveDatabaseConfig({ ...location.options, key, log }));
}

export async function sqliteBackend(): Promise<Backend> {
  const root = await mkdtemp(join(tmpdir(), 'airlock-db-'));
  let count = 0;
  return {
    name: 'sqlite',
    create() {
      count += 1;
      const path = join(root, `cp-${count}.db`);
      return Promise.resolve({ options: { path }, atRest: [path, `${path}-wal`, `${path}-shm`, `${path}.key`] });
    },
    cleanup: () => Promise.resolve(),
    stop: () => rm(root, { recursive: true, force: true }),
    flush: (database) => database.checkpoint(),
  };
}

/** A PostgreSQL cluster with TLS; each `create()` is a schema of its own in the test database (a new database would copy a 7.5 MB template). */
export async function postgresBackend(server?: TempPostgres): Promise<Backend & { readonly server: TempPostgres }> {
  const cluster = server ?? (await startTempPostgres());
  let count = 0;
  const created: string[] = [];
  const admin = new pg.Client({ host: cluster.socketDir, port: cluster.port, user: cluster.user, database: cluster.database });
  await admin.connect();
  return {
    name: 'postgres',
    server: cluster,
    create() {
      count += 1;
      const schema = `cp_${process.pid}_${count}`;
      created.push(schema);
      const url = new URL(cluster.url);
      url.searchParams.set('schema', schema);
      return Promise.resolve({ options: { url: url.toString(), caPem: cluster.caPem }, atRest: [cluster.dataDir] });
    },
    async cleanup() {
      for (const schema of created.splice(0)) await admin.query(`drop schema if exists ${schema} cascade`);
    },
    async stop() {
      await admin.end().catch(() => undefined);
      await cluster.stop();
    },
    flush: () => cluster.checkpoint(),
  };
}
