// Host and port of an endpoint URL, in the spellings Node, openssl and sslscan each expect.
import { isIP } from 'node:net';

export interface EndpointAddress {
  /** Host without IPv6 brackets, for `net.connect` / `tls.connect`. */
  readonly host: string;
  readonly port: number;
  /** `host:port`, IPv6 bracketed, for `openssl s_client -connect` and sslscan. */
  readonly hostPort: string;
  /** The URL scheme without the colon, e.g. `https`. */
  readonly scheme: string;
}

const DEFAULT_PORTS: Readonly<Record<string, number>> = { https: 443, http: 80 };

export function formatHostPort(host: string, port: number): string {
  return `${isIP(host) === 6 ? `[${host}]` : host}:${port}`;
}

/** Parses an endpoint URL. Returns undefined when it has no host or no usable port. */
export function endpointAddress(url: string): EndpointAddress | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return undefined;
  }
  const scheme = parsed.protocol.replace(/:$/, '');
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1');
  const port = parsed.port === '' ? DEFAULT_PORTS[scheme] : Number(parsed.port);
  if (host === '' || port === undefined || !Number.isSafeInteger(port) || port <= 0 || port > 65535) return undefined;
  return { host, port, hostPort: formatHostPort(host, port), scheme };
}

/** True for addresses that name this machine (the only sockets the local connection table can show). */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host) || host === '::ffff:127.0.0.1';
}
