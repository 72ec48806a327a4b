// Node-side probes: a TLS handshake under the Airlock client policy, and a plaintext HTTP request to a TLS port.
import { connect as netConnect } from 'node:net';
import { checkServerIdentity, connect as tlsConnect, type PeerCertificate } from 'node:tls';
import { AirlockError } from '@airlock/common';
import { describeTlsSocket, tlsClientOptions } from '@airlock/pki';

export interface HandshakeOptions {
  /** PEM CA the server must chain to. */
  readonly ca: string;
  /** Client certificate and key (mutual TLS). */
  readonly cert?: string;
  readonly key?: string;
  /**
   * Check the server certificate's name against the host. When false, only the chain is checked and
   * a name mismatch is reported in `nameMatches`. @default true
   */
  readonly checkName?: boolean;
  /**
   * After the handshake completes, keep reading this long for the server's verdict: in TLS 1.3 a
   * server rejects a client certificate only after the client's handshake has finished. @default 0
   */
  readonly verdictMs?: number;
  /** @default 5000 */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

export interface HandshakeResult {
  /**
   * `established`: handshake done (and, with verdictMs, the server kept the connection open).
   * `rejected-after-handshake`: the server sent an alert or closed within verdictMs.
   * `failed`: no handshake (alert, reset, unverifiable certificate, refused connection, timeout).
   */
  readonly outcome: 'established' | 'rejected-after-handshake' | 'failed';
  readonly protocol?: string;
  readonly cipher?: string;
  /** The server certificate chained to the CA (only meaningful once the handshake completed). */
  readonly serverVerified: boolean;
  /** Whether the server certificate's names cover the host (undefined when not reached). */
  readonly nameMatches?: boolean;
  /** Error code of the failure or the rejection, e.g. `ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED`, `ECONNREFUSED`. */
  readonly error?: string;
}

function errorCode(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? code : AirlockError.from(error).code;
}

/** Connects with the Airlock TLS client policy (tlsClientOptions) and reports what was negotiated. Never throws. */
export async function tlsHandshake(host: string, port: number, options: HandshakeOptions): Promise<HandshakeResult> {
  const checkName = options.checkName ?? true;
  const verdictMs = options.verdictMs ?? 0;
  const timeoutMs = options.timeoutMs ?? 5000;
  let nameMatches: boolean | undefined;
  let policy: ReturnType<typeof tlsClientOptions>;
  try {
    policy = tlsClientOptions({ ca: options.ca, ...(options.cert === undefined || options.key === undefined ? {} : { cert: options.cert, key: options.key }) });
  } catch (error) {
    return { outcome: 'failed', serverVerified: false, error: errorCode(error) };
  }
  if (options.signal?.aborted === true) return { outcome: 'failed', serverVerified: false, error: 'ABORTED' };
  return new Promise((resolve) => {
    let settled = false;
    let handshake: Pick<HandshakeResult, 'protocol' | 'cipher'> | undefined;
    const timers: NodeJS.Timeout[] = [];
    const socket = tlsConnect({
      ...policy,
      host,
      port,
      // Node sends no SNI for IP addresses; for names it is the host.
      checkServerIdentity: (hostname: string, cert: PeerCertificate) => {
        const mismatch = checkServerIdentity(hostname, cert);
        nameMatches = mismatch === undefined;
        return checkName ? mismatch : undefined;
      },
    });
    const finish = (result: HandshakeResult): void => {
      if (settled) return;
      settled = true;
      for (const timer of timers) clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      socket.destroy();
      resolve({ ...result, ...(nameMatches === undefined ? {} : { nameMatches }) });
    };
    const established = (): HandshakeResult => ({ outcome: 'established', serverVerified: true, ...handshake });
    const onAbort = (): void => finish({ outcome: 'failed', serverVerified: handshake !== undefined, ...handshake, error: 'ABORTED' });
    options.signal?.addEventListener('abort', onAbort, { once: true });
    timers.push(setTimeout(() => finish(handshake === undefined ? { outcome: 'failed', serverVerified: false, error: 'TIMEOUT' } : established()), timeoutMs + verdictMs));
    socket.on('secureConnect', () => {
      const description = describeTlsSocket(socket);
      handshake = { ...(description.protocol === null ? {} : { protocol: description.protocol }), ...(description.cipher === undefined ? {} : { cipher: description.cipher }) };
      if (verdictMs === 0) finish(established());
      else timers.push(setTimeout(() => finish(established()), verdictMs));
    });
    // Read (and drop) whatever arrives, so an alert after the handshake surfaces as an error.
    socket.on('data', () => undefined);
    socket.on('error', (error) => {
      finish(
        handshake === undefined
          ? { outcome: 'failed', serverVerified: false, error: errorCode(error) }
          : { outcome: 'rejected-after-handshake', serverVerified: true, ...handshake, error: errorCode(error) },
      );
    });
    socket.on('close', () => {
      finish(
        handshake === undefined
          ? { outcome: 'failed', serverVerified: false, error: 'ECONNRESET' }
          : { outcome: 'rejected-after-handshake', serverVerified: true, ...handshake, error: 'CLOSED' },
      );
    });
  });
}

/**
 * What came back for a plaintext `GET / HTTP/1.0`: `http` (an HTTP response), `plaintext` (other
 * non-TLS bytes), `tls-record` (a TLS alert or handshake record), `closed` (nothing, connection
 * closed or reset), `silent` (nothing within the time limit), `unreachable` (no connection).
 */
export type PlaintextAnswer = 'http' | 'plaintext' | 'tls-record' | 'closed' | 'silent' | 'unreachable';

export interface PlaintextProbe {
  readonly answer: PlaintextAnswer;
  /** For `http` and `plaintext`: the first line received, printable characters only, at most 80. */
  readonly firstLine?: string;
  /** For `unreachable`: the error code. */
  readonly error?: string;
}

/** Classifies the first bytes a server sent back. */
export function classifyPlaintextAnswer(bytes: Buffer): Pick<PlaintextProbe, 'answer' | 'firstLine'> {
  if (bytes.length === 0) return { answer: 'closed' };
  // A TLS record: content type alert (21) or handshake (22), then major version 3.
  if ((bytes[0] === 0x15 || bytes[0] === 0x16) && bytes[1] === 0x03) return { answer: 'tls-record' };
  const firstLine = bytes
    .subarray(0, 200)
    .toString('latin1')
    .split(/\r?\n/)[0]
    ?.replace(/[^\x20-\x7e]/g, '.')
    .slice(0, 80);
  return { answer: /^HTTP\/\d/.test(bytes.subarray(0, 8).toString('latin1')) ? 'http' : 'plaintext', ...(firstLine === undefined ? {} : { firstLine }) };
}

/** Sends `GET / HTTP/1.0\r\n\r\n` in plaintext and reports what, if anything, answers. Never throws. */
export async function plaintextHttpProbe(host: string, port: number, options: { readonly timeoutMs?: number; readonly signal?: AbortSignal } = {}): Promise<PlaintextProbe> {
  const timeoutMs = options.timeoutMs ?? 3000;
  if (options.signal?.aborted === true) return { answer: 'unreachable', error: 'ABORTED' };
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let received = 0;
    let connected = false;
    let settled = false;
    const finish = (result: PlaintextProbe): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      socket.destroy();
      resolve(result);
    };
    const answer = (): PlaintextProbe => classifyPlaintextAnswer(Buffer.concat(chunks));
    const onAbort = (): void => finish({ answer: 'unreachable', error: 'ABORTED' });
    const timer = setTimeout(() => finish(received > 0 ? answer() : connected ? { answer: 'silent' } : { answer: 'unreachable', error: 'TIMEOUT' }), timeoutMs);
    const socket = netConnect({ host, port });
    options.signal?.addEventListener('abort', onAbort, { once: true });
    socket.on('connect', () => {
      connected = true;
      socket.write('GET / HTTP/1.0\r\n\r\n');
    });
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      received += chunk.length;
      if (received >= 64 || chunk.includes(0x0a)) finish(answer());
    });
    socket.on('error', (error) => finish(connected ? answer() : { answer: 'unreachable', error: errorCode(error) }));
    socket.on('close', () => finish(connected ? answer() : { answer: 'unreachable', error: 'ECONNREFUSED' }));
  });
}
