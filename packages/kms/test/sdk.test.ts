// The embedded KMS through @aws-sdk/client-kms (the Kms adapter): lifecycle, kill switch, aliases, rotation, deletion.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestKms, type TestKms } from './helpers.js';

let kms: TestKms;
beforeAll(async () => {
  kms = await startTestKms();
});
afterAll(async () => {
  await kms.stop();
});

const DAY = 24 * 3600 * 1000;

describe('embedded KMS via the AWS SDK', () => {
  it('create → describe → generate data key → decrypt → disable (DisabledException) → enable', async () => {
    const client = kms.client();
    const key = await client.createKey({ description: 'sdk test' });
    expect(key.arn).toBe(`arn:aws:kms:us-east-1:111122223333:key/${key.keyId}`);
    expect(key.state).toBe('Enabled');
    const described = await client.describeKey(key.keyId);
    expect(described).toMatchObject({ keyId: key.keyId, state: 'Enabled', enabled: true, description: 'sdk test', keySpec: 'SYMMETRIC_DEFAULT' });

    const context = { bucket: 'reports', key: 'q3.csv' };
    const dataKey = await client.generateDataKey(key.keyId, context);
    expect(dataKey.plaintext.byteLength).toBe(32);
    expect(dataKey.keyArn).toBe(key.arn);
    const opened = await client.decrypt(dataKey.ciphertextBlob, context);
    expect(opened.plaintext.equals(dataKey.plaintext)).toBe(true);
    expect(opened.keyArn).toBe(key.arn);

    await client.disableKey(key.keyId);
    await expect(client.decrypt(dataKey.ciphertextBlob, context)).rejects.toMatchObject({ code: 'KMS_KEY_DISABLED' });
    await expect(client.generateDataKey(key.keyId, context)).rejects.toMatchObject({ code: 'KMS_KEY_DISABLED' });
    expect((await client.describeKey(key.keyId)).state).toBe('Disabled');

    await client.enableKey(key.keyId);
    expect((await client.decrypt(dataKey.ciphertextBlob, context)).plaintext.equals(dataKey.plaintext)).toBe(true);
  });

  it('binds the encryption context and the key', async () => {
    const client = kms.client();
    const a = await client.createKey();
    const b = await client.createKey();
    const blob = (await client.encrypt(a.keyId, Buffer.from('secret'), { project: 'p1' })).ciphertextBlob;
    await expect(client.decrypt(blob, { project: 'p2' })).rejects.toMatchObject({ code: 'KMS_INVALID_CIPHERTEXT' });
    await expect(client.decrypt(blob, {})).rejects.toMatchObject({ code: 'KMS_INVALID_CIPHERTEXT' });
    await expect(client.decrypt(blob, { project: 'p1' }, { keyId: b.keyId })).rejects.toMatchObject({ code: 'KMS_INCORRECT_KEY' });
    expect((await client.decrypt(blob, { project: 'p1' }, { keyId: a.arn })).plaintext.toString()).toBe('secret');
    const tampered = Buffer.from(blob);
    tampered[tampered.length - 1] = (tampered[tampered.length - 1] as number) ^ 1;
    await expect(client.decrypt(tampered, { project: 'p1' })).rejects.toMatchObject({ code: 'KMS_INVALID_CIPHERTEXT' });
    await expect(client.decrypt(blob.subarray(0, 40), { project: 'p1' })).rejects.toMatchObject({ code: 'KMS_INVALID_CIPHERTEXT' });
  });

  it('resolves aliases anywhere a key id is accepted', async () => {
    const client = kms.client();
    const key = await client.createKey();
    await client.createAlias('alias/sdk-test', key.keyId);
    await expect(client.createAlias('alias/sdk-test', key.keyId)).rejects.toMatchObject({ code: 'ALREADY_EXISTS' });
    await expect(client.createAlias('not-an-alias', key.keyId)).rejects.toMatchObject({ code: 'KMS_INVALID_ALIAS_NAME' });
    expect((await client.describeKey('alias/sdk-test')).keyId).toBe(key.keyId);
    expect((await client.describeKey(`arn:aws:kms:us-east-1:111122223333:alias/sdk-test`)).keyId).toBe(key.keyId);
    const dk = await client.generateDataKey('alias/sdk-test', {});
    expect((await client.decrypt(dk.ciphertextBlob, {}, { keyId: 'alias/sdk-test' })).plaintext.equals(dk.plaintext)).toBe(true);
    expect((await client.listAliases(key.keyId)).map((a) => a.aliasName)).toEqual(['alias/sdk-test']);
    await client.deleteAlias('alias/sdk-test');
    await expect(client.describeKey('alias/sdk-test')).rejects.toMatchObject({ code: 'KMS_KEY_NOT_FOUND' });
  });

  it('rotation adds versions; old blobs still decrypt; ReEncrypt moves a blob to the newest version', async () => {
    const client = kms.client();
    const key = await client.createKey();
    const old = await client.encrypt(key.keyId, Buffer.from('v1 data'), { a: '1' });
    await client.rotateKeyOnDemand(key.keyId);
    await client.rotateKeyOnDemand(key.keyId);
    const fresh = await client.encrypt(key.keyId, Buffer.from('v3 data'), { a: '1' });
    const version = (blob: Buffer): number => blob.readUInt32BE(20);
    expect(version(old.ciphertextBlob)).toBe(1);
    expect(version(fresh.ciphertextBlob)).toBe(3);
    expect((await client.decrypt(old.ciphertextBlob, { a: '1' })).plaintext.toString()).toBe('v1 data');
    const moved = await client.reEncrypt(old.ciphertextBlob, { a: '1' }, key.keyId, { a: '2' });
    expect(version(moved.ciphertextBlob)).toBe(3);
    expect((await client.decrypt(moved.ciphertextBlob, { a: '2' })).plaintext.toString()).toBe('v1 data');

    await client.enableKeyRotation(key.keyId, 90);
    const status = await client.getKeyRotationStatus(key.keyId);
    expect(status).toMatchObject({ enabled: true, periodDays: 90 });
    // Automatic rotation runs when its date passes (test clock).
    kms.clock.offsetMs += 91 * DAY;
    kms.server.maintain();
    const after = await client.encrypt(key.keyId, Buffer.from('x'), {});
    expect(version(after.ciphertextBlob)).toBe(4);
    kms.clock.offsetMs -= 91 * DAY;
  });

  it('schedules and cancels deletion; a completed deletion is permanent (crypto-shredding)', async () => {
    const client = kms.client();
    const key = await client.createKey();
    await client.createAlias('alias/doomed', key.keyId);
    const blob = (await client.encrypt(key.keyId, Buffer.from('shred me'), {})).ciphertextBlob;
    await expect(client.scheduleKeyDeletion(key.keyId, 6)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    const { deletionDate } = await client.scheduleKeyDeletion(key.keyId, 7);
    expect(deletionDate?.getTime()).toBeGreaterThan(Date.now() + 6.9 * DAY);
    expect((await client.describeKey(key.keyId)).state).toBe('PendingDeletion');
    await expect(client.decrypt(blob, {})).rejects.toMatchObject({ code: 'KMS_KEY_PENDING_DELETION' });
    await expect(client.enableKey(key.keyId)).rejects.toMatchObject({ code: 'KMS_KEY_PENDING_DELETION' });
    await client.cancelKeyDeletion(key.keyId);
    expect((await client.describeKey(key.keyId)).state).toBe('Disabled');
    await client.enableKey(key.keyId);
    expect((await client.decrypt(blob, {})).plaintext.toString()).toBe('shred me');

    await client.scheduleKeyDeletion(key.keyId, 7);
    kms.clock.offsetMs += 7 * DAY + 1000;
    await expect(client.describeKey(key.keyId)).rejects.toMatchObject({ code: 'KMS_KEY_NOT_FOUND' });
    await expect(client.decrypt(blob, {})).rejects.toMatchObject({ code: 'KMS_KEY_NOT_FOUND' });
    await expect(client.describeKey('alias/doomed')).rejects.toMatchObject({ code: 'KMS_KEY_NOT_FOUND' });
    kms.clock.offsetMs = 0;
    // Gone for good: not after a restart, not ever.
    await kms.restart();
    const again = kms.client();
    await expect(again.decrypt(blob, {})).rejects.toMatchObject({ code: 'KMS_KEY_NOT_FOUND' });
    expect((await again.listKeys()).some((k) => k.keyId === key.keyId)).toBe(false);
  });
});
