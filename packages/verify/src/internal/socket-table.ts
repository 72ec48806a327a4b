// The local TCP socket table (`ss -Htnp` / `ss -Htlnp`) and process trees (/proc), for the socket-level checks.
import { readdir, readFile } from 'node:fs/promises';
import { AirlockError } from '@airlock/common';
import { formatHostPort } from './endpoint-address.js';
import { runCommand } from './run-command.js';

export interface SocketAddress {
  /** Address without brackets or `%interface`; `*` for a wildcard. */
  readonly address: string;
  readonly port: number;
}

export interface SocketOwner {
  readonly command: string;
  readonly pid: number;
}

export interface TcpSocket {
  /** e.g. `LISTEN`, `ESTAB`. */
  readonly state: string;
  readonly local: SocketAddress;
  readonly peer: SocketAddress;
  /** The processes holding the socket (empty when ss may not see them). */
  readonly owners: readonly SocketOwner[];
}

/** Parses `[::1]:9443`, `127.0.0.1:9443`, `*:9000`, `127.0.0.53%lo:53`, `0.0.0.0:*`. */
export function parseSocketAddress(text: string): SocketAddress | undefined {
  const match = /^(?:\[([^\]]+)\]|([^\s]*?)):(\d+|\*)$/.exec(text);
  if (match === null) return undefined;
  const address = (match[1] ?? match[2] ?? '').replace(/%.*$/, '');
  const port = match[3] === '*' ? 0 : Number(match[3]);
  return { address: address === '' ? '*' : address, port };
}

/** Parses one line of `ss -H -t -n -p` (with or without `-l`): State Recv-Q Send-Q Local Peer [Process]. */
export function parseSsLine(line: string): TcpSocket | undefined {
  const fields = line.trim().split(/\s+/);
  if (fields.length < 5) return undefined;
  const [state, , , localText, peerText] = fields;
  const local = parseSocketAddress(localText ?? '');
  const peer = parseSocketAddress(peerText ?? '');
  if (state === undefined || local === undefined || peer === undefined) return undefined;
  const process = fields.slice(5).join(' ');
  const owners: SocketOwner[] = [];
  for (const owner of process.matchAll(/\("([^"]*)",pid=(\d+)/g)) owners.push({ command: owner[1] ?? '', pid: Number(owner[2]) });
  return { state, local, peer, owners };
}

export function parseSsOutput(text: string): TcpSocket[] {
  return text.split('\n').flatMap((line) => parseSsLine(line) ?? []);
}

/**
 * Reads the TCP socket table with `ss`: listening sockets (`ss -Htlnp`) or all others
 * (`ss -Htnp`). Throws UNAVAILABLE when ss is missing or fails.
 */
export async function readTcpSockets(kind: 'listening' | 'connected', signal?: AbortSignal): Promise<TcpSocket[]> {
  const result = await runCommand('ss', kind === 'listening' ? ['-Htlnp'] : ['-Htnp'], { timeoutMs: 10_000, ...(signal === undefined ? {} : { signal }) });
  if (result.failure !== undefined || result.code !== 0) {
    throw new AirlockError('UNAVAILABLE', result.failure === 'ENOENT' ? 'ss (iproute2) is not installed' : 'ss could not read the socket table', {
      details: { tool: 'ss', ...(result.failure === undefined ? { exitCode: result.code ?? -1 } : { failure: result.failure }) },
    });
  }
  return parseSsOutput(result.stdout);
}

/** `addr:port` for evidence, IPv6 bracketed. */
export function formatSocketAddress(address: SocketAddress): string {
  return formatHostPort(address.address, address.port);
}

/** Where to connect to reach a listening socket: wildcards become the loopback address of their family. */
export function connectHostFor(address: SocketAddress): string {
  if (address.address === '*' || address.address === '0.0.0.0') return '127.0.0.1';
  if (address.address === '::') return '::1';
  return address.address;
}

/** Parent pid of every process (Linux /proc). */
async function parentPids(): Promise<Map<number, number>> {
  const parents = new Map<number, number>();
  let entries: string[];
  try {
    entries = await readdir('/proc');
  } catch (error) {
    throw new AirlockError('UNAVAILABLE', 'the process table (/proc) cannot be read', { cause: error });
  }
  await Promise.all(
    entries
      .filter((entry) => /^\d+$/.test(entry))
      .map(async (entry) => {
        try {
          const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
          // pid (comm) state ppid …; comm may contain spaces and parentheses, so split after the last ')'.
          const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
          if (Number.isSafeInteger(ppid)) parents.set(Number(entry), ppid);
        } catch {
          // The process exited while we read the table.
        }
      }),
  );
  return parents;
}

/** The given pids and all their descendants. */
export async function processTree(roots: readonly number[]): Promise<Set<number>> {
  const parents = await parentPids();
  const tree = new Set(roots);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [pid, ppid] of parents) {
      if (!tree.has(pid) && tree.has(ppid)) {
        tree.add(pid);
        grew = true;
      }
    }
  }
  return tree;
}

/** The kernel's ephemeral (client) port range, from /proc/sys/net/ipv4/ip_local_port_range. */
export async function ephemeralPortRange(): Promise<{ low: number; high: number } | undefined> {
  try {
    const [low, high] = (await readFile('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')).trim().split(/\s+/).map(Number);
    return low !== undefined && high !== undefined && low > 0 && high >= low ? { low, high } : undefined;
  } catch {
    return undefined;
  }
}
