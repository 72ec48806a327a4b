// The task and run RPCs over a real Connect server on TLS: roles, arguments, idempotency, pagination, WatchRun streaming (Connect and gRPC), abort, and logs free of tokens and spec content.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Code, ConnectError, createClient, type Client } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport, Http2SessionManager } from '@connectrpc/connect-node';
import { createCertificateAuthority, createCertificateRequest, issueServerCertificate, tlsClientOptions, type CertificateKeyPair } from '@airlock/pki';
import { ActionPhase, AirlockService, ErrorKind, fromConnectError } from '@airlock/protocol';
import { taskSpecDigest, taskVersion, type TaskSpec } from '@airlock/sdk';
import { captureLogger, makeCanary } from '@airlock/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  openActionQueue,
  openApiTokenStore,
  openClusterRegistry,
  openRunService,
  startApiServer,
  type ActionQueue,
  type ConnectServer,
  type ControlPlaneDatabase,
  type RunService,
} from '../src/index.js';
import { openAt } from './backends.js';

const SHA = 'e'.repeat(64);
const SPEC_CANARY = makeCanary('spec-description');

let ca: CertificateKeyPair;
let directory: string;
let database: ControlPlaneDatabase;
let queue: ActionQueue;
let runs: RunService;
let server: ConnectServer;
let logs: ReturnType<typeof captureLogger>;
const managers: Http2SessionManager[] = [];
const secrets: string[] = [];
const token = { viewer: '', runner: '', otherRunner: '', admin: '' };

function spec(name: string): TaskSpec {
  return {
    specVersion: 1,
    name,
    kind: 'function',
    description: SPEC_CANARY,
    inputSchema: { type: 'object' },
    outputSchema: { type: 'object' },
    retries: { limit: 0, initialDelayMs: 1000, maxDelayMs: 60_000, factor: 2, jitter: 0.5 },
    timeoutMs: 30_000,
    resources: {},
    sdkVersion: '0.1.0',
  };
}

beforeAll(async () => {
  ca = await createCertificateAuthority({ commonName: 'runs api test CA' });
  const leaf = await issueServerCertificate({ ca, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  directory = await mkdtemp(join(tmpdir(), 'airlock-runs-api-'));
  logs = captureLogger('runs-api');
  database = await openAt({ options: { path: join(directory, 'control-plane.db') }, atRest: [] }, logs.log);
  const tokens = openApiTokenStore({ database, log: logs.log });
  const issue = async (subject: string, roles: Parameters<typeof tokens.createToken>[0]['roles']): Promise<string> => {
    const created = await tokens.createToken({ subject, roles });
    secrets.push(created.token);
    return created.token;
  };
  token.viewer = await issue('viewer@example.com', [{ project: 'p1', role: 'viewer' }]);
  token.runner = await issue('runner@example.com', [{ project: 'p1', role: 'runner' }]);
  token.otherRunner = await issue('other@example.com', [{ project: 'p2', role: 'runner' }]);
  token.admin = await issue('admin@example.com', [{ project: '*', role: 'admin' }]);
  const registry = openClusterRegistry({ ca, database, log: logs.log });
  const bootstrap = await registry.createBootstrapToken('c1', 60_000);
  secrets.push(bootstrap.token);
  await registry.redeemBootstrapToken(bootstrap.token, (await createCertificateRequest({ commonName: 'c1' })).csr);
  queue = await openActionQueue({ database, log: logs.log });
  runs = await openRunService({ database, queue, clusters: registry, log: logs.log, clusterLastSeen: () => new Date() });
  server = await startApiServer({ tls: { cert: leaf.cert, key: leaf.key }, tokens, registry, runs, log: logs.log });
});

afterAll(async () => {
  for (const manager of managers) manager.abort();
  await server?.close();
  await runs?.close();
  await queue?.close();
  await database?.close();
  await rm(directory, { recursive: true, force: true });
});

function client(protocol: 'connect' | 'grpc' = 'connect'): Client<typeof AirlockService> {
  const manager = new Http2SessionManager(server.url, {}, tlsClientOptions({ ca: ca.cert }));
  managers.push(manager);
  const transport =
    protocol === 'grpc'
      ? createGrpcTransport({ baseUrl: server.url, sessionManager: manager })
      : createConnectTransport({ baseUrl: server.url, httpVersion: '2', sessionManager: manager });
  return createClient(AirlockService, transport);
}

const as = (value: string) => ({ headers: { authorization: `Bearer ${value}` } });

async function failure(promise: Promise<unknown>): Promise<{ connect: Code; code: string; details: Record<string, unknown> }> {
  const outcome = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  if (!(outcome instanceof ConnectError)) throw new Error(`expected a ConnectError, got ${String(outcome)}`);
  const airlock = fromConnectError(outcome);
  return { connect: outcome.code, code: airlock.code, details: (airlock.details ?? {}) };
}

const json = (value: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(value));

let registered = false;
async function ensureTask(api: Client<typeof AirlockService>): Promise<string> {
  const response = await api.registerTask({ project: 'p1', specJson: json(spec('train')), bundle: { sha256: SHA, size: 99n } }, as(token.runner));
  if (!registered) expect(response.created).toBe(true);
  registered = true;
  return response.task?.ref?.version ?? '';
}

describe('tasks over the wire', () => {
  it('RegisterTask computes the version, GetTask and ListTasks return it, spec bytes untouched', async () => {
    const api = client();
    const version = await ensureTask(api);
    expect(version).toBe(taskVersion(taskSpecDigest(spec('train')), SHA));
    const again = await api.registerTask({ project: 'p1', specJson: json(spec('train')), bundle: { sha256: SHA, size: 99n } }, as(token.runner));
    expect(again.created).toBe(false);
    const got = await api.getTask({ project: 'p1', name: 'train' }, as(token.viewer));
    expect(got.task?.ref).toMatchObject({ project: 'p1', name: 'train', version });
    expect(Buffer.from(got.task?.specJson ?? []).toString()).toBe(JSON.stringify(spec('train')));
    expect(got.task?.bundle).toMatchObject({ sha256: SHA, size: 99n });
    expect(got.task?.createdBy).toBe('runner@example.com');
    const listed = await api.listTasks({ project: 'p1' }, as(token.viewer));
    expect(listed.tasks.map((task) => task.ref?.name)).toEqual(['train']);
    expect(await failure(api.getTask({ project: 'p1', name: 'missing' }, as(token.viewer)))).toMatchObject({ connect: Code.NotFound, code: 'TASK_NOT_FOUND' });
  });
});

describe('roles and arguments', () => {
  it('viewers read, runners also write; other projects are denied', async () => {
    const api = client();
    await ensureTask(api);
    const denied = { connect: Code.PermissionDenied, code: 'ACCESS_DENIED' };
    expect(await failure(api.createRun({ project: 'p1', taskName: 'train' }, as(token.viewer)))).toMatchObject(denied);
    expect(await failure(api.registerTask({ project: 'p1', specJson: json(spec('x')), bundle: { sha256: SHA, size: 1n } }, as(token.viewer)))).toMatchObject(denied);
    expect(await failure(api.createUploadLocation({ project: 'p1', bundle: { sha256: SHA, size: 1n } }, as(token.viewer)))).toMatchObject(denied);
    expect(await failure(api.createRun({ project: 'p1', taskName: 'train' }, as(token.otherRunner)))).toMatchObject(denied);
    expect(await failure(api.listRuns({ project: 'p1' }, as(token.otherRunner)))).toMatchObject(denied);
    const { run } = await api.createRun({ project: 'p1', taskName: 'train' }, as(token.runner));
    expect(await failure(api.abortRun({ project: 'p1', runId: run?.runId ?? '' }, as(token.viewer)))).toMatchObject(denied);
    for (const call of [
      api.getRun({ project: 'p1', runId: run?.runId ?? '' }, as(token.viewer)),
      api.listRuns({ project: 'p1' }, as(token.viewer)),
      api.listActions({ project: 'p1', runId: run?.runId ?? '' }, as(token.viewer)),
      api.listTasks({ project: 'p1' }, as(token.viewer)),
    ]) {
      await call;
    }
    expect(await failure(api.getRun({ project: 'p1', runId: run?.runId ?? '' }))).toMatchObject({ connect: Code.Unauthenticated, code: 'AUTH_MISSING' });
    expect(await failure(api.getRun({ project: 'Not_A_Project', runId: 'x' }, as(token.admin)))).toMatchObject({ connect: Code.InvalidArgument, details: { argument: 'project' } });
    expect(await failure(api.getRun({ project: 'p1', runId: 'x' }, as(token.viewer)))).toMatchObject({ connect: Code.InvalidArgument, details: { argument: 'run_id' } });
    expect(await failure(api.listRuns({ project: 'p1', pageToken: 'nope!' }, as(token.viewer)))).toMatchObject({ details: { argument: 'page_token' } });
    expect(await failure(api.createRun({ project: 'p1', taskName: '' }, as(token.runner)))).toMatchObject({ details: { argument: 'task_name' } });
    expect(await failure(api.getRunOutputs({ project: 'p1', runId: run?.runId ?? '', recipientPublicKey: new Uint8Array(32) }, as(token.viewer)))).toMatchObject({
      connect: Code.FailedPrecondition,
      code: 'FAILED_PRECONDITION',
    });
    expect(await failure(api.getRunOutputs({ project: 'p1', runId: run?.runId ?? '', recipientPublicKey: new Uint8Array(3) }, as(token.viewer)))).toMatchObject({
      details: { argument: 'recipient_public_key' },
    });
    // No tunnel in this test: the data-plane calls are UNAVAILABLE, not a crash.
    expect(await failure(api.createUploadLocation({ project: 'p1', bundle: { sha256: SHA, size: 1n } }, as(token.runner)))).toMatchObject({ connect: Code.Unavailable });
    expect(await failure(api.createUploadLocation({ project: 'p1', bundle: { sha256: 'zz', size: 1n } }, as(token.runner)))).toMatchObject({ details: { argument: 'bundle.sha256' } });
    await api.abortRun({ project: 'p1', runId: run?.runId ?? '' }, as(token.runner));
  });
});

describe('runs over the wire', () => {
  it('idempotent CreateRun (also concurrent), ListRuns pages and filters, AbortRun, ListActions', async () => {
    const api = client();
    const version = await ensureTask(api);
    const key = `key-${Date.now()}`;
    const results = await Promise.all(Array.from({ length: 6 }, () => api.createRun({ project: 'p1', taskName: 'train', idempotencyKey: key }, as(token.runner))));
    expect(new Set(results.map((result) => result.run?.runId)).size).toBe(1);
    expect(results.filter((result) => !result.deduplicated)).toHaveLength(1);
    const run = results[0]?.run;
    expect(run).toMatchObject({ task: { project: 'p1', name: 'train', version }, cluster: 'c1', phase: ActionPhase.QUEUED, attempts: 1, createdBy: 'runner@example.com' });

    const second = (await api.createRun({ project: 'p1', taskName: 'train', taskVersion: version }, as(token.runner))).run;
    const page1 = await api.listRuns({ project: 'p1', taskName: 'train', phase: ActionPhase.QUEUED, pageSize: 1 }, as(token.viewer));
    expect(page1.runs.map((item) => item.runId)).toEqual([second?.runId]);
    const page2 = await api.listRuns({ project: 'p1', taskName: 'train', phase: ActionPhase.QUEUED, pageSize: 1, pageToken: page1.nextPageToken }, as(token.viewer));
    expect(page2.runs.map((item) => item.runId)).toEqual([run?.runId]);

    const aborted = await api.abortRun({ project: 'p1', runId: second?.runId ?? '' }, as(token.runner));
    expect(aborted.run).toMatchObject({ phase: ActionPhase.ABORTED, abortRequested: false });
    expect(aborted.run?.completedAt).toBeDefined();
    const actions = await api.listActions({ project: 'p1', runId: second?.runId ?? '' }, as(token.viewer));
    expect(actions.actions).toHaveLength(1);
    expect(actions.actions[0]).toMatchObject({ attempt: 1, phase: ActionPhase.ABORTED, parentActionId: '', task: { name: 'train', version } });
  });

  for (const protocol of ['connect', 'grpc'] as const) {
    it(`WatchRun streams every change until the run is terminal (${protocol})`, async () => {
      const api = client(protocol);
      await ensureTask(api);
      // Queued for c1: lease it as the agent would, then report its phases.
      const { run } = await api.createRun({ project: 'p1', taskName: 'train', cluster: 'c1' }, as(token.runner));
      const runId = run?.runId ?? '';
      const leased = await queue.lease('c1', 100, 0);
      expect(leased.map((action) => action.actionId)).toContain(run?.actionId);
      const phases: ActionPhase[] = [];
      const stream = (async () => {
        for await (const message of api.watchRun({ project: 'p1', runId }, as(token.viewer))) phases.push(message.run?.phase ?? ActionPhase.UNSPECIFIED);
      })();
      const waitFor = async (phase: ActionPhase): Promise<void> => {
        const deadline = Date.now() + 5000;
        while (!phases.includes(phase)) {
          if (Date.now() > deadline) throw new Error(`no ${ActionPhase[phase]} in the stream`);
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      };
      await waitFor(ActionPhase.QUEUED);
      const actionId = run?.actionId ?? '';
      await queue.record('c1', [{ eventId: `${runId}-1`, actionId, attempt: 1, phase: 'RUNNING' }]);
      await waitFor(ActionPhase.RUNNING);
      await queue.record('c1', [{ eventId: `${runId}-2`, actionId, attempt: 1, phase: 'FAILED', error: { code: 'TASK_FAILED', kind: 'USER', retryable: false, message: 'boom with data' } }]);
      await stream;
      expect(phases).toEqual([ActionPhase.QUEUED, ActionPhase.RUNNING, ActionPhase.FAILED]);
      const final = (await api.getRun({ project: 'p1', runId }, as(token.viewer))).run;
      expect(final?.error).toMatchObject({ code: 'TASK_FAILED', kind: ErrorKind.USER, retryable: false, message: `The task failed; \`airlock runs get ${runId}\` shows its error` });
      expect(final?.phases.map((entry) => entry.phase)).toEqual([ActionPhase.QUEUED, ActionPhase.RUNNING, ActionPhase.FAILED]);
      // A terminal run's watch sends it once and ends.
      const once: ActionPhase[] = [];
      for await (const message of api.watchRun({ project: 'p1', runId }, as(token.viewer))) once.push(message.run?.phase ?? ActionPhase.UNSPECIFIED);
      expect(once).toEqual([ActionPhase.FAILED]);
    });
  }

  it('logs carry no token, no spec content and no data-plane message', () => {
    const text = logs.lines.map((line) => JSON.stringify(line)).join('\n');
    expect(text.length).toBeGreaterThan(0);
    for (const secret of secrets) expect(text).not.toContain(secret);
    expect(text).not.toContain(SPEC_CANARY);
    expect(text).not.toContain('boom with data');
  });
});
