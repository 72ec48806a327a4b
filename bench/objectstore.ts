// Benchmark: the embedded object store — encryption cost, the AWS CLI against @20minutes/s3rver, KMS calls with
// bucket keys, and server memory while streaming 1 GiB. Writes bench/results/objectstore.md. Not part of npm test.
import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { connect } from 'node:tls';
import { promisify } from 'node:util';
import { PLANE_NODE_FLAGS } from '@airlock/cli';
import { createS3ObjectStore } from '@airlock/objectstore';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const MiB = 1024 * 1024;
const AWS = '/usr/bin/aws';

interface Fixture {
  dir: string;
  caPath: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  kmsKeyArn: string;
  encryptedUrl: string;
  plainUrl: string;
  peerTls: { keyPath: string; certPath: string };
}

/**
 * BENCH_OBJECTSTORE_ONLY=sdk-1m,sdk-256m,kms,memory,cli-1m,cli-256m runs only those sections (for profiling and
 * A/B work); a partial run prints its rows and leaves bench/results/objectstore.md alone.
 * BENCH_OBJECTSTORE_SERVER_ARGS adds node flags to the server process (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof").
 */
const ONLY = process.env.BENCH_OBJECTSTORE_ONLY?.split(',').map((s) => s.trim()).filter((s) => s !== '');
const runs = (section: string): boolean => ONLY === undefined || ONLY.includes(section);
const CLOCK_TICKS = 100; // USER_HZ: /proc/<pid>/stat counts CPU time in 1/100 s on Linux
const SDK_REPS_1M = 200;
const SDK_REPS_256M = 5;
// BENCH_OBJECTSTORE_QUICK=1 takes 3 CLI runs of each instead, to check the bench itself (never for the results file).
const QUICK = process.env.BENCH_OBJECTSTORE_QUICK === '1';
const CLI_REPS_1M = QUICK ? 3 : 21;
const CLI_REPS_256M = QUICK ? 3 : 11;
const SPAN_REPS = QUICK ? 2 : 15;
/** Seconds each server process is watched while idle, after the 1 MiB rounds: what it spends with no request in flight. */
const IDLE_SECONDS = QUICK ? 3 : 10;
const SERVER_ARGS = process.env.BENCH_OBJECTSTORE_SERVER_ARGS?.split(' ').filter((s) => s !== '') ?? [];

function startNode(script: string, args: string[] = []): { child: ChildProcessWithoutNullStreams; lines: AsyncIterator<string> } {
  // The servers run with the V8 flags `airlock up` gives its plane processes, as in production.
  const child = spawn(process.execPath, [...PLANE_NODE_FLAGS, ...SERVER_ARGS, '--conditions=airlock-source', '--import', 'tsx', script, ...args], { cwd: ROOT });
  child.stderr.on('data', (d: Buffer) => process.stderr.write(d));
  const queue: string[] = [];
  let wake: (() => void) | undefined;
  let buffer = '';
  child.stdout.on('data', (d: Buffer) => {
    buffer += d.toString();
    let at: number;
    while ((at = buffer.indexOf('\n')) >= 0) {
      queue.push(buffer.slice(0, at));
      buffer = buffer.slice(at + 1);
      wake?.();
    }
  });
  const lines: AsyncIterator<string> = {
    async next() {
      while (queue.length === 0) await new Promise<void>((r) => (wake = r));
      return { value: queue.shift() as string, done: false };
    },
  };
  return { child, lines };
}

const rssMiB = async (pid: number): Promise<number> => {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
};

/** CPU seconds (user + system) from /proc: of a running process, or of this process's finished (reaped) children. */
async function cpuSeconds(pid: number | 'children'): Promise<number> {
  const fields = (await readFile(`/proc/${pid === 'children' ? 'self' : pid}/stat`, 'utf8')).split(') ')[1]?.split(' ') ?? [];
  const [user, system] = pid === 'children' ? [fields[13], fields[14]] : [fields[11], fields[12]];
  return (Number(user) + Number(system)) / CLOCK_TICKS;
}

/**
 * Wraps a CLI run so that each call records the CPU the CLI used (as this process's reaped child)
 * and the CPU the server process used meanwhile.
 */
function cpuMetered(serverPid: number, fn: () => Promise<unknown>): { run: () => Promise<unknown>; samples: Array<{ cli: number; server: number }> } {
  const samples: Array<{ cli: number; server: number }> = [];
  return {
    samples,
    run: async () => {
      const [cli, server] = [await cpuSeconds('children'), await cpuSeconds(serverPid)];
      await fn();
      samples.push({ cli: (await cpuSeconds('children')) - cli, server: (await cpuSeconds(serverPid)) - server });
    },
  };
}

const sink = (): Writable => new Writable({ write: (_c, _e, cb) => cb() });

async function timeIt(fn: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await fn();
  return (performance.now() - start) / 1000;
}

const medianOf = (samples: number[]): number => [...samples].sort((a, b) => a - b)[Math.floor(samples.length / 2)] as number;

/** Untimed runs of each configuration before `reps` timed ones. */
const warmupsFor = (reps: number): number => Math.max(1, Math.min(5, Math.floor(reps / 8)));

/**
 * Times `fns` interleaved, each round in the order of the one before reversed (ABBA for two, ABCCBA for three …)
 * after a warm-up of each, and returns every run's seconds per configuration. Timing one configuration after the
 * other lets the later ones inherit the earlier ones' warm-up (JIT, heap sizing, TCP windows) and a different share
 * of a busy machine: measured that way, whichever ran second looked 5–15 % faster.
 */
async function interleaved(reps: number, fns: ReadonlyArray<() => Promise<unknown>>): Promise<number[][]> {
  for (let i = 0; i < warmupsFor(reps); i++) for (const fn of fns) await fn();
  const samples = fns.map((): number[] => []);
  const order = fns.map((_, i) => i);
  for (let i = 0; i < reps; i++) {
    for (const at of i % 2 === 0 ? order : [...order].reverse()) samples[at]?.push(await timeIt(fns[at] as () => Promise<unknown>));
  }
  return samples;
}

/** `interleaved` for two configurations, as each one's median seconds. */
async function pairedMedians(reps: number, a: () => Promise<unknown>, b: () => Promise<unknown>): Promise<{ a: number; b: number }> {
  const [as, bs] = await interleaved(reps, [a, b]);
  return { a: medianOf(as as number[]), b: medianOf(bs as number[]) };
}

/**
 * Seconds from the AWS CLI's first "Sending http request" to its last log line, read from its --debug log: the
 * transfer itself (requests, body, file I/O), without the interpreter's start-up and exit.
 */
function transferSpan(log: string): number {
  let first: number | undefined;
  let last = NaN;
  for (const line of log.split('\n')) {
    const m = /^\d{4}-\d\d-\d\d (\d\d):(\d\d):(\d\d),(\d{3}) /.exec(line);
    if (m === null) continue;
    const [h, min, sec, milli] = m.slice(1).map(Number) as [number, number, number, number];
    last = h * 3600 + min * 60 + sec + milli / 1000;
    if (first === undefined && line.includes('Sending http request')) first = last;
  }
  return first === undefined ? NaN : last - first;
}

/** The 25th and 75th percentiles of `values` (nearest rank). */
function quartiles(values: number[]): [number, number] {
  const sorted = [...values].sort((x, y) => x - y);
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] as number;
  return [at(0.25), at(0.75)];
}

/** The TLS version and cipher suite a server negotiates with a default Node client (Python's ssl offers the same TLS 1.3 suites). */
async function negotiated(url: string, ca: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port), ca, servername: undefined }, () => {
      resolve(`${socket.getProtocol() ?? '?'} ${socket.getCipher().standardName}`);
      socket.end();
    });
    socket.once('error', reject);
  });
}

/** Starts the fixture process (KMS, encrypting store, plaintext store) and reads where it listens. */
async function startFixture(): Promise<{ servers: ReturnType<typeof startNode>; fixture: Fixture }> {
  const servers = startNode(join(ROOT, 'bench/fixtures/objectstore-servers.ts'));
  return { servers, fixture: JSON.parse((await servers.lines.next()).value) as Fixture };
}

/** The bench bucket, SSE-KMS under the fixture's customer key with bucket keys on. */
const createBenchBucket = (store: ReturnType<typeof createS3ObjectStore>, fixture: Fixture): Promise<void> =>
  store.createBucket('bench', { algorithm: 'aws:kms', kmsKeyId: fixture.kmsKeyArn, bucketKeyEnabled: true });

async function main(): Promise<void> {
  const { servers, fixture } = await startFixture();
  const ca = await readFile(fixture.caPath, 'utf8');
  const work = await mkdtemp(join(tmpdir(), 'airlock-bench-files-'));
  const rows: string[] = [];
  const cliRows: string[] = [];
  const cpuRows: string[] = [];
  const floorRows: string[] = [];
  const spanRows: string[] = [];
  let kmsCalls = NaN;
  let memory = '';
  let idleLine = '';
  const s3rvers: ChildProcessWithoutNullStreams[] = [];
  let tlsSuites: string[] = [];
  let awsVersion = 'aws-cli';
  let cliServers: ReturnType<typeof startNode> | undefined;
  let bareServers: ReturnType<typeof startNode> | undefined;
  let cliFixtureDir: string | undefined;
  try {
    const client = (url: string) => createS3ObjectStore({ endpoint: url, credentials: fixture.credentials, caBundle: ca, maxAttempts: 1 });
    const enc = client(fixture.encryptedUrl);
    const plain = client(fixture.plainUrl);
    for (const c of [enc, plain]) await createBenchBucket(c, fixture);

    // 1. Encryption on vs off, same server code, same client (@aws-sdk/client-s3 defaults), over HTTPS.
    for (const size of [MiB, 256 * MiB]) {
      if (!runs(size === MiB ? 'sdk-1m' : 'sdk-256m')) continue;
      const data = randomBytes(size);
      const reps = size === MiB ? SDK_REPS_1M : SDK_REPS_256M;
      const put = (c: typeof enc) => () => c.put('bench', `obj-${size}`, data, { contentLength: size });
      const get = (c: typeof enc) => async () => pipeline(await c.get('bench', `obj-${size}`), sink());
      const puts = await pairedMedians(reps, put(enc), put(plain));
      const gets = await pairedMedians(reps, get(enc), get(plain));
      const e = { put: size / puts.a / 1e6, get: size / gets.a / 1e6 };
      const p = { put: size / puts.b / 1e6, get: size / gets.b / 1e6 };
      rows.push(
        `| ${size / MiB} MiB | PUT | ${e.put.toFixed(0)} | ${p.put.toFixed(0)} | **${(e.put / p.put).toFixed(2)}×** |`,
        `| ${size / MiB} MiB | GET | ${e.get.toFixed(0)} | ${p.get.toFixed(0)} | **${(e.get / p.get).toFixed(2)}×** |`,
      );
      console.error(rows.slice(-2).join('\n'));
    }

    // 2. KMS calls per 1,000 GETs of distinct objects with bucket keys (counted in the KMS audit log).
    let elapsed = NaN;
    if (runs('kms')) {
      for (let i = 0; i < 1000; i += 50) await Promise.all(Array.from({ length: 50 }, (_, j) => enc.put('bench', `small/${i + j}`, `object ${i + j}`)));
      await new Promise((r) => setTimeout(r, 1200)); // let cached bucket keys expire: count from cold
      const audit = async (): Promise<number> => {
        servers.child.stdin.write('audit\n');
        return (JSON.parse((await servers.lines.next()).value) as { auditRecords: number }).auditRecords;
      };
      const before = await audit();
      const started = performance.now();
      for (let i = 0; i < 1000; i += 50) {
        await Promise.all(Array.from({ length: 50 }, async (_, j) => pipeline(await enc.get('bench', `small/${i + j}`), sink())));
      }
      elapsed = (performance.now() - started) / 1000;
      kmsCalls = (await audit()) - before;
    }

    // 3. Server memory while streaming a 1 GiB object up and down.
    if (runs('memory')) {
      const block = randomBytes(MiB);
      const baseline = await rssMiB(servers.child.pid as number);
      let peak = baseline;
      const sampler = setInterval(() => void rssMiB(servers.child.pid as number).then((v) => (peak = Math.max(peak, v))), 50);
      let sent = 0;
      const source = new Readable({
        read() {
          this.push(sent < 1024 ? block : null);
          sent++;
        },
      });
      await enc.put('bench', 'gib', source, { contentLength: 1024 * MiB });
      await pipeline(await enc.get('bench', 'gib'), sink());
      clearInterval(sampler);
      memory = `server RSS ${baseline.toFixed(0)} MiB before, peak ${peak.toFixed(0)} MiB while a 1 GiB object streamed up and back down (+${(peak - baseline).toFixed(0)} MiB)`;
    }

    enc.destroy();
    plain.destroy();

    // 4. The AWS CLI (aws s3 cp --no-progress) against Airlock (TLS + SSE-KMS), s3rver over TLS (a certificate from the
    //    same CA) and s3rver over plaintext HTTP, with bare servers as the CLI's floor, all interleaved. The servers
    //    start fresh for it: Airlock in a second fixture process, so it does not carry the heap and files of the
    //    sections above while the s3rvers start clean.
    if (runs('cli-1m') || runs('cli-256m')) {
      const started = await startFixture();
      cliServers = started.servers;
      const cliFixture = started.fixture;
      cliFixtureDir = cliFixture.dir;
      const cliCa = await readFile(cliFixture.caPath, 'utf8');
      awsVersion = (await run(AWS, ['--version'])).stdout.trim().split(' ')[0] ?? awsVersion;
      const cliClient = createS3ObjectStore({ endpoint: cliFixture.encryptedUrl, credentials: cliFixture.credentials, caBundle: cliCa, maxAttempts: 1 });
      await createBenchBucket(cliClient, cliFixture);
      cliClient.destroy();
      const startS3rver = async (name: string, tls: boolean): Promise<{ child: ChildProcessWithoutNullStreams; url: string }> => {
        const options = {
          port: 0,
          address: '127.0.0.1',
          silent: true,
          directory: join(work, name),
          configureBuckets: [{ name: 'bench' }],
          ...(tls ? { keyPath: cliFixture.peerTls.keyPath, certPath: cliFixture.peerTls.certPath } : {}),
        };
        const child = spawn(
          process.execPath,
          [
            '-e',
            `const o = ${JSON.stringify(options)}; const fs = require('node:fs');
             if (o.keyPath) { o.key = fs.readFileSync(o.keyPath); o.cert = fs.readFileSync(o.certPath); delete o.keyPath; delete o.certPath; }
             import('@20minutes/s3rver').then(async ({ default: S3rver }) => { const { port } = await new S3rver(o).run(); console.log(port); });`,
          ],
          { cwd: ROOT },
        );
        child.stderr.on('data', (d: Buffer) => process.stderr.write(d));
        const port = await new Promise<number>((resolve) => child.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))));
        return { child, url: `${tls ? 'https' : 'http'}://127.0.0.1:${port}` };
      };
      const s3rverTls = await startS3rver('s3rver-tls', true);
      s3rvers.push(s3rverTls.child);
      const s3rverHttp = await startS3rver('s3rver-http', false);
      s3rvers.push(s3rverHttp.child);
      const env = { ...process.env, AWS_ACCESS_KEY_ID: cliFixture.credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: cliFixture.credentials.secretAccessKey, AWS_DEFAULT_REGION: 'us-east-1', AWS_CA_BUNDLE: cliFixture.caPath, AWS_PAGER: '', HOME: work };
      const s3rverEnv = { ...env, AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' };
      const cp = (args: string[], endpoint: string, e: NodeJS.ProcessEnv) => run(AWS, ['s3', 'cp', ...args, '--no-progress', '--endpoint-url', endpoint], { env: e, maxBuffer: 1 << 20 });
      // The floor: bare servers that read and drop uploads and send downloads from memory, over HTTPS and over HTTP.
      bareServers = startNode(join(ROOT, 'bench/fixtures/bare-servers.ts'), [work]);
      const bare = JSON.parse((await bareServers.lines.next()).value) as { httpsUrl: string; httpUrl: string; caPath: string };
      const bareEnv = { ...env, AWS_CA_BUNDLE: bare.caPath };
      const targets = [
        { url: cliFixture.encryptedUrl, env, pid: cliServers.child.pid as number, flags: [] },
        { url: s3rverTls.url, env: s3rverEnv, pid: s3rverTls.child.pid as number, flags: [] },
        { url: s3rverHttp.url, env: s3rverEnv, pid: s3rverHttp.child.pid as number, flags: [] },
        { url: bare.httpsUrl, env: bareEnv, pid: bareServers.child.pid as number, flags: ['--no-sign-request'] },
        { url: bare.httpUrl, env: bareEnv, pid: bareServers.child.pid as number, flags: ['--no-sign-request'] },
      ];
      tlsSuites = await Promise.all([
        negotiated(cliFixture.encryptedUrl, cliCa),
        negotiated(s3rverTls.url, cliCa),
        negotiated(bare.httpsUrl, await readFile(bare.caPath, 'utf8')),
      ]);
      const ms = (seconds: number): string => (seconds * 1000).toFixed(0);
      for (const size of [MiB, 256 * MiB]) {
        if (!runs(size === MiB ? 'cli-1m' : 'cli-256m')) continue;
        const file = join(work, `f-${size}`);
        await writeFile(file, randomBytes(size));
        const reps = size === MiB ? CLI_REPS_1M : CLI_REPS_256M;
        const upload = (t: (typeof targets)[number]) => () => cp([file, `s3://bench/f-${size}`, ...t.flags], t.url, t.env);
        const download = (t: (typeof targets)[number]) => () => cp([`s3://bench/f-${size}`, `${file}.back`, ...t.flags], t.url, t.env);
        for (const [op, copy] of [['PUT', upload], ['GET', download]] as const) {
          const metered = targets.map((t) => cpuMetered(t.pid, copy(t)));
          const samples = await interleaved(reps, metered.map((m) => m.run));
          const [airlock, peerTls, peerHttp, floorTls, floorHttp] = samples.map((times) => medianOf(times)) as [number, number, number, number, number];
          const speed = (seconds: number): string => (size / seconds / 1e6).toFixed(1);
          // Each round times all five once, back to back: the round's own ratio pairs runs made under the same load.
          const paired = (peer: number): string => {
            const [low, high] = quartiles((samples[0] as number[]).map((t, i) => ((samples[peer] as number[])[i] as number) / t));
            return `${low.toFixed(2)}–${high.toFixed(2)}`;
          };
          const target = peerTls / airlock;
          cliRows.push(
            `| ${size / MiB} MiB | ${op} | ${speed(airlock)} | ${speed(peerTls)} | ${speed(peerHttp)} | **${target.toFixed(2)}×** ${target >= 1 ? '✓' : '✗'} (${paired(1)}) | ${(peerHttp / airlock).toFixed(2)}× (${paired(2)}) |`,
          );
          const cpu = (m: (typeof metered)[number], which: 'cli' | 'server'): string => medianOf(m.samples.slice(warmupsFor(reps)).map((sample) => sample[which])).toFixed(2);
          cpuRows.push(`| ${size / MiB} MiB | ${op} | ${metered.map((m) => `${cpu(m, 'cli')} / ${cpu(m, 'server')}`).join(' | ')} |`);
          floorRows.push(
            `| ${size / MiB} MiB | ${op} | ${speed(floorTls)} | ${speed(floorHttp)} | ${(floorHttp / floorTls).toFixed(2)}× | ${ms(floorTls)} | ${ms(airlock - floorTls)} | ${ms(peerTls - floorTls)} |`,
          );
          console.error(`${cliRows.at(-1)}\n  CPU s, CLI / server: ${cpuRows.at(-1)}\n  floor: ${floorRows.at(-1)}`);
        }
        if (size === MiB) {
          // At 1 MiB the CLI's start-up is most of each copy; its --debug log timestamps the transfer itself.
          for (const [op, args] of [['PUT', [file, `s3://bench/f-${size}`]], ['GET', [`s3://bench/f-${size}`, `${file}.back`]]] as const) {
            const spans: number[][] = targets.slice(0, 4).map(() => []);
            for (let i = 0; i < SPAN_REPS + 1; i++) {
              const order = [0, 1, 2, 3];
              for (const at of i % 2 === 0 ? order : order.reverse()) {
                const t = targets[at] as (typeof targets)[number];
                const { stderr } = await run(AWS, ['s3', 'cp', ...args, ...t.flags, '--no-progress', '--debug', '--endpoint-url', t.url], { env: t.env, maxBuffer: 64 << 20 });
                if (i > 0) spans[at]?.push(transferSpan(stderr));
              }
            }
            const [airlock, peerTls, peerHttp, floorTls] = spans.map((values) => medianOf(values)) as [number, number, number, number];
            spanRows.push(
              `| ${op} | ${ms(floorTls)} | ${ms(airlock)} | ${ms(peerTls)} | ${ms(peerHttp)} | ${(peerTls / airlock).toFixed(2)}× (${quartiles(spans[0]!.map((t, i) => spans[1]![i]! / t)).map((q) => q.toFixed(2)).join('–')}) |`,
            );
            console.error(`transfer span: ${spanRows.at(-1)}`);
          }
          // What each server spends with no request in flight, all watched over the same window: part of every
          // per-copy figure above, since a copy lasts about a second.
          const pids = [...new Set(targets.map((t) => t.pid))];
          const before = await Promise.all(pids.map((pid) => cpuSeconds(pid)));
          await new Promise((resolve) => setTimeout(resolve, IDLE_SECONDS * 1000));
          const after = await Promise.all(pids.map((pid) => cpuSeconds(pid)));
          const idleMs = (pid: number): string => ((((after[pids.indexOf(pid)] as number) - (before[pids.indexOf(pid)] as number)) / IDLE_SECONDS) * 1000).toFixed(1);
          const [airlockPid, tlsPid, httpPid, barePid] = targets.map((t) => t.pid) as [number, number, number, number];
          idleLine = `Airlock ${idleMs(airlockPid)}, s3rver TLS ${idleMs(tlsPid)}, s3rver HTTP ${idleMs(httpPid)}, the bare servers' process ${idleMs(barePid)}`;
          console.error(`idle CPU, ms per second: ${idleLine}`);
        }
      }
    }

    if (ONLY !== undefined || QUICK) {
      console.log([...rows, ...cliRows, ...cpuRows, ...floorRows, ...spanRows, `idle CPU, ms per second: ${idleLine}`].join('\n'));
      if (runs('kms')) console.log(`KMS calls: ${kmsCalls} (${elapsed.toFixed(2)} s)`);
      if (runs('memory')) console.log(memory);
      return;
    }

    const report = `# Object store benchmark

Generated by \`npm run bench:objectstore\` (bench/objectstore.ts) on ${new Date().toISOString()}, all rows in one run.
Machine: ${cpus()[0]?.model ?? 'unknown'} × ${cpus().length}, Node ${process.version}. The KMS and both Airlock stores run in one
child process (a second, fresh one for the AWS CLI section, beside two s3rver processes and one bare-server process), started with the V8 flags \`airlock up\` gives its plane processes
(\`${PLANE_NODE_FLAGS.join(' ')}\`); clients run in this process (SDK) or as \`/usr/bin/aws\` processes. All share ${cpus().length} cores.

## Encryption cost: SSE-KMS on vs off, same server

\`@aws-sdk/client-s3\` (default configuration: aws-chunked uploads with CRC32 trailers) over HTTPS against the
same object-store code, once encrypting (ASF1 under a bucket key of an SSE-KMS customer key) and once with
the bench-only \`benchmarkPlaintextBodies\` flag. MB/s, median of ${SDK_REPS_1M} runs (1 MiB) or ${SDK_REPS_256M} (256 MiB) of each,
the two configurations timed alternately (ABBA) after a warm-up of both, so neither inherits the other's warm-up.

| size | op | encrypted | plaintext | ratio (target ≥ 0.85) |
|---|---|---|---|---|
${rows.join('\n')}

## The AWS CLI against @20minutes/s3rver

\`/usr/bin/aws s3 cp --no-progress\` (${awsVersion}) on the same files, up and down, against five servers, all
freshly started for this section and each in its own process:

- **Airlock** over TLS with SSE-KMS (ASF1 at rest under a bucket key);
- **s3rver TLS**: s3rver 4.0.4 over HTTPS (its \`key\`/\`cert\` options, Node's default TLS settings) with a
  certificate issued by the same CA as Airlock's, so that both sides pay for TLS; it stores plaintext;
- **s3rver HTTP**: the same over plaintext HTTP, kept as a reference;
- two **bare** servers (the CLI's floor, next table).

Negotiated with a default Node client: Airlock ${tlsSuites[0] ?? '?'}, s3rver TLS ${tlsSuites[1] ?? '?'}, bare HTTPS ${tlsSuites[2] ?? '?'}.
MB/s including the CLI's own start-up, median of ${CLI_REPS_1M} runs (1 MiB) or ${CLI_REPS_256M} (256 MiB) of each; the five
are timed in rounds, each round once each, in the previous round's order reversed (ABCDE EDCBA …), after a
warm-up of each. Ratio = Airlock speed ÷ peer speed (ratio of the medians), with, in brackets, the interquartile
range of the same ratio taken within each round (runs made back to back, under the same load).

| size | op | Airlock (TLS + SSE-KMS) | s3rver TLS | s3rver HTTP | Airlock ÷ s3rver TLS (target ≥ 1.0) | Airlock ÷ s3rver HTTP (reference) |
|---|---|---|---|---|---|---|
${cliRows.join('\n')}

How to read ✓ and ✗ here: the machine's ${cpus().length} cores are shared with other work, and each copy runs a fresh
CLI process, so a ratio whose bracketed range spans 1.00 does not tell the two servers apart. The CPU table and
the floor below say where the time goes.

Where the time goes: CPU seconds per copy (medians of the same runs), of the CLI process / of the server
process meanwhile. All share the machine's ${cpus().length} cores, so CPU that either side spends is CPU the other cannot use.

| size | op | Airlock | s3rver TLS | s3rver HTTP | bare HTTPS | bare HTTP |
|---|---|---|---|---|---|---|
${cpuRows.join('\n')}

Part of each server figure is not the copy's at all: what the process spends with no request in flight, watched
for ${IDLE_SECONDS} s right after the 1 MiB rounds, in CPU ms per second: ${idleLine}. Airlock's is its
kill-switch path: the embedded KMS sends a heartbeat every 100 ms on each key-event stream, and the process holds
two (one per object store here; under \`airlock up\`, the object store's and the agent's), each heartbeat a TLS
record written, read and parsed in the same process. A 1 MiB copy lasts about a second, so about that many ms
of Airlock's per-copy CPU above are background; the rest is the request.

The CLI's floor: the same copies (\`--no-sign-request\`) against two bare servers in one more process, which
read and drop uploads and send downloads from memory and do nothing else — no auth, no storage, no
encryption at rest — one over HTTPS (the pki TLS policy) and one over plaintext HTTP, timed in the same rounds.
Bare HTTPS is the fastest any S3 server over TLS can look to this client on this machine; its time per copy is
the CLI's own cost (at 1 MiB, mostly its start-up: Python and botocore loading), and the last two columns are
what each server adds above it. HTTPS ÷ HTTP is what TLS alone costs this client (Python's ssl reads one
≤ 16 KiB record per call, releasing the GIL around each, where a plaintext socket read returns up to 128 KiB).

| size | op | bare HTTPS MB/s | bare HTTP MB/s | HTTPS ÷ HTTP | floor ms per copy (bare HTTPS) | Airlock − floor, ms | s3rver TLS − floor, ms |
|---|---|---|---|---|---|---|---|
${floorRows.join('\n')}

At 1 MiB the CLI's own cost is nearly all of each copy, so the ratio above mostly compares CLI start-ups. The
transfer itself, read from the CLI's \`--debug\` log: from its first "Sending http request" to its last log line
(requests, body and file I/O, without the interpreter's start-up and exit), median of ${SPAN_REPS} runs of each, in
interleaved rounds; ratio = s3rver TLS span ÷ Airlock span, with the interquartile range of the per-round ratios.

| 1 MiB | bare HTTPS, ms | Airlock, ms | s3rver TLS, ms | s3rver HTTP, ms | Airlock ÷ s3rver TLS |
|---|---|---|---|---|---|
${spanRows.join('\n')}

## KMS calls with bucket keys

1,000 GETs of 1,000 distinct SSE-KMS objects (50 in flight, ${elapsed.toFixed(2)} s), counted in the KMS's own
audit log, starting with no cached bucket key: **${kmsCalls} KMS calls** (target ≤ 2). The bucket key is
re-validated with the KMS at most once a second (the kill-switch bound), so the count is about one per
second of traffic.

## Memory

${memory}. Flat: the store streams through 64 KiB ASF1 segments and never holds an object.
`;
    await writeFile(join(ROOT, 'bench/results/objectstore.md'), report);
    console.log(report);
  } finally {
    for (const child of s3rvers) child.kill();
    bareServers?.child.kill('SIGINT');
    for (const fixtureServers of [servers, cliServers]) {
      if (fixtureServers === undefined) continue;
      fixtureServers.child.stdin.end();
      // With profiling flags the server must exit on its own (after stdin ends) to write its profile.
      if (SERVER_ARGS.length > 0) await new Promise((resolve) => fixtureServers.child.once('exit', resolve));
      else fixtureServers.child.kill('SIGINT');
    }
    await rm(work, { recursive: true, force: true });
    await rm(fixture.dir, { recursive: true, force: true });
    if (cliFixtureDir !== undefined) await rm(cliFixtureDir, { recursive: true, force: true });
  }
}

await main();
