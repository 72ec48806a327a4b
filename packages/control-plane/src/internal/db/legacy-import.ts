// One-time import of a data directory written by the JSON-file release (clusters.json, api-tokens.json, actions.json) into the database; the files are removed once their rows are committed.
import { readFile, rm } from 'node:fs/promises';
import { AirlockError, syncDirectory, type Logger } from '@airlock/common';
import { dirname } from 'node:path';
import { actionHistoryColumns } from '../action-queue.js';
import type { ControlPlaneDatabase } from './database.js';

/** The JSON state files of the previous release. Each is optional. */
export interface LegacyStateFiles {
  readonly clusters?: string;
  readonly apiTokens?: string;
  readonly actions?: string;
}

export interface LegacyImportResult {
  readonly clusters: number;
  readonly bootstrapTokens: number;
  readonly apiTokens: number;
  readonly actions: number;
  /** The files that were imported and then removed. */
  readonly removed: readonly string[];
}

interface LegacyClusters {
  version: 1;
  tokens: Array<{ hash: string; cluster: string; expiresAt: number; used: boolean }>;
  clusters: Record<string, { registeredAt: number; revoked: boolean; certificates: Array<{ fingerprint: string; expiresAt: number }> }>;
}

interface LegacyApiTokens {
  version: 1;
  tokens: Array<{ id: string; hash: string; subject: string; roles: Array<{ project: string; role: string }>; createdAt: number; expiresAt?: number; revokedAt?: number }>;
}

interface LegacyAction {
  actionId: string;
  cluster: string;
  runId: string;
  task: { project: string; name: string; version: string };
  attempt: number;
  timeoutMs: number;
  hasInputs: boolean;
  inputsLost: boolean;
  phase: string;
  queuedAt: number;
  updatedAt: number;
  leasedAt?: number;
  leaseExpiresAt?: number;
  completedAt?: number;
  cancelRequested: boolean;
  deliveries: number;
  error?: { code: string; message: string; retryable: boolean };
  history: Array<{ phase: string; at: number; eventId?: string }>;
  eventIds: string[];
}

interface LegacyActions {
  version: 1;
  actions: LegacyAction[];
}

const HEX_HASH = /^[0-9a-f]{64}$/;

async function readJson<T>(path: string | undefined, check: (value: unknown) => value is T): Promise<T | undefined> {
  if (path === undefined) return undefined;
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw AirlockError.from(error);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new AirlockError('CONFIG_INVALID', `${path} (state of the previous release) is not valid JSON; it was left in place and nothing was imported`, { cause: error, details: { path } });
  }
  if (!check(value)) throw new AirlockError('CONFIG_INVALID', `${path} (state of the previous release) has an unknown format; it was left in place and nothing was imported`, { details: { path } });
  return value;
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null;

function isLegacyClusters(value: unknown): value is LegacyClusters {
  return isObject(value) && value.version === 1 && Array.isArray(value.tokens) && isObject(value.clusters);
}
function isLegacyApiTokens(value: unknown): value is LegacyApiTokens {
  return isObject(value) && value.version === 1 && Array.isArray(value.tokens) && value.tokens.every((token) => isObject(token) && typeof token.hash === 'string' && HEX_HASH.test(token.hash));
}
function isLegacyActions(value: unknown): value is LegacyActions {
  return isObject(value) && value.version === 1 && Array.isArray(value.actions) && value.actions.every((action) => isObject(action) && typeof action.actionId === 'string');
}

/**
 * Imports the previous release's JSON state, if there is any, in one transaction, then removes the
 * files. A crash before the commit leaves the files for the next start; a crash after it leaves
 * files whose rows already exist, which the next start recognises (same ids) and only removes.
 */
export async function importLegacyState(database: ControlPlaneDatabase, files: LegacyStateFiles, log: Logger): Promise<LegacyImportResult | undefined> {
  const clusters = await readJson(files.clusters, isLegacyClusters);
  const apiTokens = await readJson(files.apiTokens, isLegacyApiTokens);
  const actions = await readJson(files.actions, isLegacyActions);
  if (clusters === undefined && apiTokens === undefined && actions === undefined) return undefined;
  const { db, sealer } = database;
  const clusterId = (name: string): string => sealer.blindIndex('cluster', name);
  const counts = { clusters: 0, bootstrapTokens: 0, apiTokens: 0, actions: 0 };

  await db.transaction().execute(async (trx) => {
    for (const [name, entry] of Object.entries(clusters?.clusters ?? {})) {
      const id = clusterId(name);
      const inserted = await trx
        .insertInto('clusters')
        .values({
          cluster_id: id,
          name_sealed: sealer.sealText({ table: 'clusters', column: 'name_sealed', row: id }, name),
          registered_at: entry.registeredAt,
          revoked: entry.revoked ? 1 : 0,
          updated_at: entry.registeredAt,
        })
        .onConflict((conflict) => conflict.column('cluster_id').doNothing())
        .executeTakeFirst();
      if (Number(inserted.numInsertedOrUpdatedRows ?? 0n) === 0) continue;
      counts.clusters += 1;
      // Newest first in the file; issue times are not recorded there, so they are spaced to keep that order.
      for (const [index, cert] of entry.certificates.entries()) {
        await trx
          .insertInto('cluster_certificates')
          .values({ fingerprint: cert.fingerprint, cluster_id: id, issued_at: entry.registeredAt - index, expires_at: cert.expiresAt })
          .onConflict((conflict) => conflict.column('fingerprint').doNothing())
          .execute();
      }
    }
    for (const token of clusters?.tokens ?? []) {
      if (!HEX_HASH.test(token.hash)) continue;
      const inserted = await trx
        .insertInto('bootstrap_tokens')
        .values({
          token_hash: token.hash,
          cluster_id: clusterId(token.cluster),
          cluster_name_sealed: sealer.sealText({ table: 'bootstrap_tokens', column: 'cluster_name_sealed', row: token.hash }, token.cluster),
          reason_sealed: null,
          created_at: token.expiresAt,
          expires_at: token.expiresAt,
          used_at: token.used ? token.expiresAt : null,
        })
        .onConflict((conflict) => conflict.column('token_hash').doNothing())
        .executeTakeFirst();
      counts.bootstrapTokens += Number(inserted.numInsertedOrUpdatedRows ?? 0n);
    }
    for (const token of apiTokens?.tokens ?? []) {
      const inserted = await trx
        .insertInto('api_tokens')
        .values({
          token_id: token.id,
          token_hash: token.hash,
          subject_sealed: sealer.sealText({ table: 'api_tokens', column: 'subject_sealed', row: token.id }, token.subject),
          roles_sealed: sealer.sealJson({ table: 'api_tokens', column: 'roles_sealed', row: token.id }, token.roles),
          created_at: token.createdAt,
          expires_at: token.expiresAt ?? null,
          revoked_at: token.revokedAt ?? null,
        })
        .onConflict((conflict) => conflict.column('token_id').doNothing())
        .executeTakeFirst();
      counts.apiTokens += Number(inserted.numInsertedOrUpdatedRows ?? 0n);
    }
    for (const action of actions?.actions ?? []) {
      const cell = (column: 'spec_sealed' | 'history_sealed' | 'error_sealed'): { table: string; column: string; row: string } => ({ table: 'actions', column, row: action.actionId });
      const inserted = await trx
        .insertInto('actions')
        .values({
          action_id: action.actionId,
          cluster_id: clusterId(action.cluster),
          run_id: action.runId,
          parent_action_id: null,
          spec_sealed: sealer.sealJson(cell('spec_sealed'), { cluster: action.cluster, task: action.task, timeoutMs: action.timeoutMs }),
          attempt: action.attempt,
          phase: action.phase,
          queued_at: action.queuedAt,
          updated_at: action.updatedAt,
          leased_at: action.leasedAt ?? null,
          lease_expires_at: action.leaseExpiresAt ?? null,
          completed_at: action.completedAt ?? null,
          cancel_requested: action.cancelRequested ? 1 : 0,
          deliveries: action.deliveries,
          has_inputs: action.hasInputs ? 1 : 0,
          inputs_lost: action.inputsLost ? 1 : 0,
          error_sealed: action.error === undefined ? null : sealer.sealJson(cell('error_sealed'), action.error),
          // Readable, as the queue now writes it; a history that is not only phases, times and ids (a file edited by hand) stays sealed.
          ...actionHistoryColumns(action.history, sealer, cell('history_sealed')),
          available_at: null,
        })
        .onConflict((conflict) => conflict.column('action_id').doNothing())
        .executeTakeFirst();
      if (Number(inserted.numInsertedOrUpdatedRows ?? 0n) === 0) continue;
      counts.actions += 1;
      for (const eventId of action.eventIds) {
        await trx
          .insertInto('action_events')
          .values({ action_id: action.actionId, event_id: eventId, received_at: action.updatedAt })
          .onConflict((conflict) => conflict.columns(['action_id', 'event_id']).doNothing())
          .execute();
      }
    }
    // The queue limits read per-cluster counters; imported unfinished actions count too.
    const pending = await trx
      .selectFrom('actions')
      .select(['cluster_id', (eb) => eb.fn.countAll<number>().as('count')])
      .where('completed_at', 'is', null)
      .groupBy('cluster_id')
      .execute();
    for (const row of pending) {
      await trx
        .insertInto('queue_depth')
        .values({ cluster_id: row.cluster_id, pending: Number(row.count) })
        .onConflict((conflict) => conflict.column('cluster_id').doUpdateSet({ pending: Number(row.count) }))
        .execute();
    }
  });

  const removed: string[] = [];
  for (const [path, found] of [
    [files.clusters, clusters],
    [files.apiTokens, apiTokens],
    [files.actions, actions],
  ] as const) {
    if (path === undefined || found === undefined) continue;
    await rm(path, { force: true });
    await syncDirectory(dirname(path)).catch(() => undefined);
    removed.push(path);
  }
  // Field names without "token": the log redactor would hide counts under such names.
  log.warn(
    { event: 'db.legacy_imported', clusters: counts.clusters, bootstrapGrants: counts.bootstrapTokens, apiGrants: counts.apiTokens, actions: counts.actions, removed },
    'imported the previous release\'s JSON state into the database and removed its files',
  );
  return Object.freeze({ ...counts, removed: Object.freeze(removed) });
}
