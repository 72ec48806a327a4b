// Attack tools for the attack suite against a real `airlock up` stack: other processes' descriptors and RSS, held raw and TLS floods, raw HTTP/2 frames.
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';

/** Open descriptors of another process (/proc/<pid>/fd). */
export function descriptors(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** Resident set size of another process, in MiB (VmRSS in /proc/<pid>/status). */
export function rssMiB(pid: number): number {
  const kib = /^VmRSS:\s+(\d+)\s+kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  if (kib === undefined) throw new Error(`no VmRSS for pid ${pid}`);
  return Math.round(Number(kib) / 1024);
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls until `check` is true; fails with `what` after `timeoutMs`. */
export async function until(what: string, timeoutMs: number, check: () => boolean | Promise<boolean>, everyMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** The highest descriptor count and RSS each watched process reached while the sampler ran (every 100 ms, and at each reading). */
export interface Sampler {
  peakDescriptors(pid: number): number;
  peakRssMiB(pid: number): number;
  stop(): void;
}

export function sample(pids: readonly number[], everyMs = 100): Sampler {
  const fds = new Map<number, number>();
  const rss = new Map<number, number>();
  const tick = (): void => {
    for (const pid of pids) {
      try {
        fds.set(pid, Math.max(fds.get(pid) ?? 0, descriptors(pid)));
        rss.set(pid, Math.max(rss.get(pid) ?? 0, rssMiB(pid)));
      } catch {
        // The process went away; the test that killed it knows.
      }
    }
  };
  tick();
  const timer = setInterval(tick, everyMs);
  return {
    // Each reading samples first: an attack that was put in place and checked within one interval would otherwise show no rise.
    peakDescriptors: (pid) => {
      tick();
      return fds.get(pid) ?? 0;
    },
    peakRssMiB: (pid) => {
      tick();
      return rss.get(pid) ?? 0;
    },
    stop: () => {
      tick();
      clearInterval(timer);
    },
  };
}

/**
 * A process's descriptor count once it has settled: two readings 500 ms apart that agree (at most
 * 10 s), so that connections of an earlier step still closing do not count in a baseline.
 */
export async function settledDescriptors(pid: number): Promise<number> {
  let last = descriptors(pid);
  for (let i = 0; i < 20; i++) {
    await sleep(500);
    const now = descriptors(pid);
    if (now === last) return now;
    last = now;
  }
  return last;
}

/** Connections this process holds open against a server, and how many of them the server has ended. */
export interface Held {
  readonly opened: number;
  closedByServer(): number;
  /** Bytes each connection received from the server before it ended, as latin1 text (for status lines). */
  answers(): string[];
  destroy(): void;
}

/**
 * Opens `count` TCP connections to `port`, writes `payload` on each and goes quiet; never ends one
 * itself (allowHalfOpen), only notes when the server ends it. Resolves once every connection is open
 * and its payload written, or closed by the server. At most `parallel` connects are in flight at once.
 */
export async function holdRaw(port: number, count: number, payload: Buffer, parallel = 200): Promise<Held> {
  const sockets: net.Socket[] = [];
  let closed = 0;
  let next = 0;
  const openOne = (): Promise<void> =>
    new Promise((resolve) => {
      const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
      sockets.push(socket);
      let seen = false;
      const gone = (): void => {
        if (seen) return;
        seen = true;
        closed++;
        resolve();
      };
      socket.on('end', gone);
      socket.on('error', gone);
      socket.on('close', gone);
      socket.once('connect', () => {
        if (payload.length === 0) resolve();
        else socket.write(payload, () => resolve());
      });
    });
  const worker = async (): Promise<void> => {
    while (next < count) {
      next++;
      await openOne();
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, count) }, worker));
  return {
    opened: count,
    closedByServer: () => closed,
    answers: () => [],
    destroy: () => {
      for (const socket of sockets) socket.destroy();
    },
  };
}

export interface SlowClientOptions {
  readonly port: number;
  readonly ca: string;
  readonly count: number;
  /** ALPN offered; the API and dispatch listeners speak HTTP/1.1 when it is chosen. */
  readonly alpn?: string[];
  /** Written at once after the handshake. */
  readonly head: string;
  /** Then one byte of this every `everyMs`. */
  readonly trickle: string;
  readonly everyMs: number;
  /** Client certificate, for the tunnel. */
  readonly cert?: string;
  readonly key?: string;
}

/**
 * `count` clients that complete TLS, send `head`, then trickle one byte every `everyMs` until the
 * server ends the connection. Resolves once every client has finished its handshake (or failed it).
 * At most 25 handshakes are in flight at once, so the attack's own set-up does not starve the machine.
 */
export async function holdSlowClients(options: SlowClientOptions): Promise<Held & { handshakes: number }> {
  const sockets: tls.TLSSocket[] = [];
  const received: string[] = [];
  let closed = 0;
  let handshakes = 0;
  let next = 0;
  const timers: NodeJS.Timeout[] = [];
  const openOne = (): Promise<void> =>
    new Promise((resolve) => {
      const index = sockets.length;
      received.push('');
      const socket = tls.connect({
        host: '127.0.0.1',
        port: options.port,
        ca: options.ca,
        servername: 'localhost',
        ...(options.alpn === undefined ? {} : { ALPNProtocols: options.alpn }),
        ...(options.cert === undefined ? {} : { cert: options.cert, key: options.key }),
      });
      sockets.push(socket);
      let seen = false;
      const gone = (): void => {
        if (seen) return;
        seen = true;
        closed++;
        resolve();
      };
      socket.on('data', (chunk: Buffer) => {
        if ((received[index] ?? '').length < 256) received[index] = (received[index] ?? '') + chunk.toString('latin1');
      });
      socket.on('error', gone);
      socket.on('close', gone);
      socket.once('secureConnect', () => {
        handshakes++;
        socket.write(options.head);
        let at = 0;
        const timer = setInterval(() => {
          if (socket.destroyed || !socket.writable) {
            clearInterval(timer);
            return;
          }
          socket.write(options.trickle[at % options.trickle.length] ?? 'x');
          at++;
        }, options.everyMs);
        timers.push(timer);
        resolve();
      });
    });
  const worker = async (): Promise<void> => {
    while (next < options.count) {
      next++;
      await openOne();
    }
  };
  await Promise.all(Array.from({ length: Math.min(25, options.count) }, worker));
  return {
    opened: options.count,
    handshakes,
    closedByServer: () => closed,
    answers: () => received,
    destroy: () => {
      for (const timer of timers) clearInterval(timer);
      for (const socket of sockets) socket.destroy();
    },
  };
}

/** An HTTP/2 frame: 9-byte header (RFC 9113 §4.1) and payload. */
export function h2Frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(payload.length, 0, 3);
  header[3] = type;
  header[4] = flags;
  header.writeUInt32BE(streamId, 5);
  return Buffer.concat([header, payload]);
}

export const H2 = { data: 0x0, headers: 0x1, rstStream: 0x3, settings: 0x4, ping: 0x6, goaway: 0x7 } as const;
/** RST_STREAM error code REFUSED_STREAM (RFC 9113 §7). */
export const REFUSED_STREAM = 0x7;

/** What a server sent on a raw HTTP/2 connection, frame by frame (type and stream id; RST_STREAM and GOAWAY codes). */
export interface H2Received {
  readonly answered: Set<number>;
  readonly refused: Set<number>;
  readonly reset: Map<number, number>;
  readonly goaway: boolean;
  readonly maxConcurrentStreams: number | undefined;
}

export function parseH2Frames(bytes: Buffer): H2Received {
  const answered = new Set<number>();
  const refused = new Set<number>();
  const reset = new Map<number, number>();
  let goaway = false;
  let maxConcurrentStreams: number | undefined;
  for (let at = 0; at + 9 <= bytes.length; ) {
    const length = bytes.readUIntBE(at, 3);
    const type = bytes[at + 3];
    const flags = bytes[at + 4] ?? 0;
    const id = bytes.readUInt32BE(at + 5) & 0x7fffffff;
    if (at + 9 + length > bytes.length) break;
    const payload = bytes.subarray(at + 9, at + 9 + length);
    if (type === H2.headers) answered.add(id);
    if (type === H2.rstStream) {
      const code = payload.readUInt32BE(0);
      reset.set(id, code);
      if (code === REFUSED_STREAM) refused.add(id);
    }
    if (type === H2.goaway) goaway = true;
    if (type === H2.settings && (flags & 0x1) === 0) {
      for (let s = 0; s + 6 <= payload.length; s += 6) if (payload.readUInt16BE(s) === 0x3) maxConcurrentStreams = payload.readUInt32BE(s + 2);
    }
    at += 9 + length;
  }
  return { answered, refused, reset, goaway, maxConcurrentStreams };
}

/**
 * A raw HTTP/2 client that ignores SETTINGS_MAX_CONCURRENT_STREAMS: completes TLS with ALPN h2,
 * sends the preface and `streams` HEADERS frames at once, none ended (no END_STREAM), so every one
 * would stay open, and collects what the server sends back.
 */
export async function h2StreamFlood(port: number, ca: string, path: string, streams: number): Promise<{ socket: tls.TLSSocket; received: () => H2Received; closed: () => boolean }> {
  const socket = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost', ALPNProtocols: ['h2'] });
  socket.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', () => resolve());
    socket.once('error', reject);
  });
  if (socket.alpnProtocol !== 'h2') throw new Error(`ALPN chose ${String(socket.alpnProtocol)}, not h2`);
  const chunks: Buffer[] = [];
  let closed = false;
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.once('close', () => (closed = true));
  // HPACK (RFC 7541 §6.1, §6.2.2, Appendix A): indexed :method POST (3) and :scheme https (7); :path (4),
  // :authority (1) and content-type (31, a 4-bit prefix: 15 then 16) as literals without indexing with indexed names.
  const literal = (prefix: readonly number[], value: string): Buffer => {
    const bytes = Buffer.from(value, 'latin1');
    if (bytes.length > 126) throw new Error('header value too long for this encoder');
    return Buffer.concat([Buffer.from([...prefix, bytes.length]), bytes]);
  };
  const headers = Buffer.concat([Buffer.from([0x83, 0x87]), literal([0x04], path), literal([0x01], 'localhost'), literal([0x0f, 0x10], 'application/json')]);
  const frames = Array.from({ length: streams }, (_, i) => h2Frame(H2.headers, 0x4, 2 * i + 1, headers));
  socket.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), h2Frame(H2.settings, 0, 0), ...frames]));
  return { socket, received: () => parseH2Frames(Buffer.concat(chunks)), closed: () => closed };
}
