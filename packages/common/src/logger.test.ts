// Proves that credentials, presigned URLs and registered secrets never reach log output, at any level.
import { describe, expect, it } from 'vitest';
import type { DestinationStream } from 'pino';
import { AirlockError } from './errors.js';
import { createLogger } from './logger.js';
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

