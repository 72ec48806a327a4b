// Public API of @airlock/verify: the check registry, its runner, and the checks that prove a stack's transport security.
export {
  allPassed,
  checkResult,
  DEFAULT_CHECK_TIMEOUT_MS,
  runChecks,
  type Check,
  type CheckResult,
  type CheckStatus,
  type Evidence,
  type EvidenceValue,
  type RunChecksOptions,
} from './check.js';
export { defaultChecks } from './default-checks.js';
export {
  ENDPOINTS_FILE_NAME,
  loadCheckContext,
  parseEndpointsFile,
  stackProcessRunning,
  type CheckContext,
  type ControlPlaneDatabaseInfo,
  type EndpointsFile,
  type HeapSnapshotInfo,
  type LogTailInfo,
  type StackEndpoint,
} from './endpoints-file.js';
export { aeadOnlyCheck, createAeadOnlyCheck, describeSuiteProblem } from './checks/aead-only.js';
export { noPlaintextCheck } from './checks/no-plaintext.js';
export { NO_PLANE_PIDS_DETAILS, outboundOnlyCheck } from './checks/outbound-only.js';
export { databaseSealedCheck } from './checks/database-sealed.js';
export { stackReachableCheck } from './checks/stack-reachable.js';
export { tlsVersionsCheck } from './checks/tls-versions.js';
export { NO_TUNNEL_DETAILS, tunnelRefusesUnauthenticatedCheck } from './checks/tunnel.js';
export { ChunkedSearch, readableMappings, scanProcessMemory, type MemoryNeedle, type ProcessMemoryScan, type RegionReader } from './process-memory.js';
