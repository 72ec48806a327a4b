// The SQLite file's encryption key: random, kept beside the database only wrapped by the control plane's key (`<db>.key`, 0600, replaced atomically).
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { AirlockError, writeFileAtomic } from '@airlock/common';
import { encodeEnvelopeHeader, randomBytes, zeroize, type EncryptionContext } from '@airlock/crypto';
import { unwrapWithControlPlaneKey, type ControlPlaneKey } from './keyring.js';

const FILE_VERSION = 1;

/** The sidecar file that holds the wrapped file key of the database at `dbPath`. */
export function sqliteKeyFilePath(dbPath: string): string {
  return `${dbPath}.key`;
}

interface KeyFile {
  version: number;
  /**
   * Base64 envelope headers, each wrapping the same file key. There are two only while a rotation
   * is under way (new first), so a crash mid-rotation leaves a file that either key opens.
   */
  wrapped: string[];
}

function fileKeyContext(dbPath: string): EncryptionContext {
  return { purpose: 'airlock/cp-db/sqlite-file-key', file: basename(dbPath) };
}

async function readKeyFile(path: string): Promise<KeyFile | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw AirlockError.from(error);
  }
  try {
    const parsed = JSON.parse(text) as Partial<KeyFile>;
    if (parsed.version === FILE_VERSION && Array.isArray(parsed.wrapped) && parsed.wrapped.length > 0 && parsed.wrapped.every((entry) => typeof entry === 'string')) {
      return { version: FILE_VERSION, wrapped: parsed.wrapped };
    }
  } catch {
    // Reported below, with the path.
  }
  throw new AirlockError('DB_KEY_INVALID', `The database key file ${path} is damaged`, { details: { path } });
}

async function writeKeyFile(path: string, wrapped: readonly Buffer[]): Promise<void> {
  const content: KeyFile = { version: FILE_VERSION, wrapped: wrapped.map((entry) => entry.toString('base64')) };
  await writeFileAtomic(path, `${JSON.stringify(content, null, 2)}\n`, { mode: 0o600 });
}

/**
 * The file key of the database at `dbPath`, unwrapped. With `create`, a missing key file gets a new
 * key (only ever for a database file that does not exist yet: the caller checks). Throws
 * DB_KEY_INVALID naming the key source when no wrapped copy opens with `key`.
 */
export async function loadSqliteFileKey(dbPath: string, key: ControlPlaneKey, create: boolean): Promise<Buffer> {
  const path = sqliteKeyFilePath(dbPath);
  const context = fileKeyContext(dbPath);
  const stored = await readKeyFile(path);
  if (stored === undefined) {
    if (!create) {
      throw new AirlockError('DB_KEY_INVALID', `The database ${dbPath} exists but its key file ${path} is missing; restore it from backup (the database cannot be read without it)`, {
        details: { path, keySource: key.description },
      });
    }
    const fileKey = randomBytes(32);
    await writeKeyFile(path, [encodeEnvelopeHeader(await key.wrapper.wrapKey(fileKey, context))]);
    return fileKey;
  }
  let failure: unknown;
  for (const entry of stored.wrapped) {
    try {
      return Buffer.from(await unwrapWithControlPlaneKey(key, Buffer.from(entry, 'base64'), context, `database file key in ${path}`));
    } catch (error) {
      failure ??= error;
    }
  }
  throw failure;
}

/** Step one of a rotation: the key file holds the file key wrapped by both keys, `next` first. */
export async function addSqliteFileKeyWrapping(dbPath: string, current: ControlPlaneKey, next: ControlPlaneKey): Promise<void> {
  const fileKey = await loadSqliteFileKey(dbPath, current, false);
  try {
    const context = fileKeyContext(dbPath);
    const [fresh, old] = [await next.wrapper.wrapKey(fileKey, context), await current.wrapper.wrapKey(fileKey, context)];
    await writeKeyFile(sqliteKeyFilePath(dbPath), [encodeEnvelopeHeader(fresh), encodeEnvelopeHeader(old)]);
  } finally {
    zeroize(fileKey);
  }
}

/** Last step of a rotation: only `next`'s wrapping is kept. */
export async function keepOnlySqliteFileKeyWrapping(dbPath: string, next: ControlPlaneKey): Promise<void> {
  const fileKey = await loadSqliteFileKey(dbPath, next, false);
  try {
    await writeKeyFile(sqliteKeyFilePath(dbPath), [encodeEnvelopeHeader(await next.wrapper.wrapKey(fileKey, fileKeyContext(dbPath)))]);
  } finally {
    zeroize(fileKey);
  }
}
