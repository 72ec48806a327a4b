// The database's data keys: generated once, stored wrapped by the control plane's key (never a data-plane key), unwrapped at start, re-wrapped on rotation without touching rows.
import { AirlockError, type Logger } from '@airlock/common';
import { decodeEnvelopeHeader, encodeEnvelopeHeader, generateDataKey, zeroize, type EncryptionContext, type KeyWrapper } from '@airlock/crypto';
import type { Kysely } from 'kysely';
import type { DatabaseSchema } from './schema.js';

/** The control plane's key-encryption key, and a secret-free name for it in errors and logs. */
export interface ControlPlaneKey {
  readonly wrapper: KeyWrapper;
  /** E.g. "root key file /x/cp-root.key" or "KMS key arn:…"; named in every key error. */
  readonly description: string;
}

/** The number of the first data key; blind indexes derive from it for the database's whole life. */
export const FIRST_DATA_KEY = 1;

/** What a database data key is bound to when wrapped, so a wrapped key moved elsewhere does not unwrap. */
export function dataKeyContext(keyNo: number, purpose = 'airlock/cp-db/data-key'): EncryptionContext {
  return { purpose, keyNo: String(keyNo) };
}

/** Unwraps a wrapped key, turning every failure into DB_KEY_INVALID that names the key source (and the cause's code). */
export async function unwrapWithControlPlaneKey(key: ControlPlaneKey, wrappedBytes: Uint8Array, context: EncryptionContext, what: string): Promise<Uint8Array> {
  let wrapped;
  try {
    wrapped = decodeEnvelopeHeader(wrappedBytes);
  } catch (error) {
    throw new AirlockError('DB_KEY_INVALID', `The ${what} is damaged (not a wrapped key)`, { cause: error, details: { keySource: key.description } });
  }
  try {
    return await key.wrapper.unwrapKey(wrapped, context);
  } catch (error) {
    const cause = AirlockError.from(error);
    const mismatch = cause.code === 'KEY_UNWRAP_FAILED' || cause.code === 'KMS_INCORRECT_KEY' || cause.code === 'KMS_INVALID_CIPHERTEXT';
    const message = mismatch
      ? `The ${what} was wrapped by ${wrapped.keyId}, which the configured control-plane key (${key.description}) cannot unwrap: wrong key`
      : `The ${what} could not be unwrapped with the control-plane key (${key.description}): ${cause.code}`;
    throw new AirlockError('DB_KEY_INVALID', message, { cause, details: { keySource: key.description, wrappedBy: wrapped.keyId, reason: cause.code } });
  }
}

export interface LoadedDataKeys {
  readonly keys: Map<number, Uint8Array>;
  readonly newest: number;
}

/**
 * Loads and unwraps every data key, creating the first one in an empty database. Two control planes
 * starting at once on one PostgreSQL both try to create key 1; the loser reads the winner's.
 */
export async function loadDataKeys(db: Kysely<DatabaseSchema>, key: ControlPlaneKey, log: Logger): Promise<LoadedDataKeys> {
  let rows = await db.selectFrom('db_keys').select(['key_no', 'wrapped']).orderBy('key_no').execute();
  if (rows.length === 0) {
    const fresh = await generateDataKey(key.wrapper, dataKeyContext(FIRST_DATA_KEY));
    zeroize(fresh.plaintext);
    const inserted = await db
      .insertInto('db_keys')
      .values({ key_no: FIRST_DATA_KEY, wrapped: encodeEnvelopeHeader(fresh.wrapped), created_at: Date.now(), rewrapped_at: null })
      .onConflict((conflict) => conflict.column('key_no').doNothing())
      .executeTakeFirst();
    if (Number(inserted.numInsertedOrUpdatedRows ?? 0n) > 0) log.info({ event: 'db.data_key_created', keyNo: FIRST_DATA_KEY, keySource: key.description }, 'database data key created');
    rows = await db.selectFrom('db_keys').select(['key_no', 'wrapped']).orderBy('key_no').execute();
  }
  const keys = new Map<number, Uint8Array>();
  try {
    for (const row of rows) keys.set(row.key_no, await unwrapWithControlPlaneKey(key, row.wrapped, dataKeyContext(row.key_no), `database data key ${row.key_no}`));
  } catch (error) {
    for (const plaintext of keys.values()) zeroize(plaintext);
    throw error;
  }
  const newest = rows.at(-1)?.key_no ?? FIRST_DATA_KEY;
  return { keys, newest };
}

/**
 * Re-wraps every data key from `current` to `next` (rotating the control plane's key). Rows are
 * untouched: they are sealed under the data keys, which do not change. Every key is re-wrapped
 * before any is written, and all are written in one transaction, so the table is never half-rotated.
 */
export async function rewrapDataKeys(db: Kysely<DatabaseSchema>, current: ControlPlaneKey, next: ControlPlaneKey, log: Logger): Promise<number> {
  const rows = await db.selectFrom('db_keys').select(['key_no', 'wrapped']).orderBy('key_no').execute();
  const rewrapped: Array<{ keyNo: number; wrapped: Buffer }> = [];
  for (const row of rows) {
    const context = dataKeyContext(row.key_no);
    const plaintext = await unwrapWithControlPlaneKey(current, row.wrapped, context, `database data key ${row.key_no}`);
    try {
      rewrapped.push({ keyNo: row.key_no, wrapped: encodeEnvelopeHeader(await next.wrapper.wrapKey(plaintext, context)) });
    } finally {
      zeroize(plaintext);
    }
  }
  const now = Date.now();
  await db.transaction().execute(async (trx) => {
    for (const { keyNo, wrapped } of rewrapped) await trx.updateTable('db_keys').set({ wrapped, rewrapped_at: now }).where('key_no', '=', keyNo).execute();
  });
  log.info({ event: 'db.data_keys_rewrapped', count: rows.length, from: current.description, to: next.description }, 'database data keys re-wrapped');
  return rows.length;
}
