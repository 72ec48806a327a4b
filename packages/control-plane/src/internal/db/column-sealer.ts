// Column encryption for the control-plane database: AES-256-GCM per value, bound to its table, column and row, and keyed blind indexes for lookups.
import { randomFillSync } from 'node:crypto';
import { AirlockError } from '@airlock/common';
import { aesGcmDecrypt, aesGcmEncrypt, encodeEncryptionContext, GCM_NONCE_LENGTH, hkdfSha256, hmacSha256 } from '@airlock/crypto';

/**
 * Sealed value layout (all big-endian):
 *
 *   u8 version (1) ‖ u32 data-key number ‖ 16-byte salt ‖ AES-256-GCM ciphertext ‖ 16-byte tag
 *
 * Each value gets its own key and nonce, derived with HKDF-SHA256 (RFC 5869) from the data key and
 * the fresh random salt. With one key and random 96-bit nonces, NIST SP 800-38D §8.3 caps a key at
 * 2^32 messages; a busy control plane rewrites rows fast enough to reach that in weeks, and
 * per-value keys take the bound off the table. The associated data binds the header, the table,
 * the column and the row id, so a value copied to another row, column or table does not open.
 */
const VERSION = 1;
const SALT_LENGTH = 16;
const HEADER_LENGTH = 1 + 4 + SALT_LENGTH;
const TAG_LENGTH = 16;
const VALUE_INFO = Buffer.from('airlock/cp-db/v1/value', 'utf8');
const INDEX_INFO = Buffer.from('airlock/cp-db/v1/blind-index', 'utf8');
const EMPTY = Buffer.alloc(0);

/** Where a sealed value lives; all three are bound into its authentication. */
export interface SealedCell {
  readonly table: string;
  readonly column: string;
  readonly row: string;
}

export interface ColumnSealer {
  seal(cell: SealedCell, plaintext: Uint8Array): Buffer;
  /** Opens a sealed value; a value from another cell or a tampered one fails CIPHERTEXT_AUTH_FAILED (details name the cell, never content). */
  open(cell: SealedCell, sealed: Uint8Array): Buffer;
  sealText(cell: SealedCell, text: string): Buffer;
  openText(cell: SealedCell, sealed: Uint8Array): string;
  sealJson(cell: SealedCell, value: unknown): Buffer;
  openJson<T>(cell: SealedCell, sealed: Uint8Array): T;
  /**
   * A keyed, deterministic index of `value` within `domain` (64 hex characters): equal values give
   * equal indexes, so rows can be looked up by a user-chosen name that is itself stored sealed.
   */
  blindIndex(domain: string, value: string): string;
  /** Zeroes the keys it holds; it cannot be used afterwards. */
  dispose(): void;
}

export interface ColumnSealerKeys {
  /** Data keys by number; `sealWith` must be one of them. Each 32 bytes. */
  readonly keys: ReadonlyMap<number, Uint8Array>;
  /** The key new values are sealed with. */
  readonly sealWith: number;
  /** The key blind indexes are derived from. It never changes, since indexes must stay comparable. */
  readonly indexKey: number;
}

/**
 * Salts come from a pool refilled from the CSPRNG 256 at a time: one generator call per value cost
 * as much as the HKDF itself. Salts are public (they sit in the value's header); they only need to
 * be unpredictable and unique, which the pool keeps.
 */
const saltPool = Buffer.alloc(SALT_LENGTH * 256);
let saltOffset = saltPool.length;
function fillSalt(target: Buffer, offset: number): void {
  if (saltOffset + SALT_LENGTH > saltPool.length) {
    randomFillSync(saltPool);
    saltOffset = 0;
  }
  saltPool.copy(target, offset, saltOffset, saltOffset + SALT_LENGTH);
  // Each salt is handed out once: overwrite it so no later reader of the pool sees it again.
  saltPool.fill(0, saltOffset, saltOffset + SALT_LENGTH);
  saltOffset += SALT_LENGTH;
}

function cellAad(header: Uint8Array, cell: SealedCell): Buffer {
  return Buffer.concat([header, encodeEncryptionContext({ table: cell.table, column: cell.column, row: cell.row })]);
}

function deriveValueKey(dataKey: Uint8Array, salt: Uint8Array): Buffer {
  return hkdfSha256(dataKey, salt, VALUE_INFO, 32 + GCM_NONCE_LENGTH);
}

/** Creates a sealer over unwrapped data keys. It copies them, so the caller may zero its own copies. */
export function createColumnSealer(options: ColumnSealerKeys): ColumnSealer {
  const keys = new Map<number, Buffer>();
  for (const [number, key] of options.keys) {
    if (key.byteLength !== 32) throw new AirlockError('INVALID_ARGUMENT', 'database data keys must be 32 bytes', { details: { argument: 'keys' } });
    keys.set(number, Buffer.from(key));
  }
  const sealKey = keys.get(options.sealWith);
  const indexSource = keys.get(options.indexKey);
  if (sealKey === undefined || indexSource === undefined) throw new AirlockError('INVALID_ARGUMENT', 'the sealing and index keys must be among the keys', { details: { argument: 'keys' } });
  const indexKey = hkdfSha256(indexSource, EMPTY, INDEX_INFO, 32);
  let disposed = false;
  const live = (): void => {
    if (disposed) throw new AirlockError('UNAVAILABLE', 'The database is closed');
  };

  const seal = (cell: SealedCell, plaintext: Uint8Array): Buffer => {
    live();
    const header = Buffer.allocUnsafe(HEADER_LENGTH);
    header[0] = VERSION;
    header.writeUInt32BE(options.sealWith, 1);
    fillSalt(header, 5);
    const derived = deriveValueKey(sealKey, header.subarray(5));
    try {
      const body = aesGcmEncrypt(derived.subarray(0, 32), derived.subarray(32), plaintext, cellAad(header, cell));
      return Buffer.concat([header, body]);
    } finally {
      derived.fill(0);
    }
  };

  const open = (cell: SealedCell, sealed: Uint8Array): Buffer => {
    live();
    const bytes = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
    const where = { table: cell.table, column: cell.column };
    if (bytes.byteLength < HEADER_LENGTH + TAG_LENGTH || bytes[0] !== VERSION) {
      throw new AirlockError('CIPHERTEXT_MALFORMED', `A sealed database value in ${cell.table}.${cell.column} is malformed`, { details: where });
    }
    const key = keys.get(bytes.readUInt32BE(1));
    if (key === undefined) {
      throw new AirlockError('CIPHERTEXT_AUTH_FAILED', `A sealed database value in ${cell.table}.${cell.column} names an unknown data key`, { details: where });
    }
    const header = bytes.subarray(0, HEADER_LENGTH);
    const derived = deriveValueKey(key, header.subarray(5));
    try {
      return aesGcmDecrypt(derived.subarray(0, 32), derived.subarray(32), bytes.subarray(HEADER_LENGTH), cellAad(header, cell));
    } catch (error) {
      const code = AirlockError.from(error).code;
      throw new AirlockError(code === 'CIPHERTEXT_AUTH_FAILED' ? code : 'CIPHERTEXT_MALFORMED', `A sealed database value in ${cell.table}.${cell.column} failed authentication (tampered, or moved from another row)`, {
        details: where,
      });
    } finally {
      derived.fill(0);
    }
  };

  return {
    seal,
    open,
    sealText: (cell, text) => seal(cell, Buffer.from(text, 'utf8')),
    openText: (cell, sealed) => open(cell, sealed).toString('utf8'),
    sealJson: (cell, value) => seal(cell, Buffer.from(JSON.stringify(value), 'utf8')),
    openJson<T>(cell: SealedCell, sealed: Uint8Array): T {
      return JSON.parse(open(cell, sealed).toString('utf8')) as T;
    },
    blindIndex(domain, value) {
      live();
      return hmacSha256(indexKey, Buffer.concat([encodeEncryptionContext({ domain }), Buffer.from(value, 'utf8')])).toString('hex');
    },
    dispose() {
      if (disposed) return;
      disposed = true;
      for (const key of keys.values()) key.fill(0);
      indexKey.fill(0);
    },
  };
}
