// The registry of verification checks `airlock verify` runs; later issues append theirs here.
import type { Check } from './check.js';
import { aeadOnlyCheck } from './checks/aead-only.js';
import { databaseSealedCheck } from './checks/database-sealed.js';
import { noPlaintextCheck } from './checks/no-plaintext.js';
import { outboundOnlyCheck } from './checks/outbound-only.js';
import { stackReachableCheck } from './checks/stack-reachable.js';
import { tlsVersionsCheck } from './checks/tls-versions.js';
import { tunnelRefusesUnauthenticatedCheck } from './checks/tunnel.js';

/** Every check, in report order; stack.reachable first, a gate for the rest. Returns a fresh array, so callers may filter or extend it. */
export function defaultChecks(): Check[] {
  return [stackReachableCheck, tlsVersionsCheck, aeadOnlyCheck, noPlaintextCheck, tunnelRefusesUnauthenticatedCheck, outboundOnlyCheck, databaseSealedCheck];
}
