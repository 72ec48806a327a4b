// Proves that credential-bearing header and field names are redacted by name, even when their value
// carries no recognisable scheme (so the free-text patterns cannot catch it).
import { describe, expect, it } from 'vitest';
import type { DestinationStream } from 'pino';
import { createLogger } from './logger.js';
import { isSensitiveKey, REDACTED, Redactor } from './redact.js';

// Opaque credentials: no "Bearer", "Basic", SigV4 or query-string shape, so only the field name
// can tell the redactor that they are secret.
const OPAQUE_AUTH = 'CANARYopaqueAuth0x7d41e9';
const OPAQUE_PROXY_AUTH = 'CANARYopaqueProxy5c2b88';

describe('redaction of opaque authorization values', () => {
  it('the free-text patterns alone do not remove an opaque credential (the field name must)', () => {
    expect(new Redactor().scrub(OPAQUE_AUTH)).toBe(OPAQUE_AUTH);
  });

  it('treats authorization and proxy-authorization as sensitive in every spelling', () => {
    for (const key of ['authorization', 'Authorization', 'AUTHORIZATION', 'proxy-authorization', 'Proxy-Authorization', 'proxy_authorization', 'proxyAuthorization']) {
      expect(isSensitiveKey(key), key).toBe(true);
    }
  });

  it('redacts opaque authorization and proxy-authorization values in header objects, Maps and arrays', () => {
    const redactor = new Redactor();
    const value = {
      req: {
        headers: { authorization: OPAQUE_AUTH, 'Proxy-Authorization': OPAQUE_PROXY_AUTH, host: 'example.test' },
      },
      upstream: new Map([['proxy-authorization', OPAQUE_PROXY_AUTH]]),
      attempts: [{ Authorization: OPAQUE_AUTH }],
    };
    const out = redactor.redactValue(value) as {
      req: { headers: Record<string, unknown> };
      upstream: Record<string, unknown>;
      attempts: Array<Record<string, unknown>>;
    };
    expect(out.req.headers).toEqual({ authorization: REDACTED, 'Proxy-Authorization': REDACTED, host: 'example.test' });
    expect(out.upstream).toEqual({ 'proxy-authorization': REDACTED });
    expect(out.attempts).toEqual([{ Authorization: REDACTED }]);
    expect(JSON.stringify(out)).not.toContain('CANARY');
  });

  it('never writes an opaque authorization value to a log line, as a field, a nested header or a child binding', () => {
    const chunks: string[] = [];
    const destination: DestinationStream = { write: (line: string) => void chunks.push(line) };
    const log = createLogger({ level: 'trace', destination, redactor: new Redactor() });

    log.debug({ authorization: OPAQUE_AUTH, 'proxy-authorization': OPAQUE_PROXY_AUTH }, 'top-level fields');
    log.info({ req: { headers: { Authorization: OPAQUE_AUTH, 'Proxy-Authorization': OPAQUE_PROXY_AUTH } } }, 'request');
    log.child({ proxyAuthorization: OPAQUE_PROXY_AUTH }).warn({ upstream: { authorization: OPAQUE_AUTH } }, 'child');

    const text = chunks.join('');
    expect(chunks).toHaveLength(3);
    expect(text).not.toContain(OPAQUE_AUTH);
    expect(text).not.toContain(OPAQUE_PROXY_AUTH);
    expect(text).toContain(REDACTED);
  });
});
