// Unit tests of API token roles: viewer < runner < admin, and platform-wide grants. The store itself is tested by the database contract suite.
import { describe, expect, it } from 'vitest';
import { hasRole } from './api-tokens.js';

describe('hasRole', () => {
  const principal = {
    roles: [
      { project: 'p1', role: 'runner' },
      { project: 'p2', role: 'viewer' },
    ] as const,
  };
  it('orders viewer < runner < admin within one project', () => {
    expect(hasRole(principal, 'p1', 'viewer')).toBe(true);
    expect(hasRole(principal, 'p1', 'runner')).toBe(true);
    expect(hasRole(principal, 'p1', 'admin')).toBe(false);
    expect(hasRole(principal, 'p2', 'runner')).toBe(false);
    expect(hasRole(principal, 'p3', 'viewer')).toBe(false);
  });
  it('applies a grant on * to every project, and only * grants to platform-wide checks', () => {
    const platform = { roles: [{ project: '*', role: 'viewer' }] as const };
    expect(hasRole(platform, 'anything', 'viewer')).toBe(true);
    expect(hasRole(platform, '*', 'viewer')).toBe(true);
    expect(hasRole(platform, '*', 'runner')).toBe(false);
    expect(hasRole(principal, '*', 'viewer')).toBe(false);
    expect(hasRole({ roles: [] }, '*', 'viewer')).toBe(false);
  });
});
