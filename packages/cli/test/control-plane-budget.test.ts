// `airlock control-plane serve` creates one connection budget from its descriptor limit and gives it to all three listeners: a flood on one port makes the others refuse too.
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { request } from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tlsClientOptions } from '@airlock/pki';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { interrupt, startCli } from './run-cli.js';

/** The plane's descriptor limit (prlimit, soft = hard): its budget is 256 − min(1024, 256 / 4) = 192 public connections. */
const DESCRIPTOR_LIMIT = 256;
const BUDGET = 192;
/**
 * More raw connections than the budget, yet fewer than the plane could hold without one (its own ~40
 * descriptors + 210 < 256) and far below the tunnel listener's own caps (4,096, 1,024 per address):
 * only a process budget refuses any of them.
 */
const FLOOD = 210;

let root: string;
let plane: Awaited<ReturnType<typeof startCli>> | undefined;
let ports: { api: number; dispatch: number; tunnel: number };
let ca: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'airlock-cp-budget-'));
  const dataDir = join(root, 'data');
  plane = await startCli(
    ['control-plane', 'serve', '--data-dir', dataDir, '--api-port', '0', '--dispatch-port', '0', '--tunnel-port', '0', '--log-level', 'warn'],
    /Press Ctrl-C to stop/,
    // Raw connections that send nothing stay until the handshake timeout: long enough for the test.
    { AIRLOCK_LISTENER_HANDSHAKE_TIMEOUT_MS: '120000' },
    ['prlimit', `--nofile=${DESCRIPTOR_LIMIT}:${DESCRIPTOR_LIMIT}`, '--'],
  );
  const endpoint = JSON.parse(await readFile(join(dataDir, 'control-plane', 'endpoint.json'), 'utf8')) as { api: string; dispatch: string; tunnel: string; caBundle: string };
  ports = { api: Number(new URL(endpoint.api).port), dispatch: Number(new URL(endpoint.dispatch).port), tunnel: Number(new URL(endpoint.tunnel).port) };
  ca = await readFile(endpoint.caBundle, 'utf8');
}, 120_000);

afterAll(async () => {
  if (plane !== undefined) await interrupt(plane.child);
  await rm(root, { recursive: true, force: true });
});

/** Opens `count` raw TCP connections, sending nothing; counts those the server closed within `waitMs`. */
async function openRaw(port: number, count: number, waitMs: number): Promise<{ sockets: net.Socket[]; refused: () => number }> {
  const sockets: net.Socket[] = [];
  let refused = 0;
  for (let i = 0; i < count; i++) {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.on('error', () => undefined);
    socket.once('close', () => refused++);
    await once(socket, 'connect');
    sockets.push(socket);
  }
  await new Promise((resolve) => setTimeout(resolve, waitMs));
  return { sockets, refused: () => refused };
}

/** GET /health on a new connection: the status, or the error code. */
function health(port: number): Promise<number | string> {
  return new Promise((resolve) => {
    const req = request({ ...tlsClientOptions({ ca }), host: '127.0.0.1', port, path: '/health', servername: 'localhost', agent: false, timeout: 10_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
    req.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? 'error'));
    req.end();
  });
}

describe('airlock control-plane serve: one connection budget for the API, dispatch and tunnel listeners', () => {
  it('a flood on the tunnel port spends the budget; the API and dispatch listeners then refuse new clients too, and serve again once it goes', async () => {
    expect(await health(ports.api)).toBe(200);
    expect(await health(ports.dispatch)).toBe(200);
    // Let the health checks' connections close, so that the flood alone holds the budget.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const flood = await openRaw(ports.tunnel, FLOOD, 1000);
    try {
      expect(flood.refused()).toBe(FLOOD - BUDGET);
      // Nowhere near their own caps, yet they refuse: the process has no budget left.
      const api = await openRaw(ports.api, 1, 500);
      const dispatch = await openRaw(ports.dispatch, 1, 500);
      expect([api.refused(), dispatch.refused()]).toEqual([1, 1]);
      expect(await health(ports.api)).toMatch(/^(ECONNRESET|EPIPE)$/);
    } finally {
      for (const socket of flood.sockets) socket.destroy();
    }
    const deadline = Date.now() + 15_000;
    let answer = await health(ports.api);
    while (answer !== 200 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      answer = await health(ports.api);
    }
    expect(answer).toBe(200);
    expect(await health(ports.dispatch)).toBe(200);
  });
});
