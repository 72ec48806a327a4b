// The control plane's per-cluster action queue: enqueue, long-poll leases renewed by heartbeats, reconciliation, idempotent phase events, durable state.
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { AirlockError, configCheck, configError, freezeConfig, writeFileAtomic, type DeepReadonly, type Logger } from '@airlock/common';
import { isValidClusterName } from '@airlock/pki';

/** An action's lifecycle (DESIGN.md §9), as the names of the proto's ActionPhase values. */
export type ActionPhaseName = 'QUEUED' | 'INITIALIZING' | 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'ABORTED' | 'TIMED_OUT';

export const ACTION_PHASES: readonly ActionPhaseName[] = Object.freeze(['QUEUED', 'INITIALIZING', 'RUNNING', 'SUCCEEDED', 'FAILED', 'ABORTED', 'TIMED_OUT']);
export const TERMINAL_ACTION_PHASES: readonly ActionPhaseName[] = Object.freeze(['SUCCEEDED', 'FAILED', 'ABORTED', 'TIMED_OUT']);

export function isTerminalActionPhase(phase: ActionPhaseName): boolean {
  return TERMINAL_ACTION_PHASES.includes(phase);
}

/** Names an immutable, versioned task spec. */
export interface ActionTaskRef {
  readonly project: string;
  readonly name: string;
  readonly version: string;
}

/** Sealed inputs, shaped like the proto's SealedPayload (which can be passed as is). Opaque here. */
export interface SealedInputs {
  readonly sealed: Uint8Array;
  /** 32 lowercase hex characters. */
  readonly keyId: string;
}

export interface EnqueueActionOptions {
  readonly runId: string;
  readonly task: ActionTaskRef;
  /** 1 for the first attempt. @default 1 */
  readonly attempt?: number;
  /** Sealed to the data plane's I/O key; kept in memory only, never written to the state file. */
  readonly inputs?: SealedInputs;
  /** How long the attempt may run; 0 means the task's default. @default 0 */
  readonly timeoutMs?: number;
}

/** A failure as recorded for an action: a stable code and a display message. */
export interface ActionErrorRecord {
  readonly code: string;
  readonly message: string;
  readonly retryable: boolean;
}

/** One phase change as reported by a data plane (ReportEvents), in queue terms. */
export interface ActionEventInput {
  /** Chosen by the agent; a repeated id is ignored, which makes redelivery harmless. */
  readonly eventId: string;
  readonly actionId: string;
  readonly attempt: number;
  readonly phase: ActionPhaseName;
  /** On the data plane's clock. @default the receipt time */
  readonly occurredAt?: Date;
  readonly error?: ActionErrorRecord;
}

/** A phase an action went through. */
export interface ActionHistoryEntry {
  readonly phase: ActionPhaseName;
  readonly at: Date;
  /** The data plane's event that moved it there; undefined for the control plane's own transitions. */
  readonly eventId?: string;
}

/** A snapshot of one action. Contains no secrets; `inputs` is ciphertext. */
export interface QueuedAction {
  readonly actionId: string;
  readonly cluster: string;
  readonly runId: string;
  readonly task: ActionTaskRef;
  readonly attempt: number;
  /** Undefined for a task without inputs, and after a restart (inputs are never persisted; see `inputsLost`). */
  readonly inputs?: SealedInputs;
  /** True when the action had inputs that a control-plane restart discarded. */
  readonly inputsLost: boolean;
  readonly timeoutMs: number;
  readonly phase: ActionPhaseName;
  readonly queuedAt: Date;
  readonly updatedAt: Date;
  /** Set while the action is leased to its cluster's agent. */
  readonly leasedAt?: Date;
  readonly leaseExpiresAt?: Date;
  readonly completedAt?: Date;
  /** A cancellation waiting to reach the agent (abort_action_ids of its next heartbeat). */
  readonly cancelRequested: boolean;
  /** How many times the action was leased. */
  readonly deliveries: number;
  readonly error?: ActionErrorRecord;
  readonly history: readonly ActionHistoryEntry[];
}

/** What a heartbeat's reconciliation decided. */
export interface ReconcileResult {
  /** Actions the agent must stop: cancelled, already finished, or not this cluster's. */
  readonly abortActionIds: string[];
  /** Leased actions the agent no longer has, now queued again. */
  readonly requeuedActionIds: string[];
}

export interface ActionQueueOptions {
  /** JSON state file (mode 0600, replaced atomically), so queued work survives a restart. @default in memory only */
  readonly path?: string;
  /** Clock (tests). @default the current time */
  readonly now?: () => Date;
  readonly log: Logger;
  /** How long a lease lasts without a heartbeat listing the action, in milliseconds. @default 30000 */
  readonly leaseMs?: number;
  /**
   * A leased action missing from a heartbeat is re-queued only once its lease is older than this,
   * in milliseconds: a poll response and a heartbeat can cross on the wire. @default 5000
   */
  readonly reconcileGraceMs?: number;
  /** Most non-terminal actions per cluster; enqueue fails UNAVAILABLE (reason queue-full) beyond it. @default 10000 */
  readonly maxQueuedPerCluster?: number;
  /** Most non-terminal actions in all; enqueue fails UNAVAILABLE (reason queue-full) beyond it. @default 100000 */
  readonly maxQueued?: number;
  /** Finished actions kept for `get`/`list`, oldest dropped first. @default 10000 */
  readonly maxCompleted?: number;
  /** Largest sealed inputs per action, in bytes; larger ones fail PAYLOAD_TOO_LARGE. @default 1048576 (1 MiB) */
  readonly maxInputBytes?: number;
  /** Long polls waiting at once per cluster; more return empty at once. @default 64 */
  readonly maxWaitersPerCluster?: number;
}

export type ResolvedActionQueueConfig = DeepReadonly<{
  path: string | undefined;
  leaseMs: number;
  reconcileGraceMs: number;
  maxQueuedPerCluster: number;
  maxQueued: number;
  maxCompleted: number;
  maxInputBytes: number;
  maxWaitersPerCluster: number;
}> & { readonly now: () => Date; readonly log: Logger };

export interface ActionQueue {
  /** Queues an action for `cluster`; resolves (with its id) once it is durable. */
  enqueue(cluster: string, action: EnqueueActionOptions): Promise<string>;
  /**
   * Leases up to `max` queued actions of `cluster`, waiting up to `waitMs` for one to arrive (long
   * poll). Resolves with an empty list when the wait elapses or `signal` aborts.
   */
  lease(cluster: string, max: number, waitMs: number, signal?: AbortSignal): Promise<QueuedAction[]>;
  /** Extends the leases of these actions held by `cluster`; returns the ids it does not hold. */
  renew(cluster: string, actionIds: readonly string[]): Promise<string[]>;
  /**
   * Compares what `cluster`'s agent says it is running with what is leased to it: leases it no
   * longer has are re-queued, listed ones are renewed (and re-adopted if they were re-queued
   * while it was out of touch), and cancelled, finished or foreign ones are returned to abort.
   */
  reconcile(cluster: string, inFlightIds: readonly string[]): Promise<ReconcileResult>;
  /**
   * Records phase events reported by `cluster`, idempotently by event id; resolves with how many
   * were newly applied once they are durable. A terminal phase completes the action. Events of
   * another cluster's action, of a superseded attempt, or that would move a phase backwards are ignored.
   */
  record(cluster: string, events: readonly ActionEventInput[]): Promise<number>;
  /** Cancels an action: at once if it is only queued, otherwise via the agent's next heartbeat. Throws NOT_FOUND. */
  cancel(actionId: string): Promise<QueuedAction>;
  get(actionId: string): QueuedAction | undefined;
  /** Every known action (of `cluster`, when given), oldest first. */
  list(cluster?: string): QueuedAction[];
  /** Stops the lease timer and waits for pending writes. */
  close(): Promise<void>;
}

const STATE_VERSION = 1;
const MAX_ID_LENGTH = 128;
const MAX_NAME_LENGTH = 256;
const MAX_ATTEMPT = 1000;
const MAX_TIMEOUT_MS = 7 * 24 * 60 * 60 * 1000;
/** Event ids remembered per action for deduplication; an action has a handful of events. */
const MAX_EVENT_IDS_PER_ACTION = 64;
const MAX_HISTORY_PER_ACTION = 32;
const MAX_ERROR_MESSAGE_LENGTH = 2048;
const KEY_ID = /^[0-9a-f]{32}$/;

const PHASE_RANK: Readonly<Record<ActionPhaseName, number>> = Object.freeze({
  QUEUED: 0,
  INITIALIZING: 1,
  RUNNING: 2,
  SUCCEEDED: 3,
  FAILED: 3,
  ABORTED: 3,
  TIMED_OUT: 3,
});

export function resolveActionQueueConfig(options: ActionQueueOptions): ResolvedActionQueueConfig {
  if (typeof options !== 'object' || options === null) throw configError('actionQueue', 'options are required');
  if (typeof options.log !== 'object' || options.log === null) throw configError('actionQueue.log', 'is required');
  if (options.path !== undefined) configCheck.nonEmptyString('actionQueue.path', options.path);
  if (options.now !== undefined && typeof options.now !== 'function') throw configError('actionQueue.now', 'must be a function');
  const settings = freezeConfig({
    path: options.path,
    leaseMs: configCheck.integer('actionQueue.leaseMs', options.leaseMs ?? 30_000, 100, 86_400_000),
    reconcileGraceMs: configCheck.integer('actionQueue.reconcileGraceMs', options.reconcileGraceMs ?? 5000, 0, 3_600_000),
    maxQueuedPerCluster: configCheck.integer('actionQueue.maxQueuedPerCluster', options.maxQueuedPerCluster ?? 10_000, 1, 10_000_000),
    maxQueued: configCheck.integer('actionQueue.maxQueued', options.maxQueued ?? 100_000, 1, 10_000_000),
    maxCompleted: configCheck.integer('actionQueue.maxCompleted', options.maxCompleted ?? 10_000, 0, 10_000_000),
    maxInputBytes: configCheck.integer('actionQueue.maxInputBytes', options.maxInputBytes ?? 1024 * 1024, 1, 64 * 1024 * 1024),
    maxWaitersPerCluster: configCheck.integer('actionQueue.maxWaitersPerCluster', options.maxWaitersPerCluster ?? 64, 1, 100_000),
  });
  return Object.freeze({ ...settings, now: options.now ?? ((): Date => new Date()), log: options.log });
}

/** The mutable record behind a QueuedAction; times in epoch milliseconds. Serialised as is, minus `inputs`. */
interface ActionEntry {
  actionId: string;
  cluster: string;
  runId: string;
  task: { project: string; name: string; version: string };
  attempt: number;
  timeoutMs: number;
  hasInputs: boolean;
  inputsLost: boolean;
  phase: ActionPhaseName;
  queuedAt: number;
  updatedAt: number;
  leasedAt?: number;
  leaseExpiresAt?: number;
  completedAt?: number;
  cancelRequested: boolean;
  deliveries: number;
  error?: ActionErrorRecord;
  history: Array<{ phase: ActionPhaseName; at: number; eventId?: string }>;
  eventIds: string[];
}

interface QueueState {
  version: number;
  actions: ActionEntry[];
}

function invalid(argument: string, problem: string): AirlockError {
  return new AirlockError('INVALID_ARGUMENT', `${argument} ${problem}`, { details: { argument } });
}

function checkCluster(cluster: string): string {
  if (!isValidClusterName(cluster)) throw invalid('cluster', 'must be 1 to 63 lower-case letters, digits or inner hyphens');
  return cluster;
}

/** True when `value` holds a C0 control character or DEL. */
export function hasControlCharacter(value: string): boolean {
  for (let index = 0; index < value.length; index += 1) {
    const code = value.charCodeAt(index);
    if (code < 0x20 || code === 0x7f) return true;
  }
  return false;
}

function checkText(argument: string, value: unknown, maxLength: number): string {
  // Printable text without control characters: these strings end up in logs and in the console.
  if (typeof value !== 'string' || value.length === 0 || value.length > maxLength || hasControlCharacter(value)) {
    throw invalid(argument, `must be 1 to ${maxLength} printable characters`);
  }
  return value;
}

function checkInteger(argument: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) throw invalid(argument, `must be an integer from ${min} to ${max}`);
  return value;
}

/** Error records come from data planes: keep them short and free of control characters. */
function cleanError(error: ActionErrorRecord | undefined): ActionErrorRecord | undefined {
  if (error === undefined) return undefined;
  const code = typeof error.code === 'string' && /^[A-Z0-9_]{1,64}$/.test(error.code) ? error.code : 'INTERNAL';
  const raw = (typeof error.message === 'string' ? error.message : '').slice(0, MAX_ERROR_MESSAGE_LENGTH);
  const message = [...raw].map((char) => (hasControlCharacter(char) ? ' ' : char)).join('');
  return Object.freeze({ code, message, retryable: error.retryable === true });
}

function parseState(text: string, path: string): QueueState {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new AirlockError('CONFIG_INVALID', 'The action queue file is not valid JSON', { cause: error, details: { path } });
  }
  const state = value as Partial<QueueState> | null;
  if (state === null || typeof state !== 'object' || state.version !== STATE_VERSION || !Array.isArray(state.actions)) {
    throw new AirlockError('CONFIG_INVALID', 'The action queue file has an unknown format', { details: { path } });
  }
  for (const entry of state.actions) {
    if (typeof entry !== 'object' || entry === null || typeof entry.actionId !== 'string' || !ACTION_PHASES.includes(entry.phase) || !isValidClusterName(entry.cluster)) {
      throw new AirlockError('CONFIG_INVALID', 'The action queue file holds a malformed action', { details: { path } });
    }
  }
  return { version: STATE_VERSION, actions: state.actions };
}

interface Waiter {
  readonly wake: () => void;
}

/** Opens (or creates) an action queue; with `path`, its state is loaded from and saved to that file. */
export async function openActionQueue(options: ActionQueueOptions): Promise<ActionQueue> {
  const config = resolveActionQueueConfig(options);
  const { log, path } = config;
  const clock = (): number => config.now().getTime();

  /** Insertion-ordered, so iteration is oldest first (FIFO leasing). */
  const actions = new Map<string, ActionEntry>();
  /** Sealed inputs, in memory only: DESIGN.md §3 says the control plane never persists task I/O. */
  const inputs = new Map<string, SealedInputs>();
  const waiters = new Map<string, Set<Waiter>>();

  if (path !== undefined) {
    const text = await readFile(path, 'utf8').catch((error: unknown) => {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw AirlockError.from(error);
    });
    if (text !== undefined) {
      const now = clock();
      let lost = 0;
      for (const entry of parseState(text, path).actions) {
        // Leases are not charged for the control plane's own downtime: agents could not renew them.
        if (entry.leaseExpiresAt !== undefined) entry.leaseExpiresAt = Math.max(entry.leaseExpiresAt, now + config.leaseMs);
        if (entry.hasInputs && !isTerminalActionPhase(entry.phase) && !entry.inputsLost) {
          entry.inputsLost = true;
          lost += 1;
        }
        actions.set(entry.actionId, entry);
      }
      // An action whose sealed inputs were lost can no longer run as submitted: fail it, retryably,
      // rather than hand the data plane an action without its inputs.
      for (const entry of actions.values()) {
        if (entry.inputsLost && !isTerminalActionPhase(entry.phase)) {
          complete(entry, 'FAILED', now, undefined, {
            code: 'UNAVAILABLE',
            message: 'The sealed inputs were held in memory only and a control-plane restart discarded them; submit the run again',
            retryable: true,
          });
        }
      }
      log.info({ event: 'queue.loaded', path, actions: actions.size, inputsLost: lost }, 'action queue loaded');
    }
  }

  // ---- persistence: coalesced atomic writes; a caller awaits a write that started after its change.
  let writing: Promise<void> = Promise.resolve();
  let queued: Promise<void> | undefined;
  const persist = (): Promise<void> => {
    if (path === undefined) return Promise.resolve();
    queued ??= writing
      .catch(() => undefined)
      .then(() => {
        queued = undefined;
        const state: QueueState = { version: STATE_VERSION, actions: [...actions.values()] };
        writing = writeFileAtomic(path, `${JSON.stringify(state)}\n`, { mode: 0o600 });
        return writing;
      });
    return queued;
  };

  // ---- helpers
  function snapshot(entry: ActionEntry): QueuedAction {
    const sealed = inputs.get(entry.actionId);
    return Object.freeze({
      actionId: entry.actionId,
      cluster: entry.cluster,
      runId: entry.runId,
      task: Object.freeze({ ...entry.task }),
      attempt: entry.attempt,
      ...(sealed === undefined ? {} : { inputs: sealed }),
      inputsLost: entry.inputsLost,
      timeoutMs: entry.timeoutMs,
      phase: entry.phase,
      queuedAt: new Date(entry.queuedAt),
      updatedAt: new Date(entry.updatedAt),
      ...(entry.leasedAt === undefined ? {} : { leasedAt: new Date(entry.leasedAt) }),
      ...(entry.leaseExpiresAt === undefined ? {} : { leaseExpiresAt: new Date(entry.leaseExpiresAt) }),
      ...(entry.completedAt === undefined ? {} : { completedAt: new Date(entry.completedAt) }),
      cancelRequested: entry.cancelRequested,
      deliveries: entry.deliveries,
      ...(entry.error === undefined ? {} : { error: entry.error }),
      history: Object.freeze(
        entry.history.map((item) => Object.freeze({ phase: item.phase, at: new Date(item.at), ...(item.eventId === undefined ? {} : { eventId: item.eventId }) })),
      ),
    });
  }

  function pushHistory(entry: ActionEntry, phase: ActionPhaseName, at: number, eventId?: string): void {
    entry.history.push(eventId === undefined ? { phase, at } : { phase, at, eventId });
    if (entry.history.length > MAX_HISTORY_PER_ACTION) entry.history.splice(0, entry.history.length - MAX_HISTORY_PER_ACTION);
  }

  /** Moves an action to a terminal phase; `at` is when that happened (the agent's clock for reported events). */
  function complete(entry: ActionEntry, phase: ActionPhaseName, now: number, eventId?: string, error?: ActionErrorRecord, at: number = now): void {
    entry.phase = phase;
    entry.updatedAt = now;
    entry.completedAt = now;
    delete entry.leasedAt;
    delete entry.leaseExpiresAt;
    entry.cancelRequested = false;
    if (error !== undefined) entry.error = error;
    pushHistory(entry, phase, at, eventId);
    // Ciphertext is dropped as soon as nothing can need it any more.
    inputs.delete(entry.actionId);
    pruneCompleted();
  }

  function pruneCompleted(): void {
    let completed = 0;
    for (const entry of actions.values()) if (isTerminalActionPhase(entry.phase)) completed += 1;
    if (completed <= config.maxCompleted) return;
    for (const [id, entry] of actions) {
      if (completed <= config.maxCompleted) break;
      if (isTerminalActionPhase(entry.phase)) {
        actions.delete(id);
        completed -= 1;
      }
    }
  }

  function requeue(entry: ActionEntry, now: number, reason: string): void {
    entry.phase = 'QUEUED';
    entry.updatedAt = now;
    delete entry.leasedAt;
    delete entry.leaseExpiresAt;
    pushHistory(entry, 'QUEUED', now);
    log.warn({ event: 'queue.requeued', actionId: entry.actionId, cluster: entry.cluster, reason }, 'action queued again');
    wake(entry.cluster);
  }

  function wake(cluster: string): void {
    const set = waiters.get(cluster);
    if (set === undefined) return;
    for (const waiter of [...set]) waiter.wake();
  }

  /** Re-queues leases that were not renewed in time. Called before every read and on a timer. */
  function expireLeases(): boolean {
    const now = clock();
    let changed = false;
    for (const entry of actions.values()) {
      if (entry.leaseExpiresAt !== undefined && entry.leaseExpiresAt <= now && !isTerminalActionPhase(entry.phase)) {
        if (entry.cancelRequested) {
          // The agent is gone and the user wanted it stopped: nothing left to stop.
          complete(entry, 'ABORTED', now);
        } else {
          requeue(entry, now, 'lease expired');
        }
        changed = true;
      }
    }
    return changed;
  }

  const sweeper = setInterval(
    () => {
      if (expireLeases()) persist().catch((error: unknown) => log.error({ event: 'queue.save_failed', code: AirlockError.from(error).code }, 'action queue not saved'));
    },
    Math.max(50, Math.min(1000, Math.floor(config.leaseMs / 4))),
  );
  sweeper.unref();

  const isLeased = (entry: ActionEntry): boolean => entry.leasedAt !== undefined && !isTerminalActionPhase(entry.phase);

  function take(cluster: string, max: number): ActionEntry[] {
    const now = clock();
    const taken: ActionEntry[] = [];
    for (const entry of actions.values()) {
      if (taken.length >= max) break;
      if (entry.cluster !== cluster || entry.phase !== 'QUEUED' || entry.leasedAt !== undefined || entry.cancelRequested) continue;
      entry.leasedAt = now;
      entry.leaseExpiresAt = now + config.leaseMs;
      entry.updatedAt = now;
      entry.deliveries += 1;
      taken.push(entry);
    }
    return taken;
  }

  function waitForWork(cluster: string, ms: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve) => {
      let set = waiters.get(cluster);
      if (set === undefined) {
        set = new Set();
        waiters.set(cluster, set);
      }
      const own = set;
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        own.delete(waiter);
        if (own.size === 0 && waiters.get(cluster) === own) waiters.delete(cluster);
        resolve();
      };
      const waiter: Waiter = { wake: done };
      const timer = setTimeout(done, ms);
      own.add(waiter);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  let closed = false;
  const checkOpen = (): void => {
    if (closed) throw new AirlockError('UNAVAILABLE', 'The action queue is closed');
  };

  return {
    async enqueue(clusterName, action) {
      checkOpen();
      const cluster = checkCluster(clusterName);
      if (typeof action !== 'object' || action === null) throw invalid('action', 'is required');
      const runId = checkText('runId', action.runId, MAX_ID_LENGTH);
      if (typeof action.task !== 'object' || action.task === null) throw invalid('task', 'is required');
      const task = {
        project: checkText('task.project', action.task.project, MAX_NAME_LENGTH),
        name: checkText('task.name', action.task.name, MAX_NAME_LENGTH),
        version: checkText('task.version', action.task.version, MAX_NAME_LENGTH),
      };
      const attempt = checkInteger('attempt', action.attempt ?? 1, 1, MAX_ATTEMPT);
      const timeoutMs = checkInteger('timeoutMs', action.timeoutMs ?? 0, 0, MAX_TIMEOUT_MS);
      let sealed: SealedInputs | undefined;
      if (action.inputs !== undefined) {
        const { sealed: bytes, keyId } = action.inputs;
        if (!(bytes instanceof Uint8Array) || bytes.length === 0) throw invalid('inputs.sealed', 'must be non-empty bytes');
        if (typeof keyId !== 'string' || !KEY_ID.test(keyId)) throw invalid('inputs.keyId', 'must be 32 lowercase hex characters');
        if (bytes.length > config.maxInputBytes) {
          throw new AirlockError('PAYLOAD_TOO_LARGE', `Sealed inputs are limited to ${config.maxInputBytes} bytes`, { details: { limit: config.maxInputBytes } });
        }
        sealed = Object.freeze({ sealed: new Uint8Array(bytes), keyId });
      }
      expireLeases();
      let pending = 0;
      let pendingForCluster = 0;
      for (const entry of actions.values()) {
        if (isTerminalActionPhase(entry.phase)) continue;
        pending += 1;
        if (entry.cluster === cluster) pendingForCluster += 1;
      }
      if (pendingForCluster >= config.maxQueuedPerCluster || pending >= config.maxQueued) {
        const limit = pendingForCluster >= config.maxQueuedPerCluster ? config.maxQueuedPerCluster : config.maxQueued;
        log.warn({ event: 'queue.full', cluster, limit }, 'action queue full');
        throw new AirlockError('UNAVAILABLE', `The action queue is full (${limit} unfinished actions); try again later`, { details: { reason: 'queue-full', cluster, limit } });
      }
      const now = clock();
      const actionId = randomUUID();
      const entry: ActionEntry = {
        actionId,
        cluster,
        runId,
        task,
        attempt,
        timeoutMs,
        hasInputs: sealed !== undefined,
        inputsLost: false,
        phase: 'QUEUED',
        queuedAt: now,
        updatedAt: now,
        cancelRequested: false,
        deliveries: 0,
        history: [{ phase: 'QUEUED', at: now }],
        eventIds: [],
      };
      actions.set(actionId, entry);
      if (sealed !== undefined) inputs.set(actionId, sealed);
      try {
        await persist();
      } catch (error) {
        actions.delete(actionId);
        inputs.delete(actionId);
        throw error;
      }
      log.info({ event: 'queue.enqueued', actionId, cluster, runId, project: task.project, task: task.name, attempt }, 'action queued');
      wake(cluster);
      return actionId;
    },

    async lease(clusterName, max, waitMs, signal) {
      checkOpen();
      const cluster = checkCluster(clusterName);
      const limit = checkInteger('max', max, 1, 1000);
      const wait = checkInteger('waitMs', waitMs, 0, 3_600_000);
      const deadline = Date.now() + wait;
      for (;;) {
        if (closed || signal?.aborted === true) return [];
        expireLeases();
        const taken = take(cluster, limit);
        if (taken.length > 0) {
          await persist();
          log.info({ event: 'queue.leased', cluster, actionIds: taken.map((entry) => entry.actionId) }, 'actions leased');
          return taken.map(snapshot);
        }
        const remaining = deadline - Date.now();
        if (remaining <= 0 || (waiters.get(cluster)?.size ?? 0) >= config.maxWaitersPerCluster) return [];
        await waitForWork(cluster, remaining, signal);
      }
    },

    async renew(clusterName, actionIds) {
      checkOpen();
      const cluster = checkCluster(clusterName);
      expireLeases();
      const now = clock();
      const missing: string[] = [];
      for (const id of actionIds) {
        const entry = actions.get(id);
        if (entry === undefined || entry.cluster !== cluster || !isLeased(entry)) {
          missing.push(id);
          continue;
        }
        entry.leaseExpiresAt = now + config.leaseMs;
      }
      await persist();
      return missing;
    },

    async reconcile(clusterName, inFlightIds) {
      checkOpen();
      const cluster = checkCluster(clusterName);
      expireLeases();
      const now = clock();
      const listed = new Set(inFlightIds);
      const abortActionIds: string[] = [];
      const requeuedActionIds: string[] = [];
      for (const id of listed) {
        const entry = actions.get(id);
        if (entry === undefined || entry.cluster !== cluster || isTerminalActionPhase(entry.phase) || entry.cancelRequested) {
          abortActionIds.push(id);
          continue;
        }
        if (entry.leasedAt === undefined) {
          // Re-queued while the agent was out of touch, but it kept running it: give it back
          // rather than run the same attempt twice.
          entry.leasedAt = now;
          entry.deliveries += 1;
          log.info({ event: 'queue.readopted', actionId: id, cluster }, 'queued action re-adopted by its running agent');
        }
        entry.leaseExpiresAt = now + config.leaseMs;
      }
      for (const entry of actions.values()) {
        if (entry.cluster !== cluster || !isLeased(entry) || listed.has(entry.actionId)) continue;
        if (entry.cancelRequested) {
          complete(entry, 'ABORTED', now);
          continue;
        }
        if ((entry.leasedAt ?? now) <= now - config.reconcileGraceMs) {
          requeue(entry, now, 'agent no longer has it');
          requeuedActionIds.push(entry.actionId);
        }
      }
      await persist();
      return { abortActionIds, requeuedActionIds };
    },

    async record(clusterName, events) {
      checkOpen();
      const cluster = checkCluster(clusterName);
      expireLeases();
      const now = clock();
      let applied = 0;
      for (const event of events) {
        const eventId = checkText('event.eventId', event.eventId, MAX_ID_LENGTH);
        const actionId = checkText('event.actionId', event.actionId, MAX_ID_LENGTH);
        if (!ACTION_PHASES.includes(event.phase) || event.phase === 'QUEUED') throw invalid('event.phase', 'must be a phase after QUEUED');
        const entry = actions.get(actionId);
        if (entry === undefined) {
          log.debug({ event: 'queue.event_ignored', cluster, actionId, reason: 'unknown action' }, 'event ignored');
          continue;
        }
        if (entry.cluster !== cluster) {
          log.warn({ event: 'queue.event_ignored', cluster, actionId, reason: 'another cluster' }, 'event for another cluster ignored');
          continue;
        }
        if (entry.eventIds.includes(eventId)) continue;
        entry.eventIds.push(eventId);
        if (entry.eventIds.length > MAX_EVENT_IDS_PER_ACTION) entry.eventIds.splice(0, entry.eventIds.length - MAX_EVENT_IDS_PER_ACTION);
        if (event.attempt !== entry.attempt) {
          log.debug({ event: 'queue.event_ignored', cluster, actionId, reason: 'superseded attempt' }, 'event ignored');
          continue;
        }
        if (isTerminalActionPhase(entry.phase) || (PHASE_RANK[event.phase] <= PHASE_RANK[entry.phase] && entry.phase !== 'QUEUED')) {
          log.debug({ event: 'queue.event_ignored', cluster, actionId, phase: event.phase, current: entry.phase, reason: 'not forward' }, 'event ignored');
          continue;
        }
        const at = event.occurredAt instanceof Date && Number.isFinite(event.occurredAt.getTime()) ? event.occurredAt.getTime() : now;
        if (isTerminalActionPhase(event.phase)) {
          complete(entry, event.phase, now, eventId, cleanError(event.error), at);
          log.info({ event: 'queue.completed', actionId, cluster, phase: event.phase, errorCode: entry.error?.code }, 'action finished');
        } else {
          // An event for an action that was re-queued meanwhile means the agent has it after all.
          if (entry.leasedAt === undefined) {
            entry.leasedAt = now;
            entry.deliveries += 1;
          }
          entry.leaseExpiresAt = now + config.leaseMs;
          entry.phase = event.phase;
          entry.updatedAt = now;
          pushHistory(entry, event.phase, at, eventId);
        }
        applied += 1;
      }
      await persist();
      return applied;
    },

    async cancel(actionId) {
      checkOpen();
      expireLeases();
      const entry = actions.get(actionId);
      if (entry === undefined) throw new AirlockError('NOT_FOUND', 'No such action', { details: { actionId: String(actionId).slice(0, MAX_ID_LENGTH) } });
      if (!isTerminalActionPhase(entry.phase)) {
        const now = clock();
        if (entry.leasedAt === undefined) {
          complete(entry, 'ABORTED', now);
        } else {
          entry.cancelRequested = true;
          entry.updatedAt = now;
        }
        await persist();
        log.info({ event: 'queue.cancelled', actionId, cluster: entry.cluster, phase: entry.phase }, 'action cancelled');
      }
      return snapshot(entry);
    },

    get(actionId) {
      expireLeases();
      const entry = actions.get(actionId);
      return entry === undefined ? undefined : snapshot(entry);
    },

    list(cluster) {
      expireLeases();
      return [...actions.values()].filter((entry) => cluster === undefined || entry.cluster === cluster).map(snapshot);
    },

    async close() {
      if (closed) return;
      closed = true;
      clearInterval(sweeper);
      for (const set of waiters.values()) for (const waiter of [...set]) waiter.wake();
      await (queued ?? writing).catch(() => undefined);
    },
  };
}
