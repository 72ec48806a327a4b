// Durability of the embedded KMS: state across restarts, a kill -9 in the middle of CreateKey calls, and crypto-shredding on disk.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '@airlock/common';
import { createCertificateAuthority, issueServerCertificate } from '@airlock/pki';
import { createAwsKms } from '../src/aws-kms.js';
import { verifyKmsAudit } from '../src/server.js';
import { startTestKms, type TestKms } from './helpers.js';

const DAY = 24 * 3600 * 1000;
const version = (blob: Buffer): number => blob.readUInt32BE(20);
const silentLogger = (): ReturnType<typeof createLogger> => createLogger({ level: 'silent' });

describe('restart durability', () => {
  let kms: TestKms;
  beforeAll(async () => {
    kms = await startTestKms();
  });
  afterAll(async () => {
    await kms.stop();
  });

  it('keeps every key state, alias, rotation setting and key version across a restart', async () => {
    const client = kms.client();
    const rotated = await client.createKey({ description: 'rotated twice' });
    const disabled = await client.createKey({ description: 'disabled' });
    const pending = await client.createKey({ description: 'pending deletion' });
    await client.createAlias('alias/rotated', rotated.keyId);
    await client.createAlias('alias/disabled', disabled.keyId);
    await client.createAlias('alias/pending', pending.keyId);

    const v1 = await client.encrypt(rotated.keyId, Buffer.from('under v1'), { v: '1' });
    await client.rotateKeyOnDemand(rotated.keyId);
    const v2 = await client.encrypt(rotated.keyId, Buffer.from('under v2'), { v: '2' });
    await client.rotateKeyOnDemand(rotated.keyId);
    await client.enableKeyRotation(rotated.keyId, 180);
    const rotationBefore = await client.getKeyRotationStatus(rotated.keyId);
    const disabledBlob = await client.encrypt(disabled.keyId, Buffer.from('disabled data'), {});
    const pendingBlob = await client.encrypt(pending.keyId, Buffer.from('pending data'), {});
    await client.disableKey(disabled.keyId);
    const { deletionDate } = await client.scheduleKeyDeletion(pending.keyId, 7);
    expect([version(v1.ciphertextBlob), version(v2.ciphertextBlob)]).toEqual([1, 2]);

    await kms.restart();
    const after = kms.client();
    const loaded = kms.logs.filter((line) => line.includes('"msg":"KMS state loaded"')).at(-1);
    expect(JSON.parse(loaded ?? '{}')).toMatchObject({ keys: 3 });

    expect((await after.describeKey(rotated.keyId)).state).toBe('Enabled');
    expect((await after.describeKey(disabled.keyId)).state).toBe('Disabled');
    const pendingMeta = await after.describeKey(pending.keyId);
    expect(pendingMeta.state).toBe('PendingDeletion');
    expect(pendingMeta.deletionDate?.getTime()).toBe(deletionDate?.getTime());
    expect((await after.describeKey('alias/rotated')).keyId).toBe(rotated.keyId);
    expect((await after.describeKey('alias/disabled')).keyId).toBe(disabled.keyId);
    expect((await after.describeKey('alias/pending')).keyId).toBe(pending.keyId);
    const aliases = await after.listAliases();
    expect(aliases.map((a) => [a.aliasName, a.targetKeyId])).toEqual(
      expect.arrayContaining([
        ['alias/rotated', rotated.keyId],
        ['alias/disabled', disabled.keyId],
        ['alias/pending', pending.keyId],
      ]),
    );
    expect(await after.getKeyRotationStatus(rotated.keyId)).toEqual(rotationBefore);

    // Old versions still decrypt; new blobs use the newest version, 3.
    expect((await after.decrypt(v1.ciphertextBlob, { v: '1' })).plaintext.toString()).toBe('under v1');
    expect((await after.decrypt(v2.ciphertextBlob, { v: '2' })).plaintext.toString()).toBe('under v2');
    const v3 = await after.encrypt('alias/rotated', Buffer.from('under v3'), {});
    expect(version(v3.ciphertextBlob)).toBe(3);
    expect((await after.decrypt(v3.ciphertextBlob, {})).plaintext.toString()).toBe('under v3');

    // The states still bite.
    await expect(after.decrypt(disabledBlob.ciphertextBlob, {})).rejects.toMatchObject({ code: 'KMS_KEY_DISABLED', details: { awsErrorType: 'DisabledException' } });
    await expect(after.decrypt(pendingBlob.ciphertextBlob, {})).rejects.toMatchObject({
      code: 'KMS_KEY_PENDING_DELETION',
      details: { awsErrorType: 'KMSInvalidStateException' },
    });
    await after.enableKey(disabled.keyId);
    expect((await after.decrypt(disabledBlob.ciphertextBlob, {})).plaintext.toString()).toBe('disabled data');
    await after.cancelKeyDeletion(pending.keyId);
    await after.enableKey(pending.keyId);
    expect((await after.decrypt(pendingBlob.ciphertextBlob, {})).plaintext.toString()).toBe('pending data');
    expect((await kms.server.verifyAudit()).ok).toBe(true);
  });
});

const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const SERVE = fileURLToPath(new URL('./fixtures/serve.ts', import.meta.url));

interface Child {
  readonly process: ChildProcess;
  readonly url: string;
  readonly accessKeyId: string | null;
  readonly secretAccessKey: string | null;
  readonly stderr: () => string;
}

/** Starts the KMS fixture in a child process (workspace packages from their TypeScript sources) and waits for its JSON line. */
async function startChild(dataDir: string, certFile: string, keyFile: string): Promise<Child> {
  const child = spawn(process.execPath, ['--conditions=airlock-source', '--import', 'tsx', SERVE, dataDir, certFile, keyFile], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
  });
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  try {
    const first = await Promise.race([
      once(lines, 'line') as Promise<[string]>,
      once(child, 'exit').then(([code]) => {
        throw new Error(`KMS child exited (${String(code)}) before listening: ${stderr}`);
      }),
      new Promise<never>((_resolve, reject) => setTimeout(() => reject(new Error(`KMS child did not start in 30 s: ${stderr}`)), 30_000).unref()),
    ]);
    const info = JSON.parse(first[0]) as { url: string; accessKeyId: string | null; secretAccessKey: string | null };
    return { process: child, ...info, stderr: () => stderr };
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  } finally {
    lines.close();
  }
}

async function stopChild(child: Child, signal: NodeJS.Signals): Promise<number | null> {
  if (child.process.exitCode !== null || child.process.signalCode !== null) return child.process.exitCode;
  const exited = once(child.process, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  child.process.kill(signal);
  const [code] = await exited;
  return code;
}

describe('kill -9 during CreateKey', () => {
  let kms: TestKms;
  const children: Child[] = [];
  beforeAll(async () => {
    // Only for its temporary directory and CA; the KMS under test runs in a child process.
    kms = await startTestKms();
  });
  afterEach(async () => {
    for (const child of children.splice(0)) await stopChild(child, 'SIGKILL');
  });
  afterAll(async () => {
    await kms.stop();
  });

  it('leaves a store that opens, lists and serves every key, and an audit log that verifies', async () => {
    const ca = await createCertificateAuthority();
    const leaf = await issueServerCertificate({ ca, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
    const certFile = join(kms.dir, 'child-cert.pem');
    const keyFile = join(kms.dir, 'child-key.pem');
    await writeFile(certFile, leaf.cert);
    await writeFile(keyFile, leaf.key, { mode: 0o600 });
    const dataDir = join(kms.dir, 'child-kms');

    const first = await startChild(dataDir, certFile, keyFile);
    children.push(first);
    expect(first.accessKeyId).not.toBeNull();
    const credentials = { accessKeyId: first.accessKeyId as string, secretAccessKey: first.secretAccessKey as string };
    const client = createAwsKms({ endpoint: first.url, credentials, caBundle: ca.cert, maxAttempts: 1, requestTimeoutMs: 10_000 });
    // Warm up: the key store has something in it before the storm.
    const before = await client.createKey({ description: 'before the kill' });

    const acknowledged: string[] = [];
    let failed = 0;
    const calls = Array.from({ length: 200 }, async (_, i) =>
      client.createKey({ description: `storm ${i}` }).then(
        (key) => void acknowledged.push(key.keyId),
        () => void (failed += 1),
      ),
    );
    // Kill 50 ms into the stream of commits (the first response takes ~100 ms: 64 TLS handshakes), so
    // that some calls are acknowledged, some are mid-transaction and most are still queued.
    const deadline = Date.now() + 10_000;
    while (acknowledged.length === 0 && failed === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 1));
    await new Promise((resolve) => setTimeout(resolve, 50));
    const acknowledgedAtKill = acknowledged.length;
    await stopChild(first, 'SIGKILL');
    await Promise.all(calls);
    client.destroy();
    // The kill must have landed while requests were still in flight.
    expect(acknowledgedAtKill).toBeGreaterThan(0);
    expect(failed).toBeGreaterThan(0);

    const second = await startChild(dataDir, certFile, keyFile);
    children.push(second);
    expect(second.accessKeyId).toBeNull();
    const again = createAwsKms({ endpoint: second.url, credentials, caBundle: ca.cert, maxAttempts: 1 });
    try {
      const listed = (await again.listKeys()).map((k) => k.keyId);
      // Everything acknowledged before the kill is durable; unacknowledged calls may or may not have committed.
      expect(listed).toEqual(expect.arrayContaining([before.keyId, ...acknowledged]));
      expect(listed.length).toBeLessThanOrEqual(201);
      for (const keyId of listed) {
        expect((await again.describeKey(keyId)).state).toBe('Enabled');
        const dataKey = await again.generateDataKey(keyId, { k: keyId });
        expect((await again.decrypt(dataKey.ciphertextBlob, { k: keyId })).plaintext.equals(dataKey.plaintext)).toBe(true);
      }
    } finally {
      again.destroy();
    }
    expect(await stopChild(second, 'SIGTERM')).toBe(0);

    const audit = await verifyKmsAudit({ dataDir, logger: silentLogger() });
    expect(audit.problems).toEqual([]);
    expect(audit.ok).toBe(true);
    expect(audit.records).toBeGreaterThan(0);
  }, 120_000);
});

describe('crypto-shredding on disk', () => {
  let kms: TestKms;
  beforeAll(async () => {
    kms = await startTestKms();
  });
  afterAll(async () => {
    await kms.stop();
  });

  interface Row {
    readonly id: Buffer;
    readonly kind: string;
    readonly body: Buffer;
  }

  const dbPath = (): string => join(kms.dir, 'kms', 'kms.db');

  function readRows(): Row[] {
    const db = new Database(dbPath(), { readonly: true, fileMustExist: true });
    try {
      return db.prepare<[], Row>('SELECT id, kind, body FROM records').all();
    } finally {
      db.close();
    }
  }

  /** kms.db and kms.db-wal as raw bytes (the WAL may be absent or empty). */
  async function fileBytes(): Promise<Buffer> {
    const wal = await readFile(`${dbPath()}-wal`).catch(() => Buffer.alloc(0));
    return Buffer.concat([await readFile(dbPath()), wal]);
  }

  /** Whether any 16-byte slice of `needle` (at 16-byte steps) appears in `haystack`. */
  function anyPieceFound(haystack: Buffer, needle: Buffer): boolean {
    for (let offset = 0; offset + 16 <= needle.length; offset += 16) {
      if (haystack.includes(needle.subarray(offset, offset + 16))) return true;
    }
    return false;
  }

  it('after deletion completes, the key is gone over the API and its record is gone from the database files', async () => {
    const client = kms.client();
    const rowsBefore = readRows();
    const key = await client.createKey({ description: 'to be shredded' });
    const known = new Set(rowsBefore.map((r) => r.id.toString('hex')));
    const created = readRows().filter((r) => r.kind === 'key' && !known.has(r.id.toString('hex')));
    expect(created).toHaveLength(1);
    const record = created[0] as Row;
    await client.createAlias('alias/shredded', key.keyId);
    const blob = (await client.encrypt(key.keyId, Buffer.from('shred me'), { doc: 'x' })).ciphertextBlob;
    // Our search works: the sealed record is in the files now.
    expect((await fileBytes()).includes(record.body)).toBe(true);

    await client.scheduleKeyDeletion(key.keyId, 7);
    const pendingRecord = readRows().find((r) => r.id.equals(record.id)) as Row;
    expect(pendingRecord.body.equals(record.body)).toBe(false);
    kms.clock.offsetMs = 7 * DAY + 60_000;
    kms.server.maintain();

    await expect(client.describeKey(key.keyId)).rejects.toMatchObject({ code: 'KMS_KEY_NOT_FOUND', details: { awsErrorType: 'NotFoundException' } });
    await expect(client.decrypt(blob, { doc: 'x' })).rejects.toMatchObject({ code: 'KMS_KEY_NOT_FOUND', details: { awsErrorType: 'NotFoundException' } });
    await expect(client.describeKey('alias/shredded')).rejects.toMatchObject({ code: 'KMS_KEY_NOT_FOUND' });
    expect(readRows().some((r) => r.id.equals(record.id))).toBe(false);

    const bytes = await fileBytes();
    expect(anyPieceFound(bytes, record.body)).toBe(false);
    expect(anyPieceFound(bytes, pendingRecord.body)).toBe(false);
    // Not even the row id (an HMAC of the key id) is left behind.
    expect(bytes.includes(record.id)).toBe(false);
    kms.clock.offsetMs = 0;
  });
});
