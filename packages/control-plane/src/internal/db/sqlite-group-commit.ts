// Group commit for SQLite: commits write the WAL without an fsync of their own, and each caller waits for one shared fdatasync of the WAL that covers its commit.
import { open, type FileHandle } from 'node:fs/promises';
import type BetterSqlite3 from 'better-sqlite3-multiple-ciphers';
import {
  RawNode,
  SelectQueryNode,
  SqliteDialect,
  type CompiledQuery,
  type DatabaseConnection,
  type Driver,
  type QueryResult,
  type TransactionSettings,
} from 'kysely';

/**
 * Why: with `synchronous=FULL` every commit pays its own fsync (4.6 ms here), so the control plane
 * could commit at most ~200 transactions a second however many callers wait. With
 * `synchronous=NORMAL` SQLite writes each commit to the WAL without syncing it; this module then
 * holds every writer's acknowledgement until an fdatasync of the WAL that started after its commit
 * has finished. Concurrent commits share one fdatasync, and an acknowledged commit has reached the
 * disk exactly as with FULL: it survives a crash of the process and a loss of power.
 */
export interface WalSync {
  /** Resolves once everything committed before the call is on disk. */
  sync(): Promise<void>;
  close(): Promise<void>;
}

export function createWalSync(walPath: string): WalSync {
  let handle: Promise<FileHandle> | undefined;
  let running: Promise<void> | undefined;
  let next: Promise<void> | undefined;
  const flush = async (): Promise<void> => {
    handle ??= open(walPath, 'r');
    // fdatasync works on any descriptor of the file: it flushes the inode's dirty pages, whoever wrote them.
    await (await handle).datasync();
  };
  const start = (): Promise<void> => {
    const current = flush().finally(() => {
      if (running === current) running = undefined;
    });
    running = current;
    return current;
  };
  return {
    sync() {
      // A flush already under way may have started before this caller's commit: wait for the one after it.
      if (running === undefined) return start();
      next ??= running
        .catch(() => undefined)
        .then(() => {
          next = undefined;
          return start();
        });
      return next;
    },
    async close() {
      await Promise.allSettled([running, next]);
      if (handle !== undefined) await (await handle).close();
      handle = undefined;
    },
  };
}

/** Statements that change nothing on disk, so their callers need not wait for a flush. */
const NON_WRITING_RAW = /^\s*(?:begin|commit|rollback|select|pragma\s+(?:integrity_check|quick_check|wal_checkpoint))\b/i;

function writes(query: CompiledQuery): boolean {
  if (SelectQueryNode.is(query.query)) return false;
  if (RawNode.is(query.query)) return !NON_WRITING_RAW.test(query.sql);
  return true;
}

/** A connection that notes when a statement wrote, so the driver knows to wait for a flush. */
class TrackingConnection implements DatabaseConnection {
  wrote = false;
  constructor(readonly inner: DatabaseConnection) {}
  executeQuery<R>(compiledQuery: CompiledQuery): Promise<QueryResult<R>> {
    if (writes(compiledQuery)) this.wrote = true;
    return this.inner.executeQuery<R>(compiledQuery);
  }
  streamQuery<R>(compiledQuery: CompiledQuery, chunkSize?: number): AsyncIterableIterator<QueryResult<R>> {
    if (writes(compiledQuery)) this.wrote = true;
    return this.inner.streamQuery<R>(compiledQuery, chunkSize);
  }
}

/**
 * Kysely's SQLite driver (one connection behind a mutex), except that a caller that wrote waits for
 * the WAL flush after releasing the connection: the next transaction runs meanwhile, and its
 * commit joins the next flush.
 */
class GroupCommitDriver implements Driver {
  readonly #connections = new WeakMap<DatabaseConnection, TrackingConnection>();
  constructor(
    private readonly inner: Driver,
    private readonly wal: WalSync,
  ) {}
  init(): Promise<void> {
    return this.inner.init();
  }
  async acquireConnection(): Promise<DatabaseConnection> {
    const connection = await this.inner.acquireConnection();
    let tracking = this.#connections.get(connection);
    if (tracking === undefined) {
      tracking = new TrackingConnection(connection);
      this.#connections.set(connection, tracking);
    }
    tracking.wrote = false;
    return tracking;
  }
  beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    return this.inner.beginTransaction(connection, settings);
  }
  commitTransaction(connection: DatabaseConnection): Promise<void> {
    return this.inner.commitTransaction(connection);
  }
  rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    return this.inner.rollbackTransaction(connection);
  }
  async releaseConnection(connection: DatabaseConnection): Promise<void> {
    const tracking = connection as TrackingConnection;
    const wrote = tracking.wrote;
    tracking.wrote = false;
    await this.inner.releaseConnection(tracking.inner);
    if (wrote) await this.wal.sync();
  }
  async destroy(): Promise<void> {
    await this.wal.close();
    await this.inner.destroy();
  }
}

/** SqliteDialect with group commit, and prepared statements kept for reuse (Kysely prepares each query anew). */
export class GroupCommitSqliteDialect extends SqliteDialect {
  readonly #wal: WalSync;
  constructor(database: BetterSqlite3.Database, walPath: string) {
    const statements = new Map<string, BetterSqlite3.Statement>();
    const cached = {
      close: () => database.close(),
      prepare: (sql: string): BetterSqlite3.Statement => {
        let statement = statements.get(sql);
        if (statement === undefined) {
          statement = database.prepare(sql);
          // Kysely's queries are few and fixed; a bound keeps ad-hoc ones from growing the map forever.
          if (statements.size >= 500) statements.clear();
          statements.set(sql, statement);
        }
        return statement;
      },
    };
    super({ database: cached });
    this.#wal = createWalSync(walPath);
  }
  override createDriver(): Driver {
    return new GroupCommitDriver(super.createDriver(), this.#wal);
  }
}
