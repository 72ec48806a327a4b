// Opens the control-plane database: an encrypted SQLite file (SQLCipher scheme, AES-256) by default, or PostgreSQL over verified TLS; migrates it and unwraps its data keys.
import { existsSync } from 'node:fs';
import { chmod, mkdir } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { checkServerIdentity } from 'node:tls';
import SqliteDatabase from 'better-sqlite3-multiple-ciphers';
import pg from 'pg';
import { AirlockError, configCheck, configError, freezeConfig, type DeepReadonly, type Logger } from '@airlock/common';
import { randomBytes, zeroize } from '@airlock/crypto';
import { tlsClientOptions } from '@airlock/pki';
import { createColumnSealer, type ColumnSealer } from './column-sealer.js';
import { Kysely, PostgresDialect, sql } from './kysely.js';
import { FIRST_DATA_KEY, loadDataKeys, rewrapDataKeys, type ControlPlaneKey } from './keyring.js';
import { migrateToLatest, type DatabaseBackend } from './migrations.js';
import type { DatabaseSchema } from './schema.js';
import { GroupCommitSqliteDialect } from './sqlite-group-commit.js';
import { addSqliteFileKeyWrapping, keepOnlySqliteFileKeyWrapping, loadSqliteFileKey, sqliteKeyFilePath } from './sqlite-file-key.js';

export interface DatabaseOptions {
  /**
   * `postgres://user:password@host:port/database` selects PostgreSQL; a Unix socket is named with
   * `?host=/path/to/socket-dir`, and `?schema=name` keeps Airlock's tables in a schema of their own
   * (created if missing). Any `sslmode` other than `verify-full` is refused: Airlock always verifies
   * the server. @default unset: SQLite at `path`
   */
  readonly url?: string;
  /** The SQLite database file (used when `url` is unset). */
  readonly path?: string;
  /** PEM CA certificate(s) the PostgreSQL server certificate must chain to. Required for PostgreSQL over TCP. */
  readonly caPem?: string;
  /** Allow a plaintext connection to PostgreSQL over a Unix socket (never over TCP). @default false */
  readonly allowPlaintextUnixSocket?: boolean;
  /** Most PostgreSQL connections in the pool. @default 10 */
  readonly poolSize?: number;
  /** The control plane's key, which wraps the database's keys. */
  readonly key: ControlPlaneKey;
  readonly log: Logger;
}

export type ResolvedDatabaseConfig = DeepReadonly<
  | { backend: 'sqlite'; path: string }
  | {
      backend: 'postgres';
      host: string;
      port: number;
      socket: boolean;
      user: string | undefined;
      password: string | undefined;
      database: string | undefined;
      schema: string | undefined;
      caPem: string | undefined;
      poolSize: number;
    }
> & { readonly key: ControlPlaneKey; readonly log: Logger };

function insecure(message: string, reason: string): AirlockError {
  return new AirlockError('DB_CONNECTION_INSECURE', message, { details: { reason } });
}

/** Validates database options. The password never appears in errors. */
export function resolveDatabaseConfig(options: DatabaseOptions): ResolvedDatabaseConfig {
  if (typeof options !== 'object' || options === null) throw configError('database', 'options are required');
  if (typeof options.key?.wrapper?.unwrapKey !== 'function') throw configError('database.key', 'must be the control plane key');
  if (typeof options.log !== 'object' || options.log === null) throw configError('database.log', 'is required');
  const extra = { key: options.key, log: options.log };
  if (options.url === undefined) {
    if (options.path === undefined) throw configError('database.path', 'is required when no database URL is given');
    return Object.freeze({ ...freezeConfig({ backend: 'sqlite' as const, path: resolve(configCheck.nonEmptyString('database.path', options.path)) }), ...extra });
  }
  let url: URL;
  try {
    url = new URL(options.url);
  } catch {
    throw configError('database.url', 'must be a postgres:// URL');
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') throw configError('database.url', 'must be a postgres:// URL');
  const sslmode = url.searchParams.get('sslmode');
  if (sslmode !== null && sslmode !== 'verify-full') {
    throw insecure(`The database URL asks for sslmode=${sslmode}; Airlock always uses TLS with full verification (sslmode=verify-full)`, 'sslmode');
  }
  for (const name of url.searchParams.keys()) {
    if (name !== 'sslmode' && name !== 'host' && name !== 'schema') throw configError('database.url', `has an unsupported parameter "${name}" (only host, schema and sslmode are understood)`);
  }
  const schema = url.searchParams.get('schema') ?? undefined;
  if (schema !== undefined && !/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) throw configError('database.url schema', 'must be 1 to 63 lower-case letters, digits or underscores');
  const socketDir = url.searchParams.get('host');
  const socket = socketDir !== null && socketDir.startsWith('/');
  const host = socket ? socketDir : decodeURIComponent(url.hostname.replace(/^\[|\]$/g, ''));
  if (host.length === 0) throw configError('database.url', 'must name a host (or ?host=/socket/dir)');
  const port = url.port === '' ? 5432 : Number(url.port);
  const allowPlaintext = options.allowPlaintextUnixSocket ?? false;
  if (typeof allowPlaintext !== 'boolean') throw configError('database.allowPlaintextUnixSocket', 'must be a boolean');
  if (socket && !allowPlaintext) {
    throw insecure('A Unix-socket connection to PostgreSQL carries no TLS; allow it explicitly (--db-allow-plaintext-socket) or connect over TCP with TLS', 'unix-socket');
  }
  if (!socket && (options.caPem === undefined || options.caPem.trim().length === 0)) {
    throw insecure('PostgreSQL over TCP needs the CA that signed the server certificate (--db-ca FILE or AIRLOCK_DB_CA), to verify it', 'no-ca');
  }
  const database = url.pathname.replace(/^\//, '');
  return Object.freeze({
    ...freezeConfig({
      backend: 'postgres' as const,
      host,
      port: configCheck.integer('database.url port', port, 1, 65535),
      socket,
      user: url.username === '' ? undefined : decodeURIComponent(url.username),
      password: url.password === '' ? undefined : decodeURIComponent(url.password),
      database: database === '' ? undefined : decodeURIComponent(database),
      schema,
      caPem: socket ? undefined : options.caPem,
      poolSize: configCheck.integer('database.poolSize', options.poolSize ?? 10, 1, 1000),
    }),
    ...extra,
  });
}

/** The control plane's open database. */
export interface ControlPlaneDatabase {
  readonly backend: DatabaseBackend;
  readonly db: Kysely<DatabaseSchema>;
  readonly sealer: ColumnSealer;
  /** Where it is, without credentials, e.g. `SQLite /x/control-plane.db (SQLCipher AES-256)`. */
  readonly description: string;
  /** The newest migration applied. */
  readonly schemaVersion: string;
  /** True where `SELECT … FOR UPDATE SKIP LOCKED` exists (PostgreSQL); SQLite serialises writers instead. */
  readonly rowLocks: boolean;
  /** The files that hold the database (SQLite: the database, its WAL and shared memory, and the key file); empty for PostgreSQL. */
  files(): readonly string[];
  /** Moves everything written so far into the main database file (SQLite) or data files (PostgreSQL CHECKPOINT, which needs superuser). */
  checkpoint(): Promise<void>;
  /** SQLite's integrity check: an empty list when the file is sound. PostgreSQL: always empty. */
  integrityCheck(): Promise<readonly string[]>;
  /** Rotates the control plane's key: re-wraps the database's keys under `next`; no row is rewritten. */
  rewrapKeys(next: ControlPlaneKey): Promise<number>;
  close(): Promise<void>;
}

const PG_INT8_OID = 20;
const PG_NUMERIC_OID = 1700;

/** pg's type parsers, except that int8 and numeric (epoch milliseconds, counts) come back as numbers: they fit a double exactly. */
const numbersAsNumbers = ((oid: number, format?: 'text' | 'binary'): unknown => {
  if (oid === PG_INT8_OID || oid === PG_NUMERIC_OID) return (value: string): number => Number(value);
  return format === 'binary' ? pg.types.getTypeParser(oid, 'binary') : pg.types.getTypeParser(oid);
}) as typeof pg.types.getTypeParser;

/** Maps a TLS or connection failure to the error a user can act on. */
function connectionError(error: unknown, config: Extract<ResolvedDatabaseConfig, { backend: 'postgres' }>): AirlockError {
  const code = (error as NodeJS.ErrnoException).code ?? '';
  const message = error instanceof Error ? error.message : '';
  const where = `${config.host}:${config.port}`;
  if (message.includes('does not support SSL')) {
    return insecure(`The PostgreSQL server at ${where} does not offer TLS; Airlock refuses a plaintext connection`, 'server-without-tls');
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return insecure(`The PostgreSQL server certificate at ${where} is not valid for the host name "${config.host}"`, 'hostname-mismatch');
  }
  if (/CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)/.test(code)) {
    return insecure(`The PostgreSQL server certificate at ${where} does not chain to the configured CA (${code})`, 'certificate-untrusted');
  }
  if (code === 'ECONNREFUSED' || code === 'ENOENT' || code === 'ETIMEDOUT' || code === 'EHOSTUNREACH') {
    return new AirlockError('UNAVAILABLE', `The PostgreSQL server at ${where} is unreachable (${code})`, { cause: error, details: { reason: code } });
  }
  const sqlState = (error as { code?: unknown }).code;
  if (sqlState === '28P01' || sqlState === '28000') {
    return new AirlockError('ACCESS_DENIED', `PostgreSQL at ${where} refused the credentials in the database URL`, { cause: error, details: { reason: String(sqlState) } });
  }
  if (sqlState === '3D000') return new AirlockError('NOT_FOUND', `The database named in the URL does not exist on ${where}`, { cause: error });
  return AirlockError.from(error, 'UNAVAILABLE');
}

async function openPostgres(config: Extract<ResolvedDatabaseConfig, { backend: 'postgres' }>): Promise<{ db: Kysely<DatabaseSchema>; description: string }> {
  // verify-full: the chain must reach the configured CA (and only it) and the certificate must name
  // the host. For an IP address Node checks the IP SANs, but only when `host` is passed explicitly.
  const ssl = config.socket
    ? false
    : { ...tlsClientOptions({ ca: config.caPem ?? '' }), host: config.host, checkServerIdentity };
  const pool = new pg.Pool({
    host: config.host,
    port: config.port,
    ...(config.user === undefined ? {} : { user: config.user }),
    ...(config.password === undefined ? {} : { password: config.password }),
    ...(config.database === undefined ? {} : { database: config.database }),
    ssl,
    // Every connection resolves Airlock's tables (and the migrator's) in its own schema.
    ...(config.schema === undefined ? {} : { options: `-c search_path=${config.schema}` }),
    max: config.poolSize,
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
    types: { getTypeParser: numbersAsNumbers },
  });
  // An idle client that loses its server emits here; without a listener the process would crash.
  pool.on('error', () => undefined);
  try {
    const client = await pool.connect();
    try {
      if (config.schema !== undefined) await client.query(`create schema if not exists ${config.schema}`);
    } finally {
      client.release();
    }
  } catch (error) {
    await pool.end().catch(() => undefined);
    throw connectionError(error, config);
  }
  const where = `${config.socket ? `socket ${config.host}` : `${config.host}:${config.port}`}/${config.database ?? '(default)'}${config.schema === undefined ? '' : ` schema ${config.schema}`}`;
  const description = `PostgreSQL ${where} (${config.socket ? 'Unix socket, no TLS' : 'TLS, verify-full'})`;
  return { db: new Kysely<DatabaseSchema>({ dialect: new PostgresDialect({ pool }) }), description };
}

/**
 * WAL mode, and synchronous=NORMAL: commits are not synced one by one; the group-commit dialect
 * syncs the WAL once per batch of concurrent commits before any of them is acknowledged.
 *
 * temp_store=MEMORY: SQLite keeps a savepoint's journal (the page images it would roll back to) in
 * memory only up to 64 KiB, then spills it to an unlinked temporary file (`etilqs_*` in /var/tmp or
 * $TMPDIR), and the cipher covers the database and its WAL, not temporary files: every batched
 * transaction runs in a savepoint, so pages of the database reached the disk in the clear. In memory
 * they never do. The journal holds what the open batch changed, pages the cache holds anyway.
 */
function walMode(raw: SqliteDatabase.Database): void {
  raw.pragma('journal_mode=WAL');
  raw.pragma('synchronous=NORMAL');
  raw.pragma('temp_store=MEMORY');
  raw.pragma('foreign_keys=ON');
  raw.pragma('busy_timeout=5000');
}

function openSqlite(config: Extract<ResolvedDatabaseConfig, { backend: 'sqlite' }>, fileKey: Buffer): Kysely<DatabaseSchema> {
  const raw = new SqliteDatabase(config.path);
  try {
    raw.pragma(`cipher='sqlcipher'`);
    raw.pragma('legacy=4');
    // A raw 256-bit key (x'…'): no passphrase KDF, the key is already random.
    raw.pragma(`key="x'${fileKey.toString('hex')}'"`);
    try {
      raw.prepare('select count(*) from sqlite_master').get();
    } catch (error) {
      if ((error as { code?: string }).code === 'SQLITE_NOTADB') {
        throw new AirlockError('DB_KEY_INVALID', `The database ${config.path} does not open with its file key: the key file does not belong to it, or the file is not an Airlock database`, {
          cause: error,
          details: { path: config.path },
        });
      }
      throw error;
    }
    walMode(raw);
  } catch (error) {
    raw.close();
    throw error;
  }
  return new Kysely<DatabaseSchema>({ dialect: new GroupCommitSqliteDialect(raw, `${config.path}-wal`) });
}

/** The SQLite database and its companions: every one holds ciphertext, and every one is 0600. */
function sqliteFiles(path: string): string[] {
  return [path, `${path}-wal`, `${path}-shm`, sqliteKeyFilePath(path)];
}

async function restrictModes(files: readonly string[]): Promise<void> {
  for (const file of files) {
    await chmod(file, 0o600).catch((error: unknown) => {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw AirlockError.from(error);
    });
  }
}

/** Opens, migrates and unlocks the control-plane database. */
export async function openDatabase(config: ResolvedDatabaseConfig): Promise<ControlPlaneDatabase> {
  const { log } = config;
  let key = config.key;
  let db: Kysely<DatabaseSchema>;
  let description: string;
  if (config.backend === 'sqlite') {
    await mkdir(dirname(config.path), { recursive: true, mode: 0o700 });
    const fileKey = await loadSqliteFileKey(config.path, key, !existsSync(config.path));
    try {
      // A new file is created by SQLite with the process umask; tighten it before anything is written.
      db = openSqlite(config, fileKey);
    } finally {
      zeroize(fileKey);
    }
    await restrictModes(sqliteFiles(config.path));
    description = `SQLite ${config.path} (SQLCipher AES-256)`;
  } else {
    ({ db, description } = await openPostgres(config));
  }
  try {
    const { applied, version } = await migrateToLatest(db as Kysely<unknown>, config.backend, config.backend === 'postgres' ? config.schema : undefined);
    if (applied.length > 0) log.info({ event: 'db.migrated', applied, version, database: description }, 'database schema migrated');
    const loaded = await loadDataKeys(db, key, log);
    const sealer = createColumnSealer({ keys: loaded.keys, sealWith: loaded.newest, indexKey: FIRST_DATA_KEY });
    for (const plaintext of loaded.keys.values()) zeroize(plaintext);
    if (config.backend === 'sqlite') await restrictModes(sqliteFiles(config.path));
    log.info({ event: 'db.opened', database: description, version, keySource: key.description }, 'control-plane database opened');

    let closed = false;
    return {
      backend: config.backend,
      db,
      sealer,
      description,
      schemaVersion: version,
      rowLocks: config.backend === 'postgres',
      files: () => (config.backend === 'sqlite' ? sqliteFiles(config.path) : []),
      async checkpoint() {
        if (config.backend === 'sqlite') await sql`pragma wal_checkpoint(TRUNCATE)`.execute(db);
        else await sql`checkpoint`.execute(db);
      },
      async integrityCheck() {
        if (config.backend !== 'sqlite') return [];
        const rows = await sql<{ integrity_check: string }>`pragma integrity_check`.execute(db);
        return rows.rows.map((row) => row.integrity_check).filter((line) => line !== 'ok');
      },
      async rewrapKeys(next) {
        if (config.backend === 'sqlite') await addSqliteFileKeyWrapping(config.path, key, next);
        const count = await rewrapDataKeys(db, key, next, log);
        if (config.backend === 'sqlite') await keepOnlySqliteFileKeyWrapping(config.path, next);
        key = next;
        return count;
      },
      async close() {
        if (closed) return;
        closed = true;
        sealer.dispose();
        await db.destroy();
      },
    };
  } catch (error) {
    await db.destroy().catch(() => undefined);
    throw error;
  }
}

const plain = (bytes: Uint8Array): Buffer => Buffer.from(bytes);

/** For benchmarks only: a "sealer" that stores values as they are, and names as lookup keys. */
const NOT_SEALING: ColumnSealer = {
  seal: (_cell, plaintext) => plain(plaintext),
  open: (_cell, sealed) => plain(sealed),
  sealText: (_cell, text) => Buffer.from(text, 'utf8'),
  openText: (_cell, sealed) => plain(sealed).toString('utf8'),
  sealJson: (_cell, value) => Buffer.from(JSON.stringify(value), 'utf8'),
  openJson: <T>(_cell: unknown, sealed: Uint8Array): T => JSON.parse(plain(sealed).toString('utf8')) as T,
  blindIndex: (domain, value) => `${domain}:${value}`,
  dispose: () => undefined,
};

/**
 * For `bench/database.ts` only: the same opened database (PostgreSQL, where column sealing is the
 * only encryption) with values stored as they are, to measure what sealing costs on that backend.
 * The connection stays TLS. Not exported from the package, so no deployment can reach it.
 */
export function withoutColumnSealingForBenchmark(database: ControlPlaneDatabase, log: Logger): ControlPlaneDatabase {
  log.warn({ event: 'db.unencrypted_benchmark' }, 'benchmark database WITHOUT column sealing');
  return { ...database, sealer: NOT_SEALING, description: `${database.description} (UNSEALED, benchmark only)` };
}

/**
 * For `bench/database.ts` only, to measure what encryption costs: the same SQLite database without
 * the file cipher, and a "sealer" that stores values as they are. `fileCipher` or `sealColumns`
 * turns one of the two layers back on (with a random key), so that each layer's cost shows alone.
 * Not exported from the package, so no deployment can reach it.
 */
export async function openUnencryptedSqliteForBenchmark(
  path: string,
  log: Logger,
  layers: { readonly fileCipher?: boolean; readonly sealColumns?: boolean } = {},
): Promise<ControlPlaneDatabase> {
  const raw = new SqliteDatabase(path);
  if (layers.fileCipher === true) {
    raw.pragma(`cipher='sqlcipher'`);
    raw.pragma('legacy=4');
    raw.pragma(`key="x'${randomBytes(32).toString('hex')}'"`);
  }
  walMode(raw);
  const db = new Kysely<DatabaseSchema>({ dialect: new GroupCommitSqliteDialect(raw, `${path}-wal`) });
  const { version } = await migrateToLatest(db as Kysely<unknown>, 'sqlite');
  const sealer: ColumnSealer = layers.sealColumns === true ? createColumnSealer({ keys: new Map([[FIRST_DATA_KEY, randomBytes(32)]]), sealWith: FIRST_DATA_KEY, indexKey: FIRST_DATA_KEY }) : NOT_SEALING;
  log.warn({ event: 'db.unencrypted_benchmark' }, 'benchmark database WITHOUT encryption');
  return {
    backend: 'sqlite',
    db,
    sealer,
    description: `SQLite ${path} (UNENCRYPTED, benchmark only)`,
    schemaVersion: version,
    rowLocks: false,
    files: () => sqliteFiles(path),
    checkpoint: async () => {
      await sql`pragma wal_checkpoint(TRUNCATE)`.execute(db);
    },
    integrityCheck: () => Promise.resolve([]),
    rewrapKeys: () => Promise.reject(new AirlockError('NOT_IMPLEMENTED', 'an unencrypted benchmark database has no keys')),
    close: () => db.destroy(),
  };
}
