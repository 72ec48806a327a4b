// AirlockService, the control plane's public API: bearer-token authentication, project-scoped role checks, cluster listing, revocation and bootstrap tokens.
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { durationMs, timestampFromDate, type Duration } from '@bufbuild/protobuf/wkt';
import { createContextKey, type ConnectRouter, type HandlerContext, type Interceptor } from '@connectrpc/connect';
import { AirlockError, type Logger } from '@airlock/common';
import { isValidClusterName } from '@airlock/pki';
import { AirlockService, ClusterSchema, ClusterState, HealthStatus, Role, type Cluster, type DataPlaneKeys } from '@airlock/protocol';
import { ALL_PROJECTS, hasRole, type ApiPrincipal, type ApiRole, type ApiTokenStore } from './api-tokens.js';
import type { ClusterRecord, ClusterRegistry } from './cluster-registry.js';
import type { RunService } from './run-service.js';
import { runServiceHandlers } from './runs-api.js';

/**
 * Live facts about clusters that the registry does not hold (tunnel, dispatch). Every method is
 * optional, and a missing method or a throw leaves the field unset rather than failing the call.
 */
export interface ClusterStatusSource {
  tunnelConnected?(cluster: string): boolean;
  lastHeartbeatAt?(cluster: string): Date | undefined;
  agentVersion?(cluster: string): string | undefined;
  /** The signed sealing keys from the cluster's last registration, relayed as is (clients verify them against their pin). */
  keys?(cluster: string): DataPlaneKeys | undefined;
}

export interface ApiServiceOptions {
  readonly tokens: ApiTokenStore;
  readonly registry: ClusterRegistry;
  readonly clusterStatus?: ClusterStatusSource | undefined;
  /** Tasks and runs (openRunService). @default none: those RPCs answer `unimplemented` */
  readonly runs?: RunService | undefined;
  /** Reported by Health. */
  readonly version: string;
  readonly log: Logger;
  /** Clock for Health's server_time and bootstrap-token expiry (tests). @default the current time */
  readonly now?: () => Date;
}

/** The authenticated caller of the current RPC; undefined only for unauthenticated RPCs (Health). */
export const apiPrincipalKey = createContextKey<ApiPrincipal | undefined>(undefined, { description: 'airlock API principal' });

/** RPCs that need no token. Everything else is refused without one, including RPCs added later. */
const UNAUTHENTICATED_METHODS: ReadonlySet<string> = new Set([AirlockService.method.health.name]);

export const DEFAULT_BOOTSTRAP_TOKEN_TTL_MS = 60 * 60 * 1000;
/** Longer requests are capped (the proto's contract), so an unused token that leaks later is worthless. */
export const MAX_BOOTSTRAP_TOKEN_TTL_MS = 24 * 60 * 60 * 1000;
const MIN_BOOTSTRAP_TOKEN_TTL_MS = 1000;
export const DEFAULT_CLUSTER_PAGE_SIZE = 100;
export const MAX_CLUSTER_PAGE_SIZE = 1000;
const MAX_REVOKE_REASON_LENGTH = 1024;
const PAGE_TOKEN_VERSION = 1;

const ROLE_TO_PROTO: Readonly<Record<ApiRole, Role>> = Object.freeze({ viewer: Role.VIEWER, runner: Role.RUNNER, admin: Role.ADMIN });

/** `Authorization: Bearer <token>` (RFC 6750 §2.1); the scheme is case-insensitive (RFC 9110 §11.1). */
const BEARER = /^Bearer +(\S+) *$/i;

function bearerToken(header: string | null): string {
  if (header === null || header.length === 0) throw new AirlockError('AUTH_MISSING', 'This call needs an API token: send "Authorization: Bearer <token>"');
  const match = BEARER.exec(header);
  if (match?.[1] === undefined) throw new AirlockError('AUTH_MALFORMED', 'The Authorization header must be "Bearer <token>"');
  return match[1];
}

/**
 * Server interceptor: authenticates every RPC except the UNAUTHENTICATED_METHODS and puts the
 * principal under apiPrincipalKey. Failures are AirlockErrors (AUTH_* → unauthenticated), mapped by
 * the connect server's error interceptor, which runs outside this one.
 */
export function createApiAuthInterceptor(tokens: ApiTokenStore, log: Logger): Interceptor {
  return (next) => async (request) => {
    if (request.service.typeName === AirlockService.typeName && UNAUTHENTICATED_METHODS.has(request.method.name)) return next(request);
    const principal = await tokens.authenticate(bearerToken(request.header.get('authorization')));
    request.contextValues.set(apiPrincipalKey, principal);
    // The token id and subject are not secret; the token itself is never logged.
    log.debug({ event: 'api.call', rpc: request.method.name, subject: principal.subject, principalId: principal.tokenId }, 'API call');
    return next(request);
  };
}

/** The authenticated caller. */
function caller(context: HandlerContext): ApiPrincipal {
  const principal = context.values.get(apiPrincipalKey);
  // The interceptor always sets it for authenticated RPCs; its absence is a wiring fault, refused all the same.
  if (principal === undefined) throw new AirlockError('AUTH_MISSING', 'This call needs an API token');
  return principal;
}

/** The caller, or ACCESS_DENIED unless it holds at least `minimum` in `project`. */
function authorize(context: HandlerContext, project: string, minimum: ApiRole, log: Logger): ApiPrincipal {
  const principal = caller(context);
  if (!hasRole(principal, project, minimum)) {
    log.warn({ event: 'api.denied', rpc: context.method.name, subject: principal.subject, principalId: principal.tokenId, project, required: minimum }, 'API call denied');
    throw new AirlockError('ACCESS_DENIED', `This call needs the ${minimum} role on project "${project}"`, { details: { project, role: minimum } });
  }
  return principal;
}

function clusterNameArgument(name: string, argument: string): string {
  if (!isValidClusterName(name)) {
    throw new AirlockError('INVALID_ARGUMENT', `${argument} must be 1 to 63 lower-case letters, digits or inner hyphens`, { details: { argument } });
  }
  return name;
}

/** Page tokens are opaque to clients: base64url JSON naming the last cluster of the previous page. */
function encodePageToken(after: string): string {
  return Buffer.from(JSON.stringify({ v: PAGE_TOKEN_VERSION, after }), 'utf8').toString('base64url');
}

function decodePageToken(token: string): string | undefined {
  if (token === '') return undefined;
  const invalid = (): AirlockError => new AirlockError('INVALID_ARGUMENT', 'page_token is not a token from a previous ListClusters response', { details: { argument: 'page_token' } });
  if (token.length > 512 || !/^[A-Za-z0-9_-]+$/.test(token)) throw invalid();
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
  } catch {
    throw invalid();
  }
  const { v, after } = (parsed ?? {}) as { v?: unknown; after?: unknown };
  if (v !== PAGE_TOKEN_VERSION || !isValidClusterName(after)) throw invalid();
  return after;
}

/** The TTL a CreateBootstrapToken request asks for: unset or zero means the default; longer than the maximum is capped. */
function bootstrapTtlMs(ttl: Duration | undefined): number {
  if (ttl === undefined || (ttl.seconds === 0n && ttl.nanos === 0)) return DEFAULT_BOOTSTRAP_TOKEN_TTL_MS;
  const invalid = (): AirlockError =>
    new AirlockError('INVALID_ARGUMENT', `ttl must be between ${MIN_BOOTSTRAP_TOKEN_TTL_MS / 1000} second and ${MAX_BOOTSTRAP_TOKEN_TTL_MS / 3_600_000} hours`, {
      details: { argument: 'ttl' },
    });
  // A valid Duration has |nanos| < 1e9 with the sign of seconds (google/protobuf/duration.proto).
  if (ttl.seconds < 0n || ttl.nanos < 0 || ttl.nanos >= 1_000_000_000) throw invalid();
  if (ttl.seconds > BigInt(MAX_BOOTSTRAP_TOKEN_TTL_MS / 1000)) return MAX_BOOTSTRAP_TOKEN_TTL_MS;
  const ms = durationMs(ttl);
  if (ms < MIN_BOOTSTRAP_TOKEN_TTL_MS) throw invalid();
  return Math.min(ms, MAX_BOOTSTRAP_TOKEN_TTL_MS);
}

export interface ApiService {
  /** Registers AirlockService on a router. */
  readonly routes: (router: ConnectRouter) => void;
  /** The authentication interceptor (createApiAuthInterceptor) the routes rely on. */
  readonly interceptor: Interceptor;
}

/** AirlockService's routes and the interceptor that authenticates their callers; serve both together. */
export function createApiService(options: ApiServiceOptions): ApiService {
  const { tokens, registry, clusterStatus, runs, version, log } = options;
  const clock = options.now ?? ((): Date => new Date());

  /** A status-source answer, or undefined when it has none or fails (live status must not break listing). */
  const live = <T>(cluster: string, what: string, read: (source: ClusterStatusSource) => T | undefined): T | undefined => {
    if (clusterStatus === undefined) return undefined;
    try {
      return read(clusterStatus);
    } catch (error) {
      log.debug({ event: 'api.cluster_status_failed', cluster, what, code: AirlockError.from(error).code }, 'cluster status unavailable');
      return undefined;
    }
  };

  const clusterMessage = (record: ClusterRecord): Cluster => {
    // The registry keeps certificates newest first.
    const current = record.certificates[0];
    const heartbeat = live(record.name, 'lastHeartbeatAt', (source) => source.lastHeartbeatAt?.(record.name));
    const init: MessageInitShape<typeof ClusterSchema> = {
      name: record.name,
      state: record.revoked ? ClusterState.REVOKED : ClusterState.ACTIVE,
      agentVersion: live(record.name, 'agentVersion', (source) => source.agentVersion?.(record.name)) ?? '',
      registeredAt: timestampFromDate(record.registeredAt),
      // A revoked cluster's tunnel is refused at the handshake, whatever a stale source says.
      tunnelConnected: !record.revoked && live(record.name, 'tunnelConnected', (source) => source.tunnelConnected?.(record.name)) === true,
      certificateSha256: current?.fingerprintSha256 ?? '',
      ...(heartbeat instanceof Date && !Number.isNaN(heartbeat.getTime()) ? { lastHeartbeatAt: timestampFromDate(heartbeat) } : {}),
      ...(current === undefined ? {} : { certificateNotAfter: timestampFromDate(current.expiresAt) }),
    };
    const keys = record.revoked ? undefined : live(record.name, 'keys', (source) => source.keys?.(record.name));
    if (keys !== undefined) init.keys = keys;
    return create(ClusterSchema, init);
  };

  const requireCluster = async (name: string): Promise<ClusterRecord> => {
    const record = await registry.cluster(name);
    if (record === undefined) throw new AirlockError('NOT_FOUND', 'No cluster has this name', { details: { cluster: name } });
    return record;
  };

  const routes = (router: ConnectRouter): void => {
    router.service(AirlockService, {
      ...(runs === undefined ? {} : runServiceHandlers(runs, (context, project, minimum) => authorize(context, project, minimum, log))),
      health() {
        return { status: HealthStatus.SERVING, version, serverTime: timestampFromDate(clock()) };
      },

      whoAmI(_request, context) {
        const principal = context.values.get(apiPrincipalKey);
        if (principal === undefined) throw new AirlockError('AUTH_MISSING', 'This call needs an API token');
        return {
          subject: principal.subject,
          roles: principal.roles.map((grant) => ({ project: grant.project, role: ROLE_TO_PROTO[grant.role] })),
          ...(principal.expiresAt === undefined ? {} : { tokenExpiresAt: timestampFromDate(principal.expiresAt) }),
        };
      },

      // Any authenticated caller may read clusters (a client needs a cluster's signed keys before it
      // can seal anything to it); changing them is platform-wide, so admin on project `*`.
      async listClusters(request, context) {
        caller(context);
        const pageSize = request.pageSize === 0 ? DEFAULT_CLUSTER_PAGE_SIZE : Math.min(request.pageSize, MAX_CLUSTER_PAGE_SIZE);
        const after = decodePageToken(request.pageToken);
        // Code-unit order, which is byte order for the ASCII names isValidClusterName allows.
        const sorted = (await registry.clusters()).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
        const remaining = after === undefined ? sorted : sorted.filter((record) => record.name > after);
        const page = remaining.slice(0, pageSize);
        const last = page.at(-1);
        return {
          clusters: page.map(clusterMessage),
          nextPageToken: remaining.length > pageSize && last !== undefined ? encodePageToken(last.name) : '',
        };
      },

      async getCluster(request, context) {
        caller(context);
        return { cluster: clusterMessage(await requireCluster(clusterNameArgument(request.name, 'name'))) };
      },

      async revokeCluster(request, context) {
        const principal = authorize(context, ALL_PROJECTS, 'admin', log);
        const name = clusterNameArgument(request.name, 'name');
        if (request.reason.length > MAX_REVOKE_REASON_LENGTH) {
          throw new AirlockError('INVALID_ARGUMENT', `reason must be at most ${MAX_REVOKE_REASON_LENGTH} characters`, { details: { argument: 'reason' } });
        }
        await registry.revoke(name);
        // The audit line: who revoked what, and why (the field is documented as free of secrets).
        log.info({ event: 'api.cluster_revoked', cluster: name, subject: principal.subject, principalId: principal.tokenId, reason: request.reason }, 'cluster revoked');
        return { cluster: clusterMessage(await requireCluster(name)) };
      },

      async createBootstrapToken(request, context) {
        const principal = authorize(context, ALL_PROJECTS, 'admin', log);
        const cluster = clusterNameArgument(request.cluster, 'cluster');
        const ttlMs = bootstrapTtlMs(request.ttl);
        const issued = await registry.createBootstrapToken(cluster, ttlMs, request.reason === '' ? undefined : request.reason);
        // Never the token (it is in the response only, and the registry keeps its hash), nor the
        // reason (free text, stored sealed).
        log.info(
          { event: 'api.bootstrap_token_created', cluster, subject: principal.subject, principalId: principal.tokenId, expiresAt: issued.expiresAt.toISOString() },
          'bootstrap token created',
        );
        return { token: issued.token, expiresAt: timestampFromDate(issued.expiresAt) };
      },
    });
  };
  return Object.freeze({ routes, interceptor: createApiAuthInterceptor(tokens, log) });
}
