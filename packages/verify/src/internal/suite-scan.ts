// Enumerates the cipher suites a server accepts: sslscan when installed, else one openssl s_client probe per suite.
import { ALL_TLS13_SUITES, listOpensslTls12Suites, probeWithOpenssl } from './openssl.js';
import { runCommand } from './run-command.js';

export type SuiteProtocol = 'TLSv1.2' | 'TLSv1.3';

export interface SuiteScan {
  /** Which tool enumerated the suites, e.g. `sslscan 2.0.7` or `openssl (per-suite probes)`. */
  readonly scanner: string;
  /** Accepted suites (OpenSSL names), server preference first when the scanner knows it. */
  readonly suites: readonly string[];
}

export interface SuiteScanOptions {
  readonly signal?: AbortSignal;
  /** Force a scanner (tests). @default 'auto': sslscan, falling back to openssl */
  readonly scanner?: 'auto' | 'sslscan' | 'openssl';
}

/** Suite lines of `sslscan --no-colour` output: `Preferred TLSv1.2  256 bits  ECDHE-ECDSA-AES256-GCM-SHA384 …`. */
export function parseSslscanSuites(text: string, protocol: SuiteProtocol): string[] {
  const suites: string[] = [];
  for (const line of text.split('\n')) {
    const match = /^(?:Preferred|Accepted)\s+(\S+)\s+\d+\s+bits\s+(\S+)/.exec(line.trim());
    if (match?.[1] === protocol && match[2] !== undefined && !suites.includes(match[2])) suites.push(match[2]);
  }
  return suites;
}

/** sslscan's version line, e.g. `2.0.7` (output of `--no-colour`, so no escape sequences). */
export function parseSslscanVersion(text: string): string | undefined {
  return /Version:\s*(\S+)/.exec(text)?.[1];
}

/** Scans with sslscan; undefined when sslscan is missing or could not connect. */
async function scanWithSslscan(hostPort: string, protocol: SuiteProtocol, signal: AbortSignal | undefined): Promise<SuiteScan | undefined> {
  const flag = protocol === 'TLSv1.2' ? '--tls12' : '--tls13';
  const result = await runCommand('sslscan', ['--no-colour', flag, hostPort], { timeoutMs: 30_000, ...(signal === undefined ? {} : { signal }) });
  if (result.failure !== undefined) return undefined;
  const output = `${result.stdout}\n${result.stderr}`;
  if (/Could not (?:open a connection|connect)/i.test(output)) return undefined;
  const version = parseSslscanVersion(output);
  const scanner = version === undefined ? 'sslscan' : `sslscan ${version}`;
  if (/Supported Server Cipher/.test(output)) return { scanner, suites: parseSslscanSuites(output, protocol) };
  // The server does not speak this version at all (or is not TLS): sslscan stops before the suite list.
  if (new RegExp(`^${protocol.replace('.', '\\.')}\\s+disabled`, 'm').test(output)) return { scanner, suites: [] };
  return undefined;
}

async function mapLimited<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** Probes every suite openssl knows, one handshake each. Undefined when openssl is missing. */
async function scanWithOpenssl(hostPort: string, protocol: SuiteProtocol, signal: AbortSignal | undefined): Promise<SuiteScan | undefined> {
  const withSignal = signal === undefined ? {} : { signal };
  const candidates = protocol === 'TLSv1.2' ? await listOpensslTls12Suites(withSignal) : [...ALL_TLS13_SUITES];
  if (candidates === undefined) return undefined;
  const probes = await mapLimited(candidates, 8, async (suite) =>
    protocol === 'TLSv1.2'
      ? probeWithOpenssl(hostPort, 'tls1_2', { cipher: `${suite}@SECLEVEL=0`, timeoutMs: 10_000, ...withSignal })
      : probeWithOpenssl(hostPort, 'tls1_3', { ciphersuites: suite, timeoutMs: 10_000, ...withSignal }),
  );
  if (probes.some((probe) => probe.outcome === 'inconclusive' && /not installed|connect|refused/.test(probe.reason ?? ''))) return undefined;
  const suites = probes.flatMap((probe) => (probe.outcome === 'accepted' && probe.cipher !== undefined ? [probe.cipher] : []));
  return { scanner: 'openssl (per-suite probes)', suites: [...new Set(suites)] };
}

/** The suites `hostPort` accepts for one protocol version. Undefined when no scanner could run. */
export async function scanSuites(hostPort: string, protocol: SuiteProtocol, options: SuiteScanOptions = {}): Promise<SuiteScan | undefined> {
  const scanner = options.scanner ?? 'auto';
  if (scanner !== 'openssl') {
    const scan = await scanWithSslscan(hostPort, protocol, options.signal);
    if (scan !== undefined || scanner === 'sslscan') return scan;
  }
  return scanWithOpenssl(hostPort, protocol, options.signal);
}
