// Unit test: `airlock data-plane serve` gives the agent's HTTP/2 server on the tunnel the listener limits the environment sets, as the KMS and the object store get theirs.
import { createLogger } from '@airlock/common';
import { resolveTunnelAgentConfig } from '@airlock/data-plane';
import { createCertificateAuthority, DEFAULT_LISTENER_LIMITS } from '@airlock/pki';
import { describe, expect, it } from 'vitest';
import { agentTunnelOptions } from './data-plane.js';

describe('agentTunnelOptions', () => {
  it('AIRLOCK_LISTENER_<OPTION> and AIRLOCK_LISTENER_TUNNEL_AGENT_<OPTION> become the agent\'s tunnel limits; other listeners\' variables do not', async () => {
    const ca = await createCertificateAuthority({ commonName: 'agent tunnel limits test CA' });
    const env = {
      PATH: '/usr/bin',
      AIRLOCK_LISTENER_HEADERS_TIMEOUT_MS: '4000',
      AIRLOCK_LISTENER_TUNNEL_AGENT_MAX_CONCURRENT_STREAMS: '7',
      AIRLOCK_LISTENER_TUNNEL_AGENT_HEADERS_TIMEOUT_MS: '2000',
      AIRLOCK_LISTENER_TUNNEL_BODY_PROGRESS_TIMEOUT_MS: '1500',
      AIRLOCK_LISTENER_KMS_REQUEST_TIMEOUT_MS: '2500',
    };
    // Resolved as the agent resolves its options (the data-plane agent hands `tunnel` to the tunnel agent as is).
    const resolve = (e: NodeJS.ProcessEnv) =>
      resolveTunnelAgentConfig({
        endpoint: 'https://127.0.0.1:8445',
        ca: ca.cert,
        getCredentials: () => ({ cert: '', key: '' }),
        routes: () => undefined,
        log: createLogger({ level: 'silent' }),
        ...agentTunnelOptions(e),
      }).limits;
    expect(resolve(env)).toEqual({ ...DEFAULT_LISTENER_LIMITS, headersTimeoutMs: 2000, maxConcurrentStreams: 7 });
    expect(resolve({ PATH: '/usr/bin' })).toEqual(DEFAULT_LISTENER_LIMITS);
  });

  it('a value out of range is CONFIG_INVALID naming the agent\'s option; a misspelt variable, naming the variable', async () => {
    const ca = await createCertificateAuthority({ commonName: 'agent tunnel limits test CA' });
    const options = { endpoint: 'https://127.0.0.1:8445', ca: ca.cert, getCredentials: () => ({ cert: '', key: '' }), routes: () => undefined, log: createLogger({ level: 'silent' }) };
    expect(() => resolveTunnelAgentConfig({ ...options, ...agentTunnelOptions({ AIRLOCK_LISTENER_TUNNEL_AGENT_MAX_CONCURRENT_STREAMS: '0' }) })).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID', details: { option: 'tunnelAgent.limits.maxConcurrentStreams' } }),
    );
    expect(() => agentTunnelOptions({ AIRLOCK_LISTENER_AGENT_MAX_CONCURRENT_STREAMS: '7' })).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID', details: { option: 'AIRLOCK_LISTENER_AGENT_MAX_CONCURRENT_STREAMS' } }),
    );
  });
});
