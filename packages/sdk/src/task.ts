// Defining tasks: task(), the serialisable task spec, the types callers import, and input/output validation.
import { createHash } from 'node:crypto';
import type { StandardSchemaV1 } from '@standard-schema/spec';
import { AirlockError } from '@airlock/common/errors';
import { TaskValidationError } from './errors.js';
import { canonicalJson } from './internal/canonical-json.js';
import { durationMs, resolveRetryPolicy, type Duration, type ResolvedRetryPolicy, type RetryOptions } from './retry.js';
import { isStandardSchema, jsonIssue, jsonSchemaOf, validateWithSchema, type JsonSchema } from './schema.js';
import { SDK_VERSION } from './version.js';

/** Marks task objects, as a global symbol so a task made by another copy of the SDK (a bundle) is still recognised. */
export const TASK_MARK: unique symbol = Symbol.for('airlock.task.v1') as never;

/** The version of the TaskSpec format. */
export const TASK_SPEC_VERSION = 1;

/** Compute a task asks for. The local executor records but does not enforce them. */
export interface ResourceOptions {
  /** CPU cores, fractions allowed. */
  readonly cpu?: number;
  /** Memory: bytes, or a string with a binary unit, `'512Mi'`, `'2Gi'`. */
  readonly memory?: number | `${number}${'Ki' | 'Mi' | 'Gi'}`;
}

/** Resources as stored in the spec. */
export interface ResolvedResources {
  readonly cpu?: number;
  readonly memoryBytes?: number;
}

/** Logging from inside a task. Log content is data: it goes to the data plane's log store, never to the control plane. */
export interface TaskLogger {
  debug(message: string, fields?: Readonly<Record<string, unknown>>): void;
  info(message: string, fields?: Readonly<Record<string, unknown>>): void;
  warn(message: string, fields?: Readonly<Record<string, unknown>>): void;
  error(message: string, fields?: Readonly<Record<string, unknown>>): void;
}

/** What a task's code gets besides its inputs. */
export interface TaskContext {
  /** Aborted when the attempt times out or is aborted; pass it on to fetch, child processes, timers. */
  readonly signal: AbortSignal;
  /** 1 for the first attempt, 2 for the first retry, and so on. */
  readonly attempt: number;
  readonly taskName: string;
  /** A private (0700) working directory for this attempt, removed afterwards unless the executor owns it. */
  readonly workDir: string;
  readonly log: TaskLogger;
  /** The run and action, when executed by the platform; undefined in the local harness unless given. */
  readonly runId: string | undefined;
  readonly actionId: string | undefined;
}

/**
 * The serialisable description of a task: what the control plane stores, encrypted, and what the
 * CLI validates inputs against. It holds no code and no data. The task's version is the digest of
 * this spec and of the code bundle (see taskSpecDigest).
 */
export interface TaskSpec {
  readonly specVersion: typeof TASK_SPEC_VERSION;
  readonly name: string;
  readonly kind: 'function' | 'command';
  readonly description?: string;
  /** JSON Schema (draft 2020-12) of the inputs a caller passes. */
  readonly inputSchema: JsonSchema;
  /** JSON Schema (draft 2020-12) of the outputs as stored after validation. */
  readonly outputSchema: JsonSchema;
  readonly retries: ResolvedRetryPolicy;
  /** Per attempt. */
  readonly timeoutMs: number;
  readonly resources: ResolvedResources;
  /** Command tasks only: how outputs are read. Environment variable names only, never values. */
  readonly command?: CommandSpec;
  /** The SDK that built the spec. */
  readonly sdkVersion: string;
}

/** The command part of a TaskSpec. */
export interface CommandSpec {
  readonly outputsFrom: 'stdout-json' | 'stdout-text' | 'files';
  /** For `files`: output field → file path relative to the working directory, and its format. */
  readonly outputFiles?: Readonly<Record<string, { readonly path: string; readonly format: 'text' | 'json' }>>;
  readonly envNames: readonly string[];
}

/** The options of task() and commandTask() shared by both. */
export interface TaskOptions<I extends StandardSchemaV1, O extends StandardSchemaV1> {
  /** Unique within a project: letters, digits, `_`, `-`, `.`; starting with a letter; at most 128 characters. */
  readonly name: string;
  readonly description?: string;
  /** A Standard Schema validator (zod 4, valibot, arktype) for the inputs; usually an object schema. */
  readonly inputs: I;
  /** A Standard Schema validator for the outputs, checked before outputs are stored. */
  readonly outputs: O;
  /** Retries after a retryable failure: a count, or RetryOptions. @default 0 */
  readonly retries?: number | RetryOptions;
  /** Per attempt. @default '1h' */
  readonly timeout?: Duration;
  readonly resources?: ResourceOptions;
  /** JSON Schemas to store instead of the validator's own, for validators without a Standard JSON Schema converter. */
  readonly jsonSchema?: { readonly inputs?: JsonSchema; readonly outputs?: JsonSchema };
}

/** A task's code: gets the validated inputs, returns outputs (validated before they are stored). */
export type TaskHandler<I extends StandardSchemaV1, O extends StandardSchemaV1> = (
  inputs: StandardSchemaV1.InferOutput<I>,
  ctx: TaskContext,
) => StandardSchemaV1.InferInput<O> | Promise<StandardSchemaV1.InferInput<O>>;

/** A defined task. Export it from a module; callers import its type with `import type`. */
export interface Task<I extends StandardSchemaV1 = StandardSchemaV1, O extends StandardSchemaV1 = StandardSchemaV1> {
  readonly [TASK_MARK]: true;
  readonly name: string;
  readonly spec: TaskSpec;
  readonly inputs: I;
  readonly outputs: O;
  /** The implementation, called by executeTask with validated inputs; do not call it directly. */
  readonly handler: TaskHandler<I, O>;
}

/** Any task, whatever its schemas. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- handler parameters are contravariant; any is what lets every Task<I, O> fit
export type AnyTask = Task<any, any>;

/** The inputs a caller passes to task T (the input schema's input type). */
export type TaskInputs<T extends AnyTask> = StandardSchemaV1.InferInput<T['inputs']>;
/** The inputs T's code receives after validation (defaults applied, transforms run). */
export type TaskParsedInputs<T extends AnyTask> = StandardSchemaV1.InferOutput<T['inputs']>;
/** The outputs a caller reads from a finished run of task T. */
export type TaskOutputs<T extends AnyTask> = StandardSchemaV1.InferOutput<T['outputs']>;

/**
 * Defines a function task.
 *
 * ```ts
 * export const hello = task(
 *   { name: 'hello', inputs: z.object({ name: z.string() }), outputs: z.object({ greeting: z.string() }) },
 *   async ({ name }) => ({ greeting: `Hello, ${name}!` }),
 * );
 * ```
 *
 * Throws TASK_DEFINITION_INVALID for a bad name, retry policy, timeout or resources, and for
 * schemas that are not Standard Schema validators or cannot be expressed as JSON Schema.
 */
export function task<I extends StandardSchemaV1, O extends StandardSchemaV1>(options: TaskOptions<I, O>, handler: TaskHandler<I, O>): Task<I, O> {
  if (typeof handler !== 'function') throw new AirlockError('TASK_DEFINITION_INVALID', 'task: the second argument must be the task function');
  return defineTask(options, 'function', undefined, handler);
}

/** Builds a task object for task() and commandTask(). */
export function defineTask<I extends StandardSchemaV1, O extends StandardSchemaV1>(
  options: TaskOptions<I, O>,
  kind: TaskSpec['kind'],
  command: CommandSpec | undefined,
  handler: TaskHandler<I, O>,
): Task<I, O> {
  if (typeof options !== 'object' || options === null) throw new AirlockError('TASK_DEFINITION_INVALID', 'task: options must be an object');
  const { name, description } = options;
  if (typeof name !== 'string' || !/^[A-Za-z][A-Za-z0-9_.-]{0,127}$/.test(name)) {
    throw new AirlockError('TASK_DEFINITION_INVALID', 'task name must start with a letter and contain only letters, digits, "_", "-" and "." (at most 128 characters)');
  }
  if (description !== undefined && typeof description !== 'string') throw new AirlockError('TASK_DEFINITION_INVALID', `task "${name}": description must be a string`);
  if (!isStandardSchema(options.inputs)) throw new AirlockError('TASK_DEFINITION_INVALID', `task "${name}": inputs must be a Standard Schema validator (e.g. a zod 4 schema)`);
  if (!isStandardSchema(options.outputs)) throw new AirlockError('TASK_DEFINITION_INVALID', `task "${name}": outputs must be a Standard Schema validator (e.g. a zod 4 schema)`);
  const spec: TaskSpec = {
    specVersion: TASK_SPEC_VERSION,
    name,
    kind,
    ...(description === undefined ? {} : { description }),
    inputSchema: jsonSchemaOf(options.inputs, 'input', 'inputs', options.jsonSchema?.inputs),
    outputSchema: jsonSchemaOf(options.outputs, 'output', 'outputs', options.jsonSchema?.outputs),
    retries: withName(name, () => resolveRetryPolicy(options.retries)),
    timeoutMs: withName(name, () => durationMs(options.timeout ?? '1h', 'timeout')),
    resources: withName(name, () => resolveResources(options.resources)),
    ...(command === undefined ? {} : { command }),
    sdkVersion: SDK_VERSION,
  };
  return Object.freeze({ [TASK_MARK]: true as const, name, spec: Object.freeze(spec), inputs: options.inputs, outputs: options.outputs, handler });
}

/** True when `value` is a task made by task() or commandTask() (by any copy of the SDK). */
export function isTask(value: unknown): value is AnyTask {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[TASK_MARK] === true;
}

/**
 * Validates a caller's inputs against the task's input schema, as the executor will, and returns
 * them as the task's code will see them. The CLI calls this before anything leaves the client.
 * Throws TaskValidationError (TASK_INPUT_INVALID) naming every field at fault, also for values
 * JSON cannot carry.
 */
export async function validateInputs<T extends AnyTask>(task: T, inputs: unknown): Promise<TaskParsedInputs<T>> {
  const notJson = jsonIssue(inputs);
  if (notJson !== undefined) throw new TaskValidationError('TASK_INPUT_INVALID', task.name, [notJson]);
  const outcome = await validateWithSchema(task.inputs, inputs);
  if (!outcome.ok) throw new TaskValidationError('TASK_INPUT_INVALID', task.name, outcome.issues);
  return outcome.value as TaskParsedInputs<T>;
}

/**
 * Validates what a task's code returned against its output schema and returns the outputs to
 * store, which must be JSON. Throws TaskValidationError (TASK_OUTPUT_INVALID) naming every field at fault.
 */
export async function validateOutputs<T extends AnyTask>(task: T, outputs: unknown): Promise<TaskOutputs<T>> {
  const outcome = await validateWithSchema(task.outputs, outputs);
  if (!outcome.ok) throw new TaskValidationError('TASK_OUTPUT_INVALID', task.name, outcome.issues);
  const notJson = jsonIssue(outcome.value);
  if (notJson !== undefined) throw new TaskValidationError('TASK_OUTPUT_INVALID', task.name, [notJson]);
  return outcome.value as TaskOutputs<T>;
}

/** The SHA-256 (hex) of a spec's canonical JSON. A task version is derived from it and the bundle digest. */
export function taskSpecDigest(spec: TaskSpec): string {
  return createHash('sha256').update('airlock/v1/task-spec\n').update(canonicalJson(spec)).digest('hex');
}

const MEMORY_UNITS = { Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3 } as const;

function resolveResources(resources: ResourceOptions | undefined): ResolvedResources {
  if (resources === undefined) return Object.freeze({});
  if (typeof resources !== 'object' || resources === null) throw new AirlockError('TASK_DEFINITION_INVALID', 'resources must be an object');
  const out: { cpu?: number; memoryBytes?: number } = {};
  if (resources.cpu !== undefined) {
    if (typeof resources.cpu !== 'number' || !(resources.cpu > 0 && resources.cpu <= 1024)) throw new AirlockError('TASK_DEFINITION_INVALID', 'resources.cpu must be a number of cores above 0');
    out.cpu = resources.cpu;
  }
  if (resources.memory !== undefined) {
    let bytes: number;
    if (typeof resources.memory === 'number') {
      bytes = resources.memory;
    } else {
      const match = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi)$/.exec(typeof resources.memory === 'string' ? resources.memory : '');
      if (match === null) throw new AirlockError('TASK_DEFINITION_INVALID', "resources.memory must be bytes or a string such as '512Mi' or '2Gi'");
      bytes = Number(match[1]) * MEMORY_UNITS[match[2] as keyof typeof MEMORY_UNITS];
    }
    if (!Number.isFinite(bytes) || bytes < 1) throw new AirlockError('TASK_DEFINITION_INVALID', 'resources.memory must be at least 1 byte');
    out.memoryBytes = Math.ceil(bytes);
  }
  return Object.freeze(out);
}

/** Prefixes a definition error with the task's name. */
function withName<T>(name: string, build: () => T): T {
  try {
    return build();
  } catch (error) {
    if (AirlockError.is(error, 'TASK_DEFINITION_INVALID')) throw new AirlockError('TASK_DEFINITION_INVALID', `task "${name}": ${error.message}`);
    throw error;
  }
}
