// Benchmark: what the listener limits cost the KMS and the object store — this tree's servers against those of the last
// commit before the limits, side by side in one run, timed alternately (ABBA). Writes bench/results/limits.md. Not part of npm test.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { access, mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { Agent, request } from 'node:https';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { PLANE_NODE_FLAGS } from '@airlock/cli';
import { signRequest } from '@airlock/crypto';
import { createAwsKms } from '@airlock/kms';
import { createS3ObjectStore } from '@airlock/objectstore';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const MiB = 1024 * 1024;
const CLOCK_TICKS = 100; // USER_HZ: /proc/<pid>/stat counts CPU time in 1/100 s on Linux

/**
 * The code the current tree is compared with. 2d7d4d3 is the main line's last commit before the merge of
 * 'hardening-listeners' (cda5a92), whose b53cc04 put the KMS and object-store listeners under
 * @airlock/pki's listener-limits.ts; everything after it on the main line has the limits.
 * BENCH_LIMITS_BASE names another commit.
 */
const BASE = process.env.BENCH_LIMITS_BASE ?? '2d7d4d3';
/**
 * How the base tree gets its dependencies. "auto" (the default): when every package in the base commit's
 * package-lock.json has the same version and tarball in this tree's, its node_modules links to this tree's
 * (third-party packages, native builds included) and only its own workspace packages are its own, then it is
 * built with tsc; otherwise, and with "ci", `npm ci` in the base tree (which also compiles the SQLite addons
 * from source where no prebuilt binary can be fetched: many minutes on 2 cores).
 */
const INSTALL = process.env.BENCH_LIMITS_INSTALL ?? 'auto';
/** BENCH_LIMITS_KEEP=1 keeps the base tree (a detached git worktree under the temp dir) for the next run, which reuses it. */
const KEEP = process.env.BENCH_LIMITS_KEEP === '1';
/** BENCH_LIMITS_QUICK=1 checks the bench itself with a few short rounds, and leaves bench/results/limits.md alone. */
const QUICK = process.env.BENCH_LIMITS_QUICK === '1';
/** BENCH_LIMITS_ONLY=kms or s3 runs one section (for profiling); a partial run leaves the results file alone too. */
const ONLY = process.env.BENCH_LIMITS_ONLY;
/** Node flags added to every server process, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" (each writes its profile as it exits). */
const SERVER_ARGS = process.env.BENCH_LIMITS_SERVER_ARGS?.split(' ').filter((s) => s !== '') ?? [];

const KMS_CONCURRENCY = 32;
const KMS_SLICE_MS = QUICK ? 1000 : 2000;
const KMS_ROUNDS = QUICK ? 2 : 20;
const S3_REPS = QUICK ? 20 : 300;

type Label = 'pre-limits' | 'current';

interface Servers {
  readonly label: Label;
  readonly kms: ChildProcess;
  readonly store: ChildProcess;
  readonly kmsUrl: string;
  readonly s3Url: string;
  readonly region: string;
  readonly ca: string;
  readonly credentials: { accessKeyId: string; secretAccessKey: string };
  stop(): Promise<void>;
}

/** Runs a command to completion with its output on this process's stderr; rejects on a non-zero exit. */
function run(command: string, args: readonly string[], cwd: string, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env, stdio: ['ignore', 2, 2] });
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${command} ${args.join(' ')} exited with ${String(code)}`))));
  });
}

/** stdout of a git command run in this tree. */
function git(args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('git', args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`git ${args.join(' ')} exited with ${String(code)}`))));
  });
}

type LockPackages = Record<string, { version?: string; resolved?: string; integrity?: string; link?: boolean }>;

/** Whether every package the base lockfile installs is installed by this tree's lockfile at the same version from the same tarball. */
function sameThirdParty(base: LockPackages, current: LockPackages): boolean {
  return Object.entries(base).every(([path, entry]) => {
    if (path === '' || entry.link === true || !path.includes('node_modules/')) return true; // the root, workspace links, workspace sources
    const other = current[path];
    return other !== undefined && other.version === entry.version && other.resolved === entry.resolved && other.integrity === entry.integrity;
  });
}

/**
 * The base tree's node_modules: a link to each of this tree's third-party packages, and its own workspace packages
 * (node_modules/@airlock/<name> → ../../packages/<name>, as npm links them). Node resolves a linked package to its
 * real path, so a third-party package finds its own dependencies in this tree; the base tree's packages find their
 * third-party dependencies through these links and each other through @airlock.
 */
async function linkNodeModules(baseDir: string, base: LockPackages): Promise<void> {
  const modules = join(baseDir, 'node_modules');
  await mkdir(join(modules, '@airlock'), { recursive: true });
  for (const entry of await readdir(join(ROOT, 'node_modules'))) {
    if (entry === '@airlock' || entry === '.bin' || entry.startsWith('.package-lock')) continue;
    await symlink(join(ROOT, 'node_modules', entry), join(modules, entry));
  }
  for (const [path, entry] of Object.entries(base)) {
    const workspace = /^node_modules\/@airlock\/([^/]+)$/.exec(path);
    if (workspace !== null && entry.link === true) await symlink(join('..', '..', 'packages', workspace[1] as string), join(modules, '@airlock', workspace[1] as string));
    const nested = /^packages\/[^/]+\/node_modules\/(?:@[^/]+\/)?[^/]+$/.exec(path);
    if (nested !== null) {
      await mkdir(dirname(join(baseDir, path)), { recursive: true });
      await symlink(join(ROOT, path), join(baseDir, path));
    }
  }
}

/** A detached git worktree of `sha` under the temp dir, installed and built; reused when a kept one is ready. */
async function prepareBase(sha: string): Promise<{ dir: string; install: string }> {
  const dir = join(tmpdir(), `airlock-limits-base-${sha.slice(0, 12)}`);
  const marker = join(dir, '.airlock-bench-ready');
  const ready = (await readFile(marker, 'utf8').catch(() => '')).trim();
  if (ready.startsWith(`${sha} `)) return { dir, install: `${ready.slice(sha.length + 1)}, kept from an earlier run` };
  if (await access(dir).then(() => true, () => false)) await git(['worktree', 'remove', '--force', dir]).catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
  await git(['worktree', 'prune']);
  await git(['worktree', 'add', '--detach', dir, sha]);
  const baseLock = (JSON.parse(await readFile(join(dir, 'package-lock.json'), 'utf8')) as { packages: LockPackages }).packages;
  const currentLock = (JSON.parse(await readFile(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: LockPackages }).packages;
  // npm's own variables (set by `npm run`) would configure the nested npm as the outer one.
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.toLowerCase().startsWith('npm_')));
  let install: string;
  if (INSTALL !== 'ci' && sameThirdParty(baseLock, currentLock)) {
    await linkNodeModules(dir, baseLock);
    await run(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '--build'], dir, env);
    install = "node_modules linked to this tree's (its package-lock.json installs the same third-party packages), built with tsc --build";
  } else {
    await run('npm', ['ci', '--no-audit', '--no-fund'], dir, env);
    install = 'npm ci (its own package-lock.json; its prepare script builds it)';
  }
  await access(join(dir, 'packages/cli/dist/main.js'));
  await writeFile(marker, `${sha} ${install}\n`);
  return { dir, install };
}

/** Starts `airlock <args>` from `tree` with the plane V8 flags; resolves once it says it is ready. */
async function startServe(tree: string, args: readonly string[]): Promise<ChildProcess> {
  // Both versions run with their listeners' default limits.
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('AIRLOCK_LISTENER_')));
  const child = spawn(process.execPath, [...PLANE_NODE_FLAGS, ...SERVER_ARGS, join(tree, 'packages/cli/dist/main.js'), ...args], { cwd: tree, env, stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const onData = (d: Buffer): void => {
      out += d.toString();
      if (!out.includes('Press Ctrl-C')) return;
      child.stdout?.off('data', onData);
      child.stdout?.resume();
      child.off('exit', onExit);
      resolve();
    };
    const onExit = (code: number | null): void => reject(new Error(`airlock ${args.join(' ')} (${tree}) exited with ${String(code)}: ${out}`));
    child.stdout?.on('data', onData);
    child.once('exit', onExit);
  });
  return child;
}

/** Stops a server with SIGINT, as Ctrl-C would (a profiling run writes its profile as it exits). */
function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    child.kill('SIGINT');
  });
}

/** One version's KMS (`airlock kms serve`) and object store (`airlock objectstore serve`) on one data directory, each in its own process. */
async function startServers(label: Label, tree: string): Promise<Servers> {
  const dataDir = await mkdtemp(join(tmpdir(), `airlock-bench-limits-${label}-`));
  const kms = await startServe(tree, ['kms', 'serve', '--data-dir', dataDir, '--port', '0', '--log-level', 'warn']);
  const store = await startServe(tree, ['objectstore', 'serve', '--data-dir', dataDir, '--port', '0', '--log-level', 'warn']).catch(async (error: unknown) => {
    await stopChild(kms);
    throw error;
  });
  console.error(`${label}: kms serve pid ${String(kms.pid)}, objectstore serve pid ${String(store.pid)}`); // to tell profiles apart
  const kmsEndpoint = JSON.parse(await readFile(join(dataDir, 'kms', 'endpoint.json'), 'utf8')) as { endpoint: string; region: string; caBundle: string; credentialsFile: string };
  const storeEndpoint = JSON.parse(await readFile(join(dataDir, 'objectstore', 'endpoint.json'), 'utf8')) as { endpoint: string; region: string };
  const text = await readFile(kmsEndpoint.credentialsFile, 'utf8');
  return {
    label,
    kms,
    store,
    kmsUrl: kmsEndpoint.endpoint,
    s3Url: storeEndpoint.endpoint,
    region: kmsEndpoint.region,
    ca: await readFile(kmsEndpoint.caBundle, 'utf8'),
    credentials: {
      accessKeyId: /aws_access_key_id = (\S+)/.exec(text)?.[1] ?? '',
      secretAccessKey: /aws_secret_access_key = (\S+)/.exec(text)?.[1] ?? '',
    },
    stop: async () => {
      await stopChild(store);
      await stopChild(kms);
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** CPU seconds (user + system) a process has used so far, from /proc. */
async function cpuSeconds(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

const medianOf = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
};

/** The 25th and 75th percentiles (nearest rank). */
function quartiles(values: readonly number[]): [number, number] {
  const sorted = [...values].sort((x, y) => x - y);
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] as number;
  return [at(0.25), at(0.75)];
}

/** Samples of one measure for both versions, taken in the same rounds: index 0 pre-limits, 1 current. */
interface Paired {
  readonly values: [number[], number[]];
  /** Server CPU seconds per operation, over all timed runs. */
  readonly cpuPerOp: [number, number];
  readonly errors: [number, number];
}

/**
 * current ÷ pre-limits: the ratio of the medians; the median, interquartile range and extremes of the rounds' own
 * ratios (each round's two runs were made back to back, under the same load); and the ratio of server CPU per call,
 * pre-limits ÷ current (above 1: the current code spends less CPU per call).
 */
function ratios(p: Paired, higherIsBetter: boolean): { ofMedians: number; paired: number; iqr: [number, number]; min: number; max: number; cpu: number } {
  const [a, b] = p.values;
  const perRound = a.map((x, i) => (higherIsBetter ? (b[i] as number) / x : x / (b[i] as number)));
  const ofMedians = higherIsBetter ? medianOf(b) / medianOf(a) : medianOf(a) / medianOf(b);
  return { ofMedians, paired: medianOf(perRound), iqr: quartiles(perRound), min: Math.min(...perRound), max: Math.max(...perRound), cpu: p.cpuPerOp[0] / p.cpuPerOp[1] };
}

/** The 1-minute load average, sampled through the timed runs. */
const loadSamples: number[] = [];

/** A signed KMS call over keep-alive HTTPS with Airlock's SigV4 signer and node:https (a lean client: it measures the server). */
function kmsCaller(s: Servers): { call: (target: string | undefined, body?: string) => Promise<void>; close: () => void } {
  const url = new URL(s.kmsUrl);
  const agent = new Agent({ keepAlive: true, maxSockets: KMS_CONCURRENCY, ca: s.ca });
  const call = (target: string | undefined, body = ''): Promise<void> =>
    new Promise((resolve, reject) => {
      const method = target === undefined ? 'GET' : 'POST';
      const path = target === undefined ? '/health' : '/';
      const headers: Record<string, string> = { host: url.host };
      if (target !== undefined) {
        headers['content-type'] = 'application/x-amz-json-1.1';
        headers['x-amz-target'] = `TrentService.${target}`;
        const signed = signRequest({
          method,
          path,
          headers,
          payloadHash: createHash('sha256').update(body).digest('hex'),
          credentials: s.credentials,
          region: s.region,
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
  return { call, close: () => agent.destroy() };
}

/** `KMS_CONCURRENCY` workers calling `op` back to back for `ms`: completed calls per second, and failures. */
async function slice(op: () => Promise<void>, ms: number): Promise<{ opsPerSecond: number; errors: number; ops: number }> {
  let ops = 0;
  let errors = 0;
  const start = performance.now();
  const end = start + ms;
  await Promise.all(
    Array.from({ length: KMS_CONCURRENCY }, async () => {
      while (performance.now() < end) {
        try {
          await op();
          ops++;
        } catch {
          errors++;
        }
      }
    }),
  );
  return { opsPerSecond: ops / ((performance.now() - start) / 1000), errors, ops };
}

/**
 * One KMS operation on both versions: a warm-up of each, then KMS_ROUNDS rounds of one slice each, in the previous
 * round's order reversed (A B, B A, A B …), so that neither version always runs first or inherits the other's warm-up.
 */
async function kmsRow(servers: readonly [Servers, Servers], ops: readonly [() => Promise<void>, () => Promise<void>]): Promise<Paired> {
  for (const op of ops) {
    for (let i = 0; i < 200; i++) await op(); // TLS sessions, JIT
    await slice(op, 1000);
  }
  const values: [number[], number[]] = [[], []];
  const cpu: [number, number] = [0, 0];
  const count: [number, number] = [0, 0];
  const errors: [number, number] = [0, 0];
  for (let round = 0; round < KMS_ROUNDS; round++) {
    loadSamples.push(loadavg()[0] as number);
    for (const at of orderOf(round)) {
      const pid = servers[at].kms.pid as number;
      const before = await cpuSeconds(pid);
      const r = await slice(ops[at], KMS_SLICE_MS);
      cpu[at] += (await cpuSeconds(pid)) - before;
      count[at] += r.ops;
      values[at].push(r.opsPerSecond);
      errors[at] += r.errors;
    }
  }
  return { values, cpuPerOp: [cpu[0] / count[0], cpu[1] / count[1]], errors };
}

const sink = (): Writable => new Writable({ write: (_c, _e, cb) => cb() });

/**
 * One object-store operation on both versions, one call at a time: a warm-up of each, then S3_REPS runs of each,
 * alternating, each pair in the previous pair's order reversed (ABBA). Seconds per run; server CPU (store and KMS
 * processes) per run.
 */
async function s3Row(servers: readonly [Servers, Servers], ops: readonly [() => Promise<unknown>, () => Promise<unknown>]): Promise<Paired> {
  for (let i = 0; i < 10; i++) for (const op of ops) await op();
  const values: [number[], number[]] = [[], []];
  const cpu: [number, number] = [0, 0];
  const errors: [number, number] = [0, 0];
  const serverCpu = async (s: Servers): Promise<number> => (await cpuSeconds(s.store.pid as number)) + (await cpuSeconds(s.kms.pid as number));
  for (let i = 0; i < S3_REPS; i++) {
    if (i % 20 === 0) loadSamples.push(loadavg()[0] as number);
    for (const at of orderOf(i)) {
      const before = await serverCpu(servers[at]);
      const start = performance.now();
      try {
        await ops[at]();
      } catch {
        errors[at]++;
      }
      values[at].push((performance.now() - start) / 1000);
      cpu[at] += (await serverCpu(servers[at])) - before;
    }
  }
  return { values, cpuPerOp: [cpu[0] / S3_REPS, cpu[1] / S3_REPS], errors };
}

/** Which version goes first in round `i`: the previous round's order reversed (A B, B A, A B …). */
const orderOf = (i: number): Array<0 | 1> => (i % 2 === 0 ? [0, 1] : [1, 0]);

/** min / median / max of the load samples. */
const loadRange = (): string => (loadSamples.length === 0 ? 'not sampled' : `${Math.min(...loadSamples).toFixed(1)} / ${medianOf(loadSamples).toFixed(1)} / ${Math.max(...loadSamples).toFixed(1)} (min / median / max)`);

const load = (): string =>
  loadavg()
    .map((v) => v.toFixed(1))
    .join(', ');

async function main(): Promise<void> {
  const startedAt = new Date();
  const loadAtStart = load();
  const baseSha = await git(['rev-parse', `${BASE}^{commit}`]);
  const currentSha = await git(['rev-parse', 'HEAD']);
  const dirty = (await git(['status', '--porcelain', '--', 'packages'])) !== '';
  const commitName = async (sha: string): Promise<string> => git(['log', '-1', '--format=%h (%ad)', '--date=format:%Y-%m-%d %H:%M', sha]);
  const baseName = await commitName(baseSha);
  const currentName = `${await commitName(currentSha)}${dirty ? ' with uncommitted changes under packages/' : ''}`;
  console.error(`pre-limits: ${baseName}; current: ${currentName}; load ${loadAtStart}`);
  const base = await prepareBase(baseSha);
  const started: Servers[] = [];
  const kmsRows: Array<[string, Paired]> = [];
  const s3Rows: Array<[string, Paired]> = [];
  let loadAtEnd = '';
  try {
    started.push(await startServers('pre-limits', base.dir));
    started.push(await startServers('current', ROOT));
    const servers = started as [Servers, Servers];

    if (ONLY === undefined || ONLY === 'kms') {
      const callers = servers.map(kmsCaller);
      try {
        const context = { bucket: 'bench', key: 'object' };
        const bodies = await Promise.all(
          servers.map(async (s) => {
            const sdk = createAwsKms({ endpoint: s.kmsUrl, region: s.region, credentials: s.credentials, caBundle: s.ca, maxAttempts: 1 });
            const key = await sdk.createKey({ description: 'bench' });
            const sample = await sdk.generateDataKey(key.keyId, context);
            sdk.destroy();
            return {
              gdk: JSON.stringify({ KeyId: key.keyId, KeySpec: 'AES_256', EncryptionContext: context }),
              decrypt: JSON.stringify({ CiphertextBlob: sample.ciphertextBlob.toString('base64'), EncryptionContext: context }),
            };
          }),
        );
        const both = (make: (i: number) => () => Promise<void>): [() => Promise<void>, () => Promise<void>] => [make(0), make(1)];
        for (const [name, ops] of [
          ['no-op HTTPS (GET /health)', both((i) => () => callers[i]!.call(undefined))],
          ['GenerateDataKey', both((i) => () => callers[i]!.call('GenerateDataKey', bodies[i]!.gdk))],
          ['Decrypt', both((i) => () => callers[i]!.call('Decrypt', bodies[i]!.decrypt))],
        ] as const) {
          kmsRows.push([name, await kmsRow(servers, ops)]);
          const [, p] = kmsRows.at(-1) as [string, Paired];
          console.error(`${name}: ${medianOf(p.values[0]).toFixed(0)} → ${medianOf(p.values[1]).toFixed(0)} ops/s, ${ratios(p, true).ofMedians.toFixed(3)}× (paired ${ratios(p, true).paired.toFixed(3)}×, CPU ${ratios(p, true).cpu.toFixed(3)}×)`);
        }
      } finally {
        for (const c of callers) c.close();
      }
    }

    if (ONLY === undefined || ONLY === 's3') {
      const clients = await Promise.all(
        servers.map(async (s) => {
          const kms = createAwsKms({ endpoint: s.kmsUrl, region: s.region, credentials: s.credentials, caBundle: s.ca, maxAttempts: 1 });
          const key = await kms.createKey({ description: 'bench bucket key' });
          kms.destroy();
          const client = createS3ObjectStore({ endpoint: s.s3Url, region: s.region, credentials: s.credentials, caBundle: s.ca, maxAttempts: 1 });
          await client.createBucket('bench', { algorithm: 'aws:kms', kmsKeyId: key.arn, bucketKeyEnabled: true });
          return client;
        }),
      );
      try {
        const data = randomBytes(MiB);
        const put = (i: number) => () => clients[i]!.put('bench', 'obj-1m', data, { contentLength: MiB });
        const get = (i: number) => async () => pipeline(await clients[i]!.get('bench', 'obj-1m'), sink());
        for (const [name, ops] of [
          ['PUT 1 MiB', [put(0), put(1)]],
          ['GET 1 MiB', [get(0), get(1)]],
        ] as const) {
          s3Rows.push([name, await s3Row(servers, ops)]);
          const [, p] = s3Rows.at(-1) as [string, Paired];
          console.error(`${name}: ${(MiB / medianOf(p.values[0]) / 1e6).toFixed(1)} → ${(MiB / medianOf(p.values[1]) / 1e6).toFixed(1)} MB/s, ${ratios(p, false).ofMedians.toFixed(3)}× (paired ${ratios(p, false).paired.toFixed(3)}×, CPU ${ratios(p, false).cpu.toFixed(3)}×)`);
        }
      } finally {
        for (const c of clients) c.destroy();
      }
    }
    loadAtEnd = load();
  } finally {
    for (const s of started) await s.stop();
    if (!KEEP) {
      await git(['worktree', 'remove', '--force', base.dir]).catch(() => undefined);
      await rm(base.dir, { recursive: true, force: true });
      await git(['worktree', 'prune']);
    }
  }

  const mark = (ratio: number): string => `**${ratio.toFixed(2)}×** ${ratio >= 0.95 ? '✓' : '✗'}`;
  const range = (r: ReturnType<typeof ratios>): string => `${r.paired.toFixed(2)}, ${r.iqr[0].toFixed(2)}–${r.iqr[1].toFixed(2)} (${r.min.toFixed(2)}–${r.max.toFixed(2)})`;
  const kmsTable = kmsRows
    .map(([name, p]) => {
      const r = ratios(p, true);
      const us = (s: number): string => (s * 1e6).toFixed(0);
      return `| ${name} | ${medianOf(p.values[0]).toFixed(0)} | ${medianOf(p.values[1]).toFixed(0)} | ${mark(r.ofMedians)} | ${range(r)} | ${us(p.cpuPerOp[0])} / ${us(p.cpuPerOp[1])} | ${r.cpu.toFixed(2)}× | ${p.errors[0]} / ${p.errors[1]} |`;
    })
    .join('\n');
  const s3Table = s3Rows
    .map(([name, p]) => {
      const r = ratios(p, false);
      const mbs = (seconds: number): string => (MiB / seconds / 1e6).toFixed(1);
      const ms = (s: number): string => (s * 1000).toFixed(1);
      return `| ${name} | ${mbs(medianOf(p.values[0]))} | ${mbs(medianOf(p.values[1]))} | ${mark(r.ofMedians)} | ${range(r)} | ${ms(p.cpuPerOp[0])} / ${ms(p.cpuPerOp[1])} | ${r.cpu.toFixed(2)}× | ${p.errors[0]} / ${p.errors[1]} |`;
    })
    .join('\n');
  const planeFlags = `\`${PLANE_NODE_FLAGS.join(' ')}\``;
  const report = `# Listener limits: cost to the KMS and the object store

Generated by \`npm run bench:limits\` (bench/limits-overhead.ts) on ${startedAt.toISOString()}, all rows in one run.
Machine: ${cpus()[0]?.model ?? 'unknown'} × ${cpus().length}, Node ${process.version}; load average ${loadAtStart} at the start, ${loadAtEnd} at the end (1, 5, 15 min);
1-minute load during the timed runs ${loadRange()}.

Compared, in the same run on the same machine:

- **pre-limits**: ${baseName}, the main line's last commit before the merge of the listener limits (cda5a92,
  branch hardening-listeners: one listener-limits module for every listener, b53cc04). Its tree is a detached git
  worktree under the temp dir: ${base.install}.
- **current**: ${currentName}: the listener limits (timeouts, per-listener and per-address connection caps, the
  process connection budget, HTTP/2 stream caps, body progress), and everything else merged since, key events and
  the S3 fixes included, so a ratio below 1 is not the limits' cost alone.

Each version runs its own \`airlock kms serve\` and \`airlock objectstore serve\` (each in its own process, from its own
tree's build, with the plane V8 flags ${planeFlags} and the listeners' default limits: no \`AIRLOCK_LISTENER_*\` variable
set). All four servers are up for the whole run; the clients run in this process, from the current tree's code, the
same for both versions. All share the machine's ${cpus().length} cores.

## KMS

${KMS_CONCURRENCY} concurrent calls over keep-alive HTTPS (TLS 1.3) with the lean client of bench/kms.ts (Airlock's
SigV4 signer and node:https), so the rows measure the server. After a warm-up of each version, ${KMS_ROUNDS} rounds of
one ${KMS_SLICE_MS / 1000} s slice per version, each round in the previous round's order reversed (A B, B A, A B …).
ops/s is the median of the slices; the ratio is current ÷ pre-limits of those medians, then the median, interquartile
range (and extremes) of the ratio within each round, whose two slices ran back to back. Server CPU is the KMS
process's user + system time over all slices, per call: unlike the rates, it hardly depends on what else the machine
is doing at the time.

| operation | pre-limits ops/s | current ops/s | current ÷ pre-limits (target ≥ 0.95) | per round: median, IQR (min–max) | server CPU µs per call, pre / current | CPU per call, pre ÷ current | errors, pre / current |
|---|---|---|---|---|---|---|---|
${kmsTable}

## Object store

\`@aws-sdk/client-s3\` (default configuration: aws-chunked uploads with CRC32 trailers, as in bench/objectstore.ts's
"Encryption cost" section) over HTTPS, one call at a time, to an SSE-KMS bucket with bucket keys under a customer key
of the version's own KMS. After a warm-up, ${S3_REPS} calls per version, alternating, each pair in the previous pair's
order reversed (ABBA). MB/s from the median time of a call; the ratio is current ÷ pre-limits, then the median,
interquartile range (and extremes) of the ratio within each pair. Server CPU is the store's and its KMS's, per call.

| operation | pre-limits MB/s | current MB/s | current ÷ pre-limits (target ≥ 0.95) | per pair: median, IQR (min–max) | server CPU ms per call, pre / current | CPU per call, pre ÷ current | errors, pre / current |
|---|---|---|---|---|---|---|---|
${s3Table}

The absolute figures are this machine's at this moment (its speed varies a lot from day to day, and its 2 cores are
shared with other work); only the ratios, measured side by side, compare the code.
`;
  if (QUICK || ONLY !== undefined) {
    console.log(report);
    return;
  }
  await writeFile(join(ROOT, 'bench/results/limits.md'), report);
  console.log(report);
}

await main();
