// Numbered schema migrations, one list for SQLite and PostgreSQL, run with Kysely's Migrator; a schema newer than this release is refused.
import type { Kysely, Migration, MigrationProvider } from 'kysely';
import { AirlockError } from '@airlock/common';
import { Migrator, sql } from './kysely.js';

/** Which SQL dialect a migration writes for; only column types differ between the two. */
export type DatabaseBackend = 'sqlite' | 'postgres';

/** Table names Kysely's Migrator keeps its bookkeeping in. */
export const MIGRATION_TABLE = 'airlock_migrations';
export const MIGRATION_LOCK_TABLE = 'airlock_migrations_lock';

interface Types {
  readonly backend: DatabaseBackend;
  /** Opaque bytes (sealed values, wrapped keys). */
  readonly bytes: 'blob' | 'bytea';
  /** Epoch milliseconds and counters that can pass 2^31. */
  readonly int64: 'integer' | 'bigint';
}

function typesFor(backend: DatabaseBackend): Types {
  return backend === 'sqlite' ? { backend, bytes: 'blob', int64: 'integer' } : { backend, bytes: 'bytea', int64: 'bigint' };
}

type Step = (db: Kysely<unknown>, types: Types) => Promise<void>;

/**
 * The migrations, in order. Names sort in the order they run; never edit or remove a released one,
 * only add the next. Columns are plain ids, states, times and foreign keys, or `_sealed` ciphertext.
 */
const STEPS: ReadonlyArray<readonly [name: string, up: Step]> = [
  [
    '0001-initial',
    async (db, t) => {
      await db.schema
        .createTable('db_keys')
        .addColumn('key_no', 'integer', (c) => c.primaryKey())
        .addColumn('wrapped', t.bytes, (c) => c.notNull())
        .addColumn('created_at', t.int64, (c) => c.notNull())
        .addColumn('rewrapped_at', t.int64)
        .execute();

      await db.schema
        .createTable('clusters')
        .addColumn('cluster_id', 'text', (c) => c.primaryKey())
        .addColumn('name_sealed', t.bytes, (c) => c.notNull())
        .addColumn('registered_at', t.int64, (c) => c.notNull())
        .addColumn('revoked', 'integer', (c) => c.notNull())
        .addColumn('updated_at', t.int64, (c) => c.notNull())
        .execute();

      await db.schema
        .createTable('cluster_certificates')
        .addColumn('fingerprint', 'text', (c) => c.primaryKey())
        .addColumn('cluster_id', 'text', (c) => c.notNull().references('clusters.cluster_id').onDelete('cascade'))
        .addColumn('issued_at', t.int64, (c) => c.notNull())
        .addColumn('expires_at', t.int64, (c) => c.notNull())
        .execute();
      await db.schema.createIndex('cluster_certificates_by_cluster').on('cluster_certificates').columns(['cluster_id', 'issued_at']).execute();

      await db.schema
        .createTable('bootstrap_tokens')
        .addColumn('token_hash', 'text', (c) => c.primaryKey())
        .addColumn('cluster_id', 'text', (c) => c.notNull())
        .addColumn('cluster_name_sealed', t.bytes, (c) => c.notNull())
        .addColumn('reason_sealed', t.bytes)
        .addColumn('created_at', t.int64, (c) => c.notNull())
        .addColumn('expires_at', t.int64, (c) => c.notNull())
        .addColumn('used_at', t.int64)
        .execute();
      await db.schema.createIndex('bootstrap_tokens_by_cluster').on('bootstrap_tokens').column('cluster_id').execute();
      await db.schema.createIndex('bootstrap_tokens_by_expiry').on('bootstrap_tokens').column('expires_at').execute();

      await db.schema
        .createTable('api_tokens')
        .addColumn('token_id', 'text', (c) => c.primaryKey())
        .addColumn('token_hash', 'text', (c) => c.notNull().unique())
        .addColumn('subject_sealed', t.bytes, (c) => c.notNull())
        .addColumn('roles_sealed', t.bytes, (c) => c.notNull())
        .addColumn('created_at', t.int64, (c) => c.notNull())
        .addColumn('expires_at', t.int64)
        .addColumn('revoked_at', t.int64)
        .execute();

      await db.schema
        .createTable('actions')
        .addColumn('action_id', 'text', (c) => c.primaryKey())
        .addColumn('cluster_id', 'text', (c) => c.notNull())
        .addColumn('run_id', 'text', (c) => c.notNull())
        .addColumn('parent_action_id', 'text')
        .addColumn('spec_sealed', t.bytes, (c) => c.notNull())
        .addColumn('attempt', 'integer', (c) => c.notNull())
        .addColumn('phase', 'text', (c) => c.notNull())
        .addColumn('queued_at', t.int64, (c) => c.notNull())
        .addColumn('updated_at', t.int64, (c) => c.notNull())
        .addColumn('leased_at', t.int64)
        .addColumn('lease_expires_at', t.int64)
        .addColumn('completed_at', t.int64)
        .addColumn('cancel_requested', 'integer', (c) => c.notNull())
        .addColumn('deliveries', 'integer', (c) => c.notNull())
        .addColumn('has_inputs', 'integer', (c) => c.notNull())
        .addColumn('inputs_lost', 'integer', (c) => c.notNull())
        .addColumn('error_sealed', t.bytes)
        .addColumn('history_sealed', t.bytes)
        .execute();
      // Leasing scans one cluster's queued actions oldest first; expiry scans leases by deadline.
      await db.schema.createIndex('actions_queue').on('actions').columns(['cluster_id', 'phase', 'queued_at']).execute();
      await db.schema.createIndex('actions_lease_expiry').on('actions').column('lease_expires_at').execute();
      await db.schema.createIndex('actions_completed').on('actions').column('completed_at').execute();
      await db.schema.createIndex('actions_by_run').on('actions').column('run_id').execute();

      // Unfinished actions per cluster, kept with every enqueue and completion, so that the queue
      // limits are one lookup instead of a count over every pending action.
      await db.schema
        .createTable('queue_depth')
        .addColumn('cluster_id', 'text', (c) => c.primaryKey())
        .addColumn('pending', 'integer', (c) => c.notNull())
        .execute();

      await db.schema
        .createTable('action_events')
        .addColumn('action_id', 'text', (c) => c.notNull().references('actions.action_id').onDelete('cascade'))
        .addColumn('event_id', 'text', (c) => c.notNull())
        .addColumn('received_at', t.int64, (c) => c.notNull())
        .addPrimaryKeyConstraint('action_events_pk', ['action_id', 'event_id'])
        .execute();
    },
  ],
  [
    // Tasks and runs (docs/runs.md). Names chosen by users (projects, tasks) are sealed and looked
    // up through blind indexes, as cluster names are; ids, phases and times stay readable.
    '0002-runs',
    async (db, t) => {
      await db.schema
        .createTable('tasks')
        // Blind index of (project, task name): versions of one task share it.
        .addColumn('task_id', 'text', (c) => c.notNull())
        .addColumn('version', 'text', (c) => c.notNull())
        // Blind index of the project, for listing a project's tasks.
        .addColumn('project_id', 'text', (c) => c.notNull())
        .addColumn('name_sealed', t.bytes, (c) => c.notNull())
        .addColumn('spec_sealed', t.bytes, (c) => c.notNull())
        .addColumn('bundle_sha256', 'text', (c) => c.notNull())
        .addColumn('bundle_size', t.int64, (c) => c.notNull())
        .addColumn('created_at', t.int64, (c) => c.notNull())
        .addColumn('created_by_sealed', t.bytes, (c) => c.notNull())
        .addPrimaryKeyConstraint('tasks_pk', ['task_id', 'version'])
        .execute();
      await db.schema.createIndex('tasks_by_project').on('tasks').columns(['project_id', 'task_id', 'created_at']).execute();

      await db.schema
        .createTable('runs')
        .addColumn('run_id', 'text', (c) => c.primaryKey())
        .addColumn('project_id', 'text', (c) => c.notNull())
        .addColumn('task_id', 'text', (c) => c.notNull())
        .addColumn('cluster_id', 'text', (c) => c.notNull())
        // Sealed JSON: project, task name and version, cluster, inputs reference, bundle, timeout, retry policy.
        .addColumn('spec_sealed', t.bytes, (c) => c.notNull())
        .addColumn('phase', 'text', (c) => c.notNull())
        .addColumn('attempts', 'integer', (c) => c.notNull())
        .addColumn('action_id', 'text', (c) => c.notNull())
        .addColumn('abort_requested', 'integer', (c) => c.notNull())
        .addColumn('created_at', t.int64, (c) => c.notNull())
        .addColumn('updated_at', t.int64, (c) => c.notNull())
        .addColumn('completed_at', t.int64)
        .addColumn('error_sealed', t.bytes)
        .addColumn('phases_sealed', t.bytes, (c) => c.notNull())
        .addColumn('created_by_sealed', t.bytes, (c) => c.notNull())
        .execute();
      // Listing is newest first (run ids are UUIDv7) within a project, optionally by task or phase;
      // the run-lease sweep scans unfinished runs.
      await db.schema.createIndex('runs_by_project').on('runs').columns(['project_id', 'run_id']).execute();
      await db.schema.createIndex('runs_by_task').on('runs').columns(['project_id', 'task_id', 'run_id']).execute();
      await db.schema.createIndex('runs_unfinished').on('runs').column('completed_at').execute();

      await db.schema
        .createTable('idempotency_keys')
        // Keyed HMAC of (project, key): the key itself is never stored.
        .addColumn('key_hash', 'text', (c) => c.primaryKey())
        .addColumn('project_id', 'text', (c) => c.notNull())
        .addColumn('run_id', 'text', (c) => c.notNull())
        .addColumn('created_at', t.int64, (c) => c.notNull())
        .addColumn('expires_at', t.int64, (c) => c.notNull())
        .execute();
      await db.schema.createIndex('idempotency_keys_by_expiry').on('idempotency_keys').column('expires_at').execute();

      // Not before: a retry waits out its backoff in the queue. Null means at once.
      await db.schema.alterTable('actions').addColumn('available_at', t.int64).execute();
    },
  ],
  [
    // Fewer pages written per action (docs/control-plane-database.md, Performance): every page a
    // commit changes is a WAL frame, and on SQLite each frame is encrypted and authenticated whole.
    // The lease-expiry and completion indexes held an entry for every action, NULL for most of its
    // life, so enqueueing, leasing and completing each moved entries in both; they now hold only the
    // actions that have a lease deadline or are finished, which is all their queries look for. On
    // SQLite, action_events is stored in its primary key (WITHOUT ROWID): one b-tree, not a table
    // and an index. 17 % fewer WAL frames per action in the benchmark.
    '0003-partial-indexes',
    async (db, t) => {
      await db.schema.dropIndex('actions_lease_expiry').execute();
      await db.schema.createIndex('actions_lease_expiry').on('actions').column('lease_expires_at').where(sql.ref('lease_expires_at'), 'is not', null).execute();
      await db.schema.dropIndex('actions_completed').execute();
      await db.schema.createIndex('actions_completed').on('actions').column('completed_at').where(sql.ref('completed_at'), 'is not', null).execute();
      if (t.backend !== 'sqlite') return;
      await db.schema
        .createTable('action_events_0003')
        .addColumn('action_id', 'text', (c) => c.notNull().references('actions.action_id').onDelete('cascade'))
        .addColumn('event_id', 'text', (c) => c.notNull())
        .addColumn('received_at', t.int64, (c) => c.notNull())
        .addPrimaryKeyConstraint('action_events_pk', ['action_id', 'event_id'])
        .modifyEnd(sql`without rowid`)
        .execute();
      await sql`insert into action_events_0003 (action_id, event_id, received_at) select action_id, event_id, received_at from action_events`.execute(db);
      await db.schema.dropTable('action_events').execute();
      await db.schema.alterTable('action_events_0003').renameTo('action_events').execute();
    },
  ],
  [
    // An action's phase history is phases, times and event ids, all kinds of value the table keeps
    // readable beside it (phase, queued_at…, action_events.event_id): stored as they are, it costs
    // no seal per completed action. Rows keep a sealed history until their history next changes.
    '0004-readable-action-history',
    async (db) => {
      await db.schema.alterTable('actions').addColumn('history', 'text').execute();
    },
  ],
];

/** The schema versions this release knows, oldest first. */
export const KNOWN_MIGRATIONS: readonly string[] = Object.freeze(STEPS.map(([name]) => name));

function provider(backend: DatabaseBackend): MigrationProvider {
  const types = typesFor(backend);
  return {
    getMigrations() {
      const migrations: Record<string, Migration> = {};
      for (const [name, up] of STEPS) migrations[name] = { up: (db) => up(db, types) };
      return Promise.resolve(migrations);
    },
  };
}

/** The names of the migrations already applied, oldest first (none for an empty database or schema). */
async function appliedMigrations(db: Kysely<unknown>, schema: string | undefined): Promise<string[]> {
  const tables = await db.introspection.getTables({ withInternalKyselyTables: true });
  if (!tables.some((table) => table.name === MIGRATION_TABLE && (schema === undefined || table.schema === schema))) return [];
  const table = schema === undefined ? sql.table(MIGRATION_TABLE) : sql.table(`${schema}.${MIGRATION_TABLE}`);
  const rows = await sql<{ name: string }>`select name from ${table} order by name`.execute(db);
  return rows.rows.map((row) => row.name);
}

/**
 * Brings the schema up to date. A database that holds a migration this release does not know was
 * written by a newer release: refusing (DB_SCHEMA_UNSUPPORTED) is the only safe answer, since the
 * newer schema may mean something this code would misread.
 */
export async function migrateToLatest(
  db: Kysely<unknown>,
  backend: DatabaseBackend,
  schema?: string,
): Promise<{ readonly applied: readonly string[]; readonly version: string }> {
  return migrateTo(db, backend, KNOWN_MIGRATIONS.at(-1) ?? '', schema);
}

/**
 * Brings the schema up to `target`, one of KNOWN_MIGRATIONS (the latest, but for tests that build
 * the schema of an earlier release to upgrade it). Refuses a schema newer than this release.
 */
export async function migrateTo(
  db: Kysely<unknown>,
  backend: DatabaseBackend,
  target: string,
  schema?: string,
): Promise<{ readonly applied: readonly string[]; readonly version: string }> {
  if (!KNOWN_MIGRATIONS.includes(target)) throw new AirlockError('INVALID_ARGUMENT', `unknown schema version ${target}`, { details: { argument: 'target' } });
  const found = await appliedMigrations(db, schema);
  const unknown = found.filter((name) => !KNOWN_MIGRATIONS.includes(name));
  if (unknown.length > 0) {
    const latestKnown = KNOWN_MIGRATIONS.at(-1) ?? 'none';
    throw new AirlockError(
      'DB_SCHEMA_UNSUPPORTED',
      `The control-plane database has schema version ${found.at(-1) ?? '?'} (migrations ${unknown.join(', ')} are unknown here); this release knows versions up to ${latestKnown}. Run a release at least as new as the one that wrote it.`,
      { details: { found: found.join(','), known: KNOWN_MIGRATIONS.join(',') } },
    );
  }
  // Migrations have no way back: a schema past the target stays as it is, and saying so beats Kysely's attempt to run a `down` that does not exist.
  const current = found.at(-1);
  if (current !== undefined && KNOWN_MIGRATIONS.indexOf(current) > KNOWN_MIGRATIONS.indexOf(target)) {
    throw new AirlockError('FAILED_PRECONDITION', `The control-plane database is already at schema version ${current}, past ${target}; migrations only go forward`, {
      details: { found: current, target },
    });
  }
  const migrator = new Migrator({
    db,
    provider: provider(backend),
    migrationTableName: MIGRATION_TABLE,
    migrationLockTableName: MIGRATION_LOCK_TABLE,
    // Kysely looks for its tables in every schema unless told which one is ours.
    ...(schema === undefined ? {} : { migrationTableSchema: schema }),
  });
  const { error, results } = await migrator.migrateTo(target);
  if (error !== undefined) {
    throw new AirlockError('INTERNAL', 'Migrating the control-plane database failed', {
      cause: error,
      details: { failed: results?.find((result) => result.status === 'Error')?.migrationName ?? 'unknown' },
    });
  }
  return {
    applied: Object.freeze((results ?? []).filter((result) => result.status === 'Success').map((result) => result.migrationName)),
    version: target,
  };
}
