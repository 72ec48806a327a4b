// The files a task bundle's process and the data plane's executor exchange (request in, result out): shared by @airlock/sdk/runtime and the executor.
import type { ExecuteResult } from './execute.js';
import type { TaskSpec } from './task.js';

/** The version of the request/result files below. */
export const ACTION_PROTOCOL_VERSION = 1;

/** What the executor asks for one attempt; written as JSON, its path passed as `run --request <path>`. */
export interface ActionRequest {
  readonly version: typeof ACTION_PROTOCOL_VERSION;
  /** A task name (or export name) in the bundle. */
  readonly task: string;
  /** A JSON file holding the raw inputs (`{}` for a task run without inputs). */
  readonly inputsPath: string;
  /** Where the process writes its ActionResult (mode 0600). */
  readonly resultPath: string;
  readonly attempt: number;
  /** Overrides the spec's timeout. */
  readonly timeoutMs?: number;
  readonly runId?: string;
  readonly actionId?: string;
  /** After an abort or timeout, how long a command gets between SIGTERM and SIGKILL. */
  readonly killGraceMs?: number;
}

/** The result file: executeTask's result. Outputs and error messages in it are data. */
export type ActionResult = { readonly version: typeof ACTION_PROTOCOL_VERSION } & ExecuteResult;

/** What `describe` prints: every task in the bundle, with its spec. */
export interface BundleDescription {
  readonly version: typeof ACTION_PROTOCOL_VERSION;
  readonly tasks: readonly { readonly exportNames: readonly string[]; readonly spec: TaskSpec }[];
}

/** Exit code of `run` when the result file was written, whether the task succeeded or not. */
export const ACTION_EXIT_OK = 0;
/** Exit code of a malformed command line or request: the reason is on stderr and there is no result file. */
export const ACTION_EXIT_USAGE = 2;
