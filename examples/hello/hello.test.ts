// Unit tests of the hello example through the SDK's local harness.
import { taskSpecDigest, type TaskInputs, type TaskOutputs } from '@airlock/sdk';
import { runTaskLocally } from '@airlock/sdk/testing';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { hello } from './hello.js';

describe('examples/hello', () => {
  it('greets by name', async () => {
    const result = await runTaskLocally(hello, { name: 'World' });
    expect(result).toMatchObject({ ok: true, outputs: { greeting: 'Hello, World!' } });
  });

  it('refuses an empty name, naming the field', async () => {
    const result = await runTaskLocally(hello, { name: '' });
    expect(result).toMatchObject({ ok: false, phase: 'FAILED', error: { code: 'TASK_INPUT_INVALID', kind: 'USER', issues: [{ path: ['name'] }] } });
  });

  it('stores a spec with the JSON Schema of its inputs and outputs', () => {
    expect(hello.spec).toMatchObject({
      name: 'hello',
      kind: 'function',
      timeoutMs: 30_000,
      inputSchema: { type: 'object', properties: { name: { type: 'string', minLength: 1, description: 'Who to greet' } }, required: ['name'] },
      outputSchema: { type: 'object', properties: { greeting: { type: 'string' } }, required: ['greeting'] },
    });
    expect(taskSpecDigest(hello.spec)).toMatch(/^[0-9a-f]{64}$/);
  });

  it('gives callers its types', () => {
    expectTypeOf<TaskInputs<typeof hello>>().toEqualTypeOf<{ name: string }>();
    expectTypeOf<TaskOutputs<typeof hello>>().toEqualTypeOf<{ greeting: string }>();
  });
});
