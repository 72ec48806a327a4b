// Public API of @airlock/sdk: define tasks (functions or commands), their specs and types, and run one attempt.
export {
  task,
  isTask,
  validateInputs,
  validateOutputs,
  taskSpecDigest,
  TASK_MARK,
  TASK_SPEC_VERSION,
  type AnyTask,
  type CommandSpec,
  type ResolvedResources,
  type ResourceOptions,
  type Task,
  type TaskContext,
  type TaskHandler,
  type TaskInputs,
  type TaskLogger,
  type TaskOptions,
  type TaskOutputs,
  type TaskParsedInputs,
  type TaskSpec,
} from './task.js';
export { commandTask, STDERR_TAIL_BYTES, type CommandTaskOptions, type OutputFile, type OutputsFrom } from './command-task.js';
export { discoverTasks, findTask, type DiscoveredTask } from './discover.js';
export {
  executeTask,
  DEFAULT_COMMAND_PATH,
  type ExecuteOptions,
  type ExecuteResult,
  type TaskLogEntry,
  type TaskLogSink,
} from './execute.js';
export {
  abortedRecord,
  controlPlaneErrorRecord,
  failedPhaseOf,
  systemErrorRecord,
  timedOutRecord,
  type ControlPlaneErrorRecord,
  type FailedPhase,
  type TaskErrorKind,
  type TaskErrorRecord,
} from './error-record.js';
export { CommandFailedError, formatIssuePath, NonRetryableError, TaskValidationError, type SchemaIssue } from './errors.js';
export { durationMs, resolveRetryPolicy, retryDelayMs, shouldRetry, type Duration, type ResolvedRetryPolicy, type RetryOptions } from './retry.js';
export { isStandardSchema, JSON_SCHEMA_TARGET, type JsonSchema } from './schema.js';
export { childActionId, inputDigest, taskVersion } from './ids.js';
export { SDK_VERSION } from './version.js';
export {
  ACTION_EXIT_OK,
  ACTION_EXIT_USAGE,
  ACTION_PROTOCOL_VERSION,
  type ActionRequest,
  type ActionResult,
  type BundleDescription,
} from './action-protocol.js';
