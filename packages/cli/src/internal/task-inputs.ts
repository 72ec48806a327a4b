// A run's inputs from the command line (`--input k=v`, `--inputs file.json`), converted by the task's input JSON Schema and validated before anything leaves the machine.
import { readFile } from 'node:fs/promises';
import { Ajv2020, type ErrorObject } from 'ajv/dist/2020.js';
import { AirlockError, failureReason } from '@airlock/common';

type JsonSchema = Readonly<Record<string, unknown>>;

/** The JSON Schema types a property accepts (`type` as a string or a list; none means any). */
function typesOf(schema: unknown): readonly string[] {
  if (typeof schema !== 'object' || schema === null) return [];
  const type = (schema as JsonSchema).type;
  if (typeof type === 'string') return [type];
  if (Array.isArray(type)) return type.filter((t): t is string => typeof t === 'string');
  // zod writes optional and nullable fields as anyOf; take the types of every branch.
  const branches = (schema as JsonSchema).anyOf ?? (schema as JsonSchema).oneOf;
  return Array.isArray(branches) ? branches.flatMap(typesOf) : [];
}

/**
 * One `--input key=value`: the value is taken as the property's schema type asks. A string property
 * gets the text as is; a number, integer or boolean property gets it parsed; an object or array
 * property (or a property the schema does not describe) gets it parsed as JSON, falling back to
 * the text when it is not JSON. `key` may be a dotted path into nested objects.
 */
function convertValue(schema: JsonSchema, path: readonly string[], raw: string): unknown {
  let node: unknown = schema;
  for (const segment of path) {
    const properties = typeof node === 'object' && node !== null ? (node as JsonSchema).properties : undefined;
    node = typeof properties === 'object' && properties !== null ? (properties as JsonSchema)[segment] : undefined;
  }
  const types = typesOf(node);
  if (types.includes('string') && !types.some((t) => t !== 'string' && t !== 'null')) return raw;
  if (types.length > 0 && types.every((t) => t === 'number' || t === 'integer' || t === 'null') && /^-?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(raw)) return Number(raw);
  if (types.includes('boolean') && (raw === 'true' || raw === 'false')) return raw === 'true';
  try {
    return JSON.parse(raw) as unknown;
  } catch {
    return raw;
  }
}

function setPath(target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let node = target;
  for (const segment of path.slice(0, -1)) {
    const next = node[segment];
    if (typeof next !== 'object' || next === null || Array.isArray(next)) node[segment] = {};
    node = node[segment] as Record<string, unknown>;
  }
  node[path.at(-1) as string] = value;
}

const UNSAFE_KEYS = new Set(['__proto__', 'prototype', 'constructor']);

/** The inputs object from `--inputs <file>` (JSON) and any number of `--input key=value`, the latter applied on top. */
export async function collectInputs(schema: JsonSchema, pairs: readonly string[], inputsFile: string | undefined): Promise<Record<string, unknown>> {
  let inputs: Record<string, unknown> = {};
  if (inputsFile !== undefined) {
    let text: string;
    try {
      text = inputsFile === '-' ? await readStdin() : await readFile(inputsFile, 'utf8');
    } catch (error) {
      throw new AirlockError('INVALID_ARGUMENT', `Cannot read --inputs ${inputsFile}: ${failureReason(error)}`, { details: { argument: 'inputs' } });
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      throw new AirlockError('INVALID_ARGUMENT', `--inputs ${inputsFile} is not JSON: ${failureReason(error)}`, { details: { argument: 'inputs' } });
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new AirlockError('INVALID_ARGUMENT', `--inputs ${inputsFile} must hold a JSON object`, { details: { argument: 'inputs' } });
    }
    inputs = parsed as Record<string, unknown>;
  }
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new AirlockError('INVALID_ARGUMENT', `--input ${pair}: expected key=value`, { details: { argument: 'input' } });
    const path = pair.slice(0, eq).split('.');
    if (path.some((segment) => segment.length === 0 || UNSAFE_KEYS.has(segment))) {
      throw new AirlockError('INVALID_ARGUMENT', `--input ${pair.slice(0, eq)}: not a usable key`, { details: { argument: 'input' } });
    }
    setPath(inputs, path, convertValue(schema, path, pair.slice(eq + 1)));
  }
  return inputs;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function describeIssue(error: ErrorObject): string {
  const path = error.instancePath.length === 0 ? '' : error.instancePath.slice(1).replaceAll('/', '.');
  if (error.keyword === 'required') {
    const missing = String((error.params as { missingProperty?: unknown }).missingProperty);
    return `${path.length === 0 ? missing : `${path}.${missing}`}: required`;
  }
  if (error.keyword === 'additionalProperties') {
    const extra = String((error.params as { additionalProperty?: unknown }).additionalProperty);
    return `${path.length === 0 ? extra : `${path}.${extra}`}: not an input of this task`;
  }
  return `${path.length === 0 ? '(inputs)' : path}: ${error.message ?? error.keyword}`;
}

/**
 * Checks `inputs` against the task's input JSON Schema (draft 2020-12, as the SDK writes it).
 * Throws TASK_INPUT_INVALID naming each field that fails in its message.
 */
export function validateInputsAgainstSchema(schema: JsonSchema, inputs: unknown, taskName: string): void {
  const ajv = new Ajv2020({ allErrors: true, strict: false, validateFormats: false });
  let validate;
  try {
    validate = ajv.compile(schema);
  } catch (error) {
    throw new AirlockError('TASK_DEFINITION_INVALID', `The input schema of task "${taskName}" is not valid JSON Schema: ${failureReason(error)}`);
  }
  if (validate(inputs)) return;
  const issues = (validate.errors ?? []).map(describeIssue);
  throw new AirlockError('TASK_INPUT_INVALID', `Invalid inputs for task "${taskName}": ${issues.join('; ')}`, { details: { argument: 'inputs', issues: issues.length } });
}
