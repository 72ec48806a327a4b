// Unit tests for configuration helpers: deep freezing of resolved configs and CONFIG_INVALID errors that never quote values.
import { describe, expect, it } from 'vitest';
import { configCheck, configError, freezeConfig } from './config.js';
import { AirlockError } from './errors.js';

/** A unique option value: finding it in a message means a (possibly secret) value leaked. */
const CANARY = 'CANARY-9f2c-option-value';

/** Runs `fn`, which must throw, and returns what it threw. */
function thrownBy(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error('expected a throw');
}

function expectConfigInvalid(error: unknown, option: string): AirlockError {
  expect(error).toBeInstanceOf(AirlockError);
  const airlockError = error as AirlockError;
  expect(airlockError.code).toBe('CONFIG_INVALID');
  expect(airlockError.details).toEqual({ option });
  return airlockError;
}

describe('freezeConfig', () => {
  it('freezes the object and everything inside it, returning the same object', () => {
    const config = {
      name: 'dp-1',
      limits: { maxBytes: 10, nested: { deeper: { timeoutMs: 5 } } },
      endpoints: [{ url: 'https://kms.test' }, { url: 'https://s3.test' }],
      tags: new Map([['a', 'b']]),
    };
    const frozen = freezeConfig(config);
    expect(frozen).toBe(config);
    for (const value of [config, config.limits, config.limits.nested, config.limits.nested.deeper, config.endpoints, config.endpoints[0], config.endpoints[1]]) {
      expect(Object.isFrozen(value)).toBe(true);
    }
    // ES modules run in strict mode, so writes to frozen objects throw rather than fail silently.
    const writable = config as { limits: { nested: { deeper: { timeoutMs: number } } }; endpoints: unknown[] };
    expect(() => {
      writable.limits.nested.deeper.timeoutMs = 0;
    }).toThrow(TypeError);
    expect(() => writable.endpoints.push({ url: 'https://evil.test' })).toThrow(TypeError);
    expect(config.limits.nested.deeper.timeoutMs).toBe(5);
  });

  it('leaves primitives alone', () => {
    expect(freezeConfig(3)).toBe(3);
    expect(freezeConfig('text')).toBe('text');
    expect(freezeConfig(null)).toBeNull();
    expect(freezeConfig(undefined)).toBeUndefined();
  });

  it('leaves binary buffers usable, so key material can still be zeroed', () => {
    const key = new Uint8Array([1, 2, 3, 4]);
    const salt = Buffer.from('salt');
    const view = new DataView(new ArrayBuffer(4));
    const config = freezeConfig({ key, crypto: { salt, view } });
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.crypto)).toBe(true);
    expect(config.key).toBe(key);
    expect(Object.isFrozen(key)).toBe(false);
    key.fill(0);
    expect([...config.key]).toEqual([0, 0, 0, 0]);
    salt[0] = 0;
    expect(config.crypto.salt[0]).toBe(0);
    view.setUint32(0, 7);
    expect(config.crypto.view.getUint32(0)).toBe(7);
  });

  it('leaves functions callable', () => {
    const config = freezeConfig({ now: () => 42 });
    expect(config.now()).toBe(42);
  });
});

describe('configError and configCheck', () => {
  it('configError names the option in details', () => {
    const error = expectConfigInvalid(configError('kms.endpoint', 'must be an https URL'), 'kms.endpoint');
    expect(error.retryable).toBe(false);
  });

  it('integer accepts in-range safe integers and returns them', () => {
    expect(configCheck.integer('tunnel.port', 443, 1, 65_535)).toBe(443);
    expect(configCheck.integer('retries', 0, 0)).toBe(0);
  });

  it.each([
    ['out of range', 70_000],
    ['below the minimum', 0],
    ['fractional', 1.5],
    ['not a number', Number.NaN],
    ['infinite', Number.POSITIVE_INFINITY],
  ])('integer rejects a value that is %s with CONFIG_INVALID', (_case, value) => {
    expectConfigInvalid(
      thrownBy(() => configCheck.integer('tunnel.port', value, 1, 65_535)),
      'tunnel.port',
    );
  });

  it('integer never puts the value in the message', () => {
    const secretNumber = 987_654_321_123;
    const error = expectConfigInvalid(thrownBy(() => configCheck.integer('pool.size', secretNumber, 1, 64)), 'pool.size');
    expect(error.message).not.toContain(String(secretNumber));
  });

  it('oneOf accepts allowed values and rejects others without quoting them', () => {
    expect(configCheck.oneOf('db.kind', 'sqlite', ['sqlite', 'postgres'] as const)).toBe('sqlite');
    const error = expectConfigInvalid(
      thrownBy(() => configCheck.oneOf('db.kind', CANARY, ['sqlite', 'postgres'] as const)),
      'db.kind',
    );
    expect(error.message).not.toContain(CANARY);
  });

  it('nonEmptyString accepts text and rejects empty or non-string values', () => {
    expect(configCheck.nonEmptyString('cluster.name', 'dp-1')).toBe('dp-1');
    expectConfigInvalid(
      thrownBy(() => configCheck.nonEmptyString('cluster.name', '')),
      'cluster.name',
    );
    const error = expectConfigInvalid(
      thrownBy(() => configCheck.nonEmptyString('cluster.name', { toString: () => CANARY } as unknown as string)),
      'cluster.name',
    );
    expect(error.message).not.toContain(CANARY);
  });

  it('never includes the value in the message or the wire form, for any check', () => {
    const hugeNumber = 123_456_789_012_345;
    const failures: Array<[() => unknown, string]> = [
      [() => configCheck.oneOf('auth.mode', `password=${CANARY}`, ['mtls', 'oidc'] as const), CANARY],
      [() => configCheck.integer('limits.bytes', hugeNumber, 0, 1024), String(hugeNumber)],
    ];
    for (const [fail, value] of failures) {
      const error = thrownBy(fail) as AirlockError;
      expect(error.code).toBe('CONFIG_INVALID');
      expect(error.message).not.toContain(value);
      expect(JSON.stringify(error)).not.toContain(value);
    }
  });

  it('freezes nested plain data even inside frozen input, survives cycles, and leaves objects with behaviour alone', () => {
    const inner = { port: 1 };
    const frozenOuter = Object.freeze({ inner });
    freezeConfig(frozenOuter);
    expect(Object.isFrozen(inner)).toBe(true);

    const cyclic: Record<string, unknown> = { name: 'a' };
    cyclic.self = cyclic;
    expect(() => freezeConfig(cyclic)).not.toThrow();
    expect(Object.isFrozen(cyclic)).toBe(true);

    class Destination {
      lines: string[] = [];
      write(line: string): void {
        this.lines.push(line);
      }
    }
    const destination = new Destination();
    const resolved = freezeConfig({ destination, list: [{ a: 1 }] });
    expect(Object.isFrozen(resolved.list[0])).toBe(true);
    expect(Object.isFrozen(destination)).toBe(false);
    destination.write('still works');
    expect(destination.lines).toEqual(['still works']);
  });
});

