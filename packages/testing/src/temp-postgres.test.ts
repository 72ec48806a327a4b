// Tests of the temporary PostgreSQL helper with a real server and the real `pg` client: TLS verified against the Airlock CA, and each way a client must refuse.
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { createCertificateAuthority } from '@airlock/pki';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { makeCanary, scanForCanary } from './canary.js';
import { startTempPostgres, type TempPostgres } from './temp-postgres.js';
import { describeIfPostgres } from './vitest.js';

/** Connects, runs `fn`, and always disconnects. */
async function withClient<T>(config: pg.ClientConfig, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionTimeoutMillis: 10_000, ...config });
  // A refused connection also emits 'error'; without a listener that would crash the worker.
  client.on('error', () => undefined);
  try {
    await client.connect();
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** The error a connection attempt fails with (fails the test if it succeeds). */
async function refusal(config: pg.ClientConfig): Promise<Error & { code?: string }> {
  try {
    await withClient(config, (client) => client.query('SELECT 1'));
  } catch (error) {
    return error as Error & { code?: string };
  }
  throw new Error('the connection was expected to be refused, but it succeeded');
}

/** verify-full, as the control plane will connect: the given CA only, and the host name checked. */
const verifyFull = (db: TempPostgres, ca = db.airlockCaPem, servername = 'localhost'): pg.ClientConfig => ({
  connectionString: db.url,
  ssl: { ca, rejectUnauthorized: true, servername },
});

it('fails loudly, naming what is missing and the opt-out, when PostgreSQL is not installed', async () => {
  await expect(startTempPostgres({ binDir: '/nonexistent/postgresql/bin' })).rejects.toThrow(/initdb.*AIRLOCK_TEST_SKIP_POSTGRES=1/s);
});

describeIfPostgres('a TLS cluster', () => {
  let db: TempPostgres;
  beforeAll(async () => {
    db = await startTempPostgres();
  });
  afterAll(async () => {
    await db?.stop();
  });

  it('accepts a verify-full TLS client and reports ssl=on', async () => {
    const rows = await withClient(verifyFull(db), async (client) => ({
      one: (await client.query<{ one: number }>('SELECT 1 AS one')).rows[0]?.one,
      ssl: (await client.query<{ ssl: string }>('SHOW ssl')).rows[0]?.ssl,
      session: (await client.query<{ ssl: boolean; version: string }>('SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()')).rows[0],
    }));
    expect(rows).toEqual({ one: 1, ssl: 'on', session: { ssl: true, version: 'TLSv1.3' } });
    expect(db.caPem).toBe(db.airlockCaPem);
    expect(db.host).toBe('127.0.0.1');
    expect(db.url).toBe(`postgres://${db.user}:${encodeURIComponent(db.password ?? '')}@127.0.0.1:${db.port}/${db.database}`);
  });

  it('keeps the server key private (0600) and listens on a non-default port', async () => {
    expect((await stat(join(db.dir, 'tls', 'server.key'))).mode & 0o777).toBe(0o600);
    expect([5432, 8443, 8444, 8445, 9000, 9443]).not.toContain(db.port);
    expect(existsSync(join(db.socketDir, `.s.PGSQL.${db.port}`))).toBe(true);
  });

  it('is refused by a client that trusts another CA', async () => {
    const other = await createCertificateAuthority({ commonName: 'not the Airlock CA' });
    const error = await refusal(verifyFull(db, other.cert));
    expect(error.code).toMatch(/UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_GET_ISSUER_CERT/);
  });

  it('is refused by a client that expects another host name', async () => {
    const error = await refusal(verifyFull(db, db.caPem, 'db.example.com'));
    expect(error.code).toBe('ERR_TLS_CERT_ALTNAME_INVALID');
  });

  it('refuses a client without TLS', async () => {
    const error = await refusal({ connectionString: db.url, ssl: false });
    // 28000 invalid_authorization_specification: no pg_hba.conf line admits an unencrypted connection.
    expect(error.code).toBe('28000');
  });

  it('refuses a wrong password', async () => {
    const error = await refusal({ ...verifyFull(db), connectionString: undefined, host: db.host, port: db.port, user: db.user, database: db.database, password: 'wrong' });
    expect(error.code).toBe('28P01');
  });

  it('lets the test read the data directory: a checkpointed row is found by the canary scanner', async () => {
    const canary = makeCanary('temp-postgres');
    await withClient(verifyFull(db), async (client) => {
      await client.query('CREATE TABLE notes (body text)');
      await client.query('INSERT INTO notes VALUES ($1)', [canary]);
    });
    await db.checkpoint();
    const scan = await scanForCanary(db.dataDir, canary, { encodings: ['utf8'] });
    expect(scan.filesScanned).toBeGreaterThan(100);
    expect(scan.hits.some((hit) => hit.path.startsWith(join(db.dataDir, 'base')))).toBe(true);
  });
});

describeIfPostgres('a cluster whose certificate comes from another CA', () => {
  let db: TempPostgres;
  beforeAll(async () => {
    db = await startTempPostgres({ certificateFromOtherCa: true, auth: 'trust' });
  });
  afterAll(async () => {
    await db?.stop();
  });

  it('is refused by a client that trusts the Airlock CA, and accepted with the CA that really signed it', async () => {
    expect(db.caPem).not.toBe(db.airlockCaPem);
    expect(db.password).toBeUndefined();
    const error = await refusal(verifyFull(db, db.airlockCaPem));
    expect(error.code).toMatch(/UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_GET_ISSUER_CERT/);
    // The same client with the signer's CA gets in: the refusal above was about the CA and nothing else.
    expect(await withClient(verifyFull(db, db.caPem), async (client) => (await client.query('SHOW ssl')).rows[0])).toEqual({ ssl: 'on' });
  });
});

describeIfPostgres('a plaintext cluster', () => {
  let db: TempPostgres;
  beforeAll(async () => {
    db = await startTempPostgres({ tls: false });
  });
  afterAll(async () => {
    await db?.stop();
  });

  it('accepts a client without TLS and reports ssl=off', async () => {
    expect(db.tls).toBe(false);
    const ssl = await withClient({ connectionString: db.url, ssl: false }, async (client) => (await client.query<{ ssl: string }>('SHOW ssl')).rows[0]?.ssl);
    expect(ssl).toBe('off');
  });

  it('cannot satisfy a client that requires TLS', async () => {
    const error = await refusal(verifyFull(db));
    expect(error.message).toMatch(/does not support SSL/i);
  });
});

describeIfPostgres('stop()', () => {
  it('stops the server, removes the temporary directory, and may be called twice', async () => {
    const db = await startTempPostgres({ auth: 'trust', database: 'postgres' });
    expect(db.database).toBe('postgres');
    await withClient({ connectionString: db.url, ssl: { ca: db.caPem, servername: 'localhost' } }, (client) => client.query('SELECT 1'));
    await db.stop();
    await db.stop();
    expect(existsSync(db.dir)).toBe(false);
    const error = await refusal({ connectionString: db.url, ssl: { ca: db.caPem, servername: 'localhost' } });
    expect(error.code).toBe('ECONNREFUSED');
  });

  it('still cleans up after the server was killed with SIGKILL', async () => {
    const db = await startTempPostgres({ auth: 'trust' });
    const pid = Number((await readFile(join(db.dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0]);
    process.kill(pid, 'SIGKILL');
    await db.stop();
    expect(existsSync(db.dir)).toBe(false);
  });
});
