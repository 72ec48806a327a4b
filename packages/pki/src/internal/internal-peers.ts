// The process's own outgoing connections (the internal pool), so that a listener of the same process can tell them from public clients.
import type { Socket } from 'node:net';

/** `address|port` of the local end of every open internal-pool socket of this process. */
const peers = new Set<string>();

const keyOf = (address: string, port: number): string => `${address}|${port}`;

/**
 * Records the local address and port of `socket`, a TCP socket this process is dialling, until it
 * closes. The kernel picks the local port when Node issues connect(2), which for an IP literal
 * happens in the next tick after net.connect(), and for a host name right after the 'lookup' event:
 * both come before any poll phase, so before a listener of this process can accept the connection.
 */
export function registerInternalSocket(socket: Socket): void {
  let key: string | undefined;
  const record = (): void => {
    if (key !== undefined || socket.destroyed) return;
    const { localAddress, localPort } = socket;
    if (localAddress === undefined || localPort === undefined) return;
    key = keyOf(localAddress, localPort);
    peers.add(key);
  };
  process.nextTick(record);
  socket.once('lookup', () => process.nextTick(record));
  socket.once('connect', record);
  socket.once('close', () => {
    if (key !== undefined) peers.delete(key);
  });
}

/** True when a connection from `address:port` is one this process's internal pool dialled. */
export function isInternalPeer(address: string | undefined, port: number | undefined): boolean {
  return address !== undefined && port !== undefined && peers.has(keyOf(address, port));
}
