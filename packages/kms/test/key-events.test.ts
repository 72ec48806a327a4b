// Key-state events from the embedded KMS: the AirlockSubscribeKeyEvents stream, its heartbeats, its place in the audit chain, and the listener limits around it.
import https from 'node:https';
import tls from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AirlockError } from '@airlock/common';
import { signRequest } from '@airlock/crypto';
import { createAwsKms } from '../src/aws-kms.js';
import type { KmsKeyEvent, KmsKeyEventSnapshot, KmsKeyEventSource, KmsKeyEventSubscription } from '../src/kms.js';
import { startTestKms, type TestKms } from './helpers.js';

const DAY = 24 * 60 * 60 * 1000;

interface Recorder {
  readonly snapshots: KmsKeyEventSnapshot[];
  readonly events: Array<KmsKeyEvent & { at: number }>;
  /** Arrival time of every line (snapshot, events, heartbeats). */
  readonly lines: number[];
  closed: AirlockError | undefined | null;
  readonly subscription: KmsKeyEventSubscription;
  waitFor(predicate: () => boolean, timeoutMs?: number): Promise<void>;
}

function record(source: KmsKeyEventSource, keyIds?: string[]): Recorder {
  const recorder = {
    snapshots: [] as KmsKeyEventSnapshot[],
    events: [] as Array<KmsKeyEvent & { at: number }>,
    lines: [] as number[],
    closed: null as AirlockError | undefined | null,
  };
  const subscription = source.subscribeKeyEvents(
    {
      onSnapshot: (s) => {
        recorder.lines.push(performance.now());
        recorder.snapshots.push(s);
      },
      onEvent: (e) => {
        const at = performance.now();
        recorder.lines.push(at);
        recorder.events.push({ ...e, at });
      },
      onHeartbeat: () => recorder.lines.push(performance.now()),
      onClose: (error) => {
        recorder.closed = error;
      },
    },
    keyIds === undefined ? {} : { keyIds },
  );
  return Object.assign(recorder, {
    subscription,
    async waitFor(predicate: () => boolean, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      while (!predicate()) {
        if (Date.now() > deadline) throw new Error('timed out waiting');
        await sleep(5);
      }
    },
  });
}

let kms: TestKms;
beforeAll(async () => {
  kms = await startTestKms();
});
afterAll(async () => {
  await kms.stop();
});

describe('key-state events (AirlockSubscribeKeyEvents)', () => {
  it('opens with a snapshot, then streams every change with consecutive sequence numbers', async () => {
    const client = kms.client();
    const key = await client.createKey({ description: 'events' });
    const events = record(client);
    await events.waitFor(() => events.snapshots.length === 1);
    const snapshot = events.snapshots[0];
    expect(snapshot?.heartbeatMs).toBeLessThanOrEqual(250);
    expect(snapshot?.keys).toContainEqual({ keyId: key.keyId, keyArn: key.arn, state: 'Enabled', version: 1 });

    await client.disableKey(key.keyId);
    await client.enableKey(key.keyId);
    await client.rotateKeyOnDemand(key.keyId);
    await client.scheduleKeyDeletion(key.keyId, 7);
    await client.cancelKeyDeletion(key.keyId);
    await client.enableKey(key.keyId);
    await client.scheduleKeyDeletion(key.keyId, 7);
    kms.clock.offsetMs += 8 * DAY;
    kms.server.maintain();
    await events.waitFor(() => events.events.some((e) => e.change === 'deleted'));
    const mine = events.events.filter((e) => e.keyId === key.keyId);
    expect(mine.map((e) => [e.change, e.state, e.version])).toEqual([
      ['disabled', 'Disabled', 1],
      ['enabled', 'Enabled', 1],
      ['rotated', 'Enabled', 2],
      ['pending-deletion', 'PendingDeletion', 2],
      ['deletion-cancelled', 'Disabled', 2],
      ['enabled', 'Enabled', 2],
      ['pending-deletion', 'PendingDeletion', 2],
      ['deleted', 'Deleted', 2],
    ]);
    expect(mine.every((e) => e.keyArn === key.arn)).toBe(true);
    const seqs = events.events.map((e) => e.seq);
    expect(seqs).toEqual(seqs.map((_, i) => (snapshot?.seq ?? 0) + i + 1));
    events.subscription.close();
    kms.clock.offsetMs = 0;
  });

  it('sends a heartbeat at least every 250 ms', async () => {
    const client = kms.client();
    const events = record(client);
    await events.waitFor(() => events.snapshots.length === 1);
    await sleep(1500);
    // Measured on the client, in the server's own process: a stalled event loop delays a line now and then, so percentiles.
    const gaps = events.lines
      .slice(1)
      .map((t, i) => t - (events.lines[i] ?? t))
      .sort((a, b) => a - b);
    expect(gaps.length).toBeGreaterThanOrEqual(6);
    expect(gaps[Math.floor(gaps.length / 2)]).toBeLessThanOrEqual(150);
    expect(gaps[Math.floor(gaps.length * 0.9)]).toBeLessThanOrEqual(250);
    events.subscription.close();
  });

  it('publishes DisableKey before acknowledging it: the event arrives within 100 ms of DisableKey returning', async () => {
    const client = kms.client();
    const events = record(client);
    await events.waitFor(() => events.snapshots.length === 1);
    const key = await client.createKey();
    const lags: number[] = [];
    for (let trial = 0; trial < 10; trial++) {
      const before = events.events.length;
      await client.disableKey(key.keyId);
      const returned = performance.now();
      await events.waitFor(() => events.events.slice(before).some((e) => e.keyId === key.keyId && e.change === 'disabled'), 2000);
      const event = events.events.slice(before).find((e) => e.change === 'disabled');
      lags.push((event?.at ?? Infinity) - returned);
      await client.enableKey(key.keyId);
    }
    expect(Math.max(...lags)).toBeLessThanOrEqual(100);
    events.subscription.close();
  });

  it('limits a stream to the keys asked for (aliases resolved when it opens)', async () => {
    const client = kms.client();
    const [a, b] = [await client.createKey(), await client.createKey()];
    await client.createAlias('alias/events-a', a.keyId);
    const events = record(client, ['alias/events-a']);
    await events.waitFor(() => events.snapshots.length === 1);
    expect(events.snapshots[0]?.keys.map((k) => k.keyId)).toEqual([a.keyId]);
    await client.disableKey(b.keyId);
    await client.disableKey(a.keyId);
    await events.waitFor(() => events.events.length === 1);
    await sleep(200);
    expect(events.events.map((e) => e.keyId)).toEqual([a.keyId]);
    events.subscription.close();
    const missing = record(client, ['alias/does-not-exist']);
    await missing.waitFor(() => missing.closed !== null);
    expect(missing.closed).toMatchObject({ code: 'KMS_KEY_NOT_FOUND' });
  });

  it('is SigV4-authenticated like every KMS call', async () => {
    const url = new URL(kms.server.url);
    const post = (headers: Record<string, string>): Promise<{ status: number; type: string | undefined }> =>
      new Promise((resolve, reject) => {
        const req = https.request({ hostname: url.hostname, port: url.port, method: 'POST', path: '/', ca: kms.caPem, headers }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, type: (JSON.parse(body) as { __type?: string }).__type }));
        });
        req.on('error', reject);
        req.end('{}');
      });
    const base = { host: url.host, 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': 'TrentService.AirlockSubscribeKeyEvents' };
    expect(await post(base)).toEqual({ status: 400, type: 'MissingAuthenticationTokenException' });
    const wrong = signRequest({ method: 'POST', path: '/', headers: base, body: '{}', credentials: { accessKeyId: kms.credentials.accessKeyId, secretAccessKey: 'x'.repeat(40) }, region: 'us-east-1', service: 'kms' });
    expect(await post({ ...base, ...wrong.headers })).toEqual({ status: 400, type: 'InvalidSignatureException' });
  });

  it('puts every published change in the audit chain, which still verifies', async () => {
    const client = kms.client();
    const key = await client.createKey();
    const before = (await kms.server.verifyAudit()).records;
    await client.disableKey(key.keyId);
    const after = await kms.server.verifyAudit();
    expect(after.ok).toBe(true);
    // The DisableKey request and the key-state event it published.
    expect(after.records - before).toBe(2);
    await client.disableKey(key.keyId); // no change, no event
    expect((await kms.server.verifyAudit()).records - after.records).toBe(1);
  });

  it('is refused without a request by a client for AWS KMS itself (no endpoint)', async () => {
    const aws = createAwsKms({ region: 'us-east-1', credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'x'.repeat(40) } });
    const events = record(aws);
    await events.waitFor(() => events.closed !== null);
    expect(events.closed).toMatchObject({ code: 'KMS_UNSUPPORTED_OPERATION' });
    aws.destroy();
  });
});

describe('key-event streams and the listener limits', () => {
  let short: TestKms;
  beforeAll(async () => {
    short = await startTestKms({ limits: { headersTimeoutMs: 200, requestTimeoutMs: 400, idleTimeoutMs: 600, keepAliveTimeoutMs: 300, bodyProgressTimeoutMs: 200 } });
  });
  afterAll(async () => {
    await short.stop();
  });

  it('a stream outlives the request, idle and keep-alive timeouts, which still cut off a slow request', async () => {
    const client = short.client();
    const events = record(client);
    await events.waitFor(() => events.snapshots.length === 1);
    await sleep(2000);
    expect(events.closed).toBeNull();
    const recent = events.lines.at(-1) ?? 0;
    expect(performance.now() - recent).toBeLessThan(300);
    expect(short.server.keyEventSubscribers()).toBe(1);
    // A request whose head never completes is still cut off by the head timeout.
    const url = new URL(short.server.url);
    const socket = tls.connect({ host: url.hostname, port: Number(url.port), ca: short.caPem });
    await new Promise<void>((resolve) => socket.once('secureConnect', () => resolve()));
    let answer = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (answer += chunk));
    socket.on('error', () => undefined);
    socket.write('POST / HTTP/1.1\r\nHost: x\r\n');
    const started = Date.now();
    await new Promise<void>((resolve) => socket.once('close', () => resolve()));
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(Date.now() - started).toBeLessThan(3000);
    events.subscription.close();
    await events.waitFor(() => short.server.keyEventSubscribers() === 0);
  });

  it('ends its streams when the server closes, and a restarted server opens a new epoch', async () => {
    const client = short.client();
    const events = record(client);
    await events.waitFor(() => events.snapshots.length === 1);
    await short.restart();
    await events.waitFor(() => events.closed !== null);
    expect(events.closed).toMatchObject({ code: 'KMS_UNAVAILABLE' });
    const again = record(short.client());
    await again.waitFor(() => again.snapshots.length === 1);
    expect(again.snapshots[0]?.epoch).not.toBe(events.snapshots[0]?.epoch);
    again.subscription.close();
  });
});
