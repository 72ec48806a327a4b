// The action queue's contract, run against every database backend: leasing and long polls, lease expiry, reconciliation, idempotent events, cancellation, limits and durable state.
import { captureLogger, scanForCanary } from '@airlock/testing';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { openActionQueue, type ActionEventInput, type ActionQueue, type ActionQueueOptions, type ControlPlaneDatabase, type ControlPlaneKey } from '../../src/index.js';
import { openAt, testKey, type Backend, type DatabaseLocation } from '../backends.js';

const task = { project: 'p1', name: 'train', version: 'v1' };

let eventCounter = 0;
function event(actionId: string, phase: ActionEventInput['phase'], extra: Partial<ActionEventInput> = {}): ActionEventInput {
  eventCounter += 1;
  return { eventId: `e-${eventCounter}`, actionId, attempt: 1, phase, ...extra };
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected the promise to reject');
    },
    (reason: unknown) => reason,
  );
}

/** Defines the action-queue suite against the backend `backend()` returns (set up by the caller's beforeAll). */
export function actionQueueContract(backend: () => Backend): void {
  const queues: ActionQueue[] = [];
  const databases: ControlPlaneDatabase[] = [];

  afterEach(async () => {
    await Promise.all(queues.splice(0).map((queue) => queue.close()));
    await Promise.all(databases.splice(0).map((database) => database.close()));
  });

  /** A queue on a controllable clock, over a fresh database unless `at` names one. */
  async function open(
    options: Partial<ActionQueueOptions> = {},
    startMs = Date.parse('2030-01-01T00:00:00Z'),
    at: { location?: DatabaseLocation; key?: ControlPlaneKey } = {},
  ): Promise<{ queue: ActionQueue; clock: { ms: number }; lines: Array<Record<string, unknown>>; database: ControlPlaneDatabase }> {
    const clock = { ms: startMs };
    const { log, lines } = captureLogger('queue');
    const database = await openAt(at.location ?? (await backend().create()), log, at.key);
    databases.push(database);
    const queue = await openActionQueue({ database, log, now: () => new Date(clock.ms), leaseMs: 10_000, reconcileGraceMs: 1000, ...options });
    queues.push(queue);
    return { queue, clock, lines, database };
  }

  describe('enqueue and lease', () => {
    it('leases in FIFO order, per cluster, at most `max` at a time', async () => {
      const { queue } = await open();
      const a = await queue.enqueue('c1', { runId: 'r1', task });
      const b = await queue.enqueue('c1', { runId: 'r2', task });
      const other = await queue.enqueue('c2', { runId: 'r3', task });
      const first = await queue.lease('c1', 1, 0);
      expect(first.map((action) => action.actionId)).toEqual([a]);
      expect(first[0]).toMatchObject({ cluster: 'c1', phase: 'QUEUED', deliveries: 1, attempt: 1, timeoutMs: 0 });
      expect(first[0]?.leaseExpiresAt).toBeInstanceOf(Date);
      expect((await queue.lease('c1', 5, 0)).map((action) => action.actionId)).toEqual([b]);
      expect(await queue.lease('c1', 5, 0)).toEqual([]);
      expect((await queue.lease('c2', 5, 0)).map((action) => action.actionId)).toEqual([other]);
    });

    it('a long poll returns as soon as work arrives, and empty when the wait or the signal ends', async () => {
      const { queue } = await open();
      // The contract is "before the wait ends", not a speed: a 30 s wait must end well within half of it.
      const started = Date.now();
      const waiting = queue.lease('c1', 1, 30_000);
      setTimeout(() => void queue.enqueue('c1', { runId: 'r1', task }), 100);
      const leased = await waiting;
      expect(leased).toHaveLength(1);
      expect(Date.now() - started).toBeLessThan(15_000);

      const empty = Date.now();
      expect(await queue.lease('c1', 1, 150)).toEqual([]);
      expect(Date.now() - empty).toBeGreaterThanOrEqual(140);

      const controller = new AbortController();
      const aborted = queue.lease('c1', 1, 5000, controller.signal);
      controller.abort();
      expect(await aborted).toEqual([]);
    });

    it('keeps sealed inputs as given and validates arguments', async () => {
      const { queue } = await open({ maxInputBytes: 8 });
      const inputs = { sealed: new Uint8Array([1, 2, 3]), keyId: 'ab'.repeat(16) };
      const id = await queue.enqueue('c1', { runId: 'r1', task, inputs, timeoutMs: 5000, attempt: 3 });
      expect(await queue.get(id)).toMatchObject({ inputs: { keyId: inputs.keyId }, timeoutMs: 5000, attempt: 3 });
      expect((await queue.get(id))?.inputs?.sealed).toEqual(inputs.sealed);
      expect(await rejection(queue.enqueue('Not A Cluster', { runId: 'r', task }))).toMatchObject({ code: 'INVALID_ARGUMENT', details: { argument: 'cluster' } });
      expect(await rejection(queue.enqueue('c1', { runId: '', task }))).toMatchObject({ code: 'INVALID_ARGUMENT', details: { argument: 'runId' } });
      expect(await rejection(queue.enqueue('c1', { runId: 'r\n', task }))).toMatchObject({ code: 'INVALID_ARGUMENT' });
      expect(await rejection(queue.enqueue('c1', { runId: 'r', task: { ...task, version: '' } }))).toMatchObject({ code: 'INVALID_ARGUMENT' });
      expect(await rejection(queue.enqueue('c1', { runId: 'r', task, attempt: 0 }))).toMatchObject({ code: 'INVALID_ARGUMENT' });
      expect(await rejection(queue.enqueue('c1', { runId: 'r', task, inputs: { sealed: new Uint8Array(1), keyId: 'x' } }))).toMatchObject({ code: 'INVALID_ARGUMENT' });
      expect(await rejection(queue.enqueue('c1', { runId: 'r', task, inputs: { sealed: new Uint8Array(9), keyId: inputs.keyId } }))).toMatchObject({
        code: 'PAYLOAD_TOO_LARGE',
      });
    });

    it('refuses work beyond the per-cluster and total limits (UNAVAILABLE, queue-full)', async () => {
      const { queue } = await open({ maxQueuedPerCluster: 2, maxQueued: 3 });
      await queue.enqueue('c1', { runId: 'r1', task });
      await queue.enqueue('c1', { runId: 'r2', task });
      expect(await rejection(queue.enqueue('c1', { runId: 'r3', task }))).toMatchObject({ code: 'UNAVAILABLE', details: { reason: 'queue-full', limit: 2 } });
      await queue.enqueue('c2', { runId: 'r4', task });
      expect(await rejection(queue.enqueue('c3', { runId: 'r5', task }))).toMatchObject({ code: 'UNAVAILABLE', details: { reason: 'queue-full', limit: 3 } });
      // Finished actions free their place.
      const [leased] = await queue.lease('c1', 1, 0);
      await queue.record('c1', [event(leased?.actionId ?? '', 'SUCCEEDED')]);
      await queue.enqueue('c1', { runId: 'r6', task });
    });
  });

  describe('leases', () => {
    it('an unrenewed lease expires and the action is queued again; renewal keeps it', async () => {
      const { queue, clock, lines } = await open();
      const id = await queue.enqueue('c1', { runId: 'r1', task });
      await queue.lease('c1', 1, 0);
      clock.ms += 9000;
      expect(await queue.renew('c1', [id, 'unknown'])).toEqual(['unknown']);
      clock.ms += 9000;
      expect((await queue.get(id))?.leasedAt).toBeInstanceOf(Date);
      clock.ms += 1001;
      expect(await queue.get(id)).toMatchObject({ phase: 'QUEUED', deliveries: 1 });
      expect((await queue.get(id))?.leasedAt).toBeUndefined();
      expect(lines.some((line) => line.event === 'queue.requeued' && line.reason === 'lease expired')).toBe(true);
      expect((await queue.lease('c1', 1, 0))[0]).toMatchObject({ actionId: id, deliveries: 2 });
    });

    it('renew only extends leases the cluster holds', async () => {
      const { queue } = await open();
      const id = await queue.enqueue('c1', { runId: 'r1', task });
      expect(await queue.renew('c1', [id])).toEqual([id]);
      await queue.lease('c1', 1, 0);
      expect(await queue.renew('c2', [id])).toEqual([id]);
    });
  });

  describe('reconcile', () => {
    it('re-queues leases the agent no longer has (after the grace period) and renews listed ones', async () => {
      const { queue, clock } = await open();
      const kept = await queue.enqueue('c1', { runId: 'r1', task });
      const lost = await queue.enqueue('c1', { runId: 'r2', task });
      await queue.lease('c1', 2, 0);
      // Within the grace period a lease missing from a heartbeat may just be crossing on the wire.
      expect(await queue.reconcile('c1', [kept])).toEqual({ abortActionIds: [], requeuedActionIds: [] });
      clock.ms += 1500;
      expect(await queue.reconcile('c1', [kept])).toEqual({ abortActionIds: [], requeuedActionIds: [lost] });
      expect((await queue.get(lost))?.phase).toBe('QUEUED');
      expect((await queue.get(kept))?.leaseExpiresAt?.getTime()).toBe(clock.ms + 10_000);
    });

    it('returns foreign, unknown, finished and cancelled actions to abort; re-adopts a re-queued one the agent kept running', async () => {
      const { queue, clock } = await open();
      const foreign = await queue.enqueue('c2', { runId: 'r1', task });
      const finished = await queue.enqueue('c1', { runId: 'r2', task });
      const cancelled = await queue.enqueue('c1', { runId: 'r3', task });
      const readopted = await queue.enqueue('c1', { runId: 'r4', task });
      await queue.lease('c1', 3, 0);
      await queue.record('c1', [event(finished, 'SUCCEEDED')]);
      await queue.cancel(cancelled);
      expect(await queue.get(cancelled)).toMatchObject({ phase: 'QUEUED', cancelRequested: true });
      // The agent lost touch long enough for the lease to lapse, but kept running the action.
      clock.ms += 10_001;
      expect((await queue.get(readopted))?.phase).toBe('QUEUED');
      const result = await queue.reconcile('c1', [foreign, 'nope', finished, cancelled, readopted]);
      expect(result.abortActionIds.sort()).toEqual([foreign, 'nope', finished, cancelled].sort());
      expect(await queue.get(readopted)).toMatchObject({ deliveries: 2 });
      expect((await queue.get(readopted))?.leasedAt).toBeInstanceOf(Date);
      // Not handed out again while its agent has it.
      expect(await queue.lease('c1', 5, 0)).toEqual([]);
    });
  });

  describe('events', () => {
    it('records phases idempotently by event id; a terminal phase completes the action with its error', async () => {
      const { queue } = await open();
      const id = await queue.enqueue('c1', { runId: 'r1', task });
      await queue.lease('c1', 1, 0);
      const initializing = event(id, 'INITIALIZING');
      expect(await queue.record('c1', [initializing, event(id, 'RUNNING')])).toBe(2);
      expect(await queue.record('c1', [initializing])).toBe(0);
      expect((await queue.get(id))?.phase).toBe('RUNNING');
      const failed = event(id, 'FAILED', { error: { code: 'KMS_KEY_DISABLED', message: 'key\ndisabled', retryable: false }, occurredAt: new Date('2029-12-31T23:59:59Z') });
      expect(await queue.record('c1', [failed, failed])).toBe(1);
      const action = (await queue.get(id));
      // The data plane's message is dropped for the control plane's fixed text of the code.
      expect(action).toMatchObject({ phase: 'FAILED', error: { code: 'KMS_KEY_DISABLED', kind: 'SYSTEM', message: 'The KMS key is disabled.', retryable: false } });
      expect(action?.error?.occurredAtMs).toBe(Date.parse('2029-12-31T23:59:59Z'));
      expect(action?.completedAt).toBeInstanceOf(Date);
      expect(action?.leasedAt).toBeUndefined();
      expect(action?.history.map((entry) => entry.phase)).toEqual(['QUEUED', 'INITIALIZING', 'RUNNING', 'FAILED']);
      expect(action?.history.at(-1)?.at.toISOString()).toBe('2029-12-31T23:59:59.000Z');
      // Nothing moves a finished action.
      expect(await queue.record('c1', [event(id, 'SUCCEEDED')])).toBe(0);
      expect((await queue.get(id))?.phase).toBe('FAILED');
    });

    it('ignores events of another cluster, a superseded attempt, or that move backwards', async () => {
      const { queue } = await open();
      const id = await queue.enqueue('c1', { runId: 'r1', task, attempt: 2 });
      await queue.lease('c1', 1, 0);
      expect(await queue.record('c2', [event(id, 'SUCCEEDED', { attempt: 2 })])).toBe(0);
      expect(await queue.record('c1', [event(id, 'SUCCEEDED', { attempt: 1 })])).toBe(0);
      expect(await queue.record('c1', [event(id, 'RUNNING', { attempt: 2 })])).toBe(1);
      expect(await queue.record('c1', [event(id, 'INITIALIZING', { attempt: 2 })])).toBe(0);
      expect(await queue.record('c1', [event('unknown', 'RUNNING')])).toBe(0);
      expect((await queue.get(id))?.phase).toBe('RUNNING');
      expect(await rejection(queue.record('c1', [event(id, 'QUEUED')]))).toMatchObject({ code: 'INVALID_ARGUMENT' });
    });

    it('a late outcome for an action that was re-queued meanwhile is accepted', async () => {
      const { queue, clock } = await open();
      const id = await queue.enqueue('c1', { runId: 'r1', task });
      await queue.lease('c1', 1, 0);
      clock.ms += 10_001;
      expect((await queue.get(id))?.phase).toBe('QUEUED');
      expect(await queue.record('c1', [event(id, 'SUCCEEDED')])).toBe(1);
      expect((await queue.get(id))?.phase).toBe('SUCCEEDED');
    });
  });

  describe('cancel', () => {
    it('aborts a queued action at once; a leased one waits for its agent, or its lease', async () => {
      const { queue, clock } = await open();
      const queued = await queue.enqueue('c1', { runId: 'r1', task });
      expect(await queue.cancel(queued)).toMatchObject({ phase: 'ABORTED' });
      const leased = await queue.enqueue('c1', { runId: 'r2', task });
      await queue.lease('c1', 1, 0);
      expect(await queue.cancel(leased)).toMatchObject({ phase: 'QUEUED', cancelRequested: true });
      clock.ms += 10_001;
      expect(await queue.get(leased)).toMatchObject({ phase: 'ABORTED', cancelRequested: false });
      expect(await rejection(queue.cancel('nope'))).toMatchObject({ code: 'NOT_FOUND' });
    });
  });

  describe('persistence', () => {
      it('survives a reopen (leases extended for the downtime); sealed inputs are never written', async () => {
        const location = await backend().create();
        const key = testKey('queue');
        const first = await open({}, undefined, { location, key });
        const plain = await first.queue.enqueue('c1', { runId: 'r1', task });
        const leased = await first.queue.enqueue('c1', { runId: 'r2', task });
        const sealed = await first.queue.enqueue('c1', { runId: 'r3', task, inputs: { sealed: new TextEncoder().encode('CANARY-CIPHERTEXT'), keyId: 'cd'.repeat(16) } });
        await first.queue.lease('c1', 2, 0);
        await first.queue.record('c1', [event(plain, 'RUNNING')]);
        await backend().flush(first.database);
        const scan = await scanForCanary(location.atRest, 'CANARY-CIPHERTEXT');
        expect(scan.hits).toEqual([]);
        await first.queue.close();
        await first.database.close();

        // Reopened much later: leases are not charged for the downtime.
        const second = await open({}, first.clock.ms + 60_000, { location, key });
        expect(await second.queue.get(plain)).toMatchObject({ phase: 'RUNNING', deliveries: 1 });
        expect((await second.queue.get(leased))?.leasedAt).toBeInstanceOf(Date);
        expect((await second.queue.get(leased))?.leaseExpiresAt?.getTime()).toBe(second.clock.ms + 10_000);
        // The action whose inputs were lost fails retryably instead of running without them.
        expect(await second.queue.get(sealed)).toMatchObject({ phase: 'FAILED', inputsLost: true, error: { code: 'UNAVAILABLE', retryable: true } });
        expect(await second.queue.list('c1')).toHaveLength(3);
        expect(await second.queue.record('c1', [event(plain, 'SUCCEEDED')])).toBe(1);
      });

      it('stores the phase history readable, as phases, times and event ids; a history sealed before migration 0004 is read, and written readable at its next change', async () => {
        const { queue, database, clock } = await open();
        const stored = (actionId: string) => database.db.selectFrom('actions').select(['history', 'history_sealed']).where('action_id', '=', actionId).executeTakeFirstOrThrow();
        /** Leaves a row as a release before 0004 would: in `phase`, its history sealed, the readable column empty. */
        const sealAsBefore0004 = (actionId: string, phase: string, history: unknown, row = actionId) =>
          database.db
            .updateTable('actions')
            .set({ phase, history: null, history_sealed: database.sealer.sealJson({ table: 'actions', column: 'history_sealed', row }, history) })
            .where('action_id', '=', actionId)
            .execute();
        const id = await queue.enqueue('c1', { runId: 'r1', task });
        const queuedAt = clock.ms;
        expect(await stored(id)).toEqual({ history: null, history_sealed: null });
        await queue.lease('c1', 1, 0);
        clock.ms += 5;
        const running = event(id, 'RUNNING');
        await queue.record('c1', [running]);
        const first = await stored(id);
        expect(first.history_sealed).toBeNull();
        expect(JSON.parse(first.history ?? 'null')).toEqual([
          { phase: 'QUEUED', at: queuedAt },
          { phase: 'RUNNING', at: clock.ms, eventId: running.eventId },
        ]);

        // A row as an earlier release left it: the history sealed, the readable column empty.
        const older = await queue.enqueue('c1', { runId: 'r2', task });
        await queue.lease('c1', 1, 0);
        const sealedHistory = [
          { phase: 'QUEUED', at: queuedAt },
          { phase: 'INITIALIZING', at: queuedAt + 1, eventId: 'old-event' },
        ];
        await sealAsBefore0004(older, 'INITIALIZING', sealedHistory);
        expect((await queue.get(older))?.history.map((entry) => [entry.phase, entry.eventId])).toEqual([
          ['QUEUED', undefined],
          ['INITIALIZING', 'old-event'],
        ]);
        const done = event(older, 'SUCCEEDED');
        expect(await queue.record('c1', [done])).toBe(1);
        const rewritten = await stored(older);
        expect(rewritten.history_sealed).toBeNull();
        expect((JSON.parse(rewritten.history ?? '[]') as Array<{ phase: string; eventId?: string }>).map((entry) => [entry.phase, entry.eventId])).toEqual([
          ['QUEUED', undefined],
          ['INITIALIZING', 'old-event'],
          ['SUCCEEDED', done.eventId],
        ]);
        // A history sealed before 0004 that the readable encoder refuses (an event id with a tab, from a
        // file edited by hand) does not stop its action: the next change keeps it sealed.
        const odd = await queue.enqueue('c1', { runId: 'r3', task });
        await queue.lease('c1', 1, 0);
        const oddHistory = [
          { phase: 'QUEUED', at: queuedAt },
          { phase: 'RUNNING', at: queuedAt + 1, eventId: 'not\tan id' },
        ];
        await sealAsBefore0004(odd, 'RUNNING', oddHistory);
        expect(await queue.record('c1', [event(odd, 'SUCCEEDED')])).toBe(1);
        expect(await stored(odd)).toMatchObject({
          history: null,
          history_sealed: expect.any(Uint8Array) as unknown,
        });
        expect((await queue.get(odd))?.history.map((entry) => entry.phase)).toEqual(['QUEUED', 'RUNNING', 'SUCCEEDED']);

        // A sealed history moved to another row does not open there.
        await sealAsBefore0004(id, 'RUNNING', sealedHistory, older);
        expect(await rejection(queue.get(id).then((action) => action?.history))).toMatchObject({ code: 'CIPHERTEXT_AUTH_FAILED' });
      });

      it('keeps the run tree: a child action names its parent', async () => {
        const { queue } = await open();
        const parent = await queue.enqueue('c1', { runId: 'r1', task });
        const child = await queue.enqueue('c1', { runId: 'r1', task: { ...task, name: 'child' }, parentActionId: parent });
        expect(await queue.get(child)).toMatchObject({ runId: 'r1', parentActionId: parent, task: { name: 'child' } });
        expect((await queue.get(parent))?.parentActionId).toBeUndefined();
      });

      it('keeps at most maxCompleted finished actions', async () => {
        const { queue, clock } = await open({ maxCompleted: 1, leaseMs: 400 });
        const ids = [await queue.enqueue('c1', { runId: 'r1', task }), await queue.enqueue('c1', { runId: 'r2', task })];
        for (const id of ids) {
          expect((await queue.cancel(id)).phase).toBe('ABORTED');
          clock.ms += 1;
        }
        await vi.waitFor(async () => expect((await queue.list('c1')).map((action) => action.actionId)).toEqual([ids[1]]), { timeout: 5000 });
      });

      it('validates its options', async () => {
        const database = await openAt(await backend().create(), captureLogger('queue').log);
        databases.push(database);
        expect(await rejection(openActionQueue({ database, log: captureLogger('queue').log, leaseMs: 1 }))).toMatchObject({ code: 'CONFIG_INVALID', details: { option: 'actionQueue.leaseMs' } });
      });
    });
}
