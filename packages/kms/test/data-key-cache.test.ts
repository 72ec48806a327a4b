// The data-key cache: fewer KMS calls, copies for callers, and never longer than the 1-second kill-switch bound.
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCachingKms, KILL_SWITCH_BOUND_MS, resolveDataKeyCacheConfig } from '../src/data-key-cache.js';
import { createKmsKeyWrapper } from '../src/kms-key-wrapper.js';
import { envelopeDecrypt, envelopeEncrypt } from '@airlock/crypto';
import { startTestKms, type TestKms } from './helpers.js';

let kms: TestKms;
beforeAll(async () => {
  kms = await startTestKms();
});
afterAll(async () => {
  await kms.stop();
});

describe('data-key cache', () => {
  it('refuses a TTL above the kill-switch bound', () => {
    expect(KILL_SWITCH_BOUND_MS).toBe(1000);
    expect(() => resolveDataKeyCacheConfig({ ttlMs: 1001 })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }) as Error);
    expect(resolveDataKeyCacheConfig().ttlMs).toBe(1000);
  });

  it('serves repeated decrypts of one blob from memory and hands out independent copies', async () => {
    const client = kms.client();
    const cached = createCachingKms(client);
    const key = await client.createKey();
    const dk = await client.generateDataKey(key.keyId, { bucket: 'b' });
    const first = await cached.decrypt(dk.ciphertextBlob, { bucket: 'b' });
    first.plaintext.fill(0); // a caller zeroing its copy must not damage the cache
    for (let i = 0; i < 99; i++) {
      const again = await cached.decrypt(dk.ciphertextBlob, { bucket: 'b' });
      expect(again.plaintext.equals(dk.plaintext)).toBe(true);
    }
    expect(cached.stats).toMatchObject({ hits: 99, misses: 1 });
    // A different context is a different entry, and still checked by the KMS.
    await expect(cached.decrypt(dk.ciphertextBlob, { bucket: 'other' })).rejects.toMatchObject({ code: 'KMS_INVALID_CIPHERTEXT' });
  });

  it('stops serving a disabled key within the 1-second bound', async () => {
    const client = kms.client();
    const cached = createCachingKms(client);
    const key = await client.createKey();
    const dk = await client.generateDataKey(key.keyId, {});
    await cached.decrypt(dk.ciphertextBlob, {});
    await client.disableKey(key.keyId);
    // The contract: no decrypt that starts more than the bound after the key was disabled is served
    // from memory. Measured on when each call started, not when it ended, so a slow machine cannot fail it.
    const disabledAt = Date.now();
    let lastServedStartMs = -1;
    let refused = false;
    while (Date.now() - disabledAt < 3 * KILL_SWITCH_BOUND_MS) {
      const startedMs = Date.now() - disabledAt;
      try {
        await cached.decrypt(dk.ciphertextBlob, {});
        lastServedStartMs = startedMs;
      } catch (error) {
        expect(error).toMatchObject({ code: 'KMS_KEY_DISABLED' });
        refused = true;
        break;
      }
      await sleep(20);
    }
    expect(refused, 'a decrypt was refused after the key was disabled').toBe(true);
    expect(lastServedStartMs).toBeLessThanOrEqual(KILL_SWITCH_BOUND_MS + 10); // 10 ms: the two clocks' rounding
  });

  it('drives envelope encryption through a KMS key (KeyWrapper), with the kill switch reaching the data', async () => {
    const client = kms.client();
    const key = await client.createKey();
    const wrapper = createKmsKeyWrapper(client, key.keyId);
    const context = { project: 'p', secret: 's' };
    const blob = await envelopeEncrypt(Buffer.from('top secret'), { wrapper, context });
    expect((await envelopeDecrypt(blob, { wrapper, context })).toString()).toBe('top secret');
    await client.disableKey(key.keyId);
    await expect(envelopeDecrypt(blob, { wrapper, context })).rejects.toMatchObject({ code: 'KMS_KEY_DISABLED' });
    await client.enableKey(key.keyId);
    expect((await envelopeDecrypt(blob, { wrapper, context })).toString()).toBe('top secret');
  });
});
