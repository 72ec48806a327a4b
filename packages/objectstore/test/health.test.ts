// The object store's /health tells the truth about its path to the KMS: real KMS, real store, real TLS.
import { request } from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestObjectStore, type TestObjectStore } from './server-helpers.js';

let stack: TestObjectStore;

beforeAll(async () => {
  stack = await startTestObjectStore();
});

afterAll(async () => {
  await stack.stop();
});

function health(): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = request(`${stack.server.url}/health`, { ca: stack.caPem, agent: false }, (res) => {
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
