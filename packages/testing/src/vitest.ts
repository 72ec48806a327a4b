// Vitest-only helpers of @airlock/testing (a subpath, so that benchmarks can use the main entry without loading vitest).
import { describe } from 'vitest';
import { postgresAvailable } from './temp-postgres.js';

/**
 * `describe` for suites that need a temporary PostgreSQL, skipped only when AIRLOCK_TEST_SKIP_POSTGRES=1.
 * That variable is the only opt-out: without it a missing PostgreSQL makes startTempPostgres throw,
 * so the suite fails loudly instead of passing by skipping.
 */
export const describeIfPostgres: ReturnType<typeof describe.skipIf> = describe.skipIf(!postgresAvailable());
