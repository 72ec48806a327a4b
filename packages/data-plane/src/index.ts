// Public API of @airlock/data-plane: the outbound-only tunnel agent, the tunnel services it serves, registration with certificate renewal, and the executor.
export {
  createTunnelAgent,
  resolveTunnelAgentConfig,
  startTunnelAgent,
  type ResolvedTunnelAgentConfig,
  type TunnelAgent,
  type TunnelAgentConnectionInfo,
  type TunnelAgentOptions,
  type TunnelAgentState,
  type TunnelAgentStats,
  type TunnelCredentials,
} from './internal/tunnel-agent.js';
export {
  ECHO_DELAY_HEADER,
  registerTunnelServices,
  resolveTunnelServicesConfig,
  tunnelServiceRoutes,
  type ResolvedTunnelServicesConfig,
  type TunnelServicesOptions,
} from './internal/tunnel-services.js';
export {
  registerWithBootstrapToken,
  RENEW_AT_LIFETIME_FRACTION,
  renewalDelayMs,
  startCertificateRenewer,
  type CertificateRenewer,
  type CertificateRenewerOptions,
  type IssuedClusterCertificate,
  type RedeemBootstrapToken,
  type RegisteredCredentials,
  type RegisterWithBootstrapTokenOptions,
  type RenewClusterCertificate,
  type RenewerTimers,
} from './internal/registration.js';
export {
  AGENT_CREDENTIALS_FILE,
  agentCredentialsPath,
  checkCredentials,
  loadAgentCredentials,
  saveAgentCredentials,
  type LoadAgentCredentialsOptions,
  type StoredCredentials,
} from './internal/agent-state.js';
export { createKeyVault, DEFAULT_DATA_PLANE_KEY_ID, openKmsKeyVault, type DataPlaneKeyVault } from './internal/key-vault.js';
export {
  createDispatchClient,
  resolveDispatchClientConfig,
  type DispatchClient,
  type DispatchClientCredentials,
  type DispatchClientOptions,
  type IssuedCertificateChain,
  type ResolvedDispatchClientConfig,
} from './internal/dispatch-client.js';
export {
  resolveDataPlaneAgentConfig,
  startDataPlaneAgent,
  type ActionHandler,
  type DataPlaneAgent,
  type DataPlaneAgentOptions,
  type DataPlaneAgentState,
  type DataPlaneAgentStatus,
  type DataPlaneAgentTunnelOptions,
  type ResolvedDataPlaneAgentConfig,
} from './internal/data-plane-agent.js';
export {
  loadOrCreateSealingKeys,
  SEALING_KEYS_FILE,
  sealingKeysPath,
  type DataPlaneSealingKeys,
  type LoadSealingKeysOptions,
  type SealingPublicKeyInfo,
} from './internal/sealing-keys.js';
export { createRevocableSealingKeys, type RevocableSealingKeysOptions } from './internal/revocable-sealing-keys.js';
export {
  checkProjectName,
  checkRunId,
  createRunDataStore,
  DEFAULT_MAX_BUNDLE_BYTES,
  DEFAULT_MAX_PRESIGN_SECONDS,
  DEFAULT_MAX_RESULT_BYTES,
  DEFAULT_MAX_SEALED_INPUTS_BYTES,
  DEFAULT_PRESIGN_SECONDS,
  inputsRefOf,
  resolveRunDataStoreConfig,
  RUN_DATA_BUCKET,
  type PresignBundleUploadResult,
  type PresignFileRequest,
  type PresignFileResult,
  type ResolvedRunDataStoreConfig,
  type RunDataStore,
  type RunDataStoreOptions,
  type SealedInputs,
} from './internal/run-data-store.js';
export { registerRunDataServices, type RunDataServicesOptions } from './internal/sealed-io-services.js';
export {
  createLocalProcessExecutor,
  resolveLocalProcessExecutorConfig,
  type LocalProcessExecutorOptions,
  type ResolvedLocalProcessExecutorConfig,
} from './internal/executor/local-process-executor.js';
export type { ActionOutcome, BundleRef, ExecutionHooks, Executor, ExecutorStorage } from './internal/executor/types.js';
export type { TaskIsolationMode, TaskSandboxStatus } from './internal/executor/task-sandbox.js';
