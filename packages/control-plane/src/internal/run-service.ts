// Tasks and runs (docs/runs.md): task versions, runs and their attempts driven by action events, retries with backoff, the run lease, idempotent submission, watchers, and the tunnel calls to the data plane.
import { createClient, type Client, type Transport } from '@connectrpc/connect';
import type { Selectable } from 'kysely';
import { AirlockError, configCheck, configError, ERROR_CODES, freezeConfig, isAirlockErrorCode, uuidV7, type DeepReadonly, type Logger } from '@airlock/common';
import { isValidClusterName } from '@airlock/pki';
import { fromConnectError, PresignService, SealedIoService } from '@airlock/protocol';
import { retryDelayMs, shouldRetry, taskSpecDigest, taskVersion, type ResolvedRetryPolicy, type TaskSpec } from '@airlock/sdk';
import {
  fixedErrorMessage,
  hasControlCharacter,
  isTerminalActionPhase,
  ACTION_PHASES,
  type ActionBundle,
  type ActionErrorKind,
  type ActionPhaseName,
  type ActionQueue,
  type QueuedAction,
} from './action-queue.js';
import type { ClusterRecord } from './cluster-registry.js';
import type { ControlPlaneDatabase } from './db/database.js';
import type { RunsTable, TasksTable } from './db/schema.js';

/** The clusters a run may go to: the registry (`openClusterRegistry`) is one. */
export interface RunClusterSource {
  cluster(name: string): Promise<ClusterRecord | undefined>;
  clusters(): Promise<ClusterRecord[]>;
}

/** The tunnel endpoint (`startTunnelEndpoint`) as the run service uses it. */
export interface RunTunnel {
  /** The cluster's live tunnel, or undefined when it has none. */
  connection(cluster: string): unknown;
  transportFor(cluster: string): Transport;
}

export interface RunServiceOptions {
  readonly database: ControlPlaneDatabase;
  /** The queue the runs' actions go through; the service follows its changes. */
  readonly queue: ActionQueue;
  readonly clusters: RunClusterSource;
  /** Calls to the data planes (PutInputs, GetOutputs, PresignBundleUpload). @default none: those calls fail UNAVAILABLE */
  readonly tunnel?: RunTunnel;
  /** When a cluster was last heard from (its last heartbeat); undefined when not since this control plane started. @default never */
  readonly clusterLastSeen?: (cluster: string) => Date | undefined;
  readonly log: Logger;
  /** Clock (tests). @default the current time */
  readonly now?: () => Date;
  /** A run whose cluster is not heard from for this long, while its action waits in the queue, ends FAILED (DATA_PLANE_LOST), in milliseconds. @default 120000 */
  readonly runLeaseMs?: number;
  /** How long an idempotency key returns its first run, in milliseconds. @default 86400000 (24 h) */
  readonly idempotencyTtlMs?: number;
  /** Largest sealed inputs, in bytes. @default 1048576 (1 MiB) */
  readonly maxInputBytes?: number;
  /** Largest task spec JSON, in bytes. @default 262144 (256 KiB) */
  readonly maxSpecBytes?: number;
  /** Most WatchRun streams open at once; more fail UNAVAILABLE. @default 1000 */
  readonly maxWatchers?: number;
  /** Deadline of each call to a data plane over the tunnel, in milliseconds. @default 30000 */
  readonly tunnelTimeoutMs?: number;
  /** How often the run lease and idempotency keys are checked, in milliseconds. @default min(5000, runLeaseMs / 4) */
  readonly sweepIntervalMs?: number;
  /** Source of the retry jitter (tests fix it). @default Math.random */
  readonly random?: () => number;
}

export type ResolvedRunServiceConfig = DeepReadonly<{
  runLeaseMs: number;
  idempotencyTtlMs: number;
  maxInputBytes: number;
  maxSpecBytes: number;
  maxWatchers: number;
  tunnelTimeoutMs: number;
  sweepIntervalMs: number;
}>;

export const DEFAULT_RUN_LEASE_MS = 2 * 60 * 1000;
export const DEFAULT_IDEMPOTENCY_TTL_MS = 24 * 60 * 60 * 1000;
export const DEFAULT_TASK_PAGE_SIZE = 100;
export const DEFAULT_RUN_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;

export function resolveRunServiceConfig(options: RunServiceOptions): ResolvedRunServiceConfig {
  if (typeof options !== 'object' || options === null) throw configError('runs', 'options are required');
  if (typeof options.database?.db !== 'object') throw configError('runs.database', 'is required');
  if (typeof options.queue?.subscribe !== 'function') throw configError('runs.queue', 'must be an ActionQueue');
  if (typeof options.clusters?.clusters !== 'function') throw configError('runs.clusters', 'must be a cluster source (the registry)');
  if (typeof options.log !== 'object' || options.log === null) throw configError('runs.log', 'is required');
  const runLeaseMs = configCheck.integer('runs.runLeaseMs', options.runLeaseMs ?? DEFAULT_RUN_LEASE_MS, 100, 7 * 86_400_000);
  return freezeConfig({
    runLeaseMs,
    idempotencyTtlMs: configCheck.integer('runs.idempotencyTtlMs', options.idempotencyTtlMs ?? DEFAULT_IDEMPOTENCY_TTL_MS, 1000, 30 * 86_400_000),
    maxInputBytes: configCheck.integer('runs.maxInputBytes', options.maxInputBytes ?? 1024 * 1024, 1, 64 * 1024 * 1024),
    maxSpecBytes: configCheck.integer('runs.maxSpecBytes', options.maxSpecBytes ?? 256 * 1024, 1024, 16 * 1024 * 1024),
    maxWatchers: configCheck.integer('runs.maxWatchers', options.maxWatchers ?? 1000, 1, 1_000_000),
    tunnelTimeoutMs: configCheck.integer('runs.tunnelTimeoutMs', options.tunnelTimeoutMs ?? 30_000, 100, 600_000),
    sweepIntervalMs: configCheck.integer('runs.sweepIntervalMs', options.sweepIntervalMs ?? Math.max(25, Math.min(5000, Math.floor(runLeaseMs / 4))), 10, 3_600_000),
  });
}

/** A registered task version. */
export interface TaskRecord {
  readonly project: string;
  readonly name: string;
  readonly version: string;
  /** The spec JSON exactly as first registered. */
  readonly specJson: Uint8Array;
  readonly bundle: ActionBundle;
  readonly createdAt: Date;
  readonly createdBy: string;
}

/** An error record as the control plane keeps it: no data-plane text. */
export interface RunErrorRecord {
  readonly code: string;
  readonly kind: ActionErrorKind;
  readonly retryable: boolean;
  readonly occurredAt: Date;
  /** The control plane's fixed text for the code. */
  readonly message: string;
}

export interface RunPhaseEntry {
  readonly phase: ActionPhaseName;
  readonly at: Date;
}

export interface RunRecord {
  readonly runId: string;
  readonly project: string;
  readonly taskName: string;
  readonly taskVersion: string;
  readonly cluster: string;
  readonly phase: ActionPhaseName;
  readonly phases: readonly RunPhaseEntry[];
  readonly error?: RunErrorRecord;
  readonly attempts: number;
  readonly actionId: string;
  readonly createdAt: Date;
  readonly completedAt?: Date;
  readonly createdBy: string;
  readonly abortRequested: boolean;
}

export interface RunActionRecord {
  readonly actionId: string;
  readonly parentActionId?: string;
  readonly project: string;
  readonly taskName: string;
  readonly taskVersion: string;
  readonly attempt: number;
  readonly phase: ActionPhaseName;
  readonly phases: readonly RunPhaseEntry[];
  readonly error?: RunErrorRecord;
}

/** Sealed inputs as the proto's SealedPayload. */
export interface RunSealedPayload {
  readonly sealed: Uint8Array;
  readonly keyId: string;
}

export interface RegisterTaskRequest {
  readonly project: string;
  readonly specJson: Uint8Array;
  readonly bundle: { readonly sha256: string; readonly size: number | bigint } | undefined;
  readonly createdBy: string;
}

export interface CreateRunRequest {
  readonly project: string;
  readonly taskName: string;
  /** Empty: the newest. */
  readonly taskVersion: string;
  /** Empty: the only active cluster. */
  readonly cluster: string;
  readonly inputs?: RunSealedPayload | undefined;
  /** Empty: none. */
  readonly idempotencyKey: string;
  readonly createdBy: string;
}

export interface UploadLocation {
  readonly alreadyStored: boolean;
  /** Secret-bearing (signed): never logged, never stored. */
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly expiresAt?: Date;
}

export interface RunService {
  registerTask(request: RegisterTaskRequest): Promise<{ task: TaskRecord; created: boolean }>;
  getTask(project: string, name: string, version: string): Promise<TaskRecord>;
  listTasks(project: string, pageSize: number, pageToken: string): Promise<{ tasks: TaskRecord[]; nextPageToken: string }>;
  createUploadLocation(project: string, cluster: string, bundle: RegisterTaskRequest['bundle']): Promise<UploadLocation>;
  createRun(request: CreateRunRequest): Promise<{ run: RunRecord; deduplicated: boolean }>;
  getRun(project: string, runId: string): Promise<RunRecord>;
  listRuns(project: string, filter: { taskName: string; phase: ActionPhaseName | undefined; pageSize: number; pageToken: string }): Promise<{ runs: RunRecord[]; nextPageToken: string }>;
  /** The run now, then at every change, until it is terminal or `signal` aborts. */
  watchRun(project: string, runId: string, signal: AbortSignal): AsyncIterable<RunRecord>;
  abortRun(project: string, runId: string): Promise<RunRecord>;
  listActions(project: string, runId: string): Promise<RunActionRecord[]>;
  getRunOutputs(project: string, runId: string, recipientPublicKey: Uint8Array): Promise<{ result: RunSealedPayload; actionId: string }>;
  /** Ends runs whose cluster went silent (DATA_PLANE_LOST) and drops expired idempotency keys; runs on a timer too. */
  sweep(): Promise<void>;
  close(): Promise<void>;
}

const PROJECT_INDEX = 'project';
const TASK_INDEX = 'task';
const CLUSTER_INDEX = 'cluster';
const IDEMPOTENCY_INDEX = 'idempotency-key';
const TASK_NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,127}$/;
const HEX64 = /^[0-9a-f]{64}$/;
const KEY_ID = /^[0-9a-f]{32}$/;
const RUN_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const MAX_IDEMPOTENCY_KEY = 128;
const MAX_DURATION_MS = 7 * 24 * 60 * 60 * 1000;
const MAX_PHASES = 256;
const PAGE_TOKEN_VERSION = 1;
/** A watcher re-reads its run this often even without a notification (a change made by another control plane). */
const WATCH_FALLBACK_MS = 5000;
/** How long CreateRun waits for another control plane that holds the same idempotency key to finish. */
const IDEMPOTENCY_WAIT_MS = 30_000;
/** A key reserved this long ago whose run still does not exist was left by a control plane that stopped mid-submission. */
const ABANDONED_RESERVATION_MS = 2 * IDEMPOTENCY_WAIT_MS + 60_000;

function invalid(argument: string, problem: string, extra: Record<string, string> = {}): AirlockError {
  return new AirlockError('INVALID_ARGUMENT', `${argument} ${problem}`, { details: { argument, ...extra } });
}

export function checkProject(project: unknown, argument = 'project'): string {
  if (typeof project !== 'string' || !isValidClusterName(project)) throw invalid(argument, 'must be 1 to 63 lower-case letters, digits or inner hyphens');
  return project;
}

function checkTaskName(name: unknown, argument: string): string {
  if (typeof name !== 'string' || !TASK_NAME.test(name)) throw invalid(argument, 'must start with a letter and hold at most 128 letters, digits, "_", "-" or "."');
  return name;
}

function checkVersion(version: unknown, argument: string): string {
  if (typeof version !== 'string' || !HEX64.test(version)) throw invalid(argument, 'must be 64 lowercase hex characters');
  return version;
}

function checkRunId(runId: unknown, argument = 'run_id'): string {
  if (typeof runId !== 'string' || !RUN_ID.test(runId)) throw invalid(argument, 'must be a run id (a UUID in lowercase)');
  return runId;
}

function checkBundle(bundle: RegisterTaskRequest['bundle'], argument = 'bundle'): ActionBundle {
  if (bundle === undefined || bundle === null) throw invalid(argument, 'is required');
  if (typeof bundle.sha256 !== 'string' || !HEX64.test(bundle.sha256)) throw invalid(`${argument}.sha256`, 'must be 64 lowercase hex characters');
  const size = Number(bundle.size);
  if (!Number.isSafeInteger(size) || size < 1) throw invalid(`${argument}.size`, 'must be a positive byte count');
  return { sha256: bundle.sha256, size };
}

function checkPageSize(pageSize: number, fallback: number): number {
  if (!Number.isSafeInteger(pageSize) || pageSize < 0) throw invalid('page_size', 'must not be negative');
  return pageSize === 0 ? fallback : Math.min(pageSize, MAX_PAGE_SIZE);
}

function encodePageToken(after: string): string {
  return Buffer.from(JSON.stringify({ v: PAGE_TOKEN_VERSION, after }), 'utf8').toString('base64url');
}

function decodePageToken(token: string, check: (after: unknown) => boolean, rpc: string): string | undefined {
  if (token === '') return undefined;
  const bad = (): AirlockError => invalid('page_token', `is not a token from a previous ${rpc} response`);
  if (typeof token !== 'string' || token.length > 1024 || !/^[A-Za-z0-9_-]+$/.test(token)) throw bad();
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
  } catch {
    throw bad();
  }
  const { v, after } = (parsed ?? {}) as { v?: unknown; after?: unknown };
  if (v !== PAGE_TOKEN_VERSION || !check(after)) throw bad();
  return after as string;
}

/** The parts of a TaskSpec the control plane relies on (retries and timeout), checked so a run never trips over them later. */
function parseSpec(bytes: Uint8Array, maxBytes: number): TaskSpec {
  if (!(bytes instanceof Uint8Array) || bytes.length === 0) throw invalid('spec_json', 'is required');
  if (bytes.length > maxBytes) throw new AirlockError('PAYLOAD_TOO_LARGE', `spec_json is limited to ${maxBytes} bytes`, { details: { argument: 'spec_json', limit: maxBytes } });
  let spec: unknown;
  try {
    spec = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    throw invalid('spec_json', 'must be UTF-8 JSON');
  }
  const field = (name: string, problem: string): AirlockError => invalid('spec_json', `${name} ${problem}`, { field: name });
  if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) throw invalid('spec_json', 'must be a JSON object (the SDK TaskSpec)');
  const s = spec as Record<string, unknown>;
  if (s.specVersion !== 1) throw field('specVersion', 'must be 1');
  checkTaskName(s.name, 'spec_json.name');
  if (s.kind !== 'function' && s.kind !== 'command') throw field('kind', 'must be "function" or "command"');
  if (typeof s.inputSchema !== 'object' || s.inputSchema === null) throw field('inputSchema', 'must be a JSON Schema object');
  if (typeof s.outputSchema !== 'object' || s.outputSchema === null) throw field('outputSchema', 'must be a JSON Schema object');
  const timeoutMs = s.timeoutMs;
  if (typeof timeoutMs !== 'number' || !Number.isSafeInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > MAX_DURATION_MS) throw field('timeoutMs', 'must be whole milliseconds, at most 7 days');
  const retries = s.retries as Partial<ResolvedRetryPolicy> | undefined;
  if (typeof retries !== 'object' || retries === null) throw field('retries', 'must be the resolved retry policy');
  const { limit, initialDelayMs, maxDelayMs, factor, jitter } = retries;
  if (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 0 || limit > 100) throw field('retries.limit', 'must be an integer from 0 to 100');
  for (const [name, value] of [['retries.initialDelayMs', initialDelayMs], ['retries.maxDelayMs', maxDelayMs]] as const) {
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > MAX_DURATION_MS) throw field(name, 'must be whole milliseconds, at most 7 days');
  }
  if ((maxDelayMs as number) < (initialDelayMs as number)) throw field('retries.maxDelayMs', 'must not be less than retries.initialDelayMs');
  if (typeof factor !== 'number' || !(factor >= 1 && factor <= 10)) throw field('retries.factor', 'must be from 1 to 10');
  if (typeof jitter !== 'number' || !(jitter >= 0 && jitter <= 1)) throw field('retries.jitter', 'must be from 0 to 1');
  return spec as TaskSpec;
}

/** What a run's `spec_sealed` holds: everything about it that came from a user. */
interface RunSpec {
  project: string;
  taskName: string;
  taskVersion: string;
  cluster: string;
  inputsRef?: string;
  bundle: ActionBundle;
  timeoutMs: number;
  retries: ResolvedRetryPolicy;
}

interface StoredPhase {
  phase: ActionPhaseName;
  at: number;
  attempt: number;
}

interface StoredError {
  code: string;
  kind: ActionErrorKind;
  retryable: boolean;
  occurredAtMs: number;
}

type RunRow = Selectable<RunsTable>;
type TaskRow = Selectable<TasksTable>;

/** Opens the run service: it follows the queue's changes from now on and reconciles unfinished runs once. */
export async function openRunService(options: RunServiceOptions): Promise<RunService> {
  const config = resolveRunServiceConfig(options);
  const { queue, clusters, tunnel, log } = options;
  const { db, sealer, rowLocks } = options.database;
  const clock = (): number => (options.now ?? ((): Date => new Date()))().getTime();
  const random = options.random ?? Math.random;
  const startedAt = clock();

  const projectId = (project: string): string => sealer.blindIndex(PROJECT_INDEX, project);
  const taskId = (project: string, name: string): string => sealer.blindIndex(TASK_INDEX, `${project}\n${name}`);
  const clusterId = (cluster: string): string => sealer.blindIndex(CLUSTER_INDEX, cluster);
  const taskCell = (row: { task_id: string; version: string }, column: string) => ({ table: 'tasks', column, row: `${row.task_id}/${row.version}` });
  const runCell = (runId: string, column: string) => ({ table: 'runs', column, row: runId });

  // ---- tasks
  function toTask(row: TaskRow): TaskRecord {
    const names = sealer.openJson<{ project: string; name: string }>(taskCell(row, 'name_sealed'), row.name_sealed);
    return Object.freeze({
      project: names.project,
      name: names.name,
      version: row.version,
      specJson: new Uint8Array(sealer.open(taskCell(row, 'spec_sealed'), row.spec_sealed)),
      bundle: Object.freeze({ sha256: row.bundle_sha256, size: Number(row.bundle_size) }),
      createdAt: new Date(Number(row.created_at)),
      createdBy: sealer.openText(taskCell(row, 'created_by_sealed'), row.created_by_sealed),
    });
  }

  async function findTask(project: string, name: string, version: string, argument: string): Promise<TaskRow> {
    let query = db.selectFrom('tasks').selectAll().where('task_id', '=', taskId(project, name));
    query = version === '' ? query.orderBy('created_at', 'desc').orderBy('version', 'desc').limit(1) : query.where('version', '=', checkVersion(version, argument));
    const row = await query.executeTakeFirst();
    if (row === undefined) {
      throw new AirlockError('TASK_NOT_FOUND', version === '' ? 'No task of this name is registered in the project' : 'This task version is not registered in the project', {
        details: { task: name, ...(version === '' ? {} : { version }) },
      });
    }
    return row;
  }

  // ---- runs
  function toRun(row: RunRow): RunRecord {
    const spec = sealer.openJson<RunSpec>(runCell(row.run_id, 'spec_sealed'), row.spec_sealed);
    const phases = sealer.openJson<StoredPhase[]>(runCell(row.run_id, 'phases_sealed'), row.phases_sealed);
    const error = row.error_sealed === null ? undefined : sealer.openJson<StoredError>(runCell(row.run_id, 'error_sealed'), row.error_sealed);
    return Object.freeze({
      runId: row.run_id,
      project: spec.project,
      taskName: spec.taskName,
      taskVersion: spec.taskVersion,
      cluster: spec.cluster,
      phase: row.phase as ActionPhaseName,
      phases: Object.freeze(phases.map((entry) => Object.freeze({ phase: entry.phase, at: new Date(entry.at) }))),
      ...(error === undefined ? {} : { error: errorRecord(error, row.run_id) }),
      attempts: row.attempts,
      actionId: row.action_id,
      createdAt: new Date(Number(row.created_at)),
      ...(row.completed_at === null ? {} : { completedAt: new Date(Number(row.completed_at)) }),
      createdBy: sealer.openText(runCell(row.run_id, 'created_by_sealed'), row.created_by_sealed),
      abortRequested: row.abort_requested !== 0,
    });
  }

  function errorRecord(error: StoredError, runId: string): RunErrorRecord {
    return Object.freeze({
      code: error.code,
      kind: error.kind,
      retryable: error.retryable,
      occurredAt: new Date(error.occurredAtMs),
      message: fixedErrorMessage(error.code, error.kind, runId),
    });
  }

  async function loadRunRow(project: string, runId: string): Promise<RunRow> {
    const row = await db.selectFrom('runs').selectAll().where('run_id', '=', checkRunId(runId)).executeTakeFirst();
    // Another project's run is reported exactly like a missing one.
    if (row === undefined || row.project_id !== projectId(project)) throw new AirlockError('NOT_FOUND', 'No run with this id in the project', { details: { runId } });
    return row;
  }

  // ---- watchers: notified after every change of a run
  const watchers = new Map<string, Set<() => void>>();
  let watcherCount = 0;
  function runChanged(runId: string): void {
    for (const wake of [...(watchers.get(runId) ?? [])]) wake();
  }

  // ---- lifecycle: a run follows its current action
  const syncing = new Map<string, Promise<void>>();
  /** Brings a run up to date with its current action; serialised per run. */
  function syncRun(runId: string): Promise<void> {
    const previous = syncing.get(runId) ?? Promise.resolve();
    const next = previous.then(() => syncOnce(runId)).catch((error: unknown) => {
      log.error({ event: 'runs.sync_failed', runId, code: AirlockError.from(error).code }, 'run could not follow its action');
    });
    syncing.set(runId, next);
    void next.finally(() => {
      if (syncing.get(runId) === next) syncing.delete(runId);
    });
    return next;
  }

  async function syncOnce(runId: string): Promise<void> {
    const before = await db.selectFrom('runs').select(['action_id', 'completed_at']).where('run_id', '=', runId).executeTakeFirst();
    if (before === undefined || before.completed_at !== null) return;
    const action = await queue.get(before.action_id);
    const now = clock();
    let wakeCluster: string | undefined;
    const changed = await db.transaction().execute(async (trx) => {
      let query = trx.selectFrom('runs').selectAll().where('run_id', '=', runId);
      if (rowLocks) query = query.forUpdate();
      const row = await query.executeTakeFirst();
      if (row === undefined || row.completed_at !== null || row.action_id !== before.action_id) return false;
      const spec = sealer.openJson<RunSpec>(runCell(runId, 'spec_sealed'), row.spec_sealed);
      const stored = sealer.openJson<StoredPhase[]>(runCell(runId, 'phases_sealed'), row.phases_sealed);
      const attempt = row.attempts;
      // An action pruned from the queue before its run finished cannot be followed any more.
      const phase: ActionPhaseName = action?.phase ?? 'FAILED';
      const history = action === undefined ? [{ phase, at: new Date(now) }] : action.history;
      const phases = [...stored.filter((entry) => entry.attempt < attempt), ...history.map((entry) => ({ phase: entry.phase, at: entry.at.getTime(), attempt }))].slice(-MAX_PHASES);
      const update: Partial<RunRow> = { updated_at: now };
      if (!isTerminalActionPhase(phase)) {
        if (phase === row.phase && phases.length === stored.length) return false;
        Object.assign(update, { phase, phases_sealed: sealer.sealJson(runCell(runId, 'phases_sealed'), phases) });
      } else {
        const reported = action?.error;
        const error: StoredError | undefined =
          phase === 'SUCCEEDED'
            ? undefined
            : reported === undefined
              ? phase === 'ABORTED'
                ? undefined
                : { code: action === undefined ? 'INTERNAL' : phase === 'TIMED_OUT' ? 'TASK_TIMED_OUT' : 'INTERNAL', kind: 'SYSTEM', retryable: phase === 'TIMED_OUT', occurredAtMs: now }
              : { code: reported.code, kind: reported.kind ?? 'SYSTEM', retryable: reported.retryable, occurredAtMs: reported.occurredAtMs ?? now };
        const retry =
          (phase === 'FAILED' || phase === 'TIMED_OUT') &&
          error !== undefined &&
          row.abort_requested === 0 &&
          // A lost data plane is not retried on the same silent cluster: the run ends and says so.
          error.code !== 'DATA_PLANE_LOST' &&
          shouldRetry(spec.retries, attempt, { code: (isAirlockErrorCode(error.code) ? error.code : 'INTERNAL'), retryable: error.retryable });
        if (retry) {
          const delayMs = retryDelayMs(spec.retries, attempt, random);
          const nextActionId = await queue.enqueue(
            spec.cluster,
            {
              runId,
              task: { project: spec.project, name: spec.taskName, version: spec.taskVersion },
              attempt: attempt + 1,
              timeoutMs: spec.timeoutMs,
              ...(spec.inputsRef === undefined ? {} : { inputsRef: spec.inputsRef }),
              bundle: spec.bundle,
              availableAt: new Date(now + delayMs),
            },
            trx,
          );
          phases.push({ phase: 'QUEUED', at: now, attempt: attempt + 1 });
          Object.assign(update, {
            phase: 'QUEUED',
            attempts: attempt + 1,
            action_id: nextActionId,
            phases_sealed: sealer.sealJson(runCell(runId, 'phases_sealed'), phases.slice(-MAX_PHASES)),
            error_sealed: sealer.sealJson(runCell(runId, 'error_sealed'), error),
          });
          wakeCluster = spec.cluster;
          log.info({ event: 'runs.retry', runId, attempt: attempt + 1, delayMs, errorCode: error.code }, 'run queued for another attempt');
        } else {
          Object.assign(update, {
            phase,
            completed_at: now,
            abort_requested: 0,
            phases_sealed: sealer.sealJson(runCell(runId, 'phases_sealed'), phases),
            error_sealed: error === undefined ? null : sealer.sealJson(runCell(runId, 'error_sealed'), error),
          });
          log.info({ event: 'runs.completed', runId, phase, attempts: attempt, ...(error === undefined ? {} : { errorCode: error.code, errorKind: error.kind }) }, 'run finished');
        }
      }
      await trx.updateTable('runs').set(update).where('run_id', '=', runId).execute();
      return true;
    });
    if (wakeCluster !== undefined) queue.wake(wakeCluster);
    if (changed) runChanged(runId);
  }

  const unsubscribe = queue.subscribe((changes) => {
    for (const runId of new Set(changes.map((change) => change.runId))) void syncRun(runId);
  });

  // ---- clusters and the tunnel
  async function resolveCluster(requested: string): Promise<string> {
    if (typeof requested !== 'string') throw invalid('cluster', 'must be a string');
    if (requested !== '') {
      if (!isValidClusterName(requested)) throw invalid('cluster', 'must be 1 to 63 lower-case letters, digits or inner hyphens');
      const record = await clusters.cluster(requested);
      if (record === undefined) throw new AirlockError('NOT_FOUND', 'No cluster has this name', { details: { cluster: requested } });
      if (record.revoked) throw new AirlockError('CLUSTER_REVOKED', 'This cluster was revoked and cannot run anything', { details: { cluster: requested } });
      return requested;
    }
    const active = (await clusters.clusters()).filter((record) => !record.revoked);
    if (active.length === 0) throw new AirlockError('FAILED_PRECONDITION', 'No data plane is registered: start one (airlock up) or name a cluster', { details: { reason: 'no-cluster' } });
    if (active.length > 1) throw invalid('cluster', 'must be given: more than one cluster is active', { reason: 'several-clusters' });
    return (active[0] as ClusterRecord).name;
  }

  function dataPlane<S extends typeof SealedIoService | typeof PresignService>(service: S, cluster: string): Client<S> {
    if (tunnel === undefined || tunnel.connection(cluster) === undefined) {
      throw new AirlockError('UNAVAILABLE', "The cluster's data plane is not connected (no tunnel); try again once its agent is up", { details: { cluster, reason: 'tunnel-down' } });
    }
    return createClient(service, tunnel.transportFor(cluster));
  }

  /** A call to a data plane: its errors keep their Airlock code, with the control plane's own message (never logged with content). */
  async function callDataPlane<T>(what: string, cluster: string, call: (options: { timeoutMs: number }) => Promise<T>): Promise<T> {
    try {
      return await call({ timeoutMs: config.tunnelTimeoutMs });
    } catch (error) {
      const airlock = fromConnectError(error);
      log.warn({ event: 'runs.data_plane_call_failed', call: what, cluster, code: airlock.code }, 'data-plane call failed');
      throw new AirlockError(airlock.code, `The data plane could not ${what}: ${ERROR_CODES[airlock.code].description}`, {
        details: { ...(airlock.details ?? {}), cluster },
      });
    }
  }

  // ---- idempotency
  const pendingKeys = new Map<string, Promise<void>>();

  async function insertRun(runId: string, spec: RunSpec, createdBy: string): Promise<RunRecord> {
    const now = clock();
    // Sealed before the transaction, as the queue seals an action's spec (see its enqueue).
    const sealed = {
      spec_sealed: sealer.sealJson(runCell(runId, 'spec_sealed'), spec),
      phases_sealed: sealer.sealJson(runCell(runId, 'phases_sealed'), [{ phase: 'QUEUED', at: now, attempt: 1 }] satisfies StoredPhase[]),
      created_by_sealed: sealer.sealText(runCell(runId, 'created_by_sealed'), createdBy),
    };
    let row: RunRow | undefined;
    await db.transaction().execute(async (trx) => {
      const actionId = await queue.enqueue(
        spec.cluster,
        {
          runId,
          task: { project: spec.project, name: spec.taskName, version: spec.taskVersion },
          attempt: 1,
          timeoutMs: spec.timeoutMs,
          ...(spec.inputsRef === undefined ? {} : { inputsRef: spec.inputsRef }),
          bundle: spec.bundle,
        },
        trx,
      );
      row = {
        run_id: runId,
        project_id: projectId(spec.project),
        task_id: taskId(spec.project, spec.taskName),
        cluster_id: clusterId(spec.cluster),
        ...sealed,
        phase: 'QUEUED',
        attempts: 1,
        action_id: actionId,
        abort_requested: 0,
        created_at: now,
        updated_at: now,
        completed_at: null,
        error_sealed: null,
      };
      await trx.insertInto('runs').values(row).execute();
    });
    queue.wake(spec.cluster);
    log.info({ event: 'runs.created', runId, cluster: spec.cluster, actionId: row?.action_id }, 'run created');
    return toRun(row as RunRow);
  }

  async function dedupedRun(keyHash: string): Promise<{ runId: string; reservedAt: number; run?: RunRecord } | undefined> {
    const found = await db.selectFrom('idempotency_keys').select(['run_id', 'created_at']).where('key_hash', '=', keyHash).where('expires_at', '>', clock()).executeTakeFirst();
    if (found === undefined) return undefined;
    const row = await db.selectFrom('runs').selectAll().where('run_id', '=', found.run_id).executeTakeFirst();
    const reservedAt = Number(found.created_at);
    return row === undefined ? { runId: found.run_id, reservedAt } : { runId: found.run_id, reservedAt, run: toRun(row) };
  }

  // ---- the run lease
  let sweeping = false;
  async function sweep(): Promise<void> {
    if (sweeping) return;
    sweeping = true;
    try {
      const now = clock();
      await db.deleteFrom('idempotency_keys').where('expires_at', '<=', now).execute();
      const rows = await db.selectFrom('runs').select(['run_id', 'action_id', 'spec_sealed']).where('completed_at', 'is', null).execute();
      const silent = new Map<string, boolean>();
      for (const row of rows) {
        const { cluster } = sealer.openJson<RunSpec>(runCell(row.run_id, 'spec_sealed'), row.spec_sealed);
        let lost = silent.get(cluster);
        if (lost === undefined) {
          const seen = options.clusterLastSeen?.(cluster)?.getTime() ?? 0;
          // This control plane's own start counts as contact: agents had no chance to call it before.
          lost = now - Math.max(seen, startedAt) > config.runLeaseMs;
          silent.set(cluster, lost);
        }
        if (!lost) continue;
        const action = await queue.get(row.action_id);
        // A leased action's own lease re-queues it first; only a queued one is left waiting for nobody.
        if (action === undefined || action.phase !== 'QUEUED' || action.leasedAt !== undefined) continue;
        log.warn({ event: 'runs.data_plane_lost', runId: row.run_id, cluster, actionId: row.action_id, runLeaseMs: config.runLeaseMs }, 'run failed: its data plane was not heard from');
        await queue.fail(row.action_id, { code: 'DATA_PLANE_LOST', kind: 'SYSTEM', retryable: true, occurredAtMs: now });
        await syncRun(row.run_id);
      }
    } finally {
      sweeping = false;
    }
  }

  let closed = false;
  const timer = setInterval(() => {
    if (closed) return;
    sweep().catch((error: unknown) => log.error({ event: 'runs.sweep_failed', code: AirlockError.from(error).code }, 'run sweep failed'));
  }, config.sweepIntervalMs);
  timer.unref();

  // Runs whose action changed while no control plane was following (a crash between the two writes).
  {
    const rows = await db.selectFrom('runs').select('run_id').where('completed_at', 'is', null).execute();
    for (const row of rows) await syncRun(row.run_id);
  }

  const checkOpen = (): void => {
    if (closed) throw new AirlockError('UNAVAILABLE', 'The run service is closed');
  };

  const service: RunService = {
    async registerTask(request) {
      checkOpen();
      const project = checkProject(request.project);
      const spec = parseSpec(request.specJson, config.maxSpecBytes);
      const bundle = checkBundle(request.bundle);
      const version = taskVersion(taskSpecDigest(spec), bundle.sha256);
      const id = taskId(project, spec.name);
      const keys = { task_id: id, version };
      const inserted = await db
        .insertInto('tasks')
        .values({
          ...keys,
          project_id: projectId(project),
          name_sealed: sealer.sealJson(taskCell(keys, 'name_sealed'), { project, name: spec.name }),
          spec_sealed: sealer.seal(taskCell(keys, 'spec_sealed'), request.specJson),
          bundle_sha256: bundle.sha256,
          bundle_size: bundle.size,
          created_at: clock(),
          created_by_sealed: sealer.sealText(taskCell(keys, 'created_by_sealed'), request.createdBy),
        })
        .onConflict((conflict) => conflict.columns(['task_id', 'version']).doNothing())
        .executeTakeFirst();
      const created = Number(inserted.numInsertedOrUpdatedRows ?? 0n) > 0;
      const row = await db.selectFrom('tasks').selectAll().where('task_id', '=', id).where('version', '=', version).executeTakeFirstOrThrow();
      if (created) log.info({ event: 'runs.task_registered', version, bundleSha256: bundle.sha256 }, 'task version registered');
      return { task: toTask(row), created };
    },

    async getTask(project, name, version) {
      checkOpen();
      return toTask(await findTask(checkProject(project), checkTaskName(name, 'name'), version, 'version'));
    },

    async listTasks(projectName, pageSize, pageToken) {
      checkOpen();
      const project = checkProject(projectName);
      const size = checkPageSize(pageSize, DEFAULT_TASK_PAGE_SIZE);
      const after = decodePageToken(pageToken, (value) => typeof value === 'string' && TASK_NAME.test(value), 'ListTasks');
      // Names are sealed, so ordering by name happens here, over the project's newest versions.
      const rows = await db.selectFrom('tasks').selectAll().where('project_id', '=', projectId(project)).orderBy('created_at', 'desc').orderBy('version', 'desc').execute();
      const newest = new Map<string, TaskRow>();
      for (const row of rows) if (!newest.has(row.task_id)) newest.set(row.task_id, row);
      const named = [...newest.values()].map((row) => ({ row, name: sealer.openJson<{ name: string }>(taskCell(row, 'name_sealed'), row.name_sealed).name }));
      named.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      const remaining = after === undefined ? named : named.filter((entry) => entry.name > after);
      const page = remaining.slice(0, size);
      return { tasks: page.map((entry) => toTask(entry.row)), nextPageToken: remaining.length > size ? encodePageToken((page.at(-1) as { name: string }).name) : '' };
    },

    async createUploadLocation(projectName, clusterName, bundleArgument) {
      checkOpen();
      const project = checkProject(projectName);
      const bundle = checkBundle(bundleArgument);
      const cluster = await resolveCluster(clusterName);
      const client = dataPlane(PresignService, cluster);
      const response = await callDataPlane('presign the bundle upload', cluster, (callOptions) =>
        client.presignBundleUpload({ project, bundle: { sha256: bundle.sha256, size: BigInt(bundle.size) } }, callOptions),
      );
      // The URL is signed: it is returned to the caller and nowhere else (no log, no row).
      log.info({ event: 'runs.upload_location', cluster, bundleSha256: bundle.sha256, alreadyStored: response.alreadyStored }, 'bundle upload location issued');
      return {
        alreadyStored: response.alreadyStored,
        url: response.url,
        headers: { ...response.headers },
        ...(response.expiresAt === undefined ? {} : { expiresAt: new Date(Number(response.expiresAt.seconds) * 1000 + Math.floor(response.expiresAt.nanos / 1e6)) }),
      };
    },

    async createRun(request) {
      checkOpen();
      const project = checkProject(request.project);
      const taskName = checkTaskName(request.taskName, 'task_name');
      if (request.taskVersion !== '') checkVersion(request.taskVersion, 'task_version');
      const key = request.idempotencyKey;
      if (typeof key !== 'string' || key.length > MAX_IDEMPOTENCY_KEY || !/^[\x20-\x7e]*$/.test(key)) {
        throw invalid('idempotency_key', `must be at most ${MAX_IDEMPOTENCY_KEY} printable ASCII characters`);
      }
      const inputs = request.inputs;
      if (inputs !== undefined) {
        if (!(inputs.sealed instanceof Uint8Array) || inputs.sealed.length === 0) throw invalid('inputs.sealed', 'must be non-empty bytes');
        if (typeof inputs.keyId !== 'string' || !KEY_ID.test(inputs.keyId)) throw invalid('inputs.key_id', 'must be 32 lowercase hex characters');
        if (inputs.sealed.length > config.maxInputBytes) {
          throw new AirlockError('PAYLOAD_TOO_LARGE', `Sealed inputs are limited to ${config.maxInputBytes} bytes`, { details: { argument: 'inputs', limit: config.maxInputBytes } });
        }
      }
      const keyHash = key === '' ? undefined : sealer.blindIndex(IDEMPOTENCY_INDEX, `${project}\n${key}`);
      if (keyHash !== undefined) {
        const earlier = await dedupedRun(keyHash);
        if (earlier?.run !== undefined) return { run: earlier.run, deduplicated: true };
      }
      const taskRow = await findTask(project, taskName, request.taskVersion, 'task_version');
      const task = toTask(taskRow);
      const spec = JSON.parse(Buffer.from(task.specJson).toString('utf8')) as TaskSpec;
      const cluster = await resolveCluster(request.cluster);

      const create = async (runId: string): Promise<RunRecord> => {
        let inputsRef: string | undefined;
        if (inputs !== undefined) {
          const client = dataPlane(SealedIoService, cluster);
          const stored = await callDataPlane('store the inputs', cluster, (callOptions) =>
            client.putInputs({ project, runId, inputs: { sealed: inputs.sealed, keyId: inputs.keyId }, task: { project, name: task.name, version: task.version } }, callOptions),
          );
          if (stored.inputsRef.length === 0 || stored.inputsRef.length > 512 || hasControlCharacter(stored.inputsRef)) {
            throw new AirlockError('UNAVAILABLE', 'The data plane returned no usable inputs reference', { details: { cluster } });
          }
          inputsRef = stored.inputsRef;
        }
        return insertRun(
          runId,
          {
            project,
            taskName: task.name,
            taskVersion: task.version,
            cluster,
            ...(inputsRef === undefined ? {} : { inputsRef }),
            bundle: task.bundle,
            timeoutMs: spec.timeoutMs,
            retries: spec.retries,
          },
          request.createdBy,
        );
      };
      if (keyHash === undefined) return { run: await create(uuidV7(clock())), deduplicated: false };

      // Concurrent submissions with one key: in this process they queue behind each other; across
      // control planes the key's row (inserted before anything else happens) decides who creates.
      const deadline = Date.now() + IDEMPOTENCY_WAIT_MS;
      for (;;) {
        const prior = pendingKeys.get(keyHash);
        if (prior !== undefined) {
          await prior;
          continue;
        }
        let release = (): void => undefined;
        pendingKeys.set(keyHash, new Promise<void>((resolve) => (release = resolve)));
        try {
          let earlier = await dedupedRun(keyHash);
          if (earlier?.run !== undefined) return { run: earlier.run, deduplicated: true };
          if (earlier !== undefined && clock() - earlier.reservedAt > ABANDONED_RESERVATION_MS) {
            // Reserved by a control plane that stopped before it created the run: nothing was started, so the key is free again.
            await db.deleteFrom('idempotency_keys').where('key_hash', '=', keyHash).where('run_id', '=', earlier.runId).execute();
            log.warn({ event: 'runs.idempotency_key_reclaimed', runId: earlier.runId }, 'an abandoned idempotency-key reservation was released');
            earlier = undefined;
          }
          if (earlier === undefined) {
            const runId = uuidV7(clock());
            const now = clock();
            await db.deleteFrom('idempotency_keys').where('key_hash', '=', keyHash).where('expires_at', '<=', now).execute();
            const reserved = await db
              .insertInto('idempotency_keys')
              .values({ key_hash: keyHash, project_id: projectId(project), run_id: runId, created_at: now, expires_at: now + config.idempotencyTtlMs })
              .onConflict((conflict) => conflict.column('key_hash').doNothing())
              .executeTakeFirst();
            if (Number(reserved.numInsertedOrUpdatedRows ?? 0n) > 0) {
              try {
                return { run: await create(runId), deduplicated: false };
              } catch (error) {
                // Nothing was started: free the key so that a retry of the submission can proceed.
                await db.deleteFrom('idempotency_keys').where('key_hash', '=', keyHash).where('run_id', '=', runId).execute();
                throw error;
              }
            }
          }
        } finally {
          pendingKeys.delete(keyHash);
          release();
        }
        // Another control plane holds the key and has not written its run yet.
        if (Date.now() > deadline) throw new AirlockError('UNAVAILABLE', 'A submission with this idempotency key is still in progress; try again', { details: { reason: 'idempotency-key-busy' } });
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },

    async getRun(project, runId) {
      checkOpen();
      return toRun(await loadRunRow(checkProject(project), runId));
    },

    async listRuns(projectName, filter) {
      checkOpen();
      const project = checkProject(projectName);
      const size = checkPageSize(filter.pageSize, DEFAULT_RUN_PAGE_SIZE);
      const after = decodePageToken(filter.pageToken, (value) => typeof value === 'string' && RUN_ID.test(value), 'ListRuns');
      if (filter.phase !== undefined && !ACTION_PHASES.includes(filter.phase)) throw invalid('phase', 'is not a phase');
      let query = db.selectFrom('runs').selectAll().where('project_id', '=', projectId(project));
      if (filter.taskName !== '') query = query.where('task_id', '=', taskId(project, checkTaskName(filter.taskName, 'task_name')));
      if (filter.phase !== undefined) query = query.where('phase', '=', filter.phase);
      if (after !== undefined) query = query.where('run_id', '<', after);
      const rows = await query.orderBy('run_id', 'desc').limit(size + 1).execute();
      const page = rows.slice(0, size);
      return { runs: page.map(toRun), nextPageToken: rows.length > size ? encodePageToken((page.at(-1) as RunRow).run_id) : '' };
    },

    watchRun(projectName, runId, signal) {
      checkOpen();
      const project = checkProject(projectName);
      checkRunId(runId);
      const read = (): Promise<RunRecord> => service.getRun(project, runId);
      return {
        async *[Symbol.asyncIterator]() {
          await loadRunRow(project, runId);
          if (watcherCount >= config.maxWatchers) {
            throw new AirlockError('UNAVAILABLE', 'Too many runs are being watched; try again later', { details: { reason: 'too-many-watchers', limit: config.maxWatchers } });
          }
          let dirty = true;
          let wakeUp: (() => void) | undefined;
          const onChange = (): void => {
            dirty = true;
            wakeUp?.();
          };
          let set = watchers.get(runId);
          if (set === undefined) {
            set = new Set();
            watchers.set(runId, set);
          }
          set.add(onChange);
          watcherCount += 1;
          try {
            let last = '';
            for (;;) {
              if (signal.aborted || closed) return;
              dirty = false;
              const run = await read();
              const state = `${run.phase}|${run.phases.length}|${run.attempts}|${run.abortRequested}|${run.completedAt?.getTime() ?? ''}`;
              if (state !== last) {
                last = state;
                yield run;
              }
              if (isTerminalActionPhase(run.phase) && run.completedAt !== undefined) return;
              if (dirty) continue;
              await new Promise<void>((resolve) => {
                const done = (): void => {
                  clearTimeout(fallback);
                  signal.removeEventListener('abort', done);
                  wakeUp = undefined;
                  resolve();
                };
                const fallback = setTimeout(done, WATCH_FALLBACK_MS);
                wakeUp = done;
                signal.addEventListener('abort', done, { once: true });
              });
            }
          } finally {
            watcherCount -= 1;
            set.delete(onChange);
            if (set.size === 0 && watchers.get(runId) === set) watchers.delete(runId);
          }
        },
      };
    },

    async abortRun(projectName, runId) {
      checkOpen();
      const project = checkProject(projectName);
      const row = await loadRunRow(project, runId);
      if (row.completed_at !== null) return toRun(row);
      await db.updateTable('runs').set({ abort_requested: 1, updated_at: clock() }).where('run_id', '=', row.run_id).where('completed_at', 'is', null).execute();
      const action = await queue.cancel(row.action_id);
      log.info({ event: 'runs.abort_requested', runId: row.run_id, actionId: row.action_id, actionPhase: action.phase }, 'run abort requested');
      await syncRun(row.run_id);
      runChanged(row.run_id);
      return toRun(await loadRunRow(project, runId));
    },

    async listActions(projectName, runId) {
      checkOpen();
      const project = checkProject(projectName);
      const row = await loadRunRow(project, runId);
      const actions: QueuedAction[] = await queue.listRun(row.run_id);
      return actions
        .sort((a, b) => a.attempt - b.attempt)
        .map((action) =>
          Object.freeze({
            actionId: action.actionId,
            ...(action.parentActionId === undefined ? {} : { parentActionId: action.parentActionId }),
            project: action.task.project,
            taskName: action.task.name,
            taskVersion: action.task.version,
            attempt: action.attempt,
            phase: action.phase,
            phases: action.history.map((entry) => Object.freeze({ phase: entry.phase, at: entry.at })),
            ...(action.error === undefined
              ? {}
              : {
                  error: errorRecord(
                    { code: action.error.code, kind: action.error.kind ?? 'SYSTEM', retryable: action.error.retryable, occurredAtMs: action.error.occurredAtMs ?? action.updatedAt.getTime() },
                    row.run_id,
                  ),
                }),
          }),
        );
    },

    async getRunOutputs(projectName, runId, recipientPublicKey) {
      checkOpen();
      const project = checkProject(projectName);
      if (!(recipientPublicKey instanceof Uint8Array) || recipientPublicKey.length !== 32) throw invalid('recipient_public_key', 'must be a raw 32-byte X25519 public key');
      const run = toRun(await loadRunRow(project, runId));
      if (run.completedAt === undefined) {
        throw new AirlockError('FAILED_PRECONDITION', 'The run has not finished; its result exists once it is terminal', { details: { runId: run.runId, phase: run.phase } });
      }
      const client = dataPlane(SealedIoService, run.cluster);
      const response = await callDataPlane('return the result', run.cluster, (callOptions) =>
        client.getOutputs({ project, runId: run.runId, actionId: run.actionId, recipientPublicKey }, callOptions),
      );
      if (response.outputs === undefined || response.outputs.sealed.length === 0) {
        throw new AirlockError('UNAVAILABLE', 'The data plane returned no result', { details: { cluster: run.cluster } });
      }
      return { result: { sealed: response.outputs.sealed, keyId: response.outputs.keyId }, actionId: run.actionId };
    },

    sweep,

    async close() {
      if (closed) return;
      closed = true;
      clearInterval(timer);
      unsubscribe();
      for (const set of watchers.values()) for (const wake of [...set]) wake();
      while (sweeping) await new Promise((resolve) => setTimeout(resolve, 5));
      await Promise.all([...syncing.values()]);
    },
  };
  return service;
}
