// Schema upgrades on SQLite: a database of an earlier release keeps its rows through the later migrations, and the indexes the queue's queries need are the ones it uses.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import SqliteDatabase from 'better-sqlite3-multiple-ciphers';
import { Kysely, SqliteDialect } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KNOWN_MIGRATIONS, migrateTo, migrateToLatest } from './migrations.js';

let dir: string;
let raw: SqliteDatabase.Database;
let db: Kysely<unknown>;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'airlock-migrations-'));
  raw = new SqliteDatabase(join(dir, 'upgrade.db'));
  raw.pragma('foreign_keys=ON');
  db = new Kysely<unknown>({ dialect: new SqliteDialect({ database: raw }) });
});

afterEach(async () => {
  await db.destroy();
  await rm(dir, { recursive: true, force: true });
});

const plan = (query: string, ...params: unknown[]): string =>
  (raw.prepare(`explain query plan ${query}`).all(...params) as Array<{ detail: string }>).map((row) => row.detail).join('; ');

function insertAction(id: string, leaseExpiresAt: number | null, completedAt: number | null): void {
  raw
    .prepare(
      `insert into actions (action_id, cluster_id, run_id, spec_sealed, attempt, phase, queued_at, updated_at, lease_expires_at, completed_at, cancel_requested, deliveries, has_inputs, inputs_lost)
       values (?, 'c', 'r', x'00', 1, ?, 1, 1, ?, ?, 0, 0, 0, 0)`,
    )
    .run(id, completedAt === null ? 'QUEUED' : 'SUCCEEDED', leaseExpiresAt, completedAt);
}

describe('schema migrations on SQLite', () => {
  it('0003 keeps every action and event of a 0002 database, stores events in their primary key, and indexes only deadlines and finished actions', async () => {
    expect(await migrateTo(db, 'sqlite', '0002-runs')).toMatchObject({ version: '0002-runs' });
    insertAction('a-queued', null, null);
    insertAction('a-leased', 5000, null);
    insertAction('a-done', null, 9000);
    raw.prepare('insert into action_events (action_id, event_id, received_at) values (?, ?, ?)').run('a-done', 'e-1', 9000);
    raw.prepare('insert into action_events (action_id, event_id, received_at) values (?, ?, ?)').run('a-leased', 'e-2', 4000);

    const { applied, version } = await migrateToLatest(db, 'sqlite');
    expect(applied).toEqual(KNOWN_MIGRATIONS.slice(KNOWN_MIGRATIONS.indexOf('0002-runs') + 1));
    expect(version).toBe(KNOWN_MIGRATIONS.at(-1));

    expect(raw.prepare('select action_id, event_id, received_at from action_events order by event_id').all()).toEqual([
      { action_id: 'a-done', event_id: 'e-1', received_at: 9000 },
      { action_id: 'a-leased', event_id: 'e-2', received_at: 4000 },
    ]);
    const definition = (name: string): string => (raw.prepare('select sql from sqlite_schema where name = ?').get(name) as { sql: string }).sql;
    expect(definition('action_events')).toMatch(/without rowid\s*$/i);
    expect(raw.prepare("select count(*) as n from sqlite_schema where name like 'action_events_0003%'").get()).toEqual({ n: 0 });
    expect(definition('actions_lease_expiry')).toMatch(/where "lease_expires_at" is not null/i);
    expect(definition('actions_completed')).toMatch(/where "completed_at" is not null/i);
    // The partial indexes hold only the rows that have a value.
    expect(raw.prepare('select count(*) as n from actions indexed by actions_lease_expiry where lease_expires_at is not null').get()).toEqual({ n: 1 });
    expect(raw.prepare('select count(*) as n from actions indexed by actions_completed where completed_at is not null').get()).toEqual({ n: 1 });

    // The queue's queries still use them: lease expiry, and pruning the oldest finished actions.
    expect(plan('select action_id from actions where lease_expires_at <= ? and completed_at is null limit 1', 6000)).toContain('actions_lease_expiry');
    expect(plan('select action_id from actions where completed_at is not null order by completed_at desc, action_id desc limit 500 offset 10')).toContain('actions_completed');
    // The events' foreign key still cascades.
    raw.prepare('delete from actions where action_id = ?').run('a-done');
    expect(raw.prepare('select event_id from action_events').all()).toEqual([{ event_id: 'e-2' }]);
    expect(raw.pragma('integrity_check', { simple: true })).toBe('ok');
    expect(raw.pragma('foreign_key_check')).toEqual([]);
  });

  it('refuses an unknown target version', async () => {
    await expect(migrateTo(db, 'sqlite', '9999-future')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('refuses to go back to an older version with a typed error, and leaves the schema as it was', async () => {
    await migrateToLatest(db, 'sqlite');
    const latest = KNOWN_MIGRATIONS.at(-1) ?? '';
    await expect(migrateTo(db, 'sqlite', '0001-initial')).rejects.toMatchObject({ code: 'FAILED_PRECONDITION', details: { found: latest, target: '0001-initial' } });
    // The same version again is no change, not an error.
    expect(await migrateTo(db, 'sqlite', latest)).toEqual({ applied: [], version: latest });
    expect(raw.pragma('integrity_check', { simple: true })).toBe('ok');
  });
});
