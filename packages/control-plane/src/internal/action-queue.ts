// The control plane's per-cluster action queue: enqueue, long-poll leases renewed by heartbeats, reconciliation, idempotent phase events, durable state.
import type { Selectable, Transaction } from 'kysely';
import { AirlockError, configCheck, configError, ERROR_CODES, freezeConfig, isAirlockErrorCode, uuidV7, type DeepReadonly, type Logger } from '@airlock/common';
import { isValidClusterName } from '@airlock/pki';
import type { ColumnSealer, SealedCell, SealOptions } from './db/column-sealer.js';
import type { ControlPlaneDatabase } from './db/database.js';
import type { ActionsTable, DatabaseSchema } from './db/schema.js';

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
  /** The action whose task called this one (tasks calling tasks); unset for a run's root action. */
  readonly parentActionId?: string;
  readonly task: ActionTaskRef;
  /** 1 for the first attempt. @default 1 */
  readonly attempt?: number;
  /** Sealed to the data plane's I/O key; kept in memory only, never written to the state file. */
  readonly inputs?: SealedInputs;
  /** How long the attempt may run; 0 means the task's default. @default 0 */
  readonly timeoutMs?: number;
  /** Where the data plane keeps the run's inputs (SealedIoService.PutInputs): a reference, not data. Stored sealed. */
  readonly inputsRef?: string;
  /** The task's code bundle, which the executor verifies before running it. Stored sealed. */
  readonly bundle?: ActionBundle;
  /** Not before: the action is not leased until then (a retry's backoff). @default now */
  readonly availableAt?: Date;
}

/** A code bundle named by its content. */
export interface ActionBundle {
  /** 64 lowercase hex characters. */
  readonly sha256: string;
  readonly size: number;
}

/** Whose failure an error record describes. */
export type ActionErrorKind = 'USER' | 'SYSTEM';

/**
 * The control plane's fixed text for an error code: never a data plane's message, which may quote
 * customer data. A USER error points at the run, whose details the data plane keeps sealed.
 */
export function fixedErrorMessage(code: string, kind: ActionErrorKind | undefined, runId?: string): string {
  if (kind === 'USER') return `The task failed; \`airlock runs get ${runId ?? '<run>'}\` shows its error`;
  return isAirlockErrorCode(code) ? ERROR_CODES[code].description : ERROR_CODES.INTERNAL.description;
}

/**
 * A failure as recorded for an action: a stable code, whose failure it is, whether it is worth
 * retrying, and when it happened. `message` is the control plane's fixed text for the code
 * (fixedErrorMessage); whatever message a data plane sends is dropped.
 */
export interface ActionErrorRecord {
  readonly code: string;
  readonly message: string;
  readonly retryable: boolean;
  /** @default 'SYSTEM' */
  readonly kind?: ActionErrorKind;
  /** When it happened (epoch milliseconds, the data plane's clock for reported events). */
  readonly occurredAtMs?: number;
}

/** One action that changed, as told to `subscribe` listeners once the change is durable. */
export interface ActionChange {
  readonly actionId: string;
  readonly runId: string;
  readonly phase: ActionPhaseName;
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
  readonly parentActionId?: string;
  readonly task: ActionTaskRef;
  readonly attempt: number;
  /** Undefined for a task without inputs, and after a restart (inputs are never persisted; see `inputsLost`). */
  readonly inputs?: SealedInputs;
  /** True when the action had inputs that a control-plane restart discarded. */
  readonly inputsLost: boolean;
  readonly timeoutMs: number;
  /** The reference to the run's inputs in the data plane; undefined when there are none. */
  readonly inputsRef?: string;
  readonly bundle?: ActionBundle;
  /** Not leased before this time (a retry's backoff); undefined means at once. */
  readonly availableAt?: Date;
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
  /** Where actions live, so queued work survives a restart; task references and error records are stored sealed. */
  readonly database: ControlPlaneDatabase;
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
  leaseMs: number;
  reconcileGraceMs: number;
  maxQueuedPerCluster: number;
  maxQueued: number;
  maxCompleted: number;
  maxInputBytes: number;
  maxWaitersPerCluster: number;
}> & { readonly now: () => Date; readonly log: Logger; readonly database: ControlPlaneDatabase };

/** A transaction of the control-plane database, so that a caller can enqueue atomically with its own writes. */
export type QueueTransaction = Transaction<DatabaseSchema>;

export interface ActionQueue {
  /**
   * Queues an action for `cluster`; resolves (with its id) once it is durable. Within
   * `transaction`, the action is written there (durable when it commits) and the caller calls
   * `wake(cluster)` after the commit.
   */
  enqueue(cluster: string, action: EnqueueActionOptions, transaction?: QueueTransaction): Promise<string>;
  /** Wakes the long polls waiting on `cluster` (after a transactional enqueue commits). */
  wake(cluster: string): void;
  /**
   * Fails an action from the control plane's side (e.g. its data plane was lost): a queued or
   * leased action ends FAILED with `error`; a finished one is left as it is. Throws NOT_FOUND.
   */
  fail(actionId: string, error: Omit<ActionErrorRecord, 'message'>): Promise<QueuedAction>;
  /** Every action of a run, oldest first. */
  listRun(runId: string): Promise<QueuedAction[]>;
  /**
   * Calls `listener` after every durable change of actions (events, leases expiring, cancellation,
   * failure). Returns the function that unsubscribes. A listener that throws is logged and ignored.
   */
  subscribe(listener: (changes: readonly ActionChange[]) => void): () => void;
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
  get(actionId: string): Promise<QueuedAction | undefined>;
  /** Every known action (of `cluster`, when given), oldest first. */
  list(cluster?: string): Promise<QueuedAction[]>;
  /** Stops the lease timer and waits for pending writes. */
  close(): Promise<void>;
}

const MAX_ID_LENGTH = 128;
const MAX_NAME_LENGTH = 256;
const MAX_ATTEMPT = 1000;
const MAX_TIMEOUT_MS = 7 * 24 * 60 * 60 * 1000;
const MAX_HISTORY_PER_ACTION = 32;
const KEY_ID = /^[0-9a-f]{32}$/;

/** An action's phases as stored: the phase, when (epoch ms), and the event that moved it there. */
export type ActionHistory = Array<{ phase: ActionPhaseName; at: number; eventId?: string }>;

/** A history as read back or imported, before `encodeActionHistory` has checked it. */
type UncheckedHistory = readonly { readonly phase: string; readonly at: number; readonly eventId?: string }[];

/**
 * The JSON stored in `actions.history`. It is readable (docs/control-plane-database.md), so it is
 * built from the three fields alone, whatever else an entry may carry: a phase of the catalogue, a
 * time, and an event id, the same id `action_events` stores readable. Nothing in it comes from a
 * task's inputs or a user's text.
 */
export function encodeActionHistory(history: UncheckedHistory): string {
  return JSON.stringify(
    history.map(({ phase, at, eventId }) => {
      if (!ACTION_PHASES.includes(phase as ActionPhaseName) || typeof at !== 'number' || !Number.isFinite(at)) throw invalid('history', 'holds an entry that is not a phase and a time');
      return eventId === undefined ? { phase, at } : { phase, at, eventId: checkText('history.eventId', eventId, MAX_ID_LENGTH) };
    }),
  );
}

/**
 * A row's history columns: readable through `encodeActionHistory`, or, for a history it refuses
 * (one sealed before migration 0004 from a file edited by hand, say), sealed as before 0004, which
 * the queue still reads, so that such an action still moves on.
 */
export function actionHistoryColumns(
  history: UncheckedHistory,
  sealer: Pick<ColumnSealer, 'sealJson'>,
  cell: SealedCell,
  options?: SealOptions,
): { history: string | null; history_sealed: Buffer | null } {
  let readable: string | undefined;
  try {
    readable = encodeActionHistory(history);
  } catch {
    readable = undefined;
  }
  return readable === undefined ? { history: null, history_sealed: sealer.sealJson(cell, history, options) } : { history: readable, history_sealed: null };
}

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
  if (typeof options.database?.db !== 'object') throw configError('actionQueue.database', 'is required');
  if (options.now !== undefined && typeof options.now !== 'function') throw configError('actionQueue.now', 'must be a function');
  const settings = freezeConfig({
    leaseMs: configCheck.integer('actionQueue.leaseMs', options.leaseMs ?? 30_000, 100, 86_400_000),
    reconcileGraceMs: configCheck.integer('actionQueue.reconcileGraceMs', options.reconcileGraceMs ?? 5000, 0, 3_600_000),
    maxQueuedPerCluster: configCheck.integer('actionQueue.maxQueuedPerCluster', options.maxQueuedPerCluster ?? 10_000, 1, 10_000_000),
    maxQueued: configCheck.integer('actionQueue.maxQueued', options.maxQueued ?? 100_000, 1, 10_000_000),
    maxCompleted: configCheck.integer('actionQueue.maxCompleted', options.maxCompleted ?? 10_000, 0, 10_000_000),
    maxInputBytes: configCheck.integer('actionQueue.maxInputBytes', options.maxInputBytes ?? 1024 * 1024, 1, 64 * 1024 * 1024),
    maxWaitersPerCluster: configCheck.integer('actionQueue.maxWaitersPerCluster', options.maxWaitersPerCluster ?? 64, 1, 100_000),
  });
  return Object.freeze({ ...settings, now: options.now ?? ((): Date => new Date()), log: options.log, database: options.database });
}

/** The mutable record behind a QueuedAction, as read from its row; times in epoch milliseconds. */
interface ActionEntry {
  actionId: string;
  cluster: string;
  /** Blind index of the cluster name: the row's `cluster_id`. */
  clusterId: string;
  runId: string;
  parentActionId?: string;
  task: { project: string; name: string; version: string };
  attempt: number;
  timeoutMs: number;
  inputsRef?: string;
  bundle?: ActionBundle;
  availableAt?: number;
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
  history: ActionHistory;
  /** Set when `history` or `error` changed, so that only then are they written again. */
  recordsChanged: boolean;
  /** Set when this operation finished the action, so that its cluster's queue depth goes down once. */
  finishedNow: boolean;
}

/** What `spec_sealed` holds: everything about an action that came from a user, fixed at enqueue. */
interface SealedSpec {
  cluster: string;
  task: { project: string; name: string; version: string };
  timeoutMs: number;
  inputsRef?: string;
  bundle?: ActionBundle;
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

/**
 * Error records come from data planes: a code of the catalogue (else INTERNAL), the kind, whether
 * retryable and when. The data plane's message is dropped for the control plane's fixed text: a
 * task's message often quotes its inputs, and the control plane must not keep customer data.
 */
function cleanError(error: Omit<ActionErrorRecord, 'message'> | undefined, fallbackAt: number): ActionErrorRecord | undefined {
  if (error === undefined) return undefined;
  const code = isAirlockErrorCode(error.code) ? error.code : 'INTERNAL';
  const kind: ActionErrorKind = error.kind === 'USER' ? 'USER' : 'SYSTEM';
  const at = typeof error.occurredAtMs === 'number' && Number.isFinite(error.occurredAtMs) ? error.occurredAtMs : fallbackAt;
  return Object.freeze({ code, message: fixedErrorMessage(code, kind), retryable: error.retryable === true, kind, occurredAtMs: at });
}

interface Waiter {
  readonly wake: () => void;
}

type ActionRow = Selectable<ActionsTable>;
type Tx = Transaction<DatabaseSchema>;

const CLUSTER_INDEX = 'cluster';
const optional = (value: number | null): number | undefined => (value === null ? undefined : value);

/** Opens the action queue over the control-plane database. */
export async function openActionQueue(options: ActionQueueOptions): Promise<ActionQueue> {
  const config = resolveActionQueueConfig(options);
  const { log } = config;
  const { db, sealer, rowLocks } = config.database;
  const clock = (): number => config.now().getTime();
  const cell = (row: string, column: 'spec_sealed' | 'history_sealed' | 'error_sealed'): SealedCell => ({ table: 'actions', column, row });
  const clusterId = (cluster: string): string => sealer.blindIndex(CLUSTER_INDEX, cluster);

  /** Sealed inputs, in memory only: DESIGN.md §3 says the control plane never persists task I/O. */
  const inputs = new Map<string, SealedInputs>();
  const waiters = new Map<string, Set<Waiter>>();
  const listeners = new Set<(changes: readonly ActionChange[]) => void>();

  /** Tells the subscribers what changed; called after the change committed. */
  function notify(entries: Iterable<ActionEntry>): void {
    const changes = [...entries].map((entry) => Object.freeze({ actionId: entry.actionId, runId: entry.runId, phase: entry.phase }));
    if (changes.length === 0) return;
    for (const listener of [...listeners]) {
      try {
        listener(changes);
      } catch (error) {
        log.error({ event: 'queue.listener_failed', code: AirlockError.from(error).code }, 'action change listener failed');
      }
    }
  }

  // ---- rows ⇄ entries
  /**
   * An entry for `row`. The sealed parts (task reference, history, error) are opened only when
   * something reads them: leasing needs the task but not the history, recording an outcome needs
   * the history but not the task, so each operation pays only for the values it uses.
   */
  function toEntry(row: ActionRow, knownCluster?: string): ActionEntry {
    let spec: SealedSpec | undefined;
    let history: ActionEntry['history'] | undefined;
    let error: ActionErrorRecord | null | undefined;
    const specOf = (): SealedSpec => (spec ??= sealer.openJson<SealedSpec>(cell(row.action_id, 'spec_sealed'), row.spec_sealed));
    const entry = {
      actionId: row.action_id,
      clusterId: row.cluster_id,
      runId: row.run_id,
      ...(row.parent_action_id === null ? {} : { parentActionId: row.parent_action_id }),
      attempt: row.attempt,
      hasInputs: row.has_inputs !== 0,
      inputsLost: row.inputs_lost !== 0,
      phase: row.phase as ActionPhaseName,
      queuedAt: row.queued_at,
      updatedAt: row.updated_at,
      cancelRequested: row.cancel_requested !== 0,
      deliveries: row.deliveries,
      recordsChanged: false,
      finishedNow: false,
    } as ActionEntry;
    Object.defineProperties(entry, {
      cluster: { enumerable: true, get: () => knownCluster ?? specOf().cluster },
      task: { enumerable: true, get: () => specOf().task },
      timeoutMs: { enumerable: true, get: () => specOf().timeoutMs },
      inputsRef: { enumerable: true, get: () => specOf().inputsRef },
      bundle: { enumerable: true, get: () => specOf().bundle },
      history: {
        enumerable: true,
        // A row without a history has been through QUEUED only, at queued_at. Rows written before
        // migration 0004 hold it sealed, until their next change writes it readable.
        get: () =>
          (history ??=
            row.history !== null
              ? (JSON.parse(row.history) as ActionHistory)
              : row.history_sealed === null
                ? [{ phase: 'QUEUED', at: row.queued_at }]
                : sealer.openJson<ActionHistory>(cell(row.action_id, 'history_sealed'), row.history_sealed)),
      },
      error: {
        enumerable: true,
        get: () => {
          if (error === undefined) error = row.error_sealed === null ? null : sealer.openJson<ActionErrorRecord>(cell(row.action_id, 'error_sealed'), row.error_sealed);
          return error ?? undefined;
        },
        set: (value: ActionErrorRecord | undefined) => {
          error = value ?? null;
        },
      },
    });
    const leasedAt = optional(row.leased_at);
    const leaseExpiresAt = optional(row.lease_expires_at);
    const completedAt = optional(row.completed_at);
    const availableAt = optional(row.available_at);
    if (availableAt !== undefined) entry.availableAt = availableAt;
    if (leasedAt !== undefined) entry.leasedAt = leasedAt;
    if (leaseExpiresAt !== undefined) entry.leaseExpiresAt = leaseExpiresAt;
    if (completedAt !== undefined) entry.completedAt = completedAt;
    return entry;
  }

  /** A finished action's error (and a history that stays sealed) is seldom read again: the sealer need not keep it in memory. */
  const notRemembered: SealOptions = Object.freeze({ remember: false });
  const readLater = (entry: ActionEntry): SealOptions | undefined => (entry.completedAt === undefined ? undefined : notRemembered);

  /** The row's changing columns; the history and error are written again only when they changed. */
  function changes(entry: ActionEntry): Partial<ActionRow> {
    return {
      attempt: entry.attempt,
      phase: entry.phase,
      updated_at: entry.updatedAt,
      leased_at: entry.leasedAt ?? null,
      lease_expires_at: entry.leaseExpiresAt ?? null,
      completed_at: entry.completedAt ?? null,
      cancel_requested: entry.cancelRequested ? 1 : 0,
      deliveries: entry.deliveries,
      inputs_lost: entry.inputsLost ? 1 : 0,
      ...(entry.recordsChanged
        ? {
            ...actionHistoryColumns(entry.history, sealer, cell(entry.actionId, 'history_sealed'), readLater(entry)),
            error_sealed: entry.error === undefined ? null : sealer.sealJson(cell(entry.actionId, 'error_sealed'), entry.error, readLater(entry)),
          }
        : {}),
    };
  }

  async function save(trx: Tx, entries: Iterable<ActionEntry>): Promise<void> {
    const finished = new Map<string, number>();
    for (const entry of entries) {
      await trx.updateTable('actions').set(changes(entry)).where('action_id', '=', entry.actionId).execute();
      if (entry.finishedNow) finished.set(entry.clusterId, (finished.get(entry.clusterId) ?? 0) + 1);
    }
    for (const [id, count] of finished) {
      await trx
        .updateTable('queue_depth')
        .set((eb) => ({ pending: eb('pending', '-', count) }))
        .where('cluster_id', '=', id)
        .execute();
    }
  }

  /** Rows this transaction is about to change; locked on PostgreSQL so two control planes cannot interleave. */
  function selectForChange(trx: Tx) {
    const query = trx.selectFrom('actions').selectAll();
    return rowLocks ? query.forUpdate() : query;
  }

  function snapshot(entry: ActionEntry): QueuedAction {
    const sealed = inputs.get(entry.actionId);
    const error = entry.error;
    const view = {
      actionId: entry.actionId,
      cluster: entry.cluster,
      runId: entry.runId,
      ...(entry.parentActionId === undefined ? {} : { parentActionId: entry.parentActionId }),
      task: Object.freeze({ ...entry.task }),
      attempt: entry.attempt,
      ...(sealed === undefined ? {} : { inputs: sealed }),
      inputsLost: entry.inputsLost,
      timeoutMs: entry.timeoutMs,
      ...(entry.inputsRef === undefined ? {} : { inputsRef: entry.inputsRef }),
      ...(entry.bundle === undefined ? {} : { bundle: Object.freeze({ sha256: entry.bundle.sha256, size: entry.bundle.size }) }),
      ...(entry.availableAt === undefined ? {} : { availableAt: new Date(entry.availableAt) }),
      phase: entry.phase,
      queuedAt: new Date(entry.queuedAt),
      updatedAt: new Date(entry.updatedAt),
      ...(entry.leasedAt === undefined ? {} : { leasedAt: new Date(entry.leasedAt) }),
      ...(entry.leaseExpiresAt === undefined ? {} : { leaseExpiresAt: new Date(entry.leaseExpiresAt) }),
      ...(entry.completedAt === undefined ? {} : { completedAt: new Date(entry.completedAt) }),
      cancelRequested: entry.cancelRequested,
      deliveries: entry.deliveries,
      ...(error === undefined ? {} : { error }),
    } as QueuedAction;
    // Opened on first read: a leased action's history is rarely looked at.
    let history: QueuedAction['history'] | undefined;
    Object.defineProperty(view, 'history', {
      enumerable: true,
      get: () =>
        (history ??= Object.freeze(
          entry.history.map((item) => Object.freeze({ phase: item.phase, at: new Date(item.at), ...(item.eventId === undefined ? {} : { eventId: item.eventId }) })),
        )),
    });
    return Object.freeze(view);
  }

  // ---- transitions (on entries; the caller saves them)
  function pushHistory(entry: ActionEntry, phase: ActionPhaseName, at: number, eventId?: string): void {
    entry.history.push(eventId === undefined ? { phase, at } : { phase, at, eventId });
    if (entry.history.length > MAX_HISTORY_PER_ACTION) entry.history.splice(0, entry.history.length - MAX_HISTORY_PER_ACTION);
    entry.recordsChanged = true;
  }

  /** Moves an action to a terminal phase; `at` is when that happened (the agent's clock for reported events). */
  function complete(entry: ActionEntry, phase: ActionPhaseName, now: number, eventId?: string, error?: ActionErrorRecord, at: number = now): void {
    entry.phase = phase;
    entry.updatedAt = now;
    entry.completedAt = now;
    delete entry.leasedAt;
    delete entry.leaseExpiresAt;
    entry.cancelRequested = false;
    entry.finishedNow = true;
    if (error !== undefined) entry.error = error;
    pushHistory(entry, phase, at, eventId);
    // Ciphertext is dropped as soon as nothing can need it any more.
    inputs.delete(entry.actionId);
  }

  function requeue(entry: ActionEntry, now: number, reason: string): void {
    entry.phase = 'QUEUED';
    entry.updatedAt = now;
    delete entry.leasedAt;
    delete entry.leaseExpiresAt;
    pushHistory(entry, 'QUEUED', now);
    log.warn({ event: 'queue.requeued', actionId: entry.actionId, cluster: entry.cluster, reason }, 'action queued again');
  }

  function wake(cluster: string): void {
    const set = waiters.get(cluster);
    if (set === undefined) return;
    for (const waiter of [...set]) waiter.wake();
  }

  /** Re-queues (or, when cancelled, aborts) leases that were not renewed in time. */
  async function expireLeases(): Promise<void> {
    const now = clock();
    // Cheap when nothing expired: one indexed lookup outside any transaction.
    const due = await db.selectFrom('actions').select('action_id').where('lease_expires_at', '<=', now).where('completed_at', 'is', null).limit(1).execute();
    if (due.length === 0) return;
    const woken = new Set<string>();
    const expired = await db.transaction().execute(async (trx) => {
      const rows = await selectForChange(trx).where('lease_expires_at', '<=', now).where('completed_at', 'is', null).execute();
      const entries = rows.map((row) => toEntry(row));
      for (const entry of entries) {
        if (entry.cancelRequested) {
          // The agent is gone and the user wanted it stopped: nothing left to stop.
          complete(entry, 'ABORTED', now);
        } else {
          requeue(entry, now, 'lease expired');
          woken.add(entry.cluster);
        }
      }
      await save(trx, entries);
      return entries;
    });
    for (const cluster of woken) wake(cluster);
    notify(expired);
  }

  /** Keeps at most `maxCompleted` finished actions, dropping the oldest (a batch at a time). */
  async function pruneCompleted(): Promise<void> {
    for (;;) {
      const surplus = await db
        .selectFrom('actions')
        .select('action_id')
        .where('completed_at', 'is not', null)
        .orderBy('completed_at', 'desc')
        .orderBy('action_id', 'desc')
        .limit(500)
        .offset(config.maxCompleted)
        .execute();
      if (surplus.length === 0) return;
      await db
        .deleteFrom('actions')
        .where(
          'action_id',
          'in',
          surplus.map((row) => row.action_id),
        )
        .execute();
    }
  }

  // ---- start: actions whose sealed inputs were lost can no longer run as submitted.
  {
    const now = clock();
    let lost = 0;
    await db.transaction().execute(async (trx) => {
      // Leases are not charged for the control plane's own downtime: agents could not renew them.
      await trx
        .updateTable('actions')
        .set({ lease_expires_at: now + config.leaseMs })
        .where('completed_at', 'is', null)
        .where('lease_expires_at', '<', now + config.leaseMs)
        .execute();
      const rows = await selectForChange(trx).where('completed_at', 'is', null).where('has_inputs', '=', 1).execute();
      const entries = rows.map((row) => toEntry(row));
      for (const entry of entries) {
        entry.inputsLost = true;
        lost += 1;
        // Fail it, retryably, rather than hand the data plane an action without its inputs.
        complete(entry, 'FAILED', now, undefined, {
          code: 'UNAVAILABLE',
          message: 'The sealed inputs were held in memory only and a control-plane restart discarded them; submit the run again',
          retryable: true,
          kind: 'SYSTEM',
          occurredAtMs: now,
        });
      }
      await save(trx, entries);
    });
    if (lost > 0) log.warn({ event: 'queue.inputs_lost', actions: lost }, 'actions failed: their sealed inputs did not survive the restart');
  }

  let sweeping = false;
  const sweeper = setInterval(
    () => {
      if (sweeping) return;
      sweeping = true;
      expireLeases()
        .then(pruneCompleted)
        .catch((error: unknown) => log.error({ event: 'queue.sweep_failed', code: AirlockError.from(error).code }, 'action queue sweep failed'))
        .finally(() => {
          sweeping = false;
        });
    },
    Math.max(50, Math.min(1000, Math.floor(config.leaseMs / 4))),
  );
  sweeper.unref();

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

  /** Unfinished actions in all, and of cluster `id`, from the queue_depth counters. */
  async function countPending(trx: Tx, id: string): Promise<{ all: number; cluster: number }> {
    const rows = await trx.selectFrom('queue_depth').select(['cluster_id', 'pending']).execute();
    let all = 0;
    let cluster = 0;
    for (const row of rows) {
      all += row.pending;
      if (row.cluster_id === id) cluster = row.pending;
    }
    return { all, cluster };
  }

  return {
    async enqueue(clusterName, action, transaction) {
      checkOpen();
      const cluster = checkCluster(clusterName);
      if (typeof action !== 'object' || action === null) throw invalid('action', 'is required');
      const runId = checkText('runId', action.runId, MAX_ID_LENGTH);
      const parentActionId = action.parentActionId === undefined ? undefined : checkText('parentActionId', action.parentActionId, MAX_ID_LENGTH);
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
      const inputsRef = action.inputsRef === undefined || action.inputsRef === '' ? undefined : checkText('inputsRef', action.inputsRef, 512);
      let bundle: ActionBundle | undefined;
      if (action.bundle !== undefined) {
        if (typeof action.bundle.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(action.bundle.sha256)) throw invalid('bundle.sha256', 'must be 64 lowercase hex characters');
        bundle = { sha256: action.bundle.sha256, size: checkInteger('bundle.size', action.bundle.size, 0, Number.MAX_SAFE_INTEGER) };
      }
      if (action.availableAt !== undefined && !(action.availableAt instanceof Date && Number.isFinite(action.availableAt.getTime()))) throw invalid('availableAt', 'must be a valid Date');
      const now = clock();
      const availableAt = action.availableAt === undefined || action.availableAt.getTime() <= now ? null : action.availableAt.getTime();
      // Time-ordered, so that actions queued within one millisecond still lease in FIFO order.
      const actionId = uuidV7();
      const id = clusterId(cluster);
      const spec: SealedSpec = { cluster, task, timeoutMs, ...(inputsRef === undefined ? {} : { inputsRef }), ...(bundle === undefined ? {} : { bundle }) };
      // Sealed before the transaction, not inside it: a seal run between the transaction's statements
      // costs about half again as much (OpenSSL's code and tables are no longer in the CPU's caches
      // after SQLite's work), and callers resuming together seal one after another instead.
      // docs/control-plane-database.md has the measurements.
      const specSealed = sealer.sealJson(cell(actionId, 'spec_sealed'), spec);
      if (sealed !== undefined) inputs.set(actionId, sealed);
      const write = async (trx: Tx): Promise<void> => {
          const pending = await countPending(trx, id);
          if (pending.cluster >= config.maxQueuedPerCluster || pending.all >= config.maxQueued) {
            const limit = pending.cluster >= config.maxQueuedPerCluster ? config.maxQueuedPerCluster : config.maxQueued;
            log.warn({ event: 'queue.full', cluster, limit }, 'action queue full');
            throw new AirlockError('UNAVAILABLE', `The action queue is full (${limit} unfinished actions); try again later`, { details: { reason: 'queue-full', cluster, limit } });
          }
          await trx
            .insertInto('actions')
            .values({
              action_id: actionId,
              cluster_id: id,
              run_id: runId,
              parent_action_id: parentActionId ?? null,
              spec_sealed: specSealed,
              attempt,
              phase: 'QUEUED',
              queued_at: now,
              updated_at: now,
              leased_at: null,
              lease_expires_at: null,
              completed_at: null,
              cancel_requested: 0,
              deliveries: 0,
              has_inputs: sealed === undefined ? 0 : 1,
              inputs_lost: 0,
              error_sealed: null,
              history: null,
              history_sealed: null,
              available_at: availableAt,
            })
            .execute();
          await trx
            .insertInto('queue_depth')
            .values({ cluster_id: id, pending: 1 })
            .onConflict((conflict) => conflict.column('cluster_id').doUpdateSet((eb) => ({ pending: eb('queue_depth.pending', '+', 1) })))
            .execute();
      };
      try {
        if (transaction === undefined) await db.transaction().execute(write);
        else await write(transaction);
      } catch (error) {
        inputs.delete(actionId);
        throw error;
      }
      // Names of projects and tasks are customer-derived: only ids are logged.
      log.info({ event: 'queue.enqueued', actionId, cluster, runId, attempt, ...(availableAt === null ? {} : { availableAt: new Date(availableAt).toISOString() }) }, 'action queued');
      if (transaction === undefined) wake(cluster);
      return actionId;
    },

    async lease(clusterName, max, waitMs, signal) {
      checkOpen();
      const cluster = checkCluster(clusterName);
      const limit = checkInteger('max', max, 1, 1000);
      const wait = checkInteger('waitMs', waitMs, 0, 3_600_000);
      const deadline = Date.now() + wait;
      const id = clusterId(cluster);
      for (;;) {
        if (closed || signal?.aborted === true) return [];
        await expireLeases();
        const now = clock();
        const taken = await db.transaction().execute(async (trx) => {
          let query = trx
            .selectFrom('actions')
            .selectAll()
            .where('cluster_id', '=', id)
            .where('phase', '=', 'QUEUED')
            .where('leased_at', 'is', null)
            .where('cancel_requested', '=', 0)
            .where((eb) => eb.or([eb('available_at', 'is', null), eb('available_at', '<=', now)]))
            .orderBy('queued_at')
            .orderBy('action_id')
            .limit(limit);
          // Two control planes polling for one cluster each take different actions.
          if (rowLocks) query = query.forUpdate().skipLocked();
          const rows = await query.execute();
          if (rows.length === 0) return [];
          await trx
            .updateTable('actions')
            .set((eb) => ({ leased_at: now, lease_expires_at: now + config.leaseMs, updated_at: now, deliveries: eb('deliveries', '+', 1) }))
            .where(
              'action_id',
              'in',
              rows.map((row) => row.action_id),
            )
            .execute();
          return rows.map((row) => ({ ...row, leased_at: now, lease_expires_at: now + config.leaseMs, updated_at: now, deliveries: row.deliveries + 1 }));
        });
        if (taken.length > 0) {
          const entries = taken.map((row) => toEntry(row, cluster));
          log.info({ event: 'queue.leased', cluster, actionIds: entries.map((entry) => entry.actionId) }, 'actions leased');
          return entries.map(snapshot);
        }
        const remaining = deadline - Date.now();
        if (remaining <= 0 || (waiters.get(cluster)?.size ?? 0) >= config.maxWaitersPerCluster) return [];
        // A retry waiting out its backoff wakes the poll when it becomes available.
        const next = await db
          .selectFrom('actions')
          .select((eb) => eb.fn.min('available_at').as('next'))
          .where('cluster_id', '=', id)
          .where('phase', '=', 'QUEUED')
          .where('leased_at', 'is', null)
          .where('available_at', '>', now)
          .executeTakeFirst();
        const untilNext = next?.next === null || next?.next === undefined ? remaining : Math.max(10, Number(next.next) - now);
        await waitForWork(cluster, Math.min(remaining, untilNext), signal);
      }
    },

    async renew(clusterName, actionIds) {
      checkOpen();
      const cluster = checkCluster(clusterName);
      await expireLeases();
      const now = clock();
      const id = clusterId(cluster);
      const ids = [...new Set(actionIds)];
      if (ids.length === 0) return [];
      return db.transaction().execute(async (trx) => {
        const rows = await selectForChange(trx).where('action_id', 'in', ids).execute();
        const held = rows.filter((row) => row.cluster_id === id && row.leased_at !== null && row.completed_at === null).map((row) => row.action_id);
        if (held.length > 0) await trx.updateTable('actions').set({ lease_expires_at: now + config.leaseMs }).where('action_id', 'in', held).execute();
        return actionIds.filter((actionId) => !held.includes(actionId));
      });
    },

    async reconcile(clusterName, inFlightIds) {
      checkOpen();
      const cluster = checkCluster(clusterName);
      await expireLeases();
      const now = clock();
      const id = clusterId(cluster);
      const listed = new Set(inFlightIds);
      const abortActionIds: string[] = [];
      const requeuedActionIds: string[] = [];
      const reconciled = await db.transaction().execute(async (trx) => {
        const changed = new Map<string, ActionEntry>();
        const listedRows = listed.size === 0 ? [] : await selectForChange(trx).where('action_id', 'in', [...listed]).execute();
        const found = new Map(listedRows.map((row) => [row.action_id, row]));
        for (const actionId of listed) {
          const row = found.get(actionId);
          if (row === undefined || row.cluster_id !== id || row.completed_at !== null || row.cancel_requested !== 0) {
            abortActionIds.push(actionId);
            continue;
          }
          const entry = toEntry(row);
          if (entry.leasedAt === undefined) {
            // Re-queued while the agent was out of touch, but it kept running it: give it back
            // rather than run the same attempt twice.
            entry.leasedAt = now;
            entry.deliveries += 1;
            log.info({ event: 'queue.readopted', actionId, cluster }, 'queued action re-adopted by its running agent');
          }
          entry.leaseExpiresAt = now + config.leaseMs;
          changed.set(actionId, entry);
        }
        const leasedRows = await selectForChange(trx).where('cluster_id', '=', id).where('leased_at', 'is not', null).where('completed_at', 'is', null).execute();
        for (const row of leasedRows) {
          if (listed.has(row.action_id)) continue;
          const entry = toEntry(row);
          if (entry.cancelRequested) {
            complete(entry, 'ABORTED', now);
            changed.set(entry.actionId, entry);
            continue;
          }
          if ((entry.leasedAt ?? now) <= now - config.reconcileGraceMs) {
            requeue(entry, now, 'agent no longer has it');
            requeuedActionIds.push(entry.actionId);
            changed.set(entry.actionId, entry);
          }
        }
        await save(trx, changed.values());
        return [...changed.values()].filter((entry) => entry.finishedNow || requeuedActionIds.includes(entry.actionId));
      });
      if (requeuedActionIds.length > 0) wake(cluster);
      notify(reconciled);
      return { abortActionIds, requeuedActionIds };
    },

    async record(clusterName, events) {
      checkOpen();
      const cluster = checkCluster(clusterName);
      const checked = events.map((event) => {
        const eventId = checkText('event.eventId', event.eventId, MAX_ID_LENGTH);
        const actionId = checkText('event.actionId', event.actionId, MAX_ID_LENGTH);
        if (!ACTION_PHASES.includes(event.phase) || event.phase === 'QUEUED') throw invalid('event.phase', 'must be a phase after QUEUED');
        return { event, eventId, actionId };
      });
      if (checked.length === 0) return 0;
      await expireLeases();
      const now = clock();
      const id = clusterId(cluster);
      const completed: ActionEntry[] = [];
      const touched: ActionEntry[] = [];
      const applied = await db.transaction().execute(async (trx) => {
        const rows = await selectForChange(trx).where('action_id', 'in', [...new Set(checked.map((item) => item.actionId))]).execute();
        const entries = new Map(rows.map((row) => [row.action_id, row.cluster_id === id ? toEntry(row, cluster) : undefined]));
        const seenRows =
          entries.size === 0
            ? []
            : await trx
                .selectFrom('action_events')
                .select(['action_id', 'event_id'])
                .where('action_id', 'in', [...entries.keys()])
                .where(
                  'event_id',
                  'in',
                  checked.map((item) => item.eventId),
                )
                .execute();
        const seen = new Set(seenRows.map((row) => `${row.action_id}\n${row.event_id}`));
        const changed = new Map<string, ActionEntry>();
        let count = 0;
        for (const { event, eventId, actionId } of checked) {
          if (!entries.has(actionId)) {
            log.debug({ event: 'queue.event_ignored', cluster, actionId, reason: 'unknown action' }, 'event ignored');
            continue;
          }
          const entry = entries.get(actionId);
          if (entry === undefined) {
            log.warn({ event: 'queue.event_ignored', cluster, actionId, reason: 'another cluster' }, 'event for another cluster ignored');
            continue;
          }
          const key = `${actionId}\n${eventId}`;
          if (seen.has(key)) continue;
          seen.add(key);
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
            complete(entry, event.phase, now, eventId, cleanError(event.error, at), at);
            completed.push(entry);
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
          // Only applied events are remembered: an ignored one would be ignored again anyway, and
          // each applied one moves its action forward, which bounds how many an action collects.
          await trx.insertInto('action_events').values({ action_id: actionId, event_id: eventId, received_at: now }).execute();
          changed.set(actionId, entry);
          count += 1;
        }
        await save(trx, changed.values());
        touched.push(...changed.values());
        return count;
      });
      notify(touched);
      for (const entry of completed) log.info({ event: 'queue.completed', actionId: entry.actionId, cluster, phase: entry.phase, errorCode: entry.error?.code }, 'action finished');
      return applied;
    },

    async cancel(actionId) {
      checkOpen();
      await expireLeases();
      const result = await db.transaction().execute(async (trx) => {
        const row = typeof actionId === 'string' ? await selectForChange(trx).where('action_id', '=', actionId).executeTakeFirst() : undefined;
        if (row === undefined) throw new AirlockError('NOT_FOUND', 'No such action', { details: { actionId: String(actionId).slice(0, MAX_ID_LENGTH) } });
        const entry = toEntry(row);
        if (isTerminalActionPhase(entry.phase)) return { entry, changed: false };
        const now = clock();
        if (entry.leasedAt === undefined) {
          complete(entry, 'ABORTED', now);
        } else {
          entry.cancelRequested = true;
          entry.updatedAt = now;
        }
        await save(trx, [entry]);
        return { entry, changed: true };
      });
      if (result.changed) {
        log.info({ event: 'queue.cancelled', actionId, cluster: result.entry.cluster, phase: result.entry.phase }, 'action cancelled');
        notify([result.entry]);
      }
      return snapshot(result.entry);
    },

    async fail(actionId, error) {
      checkOpen();
      const result = await db.transaction().execute(async (trx) => {
        const row = typeof actionId === 'string' ? await selectForChange(trx).where('action_id', '=', actionId).executeTakeFirst() : undefined;
        if (row === undefined) throw new AirlockError('NOT_FOUND', 'No such action', { details: { actionId: String(actionId).slice(0, MAX_ID_LENGTH) } });
        const entry = toEntry(row);
        if (isTerminalActionPhase(entry.phase)) return { entry, changed: false };
        const now = clock();
        complete(entry, 'FAILED', now, undefined, cleanError(error, now));
        await save(trx, [entry]);
        return { entry, changed: true };
      });
      if (result.changed) {
        log.warn({ event: 'queue.failed_by_control_plane', actionId, cluster: result.entry.cluster, errorCode: result.entry.error?.code }, 'action failed by the control plane');
        notify([result.entry]);
      }
      return snapshot(result.entry);
    },

    async listRun(runId) {
      const rows = typeof runId === 'string' ? await db.selectFrom('actions').selectAll().where('run_id', '=', runId).orderBy('queued_at').orderBy('action_id').execute() : [];
      return rows.map((row) => snapshot(toEntry(row)));
    },

    wake(cluster) {
      wake(cluster);
    },

    subscribe(listener) {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },

    async get(actionId) {
      await expireLeases();
      const row = typeof actionId === 'string' ? await db.selectFrom('actions').selectAll().where('action_id', '=', actionId).executeTakeFirst() : undefined;
      return row === undefined ? undefined : snapshot(toEntry(row));
    },

    async list(cluster) {
      await expireLeases();
      let query = db.selectFrom('actions').selectAll().orderBy('queued_at').orderBy('action_id');
      if (cluster !== undefined) query = query.where('cluster_id', '=', clusterId(cluster));
      return (await query.execute()).map((row) => snapshot(toEntry(row)));
    },

    async close() {
      if (closed) return;
      closed = true;
      clearInterval(sweeper);
      for (const set of waiters.values()) for (const waiter of [...set]) waiter.wake();
      // Let a sweep that is under way finish before the database closes under it.
      while (sweeping) await new Promise((resolve) => setTimeout(resolve, 5));
    },
  };
}
