// Cross-plane tests of runs: the control plane's run RPCs with a real data-plane agent over the real tunnel and dispatch channels; the agent serves SealedIoService and PresignService handlers written here per docs/runs.md (the data plane's own implementation replaces them in the final integration test).
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, createClient, type Client, type ConnectRouter } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport, Http2SessionManager } from '@connectrpc/connect-node';
import { sql } from 'kysely';
import { AirlockError } from '@airlock/common';
import {
  openActionQueue,
  openApiTokenStore,
  openClusterRegistry,
  openRunService,
  startApiServer,
  startDispatchServer,
  startTunnelEndpoint,
  type ActionQueue,
  type ClusterRegistry,
  type ConnectServer,
  type ControlPlaneDatabase,
  type DispatchServer,
  type RunService,
  type TunnelEndpoint,
} from '@airlock/control-plane';
import { generateSealingKeyPair, openSealed, seal } from '@airlock/crypto';
import { startDataPlaneAgent, tunnelServiceRoutes, type DataPlaneAgent } from '@airlock/data-plane';
import { createCertificateAuthority, createCertificateRequest, issueServerCertificate, tlsClientOptions, type CertificateKeyPair } from '@airlock/pki';
import {
  ActionPhase,
  AirlockService,
  DispatchService,
  ErrorKind,
  fromConnectError,
  IO_SEALING_PURPOSE,
  PresignService,
  runInputsAad,
  runResultAad,
  SealedIoService,
  toConnectError,
  type Action,
  type GetOutputsRequest,
  type PresignBundleUploadRequest,
  type PutInputsRequest,
} from '@airlock/protocol';
import { taskSpecDigest, taskVersion, type TaskSpec } from '@airlock/sdk';
import { captureLogger, makeCanary } from '@airlock/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, openTestDatabase, startTestKeyVault } from './helpers.js';

const CLUSTER = 'local';
const PROJECT = 'p1';
const MAX_BUNDLE_BYTES = 64 * 1024 * 1024;
const BUNDLE = Buffer.from('export const bundle = "hello";\n');
const BUNDLE_SHA = createHash('sha256').update(BUNDLE).digest('hex');
/** The presigned URL's signature: secret, so it must reach the client and nowhere else. */
const URL_SIGNATURE = makeCanary('url-signature').replaceAll('-', '');
const INPUT_CANARY = makeCanary('input');

let ca: CertificateKeyPair;
let directory: string;
let keyVault: Awaited<ReturnType<typeof startTestKeyVault>>;
let database: ControlPlaneDatabase;
let queue: ActionQueue;
let registry: ClusterRegistry;
let tunnel: TunnelEndpoint;
let dispatch: DispatchServer;
let runs: RunService;
let api: ConnectServer;
let agent: DataPlaneAgent;
let client: Client<typeof AirlockService>;
let adminToken: string;
const cpLogs = captureLogger('control-plane');
const dpLogs = captureLogger('agent');
const managers: Http2SessionManager[] = [];

/** The data plane's state as the test's handlers keep it: the I/O key, stored inputs and results, what was asked. */
const dataPlane = {
  ioKey: generateSealingKeyPair(),
  inputs: new Map<string, Uint8Array>(),
  results: new Map<string, Uint8Array>(),
  bundles: new Set<string>(),
  putInputsCalls: [] as Array<{ project: string; runId: string; task: string }>,
  actions: [] as Action[],
};

/**
 * The tunnel services per docs/runs.md: bundles per project bound to digest and size, inputs opened
 * once (to refuse a tampered or misaddressed payload) and stored as sealed, results sealed to the
 * caller's ephemeral key with the run-result associated data.
 */
/** Handlers throw AirlockErrors with their code on the wire, as the data plane's services do. */
function wire<A extends unknown[], R>(handler: (...args: A) => R | Promise<R>): (...args: A) => Promise<R> {
  return async (...args) => {
    try {
      return await handler(...args);
    } catch (error) {
      throw toConnectError(error);
    }
  };
}

function dataPlaneRoutes(router: ConnectRouter): void {
  tunnelServiceRoutes()(router);
  router.service(PresignService, {
    presign() {
      throw new AirlockError('NOT_IMPLEMENTED', 'not in this test');
    },
    presignBundleUpload: wire((request: PresignBundleUploadRequest) => {
      const size = Number(request.bundle?.size ?? 0n);
      if (size > MAX_BUNDLE_BYTES) throw new AirlockError('PAYLOAD_TOO_LARGE', 'bundle too large', { details: { limit: MAX_BUNDLE_BYTES } });
      const sha = request.bundle?.sha256 ?? '';
      if (dataPlane.bundles.has(`${request.project}/${sha}`)) return { alreadyStored: true };
      return {
        alreadyStored: false,
        url: `https://objectstore.invalid/airlock-data/bundles/${request.project}/${sha}?X-Amz-Signature=${URL_SIGNATURE}`,
        headers: { 'x-amz-checksum-sha256': Buffer.from(sha, 'hex').toString('base64'), 'content-length': String(size) },
        expiresAt: timestampFromDate(new Date(Date.now() + 3_600_000)),
      };
    }),
  });
  router.service(SealedIoService, {
    putInputs: wire(async (request: PutInputsRequest) => {
      const sealed = request.inputs?.sealed ?? new Uint8Array();
      await openSealed({ recipientPrivateKey: dataPlane.ioKey.privateKey, purpose: IO_SEALING_PURPOSE, sealed, aad: runInputsAad(request.project, request.task?.name ?? '') });
      dataPlane.putInputsCalls.push({ project: request.project, runId: request.runId, task: request.task?.name ?? '' });
      dataPlane.inputs.set(`${request.project}/${request.runId}`, sealed);
      return { inputsRef: `v1/${request.project}/${request.runId}`, sha256: createHash('sha256').update(sealed).digest('hex') };
    }),
    getOutputs: wire(async (request: GetOutputsRequest) => {
      const result = dataPlane.results.get(request.actionId);
      if (result === undefined) throw new AirlockError('NOT_FOUND', 'no result for this action');
      const sealed = await seal({ recipientPublicKey: request.recipientPublicKey, purpose: IO_SEALING_PURPOSE, plaintext: result, aad: runResultAad(request.project, request.runId, request.actionId) });
      return { outputs: { sealed, keyId: createHash('sha256').update(request.recipientPublicKey).digest('hex').slice(0, 32) } };
    }),
  });
}

/** The executor's part: read the inputs by reference, run, store the result document. */
async function execute(action: Action): Promise<void> {
  dataPlane.actions.push(action);
  const [version, project, runId] = action.inputsRef.split('/');
  if (version !== 'v1' || project !== action.task?.project || runId !== action.runId) throw new AirlockError('INVALID_ARGUMENT', 'inputs_ref does not match the action');
  const sealed = dataPlane.inputs.get(`${project}/${runId}`);
  if (sealed === undefined) throw new AirlockError('NOT_FOUND', 'no inputs');
  const inputs = JSON.parse((await openSealed({ recipientPrivateKey: dataPlane.ioKey.privateKey, purpose: IO_SEALING_PURPOSE, sealed, aad: runInputsAad(project ?? '', action.task?.name ?? '') })).toString()) as {
    name: string;
    fail?: boolean;
  };
  if (inputs.fail === true) {
    dataPlane.results.set(action.actionId, Buffer.from(JSON.stringify({ version: 1, ok: false, attempt: action.attempt, phase: 'FAILED', error: { code: 'TASK_FAILED', kind: 'USER', message: `failed for ${inputs.name}` } })));
    throw new AirlockError('TASK_FAILED_FINAL', 'the task failed');
  }
  dataPlane.results.set(action.actionId, Buffer.from(JSON.stringify({ version: 1, ok: true, attempt: action.attempt, outputs: { greeting: `Hello, ${inputs.name}!` } })));
}

function spec(name: string): TaskSpec {
  return {
    specVersion: 1,
    name,
    kind: 'function',
    inputSchema: { type: 'object' },
    outputSchema: { type: 'object' },
    retries: { limit: 0, initialDelayMs: 1000, maxDelayMs: 60_000, factor: 2, jitter: 0 },
    timeoutMs: 30_000,
    resources: {},
    sdkVersion: '0.1.0',
  };
}

const as = () => ({ headers: { authorization: `Bearer ${adminToken}` } });

async function failure(promise: Promise<unknown>): Promise<{ connect: Code; code: string; details: Record<string, unknown> }> {
  const outcome = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  if (!(outcome instanceof ConnectError)) throw new Error(`expected a ConnectError, got ${String(outcome)}`);
  const airlock = fromConnectError(outcome);
  return { connect: outcome.code, code: airlock.code, details: { ...(airlock.details ?? {}) } };
}

async function sealInputs(task: string, value: unknown): Promise<{ sealed: Uint8Array; keyId: string }> {
  const sealed = await seal({ recipientPublicKey: dataPlane.ioKey.publicKey, purpose: IO_SEALING_PURPOSE, plaintext: Buffer.from(JSON.stringify(value)), aad: runInputsAad(PROJECT, task) });
  return { sealed, keyId: dataPlane.ioKey.keyId };
}

beforeAll(async () => {
  ca = await createCertificateAuthority({ commonName: 'runs test CA' });
  const server = await issueServerCertificate({ ca, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  directory = await mkdtemp(join(tmpdir(), 'airlock-runs-'));
  keyVault = await startTestKeyVault(join(directory, 'kms-dir'), ca);
  await mkdir(join(directory, 'cp'), { mode: 0o700 });
  database = await openTestDatabase(join(directory, 'cp'), cpLogs.log);
  registry = openClusterRegistry({ ca, database, log: cpLogs.log });
  queue = await openActionQueue({ database, log: cpLogs.log, leaseMs: 2000 });
  dispatch = await startDispatchServer({ tls: { cert: server.cert, key: server.key }, ca: ca.cert, registry, queue, log: cpLogs.log, heartbeatIntervalMs: 200, maxPollWaitMs: 5000 });
  tunnel = await startTunnelEndpoint({ tls: { cert: server.cert, key: server.key }, ca: ca.cert, log: cpLogs.log, isClusterAllowed: (cluster, fingerprint) => registry.isClusterAllowed(cluster, fingerprint) });
  // A short run lease, so that losing the data plane shows within the test.
  runs = await openRunService({ database, queue, clusters: registry, tunnel, clusterLastSeen: (cluster) => dispatch.lastHeartbeatAt(cluster), runLeaseMs: 4000, sweepIntervalMs: 100, log: cpLogs.log });
  const tokens = openApiTokenStore({ database, log: cpLogs.log });
  adminToken = (await tokens.createToken({ subject: 'admin', roles: [{ project: '*', role: 'admin' }] })).token;
  api = await startApiServer({ tls: { cert: server.cert, key: server.key }, tokens, registry, runs, log: cpLogs.log });
  const manager = new Http2SessionManager(api.url, {}, tlsClientOptions({ ca: ca.cert }));
  managers.push(manager);
  client = createClient(AirlockService, createConnectTransport({ baseUrl: api.url, httpVersion: '2', sessionManager: manager }));

  const bootstrap = await registry.createBootstrapToken(CLUSTER, 60_000);
  agent = await startDataPlaneAgent({
    clusterName: CLUSTER,
    stateDir: join(directory, 'agent'),
    keyVault: keyVault.vault,
    dispatchUrl: dispatch.url,
    tunnelUrl: tunnel.url,
    ca: ca.cert,
    bootstrapToken: bootstrap.token,
    routes: dataPlaneRoutes,
    onAction: (action) => execute(action),
    log: dpLogs.log,
    pollWaitMs: 2000,
    heartbeatTimeoutMs: 2000,
    backoffMaxMs: 400,
    startTimeoutMs: 10_000,
    tunnel: { drainTimeoutMs: 1000 },
  });
  await agent.waitForRegistered(10_000);
  await tunnel.waitForCluster(CLUSTER, 10_000);
}, 60_000);

afterAll(async () => {
  await agent?.stop().catch(() => undefined);
  for (const manager of managers) manager.abort();
  await api?.close();
  await runs?.close();
  await Promise.all([dispatch?.close(), tunnel?.close()]);
  await queue?.close();
  await database?.close();
  await keyVault?.close();
  await rm(directory, { recursive: true, force: true });
});

describe('a run end to end through the data plane', () => {
  let version = '';

  it('CreateUploadLocation relays the data plane presigned PUT, which the control plane neither logs nor stores', async () => {
    const location = await client.createUploadLocation({ project: PROJECT, bundle: { sha256: BUNDLE_SHA, size: BigInt(BUNDLE.length) } }, as());
    expect(location.alreadyStored).toBe(false);
    expect(location.url).toContain(`/bundles/${PROJECT}/${BUNDLE_SHA}?X-Amz-Signature=${URL_SIGNATURE}`);
    expect(location.headers).toEqual({ 'x-amz-checksum-sha256': Buffer.from(BUNDLE_SHA, 'hex').toString('base64'), 'content-length': String(BUNDLE.length) });
    expect(location.expiresAt).toBeDefined();
    dataPlane.bundles.add(`${PROJECT}/${BUNDLE_SHA}`);
    expect((await client.createUploadLocation({ project: PROJECT, cluster: CLUSTER, bundle: { sha256: BUNDLE_SHA, size: BigInt(BUNDLE.length) } }, as())).alreadyStored).toBe(true);
    // The data plane's refusal keeps its code.
    expect(await failure(client.createUploadLocation({ project: PROJECT, bundle: { sha256: BUNDLE_SHA, size: BigInt(MAX_BUNDLE_BYTES + 1) } }, as()))).toMatchObject({
      code: 'PAYLOAD_TOO_LARGE',
      details: { cluster: CLUSTER },
    });
    version = (await client.registerTask({ project: PROJECT, specJson: Buffer.from(JSON.stringify(spec('hello'))), bundle: { sha256: BUNDLE_SHA, size: BigInt(BUNDLE.length) } }, as())).task?.ref?.version ?? '';
    expect(version).toBe(taskVersion(taskSpecDigest(spec('hello')), BUNDLE_SHA));
  });

  it('CreateRun hands the sealed inputs to PutInputs and keeps only the reference; the run succeeds and GetRunOutputs relays the sealed result', async () => {
    const inputs = await sealInputs('hello', { name: INPUT_CANARY });
    const { run } = await client.createRun({ project: PROJECT, taskName: 'hello', inputs, idempotencyKey: 'e2e-1' }, as());
    const runId = run?.runId ?? '';
    expect(dataPlane.putInputsCalls).toContainEqual({ project: PROJECT, runId, task: 'hello' });
    const phases: ActionPhase[] = [];
    for await (const message of client.watchRun({ project: PROJECT, runId }, as())) phases.push(message.run?.phase ?? ActionPhase.UNSPECIFIED);
    expect(phases.at(0)).toBe(ActionPhase.QUEUED);
    expect(phases.at(-1)).toBe(ActionPhase.SUCCEEDED);
    const action = dataPlane.actions.find((item) => item.runId === runId);
    expect(action).toMatchObject({ inputsRef: `v1/${PROJECT}/${runId}`, bundle: { sha256: BUNDLE_SHA, size: BigInt(BUNDLE.length) }, parentActionId: '', task: { project: PROJECT, name: 'hello', version } });
    expect(action?.inputs).toBeUndefined();

    const ephemeral = generateSealingKeyPair();
    const outputs = await client.getRunOutputs({ project: PROJECT, runId, recipientPublicKey: ephemeral.publicKey }, as());
    expect(outputs.actionId).toBe(run?.actionId);
    const opened = await openSealed({ recipientPrivateKey: ephemeral.privateKey, purpose: IO_SEALING_PURPOSE, sealed: outputs.result?.sealed ?? new Uint8Array(), aad: runResultAad(PROJECT, runId, outputs.actionId) });
    expect(JSON.parse(opened.toString())).toEqual({ version: 1, ok: true, attempt: 1, outputs: { greeting: `Hello, ${INPUT_CANARY}!` } });

    // The same submission again: the first run, nothing new stored.
    const calls = dataPlane.putInputsCalls.length;
    const again = await client.createRun({ project: PROJECT, taskName: 'hello', inputs, idempotencyKey: 'e2e-1' }, as());
    expect(again).toMatchObject({ deduplicated: true, run: { runId } });
    expect(dataPlane.putInputsCalls).toHaveLength(calls);
  });

  it('a tampered input is refused by the data plane before a run exists', async () => {
    const inputs = await sealInputs('hello', { name: 'x' });
    const tampered = Buffer.from(inputs.sealed);
    tampered[tampered.length - 1] = (tampered[tampered.length - 1] ?? 0) ^ 1;
    const before = (await client.listRuns({ project: PROJECT }, as())).runs.length;
    expect(await failure(client.createRun({ project: PROJECT, taskName: 'hello', inputs: { sealed: tampered, keyId: inputs.keyId }, idempotencyKey: 'tampered' }, as()))).toMatchObject({
      code: 'CIPHERTEXT_AUTH_FAILED',
    });
    expect((await client.listRuns({ project: PROJECT }, as())).runs).toHaveLength(before);
    // The key was freed: the corrected submission goes through under the same key.
    const retried = await client.createRun({ project: PROJECT, taskName: 'hello', inputs: await sealInputs('hello', { name: 'y' }), idempotencyKey: 'tampered' }, as());
    expect(retried.deduplicated).toBe(false);
  });

  it('a failed run returns its error details only sealed; the control plane keeps the code and its own text', async () => {
    const { run } = await client.createRun({ project: PROJECT, taskName: 'hello', inputs: await sealInputs('hello', { name: INPUT_CANARY, fail: true }) }, as());
    const runId = run?.runId ?? '';
    const final = await eventually('the run to fail', 10_000, async () => {
      const current = (await client.getRun({ project: PROJECT, runId }, as())).run;
      return current?.completedAt === undefined ? undefined : current;
    });
    expect(final).toMatchObject({ phase: ActionPhase.FAILED, error: { code: 'TASK_FAILED_FINAL', retryable: false, message: 'The task code threw an error that it marked as not worth retrying.' } });
    const ephemeral = generateSealingKeyPair();
    const outputs = await client.getRunOutputs({ project: PROJECT, runId, recipientPublicKey: ephemeral.publicKey }, as());
    const opened = await openSealed({ recipientPrivateKey: ephemeral.privateKey, purpose: IO_SEALING_PURPOSE, sealed: outputs.result?.sealed ?? new Uint8Array(), aad: runResultAad(PROJECT, runId, outputs.actionId) });
    expect(JSON.parse(opened.toString())).toMatchObject({ ok: false, error: { message: `failed for ${INPUT_CANARY}` } });
  });

  it('neither the database nor any log holds the inputs, the result, the URL signature or the sealed bytes', async () => {
    await database.checkpoint();
    const raw: string[] = [];
    for (const table of ['tasks', 'runs', 'idempotency_keys', 'actions', 'action_events']) {
      const rows = await sql<Record<string, unknown>>`select * from ${sql.table(table)}`.execute(database.db);
      for (const row of rows.rows) for (const value of Object.values(row)) raw.push(Buffer.isBuffer(value) ? value.toString('latin1') : String(value));
    }
    const logs = [...cpLogs.lines, ...dpLogs.lines].map((line) => JSON.stringify(line)).join('\n');
    for (const text of [raw.join('\n'), logs]) {
      expect(text).not.toContain(INPUT_CANARY);
      expect(text).not.toContain(URL_SIGNATURE);
    }
    expect(logs).toContain('runs.upload_location');
  });

  it('PollActions hands out the bundle and parent; ReportEvents takes the error kind, and the data plane message is dropped', async () => {
    // A second data plane, driven by hand over the real dispatch channel with its own certificate.
    const { token } = await registry.createBootstrapToken('edge', 60_000);
    const request = await createCertificateRequest({ commonName: 'edge' });
    const certificate = await registry.redeemBootstrapToken(token, request.csr);
    const manager = new Http2SessionManager(dispatch.url, {}, tlsClientOptions({ ca: ca.cert, cert: certificate.certPem, key: request.key }));
    managers.push(manager);
    const edge = createClient(DispatchService, createGrpcTransport({ baseUrl: dispatch.url, sessionManager: manager }));
    await edge.heartbeat({ cluster: 'edge', sequence: 1n });
    const { run } = await client.createRun({ project: PROJECT, taskName: 'hello', cluster: 'edge' }, as());
    const { actions } = await edge.pollActions({ cluster: 'edge', maxActions: 1 });
    expect(actions).toHaveLength(1);
    expect(actions[0]).toMatchObject({ actionId: run?.actionId, runId: run?.runId, attempt: 1, bundle: { sha256: BUNDLE_SHA, size: BigInt(BUNDLE.length) }, parentActionId: '', inputsRef: '' });
    expect(actions[0]?.timeout).toBeDefined();
    const dataPlaneText = makeCanary('data-plane-message');
    await edge.reportEvents({
      cluster: 'edge',
      events: [
        {
          eventId: 'edge-1',
          actionId: run?.actionId ?? '',
          attempt: 1,
          phase: ActionPhase.FAILED,
          occurredAt: timestampFromDate(new Date('2030-01-01T00:00:00Z')),
          error: { code: 'TASK_FAILED_FINAL', kind: ErrorKind.USER, retryable: false, message: dataPlaneText },
        },
      ],
    });
    const failed = await eventually('the run to fail', 10_000, async () => {
      const current = (await client.getRun({ project: PROJECT, runId: run?.runId ?? '' }, as())).run;
      return current?.completedAt === undefined ? undefined : current;
    });
    expect(failed.error).toMatchObject({ code: 'TASK_FAILED_FINAL', kind: ErrorKind.USER, retryable: false, message: `The task failed; \`airlock runs get ${run?.runId ?? ''}\` shows its error` });
    expect(failed.error?.occurredAt).toEqual(timestampFromDate(new Date('2030-01-01T00:00:00Z')));
    const actionsSeen = await client.listActions({ project: PROJECT, runId: run?.runId ?? '' }, as());
    expect(actionsSeen.actions[0]?.error).toMatchObject({ kind: ErrorKind.USER });
    const raw = await sql<Record<string, unknown>>`select * from actions`.execute(database.db);
    expect(JSON.stringify(raw.rows.map((row) => Object.values(row).map((value) => (Buffer.isBuffer(value) ? value.toString('latin1') : String(value)))))).not.toContain(dataPlaneText);
    expect([...cpLogs.lines].map((line) => JSON.stringify(line)).join('\n')).not.toContain(dataPlaneText);
    await registry.revoke('edge');
  });

  it('CreateRun and GetRunOutputs are UNAVAILABLE without a tunnel; a queued run of a lost data plane ends FAILED with DATA_PLANE_LOST', async () => {
    const { run: finished } = await client.createRun({ project: PROJECT, taskName: 'hello', inputs: await sealInputs('hello', { name: 'z' }) }, as());
    await eventually('the run to finish', 10_000, async () => ((await client.getRun({ project: PROJECT, runId: finished?.runId ?? '' }, as())).run?.completedAt === undefined ? undefined : true));
    await agent.stop();
    await eventually('the tunnel to drop', 10_000, () => (tunnel.connection(CLUSTER) === undefined ? true : undefined));
    expect(await failure(client.createRun({ project: PROJECT, taskName: 'hello', inputs: await sealInputs('hello', { name: 'z' }) }, as()))).toMatchObject({
      connect: Code.Unavailable,
      details: { reason: 'tunnel-down', cluster: CLUSTER },
    });
    expect(await failure(client.getRunOutputs({ project: PROJECT, runId: finished?.runId ?? '', recipientPublicKey: new Uint8Array(32) }, as()))).toMatchObject({ connect: Code.Unavailable });
    // A run without inputs needs no tunnel to be queued; nobody takes it, and the run lease ends it.
    await client.registerTask({ project: PROJECT, specJson: Buffer.from(JSON.stringify(spec('noinputs'))), bundle: { sha256: BUNDLE_SHA, size: BigInt(BUNDLE.length) } }, as());
    const { run } = await client.createRun({ project: PROJECT, taskName: 'noinputs' }, as());
    const lost = await eventually('DATA_PLANE_LOST', 15_000, async () => {
      const current = (await client.getRun({ project: PROJECT, runId: run?.runId ?? '' }, as())).run;
      return current?.completedAt === undefined ? undefined : current;
    });
    expect(lost).toMatchObject({ phase: ActionPhase.FAILED, error: { code: 'DATA_PLANE_LOST' } });
  }, 40_000);
});
