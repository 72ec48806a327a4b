// The run-data store against a real embedded KMS and object store over TLS, with real HPKE: sealed inputs, bundles, presigned bundle uploads (curl), result documents, the kill switch.
import { execFile } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { uuidV7 } from '@airlock/common';
import { generateSealingKeyPair, openSealed, seal } from '@airlock/crypto';
import { presignAad, runInputsAad, runResultAad } from '@airlock/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openKmsKeyVault } from '../src/internal/key-vault.js';
import { createRunDataStore, RUN_DATA_BUCKET, type RunDataStore } from '../src/internal/run-data-store.js';
import { startDataPlaneStorage, type DataPlaneStorage } from './run-data-helpers.js';

const run = promisify(execFile);
let storage: DataPlaneStorage;
let store: RunDataStore;

beforeAll(async () => {
  storage = await startDataPlaneStorage();
  store = await createRunDataStore({ objectStore: storage.objectStore, sealingKeys: storage.sealingKeys });
}, 60_000);

afterAll(async () => {
  await storage.close();
});

/** Inputs as a client seals them (docs/runs.md step 8). */
async function sealInputs(project: string, task: string, inputs: unknown, recipient: Uint8Array = storage.sealingKeys.io.publicKey): Promise<Buffer> {
  return seal({ recipientPublicKey: recipient, purpose: 'io', plaintext: Buffer.from(JSON.stringify(inputs)), aad: runInputsAad(project, task) });
}

async function stored(key: string): Promise<Buffer | undefined> {
  return storage.objectStore.get(RUN_DATA_BUCKET, key).then(
    (stream) => buffer(stream),
    (error: { code?: string }) => {
      if (error.code === 'OBJECT_NOT_FOUND') return undefined;
      throw error;
    },
  );
}

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  return promise.then(
    () => undefined,
    (error: { code?: string }) => error.code ?? 'not an AirlockError',
  );
}

/** PUTs `body` with curl to a presigned URL with `headers`; returns the HTTP status. */
async function curlPut(url: string, body: Buffer, headers: Readonly<Record<string, string>>): Promise<number> {
  const file = join(storage.dir, `upload-${randomBytes(4).toString('hex')}`);
  await writeFile(file, body);
  const args = ['-sS', '--cacert', storage.caPath, '-X', 'PUT', '--data-binary', `@${file}`, '-o', '/dev/null', '-w', '%{http_code}', '-H', 'Content-Type:'];
  for (const [name, value] of Object.entries(headers)) args.push('-H', `${name}: ${value}`);
  const { stdout } = await run('curl', [...args, url], { timeout: 60_000 });
  return Number(stdout.trim());
}

describe('the run-data bucket', () => {
  it('exists with SSE-KMS under the data-plane key as its default, and opening the store again changes nothing', async () => {
    const encryption = await storage.objectStore.getBucketEncryption(RUN_DATA_BUCKET);
    expect(encryption).toMatchObject({ algorithm: 'aws:kms', kmsKeyArn: storage.vault.keyArn });
    await createRunDataStore({ objectStore: storage.objectStore, sealingKeys: storage.sealingKeys });
    expect((await storage.objectStore.getBucketEncryption(RUN_DATA_BUCKET)).kmsKeyArn).toBe(storage.vault.keyArn);
  });
});

describe('sealed inputs', () => {
  it('round trip: stored as sealed, at runs/<project>/<run>/inputs, read back and opened for the same task', async () => {
    const runId = uuidV7();
    const sealed = await sealInputs('team-a', 'hello', { name: 'World' });
    const result = await store.putInputs('team-a', runId, { name: 'hello' }, { sealed, keyId: storage.sealingKeys.io.keyId });
    expect(result).toEqual({ inputsRef: `v1/team-a/${runId}`, sha256: createHash('sha256').update(sealed).digest('hex') });
    expect((await stored(`runs/team-a/${runId}/inputs`))?.equals(sealed)).toBe(true);
    const head = await storage.objectStore.head(RUN_DATA_BUCKET, `runs/team-a/${runId}/inputs`);
    expect(head.encryption).toMatchObject({ algorithm: 'aws:kms', kmsKeyArn: storage.vault.keyArn });
    expect(JSON.parse((await store.readInputs('team-a', runId, result.inputsRef, 'hello'))!.toString())).toEqual({ name: 'World' });
    // A retried PutInputs with the same bytes is fine; other bytes for the same run are not.
    expect(await store.putInputs('team-a', runId, { name: 'hello' }, { sealed, keyId: storage.sealingKeys.io.keyId })).toEqual(result);
    const other = await sealInputs('team-a', 'hello', { name: 'Mallory' });
    expect(await codeOf(store.putInputs('team-a', runId, { name: 'hello' }, { sealed: other, keyId: storage.sealingKeys.io.keyId }))).toBe('ALREADY_EXISTS');
    expect((await stored(`runs/team-a/${runId}/inputs`))?.equals(sealed)).toBe(true);
    // A task without inputs has an empty reference.
    expect(await store.readInputs('team-a', runId, '', 'hello')).toBeUndefined();
  });

  it('a tampered payload is refused (CIPHERTEXT_AUTH_FAILED) and nothing is stored', async () => {
    const sealed = await sealInputs('team-a', 'hello', { name: 'World' });
    for (const at of [0, 12, 40, sealed.length - 20, sealed.length - 1]) {
      const runId = uuidV7();
      const tampered = Buffer.from(sealed);
      tampered[at] = (tampered[at] ?? 0) ^ 0x01;
      const code = await codeOf(store.putInputs('team-a', runId, { name: 'hello' }, { sealed: tampered, keyId: storage.sealingKeys.io.keyId }));
      expect(['CIPHERTEXT_AUTH_FAILED', 'CIPHERTEXT_MALFORMED', 'SEALED_WRONG_RECIPIENT'], `byte ${at}`).toContain(code);
      expect(await stored(`runs/team-a/${runId}/inputs`)).toBeUndefined();
    }
    const runId = uuidV7();
    const tampered = Buffer.from(sealed);
    tampered[sealed.length - 1] = (tampered[sealed.length - 1] ?? 0) ^ 0x80;
    expect(await codeOf(store.putInputs('team-a', runId, { name: 'hello' }, { sealed: tampered, keyId: storage.sealingKeys.io.keyId }))).toBe('CIPHERTEXT_AUTH_FAILED');
    expect(await stored(`runs/team-a/${runId}/inputs`)).toBeUndefined();
  });

  it('inputs sealed for another task or project are refused (CIPHERTEXT_AUTH_FAILED), and nothing is stored', async () => {
    const forOtherTask = await sealInputs('team-a', 'goodbye', { name: 'World' });
    const forOtherProject = await sealInputs('team-b', 'hello', { name: 'World' });
    for (const sealed of [forOtherTask, forOtherProject]) {
      const runId = uuidV7();
      expect(await codeOf(store.putInputs('team-a', runId, { name: 'hello' }, { sealed, keyId: storage.sealingKeys.io.keyId }))).toBe('CIPHERTEXT_AUTH_FAILED');
      expect(await stored(`runs/team-a/${runId}/inputs`)).toBeUndefined();
    }
  });

  it('inputs sealed to another key, or naming another key id, are SEALED_WRONG_RECIPIENT', async () => {
    const stranger = generateSealingKeyPair();
    const toStranger = await sealInputs('team-a', 'hello', { x: 1 }, stranger.publicKey);
    expect(await codeOf(store.putInputs('team-a', uuidV7(), { name: 'hello' }, { sealed: toStranger, keyId: storage.sealingKeys.io.keyId }))).toBe('SEALED_WRONG_RECIPIENT');
    const toSecrets = await sealInputs('team-a', 'hello', { x: 1 }, storage.sealingKeys.secrets.publicKey);
    expect(await codeOf(store.putInputs('team-a', uuidV7(), { name: 'hello' }, { sealed: toSecrets, keyId: storage.sealingKeys.io.keyId }))).toBe('SEALED_WRONG_RECIPIENT');
    const good = await sealInputs('team-a', 'hello', { x: 1 });
    expect(await codeOf(store.putInputs('team-a', uuidV7(), { name: 'hello' }, { sealed: good, keyId: stranger.keyId }))).toBe('SEALED_WRONG_RECIPIENT');
  });

  it('refuses bad names, ids and references with INVALID_ARGUMENT, and oversized inputs with PAYLOAD_TOO_LARGE', async () => {
    const sealed = await sealInputs('team-a', 'hello', {});
    const keyId = storage.sealingKeys.io.keyId;
    for (const project of ['', 'Team', '-a', 'a-', 'a_b', 'a'.repeat(64), '../x']) {
      expect(await codeOf(store.putInputs(project, uuidV7(), { name: 'hello' }, { sealed, keyId })), project).toBe('INVALID_ARGUMENT');
    }
    for (const runId of ['', 'run-1', randomUUID().toUpperCase(), `${uuidV7()}/x`, '../../etc']) {
      expect(await codeOf(store.putInputs('team-a', runId, { name: 'hello' }, { sealed, keyId })), runId).toBe('INVALID_ARGUMENT');
    }
    expect(await codeOf(store.putInputs('team-a', uuidV7(), { name: '' }, { sealed, keyId }))).toBe('INVALID_ARGUMENT');
    const runId = uuidV7();
    const { inputsRef } = await store.putInputs('team-a', runId, { name: 'hello' }, { sealed, keyId });
    const otherRun = uuidV7();
    expect(await codeOf(store.readInputs('team-b', runId, inputsRef, 'hello'))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(store.readInputs('team-a', otherRun, inputsRef, 'hello'))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(store.readInputs('team-a', runId, `v2/team-a/${runId}`, 'hello'))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(store.readInputs('team-a', otherRun, `v1/team-a/${otherRun}`, 'hello'))).toBe('NOT_FOUND');
    // Stored for task "hello": reading them for another task fails authentication.
    expect(await codeOf(store.readInputs('team-a', runId, inputsRef, 'other'))).toBe('CIPHERTEXT_AUTH_FAILED');
    const small = await createRunDataStore({ objectStore: storage.objectStore, sealingKeys: storage.sealingKeys, maxSealedInputsBytes: 64 });
    expect(await codeOf(small.putInputs('team-a', uuidV7(), { name: 'hello' }, { sealed, keyId }))).toBe('PAYLOAD_TOO_LARGE');
  });
});

describe('bundles', () => {
  const bundle = Buffer.from(`export const answer = 42; // ${randomBytes(2000).toString('hex')}`);
  const sha256 = createHash('sha256').update(bundle).digest('hex');

  it('presigns a bound upload; curl uploads it; a second request says already_stored; the executor fetches it as a 0600 file', async () => {
    const presigned = await store.presignBundleUpload('team-a', { sha256, size: bundle.length }, 60);
    if (presigned.alreadyStored) throw new Error('expected an upload URL');
    expect(presigned.headers).toEqual({ 'x-amz-checksum-sha256': Buffer.from(sha256, 'hex').toString('base64'), 'content-length': String(bundle.length) });
    expect(presigned.expiresAt.getTime()).toBeLessThanOrEqual(Date.now() + 61_000);
    expect(new URL(presigned.url).pathname).toBe(`/${RUN_DATA_BUCKET}/bundles/team-a/${sha256}`);

    // Our object store refuses any other body: same length with the signed checksum, or another length.
    const wrong = Buffer.from(bundle);
    wrong[5] = (wrong[5] ?? 0) ^ 1;
    expect(await curlPut(presigned.url, wrong, presigned.headers)).toBe(400);
    expect(await curlPut(presigned.url, Buffer.concat([bundle, Buffer.from(' ')]), { 'x-amz-checksum-sha256': presigned.headers['x-amz-checksum-sha256']! })).toBe(403);
    expect(await stored(`bundles/team-a/${sha256}`)).toBeUndefined();
    expect(await curlPut(presigned.url, bundle, presigned.headers)).toBe(200);

    expect(await store.presignBundleUpload('team-a', { sha256, size: bundle.length })).toEqual({ alreadyStored: true });
    // Per project: the same digest in another project is not stored yet.
    expect((await store.presignBundleUpload('team-b', { sha256, size: bundle.length })).alreadyStored).toBe(false);

    const dir = join(storage.dir, 'work-1');
    await mkdir(dir, { mode: 0o700 });
    await store.fetchBundle('team-a', { sha256, size: bundle.length }, join(dir, 'bundle.mjs'));
    expect((await readFile(join(dir, 'bundle.mjs'))).equals(bundle)).toBe(true);
    expect((await stat(join(dir, 'bundle.mjs'))).mode & 0o777).toBe(0o600);
  });

  it('a bundle whose digest or size does not match is DIGEST_MISMATCH and leaves no file', async () => {
    const dir = join(storage.dir, 'work-2');
    await mkdir(dir, { mode: 0o700 });
    const fake = createHash('sha256').update('something else').digest('hex');
    // Stored under a digest that is not its own (as a store that was tampered with would hold it).
    await storage.objectStore.put(RUN_DATA_BUCKET, `bundles/team-a/${fake}`, bundle);
    expect(await codeOf(store.fetchBundle('team-a', { sha256: fake, size: bundle.length }, join(dir, 'a.mjs')))).toBe('DIGEST_MISMATCH');
    await storage.objectStore.put(RUN_DATA_BUCKET, `bundles/team-a/${sha256}`, bundle);
    expect(await codeOf(store.fetchBundle('team-a', { sha256, size: bundle.length + 1 }, join(dir, 'b.mjs')))).toBe('DIGEST_MISMATCH');
    expect(await codeOf(store.fetchBundle('team-a', { sha256, size: bundle.length - 1 }, join(dir, 'c.mjs')))).toBe('DIGEST_MISMATCH');
    expect(await codeOf(store.fetchBundle('team-c', { sha256, size: bundle.length }, join(dir, 'd.mjs')))).toBe('OBJECT_NOT_FOUND');
    expect(await readdir(dir)).toEqual([]);
  });

  it('refuses a bundle above the maximum with PAYLOAD_TOO_LARGE before signing, and bad digests or sizes', async () => {
    expect(await codeOf(store.presignBundleUpload('team-a', { sha256, size: 64 * 1024 * 1024 + 1 }))).toBe('PAYLOAD_TOO_LARGE');
    const small = await createRunDataStore({ objectStore: storage.objectStore, sealingKeys: storage.sealingKeys, maxBundleBytes: 1000 });
    expect(await codeOf(small.presignBundleUpload('team-x', { sha256, size: 1001 }))).toBe('PAYLOAD_TOO_LARGE');
    expect((await small.presignBundleUpload('team-x', { sha256, size: 1000 })).alreadyStored).toBe(false);
    expect(await codeOf(store.presignBundleUpload('team-a', { sha256: sha256.toUpperCase(), size: 10 }))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(store.presignBundleUpload('team-a', { sha256, size: 0 }))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(store.presignBundleUpload('Team', { sha256, size: 10 }))).toBe('INVALID_ARGUMENT');
  });

  it('caps the lifetime of a URL at the configured maximum', async () => {
    const capped = await createRunDataStore({ objectStore: storage.objectStore, sealingKeys: storage.sealingKeys, maxPresignSeconds: 120 });
    const presigned = await capped.presignBundleUpload('team-y', { sha256, size: bundle.length }, 86_400);
    if (presigned.alreadyStored) throw new Error('expected an upload URL');
    expect(new URL(presigned.url).searchParams.get('X-Amz-Expires')).toBe('120');
  });
});

describe('result documents', () => {
  it('are stored per action and come back sealed to an ephemeral key, which alone opens them, with the right aad only', async () => {
    const runId = uuidV7();
    const actionId = uuidV7();
    const document = Buffer.from(JSON.stringify({ version: 1, ok: true, attempt: 1, outputs: { greeting: 'Hello, World!' } }));
    await store.writeResult('team-a', runId, actionId, document);
    expect((await stored(`runs/team-a/${runId}/actions/${actionId}/result.json`))?.equals(document)).toBe(true);
    expect((await store.readResult('team-a', runId, actionId)).equals(document)).toBe(true);

    const client = generateSealingKeyPair();
    const { sealed, keyId } = await store.sealResult('team-a', runId, actionId, client.publicKey);
    expect(keyId).toBe(client.keyId);
    const aad = runResultAad('team-a', runId, actionId);
    expect((await openSealed({ recipientPrivateKey: client.privateKey, purpose: 'io', sealed, aad })).equals(document)).toBe(true);
    expect(await codeOf(openSealed({ recipientPrivateKey: client.privateKey, purpose: 'io', sealed, aad: runResultAad('team-a', runId, uuidV7()) }))).toBe('CIPHERTEXT_AUTH_FAILED');
    expect(await codeOf(openSealed({ recipientPrivateKey: generateSealingKeyPair().privateKey, purpose: 'io', sealed, aad }))).toBe('SEALED_WRONG_RECIPIENT');

    // Replaced as a whole.
    const second = Buffer.from(JSON.stringify({ version: 1, ok: false, attempt: 2, phase: 'FAILED' }));
    await store.writeResult('team-a', runId, actionId, second);
    expect((await store.readResult('team-a', runId, actionId)).equals(second)).toBe(true);
    expect(await codeOf(store.readResult('team-a', runId, uuidV7()))).toBe('NOT_FOUND');
    expect(await codeOf(store.readResult('team-b', runId, actionId))).toBe('NOT_FOUND');
  });
});

describe('presigned file URLs', () => {
  it('are signed only under files/<project>/ of the run-data bucket; GET URLs only sealed to the caller', async () => {
    const client = generateSealingKeyPair();
    const key = 'files/team-a/reports/q1.csv';
    const put = await store.presignFile({ project: 'team-a', bucket: RUN_DATA_BUCKET, key, method: 'PUT', ttlSeconds: 60 });
    if (!('url' in put)) throw new Error('expected a plain URL');
    expect(await curlPut(put.url, Buffer.from('a,b\n1,2\n'), {})).toBe(200);
    const get = await store.presignFile({ project: 'team-a', bucket: RUN_DATA_BUCKET, key, method: 'GET', recipientPublicKey: client.publicKey });
    if (!('sealedUrl' in get)) throw new Error('expected a sealed URL');
    const url = (await openSealed({ recipientPrivateKey: client.privateKey, purpose: 'presign', sealed: get.sealedUrl.sealed, aad: presignAad('team-a', RUN_DATA_BUCKET, key, 'GET') })).toString();
    const { stdout } = await run('curl', ['-sS', '--cacert', storage.caPath, url]);
    expect(stdout).toBe('a,b\n1,2\n');

    for (const [bucket, badKey] of [
      [RUN_DATA_BUCKET, 'files/team-b/x'],
      [RUN_DATA_BUCKET, `runs/team-a/${uuidV7()}/inputs`],
      [RUN_DATA_BUCKET, 'bundles/team-a/x'],
      [RUN_DATA_BUCKET, 'files/team-a/../team-b/x'],
      [RUN_DATA_BUCKET, 'files/team-a/'],
      ['other-bucket', 'files/team-a/x'],
    ] as const) {
      expect(await codeOf(store.presignFile({ project: 'team-a', bucket, key: badKey, method: 'PUT' })), badKey).toBe('ACCESS_DENIED');
    }
    expect(await codeOf(store.presignFile({ project: 'team-a', bucket: RUN_DATA_BUCKET, key, method: 'GET' }))).toBe('INVALID_ARGUMENT');
  });
});

describe('the kill switch', () => {
  it('with the data-plane KMS key disabled, storing and reading run data fails with KMS_KEY_DISABLED; enabling it restores access', async () => {
    const own = await openKmsKeyVault(storage.kms, 'alias/airlock/run-data-kill', { create: true });
    const killable = await createRunDataStore({ objectStore: storage.objectStore, sealingKeys: storage.sealingKeys, bucket: 'airlock-data-kill', kmsKeyId: 'alias/airlock/run-data-kill' });
    const runId = uuidV7();
    const sealed = await sealInputs('team-a', 'hello', { name: 'World' });
    const keyId = storage.sealingKeys.io.keyId;
    const { inputsRef } = await killable.putInputs('team-a', runId, { name: 'hello' }, { sealed, keyId });
    await storage.kms.disableKey(own.keyArn!);
    // The store's bucket-key cache is bounded at one second (DESIGN §4).
    await sleep(1100);
    expect(await codeOf(killable.readInputs('team-a', runId, inputsRef, 'hello'))).toBe('KMS_KEY_DISABLED');
    expect(await codeOf(killable.putInputs('team-a', uuidV7(), { name: 'hello' }, { sealed, keyId }))).toBe('KMS_KEY_DISABLED');
    expect(await codeOf(killable.writeResult('team-a', runId, uuidV7(), Buffer.from('{}')))).toBe('KMS_KEY_DISABLED');
    await storage.kms.enableKey(own.keyArn!);
    expect(JSON.parse((await killable.readInputs('team-a', runId, inputsRef, 'hello'))!.toString())).toEqual({ name: 'World' });
  });

  it('a bundle kept in memory serves the next fetches for at most a second: then a disabled key stops them', async () => {
    const own = await openKmsKeyVault(storage.kms, 'alias/airlock/bundle-kill', { create: true });
    const killable = await createRunDataStore({ objectStore: storage.objectStore, sealingKeys: storage.sealingKeys, bucket: 'airlock-data-bundle-kill', kmsKeyId: 'alias/airlock/bundle-kill' });
    const code = Buffer.from(`export const kept = ${JSON.stringify(randomBytes(64).toString('hex'))};`);
    const ref = { sha256: createHash('sha256').update(code).digest('hex'), size: code.length };
    await storage.objectStore.put('airlock-data-bundle-kill', `bundles/team-a/${ref.sha256}`, code);
    const dir = join(storage.dir, 'work-kill');
    await mkdir(dir, { mode: 0o700 });
    const key = `bundles/team-a/${ref.sha256}`;
    await killable.fetchBundle('team-a', ref, join(dir, 'first.mjs'));
    // Within its second the kept copy is used: the store no longer has the object...
    await storage.objectStore.delete('airlock-data-bundle-kill', key);
    await killable.fetchBundle('team-a', ref, join(dir, 'kept.mjs'));
    expect((await readFile(join(dir, 'kept.mjs'))).equals(code)).toBe(true);
    expect((await stat(join(dir, 'kept.mjs'))).mode & 0o777).toBe(0o600);
    // ...and not after it.
    await sleep(1100);
    expect(await codeOf(killable.fetchBundle('team-a', ref, join(dir, 'gone.mjs')))).toBe('OBJECT_NOT_FOUND');
    // A disabled key: a second later, fetches fail even though a copy was kept.
    await storage.objectStore.put('airlock-data-bundle-kill', key, code);
    await killable.fetchBundle('team-a', ref, join(dir, 'refetched.mjs'));
    await storage.kms.disableKey(own.keyArn!);
    await sleep(1100);
    expect(await codeOf(killable.fetchBundle('team-a', ref, join(dir, 'after.mjs')))).toBe('KMS_KEY_DISABLED');
    expect((await readdir(dir)).sort()).toEqual(['first.mjs', 'kept.mjs', 'refetched.mjs']);
    await storage.kms.enableKey(own.keyArn!);
    await killable.fetchBundle('team-a', ref, join(dir, 'again.mjs'));
    // Kept or not, a size that is not the bundle's is refused.
    expect(await codeOf(killable.fetchBundle('team-a', { ...ref, size: ref.size + 1 }, join(dir, 'wrong.mjs')))).toBe('DIGEST_MISMATCH');
    const uncached = await createRunDataStore({ objectStore: storage.objectStore, sealingKeys: storage.sealingKeys, bucket: 'airlock-data-bundle-kill', kmsKeyId: 'alias/airlock/bundle-kill', bundleCacheBytes: 0 });
    await uncached.fetchBundle('team-a', ref, join(dir, 'uncached.mjs'));
    await storage.kms.disableKey(own.keyArn!);
    await sleep(1100);
    expect(await codeOf(uncached.fetchBundle('team-a', ref, join(dir, 'uncached-after.mjs')))).toBe('KMS_KEY_DISABLED');
    await storage.kms.enableKey(own.keyArn!);
  });
});
