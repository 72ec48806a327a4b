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
    // The AWS SDK's notice that its 2027 releases need Node 22 (Airlock pins Node-20 versions), as the CLI does.
    env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
  },
});
