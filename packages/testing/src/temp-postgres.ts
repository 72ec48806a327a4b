// A throwaway PostgreSQL cluster for tests: initdb + pg_ctl in a temp dir, TLS with an Airlock-CA server certificate, a free port on 127.0.0.1.
import { execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { appendFile, chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createCertificateAuthority, issueServerCertificate, type CertificateAuthority } from '@airlock/pki';
import pg from 'pg';

const execFileAsync = promisify(execFile);

/** Where Debian (and the postgresql.org apt packages) put each major version's server binaries. */
const POSTGRES_LIB = '/usr/lib/postgresql';

/** The only opt-out: set to 1 where PostgreSQL cannot be installed, and the PostgreSQL tests are skipped (see postgresAvailable). */
export const SKIP_POSTGRES_ENV = 'AIRLOCK_TEST_SKIP_POSTGRES';

/** Ports other Airlock processes (or the benchmark PostgreSQL) bind by default; a test cluster never takes them. */
const RESERVED_PORTS = new Set([5432, 8443, 8444, 8445, 9000, 9443]);

export interface TempPostgresOptions {
  /**
   * Serve TLS (`ssl=on`, `hostssl` lines only). `false` starts a plaintext server instead (`ssl=off`,
   * `host` lines), so a test can check that a client refuses to talk to it.
   * @default true
   */
  readonly tls?: boolean;
  /**
   * Sign the server certificate with a second, freshly made CA instead of `ca`, so a test can check
   * that a client trusting only the Airlock CA (`airlockCaPem`) refuses the server.
   * @default false
   */
  readonly certificateFromOtherCa?: boolean;
  /** The Airlock CA that clients trust. @default a fresh CA made for this cluster */
  readonly ca?: CertificateAuthority;
  /** SANs of the server certificate. @default DNS "localhost" and IP "127.0.0.1" */
  readonly serverNames?: { readonly dnsNames?: readonly string[]; readonly ipAddresses?: readonly string[] };
  /** How TCP clients authenticate. The Unix socket is always `trust`, for the helper's own admin connection. @default "scram-sha-256" */
  readonly auth?: 'scram-sha-256' | 'trust';
  /** The test role: the cluster's bootstrap superuser. @default "airlock" */
  readonly user?: string;
  /** A database created for the test, owned by `user`. @default "airlock" */
  readonly database?: string;
  /** Extra postgresql.conf settings, written after the helper's own (so they win). */
  readonly settings?: Readonly<Record<string, string | number | boolean>>;
  /** The unprivileged account PostgreSQL runs as when the tests run as root (initdb refuses root). @default "postgres" */
  readonly osUser?: string;
  /** Directory holding initdb and pg_ctl. @default the newest /usr/lib/postgresql/<major>/bin */
  readonly binDir?: string;
}

export interface TempPostgres {
  /** Always "127.0.0.1": the only address the server listens on. */
  readonly host: string;
  readonly port: number;
  /** Directory of the Unix socket (`.s.PGSQL.<port>`); connections over it are `trust`. */
  readonly socketDir: string;
  readonly database: string;
  readonly user: string;
  /** The user's password; undefined when `auth` is "trust". */
  readonly password: string | undefined;
  /**
   * PEM of the CA that signed the server certificate. With `certificateFromOtherCa` that is the other
   * CA; on a plaintext server (no certificate) it is the Airlock CA.
   */
  readonly caPem: string;
  /** PEM of the Airlock CA: what a correctly configured client trusts. Equal to caPem unless `certificateFromOtherCa`. */
  readonly airlockCaPem: string;
  /** Whether the server speaks TLS (the `tls` option). */
  readonly tls: boolean;
  /** `postgres://user[:password]@127.0.0.1:port/database`, without sslmode: the client under test decides that. */
  readonly url: string;
  /**
   * The cluster's data directory. The test process can read every file in it: as root by privilege
   * (the files belong to `osUser`), otherwise because PostgreSQL runs as the test's own user. Call
   * checkpoint() first so that what was written has reached the data files, not only the WAL.
   */
  readonly dataDir: string;
  /** The temporary directory holding dataDir, the socket, the TLS files and the server log. */
  readonly dir: string;
  /** The server log so far (handy in a failing test's message). */
  log(): Promise<string>;
  /** Runs CHECKPOINT, so that every committed change is in the data files. */
  checkpoint(): Promise<void>;
  /** `pg_ctl stop -m fast`, then removes the temporary directory. Safe to call twice. */
  stop(): Promise<void>;
}

/** The newest /usr/lib/postgresql/<major>/bin that has initdb and pg_ctl, or undefined. Synchronous, so it can decide at module level. */
export function findPostgresBinDir(): string | undefined {
  let majors: string[];
  try {
    majors = readdirSync(POSTGRES_LIB);
  } catch {
    return undefined;
  }
  const candidates = majors
    .filter((name) => /^\d+(?:\.\d+)?$/.test(name))
    .sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a))
    .map((name) => join(POSTGRES_LIB, name, 'bin'));
  return candidates.find((bin) => existsSync(join(bin, 'initdb')) && existsSync(join(bin, 'pg_ctl')));
}

/**
 * False only when AIRLOCK_TEST_SKIP_POSTGRES=1: the single, explicit opt-out. It never probes for
 * PostgreSQL, so on a machine without it the tests run and fail loudly instead of skipping quietly.
 */
export function postgresAvailable(): boolean {
  return process.env[SKIP_POSTGRES_ENV] !== '1';
}

function missingPostgresError(): Error {
  return new Error(
    `PostgreSQL server binaries not found: no ${POSTGRES_LIB}/<major>/bin/initdb. Install the Debian package "postgresql" ` +
      `(it is in .ci/run's APT_PACKAGES), pass binDir, or set ${SKIP_POSTGRES_ENV}=1 to skip the PostgreSQL tests on purpose.`,
  );
}

/** uid and gid of a local account, from /etc/passwd (Node has no getpwnam). */
async function lookupAccount(name: string): Promise<{ uid: number; gid: number }> {
  const passwd = await readFile('/etc/passwd', 'utf8');
  for (const line of passwd.split('\n')) {
    const fields = line.split(':');
    if (fields[0] === name && fields.length >= 4) return { uid: Number(fields[2]), gid: Number(fields[3]) };
  }
  throw new Error(
    `the tests run as root, and initdb refuses to run as root, but there is no "${name}" account to run PostgreSQL as; ` +
      'create one (the Debian "postgresql" package does) or pass osUser',
  );
}

/** A command prefix that drops from root to the account, or nothing when not root. */
function dropPrivileges(osUser: string, account: { uid: number; gid: number } | undefined): string[] {
  if (account === undefined) return [];
  const runuser = ['/usr/sbin/runuser', '/sbin/runuser', '/usr/bin/runuser'].find((path) => existsSync(path));
  if (runuser !== undefined) return [runuser, '-u', osUser, '--'];
  const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((path) => existsSync(path));
  if (setpriv !== undefined) return [setpriv, `--reuid=${account.uid}`, `--regid=${account.gid}`, '--clear-groups', '--'];
  throw new Error('the tests run as root and PostgreSQL must not: neither runuser nor setpriv was found to drop privileges');
}

/** A TCP port that was free a moment ago on 127.0.0.1 (start() retries if another process takes it first). */
async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = createServer();
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const address = server.address();
        server.close(() => (typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no port'))));
      });
    });
    if (!RESERVED_PORTS.has(port)) return port;
  }
}

function quoteConf(value: string | number | boolean): string {
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** Clusters this process started and has not stopped: stopped on a normal exit too (the watchdog covers the rest). */
const running = new Set<() => void>();
let exitHookInstalled = false;

/**
 * Creates and starts a PostgreSQL cluster in a new temporary directory and returns how to reach it.
 * Takes a couple of seconds (initdb dominates). Throws with the server's output if anything fails,
 * and throws, rather than skipping, when PostgreSQL is not installed.
 */
export async function startTempPostgres(options: TempPostgresOptions = {}): Promise<TempPostgres> {
  const binDir = options.binDir ?? findPostgresBinDir();
  if (binDir === undefined || !existsSync(join(binDir, 'initdb'))) throw missingPostgresError();
  const useTls = options.tls ?? true;
  const auth = options.auth ?? 'scram-sha-256';
  const user = options.user ?? 'airlock';
  const database = options.database ?? 'airlock';
  const osUser = options.osUser ?? 'postgres';
  const isRoot = process.getuid?.() === 0;
  const account = isRoot ? await lookupAccount(osUser) : undefined;
  const asServer = dropPrivileges(osUser, account);

  const ca = options.ca ?? (await createCertificateAuthority({ commonName: 'Airlock test PostgreSQL CA' }));
  const signer = options.certificateFromOtherCa === true ? await createCertificateAuthority({ commonName: 'Some other CA' }) : ca;

  const dir = await mkdtemp(join(tmpdir(), 'airlock-pg-'));
  const dataDir = join(dir, 'data');
  const socketDir = join(dir, 'socket');
  const tlsDir = join(dir, 'tls');
  const logPath = join(dir, 'postgres.log');
  const password = auth === 'trust' ? undefined : randomBytes(18).toString('base64url');
  // A clean environment: PGDATA, PGPORT, PGHOST and friends from the machine must not steer the tools.
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C', TZ: 'UTC' };

  const run = async (command: string, args: readonly string[]): Promise<string> => {
    const [file, ...prefix] = [...asServer, join(binDir, command)];
    try {
      const { stdout, stderr } = await execFileAsync(file ?? command, [...prefix, ...args], { cwd: dir, env, timeout: 60_000, maxBuffer: 4 * 1024 * 1024 });
      return `${stdout}${stderr}`;
    } catch (error) {
      const failure = error as Error & { stdout?: string; stderr?: string };
      const serverLog = await readFile(logPath, 'utf8').catch(() => '');
      throw new Error(`${command} ${args.join(' ')} failed: ${failure.message}\n${failure.stdout ?? ''}${failure.stderr ?? ''}${serverLog === '' ? '' : `\nserver log:\n${serverLog}`}`, {
        cause: error,
      });
    }
  };
  /** `pg_ctl status`: exit status 3 means no server runs on dataDir (a stale postmaster.pid after kill -9 included). */
  const serverRunning = async (): Promise<boolean> => {
    const [file, ...prefix] = [...asServer, join(binDir, 'pg_ctl')];
    try {
      await execFileAsync(file ?? 'pg_ctl', [...prefix, '-D', dataDir, 'status'], { cwd: dir, env, timeout: 10_000 });
      return true;
    } catch (error) {
      return (error as { code?: unknown }).code !== 3;
    }
  };
  const giveToServer = async (...paths: string[]): Promise<void> => {
    if (account !== undefined) for (const path of paths) await chown(path, account.uid, account.gid);
  };

  let started = false;
  let watchdog: ReturnType<typeof spawn> | undefined;
  let stopped = false;
  const stopNow = (): void => {
    // Synchronous, for process exit: an immediate stop is enough when the directory goes away with it.
    if (!started || stopped) return;
    stopped = true;
    const [file, ...prefix] = [...asServer, join(binDir, 'pg_ctl')];
    try {
      execFileSync(file ?? 'pg_ctl', [...prefix, '-D', dataDir, 'stop', '-m', 'immediate', '-w'], { cwd: '/', env, stdio: 'ignore', timeout: 10_000 });
    } catch {
      // The watchdog will retry once this process is gone.
    }
  };

  try {
    await mkdir(socketDir, { mode: 0o700 });
    await mkdir(tlsDir, { mode: 0o700 });
    await giveToServer(dir, socketDir, tlsDir);

    const initArgs = ['-D', dataDir, '-U', user, '-E', 'UTF8', '--locale=C', '--auth-local=trust', `--auth-host=${auth}`, '--no-sync', '--no-instructions'];
    if (password !== undefined) {
      const pwfile = join(dir, 'pwfile');
      await writeFile(pwfile, `${password}\n`, { mode: 0o600 });
      await giveToServer(pwfile);
      await run('initdb', [...initArgs, `--pwfile=${pwfile}`]);
      await rm(pwfile, { force: true });
    } else {
      await run('initdb', initArgs);
    }

    const settings: Record<string, string | number | boolean> = {
      listen_addresses: '127.0.0.1',
      unix_socket_directories: socketDir,
      // Small and quick: a test cluster holds a few rows. fsync stays on, so a crash test means what it says.
      shared_buffers: '16MB',
      max_connections: 50,
      max_wal_senders: 0,
      wal_level: 'minimal',
      password_encryption: 'scram-sha-256',
      logging_collector: false,
      log_min_messages: 'warning',
      ssl: useTls,
    };
    if (useTls) {
      const server = await issueServerCertificate({
        ca: signer,
        dnsNames: options.serverNames?.dnsNames ?? ['localhost'],
        ipAddresses: options.serverNames?.ipAddresses ?? ['127.0.0.1'],
      });
      const certPath = join(tlsDir, 'server.crt');
      const keyPath = join(tlsDir, 'server.key');
      await writeFile(certPath, server.cert, { mode: 0o644 });
      // PostgreSQL refuses a key file that group or others can read (unless root owns it).
      await writeFile(keyPath, server.key, { mode: 0o600 });
      await giveToServer(certPath, keyPath);
      Object.assign(settings, {
        ssl_cert_file: certPath,
        ssl_key_file: keyPath,
        ssl_min_protocol_version: 'TLSv1.2',
        // DESIGN §2 and §10: AEAD suites only for TLS 1.2 (TLS 1.3 suites are all AEAD).
        ssl_ciphers: 'ECDHE+AESGCM:ECDHE+CHACHA20',
      });
    }
    Object.assign(settings, options.settings ?? {});
    const conf = Object.entries(settings)
      .map(([key, value]) => `${key} = ${quoteConf(value)}`)
      .join('\n');
    await appendFile(join(dataDir, 'postgresql.conf'), `\n# airlock test cluster\n${conf}\ninclude_if_exists 'airlock-port.conf'\n`);

    const tcp = useTls ? 'hostssl' : 'host';
    await writeFile(
      join(dataDir, 'pg_hba.conf'),
      [
        '# airlock test cluster: the helper administers over the socket; tests connect over TCP.',
        'local all all trust',
        `${tcp} all all 127.0.0.1/32 ${auth}`,
        '',
      ].join('\n'),
    );

    // The port was free when chosen, but another process may take it before the postmaster binds it.
    let port = 0;
    for (let attempt = 1; ; attempt += 1) {
      port = await freePort();
      const portConf = join(dataDir, 'airlock-port.conf');
      await writeFile(portConf, `port = ${port}\n`);
      await giveToServer(portConf);
      try {
        await run('pg_ctl', ['-D', dataDir, '-l', logPath, '-w', '-t', '30', 'start']);
        break;
      } catch (error) {
        const serverLog = await readFile(logPath, 'utf8').catch(() => '');
        if (attempt < 5 && /could not bind|Address already in use/i.test(serverLog)) continue;
        throw error;
      }
    }
    started = true;
    running.add(stopNow);
    if (!exitHookInstalled) {
      exitHookInstalled = true;
      process.once('exit', () => {
        for (const stop of running) stop();
      });
    }
    // If this process dies without stop() (a crashed test worker, SIGKILL), stop the server and delete its files anyway.
    watchdog = spawn(
      '/bin/sh',
      [
        '-c',
        'parent=$1; dir=$2; shift 2; while kill -0 "$parent" 2>/dev/null; do sleep 1; done; "$@" >/dev/null 2>&1; rm -rf "$dir"',
        'airlock-pg-watchdog',
        String(process.pid),
        dir,
        ...asServer,
        join(binDir, 'pg_ctl'),
        '-D',
        dataDir,
        'stop',
        '-m',
        'immediate',
      ],
      { detached: true, stdio: 'ignore', cwd: '/', env },
    );
    watchdog.unref();

    const admin = new pg.Client({ host: socketDir, port, user, database: 'postgres' });
    await admin.connect();
    try {
      if (database !== 'postgres') await admin.query(`CREATE DATABASE ${quoteIdent(database)} OWNER ${quoteIdent(user)}`);
    } finally {
      await admin.end();
    }

    const credentials = password === undefined ? encodeURIComponent(user) : `${encodeURIComponent(user)}:${encodeURIComponent(password)}`;
    const host = '127.0.0.1';
    let stopping: Promise<void> | undefined;
    return {
      host,
      port,
      socketDir,
      database,
      user,
      password,
      caPem: signer.cert,
      airlockCaPem: ca.cert,
      tls: useTls,
      url: `postgres://${credentials}@${host}:${port}/${encodeURIComponent(database)}`,
      dataDir,
      dir,
      log: () => readFile(logPath, 'utf8'),
      async checkpoint() {
        const client = new pg.Client({ host: socketDir, port, user, database });
        await client.connect();
        try {
          await client.query('CHECKPOINT');
        } finally {
          await client.end();
        }
      },
      stop() {
        stopping ??= (async () => {
          if (!stopped) {
            stopped = true;
            running.delete(stopNow);
            try {
              await run('pg_ctl', ['-D', dataDir, '-m', 'fast', '-w', 'stop']);
            } catch (error) {
              // A server that already died (a crash test killed it) leaves nothing to stop; one still
              // running keeps its files and its watchdog, which stops it when this process exits.
              if (await serverRunning()) throw error;
            }
          }
          if (watchdog?.pid !== undefined) {
            try {
              process.kill(watchdog.pid);
            } catch {
              // Already gone.
            }
          }
          await rm(dir, { recursive: true, force: true });
        })();
        return stopping;
      },
    };
  } catch (error) {
    if (started) {
      stopNow();
      running.delete(stopNow);
    }
    if (watchdog?.pid !== undefined) {
      try {
        process.kill(watchdog.pid);
      } catch {
        // Already gone.
      }
    }
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}
