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
const CLI_REPS_1M = 15;
const CLI_REPS_256M = 5;
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
 * Times `a` and `b` interleaved, in ABBA order after a warm-up of each, and returns each one's median
 * seconds. Timing one configuration after the other lets the second inherit the first's warm-up (JIT,
 * heap sizing, TCP windows): measured that way, whichever ran second looked 5–15 % faster.
 */
async function pairedMedians(reps: number, a: () => Promise<unknown>, b: () => Promise<unknown>): Promise<{ a: number; b: number }> {
  const warmups = warmupsFor(reps);
  for (let i = 0; i < warmups; i++) {
    await a();
    await b();
  }
  const as: number[] = [];
  const bs: number[] = [];
  for (let i = 0; i < reps; i++) {
    if (i % 2 === 0) {
      as.push(await timeIt(a));
      bs.push(await timeIt(b));
    } else {
      bs.push(await timeIt(b));
      as.push(await timeIt(a));
    }
  }
  return { a: medianOf(as), b: medianOf(bs) };
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
  let kmsCalls = NaN;
  let memory = '';
  let s3rver: ChildProcessWithoutNullStreams | undefined;
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

    // 4. The AWS CLI (aws s3 cp --no-progress) against s3rver (plaintext HTTP) and Airlock (TLS + SSE-KMS). Both
    //    servers start fresh for it: Airlock in a second fixture process, so it does not carry the heap and files of
    //    the sections above while s3rver starts clean.
    if (runs('cli-1m') || runs('cli-256m')) {
      const started = await startFixture();
      cliServers = started.servers;
      const cliFixture = started.fixture;
      cliFixtureDir = cliFixture.dir;
      const cliClient = createS3ObjectStore({ endpoint: cliFixture.encryptedUrl, credentials: cliFixture.credentials, caBundle: await readFile(cliFixture.caPath, 'utf8'), maxAttempts: 1 });
      await createBenchBucket(cliClient, cliFixture);
      cliClient.destroy();
      const s3rverDir = join(work, 's3rver');
      s3rver = spawn(
        process.execPath,
        ['-e', `import('@20minutes/s3rver').then(async ({default: S3rver}) => { const s = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory: ${JSON.stringify(s3rverDir)}, configureBuckets: [{ name: 'bench' }] }); const { port } = await s.run(); console.log(port); })`],
        { cwd: ROOT },
      );
      const s3rverPort = await new Promise<number>((resolve) => s3rver?.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))));
      const env = { ...process.env, AWS_ACCESS_KEY_ID: cliFixture.credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: cliFixture.credentials.secretAccessKey, AWS_DEFAULT_REGION: 'us-east-1', AWS_CA_BUNDLE: cliFixture.caPath, AWS_PAGER: '', HOME: work };
      const s3rverEnv = { ...env, AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' };
      const cp = (args: string[], endpoint: string, e: NodeJS.ProcessEnv) => run(AWS, ['s3', 'cp', ...args, '--no-progress', '--endpoint-url', endpoint], { env: e, maxBuffer: 1 << 20 });
      // The TLS floor: bare servers that do nothing but send the file from memory, over HTTPS and over HTTP.
      bareServers = startNode(join(ROOT, 'bench/fixtures/bare-servers.ts'), [work]);
      const bare = JSON.parse((await bareServers.lines.next()).value) as { httpsUrl: string; httpUrl: string; caPath: string };
      const bareEnv = { ...env, AWS_CA_BUNDLE: bare.caPath };
      for (const size of [MiB, 256 * MiB]) {
        if (!runs(size === MiB ? 'cli-1m' : 'cli-256m')) continue;
        const file = join(work, `f-${size}`);
        await writeFile(file, randomBytes(size));
        const reps = size === MiB ? CLI_REPS_1M : CLI_REPS_256M;
        const peerUrl = `http://127.0.0.1:${s3rverPort}`;
        const airlockPid = cliServers.child.pid as number;
        const s3rverPid = s3rver.pid as number;
        const upload = (url: string, e: NodeJS.ProcessEnv) => () => cp([file, `s3://bench/f-${size}`], url, e);
        const download = (url: string, e: NodeJS.ProcessEnv, ...flags: string[]) => () => cp([`s3://bench/f-${size}`, `${file}.back`, ...flags], url, e);
        const ops = {
          PUT: [cpuMetered(airlockPid, upload(cliFixture.encryptedUrl, env)), cpuMetered(s3rverPid, upload(peerUrl, s3rverEnv))],
          GET: [cpuMetered(airlockPid, download(cliFixture.encryptedUrl, env)), cpuMetered(s3rverPid, download(peerUrl, s3rverEnv))],
        } as const;
        for (const [op, [airlock, peer]] of Object.entries(ops)) {
          const times = await pairedMedians(reps, airlock.run, peer.run);
          const cpu = (samples: Array<{ cli: number; server: number }>, which: 'cli' | 'server'): string =>
            medianOf(samples.slice(warmupsFor(reps)).map((sample) => sample[which])).toFixed(2);
          cliRows.push(
            `| ${size / MiB} MiB | ${op} | ${(size / times.a / 1e6).toFixed(1)} | ${(size / times.b / 1e6).toFixed(1)} | **${(times.b / times.a).toFixed(2)}×** |`,
          );
          cpuRows.push(
            `| ${size / MiB} MiB | ${op} | ${cpu(airlock.samples, 'cli')} / ${cpu(airlock.samples, 'server')} | ${cpu(peer.samples, 'cli')} / ${cpu(peer.samples, 'server')} |`,
          );
          console.error(`${cliRows.at(-1)}   CPU s, CLI / server: ${cpuRows.at(-1)}`);
        }
        const floor = await pairedMedians(reps, download(bare.httpsUrl, bareEnv, '--no-sign-request'), download(bare.httpUrl, bareEnv, '--no-sign-request'));
        floorRows.push(`| ${size / MiB} MiB | GET | ${(size / floor.a / 1e6).toFixed(1)} | ${(size / floor.b / 1e6).toFixed(1)} | **${(floor.b / floor.a).toFixed(2)}×** |`);
        console.error(floorRows.at(-1));
      }
    }

    if (ONLY !== undefined) {
      console.log([...rows, ...cliRows, ...cpuRows, ...floorRows].join('\n'));
      if (runs('kms')) console.log(`KMS calls: ${kmsCalls} (${elapsed.toFixed(2)} s)`);
      if (runs('memory')) console.log(memory);
      return;
    }

    const report = `# Object store benchmark

Generated by \`npm run bench:objectstore\` (bench/objectstore.ts) on ${new Date().toISOString()}, all rows in one run.
Machine: ${cpus()[0]?.model ?? 'unknown'} × ${cpus().length}, Node ${process.version}. The KMS and both Airlock stores run in one
child process (a second, fresh one for the AWS CLI section), started with the V8 flags \`airlock up\` gives its plane processes
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

\`/usr/bin/aws s3 cp --no-progress\` (aws-cli 2.9) on the same files, up and down: Airlock over TLS with SSE-KMS
vs s3rver 4.0.4 over plaintext HTTP storing plaintext, both servers freshly started for this section. MB/s including the CLI's own start-up (≈ 0.5 s), median
of ${CLI_REPS_1M} runs (1 MiB) or ${CLI_REPS_256M} (256 MiB) of each, the two servers timed alternately (ABBA) after a
warm-up of both; ratio = Airlock speed ÷ s3rver speed.

| size | op | Airlock (TLS + SSE-KMS) | s3rver (HTTP, plaintext) | Airlock ÷ s3rver (target ≥ 1) |
|---|---|---|---|---|
${cliRows.join('\n')}

Where the time goes: CPU seconds per copy (medians of the same runs), of the CLI process and of the
server process meanwhile. Both share the machine's ${cpus().length} cores, so CPU that either side spends is CPU the
other cannot use.

| size | op | Airlock: CLI / server | s3rver: CLI / server |
|---|---|---|---|
${cpuRows.join('\n')}

The TLS floor: the same CLI GETs (\`--no-sign-request\`) from two bare servers in one more process, which hold
the files in memory and do nothing else — no auth, no storage, no encryption at rest — one over HTTPS (the
same TLS policy) and one over plaintext HTTP. Their ratio is the most any S3 server over TLS could reach
against a plaintext one with this client on this machine: the rest of the gap is the CLI's own TLS work
(Python's ssl reads one ≤ 16 KiB record per call, releasing the GIL around each, where a plaintext socket
read returns up to 128 KiB).

| size | op | bare HTTPS | bare HTTP | HTTPS ÷ HTTP |
|---|---|---|---|---|
${floorRows.join('\n')}

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
    s3rver?.kill();
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
