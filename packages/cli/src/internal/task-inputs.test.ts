// Tests for --input/--inputs conversion by the task's JSON Schema and validation before anything leaves the client.
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { AirlockError } from '@airlock/common';
import { collectInputs, validateInputsAgainstSchema } from './task-inputs.js';

const schema = z.toJSONSchema(
  z.object({
    name: z.string().min(1),
    count: z.number().int().optional(),
    loud: z.boolean().default(false),
    tags: z.array(z.string()).optional(),
    nested: z.object({ level: z.number() }).optional(),
    code: z.string().optional(),
  }),
  { target: 'draft-2020-12', io: 'input' },
) as Record<string, unknown>;

describe('collectInputs', () => {
  it('converts each --input by the property type the schema gives', async () => {
    const inputs = await collectInputs(schema, ['name=World', 'count=3', 'loud=true', 'tags=["a","b"]', 'nested.level=2.5', 'code=007'], undefined);
    expect(inputs).toEqual({ name: 'World', count: 3, loud: true, tags: ['a', 'b'], nested: { level: 2.5 }, code: '007' });
  });

  it('keeps a string property a string even when it looks like JSON, and keeps "=" in values', async () => {
    expect(await collectInputs(schema, ['name=42'], undefined)).toEqual({ name: '42' });
    expect(await collectInputs(schema, ['name=a=b'], undefined)).toEqual({ name: 'a=b' });
  });

  it('reads --inputs as a JSON object and applies --input on top', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'airlock-inputs-'));
    const file = join(dir, 'in.json');
    await writeFile(file, JSON.stringify({ name: 'file', count: 1 }));
    expect(await collectInputs(schema, ['count=2'], file)).toEqual({ name: 'file', count: 2 });
    await writeFile(file, '[1,2]');
    await expect(collectInputs(schema, [], file)).rejects.toThrow(/must hold a JSON object/);
    await writeFile(file, '{oops');
    await expect(collectInputs(schema, [], file)).rejects.toThrow(/is not JSON/);
  });

  it('refuses pairs without a key and prototype keys', async () => {
    await expect(collectInputs(schema, ['=x'], undefined)).rejects.toThrow(/expected key=value/);
    await expect(collectInputs(schema, ['novalue'], undefined)).rejects.toThrow(/expected key=value/);
    await expect(collectInputs(schema, ['__proto__.polluted=1'], undefined)).rejects.toThrow(/not a usable key/);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe('validateInputsAgainstSchema', () => {
  it('accepts valid inputs', () => {
    expect(() => validateInputsAgainstSchema(schema, { name: 'x' }, 'hello')).not.toThrow();
  });

  it('refuses invalid inputs with TASK_INPUT_INVALID naming every field', () => {
    let caught: unknown;
    try {
      validateInputsAgainstSchema(schema, { count: 'three', nested: { level: 'high' } }, 'hello');
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(AirlockError);
    const error = caught as AirlockError;
    expect(error.code).toBe('TASK_INPUT_INVALID');
    expect(error.message).toContain('name: required');
    expect(error.message).toContain('count:');
    expect(error.message).toContain('nested.level:');
    expect(error.message).toContain('"hello"');
  });

  it('refuses an empty string where the schema asks for at least one character', () => {
    expect(() => validateInputsAgainstSchema(schema, { name: '' }, 'hello')).toThrow(/name: must NOT have fewer than 1 characters/);
  });
});
