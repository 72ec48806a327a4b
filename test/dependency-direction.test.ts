// Enforces the DESIGN.md §6 dependency direction for every workspace package: imports, package.json and tsconfig references.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, posix, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/** What a package may import: a list of sibling package directories, or '*' for anything. */
type Layer = readonly string[] | '*';

/**
 * The layering, keyed by directory under packages/ (the package is `@airlock/<dir>`). Every package
 * directory must appear here: adding a package means deciding where it sits. A package may always
 * import itself by name (its own integration tests do).
 */
const LAYERS: Readonly<Record<string, Layer>> = {
  common: [],
  crypto: ['common'],
  pki: ['common'],
  kms: ['common', 'crypto', 'pki'],
  objectstore: ['common', 'crypto', 'pki', 'kms'],
  protocol: ['common', 'crypto', 'pki'],
  // Both planes read task specs, retry policies and result records through the SDK's main entry (see SUBPATH_RULES).
  'data-plane': ['common', 'crypto', 'pki', 'kms', 'objectstore', 'protocol', 'sdk'],
  // The control plane may use the Kms client interface for its own database keys (see SUBPATH_RULES).
  'control-plane': ['common', 'crypto', 'pki', 'protocol', 'kms', 'sdk'],
  sdk: ['common', 'crypto', 'protocol'],
  verify: ['common', 'crypto', 'pki', 'protocol'],
  cli: '*',
  testing: '*',
  web: ['common', 'protocol'],
};

/**
 * Test-support packages (DESIGN §6 `testing/`): every package may use them, but only from its tests and
 * scripts, declared in devDependencies. Runtime source (src/, tests aside) may never import them, not
 * even from a '*' package such as cli, and no tsconfig.json may reference them (a package's build
 * compiles src/ only, so a reference would mean runtime code depends on test helpers).
 */
const TEST_ONLY: readonly string[] = ['testing'];

/** Where a dependency is used: by runtime code (dependencies, tsconfig references, src/) or by tests and scripts only. */
type Usage = 'runtime' | 'test';

/** Pairs that stay forbidden even if someone widens the table. */
const NEVER: ReadonlyArray<{ readonly from: string; readonly to: string; readonly reason: string }> = [
  { from: 'control-plane', to: 'data-plane', reason: 'the control plane never imports the data plane' },
  { from: 'data-plane', to: 'control-plane', reason: 'the data plane never imports the control plane' },
];

/** Subpaths of an allowed package that a given importer still may not use. */
const SUBPATH_RULES: ReadonlyArray<{ readonly from: string; readonly to: string; readonly forbidden: RegExp; readonly reason: string }> = [
  {
    from: 'control-plane',
    to: 'kms',
    forbidden: /server|internal/i,
    reason: 'the control plane may use the Kms client interface only, never the embedded KMS server or its internals',
  },
  ...(['control-plane', 'data-plane'] as const).map((from) => ({
    from,
    to: 'sdk',
    forbidden: /runtime|testing|internal/i,
    reason: 'the planes use the SDK\'s definitions (specs, retry policy, error records) only, never the task runtime or the test harness, which run in task processes and tests',
  })),
];

/** A deep import that bypasses another package's public surface (index.ts plus `exports` subpaths). */
const INTERNAL_SUBPATH = /^(?:src|dist)(?:\/|$)|(?:^|\/)internal(?:\/|$)/;

const SOURCE_EXTENSIONS = /\.(?:[cm]?ts|tsx|[cm]?js)$/;
const SKIPPED_DIRECTORIES = new Set(['node_modules', 'dist', 'coverage']);

interface Manifest {
  readonly name?: unknown;
  readonly dependencies?: Readonly<Record<string, string>>;
  readonly devDependencies?: Readonly<Record<string, string>>;
  readonly peerDependencies?: Readonly<Record<string, string>>;
  readonly optionalDependencies?: Readonly<Record<string, string>>;
}

interface WorkspacePackage {
  /** Directory name under packages/. */
  readonly dir: string;
  /** Parsed package.json, or undefined when the directory has none. */
  readonly manifest: Manifest | undefined;
  /** Directory names (under packages/) of the tsconfig.json project references, if it has a tsconfig.json. */
  readonly references?: readonly string[];
}

interface SourceFile {
  /** Repository-relative POSIX path, e.g. `packages/crypto/src/aead.ts`. */
  readonly path: string;
  readonly text: string;
}

interface Workspace {
  readonly packages: readonly WorkspacePackage[];
  readonly files: readonly SourceFile[];
}

interface Violation {
  readonly rule:
    | 'unknown-package'
    | 'missing-manifest'
    | 'package-name'
    | 'manifest-layer'
    | 'tsconfig-layer'
    | 'tsconfig-missing-reference'
    | 'import-layer'
    | 'import-internal'
    | 'relative-escape'
    | 'undeclared';
  readonly where: string;
  readonly message: string;
}

/** Every module specifier a file imports or re-exports, static or dynamic, ignoring comments and strings. */
function extractSpecifiers(text: string): string[] {
  return ts.preProcessFile(text, true, true).importedFiles.map((file) => file.fileName);
}

/** Splits `@airlock/name/sub/path` into its package directory and subpath; undefined for other specifiers. */
function parseAirlockSpecifier(specifier: string): { readonly target: string; readonly subpath: string } | undefined {
  const match = /^@airlock\/([^/]*)(?:\/(.*))?$/.exec(specifier);
  if (match === null) return undefined;
  return { target: match[1] ?? '', subpath: match[2] ?? '' };
}

/** Why `from` may not depend on `to` (any subpath) for this usage, or undefined when the table allows it. */
function layerProblem(from: string, to: string, usage: Usage): string | undefined {
  if (from === to) return undefined;
  const never = NEVER.find((rule) => rule.from === from && rule.to === to);
  if (never !== undefined) return `DESIGN §6: ${never.reason}`;
  if (!Object.hasOwn(LAYERS, to)) return `@airlock/${to} is not a known package (add packages/${to} to the layering table)`;
  if (TEST_ONLY.includes(to)) {
    return usage === 'test'
      ? undefined
      : `@airlock/${to} is for tests only: import it from tests or scripts and declare it in devDependencies, never from runtime source, dependencies or tsconfig references`;
  }
  const allowed = LAYERS[from];
  if (allowed === undefined || allowed === '*' || allowed.includes(to)) return undefined;
  if (allowed.length === 0) return `DESIGN §6: @airlock/${from} may not depend on any other @airlock package`;
  return `DESIGN §6: @airlock/${from} may depend only on ${allowed.map((name) => `@airlock/${name}`).join(', ')}`;
}

/** The package directory a repository-relative path belongs to, or undefined outside packages/. */
function packageOf(path: string): string | undefined {
  const match = /^packages\/([^/]+)\//.exec(path);
  return match?.[1];
}

/** Runtime code (as opposed to tests, scripts and tool configuration) must declare its imports as dependencies. */
function isRuntimeSource(path: string): boolean {
  return /^packages\/[^/]+\/src\//.test(path) && !/\.(?:test|spec)\.[cm]?[jt]sx?$/.test(path) && !path.includes('/__tests__/');
}

function airlockDeclarations(manifest: Manifest | undefined, runtimeOnly: boolean): Set<string> {
  const sections = runtimeOnly
    ? [manifest?.dependencies, manifest?.peerDependencies, manifest?.optionalDependencies]
    : [manifest?.dependencies, manifest?.peerDependencies, manifest?.optionalDependencies, manifest?.devDependencies];
  return new Set(sections.flatMap((section) => Object.keys(section ?? {})).filter((name) => name.startsWith('@airlock/')));
}

/** Checks a workspace (real or synthetic) against the layering; returns every violation found. */
function checkWorkspace(workspace: Workspace): Violation[] {
  const violations: Violation[] = [];
  const packages = new Map(workspace.packages.map((pkg) => [pkg.dir, pkg]));

  for (const pkg of workspace.packages) {
    const where = `packages/${pkg.dir}`;
    if (!Object.hasOwn(LAYERS, pkg.dir)) {
      violations.push({ rule: 'unknown-package', where, message: `packages/${pkg.dir} is not in the layering table in test/dependency-direction.test.ts; decide which packages it may import and add it` });
    }
    if (pkg.manifest === undefined) {
      violations.push({ rule: 'missing-manifest', where, message: 'package directory has no package.json' });
      continue;
    }
    if (pkg.manifest.name !== `@airlock/${pkg.dir}`) {
      violations.push({ rule: 'package-name', where: `${where}/package.json`, message: `name must be "@airlock/${pkg.dir}", found ${JSON.stringify(pkg.manifest.name)}` });
    }
    const sections = ['dependencies', 'devDependencies', 'peerDependencies', 'optionalDependencies'] as const;
    for (const section of sections) {
      for (const name of Object.keys(pkg.manifest[section] ?? {})) {
        const parsed = parseAirlockSpecifier(name);
        if (parsed === undefined) continue;
        const problem = layerProblem(pkg.dir, parsed.target, section === 'devDependencies' ? 'test' : 'runtime');
        if (problem !== undefined) {
          violations.push({ rule: 'manifest-layer', where: `${where}/package.json ${section}`, message: `declares ${name}: ${problem}` });
        }
      }
    }
    if (pkg.references !== undefined) {
      for (const ref of pkg.references) {
        const problem = layerProblem(pkg.dir, ref, 'runtime');
        if (problem !== undefined) {
          violations.push({ rule: 'tsconfig-layer', where: `${where}/tsconfig.json`, message: `references ../${ref}: ${problem}` });
        }
      }
      // tsc --build only orders (and rebuilds) what is referenced, so every runtime dependency needs a reference.
      for (const name of Object.keys(pkg.manifest.dependencies ?? {})) {
        const parsed = parseAirlockSpecifier(name);
        if (parsed !== undefined && parsed.target !== pkg.dir && packages.has(parsed.target) && !pkg.references.includes(parsed.target)) {
          violations.push({ rule: 'tsconfig-missing-reference', where: `${where}/tsconfig.json`, message: `depends on ${name} but has no project reference to ../${parsed.target}` });
        }
      }
    }
  }

  for (const file of workspace.files) {
    const from = packageOf(file.path);
    if (from === undefined) continue;
    const manifest = packages.get(from)?.manifest;
    const declared = airlockDeclarations(manifest, isRuntimeSource(file.path));
    for (const specifier of extractSpecifiers(file.text)) {
      const where = `${file.path} → '${specifier}'`;

      if (specifier.startsWith('.')) {
        const target = posix.normalize(posix.join(posix.dirname(file.path), specifier));
        if (!target.startsWith(`packages/${from}/`)) {
          const into = packageOf(target);
          const hint = into === undefined ? 'a path outside the package' : `packages/${into}; import '@airlock/${into}' instead`;
          violations.push({ rule: 'relative-escape', where, message: `relative import leaves packages/${from} into ${hint}` });
        }
        continue;
      }

      const parsed = parseAirlockSpecifier(specifier);
      if (parsed === undefined || parsed.target === from) continue;
      const problem = layerProblem(from, parsed.target, isRuntimeSource(file.path) ? 'runtime' : 'test');
      if (problem !== undefined) violations.push({ rule: 'import-layer', where, message: problem });
      if (INTERNAL_SUBPATH.test(parsed.subpath)) {
        violations.push({ rule: 'import-internal', where, message: `DESIGN §7: import the public surface of @airlock/${parsed.target}, not its src/, dist/ or internal/ paths` });
      }
      for (const rule of SUBPATH_RULES) {
        if (rule.from === from && rule.to === parsed.target && rule.forbidden.test(parsed.subpath)) {
          violations.push({ rule: 'import-internal', where, message: `DESIGN §6: ${rule.reason}` });
        }
      }
      const name = `@airlock/${parsed.target}`;
      if (problem === undefined && !declared.has(name)) {
        const section = isRuntimeSource(file.path) ? 'dependencies' : 'dependencies or devDependencies';
        violations.push({ rule: 'undeclared', where, message: `${name} is imported but not declared in packages/${from}/package.json ${section}` });
      }
    }
  }
  return violations;
}

// ---------------------------------------------------------------------------------------------
// Reading the real workspace.

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function readJson(path: string): unknown {
  return JSON.parse(readFileSync(path, 'utf8')) as unknown;
}

function readReferences(tsconfigPath: string): string[] | undefined {
  if (!existsSync(tsconfigPath)) return undefined;
  const parsed = ts.parseConfigFileTextToJson(tsconfigPath, readFileSync(tsconfigPath, 'utf8'));
  if (parsed.error !== undefined) throw new Error(`cannot parse ${tsconfigPath}`);
  const config = parsed.config as { references?: Array<{ path?: unknown }> };
  return (config.references ?? []).map((ref) => {
    const target = posix.normalize(posix.join('packages/x', String(ref.path)));
    return packageOf(`${target}/`) ?? target;
  });
}

function listSourceFiles(directory: string, relativeDirectory: string, out: SourceFile[]): void {
  for (const entry of readdirSync(directory, { withFileTypes: true })) {
    if (entry.name.startsWith('.') || SKIPPED_DIRECTORIES.has(entry.name)) continue;
    const path = join(directory, entry.name);
    const relativePath = `${relativeDirectory}/${entry.name}`;
    if (entry.isDirectory()) listSourceFiles(path, relativePath, out);
    else if (entry.isFile() && SOURCE_EXTENSIONS.test(entry.name) && !entry.name.endsWith('.d.ts')) {
      out.push({ path: relativePath, text: readFileSync(path, 'utf8') });
    }
  }
}

function loadWorkspace(root: string): Workspace {
  const packagesDirectory = join(root, 'packages');
  const packages: WorkspacePackage[] = [];
  const files: SourceFile[] = [];
  for (const entry of readdirSync(packagesDirectory, { withFileTypes: true })) {
    if (!entry.isDirectory() || entry.name.startsWith('.')) continue;
    const directory = join(packagesDirectory, entry.name);
    const manifestPath = join(directory, 'package.json');
    packages.push({
      dir: entry.name,
      manifest: existsSync(manifestPath) ? (readJson(manifestPath) as Manifest) : undefined,
      references: readReferences(join(directory, 'tsconfig.json')),
    });
    listSourceFiles(directory, `packages/${entry.name}`, files);
  }
  return { packages, files };
}

function report(violations: readonly Violation[]): string {
  return violations.map((v) => `  [${v.rule}] ${v.where}: ${v.message}`).join('\n');
}

// ---------------------------------------------------------------------------------------------

describe('dependency direction (DESIGN.md §6)', () => {
  const workspace = loadWorkspace(ROOT);
  const violations = checkWorkspace(workspace);
  const only = (...rules: Array<Violation['rule']>) => violations.filter((v) => rules.includes(v.rule));

  it('places every package directory in the layering table, with a matching package.json', () => {
    const found = only('unknown-package', 'missing-manifest', 'package-name');
    expect(found, `\n${report(found)}`).toEqual([]);
  });

  it('declares only allowed @airlock dependencies in package.json and tsconfig references', () => {
    const found = only('manifest-layer', 'tsconfig-layer', 'tsconfig-missing-reference');
    expect(found, `\n${report(found)}`).toEqual([]);
  });

  it('imports only allowed packages, through their public surface, and declares them', () => {
    const found = only('import-layer', 'import-internal', 'relative-escape', 'undeclared');
    expect(found, `\n${report(found)}`).toEqual([]);
  });

  it('actually scans the sources (the check cannot pass vacuously)', () => {
    const dirs = workspace.packages.map((pkg) => pkg.dir);
    expect(dirs).toEqual(expect.arrayContaining(['common', 'crypto', 'pki']));
    const cryptoSources = workspace.files.filter((file) => file.path.startsWith('packages/crypto/src/'));
    expect(cryptoSources.length).toBeGreaterThan(0);
    const cryptoImports = cryptoSources.flatMap((file) => extractSpecifiers(file.text));
    expect(cryptoImports).toContain('@airlock/common');
    // Every package with a src/ directory contributes files.
    for (const dir of dirs) {
      if (existsSync(join(ROOT, 'packages', dir, 'src'))) {
        expect(workspace.files.some((file) => file.path.startsWith(`packages/${dir}/src/`)), dir).toBe(true);
      }
    }
  });
});

describe('the layering table', () => {
  it('refers only to packages in the table and never lists a package as its own dependency', () => {
    for (const [pkg, allowed] of Object.entries(LAYERS)) {
      if (allowed === '*') continue;
      for (const target of allowed) {
        expect(Object.hasOwn(LAYERS, target), `${pkg} → ${target}`).toBe(true);
        expect(target, pkg).not.toBe(pkg);
      }
    }
  });

  it('keeps the planes apart', () => {
    for (const usage of ['runtime', 'test'] as const) {
      for (const rule of NEVER) expect(layerProblem(rule.from, rule.to, usage), `${rule.from} → ${rule.to}`).toBeDefined();
      expect(layerProblem('control-plane', 'kms', usage)).toBeUndefined();
      expect(layerProblem('control-plane', 'objectstore', usage)).toBeDefined();
      expect(layerProblem('common', 'crypto', usage)).toBeDefined();
    }
  });

  it('lets every package use the test-only packages from tests, and none from runtime code', () => {
    for (const testOnly of TEST_ONLY) {
      expect(Object.hasOwn(LAYERS, testOnly), testOnly).toBe(true);
      for (const pkg of Object.keys(LAYERS)) {
        if (pkg === testOnly) continue;
        expect(layerProblem(pkg, testOnly, 'test'), `${pkg} tests → ${testOnly}`).toBeUndefined();
        expect(layerProblem(pkg, testOnly, 'runtime'), `${pkg} runtime → ${testOnly}`).toBeDefined();
      }
    }
  });

  it('is acyclic', () => {
    const visiting = new Set<string>();
    const done = new Set<string>();
    const visit = (pkg: string, path: readonly string[]): void => {
      if (done.has(pkg)) return;
      expect(visiting.has(pkg), `cycle: ${[...path, pkg].join(' → ')}`).toBe(false);
      visiting.add(pkg);
      const allowed = LAYERS[pkg];
      if (allowed !== undefined && allowed !== '*') for (const next of allowed) visit(next, [...path, pkg]);
      visiting.delete(pkg);
      done.add(pkg);
    };
    for (const pkg of Object.keys(LAYERS)) visit(pkg, []);
  });

  it('matches the editor-time copy in eslint.config.js', async () => {
    const eslintConfig = (await import(pathToFileURL(join(ROOT, 'eslint.config.js')).href)) as { AIRLOCK_LAYERS?: unknown; AIRLOCK_TEST_ONLY?: unknown };
    expect(eslintConfig.AIRLOCK_LAYERS).toEqual(LAYERS);
    expect(eslintConfig.AIRLOCK_TEST_ONLY).toEqual(TEST_ONLY);
  });
});

describe('the checker', () => {
  const manifest = (dir: string, dependencies: Record<string, string> = {}, devDependencies: Record<string, string> = {}): WorkspacePackage => ({
    dir,
    manifest: { name: `@airlock/${dir}`, dependencies, devDependencies },
    references: Object.keys(dependencies).flatMap((name) => parseAirlockSpecifier(name)?.target ?? []),
  });
  const cleanPackages = [
    manifest('common'),
    manifest('crypto', { '@airlock/common': '0.1.0' }),
    manifest('kms', { '@airlock/common': '0.1.0', '@airlock/crypto': '0.1.0' }),
    manifest('control-plane', { '@airlock/common': '0.1.0', '@airlock/kms': '0.1.0' }),
    manifest('data-plane', { '@airlock/common': '0.1.0' }, { '@airlock/kms': '0.1.0', '@airlock/testing': '0.1.0' }),
    manifest('testing', { '@airlock/common': '0.1.0', '@airlock/kms': '0.1.0' }),
    manifest('cli', { '@airlock/common': '0.1.0' }, { '@airlock/testing': '0.1.0' }),
  ];

  it('extracts static, type-only, side-effect, re-export and dynamic specifiers, but not comments or strings', () => {
    const text = [
      "// import { x } from '@airlock/commented';",
      "import type { A } from '@airlock/type-only';",
      'import {',
      '  b,',
      '  type C,',
      '} from "@airlock/multi-line";',
      "import '@airlock/side-effect';",
      "export * from '@airlock/star';",
      "export { d } from '../../other/src/index.js';",
      "const s = \"import x from '@airlock/in-a-string'\";",
      "async function f() { return import('@airlock/dynamic'); }",
    ].join('\n');
    expect(extractSpecifiers(text)).toEqual([
      '@airlock/type-only',
      '@airlock/multi-line',
      '@airlock/side-effect',
      '@airlock/star',
      '../../other/src/index.js',
      '@airlock/dynamic',
    ]);
  });

  it('accepts a workspace that follows the table', () => {
    const files: SourceFile[] = [
      { path: 'packages/crypto/src/aead.ts', text: "import { AirlockError } from '@airlock/common';\nimport { x } from './internal/x.js';" },
      { path: 'packages/crypto/test/asf1.test.ts', text: "import { encryptAsf1 } from '@airlock/crypto';" },
      { path: 'packages/control-plane/src/keys.ts', text: "import type { Kms } from '@airlock/kms';" },
      { path: 'packages/data-plane/test/kms.test.ts', text: "const kms = await import('@airlock/kms');" },
      // The test-only package, from a unit test beside the code and from an integration test, declared as a devDependency.
      { path: 'packages/data-plane/src/internal/agent.test.ts', text: "import { captureLogger } from '@airlock/testing';" },
      { path: 'packages/cli/test/up.test.ts', text: "import { startTempPostgres } from '@airlock/testing';" },
      { path: 'packages/testing/src/stack.ts', text: "import { createKmsServer } from '@airlock/kms';" },
    ];
    expect(checkWorkspace({ packages: cleanPackages, files })).toEqual([]);
  });

  it('reports forbidden, internal, escaping and undeclared imports', () => {
    const files: SourceFile[] = [
      { path: 'packages/common/src/bad.ts', text: "import { seal } from '@airlock/crypto';" },
      { path: 'packages/control-plane/src/leak.ts', text: "export { run } from '@airlock/data-plane';" },
      { path: 'packages/control-plane/src/kms.ts', text: "const server = await import('@airlock/kms/embedded-server');" },
      { path: 'packages/crypto/src/sneaky.ts', text: "import { internal } from '../../common/src/internal/x.js';" },
      { path: 'packages/kms/src/deep.ts', text: "import { core } from '@airlock/crypto/dist/internal/core.js';" },
      { path: 'packages/kms/src/undeclared.ts', text: "import { issue } from '@airlock/pki';" },
      { path: 'packages/data-plane/src/runtime.ts', text: "import { Kms } from '@airlock/kms';" },
      // Test helpers in runtime code, even where the importer may import anything else ('*').
      { path: 'packages/data-plane/src/agent.ts', text: "import { captureLogger } from '@airlock/testing';" },
      { path: 'packages/cli/src/main.ts', text: "import { startTempPostgres } from '@airlock/testing';" },
      // From a test, but not declared at all.
      { path: 'packages/kms/test/server.test.ts', text: "import { awsCliEnv } from '@airlock/testing';" },
    ];
    const found = checkWorkspace({ packages: cleanPackages, files }).map((v) => `${v.rule} ${v.where}`);
    expect(found).toEqual([
      "import-layer packages/common/src/bad.ts → '@airlock/crypto'",
      "import-layer packages/control-plane/src/leak.ts → '@airlock/data-plane'",
      "import-internal packages/control-plane/src/kms.ts → '@airlock/kms/embedded-server'",
      "relative-escape packages/crypto/src/sneaky.ts → '../../common/src/internal/x.js'",
      "import-internal packages/kms/src/deep.ts → '@airlock/crypto/dist/internal/core.js'",
      "undeclared packages/kms/src/undeclared.ts → '@airlock/pki'",
      // Declared only as a devDependency, but imported by runtime code.
      "undeclared packages/data-plane/src/runtime.ts → '@airlock/kms'",
      "import-layer packages/data-plane/src/agent.ts → '@airlock/testing'",
      "import-layer packages/cli/src/main.ts → '@airlock/testing'",
      "undeclared packages/kms/test/server.test.ts → '@airlock/testing'",
    ]);
  });

  it('reports unknown packages and bad package.json declarations', () => {
    const packages: WorkspacePackage[] = [
      ...cleanPackages,
      manifest('mystery'),
      { dir: 'half-made', manifest: undefined },
      { dir: 'pki', manifest: { name: '@airlock/pki-renamed' } },
      manifest('data-plane-2'),
      { dir: 'sdk', manifest: { name: '@airlock/sdk', devDependencies: { '@airlock/kms': '0.1.0' } }, references: ['data-plane'] },
      { dir: 'verify', manifest: { name: '@airlock/verify', dependencies: { '@airlock/common': '0.1.0' } }, references: [] },
      // The test-only package as a runtime dependency, and as a project reference (which builds src/).
      { dir: 'web', manifest: { name: '@airlock/web', dependencies: { '@airlock/testing': '0.1.0' } }, references: ['testing'] },
      { dir: 'objectstore', manifest: { name: '@airlock/objectstore', devDependencies: { '@airlock/testing': '0.1.0' } }, references: ['testing'] },
    ];
    const found = checkWorkspace({ packages, files: [] }).map((v) => `${v.rule} ${v.where}`);
    expect(found).toEqual([
      'unknown-package packages/mystery',
      'unknown-package packages/half-made',
      'missing-manifest packages/half-made',
      'package-name packages/pki/package.json',
      'unknown-package packages/data-plane-2',
      'manifest-layer packages/sdk/package.json devDependencies',
      'tsconfig-layer packages/sdk/tsconfig.json',
      'tsconfig-missing-reference packages/verify/tsconfig.json',
      'manifest-layer packages/web/package.json dependencies',
      'tsconfig-layer packages/web/tsconfig.json',
      'tsconfig-layer packages/objectstore/tsconfig.json',
    ]);
  });
});
