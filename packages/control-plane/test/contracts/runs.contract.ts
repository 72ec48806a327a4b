// The run service's contract, run against every database backend: task versions, runs driven by action events, retries with backoff, abort, the run lease, idempotency, watching, and sealed storage.
import { createCertificateAuthority, createCertificateRequest, type CertificateAuthority } from '@airlock/pki';
import { taskSpecDigest, taskVersion, type TaskSpec } from '@airlock/sdk';
import { captureLogger, makeCanary, scanForCanary } from '@airlock/testing';
import { sql } from 'kysely';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  openActionQueue,
  openClusterRegistry,
  openRunService,
  type ActionEventInput,
  type ActionQueue,
  type ClusterRegistry,
  type ControlPlaneDatabase,
  type RunRecord,
  type RunService,
  type RunServiceOptions,
} from '../../src/index.js';
import { openAt, type Backend, type DatabaseLocation } from '../backends.js';

const PROJECT = 'p1';
const SHA_A = 'a'.repeat(64);
const SHA_B = 'b'.repeat(64);

/** A TaskSpec as the SDK describes it. */
function spec(name: string, extra: Partial<Record<keyof TaskSpec, unknown>> = {}): TaskSpec {
  return {
    specVersion: 1,
    name,
    kind: 'function',
    inputSchema: { type: 'object' },
    outputSchema: { type: 'object' },
    retries: { limit: 0, initialDelayMs: 1000, maxDelayMs: 60_000, factor: 2, jitter: 0 },
    timeoutMs: 60_000,
    resources: {},
    sdkVersion: '0.1.0',
    ...extra,
  } as TaskSpec;
}

const json = (value: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(value));

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected the promise to reject');
    },
    (reason: unknown) => reason,
  );
}

let eventCounter = 0;
function event(actionId: string, attempt: number, phase: ActionEventInput['phase'], error?: { code: string; kind: 'USER' | 'SYSTEM'; retryable: boolean }): ActionEventInput {
  eventCounter += 1;
  return { eventId: `ev-${eventCounter}`, actionId, attempt, phase, ...(error === undefined ? {} : { error: { ...error, message: 'the data plane says: SECRET-DP-TEXT' } }) };
}

async function eventually<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

interface Harness {
  readonly database: ControlPlaneDatabase;
  readonly queue: ActionQueue;
  readonly registry: ClusterRegistry;
  readonly runs: RunService;
  readonly clock: { ms: number };
  readonly lastSeen: Map<string, number>;
  readonly location: DatabaseLocation;
  readonly lines: Array<Record<string, unknown>>;
  /** A second run service over the same database, as a second control plane would have. */
  another(): Promise<RunService>;
}

/** Defines the run-service suite against the backend `backend()` returns. */
export function runServiceContract(backend: () => Backend): void {
  let ca: CertificateAuthority;
  const closers: Array<() => Promise<void>> = [];
  beforeAll(async () => {
    ca = await createCertificateAuthority({ commonName: 'runs test CA' });
  });
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
  });

  async function register(registry: ClusterRegistry, cluster: string): Promise<void> {
    const { token } = await registry.createBootstrapToken(cluster, 60_000);
    await registry.redeemBootstrapToken(token, (await createCertificateRequest({ commonName: cluster })).csr);
  }

  async function open(options: Partial<RunServiceOptions> = {}, clusters: readonly string[] = ['c1']): Promise<Harness> {
    const location = await backend().create();
    const { log, lines } = captureLogger('runs');
    const database = await openAt(location, log);
    const clock = { ms: Date.parse('2030-01-01T00:00:00Z') };
    const now = (): Date => new Date(clock.ms);
    const lastSeen = new Map<string, number>();
    const registry = openClusterRegistry({ ca, database, log });
    for (const cluster of clusters) await register(registry, cluster);
    const queue = await openActionQueue({ database, log, now, leaseMs: 10_000, reconcileGraceMs: 0 });
    const make = (): Promise<RunService> =>
      openRunService({
        database,
        queue,
        clusters: registry,
        log,
        now,
        clusterLastSeen: (cluster) => (lastSeen.has(cluster) ? new Date(lastSeen.get(cluster) as number) : undefined),
        runLeaseMs: 60_000,
        sweepIntervalMs: 3_600_000,
        random: () => 0,
        ...options,
      });
    const runs = await make();
    const extra: RunService[] = [];
    closers.push(async () => {
      await Promise.all([runs, ...extra].map((service) => service.close()));
      await queue.close();
      await database.close();
    });
    return {
      database,
      queue,
      registry,
      runs,
      clock,
      lastSeen,
      location,
      lines,
      async another() {
        const service = await make();
        extra.push(service);
        return service;
      },
    };
  }

  async function registered(h: Harness, name = 'train', extra: Partial<Record<keyof TaskSpec, unknown>> = {}, sha = SHA_A): Promise<string> {
    const { task } = await h.runs.registerTask({ project: PROJECT, specJson: json(spec(name, extra)), bundle: { sha256: sha, size: 1234 }, createdBy: 'alice' });
    return task.version;
  }

  const create = (h: Harness, extra: Partial<Parameters<RunService['createRun']>[0]> = {}): Promise<{ run: RunRecord; deduplicated: boolean }> =>
    h.runs.createRun({ project: PROJECT, taskName: 'train', taskVersion: '', cluster: '', idempotencyKey: '', createdBy: 'alice', ...extra });

  /** The run once `check` holds for it (runs follow their actions asynchronously). */
  const runWhen = (h: Harness, runId: string, check: (run: RunRecord) => boolean): Promise<RunRecord> =>
    eventually(`run ${runId}`, async () => {
      const run = await h.runs.getRun(PROJECT, runId);
      return check(run) ? run : undefined;
    });

  describe('tasks', () => {
    it('registers a version computed from the spec and bundle, idempotently', async () => {
      const h = await open();
      const body = spec('train');
      const first = await h.runs.registerTask({ project: PROJECT, specJson: json(body), bundle: { sha256: SHA_A, size: 10n }, createdBy: 'alice' });
      expect(first.created).toBe(true);
      expect(first.task).toMatchObject({ project: PROJECT, name: 'train', version: taskVersion(taskSpecDigest(body), SHA_A), bundle: { sha256: SHA_A, size: 10 }, createdBy: 'alice' });
      const again = await h.runs.registerTask({ project: PROJECT, specJson: json(body), bundle: { sha256: SHA_A, size: 10n }, createdBy: 'bob' });
      expect(again.created).toBe(false);
      expect(again.task).toMatchObject({ version: first.task.version, createdBy: 'alice' });
      expect(Buffer.from(again.task.specJson).toString()).toBe(JSON.stringify(body));
    });

    it('GetTask returns the newest version when none is given, and TASK_NOT_FOUND names what is missing', async () => {
      const h = await open();
      const v1 = await registered(h, 'train', {}, SHA_A);
      h.clock.ms += 1000;
      const v2 = await registered(h, 'train', {}, SHA_B);
      expect(v1).not.toBe(v2);
      expect((await h.runs.getTask(PROJECT, 'train', '')).version).toBe(v2);
      expect((await h.runs.getTask(PROJECT, 'train', v1)).version).toBe(v1);
      expect(await rejection(h.runs.getTask(PROJECT, 'nope', ''))).toMatchObject({ code: 'TASK_NOT_FOUND', details: { task: 'nope' } });
      expect(await rejection(h.runs.getTask(PROJECT, 'train', 'c'.repeat(64)))).toMatchObject({ code: 'TASK_NOT_FOUND', details: { version: 'c'.repeat(64) } });
      // Another project does not see it.
      expect(await rejection(h.runs.getTask('p2', 'train', ''))).toMatchObject({ code: 'TASK_NOT_FOUND' });
    });

    it('refuses malformed specs, bundles and names, naming the argument', async () => {
      const h = await open();
      const registerWith = (specJson: Uint8Array, bundle: { sha256: string; size: number } = { sha256: SHA_A, size: 1 }, project = PROJECT): Promise<unknown> =>
        rejection(h.runs.registerTask({ project, specJson, bundle, createdBy: 'a' }));
      expect(await registerWith(new TextEncoder().encode('{not json'))).toMatchObject({ code: 'INVALID_ARGUMENT', details: { argument: 'spec_json' } });
      expect(await registerWith(json(spec('train', { retries: { limit: -1 } })))).toMatchObject({ code: 'INVALID_ARGUMENT', details: { argument: 'spec_json', field: 'retries.limit' } });
      expect(await registerWith(json(spec('train', { timeoutMs: 0 })))).toMatchObject({ code: 'INVALID_ARGUMENT', details: { field: 'timeoutMs' } });
      expect(await registerWith(json(spec('9bad')))).toMatchObject({ code: 'INVALID_ARGUMENT', details: { argument: 'spec_json.name' } });
      expect(await registerWith(json(spec('train', { description: 'x'.repeat(300 * 1024) })))).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', details: { argument: 'spec_json' } });
      expect(await registerWith(json(spec('train')), { sha256: 'XYZ', size: 1 })).toMatchObject({ code: 'INVALID_ARGUMENT', details: { argument: 'bundle.sha256' } });
      expect(await registerWith(json(spec('train')), { sha256: SHA_A, size: 0 })).toMatchObject({ code: 'INVALID_ARGUMENT', details: { argument: 'bundle.size' } });
      expect(await registerWith(json(spec('train')), undefined, 'Bad_Project')).toMatchObject({ code: 'INVALID_ARGUMENT', details: { argument: 'project' } });
    });

    it('lists the newest version of each task by name, a page at a time', async () => {
      const h = await open();
      for (const name of ['gamma', 'alpha', 'beta']) await registered(h, name);
      h.clock.ms += 1000;
      const newestAlpha = await registered(h, 'alpha', {}, SHA_B);
      const first = await h.runs.listTasks(PROJECT, 2, '');
      expect(first.tasks.map((task) => task.name)).toEqual(['alpha', 'beta']);
      expect(first.tasks[0]?.version).toBe(newestAlpha);
      const second = await h.runs.listTasks(PROJECT, 2, first.nextPageToken);
      expect(second.tasks.map((task) => task.name)).toEqual(['gamma']);
      expect(second.nextPageToken).toBe('');
      expect(await rejection(h.runs.listTasks(PROJECT, 2, 'garbage!'))).toMatchObject({ code: 'INVALID_ARGUMENT', details: { argument: 'page_token' } });
      expect((await h.runs.listTasks('p2', 0, '')).tasks).toEqual([]);
    });
  });

  describe('runs', () => {
    it('creates a run on the only active cluster and follows its action to the end', async () => {
      const h = await open({}, ['c1', 'gone']);
      await h.registry.revoke('gone');
      const version = await registered(h, 'train', { timeoutMs: 5000 });
      const { run, deduplicated } = await create(h);
      expect(deduplicated).toBe(false);
      expect(run).toMatchObject({ project: PROJECT, taskName: 'train', taskVersion: version, cluster: 'c1', phase: 'QUEUED', attempts: 1, createdBy: 'alice', abortRequested: false });
      expect(run.completedAt).toBeUndefined();
      const [action] = await h.queue.lease('c1', 5, 0);
      expect(action).toMatchObject({ actionId: run.actionId, runId: run.runId, attempt: 1, timeoutMs: 5000, bundle: { sha256: SHA_A, size: 1234 }, task: { project: PROJECT, name: 'train', version } });
      expect(action?.inputsRef).toBeUndefined();
      await h.queue.record('c1', [event(run.actionId, 1, 'INITIALIZING'), event(run.actionId, 1, 'RUNNING')]);
      await runWhen(h, run.runId, (current) => current.phase === 'RUNNING');
      await h.queue.record('c1', [event(run.actionId, 1, 'SUCCEEDED')]);
      const done = await runWhen(h, run.runId, (current) => current.completedAt !== undefined);
      expect(done.phase).toBe('SUCCEEDED');
      expect(done.phases.map((entry) => entry.phase)).toEqual(['QUEUED', 'INITIALIZING', 'RUNNING', 'SUCCEEDED']);
      expect(done.error).toBeUndefined();
      // A revoked cluster, an unknown one, an unknown task or version, inputs without a tunnel.
      expect(await rejection(create(h, { cluster: 'gone' }))).toMatchObject({ code: 'CLUSTER_REVOKED' });
      expect(await rejection(create(h, { cluster: 'nowhere' }))).toMatchObject({ code: 'NOT_FOUND', details: { cluster: 'nowhere' } });
      expect(await rejection(create(h, { taskName: 'other' }))).toMatchObject({ code: 'TASK_NOT_FOUND' });
      expect(await rejection(create(h, { taskVersion: 'd'.repeat(64) }))).toMatchObject({ code: 'TASK_NOT_FOUND', details: { version: 'd'.repeat(64) } });
      expect(await rejection(create(h, { inputs: { sealed: new Uint8Array(10), keyId: 'ab'.repeat(16) } }))).toMatchObject({ code: 'UNAVAILABLE', details: { reason: 'tunnel-down' } });
      expect(await rejection(create(h, { inputs: { sealed: new Uint8Array(1024 * 1024 + 1), keyId: 'ab'.repeat(16) } }))).toMatchObject({ code: 'PAYLOAD_TOO_LARGE' });
      expect(await rejection(create(h, { inputs: { sealed: new Uint8Array(1), keyId: 'nope' } }))).toMatchObject({ code: 'INVALID_ARGUMENT', details: { argument: 'inputs.key_id' } });
      expect(await rejection(create(h, { idempotencyKey: 'x'.repeat(129) }))).toMatchObject({ code: 'INVALID_ARGUMENT', details: { argument: 'idempotency_key' } });
      expect(await rejection(h.runs.getRun(PROJECT, 'not-a-run'))).toMatchObject({ code: 'INVALID_ARGUMENT', details: { argument: 'run_id' } });
      expect(await rejection(h.runs.getRun('p2', run.runId))).toMatchObject({ code: 'NOT_FOUND' });
    });

    it('asks for a cluster when several are active, and says when none is', async () => {
      const several = await open({}, ['c1', 'c2']);
      await registered(several);
      expect(await rejection(create(several))).toMatchObject({ code: 'INVALID_ARGUMENT', details: { argument: 'cluster' } });
      expect((await create(several, { cluster: 'c2' })).run.cluster).toBe('c2');
      const none = await open({}, []);
      await registered(none);
      expect(await rejection(create(none))).toMatchObject({ code: 'FAILED_PRECONDITION' });
    });

    it('retries a retryable failure after the backoff (available_at), then ends with the fixed message', async () => {
      const h = await open();
      await registered(h, 'train', { retries: { limit: 2, initialDelayMs: 1000, maxDelayMs: 60_000, factor: 2, jitter: 0 } });
      const { run } = await create(h);
      await h.queue.lease('c1', 1, 0);
      await h.queue.record('c1', [event(run.actionId, 1, 'RUNNING'), event(run.actionId, 1, 'FAILED', { code: 'TASK_FAILED', kind: 'USER', retryable: true })]);
      const retried = await runWhen(h, run.runId, (current) => current.attempts === 2);
      expect(retried).toMatchObject({ phase: 'QUEUED', attempts: 2 });
      expect(retried.actionId).not.toBe(run.actionId);
      expect(retried.phases.map((entry) => entry.phase)).toEqual(['QUEUED', 'RUNNING', 'FAILED', 'QUEUED']);
      const second = await h.queue.get(retried.actionId);
      expect(second?.availableAt?.getTime()).toBe(h.clock.ms + 1000);
      // Not leased before its time.
      expect(await h.queue.lease('c1', 5, 0)).toEqual([]);
      h.clock.ms += 1000;
      const [leased] = await h.queue.lease('c1', 5, 0);
      expect(leased).toMatchObject({ actionId: retried.actionId, attempt: 2, bundle: { sha256: SHA_A } });
      await h.queue.record('c1', [event(retried.actionId, 2, 'FAILED', { code: 'TASK_FAILED', kind: 'USER', retryable: true })]);
      const third = await runWhen(h, run.runId, (current) => current.attempts === 3);
      // Exponential: 1 s, then 2 s.
      expect((await h.queue.get(third.actionId))?.availableAt?.getTime()).toBe(h.clock.ms + 2000);
      h.clock.ms += 2000;
      await h.queue.lease('c1', 5, 0);
      await h.queue.record('c1', [event(third.actionId, 3, 'FAILED', { code: 'TASK_FAILED', kind: 'USER', retryable: true })]);
      const failed = await runWhen(h, run.runId, (current) => current.completedAt !== undefined);
      expect(failed).toMatchObject({ phase: 'FAILED', attempts: 3, error: { code: 'TASK_FAILED', kind: 'USER', retryable: true } });
      expect(failed.error?.message).toBe(`The task failed; \`airlock runs get ${run.runId}\` shows its error`);
      const actions = await h.runs.listActions(PROJECT, run.runId);
      expect(actions.map((action) => [action.attempt, action.phase])).toEqual([
        [1, 'FAILED'],
        [2, 'FAILED'],
        [3, 'FAILED'],
      ]);
      expect(actions[0]?.error).toMatchObject({ code: 'TASK_FAILED', kind: 'USER' });
      expect(JSON.stringify(actions)).not.toContain('SECRET-DP-TEXT');
    });

    it('does not retry a non-retryable error, and a SYSTEM error keeps its catalogue text', async () => {
      const h = await open();
      await registered(h, 'train', { retries: { limit: 3, initialDelayMs: 1000, maxDelayMs: 60_000, factor: 2, jitter: 0 } });
      const { run } = await create(h);
      await h.queue.lease('c1', 1, 0);
      await h.queue.record('c1', [event(run.actionId, 1, 'FAILED', { code: 'KMS_KEY_DISABLED', kind: 'SYSTEM', retryable: false })]);
      const failed = await runWhen(h, run.runId, (current) => current.completedAt !== undefined);
      expect(failed).toMatchObject({ phase: 'FAILED', attempts: 1, error: { code: 'KMS_KEY_DISABLED', kind: 'SYSTEM', message: 'The KMS key is disabled.' } });
    });

    it('aborts a queued run at once, a running one through the agent, a run in backoff at once, and leaves a finished one', async () => {
      const h = await open();
      await registered(h, 'train', { retries: { limit: 1, initialDelayMs: 5000, maxDelayMs: 60_000, factor: 2, jitter: 0 } });
      const queued = (await create(h)).run;
      expect(await h.runs.abortRun(PROJECT, queued.runId)).toMatchObject({ phase: 'ABORTED', abortRequested: false });
      expect((await h.runs.getRun(PROJECT, queued.runId)).completedAt).toBeInstanceOf(Date);

      const running = (await create(h)).run;
      await h.queue.lease('c1', 1, 0);
      await h.queue.record('c1', [event(running.actionId, 1, 'RUNNING')]);
      await runWhen(h, running.runId, (current) => current.phase === 'RUNNING');
      expect(await h.runs.abortRun(PROJECT, running.runId)).toMatchObject({ phase: 'RUNNING', abortRequested: true });
      // The agent's heartbeat is told to stop it; a retryable failure then is not retried.
      expect((await h.queue.reconcile('c1', [running.actionId])).abortActionIds).toEqual([running.actionId]);
      await h.queue.record('c1', [event(running.actionId, 1, 'FAILED', { code: 'TASK_ABORTED', kind: 'SYSTEM', retryable: false })]);
      expect(await runWhen(h, running.runId, (current) => current.completedAt !== undefined)).toMatchObject({ phase: 'FAILED', attempts: 1, abortRequested: false });

      const backoff = (await create(h)).run;
      await h.queue.lease('c1', 1, 0);
      await h.queue.record('c1', [event(backoff.actionId, 1, 'FAILED', { code: 'TASK_FAILED', kind: 'USER', retryable: true })]);
      await runWhen(h, backoff.runId, (current) => current.attempts === 2);
      expect(await h.runs.abortRun(PROJECT, backoff.runId)).toMatchObject({ phase: 'ABORTED', attempts: 2 });

      const finished = await h.runs.getRun(PROJECT, queued.runId);
      expect(await h.runs.abortRun(PROJECT, queued.runId)).toEqual(finished);
    });

    it('ends a run FAILED with DATA_PLANE_LOST once its cluster is silent for the run lease, not before', async () => {
      const h = await open();
      await registered(h);
      const { run } = await create(h);
      h.clock.ms += 30_000;
      h.lastSeen.set('c1', h.clock.ms);
      h.clock.ms += 59_000;
      await h.runs.sweep();
      expect((await h.runs.getRun(PROJECT, run.runId)).phase).toBe('QUEUED');
      h.clock.ms += 2000;
      await h.runs.sweep();
      const lost = await runWhen(h, run.runId, (current) => current.completedAt !== undefined);
      expect(lost).toMatchObject({ phase: 'FAILED', error: { code: 'DATA_PLANE_LOST', kind: 'SYSTEM' } });
      expect(h.lines.some((line) => line.event === 'runs.data_plane_lost')).toBe(true);
    });

    it('a leased action of a silent cluster is queued again by its lease, then ends DATA_PLANE_LOST', async () => {
      const h = await open();
      await registered(h, 'train', { retries: { limit: 5, initialDelayMs: 1000, maxDelayMs: 60_000, factor: 2, jitter: 0 } });
      const { run } = await create(h);
      await h.queue.lease('c1', 1, 0);
      h.clock.ms += 61_000;
      // The queue's lease (10 s here) expired, so the action is queued again, and nobody is there to take it.
      await h.runs.sweep();
      expect(await runWhen(h, run.runId, (current) => current.completedAt !== undefined)).toMatchObject({ phase: 'FAILED', attempts: 1, error: { code: 'DATA_PLANE_LOST' } });
    });

    it('lists runs newest first, filtered by task and phase, a page at a time', async () => {
      const h = await open();
      await registered(h, 'train');
      await registered(h, 'serve');
      const ids: string[] = [];
      for (let index = 0; index < 5; index += 1) {
        h.clock.ms += 10;
        ids.push((await create(h, { taskName: index % 2 === 0 ? 'train' : 'serve' })).run.runId);
      }
      await h.runs.abortRun(PROJECT, ids[4] as string);
      const page1 = await h.runs.listRuns(PROJECT, { taskName: '', phase: undefined, pageSize: 2, pageToken: '' });
      expect(page1.runs.map((run) => run.runId)).toEqual([ids[4], ids[3]]);
      const page2 = await h.runs.listRuns(PROJECT, { taskName: '', phase: undefined, pageSize: 2, pageToken: page1.nextPageToken });
      const page3 = await h.runs.listRuns(PROJECT, { taskName: '', phase: undefined, pageSize: 2, pageToken: page2.nextPageToken });
      expect([...page2.runs, ...page3.runs].map((run) => run.runId)).toEqual([ids[2], ids[1], ids[0]]);
      expect(page3.nextPageToken).toBe('');
      expect((await h.runs.listRuns(PROJECT, { taskName: 'train', phase: undefined, pageSize: 0, pageToken: '' })).runs.map((run) => run.runId)).toEqual([ids[4], ids[2], ids[0]]);
      expect((await h.runs.listRuns(PROJECT, { taskName: 'train', phase: 'QUEUED', pageSize: 0, pageToken: '' })).runs.map((run) => run.runId)).toEqual([ids[2], ids[0]]);
      expect((await h.runs.listRuns('p2', { taskName: '', phase: undefined, pageSize: 0, pageToken: '' })).runs).toEqual([]);
    });
  });

  describe('idempotency', () => {
    it('returns the first run for a repeated key within its lifetime, per project, and a new one after', async () => {
      const h = await open({ idempotencyTtlMs: 60_000 });
      await registered(h);
      const first = await create(h, { idempotencyKey: 'submit-1' });
      const second = await create(h, { idempotencyKey: 'submit-1' });
      expect(second).toEqual({ run: expect.objectContaining({ runId: first.run.runId }) as unknown, deduplicated: true });
      expect((await h.queue.listRun(first.run.runId)).length).toBe(1);
      h.clock.ms += 60_001;
      await h.runs.sweep();
      const later = await create(h, { idempotencyKey: 'submit-1' });
      expect(later.deduplicated).toBe(false);
      expect(later.run.runId).not.toBe(first.run.runId);
    });

    it('a reservation left by a control plane that stopped before creating its run is released after a while', async () => {
      const h = await open();
      await registered(h);
      // What a crash between reserving the key and writing the run leaves behind.
      const keyHash = h.database.sealer.blindIndex('idempotency-key', `${PROJECT}\nleft-behind`);
      await h.database.db
        .insertInto('idempotency_keys')
        .values({ key_hash: keyHash, project_id: h.database.sealer.blindIndex('project', PROJECT), run_id: '00000000-0000-7000-8000-000000000000', created_at: h.clock.ms, expires_at: h.clock.ms + 86_400_000 })
        .execute();
      h.clock.ms += 121_000;
      const created = await create(h, { idempotencyKey: 'left-behind' });
      expect(created.deduplicated).toBe(false);
      expect((await create(h, { idempotencyKey: 'left-behind' })).run.runId).toBe(created.run.runId);
    });

    it('concurrent identical submissions, through two control planes, start one run', async () => {
      const h = await open();
      await registered(h);
      const other = await h.another();
      const results = await Promise.all(
        Array.from({ length: 8 }, (_unused, index) =>
          (index % 2 === 0 ? h.runs : other).createRun({ project: PROJECT, taskName: 'train', taskVersion: '', cluster: '', idempotencyKey: 'same', createdBy: 'alice' }),
        ),
      );
      const ids = new Set(results.map((result) => result.run.runId));
      expect(ids.size).toBe(1);
      expect(results.filter((result) => !result.deduplicated)).toHaveLength(1);
      const rows = await h.database.db.selectFrom('runs').select('run_id').execute();
      expect(rows).toHaveLength(1);
      expect(await h.queue.list('c1')).toHaveLength(1);
    });
  });

  describe('watch', () => {
    it('streams the run now and at every change, and ends when it is terminal', async () => {
      const h = await open();
      await registered(h);
      const { run } = await create(h);
      const seen: string[] = [];
      const controller = new AbortController();
      const watching = (async () => {
        for await (const current of h.runs.watchRun(PROJECT, run.runId, controller.signal)) seen.push(current.phase);
      })();
      await eventually('first', () => Promise.resolve(seen.length > 0 ? true : undefined));
      await h.queue.lease('c1', 1, 0);
      await h.queue.record('c1', [event(run.actionId, 1, 'INITIALIZING')]);
      await eventually('initializing', () => Promise.resolve(seen.includes('INITIALIZING') ? true : undefined));
      await h.queue.record('c1', [event(run.actionId, 1, 'RUNNING')]);
      await eventually('running', () => Promise.resolve(seen.includes('RUNNING') ? true : undefined));
      await h.queue.record('c1', [event(run.actionId, 1, 'SUCCEEDED')]);
      await watching;
      expect(seen).toEqual(['QUEUED', 'INITIALIZING', 'RUNNING', 'SUCCEEDED']);
    });

    it('bounds the number of watchers', async () => {
      const h = await open({ maxWatchers: 1 });
      await registered(h);
      const { run } = await create(h);
      const controller = new AbortController();
      const first = h.runs.watchRun(PROJECT, run.runId, controller.signal)[Symbol.asyncIterator]();
      expect((await first.next()).value).toMatchObject({ phase: 'QUEUED' });
      const second = h.runs.watchRun(PROJECT, run.runId, controller.signal)[Symbol.asyncIterator]();
      expect(await rejection(second.next())).toMatchObject({ code: 'UNAVAILABLE', details: { reason: 'too-many-watchers' } });
      controller.abort();
      await first.return?.();
    });
  });

  describe('storage', () => {
    it('no canary in a project, task name, spec, creator or idempotency key reaches the database at rest or any raw column', async () => {
      const h = await open();
      const project = makeCanary('p');
      const name = makeCanary('t');
      const description = makeCanary('spec');
      const creator = makeCanary('who');
      const key = makeCanary('key');
      await h.runs.registerTask({ project, specJson: json(spec(name, { description })), bundle: { sha256: SHA_A, size: 5 }, createdBy: creator });
      const { run } = await h.runs.createRun({ project, taskName: name, taskVersion: '', cluster: '', idempotencyKey: key, createdBy: creator });
      await h.queue.lease('c1', 1, 0);
      await h.queue.record('c1', [event(run.actionId, 1, 'FAILED', { code: 'TASK_FAILED', kind: 'USER', retryable: false })]);
      await eventually('the run to fail', async () => ((await h.runs.getRun(project, run.runId)).phase === 'FAILED' ? true : undefined));
      // Every value of every table, read raw.
      const raw: string[] = [];
      for (const table of ['tasks', 'runs', 'idempotency_keys', 'actions', 'action_events']) {
        const rows = await sql<Record<string, unknown>>`select * from ${sql.table(table)}`.execute(h.database.db);
        for (const row of rows.rows) for (const value of Object.values(row)) raw.push(Buffer.isBuffer(value) || value instanceof Uint8Array ? Buffer.from(value).toString('latin1') : String(value));
      }
      const all = raw.join('\n');
      for (const value of [project, name, description, creator, key, 'SECRET-DP-TEXT']) expect(all).not.toContain(value);
      await backend().flush(h.database);
      for (const value of [project, name, description, creator, key]) {
        const scan = await scanForCanary(h.location.atRest, value);
        expect(scan.filesScanned).toBeGreaterThan(0);
        expect(scan.hits).toEqual([]);
      }
      // Read back with the key, everything is there.
      expect((await h.runs.getTask(project, name, '')).createdBy).toBe(creator);
      expect((await h.runs.listRuns(project, { taskName: name, phase: undefined, pageSize: 0, pageToken: '' })).runs[0]).toMatchObject({ taskName: name, createdBy: creator });
    });

    it('a run whose action changed while no run service followed it catches up at start', async () => {
      const h = await open();
      await registered(h);
      const { run } = await create(h);
      await h.runs.close();
      await h.queue.lease('c1', 1, 0);
      await h.queue.record('c1', [event(run.actionId, 1, 'SUCCEEDED')]);
      const restarted = await h.another();
      expect(await restarted.getRun(PROJECT, run.runId)).toMatchObject({ phase: 'SUCCEEDED' });
    });
  });
}
