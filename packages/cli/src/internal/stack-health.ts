// What `airlock status` asks each service of a running stack: a real request per service (KMS ListKeys, S3 ListBuckets, the API's Health), and what the TLS handshake negotiated.
import { request, type RequestOptions } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { failureReason } from '@airlock/common';
import { signRequest } from '@airlock/crypto';
import { createAwsKms } from '@airlock/kms';
import { tlsClientOptions } from '@airlock/pki';
import type { StackEndpoint } from '@airlock/verify';

/** healthy: the service answered its request; degraded: it answered, but cannot do its job (e.g. its KMS is unreachable); down: no answer. */
export type ServiceHealth = 'healthy' | 'degraded' | 'down';

export interface EndpointHealth {
  readonly name: string;
  readonly plane: string;
  readonly url: string;
  readonly health: ServiceHealth;
  /** The request made, e.g. `KMS ListKeys (authenticated)`. */
  readonly check: string;
  /** Why it is not healthy: an errno (`EMFILE`, `ECONNREFUSED`), `ETIMEDOUT`, an HTTP status or error code, or words. */
  readonly reason?: string;
  /** What the TLS handshake negotiated, e.g. `TLSv1.3, TLS_AES_256_GCM_SHA384`, when one completed. */
  readonly tls?: string;
  /**
   * The object store's KMS key-event subscription (its /health): `live` (keys cached for minutes,
   * revoked the moment their KMS key changes), or not (`down`, `late`, `connecting`, `unsupported`,
   * `off`: keys cached at most 1 s). Absent for other services, and for a store that does not say.
   */
  readonly keyEvents?: string;
  /**
   * The key-event subscriptions of the data plane's other holders of key material, each its own
   * (its /health's `keyEventHolders`): `sealing-keys`, the agent's sealing keys. Same states as
   * `keyEvents`. Absent for other services, and for a store that reports none.
   */
  readonly keyEventHolders?: Readonly<Record<string, string>>;
}

export interface StackHealthContext {
  readonly ca: string;
  readonly region: string;
  readonly credentials: { readonly accessKeyId: string; readonly secretAccessKey: string };
  /** Per-request time limit. @default 5000 */
  readonly timeoutMs?: number;
}

interface HttpAnswer {
  readonly status: number;
  readonly body: string;
  readonly tls: string | undefined;
}

type Outcome = { readonly ok: true; readonly answer: HttpAnswer } | { readonly ok: false; readonly reason: string; readonly tls: string | undefined };

const negotiated = (socket: TLSSocket | null | undefined): string | undefined => {
  const protocol = socket?.getProtocol?.();
  return protocol === null || protocol === undefined ? undefined : `${protocol}, ${socket?.getCipher?.().name ?? '?'}`;
};

/** One HTTPS request on a fresh connection (no pooling: each probe proves the service accepts a new client). Never throws. */
function exchange(url: URL, options: RequestOptions, body: string | undefined, timeoutMs: number): Promise<Outcome> {
  return new Promise((resolve) => {
    let tls: string | undefined;
    const req = request(url, { ...options, agent: false, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ ok: true, answer: { status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), tls: negotiated(res.socket as TLSSocket) } }));
      res.on('error', (error) => resolve({ ok: false, reason: failureReason(error), tls }));
    });
    req.on('socket', (socket) => socket.once('secureConnect', () => (tls = negotiated(socket as TLSSocket))));
    // A listener that cannot accept (its process out of descriptors) leaves the connection in the backlog: a timeout.
    req.on('timeout', () => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
    req.on('error', (error) => resolve({ ok: false, reason: failureReason(error), tls }));
    req.end(body);
  });
}

const tlsOptions = (ctx: StackHealthContext): RequestOptions => tlsClientOptions({ ca: ctx.ca });

/** The KMS: an authenticated ListKeys with the stack's own access key. */
async function kmsHealth(endpoint: StackEndpoint, ctx: StackHealthContext, timeoutMs: number): Promise<EndpointHealth> {
  const check = 'KMS ListKeys (authenticated)';
  const base = { name: endpoint.name, plane: endpoint.plane, url: endpoint.url, check };
  const kms = createAwsKms({ endpoint: endpoint.url, region: ctx.region, credentials: ctx.credentials, caBundle: ctx.ca, maxAttempts: 1, requestTimeoutMs: timeoutMs, pool: { maxSockets: 1, maxFreeSockets: 1 } });
  try {
    const keys = await kms.listKeys();
    const probe = await exchange(new URL('/health', endpoint.url), tlsOptions(ctx), undefined, timeoutMs);
    const tls = probe.ok ? probe.answer.tls : probe.tls;
    return { ...base, health: 'healthy', check: `${check}: ${keys.length} key${keys.length === 1 ? '' : 's'}`, ...(tls === undefined ? {} : { tls }) };
  } catch (error) {
    // The KMS answered with an error of its own (awsErrorType): up, but not serving.
    const answered = typeof (error as { details?: { awsErrorType?: unknown } }).details?.awsErrorType === 'string';
    return { ...base, health: answered ? 'degraded' : 'down', reason: failureReason(error) };
  } finally {
    kms.destroy();
  }
}

/** The object store: a SigV4-signed ListBuckets, then its /health, which reports whether the store can reach its KMS. */
async function objectStoreHealth(endpoint: StackEndpoint, ctx: StackHealthContext, timeoutMs: number): Promise<EndpointHealth> {
  const check = 'S3 ListBuckets (signed)';
  const base = { name: endpoint.name, plane: endpoint.plane, url: endpoint.url, check };
  const url = new URL('/', endpoint.url);
  const signed = signRequest({
    method: 'GET',
    path: '/',
    headers: { host: url.host },
    credentials: ctx.credentials,
    region: ctx.region,
    service: 's3',
  });
  const listed = await exchange(url, { ...tlsOptions(ctx), method: 'GET', headers: { host: url.host, ...signed.headers } }, undefined, timeoutMs);
  if (!listed.ok) return { ...base, health: 'down', reason: listed.reason, ...(listed.tls === undefined ? {} : { tls: listed.tls }) };
  const tls = listed.answer.tls === undefined ? {} : { tls: listed.answer.tls };
  if (listed.answer.status !== 200) {
    const code = /<Code>([^<]{1,64})<\/Code>/.exec(listed.answer.body)?.[1];
    return { ...base, health: 'degraded', reason: `HTTP ${listed.answer.status}${code === undefined ? '' : ` ${code}`}`, ...tls };
  }
  const buckets = (listed.answer.body.match(/<Bucket>/g) ?? []).length;
  const listedCheck = `${check}: ${buckets} bucket${buckets === 1 ? '' : 's'}`;
  const health = await exchange(new URL('/health', endpoint.url), tlsOptions(ctx), undefined, timeoutMs);
  if (!health.ok) return { ...base, check: listedCheck, health: 'degraded', reason: `/health: ${health.reason}`, ...tls };
  const report = parseJson(health.answer.body) as { kms?: unknown; reason?: unknown; keyEvents?: unknown; keyEventHolders?: unknown } | undefined;
  const stateOf = (value: unknown): string | undefined => (typeof value === 'string' && /^[a-z]{1,16}$/.test(value) ? value : undefined);
  const own = stateOf(report?.keyEvents);
  const keyEvents = own === undefined ? {} : { keyEvents: own };
  const holders = Object.entries(typeof report?.keyEventHolders === 'object' && report.keyEventHolders !== null ? report.keyEventHolders : {}).flatMap(([name, state]): Array<[string, string]> => {
    const shown = stateOf(state);
    return /^[a-z]+(-[a-z]+)*$/.test(name) && name.length <= 32 && shown !== undefined ? [[name, shown]] : [];
  });
  const keyEventHolders = holders.length === 0 ? {} : { keyEventHolders: Object.fromEntries(holders) };
  if (health.answer.status !== 200 || report?.kms !== 'ok') {
    const why = typeof report?.reason === 'string' ? report.reason : `HTTP ${health.answer.status}`;
    return { ...base, check: listedCheck, health: 'degraded', reason: `KMS unreachable from the object store (${why})`, ...tls, ...keyEvents, ...keyEventHolders };
  }
  // Not live is still healthy: each holder falls back to the 1 s bound, as without key events.
  const subscriptions: Array<[string, string]> = [...(own === undefined ? [] : [['object store', own] as [string, string]]), ...holders];
  const described = subscriptions.map(([name, state]) => `${name} ${state}${state === 'live' ? '' : ' (revocation within 1 s)'}`);
  const events = described.length === 0 ? '' : `; KMS key events: ${described.join(', ')}`;
  return { ...base, check: `${listedCheck}; its KMS reachable${events}`, health: 'healthy', ...tls, ...keyEvents, ...keyEventHolders };
}

/** The API: the Connect Health call (no credentials needed), which must answer SERVING. */
async function apiHealth(endpoint: StackEndpoint, ctx: StackHealthContext, timeoutMs: number): Promise<EndpointHealth> {
  const check = 'API Health (Connect)';
  const base = { name: endpoint.name, plane: endpoint.plane, url: endpoint.url, check };
  const outcome = await exchange(
    new URL('/airlock.v1.AirlockService/Health', endpoint.url),
    { ...tlsOptions(ctx), method: 'POST', headers: { 'content-type': 'application/json', 'connect-protocol-version': '1' } },
    '{}',
    timeoutMs,
  );
  if (!outcome.ok) return { ...base, health: 'down', reason: outcome.reason, ...(outcome.tls === undefined ? {} : { tls: outcome.tls }) };
  const tls = outcome.answer.tls === undefined ? {} : { tls: outcome.answer.tls };
  const status = (parseJson(outcome.answer.body) as { status?: unknown } | undefined)?.status;
  if (outcome.answer.status === 200 && status === 'HEALTH_STATUS_SERVING') return { ...base, health: 'healthy', check: `${check}: SERVING`, ...tls };
  return { ...base, health: 'degraded', reason: `HTTP ${outcome.answer.status}${typeof status === 'string' ? ` ${status}` : ''}`, ...tls };
}

/** Dispatch: GET /health (its RPCs need the agent's certificate). */
async function dispatchHealth(endpoint: StackEndpoint, ctx: StackHealthContext, timeoutMs: number): Promise<EndpointHealth> {
  const base = { name: endpoint.name, plane: endpoint.plane, url: endpoint.url, check: 'GET /health' };
  const outcome = await exchange(new URL('/health', endpoint.url), tlsOptions(ctx), undefined, timeoutMs);
  if (!outcome.ok) return { ...base, health: 'down', reason: outcome.reason, ...(outcome.tls === undefined ? {} : { tls: outcome.tls }) };
  const tls = outcome.answer.tls === undefined ? {} : { tls: outcome.answer.tls };
  return outcome.answer.status === 200 ? { ...base, health: 'healthy', ...tls } : { ...base, health: 'degraded', reason: `HTTP ${outcome.answer.status}`, ...tls };
}

/** The tunnel wants the agent's certificate: a completed TLS handshake (then a refusal) is all a client without one can see. */
async function tunnelHealth(endpoint: StackEndpoint, ctx: StackHealthContext, timeoutMs: number): Promise<EndpointHealth> {
  const base = { name: endpoint.name, plane: endpoint.plane, url: endpoint.url, check: 'TLS handshake (client certificate required)' };
  const outcome = await exchange(new URL('/', endpoint.url), tlsOptions(ctx), undefined, timeoutMs);
  const tls = outcome.ok ? outcome.answer.tls : outcome.tls;
  if (tls !== undefined) return { ...base, health: 'healthy', tls };
  return { ...base, health: 'down', reason: outcome.ok ? 'no TLS session' : outcome.reason };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

const PROBES: Readonly<Record<string, (endpoint: StackEndpoint, ctx: StackHealthContext, timeoutMs: number) => Promise<EndpointHealth>>> = {
  kms: kmsHealth,
  objectstore: objectStoreHealth,
  api: apiHealth,
  dispatch: dispatchHealth,
  tunnel: tunnelHealth,
};

/** Probes every endpoint at once. Never throws. */
export async function probeStack(endpoints: readonly StackEndpoint[], ctx: StackHealthContext): Promise<EndpointHealth[]> {
  const timeoutMs = ctx.timeoutMs ?? 5000;
  return Promise.all(
    endpoints.map(async (endpoint) => {
      const probe = PROBES[endpoint.name] ?? dispatchHealth;
      return probe(endpoint, ctx, timeoutMs).catch(
        (error: unknown): EndpointHealth => ({ name: endpoint.name, plane: endpoint.plane, url: endpoint.url, check: 'probe', health: 'down', reason: failureReason(error) }),
      );
    }),
  );
}

/** The stack's overall health: the worst of its services. */
export function overallHealth(results: readonly EndpointHealth[]): ServiceHealth {
  if (results.some((r) => r.health === 'down')) return 'down';
  if (results.some((r) => r.health === 'degraded')) return 'degraded';
  return 'healthy';
}
