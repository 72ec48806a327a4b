// The control-plane database's tables as Kysely sees them. Columns ending in `_sealed` hold column-sealed ciphertext; see docs/security-model.md for why each other column is readable.
/** Database data keys, each wrapped by the control plane's key (never stored in the clear). */
export interface DbKeysTable {
  key_no: number;
  /** Envelope header: the wrapping key's id and the wrapped bytes. */
  wrapped: Buffer;
  created_at: number;
  rewrapped_at: number | null;
}

/** A registered data plane. */
export interface ClustersTable {
  /** Blind index of the cluster name (keyed HMAC), so lookups work without storing the name in the clear. */
  cluster_id: string;
  name_sealed: Buffer;
  registered_at: number;
  revoked: number;
  updated_at: number;
}

/** Client certificates issued to a cluster that still count (the current one and the one it replaced). */
export interface ClusterCertificatesTable {
  fingerprint: string;
  cluster_id: string;
  issued_at: number;
  expires_at: number;
}

/** One-time bootstrap tokens, stored as SHA-256 of the token only. */
export interface BootstrapTokensTable {
  token_hash: string;
  cluster_id: string;
  cluster_name_sealed: Buffer;
  /** Free text the operator gave when creating the token. */
  reason_sealed: Buffer | null;
  created_at: number;
  expires_at: number;
  used_at: number | null;
}

/** API bearer tokens, stored as SHA-256 of the token only. */
export interface ApiTokensTable {
  token_id: string;
  token_hash: string;
  subject_sealed: Buffer;
  roles_sealed: Buffer;
  created_at: number;
  expires_at: number | null;
  revoked_at: number | null;
}

/** Actions: one task attempt each, queued for a cluster. */
export interface ActionsTable {
  action_id: string;
  /** Blind index of the cluster name, as in `clusters`. */
  cluster_id: string;
  run_id: string;
  /** The calling action, for tasks that call tasks (the run tree); null for a run's root action. */
  parent_action_id: string | null;
  /** Sealed JSON: the task reference and the attempt's options. */
  spec_sealed: Buffer;
  attempt: number;
  phase: string;
  queued_at: number;
  updated_at: number;
  leased_at: number | null;
  lease_expires_at: number | null;
  completed_at: number | null;
  cancel_requested: number;
  deliveries: number;
  has_inputs: number;
  inputs_lost: number;
  /** Sealed JSON error record. */
  error_sealed: Buffer | null;
  /**
   * JSON list of the phases the action went through, with their times and event ids (migration
   * 0004): phases, times and ids, the kinds of value this table keeps readable anyway. Null while it
   * has only been queued (at queued_at), or while `history_sealed` holds it.
   */
  history: string | null;
  /** The same list sealed, as rows written before migration 0004 hold it; cleared when the row's history next changes. */
  history_sealed: Buffer | null;
  /** Not before (epoch ms): a retry's backoff. Null means at once. */
  available_at: number | null;
}

/** Registered task versions (docs/runs.md). */
export interface TasksTable {
  /** Blind index of (project, task name). */
  task_id: string;
  /** SHA-256 over the spec's digest and the bundle's digest (64 hex). */
  version: string;
  /** Blind index of the project. */
  project_id: string;
  /** Sealed JSON {project, name}. */
  name_sealed: Buffer;
  /** The spec JSON exactly as registered, sealed. */
  spec_sealed: Buffer;
  bundle_sha256: string;
  bundle_size: number;
  created_at: number;
  created_by_sealed: Buffer;
}

/** Runs: one task execution, its attempts being actions. */
export interface RunsTable {
  run_id: string;
  project_id: string;
  /** Blind index of (project, task name), as in `tasks`. */
  task_id: string;
  /** Blind index of the cluster name, as in `clusters`. */
  cluster_id: string;
  /** Sealed JSON: project, task, cluster, inputs reference, bundle, timeout, retry policy. */
  spec_sealed: Buffer;
  phase: string;
  attempts: number;
  /** The current attempt's action. */
  action_id: string;
  abort_requested: number;
  created_at: number;
  updated_at: number;
  completed_at: number | null;
  /** Sealed JSON error record {code, kind, retryable, occurredAt, message}. */
  error_sealed: Buffer | null;
  /** Sealed JSON list of the phases the run went through. */
  phases_sealed: Buffer;
  created_by_sealed: Buffer;
}

/** CreateRun idempotency keys: a keyed HMAC of (project, key), never the key. */
export interface IdempotencyKeysTable {
  key_hash: string;
  project_id: string;
  run_id: string;
  created_at: number;
  expires_at: number;
}

/** Event ids already applied to an action, so that a redelivered event is ignored. */
export interface ActionEventsTable {
  action_id: string;
  event_id: string;
  received_at: number;
}

/** How many actions of each cluster are unfinished (completed_at is null); the queue limits read it. */
export interface QueueDepthTable {
  cluster_id: string;
  pending: number;
}

export interface DatabaseSchema {
  db_keys: DbKeysTable;
  clusters: ClustersTable;
  cluster_certificates: ClusterCertificatesTable;
  bootstrap_tokens: BootstrapTokensTable;
  api_tokens: ApiTokensTable;
  actions: ActionsTable;
  action_events: ActionEventsTable;
  queue_depth: QueueDepthTable;
  tasks: TasksTable;
  runs: RunsTable;
  idempotency_keys: IdempotencyKeysTable;
}
