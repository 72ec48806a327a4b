// Test runner configuration: unit tests beside the code, integration tests in packages/*/test and test/.
import { defineConfig } from 'vitest/config';

// Workspace packages resolve to their TypeScript sources in tests (the "airlock-source" export
// condition), so a test never runs against a stale build.
const conditions = ['airlock-source', 'node', 'import', 'default'];

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions, externalConditions: conditions } },
  test: {
    include: ['packages/*/src/**/*.test.ts', 'packages/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});
