// ESLint flat config: type-aware typescript-eslint rules, named exports only, and the DESIGN.md §6 dependency direction.
import js from '@eslint/js';
import { defineConfig, globalIgnores } from 'eslint/config';
import tseslint from 'typescript-eslint';

/**
 * Which workspace packages each package may import (DESIGN.md §6); '*' means any. This is the
 * editor-time mirror of the table in test/dependency-direction.test.ts, which is the authority
 * (it also checks package.json, dynamic imports, relative escapes and unknown packages) and fails
 * if the two tables drift apart.
 */
export const AIRLOCK_LAYERS = Object.freeze({
  common: [],
  crypto: ['common'],
  pki: ['common'],
  kms: ['common', 'crypto', 'pki'],
  objectstore: ['common', 'crypto', 'pki', 'kms'],
  protocol: ['common', 'crypto', 'pki'],
  'data-plane': ['common', 'crypto', 'pki', 'kms', 'objectstore', 'protocol', 'sdk'],
  'control-plane': ['common', 'crypto', 'pki', 'protocol', 'kms', 'sdk'],
  sdk: ['common', 'crypto', 'protocol'],
  verify: ['common', 'crypto', 'pki', 'protocol'],
  cli: '*',
  testing: '*',
  web: ['common', 'protocol'],
});

/**
 * Test-support packages: any package may import them from its tests and scripts, none from runtime
 * source (src/ outside *.test.ts). Mirrors TEST_ONLY in test/dependency-direction.test.ts.
 */
export const AIRLOCK_TEST_ONLY = Object.freeze(['testing']);

const TS_FILES = ['**/*.ts', '**/*.tsx', '**/*.mts', '**/*.cts'];
const TEST_FILES = ['**/*.test.ts', 'packages/*/test/**/*.ts', 'test/**/*.ts', 'bench/**/*.ts', 'packages/*/scripts/**/*.ts'];
const CONFIG_FILES = ['eslint.config.js', '**/*.config.{js,mjs,cjs,ts,mts,cts}', '**/vitest.workspace.{js,ts}'];

const NAMED_EXPORTS_ONLY = [
  'error',
  { selector: 'ExportDefaultDeclaration', message: 'DESIGN §7: use named exports only.' },
  { selector: 'ExportSpecifier[exported.name="default"]', message: 'DESIGN §7: use named exports only.' },
];

const escapeRegExp = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const alternatives = (names) => names.map(escapeRegExp).join('|');

/**
 * The no-restricted-imports patterns for one package, for its runtime source or for its tests and
 * scripts (a later config replaces, not merges, the rule).
 */
function restrictedImportPatterns(pkg, allowed, usage) {
  const others = Object.keys(AIRLOCK_LAYERS).filter((name) => name !== pkg);
  const testOnly = AIRLOCK_TEST_ONLY.filter((name) => name !== pkg);
  const patterns = [
    {
      // Deep imports bypass a package's public surface (its index.ts and `exports` subpaths).
      regex: '^@airlock/[^/]+/(?:src|dist)(?:/|$)|^@airlock/[^/]+/(?:.*/)?internal(?:/|$)',
      message: "DESIGN §7: import a package's public surface, never its src/, dist/ or internal/ paths.",
    },
    {
      // Relative paths into another package (approximate: the dependency-direction test resolves them exactly).
      regex: `^(?:\\.\\./)+(?:packages/)?(?:${alternatives(others)})/(?:src|dist|test|scripts)(?:/|$)|^(?:\\.\\./)+packages/`,
      message: 'Import other workspace packages as @airlock/<name>, never by a relative path.',
    },
  ];
  if (usage === 'runtime' && testOnly.length > 0) {
    patterns.push({
      regex: `^@airlock/(?:${alternatives(testOnly)})(?:/|$)`,
      message: 'DESIGN §6: test helpers (@airlock/testing) are for tests and scripts only, never for runtime source.',
    });
  }
  if (allowed !== '*') {
    // Test-only packages are permitted here in tests, and reported by the pattern above (not this one) in runtime source.
    const permitted = [pkg, ...allowed, ...testOnly];
    patterns.push({
      regex: `^@airlock/(?!(?:${alternatives(permitted)})(?:/|$))`,
      message:
        allowed.length === 0
          ? `DESIGN §6: @airlock/${pkg} may not import any other @airlock package.`
          : `DESIGN §6: @airlock/${pkg} may import only ${allowed.map((name) => `@airlock/${name}`).join(', ')}.`,
    });
  }
  if (pkg === 'control-plane') {
    patterns.push({
      regex: '^@airlock/kms/.*(?:server|internal)',
      message: 'DESIGN §6: the control plane may use the Kms client interface only, never the embedded KMS server.',
    });
  }
  if (pkg === 'control-plane' || pkg === 'data-plane') {
    patterns.push({
      regex: '^@airlock/sdk/.*(?:runtime|testing|internal)',
      message: 'DESIGN §6: the planes use the SDK\'s definitions only, never the task runtime or the test harness.',
    });
  }
  return patterns;
}

export default defineConfig(
  globalIgnores([
    '**/dist/',
    '**/node_modules/',
    'coverage/',
    'bench/results/',
    'bench/.tmp/',
    // A developer's own experiments beside the benchmarks (git ignores them too).
    'bench/exp-*',
    '.tmp/',
    'docs/',
    '.airlock/',
    // Generated code (buf + protoc-gen-es): checked by tsc and by its freshness test, not edited by hand.
    'packages/*/src/gen/**',
  ]),

  { name: 'airlock/linter-options', linterOptions: { reportUnusedDisableDirectives: 'error' } },

  js.configs.recommended,

  {
    name: 'airlock/typescript',
    files: TS_FILES,
    extends: [tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: {
        project: ['./tsconfig.check.json'],
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      // A promise returned (not awaited) inside try escapes the catch that would normalise it.
      '@typescript-eslint/return-await': ['error', 'in-try-catch'],
      '@typescript-eslint/consistent-type-imports': ['error', { prefer: 'type-imports', fixStyle: 'inline-type-imports' }],
      // With verbatimModuleSyntax, `import { type A } from 'x'` keeps a side-effect import of 'x'.
      '@typescript-eslint/no-import-type-side-effects': 'error',
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_', ignoreRestSiblings: true },
      ],
      // Async implementations of promise-returning interfaces need not contain an await.
      '@typescript-eslint/require-await': 'off',
      eqeqeq: ['error', 'smart'],
      'no-restricted-syntax': NAMED_EXPORTS_ONLY,
    },
  },

  {
    name: 'airlock/javascript',
    files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
    rules: { 'no-restricted-syntax': NAMED_EXPORTS_ONLY },
  },

  {
    // Tests, benchmarks and scripts poke at untyped JSON, mocks and error objects on purpose.
    name: 'airlock/tests',
    files: TEST_FILES,
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/unbound-method': 'off',
    },
  },

  {
    // Tool configuration files are loaded through their default export.
    name: 'airlock/config-files',
    files: CONFIG_FILES,
    rules: { 'no-restricted-syntax': 'off' },
  },

  ...Object.entries(AIRLOCK_LAYERS).flatMap(([pkg, allowed]) => {
    const sources = `**/*.{ts,tsx,mts,cts,js,mjs,cjs}`;
    const rule = (usage) => ({ 'no-restricted-imports': ['error', { patterns: restrictedImportPatterns(pkg, allowed, usage) }] });
    // The same split as isRuntimeSource in the dependency-direction test: src/ is runtime except its
    // *.test/*.spec files and __tests__ folders; everything else in the package (test/, scripts/) is not.
    return [
      { name: `airlock/dependency-direction/${pkg}`, files: [`packages/${pkg}/${sources}`], rules: rule('runtime') },
      {
        name: `airlock/dependency-direction/${pkg}/tests`,
        files: [`packages/${pkg}/${sources}`],
        ignores: [`packages/${pkg}/src/**`],
        rules: rule('test'),
      },
      {
        name: `airlock/dependency-direction/${pkg}/unit-tests`,
        files: [`packages/${pkg}/src/**/*.{test,spec}.{ts,tsx,mts,cts,js,mjs,cjs}`, `packages/${pkg}/src/**/__tests__/${sources}`],
        rules: rule('test'),
      },
    ];
  }),
);
