// The Connect error edge: every catalogue code maps, codes and details survive a round trip, and causes never travel.
import { Code, ConnectError } from '@connectrpc/connect';
import { AirlockError, ERROR_CODES, type AirlockErrorCode } from '@airlock/common';
import { describe, expect, it } from 'vitest';
import { AIRLOCK_ERROR_HEADER, airlockErrorInterceptor, connectCodeFor, fromConnectError, toConnectError } from './connect-errors.js';

const CODES = Object.keys(ERROR_CODES) as AirlockErrorCode[];

describe('toConnectError / fromConnectError', () => {
  it.each(CODES)('%s round-trips with its code and details, and a Connect code other than unknown', (code) => {
    const wire = toConnectError(new AirlockError(code, 'what happened', { details: { argument: 'name', attempt: 2 } }));
    expect(wire.code).toBe(connectCodeFor(code));
    expect(wire.code).not.toBe(Code.Unknown);
    const back = fromConnectError(wire);
    expect(back.code).toBe(code);
    expect(back.details).toEqual({ argument: 'name', attempt: 2 });
    expect(back.message).toBe('what happened');
  });

  it('never puts the cause on the wire', () => {
    const canary = 'CANARY-cause-7f3a';
    const wire = toConnectError(new AirlockError('INTERNAL', undefined, { cause: new Error(canary) }));
    expect(wire.message).not.toContain(canary);
    expect(wire.metadata.get(AIRLOCK_ERROR_HEADER)).not.toContain(canary);
    // Foreign errors keep their text local too.
    const foreign = toConnectError(new Error(canary));
    expect(foreign.code).toBe(Code.Internal);
    expect(foreign.message).not.toContain(canary);
  });

  it('passes a ConnectError through unchanged', () => {
    const original = new ConnectError('x', Code.Aborted);
    expect(toConnectError(original)).toBe(original);
  });

  it('maps a bare Connect code from a peer without the metadata, and ignores malformed metadata', () => {
    expect(fromConnectError(new ConnectError('x', Code.PermissionDenied)).code).toBe('ACCESS_DENIED');
    expect(fromConnectError(new ConnectError('x', Code.Unavailable)).code).toBe('UNAVAILABLE');
    expect(fromConnectError(new ConnectError('x', Code.Unknown)).code).toBe('INTERNAL');
    const bogus = new ConnectError('x', Code.NotFound, new Headers({ [AIRLOCK_ERROR_HEADER]: '{not json' }));
    expect(fromConnectError(bogus).code).toBe('NOT_FOUND');
    const unknownCode = new ConnectError('x', Code.NotFound, new Headers({ [AIRLOCK_ERROR_HEADER]: '{"code":"NO_SUCH_CODE"}' }));
    expect(fromConnectError(unknownCode).code).toBe('NOT_FOUND');
  });
});

describe('airlockErrorInterceptor', () => {
  it('turns a thrown AirlockError into its ConnectError', async () => {
    const handler = airlockErrorInterceptor(() => Promise.reject(new AirlockError('ACCESS_DENIED', 'no')));
    const error = await (handler as (request: unknown) => Promise<unknown>)({}).then(
      () => undefined,
      (reason: unknown) => reason,
    );
    expect(error).toBeInstanceOf(ConnectError);
    expect((error as ConnectError).code).toBe(Code.PermissionDenied);
    expect(fromConnectError(error).code).toBe('ACCESS_DENIED');
  });
});
