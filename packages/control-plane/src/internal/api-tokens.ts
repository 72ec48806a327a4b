// Bearer tokens for the control plane's public API: shown once, stored only as SHA-256 hashes, each carrying project-scoped roles.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Selectable } from 'kysely';
import { AirlockError, configError, type Logger } from '@airlock/common';
import type { SealedCell } from './db/column-sealer.js';
import type { ControlPlaneDatabase } from './db/database.js';
import type { ApiTokensTable } from './db/schema.js';

/** Prefix of every API token, so that a leaked one is recognisable (secret scanners, logs, support tickets). */
export const API_TOKEN_PREFIX = 'alt_';
/** The project name that stands for every project, for platform-wide grants and checks. */
export const ALL_PROJECTS = '*';
/** The roles, weakest first; each includes the ones before it. */
export const API_ROLES = ['viewer', 'runner', 'admin'] as const;
export type ApiRole = (typeof API_ROLES)[number];

const TOKEN_BYTES = 32;
const ID_BYTES = 9;
const MAX_SUBJECT_LENGTH = 256;
/** `alt_` + 43 base64url characters (32 bytes, unpadded). Anything else cannot be a token of ours. */
const TOKEN_PATTERN = /^alt_[A-Za-z0-9_-]{43}$/;
/** Project names: `*`, or a name safe to print and to use in a URL path. */
const PROJECT_PATTERN = /^(?:\*|[A-Za-z0-9][A-Za-z0-9._-]{0,127})$/;

/** A role within one project; project `*` grants the role in every project. */
export interface ApiProjectRole {
  readonly project: string;
  readonly role: ApiRole;
}

export interface ApiTokenStoreOptions {
  /** Where tokens live: only their hashes, with subjects and roles sealed. */
  readonly database: ControlPlaneDatabase;
  /** Clock (tests). @default the current time */
  readonly now?: () => Date;
  readonly log?: Logger;
}

export interface CreateApiTokenOptions {
  /** The user or service account the token is issued to (1 to 256 printable characters). */
  readonly subject: string;
  /** Its roles, at most one per project. */
  readonly roles: readonly ApiProjectRole[];
  /** Lifetime in milliseconds. @default no expiry */
  readonly ttlMs?: number;
}

/** A new token, returned once: only its hash is kept. */
export interface CreatedApiToken {
  /** Secret: give it to the subject; never log it. */
  readonly token: string;
  /** Non-secret handle for listing and revoking. */
  readonly id: string;
  readonly subject: string;
  readonly expiresAt?: Date;
}

/** Who a valid token belongs to and what it may do. Contains no secrets. */
export interface ApiPrincipal {
  readonly tokenId: string;
  readonly subject: string;
  readonly roles: readonly ApiProjectRole[];
  readonly expiresAt?: Date;
}

/** Non-secret facts about an issued token. */
export interface ApiTokenRecord {
  readonly id: string;
  readonly subject: string;
  readonly roles: readonly ApiProjectRole[];
  readonly createdAt: Date;
  readonly expiresAt?: Date;
  /** Set once the token is revoked; revoked tokens are kept so that `list` shows the history. */
  readonly revokedAt?: Date;
}

export interface ApiTokenStore {
  /** Issues a token. Throws INVALID_ARGUMENT for a bad subject, role or TTL. */
  createToken(options: CreateApiTokenOptions): Promise<CreatedApiToken>;
  /**
   * The principal of a presented token. Throws AUTH_MISSING for an empty token,
   * AUTH_UNKNOWN_ACCESS_KEY for an unknown or revoked one (indistinguishable on purpose) and
   * AUTH_REQUEST_EXPIRED for an expired one. The errors carry no detail about the token.
   */
  authenticate(token: string): Promise<ApiPrincipal>;
  /** Revokes a token by id; its next use fails. Idempotent. Throws NOT_FOUND for an unknown id. */
  revoke(id: string): Promise<void>;
  /** Every issued token, oldest first (tokens created in the same millisecond in id order), without secrets. */
  list(): Promise<ApiTokenRecord[]>;
}

const ROLE_RANK: Readonly<Record<ApiRole, number>> = Object.freeze({ viewer: 1, runner: 2, admin: 3 });

/**
 * True when `principal` holds at least `minimum` in `project`. A grant on `*` counts in every
 * project; asking about project `*` (a platform-wide operation) counts only grants on `*`, so a
 * project admin is not a platform admin.
 */
export function hasRole(principal: Pick<ApiPrincipal, 'roles'>, project: string, minimum: ApiRole): boolean {
  const needed = ROLE_RANK[minimum];
  return principal.roles.some(
    (grant) => (grant.project === ALL_PROJECTS || (project !== ALL_PROJECTS && grant.project === project)) && ROLE_RANK[grant.role] >= needed,
  );
}

export function isApiRole(value: unknown): value is ApiRole {
  return typeof value === 'string' && (API_ROLES as readonly string[]).includes(value);
}

/*
 * Why a fast, unsalted hash: every token is 32 bytes from the CSPRNG, so a stolen state file leaves
 * an attacker a 2^256 search per token, which no hashing speed makes feasible. Slow, salted KDFs
 * (bcrypt, scrypt, Argon2) exist for low-entropy passwords, where guessing is the attack; here they
 * would only make every authenticated request expensive, a lever for denial of service. Salt is
 * unneeded too: the inputs are unique and random, so precomputed tables are useless.
 */
function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

function invalid(argument: string, message: string): AirlockError {
  return new AirlockError('INVALID_ARGUMENT', message, { details: { argument } });
}

function checkSubject(subject: unknown): string {
  // Printable and bounded, so that it is safe in logs and in WhoAmI answers.
  if (typeof subject !== 'string' || subject.length === 0 || subject.length > MAX_SUBJECT_LENGTH || /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u.test(subject)) {
    throw invalid('subject', `subject must be 1 to ${MAX_SUBJECT_LENGTH} printable characters`);
  }
  return subject;
}

function checkRoles(roles: unknown): ApiProjectRole[] {
  if (!Array.isArray(roles)) throw invalid('roles', 'roles must be an array of { project, role }');
  const seen = new Set<string>();
  return roles.map((grant: unknown) => {
    const { project, role } = (grant ?? {}) as { project?: unknown; role?: unknown };
    if (typeof project !== 'string' || !PROJECT_PATTERN.test(project)) {
      throw invalid('roles.project', 'project must be "*" or 1 to 128 letters, digits, ".", "_" or "-", starting with a letter or digit');
    }
    if (!isApiRole(role)) throw invalid('roles.role', `role must be one of: ${API_ROLES.join(', ')}`);
    // One role per project keeps "what may this token do" a single lookup, with no precedence rules.
    if (seen.has(project)) throw invalid('roles.project', 'each project may appear only once');
    seen.add(project);
    return Object.freeze({ project, role });
  });
}

/** Opens the API token store over the control-plane database. */
export function openApiTokenStore(options: ApiTokenStoreOptions): ApiTokenStore {
  if (typeof options?.database?.db !== 'object') throw configError('apiTokens.database', 'is required');
  const clock = options.now ?? ((): Date => new Date());
  const { log } = options;
  const { db, sealer } = options.database;
  const subjectCell = (id: string): SealedCell => ({ table: 'api_tokens', column: 'subject_sealed', row: id });
  const rolesCell = (id: string): SealedCell => ({ table: 'api_tokens', column: 'roles_sealed', row: id });

  const record = (row: Selectable<ApiTokensTable>): ApiTokenRecord => {
    const roles = sealer.openJson<ApiProjectRole[]>(rolesCell(row.token_id), row.roles_sealed).map((grant) => Object.freeze({ project: grant.project, role: grant.role }));
    return Object.freeze({
      id: row.token_id,
      subject: sealer.openText(subjectCell(row.token_id), row.subject_sealed),
      roles: Object.freeze(roles),
      createdAt: new Date(row.created_at),
      ...(row.expires_at === null ? {} : { expiresAt: new Date(row.expires_at) }),
      ...(row.revoked_at === null ? {} : { revokedAt: new Date(row.revoked_at) }),
    });
  };

  const refused = (code: 'AUTH_MISSING' | 'AUTH_UNKNOWN_ACCESS_KEY' | 'AUTH_REQUEST_EXPIRED', reason: string, entry?: ApiTokenRecord): AirlockError => {
    // The token id and subject are not secret; the presented value is never logged.
    log?.warn({ event: 'api_token.refused', reason, ...(entry === undefined ? {} : { id: entry.id, subject: entry.subject }) }, 'API token refused');
    const message =
      code === 'AUTH_MISSING' ? 'No API token was presented' : code === 'AUTH_REQUEST_EXPIRED' ? 'The API token has expired' : 'The API token is not valid';
    return new AirlockError(code, message);
  };

  return {
    async createToken(request) {
      if (typeof request !== 'object' || request === null) throw invalid('options', 'options are required');
      const subject = checkSubject(request.subject);
      const roles = checkRoles(request.roles);
      const { ttlMs } = request;
      if (ttlMs !== undefined && (!Number.isSafeInteger(ttlMs) || ttlMs <= 0)) throw invalid('ttlMs', 'ttlMs must be a positive integer number of milliseconds');
      const token = `${API_TOKEN_PREFIX}${randomBytes(TOKEN_BYTES).toString('base64url')}`;
      const id = randomBytes(ID_BYTES).toString('base64url');
      const createdAt = clock().getTime();
      const expiresAtMs = ttlMs === undefined ? null : createdAt + ttlMs;
      await db
        .insertInto('api_tokens')
        .values({
          token_id: id,
          token_hash: hashToken(token),
          subject_sealed: sealer.sealText(subjectCell(id), subject),
          roles_sealed: sealer.sealJson(rolesCell(id), roles),
          created_at: createdAt,
          expires_at: expiresAtMs,
          revoked_at: null,
        })
        .execute();
      const expiresAt = expiresAtMs === null ? undefined : new Date(expiresAtMs);
      log?.info(
        { event: 'api_token.created', id, subject, roles: roles.map((grant) => `${grant.project}:${grant.role}`), expiresAt: expiresAt?.toISOString() },
        'API token created',
      );
      return Object.freeze({ token, id, subject, ...(expiresAt === undefined ? {} : { expiresAt }) });
    },

    async authenticate(token) {
      if (typeof token !== 'string' || token.length === 0) throw refused('AUTH_MISSING', 'missing');
      // Anything that cannot be one of our tokens is refused before hashing; the check depends only
      // on the presented value's shape, never on a stored secret.
      if (!TOKEN_PATTERN.test(token)) throw refused('AUTH_UNKNOWN_ACCESS_KEY', 'malformed');
      const presented = hashToken(token);
      // Looked up by the hash of what was presented: its timing can tell an attacker only about the
      // hash of their own guess, never about a stored token.
      const row = await db.selectFrom('api_tokens').selectAll().where('token_hash', '=', presented).executeTakeFirst();
      // Belt and braces: the index matched on the hash string; confirm in constant time.
      if (row === undefined || !timingSafeEqual(Buffer.from(row.token_hash, 'hex'), Buffer.from(presented, 'hex'))) {
        throw refused('AUTH_UNKNOWN_ACCESS_KEY', 'unknown');
      }
      const entry = record(row);
      if (entry.revokedAt !== undefined) throw refused('AUTH_UNKNOWN_ACCESS_KEY', 'revoked', entry);
      if (entry.expiresAt !== undefined && clock().getTime() >= entry.expiresAt.getTime()) throw refused('AUTH_REQUEST_EXPIRED', 'expired', entry);
      return Object.freeze({
        tokenId: entry.id,
        subject: entry.subject,
        roles: entry.roles,
        ...(entry.expiresAt === undefined ? {} : { expiresAt: entry.expiresAt }),
      });
    },

    async revoke(id) {
      const row = typeof id === 'string' ? await db.selectFrom('api_tokens').selectAll().where('token_id', '=', id).executeTakeFirst() : undefined;
      if (row === undefined) throw new AirlockError('NOT_FOUND', 'No API token has this id', { details: { argument: 'id' } });
      if (row.revoked_at !== null) return;
      await db.updateTable('api_tokens').set({ revoked_at: clock().getTime() }).where('token_id', '=', row.token_id).where('revoked_at', 'is', null).execute();
      log?.info({ event: 'api_token.revoked', id: row.token_id, subject: record(row).subject }, 'API token revoked');
    },

    async list() {
      const rows = await db.selectFrom('api_tokens').selectAll().orderBy('created_at').orderBy('token_id').execute();
      return rows.map(record);
    },
  };
}
