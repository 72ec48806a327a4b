// Public API of @airlock/control-plane: the tunnel endpoint through which the control plane calls data-plane services, and the cluster registry.
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
  isTerminalActionPhase,
  openActionQueue,
  resolveActionQueueConfig,
  TERMINAL_ACTION_PHASES,
  type ActionErrorRecord,
  type ActionEventInput,
  type ActionHistoryEntry,
  type ActionPhaseName,
  type ActionQueue,
  type ActionQueueOptions,
  type ActionTaskRef,
  type EnqueueActionOptions,
  type QueuedAction,
  type ReconcileResult,
  type ResolvedActionQueueConfig,
  type SealedInputs,
} from './internal/action-queue.js';
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
