// Tests for task(): the stored spec, definition errors, input/output validation that names fields, and the exported types.
import { readFileSync } from 'node:fs';
import type { StandardSchemaV1 } from '@standard-schema/spec';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { z } from 'zod';
import { TaskValidationError } from './errors.js';
import { task, taskSpecDigest, validateInputs, validateOutputs, type TaskInputs, type TaskOutputs, type TaskParsedInputs } from './task.js';
import { SDK_VERSION } from './version.js';

const greet = task(
  {
    name: 'greet',
    description: 'Greets someone.',
    inputs: z.object({ name: z.string().min(1), times: z.number().int().positive().default(1), tags: z.array(z.object({ key: z.string() })).optional() }),
    outputs: z.object({ greeting: z.string() }),
    retries: { limit: 2, initialDelay: '10ms' },
    timeout: '30s',
    resources: { cpu: 0.5, memory: '256Mi' },
  },
  async ({ name, times }) => ({ greeting: `Hello, ${name}!`.repeat(times) }),
);

/** A Standard Schema validator without a JSON Schema converter, as older validators are. */
function bareSchema<T>(check: (value: unknown) => value is T): StandardSchemaV1<T> {
  return {
    '~standard': {
      version: 1,
      vendor: 'hand-written',
      validate: (value) => (check(value) ? { value } : { issues: [{ message: 'Bad value', path: [{ key: 'field' }] }] }),
    },
  };
}
const isObject = (value: unknown): value is object => typeof value === 'object' && value !== null;

describe('task spec', () => {
  it('holds the JSON Schemas, retry policy, timeout, resources and versions', () => {
    const { spec } = greet;
    expect(spec).toMatchObject({
      specVersion: 1,
      name: 'greet',
      kind: 'function',
      description: 'Greets someone.',
      retries: { limit: 2, initialDelayMs: 10, maxDelayMs: 60_000, factor: 2, jitter: 0.5 },
      timeoutMs: 30_000,
      resources: { cpu: 0.5, memoryBytes: 256 * 1024 * 1024 },
      sdkVersion: SDK_VERSION,
    });
    expect(spec.inputSchema).toMatchObject({
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      type: 'object',
      properties: { name: { type: 'string', minLength: 1 }, times: { type: 'integer', default: 1 } },
      required: ['name'],
    });
    expect(spec.outputSchema).toMatchObject({ type: 'object', required: ['greeting'] });
  });

  it('is plain JSON: it survives a round trip unchanged and is frozen', () => {
    expect(JSON.parse(JSON.stringify(greet.spec))).toEqual(greet.spec);
    expect(Object.isFrozen(greet.spec)).toBe(true);
    expect(Object.isFrozen(greet.spec.inputSchema)).toBe(true);
  });

  it('has a digest that changes with the spec and not with key order', () => {
    const reordered = Object.fromEntries(Object.entries(greet.spec).reverse()) as unknown as typeof greet.spec;
    expect(Object.keys(reordered)[0]).not.toBe(Object.keys(greet.spec)[0]);
    expect(taskSpecDigest(reordered)).toBe(taskSpecDigest(greet.spec));
    expect(taskSpecDigest({ ...greet.spec, timeoutMs: 1 })).not.toBe(taskSpecDigest(greet.spec));
    expect(taskSpecDigest(greet.spec)).toMatch(/^[0-9a-f]{64}$/);
  });

  it('defaults to no retries and a one-hour timeout', () => {
    const bare = task({ name: 'bare', inputs: z.object({}), outputs: z.object({}) }, () => ({}));
    expect(bare.spec.retries.limit).toBe(0);
    expect(bare.spec.timeoutMs).toBe(3_600_000);
    expect(bare.spec.resources).toEqual({});
  });

  it('records the SDK version of package.json', () => {
    const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
    expect(SDK_VERSION).toBe(manifest.version);
  });

  it('takes JSON Schemas from the options for a validator without a converter', () => {
    const custom = task(
      { name: 'custom', inputs: bareSchema(isObject), outputs: bareSchema(isObject), jsonSchema: { inputs: { type: 'object' }, outputs: { type: 'object' } } },
      () => ({}),
    );
    expect(custom.spec.inputSchema).toEqual({ type: 'object' });
  });
});

describe('task definition errors', () => {
  const inputs = z.object({ x: z.string() });
  const outputs = z.object({});
  it.each([
    ['an empty name', () => task({ name: '', inputs, outputs }, () => ({}))],
    ['a name with a space', () => task({ name: 'a b', inputs, outputs }, () => ({}))],
    ['a name starting with a digit', () => task({ name: '1task', inputs, outputs }, () => ({}))],
    ['a schema that is not a Standard Schema', () => task({ name: 't', inputs: { parse: () => 1 } as never, outputs }, () => ({}))],
    ['inputs JSON cannot carry (a Date)', () => task({ name: 't', inputs: z.object({ when: z.date() }), outputs }, () => ({}))],
    ['outputs JSON Schema cannot express (a transform)', () => task({ name: 't', inputs, outputs: z.string().transform((s) => s.length) }, () => '')],
    ['a validator without a JSON Schema converter', () => task({ name: 't', inputs: bareSchema(isObject), outputs }, () => ({}))],
    ['negative retries', () => task({ name: 't', inputs, outputs, retries: -1 }, () => ({}))],
    ['a timeout of 0', () => task({ name: 't', inputs, outputs, timeout: 0 }, () => ({}))],
    ['a malformed memory size', () => task({ name: 't', inputs, outputs, resources: { memory: '1GB' as never } }, () => ({}))],
    ['zero CPUs', () => task({ name: 't', inputs, outputs, resources: { cpu: 0 } }, () => ({}))],
    ['a missing function', () => task({ name: 't', inputs, outputs }, undefined as never)],
  ])('refuses %s with TASK_DEFINITION_INVALID', (_what, define) => {
    expect(define).toThrowError(expect.objectContaining({ code: 'TASK_DEFINITION_INVALID' }));
  });

  it('names the task in the message', () => {
    expect(() => task({ name: 'named', inputs, outputs, retries: -1 }, () => ({}))).toThrowError(/task "named"/);
  });
});

describe('validateInputs and validateOutputs', () => {
  it('returns the parsed inputs with defaults applied', async () => {
    await expect(validateInputs(greet, { name: 'Ada' })).resolves.toEqual({ name: 'Ada', times: 1 });
  });

  it('throws TASK_INPUT_INVALID naming each field at fault', async () => {
    const error = await validateInputs(greet, { name: '', times: 1.5, tags: [{ key: 'ok' }, { key: 7 }] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TaskValidationError);
    expect(error).toMatchObject({ code: 'TASK_INPUT_INVALID', retryable: false });
    const issues = (error as TaskValidationError).issues.map((issue) => issue.path);
    expect(issues).toEqual(expect.arrayContaining([['name'], ['times'], ['tags', 1, 'key']]));
    expect((error as Error).message).toContain('tags[1].key');
    expect((error as Error).message).toContain('greet');
  });

  it('names a missing field', async () => {
    const error = (await validateInputs(greet, {}).catch((e: unknown) => e)) as TaskValidationError;
    expect(error.issues).toEqual([expect.objectContaining({ path: ['name'] })]);
  });

  it('refuses inputs that JSON cannot carry, even if the schema would accept them', async () => {
    const loose = task({ name: 'loose', inputs: z.any(), outputs: z.any(), jsonSchema: { outputs: {} } }, (x: unknown) => x);
    await expect(validateInputs(loose, { when: new Date() })).rejects.toMatchObject({ code: 'TASK_INPUT_INVALID' });
    await expect(validateInputs(loose, { ok: 1 })).resolves.toEqual({ ok: 1 });
  });

  it('throws TASK_OUTPUT_INVALID for outputs that do not match, or that are not JSON', async () => {
    await expect(validateOutputs(greet, { greeting: 3 })).rejects.toMatchObject({ code: 'TASK_OUTPUT_INVALID', issues: [expect.objectContaining({ path: ['greeting'] })] });
    const loose = task({ name: 'loose', inputs: z.object({}), outputs: z.any(), jsonSchema: { outputs: {} } }, () => new Map());
    await expect(validateOutputs(loose, new Map())).rejects.toMatchObject({ code: 'TASK_OUTPUT_INVALID' });
  });

  it('works with any Standard Schema validator', async () => {
    const custom = task({ name: 'custom', inputs: bareSchema(isObject), outputs: bareSchema(isObject), jsonSchema: { inputs: {}, outputs: {} } }, () => ({}));
    await expect(validateInputs(custom, 'nope')).rejects.toMatchObject({ code: 'TASK_INPUT_INVALID', issues: [{ path: ['field'], message: 'Bad value' }] });
  });
});

describe('types', () => {
  it('gives callers the input and output types of a task', () => {
    expectTypeOf<TaskInputs<typeof greet>>().toEqualTypeOf<{ name: string; times?: number | undefined; tags?: { key: string }[] | undefined }>();
    expectTypeOf<TaskParsedInputs<typeof greet>>().toEqualTypeOf<{ name: string; times: number; tags?: { key: string }[] | undefined }>();
    expectTypeOf<TaskOutputs<typeof greet>>().toEqualTypeOf<{ greeting: string }>();
  });

  it('checks the handler against the schemas', () => {
    // @ts-expect-error the handler must return the output type
    task({ name: 'wrong', inputs: z.object({}), outputs: z.object({ n: z.number() }) }, () => ({ n: 'not a number' }));
    // @ts-expect-error the inputs have no such field
    task({ name: 'wrong', inputs: z.object({ a: z.string() }), outputs: z.object({}) }, ({ b }) => ({ b }));
  });
});
