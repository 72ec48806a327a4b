// Benchmark section for bench/kms.ts: kill-switch latency with and without the KMS key-event path, KMS calls per 10,000 GETs, and 1 MiB GET throughput against today's 1 s key cache.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { Agent } from 'node:https';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, GetObjectCommand, PutBucketEncryptionCommand, PutObjectCommand, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { createLogger } from '@airlock/common';
import { createAwsKms, type Kms, type KmsAdmin } from '@airlock/kms';
import { createObjectStoreServer, resolveObjectStoreServerConfig, type ObjectStoreServer } from '@airlock/objectstore/server';
import { createCertificateAuthority, issueServerCertificate, tlsClientOptions } from '@airlock/pki';
import { startTcpProxy, type TcpProxy } from '@airlock/testing';

export interface KmsEndpointForBench {
  readonly url: string;
  readonly region: string;
  readonly caPem: string;
  readonly credentials: { readonly accessKeyId: string; readonly secretAccessKey: string };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const LOAD_CLIENTS = 4;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN;
}

/** Kill-switch latencies: DisableKey returned → first refused GET, and → last successful GET, over `trials` disables under load. */
async function killSwitchTrials(admin: KmsAdmin, s3: S3Client[], bucket: string, keyId: string, keys: string[], trials: number, afterMs: number, between?: () => Promise<void>) {
  const firsts: number[] = [];
  const lasts: number[] = [];
  let refusedOther = 0;
  for (let t = 0; t < trials; t++) {
    await between?.();
    const outcomes: Array<{ end: number; ok: boolean; name?: string }> = [];
    let running = true;
    const loops = s3.map(async (client, c) => {
      for (let i = c; running; i++) {
        try {
          const out = await client.send(new GetObjectCommand({ Bucket: bucket, Key: keys[i % keys.length] }));
          await out.Body?.transformToByteArray();
          outcomes.push({ end: performance.now(), ok: true });
        } catch (error) {
          outcomes.push({ end: performance.now(), ok: false, name: error instanceof S3ServiceException ? error.name : 'other' });
        }
      }
    });
    await sleep(200);
    await admin.disableKey(keyId);
    const returned = performance.now();
    await sleep(afterMs);
    running = false;
    await Promise.all(loops);
    await admin.enableKey(keyId);
    const refused = outcomes.filter((o) => !o.ok && o.end >= returned);
    refusedOther += refused.filter((o) => o.name !== 'KMS.DisabledException').length;
    firsts.push(Math.min(...refused.map((o) => o.end - returned)));
    lasts.push(Math.max(0, ...outcomes.filter((o) => o.ok).map((o) => o.end - returned)));
    // Access is back once the key is Enabled again.
    for (let i = 0; i < 200; i++) {
      try {
        await (s3[0] as S3Client).send(new GetObjectCommand({ Bucket: bucket, Key: keys[0] })).then((o) => o.Body?.transformToByteArray());
        break;
      } catch {
        await sleep(10);
      }
    }
  }
  firsts.sort((a, b) => a - b);
  lasts.sort((a, b) => a - b);
  return { p50: percentile(firsts, 0.5), p99: percentile(firsts, 0.99), max: firsts.at(-1) ?? NaN, lastSuccessMax: lasts.at(-1) ?? NaN, refusedOther, trials };
}

export async function runKillSwitchBench(kms: KmsEndpointForBench): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'airlock-bench-killswitch-'));
  const ca = await createCertificateAuthority();
  const cert = await issueServerCertificate({ ca, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  const logger = createLogger({ name: 'bench', level: 'warn' });
  const kmsPort = Number(new URL(kms.url).port);
  const proxy: TcpProxy = await startTcpProxy({ host: '127.0.0.1', port: kmsPort });
  const closers: Array<() => Promise<void> | void> = [() => proxy.close(), () => rm(dir, { recursive: true, force: true })];
  const client = (endpoint = kms.url) => {
    const c = createAwsKms({ endpoint, region: kms.region, credentials: kms.credentials, caBundle: kms.caPem, maxAttempts: 1 });
    closers.push(() => c.destroy());
    return c;
  };
  const admin = client();
  const counts = new Map<string, number>();
  /** A store's KMS client: its calls counted under `name`; its key-event stream through the proxy when `viaProxy`. */
  const storeKms = (name: string, viaProxy: boolean): Kms => {
    const direct = client();
    const stream = viaProxy ? client(proxy.url) : direct;
    counts.set(name, 0);
    const counted = <A extends unknown[], R>(fn: (...a: A) => Promise<R>) => (...args: A): Promise<R> => {
      counts.set(name, (counts.get(name) ?? 0) + 1);
      return fn(...args);
    };
    // Key administration (the store creating its own key on first start) passes through uncounted.
    return Object.assign(Object.create(direct) as Kms, {
      generateDataKey: counted(direct.generateDataKey.bind(direct)),
      encrypt: counted(direct.encrypt.bind(direct)),
      decrypt: counted(direct.decrypt.bind(direct)),
      reEncrypt: counted(direct.reEncrypt.bind(direct)),
      describeKey: counted(direct.describeKey.bind(direct)),
      subscribeKeyEvents: stream.subscribeKeyEvents.bind(stream),
    });
  };
  const startStore = async (name: string, options: { keyEvents: boolean; viaProxy?: boolean }): Promise<ObjectStoreServer> => {
    const server = await createObjectStoreServer(
      resolveObjectStoreServerConfig({
        dataDir: join(dir, name),
        tls: { cert: cert.cert, key: cert.key },
        kms: storeKms(name, options.viaProxy === true),
        lookupSecret: (id) => (id === kms.credentials.accessKeyId ? kms.credentials.secretAccessKey : undefined),
        kmsKeyEvents: options.keyEvents,
        logger,
      }),
    );
    closers.push(() => server.close());
    if (options.keyEvents && !(await server.waitForKeyEvents(5000))) throw new Error(`store ${name}: key events did not go live`);
    return server;
  };
  const s3For = (server: ObjectStoreServer): S3Client[] =>
    Array.from({ length: LOAD_CLIENTS }, () => {
      const c = new S3Client({
        region: kms.region,
        endpoint: server.url,
        credentials: kms.credentials,
        forcePathStyle: true,
        maxAttempts: 1,
        requestHandler: new NodeHttpHandler({ httpsAgent: new Agent({ keepAlive: true, ...tlsClientOptions({ ca: ca.cert }) }) }),
      });
      closers.push(() => c.destroy());
      return c;
    });
  const seed = async (s3: S3Client, bucket: string, count: number, size: number): Promise<{ keyId: string; keys: string[] }> => {
    const key = await admin.createKey({ description: `bench ${bucket}` });
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    await s3.send(
      new PutBucketEncryptionCommand({
        Bucket: bucket,
        ServerSideEncryptionConfiguration: { Rules: [{ ApplyServerSideEncryptionByDefault: { SSEAlgorithm: 'aws:kms', KMSMasterKeyID: key.keyId }, BucketKeyEnabled: true }] },
      }),
    );
    const keys = Array.from({ length: count }, (_, i) => `object-${i}`);
    for (const k of keys) await s3.send(new PutObjectCommand({ Bucket: bucket, Key: k, Body: randomBytes(size) }));
    return { keyId: key.keyId, keys };
  };

  try {
    // 1. Kill switch, event path live.
    const live = await startStore('live', { keyEvents: true });
    const liveS3 = s3For(live);
    const liveData = await seed(liveS3[0] as S3Client, 'kill-live', 8, 1024);
    const liveTrials = await killSwitchTrials(admin, liveS3, 'kill-live', liveData.keyId, liveData.keys, 40, 300);

    // 2. Kill switch, event path down: the store's stream hangs (or drops) behind the proxy; keys cached under the live stream first.
    const cut = await startStore('cut', { keyEvents: true, viaProxy: true });
    const cutS3 = s3For(cut);
    const cutData = await seed(cutS3[0] as S3Client, 'kill-cut', 8, 1024);
    const cutTrials: Array<Awaited<ReturnType<typeof killSwitchTrials>>> = [];
    for (const mode of ['hang', 'drop'] as const) {
      cutTrials.push(
        await killSwitchTrials(admin, cutS3, 'kill-cut', cutData.keyId, cutData.keys, 10, 1300, async () => {
          proxy.setMode('pass');
          await cut.waitForKeyEvents(10_000);
          await sleep(1200);
          proxy.setMode(mode);
        }),
      );
    }
    proxy.setMode('pass');

    // 3. KMS calls per 10,000 GETs under one key: flat out, and paced over 30 s; today's 1 s cache paced the same way.
    const callsRow = async (server: ObjectStoreServer, name: string, bucket: string, paceMs: number | undefined): Promise<{ calls: number; seconds: number }> => {
      const s3 = s3For(server);
      const data = await seed(s3[0] as S3Client, bucket, 20, 1024);
      await sleep(1200);
      const before = counts.get(name) ?? 0;
      const started = performance.now();
      let next = 0;
      await Promise.all(
        s3.map(async (c) => {
          for (let i = next++; i < 10_000; i = next++) {
            if (paceMs !== undefined) {
              const wait = started + i * paceMs - performance.now();
              if (wait > 0) await sleep(wait);
            }
            const out = await c.send(new GetObjectCommand({ Bucket: bucket, Key: data.keys[i % data.keys.length] }));
            await out.Body?.transformToByteArray();
          }
        }),
      );
      return { calls: (counts.get(name) ?? 0) - before, seconds: (performance.now() - started) / 1000 };
    };
    const today = await startStore('today', { keyEvents: false });
    const callsFast = await callsRow(live, 'live', 'calls-fast', undefined);
    const callsPaced = await callsRow(live, 'live', 'calls-paced', 3);
    const callsToday = await callsRow(today, 'today', 'calls-today', 3);

    // 4. 1 MiB GET throughput: live subscription vs today's 1 s cache, 4 clients, in adjacent 2 s slices
    // (ABBA order within each round, 8 rounds), so that the machine's other load falls on both alike.
    const throughput = async (s3: S3Client[], bucket: string): Promise<number> => {
      let bytes = 0;
      const started = performance.now();
      const end = started + 2000;
      await Promise.all(
        s3.map(async (c) => {
          while (performance.now() < end) {
            const out = await c.send(new GetObjectCommand({ Bucket: bucket, Key: 'object-0' }));
            bytes += (await out.Body?.transformToByteArray())?.byteLength ?? 0;
          }
        }),
      );
      return bytes / 1024 / 1024 / ((performance.now() - started) / 1000);
    };
    const todayS3 = s3For(today);
    await seed(liveS3[0] as S3Client, 'mib-live', 1, 1024 * 1024);
    await seed(todayS3[0] as S3Client, 'mib-today', 1, 1024 * 1024);
    await throughput(liveS3, 'mib-live'); // warm-up
    await throughput(todayS3, 'mib-today');
    const a: number[] = [];
    const b: number[] = [];
    const ratios: number[] = [];
    for (let round = 0; round < 8; round++) {
      const order = round % 2 === 0 ? ['a', 'b', 'b', 'a'] : ['b', 'a', 'a', 'b'];
      let sumA = 0;
      let sumB = 0;
      for (const which of order) {
        if (which === 'a') sumA += await throughput(liveS3, 'mib-live');
        else sumB += await throughput(todayS3, 'mib-today');
      }
      a.push(sumA / 2);
      b.push(sumB / 2);
      ratios.push(sumA / sumB);
    }
    const median = (v: number[]): number => [...v].sort((x, y) => x - y)[Math.floor(v.length / 2)] ?? NaN;
    const mibLive = median(a);
    const mibToday = median(b);
    const mibRatio = median(ratios);

    const ms = (v: number): string => (Number.isFinite(v) ? v.toFixed(0) : 'none');
    const [hang, drop] = cutTrials as [Awaited<ReturnType<typeof killSwitchTrials>>, Awaited<ReturnType<typeof killSwitchTrials>>];
    return `## Kill switch and key events

An object store in this process (SSE-KMS bucket with bucket keys, 8 objects of 1 KiB) reads from the KMS
above. ${LOAD_CLIENTS} @aws-sdk/client-s3 clients GET in loops; DisableKey is sent by another KMS client, and
latencies are from DisableKey returning to the first GET refused with \`KMS.DisabledException\`, on the
clients' clock. "Last success" is the latest a GET still succeeded after DisableKey returned. For the
event path down, the store's key-event stream runs through a TCP relay that is made to hang (stop
relaying, connections left open) or to drop (connections cut, new ones refused) 1.2 s after keys were
cached under the live stream.

| measure | trials | p50 | p99 | max | last success, max | target |
|---|---|---|---|---|---|---|
| kill-switch latency, DisableKey returned → first refused GET, embedded KMS, key events live | ${liveTrials.trials} | ${ms(liveTrials.p50)} ms | **${ms(liveTrials.p99)} ms** | ${ms(liveTrials.max)} ms | ${ms(liveTrials.lastSuccessMax)} ms | p99 ≤ 100 ms (AWS S3 with bucket keys: not immediate) |
| kill-switch latency, event path down (stream hangs) | ${hang.trials} | ${ms(hang.p50)} ms | ${ms(hang.p99)} ms | **${ms(hang.max)} ms** | ${ms(hang.lastSuccessMax)} ms | ≤ 1 s, always |
| kill-switch latency, event path down (stream dropped) | ${drop.trials} | ${ms(drop.p50)} ms | ${ms(drop.p99)} ms | **${ms(drop.max)} ms** | ${ms(drop.lastSuccessMax)} ms | ≤ 1 s, always |

GETs refused with anything but \`KMS.DisabledException\` after DisableKey: ${liveTrials.refusedOther + hang.refusedOther + drop.refusedOther}.

| KMS calls by the store per 10,000 GETs (20 objects, one KMS key, ${LOAD_CLIENTS} clients) | GETs/s | KMS calls | target |
|---|---|---|---|
| key events live, flat out | ${(10_000 / callsFast.seconds).toFixed(0)} | **${callsFast.calls}** | ≤ 2, independent of request rate |
| key events live, paced over ≥ 30 s | ${(10_000 / callsPaced.seconds).toFixed(0)} | **${callsPaced.calls}** | ≤ 2 |
| today's 1 s cache (\`kmsKeyEvents: false\`), paced over ≥ 30 s | ${(10_000 / callsToday.seconds).toFixed(0)} | ${callsToday.calls} | — (one per second of traffic) |

| 1 MiB GET throughput (${LOAD_CLIENTS} clients; 8 rounds of 2 s slices A B B A / B A A B) | MB/s |
|---|---|
| key events live (keys cached 5 min), median of rounds | ${mibLive.toFixed(0)} |
| today's 1 s cache, median of rounds | ${mibToday.toFixed(0)} |
| ratio, live ÷ 1 s cache, median of the rounds' ratios (min ${Math.min(...ratios).toFixed(2)}, max ${Math.max(...ratios).toFixed(2)}) | **${mibRatio.toFixed(2)}×** (target ≥ 1.0) |

Load average during this run: ${loadavg().map((l) => l.toFixed(1)).join(', ')} (1, 5, 15 min) on ${cpus().length} cores shared with other work, so absolute MB/s are low; the ratio is the figure.
`;
  } finally {
    for (const close of closers.reverse()) await close();
  }
}
