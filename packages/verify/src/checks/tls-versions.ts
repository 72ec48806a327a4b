// Check tls.versions: every endpoint negotiates TLS 1.2 or later and refuses TLS 1.0 and 1.1 (real openssl s_client probes).
import { checkResult, type Check, type CheckResult, type Evidence } from '../check.js';
import type { CheckContext, StackEndpoint } from '../endpoints-file.js';
import { endpointAddress } from '../internal/endpoint-address.js';
import { OPENSSL_VERSION_NAMES, probeWithOpenssl, type OpensslProbe, type OpensslVersionFlag } from '../internal/openssl.js';
import { tlsHandshake } from '../internal/tls-probe.js';

const MODERN: readonly OpensslVersionFlag[] = ['tls1_3', 'tls1_2'];
const LEGACY: readonly OpensslVersionFlag[] = ['tls1_1', 'tls1'];

function describeProbe(probe: OpensslProbe): string {
  if (probe.outcome === 'accepted') return `accepted ${probe.protocol ?? '?'} ${probe.cipher ?? '?'}`;
  return `${probe.outcome}${probe.reason === undefined ? '' : ` (${probe.reason})`}`;
}

interface EndpointFindings {
  readonly evidence: Evidence;
  readonly problems: string[];
  readonly negotiated?: string;
}

async function examine(endpoint: StackEndpoint, ctx: CheckContext, signal: AbortSignal): Promise<EndpointFindings> {
  const name = endpoint.name;
  const evidence: Evidence = { [`${name}.url`]: endpoint.url };
  const address = endpointAddress(endpoint.url);
  if (address === undefined) return { evidence, problems: [`${name}: cannot parse the URL ${endpoint.url}`] };
  const problems: string[] = [];
  if (address.scheme !== 'https') problems.push(`${name}: the URL scheme is ${address.scheme}, not https`);

  const [policy, ...probes] = await Promise.all([
    tlsHandshake(address.host, address.port, { ca: ctx.caPem, signal }),
    ...[...MODERN, ...LEGACY].map(async (version) => {
      // Legacy probes lower openssl's own security level, so a refusal can only come from the server.
      const legacy = LEGACY.includes(version);
      return [version, await probeWithOpenssl(address.hostPort, version, { signal, ...(legacy ? { cipher: 'DEFAULT@SECLEVEL=0' } : {}) })] as const;
    }),
  ]);

  // What a default Airlock policy client negotiates.
  let negotiated: string | undefined;
  if (policy.outcome === 'failed') {
    evidence[`${name}.protocol`] = 'none';
    evidence[`${name}.policyClient`] = `handshake failed (${policy.error ?? 'unknown'})`;
    problems.push(`${name}: an Airlock policy client trusting the data directory's CA could not complete a handshake (${policy.error ?? 'unknown'})`);
  } else {
    evidence[`${name}.protocol`] = policy.protocol ?? 'unknown';
    evidence[`${name}.cipher`] = policy.cipher ?? 'unknown';
    negotiated = `${policy.protocol ?? '?'} ${policy.cipher ?? '?'}`;
    if (policy.protocol !== 'TLSv1.2' && policy.protocol !== 'TLSv1.3') problems.push(`${name}: a policy client negotiated ${policy.protocol ?? 'an unknown protocol'}`);
  }

  const byVersion = new Map(probes);
  for (const [version, probe] of probes) evidence[`${name}.${version}`] = describeProbe(probe);
  const modernWorks = MODERN.some((version) => byVersion.get(version)?.outcome === 'accepted');
  if (!modernWorks) {
    problems.push(
      `${name}: no openssl handshake at TLS 1.2 or 1.3 succeeded (${MODERN.map((v) => `${OPENSSL_VERSION_NAMES[v]}: ${describeProbe(byVersion.get(v) as OpensslProbe)}`).join('; ')}), so refusals of older versions prove nothing`,
    );
  }
  for (const version of LEGACY) {
    const probe = byVersion.get(version) as OpensslProbe;
    if (probe.outcome === 'accepted') {
      problems.push(`${name}: ${OPENSSL_VERSION_NAMES[version]} accepted (${probe.protocol ?? '?'} ${probe.cipher ?? '?'})`);
    } else if (probe.outcome === 'inconclusive') {
      problems.push(`${name}: the ${OPENSSL_VERSION_NAMES[version]} probe was inconclusive (${probe.reason ?? 'unknown'})`);
    }
  }
  return { evidence, problems, ...(negotiated === undefined ? {} : { negotiated }) };
}

export const tlsVersionsCheck: Check = {
  id: 'tls.versions',
  title: 'Every endpoint negotiates TLS 1.2+ and refuses TLS 1.0 and 1.1',
  async run(ctx, signal): Promise<CheckResult> {
    const endpoints = ctx.endpointsFile.endpoints;
    if (endpoints.length === 0) return checkResult(tlsVersionsCheck, 'fail', { endpoints: [] }, { details: 'endpoints.json lists no endpoints' });
    const findings = await Promise.all(endpoints.map(async (endpoint) => examine(endpoint, ctx, signal)));
    const evidence: Evidence = { endpoints: endpoints.map((e) => e.name) };
    for (const finding of findings) Object.assign(evidence, finding.evidence);
    const problems = findings.flatMap((finding) => finding.problems);
    const negotiated = [...new Set(findings.flatMap((finding) => finding.negotiated ?? []))].join(', ');
    if (problems.length > 0) {
      evidence.problems = problems;
      return checkResult(tlsVersionsCheck, 'fail', evidence, { summary: problems[0] ?? '', details: problems.join('\n') });
    }
    return checkResult(tlsVersionsCheck, 'pass', evidence, {
      summary: `${endpoints.length} endpoint${endpoints.length === 1 ? '' : 's'}: ${negotiated}; TLS 1.0/1.1 refused`,
    });
  },
};
