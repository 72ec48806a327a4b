// Unit tests for the check runner: ordering, concurrency, exclusive checks, timeouts and crashes never escape.
import { AirlockError } from '@airlock/common';
import { describe, expect, it } from 'vitest';
import { allPassed, checkResult, runChecks, type Check } from './check.js';
import { parseEndpointsFile, type CheckContext } from './endpoints-file.js';

const ctx: CheckContext = {
  endpointsFile: parseEndpointsFile({
    version: 1,
    region: 'us-east-1',
    caBundle: '/nonexistent/ca.pem',
    credentials: { file: '/nonexistent/credentials', profile: 'airlock' },
    endpoints: [],
    pid: 1,
    startedAt: '2026-01-01T00:00:00.000Z',
  }),
  dataDir: '/nonexistent',
  caPem: '',
};

const sleep = async (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function check(id: string, run: Check['run'], extra: Partial<Check> = {}): Check {
  return { id, title: `title of ${id}`, run, ...extra };
}

describe('runChecks', () => {
  it('returns results in registry order with id, title and duration filled in', async () => {
    const results = await runChecks(
      [
        check('slow', async () => {
          await sleep(50);
          // The runner fills in the check's own id and title whatever the check returns.
          return checkResult({ id: 'x', title: 'x' }, 'pass', { n: 1 });
        }),
        check('fast', async () => checkResult({ id: 'fast', title: 'title of fast' }, 'skip', {}, { details: 'not yet' })),
      ],
      ctx,
    );
    expect(results.map((r) => [r.id, r.title, r.status])).toEqual([
      ['slow', 'title of slow', 'pass'],
      ['fast', 'title of fast', 'skip'],
    ]);
    expect(results[0]?.durationMs).toBeGreaterThanOrEqual(40);
    expect(allPassed(results)).toBe(true);
  });

  it('runs ordinary checks concurrently and exclusive ones alone, afterwards', async () => {
    const log: string[] = [];
    const make = (id: string, exclusive: boolean): Check =>
      check(
        id,
        async () => {
          log.push(`start ${id}`);
          await sleep(30);
          log.push(`end ${id}`);
          return checkResult({ id, title: id }, 'pass', {});
        },
        { exclusive },
      );
    await runChecks([make('x1', true), make('a', false), make('x2', true), make('b', false)], ctx);
    expect(log.slice(0, 2).sort()).toEqual(['start a', 'start b']);
    expect(log.slice(4)).toEqual(['start x1', 'end x1', 'start x2', 'end x2']);
  });

  it('turns a thrown error into a fail with its code as evidence, without the foreign message', async () => {
    const [airlock, foreign] = await runChecks(
      [
        check('airlock', async () => {
          throw new AirlockError('UNAVAILABLE', 'ss is not installed');
        }),
        check('foreign', async () => {
          throw new Error('secret-looking text from a dependency');
        }),
      ],
      ctx,
    );
    expect(airlock).toMatchObject({ status: 'fail', evidence: { error: 'UNAVAILABLE' }, details: 'the check crashed: ss is not installed' });
    expect(foreign).toMatchObject({ status: 'fail', evidence: { error: 'INTERNAL' } });
    expect(JSON.stringify(foreign)).not.toContain('secret-looking');
  });

  it('fails a check that outlives its time limit and aborts its signal', async () => {
    let aborted = false;
    const [result] = await runChecks(
      [
        check(
          'hangs',
          async (_ctx, signal) => {
            signal.addEventListener('abort', () => (aborted = true));
            return new Promise(() => undefined);
          },
          { timeoutMs: 50 },
        ),
      ],
      ctx,
    );
    expect(result).toMatchObject({ status: 'fail', evidence: { error: 'TIMEOUT', timeoutMs: 50 } });
    expect(aborted).toBe(true);
  });

  it('fails a check that returns garbage, and drops evidence of the wrong type', async () => {
    const [garbage, mixed] = await runChecks(
      [
        check('garbage', async () => ({ status: 'maybe' }) as never),
        check('mixed', async () => ({ id: 'other', title: 'other', status: 'pass', evidence: { ok: 'yes', bad: { nested: 1 } as never, list: ['a'] } })),
      ],
      ctx,
    );
    expect(garbage).toMatchObject({ id: 'garbage', status: 'fail', evidence: { error: 'INTERNAL' } });
    expect(mixed).toMatchObject({ id: 'mixed', title: 'title of mixed', status: 'pass', evidence: { ok: 'yes', list: ['a'] } });
    expect(mixed?.evidence).not.toHaveProperty('bad');
  });

  it('counts skips as not failing, fails as failing', () => {
    const r = (status: 'pass' | 'fail' | 'skip') => checkResult({ id: status, title: status }, status, {});
    expect(allPassed([r('pass'), r('skip')])).toBe(true);
    expect(allPassed([r('pass'), r('fail'), r('skip')])).toBe(false);
  });
});

describe('parseEndpointsFile', () => {
  const valid = {
    version: 1,
    region: 'us-east-1',
    caBundle: '/d/ca/ca.pem',
    credentials: { file: '/d/kms/credentials', profile: 'airlock' },
    endpoints: [{ name: 'kms', plane: 'data', url: 'https://127.0.0.1:9443' }],
    pid: 42,
    startedAt: 'now',
  };

  it('accepts what airlock up writes, with and without per-plane pids', () => {
    expect(parseEndpointsFile(valid).endpoints).toEqual(valid.endpoints);
    expect(parseEndpointsFile({ ...valid, pids: { controlPlane: 7, dataPlane: 8 } }).pids).toEqual({ controlPlane: 7, dataPlane: 8 });
    expect(parseEndpointsFile({ ...valid, client: { tokenFile: '/d/client/token' } }).client).toEqual({ tokenFile: '/d/client/token' });
    const processes = [{ pid: 42, startTime: '123456', bootId: 'b0b0b0b0-0000-4000-8000-000000000000' }];
    expect(parseEndpointsFile({ ...valid, processes }).processes).toEqual(processes);
  });

  it.each([
    ['version', { ...valid, version: 2 }],
    ['endpoints', { ...valid, endpoints: {} }],
    ['plane', { ...valid, endpoints: [{ name: 'x', plane: 'both', url: 'https://a' }] }],
    ['url', { ...valid, endpoints: [{ name: 'x', plane: 'data', url: 'not a url' }] }],
    ['pid', { ...valid, pid: -1 }],
    ['pids', { ...valid, pids: { dataPlane: 'x' } }],
    ['client', { ...valid, client: { tokenFile: '' } }],
    ['processes', { ...valid, processes: {} }],
    ['processes[0]', { ...valid, processes: [{ pid: 42, startTime: 'soon', bootId: 'b' }] }],
  ])('refuses a bad %s with INVALID_ARGUMENT', (_field, input) => {
    expect(() => parseEndpointsFile(input)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }) as Error);
  });
});
