// Test runner configuration: unit tests beside the code, integration tests in packages/*/test and test/, example tests in examples/.
import { defineConfig } from 'vitest/config';

// Workspace packages resolve to their TypeScript sources in tests (the "airlock-source" export
// condition), so a test never runs against a stale build.
const conditions = ['airlock-source', 'node', 'import', 'default'];
// Vitest also hands ssr.resolve.conditions to its worker processes as `node --conditions`, where they
// apply to require() as well: with "import" among them, a CommonJS package that requires a dual
// package (pg requiring pg-pool) gets the ESM build's namespace instead of the class it expects.
// Vite adds "import" or "require" by itself, per import, so the SSR list leaves it out.
const ssrConditions = conditions.filter((condition) => condition !== 'import');

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions: ssrConditions, externalConditions: ssrConditions } },
  test: {
    include: ['packages/*/src/**/*.test.ts', 'packages/*/test/**/*.test.ts', 'test/**/*.test.ts', 'examples/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // The AWS SDK's notice that its 2027 releases need Node 22 (Airlock pins Node-20 versions), as the CLI does.
    env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
  },
});
