// A TCP relay that tests can make hang or drop: the network failing between a client and a server, TLS passing through untouched.
import net from 'node:net';

/** `pass` relays bytes; `hang` stops relaying (connections stay open, silent); `drop` destroys every connection, open or new. */
export type TcpProxyMode = 'pass' | 'hang' | 'drop';

export interface TcpProxy {
  /** The port it listens on (127.0.0.1). */
  readonly port: number;
  /** `https://127.0.0.1:<port>`, for a TLS target whose certificate names 127.0.0.1. */
  readonly url: string;
  readonly mode: TcpProxyMode;
  setMode(mode: TcpProxyMode): void;
  /** Connections relayed right now. */
  connections(): number;
  close(): Promise<void>;
}

type Target = { readonly host: string; readonly port: number };

/** Relays 127.0.0.1:<port> to `target` (looked up per connection when a function) until closed. */
export async function startTcpProxy(target: Target | (() => Target)): Promise<TcpProxy> {
  let mode: TcpProxyMode = 'pass';
  const pairs = new Set<{ client: net.Socket; upstream: net.Socket }>();
  const hang = (pair: { client: net.Socket; upstream: net.Socket }): void => {
    pair.client.unpipe(pair.upstream);
    pair.upstream.unpipe(pair.client);
    pair.client.pause();
    pair.upstream.pause();
  };
  const server = net.createServer((client) => {
    if (mode === 'drop') {
      client.destroy();
      return;
    }
    const to = typeof target === 'function' ? target() : target;
    const upstream = net.connect(to.port, to.host);
    const pair = { client, upstream };
    pairs.add(pair);
    const end = (): void => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    if (mode === 'hang') hang(pair);
    else {
      client.pipe(upstream);
      upstream.pipe(client);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    url: `https://127.0.0.1:${port}`,
    get mode() {
      return mode;
    },
    setMode(next) {
      mode = next;
      for (const pair of [...pairs]) {
        if (next === 'drop') {
          pair.client.destroy();
          pair.upstream.destroy();
        } else if (next === 'hang') hang(pair);
        else {
          pair.client.pipe(pair.upstream);
          pair.upstream.pipe(pair.client);
          pair.client.resume();
          pair.upstream.resume();
        }
      }
    },
    connections: () => pairs.size,
    async close() {
      for (const pair of pairs) {
        pair.client.destroy();
        pair.upstream.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
