// Proves that credentials, presigned URLs and registered secrets never reach log output, at any level, and that repeated lines are rate-limited.
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { DestinationStream } from 'pino';
import { AirlockError } from './errors.js';
import { createLogger, DEFAULT_LOG_RATE_LIMIT } from './logger.js';
import { Redactor } from './redact.js';

function capture(): { destination: DestinationStream; text: () => string; lines: () => unknown[] } {
  const chunks: string[] = [];
  return {
    destination: { write: (line: string) => void chunks.push(line) },
    text: () => chunks.join(''),
    lines: () => chunks.join('').trim().split('\n').map((l) => JSON.parse(l) as unknown),
  };
}

// Canary values: each is unique, so finding any of them in the output means something leaked.
const CANARY = {
  bearer: 'CANARYbearer7f3a9c1e',
  secretKey: 'CANARYsecretKeywJalrXUtnFEMI/K7MDENG',
  sigv4Signature: 'c0ffee00canary5ig5ea1c0ffee00canary5ig5ea1c0ffee00canary5ig5ea1ab',
  presignSig: 'deadbeefcanaryqueryd1gestdeadbeefcanaryqueryd1gestdeadbeefcanary1',
  cookie: 'CANARYsession=9d8e7f',
  registered: 'CANARY-registered-secret-value-42',
  registeredQuoted: 'CANARY"quoted\\secret',
  password: 'CANARYpassw0rd!',
  dataContent: 'CANARY-DATA-CONTENT-in-a-buffer',
} as const;

describe('logger redaction', () => {
  it('redacts every canary at debug and trace level', () => {
    const redactor = new Redactor();
    redactor.addSecret(CANARY.registered);
    redactor.addSecret(CANARY.registeredQuoted);
    const out = capture();
    const log = createLogger({ level: 'trace', destination: out.destination, redactor });

    const presignedUrl =
      'https://127.0.0.1:9000/bucket/key.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fs3%2Faws4_request' +
      `&X-Amz-Date=20150830T123600Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=${CANARY.presignSig}`;
    const sigv4 = `AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/kms/aws4_request, SignedHeaders=host;x-amz-date, Signature=${CANARY.sigv4Signature}`;

    for (const level of ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const) {
      log[level](
        {
          req: {
            headers: {
              authorization: `Bearer ${CANARY.bearer}`,
              Cookie: CANARY.cookie,
              'x-amz-security-token': CANARY.bearer,
            },
            url: presignedUrl,
          },
          aws: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: CANARY.secretKey },
          nested: { deeper: { evenDeeper: { password: CANARY.password } } },
          body: Buffer.from(CANARY.dataContent),
          note: `user pasted ${CANARY.registered} into a field`,
        },
        'request %s with header %s and secret %s',
        presignedUrl,
        sigv4,
        CANARY.registeredQuoted,
      );
      log[level](`free text: Authorization: Bearer ${CANARY.bearer} then ${presignedUrl}`);
      log[level](new AirlockError('INTERNAL', `failed with ${CANARY.registered} and ${sigv4}`));
      log.child({ token: CANARY.bearer, peer: CANARY.registered }).child({ cookie: CANARY.cookie, depth: 2 })[level]('grandchild bindings');
    }

    const text = out.text();
    expect(out.lines().length).toBe(6 * 4);
    for (const [name, canary] of Object.entries(CANARY)) {
      expect(text.includes(canary), `canary ${name} leaked`).toBe(false);
    }
    // The JSON-escaped form of the quoted secret must not appear either.
    expect(text).not.toContain(JSON.stringify(CANARY.registeredQuoted).slice(1, -1));
    expect(text).not.toContain('CANARY');
    // Redaction keeps the useful, non-secret parts.
    expect(text).toContain('AKIDEXAMPLE');
    expect(text).toContain('https://127.0.0.1:9000/bucket/key.txt?[REDACTED]');
    expect(text).toContain('[binary 31 bytes]');
    expect(text).toContain('"depth":2');
  });

  it('keeps ordinary fields and messages intact', () => {
    const out = capture();
    const log = createLogger({ level: 'debug', destination: out.destination, redactor: new Redactor() });
    log.debug({ bucket: 'reports', size: 42, url: 'https://example.test/a?b=c' }, 'stored object');
    const [line] = out.lines() as Array<Record<string, unknown>>;
    expect(line).toMatchObject({ bucket: 'reports', size: 42, url: 'https://example.test/a?b=c', msg: 'stored object', level: 20 });
  });

  it('writes nothing below the configured level and rejects unknown levels', () => {
    const out = capture();
    const log = createLogger({ level: 'warn', destination: out.destination, redactor: new Redactor() });
    log.info('hidden');
    expect(out.text()).toBe('');
    expect(() => createLogger({ level: 'loud' as never })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }) as Error);
  });

  it('works with a real pino destination (the resolved config must not freeze the stream)', async () => {
    const { mkdtemp, readFile, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const pino = (await import('pino')).default;
    const dir = await mkdtemp(join(tmpdir(), 'airlock-log-'));
    try {
      const file = join(dir, 'out.log');
      const log = createLogger({ level: 'debug', destination: pino.destination({ dest: file, sync: true }), redactor: new Redactor() });
      log.debug({ authorization: 'Bearer CANARYfile' }, 'to a file');
      const text = await readFile(file, 'utf8');
      expect(text).toContain('to a file');
      expect(text).not.toContain('CANARYfile');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});


describe('logger rate limiting of repeated lines', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  type Line = Record<string, unknown> & { msg?: string; event?: string; level?: number };
  const suppressedLines = (lines: Line[]): Line[] => lines.filter((line) => line.event === 'log.suppressed');

  it('a flood of 10,000 identical errors writes the first 20 and one line counting the other 9,980', () => {
    vi.useFakeTimers();
    const out = capture();
    const log = createLogger({ level: 'debug', destination: out.destination, redactor: new Redactor() });
    for (let i = 0; i < 10_000; i++) {
      // Identical but for values: the port and the interpolated address differ on every line.
      log.error({ event: 'tunnel.socket_error', code: 'ECONNRESET', remotePort: 40_000 + i }, 'socket error from %s', `10.0.${i % 256}.${i >> 8}`);
    }
    expect(out.lines()).toHaveLength(20);
    // The count is reported once the window ends, even though no further line of that kind comes.
    vi.advanceTimersByTime(DEFAULT_LOG_RATE_LIMIT.windowMs);
    const lines = out.lines() as Line[];
    expect(lines).toHaveLength(21);
    expect(lines.slice(0, 20).every((line) => line.event === 'tunnel.socket_error')).toBe(true);
    const [summary] = suppressedLines(lines);
    expect(summary).toMatchObject({
      level: 50,
      suppressed: 9980,
      msg: '9980 similar messages suppressed',
      similar: { msg: 'socket error from %s', event: 'tunnel.socket_error', code: 'ECONNRESET' },
    });
    // The summary names the kind, not the suppressed lines' values.
    expect(JSON.stringify(summary)).not.toContain('40020');
    // The next window starts afresh.
    log.error({ event: 'tunnel.socket_error', code: 'ECONNRESET', remotePort: 1 }, 'socket error from %s', '10.9.9.9');
    expect(out.lines()).toHaveLength(22);
  });

  it('distinct messages are not suppressed: other templates, events, codes or levels are other kinds', () => {
    const out = capture();
    const log = createLogger({ level: 'trace', destination: out.destination, redactor: new Redactor() });
    const levels = ['trace', 'debug', 'info', 'warn', 'error'] as const;
    let written = 0;
    for (let round = 0; round < 20; round++) {
      for (let kind = 0; kind < 50; kind++) {
        log.debug({ event: `kind.${kind}` }, 'same template, different event');
        log.debug({ event: 'same.event', code: `CODE_${kind}` }, 'same event, different code');
        log.debug(`template number ${kind}`);
        written += 3;
      }
      for (const level of levels) log[level]({ event: 'per.level' }, 'same kind at each level');
      written += levels.length;
    }
    expect(out.lines()).toHaveLength(written);
    expect(suppressedLines(out.lines() as Line[])).toEqual([]);
  });

  it('a debug log under attack stays bounded: a minute of floods from many kinds of failure', () => {
    vi.useFakeTimers();
    const out = capture();
    const log = createLogger({ level: 'debug', destination: out.destination, redactor: new Redactor() });
    const windowMs = DEFAULT_LOG_RATE_LIMIT.windowMs;
    const kinds = ['s3.handshake_timeout', 'kms.bad_request', 'tunnel.handshake_failed', 'api.connection_refused', 'dispatch.request_timeout'];
    let attempts = 0;
    // 60 s at 5,000 failures per second of each kind, as seen by one process: 1.5 million attempts.
    for (let ms = 0; ms < 60_000; ms += 100) {
      for (let i = 0; i < 100; i++) {
        for (const event of kinds) log.debug({ event, remoteAddress: `203.0.113.${i}`, remotePort: 1024 + i }, 'connection refused or timed out');
        attempts += kinds.length;
      }
      vi.advanceTimersByTime(100);
    }
    vi.advanceTimersByTime(windowMs);
    const lines = out.lines() as Line[];
    const windows = 60_000 / windowMs;
    // Per kind and window: 20 lines and one count.
    expect(lines.length).toBeLessThanOrEqual(kinds.length * windows * (DEFAULT_LOG_RATE_LIMIT.burst + 1));
    // Every attempt is accounted for: written, or counted in a summary.
    const counted = suppressedLines(lines).reduce((sum, line) => sum + Number(line.suppressed), 0);
    expect(lines.length - suppressedLines(lines).length + counted).toBe(attempts);
  });

  it('messages that carry values in their text are bounded by maxKinds', () => {
    vi.useFakeTimers();
    const out = capture();
    const log = createLogger({ level: 'debug', destination: out.destination, redactor: new Redactor(), rateLimit: { maxKinds: 50 } });
    for (let i = 0; i < 10_000; i++) log.debug(`bad request from 198.51.100.${i % 256}:${i}`);
    expect(out.lines()).toHaveLength(50);
    vi.advanceTimersByTime(DEFAULT_LOG_RATE_LIMIT.windowMs);
    const [summary] = suppressedLines(out.lines() as Line[]);
    expect(summary).toMatchObject({ level: 20, suppressed: 9950, similar: 'more distinct messages than logger.rateLimit.maxKinds' });
  });

  it('window and burst are configurable; children share the limiter and the count is reported through the child', () => {
    vi.useFakeTimers();
    const out = capture();
    const log = createLogger({ level: 'info', destination: out.destination, redactor: new Redactor(), rateLimit: { windowMs: 1000, burst: 3 } });
    const child = log.child({ component: 'objectstore' });
    for (let i = 0; i < 5; i++) log.warn({ event: 'disk.low' }, 'disk almost full');
    for (let i = 0; i < 5; i++) child.warn({ event: 'disk.low' }, 'disk almost full');
    expect(out.lines()).toHaveLength(3);
    // The next line of the kind after the window reports the count first.
    vi.setSystemTime(Date.now() + 1000);
    child.warn({ event: 'disk.low' }, 'disk almost full');
    const lines = out.lines() as Line[];
    expect(lines).toHaveLength(5);
    expect(lines[3]).toMatchObject({ event: 'log.suppressed', suppressed: 7, component: 'objectstore', level: 40 });
    expect(lines[4]).toMatchObject({ event: 'disk.low' });
  });

  it('fatal lines are never suppressed, and rateLimit: false turns limiting off', () => {
    const out = capture();
    const log = createLogger({ level: 'info', destination: out.destination, redactor: new Redactor() });
    for (let i = 0; i < 100; i++) log.fatal({ event: 'store.corrupt' }, 'store corrupt');
    expect(out.lines()).toHaveLength(100);
    const unlimited = capture();
    const plain = createLogger({ level: 'info', destination: unlimited.destination, redactor: new Redactor(), rateLimit: false });
    for (let i = 0; i < 100; i++) plain.error('same error');
    expect(unlimited.lines()).toHaveLength(100);
  });

  it('errors logged on their own are keyed on their code, else on their message', () => {
    vi.useFakeTimers();
    const out = capture();
    const log = createLogger({ level: 'info', destination: out.destination, redactor: new Redactor(), rateLimit: { burst: 1 } });
    log.error(new AirlockError('UNAVAILABLE', 'No tunnel to cluster eu-1'));
    log.error(new AirlockError('UNAVAILABLE', 'No tunnel to cluster eu-2'));
    log.error(new Error('first bug'));
    log.error(new Error('second bug'));
    expect((out.lines() as Line[]).map((line) => line.msg)).toEqual(['No tunnel to cluster eu-1', 'first bug', 'second bug']);
  });

  it('a suppressed-count line is redacted like any other', () => {
    vi.useFakeTimers();
    const out = capture();
    const redactor = new Redactor();
    redactor.addSecret(CANARY.registered);
    const log = createLogger({ level: 'debug', destination: out.destination, redactor, rateLimit: { burst: 1 } });
    for (let i = 0; i < 5; i++) log.debug({ event: 'auth.failed', code: CANARY.registered }, `rejected Authorization: Bearer ${CANARY.bearer}`);
    vi.advanceTimersByTime(DEFAULT_LOG_RATE_LIMIT.windowMs);
    expect(suppressedLines(out.lines() as Line[])).toHaveLength(1);
    expect(out.text()).not.toContain('CANARY');
  });

  it('rejects invalid limits', () => {
    for (const rateLimit of [{ burst: 0 }, { windowMs: -1 }, { maxKinds: 1.5 }, 'yes']) {
      expect(() => createLogger({ rateLimit: rateLimit as never })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }) as Error);
    }
  });
});
