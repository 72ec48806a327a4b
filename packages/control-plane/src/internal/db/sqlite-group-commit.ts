// Group commit for SQLite: commits write the WAL without an fsync of their own, and each caller waits for one shared fdatasync of the WAL that covers its commit.
import { open, type FileHandle } from 'node:fs/promises';
import type BetterSqlite3 from 'better-sqlite3-multiple-ciphers';
import type { DatabaseConnection, Driver, QueryCompiler, QueryResult } from 'kysely';
import { AirlockError } from '@airlock/common';
import { CompiledQuery, RawNode, SelectQueryNode, SqliteDialect } from './kysely.js';

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
  /** The flush under way, if any: it settles when that flush has finished. */
  readonly flushing: Promise<void> | undefined;
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
    get flushing() {
      return running;
    },
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

/** Transactions one batch may hold before it commits, so that a steady stream of callers still gets answered. */
export const MAX_BATCH_MEMBERS = 64;
/** A batch older than this commits before it takes another member, whatever is waiting. */
const MAX_BATCH_AGE_MS = 20;
/** The savepoint each member transaction runs in, inside the batch's transaction. Members never nest, so one name serves. */
const MEMBER = 'airlock_batch_member';

const raw = (statement: string): CompiledQuery => CompiledQuery.raw(statement);

/**
 * Transactions that share one SQLite transaction: each ran in a savepoint of its own (in turn, on the
 * one connection), and none is answered before the batch commits and the WAL is synced.
 */
class Batch {
  members = 0;
  /** Its commit waits for the WAL flush under way (see GroupCommitDriver). */
  commitDeferred = false;
  readonly startedAt = performance.now();
  readonly durable: Promise<void>;
  #settle: (outcome: Promise<void>) => void = () => undefined;
  constructor() {
    this.durable = new Promise<void>((resolve) => {
      this.#settle = resolve;
    });
    // A batch that fails with no member waiting on it (all rolled back) must not surface as an unhandled rejection.
    this.durable.catch(() => undefined);
  }
  settle(outcome: Promise<void>): void {
    this.#settle(outcome);
  }
}

/** The one connection's lock, which also tells whether a caller is waiting for it. */
class ConnectionLock {
  #held = false;
  readonly #waiting: (() => void)[] = [];
  get waiting(): number {
    return this.#waiting.length;
  }
  lock(): Promise<void> {
    if (!this.#held) {
      this.#held = true;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => this.#waiting.push(resolve));
  }
  unlock(): void {
    const next = this.#waiting.shift();
    if (next === undefined) this.#held = false;
    else next();
  }
}

/** The connection handed to callers: notes when a statement outside a transaction wrote, and closes an open batch before such a statement runs. */
class TrackingConnection implements DatabaseConnection {
  wrote = false;
  constructor(
    readonly inner: DatabaseConnection,
    private readonly driver: GroupCommitDriver,
  ) {}
  async executeQuery<R>(compiledQuery: CompiledQuery): Promise<QueryResult<R>> {
    await this.driver.beforeStatement(this, compiledQuery);
    return this.inner.executeQuery<R>(compiledQuery);
  }
  async *streamQuery<R>(compiledQuery: CompiledQuery, chunkSize?: number): AsyncIterableIterator<QueryResult<R>> {
    await this.driver.beforeStatement(this, compiledQuery);
    yield* this.inner.streamQuery<R>(compiledQuery, chunkSize);
  }
}

/**
 * Kysely's SQLite driver (one connection behind a lock), with two kinds of grouping:
 *
 * - **Transaction batching.** While other callers wait for the connection, a transaction does not
 *   commit: the next one continues in the same SQLite transaction, each in a savepoint of its own,
 *   and the last in line (or the 64th, or the first after 20 ms) commits them all at once — or, if
 *   a flush of the WAL is under way, the batch stays open until that flush ends, taking in the
 *   callers it releases, and commits then (its members could not be answered before the next flush
 *   anyway: 22 % fewer commits and 3 % fewer WAL frames in the queue benchmark). A page
 *   that several transactions change is written to the WAL once per batch rather than once per
 *   transaction — with SQLCipher each WAL frame is an AES-256-CBC encryption and an HMAC-SHA512 of a
 *   whole page, so this is where encryption cost most. The transactions still run one after another
 *   on one connection, so each sees the ones before it exactly as if they had committed; one that
 *   fails rolls back to its savepoint and takes nothing else with it. No caller is answered before
 *   the batch is committed and synced, so an answered transaction is as durable as before; if the
 *   batch's COMMIT fails (or SQLite abandons the transaction), every member's caller gets the error.
 * - **Group commit.** A caller whose work committed waits for the WAL flush after releasing the
 *   connection: the next transaction runs meanwhile, and its commit joins the next flush.
 */
class GroupCommitDriver implements Driver {
  readonly #lock = new ConnectionLock();
  #connection: TrackingConnection | undefined;
  #batch: Batch | undefined;
  /** The batch the transaction now running belongs to, from its begin until its commit or rollback. */
  #member: Batch | undefined;
  /** Per connection use: the batch the caller's transaction joined, which it waits for on release. */
  #joined: Batch | undefined;
  constructor(
    private readonly inner: Driver,
    private readonly wal: WalSync,
    private readonly database: BetterSqlite3.Database,
  ) {}
  async init(): Promise<void> {
    await this.inner.init();
    // The inner driver's single connection is taken once and kept: this driver's lock guards it.
    this.#connection = new TrackingConnection(await this.inner.acquireConnection(), this);
  }
  async acquireConnection(): Promise<DatabaseConnection> {
    await this.#lock.lock();
    const connection = this.#connection;
    if (connection === undefined) {
      this.#lock.unlock();
      throw new Error('the SQLite driver is not initialised');
    }
    connection.wrote = false;
    this.#joined = undefined;
    return connection;
  }
  /** Before a statement outside a transaction: an open batch commits first, since such a statement (a checkpoint, a pragma) may need to run outside any transaction. */
  async beforeStatement(connection: TrackingConnection, query: CompiledQuery): Promise<void> {
    if (this.#member !== undefined) return;
    if (this.#batch !== undefined) await this.#commitBatch(connection);
    if (writes(query)) connection.wrote = true;
  }
  async beginTransaction(connection: DatabaseConnection): Promise<void> {
    const tracking = connection as TrackingConnection;
    if (this.#batch !== undefined && (this.#batch.members >= MAX_BATCH_MEMBERS || performance.now() - this.#batch.startedAt > MAX_BATCH_AGE_MS)) {
      await this.#commitBatch(tracking);
    }
    if (this.#batch === undefined) {
      await tracking.inner.executeQuery(raw('begin'));
      this.#batch = new Batch();
    }
    await tracking.inner.executeQuery(raw(`savepoint ${MEMBER}`));
    this.#batch.members += 1;
    this.#member = this.#batch;
  }
  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    const batch = this.#member;
    this.#member = undefined;
    await (connection as TrackingConnection).inner.executeQuery(raw(`release ${MEMBER}`));
    this.#joined = batch;
  }
  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    const tracking = connection as TrackingConnection;
    this.#member = undefined;
    if (this.database.inTransaction) {
      // Undo this transaction only; the batch's earlier members stay.
      await tracking.inner.executeQuery(raw(`rollback to ${MEMBER}`));
      await tracking.inner.executeQuery(raw(`release ${MEMBER}`));
      return;
    }
    // SQLite rolled the whole transaction back itself (an I/O error, a full disk): the batch's earlier members are gone too.
    const batch = this.#batch;
    this.#batch = undefined;
    batch?.settle(Promise.reject(new AirlockError('UNAVAILABLE', 'SQLite abandoned the transaction this write was committed in; it was not saved')));
  }
  savepoint(connection: DatabaseConnection, name: string, compile: QueryCompiler['compileQuery']): Promise<void> {
    return this.inner.savepoint?.(connection, name, compile) ?? Promise.reject(new Error('savepoints are not supported'));
  }
  rollbackToSavepoint(connection: DatabaseConnection, name: string, compile: QueryCompiler['compileQuery']): Promise<void> {
    return this.inner.rollbackToSavepoint?.(connection, name, compile) ?? Promise.reject(new Error('savepoints are not supported'));
  }
  releaseSavepoint(connection: DatabaseConnection, name: string, compile: QueryCompiler['compileQuery']): Promise<void> {
    return this.inner.releaseSavepoint?.(connection, name, compile) ?? Promise.reject(new Error('savepoints are not supported'));
  }
  async releaseConnection(connection: DatabaseConnection): Promise<void> {
    const tracking = connection as TrackingConnection;
    const joined = this.#joined;
    const wrote = tracking.wrote;
    this.#joined = undefined;
    tracking.wrote = false;
    try {
      const batch = this.#batch;
      if (batch !== undefined) {
        if (batch.members >= MAX_BATCH_MEMBERS) await this.#commitBatch(tracking);
        else if (this.#lock.waiting === 0) {
          // Nobody is waiting to continue the batch. While a flush of the WAL is under way, committing
          // now would answer nobody sooner (the next flush starts after it); held open until then,
          // the batch takes in the callers that flush releases.
          const flushing = this.wal.flushing;
          if (flushing === undefined) await this.#commitBatch(tracking);
          else this.#commitAfter(batch, flushing);
        }
      }
    } finally {
      this.#lock.unlock();
    }
    if (joined !== undefined) await joined.durable;
    else if (wrote) await this.wal.sync();
  }
  /**
   * Commits `batch` once `flushing` has finished and the callers it released have had their turn
   * (setImmediate runs after the promise callbacks that resume them), unless something committed the
   * batch first: the 64th member, the age limit, a statement outside a transaction, or closing.
   */
  #commitAfter(batch: Batch, flushing: Promise<void>): void {
    if (batch.commitDeferred) return;
    batch.commitDeferred = true;
    const commit = async (): Promise<void> => {
      await this.#lock.lock();
      try {
        if (this.#batch === batch && this.#connection !== undefined) await this.#commitBatch(this.#connection);
      } finally {
        this.#lock.unlock();
      }
    };
    void flushing
      .catch(() => undefined)
      .then(() => new Promise<void>((resolve) => setImmediate(resolve)))
      .then(commit)
      .catch((error: unknown) => batch.settle(Promise.reject(AirlockError.from(error, 'UNAVAILABLE'))));
  }
  /** Commits the open batch, and settles it once the WAL flush after the commit has finished (or with the commit's error). */
  async #commitBatch(connection: TrackingConnection): Promise<void> {
    const batch = this.#batch;
    if (batch === undefined) return;
    this.#batch = undefined;
    try {
      await connection.inner.executeQuery(raw('commit'));
    } catch (error) {
      if (this.database.inTransaction) await connection.inner.executeQuery(raw('rollback')).catch(() => undefined);
      batch.settle(Promise.reject(AirlockError.from(error, 'UNAVAILABLE')));
      return;
    }
    batch.settle(this.wal.sync());
  }
  async destroy(): Promise<void> {
    await this.#lock.lock();
    try {
      if (this.#connection !== undefined) await this.#commitBatch(this.#connection);
      await this.wal.close();
      if (this.#connection !== undefined) await this.inner.releaseConnection(this.#connection.inner);
      await this.inner.destroy();
    } finally {
      this.#lock.unlock();
    }
  }
}

/** SqliteDialect with group commit, and prepared statements kept for reuse (Kysely prepares each query anew). */
export class GroupCommitSqliteDialect extends SqliteDialect {
  readonly #wal: WalSync;
  readonly #database: BetterSqlite3.Database;
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
    this.#database = database;
  }
  override createDriver(): Driver {
    return new GroupCommitDriver(super.createDriver(), this.#wal, this.#database);
  }
}
