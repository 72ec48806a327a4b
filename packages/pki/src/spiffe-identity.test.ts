// Unit tests for cluster identity URIs.
import { describe, expect, it } from 'vitest';
import { thrownCode } from '../test/helpers.js';
import { clusterIdentityUri, isValidClusterName, parseClusterIdentity } from './spiffe-identity.js';

describe('cluster identities', () => {
  it('round-trips a cluster name through its URI', () => {
    expect(clusterIdentityUri('eu-west-1')).toBe('spiffe://airlock/cluster/eu-west-1');
    expect(parseClusterIdentity('spiffe://airlock/cluster/eu-west-1')).toBe('eu-west-1');
  });

  it('rejects names that are not DNS-label-like', () => {
    for (const name of ['', 'EU', '-a', 'a-', 'a/b', 'a'.repeat(64), 'a b']) {
      expect(isValidClusterName(name)).toBe(false);
      expect(thrownCode(() => clusterIdentityUri(name))).toBe('INVALID_ARGUMENT');
    }
  });

  it('returns undefined for URIs that are not cluster identities', () => {
    for (const uri of [undefined, 'spiffe://other/cluster/a', 'spiffe://airlock/user/a', 'spiffe://airlock/cluster/a/b', 'spiffe://airlock/cluster/']) {
      expect(parseClusterIdentity(uri)).toBeUndefined();
    }
  });
});
