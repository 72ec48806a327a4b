// The executor contract (docs/runs.md, "The executor"): what runs one action, and the run-data storage it reads and writes through.
import type { Action } from '@airlock/protocol';
import type { TaskSandboxStatus } from './task-sandbox.js';

/** A code bundle as an action names it. */
export interface BundleRef {
  readonly sha256: string;
  readonly size: number;
}

/**
 * The data plane's run data (docs/runs.md, "Storage in the data plane"), as the executor uses it.
 * Implemented over the data plane's object store; every method throws AirlockErrors (KMS_KEY_DISABLED
 * and the other kill-switch codes, OBJECT_NOT_FOUND, DIGEST_MISMATCH, CIPHERTEXT_AUTH_FAILED, …).
 */
export interface ExecutorStorage {
  /**
   * Writes the bundle `bundles/<project>/<sha256>` to `destination` (mode 0600), verifying its
   * SHA-256 and size while it streams; throws DIGEST_MISMATCH (and leaves no file) when either differs.
   */
  fetchBundle(project: string, bundle: BundleRef, destination: string): Promise<void>;
  /**
   * The run's inputs as plaintext JSON bytes, opened with the data plane's I/O key (associated data
   * runInputsAad(project, taskName)); undefined when `inputsRef` is empty (a task without inputs).
   */
  readInputs(project: string, runId: string, inputsRef: string, taskName: string): Promise<Buffer | undefined>;
  /** Stores an action's result document (docs/runs.md, "The result document"), replacing any earlier one atomically. */
  writeResult(project: string, runId: string, actionId: string, result: Uint8Array): Promise<void>;
}
/** How an action ended, as the agent reports it. */
export type ActionOutcome =
  | { readonly phase: 'SUCCEEDED' }
  | {
      readonly phase: 'FAILED' | 'TIMED_OUT' | 'ABORTED';
      /** What the control plane may see: a code, its kind, whether a retry can help. Never a message from the task. */
      readonly error?: { readonly code: string; readonly kind: 'USER' | 'SYSTEM'; readonly retryable: boolean };
    };

/** Progress callbacks of one execution. */
export interface ExecutionHooks {
  /** The bundle and the inputs are in place and the task's process is starting. */
  readonly onRunning: () => void;
}

/**
 * Runs actions. The default is LocalProcessExecutor (a child process per action); a Kubernetes Jobs
 * executor implements the same interface later.
 */
export interface Executor {
  /**
   * Runs one action to its end: fetch, run, store the result, clean up. Resolves with the outcome and
   * never rejects: a failure of the platform is a SYSTEM outcome. `signal` aborts it (its reason an
   * AirlockError TIMEOUT or ABORTED decides TIMED_OUT or ABORTED).
   */
  execute(action: Action, signal: AbortSignal, hooks: ExecutionHooks): Promise<ActionOutcome>;
  /**
   * After an agent restart: the actions a previous process started and never finished (from the
   * executor's journal), each already cleaned up; the agent reports them FAILED with TASK_CRASHED.
   */
  recover(): Promise<readonly { readonly actionId: string; readonly attempt: number }[]>;
  /** Releases what the executor holds between actions (prepared processes); called when the agent stops. */
  close?(): Promise<void>;
  /** Whether (and how) task processes are isolated from the agent's files. */
  isolation?(): Promise<TaskSandboxStatus>;
}
