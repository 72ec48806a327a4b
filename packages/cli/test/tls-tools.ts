// Test helpers that drive the real TLS tools (openssl s_client, sslscan, nmap) and raw sockets against an endpoint, and parse what they print.
import { spawn } from 'node:child_process';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

export interface ToolRun {
  /** Exit code; null when the tool was killed (signal) or timed out. */
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly timedOut: boolean;
  /** True when the tool exited by itself while its stdin was still open (with `holdStdinMs`). */
  readonly exitedWithStdinOpen: boolean;
  readonly ms: number;
}

export interface ToolOptions {
  /** Kill the tool after this long. @default 10000 */
  readonly timeoutMs?: number;
  /** Keep stdin open (empty) this long before closing it; without it stdin is at EOF from the start (like </dev/null). */
  readonly holdStdinMs?: number;
}

/** Runs a tool to completion. Throws only when it cannot be started at all (e.g. not installed). */
export async function runTool(command: string, args: readonly string[], options: ToolOptions = {}): Promise<ToolRun> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const started = Date.now();
  const child = spawn(command, args, { stdio: 'pipe' });
  let stdout = '';
  let stderr = '';
  let timedOut = false;
  let stdinOpen = options.holdStdinMs !== undefined;
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString('latin1')));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString('latin1')));
  child.stdin.on('error', () => undefined);
  // Without holdStdinMs stdin is at EOF from the start, as with </dev/null.
  if (options.holdStdinMs === undefined) child.stdin.end();
  const hold =
    options.holdStdinMs === undefined
      ? undefined
      : setTimeout(() => {
          stdinOpen = false;
          child.stdin.end();
        }, options.holdStdinMs);
  const kill = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, timeoutMs);
  return new Promise<ToolRun>((resolve, reject) => {
    child.once('error', (error) => {
      clearTimeout(kill);
      clearTimeout(hold);
      reject(new Error(`cannot run ${command}: ${error.message}`));
    });
    child.once('close', (code) => {
      clearTimeout(kill);
      clearTimeout(hold);
      resolve({ code, stdout, stderr, timedOut, exitedWithStdinOpen: stdinOpen && !timedOut, ms: Date.now() - started });
    });
  });
}

/** The output of a tool without session secrets and ticket dumps, for assertion messages. */
export function redact(text: string): string {
  return text
    .split('\n')
    .filter((line) => !/Master-Key|Resumption PSK|Session-ID|^\s+[0-9a-f]{4} - |BEGIN|END|^[A-Za-z0-9+/=]{40,}$/.test(line))
    .join('\n');
}

/** A suite is AEAD here when it uses GCM or ChaCha20-Poly1305 (OpenSSL or IANA spelling); CBC, CCM and NULL suites are not. */
export function isAeadSuite(name: string): boolean {
  return /(?:^|[-_])(?:GCM|CHACHA20[-_]POLY1305)(?:[-_]|$)/i.test(name);
}

export interface SClientOutcome {
  readonly run: ToolRun;
  /**
   * The version and suite the server chose in its ServerHello. Full mode reads "New, TLSv1.2, Cipher is …", which
   * s_client prints even when the handshake fails later (e.g. the server hangs up before its Finished); brief mode
   * reads "Protocol version:" / "Ciphersuite:", printed only for a completed handshake. Undefined: no ServerHello.
   */
  readonly serverHello?: { readonly protocol: string; readonly cipher: string };
  /** The client completed its side of the handshake. */
  readonly handshakeDone: boolean;
  /** The server certificate chain verified against the CA file (-verify_return_error aborts the handshake otherwise). */
  readonly chainVerified: boolean;
  /** OpenSSL error reasons, e.g. `tlsv1 alert protocol version`, `unexpected eof while reading`. */
  readonly reasons: readonly string[];
  /** Numbers of the fatal TLS alerts the server sent (70 protocol_version, 40 handshake_failure, 116 certificate_required …). */
  readonly alerts: readonly number[];
  /** `SSL3 alert read:fatal:…` lines (-state): fatal alerts received, named. */
  readonly fatalAlertsRead: readonly string[];
  /** Brief mode only: the application data the server sent (s_client -brief writes only that to stdout). */
  readonly appData?: string;
}

/** Parses `openssl s_client -state` output, full (default) or `-brief`. */
export function parseSClient(run: ToolRun, brief: boolean): Omit<SClientOutcome, 'run'> {
  const text = `${run.stderr}\n${run.stdout}`;
  const reasons = [...text.matchAll(/:error:[0-9A-Fa-f]+:[^:\n]*:[^:\n]*:([^:\n]+)/g)].map((m) => (m[1] ?? '').trim());
  const alerts = [...text.matchAll(/SSL alert number (\d+)/g)].map((m) => Number(m[1]));
  const fatalAlertsRead = [...text.matchAll(/SSL3 alert read:fatal:(.*)/g)].map((m) => (m[1] ?? '').trim());
  if (brief) {
    const established = /^CONNECTION ESTABLISHED$/m.test(text);
    const protocol = /^Protocol version:\s*(\S+)$/m.exec(text)?.[1];
    const cipher = /^Ciphersuite:\s*(\S+)$/m.exec(text)?.[1];
    return {
      ...(established && protocol !== undefined && cipher !== undefined ? { serverHello: { protocol, cipher } } : {}),
      handshakeDone: established,
      chainVerified: established && /^Verification: OK$/m.test(text),
      reasons,
      alerts,
      fatalAlertsRead,
      appData: run.stdout.replace(/^DONE\n?$/m, '').trim(),
    };
  }
  const hello = /^New, (TLSv1(?:\.\d)?), Cipher is (\S+)$/m.exec(text);
  return {
    ...(hello?.[1] !== undefined && hello[2] !== undefined ? { serverHello: { protocol: hello[1], cipher: hello[2] } } : {}),
    // Both Finished messages went by (TLS 1.2: the client's, then the server's; TLS 1.3: the other way round).
    handshakeDone: /^SSL_connect:SSLv3\/TLS read finished$/m.test(text) && /^SSL_connect:SSLv3\/TLS write finished$/m.test(text),
    chainVerified: /^depth=0 .*\nverify return:1$/m.test(text) && !/verify return:0|verify error:/.test(text),
    reasons,
    alerts,
    fatalAlertsRead,
  };
}

export interface SClientOptions extends ToolOptions {
  readonly host: string;
  readonly port: number;
  readonly caFile: string;
  readonly version: 'tls1' | 'tls1_1' | 'tls1_2' | 'tls1_3';
  /** TLS 1.2-and-below cipher list (`-cipher`). */
  readonly cipher?: string;
  /** Client certificate and key files (`-cert`, `-key`). */
  readonly certFile?: string;
  readonly keyFile?: string;
  /** ALPN protocol to offer (`-alpn`). */
  readonly alpn?: string;
  /** `-brief` output (application data alone on stdout). @default false */
  readonly brief?: boolean;
}

/** `openssl s_client -state [-brief] -connect host:port -servername host -CAfile ca -verify_return_error -<version> …`. */
export async function sClient(options: SClientOptions): Promise<SClientOutcome> {
  const brief = options.brief ?? false;
  const args = ['s_client', '-state', ...(brief ? ['-brief'] : []), '-connect', `${options.host.includes(':') ? `[${options.host}]` : options.host}:${options.port}`];
  args.push('-servername', options.host, '-CAfile', options.caFile, '-verify_return_error', `-${options.version}`);
  if (options.cipher !== undefined) args.push('-cipher', options.cipher);
  if (options.certFile !== undefined) args.push('-cert', options.certFile);
  if (options.keyFile !== undefined) args.push('-key', options.keyFile);
  if (options.alpn !== undefined) args.push('-alpn', options.alpn);
  const run = await runTool('openssl', args, options);
  return { run, ...parseSClient(run, brief) };
}

export interface SslscanReport {
  /** `SSLv2` … `TLSv1.3` → enabled/disabled, from the "SSL/TLS Protocols" section. */
  readonly protocols: Readonly<Record<string, 'enabled' | 'disabled'>>;
  /** Accepted suites, from the "Supported Server Cipher(s)" section. */
  readonly suites: ReadonlyArray<{ readonly protocol: string; readonly name: string }>;
}

/** Parses `sslscan --no-colour` output. Lines like `TLSv1.2   enabled` and `Accepted  TLSv1.2  256 bits  ECDHE-ECDSA-AES256-GCM-SHA384`. */
export function parseSslscan(text: string): SslscanReport {
  const protocols: Record<string, 'enabled' | 'disabled'> = {};
  const suites: Array<{ protocol: string; name: string }> = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const protocol = /^(SSLv[23]|TLSv1\.[0-3])\s+(enabled|disabled)$/.exec(line);
    if (protocol?.[1] !== undefined) protocols[protocol[1]] = protocol[2] as 'enabled' | 'disabled';
    const suite = /^(?:Preferred|Accepted)\s+(\S+)\s+\d+\s+bits\s+(\S+)/.exec(line);
    if (suite?.[1] !== undefined && suite[2] !== undefined) suites.push({ protocol: suite[1], name: suite[2] });
  }
  return { protocols, suites };
}

/** Parses nmap's ssl-enum-ciphers output: protocol → the suites listed under it (IANA names). */
export function parseNmapSslEnumCiphers(text: string): Readonly<Record<string, readonly string[]>> {
  const result: Record<string, string[]> = {};
  let protocol: string | undefined;
  let inCiphers = false;
  let inScript = false;
  for (const line of text.split('\n')) {
    if (/^\|\s*ssl-enum-ciphers:/.test(line)) {
      inScript = true;
      continue;
    }
    if (!inScript) continue;
    if (!line.startsWith('|')) break;
    const heading = /^\|\s{3}(\S+):\s*$/.exec(line);
    if (heading?.[1] !== undefined) {
      protocol = heading[1];
      result[protocol] = [];
      inCiphers = false;
      continue;
    }
    const section = /^\|\s{5}(\S[^:]*):/.exec(line);
    if (section !== null) {
      inCiphers = section[1] === 'ciphers';
      continue;
    }
    const suite = /^\|\s{7}(TLS_\S+|SSL_\S+)/.exec(line);
    if (inCiphers && protocol !== undefined && suite?.[1] !== undefined) result[protocol]?.push(suite[1]);
  }
  return result;
}

export interface PlaintextExchange {
  /** Everything the server sent back. */
  readonly received: Buffer;
  /** The server closed (or reset) the connection within the time limit. */
  readonly closed: boolean;
  /** Milliseconds from sending to the close. */
  readonly closedAfterMs?: number;
  readonly error?: string;
}

/** Connects over plain TCP, sends `payload`, and collects the reply until the server closes or `timeoutMs` passes. */
export async function plaintextExchange(host: string, port: number, payload: Buffer, timeoutMs = 5000): Promise<PlaintextExchange> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let sentAt = 0;
    let error: string | undefined;
    let settled = false;
    const socket = netConnect({ host, port });
    const finish = (closed: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({
        received: Buffer.concat(chunks),
        closed,
        ...(closed ? { closedAfterMs: Date.now() - sentAt } : {}),
        ...(error === undefined ? {} : { error }),
      });
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    socket.once('connect', () => {
      sentAt = Date.now();
      socket.write(payload);
    });
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('error', (e: NodeJS.ErrnoException) => {
      if (sentAt === 0) {
        settled = true;
        clearTimeout(timer);
        reject(e);
        return;
      }
      error = e.code ?? e.message;
    });
    socket.once('close', () => finish(true));
  });
}

export interface NodeHandshake {
  readonly protocol?: string;
  readonly cipher?: string;
  readonly authorized: boolean;
  /** Bytes of application data received within `verdictMs` after the handshake. */
  readonly appBytes: number;
  /** The error that ended the connection (e.g. ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED), if any. */
  readonly error?: string;
  /** The connection ended (error or close) within `verdictMs` after the handshake. */
  readonly closed: boolean;
}

/**
 * A Node TLS 1.3-only handshake (tls.connect) with the CA as the only trust anchor, optionally with a
 * client certificate; then waits `verdictMs` for a post-handshake alert or data.
 */
export async function nodeTls13Handshake(
  host: string,
  port: number,
  options: { ca: string; cert?: string; key?: string; verdictMs?: number; timeoutMs?: number },
): Promise<NodeHandshake> {
  const verdictMs = options.verdictMs ?? 0;
  return new Promise((resolve) => {
    let handshake: { protocol?: string; cipher?: string; authorized: boolean } | undefined;
    let appBytes = 0;
    let settled = false;
    const socket = tlsConnect({
      host,
      port,
      ca: options.ca,
      minVersion: 'TLSv1.3',
      maxVersion: 'TLSv1.3',
      ...(options.cert === undefined ? {} : { cert: options.cert }),
      ...(options.key === undefined ? {} : { key: options.key }),
    });
    const finish = (result: { error?: string; closed: boolean }): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ authorized: false, ...handshake, appBytes, ...result });
    };
    const timer = setTimeout(() => finish({ error: 'TIMEOUT', closed: false }), (options.timeoutMs ?? 5000) + verdictMs);
    socket.once('secureConnect', () => {
      const protocol = socket.getProtocol() ?? undefined;
      const cipher = socket.getCipher()?.standardName;
      handshake = { ...(protocol === undefined ? {} : { protocol }), ...(cipher === undefined ? {} : { cipher }), authorized: socket.authorized };
      if (verdictMs === 0) finish({ closed: false });
      else setTimeout(() => finish({ closed: false }), verdictMs);
    });
    socket.on('data', (d: Buffer) => (appBytes += d.length));
    socket.once('error', (e: NodeJS.ErrnoException) => finish({ error: e.code ?? e.message, closed: true }));
    socket.once('close', () => finish({ closed: true }));
  });
}
