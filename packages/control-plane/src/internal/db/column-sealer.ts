// Column encryption for the control-plane database: AES-256-GCM per value, bound to its table, column and row, and keyed blind indexes for lookups.
import { randomFillSync } from 'node:crypto';
import { AirlockError } from '@airlock/common';
import { aesGcmDecrypt, aesGcmEncryptInto, encodeEncryptionContext, GCM_NONCE_LENGTH, hkdfSha256, hmacSha256, MAX_ENCRYPTION_CONTEXT_BYTES } from '@airlock/crypto';

/**
 * Sealed value layout (all big-endian), version 2:
 *
 *   u8 version (2) ‖ u32 data-key number ‖ 16-byte salt ‖ 12-byte nonce ‖ AES-256-GCM ciphertext ‖ 16-byte tag
 *
 * Values are sealed under a sub-key derived with HKDF-SHA256 (RFC 5869) from the data key and a
 * random salt, with a random 96-bit nonce each. A sub-key seals at most 2^20 values before a new salt
 * is drawn: NIST SP 800-38D §8.3 caps one key with random nonces at 2^32 messages, and a busy
 * control plane rewrites rows fast enough to reach that on a single data key, so the cap is kept per
 * sub-key instead, 4,096 times below the bound. Deriving once per sub-key rather than once per value
 * keeps HKDF off the hot path; readers cache the sub-keys they derive. The associated data binds the
 * header, the table, the column and the row id, so a value copied to another row, column or table
 * does not open.
 *
 * Version 1 (still opened): u8 1 ‖ u32 key number ‖ 16-byte salt ‖ ciphertext ‖ tag, with a key and
 * nonce derived per value from the salt.
 */
const VERSION = 2;
const VERSION_1 = 1;
const SALT_LENGTH = 16;
const V1_HEADER_LENGTH = 1 + 4 + SALT_LENGTH;
const HEADER_LENGTH = V1_HEADER_LENGTH + GCM_NONCE_LENGTH;
const TAG_LENGTH = 16;
const VALUE_INFO = Buffer.from('airlock/cp-db/v1/value', 'utf8');
const SUBKEY_INFO = Buffer.from('airlock/cp-db/v2/sub-key', 'utf8');
const INDEX_INFO = Buffer.from('airlock/cp-db/v1/blind-index', 'utf8');
const EMPTY = Buffer.alloc(0);
/** Values sealed under one sub-key before a fresh salt is drawn (see above). */
export const VALUES_PER_SUBKEY = 2 ** 20;
/** Sub-keys a sealer keeps derived for reading; rows written together share one, so a few suffice. */
const SUBKEY_CACHE = 64;
/**
 * Values a sealer remembers having sealed, with their plaintext (see `recent` below): at most this
 * many… A value is read back soon or not at all (an action is leased moments after it is queued), and
 * a much longer memory cost more than it saved: entries that live longer outlast the young generation
 * of V8's heap, and collecting them costs the event loop (1,024 against 16,384: 6 % less event-loop
 * time per action in the queue benchmark with column sealing, 14 rounds alternated in one process).
 * 1,024 was too short for a queue a few thousand deep, though: with 32 producers ahead of one agent,
 * a third of the specs leased had been dropped already and were decrypted again; 4,096 drops none
 * there (2.6 % more actions/s, 12 rounds alternated in one process).
 */
const RECENT_VALUES = 4096;
/** …holding at most this many bytes of sealed and plain values together; a larger value is not remembered. */
const RECENT_BYTES = 4 * 1024 * 1024;
const RECENT_LARGEST = 4096;
/** Blind indexes a sealer remembers: the same few names (clusters, projects) are looked up on every call. */
const INDEX_CACHE = 1024;

/** Where a sealed value lives; all three are bound into its authentication. */
export interface SealedCell {
  readonly table: string;
  readonly column: string;
  readonly row: string;
}

export interface SealOptions {
  /**
   * Whether the sealer keeps the value in memory so that reading it back soon costs no decryption
   * (see `recent` below). Default true; false for a value nobody reads back soon (an action's
   * history written as it finishes), which then costs no copy and no memory.
   */
  readonly remember?: boolean;
}

export interface ColumnSealer {
  seal(cell: SealedCell, plaintext: Uint8Array, options?: SealOptions): Buffer;
  /** Opens a sealed value; a value from another cell or a tampered one fails CIPHERTEXT_AUTH_FAILED (details name the cell, never content). */
  open(cell: SealedCell, sealed: Uint8Array): Buffer;
  sealText(cell: SealedCell, text: string, options?: SealOptions): Buffer;
  openText(cell: SealedCell, sealed: Uint8Array): string;
  sealJson(cell: SealedCell, value: unknown, options?: SealOptions): Buffer;
  openJson<T>(cell: SealedCell, sealed: Uint8Array): T;
  /**
   * A keyed, deterministic index of `value` within `domain` (64 hex characters): equal values give
   * equal indexes, so rows can be looked up by a user-chosen name that is itself stored sealed.
   */
  blindIndex(domain: string, value: string): string;
  /** Zeroes the keys it holds; it cannot be used afterwards. */
  dispose(): void;
}

/** A value the sealer sealed and remembers, with its plaintext (see `recent` below). */
interface Remembered {
  /** The map it is filed in, and under which row. */
  readonly rows: Map<string, Remembered>;
  readonly row: string;
  readonly sealed: Buffer;
  readonly plaintext: Buffer;
  /** Dropped from memory (its plaintext zeroed), by age, by a newer value of its cell, or on dispose. */
  dropped: boolean;
}

export interface ColumnSealerKeys {
  /** Data keys by number; `sealWith` must be one of them. Each 32 bytes. */
  readonly keys: ReadonlyMap<number, Uint8Array>;
  /** The key new values are sealed with. */
  readonly sealWith: number;
  /** The key blind indexes are derived from. It never changes, since indexes must stay comparable. */
  readonly indexKey: number;
  /** Values sealed under one sub-key before a new salt is drawn. @default VALUES_PER_SUBKEY (2^20) */
  readonly valuesPerSubKey?: number;
}

/**
 * Salts and nonces come from a pool refilled from the CSPRNG 4 KiB at a time: one generator call per
 * value cost as much as the sealing itself. Both are public (they sit in the value's header); they
 * only need to be unpredictable and unique, which the pool keeps.
 */
const randomPool = Buffer.alloc(4096);
let randomOffset = randomPool.length;
function fillRandom(target: Buffer, offset: number, length: number): void {
  if (randomOffset + length > randomPool.length) {
    randomFillSync(randomPool);
    randomOffset = 0;
  }
  randomPool.copy(target, offset, randomOffset, randomOffset + length);
  // Each byte is handed out once: overwrite it so no later reader of the pool sees it again.
  randomPool.fill(0, randomOffset, randomOffset + length);
  randomOffset += length;
}

const COLUMN_NAME = Buffer.from('column', 'utf8');
const ROW_NAME = Buffer.from('row', 'utf8');
const TABLE_NAME = Buffer.from('table', 'utf8');

/** The parts of a cell's context that do not change from row to row, encoded once per table and column. */
interface CellParts {
  /** u16 3 ‖ u16 len ‖ "column" ‖ u16 len ‖ column ‖ u16 len ‖ "row" */
  readonly head: Buffer;
  /** u16 len ‖ "table" ‖ u16 len ‖ table */
  readonly tail: Buffer;
}
const cellParts = new Map<string, Map<string, CellParts>>();
/** Tables × columns a process seals are few and fixed; past this many, the cache starts over rather than grow. */
const CELL_PARTS_LIMIT = 256;
let cellPartsCount = 0;

function partsOf(table: string, column: string): CellParts {
  let columns = cellParts.get(table);
  const known = columns?.get(column);
  if (known !== undefined) return known;
  const columnBytes = Buffer.from(column, 'utf8');
  const tableBytes = Buffer.from(table, 'utf8');
  const head = Buffer.alloc(2 + 2 + COLUMN_NAME.byteLength + 2 + columnBytes.byteLength + 2 + ROW_NAME.byteLength);
  let offset = head.writeUInt16BE(3, 0);
  offset = head.writeUInt16BE(COLUMN_NAME.byteLength, offset);
  offset += COLUMN_NAME.copy(head, offset);
  offset = head.writeUInt16BE(columnBytes.byteLength, offset);
  offset += columnBytes.copy(head, offset);
  offset = head.writeUInt16BE(ROW_NAME.byteLength, offset);
  ROW_NAME.copy(head, offset);
  const tail = Buffer.alloc(2 + TABLE_NAME.byteLength + 2 + tableBytes.byteLength);
  offset = tail.writeUInt16BE(TABLE_NAME.byteLength, 0);
  offset += TABLE_NAME.copy(tail, offset);
  offset = tail.writeUInt16BE(tableBytes.byteLength, offset);
  tableBytes.copy(tail, offset);
  if (cellPartsCount >= CELL_PARTS_LIMIT) {
    cellParts.clear();
    cellPartsCount = 0;
    columns = undefined;
  }
  if (columns === undefined) {
    columns = new Map();
    cellParts.set(table, columns);
  }
  const parts = { head, tail };
  columns.set(column, parts);
  cellPartsCount += 1;
  return parts;
}

/**
 * The associated data of a cell: the value's header ‖ encodeEncryptionContext({ table, column, row }),
 * byte for byte, written into one buffer. The generic encoder sorted and copied three pairs per value,
 * a tenth of the cost of sealing one; here the names' order ("column" < "row" < "table") is the
 * encoder's, the parts that depend only on the table and column are encoded once, and a test compares
 * the result with the encoder's.
 */
export function cellAad(header: Uint8Array, cell: SealedCell): Buffer {
  if (typeof cell.table !== 'string' || typeof cell.column !== 'string' || typeof cell.row !== 'string') {
    return Buffer.concat([header, encodeEncryptionContext({ table: cell.table, column: cell.column, row: cell.row })]);
  }
  const { head, tail } = partsOf(cell.table, cell.column);
  const row = Buffer.byteLength(cell.row, 'utf8');
  const context = head.byteLength + 2 + row + tail.byteLength;
  // Past the encoder's limit, let it refuse the context exactly as it would.
  if (context > MAX_ENCRYPTION_CONTEXT_BYTES) return Buffer.concat([header, encodeEncryptionContext({ table: cell.table, column: cell.column, row: cell.row })]);
  const out = Buffer.allocUnsafe(header.byteLength + context);
  out.set(header, 0);
  let offset = header.byteLength + head.copy(out, header.byteLength);
  offset = out.writeUInt16BE(row, offset);
  offset += out.write(cell.row, offset, 'utf8');
  tail.copy(out, offset);
  return out;
}

function deriveValueKey(dataKey: Uint8Array, salt: Uint8Array): Buffer {
  return hkdfSha256(dataKey, salt, VALUE_INFO, 32 + GCM_NONCE_LENGTH);
}

function deriveSubKey(dataKey: Uint8Array, salt: Uint8Array): Buffer {
  return hkdfSha256(dataKey, salt, SUBKEY_INFO, 32);
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
  const perSubKey = options.valuesPerSubKey ?? VALUES_PER_SUBKEY;
  if (!Number.isInteger(perSubKey) || perSubKey < 1 || perSubKey > VALUES_PER_SUBKEY) {
    throw new AirlockError('INVALID_ARGUMENT', `valuesPerSubKey must be an integer from 1 to ${VALUES_PER_SUBKEY}`, { details: { argument: 'valuesPerSubKey' } });
  }
  let disposed = false;
  const live = (): void => {
    if (disposed) throw new AirlockError('UNAVAILABLE', 'The database is closed');
  };

  // The sub-key new values are sealed under, and how many more values it may seal.
  let writing: { salt: Buffer; key: Buffer; remaining: number } | undefined;
  /**
   * The values this sealer sealed last, by cell, with their plaintext: a row written and read back
   * soon after (an action enqueued, then leased, then completed) opens without a second AES-GCM pass.
   * A hit needs the same cell and the same sealed bytes, so it returns exactly what decryption would;
   * a value moved from another cell, or altered, misses and is decrypted and authenticated as always.
   * The plaintext is zeroed when dropped and on dispose.
   */
  const recent = new Map<string, Map<string, Map<string, Remembered>>>();
  // Entries in the order they were remembered, oldest first (a ring): dropping the oldest is O(1),
  // where asking a Map for its first entry walks past every slot deleted before it.
  const order: (Remembered | undefined)[] = new Array<Remembered | undefined>(RECENT_VALUES).fill(undefined);
  let oldest = 0;
  let count = 0;
  let bytes = 0;
  // By table, then column, then row: the table and column names are the same few strings on every
  // call, so only the row id is hashed, where one joined key was built and hashed anew each time.
  const rowsOf = (cell: SealedCell, create: boolean): Map<string, Remembered> | undefined => {
    let columns = recent.get(cell.table);
    if (columns === undefined) {
      if (!create) return undefined;
      columns = new Map();
      recent.set(cell.table, columns);
    }
    let rows = columns.get(cell.column);
    if (rows === undefined && create) {
      rows = new Map();
      columns.set(cell.column, rows);
    }
    return rows;
  };
  const drop = (entry: Remembered): void => {
    if (entry.dropped) return;
    entry.dropped = true;
    if (entry.rows.get(entry.row) === entry) entry.rows.delete(entry.row);
    bytes -= entry.sealed.byteLength + entry.plaintext.byteLength;
    entry.plaintext.fill(0);
  };
  const forget = (cell: SealedCell): void => {
    const entry = rowsOf(cell, false)?.get(cell.row);
    if (entry !== undefined) drop(entry);
  };
  /** `owned`: the plaintext buffer is this sealer's own (sealJson, sealText), kept as it is rather than copied. */
  const remember = (cell: SealedCell, sealed: Buffer, plaintext: Uint8Array, owned: boolean): void => {
    // The cell's previous value is stale now, whether or not this one is remembered.
    forget(cell);
    const size = sealed.byteLength + plaintext.byteLength;
    if (plaintext.byteLength > RECENT_LARGEST) return;
    // Drop the oldest until there is room. A slot whose entry a newer value of its cell replaced
    // holds nothing any more; dropping it leaves the newer value alone.
    while (count > 0 && (count >= RECENT_VALUES || bytes + size > RECENT_BYTES)) {
      const dropped = order[oldest];
      order[oldest] = undefined;
      oldest = (oldest + 1) % RECENT_VALUES;
      count -= 1;
      if (dropped !== undefined) drop(dropped);
    }
    const rows = rowsOf(cell, true) as Map<string, Remembered>;
    // Copies of what the caller holds: it may change or zero those buffers.
    const entry: Remembered = { rows, row: cell.row, sealed: Buffer.from(sealed), plaintext: owned ? (plaintext as Buffer) : Buffer.from(plaintext), dropped: false };
    rows.set(cell.row, entry);
    bytes += size;
    order[(oldest + count) % RECENT_VALUES] = entry;
    count += 1;
  };
  // Blind indexes computed so far, by domain and then value (each name hashed as it is, not joined).
  const indexes = new Map<string, Map<string, string>>();
  let indexCount = 0;
  // Sub-keys derived for reading, by key number and salt; the oldest is dropped (and zeroed) first.
  const reading = new Map<string, Buffer>();
  const readKey = (keyNo: number, key: Buffer, salt: Buffer): Buffer => {
    // Most values read were sealed under the sub-key new values are sealed with: no lookup for those.
    if (writing !== undefined && keyNo === options.sealWith && writing.salt.equals(salt)) return writing.key;
    const id = `${keyNo}:${salt.toString('hex')}`;
    let subKey = reading.get(id);
    if (subKey === undefined) {
      subKey = deriveSubKey(key, salt);
      if (reading.size >= SUBKEY_CACHE) {
        const [oldest, value] = reading.entries().next().value as [string, Buffer];
        reading.delete(oldest);
        value.fill(0);
      }
      reading.set(id, subKey);
    }
    return subKey;
  };

  const seal = (cell: SealedCell, plaintext: Uint8Array, owned: boolean, sealOptions: SealOptions | undefined): Buffer => {
    live();
    if (writing === undefined || writing.remaining === 0) {
      writing?.key.fill(0);
      const salt = Buffer.allocUnsafe(SALT_LENGTH);
      fillRandom(salt, 0, SALT_LENGTH);
      writing = { salt, key: deriveSubKey(sealKey, salt), remaining: perSubKey };
    }
    writing.remaining -= 1;
    // The header, then the ciphertext and tag, written into one buffer (no concatenation).
    const sealed = Buffer.allocUnsafe(HEADER_LENGTH + plaintext.byteLength + TAG_LENGTH);
    sealed[0] = VERSION;
    sealed.writeUInt32BE(options.sealWith, 1);
    writing.salt.copy(sealed, 5);
    fillRandom(sealed, V1_HEADER_LENGTH, GCM_NONCE_LENGTH);
    const header = sealed.subarray(0, HEADER_LENGTH);
    aesGcmEncryptInto(writing.key, header.subarray(V1_HEADER_LENGTH), plaintext, cellAad(header, cell), sealed, HEADER_LENGTH);
    if (sealOptions?.remember === false) forget(cell);
    else remember(cell, sealed, plaintext, owned);
    return sealed;
  };

  /** `copy`: whether a value answered from memory is copied (the caller may keep or zero it) or lent (read at once, never kept). */
  const open = (cell: SealedCell, sealed: Uint8Array, copy: boolean): Buffer => {
    live();
    const bytes = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
    const known = rowsOf(cell, false)?.get(cell.row);
    // Ciphertext is public, so comparing it need not be constant-time.
    if (known !== undefined && known.sealed.equals(bytes)) return copy ? Buffer.from(known.plaintext) : known.plaintext;
    const where = { table: cell.table, column: cell.column };
    const version = bytes[0];
    const headerLength = version === VERSION ? HEADER_LENGTH : V1_HEADER_LENGTH;
    if ((version !== VERSION && version !== VERSION_1) || bytes.byteLength < headerLength + TAG_LENGTH) {
      throw new AirlockError('CIPHERTEXT_MALFORMED', `A sealed database value in ${cell.table}.${cell.column} is malformed`, { details: where });
    }
    const keyNo = bytes.readUInt32BE(1);
    const key = keys.get(keyNo);
    if (key === undefined) {
      throw new AirlockError('CIPHERTEXT_AUTH_FAILED', `A sealed database value in ${cell.table}.${cell.column} names an unknown data key`, { details: where });
    }
    const header = bytes.subarray(0, headerLength);
    const salt = header.subarray(5, V1_HEADER_LENGTH);
    const derived = version === VERSION_1 ? deriveValueKey(key, salt) : undefined;
    try {
      const aad = cellAad(header, cell);
      const body = bytes.subarray(headerLength);
      return derived === undefined
        ? aesGcmDecrypt(readKey(keyNo, key, salt), header.subarray(V1_HEADER_LENGTH), body, aad)
        : aesGcmDecrypt(derived.subarray(0, 32), derived.subarray(32), body, aad);
    } catch (error) {
      const code = AirlockError.from(error).code;
      throw new AirlockError(code === 'CIPHERTEXT_AUTH_FAILED' ? code : 'CIPHERTEXT_MALFORMED', `A sealed database value in ${cell.table}.${cell.column} failed authentication (tampered, or moved from another row)`, {
        details: where,
      });
    } finally {
      derived?.fill(0);
    }
  };

  return {
    seal: (cell, plaintext, options) => seal(cell, plaintext, false, options),
    open: (cell, sealed) => open(cell, sealed, true),
    sealText: (cell, text, options) => seal(cell, Buffer.from(text, 'utf8'), true, options),
    // Decoded at once: a remembered plaintext is read in place rather than copied first.
    openText: (cell, sealed) => open(cell, sealed, false).toString('utf8'),
    sealJson: (cell, value, options) => seal(cell, Buffer.from(JSON.stringify(value), 'utf8'), true, options),
    openJson<T>(cell: SealedCell, sealed: Uint8Array): T {
      return JSON.parse(open(cell, sealed, false).toString('utf8')) as T;
    },
    blindIndex(domain, value) {
      live();
      // An index is stored in the clear beside its row; remembering it adds nothing an attacker could read that the database does not show.
      let values = indexes.get(domain);
      let index = values?.get(value);
      if (index === undefined) {
        index = hmacSha256(indexKey, Buffer.concat([encodeEncryptionContext({ domain }), Buffer.from(value, 'utf8')])).toString('hex');
        if (indexCount >= INDEX_CACHE) {
          indexes.clear();
          indexCount = 0;
          values = undefined;
        }
        if (values === undefined) {
          values = new Map();
          indexes.set(domain, values);
        }
        values.set(value, index);
        indexCount += 1;
      }
      return index;
    },
    dispose() {
      if (disposed) return;
      disposed = true;
      for (const key of keys.values()) key.fill(0);
      for (const key of reading.values()) key.fill(0);
      reading.clear();
      indexes.clear();
      for (const entry of order) if (entry !== undefined) drop(entry);
      recent.clear();
      order.fill(undefined);
      writing?.key.fill(0);
      indexKey.fill(0);
    },
  };
}
