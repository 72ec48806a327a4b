// Unit tests of listener-limit resolution: defaults, per-listener defaults, and CONFIG_INVALID for bad values.
import { describe, expect, it } from 'vitest';
import { KEEP_ALIVE_TIMEOUT_MS } from '@airlock/common';
import { DEFAULT_LISTENER_LIMITS, http2ServerSettings, listenerLimitsFromEnv, resolveListenerLimits } from './listener-limits.js';

describe('resolveListenerLimits', () => {
  it('applies the documented defaults, then the listener’s own, then the options', () => {
    expect(resolveListenerLimits(undefined, 'x')).toEqual(DEFAULT_LISTENER_LIMITS);
    expect(DEFAULT_LISTENER_LIMITS.keepAliveTimeoutMs).toBe(KEEP_ALIVE_TIMEOUT_MS);
    const resolved = resolveListenerLimits({ handshakeTimeoutMs: 500 }, 'kms.limits', { requestTimeoutMs: 30_000, headersTimeoutMs: 10_000 });
    expect(resolved).toMatchObject({ handshakeTimeoutMs: 500, requestTimeoutMs: 30_000, headersTimeoutMs: 10_000, idleTimeoutMs: 120_000 });
    expect(Object.isFrozen(resolved)).toBe(true);
    expect(resolveListenerLimits({ requestTimeoutMs: 0 }, 'x').requestTimeoutMs).toBe(0);
    expect(http2ServerSettings(resolved)).toMatchObject({ maxConcurrentStreams: 100 });
    expect(resolved.maxListenerStreams).toBe(16_384);
    expect(listenerLimitsFromEnv({ AIRLOCK_LISTENER_API_MAX_LISTENER_STREAMS: '2000' }, 'api')).toEqual({ maxListenerStreams: 2000 });
    expect(() => resolveListenerLimits({ maxListenerStreams: 0 }, 'api.limits')).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }) as Error);
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

describe('listenerLimitsFromEnv', () => {
  it('reads AIRLOCK_LISTENER_<OPTION> for every listener and AIRLOCK_LISTENER_<NAME>_<OPTION> for one, which wins', () => {
    const env = {
      PATH: '/usr/bin',
      AIRLOCK_LISTENER_HANDSHAKE_TIMEOUT_MS: '3000',
      AIRLOCK_LISTENER_HEADERS_TIMEOUT_MS: ' 4000 ',
      AIRLOCK_LISTENER_KMS_HANDSHAKE_TIMEOUT_MS: '2000',
      AIRLOCK_LISTENER_S3_BODY_PROGRESS_TIMEOUT_MS: '1500',
      AIRLOCK_LISTENER_API_MAX_CONCURRENT_STREAMS: '50',
    };
    expect(listenerLimitsFromEnv(env, 'kms')).toEqual({ handshakeTimeoutMs: 2000, headersTimeoutMs: 4000 });
    expect(listenerLimitsFromEnv(env, 's3')).toEqual({ handshakeTimeoutMs: 3000, headersTimeoutMs: 4000, bodyProgressTimeoutMs: 1500 });
    expect(listenerLimitsFromEnv(env, 'api')).toEqual({ handshakeTimeoutMs: 3000, headersTimeoutMs: 4000, maxConcurrentStreams: 50 });
    expect(listenerLimitsFromEnv({}, 'tunnel')).toEqual({});
    // Resolved like any options: the listener's own defaults stay for what the environment leaves unset.
    expect(resolveListenerLimits(listenerLimitsFromEnv(env, 'kms'), 'kms.limits', { requestTimeoutMs: 30_000 })).toMatchObject({
      handshakeTimeoutMs: 2000,
      headersTimeoutMs: 4000,
      requestTimeoutMs: 30_000,
    });
  });

  it('reads AIRLOCK_LISTENER_TUNNEL_AGENT_<OPTION> for the data-plane agent\'s HTTP/2 server on the tunnel, apart from the control plane\'s tunnel endpoint', () => {
    const env = {
      AIRLOCK_LISTENER_HEADERS_TIMEOUT_MS: '4000',
      AIRLOCK_LISTENER_TUNNEL_AGENT_MAX_CONCURRENT_STREAMS: '7',
      AIRLOCK_LISTENER_TUNNEL_AGENT_BODY_PROGRESS_TIMEOUT_MS: '1500',
      AIRLOCK_LISTENER_TUNNEL_IDLE_TIMEOUT_MS: '9000',
    };
    expect(listenerLimitsFromEnv(env, 'tunnel-agent')).toEqual({ headersTimeoutMs: 4000, maxConcurrentStreams: 7, bodyProgressTimeoutMs: 1500 });
    expect(listenerLimitsFromEnv(env, 'tunnel')).toEqual({ headersTimeoutMs: 4000, idleTimeoutMs: 9000 });
    expect(listenerLimitsFromEnv(env, 'kms')).toEqual({ headersTimeoutMs: 4000 });
    expect(() => listenerLimitsFromEnv({ AIRLOCK_LISTENER_TUNNEL_AGENT_MAX_STREAMS: '7' }, 'tunnel-agent')).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID', details: { option: 'AIRLOCK_LISTENER_TUNNEL_AGENT_MAX_STREAMS' } }),
    );
  });

  it('refuses a misspelt variable and a value that is not an integer, naming the variable', () => {
    expect(() => listenerLimitsFromEnv({ AIRLOCK_LISTENER_HANDSHAKE_TIMEOUT: '3000' }, 'kms')).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID', details: { option: 'AIRLOCK_LISTENER_HANDSHAKE_TIMEOUT' } }),
    );
    expect(() => listenerLimitsFromEnv({ AIRLOCK_LISTENER_FTP_IDLE_TIMEOUT_MS: '3000' }, 'kms')).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
    for (const bad of ['3s', '-1', '1.5', '', '1e4']) {
      expect(() => listenerLimitsFromEnv({ AIRLOCK_LISTENER_TUNNEL_IDLE_TIMEOUT_MS: bad }, 'api')).toThrow(
        expect.objectContaining({ code: 'CONFIG_INVALID', details: { option: 'AIRLOCK_LISTENER_TUNNEL_IDLE_TIMEOUT_MS' } }),
      );
    }
  });
});
