// Unit tests for AirlockError: normalisation of anything thrown, the wire form, and the code catalogue.
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, isAirlockErrorCode, type AirlockErrorCode } from './error-codes.js';
import { AirlockError, airlockErrorFromJSON, errorCodeOf, failureReason } from './errors.js';

/** A unique value that must never show up in a message that is safe to send. */
const CANARY = 'CANARY-e7b1-customer-data';

function errnoError(code: string, syscall?: string): NodeJS.ErrnoException {
  const error: NodeJS.ErrnoException = new Error(`${code}: ${CANARY}, ${syscall ?? 'op'} '/data/${CANARY}'`);
  error.code = code;
  if (syscall !== undefined) error.syscall = syscall;
  error.path = `/data/${CANARY}`;
  return error;
}

describe('AirlockError', () => {
  it('carries its code, the catalogue description by default, and the catalogue retryability', () => {
    const error = new AirlockError('DISK_FULL');
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe('AirlockError');
    expect(error.code).toBe('DISK_FULL');
    expect(error.message).toBe(ERROR_CODES.DISK_FULL.description);
    expect(error.retryable).toBe(true);
    expect(new AirlockError('INVALID_ARGUMENT').retryable).toBe(false);
  });

  it('keeps a frozen copy of its details', () => {
    const details = { option: 'kms.endpoint' };
    const error = new AirlockError('CONFIG_INVALID', undefined, { details });
    details.option = 'changed';
    expect(error.details).toEqual({ option: 'kms.endpoint' });
    expect(Object.isFrozen(error.details)).toBe(true);
  });

  it('is() checks the type and, optionally, the code', () => {
    const error = new AirlockError('NOT_FOUND');
    expect(AirlockError.is(error)).toBe(true);
    expect(AirlockError.is(error, 'NOT_FOUND')).toBe(true);
    expect(AirlockError.is(error, 'INTERNAL')).toBe(false);
    expect(AirlockError.is(new Error('x'))).toBe(false);
    expect(AirlockError.is({ code: 'NOT_FOUND' })).toBe(false);
  });
});

describe('AirlockError.from', () => {
  it('passes an AirlockError through unchanged', () => {
    const original = new AirlockError('CIPHERTEXT_AUTH_FAILED');
    expect(AirlockError.from(original)).toBe(original);
    expect(AirlockError.from(original, 'UNAVAILABLE')).toBe(original);
  });

  it.each<[string, AirlockErrorCode]>([
    ['ENOSPC', 'DISK_FULL'],
    ['EDQUOT', 'DISK_FULL'],
    ['EACCES', 'PERMISSION_DENIED'],
    ['EPERM', 'PERMISSION_DENIED'],
    ['EROFS', 'PERMISSION_DENIED'],
    ['ENOENT', 'NOT_FOUND'],
    ['EEXIST', 'ALREADY_EXISTS'],
    ['ETIMEDOUT', 'TIMEOUT'],
    ['ECONNREFUSED', 'UNAVAILABLE'],
    ['ECONNRESET', 'UNAVAILABLE'],
    ['EPIPE', 'UNAVAILABLE'],
    ['EADDRINUSE', 'UNAVAILABLE'],
    ['EADDRNOTAVAIL', 'UNAVAILABLE'],
    ['EMFILE', 'UNAVAILABLE'],
    ['ENFILE', 'UNAVAILABLE'],
  ])('maps errno %s to %s, keeping the errno and syscall but not the foreign message', (errno, code) => {
    const cause = errnoError(errno, 'write');
    const error = AirlockError.from(cause);
    expect(error.code).toBe(code);
    expect(error.details).toEqual({ errno, syscall: 'write' });
    expect(error.cause).toBe(cause);
    expect(error.message).not.toContain(CANARY);
    expect(JSON.stringify(error.details)).not.toContain(CANARY);
  });

  it('maps a real EADDRINUSE from listen() to UNAVAILABLE naming the address and port', async () => {
    const { createServer } = await import('node:net');
    const first = createServer();
    await new Promise<void>((resolve) => first.listen(0, '127.0.0.1', resolve));
    const port = (first.address() as { port: number }).port;
    const second = createServer();
    const cause = await new Promise<unknown>((resolve) => {
      second.once('error', resolve);
      second.listen(port, '127.0.0.1');
    });
    await new Promise<void>((resolve) => first.close(() => resolve()));
    const error = AirlockError.from(cause);
    expect(error.code).toBe('UNAVAILABLE');
    expect(error.details).toEqual({ errno: 'EADDRINUSE', syscall: 'listen' });
    expect(error.message).toContain(`127.0.0.1:${port}`);
  });

  it('says what to raise when a process runs out of descriptors (EMFILE) or the system does (ENFILE)', () => {
    expect(AirlockError.from(errnoError('EMFILE', 'open')).message).toMatch(/descriptor limit.*ulimit -n/);
    expect(AirlockError.from(errnoError('ENFILE', 'open')).message).toMatch(/system's file table is full/);
  });

  it('maps ENOSPC to DISK_FULL (retryable) and EACCES to PERMISSION_DENIED (not retryable)', () => {
    const full = AirlockError.from(errnoError('ENOSPC'));
    expect(full.code).toBe('DISK_FULL');
    expect(full.retryable).toBe(true);
    expect(full.details).toEqual({ errno: 'ENOSPC' });
    const denied = AirlockError.from(errnoError('EACCES', 'open'));
    expect(denied.code).toBe('PERMISSION_DENIED');
    expect(denied.retryable).toBe(false);
  });

  it('maps a real ENOENT from the file system to NOT_FOUND without the path in the message', () => {
    const missing = join(tmpdir(), `airlock-${CANARY}-does-not-exist`);
    let thrown: unknown;
    try {
      readFileSync(missing);
    } catch (error) {
      thrown = error;
    }
    const error = AirlockError.from(thrown);
    expect(error.code).toBe('NOT_FOUND');
    expect(error.details).toEqual({ errno: 'ENOENT', syscall: 'open' });
    expect(error.message).not.toContain(CANARY);
  });

  it('maps an AbortError to ABORTED, whether from an AbortSignal or from Node', async () => {
    expect(AirlockError.from(AbortSignal.abort().reason).code).toBe('ABORTED');
    const controller = new AbortController();
    const pending = sleep(60_000, undefined, { signal: controller.signal });
    controller.abort();
    const thrown = await pending.then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(thrown).toMatchObject({ name: 'AbortError' });
    const error = AirlockError.from(thrown);
    expect(error.code).toBe('ABORTED');
    expect(error.cause).toBe(thrown);
  });

  it('turns strings and other unknown values into INTERNAL with a generic message that leaks nothing', () => {
    const foreign = new Error(`query failed for ${CANARY}`);
    for (const value of [CANARY, foreign, { message: CANARY }, 42, null, undefined, Symbol(CANARY)]) {
      const error = AirlockError.from(value);
      expect(error.code).toBe('INTERNAL');
      expect(error.message).not.toContain(CANARY);
      expect(error.details).toBeUndefined();
      expect(error.cause).toBe(value);
    }
    // Node error codes outside the errno table are not guessed at.
    const unmapped = Object.assign(new Error(CANARY), { code: 'ERR_INVALID_ARG_TYPE' });
    expect(AirlockError.from(unmapped).code).toBe('INTERNAL');
  });

  it('uses the fallback code for unrecognised errors only', () => {
    expect(AirlockError.from(new Error(CANARY), 'UNAVAILABLE').code).toBe('UNAVAILABLE');
    expect(AirlockError.from(errnoError('ENOSPC'), 'UNAVAILABLE').code).toBe('DISK_FULL');
  });
});

describe('timeouts and details', () => {
  it('maps a TimeoutError (AbortSignal.timeout) to TIMEOUT', async () => {
    const signal = AbortSignal.timeout(1);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(AirlockError.from(signal.reason).code).toBe('TIMEOUT');
  });

  it('keeps scalar details across the wire and drops anything else', () => {
    const sent = new AirlockError('CONFIG_INVALID', 'bad', { details: { option: 'port', limit: 3, strict: true } });
    const back = airlockErrorFromJSON(JSON.parse(JSON.stringify(sent)));
    expect(back.details).toEqual({ option: 'port', limit: 3, strict: true });
    expect(airlockErrorFromJSON({ code: 'INTERNAL', details: { nested: { a: 1 }, ok: 'x' } }).details).toEqual({ ok: 'x' });
  });
});

describe('wire form', () => {
  it('toJSON has code, message and details, and never the cause', () => {
    const error = new AirlockError('UNAVAILABLE', 'KMS unreachable', {
      cause: new Error(CANARY),
      details: { attempt: 3 },
    });
    const json = error.toJSON();
    expect(json).toEqual({ code: 'UNAVAILABLE', message: 'KMS unreachable', details: { attempt: 3 } });
    expect(json).not.toHaveProperty('cause');
    expect(JSON.stringify(error)).not.toContain(CANARY);
    expect(new AirlockError('INTERNAL').toJSON()).not.toHaveProperty('details');
  });

  it('round-trips through airlockErrorFromJSON', () => {
    const original = new AirlockError('CERTIFICATE_EXPIRED', 'peer certificate expired', { cause: new Error(CANARY) });
    const wire = JSON.parse(JSON.stringify(original)) as unknown;
    const rebuilt = airlockErrorFromJSON(wire);
    expect(rebuilt).toBeInstanceOf(AirlockError);
    expect(rebuilt.code).toBe(original.code);
    expect(rebuilt.message).toBe(original.message);
    expect(rebuilt.cause).toBeUndefined();
    for (const code of Object.keys(ERROR_CODES) as AirlockErrorCode[]) {
      expect(airlockErrorFromJSON(JSON.parse(JSON.stringify(new AirlockError(code))) as unknown).code).toBe(code);
    }
  });

  it('turns unknown codes and malformed input into INTERNAL, without trusting the sent message', () => {
    for (const value of [
      { code: 'NOT_A_REAL_CODE', message: CANARY },
      { code: 'toString', message: CANARY },
      { code: '__proto__', message: CANARY },
      { message: CANARY },
      CANARY,
      null,
      undefined,
      42,
    ]) {
      const error = airlockErrorFromJSON(value);
      expect(error.code).toBe('INTERNAL');
      expect(error.message).not.toContain(CANARY);
    }
  });
});

describe('error code catalogue', () => {
  const entries = Object.entries(ERROR_CODES);

  it('is not empty and cannot be extended at run time', () => {
    expect(entries.length).toBeGreaterThan(0);
    expect(Object.isFrozen(ERROR_CODES)).toBe(true);
  });

  it.each(entries)('%s is SCREAMING_SNAKE_CASE with a description and a retryable flag', (code, info) => {
    expect(code).toMatch(/^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*$/);
    expect(typeof info.description).toBe('string');
    expect(info.description.trim().length).toBeGreaterThan(0);
    expect(typeof info.retryable).toBe('boolean');
    expect(isAirlockErrorCode(code)).toBe(true);
  });

  it('isAirlockErrorCode rejects everything outside the catalogue', () => {
    for (const value of ['internal', 'toString', 'constructor', '__proto__', 'hasOwnProperty', '', 42, null, undefined, {}]) {
      expect(isAirlockErrorCode(value), JSON.stringify(value)).toBe(false);
    }
  });
});

describe('errorCodeOf', () => {
  it('names an error by its code or class, never by its message', () => {
    const canary = 'CANARY-peer-text-91c2';
    expect(errorCodeOf(Object.assign(new Error(canary), { code: 'ERR_SSL_WRONG_VERSION_NUMBER' }))).toBe('ERR_SSL_WRONG_VERSION_NUMBER');
    expect(errorCodeOf(new AirlockError('UNAVAILABLE', canary))).toBe('UNAVAILABLE');
    expect(errorCodeOf(new TypeError(canary))).toBe('TypeError');
    expect(errorCodeOf(canary)).toBe('unknown');
    expect(errorCodeOf(undefined)).toBe('unknown');
    expect(errorCodeOf(null)).toBe('unknown');
  });
});

describe('failureReason', () => {
  it('finds the deepest errno along the cause chain, else the outer code', () => {
    const emfile = Object.assign(new Error('too many open files'), { code: 'EMFILE' });
    const wrapped = new AirlockError('KMS_UNAVAILABLE', undefined, { cause: new AirlockError('UNAVAILABLE', undefined, { cause: emfile }) });
    expect(failureReason(wrapped)).toBe('EMFILE');
    expect(failureReason(AirlockError.from(Object.assign(new Error('refused'), { code: 'ECONNREFUSED' })))).toBe('ECONNREFUSED');
    expect(failureReason(new AirlockError('KMS_UNAVAILABLE'))).toBe('KMS_UNAVAILABLE');
    expect(failureReason(Object.assign(new Error('x'), { name: 'TimeoutError' }))).toBe('ETIMEDOUT');
    const loop: { code: string; cause?: unknown } = { code: 'INTERNAL' };
    loop.cause = loop;
    expect(failureReason(loop)).toBe('INTERNAL');
  });
});
