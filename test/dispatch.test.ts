// Cross-plane tests of dispatch: Bootstrap over gRPC, mTLS authentication, the agent's action loop, revocation, renewal, and control-plane restarts.
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, createClient, type Client } from '@connectrpc/connect';
import { createGrpcTransport, Http2SessionManager } from '@connectrpc/connect-node';
import {
  fixedErrorMessage,
  openActionQueue,
  openClusterRegistry,
  startDispatchServer,
  startTunnelEndpoint,
  type ActionQueue,
  type ClusterRegistry,
  type ControlPlaneDatabase,
  type DispatchServer,
  type TunnelEndpoint,
} from '@airlock/control-plane';
import {
  agentCredentialsPath,
  ECHO_DELAY_HEADER,
  startDataPlaneAgent,
  tunnelServiceRoutes,
  type ActionHandler,
  type DataPlaneAgent,
  type DataPlaneAgentOptions,
  type Executor,
} from '@airlock/data-plane';
import { AirlockError, ERROR_CODES } from '@airlock/common';
import {
  clusterIdentityUri,
  createCertificateAuthority,
  createCertificateRequest,
  issueClientCertificate,
  issueServerCertificate,
  parseCertificate,
  tlsClientOptions,
  type CertificateKeyPair,
} from '@airlock/pki';
import { DispatchService, EchoService, fromConnectError } from '@airlock/protocol';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { captureLogger, type LogLine } from '@airlock/testing';
import { eventually, openTestDatabase, startTestKeyVault } from './helpers.js';

const AGENT_VERSION = '9.8.7-test';

let ca: CertificateKeyPair;
let server: CertificateKeyPair;
const directories: string[] = [];
const agents: DataPlaneAgent[] = [];
const planes: ControlPlane[] = [];
const managers: Http2SessionManager[] = [];
/** Every secret the tests handle; none may appear in a log. */
const secrets: string[] = [];
/** The data plane's KMS: agents seal their private keys under its key. */
let keyVault: Awaited<ReturnType<typeof startTestKeyVault>>;

beforeAll(async () => {
  ca = await createCertificateAuthority({ commonName: 'dispatch test CA' });
  server = await issueServerCertificate({ ca, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  keyVault = await startTestKeyVault(await tempDir('kms'), ca);
});

afterEach(async () => {
  await Promise.all(agents.splice(0).map((agent) => agent.stop().catch(() => undefined)));
  for (const manager of managers.splice(0)) manager.abort();
  await Promise.all(planes.splice(0).map((plane) => plane.close()));
});

afterAll(async () => {
  await keyVault.close();
  await Promise.all(directories.map((directory) => rm(directory, { recursive: true, force: true })));
});

async function tempDir(prefix: string): Promise<string> {
  const directory = await mkdtemp(join(tmpdir(), `airlock-dispatch-${prefix}-`));
  directories.push(directory);
  return directory;
}

interface ControlPlane {
  readonly directory: string;
  readonly database: ControlPlaneDatabase;
  readonly registry: ClusterRegistry;
  readonly queue: ActionQueue;
  readonly dispatch: DispatchServer;
  readonly tunnel: TunnelEndpoint;
  readonly logs: ReturnType<typeof captureLogger>;
  /** Shifts the registry's clock (token expiry). */
  readonly clock: { offsetMs: number };
  close(): Promise<void>;
}

interface ControlPlaneOptions {
  readonly directory?: string;
  readonly dispatchPort?: number;
  readonly tunnelPort?: number;
  readonly leaseMs?: number;
  readonly certificateValiditySeconds?: number;
}

/** A control plane (registry, queue, dispatch server, tunnel endpoint) with its state in `directory`. */
async function startControlPlane(options: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const directory = options.directory ?? (await tempDir('cp'));
  const logs = captureLogger('control-plane');
  const clock = { offsetMs: 0 };
  const database = await openTestDatabase(directory, logs.log);
  const registry = openClusterRegistry({
    ca,
    database,
    log: logs.log,
    now: () => new Date(Date.now() + clock.offsetMs),
    ...(options.certificateValiditySeconds === undefined ? {} : { certificateValiditySeconds: options.certificateValiditySeconds }),
  });
  const queue = await openActionQueue({ database, log: logs.log, ...(options.leaseMs === undefined ? {} : { leaseMs: options.leaseMs }) });
  const dispatch = await startDispatchServer({
    tls: { cert: server.cert, key: server.key },
    ca: ca.cert,
    port: options.dispatchPort ?? 0,
    registry,
    queue,
    log: logs.log,
    heartbeatIntervalMs: 250,
    maxPollWaitMs: 10_000,
  });
  const tunnel = await startTunnelEndpoint({
    tls: { cert: server.cert, key: server.key },
    ca: ca.cert,
    port: options.tunnelPort ?? 0,
    log: logs.log,
    isClusterAllowed: (cluster, fingerprint) => registry.isClusterAllowed(cluster, fingerprint),
  });
  let closed: Promise<void> | undefined;
  const plane: ControlPlane = {
    directory,
    database,
    registry,
    queue,
    dispatch,
    tunnel,
    logs,
    clock,
    close() {
      closed ??= Promise.all([dispatch.close(), tunnel.close()])
        .then(() => queue.close())
        .then(() => database.close());
      return closed;
    },
  };
  planes.push(plane);
  return plane;
}

async function bootstrapToken(plane: ControlPlane, cluster: string, ttlMs = 60_000): Promise<string> {
  const created = await plane.registry.createBootstrapToken(cluster, ttlMs);
  secrets.push(created.token);
  return created.token;
}

async function startAgent(
  plane: ControlPlane,
  cluster: string,
  options: Partial<DataPlaneAgentOptions> = {},
): Promise<{ agent: DataPlaneAgent; logs: ReturnType<typeof captureLogger>; stateDir: string }> {
  const logs = captureLogger(`agent-${cluster}`);
  const stateDir = options.stateDir ?? join(await tempDir('dp'), 'agent');
  const agent = await startDataPlaneAgent({
    clusterName: cluster,
    stateDir,
    keyVault: keyVault.vault,
    dispatchUrl: plane.dispatch.url,
    tunnelUrl: plane.tunnel.url,
    ca: ca.cert,
    routes: tunnelServiceRoutes({ maxEchoDelayMs: 10_000 }),
    log: logs.log,
    agentVersion: AGENT_VERSION,
    pollWaitMs: 5000,
    heartbeatTimeoutMs: 2000,
    backoffMaxMs: 400,
    startTimeoutMs: 5000,
    tunnel: { drainTimeoutMs: 2000 },
    ...options,
  });
  agents.push(agent);
  return { agent, logs, stateDir };
}

/** A raw DispatchService client over gRPC, with or without a client certificate. */
function dispatchClient(url: string, credentials?: { cert: string; key: string }): Client<typeof DispatchService> {
  const manager = new Http2SessionManager(url, {}, tlsClientOptions({ ca: ca.cert, ...(credentials ?? {}) }));
  managers.push(manager);
  return createClient(DispatchService, createGrpcTransport({ baseUrl: url, sessionManager: manager }));
}

/** The Connect code, Airlock code and details of a failed call. */
async function failure(promise: Promise<unknown>): Promise<{ connect: Code; code: string; details: Record<string, unknown> }> {
  const outcome = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  if (!(outcome instanceof ConnectError)) throw new Error(`expected a ConnectError, got ${String(outcome)}`);
  const airlock = fromConnectError(outcome);
  return { connect: outcome.code, code: airlock.code, details: { ...(airlock.details ?? {}) } };
}

async function rejection(promise: Promise<unknown>): Promise<AirlockError> {
  const outcome = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  if (!(outcome instanceof AirlockError)) throw new Error(`expected an AirlockError, got ${String(outcome)}`);
  return outcome;
}

/** A cluster certificate obtained over the real Bootstrap RPC, with the key generated here. */
async function bootstrapOverRpc(plane: ControlPlane, cluster: string): Promise<{ cert: string; key: string }> {
  const request = await createCertificateRequest({ commonName: cluster });
  const response = await dispatchClient(plane.dispatch.url).bootstrap({ bootstrapToken: await bootstrapToken(plane, cluster), cluster, csrPem: request.csr });
  return { cert: response.certificateChainPem, key: request.key };
}

async function phaseOf(plane: ControlPlane, actionId: string): Promise<string | undefined> {
  return (await plane.queue.get(actionId))?.phase;
}

const task = { project: 'p1', name: 'train', version: 'v1' };

function noSecretsIn(...texts: string[]): void {
  for (const text of texts) {
    for (const secret of secrets) {
      expect(text).not.toContain(secret);
      // The body of a PEM key (its second line) is what a leak would show.
      const body = secret.split('\n')[1];
      if (body !== undefined && body.length > 20) expect(text).not.toContain(body);
    }
  }
}

describe('Bootstrap RPC', () => {
  it('spends a token on first use: the certificate names the cluster, and reuse is refused (token-used)', async () => {
    const plane = await startControlPlane();
    const token = await bootstrapToken(plane, 'boot-1');
    const client = dispatchClient(plane.dispatch.url);
    const first = await createCertificateRequest({ commonName: 'boot-1' });
    const response = await client.bootstrap({ bootstrapToken: token, cluster: 'boot-1', csrPem: first.csr });
    const info = parseCertificate(response.certificateChainPem);
    expect(info.uri).toBe('spiffe://airlock/cluster/boot-1');
    expect(response.notAfter === undefined ? undefined : timestampDate(response.notAfter).getTime()).toBe(info.notAfter.getTime());
    // Default lifetime: 24 hours.
    expect((info.notAfter.getTime() - Date.now()) / 3_600_000).toBeGreaterThan(23.9);

    const second = await createCertificateRequest({ commonName: 'boot-1' });
    expect(await failure(client.bootstrap({ bootstrapToken: token, cluster: 'boot-1', csrPem: second.csr }))).toMatchObject({
      connect: Code.PermissionDenied,
      code: 'ACCESS_DENIED',
      details: { reason: 'token-used' },
    });
    // An agent handed the spent token fails with the same typed error, not a retry loop.
    const error = await rejection(startAgent(plane, 'boot-1', { bootstrapToken: token }));
    expect(error).toMatchObject({ code: 'ACCESS_DENIED', details: { reason: 'token-used' } });
    secrets.push(first.key, second.key);
    noSecretsIn(plane.logs.text());
  });

  it('refuses an expired token (token-expired) and registers nothing', async () => {
    const plane = await startControlPlane();
    const token = await bootstrapToken(plane, 'boot-2', 1000);
    plane.clock.offsetMs = 1500;
    const request = await createCertificateRequest({ commonName: 'boot-2' });
    expect(await failure(dispatchClient(plane.dispatch.url).bootstrap({ bootstrapToken: token, cluster: 'boot-2', csrPem: request.csr }))).toMatchObject({
      connect: Code.PermissionDenied,
      code: 'ACCESS_DENIED',
      details: { reason: 'token-expired' },
    });
    expect((await plane.registry.cluster('boot-2'))).toBeUndefined();
    const error = await rejection(startAgent(plane, 'boot-2', { bootstrapToken: token }));
    expect(error).toMatchObject({ code: 'ACCESS_DENIED', details: { reason: 'token-expired' } });
  });

  it('refuses a token created for another cluster, an unknown token, and a missing CSR', async () => {
    const plane = await startControlPlane();
    const client = dispatchClient(plane.dispatch.url);
    const request = await createCertificateRequest({ commonName: 'boot-3' });
    const token = await bootstrapToken(plane, 'boot-3-other');
    expect(await failure(client.bootstrap({ bootstrapToken: token, cluster: 'boot-3', csrPem: request.csr }))).toMatchObject({
      connect: Code.PermissionDenied,
      details: { reason: 'cluster-mismatch' },
    });
    // Refused before it was spent: the token's own cluster was not (re-)registered, and the token still works for it.
    expect((await plane.registry.cluster('boot-3-other'))).toBeUndefined();
    const other = await createCertificateRequest({ commonName: 'boot-3-other' });
    expect((await client.bootstrap({ bootstrapToken: token, cluster: 'boot-3-other', csrPem: other.csr })).certificateChainPem).toMatch(/BEGIN CERTIFICATE/);
    expect(await failure(client.bootstrap({ bootstrapToken: 'alb_unknown', cluster: 'boot-3', csrPem: request.csr }))).toMatchObject({
      connect: Code.PermissionDenied,
      details: { reason: 'token-unknown' },
    });
    const unspent = await bootstrapToken(plane, 'boot-3');
    expect(await failure(client.bootstrap({ bootstrapToken: unspent, cluster: 'boot-3', csrPem: '' }))).toMatchObject({ connect: Code.InvalidArgument });
  });
});

describe('dispatch authentication', () => {
  it('every RPC but Bootstrap is unauthenticated without a client certificate', async () => {
    const plane = await startControlPlane();
    const client = dispatchClient(plane.dispatch.url);
    const unauthenticated = { connect: Code.Unauthenticated, code: 'AUTH_MISSING' };
    expect(await failure(client.register({ cluster: 'auth-1', agentVersion: AGENT_VERSION }))).toMatchObject(unauthenticated);
    expect(await failure(client.heartbeat({ cluster: 'auth-1', sequence: 1n }))).toMatchObject(unauthenticated);
    expect(await failure(client.pollActions({ cluster: 'auth-1' }))).toMatchObject(unauthenticated);
    expect(await failure(client.reportEvents({ cluster: 'auth-1' }))).toMatchObject(unauthenticated);
    expect(await failure(client.renewCertificate({ csrPem: 'x' }))).toMatchObject(unauthenticated);
  });

  it('a request naming a cluster other than the certificate is permission_denied (cluster-mismatch)', async () => {
    const plane = await startControlPlane();
    const credentials = await bootstrapOverRpc(plane, 'alpha');
    const client = dispatchClient(plane.dispatch.url, credentials);
    // The control: the certificate's own cluster is accepted.
    await client.register({ cluster: 'alpha', agentVersion: AGENT_VERSION });
    expect(plane.dispatch.agentVersion('alpha')).toBe(AGENT_VERSION);
    const mismatch = { connect: Code.PermissionDenied, code: 'ACCESS_DENIED', details: { reason: 'cluster-mismatch' } };
    expect(await failure(client.register({ cluster: 'bravo', agentVersion: AGENT_VERSION }))).toMatchObject(mismatch);
    expect(await failure(client.heartbeat({ cluster: 'bravo', sequence: 1n }))).toMatchObject(mismatch);
    expect(await failure(client.pollActions({ cluster: 'bravo' }))).toMatchObject(mismatch);
    expect(await failure(client.reportEvents({ cluster: 'bravo' }))).toMatchObject(mismatch);
    expect(plane.dispatch.agentVersion('bravo')).toBeUndefined();
  });
  it('refuses a client certificate from a foreign CA at the handshake, even one naming a registered cluster', async () => {
    const plane = await startControlPlane();
    const genuine = await bootstrapOverRpc(plane, 'foreign-1');
    // The control: the registered cluster's own certificate is accepted.
    await dispatchClient(plane.dispatch.url, genuine).register({ cluster: 'foreign-1', agentVersion: AGENT_VERSION });

    // Same identity, same shape, signed by a CA the control plane does not trust.
    const foreignCa = await createCertificateAuthority({ commonName: 'dispatch test CA' });
    const foreign = await issueClientCertificate({ ca: foreignCa, uri: clusterIdentityUri('foreign-1') });
    secrets.push(foreign.key);

    // Every RPC on such a connection fails without an answer from the service, Bootstrap included.
    const client = dispatchClient(plane.dispatch.url, foreign);
    const token = await bootstrapToken(plane, 'foreign-2');
    const csrPem = (await createCertificateRequest({ commonName: 'foreign-2' })).csr;
    for (const call of [
      () => client.register({ cluster: 'foreign-1', agentVersion: AGENT_VERSION }),
      () => client.heartbeat({ cluster: 'foreign-1', sequence: 1n }),
      () => client.bootstrap({ bootstrapToken: token, cluster: 'foreign-2', csrPem }),
    ]) {
      const refused = await failure(call());
      expect(refused.connect).not.toBe(Code.PermissionDenied);
      expect(refused.code).not.toBe('ACCESS_DENIED');
    }
    expect(await plane.registry.cluster('foreign-2')).toBeUndefined();

    // On the wire: the handshake is closed by the server before it answers anything, /health included.
    const received = await new Promise<{ data: number; secured: boolean }>((resolve, reject) => {
      let data = 0;
      let secured = false;
      const socket = tls.connect({ ...tlsClientOptions({ ca: ca.cert, cert: foreign.cert, key: foreign.key }), host: '127.0.0.1', port: plane.dispatch.port, ALPNProtocols: ['http/1.1'] });
      socket.on('secureConnect', () => {
        secured = true;
        socket.write('GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
      });
      socket.on('data', (chunk: Buffer) => (data += chunk.length));
      socket.on('error', () => undefined);
      socket.on('close', () => resolve({ data, secured }));
      socket.setTimeout(15_000, () => reject(new Error('the dispatch server kept a foreign-CA connection open')));
    });
    expect(received.data).toBe(0);
    // The refusal is the untrusted certificate, found before the registry is consulted.
    const refusals = plane.logs.lines.filter((line) => line.event === 'dispatch.client_refused');
    expect(refusals.length).toBeGreaterThanOrEqual(2);
    expect(refusals.every((line) => line.reason === 'untrusted-certificate')).toBe(true);
    noSecretsIn(plane.logs.text());
  });
});

describe('the data-plane agent', () => {
  it('bootstraps, registers, runs queued actions to SUCCEEDED or FAILED, and logs each handshake at info', async () => {
    const plane = await startControlPlane();
    const received: Array<{ actionId: string; runId: string; attempt: number; project: string | undefined }> = [];
    const onAction: ActionHandler = async (action) => {
      received.push({ actionId: action.actionId, runId: action.runId, attempt: action.attempt, project: action.task?.project });
      if (action.runId === 'run-fails') throw new AirlockError('KMS_KEY_DISABLED', 'the key is disabled');
    };
    const token = await bootstrapToken(plane, 'agent-1');
    const { agent, logs, stateDir } = await startAgent(plane, 'agent-1', { bootstrapToken: token, onAction });
    await agent.waitForRegistered(10_000);
    expect(agent.status()).toMatchObject({ state: 'registered', registered: true, registrations: 1 });
    expect(plane.dispatch.agentVersion('agent-1')).toBe(AGENT_VERSION);
    await plane.tunnel.waitForCluster('agent-1', 10_000);
    await eventually('a heartbeat', 5000, () => plane.dispatch.lastHeartbeatAt('agent-1'));

    // Credentials persisted: one 0600 file, key generated locally and stored only sealed under the data plane's KMS key.
    const credentialsFile = agentCredentialsPath(stateDir);
    expect((await stat(credentialsFile)).mode & 0o777).toBe(0o600);
    const stored = JSON.parse(await readFile(credentialsFile, 'utf8')) as { sealedKey: { keyId: string }; certPem: string };
    expect(stored.certPem).toBe(agent.credentials().cert);
    expect(stored.sealedKey.keyId).toBe(keyVault.vault.keyId);
    expect(JSON.stringify(stored)).not.toContain('PRIVATE KEY');
    secrets.push(agent.credentials().key);

    const ok = await plane.queue.enqueue('agent-1', { runId: 'run-ok', task, attempt: 2 });
    const failing = await plane.queue.enqueue('agent-1', { runId: 'run-fails', task });
    await eventually('both actions finished', 10_000, async () =>
      (await phaseOf(plane, ok)) === 'SUCCEEDED' && (await phaseOf(plane, failing)) === 'FAILED' ? true : undefined,
    );
    expect(received).toEqual(
      expect.arrayContaining([
        { actionId: ok, runId: 'run-ok', attempt: 2, project: 'p1' },
        { actionId: failing, runId: 'run-fails', attempt: 1, project: 'p1' },
      ]),
    );
    expect((await plane.queue.get(ok))?.history.map((entry) => entry.phase)).toEqual(['QUEUED', 'INITIALIZING', 'RUNNING', 'SUCCEEDED']);
    expect((await plane.queue.get(failing))?.error).toMatchObject({ code: 'KMS_KEY_DISABLED', retryable: false });
    await eventually('events acknowledged', 5000, () => (agent.status().pendingEvents === 0 ? true : undefined));

    // Handshake logging: protocol, cipher, the control plane's certificate fingerprint and expiry, at info.
    const handshakes = logs.lines.filter((line: LogLine) => line.event === 'dispatch.handshake');
    expect(handshakes.length).toBeGreaterThan(0);
    for (const line of handshakes) {
      expect(line).toMatchObject({
        level: 30,
        protocol: 'TLSv1.3',
        peerFingerprintSha256: server.info.fingerprintSha256,
        peerValidTo: server.info.notAfter.toISOString(),
      });
      expect(line.cipher).toMatch(/^TLS_(AES_256_GCM_SHA384|CHACHA20_POLY1305_SHA256|AES_128_GCM_SHA256)$/u);
    }
    // At least one handshake presented the agent's certificate (mTLS), and the tunnel logged its own.
    expect(handshakes.some((line) => line.clientFingerprintSha256 === agent.credentials().fingerprintSha256)).toBe(true);
    expect(logs.lines.some((line) => line.event === 'tunnel.handshake' && line.peerFingerprintSha256 === server.info.fingerprintSha256)).toBe(true);
    await plane.database.checkpoint();
    noSecretsIn(logs.text(), plane.logs.text(), ...(await Promise.all(plane.database.files().map((file) => readFile(file, 'latin1').catch(() => '')))));
  });

  it('a cancelled action is aborted through the next heartbeat and ends ABORTED', async () => {
    const plane = await startControlPlane();
    let sawAbort = false;
    const onAction: ActionHandler = (_action, signal) =>
      new Promise<void>((_resolve, reject) => {
        signal.addEventListener('abort', () => {
          sawAbort = true;
          reject(new AirlockError('ABORTED'));
        });
      });
    const { agent } = await startAgent(plane, 'cancel-1', { bootstrapToken: await bootstrapToken(plane, 'cancel-1'), onAction });
    await agent.waitForRegistered(10_000);
    const id = await plane.queue.enqueue('cancel-1', { runId: 'run-1', task });
    await eventually('the action running', 10_000, async () => ((await phaseOf(plane, id)) === 'RUNNING' ? true : undefined));
    expect(agent.status().inFlightActionIds).toEqual([id]);
    await plane.queue.cancel(id);
    await eventually('the action aborted', 10_000, async () => ((await phaseOf(plane, id)) === 'ABORTED' ? true : undefined));
    expect(sawAbort).toBe(true);
    expect(agent.status().inFlightActionIds).toEqual([]);
  });
});

describe('the data-plane agent with an executor', () => {
  it('reports INITIALIZING, RUNNING when the executor says so, its outcome with the fixed text of its code, and what recover() returns as TASK_CRASHED', async () => {
    const plane = await startControlPlane();
    const cluster = 'executor-1';
    // A previous agent process leased an action and never finished it.
    const hang: ActionHandler = (_action, signal) => new Promise<void>((_resolve, reject) => signal.addEventListener('abort', () => reject(new AirlockError('ABORTED'))));
    const first = await startAgent(plane, cluster, { bootstrapToken: await bootstrapToken(plane, cluster), onAction: hang });
    await first.agent.waitForRegistered(10_000);
    const lost = await plane.queue.enqueue(cluster, { runId: 'run-lost', task });
    await eventually('the action running', 10_000, async () => ((await phaseOf(plane, lost)) === 'RUNNING' ? true : undefined));
    await first.agent.stop();

    const phasesAtRunning = new Map<string, string | undefined>();
    const reasons = new Map<string, unknown>();
    let recovered = 0;
    const executor: Executor = {
      recover: async () => {
        recovered += 1;
        return [{ actionId: lost, attempt: 1 }];
      },
      execute: async (action, signal, hooks) => {
        // INITIALIZING is reported before the executor is called; RUNNING only once it says so.
        await eventually('INITIALIZING recorded', 5000, async () => ((await phaseOf(plane, action.actionId)) === 'INITIALIZING' ? true : undefined));
        hooks.onRunning();
        await eventually('RUNNING recorded', 5000, async () => ((await phaseOf(plane, action.actionId)) === 'RUNNING' ? true : undefined));
        phasesAtRunning.set(action.runId, await phaseOf(plane, action.actionId));
        if (action.runId === 'run-user') return { phase: 'FAILED', error: { code: 'TASK_FAILED', kind: 'USER', retryable: true } };
        if (action.runId === 'run-timeout') {
          await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
          reasons.set(action.runId, signal.reason);
          return { phase: 'TIMED_OUT', error: { code: 'TASK_TIMED_OUT', kind: 'USER', retryable: true } };
        }
        return { phase: 'SUCCEEDED' };
      },
    };
    const second = await startAgent(plane, cluster, { stateDir: first.stateDir, executor });
    await second.agent.waitForRegistered(10_000);
    expect(recovered).toBe(1);
    await eventually('the lost action reported', 10_000, async () => ((await phaseOf(plane, lost)) === 'FAILED' ? true : undefined));
    expect((await plane.queue.get(lost))?.error).toMatchObject({ code: 'TASK_CRASHED', retryable: true, message: ERROR_CODES.TASK_CRASHED.description });

    const ok = await plane.queue.enqueue(cluster, { runId: 'run-ok', task });
    const user = await plane.queue.enqueue(cluster, { runId: 'run-user', task });
    const timeout = await plane.queue.enqueue(cluster, { runId: 'run-timeout', task, timeoutMs: 500 });
    await eventually('all three finished', 15_000, async () =>
      (await phaseOf(plane, ok)) === 'SUCCEEDED' && (await phaseOf(plane, user)) === 'FAILED' && (await phaseOf(plane, timeout)) === 'TIMED_OUT' ? true : undefined,
    );
    expect((await plane.queue.get(ok))?.history.map((entry) => entry.phase)).toEqual(['QUEUED', 'INITIALIZING', 'RUNNING', 'SUCCEEDED']);
    expect([...phasesAtRunning.values()]).toEqual(['RUNNING', 'RUNNING', 'RUNNING']);
    // The control plane keeps the code, kind and retryability, with its own fixed text: never the data plane's message.
    expect((await plane.queue.get(user))?.error).toMatchObject({ code: 'TASK_FAILED', kind: 'USER', retryable: true, message: fixedErrorMessage('TASK_FAILED', 'USER') });
    const timedOut = (await plane.queue.get(timeout))?.error;
    expect(timedOut).toMatchObject({ code: 'TASK_TIMED_OUT', retryable: true });
    expect(timedOut?.message).toBe(fixedErrorMessage('TASK_TIMED_OUT', timedOut?.kind));
    expect(AirlockError.is(reasons.get('run-timeout'), 'TIMEOUT')).toBe(true);
    const finished = second.logs.lines.find((line) => line.event === 'agent.action_finished' && line.actionId === user);
    expect(finished).toMatchObject({ phase: 'FAILED', errorCode: 'TASK_FAILED', errorKind: 'USER' });
  });

  it('refuses an executor together with onAction', async () => {
    const plane = await startControlPlane();
    const executor: Executor = { recover: async () => [], execute: async () => ({ phase: 'SUCCEEDED' }) };
    await expect(startAgent(plane, 'both-1', { onAction: async () => undefined, executor })).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
  });
});

describe('revocation', () => {
  it('a revoked cluster is refused at the next handshake, and its agent fails with a typed error', async () => {
    const plane = await startControlPlane();
    const cluster = 'revoked-1';
    const { agent, stateDir } = await startAgent(plane, cluster, { bootstrapToken: await bootstrapToken(plane, cluster) });
    await agent.waitForRegistered(10_000);
    const credentials = { cert: agent.credentials().cert, key: agent.credentials().key };
    // A connection opened before the revocation.
    const early = dispatchClient(plane.dispatch.url, credentials);
    await early.register({ cluster, agentVersion: AGENT_VERSION });

    await plane.registry.revoke(cluster);

    // The running agent learns it from its next heartbeat, and gives up with a typed error.
    const failed = await eventually('the agent failing', 10_000, () => (agent.status().state === 'failed' ? agent.status().error : undefined));
    expect(failed).toMatchObject({ code: 'ACCESS_DENIED', details: { reason: 'cluster-refused', refusal: 'cluster-revoked' } });
    expect(agent.status().registered).toBe(false);
    // A connection that outlived the revocation is refused call by call.
    expect(await failure(early.register({ cluster, agentVersion: AGENT_VERSION }))).toMatchObject({
      connect: Code.PermissionDenied,
      details: { reason: 'cluster-revoked' },
    });
    // A new connection is closed right after its handshake: nothing is answered on it.
    const late = await failure(dispatchClient(plane.dispatch.url, credentials).register({ cluster, agentVersion: AGENT_VERSION }));
    expect(late.code).not.toBe('ACCESS_DENIED');
    expect(plane.logs.lines.some((line) => line.event === 'dispatch.client_refused' && line.reason === 'not-allowed')).toBe(true);
    await agent.stop();

    // A restarted agent with the revoked credentials (and no token) fails the same way, instead of retrying forever.
    const restarted = await startAgent(plane, cluster, { stateDir });
    const error = await rejection(restarted.agent.waitForRegistered(15_000));
    expect(error).toMatchObject({ code: 'ACCESS_DENIED', details: { reason: 'cluster-refused', refusal: 'certificate-refused' } });
    expect(restarted.agent.status().state).toBe('failed');
    expect(restarted.logs.lines.some((line) => line.event === 'agent.failed' && line.level === 50)).toBe(true);
  });

  it('with a new bootstrap token, an agent holding revoked credentials registers again', async () => {
    const plane = await startControlPlane();
    const cluster = 'revoked-2';
    const first = await startAgent(plane, cluster, { bootstrapToken: await bootstrapToken(plane, cluster) });
    await first.agent.waitForRegistered(10_000);
    const revokedFingerprint = first.agent.credentials().fingerprintSha256;
    await first.agent.stop();
    await plane.registry.revoke(cluster);

    const second = await startAgent(plane, cluster, { stateDir: first.stateDir, bootstrapToken: await bootstrapToken(plane, cluster) });
    await second.agent.waitForRegistered(15_000);
    expect(second.agent.credentials().fingerprintSha256).not.toBe(revokedFingerprint);
    expect((await plane.registry.cluster(cluster))?.revoked).toBe(false);
    const stored = JSON.parse(await readFile(agentCredentialsPath(first.stateDir), 'utf8')) as { certPem: string };
    expect(stored.certPem).toBe(second.agent.credentials().cert);
  });
});

describe('certificate renewal', () => {
  it('renews at two thirds of a short lifetime without failing an in-flight long poll or tunnel call', async () => {
    // 60 s is the PKI's shortest leaf lifetime. The renewer's clock runs 55 s ahead, so two thirds of
    // what it sees as left (5 s) falls ~3.3 s after each issuance: renewal keeps happening on schedule.
    const plane = await startControlPlane({ certificateValiditySeconds: 60 });
    const cluster = 'renew-1';
    const { agent, logs, stateDir } = await startAgent(plane, cluster, {
      bootstrapToken: await bootstrapToken(plane, cluster),
      pollWaitMs: 10_000,
      renewal: { now: () => Date.now() + 55_000, random: () => 0.5 },
      onAction: async () => undefined,
      tunnel: { drainTimeoutMs: 10_000 },
    });
    await agent.waitForRegistered(10_000);
    const initial = agent.credentials();
    expect((initial.expiresAt.getTime() - Date.now()) / 1000).toBeLessThanOrEqual(60);
    const dueInMs = (agent.status().nextRenewalAt?.getTime() ?? 0) - (Date.now() + 55_000);
    expect(dueInMs).toBeGreaterThan(1000);
    expect(dueInMs).toBeLessThan(3400);

    await plane.tunnel.waitForCluster(cluster, 10_000);
    const echo = createClient(EchoService, plane.tunnel.transportFor(cluster));
    const slow = echo.echo({ payload: new Uint8Array([42]) }, { headers: { [ECHO_DELAY_HEADER]: '5000' } });
    let slowSettled = false;
    void slow.finally(() => {
      slowSettled = true;
    });

    const renewed = await eventually('the scheduled renewal', 10_000, () => {
      const current = agent.credentials();
      return current.fingerprintSha256 !== initial.fingerprintSha256 ? current : undefined;
    });
    expect(slowSettled, 'the tunnel call is still in flight across the renewal').toBe(false);
    expect(parseCertificate(renewed.cert).uri).toBe('spiffe://airlock/cluster/renew-1');
    expect(renewed.key).not.toBe(initial.key);

    // The next call (a heartbeat) moves dispatch to the renewed certificate while the long poll,
    // parked since registration, stays in flight on the old connection.
    const switched = await eventually('dispatch switching certificates', 5000, () =>
      logs.lines.find((line) => line.event === 'dispatch.credentials_switched' && line.clientFingerprintSha256 === renewed.fingerprintSha256),
    );
    expect(Number(switched.draining)).toBeGreaterThanOrEqual(1);
    // Work keeps flowing: an action queued now is handed out by that long poll, run and reported.
    const id = await plane.queue.enqueue(cluster, { runId: 'run-after-renewal', task });
    await eventually('the action finished', 10_000, async () => ((await phaseOf(plane, id)) === 'SUCCEEDED' ? true : undefined));
    expect((await slow).payload).toEqual(new Uint8Array([42]));

    // Nothing failed: no dispatch session was lost.
    expect(logs.lines.filter((line) => line.event === 'agent.dispatch_lost')).toEqual([]);
    expect(agent.status().registrations).toBe(1);
    // The control plane saw the renewed certificate, and the state directory follows the renewals.
    await eventually('a handshake with the renewed certificate', 5000, () =>
      plane.logs.lines.some((line) => line.event === 'dispatch.handshake' && line.peerFingerprintSha256 === renewed.fingerprintSha256) ? true : undefined,
    );
    await agent.stop();
    const last = agent.credentials();
    expect((await plane.registry.cluster(cluster))?.certificates.map((certificate) => certificate.fingerprintSha256)).toContain(last.fingerprintSha256);
    const stored = JSON.parse(await readFile(agentCredentialsPath(stateDir), 'utf8')) as { certPem: string };
    expect(stored.certPem).toBe(last.cert);
    secrets.push(initial.key, renewed.key, last.key);
    noSecretsIn(logs.text(), plane.logs.text());
  });
});

describe('resilience', () => {
  it('kill the control plane and restart it: the agent reconnects and re-registers; queued work and outage events survive', async () => {
    const first = await startControlPlane();
    const cluster = 'restart-1';
    const release = new Map<string, () => void>();
    const onAction: ActionHandler = (action) => new Promise<void>((resolve) => release.set(action.runId, resolve));
    const { agent, logs } = await startAgent(first, cluster, { bootstrapToken: await bootstrapToken(first, cluster), onAction, maxConcurrentActions: 1 });
    await agent.waitForRegistered(10_000);
    await first.tunnel.waitForCluster(cluster, 10_000);

    const running = await first.queue.enqueue(cluster, { runId: 'run-a', task });
    await eventually('run-a running', 10_000, async () => ((await phaseOf(first, running)) === 'RUNNING' ? true : undefined));
    // The agent is at capacity, so this one stays queued across the restart.
    const queued = await first.queue.enqueue(cluster, { runId: 'run-b', task });

    // Kill: both listeners go away at once.
    await first.close();
    await eventually('the agent noticing', 10_000, () => (!agent.status().registered && !agent.status().tunnelConnected ? true : undefined));
    // run-a finishes during the outage: its SUCCEEDED event must wait in the agent's outbox.
    release.get('run-a')?.();
    await eventually('the outcome pending', 5000, () => (agent.status().pendingEvents > 0 && agent.status().inFlightActionIds.length === 0 ? true : undefined));
    const finishedAt = Date.now();

    const second = await startControlPlane({ directory: first.directory, dispatchPort: first.dispatch.port, tunnelPort: first.tunnel.port });
    expect(second.dispatch.url).toBe(first.dispatch.url);
    await agent.waitForRegistered(10_000);
    await second.tunnel.waitForCluster(cluster, 10_000);
    expect(agent.status().registrations).toBeGreaterThanOrEqual(2);
    expect(logs.lines.some((line) => line.event === 'agent.registered' && Number(line.registrations) >= 2)).toBe(true);

    await eventually('run-a recorded', 10_000, async () => ((await phaseOf(second, running)) === 'SUCCEEDED' ? true : undefined));
    const succeeded = (await second.queue.get(running))?.history.find((entry) => entry.phase === 'SUCCEEDED');
    expect(succeeded?.at.getTime()).toBeLessThanOrEqual(finishedAt);
    await eventually('run-b delivered', 10_000, () => (release.has('run-b') ? true : undefined));
    release.get('run-b')?.();
    await eventually('run-b recorded', 10_000, async () => ((await phaseOf(second, queued)) === 'SUCCEEDED' ? true : undefined));
    expect((await second.queue.get(running))?.deliveries).toBe(1);
    expect((await second.queue.get(queued))?.deliveries).toBe(1);
  });

  it('an expired lease re-queues the action of an agent that died, and another agent runs it', async () => {
    const plane = await startControlPlane({ leaseMs: 1000 });
    const cluster = 'lease-1';
    const hang: ActionHandler = (_action, signal) => new Promise<void>((_resolve, reject) => signal.addEventListener('abort', () => reject(new AirlockError('ABORTED'))));
    const first = await startAgent(plane, cluster, { bootstrapToken: await bootstrapToken(plane, cluster), onAction: hang });
    await first.agent.waitForRegistered(10_000);
    const id = await plane.queue.enqueue(cluster, { runId: 'run-1', task });
    await eventually('the action running', 10_000, async () => ((await phaseOf(plane, id)) === 'RUNNING' ? true : undefined));
    // The agent dies: no final event, no more heartbeats.
    await first.agent.stop();
    expect(await phaseOf(plane, id)).toBe('RUNNING');
    await eventually('the lease lapsing', 5000, async () => ((await phaseOf(plane, id)) === 'QUEUED' ? true : undefined));
    expect(plane.logs.lines.some((line) => line.event === 'queue.requeued' && line.actionId === id && line.reason === 'lease expired')).toBe(true);

    const second = await startAgent(plane, cluster, { stateDir: first.stateDir, onAction: async () => undefined });
    await second.agent.waitForRegistered(10_000);
    await eventually('the action finished', 10_000, async () => ((await phaseOf(plane, id)) === 'SUCCEEDED' ? true : undefined));
    expect((await plane.queue.get(id))?.deliveries).toBe(2);
  });
});
