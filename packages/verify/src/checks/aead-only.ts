// Check tls.aead-only: every endpoint accepts only the policy's AEAD suites (sslscan enumeration, openssl fallback).
import { isAllowedCipherSuite } from '@airlock/pki';
import { checkResult, type Check, type CheckResult, type Evidence } from '../check.js';
import type { StackEndpoint } from '../endpoints-file.js';
import { endpointAddress } from '../internal/endpoint-address.js';
import { scanSuites, type SuiteProtocol } from '../internal/suite-scan.js';

/** Why a suite outside the policy is a problem, in a few words. */
export function describeSuiteProblem(suite: string): string {
  if (/NULL/.test(suite)) return 'no encryption (NULL)';
  if (/RC4/.test(suite)) return 'RC4 stream cipher, not AEAD';
  if (/GCM|CHACHA20|POLY1305|CCM/.test(suite)) {
    if (/CCM_8|CCM8/.test(suite)) return 'AEAD with a truncated 8-byte tag, outside the policy';
    if (!/^ECDHE-|^TLS_/.test(suite)) return 'AEAD but without ECDHE forward secrecy, outside the policy';
    return 'AEAD but outside the policy list';
  }
  return 'CBC-mode (MAC-then-encrypt), not AEAD';
}

interface EndpointFindings {
  readonly evidence: Evidence;
  readonly problems: string[];
  readonly scanners: string[];
  readonly count: number;
}

async function examine(endpoint: StackEndpoint, signal: AbortSignal, scanner: 'auto' | 'sslscan' | 'openssl'): Promise<EndpointFindings> {
  const name = endpoint.name;
  const address = endpointAddress(endpoint.url);
  if (address === undefined) return { evidence: {}, problems: [`${name}: cannot parse the URL ${endpoint.url}`], scanners: [], count: 0 };
  const protocols: readonly SuiteProtocol[] = ['TLSv1.2', 'TLSv1.3'];
  const scans = await Promise.all(protocols.map(async (protocol) => [protocol, await scanSuites(address.hostPort, protocol, { signal, scanner })] as const));
  const evidence: Evidence = {};
  const problems: string[] = [];
  const scanners: string[] = [];
  let count = 0;
  for (const [protocol, scan] of scans) {
    const key = `${name}.${protocol === 'TLSv1.2' ? 'tls12' : 'tls13'}`;
    if (scan === undefined) {
      evidence[key] = 'not scanned';
      problems.push(`${name}: could not enumerate ${protocol} suites (neither sslscan nor openssl could reach ${address.hostPort})`);
      continue;
    }
    scanners.push(scan.scanner);
    evidence[key] = [...scan.suites];
    count += scan.suites.length;
    for (const suite of scan.suites) {
      if (!isAllowedCipherSuite(suite)) problems.push(`${name}: ${protocol} suite ${suite} accepted: ${describeSuiteProblem(suite)}`);
    }
  }
  if (count === 0 && problems.length === 0) problems.push(`${name}: no TLS 1.2 or 1.3 suite accepted (not a TLS endpoint?)`);
  return { evidence, problems, scanners, count };
}

/** Builds the check; `scanner` forces sslscan or openssl probing (tests). */
export function createAeadOnlyCheck(options: { readonly scanner?: 'auto' | 'sslscan' | 'openssl' } = {}): Check {
  const check: Check = {
    id: 'tls.aead-only',
    title: 'Every endpoint accepts only AEAD cipher suites (ECDHE + AES-GCM / ChaCha20-Poly1305)',
    async run(ctx, signal): Promise<CheckResult> {
      const endpoints = ctx.endpointsFile.endpoints;
      if (endpoints.length === 0) return checkResult(check, 'fail', { endpoints: [] }, { details: 'endpoints.json lists no endpoints' });
      const findings = await Promise.all(endpoints.map(async (endpoint) => examine(endpoint, signal, options.scanner ?? 'auto')));
      const evidence: Evidence = { endpoints: endpoints.map((e) => e.name), scanner: [...new Set(findings.flatMap((f) => f.scanners))] };
      for (const finding of findings) Object.assign(evidence, finding.evidence);
      const problems = findings.flatMap((finding) => finding.problems);
      if (problems.length > 0) {
        evidence.problems = problems;
        return checkResult(check, 'fail', evidence, { summary: problems[0] ?? '', details: problems.join('\n') });
      }
      const total = findings.reduce((sum, finding) => sum + finding.count, 0);
      return checkResult(check, 'pass', evidence, {
        summary: `${endpoints.length} endpoint${endpoints.length === 1 ? '' : 's'}: ${total} accepted suites, all AEAD and in the policy`,
      });
    },
  };
  return check;
}

export const aeadOnlyCheck: Check = createAeadOnlyCheck();
