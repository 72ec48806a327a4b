// The data-key cache on key events: minutes while the stream is live, dropped at once on a change, and back to 1 s whenever the stream fails.
import https from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificateAuthority, issueServerCertificate } from '@airlock/pki';
import { startTcpProxy, type TcpProxy } from '@airlock/testing';
import { createAwsKms } from '../src/aws-kms.js';
import { createCachingKms, KILL_SWITCH_BOUND_MS, resolveDataKeyCacheConfig } from '../src/data-key-cache.js';
import { loseKeyEventsForTesting } from '../src/internal/key-events.js';
import type { Kms, KmsKeyEventSource, KmsKeyEventState } from '../src/kms.js';
import { startTestKms, type TestKms } from './helpers.js';

const DAY = 24 * 60 * 60 * 1000;

let kms: TestKms;
beforeAll(async () => {
  kms = await startTestKms();
});
afterAll(async () => {
  await kms.stop();
});

/** Decrypts until refused; returns how long after `since` the first refusal came, and its code. */
/**
 * Decrypts until refused. `servedMs`: when the last decrypt that still succeeded returned, after
 * `since` (0 if none did): the kill-switch bound is on this, "no decrypt served later than". `ms`:
 * when the first refusal came back, which adds the refusing KMS call's own round trip.
 */
async function refusedAfter(cached: Kms, blob: Buffer, since: number, limitMs = 3000): Promise<{ ms: number; servedMs: number; code: string }> {
  let servedMs = 0;
  while (performance.now() - since < limitMs) {
    try {
      await cached.decrypt(blob, {});
      servedMs = performance.now() - since;
    } catch (error) {
      return { ms: performance.now() - since, servedMs, code: (error as { code: string }).code };
    }
    await sleep(5);
  }
  return { ms: Infinity, servedMs, code: 'none' };
}

async function until(predicate: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await sleep(5);
  }
}

describe('data-key cache with live key events', () => {
  it('validates its options: the fallback TTL stays within the kill-switch bound, the heartbeat deadline below it', () => {
    expect(resolveDataKeyCacheConfig()).toMatchObject({ ttlMs: 1000, subscribedTtlMs: 300_000, keyEvents: true, heartbeatTimeoutMs: 500 });
    expect(() => resolveDataKeyCacheConfig({ ttlMs: KILL_SWITCH_BOUND_MS + 1 })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }) as Error);
    expect(() => resolveDataKeyCacheConfig({ heartbeatTimeoutMs: 950 })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }) as Error);
  });

  it('keeps a data key past 1 s while the stream is live, and drops it the instant its key is disabled', async () => {
    const client = kms.client();
    const cached = createCachingKms(client);
    try {
      expect(await cached.waitForKeyEvents(5000)).toBe(true);
      const key = await client.createKey();
      const dk = await client.generateDataKey(key.keyId, {});
      const started = Date.now();
      while (Date.now() - started < 1500) {
        expect((await cached.decrypt(dk.ciphertextBlob, {})).plaintext.equals(dk.plaintext)).toBe(true);
        await sleep(20);
      }
      expect(cached.stats.misses).toBe(1);
      await client.disableKey(key.keyId);
      const refused = await refusedAfter(cached, dk.ciphertextBlob, performance.now());
      expect(refused.code).toBe('KMS_KEY_DISABLED');
      expect(refused.servedMs).toBeLessThanOrEqual(100);
      expect(cached.stats.revoked).toBe(1);
      // Re-enabling restores access.
      await client.enableKey(key.keyId);
      expect((await cached.decrypt(dk.ciphertextBlob, {})).plaintext.equals(dk.plaintext)).toBe(true);
    } finally {
      cached.close();
    }
  });

  it('drops a key on rotation and on scheduled deletion, and on deletion completing', async () => {
    const client = kms.client();
    const cached = createCachingKms(client);
    try {
      expect(await cached.waitForKeyEvents(5000)).toBe(true);
      const key = await client.createKey();
      const dk = await client.generateDataKey(key.keyId, {});
      await cached.decrypt(dk.ciphertextBlob, {});
      await client.rotateKeyOnDemand(key.keyId);
      await until(() => cached.stats.revoked === 1);
      // Old versions still decrypt: one more KMS call, then cached again.
      await cached.decrypt(dk.ciphertextBlob, {});
      await cached.decrypt(dk.ciphertextBlob, {});
      expect(cached.stats.misses).toBe(2);
      await client.scheduleKeyDeletion(key.keyId, 7);
      const refused = await refusedAfter(cached, dk.ciphertextBlob, performance.now());
      expect(refused).toMatchObject({ code: 'KMS_KEY_PENDING_DELETION' });
      expect(refused.servedMs).toBeLessThanOrEqual(100);
      const other = await client.createKey();
      const odk = await client.generateDataKey(other.keyId, {});
      await cached.decrypt(odk.ciphertextBlob, {});
      await client.scheduleKeyDeletion(other.keyId, 7);
      await until(() => cached.stats.revoked === 3);
      kms.clock.offsetMs += 8 * DAY;
      kms.server.maintain();
      await until(() => cached.keyEventStatus().lastSeq !== undefined && cached.stats.events >= 5);
      await expect(cached.decrypt(odk.ciphertextBlob, {})).rejects.toMatchObject({ code: 'KMS_KEY_NOT_FOUND' });
    } finally {
      kms.clock.offsetMs = 0;
      cached.close();
    }
  });

  it('falls back to 1 s while the KMS restarts, and subscribes again to the new server', async () => {
    const client = kms.client();
    const cached = createCachingKms(client);
    try {
      expect(await cached.waitForKeyEvents(5000)).toBe(true);
      const epoch = cached.keyEventStatus().epoch;
      const key = await client.createKey();
      const dk = await client.generateDataKey(key.keyId, {});
      await cached.decrypt(dk.ciphertextBlob, {});
      await sleep(1100);
      await kms.restart();
      // The entry was fetched more than 1 s ago and the stream ended: it is gone.
      expect(cached.keyEventStatus().state).not.toBe('live');
      await cached.decrypt(dk.ciphertextBlob, {});
      expect(cached.stats.misses).toBe(2);
      expect(await cached.waitForKeyEvents(5000)).toBe(true);
      expect(cached.keyEventStatus().epoch).not.toBe(epoch);
      expect(cached.keyEventStatus().connections).toBeGreaterThanOrEqual(2);
      await cached.decrypt(dk.ciphertextBlob, {});
      await client.disableKey(key.keyId);
      const refused = await refusedAfter(cached, dk.ciphertextBlob, performance.now());
      expect(refused.code).toBe('KMS_KEY_DISABLED');
      expect(refused.servedMs).toBeLessThanOrEqual(100);
    } finally {
      cached.close();
    }
  });
});

describe('data-key cache when events are lost (a gap in the sequence numbers)', () => {
  /** A client whose cache holds one key's data key for the long TTL, and a record of what its watchers were told, and when. */
  async function cachedKey(): Promise<{
    client: ReturnType<TestKms['client']>;
    cached: ReturnType<typeof createCachingKms<ReturnType<TestKms['client']>>>;
    keyId: string;
    blob: Buffer;
    told: Array<{ state: KmsKeyEventState; connections: number }>;
  }> {
    const client = kms.client();
    const cached = createCachingKms(client);
    expect(await cached.waitForKeyEvents(5000)).toBe(true);
    const key = await client.createKey();
    const dk = await client.generateDataKey(key.keyId, {});
    // The key's creation event must have arrived: a decrypt that overlaps it is (rightly) not cached.
    await until(() => cached.stats.events > 0);
    await cached.decrypt(dk.ciphertextBlob, {});
    await cached.decrypt(dk.ciphertextBlob, {});
    expect(cached.stats).toMatchObject({ misses: 1, hits: 1 });
    const told: Array<{ state: KmsKeyEventState; connections: number }> = [];
    cached.watchKey(key.arn, (state) => told.push({ state, connections: cached.keyEventStatus().connections }));
    expect(cached.keyEventStatus()).toMatchObject({ state: 'live', connections: 1 });
    return { client, cached, keyId: key.keyId, blob: Buffer.from(dk.ciphertextBlob), told };
  }

  it('a heartbeat shows the gap: the cache subscribes again, and the new snapshot drops the key disabled in the lost event and tells its watchers', async () => {
    const { client, cached, keyId, blob, told } = await cachedKey();
    try {
      loseKeyEventsForTesting(1, 'heartbeat');
      await client.disableKey(keyId);
      // The cache never hears of DisableKey itself. Without the resync its entry would live 5 minutes.
      const refused = await refusedAfter(cached, blob, performance.now());
      expect(refused.code).toBe('KMS_KEY_DISABLED');
      expect(refused.servedMs).toBeLessThanOrEqual(KILL_SWITCH_BOUND_MS);
      await until(() => told.length > 0 && cached.keyEventStatus().state === 'live');
      // Told by the second stream's snapshot.
      expect(told[0]).toEqual({ state: 'Disabled', connections: 2 });
      expect(cached.keyEventStatus()).toMatchObject({ state: 'live', connections: 2, lastCloseReason: 'sequence-gap' });
      expect(cached.stats.revoked).toBeGreaterThanOrEqual(1);
      // The new stream carries later events as usual.
      await client.enableKey(keyId);
      await until(() => told.at(-1)?.state === 'Enabled');
      expect(told.at(-1)).toEqual({ state: 'Enabled', connections: 2 });
    } finally {
      loseKeyEventsForTesting(0);
      cached.close();
    }
  });

  it('an event shows the gap: it is acted on at once (its key dropped, its watchers told), then the cache subscribes again', async () => {
    const { client, cached, keyId, blob, told } = await cachedKey();
    try {
      // Another key's creation is lost; heartbeats do not show it, so the next event is the first sign.
      loseKeyEventsForTesting(1, 'next-event');
      await client.createKey();
      await client.disableKey(keyId);
      await until(() => told.length > 0);
      // Told by the event that showed the gap, on the first stream, before any resubscription.
      expect(told[0]).toEqual({ state: 'Disabled', connections: 1 });
      await expect(cached.decrypt(blob, {})).rejects.toMatchObject({ code: 'KMS_KEY_DISABLED' });
      await until(() => cached.keyEventStatus().connections === 2 && cached.keyEventStatus().state === 'live');
      expect(cached.keyEventStatus().lastCloseReason).toBe('sequence-gap');
      expect(cached.stats.revoked).toBeGreaterThanOrEqual(1);
    } finally {
      loseKeyEventsForTesting(0);
      cached.close();
    }
  });
});

describe('data-key cache when the event path fails', () => {
  let proxy: TcpProxy;
  let streamClient: ReturnType<typeof createAwsKms>;
  beforeAll(async () => {
    proxy = await startTcpProxy({ host: '127.0.0.1', port: kms.server.port });
    streamClient = createAwsKms({ endpoint: proxy.url, region: 'us-east-1', credentials: kms.credentials, caBundle: kms.caPem, maxAttempts: 1 });
  });
  afterAll(async () => {
    streamClient.destroy();
    await proxy.close();
  });

  /** Crypto calls straight to the KMS; the key-event stream through the proxy that the test breaks. */
  const splitKms = (direct: Kms): Kms & KmsKeyEventSource => Object.assign(Object.create(direct) as Kms, { subscribeKeyEvents: streamClient.subscribeKeyEvents.bind(streamClient) });

  for (const mode of ['hang', 'drop'] as const) {
    it(`revokes within 1 s when the stream is made to ${mode}`, async () => {
      proxy.setMode('pass');
      const client = kms.client();
      const cached = createCachingKms(splitKms(client));
      try {
        expect(await cached.waitForKeyEvents(5000)).toBe(true);
        const key = await client.createKey();
        const dk = await client.generateDataKey(key.keyId, {});
        // The key's creation event comes through the relay; a decrypt that overlaps it is (rightly) not cached, so wait for a hit.
        await until(() => cached.keyEventStatus().lastSeq !== undefined && cached.stats.events > 0);
        await cached.decrypt(dk.ciphertextBlob, {});
        const hits = cached.stats.hits;
        await cached.decrypt(dk.ciphertextBlob, {});
        expect(cached.stats.hits).toBe(hits + 1);
        proxy.setMode(mode);
        await client.disableKey(key.keyId);
        const refused = await refusedAfter(cached, dk.ciphertextBlob, performance.now());
        expect(refused.code).toBe('KMS_KEY_DISABLED');
        expect(refused.servedMs).toBeLessThanOrEqual(KILL_SWITCH_BOUND_MS);
        expect(cached.keyEventStatus().state).not.toBe('live');
        // Entries fetched now live at most 1 s.
        await client.enableKey(key.keyId);
        await cached.decrypt(dk.ciphertextBlob, {});
        const misses = cached.stats.misses;
        await sleep(1100);
        await cached.decrypt(dk.ciphertextBlob, {});
        expect(cached.stats.misses).toBe(misses + 1);
        // The path comes back: so does the stream.
        proxy.setMode('pass');
        if (mode === 'hang') await until(() => proxy.connections() === 0 || cached.keyEventStatus().state === 'live', 5000);
        expect(await cached.waitForKeyEvents(8000)).toBe(true);
      } finally {
        cached.close();
        proxy.setMode('pass');
      }
    });
  }
});

describe('data-key cache against a KMS without key events', () => {
  it('behaves as before: every entry lives at most 1 s', async () => {
    // An AWS-KMS-compatible endpoint that has never heard of the extension answers as AWS would.
    const ca = await createCertificateAuthority();
    const cert = await issueServerCertificate({ ca, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
    let subscribeCalls = 0;
    const other = https.createServer({ cert: cert.cert, key: cert.key }, (req, res) => {
      if (req.headers['x-amz-target'] === 'TrentService.AirlockSubscribeKeyEvents') subscribeCalls++;
      req.resume();
      res.writeHead(400, { 'content-type': 'application/x-amz-json-1.1' });
      res.end(JSON.stringify({ __type: 'UnknownOperationException' }));
    });
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
    const port = (other.address() as { port: number }).port;
    const foreign = createAwsKms({ endpoint: `https://127.0.0.1:${port}`, region: 'us-east-1', credentials: kms.credentials, caBundle: ca.cert, maxAttempts: 1 });
    const client = kms.client();
    const cached = createCachingKms(Object.assign(Object.create(client) as Kms, { subscribeKeyEvents: foreign.subscribeKeyEvents.bind(foreign) }));
    try {
      expect(await cached.waitForKeyEvents(5000)).toBe(false);
      expect(cached.keyEventStatus().state).toBe('unsupported');
      const key = await client.createKey();
      const dk = await client.generateDataKey(key.keyId, {});
      await cached.decrypt(dk.ciphertextBlob, {});
      await sleep(1050);
      await cached.decrypt(dk.ciphertextBlob, {});
      expect(cached.stats.misses).toBe(2);
      await sleep(500);
      expect(subscribeCalls).toBe(1);
    } finally {
      cached.close();
      foreign.destroy();
      await new Promise<void>((resolve) => other.close(() => resolve()));
    }
  });
});
