// The data-plane agent: credentials (bootstrap, persistence, renewal), the tunnel, and the dispatch loops (register, heartbeat, poll, events) with reconnection.
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { mkdir } from 'node:fs/promises';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { durationFromMs, durationMs, timestampNow } from '@bufbuild/protobuf/wkt';
import type { ConnectRouter } from '@connectrpc/connect';
import { AirlockError, configCheck, configError, ERROR_CODES, freezeConfig, isAirlockErrorCode, registerSecretValue, type AirlockErrorCode, type DeepReadonly, type Logger } from '@airlock/common';
import { isValidClusterName, type ListenerLimitsOptions, type PemInput } from '@airlock/pki';
import { ActionPhase, ErrorKind, type Action, type ActionEventSchema } from '@airlock/protocol';
import { loadAgentCredentials, saveAgentCredentials } from './agent-state.js';
import type { DataPlaneKeyVault } from './key-vault.js';
import { fullJitterBackoffMs } from './backoff.js';
import { createDispatchClient, type DispatchClient } from './dispatch-client.js';
import { loadOrCreateSealingKeys, type DataPlaneSealingKeys } from './sealing-keys.js';
import { registerWithBootstrapToken, startCertificateRenewer, type CertificateRenewer, type IssuedClusterCertificate, type RegisteredCredentials } from './registration.js';
import { startTunnelAgent, type TunnelAgent } from './tunnel-agent.js';
import { tunnelServiceRoutes } from './tunnel-services.js';
import type { ActionOutcome, Executor } from './executor/types.js';

/** Runs one action. Resolve for SUCCEEDED, throw for FAILED; stop promptly when `signal` aborts. */
export type ActionHandler = (action: Action, signal: AbortSignal) => Promise<void>;

/** Tunnel settings passed through to the tunnel agent. */
export interface DataPlaneAgentTunnelOptions {
  /** @default 1000 */
  readonly heartbeatIntervalMs?: number;
  /** @default 2000 */
  readonly heartbeatTimeoutMs?: number;
  /** @default 10000 */
  readonly connectTimeoutMs?: number;
  /** How long a replaced or stopping tunnel may finish calls in flight. @default 30000 */
  readonly drainTimeoutMs?: number;
  /**
   * The listener limits of the agent's HTTP/2 server on the tunnel (TunnelAgentOptions.limits); an entry point
   * reads them from the environment with `listenerLimitsFromEnv(env, 'tunnel-agent')`. @default DEFAULT_LISTENER_LIMITS
   */
  readonly limits?: ListenerLimitsOptions;
}

export interface DataPlaneAgentOptions {
  /** The cluster this data plane is registered as (its certificate's `spiffe://airlock/cluster/<name>`). */
  readonly clusterName: string;
  /** Holds the agent's key (sealed by `keyVault`), certificate and CA in a 0600 file; created (0700) if missing. */
  readonly stateDir: string;
  /** Seals the agent's private key and its sealing keys at rest under a data-plane KMS key (`openKmsKeyVault`). */
  readonly keyVault: DataPlaneKeyVault;
  /**
   * The data plane's sealing keys (identity, I/O, secrets), signed into every Register. Pass them when
   * the tunnel services need them too (`loadOrCreateSealingKeys` with the same state directory and
   * vault); the caller then owns them. @default loaded from (or created in) `stateDir` at start
   */
  readonly sealingKeys?: DataPlaneSealingKeys;
  /** The control plane's dispatch listener, `https://host:port`. */
  readonly dispatchUrl: string;
  /** The control plane's tunnel endpoint, `https://host:port`. */
  readonly tunnelUrl: string;
  /** The CA the control plane's server certificates chain to (the Airlock CA). */
  readonly ca: PemInput;
  /** Secret, never logged. Needed only when `stateDir` holds no valid credentials, or to re-register after a revocation. */
  readonly bootstrapToken?: string;
  /** The services the control plane may call over the tunnel. @default tunnelServiceRoutes() */
  readonly routes?: (router: ConnectRouter) => void;
  /**
   * Runs actions (a bare handler: INITIALIZING and RUNNING are reported at its start, SUCCEEDED when
   * it resolves, FAILED with the error's code when it throws). Not together with `executor`.
   * @default fails every action with NOT_IMPLEMENTED, unless `executor` is set
   */
  readonly onAction?: ActionHandler;
  /**
   * Runs actions with phases of their own (`createLocalProcessExecutor`): INITIALIZING is reported when
   * an action starts, RUNNING when the executor's onRunning fires, then its outcome (code, kind,
   * retryable and the code's fixed text, never a message from the task). At start-up its recover()
   * runs before any action is taken, and each action it returns is reported FAILED, TASK_CRASHED.
   * Not together with `onAction`.
   */
  readonly executor?: Executor;
  readonly log: Logger;
  /** Reported at registration. @default "0.1.0" */
  readonly agentVersion?: string;
  /** Name the control plane's certificates must match (and SNI). @default the URLs' host names */
  readonly servername?: string;
  /** Actions run at once; polling pauses while this many run. @default 4 */
  readonly maxConcurrentActions?: number;
  /** How long each PollActions call may wait for work, in milliseconds. @default 20000 */
  readonly pollWaitMs?: number;
  /** Deadline of each dispatch call other than PollActions and Heartbeat, in milliseconds. @default 10000 */
  readonly rpcTimeoutMs?: number;
  /** Deadline of each Heartbeat call: a control plane that does not answer in time counts as gone. @default 5000 */
  readonly heartbeatTimeoutMs?: number;
  /** Heartbeat interval until the control plane names one at registration, in milliseconds. @default 5000 */
  readonly heartbeatIntervalMs?: number;
  /** Ceiling of the first reconnect delay, in milliseconds; it doubles per failure (full jitter). @default 200 */
  readonly backoffInitialMs?: number;
  /** Cap of the reconnect delay, in milliseconds. @default 30000 */
  readonly backoffMaxMs?: number;
  /** How long start-up keeps retrying a bootstrap while the control plane is unreachable, in milliseconds. @default 60000 */
  readonly startTimeoutMs?: number;
  /** Events kept while the control plane is unreachable; beyond this the oldest progress events are dropped. @default 10000 */
  readonly maxPendingEvents?: number;
  /** Delay before retrying a failed certificate renewal, in milliseconds. @default 30000 */
  readonly renewRetryDelayMs?: number;
  readonly tunnel?: DataPlaneAgentTunnelOptions;
  /** The renewer's clock and jitter source (tests shift the clock to bring renewal near). @default Date.now and Math.random */
  readonly renewal?: { readonly now?: () => number; readonly random?: () => number };
}

export type ResolvedDataPlaneAgentConfig = DeepReadonly<{
  clusterName: string;
  stateDir: string;
  dispatchUrl: string;
  tunnelUrl: string;
  ca: PemInput;
  agentVersion: string;
  servername: string | undefined;
  maxConcurrentActions: number;
  pollWaitMs: number;
  rpcTimeoutMs: number;
  heartbeatTimeoutMs: number;
  heartbeatIntervalMs: number;
  backoffInitialMs: number;
  backoffMaxMs: number;
  startTimeoutMs: number;
  maxPendingEvents: number;
  renewRetryDelayMs: number;
  tunnel: DataPlaneAgentTunnelOptions;
}> & {
  readonly bootstrapToken: string | undefined;
  readonly keyVault: DataPlaneKeyVault;
  readonly sealingKeys: DataPlaneSealingKeys | undefined;
  readonly routes: (router: ConnectRouter) => void;
  readonly onAction: ActionHandler | undefined;
  readonly executor: Executor | undefined;
  readonly log: Logger;
  readonly renewal: { readonly now?: () => number; readonly random?: () => number };
};

export type DataPlaneAgentState = 'connecting' | 'registered' | 'failed' | 'stopped';

export interface DataPlaneAgentStatus {
  readonly state: DataPlaneAgentState;
  /** Registered with the control plane and in touch with it (the last dispatch call succeeded). */
  readonly registered: boolean;
  readonly tunnelConnected: boolean;
  readonly lastHeartbeatAt?: Date;
  readonly certificateExpiresAt: Date;
  readonly certificateFingerprintSha256: string;
  readonly nextRenewalAt?: Date;
  /** Successful registrations since start (1 after the first; each reconnect adds one). */
  readonly registrations: number;
  readonly inFlightActionIds: readonly string[];
  /** Events produced but not yet acknowledged by the control plane. */
  readonly pendingEvents: number;
  /** Why the agent gave up (state `failed`), e.g. ACCESS_DENIED with details.reason `cluster-refused`. */
  readonly error?: AirlockError;
}

export interface DataPlaneAgent {
  /** What clients pin: `sha256:<64 hex>` over the identity key's DER SPKI (docs/runs.md). */
  readonly identityFingerprint: string;
  /** Resolves once registered; rejects with the agent's error if it failed, TIMEOUT after `timeoutMs`, or UNAVAILABLE once stopped. */
  waitForRegistered(timeoutMs: number): Promise<void>;
  status(): DataPlaneAgentStatus;
  /** The current credentials (the key is secret: never log it). */
  credentials(): RegisteredCredentials;
  /** Renews the client certificate now (it is also renewed at two thirds of its lifetime). */
  renewCertificate(): Promise<RegisteredCredentials>;
  /** Stops polling, aborts running actions (their leases lapse and the control plane re-queues them), flushes events briefly, closes. */
  stop(): Promise<void>;
}

const DEFAULTS = Object.freeze({
  maxConcurrentActions: 4,
  pollWaitMs: 20_000,
  rpcTimeoutMs: 10_000,
  heartbeatTimeoutMs: 5000,
  heartbeatIntervalMs: 5000,
  backoffInitialMs: 200,
  backoffMaxMs: 30_000,
  startTimeoutMs: 60_000,
  maxPendingEvents: 10_000,
  renewRetryDelayMs: 30_000,
});
const DEFAULT_AGENT_VERSION = '0.1.0';
const EVENT_BATCH = 100;
/** Consecutive report failures after which the session is declared lost (and re-registered). */
const REPORT_FAILURES_PER_SESSION = 3;
/** Handshake-level refusals (confirmed by /health) before the agent gives up: one could be a restart race. */
const REFUSALS_BEFORE_GIVING_UP = 2;
const STOP_FLUSH_MS = 2000;
const STOP_ACTION_GRACE_MS = 2000;
/** Reasons with which the control plane says it no longer accepts this cluster's certificate. */
const REFUSAL_REASONS: ReadonlySet<string> = new Set(['cluster-revoked', 'cluster-unknown', 'certificate-not-current', 'certificate-mismatch']);
/** Client-side faults: retrying the same events cannot help. */
const POISON_CODES: ReadonlySet<AirlockErrorCode> = new Set(['INVALID_ARGUMENT', 'MALFORMED_REQUEST', 'PAYLOAD_TOO_LARGE']);

export function resolveDataPlaneAgentConfig(options: DataPlaneAgentOptions): ResolvedDataPlaneAgentConfig {
  if (typeof options !== 'object' || options === null) throw configError('agent', 'options are required');
  if (!isValidClusterName(options.clusterName)) throw configError('agent.clusterName', 'must be 1 to 63 lower-case letters, digits or inner hyphens');
  if (typeof options.log !== 'object' || options.log === null) throw configError('agent.log', 'is required');
  if (options.ca === undefined) throw configError('agent.ca', 'is required');
  if (options.routes !== undefined && typeof options.routes !== 'function') throw configError('agent.routes', 'must be a function');
  if (options.onAction !== undefined && typeof options.onAction !== 'function') throw configError('agent.onAction', 'must be a function');
  if (options.executor !== undefined && (typeof options.executor !== 'object' || options.executor === null || typeof options.executor.execute !== 'function')) {
    throw configError('agent.executor', 'must be an Executor');
  }
  if (options.onAction !== undefined && options.executor !== undefined) throw configError('agent.executor', 'cannot be combined with onAction');
  if (options.bootstrapToken !== undefined && (typeof options.bootstrapToken !== 'string' || options.bootstrapToken.length === 0)) {
    throw configError('agent.bootstrapToken', 'must be a non-empty string');
  }
  for (const name of ['dispatchUrl', 'tunnelUrl'] as const) {
    let url: URL;
    try {
      url = new URL(configCheck.nonEmptyString(`agent.${name}`, options[name]));
    } catch {
      throw configError(`agent.${name}`, 'must be an https:// URL');
    }
    if (url.protocol !== 'https:') throw configError(`agent.${name}`, 'must be an https:// URL');
  }
  const ms = (name: keyof typeof DEFAULTS, min: number, max = 3_600_000): number => configCheck.integer(`agent.${name}`, options[name] ?? DEFAULTS[name], min, max);
  const agentVersion = configCheck.nonEmptyString('agent.agentVersion', options.agentVersion ?? DEFAULT_AGENT_VERSION);
  if (agentVersion.length > 64 || !/^[\x21-\x7e]+$/.test(agentVersion)) throw configError('agent.agentVersion', 'must be at most 64 printable ASCII characters');
  const backoffInitialMs = ms('backoffInitialMs', 1);
  const backoffMaxMs = ms('backoffMaxMs', 1);
  if (backoffMaxMs < backoffInitialMs) throw configError('agent.backoffMaxMs', 'must not be below backoffInitialMs');
  const settings = freezeConfig({
    clusterName: options.clusterName,
    stateDir: configCheck.nonEmptyString('agent.stateDir', options.stateDir),
    dispatchUrl: options.dispatchUrl,
    tunnelUrl: options.tunnelUrl,
    ca: options.ca,
    agentVersion,
    servername: options.servername,
    maxConcurrentActions: ms('maxConcurrentActions', 1, 10_000),
    pollWaitMs: ms('pollWaitMs', 0, 600_000),
    rpcTimeoutMs: ms('rpcTimeoutMs', 10),
    heartbeatTimeoutMs: ms('heartbeatTimeoutMs', 10),
    heartbeatIntervalMs: ms('heartbeatIntervalMs', 10),
    backoffInitialMs,
    backoffMaxMs,
    startTimeoutMs: ms('startTimeoutMs', 0),
    maxPendingEvents: ms('maxPendingEvents', 1, 10_000_000),
    renewRetryDelayMs: ms('renewRetryDelayMs', 1),
    tunnel: { ...(options.tunnel ?? {}) },
  });
  return Object.freeze({
    ...settings,
    bootstrapToken: options.bootstrapToken,
    keyVault: options.keyVault,
    sealingKeys: options.sealingKeys,
    routes: options.routes ?? tunnelServiceRoutes(),
    onAction: options.onAction,
    executor: options.executor,
    log: options.log,
    renewal: Object.freeze({ ...(options.renewal ?? {}) }),
  });
}

/** PEM input as one string (for RegisteredCredentials.ca). */
function pemText(value: PemInput): string {
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  return value.map((item) => (typeof item === 'string' ? item : item.toString('utf8'))).join('\n');
}

/** Waits `ms`, or less if `signal` aborts; never rejects. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

function isTransient(error: AirlockError): boolean {
  return error.code === 'UNAVAILABLE' || error.code === 'TIMEOUT' || error.code === 'ABORTED' || error.details?.connectCode !== undefined;
}

type PendingEvent = MessageInitShape<typeof ActionEventSchema> & { eventId: string; actionId: string; phase: ActionPhase };

/** What an event's ErrorRecord says: the code, whose fault, whether a retry can help, and a display text free of data. */
interface ReportedError {
  readonly code: string;
  readonly kind: 'USER' | 'SYSTEM';
  readonly retryable: boolean;
  readonly message: string;
}

/** The agent's own failure (a handler's AirlockError): SYSTEM, with the error's own message (our text, not a task's). */
function systemError(error: AirlockError): ReportedError {
  return { code: error.code, kind: 'SYSTEM', retryable: error.retryable, message: error.message };
}

/** An executor's outcome error, with the catalogue's fixed text for its code: a task's message never leaves the data plane. */
function outcomeError(error: NonNullable<Extract<ActionOutcome, { error?: unknown }>['error']>): ReportedError {
  const message = isAirlockErrorCode(error.code) ? ERROR_CODES[error.code].description : 'The action failed.';
  return { code: error.code, kind: error.kind, retryable: error.retryable, message };
}

const OUTCOME_PHASES = Object.freeze({
  SUCCEEDED: ActionPhase.SUCCEEDED,
  FAILED: ActionPhase.FAILED,
  TIMED_OUT: ActionPhase.TIMED_OUT,
  ABORTED: ActionPhase.ABORTED,
} as const);

type AbortReason = 'cancelled' | 'timeout' | 'stopping';

interface RunningAction {
  readonly action: Action;
  readonly controller: AbortController;
  reason: AbortReason | undefined;
  done: Promise<void>;
}

const TERMINAL_PHASES: ReadonlySet<ActionPhase> = new Set([ActionPhase.SUCCEEDED, ActionPhase.FAILED, ActionPhase.ABORTED, ActionPhase.TIMED_OUT]);

class DataPlaneAgentImpl implements DataPlaneAgent {
  private renewer!: CertificateRenewer;
  private sealingKeys: DataPlaneSealingKeys | undefined;
  /** Whether the agent loaded the sealing keys itself (and so destroys them when it stops). */
  private ownsSealingKeys = false;
  private tunnel!: TunnelAgent;
  private readonly dispatch: DispatchClient;
  private readonly events = new EventEmitter();
  private readonly stopController = new AbortController();
  private readonly running = new Map<string, RunningAction>();
  private readonly outbox: PendingEvent[] = [];
  private readonly caPem: string;
  private phase: DataPlaneAgentState = 'connecting';
  private registered = false;
  private registrations = 0;
  private lastHeartbeatAt: Date | undefined;
  private heartbeatIntervalMs: number;
  private heartbeatSequence = 0n;
  private failure: AirlockError | undefined;
  private refusals = 0;
  /** The bootstrap token is one-time: once spent (or refused) in this process, it is not tried again. */
  private tokenAvailable: boolean;
  private loopDone: Promise<void> = Promise.resolve();
  private stopping: Promise<void> | undefined;

  constructor(private readonly config: ResolvedDataPlaneAgentConfig) {
    this.events.setMaxListeners(0);
    this.heartbeatIntervalMs = config.heartbeatIntervalMs;
    this.tokenAvailable = config.bootstrapToken !== undefined;
    // Never logged on purpose; registered so that the log scrubber catches it even by accident.
    if (config.bootstrapToken !== undefined) registerSecretValue(config.bootstrapToken);
    this.caPem = pemText(config.ca);
    this.dispatch = createDispatchClient({
      url: config.dispatchUrl,
      ca: config.ca,
      // Read before every call: undefined until bootstrap, then the renewer's current certificate.
      getCredentials: () => {
        if (this.renewer === undefined) return undefined;
        const { cert, key } = this.renewer.credentials();
        return { cert, key };
      },
      log: config.log,
      ...(config.servername === undefined ? {} : { servername: config.servername }),
    });
  }

  private get log(): Logger {
    return this.config.log;
  }

  // ---------------------------------------------------------------- start-up and credentials

  async start(): Promise<void> {
    const { config } = this;
    await mkdir(config.stateDir, { recursive: true, mode: 0o700 });
    // Before anything else, so a disabled data-plane key stops the start (and spends no bootstrap token).
    if (config.sealingKeys === undefined) {
      const loaded = await loadOrCreateSealingKeys(config.stateDir, config.clusterName, { vault: config.keyVault, log: this.log });
      this.sealingKeys = loaded.keys;
      this.ownsSealingKeys = true;
    } else {
      this.sealingKeys = config.sealingKeys;
    }
    const stored = await loadAgentCredentials(config.stateDir, config.clusterName, { vault: config.keyVault, log: this.log });
    let credentials: RegisteredCredentials;
    if (stored.status === 'valid') {
      credentials = stored.credentials;
      this.log.info(
        { event: 'agent.credentials_loaded', cluster: config.clusterName, certFingerprintSha256: credentials.fingerprintSha256, expiresAt: credentials.expiresAt.toISOString() },
        'agent credentials loaded',
      );
    } else {
      if (!this.tokenAvailable) {
        const expired = stored.status === 'expired';
        throw new AirlockError(
          'AUTH_MISSING',
          expired
            ? `The agent certificate in ${config.stateDir} has expired and cannot be renewed; start the agent with a new bootstrap token`
            : `${config.stateDir} holds no agent credentials; start the agent with a bootstrap token`,
          { details: { reason: expired ? 'certificate-expired' : 'no-credentials', cluster: config.clusterName } },
        );
      }
      credentials = await this.bootstrapWithRetries();
    }
    this.installCredentials(credentials);
    this.tunnel = startTunnelAgent({
      endpoint: config.tunnelUrl,
      ca: config.ca,
      getCredentials: () => {
        const { cert, key } = this.renewer.credentials();
        return { cert, key };
      },
      routes: config.routes,
      log: this.log,
      backoffInitialMs: config.backoffInitialMs,
      backoffMaxMs: config.backoffMaxMs,
      ...(config.servername === undefined ? {} : { servername: config.servername }),
      ...config.tunnel,
    });
    await this.recoverActions();
    this.loopDone = this.dispatchLoop();
  }

  /** Reports the actions a previous agent process left unfinished (queued now, sent once registered). Runs before any action is taken. */
  private async recoverActions(): Promise<void> {
    const executor = this.config.executor;
    if (executor === undefined) return;
    let lost: readonly { readonly actionId: string; readonly attempt: number }[];
    try {
      lost = await executor.recover();
    } catch (error) {
      this.log.error({ event: 'agent.recover_failed', code: AirlockError.from(error).code }, 'could not recover the actions of a previous agent process');
      return;
    }
    const crashed = new AirlockError('TASK_CRASHED');
    for (const { actionId, attempt } of lost) {
      this.log.warn({ event: 'agent.action_lost', actionId, attempt }, 'an action of a previous agent process is reported crashed');
      this.report({ actionId, attempt }, ActionPhase.FAILED, { code: crashed.code, kind: 'SYSTEM', retryable: crashed.retryable, message: crashed.message });
    }
  }

  /** Redeems the bootstrap token over the dispatch Bootstrap RPC; the key is generated here and never sent. */
  private async bootstrap(): Promise<RegisteredCredentials> {
    const token = this.config.bootstrapToken;
    if (token === undefined || !this.tokenAvailable) throw new AirlockError('AUTH_MISSING', 'No bootstrap token available');
    const redeem = async (secret: string, csrPem: string): Promise<IssuedClusterCertificate> => {
      const issued = await this.dispatch.bootstrap({ token: secret, cluster: this.config.clusterName, csrPem }, this.config.rpcTimeoutMs);
      return { certPem: issued.certPem, caPem: this.caPem, expiresAt: issued.notAfter ?? new Date(0) };
    };
    try {
      const credentials = await registerWithBootstrapToken({ clusterName: this.config.clusterName, token, redeem, log: this.log });
      this.tokenAvailable = false;
      await saveAgentCredentials(this.config.stateDir, this.config.clusterName, credentials, this.config.keyVault);
      return credentials;
    } catch (error) {
      const airlock = AirlockError.from(error);
      // A refused token stays refused; a transient failure leaves it redeemable.
      if (!isTransient(airlock)) this.tokenAvailable = false;
      throw airlock;
    }
  }

  private async bootstrapWithRetries(): Promise<RegisteredCredentials> {
    const deadline = Date.now() + this.config.startTimeoutMs;
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await this.bootstrap();
      } catch (error) {
        const airlock = AirlockError.from(error);
        if (!isTransient(airlock) || Date.now() >= deadline || this.stopController.signal.aborted) {
          this.log.error({ event: 'agent.bootstrap_failed', cluster: this.config.clusterName, code: airlock.code, reason: airlock.details?.reason }, 'bootstrap failed');
          throw airlock;
        }
        const delayMs = fullJitterBackoffMs(attempt, { initialMs: this.config.backoffInitialMs, maxMs: this.config.backoffMaxMs });
        this.log.warn({ event: 'agent.bootstrap_retry', code: airlock.code, attempt, delayMs }, 'control plane unreachable; retrying bootstrap');
        await sleep(Math.min(delayMs, Math.max(0, deadline - Date.now())), this.stopController.signal);
      }
    }
  }

  /** Starts (or restarts) renewal of `credentials`. Renewed certificates are persisted before anything switches to them. */
  private installCredentials(credentials: RegisteredCredentials): void {
    const previous = this.renewer as CertificateRenewer | undefined;
    previous?.stop();
    const { config } = this;
    this.renewer = startCertificateRenewer({
      clusterName: config.clusterName,
      initial: credentials,
      renew: async (csrPem) => {
        const issued = await this.dispatch.renewCertificate(csrPem, config.rpcTimeoutMs);
        return { certPem: issued.certPem, caPem: this.caPem, expiresAt: issued.notAfter ?? new Date(0) };
      },
      // Called as soon as the renewer holds the new certificate: persist first (the control plane
      // now only renews against the new one), then move the tunnel over, make-before-break.
      // Dispatch calls pick the new certificate up by themselves; calls in flight finish on the old connection.
      agent: {
        rotate: async () => {
          await this.persist(this.renewer.credentials());
          if (this.phase === 'stopped' || this.phase === 'failed') return undefined;
          return this.tunnel.rotate();
        },
      },
      log: this.log,
      retryDelayMs: config.renewRetryDelayMs,
      ...(config.renewal.now === undefined ? {} : { now: config.renewal.now }),
      ...(config.renewal.random === undefined ? {} : { random: config.renewal.random }),
    });
  }

  private async persist(credentials: RegisteredCredentials): Promise<void> {
    try {
      await saveAgentCredentials(this.config.stateDir, this.config.clusterName, credentials, this.config.keyVault);
    } catch (error) {
      // The certificate still works from memory; a restart before the next successful save needs a new token.
      this.log.error({ event: 'agent.credentials_save_failed', code: AirlockError.from(error).code, stateDir: this.config.stateDir }, 'agent credentials not saved');
    }
  }

  // ---------------------------------------------------------------- the dispatch session loop

  /** Register, reconcile, then heartbeat/poll/report until something fails; back off and do it again. */
  private async dispatchLoop(): Promise<void> {
    const stop = this.stopController.signal;
    let attempt = 0;
    while (!stop.aborted && this.failure === undefined) {
      const session = new AbortController();
      const onStop = (): void => session.abort();
      stop.addEventListener('abort', onStop, { once: true });
      let failure: unknown;
      try {
        await this.register(session.signal);
        attempt = 0;
        failure = await Promise.race([this.heartbeatLoop(session.signal), this.pollLoop(session.signal), this.outboxLoop(session.signal)]);
      } catch (error) {
        failure = error;
      } finally {
        session.abort();
        stop.removeEventListener('abort', onStop);
      }
      if (this.registered) {
        this.registered = false;
        if (!stop.aborted) this.phase = 'connecting';
      }
      if (stop.aborted || this.failure !== undefined) break;
      const error = AirlockError.from(failure);
      if (await this.refused(error)) {
        await this.onRefused(error);
        continue;
      }
      const delayMs = fullJitterBackoffMs(attempt, { initialMs: this.config.backoffInitialMs, maxMs: this.config.backoffMaxMs });
      this.log.warn(
        { event: 'agent.dispatch_lost', code: error.code, reason: error.details?.reason, attempt, delayMs },
        'lost the control plane; reconnecting and registering again',
      );
      attempt += 1;
      await sleep(delayMs, stop);
    }
  }

  /** Register, then one heartbeat at once: reconciliation comes before new work is taken. */
  private async register(signal: AbortSignal): Promise<void> {
    // Signed afresh at every registration: clients prefer the newest statement of a pinned identity.
    const keys = this.sealingKeys?.sign(this.config.clusterName);
    const response = await this.dispatch.register(
      { cluster: this.config.clusterName, agentVersion: this.config.agentVersion, ...(keys === undefined ? {} : { keys }) },
      this.config.rpcTimeoutMs,
      signal,
    );
    if (response.heartbeatIntervalMs !== undefined && response.heartbeatIntervalMs >= 10) this.heartbeatIntervalMs = response.heartbeatIntervalMs;
    if (response.serverTime !== undefined) {
      const skewMs = response.serverTime.getTime() - Date.now();
      if (Math.abs(skewMs) > 60_000) this.log.warn({ event: 'agent.clock_skew', skewMs }, 'clock differs from the control plane by more than a minute');
    }
    await this.heartbeatOnce(signal);
    this.refusals = 0;
    this.registered = true;
    this.registrations += 1;
    this.phase = 'registered';
    this.log.info(
      {
        event: 'agent.registered',
        cluster: this.config.clusterName,
        registrations: this.registrations,
        heartbeatIntervalMs: this.heartbeatIntervalMs,
        inFlight: this.running.size,
        pendingEvents: this.outbox.length,
      },
      this.registrations === 1 ? 'registered with the control plane' : 'registered again after reconnecting',
    );
    this.events.emit('registered');
  }

  private async heartbeatOnce(signal: AbortSignal): Promise<void> {
    this.heartbeatSequence += 1n;
    const response = await this.dispatch.heartbeat(
      { cluster: this.config.clusterName, sequence: this.heartbeatSequence, inFlightActionIds: this.inFlightIds() },
      this.config.heartbeatTimeoutMs,
      signal,
    );
    this.lastHeartbeatAt = new Date();
    if (response.heartbeatIntervalMs !== undefined && response.heartbeatIntervalMs >= 10) this.heartbeatIntervalMs = response.heartbeatIntervalMs;
    for (const id of response.abortActionIds) this.abortAction(id, 'cancelled');
  }

  /**
   * What the control plane must consider leased to us: running actions, and finished ones whose
   * final event is not acknowledged yet (otherwise reconciliation would re-queue finished work).
   */
  private inFlightIds(): string[] {
    const ids = new Set(this.running.keys());
    for (const event of this.outbox) ids.add(event.actionId);
    return [...ids];
  }

  /** Resolves with the error that ended it, or undefined once the session is over. Never rejects. */
  private async heartbeatLoop(signal: AbortSignal): Promise<unknown> {
    while (!signal.aborted) {
      await sleep(this.heartbeatIntervalMs, signal);
      if (signal.aborted) return undefined;
      try {
        await this.heartbeatOnce(signal);
      } catch (error) {
        return signal.aborted ? undefined : error;
      }
    }
    return undefined;
  }

  private async pollLoop(signal: AbortSignal): Promise<unknown> {
    const { config } = this;
    while (!signal.aborted) {
      const capacity = config.maxConcurrentActions - this.running.size;
      if (capacity <= 0) {
        await this.next('capacity', signal);
        continue;
      }
      try {
        const response = await this.dispatch.pollActions(
          { cluster: config.clusterName, maxActions: capacity, wait: durationFromMs(config.pollWaitMs) },
          config.pollWaitMs + config.rpcTimeoutMs,
          signal,
        );
        for (const action of response.actions) this.startAction(action);
      } catch (error) {
        return signal.aborted ? undefined : error;
      }
    }
    return undefined;
  }

  /** Sends pending events in order until acknowledged; retries with jittered backoff, and gives the session up after repeated failures. */
  private async outboxLoop(signal: AbortSignal): Promise<unknown> {
    let failures = 0;
    while (!signal.aborted) {
      if (this.outbox.length === 0) {
        await this.next('event', signal);
        continue;
      }
      const batch = this.outbox.slice(0, EVENT_BATCH);
      try {
        await this.dispatch.reportEvents({ cluster: this.config.clusterName, events: batch }, this.config.rpcTimeoutMs, signal);
        this.acknowledge(batch);
        failures = 0;
      } catch (error) {
        if (signal.aborted) return undefined;
        const airlock = AirlockError.from(error);
        if (POISON_CODES.has(airlock.code) && airlock.details?.connectCode === undefined) {
          // The control plane rejected the batch itself: resending it cannot succeed, and holding
          // it would block every later event.
          this.log.error({ event: 'agent.events_rejected', code: airlock.code, count: batch.length }, 'control plane rejected events; dropping them');
          this.acknowledge(batch);
          continue;
        }
        failures += 1;
        if (failures >= REPORT_FAILURES_PER_SESSION) return airlock;
        const delayMs = fullJitterBackoffMs(failures, { initialMs: this.config.backoffInitialMs, maxMs: this.config.backoffMaxMs });
        this.log.warn({ event: 'agent.events_retry', code: airlock.code, pending: this.outbox.length, delayMs }, 'event report failed; retrying');
        await sleep(delayMs, signal);
      }
    }
    return undefined;
  }

  private acknowledge(batch: readonly PendingEvent[]): void {
    const sent = new Set(batch);
    for (let index = this.outbox.length - 1; index >= 0; index -= 1) {
      const event = this.outbox[index];
      if (event !== undefined && sent.has(event)) this.outbox.splice(index, 1);
    }
  }

  /** Waits for `what` to happen (an event queued, capacity freed) or the signal to abort. */
  private next(what: 'event' | 'capacity', signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        this.events.off(what, done);
        signal.removeEventListener('abort', done);
        resolve();
      };
      this.events.on(what, done);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  // ---------------------------------------------------------------- refusal (revocation) handling

  /** Whether a dispatch failure means the control plane refuses this certificate (as opposed to being unreachable). */
  private async refused(error: AirlockError): Promise<boolean> {
    const serverSaid = error.details?.connectCode === undefined;
    if (serverSaid && error.code === 'ACCESS_DENIED' && REFUSAL_REASONS.has(String(error.details?.reason))) return true;
    if (serverSaid && (error.code === 'AUTH_MISSING' || error.code === 'CERTIFICATE_UNTRUSTED')) return true;
    if (!this.dispatch.refusedAfterHandshake()) {
      this.refusals = 0;
      return false;
    }
    // The connection was closed right after its handshake. The control plane does that to a revoked
    // certificate; it answers /health (no certificate) only if it is actually up.
    if (!(await this.dispatch.health(this.config.rpcTimeoutMs))) {
      this.refusals = 0;
      return false;
    }
    this.refusals += 1;
    this.log.warn({ event: 'agent.certificate_refused', refusals: this.refusals }, 'the control plane is up but closed the connection that presented our certificate');
    return this.refusals >= REFUSALS_BEFORE_GIVING_UP;
  }

  /** Re-bootstraps if a token is still available (a new registration supersedes a revocation); otherwise gives up with a typed error. */
  private async onRefused(cause: AirlockError): Promise<void> {
    const { clusterName } = this.config;
    // An expired certificate is refused at the handshake like a revoked one; say which it was.
    const expired = this.renewer.credentials().expiresAt.getTime() <= Date.now();
    const reason = expired ? 'certificate-expired' : cause.code === 'ACCESS_DENIED' && typeof cause.details?.reason === 'string' ? cause.details.reason : 'certificate-refused';
    if (reason === 'cluster-mismatch') {
      this.fail(new AirlockError('ACCESS_DENIED', `The control plane says this agent's certificate is not for cluster ${clusterName}`, { cause, details: { reason, cluster: clusterName } }));
      return;
    }
    if (this.tokenAvailable) {
      this.log.warn({ event: 'agent.rebootstrap', cluster: clusterName, reason }, 'control plane refuses our certificate; registering again with the bootstrap token');
      try {
        const credentials = await this.bootstrap();
        this.installCredentials(credentials);
        this.refusals = 0;
        await this.tunnel.rotate().catch(() => undefined);
        return;
      } catch (error) {
        const airlock = AirlockError.from(error);
        this.log.error({ event: 'agent.rebootstrap_failed', code: airlock.code, reason: airlock.details?.reason }, 'registering again with the bootstrap token failed');
        if (isTransient(airlock)) return;
      }
    }
    this.fail(
      new AirlockError(
        'ACCESS_DENIED',
        expired
          ? `The certificate of cluster ${clusterName} expired before it could be renewed; start the agent with a new bootstrap token`
          : `The control plane refuses the certificate of cluster ${clusterName} (revoked or no longer registered); start the agent with a new bootstrap token`,
        { cause, details: { reason: 'cluster-refused', cluster: clusterName, refusal: reason } },
      ),
    );
  }

  /** Gives up for good: stops the tunnel and renewals, aborts running actions, and makes waitForRegistered reject. */
  private fail(error: AirlockError): void {
    if (this.failure !== undefined) return;
    this.failure = error;
    this.phase = 'failed';
    this.registered = false;
    this.log.error({ event: 'agent.failed', cluster: this.config.clusterName, code: error.code, reason: error.details?.reason, refusal: error.details?.refusal }, error.message);
    this.renewer.stop();
    for (const id of [...this.running.keys()]) this.abortAction(id, 'stopping');
    void this.tunnel.stop();
    this.events.emit('failed', error);
  }

  // ---------------------------------------------------------------- actions

  private startAction(action: Action): void {
    if (this.running.has(action.actionId)) return;
    if (this.outbox.some((event) => event.actionId === action.actionId && TERMINAL_PHASES.has(event.phase))) return;
    if (this.phase === 'stopped' || this.phase === 'failed') return;
    const entry: RunningAction = { action, controller: new AbortController(), reason: undefined, done: Promise.resolve() };
    this.running.set(action.actionId, entry);
    entry.done = this.runAction(entry);
  }

  private async runAction(entry: RunningAction): Promise<void> {
    const { action, controller } = entry;
    const timeoutMs = action.timeout === undefined ? 0 : durationMs(action.timeout);
    const timer = timeoutMs > 0 ? setTimeout(() => this.abortAction(action.actionId, 'timeout'), timeoutMs) : undefined;
    this.log.info({ event: 'agent.action_started', actionId: action.actionId, runId: action.runId, attempt: action.attempt }, 'action started');
    this.report(action, ActionPhase.INITIALIZING);
    let outcome: { phase: ActionPhase; error?: ReportedError };
    try {
      outcome = this.config.executor === undefined ? await this.runHandler(action, controller.signal) : await this.runExecutor(this.config.executor, action, controller.signal);
    } finally {
      clearTimeout(timer);
    }
    if (this.config.executor === undefined && entry.reason === 'timeout') {
      // A bare handler's outcome is decided by the abort, whatever it did with the signal.
      outcome = { phase: ActionPhase.TIMED_OUT, error: systemError(new AirlockError('TIMEOUT', `The action exceeded its timeout of ${timeoutMs} ms`)) };
    }
    // Aborted at the control plane's request: ABORTED, without an error of ours.
    if (entry.reason === 'cancelled') outcome = { phase: ActionPhase.ABORTED };
    this.running.delete(action.actionId);
    // Stopping: no final event. The lease lapses and the control plane queues the action again.
    if (entry.reason !== 'stopping') {
      this.report(action, outcome.phase, outcome.error);
      this.log.info(
        { event: 'agent.action_finished', actionId: action.actionId, phase: ActionPhase[outcome.phase], errorCode: outcome.error?.code, errorKind: outcome.error?.kind },
        'action finished',
      );
    }
    this.events.emit('capacity');
  }

  private async runHandler(action: Action, signal: AbortSignal): Promise<{ phase: ActionPhase; error?: ReportedError }> {
    try {
      this.report(action, ActionPhase.RUNNING);
      const handler = this.config.onAction;
      if (handler === undefined) throw new AirlockError('NOT_IMPLEMENTED', 'This data plane has no executor for actions');
      await handler(action, signal);
      return { phase: ActionPhase.SUCCEEDED };
    } catch (error) {
      return { phase: ActionPhase.FAILED, error: systemError(AirlockError.from(error)) };
    }
  }

  private async runExecutor(executor: Executor, action: Action, signal: AbortSignal): Promise<{ phase: ActionPhase; error?: ReportedError }> {
    let running = false;
    let outcome: ActionOutcome;
    try {
      outcome = await executor.execute(action, signal, {
        onRunning: () => {
          if (running) return;
          running = true;
          this.report(action, ActionPhase.RUNNING);
        },
      });
    } catch (error) {
      // Executors resolve with SYSTEM outcomes rather than throwing; this is the safety net.
      const airlock = AirlockError.from(error);
      this.log.error({ event: 'agent.executor_threw', actionId: action.actionId, code: airlock.code }, 'the executor threw instead of returning an outcome');
      return { phase: ActionPhase.FAILED, error: systemError(new AirlockError('INTERNAL', 'The executor failed')) };
    }
    if (outcome.phase === 'SUCCEEDED') return { phase: ActionPhase.SUCCEEDED };
    return outcome.error === undefined ? { phase: OUTCOME_PHASES[outcome.phase] } : { phase: OUTCOME_PHASES[outcome.phase], error: outcomeError(outcome.error) };
  }

  private abortAction(actionId: string, reason: AbortReason): void {
    const entry = this.running.get(actionId);
    if (entry === undefined || entry.reason !== undefined) return;
    entry.reason = reason;
    this.log.info({ event: 'agent.action_aborting', actionId, reason }, 'aborting action');
    entry.controller.abort(new AirlockError(reason === 'timeout' ? 'TIMEOUT' : 'ABORTED', `Action ${reason === 'timeout' ? 'timed out' : 'aborted'}`));
  }

  private report(action: Pick<Action, 'actionId' | 'attempt'>, phase: ActionPhase, error?: ReportedError): void {
    const occurredAt = timestampNow();
    const event: PendingEvent = {
      eventId: randomUUID(),
      actionId: action.actionId,
      attempt: action.attempt,
      phase,
      occurredAt,
      // Only the stable code and our own message: a foreign error's text (which may quote data) stays behind.
      ...(error === undefined
        ? {}
        : { error: { code: error.code, message: error.message, retryable: error.retryable, kind: error.kind === 'USER' ? ErrorKind.USER : ErrorKind.SYSTEM, occurredAt } }),
    };
    this.outbox.push(event);
    if (this.outbox.length > this.config.maxPendingEvents) {
      // Drop progress before outcomes: a lost RUNNING is cosmetic, a lost SUCCEEDED is not.
      const index = this.outbox.findIndex((item) => !TERMINAL_PHASES.has(item.phase));
      const [dropped] = this.outbox.splice(index === -1 ? 0 : index, 1);
      this.log.warn({ event: 'agent.event_dropped', actionId: dropped?.actionId, limit: this.config.maxPendingEvents }, 'too many unacknowledged events; dropped one');
    }
    this.events.emit('event');
  }

  // ---------------------------------------------------------------- public surface

  waitForRegistered(timeoutMs: number): Promise<void> {
    if (this.registered) return Promise.resolve();
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.phase === 'stopped') return Promise.reject(new AirlockError('UNAVAILABLE', 'The agent is stopped'));
    return new Promise((resolve, reject) => {
      const cleanup = (): void => {
        clearTimeout(timer);
        this.events.off('registered', onRegistered);
        this.events.off('failed', onFailed);
        this.events.off('stopped', onStopped);
      };
      const onRegistered = (): void => {
        cleanup();
        resolve();
      };
      const onFailed = (error: AirlockError): void => {
        cleanup();
        reject(error);
      };
      const onStopped = (): void => {
        cleanup();
        reject(new AirlockError('UNAVAILABLE', 'The agent is stopped'));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new AirlockError('TIMEOUT', `The agent did not register within ${timeoutMs} ms`, { details: { timeoutMs } }));
      }, timeoutMs);
      this.events.on('registered', onRegistered);
      this.events.on('failed', onFailed);
      this.events.on('stopped', onStopped);
    });
  }

  status(): DataPlaneAgentStatus {
    const credentials = this.renewer.credentials();
    const nextRenewalAt = this.renewer.nextRenewalAt();
    return Object.freeze({
      state: this.phase,
      registered: this.registered,
      tunnelConnected: this.tunnel.state() === 'connected',
      ...(this.lastHeartbeatAt === undefined ? {} : { lastHeartbeatAt: this.lastHeartbeatAt }),
      certificateExpiresAt: credentials.expiresAt,
      certificateFingerprintSha256: credentials.fingerprintSha256,
      ...(nextRenewalAt === undefined ? {} : { nextRenewalAt: new Date(nextRenewalAt) }),
      registrations: this.registrations,
      inFlightActionIds: Object.freeze([...this.running.keys()]),
      pendingEvents: this.outbox.length,
      ...(this.failure === undefined ? {} : { error: this.failure }),
    });
  }

  credentials(): RegisteredCredentials {
    return this.renewer.credentials();
  }

  get identityFingerprint(): string {
    if (this.sealingKeys === undefined) throw new AirlockError('UNAVAILABLE', 'The agent has not loaded its sealing keys');
    return this.sealingKeys.identityFingerprint;
  }

  renewCertificate(): Promise<RegisteredCredentials> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return this.renewer.renewNow();
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      const wasRegistered = this.registered;
      this.phase = 'stopped';
      this.registered = false;
      this.stopController.abort();
      this.events.emit('stopped');
      const running = [...this.running.values()];
      for (const entry of running) this.abortAction(entry.action.actionId, 'stopping');
      await Promise.race([Promise.all(running.map((entry) => entry.done)), new Promise((resolve) => setTimeout(resolve, STOP_ACTION_GRACE_MS).unref())]);
      await this.loopDone;
      await this.config.executor?.close?.().catch((error: unknown) =>
        this.log.warn({ event: 'agent.executor_close_failed', code: AirlockError.from(error).code }, 'the executor did not close cleanly'),
      );
      if (wasRegistered && this.failure === undefined && this.outbox.length > 0) {
        // One last try, so outcomes produced just before the stop are not left behind.
        const batch = this.outbox.slice(0, EVENT_BATCH);
        await this.dispatch
          .reportEvents({ cluster: this.config.clusterName, events: batch }, STOP_FLUSH_MS)
          .then(() => this.acknowledge(batch))
          .catch(() => undefined);
      }
      (this.renewer as CertificateRenewer | undefined)?.stop();
      await (this.tunnel as TunnelAgent | undefined)?.stop();
      this.dispatch.close();
      if (this.ownsSealingKeys) this.sealingKeys?.destroy();
      if (this.outbox.length > 0) this.log.warn({ event: 'agent.events_unsent', count: this.outbox.length }, 'agent stopped with unacknowledged events');
      this.log.info({ event: 'agent.stopped', cluster: this.config.clusterName }, 'data-plane agent stopped');
    })();
    return this.stopping;
  }
}

/**
 * Starts the data-plane agent: loads its credentials from `stateDir` (or bootstraps with the token,
 * retrying while the control plane is unreachable), then runs the tunnel and the dispatch loops in
 * the background. Resolves once credentials are in hand; use `waitForRegistered` for the rest.
 * Throws AUTH_MISSING without usable credentials or token, ACCESS_DENIED for a refused token.
 */
export async function startDataPlaneAgent(options: DataPlaneAgentOptions): Promise<DataPlaneAgent> {
  const agent = new DataPlaneAgentImpl(resolveDataPlaneAgentConfig(options));
  try {
    await agent.start();
  } catch (error) {
    await agent.stop().catch(() => undefined);
    throw AirlockError.from(error);
  }
  return agent;
}
