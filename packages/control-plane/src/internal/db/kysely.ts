// Kysely's runtime values, loaded through its CommonJS build. Node loads a CommonJS graph one file at a time, while the
// index of Kysely's ES module build has Node open its 263 files at once: more descriptors than a process under
// `ulimit -n 256` has, so the control plane failed to start there with EMFILE. Runtime code takes Kysely's values from
// here only, so that one copy of Kysely is loaded; types still come from 'kysely' (`import type`).
import { createRequire } from 'node:module';
import type * as KyselyModule from 'kysely';

const kysely = createRequire(import.meta.url)('kysely') as typeof KyselyModule;

export const { Kysely, PostgresDialect, SqliteDialect, Migrator, CompiledQuery, RawNode, SelectQueryNode, sql } = kysely;
export type Kysely<DB> = KyselyModule.Kysely<DB>;
export type CompiledQuery<O = unknown> = KyselyModule.CompiledQuery<O>;
