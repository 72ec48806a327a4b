// Check tunnel.refuses-unauthenticated: the mTLS tunnel refuses a client with no certificate and one from a foreign CA.
import { createCertificateAuthority, issueClientCertificate } from '@airlock/pki';
import { checkResult, type Check, type CheckResult, type Evidence } from '../check.js';
import type { EndpointsFile, StackEndpoint } from '../endpoints-file.js';
import { endpointAddress } from '../internal/endpoint-address.js';
import { tlsHandshake, type HandshakeResult } from '../internal/tls-probe.js';

/** Every stack `airlock up` starts has a tunnel: one without it cannot prove the tunnel properties, so it fails. */
export const NO_TUNNEL_DETAILS = 'endpoints.json lists no tunnel endpoint: the control plane is not running, so the tunnel cannot be checked';

/** The endpoint named `tunnel`, if the stack has one. */
export function findTunnel(file: EndpointsFile): StackEndpoint | undefined {
  return file.endpoints.find((endpoint) => endpoint.name === 'tunnel');
}

/** How long to wait after a TLS 1.3 handshake for the server to reject the client certificate. */
const VERDICT_MS = 1500;

function describeAttempt(result: HandshakeResult): string {
  switch (result.outcome) {
    case 'failed':
      return `refused in the handshake (${result.error ?? 'unknown'})`;
    case 'rejected-after-handshake':
      return `refused after the ${result.protocol ?? 'TLS'} handshake (${result.error ?? 'closed'})`;
    case 'established':
      return `ACCEPTED (${result.protocol ?? '?'} ${result.cipher ?? '?'}; connection still open after ${VERDICT_MS} ms)`;
  }
}

/** Errors that say nothing about the server's client-certificate policy: we never got to ask. */
const INCONCLUSIVE = /^(?:ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|TIMEOUT|ABORTED|UNABLE_TO_|SELF_SIGNED|DEPTH_ZERO|CERT_|ERR_TLS_CERT_ALTNAME|HOSTNAME_MISMATCH|ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION|ERR_SSL_WRONG_VERSION_NUMBER)/;

export const tunnelRefusesUnauthenticatedCheck: Check = {
  id: 'tunnel.refuses-unauthenticated',
  title: 'The tunnel refuses clients without a certificate or with a foreign-CA certificate',
  async run(ctx, signal): Promise<CheckResult> {
    const self = tunnelRefusesUnauthenticatedCheck;
    const tunnel = findTunnel(ctx.endpointsFile);
    if (tunnel === undefined) return checkResult(self, 'fail', { problems: [NO_TUNNEL_DETAILS] }, { summary: NO_TUNNEL_DETAILS, details: NO_TUNNEL_DETAILS });
    const address = endpointAddress(tunnel.url);
    if (address === undefined) return checkResult(self, 'fail', { tunnel: tunnel.url }, { details: `cannot parse the tunnel URL ${tunnel.url}` });

    // A CA nobody trusts, and a well-formed client certificate from it (same shape as a real DP certificate).
    const foreignCa = await createCertificateAuthority({ commonName: 'airlock verify foreign CA', validitySeconds: 3600 });
    const foreign = await issueClientCertificate({ ca: foreignCa, uri: 'spiffe://airlock/cluster/verify-foreign-ca', validitySeconds: 600 });

    const [none, foreignAttempt] = await Promise.all([
      tlsHandshake(address.host, address.port, { ca: ctx.caPem, verdictMs: VERDICT_MS, signal }),
      tlsHandshake(address.host, address.port, { ca: ctx.caPem, cert: foreign.cert, key: foreign.key, verdictMs: VERDICT_MS, signal }),
    ]);
    const evidence: Evidence = {
      tunnel: tunnel.url,
      noCertificate: describeAttempt(none),
      foreignCaCertificate: describeAttempt(foreignAttempt),
      foreignCaCertificateFingerprint: foreign.info.fingerprintSha256,
    };
    const problems: string[] = [];
    for (const [label, attempt] of [
      ['a client without a certificate', none],
      ['a client with a foreign-CA certificate', foreignAttempt],
    ] as const) {
      if (attempt.outcome === 'established') problems.push(`the tunnel accepted ${label}`);
      else if (attempt.outcome === 'failed' && INCONCLUSIVE.test(attempt.error ?? '')) {
        problems.push(`inconclusive for ${label}: the handshake failed before the server judged the client (${attempt.error ?? 'unknown'})`);
      }
    }
    if (problems.length > 0) {
      evidence.problems = problems;
      return checkResult(self, 'fail', evidence, { summary: problems[0] ?? '', details: problems.join('\n') });
    }
    return checkResult(self, 'pass', evidence, { summary: 'no certificate: refused; foreign-CA certificate: refused' });
  },
};
