// Workload identities carried as URI SANs in client certificates: spiffe://airlock/cluster/<name>.
import { invalidArgument } from './internal/validate.js';

/** The SPIFFE trust domain of every Airlock-issued identity. */
export const AIRLOCK_TRUST_DOMAIN = 'airlock';

const CLUSTER_PREFIX = `spiffe://${AIRLOCK_TRUST_DOMAIN}/cluster/`;

// A DNS-label-like name keeps identities printable, case-unambiguous and safe in paths and logs.
const CLUSTER_NAME = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/u;

/** True when `name` is a valid cluster name (lower-case letters, digits and inner hyphens, 1 to 63 characters). */
export function isValidClusterName(name: unknown): name is string {
  return typeof name === 'string' && CLUSTER_NAME.test(name);
}

/** The URI SAN identity of a data-plane cluster, e.g. `spiffe://airlock/cluster/eu-1`. */
export function clusterIdentityUri(clusterName: string): string {
  if (!isValidClusterName(clusterName)) throw invalidArgument('clusterName', 'must be 1 to 63 lower-case letters, digits or inner hyphens');
  return `${CLUSTER_PREFIX}${clusterName}`;
}

/** The cluster name in a cluster identity URI, or undefined when `uri` is not one. */
export function parseClusterIdentity(uri: string | undefined): string | undefined {
  if (uri === undefined || !uri.startsWith(CLUSTER_PREFIX)) return undefined;
  const name = uri.slice(CLUSTER_PREFIX.length);
  return isValidClusterName(name) ? name : undefined;
}
