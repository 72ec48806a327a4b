// Unit tests of listener-limit resolution: defaults, per-listener defaults, and CONFIG_INVALID for bad values.
import { describe, expect, it } from 'vitest';
import { KEEP_ALIVE_TIMEOUT_MS } from '@airlock/common';
import { DEFAULT_LISTENER_LIMITS, http2ServerSettings, resolveListenerLimits } from './listener-limits.js';

describe('resolveListenerLimits', () => {
  it('applies the documented defaults, then the listener’s own, then the options', () => {
    expect(resolveListenerLimits(undefined, 'x')).toEqual(DEFAULT_LISTENER_LIMITS);
    expect(DEFAULT_LISTENER_LIMITS.keepAliveTimeoutMs).toBe(KEEP_ALIVE_TIMEOUT_MS);
    const resolved = resolveListenerLimits({ handshakeTimeoutMs: 500 }, 'kms.limits', { requestTimeoutMs: 30_000, headersTimeoutMs: 10_000 });
    expect(resolved).toMatchObject({ handshakeTimeoutMs: 500, requestTimeoutMs: 30_000, headersTimeoutMs: 10_000, idleTimeoutMs: 120_000 });
    expect(Object.isFrozen(resolved)).toBe(true);
    expect(resolveListenerLimits({ requestTimeoutMs: 0 }, 'x').requestTimeoutMs).toBe(0);
    expect(http2ServerSettings(resolved)).toMatchObject({ maxConcurrentStreams: 100 });
  });

  it('refuses bad values with CONFIG_INVALID naming the option', () => {
    for (const bad of [{ handshakeTimeoutMs: 0 }, { maxConnections: -1 }, { maxConcurrentStreams: 1.5 }, { idleTimeoutMs: Number.NaN }, { headersTimeoutMs: 20_000, requestTimeoutMs: 10_000 }]) {
      expect(() => resolveListenerLimits(bad, 'api.limits')).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
    }
    expect(() => resolveListenerLimits({ maxConnectionsPerAddress: 0 }, 'api.limits')).toThrow(
      expect.objectContaining({ details: { option: 'api.limits.maxConnectionsPerAddress' } }),
    );
  });
});
