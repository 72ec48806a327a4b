// Benchmark: embedded KMS GenerateDataKey/Decrypt over keep-alive HTTPS vs a no-op HTTPS endpoint on the same server,
// plus KMS calls per 1,000 envelope decrypts with and without the data-key cache, and the kill switch on key events (kms-kill-switch.ts). Writes bench/results/kms.md.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { Agent, request } from 'node:https';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { envelopeDecrypt, envelopeEncrypt, signRequest } from '@airlock/crypto';
import { createAwsKms, createCachingKms, createKmsKeyWrapper } from '@airlock/kms';
import { runKillSwitchBench } from './kms-kill-switch.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CONCURRENCY = 32;
const DURATION_MS = 5000;

interface Endpoint {
  endpoint: string;
  region: string;
  caBundle: string;
  credentialsFile: string;
}

async function startKms(dir: string): Promise<{ stop: () => Promise<void>; endpoint: Endpoint; credentials: { accessKeyId: string; secretAccessKey: string } }> {
  const child = spawn(process.execPath, [join(ROOT, 'packages/cli/dist/main.js'), 'kms', 'serve', '--data-dir', dir, '--port', '0', '--log-level', 'warn'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('Press Ctrl-C')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`kms serve exited with ${String(code)}`)));
  });
  const endpoint = JSON.parse(await readFile(join(dir, 'kms', 'endpoint.json'), 'utf8')) as Endpoint;
  const text = await readFile(endpoint.credentialsFile, 'utf8');
  const credentials = {
    accessKeyId: /aws_access_key_id = (\S+)/.exec(text)?.[1] ?? '',
    secretAccessKey: /aws_secret_access_key = (\S+)/.exec(text)?.[1] ?? '',
  };
  return {
    endpoint,
    credentials,
    stop: () =>
      new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGINT');
      }),
  };
}

interface Result {
  ops: number;
  seconds: number;
  p50: number;
  p99: number;
  errors: number;
}

/** Runs `CONCURRENCY` workers calling `op` back to back for DURATION_MS; latencies in ms. */
async function load(op: () => Promise<void>): Promise<Result> {
  for (let i = 0; i < 200; i++) await op(); // warm-up: TLS sessions, JIT
  const latencies: number[] = [];
  let errors = 0;
  const start = performance.now();
  const end = start + DURATION_MS;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < end) {
        const t = performance.now();
        try {
          await op();
          latencies.push(performance.now() - t);
        } catch {
          errors++;
        }
      }
    }),
  );
  const seconds = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  const pct = (p: number): number => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? NaN;
  return { ops: latencies.length, seconds, p50: pct(0.5), p99: pct(0.99), errors };
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'airlock-bench-kms-'));
  const kms = await startKms(dir);
  const ca = await readFile(kms.endpoint.caBundle, 'utf8');
  const url = new URL(kms.endpoint.endpoint);
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY, ca });
  try {
    const sdk = createAwsKms({ endpoint: kms.endpoint.endpoint, region: kms.endpoint.region, credentials: kms.credentials, caBundle: ca, maxAttempts: 1 });
    const key = await sdk.createKey({ description: 'bench' });
    const context = { bucket: 'bench', key: 'object' };
    const sample = await sdk.generateDataKey(key.keyId, context);

    /** One raw keep-alive HTTPS request, signed with Airlock's SigV4 signer (lean client: measures the server). */
    const raw = (method: string, path: string, target?: string, body = ''): Promise<void> =>
      new Promise((resolve, reject) => {
        const headers: Record<string, string> = { host: url.host };
        if (target !== undefined) {
          headers['content-type'] = 'application/x-amz-json-1.1';
          headers['x-amz-target'] = `TrentService.${target}`;
          const signed = signRequest({
            method,
            path,
            headers,
            payloadHash: createHash('sha256').update(body).digest('hex'),
            credentials: kms.credentials,
            region: kms.endpoint.region,
            service: 'kms',
            date: new Date(),
          });
          Object.assign(headers, signed.headers);
        }
        const req = request({ host: url.hostname, port: url.port, method, path, headers, agent }, (res) => {
          res.resume();
          res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`HTTP ${String(res.statusCode)}`))));
        });
        req.on('error', reject);
        req.end(body);
      });

    const gdkBody = JSON.stringify({ KeyId: key.keyId, KeySpec: 'AES_256', EncryptionContext: context });
    const decBody = JSON.stringify({ CiphertextBlob: sample.ciphertextBlob.toString('base64'), EncryptionContext: context });
    const rows: Array<[string, Result]> = [];
    rows.push(['no-op HTTPS (GET /health, floor)', await load(() => raw('GET', '/health'))]);
    rows.push(['GenerateDataKey (raw signed HTTPS)', await load(() => raw('POST', '/', 'GenerateDataKey', gdkBody))]);
    rows.push(['Decrypt (raw signed HTTPS)', await load(() => raw('POST', '/', 'Decrypt', decBody))]);
    rows.push(['GenerateDataKey (@aws-sdk/client-kms)', await load(async () => void (await sdk.generateDataKey(key.keyId, context)))]);
    rows.push(['Decrypt (@aws-sdk/client-kms)', await load(async () => void (await sdk.decrypt(sample.ciphertextBlob, context)))]);

    // KMS calls per 1,000 envelope decrypts: 10 objects read round-robin over about 2 seconds.
    const wrapperFor = (k: typeof sdk) => createKmsKeyWrapper(k, key.keyId);
    const blobs = await Promise.all(Array.from({ length: 10 }, (_, i) => envelopeEncrypt(Buffer.alloc(1024, i), { wrapper: wrapperFor(sdk), context })));
    const count = async (caching: boolean, keyEvents = false): Promise<number> => {
      const counting = { calls: 0 };
      const base = new Proxy(sdk, {
        get(target, prop, receiver) {
          if (prop === 'decrypt') counting.calls++;
          return Reflect.get(target, prop, receiver) as unknown;
        },
      });
      const cache = caching ? createCachingKms(base, { keyEvents }) : undefined;
      const kmsClient = cache ?? base;
      if (keyEvents && !(await cache?.waitForKeyEvents(5000))) throw new Error('key events did not go live');
      const wrapper = wrapperFor(kmsClient);
      for (let i = 0; i < 1000; i++) {
        await envelopeDecrypt(blobs[i % blobs.length] as Buffer, { wrapper, context });
        if (i % 100 === 99) await new Promise((r) => setTimeout(r, 200));
      }
      cache?.close();
      return counting.calls;
    };
    const uncached = await count(false);
    const cached = await count(true);
    const cachedLive = await count(true, true);
    const killSwitch = await runKillSwitchBench({ url: kms.endpoint.endpoint, region: kms.endpoint.region, caPem: ca, credentials: kms.credentials });
    sdk.destroy();

    const floor = rows[0]?.[1] as Result;
    const table = rows
      .map(([name, r]) => {
        const ops = r.ops / r.seconds;
        return `| ${name} | ${ops.toFixed(0)} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${(ops / (floor.ops / floor.seconds)).toFixed(2)}× | ${r.errors} |`;
      })
      .join('\n');
    const report = `# KMS benchmark

Generated by \`npm run bench:kms\` (bench/kms.ts) on ${new Date().toISOString()}, all rows in one run.
Machine: ${cpus()[0]?.model ?? 'unknown'} × ${cpus().length}, Node ${process.version}. The KMS runs in its own process
(\`airlock kms serve\`); the load generator runs in this one, ${CONCURRENCY} concurrent requests over keep-alive HTTPS
(TLS 1.3), ${DURATION_MS / 1000} s per row after a warm-up. Both share the machine's ${cpus().length} cores.

| operation | ops/s | p50 ms | p99 ms | vs no-op floor | errors |
|---|---|---|---|---|---|
${table}

"Raw signed HTTPS" is a lean client (Airlock's SigV4 signer and node:https), so the row measures the
server. The \`@aws-sdk/client-kms\` rows include the SDK's own per-call cost on the same cores.

## Data-key cache

1,000 envelope decrypts (ASF1 blobs whose data keys are wrapped by the KMS key), 10 distinct objects
read round-robin, with a 200 ms pause every 100 decrypts (about 2 s in all):

| | KMS Decrypt calls per 1,000 envelope decrypts |
|---|---|
| without cache | ${uncached} |
| with \`createCachingKms\`, key events off (TTL 1 s, the kill-switch bound) | ${cached} |
| with \`createCachingKms\`, key events live (TTL 5 min, dropped on a key-state change) | ${cachedLive} |

${killSwitch}`;
    await writeFile(join(ROOT, 'bench/results/kms.md'), report);
    console.log(report);
  } finally {
    agent.destroy();
    await kms.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
