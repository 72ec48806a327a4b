// Check stack.reachable: the stack is up — its plane processes run and every endpoint answers a TLS handshake — before any TLS-policy check is believed.
import { checkResult, type Check, type CheckResult, type Evidence } from '../check.js';
import { stackProcessRunning, type StackEndpoint } from '../endpoints-file.js';
import { endpointAddress } from '../internal/endpoint-address.js';
import { tlsHandshake } from '../internal/tls-probe.js';

/** Failures that mean nothing answered: an outage, not a TLS-policy finding. */
const NO_ANSWER: ReadonlySet<string> = new Set(['ECONNREFUSED', 'ECONNRESET', 'TIMEOUT', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN']);

/** How long an endpoint may take to answer; a process out of descriptors leaves connections unanswered in the backlog. */
const REACH_TIMEOUT_MS = 5000;

async function reach(endpoint: StackEndpoint, ca: string, signal: AbortSignal): Promise<{ evidence: string; problem?: string }> {
  const address = endpointAddress(endpoint.url);
  if (address === undefined) return { evidence: 'unparseable URL', problem: `${endpoint.name}: cannot parse the URL ${endpoint.url}` };
  const result = await tlsHandshake(address.host, address.port, { ca, signal, timeoutMs: REACH_TIMEOUT_MS });
  if (result.outcome !== 'failed') return { evidence: `answered (${result.protocol ?? '?'})` };
  const error = result.error ?? 'unknown';
  // A TLS alert or an unverifiable certificate is an answer: the TLS checks judge it.
  if (!NO_ANSWER.has(error)) return { evidence: `answered; handshake failed (${error})` };
  return { evidence: `unreachable (${error})`, problem: `${endpoint.name} (${address.hostPort}) is unreachable: ${error}` };
}

export const stackReachableCheck: Check = {
  id: 'stack.reachable',
  title: 'The stack is up: its processes run and every endpoint answers',
  gate: true,
  async run(ctx, signal): Promise<CheckResult> {
    const file = ctx.endpointsFile;
    const evidence: Evidence = {};
    const problems: string[] = [];
    for (const [name, pid] of [['controlPlane', file.pids?.controlPlane], ['dataPlane', file.pids?.dataPlane]] as const) {
      if (pid === undefined) continue;
      const running = await stackProcessRunning(file, pid);
      evidence[`${name}Pid`] = pid;
      evidence[`${name}Running`] = running;
      if (!running) problems.push(`the ${name === 'controlPlane' ? 'control' : 'data'} plane process (pid ${pid}) is not running`);
    }
    const reached = await Promise.all(file.endpoints.map(async (endpoint) => [endpoint.name, await reach(endpoint, ctx.caPem, signal)] as const));
    for (const [name, outcome] of reached) {
      evidence[name] = outcome.evidence;
      if (outcome.problem !== undefined) problems.push(outcome.problem);
    }
    if (file.endpoints.length === 0) problems.push('endpoints.json lists no endpoints');
    if (problems.length > 0) {
      evidence.problems = problems;
      return checkResult(stackReachableCheck, 'fail', evidence, { summary: `OUTAGE: ${problems[0] ?? ''}`, details: problems.join('\n') });
    }
    return checkResult(stackReachableCheck, 'pass', evidence, { summary: `${file.endpoints.length} endpoints answer; plane processes running` });
  },
};
