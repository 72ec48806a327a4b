// The storage engine against a real KMS and real files: encryption at rest, integrity, the kill switch, bucket keys, durability.
import { access, cp, readdir, readFile, readlink, stat, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestStack, type TestStack } from './helpers.js';

let stack: TestStack;
beforeAll(async () => {
  stack = await startTestStack();
});
afterAll(async () => {
  await stack.stop();
});

/** How long after a KMS key is disabled the engine may still serve objects under it (its cached bucket keys' lifetime). */
const KILL_SWITCH_MS = 1000;

const body = (bytes: Buffer | string): Readable => Readable.from([Buffer.from(bytes)]);

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await walk(path)));
    else out.push(path);
  }
  return out;
}

describe('storage engine', () => {
  it('round-trips objects with metadata, ranges and listing', async () => {
    const { engine } = stack;
    await engine.createBucket('round-trip');
    await expect(engine.createBucket('round-trip')).rejects.toMatchObject({ code: 'BUCKET_ALREADY_EXISTS' });
    await expect(engine.createBucket('Bad_Name')).rejects.toMatchObject({ code: 'INVALID_BUCKET_NAME' });
    const data = randomBytes(300_000);
    const meta = await engine.putObject({ bucket: 'round-trip', key: 'dir/a.bin', body: body(data), contentType: 'application/x-test', userMetadata: { owner: 'me' } });
    expect(meta.size).toBe(300_000);
    expect(meta.etag).toMatch(/^"[0-9a-f]{32}"$/);
    const got = await engine.getObject('round-trip', 'dir/a.bin');
    expect((await buffer(got.body)).equals(data)).toBe(true);
    expect(got.meta).toMatchObject({ contentType: 'application/x-test', userMetadata: { owner: 'me' }, encryption: { algorithm: 'AES256' } });
    const ranged = await engine.getObject('round-trip', 'dir/a.bin', { start: 70_000, end: 70_009 });
    expect((await buffer(ranged.body)).equals(data.subarray(70_000, 70_010))).toBe(true);
    expect((await buffer((await engine.getObject('round-trip', 'dir/a.bin', { suffixLength: 5 })).body)).equals(data.subarray(-5))).toBe(true);
    await expect(engine.getObject('round-trip', 'dir/a.bin', { start: 300_000 })).rejects.toMatchObject({ code: 'RANGE_NOT_SATISFIABLE' });

    for (const key of ['dir/b.txt', 'dir/sub/c.txt', 'e.txt', 'dir/sub/d.txt']) await engine.putObject({ bucket: 'round-trip', key, body: body(key) });
    const top = engine.listObjects({ bucket: 'round-trip', delimiter: '/' });
    expect(top.commonPrefixes).toEqual(['dir/']);
    expect(top.objects.map((o) => o.key)).toEqual(['e.txt']);
    const dir = engine.listObjects({ bucket: 'round-trip', prefix: 'dir/', delimiter: '/' });
    expect(dir.objects.map((o) => o.key)).toEqual(['dir/a.bin', 'dir/b.txt']);
    expect(dir.commonPrefixes).toEqual(['dir/sub/']);
    const page1 = engine.listObjects({ bucket: 'round-trip', maxKeys: 2 });
    expect(page1.isTruncated).toBe(true);
    const page2 = engine.listObjects({ bucket: 'round-trip', maxKeys: 10, after: page1.nextAfter });
    expect([...page1.objects, ...page2.objects].map((o) => o.key)).toEqual(['dir/a.bin', 'dir/b.txt', 'dir/sub/c.txt', 'dir/sub/d.txt', 'e.txt']);

    await expect(engine.deleteBucket('round-trip')).rejects.toMatchObject({ code: 'BUCKET_NOT_EMPTY' });
    await engine.deleteObject('round-trip', 'e.txt');
    await engine.deleteObject('round-trip', 'e.txt');
    await expect(engine.getObject('round-trip', 'e.txt')).rejects.toMatchObject({ code: 'OBJECT_NOT_FOUND' });
    await expect(engine.getObject('nope-bucket', 'e.txt')).rejects.toMatchObject({ code: 'BUCKET_NOT_FOUND' });
  });

  it('stores nothing in plaintext: content, names and metadata canaries never reach the disk', async () => {
    const { engine } = stack;
    const canary = 'CANARY-0f5c2b-plaintext-must-not-hit-disk';
    await engine.createBucket('canary-bucket');
    const key = await stack.kms.createKey({ description: 'canary' });
    await engine.putBucketEncryption('canary-bucket', { algorithm: 'aws:kms', kmsKeyId: key.keyId, bucketKeyEnabled: true });
    await engine.putObject({
      bucket: 'canary-bucket',
      key: `reports/${canary}.csv`,
      body: body(`${canary}\n`.repeat(5000)),
      contentType: `text/${canary}`,
      userMetadata: { note: canary },
    });
    const upload = await engine.createMultipartUpload({ bucket: 'canary-bucket', key: `mp-${canary}`, userMetadata: { x: canary } });
    await engine.uploadPart({ bucket: 'canary-bucket', key: `mp-${canary}`, uploadId: upload.uploadId, partNumber: 1, body: body(canary.repeat(100)) });
    const files = await walk(stack.dir);
    expect(files.length).toBeGreaterThan(5);
    const needles = [canary, Buffer.from(canary).toString('base64').slice(0, 20), 'canary-bucket', 'reports/'];
    for (const file of files) {
      expect(file.includes(canary) || file.includes('canary-bucket')).toBe(false);
      const bytes = await readFile(file);
      for (const needle of needles) expect(bytes.includes(Buffer.from(needle)), `${needle} found in ${file}`).toBe(false);
    }
    await engine.abortMultipartUpload('canary-bucket', `mp-${canary}`, upload.uploadId);
  });

  it('never returns altered bytes: a bit flip or a swapped blob makes GET fail', async () => {
    const { engine } = stack;
    await engine.createBucket('tamper');
    const dataFiles = async (): Promise<string[]> => (await walk(join(stack.dir, 'objects'))).filter((f) => f.endsWith('.data'));
    const before = new Set(await dataFiles());
    const a = randomBytes(200_000);
    await engine.putObject({ bucket: 'tamper', key: 'a', body: body(a) });
    const fa = (await dataFiles()).find((f) => !before.has(f)) as string;
    before.add(fa);
    const b = randomBytes(200_000);
    await engine.putObject({ bucket: 'tamper', key: 'b', body: body(b) });
    const fb = (await dataFiles()).find((f) => !before.has(f)) as string;
    expect(fa).toBeDefined();
    expect(fb).toBeDefined();
    const read = async (key: string): Promise<Buffer> => buffer((await engine.getObject('tamper', key)).body);
    const [ba, bb] = [await readFile(fa), await readFile(fb)];

    // Swap the two bodies on disk: each is then under the other's name and context.
    await writeFile(fa, bb);
    await writeFile(fb, ba);
    for (const key of ['a', 'b']) {
      await expect(read(key)).rejects.toMatchObject({ code: expect.stringMatching(/^CIPHERTEXT_(AUTH_FAILED|MALFORMED)$/) as string });
    }
    await writeFile(fa, ba);
    await writeFile(fb, bb);

    // Flip single bits at many positions (header, body, tags): GET fails, or — never — returns other bytes.
    for (const position of [3, 40, 120, 5000, 65_600, 100_000, 150_000, ba.length - 1]) {
      const flipped = Buffer.from(ba);
      flipped[position] = (flipped[position] as number) ^ 0x10;
      await writeFile(fa, flipped);
      await expect(read('a')).rejects.toMatchObject({ code: expect.stringMatching(/^(CIPHERTEXT_AUTH_FAILED|CIPHERTEXT_MALFORMED|KMS_INVALID_CIPHERTEXT)$/) as string });
    }
    await writeFile(fa, ba);
    expect((await read('a')).equals(a)).toBe(true);
    // Truncation: the recorded size is authentic, so a shorter body is refused before any byte is served.
    await writeFile(fa, ba.subarray(0, ba.length - 65_552));
    await expect(read('a')).rejects.toMatchObject({ code: 'CIPHERTEXT_MALFORMED' });
    await writeFile(fa, ba);
    expect((await read('b')).equals(b)).toBe(true);
  });

  it('the kill switch: a disabled KMS key stops GET and PUT within 1 s; enabling restores access', async () => {
    const { engine } = stack;
    const key = await stack.kms.createKey({ description: 'kill switch' });
    await engine.createBucket('kill-switch');
    await engine.putBucketEncryption('kill-switch', { algorithm: 'aws:kms', kmsKeyId: key.keyId, bucketKeyEnabled: true });
    const data = randomBytes(1000);
    await engine.putObject({ bucket: 'kill-switch', key: 'k', body: body(data) });
    expect((await buffer((await engine.getObject('kill-switch', 'k')).body)).equals(data)).toBe(true);
    expect(engine.headObject('kill-switch', 'k').encryption).toEqual({ algorithm: 'aws:kms', kmsKeyArn: key.arn, bucketKeyEnabled: true });

    await stack.kms.disableKey(key.keyId);
    // The contract: no GET that starts more than KILL_SWITCH_MS after the key was disabled is served.
    // Measured on when each GET started, not when it ended, so a slow machine cannot fail it.
    const disabledAt = Date.now();
    let lastServedStartMs = -1;
    let refused = false;
    while (Date.now() - disabledAt < 3 * KILL_SWITCH_MS) {
      const startedMs = Date.now() - disabledAt;
      try {
        await buffer((await engine.getObject('kill-switch', 'k')).body);
        lastServedStartMs = startedMs;
      } catch (error) {
        expect(error).toMatchObject({ code: 'KMS_KEY_DISABLED' });
        expect(String((error as Error).message)).toContain(key.arn);
        refused = true;
        break;
      }
      await sleep(25);
    }
    expect(refused, 'a GET was refused after the key was disabled').toBe(true);
    expect(lastServedStartMs).toBeLessThanOrEqual(KILL_SWITCH_MS + 10); // 10 ms: the two clocks' rounding
    await expect(engine.putObject({ bucket: 'kill-switch', key: 'k2', body: body('x') })).rejects.toMatchObject({ code: 'KMS_KEY_DISABLED' });
    expect(() => engine.headObject('kill-switch', 'k2')).toThrow(expect.objectContaining({ code: 'OBJECT_NOT_FOUND' }) as Error);

    await stack.kms.enableKey(key.keyId);
    expect((await buffer((await engine.getObject('kill-switch', 'k')).body)).equals(data)).toBe(true);

    await stack.kms.scheduleKeyDeletion(key.keyId, 7);
    await sleep(1100);
    await expect(engine.getObject('kill-switch', 'k')).rejects.toMatchObject({ code: 'KMS_KEY_PENDING_DELETION' });
    await stack.kms.cancelKeyDeletion(key.keyId);
    await stack.kms.enableKey(key.keyId);
  });

  // How fast the GETs are is reported by bench/engine-reads.ts, not asserted here.
  it('with bucket keys and live key events, 1,000 GETs of distinct objects cost at most 2 KMS calls, however long they take', async () => {
    const { engine } = stack;
    await engine.createBucket('bucket-keys');
    for (let i = 0; i < 1000; i++) await engine.putObject({ bucket: 'bucket-keys', key: `o/${i}`, body: body(`object ${i}`) });
    await sleep(1100); // past the 1 s bound: without live key events the cached bucket key would have expired
    // With the KMS's key-event stream live, the bucket key stays cached however long the GETs take.
    expect(engine.keyEventStatus().state).toBe('live');
    const before = { ...stack.calls };
    const started = Date.now();
    for (let i = 0; i < 1000; i += 50) {
      await Promise.all(Array.from({ length: 50 }, async (_, j) => buffer((await engine.getObject('bucket-keys', `o/${i + j}`)).body)));
    }
    const elapsed = Date.now() - started;
    const kmsCalls = Object.entries(stack.calls).reduce((sum, [op, n]) => sum + n - (before[op] ?? 0), 0);
    expect(kmsCalls, `${kmsCalls} KMS calls in ${elapsed} ms`).toBeLessThanOrEqual(2);
  });

  it('multipart: order, size and ETag rules; abort cleans up', async () => {
    const { engine } = stack;
    await engine.createBucket('multi');
    const up = await engine.createMultipartUpload({ bucket: 'multi', key: 'big', contentType: 'application/zip' });
    const p1 = randomBytes(5 * 1024 * 1024);
    const p2 = randomBytes(1234);
    const e1 = await engine.uploadPart({ bucket: 'multi', key: 'big', uploadId: up.uploadId, partNumber: 1, body: body(p1) });
    const e2 = await engine.uploadPart({ bucket: 'multi', key: 'big', uploadId: up.uploadId, partNumber: 2, body: body(p2) });
    expect(engine.listParts('multi', 'big', up.uploadId).parts.map((p) => p.partNumber)).toEqual([1, 2]);
    await expect(
      engine.completeMultipartUpload({ bucket: 'multi', key: 'big', uploadId: up.uploadId, parts: [{ partNumber: 2, etag: e2.etag }, { partNumber: 1, etag: e1.etag }] }),
    ).rejects.toMatchObject({ code: 'INVALID_PART_ORDER' });
    await expect(
      engine.completeMultipartUpload({ bucket: 'multi', key: 'big', uploadId: up.uploadId, parts: [{ partNumber: 1, etag: '"00"' }] }),
    ).rejects.toMatchObject({ code: 'INVALID_PART' });
    const meta = await engine.completeMultipartUpload({ bucket: 'multi', key: 'big', uploadId: up.uploadId, parts: [{ partNumber: 1, etag: e1.etag }, { partNumber: 2, etag: e2.etag }] });
    expect(meta.etag).toMatch(/^"[0-9a-f]{32}-2"$/);
    expect(meta.size).toBe(p1.length + p2.length);
    expect((await buffer((await engine.getObject('multi', 'big')).body)).equals(Buffer.concat([p1, p2]))).toBe(true);
    expect(() => engine.listParts('multi', 'big', up.uploadId)).toThrow(expect.objectContaining({ code: 'UPLOAD_NOT_FOUND' }) as Error);

    const small = await engine.createMultipartUpload({ bucket: 'multi', key: 'small' });
    const s1 = await engine.uploadPart({ bucket: 'multi', key: 'small', uploadId: small.uploadId, partNumber: 1, body: body('tiny') });
    const s2 = await engine.uploadPart({ bucket: 'multi', key: 'small', uploadId: small.uploadId, partNumber: 2, body: body('tiny') });
    await expect(
      engine.completeMultipartUpload({ bucket: 'multi', key: 'small', uploadId: small.uploadId, parts: [{ partNumber: 1, etag: s1.etag }, { partNumber: 2, etag: s2.etag }] }),
    ).rejects.toMatchObject({ code: 'ENTITY_TOO_SMALL' });
    await engine.abortMultipartUpload('multi', 'small', small.uploadId);
    const leftovers = (await walk(join(stack.dir, 'objects'))).filter((f) => f.includes(small.uploadId));
    expect(leftovers).toEqual([]);
  });

  it('multipart: completing links the parts in place without copying; ranges span parts; moved or altered parts fail; replace, delete and reopen clean up', async () => {
    const { engine } = stack;
    const MiB = 1024 * 1024;
    await engine.createBucket('compose');
    const dataFiles = async (): Promise<string[]> => (await walk(join(stack.dir, 'objects'))).filter((f) => f.endsWith('.data'));
    const upload = async (key: string, parts: Buffer[]): Promise<{ files: string[]; uploadDir: string; uploadId: string; complete: () => Promise<unknown> }> => {
      const up = await engine.createMultipartUpload({ bucket: 'compose', key });
      const listed: Array<{ partNumber: number; etag: string }> = [];
      for (const [i, part] of parts.entries()) {
        const { etag } = await engine.uploadPart({ bucket: 'compose', key, uploadId: up.uploadId, partNumber: i + 1, body: body(part) });
        listed.push({ partNumber: i + 1, etag });
      }
      const partFiles = (await dataFiles()).filter((f) => f.includes(up.uploadId));
      const inodes = new Map(await Promise.all(partFiles.map(async (f) => [(await stat(f)).ino, f] as const)));
      const files: string[] = [];
      return {
        files,
        uploadDir: dirname(partFiles[0] as string),
        uploadId: up.uploadId,
        complete: async () => {
          await engine.completeMultipartUpload({ bucket: 'compose', key, uploadId: up.uploadId, parts: listed });
          // The object's bodies are the very files the parts were written to: no byte was copied.
          for (const file of await dataFiles()) if (inodes.has((await stat(file)).ino)) files.push(file);
          files.sort((a, b) => Number(/\.p(\d+)\.data$/.exec(a)?.[1]) - Number(/\.p(\d+)\.data$/.exec(b)?.[1]));
        },
      };
    };
    const parts = [randomBytes(5 * MiB), randomBytes(5 * MiB), randomBytes(70_000)];
    const whole = Buffer.concat(parts);
    const obj = await upload('obj', parts);
    const kept = join(stack.dir, 'kept-upload');
    await cp(obj.uploadDir, kept, { recursive: true });
    await obj.complete();
    expect(obj.files).toHaveLength(3);
    expect((await dataFiles()).filter((f) => f.includes('uploads'))).toEqual([]);

    const read = async (range?: Parameters<typeof engine.getObject>[2]): Promise<Buffer> => buffer((await engine.getObject('compose', 'obj', range)).body);
    expect((await read()).equals(whole)).toBe(true);
    for (const [start, end] of [[5 * MiB - 10, 5 * MiB + 9], [100, whole.length - 5], [10 * MiB, 10 * MiB + 69_999], [7, 7]] as const) {
      expect((await read({ start, end })).equals(whole.subarray(start, end + 1)), `${start}-${end}`).toBe(true);
    }
    expect((await read({ suffixLength: 1000 })).equals(whole.subarray(whole.length - 1000))).toBe(true);
    // A body dropped unread, or after its first part, leaves no object file open.
    const openBodies = async (): Promise<number> => {
      let count = 0;
      for (const fd of await readdir('/proc/self/fd')) {
        const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
        if (target.startsWith(join(stack.dir, 'objects'))) count++;
      }
      return count;
    };
    const unread = (await engine.getObject('compose', 'obj')).body;
    unread.destroy();
    const partly = (await engine.getObject('compose', 'obj')).body;
    await new Promise<void>((resolve) => partly.once('data', () => resolve()));
    partly.destroy();
    await sleep(50);
    expect(await openBodies()).toBe(0);
    // A copy reads through the parts and writes one body of its own.
    await engine.copyObject({ sourceBucket: 'compose', sourceKey: 'obj', bucket: 'compose', key: 'copy', metadataDirective: 'COPY' });
    expect((await buffer((await engine.getObject('compose', 'copy')).body)).equals(whole)).toBe(true);

    // Each part is bound to its position: swapping two (same-sized) parts makes both unreadable.
    const [f1, f2, f3] = obj.files as [string, string, string];
    const [b1, b2, b3] = await Promise.all([readFile(f1), readFile(f2), readFile(f3)]);
    await writeFile(f1, b2);
    await writeFile(f2, b1);
    await expect(read()).rejects.toMatchObject({ code: 'CIPHERTEXT_AUTH_FAILED' });
    await expect(read({ start: 5 * MiB, end: 5 * MiB + 1 })).rejects.toMatchObject({ code: 'CIPHERTEXT_AUTH_FAILED' });
    expect((await read({ start: 10 * MiB, end: 10 * MiB + 1 })).equals(whole.subarray(10 * MiB, 10 * MiB + 2))).toBe(true); // untouched part
    // …and to its object: the same part of another object does not fit either.
    const other = await upload('other', [randomBytes(5 * MiB), randomBytes(5 * MiB), randomBytes(70_000)]);
    await other.complete();
    await writeFile(f1, await readFile(other.files[0] as string));
    await writeFile(f2, b2);
    await expect(read({ start: 0, end: 9 })).rejects.toMatchObject({ code: 'CIPHERTEXT_AUTH_FAILED' });
    await writeFile(f1, b1);
    // A bit flip in the last part fails the stream when it gets there, never yielding other bytes.
    const flipped = Buffer.from(b3);
    flipped[flipped.length - 100] = (flipped[flipped.length - 100] as number) ^ 1;
    await writeFile(f3, flipped);
    await expect(read()).rejects.toMatchObject({ code: 'CIPHERTEXT_AUTH_FAILED' });
    await writeFile(f3, b3);

    // A crash after the commit but before the upload's directory was removed: the next start finishes the job.
    await cp(kept, obj.uploadDir, { recursive: true });
    await stack.reopen();
    expect(() => stack.engine.listParts('compose', 'obj', obj.uploadId)).toThrow(expect.objectContaining({ code: 'UPLOAD_NOT_FOUND' }) as Error);
    await expect(access(obj.uploadDir)).rejects.toMatchObject({ code: 'ENOENT' });
    expect((await buffer((await stack.engine.getObject('compose', 'obj')).body)).equals(whole)).toBe(true);
    expect(stack.engine.headObject('compose', 'obj')).toMatchObject({ size: whole.length, partsCount: 3 });
    // Replacing or deleting the object removes every part's body.
    await stack.engine.putObject({ bucket: 'compose', key: 'obj', body: body('small now') });
    await stack.engine.deleteObject('compose', 'other');
    for (const file of [...obj.files, ...other.files]) await expect(access(file)).rejects.toMatchObject({ code: 'ENOENT' });
    expect((await buffer((await stack.engine.getObject('compose', 'obj')).body)).toString()).toBe('small now');
  });

  it('an interrupted or mismatched upload leaves nothing visible, and state survives a reopen', async () => {
    const { engine } = stack;
    await engine.createBucket('durable');
    const broken = new Readable({
      read() {
        this.push(randomBytes(64 * 1024));
        if (Math.random() < 0.2) this.destroy(new Error('client went away'));
      },
    });
    await expect(engine.putObject({ bucket: 'durable', key: 'half', body: broken })).rejects.toBeDefined();
    expect(() => engine.headObject('durable', 'half')).toThrow(expect.objectContaining({ code: 'OBJECT_NOT_FOUND' }) as Error);
    await expect(engine.putObject({ bucket: 'durable', key: 'short', body: body('abc'), expectedLength: 10 })).rejects.toMatchObject({ code: 'INCOMPLETE_BODY' });
    await expect(engine.putObject({ bucket: 'durable', key: 'md5', body: body('abc'), contentMd5: Buffer.alloc(16).toString('base64') })).rejects.toMatchObject({
      code: 'DIGEST_MISMATCH',
    });
    await expect(engine.putObject({ bucket: 'durable', key: 'crc', body: body('abc'), checksums: { CRC32: 'AAAAAA==' } })).rejects.toMatchObject({ code: 'DIGEST_MISMATCH' });
    const good = await engine.putObject({ bucket: 'durable', key: 'crc-ok', body: body('abc'), checksums: { CRC32: 'NSRBwg==' } });
    expect(good.checksums).toEqual({ CRC32: 'NSRBwg==' });
    expect(await readdir(join(stack.dir, 'objects', 'tmp'))).toEqual([]);

    await stack.reopen();
    expect(stack.engine.listObjects({ bucket: 'durable' }).objects.map((o) => o.key)).toEqual(['crc-ok']);
    expect((await buffer((await stack.engine.getObject('durable', 'crc-ok')).body)).toString()).toBe('abc');
    expect(stack.engine.listBuckets().map((b) => b.name)).toContain('multi');
  });
});
