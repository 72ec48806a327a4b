// Unit tests of SQLite transaction batching and group commit: members that share a transaction stay isolated in failure, and no caller is answered before the batch is committed.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import SqliteDatabase from 'better-sqlite3-multiple-ciphers';
import { Kysely, sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GroupCommitSqliteDialect, MAX_BATCH_MEMBERS } from './sqlite-group-commit.js';

interface Schema {
  items: { id: number; parent: number | null };
}

let dir: string;
let raw: SqliteDatabase.Database;
let db: Kysely<Schema>;

/** WAL frames written since the last checkpoint: what the batches cost on disk. */
function walFrames(): number {
  const [row] = raw.pragma('wal_checkpoint(PASSIVE)') as Array<{ log: number }>;
  return row?.log ?? 0;
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'airlock-group-commit-'));
  const path = join(dir, 'test.db');
  raw = new SqliteDatabase(path);
  raw.pragma('journal_mode=WAL');
  raw.pragma('synchronous=NORMAL');
  raw.pragma('wal_autocheckpoint=0');
  // A deferred foreign key is checked only by the COMMIT of the whole batch: the way to make that COMMIT fail.
  raw.exec('create table items (id integer primary key, parent integer references items(id) deferrable initially deferred)');
  db = new Kysely<Schema>({ dialect: new GroupCommitSqliteDialect(raw, `${path}-wal`) });
});

afterEach(async () => {
  await db.destroy();
  await rm(dir, { recursive: true, force: true });
});

/** Counts the runs of the prepared COMMIT (the dialect prepares each statement once) until stop(). */
function countCommits(): { stop(): number } {
  let commits = 0;
  const original = raw.prepare.bind(raw);
  raw.prepare = ((source: string) => {
    const statement = original(source);
    if (/^\s*commit\b/i.test(source)) {
      const run = statement.run.bind(statement);
      statement.run = ((...args: unknown[]) => {
        commits += 1;
        return run(...args);
      });
    }
    return statement;
  }) as typeof raw.prepare;
  return {
    stop() {
      raw.prepare = original;
      return commits;
    },
  };
}

const insert = (id: number, parent: number | null = null) => db.transaction().execute((trx) => trx.insertInto('items').values({ id, parent }).execute());
const ids = async (): Promise<number[]> => (await db.selectFrom('items').select('id').orderBy('id').execute()).map((row) => row.id);

describe('SQLite group commit', () => {
  it('commits concurrent transactions together: one page write per batch, not per transaction', async () => {
    walFrames();
    await Promise.all(Array.from({ length: 40 }, (_, i) => insert(i + 1)));
    const batched = walFrames();
    for (let i = 41; i <= 80; i += 1) await insert(i);
    const oneByOne = walFrames() - batched;
    expect(await ids()).toEqual(Array.from({ length: 80 }, (_, i) => i + 1));
    // One at a time, each commit writes its page again.
    expect(oneByOne).toBeGreaterThanOrEqual(30);
    expect(batched).toBeLessThan(oneByOne / 4);
  });

  it('a failing transaction in a batch rolls back alone; the others commit', async () => {
    await insert(1);
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) =>
        db.transaction().execute(async (trx) => {
          await trx.insertInto('items').values({ id: 100 + i, parent: null }).execute();
          if (i === 4) throw new Error('fails after writing');
          // A duplicate key: SQLite's own statement error, inside the batch.
          if (i === 7) await trx.insertInto('items').values({ id: 1, parent: null }).execute();
        }),
      ),
    );
    expect(results.map((result) => result.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    expect(await ids()).toEqual([1, 100, 101, 102, 103, 105, 106, 108, 109]);
  });

  it('answers no member before the batch commits: a failed COMMIT reaches every member', async () => {
    await insert(1);
    const results = await Promise.allSettled([insert(2), insert(3, 999), insert(4)]);
    // All three share a batch, whose COMMIT the dangling reference fails: none of them was saved, and each caller hears so.
    expect(results.map((result) => result.status)).toEqual(['rejected', 'rejected', 'rejected']);
    expect(await ids()).toEqual([1]);
    expect(raw.inTransaction).toBe(false);
    await insert(5);
    expect(await ids()).toEqual([1, 5]);
  });

  it('a statement outside a transaction commits the open batch first (a checkpoint needs no open transaction)', async () => {
    const work = Array.from({ length: 5 }, (_, i) => insert(i + 1));
    const checkpoint = sql<{ busy: number }>`pragma wal_checkpoint(TRUNCATE)`.execute(db);
    await Promise.all(work);
    expect((await checkpoint).rows[0]?.busy).toBe(0);
    expect(await ids()).toEqual([1, 2, 3, 4, 5]);
    expect(raw.inTransaction).toBe(false);
  });

  it('while a WAL flush is under way, the batch stays open for the callers that flush releases', async () => {
    const counted = countCommits();
    // Workers that each wait for their last write before the next, as the control plane's callers do.
    await Promise.all(
      Array.from({ length: 8 }, async (_, worker) => {
        for (let i = 0; i < 25; i += 1) {
          // Callers resume at different turns of the event loop (other I/O, other callbacks first).
          for (let turn = 0; turn < worker % 4; turn += 1) await new Promise((resolve) => setImmediate(resolve));
          await insert(1 + worker * 25 + i);
        }
      }),
    );
    const commits = counted.stop();
    expect((await ids()).length).toBe(200);
    // Committing whenever nobody was waiting for the connection took 175 commits for these 200 writes; held open through each flush, 50 to 61.
    expect(commits).toBeLessThanOrEqual(100);
  });

  it(`a batch holds at most ${MAX_BATCH_MEMBERS} transactions`, async () => {
    const counted = countCommits();
    await Promise.all(Array.from({ length: MAX_BATCH_MEMBERS * 3 }, (_, i) => insert(i + 1)));
    const commits = counted.stop();
    expect(commits).toBeGreaterThanOrEqual(3);
    expect((await ids()).length).toBe(MAX_BATCH_MEMBERS * 3);
  });
});
