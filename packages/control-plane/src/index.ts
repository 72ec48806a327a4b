// Public API of @airlock/control-plane: the API, dispatch and tunnel servers, the cluster registry, tokens, action queue and runs, and the database they live in.
export {
  resolveTunnelEndpointConfig,
  startTunnelEndpoint,
  type ResolvedTunnelEndpointConfig,
  type TunnelConnectionInfo,
  type TunnelEndpoint,
  type TunnelEndpointOptions,
} from './internal/tunnel-endpoint.js';
export type { TunnelProtocol, TunnelTransportOptions } from './internal/tunnel-transport.js';
export {
  BOOTSTRAP_TOKEN_PREFIX,
  openClusterRegistry,
  type BootstrapToken,
  type ClusterCertificate,
  type ClusterRecord,
  type ClusterRegistry,
  type ClusterRegistryOptions,
} from './internal/cluster-registry.js';
export {
  ALL_PROJECTS,
  API_ROLES,
  API_TOKEN_PREFIX,
  hasRole,
  isApiRole,
  openApiTokenStore,
  type ApiPrincipal,
  type ApiProjectRole,
  type ApiRole,
  type ApiTokenRecord,
  type ApiTokenStore,
  type ApiTokenStoreOptions,
  type CreateApiTokenOptions,
  type CreatedApiToken,
} from './internal/api-tokens.js';
export {
  apiPrincipalKey,
  createApiAuthInterceptor,
  createApiService,
  DEFAULT_BOOTSTRAP_TOKEN_TTL_MS,
  DEFAULT_CLUSTER_PAGE_SIZE,
  MAX_BOOTSTRAP_TOKEN_TTL_MS,
  MAX_CLUSTER_PAGE_SIZE,
  type ApiService,
  type ApiServiceOptions,
  type ClusterStatusSource,
} from './internal/api-service.js';
export { resolveApiServerConfig, startApiServer, type ApiServerOptions, type ResolvedApiServerConfig } from './internal/api-server.js';
export type { ConnectServer } from './internal/connect-server.js';
export {
  ACTION_PHASES,
  fixedErrorMessage,
  isTerminalActionPhase,
  openActionQueue,
  resolveActionQueueConfig,
  TERMINAL_ACTION_PHASES,
  type ActionBundle,
  type ActionChange,
  type ActionErrorKind,
  type ActionErrorRecord,
  type ActionEventInput,
  type ActionHistoryEntry,
  type ActionPhaseName,
  type ActionQueue,
  type ActionQueueOptions,
  type ActionTaskRef,
  type EnqueueActionOptions,
  type QueuedAction,
  type QueueTransaction,
  type ReconcileResult,
  type ResolvedActionQueueConfig,
  type SealedInputs,
} from './internal/action-queue.js';
export {
  DEFAULT_IDEMPOTENCY_TTL_MS,
  DEFAULT_RUN_LEASE_MS,
  DEFAULT_RUN_PAGE_SIZE,
  DEFAULT_TASK_PAGE_SIZE,
  MAX_PAGE_SIZE,
  openRunService,
  resolveRunServiceConfig,
  type CreateRunRequest,
  type RegisterTaskRequest,
  type ResolvedRunServiceConfig,
  type RunActionRecord,
  type RunClusterSource,
  type RunErrorRecord,
  type RunPhaseEntry,
  type RunRecord,
  type RunSealedPayload,
  type RunService,
  type RunServiceOptions,
  type RunTunnel,
  type TaskRecord,
  type UploadLocation,
} from './internal/run-service.js';
export {
  createDispatchService,
  DEFAULT_HEARTBEAT_INTERVAL_MS,
  DEFAULT_MAX_POLL_WAIT_MS,
  resolveDispatchServiceConfig,
  type DispatchAgentInfo,
  type DispatchServiceHandlers,
  type DispatchServiceOptions,
  type ResolvedDispatchServiceConfig,
} from './internal/dispatch-service.js';
export {
  resolveDispatchServerConfig,
  startDispatchServer,
  type DispatchServer,
  type DispatchServerOptions,
  type ResolvedDispatchServerConfig,
} from './internal/dispatch-server.js';
export {
  openDatabase,
  resolveDatabaseConfig,
  type ControlPlaneDatabase,
  type DatabaseOptions,
  type ResolvedDatabaseConfig,
} from './internal/db/database.js';
export { openControlPlaneKey, type ControlPlaneKeyOptions, type OpenedControlPlaneKey } from './internal/db/control-plane-key.js';
export type { ControlPlaneKey } from './internal/db/keyring.js';
export type { ColumnSealer, SealedCell } from './internal/db/column-sealer.js';
export { KNOWN_MIGRATIONS, type DatabaseBackend } from './internal/db/migrations.js';
export { importLegacyState, type LegacyImportResult, type LegacyStateFiles } from './internal/db/legacy-import.js';
