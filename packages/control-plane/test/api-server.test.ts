// Integration tests of the control plane's API server over real TLS: three protocols, bearer-token roles, clusters, /health via curl, and bad input.
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http2, { type IncomingHttpHeaders } from 'node:http2';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { durationFromMs, timestampDate } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, createClient, type Client, type Transport } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport, Http2SessionManager } from '@connectrpc/connect-node';
import {
  createCertificateAuthority,
  createCertificateRequest,
  issueClientCertificate,
  issueServerCertificate,
  tlsClientOptions,
  type CertificateKeyPair,
} from '@airlock/pki';
import { generateSealingKeyPair } from '@airlock/crypto';
import {
  AIRLOCK_ERROR_HEADER,
  AirlockService,
  ClusterState,
  EchoService,
  fromConnectError,
  HealthStatus,
  identityFingerprint,
  LogService,
  Role,
  signDataPlaneKeys,
  verifyDataPlaneKeys,
} from '@airlock/protocol';
import { captureLogger } from '@airlock/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openClusterRegistry, openApiTokenStore, startApiServer, type ApiTokenStore, type ClusterRegistry, type ConnectServer, type ControlPlaneDatabase } from '../src/index.js';
import { openAt } from './backends.js';
import { startConnectServer, tlsPeerKey } from '../src/internal/connect-server.js';

const run = promisify(execFile);

/** The server's per-message limit: small, so that the oversized test stays fast. */
const READ_MAX_BYTES = 64 * 1024;
const VERSION = '1.2.3-test';
const CLUSTERS = ['alpha', 'bravo', 'charlie'] as const;
/** The signed sealing keys alpha's agent registered with (relayed as is by GetCluster). */
const alphaIdentity = generateKeyPairSync('ed25519').privateKey;
const alphaKeys = signDataPlaneKeys({
  cluster: 'alpha',
  ioPublicKey: generateSealingKeyPair().publicKey,
  secretsPublicKey: generateSealingKeyPair().publicKey,
  identityPrivateKey: alphaIdentity,
});

let ca: CertificateKeyPair;
let directory: string;
let caPath: string;
let database: ControlPlaneDatabase;
let tokens: ApiTokenStore;
let registry: ClusterRegistry;
let server: ConnectServer;
let logs: ReturnType<typeof captureLogger>;
/** Shifts the token store's clock, to expire tokens without waiting. */
let clockOffsetMs = 0;
const fingerprints = new Map<string, { sha256: string; notAfter: Date }>();
const managers: Http2SessionManager[] = [];
/** Every secret the tests create; none may appear in a log line or a state file. */
const secrets: string[] = [];
const token = { admin: '', viewer: '', runner: '', revoked: '', expiring: '' };

beforeAll(async () => {
  ca = await createCertificateAuthority({ commonName: 'api server test CA' });
  const leaf = await issueServerCertificate({ ca, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  directory = await mkdtemp(join(tmpdir(), 'airlock-api-server-'));
  caPath = join(directory, 'ca.pem');
  await writeFile(caPath, ca.cert);
  logs = captureLogger('api-server');
  const path = join(directory, 'control-plane.db');
  database = await openAt({ options: { path }, atRest: [] }, logs.log);

  tokens = openApiTokenStore({ database, log: logs.log, now: () => new Date(Date.now() + clockOffsetMs) });
  const issue = async (subject: string, roles: Parameters<ApiTokenStore['createToken']>[0]['roles'], ttlMs?: number) => {
    const created = await tokens.createToken({ subject, roles, ...(ttlMs === undefined ? {} : { ttlMs }) });
    secrets.push(created.token);
    return created;
  };
  token.admin = (await issue('admin@example.com', [{ project: '*', role: 'admin' }])).token;
  token.viewer = (await issue('viewer@example.com', [{ project: '*', role: 'viewer' }])).token;
  token.runner = (await issue('runner@example.com', [{ project: 'p1', role: 'runner' }])).token;
  const revoked = await issue('revoked@example.com', [{ project: '*', role: 'admin' }]);
  token.revoked = revoked.token;
  await tokens.revoke(revoked.id);
  token.expiring = (await issue('expiring@example.com', [{ project: '*', role: 'admin' }], 60_000)).token;

  registry = openClusterRegistry({ ca, database, log: logs.log });
  for (const name of CLUSTERS) {
    const bootstrap = await registry.createBootstrapToken(name, 60_000);
    secrets.push(bootstrap.token);
    const request = await createCertificateRequest({ commonName: name });
    const certificate = await registry.redeemBootstrapToken(bootstrap.token, request.csr);
    fingerprints.set(name, { sha256: certificate.fingerprintSha256, notAfter: certificate.expiresAt });
  }

  server = await startApiServer({
    tls: { cert: leaf.cert, key: leaf.key },
    tokens,
    registry,
    version: VERSION,
    readMaxBytes: READ_MAX_BYTES,
    log: logs.log,
    clusterStatus: {
      tunnelConnected: (cluster) => cluster === 'alpha',
      lastHeartbeatAt: (cluster) => (cluster === 'alpha' ? new Date('2030-01-02T03:04:05Z') : undefined),
      agentVersion: (cluster) => {
        // A failing source must leave the field empty, not fail the call.
        if (cluster === 'charlie') throw new Error('status source down');
        return `agent-${cluster}`;
      },
      keys: (cluster) => (cluster === 'alpha' ? alphaKeys : undefined),
    },
  });
});

afterAll(async () => {
  for (const manager of managers) manager.abort();
  await server?.close();
  await database.close();
  await rm(directory, { recursive: true, force: true });
});

/** An HTTP/2 connection that trusts only the test CA, closed in afterAll. */
function sessionManager(url: string = server.url): Http2SessionManager {
  const manager = new Http2SessionManager(url, {}, tlsClientOptions({ ca: ca.cert }));
  managers.push(manager);
  return manager;
}

const bearer = (value: string) => ({ headers: { authorization: `Bearer ${value}` } });

async function callError(promise: Promise<unknown>): Promise<ConnectError> {
  const outcome = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  if (!(outcome instanceof ConnectError)) throw new Error(`expected a ConnectError, got ${String(outcome)}`);
  return outcome;
}

/** The Connect code and the Airlock code (from the airlock-error metadata) of a failed call. */
async function codes(promise: Promise<unknown>): Promise<[Code, string]> {
  const error = await callError(promise);
  return [error.code, fromConnectError(error).code];
}

const transports: ReadonlyArray<readonly [string, () => Transport]> = [
  ['Connect over HTTP/2', () => createConnectTransport({ baseUrl: server.url, httpVersion: '2', sessionManager: sessionManager() })],
  ['gRPC', () => createGrpcTransport({ baseUrl: server.url, sessionManager: sessionManager() })],
  ['gRPC-web over HTTP/1.1', () => createGrpcWebTransport({ baseUrl: server.url, httpVersion: '1.1', nodeOptions: tlsClientOptions({ ca: ca.cert }) })],
  ['gRPC-web over HTTP/2', () => createGrpcWebTransport({ baseUrl: server.url, httpVersion: '2', sessionManager: sessionManager() })],
];

describe.each(transports)('AirlockService over %s', (_name, makeTransport) => {
  let client: Client<typeof AirlockService>;
  beforeAll(() => {
    client = createClient(AirlockService, makeTransport());
  });

  it('answers Health without a token', async () => {
    const before = Date.now();
    const health = await client.health({});
    expect(health.status).toBe(HealthStatus.SERVING);
    expect(health.version).toBe(VERSION);
    expect(health.serverTime).toBeDefined();
    const serverTime = timestampDate(health.serverTime!).getTime();
    expect(serverTime).toBeGreaterThanOrEqual(before - 1000);
    expect(serverTime).toBeLessThanOrEqual(Date.now() + 1000);
  });

  it('answers WhoAmI for a valid token and refuses it without one', async () => {
    const me = await client.whoAmI({}, bearer(token.runner));
    expect(me.subject).toBe('runner@example.com');
    expect(me.roles.map((grant) => [grant.project, grant.role])).toEqual([['p1', Role.RUNNER]]);
    expect(me.tokenExpiresAt).toBeUndefined();
    expect(await codes(client.whoAmI({}))).toEqual([Code.Unauthenticated, 'AUTH_MISSING']);
  });

  it('lists clusters for a viewer and refuses a revoke with permission_denied', async () => {
    const listed = await client.listClusters({}, bearer(token.viewer));
    expect(listed.clusters.map((cluster) => cluster.name)).toEqual([...CLUSTERS]);
    expect(await codes(client.revokeCluster({ name: 'alpha', reason: 'test' }, bearer(token.viewer)))).toEqual([Code.PermissionDenied, 'ACCESS_DENIED']);
    expect((await registry.cluster('alpha'))?.revoked).toBe(false);
  });
});

describe('authentication and roles', () => {
  let client: Client<typeof AirlockService>;
  beforeAll(() => {
    client = createClient(AirlockService, createConnectTransport({ baseUrl: server.url, httpVersion: '2', sessionManager: sessionManager() }));
  });

  it('refuses a missing, malformed, garbage, revoked or expired token with unauthenticated', async () => {
    expect(await codes(client.listClusters({}))).toEqual([Code.Unauthenticated, 'AUTH_MISSING']);
    expect(await codes(client.listClusters({}, { headers: { authorization: '' } }))).toEqual([Code.Unauthenticated, 'AUTH_MISSING']);
    expect(await codes(client.listClusters({}, { headers: { authorization: `Basic ${token.admin}` } }))).toEqual([Code.Unauthenticated, 'AUTH_MALFORMED']);
    expect(await codes(client.listClusters({}, bearer('garbage')))).toEqual([Code.Unauthenticated, 'AUTH_UNKNOWN_ACCESS_KEY']);
    expect(await codes(client.listClusters({}, bearer(`alt_${'A'.repeat(43)}`)))).toEqual([Code.Unauthenticated, 'AUTH_UNKNOWN_ACCESS_KEY']);
    expect(await codes(client.listClusters({}, bearer(token.revoked)))).toEqual([Code.Unauthenticated, 'AUTH_UNKNOWN_ACCESS_KEY']);

    // The expiring token works until the store's clock passes its TTL.
    expect((await client.whoAmI({}, bearer(token.expiring))).tokenExpiresAt).toBeDefined();
    clockOffsetMs = 61_000;
    try {
      expect(await codes(client.whoAmI({}, bearer(token.expiring)))).toEqual([Code.Unauthenticated, 'AUTH_REQUEST_EXPIRED']);
      expect(await codes(client.createBootstrapToken({ cluster: 'delta' }, bearer(token.expiring)))).toEqual([Code.Unauthenticated, 'AUTH_REQUEST_EXPIRED']);
    } finally {
      clockOffsetMs = 0;
    }
  });

  it('accepts the Bearer scheme in any case (RFC 9110 §11.1)', async () => {
    expect((await client.whoAmI({}, { headers: { authorization: `bearer ${token.viewer}` } })).subject).toBe('viewer@example.com');
  });

  it('relays the signed sealing keys of the last registration, which verify against the pinned identity', async () => {
    const alpha = (await client.getCluster({ name: 'alpha' }, bearer(token.runner))).cluster;
    const pin = identityFingerprint(alphaKeys.identityPublicKey);
    expect(verifyDataPlaneKeys(alpha?.keys, pin, 'alpha').statement.cluster).toBe('alpha');
    expect(Buffer.from(alpha?.keys?.statement ?? []).equals(Buffer.from(alphaKeys.statement))).toBe(true);
    const listed = (await client.listClusters({}, bearer(token.viewer))).clusters.find((cluster) => cluster.name === 'alpha');
    expect(Buffer.from(listed?.keys?.signature ?? []).equals(Buffer.from(alphaKeys.signature))).toBe(true);
    expect((await client.getCluster({ name: 'bravo' }, bearer(token.viewer))).cluster?.keys).toBeUndefined();
  });

  it('lets a platform viewer read clusters but not change them', async () => {
    expect((await client.getCluster({ name: 'bravo' }, bearer(token.viewer))).cluster?.name).toBe('bravo');
    expect(await codes(client.createBootstrapToken({ cluster: 'delta' }, bearer(token.viewer)))).toEqual([Code.PermissionDenied, 'ACCESS_DENIED']);
    expect(await codes(client.revokeCluster({ name: 'bravo' }, bearer(token.viewer)))).toEqual([Code.PermissionDenied, 'ACCESS_DENIED']);
  });

  it('lets a runner of one project read clusters (to seal to them) but not change them (platform-wide, admin only)', async () => {
    expect((await client.listClusters({}, bearer(token.runner))).clusters.length).toBeGreaterThan(0);
    expect((await client.getCluster({ name: 'alpha' }, bearer(token.runner))).cluster?.name).toBe('alpha');
    expect(await codes(client.revokeCluster({ name: 'alpha' }, bearer(token.runner)))).toEqual([Code.PermissionDenied, 'ACCESS_DENIED']);
    expect(await codes(client.createBootstrapToken({ cluster: 'delta' }, bearer(token.runner)))).toEqual([Code.PermissionDenied, 'ACCESS_DENIED']);
  });

  it('lets an admin create bootstrap tokens (default 1 h, capped at 24 h) that the registry redeems', async () => {
    const before = Date.now();
    const created = await client.createBootstrapToken({ cluster: 'delta' }, bearer(token.admin));
    secrets.push(created.token);
    expect(created.token).toMatch(/^alb_/);
    const expiresAt = timestampDate(created.expiresAt!).getTime();
    expect(expiresAt).toBeGreaterThanOrEqual(before + 3_600_000 - 1000);
    expect(expiresAt).toBeLessThanOrEqual(Date.now() + 3_600_000 + 1000);

    const capped = await client.createBootstrapToken({ cluster: 'echo', ttl: durationFromMs(48 * 3_600_000) }, bearer(token.admin));
    secrets.push(capped.token);
    expect(timestampDate(capped.expiresAt!).getTime()).toBeLessThanOrEqual(Date.now() + 24 * 3_600_000 + 1000);
    expect(timestampDate(capped.expiresAt!).getTime()).toBeGreaterThanOrEqual(before + 24 * 3_600_000 - 1000);
    const short = await client.createBootstrapToken({ cluster: 'echo', ttl: durationFromMs(120_000) }, bearer(token.admin));
    secrets.push(short.token);
    expect(timestampDate(short.expiresAt!).getTime()).toBeLessThanOrEqual(Date.now() + 120_000 + 1000);

    const request = await createCertificateRequest({ commonName: 'delta' });
    const certificate = await registry.redeemBootstrapToken(created.token, request.csr);
    expect(await registry.isClusterAllowed('delta', certificate.fingerprintSha256)).toBe(true);
  });

  it('refuses bad bootstrap-token arguments with invalid_argument', async () => {
    expect(await codes(client.createBootstrapToken({ cluster: 'Not_A_Name' }, bearer(token.admin)))).toEqual([Code.InvalidArgument, 'INVALID_ARGUMENT']);
    expect(await codes(client.createBootstrapToken({ cluster: '' }, bearer(token.admin)))).toEqual([Code.InvalidArgument, 'INVALID_ARGUMENT']);
    expect(await codes(client.createBootstrapToken({ cluster: 'ok', ttl: { seconds: -5n, nanos: 0 } }, bearer(token.admin)))).toEqual([
      Code.InvalidArgument,
      'INVALID_ARGUMENT',
    ]);
    expect(await codes(client.createBootstrapToken({ cluster: 'ok', ttl: durationFromMs(10) }, bearer(token.admin)))).toEqual([Code.InvalidArgument, 'INVALID_ARGUMENT']);
  });

  it('lets an admin revoke a cluster: REVOKED, its certificate refused, NOT_FOUND for an unknown one', async () => {
    const bootstrap = await registry.createBootstrapToken('foxtrot', 60_000);
    secrets.push(bootstrap.token);
    const request = await createCertificateRequest({ commonName: 'foxtrot' });
    const certificate = await registry.redeemBootstrapToken(bootstrap.token, request.csr);
    expect(await registry.isClusterAllowed('foxtrot', certificate.fingerprintSha256)).toBe(true);

    const revoked = await client.revokeCluster({ name: 'foxtrot', reason: 'decommissioned' }, bearer(token.admin));
    expect(revoked.cluster?.state).toBe(ClusterState.REVOKED);
    expect(revoked.cluster?.tunnelConnected).toBe(false);
    expect(await registry.isClusterAllowed('foxtrot', certificate.fingerprintSha256)).toBe(false);
    expect((await client.getCluster({ name: 'foxtrot' }, bearer(token.viewer))).cluster?.state).toBe(ClusterState.REVOKED);

    expect(await codes(client.revokeCluster({ name: 'nobody' }, bearer(token.admin)))).toEqual([Code.NotFound, 'NOT_FOUND']);
    expect(await codes(client.getCluster({ name: 'nobody' }, bearer(token.viewer)))).toEqual([Code.NotFound, 'NOT_FOUND']);
    expect(await codes(client.getCluster({ name: 'NO!' }, bearer(token.viewer)))).toEqual([Code.InvalidArgument, 'INVALID_ARGUMENT']);
  });
});

describe('clusters', () => {
  let client: Client<typeof AirlockService>;
  beforeAll(() => {
    client = createClient(AirlockService, createGrpcTransport({ baseUrl: server.url, sessionManager: sessionManager() }));
  });

  it('fills Cluster from the registry (newest certificate) and the status source', async () => {
    const { cluster } = await client.getCluster({ name: 'alpha' }, bearer(token.viewer));
    const expected = fingerprints.get('alpha')!;
    expect(cluster).toBeDefined();
    expect(cluster!.state).toBe(ClusterState.ACTIVE);
    expect(cluster!.certificateSha256).toBe(expected.sha256);
    expect(timestampDate(cluster!.certificateNotAfter!)).toEqual(expected.notAfter);
    expect(timestampDate(cluster!.registeredAt!).getTime()).toBe((await registry.cluster('alpha'))!.registeredAt.getTime());
    expect(cluster!.tunnelConnected).toBe(true);
    expect(timestampDate(cluster!.lastHeartbeatAt!)).toEqual(new Date('2030-01-02T03:04:05Z'));
    expect(cluster!.agentVersion).toBe('agent-alpha');

    const bravo = (await client.getCluster({ name: 'bravo' }, bearer(token.viewer))).cluster!;
    expect([bravo.tunnelConnected, bravo.lastHeartbeatAt, bravo.agentVersion]).toEqual([false, undefined, 'agent-bravo']);
    // charlie's agentVersion source throws: the field is empty and the call still succeeds.
    expect((await client.getCluster({ name: 'charlie' }, bearer(token.viewer))).cluster!.agentVersion).toBe('');
  });

  it('pages through clusters by name with an opaque token', async () => {
    const all = (await client.listClusters({}, bearer(token.viewer))).clusters.map((cluster) => cluster.name);
    expect(all).toEqual([...all].sort());
    expect(all.length).toBeGreaterThanOrEqual(3);

    const seen: string[] = [];
    let pageToken = '';
    for (let pages = 0; pages < 10; pages += 1) {
      const page = await client.listClusters({ pageSize: 2, pageToken }, bearer(token.viewer));
      expect(page.clusters.length).toBeLessThanOrEqual(2);
      seen.push(...page.clusters.map((cluster) => cluster.name));
      pageToken = page.nextPageToken;
      if (pageToken === '') break;
    }
    expect(seen).toEqual(all);
  });

  it('refuses a page token it did not issue with invalid_argument', async () => {
    for (const pageToken of ['garbage!', 'bm90IGpzb24', Buffer.from(JSON.stringify({ v: 1, after: 'UPPER' })).toString('base64url')]) {
      expect(await codes(client.listClusters({ pageToken }, bearer(token.viewer))), pageToken).toEqual([Code.InvalidArgument, 'INVALID_ARGUMENT']);
    }
  });
});

describe('secrets stay out of files and logs', () => {
  it('never writes a token or bootstrap token to the database or a log line, debug included', async () => {
    expect(secrets.length).toBeGreaterThanOrEqual(8);
    await database.checkpoint();
    const files = (await Promise.all(database.files().map((file) => readFile(file).catch(() => Buffer.alloc(0))))).map((bytes) => bytes.toString('latin1')).join('');
    expect(files.length).toBeGreaterThan(0);
    const text = logs.text();
    // The capture really holds debug lines about authenticated calls, so the checks below are not vacuous.
    expect(logs.lines.some((line) => line.level === 20 && line.event === 'api.call')).toBe(true);
    expect(logs.lines.some((line) => line.event === 'api.bootstrap_token_created')).toBe(true);
    for (const secret of secrets) {
      const body = secret.slice(4);
      expect(files.includes(body), 'database file').toBe(false);
      expect(text.includes(body), 'log').toBe(false);
    }
  });
});

describe('/health over TLS', () => {
  it('answers curl over HTTPS with the status and version, and 404 elsewhere', async () => {
    const { stdout } = await run('/usr/bin/curl', ['--silent', '--show-error', '--fail', '--cacert', caPath, `${server.url}/health`]);
    expect(JSON.parse(stdout)).toEqual({ status: 'SERVING', version: VERSION });
    const missing = await run('/usr/bin/curl', ['--silent', '--cacert', caPath, '--write-out', '\\n%{http_code}', `${server.url}/nope`]);
    const split = missing.stdout.lastIndexOf('\n');
    expect(missing.stdout.slice(split + 1)).toBe('404');
    expect(JSON.parse(missing.stdout.slice(0, split))).toMatchObject({ code: 'not_found' });
  });

  it('gives plaintext HTTP no answer', async () => {
    const plain = server.url.replace('https://', 'http://');
    const failure = await run('/usr/bin/curl', ['--silent', '--max-time', '10', `${plain}/health`]).then(
      () => undefined,
      (error: unknown) => error as { code?: number; stdout?: string },
    );
    expect(failure).toBeDefined();
    expect(failure?.code).not.toBe(0);
    expect(failure?.stdout ?? '').toBe('');
  });
});

/** Writes `bytes` on a plain TCP connection and collects whatever comes back until the server closes it. */
async function rawTcp(port: number, bytes: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = net.connect(port, '127.0.0.1', () => socket.write(bytes));
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('the server kept a garbage connection open for 15 s'));
    }, 15_000);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
  });
}

interface RawResponse {
  headers: IncomingHttpHeaders;
  trailers: IncomingHttpHeaders;
  body: Buffer;
}

/** One raw HTTP/2 request over TLS, for bodies that no generated client would send. */
async function rawHttp2(url: string, headers: http2.OutgoingHttpHeaders, body: Buffer): Promise<RawResponse> {
  const session = http2.connect(url, tlsClientOptions({ ca: ca.cert }));
  try {
    return await new Promise<RawResponse>((resolve, reject) => {
      session.on('error', reject);
      const stream = session.request({ ':method': 'POST', ...headers });
      const chunks: Buffer[] = [];
      let responseHeaders: IncomingHttpHeaders = {};
      let trailers: IncomingHttpHeaders = {};
      stream.on('response', (received) => (responseHeaders = received));
      stream.on('trailers', (received) => (trailers = received));
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => resolve({ headers: responseHeaders, trailers, body: Buffer.concat(chunks) }));
      stream.on('error', reject);
      stream.end(body);
    });
  } finally {
    session.close();
  }
}

/** A gRPC length-prefixed message (flag 0). */
function envelope(message: Buffer): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt32BE(message.length, 1);
  return Buffer.concat([header, message]);
}

/** The trailer frame (flag 0x80) at the end of a gRPC-web response body, parsed. */
function grpcWebTrailer(body: Buffer): Record<string, string> {
  let offset = 0;
  while (offset + 5 <= body.length) {
    const flag = body[offset]!;
    const length = body.readUInt32BE(offset + 1);
    if (flag === 0x80) {
      const text = body.subarray(offset + 5, offset + 5 + length).toString('utf8');
      return Object.fromEntries(
        text
          .split('\r\n')
          .filter((line) => line.includes(':'))
          .map((line) => [line.slice(0, line.indexOf(':')).trim().toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]),
      );
    }
    offset += 5 + length;
  }
  throw new Error('no gRPC-web trailer frame');
}

/** Field 1 with wire type 7, which does not exist: no protobuf decoder accepts it. */
const MALFORMED_PROTOBUF = Buffer.from([0x0f, 0x01, 0x02]);
const HEALTH_PATH = '/airlock.v1.AirlockService/Health';

describe('bad input', () => {
  let client: Client<typeof AirlockService>;
  beforeAll(() => {
    client = createClient(AirlockService, createConnectTransport({ baseUrl: server.url, httpVersion: '2', sessionManager: sessionManager() }));
  });

  it.each([
    ['Connect', () => createConnectTransport({ baseUrl: server.url, httpVersion: '2', sessionManager: sessionManager() })],
    ['gRPC', () => createGrpcTransport({ baseUrl: server.url, sessionManager: sessionManager() })],
    // Over HTTP/1.1 the unread rest of the body must not block the next call on the connection.
    ['gRPC-web over HTTP/1.1', () => createGrpcWebTransport({ baseUrl: server.url, httpVersion: '1.1', nodeOptions: tlsClientOptions({ ca: ca.cert }) })],
    ['Connect over HTTP/1.1', () => createConnectTransport({ baseUrl: server.url, httpVersion: '1.1', nodeOptions: tlsClientOptions({ ca: ca.cert }) })],
  ] as const)('refuses an oversized message over %s with resource_exhausted, then serves the next call', async (_name, makeTransport) => {
    const oversized = createClient(AirlockService, makeTransport());
    const error = await callError(oversized.revokeCluster({ name: 'alpha', reason: 'x'.repeat(READ_MAX_BYTES + 1) }, bearer(token.admin)));
    expect(error.code).toBe(Code.ResourceExhausted);
    expect((await registry.cluster('alpha'))?.revoked).toBe(false);
    // A deadline, so that a connection blocked by the unread body fails here rather than hanging.
    expect((await oversized.health({}, { timeoutMs: 10_000 })).status).toBe(HealthStatus.SERVING);
  });

  it('answers a malformed protobuf body over Connect with invalid_argument (MALFORMED_REQUEST)', async () => {
    const response = await rawHttp2(server.url, { ':path': HEALTH_PATH, 'content-type': 'application/proto', 'connect-protocol-version': '1' }, MALFORMED_PROTOBUF);
    expect(response.headers[':status']).toBe(400);
    expect(JSON.parse(response.body.toString('utf8'))).toMatchObject({ code: 'invalid_argument' });
    expect(JSON.parse(String(response.headers[AIRLOCK_ERROR_HEADER]))).toMatchObject({ code: 'MALFORMED_REQUEST' });
    expect((await client.health({})).status).toBe(HealthStatus.SERVING);
  });

  it('answers a malformed protobuf body over gRPC with invalid_argument in the trailers', async () => {
    const response = await rawHttp2(server.url, { ':path': HEALTH_PATH, 'content-type': 'application/grpc+proto', te: 'trailers' }, envelope(MALFORMED_PROTOBUF));
    expect(response.headers[':status']).toBe(200);
    expect(response.trailers['grpc-status']).toBe(String(Code.InvalidArgument));
    expect(JSON.parse(String(response.trailers[AIRLOCK_ERROR_HEADER]))).toMatchObject({ code: 'MALFORMED_REQUEST' });
    expect((await client.health({})).status).toBe(HealthStatus.SERVING);
  });

  it('answers a malformed protobuf body over gRPC-web with invalid_argument in the trailer frame', async () => {
    const response = await rawHttp2(server.url, { ':path': HEALTH_PATH, 'content-type': 'application/grpc-web+proto' }, envelope(MALFORMED_PROTOBUF));
    expect(response.headers[':status']).toBe(200);
    const trailer = grpcWebTrailer(response.body);
    expect(trailer['grpc-status']).toBe(String(Code.InvalidArgument));
    expect(JSON.parse(decodeURIComponent(trailer[AIRLOCK_ERROR_HEADER] ?? '{}'))).toMatchObject({ code: 'MALFORMED_REQUEST' });
  });

  it('answers a truncated gRPC envelope and malformed JSON with invalid_argument too', async () => {
    const truncated = await rawHttp2(server.url, { ':path': HEALTH_PATH, 'content-type': 'application/grpc', te: 'trailers' }, Buffer.from([0, 0, 0, 0, 9, 1]));
    expect(truncated.trailers['grpc-status'] ?? truncated.headers['grpc-status']).toBe(String(Code.InvalidArgument));
    const json = await rawHttp2(server.url, { ':path': HEALTH_PATH, 'content-type': 'application/json', 'connect-protocol-version': '1' }, Buffer.from('{"status":'));
    expect(json.headers[':status']).toBe(400);
    expect(JSON.parse(json.body.toString('utf8'))).toMatchObject({ code: 'invalid_argument' });
  });

  it.each([
    ['garbage bytes', Buffer.from('\x00\xff\x13garbage that is not TLS\r\n\r\n'.repeat(20), 'binary')],
    ['plaintext HTTP/1.0', Buffer.from('GET /health HTTP/1.0\r\n\r\n')],
    ['a plaintext HTTP/2 preface', Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')],
  ])('sends no HTTP answer to %s on the TLS port, and keeps serving', async (_name, bytes) => {
    const reply = await rawTcp(server.port, bytes);
    expect(reply.toString('latin1')).not.toMatch(/HTTP\/|SERVING|healthz/);
    expect((await client.health({})).status).toBe(HealthStatus.SERVING);
  });

  it('answers an HTTP/1.0 request without Host over TLS with 400 instead of crashing', async () => {
    const reply = await new Promise<string>((resolve, reject) => {
      let text = '';
      const socket = tls.connect({ ...tlsClientOptions({ ca: ca.cert }), host: '127.0.0.1', port: server.port, servername: 'localhost', ALPNProtocols: ['http/1.1'] }, () =>
        socket.write(`POST ${HEALTH_PATH} HTTP/1.0\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}`),
      );
      socket.setEncoding('utf8');
      socket.on('data', (chunk: string) => (text += chunk));
      socket.on('end', () => resolve(text));
      socket.on('error', reject);
    });
    expect(reply).toMatch(/^HTTP\/1\.[01] 400 /);
    expect((await client.health({})).status).toBe(HealthStatus.SERVING);
  });
});

describe('the connect server keeps genuine internal errors and fixes streaming decode failures', () => {
  let extra: ConnectServer;
  beforeAll(async () => {
    const leaf = await issueServerCertificate({ ca, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
    extra = await startConnectServer({
      name: 'extra',
      tls: { cert: leaf.cert, key: leaf.key },
      log: logs.log,
      routes: (router) => {
        router.service(EchoService, {
          // A handler whose own downstream call failed to parse a reply: that is the server's fault.
          echo: () => {
            throw new ConnectError('parse binary: downstream reply', Code.Internal);
          },
        });
        router.service(LogService, {
          async *tailLogs(request) {
            yield { offset: request.offset };
          },
        });
      },
    });
  });
  afterAll(async () => {
    await extra?.close();
  });

  it.each([
    ['Connect', () => createConnectTransport({ baseUrl: extra.url, httpVersion: '2', sessionManager: sessionManager(extra.url) })],
    ['gRPC', () => createGrpcTransport({ baseUrl: extra.url, sessionManager: sessionManager(extra.url) })],
    ['gRPC-web', () => createGrpcWebTransport({ baseUrl: extra.url, httpVersion: '1.1', nodeOptions: tlsClientOptions({ ca: ca.cert }) })],
  ] as const)('leaves a handler’s internal "parse binary" error internal over %s', async (_name, makeTransport) => {
    const echo = createClient(EchoService, makeTransport());
    expect((await callError(echo.echo({ payload: new Uint8Array([1]) }))).code).toBe(Code.Internal);
    // The streaming RPC still works normally.
    const logsClient = createClient(LogService, makeTransport());
    const received: bigint[] = [];
    for await (const message of logsClient.tailLogs({ offset: 7n })) received.push(message.offset);
    expect(received).toEqual([7n]);
  });

  it('answers a malformed request to a server-streaming RPC with invalid_argument over gRPC and Connect', async () => {
    const path = '/airlock.v1.LogService/TailLogs';
    const grpc = await rawHttp2(extra.url, { ':path': path, 'content-type': 'application/grpc', te: 'trailers' }, envelope(MALFORMED_PROTOBUF));
    expect(grpc.trailers['grpc-status']).toBe(String(Code.InvalidArgument));

    const connect = await rawHttp2(extra.url, { ':path': path, 'content-type': 'application/connect+proto', 'connect-protocol-version': '1' }, envelope(MALFORMED_PROTOBUF));
    expect(connect.headers[':status']).toBe(200);
    // The end-stream message (flag 0x02) carries the error as JSON.
    expect(connect.body[0]).toBe(0x02);
    expect(JSON.parse(connect.body.subarray(5).toString('utf8'))).toMatchObject({ error: { code: 'invalid_argument' } });
  });
});

describe('client certificates from a foreign CA', () => {
  // A server that asks for client certificates but has no further check (no isAllowed): the CA is
  // the only thing standing between a foreign certificate and the handler.
  let guarded: ConnectServer;
  let guardedLogs: ReturnType<typeof captureLogger>;
  let own: CertificateKeyPair;
  let foreign: CertificateKeyPair;
  const handled: Array<boolean | undefined> = [];
  beforeAll(async () => {
    const leaf = await issueServerCertificate({ ca, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
    own = await issueClientCertificate({ ca, uri: 'spiffe://airlock/cluster/alpha' });
    // Same subject and identity as the test CA's, but another key: only the signature tells them apart.
    const foreignCa = await createCertificateAuthority({ commonName: 'api server test CA' });
    foreign = await issueClientCertificate({ ca: foreignCa, uri: 'spiffe://airlock/cluster/alpha' });
    guardedLogs = captureLogger('guarded');
    guarded = await startConnectServer({
      name: 'guarded',
      tls: { cert: leaf.cert, key: leaf.key },
      clientCertificates: { ca: ca.cert },
      log: guardedLogs.log,
      routes: (router) => {
        router.service(EchoService, {
          echo: (request, context) => {
            handled.push(context.values.get(tlsPeerKey)?.authorized);
            return { payload: request.payload };
          },
        });
      },
    });
  });
  afterAll(async () => {
    await guarded?.close();
  });

  function echoClient(credentials: CertificateKeyPair): Client<typeof EchoService> {
    const manager = new Http2SessionManager(guarded.url, {}, tlsClientOptions({ ca: ca.cert, cert: credentials.cert, key: credentials.key }));
    managers.push(manager);
    return createClient(EchoService, createGrpcTransport({ baseUrl: guarded.url, sessionManager: manager }));
  }

  it('the connect server closes the connection after the handshake, before any handler runs', async () => {
    // The control: a certificate from the trusted CA reaches the handler.
    expect((await echoClient(own).echo({ payload: new Uint8Array([1, 2]) })).payload).toEqual(new Uint8Array([1, 2]));
    expect(handled).toEqual([true]);

    // callError throws unless the call fails; the handler never saw it.
    await callError(echoClient(foreign).echo({ payload: new Uint8Array([3]) }));
    expect(handled).toEqual([true]);
    expect(guardedLogs.lines.some((line) => line.event === 'guarded.client_refused' && line.reason === 'untrusted-certificate')).toBe(true);
  });

  it('the API server takes no identity from a client certificate: a foreign one with no token is unauthenticated', async () => {
    const manager = new Http2SessionManager(server.url, {}, tlsClientOptions({ ca: ca.cert, cert: foreign.cert, key: foreign.key }));
    managers.push(manager);
    const client = createClient(AirlockService, createGrpcTransport({ baseUrl: server.url, sessionManager: manager }));
    expect(await codes(client.whoAmI({}))).toEqual([Code.Unauthenticated, 'AUTH_MISSING']);
  });
});
