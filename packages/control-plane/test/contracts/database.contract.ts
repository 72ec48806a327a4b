// The database's own contract, run against every backend: migrations and the version guard, key errors, key rotation, canaries, and sealed values bound to their row.
import { sql } from 'kysely';
import { captureLogger, makeCanary, scanForCanary } from '@airlock/testing';
import { createCertificateAuthority, createCertificateRequest } from '@airlock/pki';
import { afterEach, describe, expect, it } from 'vitest';
import { KNOWN_MIGRATIONS, openActionQueue, openApiTokenStore, openClusterRegistry, type ControlPlaneDatabase } from '../../src/index.js';
import { openAt, testKey, type Backend } from '../backends.js';

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected the promise to reject');
    },
    (reason: unknown) => reason,
  );
}

/** Defines the database suite against the backend `backend()` returns. */
export function databaseContract(backend: () => Backend): void {
  const databases: ControlPlaneDatabase[] = [];
  afterEach(async () => {
    await Promise.all(databases.splice(0).map((database) => database.close()));
  });
  const track = (database: ControlPlaneDatabase): ControlPlaneDatabase => {
    databases.push(database);
    return database;
  };

  describe('database', () => {
    it('migrates a new database to the newest schema, and reopens without migrating again', async () => {
      const location = await backend().create();
      const key = testKey();
      const { log, lines } = captureLogger('db');
      const database = track(await openAt(location, log, key));
      expect(database.backend).toBe(backend().name);
      expect(database.schemaVersion).toBe(KNOWN_MIGRATIONS.at(-1));
      expect(lines.filter((line) => line.event === 'db.migrated')).toHaveLength(1);
      await database.close();
      const second = captureLogger('db');
      track(await openAt(location, second.log, key));
      expect(second.lines.filter((line) => line.event === 'db.migrated')).toHaveLength(0);
    });

    it('refuses a schema newer than this release, naming the versions it found and knows', async () => {
      const location = await backend().create();
      const key = testKey();
      const database = await openAt(location, captureLogger('db').log, key);
      await sql`insert into airlock_migrations (name, timestamp) values (${'9999-from-the-future'}, ${new Date().toISOString()})`.execute(database.db);
      await database.close();
      const error = await rejection(openAt(location, captureLogger('db').log, key));
      expect(error).toMatchObject({ code: 'DB_SCHEMA_UNSUPPORTED', details: { found: expect.stringContaining('9999-from-the-future') as unknown, known: KNOWN_MIGRATIONS.join(',') } });
      expect((error as Error).message).toContain('9999-from-the-future');
      expect((error as Error).message).toContain(KNOWN_MIGRATIONS.at(-1) ?? '');
    });

    it('refuses the wrong control-plane key with DB_KEY_INVALID naming the key source', async () => {
      const location = await backend().create();
      await (await openAt(location, captureLogger('db').log, testKey('right'))).close();
      const wrong = testKey('wrong');
      const error = await rejection(openAt(location, captureLogger('db').log, wrong));
      expect(error).toMatchObject({ code: 'DB_KEY_INVALID', details: { keySource: wrong.description } });
      expect((error as Error).message).toContain(wrong.description);
      expect((error as Error).message).not.toMatch(/file is not a database/i);
    });

    it('rotating the control-plane key re-wraps the data keys and rewrites no row', async () => {
      const location = await backend().create();
      const oldKey = testKey('old');
      const database = await openAt(location, captureLogger('db').log, oldKey);
      const tokens = openApiTokenStore({ database });
      const created = await tokens.createToken({ subject: 'kept', roles: [] });
      const before = await database.db.selectFrom('api_tokens').select('subject_sealed').executeTakeFirstOrThrow();
      const newKey = testKey('new');
      expect(await database.rewrapKeys(newKey)).toBe(1);
      await database.close();

      expect(await rejection(openAt(location, captureLogger('db').log, oldKey))).toMatchObject({ code: 'DB_KEY_INVALID' });
      const reopened = track(await openAt(location, captureLogger('db').log, newKey));
      const after = await reopened.db.selectFrom('api_tokens').select('subject_sealed').executeTakeFirstOrThrow();
      expect(Buffer.compare(after.subject_sealed, before.subject_sealed)).toBe(0);
      expect((await openApiTokenStore({ database: reopened }).authenticate(created.token)).subject).toBe('kept');
    });

    it('a sealed value copied into another row does not open (CIPHERTEXT_AUTH_FAILED)', async () => {
      const database = track(await openAt(await backend().create(), captureLogger('db').log));
      const tokens = openApiTokenStore({ database });
      const victim = await tokens.createToken({ subject: 'victim', roles: [{ project: 'secret-project', role: 'admin' }] });
      const attacker = await tokens.createToken({ subject: 'attacker', roles: [] });
      const stolen = await database.db.selectFrom('api_tokens').select('roles_sealed').where('token_id', '=', victim.id).executeTakeFirstOrThrow();
      await database.db.updateTable('api_tokens').set({ roles_sealed: stolen.roles_sealed }).where('token_id', '=', attacker.id).execute();
      expect(await rejection(tokens.authenticate(attacker.token))).toMatchObject({ code: 'CIPHERTEXT_AUTH_FAILED', details: { table: 'api_tokens', column: 'roles_sealed' } });
      // A flipped bit fails the same way.
      const flipped = Buffer.from(stolen.roles_sealed);
      flipped[flipped.length - 1] = (flipped[flipped.length - 1] ?? 0) ^ 1;
      await database.db.updateTable('api_tokens').set({ roles_sealed: flipped }).where('token_id', '=', victim.id).execute();
      expect(await rejection(tokens.authenticate(victim.token))).toMatchObject({ code: 'CIPHERTEXT_AUTH_FAILED' });
    });

    it('no canary in any encrypted field reaches the files at rest; read with the key, every one comes back', async () => {
      const location = await backend().create();
      const key = testKey('canary');
      const { log } = captureLogger('db', { level: 'silent' });
      const database = await openAt(location, log, key);
      const ca = await createCertificateAuthority({ commonName: 'canary CA' });
      const canary = (label: string): string => makeCanary(label);
      const values = {
        cluster: `c-${canary('c').slice(-24)}`,
        reason: canary('reason'),
        subject: canary('subject'),
        project: `p-${canary('p').slice(-24)}`,
        task: canary('task'),
        version: canary('version'),
        errorMessage: canary('error'),
      };
      const registry = openClusterRegistry({ ca, database, log });
      await registry.redeemBootstrapToken((await registry.createBootstrapToken(values.cluster, 60_000, values.reason)).token, (await createCertificateRequest({ commonName: 'x' })).csr);
      await openApiTokenStore({ database, log }).createToken({ subject: values.subject, roles: [{ project: values.project, role: 'runner' }] });
      const queue = await openActionQueue({ database, log });
      const actionId = await queue.enqueue(values.cluster, { runId: 'run-1', task: { project: values.project, name: values.task, version: values.version } });
      await queue.lease(values.cluster, 1, 0);
      await queue.record(values.cluster, [{ eventId: 'e1', actionId, attempt: 1, phase: 'FAILED', error: { code: 'USER_ERROR', message: values.errorMessage, retryable: false } }]);
      await backend().flush(database);
      for (const [field, value] of Object.entries(values)) {
        const scan = await scanForCanary(location.atRest, value);
        expect(scan.filesScanned, field).toBeGreaterThan(0);
        expect(scan.hits, field).toEqual([]);
      }
      await queue.close();
      await database.close();

      const reopened = track(await openAt(location, log, key));
      const again = await openActionQueue({ database: reopened, log });
      expect(await again.get(actionId)).toMatchObject({
        cluster: values.cluster,
        task: { project: values.project, name: values.task, version: values.version },
        // A code outside the catalogue is recorded as INTERNAL; the data plane's message is never kept.
        error: { code: 'INTERNAL', message: 'An unexpected internal error.' },
      });
      await again.close();
      expect((await openClusterRegistry({ ca, database: reopened }).cluster(values.cluster))?.name).toBe(values.cluster);
      expect((await openApiTokenStore({ database: reopened }).list())[0]).toMatchObject({ subject: values.subject, roles: [{ project: values.project }] });
    });
  });
}
