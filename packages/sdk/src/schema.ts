// Standard Schema plumbing: validating values with any Standard Schema validator and exporting their JSON Schema.
import type { StandardJSONSchemaV1, StandardSchemaV1 } from '@standard-schema/spec';
import { AirlockError } from '@airlock/common/errors';
import type { SchemaIssue } from './errors.js';
import { canonicalJson } from './internal/canonical-json.js';

/** A JSON Schema document (draft 2020-12), as stored in a task spec. */
export type JsonSchema = Readonly<Record<string, unknown>>;

/** The JSON Schema dialect the SDK asks validators for. */
export const JSON_SCHEMA_TARGET = 'draft-2020-12';

/** The outcome of validating a value: the validator's (possibly transformed) value, or the issues. */
export type ValidationOutcome<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly issues: readonly SchemaIssue[] };

/** True when `value` implements Standard Schema v1 (zod ≥ 3.24, valibot ≥ 1, arktype ≥ 2, …). */
export function isStandardSchema(value: unknown): value is StandardSchemaV1 {
  const props = (value as { '~standard'?: unknown } | null | undefined)?.['~standard'];
  return typeof props === 'object' && props !== null && (props as { version?: unknown }).version === 1 && typeof (props as { validate?: unknown }).validate === 'function';
}

/** Validates `value` with a Standard Schema validator; issue paths are normalised to keys and indices. */
export async function validateWithSchema<S extends StandardSchemaV1>(schema: S, value: unknown): Promise<ValidationOutcome<StandardSchemaV1.InferOutput<S>>> {
  const result = await schema['~standard'].validate(value);
  if (result.issues === undefined) return { ok: true, value: result.value as StandardSchemaV1.InferOutput<S> };
  const issues = result.issues.map((issue) => ({
    path: (issue.path ?? []).map((segment) => pathKey(typeof segment === 'object' ? segment.key : segment)),
    message: issue.message,
  }));
  // A validator that reports failure must say why; an empty list would make an error that names nothing.
  return { ok: false, issues: issues.length > 0 ? issues : [{ path: [], message: 'Invalid value' }] };
}

/**
 * Where `value` holds something JSON cannot carry (a Date, a Map, undefined in an array, NaN),
 * as an issue; undefined when it is plain JSON. Task inputs and outputs travel and are stored as JSON.
 */
export function jsonIssue(value: unknown): SchemaIssue | undefined {
  try {
    canonicalJson(value);
    return undefined;
  } catch (error) {
    return { path: [], message: AirlockError.is(error) ? error.message : 'Not JSON' };
  }
}

/**
 * The JSON Schema of a validator's input or output type, from its Standard JSON Schema converter
 * (`~standard.jsonSchema`, as recent zod 4 releases implement it), or `override` when given. Throws
 * TASK_DEFINITION_INVALID naming `what` when neither is available, or when the validator cannot
 * express the type in JSON Schema (a Date, a transform): such a value could not be sent as JSON.
 */
export function jsonSchemaOf(schema: StandardSchemaV1, io: 'input' | 'output', what: string, override?: JsonSchema): JsonSchema {
  if (override !== undefined) {
    if (typeof override !== 'object' || override === null || Array.isArray(override)) throw new AirlockError('TASK_DEFINITION_INVALID', `${what}: the JSON Schema given must be an object`);
    return deepFreeze(JSON.parse(canonicalJson(override)) as JsonSchema);
  }
  const converter = (schema['~standard'] as Partial<StandardJSONSchemaV1.Props>).jsonSchema;
  if (converter === undefined || typeof converter[io] !== 'function') {
    throw new AirlockError(
      'TASK_DEFINITION_INVALID',
      `${what}: the validator (${schema['~standard'].vendor}) has no Standard JSON Schema converter (~standard.jsonSchema); use a recent zod 4, or pass jsonSchema.${what} explicitly`,
    );
  }
  let document: Record<string, unknown>;
  try {
    document = converter[io]({ target: JSON_SCHEMA_TARGET });
  } catch (error) {
    throw new AirlockError('TASK_DEFINITION_INVALID', `${what}: the schema cannot be expressed as JSON Schema (${error instanceof Error ? error.message : String(error)}); task inputs and outputs must be JSON`, { cause: error });
  }
  return deepFreeze(JSON.parse(canonicalJson(document)) as JsonSchema);
}

function pathKey(key: PropertyKey): string | number {
  return typeof key === 'symbol' ? String(key) : key;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const item of Object.values(value)) deepFreeze(item);
    Object.freeze(value);
  }
  return value;
}
