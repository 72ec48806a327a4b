// Probes with the real `openssl s_client`: does a server accept a given TLS version or suite? Parses only protocol and cipher.
import { runCommand, type RunCommandOptions } from './run-command.js';

/** `openssl s_client` version flags. */
export type OpensslVersionFlag = 'tls1' | 'tls1_1' | 'tls1_2' | 'tls1_3';

export const OPENSSL_VERSION_NAMES: Readonly<Record<OpensslVersionFlag, string>> = {
  tls1: 'TLSv1',
  tls1_1: 'TLSv1.1',
  tls1_2: 'TLSv1.2',
  tls1_3: 'TLSv1.3',
};

/**
 * `accepted`: the handshake completed. `refused`: the server ended the handshake (alert or close).
 * `inconclusive`: the probe itself could not run (no openssl, no connection, the local client
 * refused to offer the version, a timeout), so it proves nothing either way.
 */
export type ProbeOutcome = 'accepted' | 'refused' | 'inconclusive';

export interface OpensslProbe {
  readonly outcome: ProbeOutcome;
  readonly protocol?: string;
  readonly cipher?: string;
  /** For refused and inconclusive probes: the OpenSSL reason, e.g. `tlsv1 alert protocol version`. */
  readonly reason?: string;
}

/** The negotiated protocol and cipher from s_client output (full or `-brief`); undefined fields when the handshake failed. */
export function parseSClientOutput(text: string): { protocol?: string; cipher?: string } {
  const cipherText =
    /Cipher is (\S+)/.exec(text)?.[1] ?? /^\s*Cipher\s*:\s*(\S+)/m.exec(text)?.[1] ?? /^Ciphersuite:\s*(\S+)/m.exec(text)?.[1];
  const cipher = cipherText === undefined || cipherText === '(NONE)' || /^0+$/.test(cipherText) ? undefined : cipherText;
  const protocolText =
    /^\s*Protocol\s*:\s*(\S+)/m.exec(text)?.[1] ?? /^Protocol version:\s*(\S+)/m.exec(text)?.[1] ?? /^New, (TLSv1\.3), Cipher is/m.exec(text)?.[1];
  return {
    ...(cipher === undefined || protocolText === undefined ? {} : { protocol: protocolText }),
    ...(cipher === undefined ? {} : { cipher }),
  };
}

/** The first OpenSSL error reason in the output, e.g. `tlsv1 alert protocol version` or `wrong version number`. */
export function parseOpensslReason(text: string): string | undefined {
  const reason = /error:[0-9A-Fa-f]+:SSL routines:[^:]*:([^:\n]+)/.exec(text)?.[1];
  if (reason !== undefined) return reason.trim();
  const connect = /connect:errno=(\d+)/.exec(text)?.[1];
  if (connect !== undefined) return `connect failed (errno ${connect})`;
  if (/Connection refused/i.test(text)) return 'connection refused';
  return undefined;
}

/** Reasons that mean the local client never offered the handshake, or never reached the server. */
const LOCAL_FAILURE = /no protocols available|no ciphers available|no cipher match|connect failed|connection refused|unknown option|bad flag/i;

export interface SClientOptions extends RunCommandOptions {
  /** TLS 1.2-and-below cipher list (`-cipher`), e.g. `DEFAULT@SECLEVEL=0`. */
  readonly cipher?: string;
  /** TLS 1.3 suites (`-ciphersuites`). */
  readonly ciphersuites?: string;
  /** SNI name (`-servername`). @default openssl's own (the host, when it is a name) */
  readonly servername?: string;
  /** The openssl binary. @default "openssl" */
  readonly openssl?: string;
}

/** `openssl s_client -connect hostPort -<version> [-cipher …] </dev/null`, classified. Never throws. */
export async function probeWithOpenssl(hostPort: string, version: OpensslVersionFlag, options: SClientOptions = {}): Promise<OpensslProbe> {
  const args = ['s_client', '-connect', hostPort, `-${version}`];
  if (options.cipher !== undefined) args.push('-cipher', options.cipher);
  if (options.ciphersuites !== undefined) args.push('-ciphersuites', options.ciphersuites);
  if (options.servername !== undefined) args.push('-servername', options.servername);
  const result = await runCommand(options.openssl ?? 'openssl', args, { timeoutMs: options.timeoutMs ?? 10_000, ...(options.signal === undefined ? {} : { signal: options.signal }) });
  if (result.failure !== undefined) {
    return { outcome: 'inconclusive', reason: result.failure === 'ENOENT' ? 'openssl is not installed' : `openssl ${result.failure}` };
  }
  // The full output also holds the session's master key: only the fields parsed here leave this function.
  const output = `${result.stdout}\n${result.stderr}`;
  const { protocol, cipher } = parseSClientOutput(output);
  if (cipher !== undefined) {
    return { outcome: 'accepted', protocol: protocol ?? OPENSSL_VERSION_NAMES[version], cipher };
  }
  const reason = parseOpensslReason(output) ?? (result.code === 0 ? 'handshake did not complete' : `openssl exited with ${String(result.code)}`);
  return { outcome: LOCAL_FAILURE.test(reason) ? 'inconclusive' : 'refused', reason };
}

/** Every TLS 1.2 suite this openssl can offer (OpenSSL names), for per-suite probing when sslscan is missing. */
export async function listOpensslTls12Suites(options: RunCommandOptions & { readonly openssl?: string } = {}): Promise<string[] | undefined> {
  const result = await runCommand(options.openssl ?? 'openssl', ['ciphers', '-tls1_2', '-s', 'ALL:COMPLEMENTOFALL:@SECLEVEL=0'], options);
  if (result.code !== 0) return undefined;
  return result.stdout
    .trim()
    .split(':')
    .filter((name) => name.length > 0 && !name.startsWith('TLS_'));
}

/** Every TLS 1.3 suite defined by RFC 8446, including the ones OpenSSL does not enable by default. */
export const ALL_TLS13_SUITES = Object.freeze([
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_128_CCM_SHA256',
  'TLS_AES_128_CCM_8_SHA256',
] as const);
