// The KMS audit log: one sealed, hash-chained record per operation, and offline verification that catches every kind of tampering.
import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '@airlock/common';
import { aesGcmDecrypt, hkdfSha256 } from '@airlock/crypto';
import { verifyKmsAudit } from '../src/server.js';
import { startTestKms, type TestKms } from './helpers.js';

// Every test gets its own copy of one prepared store whose log holds the same 20 records
// (recordOperations: 15 requests and the 5 key-state events they published), and a server of its
// own when it needs one, so that no test depends on what an
// earlier one did to a server or a log.
let seed: TestKms;
let keyArn: string;
let otherArn: string;
let dataDir: string;
let auditPath: string;
let copyRoot: string;
let kms: TestKms | undefined;
beforeAll(async () => {
  seed = await startTestKms();
  ({ keyArn, otherArn } = await recordOperations(seed));
  await seed.server.close();
});
afterAll(async () => {
  await seed?.stop();
});
beforeEach(async () => {
  copyRoot = await mkdtemp(join(tmpdir(), 'airlock-kms-audit-'));
  dataDir = join(copyRoot, 'kms');
  await cp(join(seed.dir, 'kms'), dataDir, { recursive: true });
  auditPath = join(dataDir, 'audit.log');
  kms = undefined;
});
afterEach(async () => {
  await kms?.stop();
  await rm(copyRoot, { recursive: true, force: true });
});

/** A server of this test's own, on this test's copy of the store (dataDir and auditPath are then the server's). */
async function startServer(): Promise<TestKms> {
  const started = await startTestKms({}, dataDir);
  kms = started;
  dataDir = join(started.dir, 'kms');
  auditPath = join(dataDir, 'audit.log');
  return started;
}

/** Fifteen operations, successful or not, each one audit record (numbered among the requests; the key-state events they publish are records too). */
async function recordOperations(target: TestKms): Promise<{ keyArn: string; otherArn: string }> {
  const client = target.client();
  const key = await client.createKey({ description: 'audited' }); // 1
  const other = await client.createKey(); // 2
  await client.describeKey(key.keyId); // 3
  const dataKey = await client.generateDataKey(key.keyId, { bucket: 'b', key: 'k' }); // 4
  await client.decrypt(dataKey.ciphertextBlob, { bucket: 'b', key: 'k' }); // 5
  await client.disableKey(key.keyId); // 6
  await expect(client.decrypt(dataKey.ciphertextBlob, { bucket: 'b', key: 'k' })).rejects.toMatchObject({ code: 'KMS_KEY_DISABLED' }); // 7
  await client.enableKey(key.keyId); // 8
  await client.createAlias('alias/audited', key.keyId); // 9
  await expect(client.describeKey('alias/missing')).rejects.toMatchObject({ code: 'KMS_KEY_NOT_FOUND' }); // 10
  await expect(client.decrypt(dataKey.ciphertextBlob, { bucket: 'other', key: 'k' })).rejects.toMatchObject({ code: 'KMS_INVALID_CIPHERTEXT' }); // 11
  await expect(client.decrypt(dataKey.ciphertextBlob, { bucket: 'b', key: 'k' }, { keyId: other.keyId })).rejects.toMatchObject({
    code: 'KMS_INCORRECT_KEY',
  }); // 12
  await client.rotateKeyOnDemand('alias/audited'); // 13
  await expect(client.scheduleKeyDeletion(key.keyId, 6)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' }); // 14
  await client.listKeys(); // 15
  return { keyArn: key.arn, otherArn: other.arn };
}

/** This test's (closed) log, whole and as lines. */
async function closedLog(): Promise<{ original: string; lines: string[] }> {
  const original = await readFile(auditPath, 'utf8');
  return { original, lines: original.split('\n').filter((line) => line.length > 0) };
}

interface DecodedRecord {
  readonly seq: number;
  readonly operation: string;
  readonly keyArn: string | null;
  readonly keyVersion: number | null;
  readonly accessKeyId: string | null;
  readonly encryptionContext: Record<string, string> | null;
  readonly outcome: string;
  readonly sourceIp: string | null;
  readonly keyState?: string;
  readonly keyChange?: string;
  readonly eventSeq?: number;
}

/**
 * Opens the log independently of the server code, from its documented format (docs/kms.md, audit-log.ts):
 * each line is base64(nonce ‖ AES-256-GCM(HKDF(root key, "airlock kms audit log v1"), JSON, aad "seq:<n>")).
 * There is no read API for entries; this doubles as a check of the on-disk format.
 */
async function decodeAuditLog(): Promise<DecodedRecord[]> {
  const rootKey = Buffer.from((await readFile(join(dataDir, 'root.key'), 'utf8')).trim(), 'base64');
  const key = hkdfSha256(rootKey, Buffer.alloc(0), Buffer.from('airlock kms audit log v1'), 32);
  const lines = (await readFile(auditPath, 'utf8')).split('\n').filter((line) => line.length > 0);
  return lines.map((line, index) => {
    const bytes = Buffer.from(line, 'base64');
    const json = aesGcmDecrypt(key, bytes.subarray(0, 12), bytes.subarray(12), Buffer.from(`seq:${index + 1}`));
    return JSON.parse(json.toString('utf8')) as DecodedRecord;
  });
}

const verify = async (): Promise<{ ok: boolean; records: number; problems: readonly string[]; tornTail?: { bytes: number } }> =>
  verifyKmsAudit({ dataDir, logger: createLogger({ level: 'silent' }) });

describe('KMS audit log', () => {
  it('records every operation, successful or not, and verifies', async () => {
    // 15 requests, and 5 key-state events they published (two creations, disable, enable, rotation).
    const result = await (await startServer()).server.verifyAudit();
    expect(result).toMatchObject({ ok: true, records: 20, problems: [] });
  });

  it('each record names the operation, key ARN and version, caller, context and outcome', async () => {
    const all = await decodeAuditLog();
    expect(all.map((r) => r.seq)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    // Each published key-state change is a record of its own, just before the request that caused it.
    const events = all.filter((r) => r.operation === 'AirlockKeyStateChange');
    expect(events.map((r) => [r.keyArn, r.keyState, r.keyChange, r.keyVersion, r.eventSeq])).toEqual([
      [keyArn, 'Enabled', 'created', 1, 1],
      [otherArn, 'Enabled', 'created', 1, 2],
      [keyArn, 'Disabled', 'disabled', 1, 3],
      [keyArn, 'Enabled', 'enabled', 1, 4],
      [keyArn, 'Enabled', 'rotated', 2, 5],
    ]);
    expect(events.every((r) => r.accessKeyId === null && r.sourceIp === null && r.outcome === 'Success')).toBe(true);
    expect(events.map((r) => all[all.indexOf(r) + 1]?.operation)).toEqual(['CreateKey', 'CreateKey', 'DisableKey', 'EnableKey', 'RotateKeyOnDemand']);
    const records = all.filter((r) => r.operation !== 'AirlockKeyStateChange');
    const caller = seed.credentials.accessKeyId;
    expect(records.every((r) => r.accessKeyId === caller)).toBe(true);
    expect(records.every((r) => r.sourceIp === '127.0.0.1' || r.sourceIp === '::ffff:127.0.0.1')).toBe(true);
    expect(records.map((r) => [r.operation, r.keyArn, r.outcome])).toEqual([
      ['CreateKey', keyArn, 'Success'],
      ['CreateKey', otherArn, 'Success'],
      ['DescribeKey', keyArn, 'Success'],
      ['GenerateDataKey', keyArn, 'Success'],
      ['Decrypt', keyArn, 'Success'],
      ['DisableKey', keyArn, 'Success'],
      ['Decrypt', keyArn, 'DisabledException'],
      ['EnableKey', keyArn, 'Success'],
      ['CreateAlias', keyArn, 'Success'],
      ['DescribeKey', null, 'NotFoundException'],
      ['Decrypt', keyArn, 'InvalidCiphertextException'],
      ['Decrypt', keyArn, 'IncorrectKeyException'],
      ['RotateKeyOnDemand', keyArn, 'Success'],
      ['ScheduleKeyDeletion', keyArn, 'ValidationException'],
      ['ListKeys', null, 'Success'],
    ]);
    expect(records[3]).toMatchObject({ keyVersion: 1, encryptionContext: { bucket: 'b', key: 'k' } });
    expect(records[10]).toMatchObject({ keyVersion: 1, encryptionContext: { bucket: 'other', key: 'k' } });
    expect(records[12]).toMatchObject({ keyVersion: 2 });
  });

  it('offline verification accepts the untouched log', async () => {
    const { lines } = await closedLog();
    expect(lines).toHaveLength(20);
    expect(await verify()).toMatchObject({ ok: true, records: 20, problems: [] });
  });

  const tampering: Array<[string, (lines: string[]) => string[]]> = [
    [
      'one character edited in a middle line',
      (l) =>
        l.map((line, i) => {
          if (i !== 7) return line;
          const at = Math.floor(line.length / 2);
          return `${line.slice(0, at)}${line[at] === 'A' ? 'B' : 'A'}${line.slice(at + 1)}`;
        }),
    ],
    ['a middle line deleted', (l) => l.filter((_, i) => i !== 7)],
    ['two lines swapped', (l) => l.map((line, i) => (i === 5 ? (l[6] as string) : i === 6 ? (l[5] as string) : line))],
    ['the last line deleted (tail truncation, caught by the anchor)', (l) => l.slice(0, -1)],
    ['everything deleted', () => []],
    ['a line replayed', (l) => [...l.slice(0, 8), l[7] as string, ...l.slice(8)]],
    ['the first line deleted', (l) => l.slice(1)],
    ['a line appended from elsewhere in the log', (l) => [...l, l[0] as string]],
  ];

  it('offline verification of a directory without a KMS store fails, and creates nothing there', async () => {
    const empty = join(copyRoot, 'not-a-kms');
    await mkdir(empty);
    await expect(verifyKmsAudit({ dataDir: empty, logger: createLogger({ level: 'silent' }) })).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(await readdir(empty)).toEqual([]);
  });

  it.each(tampering)('offline verification rejects: %s', async (_name, tamper) => {
    const { lines } = await closedLog();
    await writeFile(auditPath, `${tamper(lines).join('\n')}\n`);
    const result = await verify();
    expect(result.ok).toBe(false);
    expect(result.problems.length).toBeGreaterThan(0);
  });

  it('the server refuses to start on a tampered log, and resumes on the intact one', async () => {
    const kms = await startServer();
    await kms.server.close();
    const { original, lines } = await closedLog();
    await writeFile(auditPath, `${lines.slice(0, -1).join('\n')}\n`);
    await expect(kms.restart()).rejects.toMatchObject({ code: 'CIPHERTEXT_AUTH_FAILED' });
    await writeFile(auditPath, original);
    await kms.restart();
    const client = kms.client();
    await client.describeKey(keyArn);
    expect(await kms.server.verifyAudit()).toMatchObject({ ok: true, records: 21 });
    const last = (await decodeAuditLog()).at(-1);
    expect(last).toMatchObject({ seq: 21, operation: 'DescribeKey', keyArn, outcome: 'Success' });
  });
  it('a final append cut short by a crash is not tampering: verify notes it, and the KMS cuts it off and continues the chain', async () => {
    const kms = await startServer();
    await kms.server.close();
    const intact = await readFile(auditPath, 'utf8');
    const before = await verify();
    expect(before).toMatchObject({ ok: true, problems: [] });
    expect(before.tornTail).toBeUndefined();
    const torn = 'QUJD'.repeat(20); // 80 bytes of a line whose write never finished (no newline)
    await writeFile(auditPath, `${intact}${torn}`);
    expect(await verify()).toMatchObject({ ok: true, records: before.records, problems: [], tornTail: { bytes: 80 } });
    // The last record is anchored in the store: cutting its newline off makes it a torn line, and that is tampering.
    await writeFile(auditPath, intact.slice(0, -1));
    expect((await verify()).ok).toBe(false);

    await writeFile(auditPath, `${intact}${torn}`);
    await kms.restart();
    expect(await readFile(auditPath, 'utf8')).toBe(intact);
    await kms.client().describeKey(keyArn);
    expect(await kms.server.verifyAudit()).toMatchObject({ ok: true, records: before.records + 1 });
  });
});
