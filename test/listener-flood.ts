// Test helpers for listener-limit attacks: a real partial ClientHello, floods held open by a separate process, and this process's descriptor count.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import { partialClientHello } from '@airlock/testing';

export { partialClientHello };

/** Open descriptors of this process: the servers under test run in it, the attacking clients do not. */
export function openDescriptors(): number {
  return readdirSync('/proc/self/fd').length;
}

/**
 * Runs in a child process: once told to (a line on stdin), opens `count` connections, writes `payload` on each, reports
 * `opened <n>` once all are written, then holds them without ever closing one itself; it reports
 * `closed <n>` as the server ends them (FIN or reset).
 */
const HOLDER = `
import net from 'node:net';
const [port, count, hex] = process.argv.slice(-3);
const payload = Buffer.from(hex, 'hex');
let opened = 0;
let closed = 0;
const sockets = [];
const open = () => {
for (let i = 0; i < Number(count); i++) {
  const socket = net.connect({ host: '127.0.0.1', port: Number(port), allowHalfOpen: true }, () => {
    socket.write(payload, () => {
      opened++;
      if (opened === Number(count)) process.stdout.write('opened ' + opened + '\\n');
    });
  });
  // allowHalfOpen: the client never ends or closes its side; it only notes that the server ended its own.
  let seen = false;
  const serverClosed = () => {
    if (seen) return;
    seen = true;
    closed++;
    process.stdout.write('closed ' + closed + '\\n');
  };
  socket.on('end', serverClosed);
  socket.on('error', serverClosed);
  sockets.push(socket);
}
};
process.stdin.once('data', open);
process.stdin.on('end', () => process.exit(0));
process.stdout.write('ready\\n');
`;

export interface HeldConnections {
  /** This process's descriptors before the connections were opened (with the child's pipes already counted). */
  readonly baseline: number;
  /** Connections the server has closed so far. */
  closedByServer(): number;
  stop(): Promise<void>;
}

/** Opens `count` connections to `port` from a separate process, each sending `payload` and then going quiet. */
export async function holdConnections(port: number, count: number, payload: Buffer): Promise<HeldConnections> {
  const child: ChildProcessWithoutNullStreams = spawn(process.execPath, ['--input-type=module', '-e', HOLDER, String(port), String(count), payload.toString('hex')], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let closed = 0;
  let output = '';
  const lines: string[] = [];
  const exited = new Promise<never>((_resolve, reject) => child.once('exit', (code) => reject(new Error(`connection holder exited early (${String(code)})`))));
  exited.catch(() => undefined);
  const line = (prefix: string): Promise<void> =>
    Promise.race([
      exited,
      new Promise<void>((resolve) => {
        const onData = (): void => {
          if (lines.some((l) => l.startsWith(prefix))) {
            child.stdout.off('data', onData);
            resolve();
          }
        };
        child.stdout.on('data', onData);
        onData();
      }),
    ]);
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString();
    const complete = output.split('\n');
    output = complete.pop() ?? '';
    for (const l of complete) {
      if (l.startsWith('closed ')) closed = Number(l.slice(7));
      else lines.push(l);
    }
  });
  await line('ready');
  const baseline = openDescriptors();
  child.stdin.write('go\n');
  await line('opened ');
  return {
    baseline,
    closedByServer: () => closed,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = once(child, 'exit');
      child.stdin.end();
      await exited;
    },
  };
}

/** Polls until `check` is true; fails with `what` after `timeoutMs`. */
export async function until(what: string, timeoutMs: number, check: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * The flood test: `count` partial ClientHellos held open by another process. The server's
 * descriptors must first rise (the connections reached it) and then, within `releaseWithinMs` of
 * that (its configured handshake timeout plus a generous margin), return to within 5% of the
 * baseline, while the attacker still holds its side.
 */
export async function floodWithPartialHellos(port: number, count: number, releaseWithinMs: number): Promise<{ baseline: number; peak: number; after: number; closedByServer: number }> {
  const hello = await partialClientHello();
  const held = await holdConnections(port, count, hello);
  const { baseline } = held;
  try {
    let peak = 0;
    await until(`the server to hold the ${count} connections`, 30_000, () => {
      peak = Math.max(peak, openDescriptors());
      return peak >= baseline + count * 0.9;
    });
    const bound = Math.floor(baseline * 1.05);
    await until('the descriptors to return to baseline', releaseWithinMs, () => openDescriptors() <= bound);
    const after = openDescriptors();
    // The server ended them; the attacking process never closed one itself.
    await until('the attacker to see every connection closed', 30_000, () => held.closedByServer() === count);
    return { baseline, peak, after, closedByServer: held.closedByServer() };
  } finally {
    await held.stop();
  }
}
