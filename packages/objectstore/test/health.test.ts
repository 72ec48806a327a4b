// The object store's /health tells the truth about its path to the KMS: real KMS, real store, real TLS.
import { request } from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCachingKms, type CachingKms } from '@airlock/kms';
import { startTestObjectStore, type TestObjectStore } from './server-helpers.js';

let stack: TestObjectStore;

beforeAll(async () => {
  stack = await startTestObjectStore();
});

afterAll(async () => {
  await stack.stop();
});

function health(of: TestObjectStore = stack): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = request(`${of.server.url}/health`, { ca: of.caPem, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('GET /health', () => {
  it('is ok while the KMS answers, and degraded with the reason once the KMS is gone', async () => {
    expect(await stack.server.waitForKeyEvents(5000)).toBe(true);
    // keyEvents: the store's key cache is subscribed to the KMS's key-state events.
    expect(await health()).toEqual({ status: 200, body: { status: 'ok', kms: 'ok', keyEvents: 'live' } });
    await stack.kmsServer.close();
    // The answer is reused for at most 1 s.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    expect(await health()).toEqual({ status: 503, body: { status: 'degraded', kms: 'unreachable', reason: 'ECONNREFUSED', keyEvents: 'down' } });
  });
});

describe('GET /health with other holders of key material in the process (the data plane\'s sealing keys)', () => {
  it('reports each holder\'s own key-event subscription beside the store\'s', async () => {
    // A second holder with a subscription of its own to the same real KMS, as the data plane's sealing keys have.
    let holder: (CachingKms & { close(): void }) | undefined;
    const withHolder = await startTestObjectStore({
      server: { keyEventHolders: { 'sealing-keys': () => holder?.keyEventStatus() ?? { state: 'off', epoch: undefined, lastSeq: undefined, lastMessageAgoMs: undefined, connections: 0, lastCloseReason: undefined } } },
    });
    try {
      expect(await withHolder.server.waitForKeyEvents(5000)).toBe(true);
      expect((await health(withHolder)).body).toEqual({ status: 'ok', kms: 'ok', keyEvents: 'live', keyEventHolders: { 'sealing-keys': 'off' } });
      holder = createCachingKms(withHolder.kms);
      expect(await holder.waitForKeyEvents(5000)).toBe(true);
      expect((await health(withHolder)).body).toEqual({ status: 'ok', kms: 'ok', keyEvents: 'live', keyEventHolders: { 'sealing-keys': 'live' } });
      // The holder's subscription ends while the store's goes on: /health says so.
      holder.close();
      expect((await health(withHolder)).body).toEqual({ status: 'ok', kms: 'ok', keyEvents: 'live', keyEventHolders: { 'sealing-keys': 'off' } });
    } finally {
      holder?.close();
      await withHolder.stop();
    }
  });

  it('refuses a holder name that is not lower-case words joined by -', async () => {
    const { resolveObjectStoreServerConfig } = await import('../src/server.js');
    expect(() =>
      resolveObjectStoreServerConfig({ dataDir: '/x', tls: { cert: 'c', key: 'k' }, kms: stack.kms, lookupSecret: () => undefined, keyEventHolders: { 'Sealing Keys': () => stack.server.keyEventStatus() } }),
    ).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }) as Error);
  });
});
