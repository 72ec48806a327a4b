// Argument checks for certificate contents: names, addresses, URIs, lifetimes and clocks.
import { isIP } from 'node:net';
import { AirlockError } from '@airlock/common';

/** INVALID_ARGUMENT naming the argument. */
export function invalidArgument(argument: string, problem: string): AirlockError {
  // The message names the argument, never its value: values may be attacker-supplied text.
  return new AirlockError('INVALID_ARGUMENT', `${argument} ${problem}`, { details: { argument } });
}

// Control characters and whitespace never belong in names or identities; rejecting them keeps
// log lines and DN strings unambiguous.
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL_OR_SPACE = /[\u0000-\u0020\u007f-\u009f]/u;

/** ub-common-name is 64 characters (RFC 5280 appendix A.1). */
export function checkCommonName(argument: string, value: unknown): string {
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  if (typeof value !== 'string' || value.length === 0 || value.length > 64 || /[\u0000-\u001f\u007f-\u009f]/u.test(value)) {
    throw invalidArgument(argument, 'must be 1 to 64 printable characters');
  }
  return value;
}

const DNS_LABEL = '[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?';
const DNS_NAME = new RegExp(`^(?:\\*\\.)?${DNS_LABEL}(?:\\.${DNS_LABEL})*$`, 'u');

/** A DNS name (RFC 1035 preferred syntax, optional leading wildcard label), lower-cased. */
export function checkDnsName(argument: string, value: unknown): string {
  if (typeof value !== 'string' || value.length > 253 || !DNS_NAME.test(value.toLowerCase())) {
    throw invalidArgument(argument, 'must be a DNS name');
  }
  return value.toLowerCase();
}

/** An IPv4 or IPv6 address, returned in the canonical text form that parsing the certificate gives back. */
export function checkIpAddress(argument: string, value: unknown): string {
  if (typeof value !== 'string') throw invalidArgument(argument, 'must be an IP address');
  const family = isIP(value);
  if (family === 4) return value;
  if (family === 6 && !value.includes('%')) {
    // WHATWG URL parsing compresses the address and rewrites an embedded IPv4 tail in hex, which
    // is the only IPv6 form the certificate encoder accepts.
    return new URL(`http://[${value}]/`).hostname.slice(1, -1);
  }
  throw invalidArgument(argument, 'must be an IPv4 or IPv6 address without a zone');
}

/**
 * An absolute URI in canonical form. SPIFFE IDs additionally follow the SPIFFE ID rules: a trust
 * domain, a path, and no port, user info, query or fragment.
 */
export function checkUri(argument: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 2048 || CONTROL_OR_SPACE.test(value)) {
    throw invalidArgument(argument, 'must be an absolute URI without spaces');
  }
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw invalidArgument(argument, 'must be an absolute URI');
  }
  if (url.href !== value) throw invalidArgument(argument, 'must be in canonical form');
  if (url.protocol === 'spiffe:') {
    const valid =
      /^[a-z0-9._-]+$/u.test(url.hostname) &&
      url.port === '' &&
      url.username === '' &&
      url.password === '' &&
      url.search === '' &&
      url.hash === '' &&
      /^(?:\/[A-Za-z0-9._-]+)+$/u.test(url.pathname);
    if (!valid) throw invalidArgument(argument, 'must be a valid SPIFFE ID');
  }
  return value;
}

/** A lifetime in whole seconds within [min, max]. */
export function checkSeconds(argument: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw invalidArgument(argument, `must be an integer number of seconds from ${min} to ${max}`);
  }
  return value;
}

/** A valid Date (used for injectable clocks). */
export function checkDate(argument: string, value: unknown): Date {
  if (!(value instanceof Date) || Number.isNaN(value.getTime())) throw invalidArgument(argument, 'must be a valid Date');
  return value;
}
