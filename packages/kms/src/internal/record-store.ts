// The KMS's durable state: one SQLite file whose rows are sealed with keys derived from the root key.
import { chmodSync, closeSync, openSync } from 'node:fs';
import Database from 'better-sqlite3';
import { AirlockError } from '@airlock/common';
import { aesGcmDecrypt, aesGcmEncrypt, constantTimeEqual, hkdfSha256, hmacSha256, randomBytes, zeroize } from '@airlock/crypto';

/** What a row holds. Names (key ids, aliases, access key ids) appear on disk only as HMACs. */
export type RecordKind = 'key' | 'alias' | 'access-key' | 'meta';

const ROOT_CHECK_LABEL = 'airlock kms root key check v1';

/** Tightens an existing file to 0600; a missing one is fine. */
function restrictMode(path: string): void {
  try {
    chmodSync(path, 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}

/**
 * Creates the database file 0600 before SQLite opens it: SQLite would create it 0644 (less the
 * umask), and it gives the -wal and -shm files the database file's mode.
 */
function createPrivately(path: string): void {
  closeSync(openSync(path, 'a', 0o600));
  restrictMode(path);
}

/**
 * Rows are `(id, kind, body)` with id = HMAC-SHA256(index key, kind ‖ 0 ‖ name) and body =
 * nonce ‖ AES-256-GCM(record key, JSON, aad = kind ‖ 0 ‖ id). SQLite in WAL mode with
 * synchronous=FULL gives atomic, durable transactions, so a kill -9 mid-write leaves the previous
 * state; secure_delete overwrites deleted rows so that a deleted key's material is gone from the
 * file (crypto-shredding), and checkpoints truncate the WAL for the same reason.
 */
export class RecordStore {
  readonly #db: Database.Database;
  readonly #recordKey: Buffer;
  readonly #indexKey: Buffer;
  readonly #put: Database.Statement<[Buffer, string, Buffer]>;
  readonly #delete: Database.Statement<[Buffer]>;
  readonly #all: Database.Statement<[string], { id: Buffer; body: Buffer }>;

  private constructor(db: Database.Database, rootKey: Buffer) {
    this.#db = db;
    this.#recordKey = hkdfSha256(rootKey, Buffer.alloc(0), Buffer.from('airlock kms record key v1'), 32);
    this.#indexKey = hkdfSha256(rootKey, Buffer.alloc(0), Buffer.from('airlock kms index key v1'), 32);
    this.#put = db.prepare('INSERT INTO records (id, kind, body) VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET body = excluded.body');
    this.#delete = db.prepare('DELETE FROM records WHERE id = ?');
    this.#all = db.prepare('SELECT id, body FROM records WHERE kind = ?');
  }

  /** Opens (creating if needed) the store and checks that `rootKey` is the key it was created with. */
  static open(path: string, rootKey: Buffer): RecordStore {
    let db: Database.Database;
    try {
      createPrivately(path);
      db = new Database(path);
      db.pragma('journal_mode = WAL');
      // SQLite creates -wal and -shm with the database file's mode, so they are 0600 too; files left
      // by an older version (created 0644) are tightened here.
      restrictMode(`${path}-wal`);
      restrictMode(`${path}-shm`);
      db.pragma('synchronous = FULL');
      db.pragma('secure_delete = ON');
      // Temporary tables and spilled statement journals stay in memory: SQLite would otherwise write
      // them to unlinked files in /var/tmp. Records are sealed, so only ciphertext could reach one,
      // but no file outside the data directory should hold any of the store.
      db.pragma('temp_store = MEMORY');
      db.exec('CREATE TABLE IF NOT EXISTS records (id BLOB PRIMARY KEY, kind TEXT NOT NULL, body BLOB NOT NULL) WITHOUT ROWID');
    } catch (error) {
      throw AirlockError.from(error);
    }
    const store = new RecordStore(db, rootKey);
    const check = hmacSha256(rootKey, Buffer.from(ROOT_CHECK_LABEL));
    const stored = db.prepare<[], { body: Buffer }>("SELECT body FROM records WHERE kind = 'root-check'").get();
    if (stored === undefined) {
      db.prepare("INSERT INTO records (id, kind, body) VALUES (?, 'root-check', ?)").run(randomBytes(32), check);
    } else if (!constantTimeEqual(stored.body, check)) {
      store.close();
      throw new AirlockError('CONFIG_INVALID', 'the root key does not match this KMS data directory (wrong passphrase, file or environment value?)', {
        details: { option: 'rootKey' },
      });
    }
    return store;
  }

  #id(kind: RecordKind, name: string): Buffer {
    return hmacSha256(this.#indexKey, Buffer.from(`${kind}\0${name}`, 'utf8'));
  }

  #aad(kind: RecordKind, id: Buffer): Buffer {
    return Buffer.concat([Buffer.from(`${kind}\0`, 'utf8'), id]);
  }

  /** Every record of a kind, decrypted. A row that fails authentication stops the load: it means tampering. */
  all<T>(kind: RecordKind): T[] {
    return this.#all.all(kind).map(({ id, body }) => {
      let json: Buffer;
      try {
        json = aesGcmDecrypt(this.#recordKey, body.subarray(0, 12), body.subarray(12), this.#aad(kind, id));
      } catch {
        throw new AirlockError('CIPHERTEXT_AUTH_FAILED', `a ${kind} record in the KMS store failed authentication`);
      }
      try {
        return JSON.parse(json.toString('utf8')) as T;
      } finally {
        zeroize(json);
      }
    });
  }

  /** Runs `fn` in one durable transaction: all of its puts and deletes happen, or none. */
  transaction(fn: (tx: { put(kind: RecordKind, name: string, value: unknown): void; delete(kind: RecordKind, name: string): void }) => void): void {
    const tx = {
      put: (kind: RecordKind, name: string, value: unknown): void => {
        const id = this.#id(kind, name);
        const nonce = randomBytes(12);
        const json = Buffer.from(JSON.stringify(value), 'utf8');
        try {
          this.#put.run(id, kind, Buffer.concat([nonce, aesGcmEncrypt(this.#recordKey, nonce, json, this.#aad(kind, id))]));
        } finally {
          zeroize(json);
        }
      },
      delete: (kind: RecordKind, name: string): void => {
        this.#delete.run(this.#id(kind, name));
      },
    };
    try {
      this.#db.transaction(() => fn(tx))();
    } catch (error) {
      throw AirlockError.from(error);
    }
  }

  /** Moves the WAL into the main file and truncates it, so deleted rows leave no copy behind. */
  checkpoint(): void {
    this.#db.pragma('wal_checkpoint(TRUNCATE)');
  }

  close(): void {
    if (this.#db.open) {
      try {
        this.checkpoint();
      } finally {
        this.#db.close();
      }
    }
    zeroize(this.#recordKey, this.#indexKey);
  }
}
