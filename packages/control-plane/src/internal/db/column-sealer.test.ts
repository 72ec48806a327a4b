// Unit tests of column sealing: round trips, binding to table, column and row, tampering, key numbers, blind indexes.
import { randomBytes } from 'node:crypto';
import { aesGcmDecrypt, aesGcmEncrypt, encodeEncryptionContext, hkdfSha256 } from '@airlock/crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { cellAad, createColumnSealer } from './column-sealer.js';

const cell = { table: 'api_tokens', column: 'subject_sealed', row: 'id-1' };

function sealer(keys: Array<[number, Buffer]> = [[1, randomBytes(32)]], sealWith = 1): ReturnType<typeof createColumnSealer> {
  return createColumnSealer({ keys: new Map(keys), sealWith, indexKey: 1 });
}

function code(action: () => unknown): string | undefined {
  try {
    action();
  } catch (error) {
    return (error as { code?: string }).code;
  }
  return undefined;
}

describe('column sealer', () => {
  it('round-trips text, JSON and bytes; every seal of the same value differs', () => {
    const s = sealer();
    expect(s.openText(cell, s.sealText(cell, 'alice ✓'))).toBe('alice ✓');
    expect(s.openJson(cell, s.sealJson(cell, { a: [1, 'b'] }))).toEqual({ a: [1, 'b'] });
    expect(s.open(cell, s.seal(cell, Buffer.alloc(0)))).toEqual(Buffer.alloc(0));
    expect(Buffer.compare(s.sealText(cell, 'same'), s.sealText(cell, 'same'))).not.toBe(0);
    expect(s.sealText(cell, 'secret-value').includes('secret-value')).toBe(false);
  });

  it('a value opens only in the cell it was sealed for', () => {
    const s = sealer();
    const sealed = s.sealText(cell, 'bound');
    for (const other of [
      { ...cell, row: 'id-2' },
      { ...cell, column: 'roles_sealed' },
      { ...cell, table: 'clusters' },
    ]) {
      expect(code(() => s.open(other, sealed))).toBe('CIPHERTEXT_AUTH_FAILED');
    }
  });

  it('refuses tampering, truncation, an unknown key number and another key', () => {
    const s = sealer();
    const sealed = s.sealText(cell, 'value');
    for (const index of [0, 1, 4, 5, 20, 21, sealed.length - 1]) {
      const flipped = Buffer.from(sealed);
      flipped[index] = (flipped[index] ?? 0) ^ 0x01;
      expect(['CIPHERTEXT_AUTH_FAILED', 'CIPHERTEXT_MALFORMED']).toContain(code(() => s.open(cell, flipped)));
    }
    expect(code(() => s.open(cell, sealed.subarray(0, 30)))).toBe('CIPHERTEXT_MALFORMED');
    expect(code(() => sealer().open(cell, sealed))).toBe('CIPHERTEXT_AUTH_FAILED');
  });

  it('opens values of every key it holds and seals with the newest', () => {
    const first = randomBytes(32);
    const old = sealer([[1, first]]);
    const rotated = sealer([[1, first], [2, randomBytes(32)]], 2);
    expect(rotated.openText(cell, old.sealText(cell, 'v1'))).toBe('v1');
    const fresh = rotated.sealText(cell, 'v2');
    expect(fresh.readUInt32BE(1)).toBe(2);
    expect(code(() => old.open(cell, fresh))).toBe('CIPHERTEXT_AUTH_FAILED');
  });

  it('blind indexes are keyed, deterministic and separated by domain', () => {
    const key = randomBytes(32);
    const a = sealer([[1, key]]);
    const b = sealer([[1, key]]);
    expect(a.blindIndex('cluster', 'edge-1')).toBe(b.blindIndex('cluster', 'edge-1'));
    expect(a.blindIndex('cluster', 'edge-1')).toMatch(/^[0-9a-f]{64}$/);
    expect(a.blindIndex('cluster', 'edge-1')).not.toBe(a.blindIndex('project', 'edge-1'));
    expect(a.blindIndex('cluster', 'edge-1')).not.toBe(sealer().blindIndex('cluster', 'edge-1'));
  });

  it('is unusable once disposed', () => {
    const s = sealer();
    const sealed = s.sealText(cell, 'x');
    s.dispose();
    expect(code(() => s.open(cell, sealed))).toBe('UNAVAILABLE');
  });

  it('draws a new salt after valuesPerSubKey values, a fresh nonce for every value, and opens values of every sub-key', () => {
    const s = createColumnSealer({ keys: new Map([[1, randomBytes(32)]]), sealWith: 1, indexKey: 1, valuesPerSubKey: 3 });
    const values = Array.from({ length: 7 }, (_, i) => s.sealText(cell, `value ${i}`));
    const salts = values.map((v) => v.subarray(5, 21).toString('hex'));
    const nonces = values.map((v) => v.subarray(21, 33).toString('hex'));
    expect(values.every((v) => v[0] === 2)).toBe(true);
    expect(new Set(salts.slice(0, 3)).size).toBe(1);
    expect(new Set(salts.slice(3, 6)).size).toBe(1);
    expect(new Set([salts[0], salts[3], salts[6]]).size).toBe(3);
    expect(new Set(nonces).size).toBe(7);
    values.forEach((v, i) => expect(s.openText(cell, v)).toBe(`value ${i}`));
    expect(code(() => createColumnSealer({ keys: new Map([[1, randomBytes(32)]]), sealWith: 1, indexKey: 1, valuesPerSubKey: 0 }))).toBe('INVALID_ARGUMENT');
  });

  it('still opens version-1 values (a key and nonce derived per value), bound to their cell like version 2', () => {
    const dataKey = randomBytes(32);
    const s = sealer([[1, dataKey]]);
    const header = Buffer.alloc(21);
    header[0] = 1;
    header.writeUInt32BE(1, 1);
    randomBytes(16).copy(header, 5);
    const derived = hkdfSha256(dataKey, header.subarray(5), Buffer.from('airlock/cp-db/v1/value', 'utf8'), 44);
    const aad = Buffer.concat([header, encodeEncryptionContext({ table: cell.table, column: cell.column, row: cell.row })]);
    const v1 = Buffer.concat([header, aesGcmEncrypt(derived.subarray(0, 32), derived.subarray(32), Buffer.from('from release 1'), aad)]);
    expect(s.openText(cell, v1)).toBe('from release 1');
    expect(code(() => s.openText({ ...cell, row: 'id-2' }, v1))).toBe('CIPHERTEXT_AUTH_FAILED');
  });

  it('version-2 layout is what it was: a value built by hand from the documented layout opens, and one sealed now decrypts by hand', () => {
    const dataKey = randomBytes(32);
    const s = createColumnSealer({ keys: new Map([[7, dataKey]]), sealWith: 7, indexKey: 7 });
    const subKeyOf = (salt: Buffer): Buffer => hkdfSha256(dataKey, salt, Buffer.from('airlock/cp-db/v2/sub-key', 'utf8'), 32);
    const context = encodeEncryptionContext({ table: cell.table, column: cell.column, row: cell.row });
    // u8 2 ‖ u32 key number ‖ 16-byte salt ‖ 12-byte nonce ‖ ciphertext ‖ 16-byte tag; the header is part of the associated data.
    const header = Buffer.alloc(33);
    header[0] = 2;
    header.writeUInt32BE(7, 1);
    randomBytes(28).copy(header, 5);
    const byHand = Buffer.concat([header, aesGcmEncrypt(subKeyOf(header.subarray(5, 21)), header.subarray(21, 33), Buffer.from('{"written":"earlier"}'), Buffer.concat([header, context]))]);
    expect(s.openJson(cell, byHand)).toEqual({ written: 'earlier' });
    const sealed = s.sealJson(cell, { written: 'now' });
    expect(sealed.byteLength).toBe(33 + Buffer.byteLength('{"written":"now"}') + 16);
    expect(sealed[0]).toBe(2);
    expect(sealed.readUInt32BE(1)).toBe(7);
    const opened = aesGcmDecrypt(subKeyOf(sealed.subarray(5, 21)), sealed.subarray(21, 33), sealed.subarray(33), Buffer.concat([sealed.subarray(0, 33), context]));
    expect(opened.toString('utf8')).toBe('{"written":"now"}');
  });

  it('builds the associated data byte for byte as header ‖ encodeEncryptionContext({ table, column, row })', () => {
    const text = fc.string({ unit: 'binary', maxLength: 40 });
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 33 }), text, text, text, (header, table, column, row) => {
        expect(cellAad(header, { table, column, row })).toEqual(Buffer.concat([header, encodeEncryptionContext({ table, column, row })]));
      }),
    );
    // The parts that depend on the table and column alone are kept per pair: the same pair with other rows, and more pairs
    // than are kept (the cache starts over), still give the encoder's bytes.
    const header = Buffer.from([2, 0, 0, 0, 1]);
    for (let i = 0; i < 600; i += 1) {
      for (const row of [`r-${i}`, `ŕ-${i}-é`, '']) {
        const cellAt = { table: `t-${i % 7}`, column: `c-${i}`, row };
        expect(cellAad(header, cellAt)).toEqual(Buffer.concat([header, encodeEncryptionContext(cellAt)]));
      }
    }
    // Past the encoder's size limit it refuses, as the encoder does.
    expect(code(() => cellAad(Buffer.alloc(1), { table: 't', column: 'c', row: 'x'.repeat(9000) }))).toBe('INVALID_ARGUMENT');
  });

  it('remembers blind indexes without changing them, and forgets them when disposed', () => {
    const key = randomBytes(32);
    const a = createColumnSealer({ keys: new Map([[1, key]]), sealWith: 1, indexKey: 1 });
    const b = createColumnSealer({ keys: new Map([[1, key]]), sealWith: 1, indexKey: 1 });
    for (let i = 0; i < 1100; i += 1) expect(a.blindIndex('cluster', `c-${i % 1050}`)).toBe(b.blindIndex('cluster', `c-${i % 1050}`));
    expect(a.blindIndex('cluster', 'x')).not.toBe(a.blindIndex('project', 'x'));
    a.dispose();
    expect(code(() => a.blindIndex('cluster', 'c-1'))).toBe('UNAVAILABLE');
  });

  it('opens a value it sealed itself from memory only while cell and bytes are the same', () => {
    const key = randomBytes(32);
    const s = sealer([[1, key]]);
    const sealed = s.sealText(cell, 'remembered');
    expect(s.openText(cell, sealed)).toBe('remembered');
    // The same bytes in another cell, or altered bytes in the same cell, are decrypted and fail as always.
    expect(code(() => s.open({ ...cell, row: 'id-2' }, sealed))).toBe('CIPHERTEXT_AUTH_FAILED');
    const flipLast = (bytes: Buffer): void => {
      bytes.writeUInt8(bytes.readUInt8(bytes.length - 1) ^ 1, bytes.length - 1);
    };
    const tampered = Buffer.from(sealed);
    flipLast(tampered);
    expect(code(() => s.open(cell, tampered))).toBe('CIPHERTEXT_AUTH_FAILED');
    // Changing the buffer the caller was given does not change what the sealer remembers.
    flipLast(sealed);
    expect(code(() => s.open(cell, sealed))).toBe('CIPHERTEXT_AUTH_FAILED');
    flipLast(sealed);
    const opened = s.open(cell, sealed);
    opened.fill(0);
    expect(s.openText(cell, sealed)).toBe('remembered');
    // A value sealed by another sealer with the same key (after a restart) opens by decryption, to the same plaintext.
    expect(sealer([[1, key]]).openText(cell, sealed)).toBe('remembered');
  });

  it('a value sealed with remember: false opens by decryption, and drops what the cell held in memory', () => {
    const s = sealer();
    const kept = s.sealJson(cell, { phase: 'RUNNING' });
    const notKept = s.sealJson(cell, { phase: 'SUCCEEDED' }, { remember: false });
    expect(s.openJson(cell, notKept)).toEqual({ phase: 'SUCCEEDED' });
    expect(s.openJson(cell, kept)).toEqual({ phase: 'RUNNING' });
    expect(s.openText(cell, s.sealText(cell, 'text', { remember: false }))).toBe('text');
    expect(s.open(cell, s.seal(cell, Buffer.from([1, 2, 3]), { remember: false }))).toEqual(Buffer.from([1, 2, 3]));
    const tampered = s.sealText(cell, 'tamper-me', { remember: false });
    tampered.writeUInt8(tampered.readUInt8(tampered.length - 1) ^ 1, tampered.length - 1);
    expect(code(() => s.open(cell, tampered))).toBe('CIPHERTEXT_AUTH_FAILED');
  });

  it('forgets the oldest values first, and never answers a cell sealed again with its older value', () => {
    const s = sealer();
    const cells = Array.from({ length: 20_000 }, (_, i) => ({ ...cell, row: `row-${i}` }));
    const sealed = cells.map((c, i) => s.sealText(c, `value-${i}`));
    // Whether remembered or forgotten, every value opens to what was sealed.
    for (const i of [0, 1, 5000, 19_999]) expect(s.openText(cells[i] ?? cell, sealed[i] ?? Buffer.alloc(0))).toBe(`value-${i}`);
    const first = s.sealText(cell, 'first');
    const second = s.sealText(cell, 'second');
    expect(s.openText(cell, second)).toBe('second');
    expect(s.openText(cell, first)).toBe('first');
  });
});
