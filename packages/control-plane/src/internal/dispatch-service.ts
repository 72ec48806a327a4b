// DispatchService handlers: bootstrap and renewal of cluster certificates, agent registration, heartbeats with reconciliation, action leasing and phase events.
import type { MessageInitShape } from '@bufbuild/protobuf';
import { durationFromMs, durationMs, timestampDate, timestampFromDate } from '@bufbuild/protobuf/wkt';
import type { ConnectRouter, HandlerContext, ServiceImpl } from '@connectrpc/connect';
import { AirlockError, configCheck, configError, freezeConfig, type DeepReadonly, type Logger } from '@airlock/common';
import { isValidClusterName, parseCertificate, parseClusterIdentity } from '@airlock/pki';
import { ActionPhase, DispatchService, ErrorKind, type ActionEvent, type ActionSchema, type DataPlaneKeys } from '@airlock/protocol';
import { hasControlCharacter, type ActionEventInput, type ActionPhaseName, type ActionQueue, type QueuedAction } from './action-queue.js';
import type { ClusterRegistry } from './cluster-registry.js';
import { tlsPeerKey } from './connect-server.js';

export interface DispatchServiceOptions {
  readonly registry: ClusterRegistry;
  readonly queue: ActionQueue;
  readonly log: Logger;
  /** The heartbeat interval agents are told to use, in milliseconds. @default 5000 */
  readonly heartbeatIntervalMs?: number;
  /** Longest a PollActions call is held open when nothing is queued, in milliseconds. @default 30000 */
  readonly maxPollWaitMs?: number;
  /** Most actions handed out by one PollActions call. @default 32 */
  readonly maxActionsPerPoll?: number;
  /** Clock for server_time (tests). @default the current time */
  readonly now?: () => Date;
}

export type ResolvedDispatchServiceConfig = DeepReadonly<{
  heartbeatIntervalMs: number;
  maxPollWaitMs: number;
  maxActionsPerPoll: number;
}> & { readonly registry: ClusterRegistry; readonly queue: ActionQueue; readonly log: Logger; readonly now: () => Date };

/** What the control plane knows about a cluster's agent from its dispatch calls (in memory; empty after a restart until it re-registers). */
export interface DispatchAgentInfo {
  readonly cluster: string;
  readonly agentVersion: string;
  readonly registeredAt: Date;
  readonly lastHeartbeatAt: Date | undefined;
  /** Sequence of the last heartbeat; it restarts from 1 when the agent process restarts. */
  readonly heartbeatSequence: bigint;
  /** The signed sealing keys from the last Register, relayed as is (the control plane cannot forge them). */
  readonly keys: DataPlaneKeys | undefined;
}

export interface DispatchServiceHandlers {
  /** Registers DispatchService on a router (serve it with client certificates requested; see startDispatchServer). */
  readonly routes: (router: ConnectRouter) => void;
  agentVersion(cluster: string): string | undefined;
  lastHeartbeatAt(cluster: string): Date | undefined;
  agent(cluster: string): DispatchAgentInfo | undefined;
}

export const DEFAULT_HEARTBEAT_INTERVAL_MS = 5000;
export const DEFAULT_MAX_POLL_WAIT_MS = 30_000;
/** Kept free of the client's deadline, so an empty long poll answers before the client gives up. */
const POLL_DEADLINE_MARGIN_MS = 1000;
const MAX_CSR_LENGTH = 16 * 1024;
const MAX_TOKEN_LENGTH = 256;
const MAX_IDS_PER_HEARTBEAT = 10_000;
const MAX_EVENTS_PER_REPORT = 1000;
const MAX_ID_LENGTH = 128;

export function resolveDispatchServiceConfig(options: DispatchServiceOptions): ResolvedDispatchServiceConfig {
  if (typeof options !== 'object' || options === null) throw configError('dispatch', 'options are required');
  if (typeof options.registry?.isClusterAllowed !== 'function') throw configError('dispatch.registry', 'must be a ClusterRegistry');
  if (typeof options.queue?.lease !== 'function') throw configError('dispatch.queue', 'must be an ActionQueue');
  if (typeof options.log !== 'object' || options.log === null) throw configError('dispatch.log', 'is required');
  const settings = freezeConfig({
    heartbeatIntervalMs: configCheck.integer('dispatch.heartbeatIntervalMs', options.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS, 100, 3_600_000),
    maxPollWaitMs: configCheck.integer('dispatch.maxPollWaitMs', options.maxPollWaitMs ?? DEFAULT_MAX_POLL_WAIT_MS, 0, 600_000),
    maxActionsPerPoll: configCheck.integer('dispatch.maxActionsPerPoll', options.maxActionsPerPoll ?? 32, 1, 1000),
  });
  return Object.freeze({ ...settings, registry: options.registry, queue: options.queue, log: options.log, now: options.now ?? ((): Date => new Date()) });
}

const PHASE_NAMES: Readonly<Partial<Record<ActionPhase, ActionPhaseName>>> = Object.freeze({
  [ActionPhase.INITIALIZING]: 'INITIALIZING',
  [ActionPhase.RUNNING]: 'RUNNING',
  [ActionPhase.SUCCEEDED]: 'SUCCEEDED',
  [ActionPhase.FAILED]: 'FAILED',
  [ActionPhase.ABORTED]: 'ABORTED',
  [ActionPhase.TIMED_OUT]: 'TIMED_OUT',
});

function invalid(argument: string, problem: string): AirlockError {
  return new AirlockError('INVALID_ARGUMENT', `${argument} ${problem}`, { details: { argument } });
}

function checkId(argument: string, value: string): string {
  if (value.length === 0 || value.length > MAX_ID_LENGTH || hasControlCharacter(value)) throw invalid(argument, `must be 1 to ${MAX_ID_LENGTH} printable characters`);
  return value;
}

/** The caller's verified cluster identity, from the client certificate of the connection. */
interface ClusterPeer {
  readonly cluster: string;
  readonly fingerprint: string;
}

/** The PollActions wait: the request's, capped by the server and by the call's own deadline. */
function pollWaitMs(requested: number, max: number, context: HandlerContext): number {
  const deadline = context.timeoutMs();
  const byDeadline = deadline === undefined ? Number.POSITIVE_INFINITY : Math.max(0, deadline - POLL_DEADLINE_MARGIN_MS);
  return Math.max(0, Math.floor(Math.min(requested, max, byDeadline)));
}

function toActionMessage(action: QueuedAction): MessageInitShape<typeof ActionSchema> {
  return {
    actionId: action.actionId,
    runId: action.runId,
    task: { project: action.task.project, name: action.task.name, version: action.task.version },
    attempt: action.attempt,
    ...(action.inputs === undefined ? {} : { inputs: { sealed: action.inputs.sealed, keyId: action.inputs.keyId } }),
    ...(action.timeoutMs > 0 ? { timeout: durationFromMs(action.timeoutMs) } : {}),
    queuedAt: timestampFromDate(action.queuedAt),
    inputsRef: action.inputsRef ?? '',
    ...(action.bundle === undefined ? {} : { bundle: { sha256: action.bundle.sha256, size: BigInt(action.bundle.size) } }),
    parentActionId: action.parentActionId ?? '',
  };
}

function toEventInput(event: ActionEvent, index: number): ActionEventInput {
  const phase = PHASE_NAMES[event.phase];
  if (phase === undefined) throw invalid(`events[${index}].phase`, 'must be INITIALIZING, RUNNING or a terminal phase');
  return {
    eventId: checkId(`events[${index}].event_id`, event.eventId),
    actionId: checkId(`events[${index}].action_id`, event.actionId),
    attempt: event.attempt,
    phase,
    ...(event.occurredAt === undefined ? {} : { occurredAt: timestampDate(event.occurredAt) }),
    // The data plane's message is not kept (the queue writes its own fixed text for the code).
    ...(event.error === undefined
      ? {}
      : {
          error: {
            code: event.error.code,
            message: '',
            retryable: event.error.retryable,
            kind: event.error.kind === ErrorKind.USER ? ('USER' as const) : ('SYSTEM' as const),
            ...(event.error.occurredAt === undefined ? {} : { occurredAtMs: timestampDate(event.error.occurredAt).getTime() }),
          },
        }),
  };
}

interface AgentEntry {
  agentVersion: string;
  registeredAt: Date;
  lastHeartbeatAt: Date | undefined;
  heartbeatSequence: bigint;
  keys: DataPlaneKeys | undefined;
}

/** The DispatchService implementation and the live agent facts it gathers. */
export function createDispatchService(options: DispatchServiceOptions): DispatchServiceHandlers {
  const config = resolveDispatchServiceConfig(options);
  const { registry, queue, log } = config;
  const agents = new Map<string, AgentEntry>();

  /**
   * Every RPC but Bootstrap: the verified client certificate names the cluster, and the registry
   * must still allow that certificate. The connection was checked at its handshake too, but a
   * long-lived connection can outlive a revocation; checking per call closes that window.
   */
  const authenticate = async (context: HandlerContext): Promise<ClusterPeer> => {
    const peer = context.values.get(tlsPeerKey);
    if (peer?.peerFingerprintSha256 === undefined) {
      throw new AirlockError('AUTH_MISSING', 'This call needs the cluster client certificate issued at bootstrap');
    }
    if (!peer.authorized) throw new AirlockError('CERTIFICATE_UNTRUSTED', 'The client certificate was not verified');
    const cluster = parseClusterIdentity(peer.peerUri);
    if (cluster === undefined) throw new AirlockError('CERTIFICATE_UNTRUSTED', 'The client certificate carries no cluster identity');
    const fingerprint = peer.peerFingerprintSha256;
    if (!(await registry.isClusterAllowed(cluster, fingerprint))) {
      const record = await registry.cluster(cluster);
      const reason = record === undefined ? 'cluster-unknown' : record.revoked ? 'cluster-revoked' : 'certificate-not-current';
      log.warn({ event: 'dispatch.denied', rpc: context.method.name, cluster, reason, peerFingerprintSha256: fingerprint }, 'dispatch call refused');
      throw new AirlockError('ACCESS_DENIED', 'The control plane no longer accepts this cluster certificate', { details: { reason, cluster } });
    }
    return { cluster, fingerprint };
  };

  /** A request's `cluster` must be the certificate's, so a misconfigured agent fails loudly. */
  const sameCluster = (peer: ClusterPeer, requested: string, context: HandlerContext): void => {
    if (requested === peer.cluster) return;
    log.warn({ event: 'dispatch.denied', rpc: context.method.name, cluster: peer.cluster, reason: 'cluster-mismatch' }, 'dispatch call names another cluster');
    throw new AirlockError('ACCESS_DENIED', 'The request names a cluster other than the one in the client certificate', {
      details: { reason: 'cluster-mismatch', cluster: peer.cluster },
    });
  };

  const csrArgument = (csr: string): string => {
    if (csr.length === 0 || csr.length > MAX_CSR_LENGTH) throw invalid('csr_pem', `must be a PEM certificate request of at most ${MAX_CSR_LENGTH} characters`);
    return csr;
  };

  const impl: ServiceImpl<typeof DispatchService> = {
    async bootstrap(request) {
      // The token is the credential here (the agent has no certificate yet); it is never logged.
      if (request.bootstrapToken.length === 0 || request.bootstrapToken.length > MAX_TOKEN_LENGTH) throw invalid('bootstrap_token', 'is required');
      if (!isValidClusterName(request.cluster)) throw invalid('cluster', 'must be 1 to 63 lower-case letters, digits or inner hyphens');
      const csr = csrArgument(request.csrPem);
      // A token for another cluster is refused before it is spent (the registry checks it).
      const certificate = await registry.redeemBootstrapToken(request.bootstrapToken, csr, undefined, request.cluster);
      // Belt and braces: the agent never receives an identity it did not ask for.
      const issuedFor = parseClusterIdentity(parseCertificate(certificate.certPem).uri);
      if (issuedFor !== request.cluster) {
        log.warn({ event: 'dispatch.bootstrap_refused', cluster: request.cluster, reason: 'cluster-mismatch' }, 'bootstrap token is for another cluster');
        throw new AirlockError('ACCESS_DENIED', 'The bootstrap token was created for another cluster', { details: { reason: 'cluster-mismatch', cluster: request.cluster } });
      }
      log.info(
        { event: 'dispatch.bootstrapped', cluster: issuedFor, certFingerprintSha256: certificate.fingerprintSha256, expiresAt: certificate.expiresAt.toISOString() },
        'cluster bootstrapped',
      );
      return { certificateChainPem: certificate.certPem, notAfter: timestampFromDate(certificate.expiresAt) };
    },

    async renewCertificate(request, context) {
      const peer = await authenticate(context);
      const certificate = await registry.renew(peer.cluster, peer.fingerprint, csrArgument(request.csrPem));
      return { certificateChainPem: certificate.certPem, notAfter: timestampFromDate(certificate.expiresAt) };
    },

    async register(request, context) {
      const peer = await authenticate(context);
      sameCluster(peer, request.cluster, context);
      const agentVersion = request.agentVersion;
      if (agentVersion.length === 0 || agentVersion.length > 64 || !/^[\x21-\x7e]+$/.test(agentVersion)) {
        throw invalid('agent_version', 'must be 1 to 64 printable ASCII characters');
      }
      const previous = agents.get(peer.cluster);
      const now = config.now();
      agents.set(peer.cluster, {
        agentVersion,
        registeredAt: now,
        lastHeartbeatAt: previous?.lastHeartbeatAt,
        heartbeatSequence: 0n,
        keys: request.keys ?? previous?.keys,
      });
      log.info(
        { event: 'dispatch.registered', cluster: peer.cluster, agentVersion, peerFingerprintSha256: peer.fingerprint, reregistered: previous !== undefined },
        'agent registered',
      );
      return { serverTime: timestampFromDate(now), heartbeatInterval: durationFromMs(config.heartbeatIntervalMs) };
    },

    async heartbeat(request, context) {
      const peer = await authenticate(context);
      sameCluster(peer, request.cluster, context);
      if (request.inFlightActionIds.length > MAX_IDS_PER_HEARTBEAT) throw invalid('in_flight_action_ids', `must list at most ${MAX_IDS_PER_HEARTBEAT} actions`);
      request.inFlightActionIds.forEach((id, index) => checkId(`in_flight_action_ids[${index}]`, id));
      const reconciled = await queue.reconcile(peer.cluster, request.inFlightActionIds);
      const now = config.now();
      const agent = agents.get(peer.cluster);
      if (agent === undefined) {
        // Heartbeats before Register (a control plane that restarted under a running agent) still count.
        agents.set(peer.cluster, { agentVersion: 'unknown', registeredAt: now, lastHeartbeatAt: now, heartbeatSequence: request.sequence, keys: undefined });
      } else {
        if (request.sequence <= agent.heartbeatSequence && request.sequence <= 1n) {
          log.info({ event: 'dispatch.agent_restarted', cluster: peer.cluster }, 'agent heartbeat sequence restarted');
        }
        agent.lastHeartbeatAt = now;
        agent.heartbeatSequence = request.sequence;
      }
      if (reconciled.abortActionIds.length > 0 || reconciled.requeuedActionIds.length > 0) {
        log.info(
          { event: 'dispatch.reconciled', cluster: peer.cluster, abortActionIds: reconciled.abortActionIds, requeuedActionIds: reconciled.requeuedActionIds },
          'heartbeat reconciled in-flight actions',
        );
      }
      log.debug({ event: 'dispatch.heartbeat', cluster: peer.cluster, sequence: request.sequence.toString(), inFlight: request.inFlightActionIds.length }, 'heartbeat');
      return {
        serverTime: timestampFromDate(now),
        heartbeatInterval: durationFromMs(config.heartbeatIntervalMs),
        abortActionIds: reconciled.abortActionIds,
      };
    },

    async pollActions(request, context) {
      const peer = await authenticate(context);
      sameCluster(peer, request.cluster, context);
      const max = Math.min(request.maxActions === 0 ? 1 : request.maxActions, config.maxActionsPerPoll);
      let requestedWait = 0;
      if (request.wait !== undefined) {
        if (request.wait.seconds < 0n || request.wait.nanos < 0) throw invalid('wait', 'must not be negative');
        requestedWait = request.wait.seconds > 86_400n ? Number.POSITIVE_INFINITY : durationMs(request.wait);
      }
      const waitMs = pollWaitMs(requestedWait, config.maxPollWaitMs, context);
      const leased = await queue.lease(peer.cluster, max, waitMs, context.signal);
      if (context.signal.aborted && leased.length > 0) {
        // The response cannot be delivered; the heartbeat reconciliation re-queues these.
        log.info({ event: 'dispatch.poll_abandoned', cluster: peer.cluster, actionIds: leased.map((action) => action.actionId) }, 'leased actions not delivered');
      }
      return { actions: leased.map(toActionMessage) };
    },

    async reportEvents(request, context) {
      const peer = await authenticate(context);
      sameCluster(peer, request.cluster, context);
      if (request.events.length > MAX_EVENTS_PER_REPORT) throw invalid('events', `must hold at most ${MAX_EVENTS_PER_REPORT} events`);
      const events = request.events.map(toEventInput);
      const recorded = await queue.record(peer.cluster, events);
      return { recordedCount: recorded };
    },
  };

  return {
    routes: (router) => {
      router.service(DispatchService, impl);
    },
    agentVersion: (cluster) => {
      const version = agents.get(cluster)?.agentVersion;
      return version === 'unknown' ? undefined : version;
    },
    lastHeartbeatAt: (cluster) => agents.get(cluster)?.lastHeartbeatAt,
    agent: (cluster) => {
      const entry = agents.get(cluster);
      return entry === undefined ? undefined : Object.freeze({ cluster, ...entry });
    },
  };
}
