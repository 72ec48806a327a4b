// End to end: `airlock status`, `airlock verify` and `airlock down` against a real `airlock up` stack, healthy and with injected outages (a stopped data plane, a closed port).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isProcessRunning, processIdentity } from '@airlock/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { interrupt, runCli, startCli } from './run-cli.js';

const PORT_FLAGS = ['--api-port', '0', '--dispatch-port', '0', '--tunnel-port', '0', '--kms-port', '0', '--s3-port', '0'];

interface StatusJson {
  running: boolean;
  health: 'healthy' | 'degraded' | 'down';
  endpoints: Array<{ name: string; health: 'healthy' | 'degraded' | 'down'; check: string; reason?: string; tls?: string }>;
}
interface VerifyJson {
  ok: boolean;
  checks: Array<{ id: string; status: 'pass' | 'fail' | 'skip'; evidence: Record<string, unknown>; details?: string }>;
}
interface DownJson {
  stopped: boolean;
  processes: Array<{ name: string; pid: number; outcome: string; signalled: string[] }>;
}
interface UpEndpoints {
  pid: number;
  pids: { controlPlane: number; dataPlane: number };
  endpoints: Array<{ name: string; plane: string; url: string }>;
}

let dir: string;
let up: Awaited<ReturnType<typeof startCli>> | undefined;
const endpointsPath = (): string => join(dir, 'endpoints.json');
const readEndpoints = async (): Promise<UpEndpoints> => JSON.parse(await readFile(endpointsPath(), 'utf8')) as UpEndpoints;
/** An endpoints.json naming these processes and no endpoints. */
const stackFile = (pid: number, pids: { controlPlane: number; dataPlane: number }): Record<string, unknown> => ({
  version: 1,
  region: 'us-east-1',
  caBundle: join(dir, 'ca', 'ca.pem'),
  credentials: { file: join(dir, 'kms', 'credentials'), profile: 'default' },
  endpoints: [],
  pid,
  pids,
  startedAt: new Date().toISOString(),
});
const byName = (status: StatusJson, name: string): StatusJson['endpoints'][number] | undefined => status.endpoints.find((e) => e.name === name);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'airlock-cli-health-'));
  up = await startCli(['up', '--data-dir', dir, ...PORT_FLAGS, '--log-level', 'warn'], /Press Ctrl-C/);
}, 120_000);

afterAll(async () => {
  if (up !== undefined && up.child.exitCode === null) await interrupt(up.child);
  await rm(dir, { recursive: true, force: true });
});

/** A port nothing listens on: bound, then released. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('airlock status', () => {
  it('makes a real request on each service and reports every one healthy, with its TLS session (table and --json)', async () => {
    const result = await runCli(['status', '--data-dir', dir, '--json']);
    expect(result.code).toBe(0);
    const status = JSON.parse(result.stdout) as StatusJson;
    expect(status.health).toBe('healthy');
    expect(status.endpoints.map((e) => [e.name, e.health])).toEqual([
      ['api', 'healthy'],
      ['dispatch', 'healthy'],
      ['tunnel', 'healthy'],
      ['kms', 'healthy'],
      ['objectstore', 'healthy'],
    ]);
    expect(byName(status, 'kms')?.check).toMatch(/^KMS ListKeys \(authenticated\): \d+ keys?$/);
    // Each holder of key material in the data plane on its own key-event subscription: the object store's key cache, and the agent's sealing keys.
    expect(byName(status, 'objectstore')?.check).toMatch(/^S3 ListBuckets \(signed\): \d+ buckets?; its KMS reachable; KMS key events: object store live, sealing-keys live$/);
    expect(byName(status, 'objectstore')).toMatchObject({ keyEvents: 'live', keyEventHolders: { 'sealing-keys': 'live' } });
    expect(byName(status, 'api')?.check).toBe('API Health (Connect): SERVING');
    for (const endpoint of status.endpoints) expect(endpoint.tls).toMatch(/^TLSv1\.3, TLS_AES_256_GCM_SHA384$/);

    const table = await runCli(['status', '--data-dir', dir]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/SERVICE\s+PLANE\s+ENDPOINT\s+HEALTH\s+DETAILS/);
    expect(table.stdout).toMatch(/kms\s+data\s+https:\/\/127\.0\.0\.1:\d+\s+healthy\s+KMS ListKeys \(authenticated\): \d+ keys? \(TLSv1\.3, TLS_AES_256_GCM_SHA384\)/);
    expect(table.stdout).toMatch(/objectstore\s+data\s+\S+\s+healthy\s+.*KMS key events: object store live, sealing-keys live/);
    expect(table.stdout).toMatch(/Overall: healthy/);
  });

  it('a KMS endpoint on a closed port: status shows the KMS down (ECONNREFUSED), verify reports an outage and runs no TLS check', async () => {
    const saved = join(dir, 'endpoints.saved.json');
    await copyFile(endpointsPath(), saved);
    try {
      const file = await readEndpoints();
      const port = await closedPort();
      const broken = { ...file, endpoints: file.endpoints.map((e) => (e.name === 'kms' ? { ...e, url: `https://127.0.0.1:${port}` } : e)) };
      await writeFile(endpointsPath(), JSON.stringify(broken, null, 2));

      const result = await runCli(['status', '--data-dir', dir, '--json']);
      expect(result.code).toBe(1);
      const status = JSON.parse(result.stdout) as StatusJson;
      expect(status.health).toBe('down');
      expect(byName(status, 'kms')).toMatchObject({ health: 'down', reason: 'ECONNREFUSED' });
      expect(byName(status, 'api')?.health).toBe('healthy');
      const table = await runCli(['status', '--data-dir', dir]);
      expect(table.stdout).toMatch(/kms\s+data\s+\S+\s+DOWN\s+ECONNREFUSED/);
      expect(table.stdout).toMatch(/Overall: DOWN/);

      const verify = await runCli(['verify', '--data-dir', dir, '--json']);
      expect(verify.code).toBe(1);
      const report = JSON.parse(verify.stdout) as VerifyJson;
      expect(report.ok).toBe(false);
      expect(report.checks[0]).toMatchObject({ id: 'stack.reachable', status: 'fail', evidence: { kms: 'unreachable (ECONNREFUSED)' } });
      expect(report.checks.slice(1).map((c) => [c.id, c.status, c.details])).toEqual(
        ['tls.versions', 'tls.aead-only', 'transport.no-plaintext', 'tunnel.refuses-unauthenticated', 'dataplane.outbound-only', 'controlplane.database-sealed', 'runs.canary', 'kms.kill-switch'].map((id) => [
          id,
          'skip',
          'not run: stack.reachable failed',
        ]),
      );
      const text = await runCli(['verify', '--data-dir', dir]);
      expect(text.stdout).toMatch(/stack\.reachable\s+FAIL\s+OUTAGE: kms \(127\.0\.0\.1:\d+\) is unreachable: ECONNREFUSED/);
      expect(text.stdout).toMatch(/1 failed, 8 skipped\. Verification FAILED: the stack is not reachable \(an outage\)/);
      expect(text.stdout).not.toMatch(/tls\.versions\s+FAIL/);
    } finally {
      await copyFile(saved, endpointsPath());
    }
  });

  it('a stopped data plane (SIGSTOP): the KMS and the object store are down with a timeout, the control plane healthy; verify reports the outage', async () => {
    const { pids } = await readEndpoints();
    process.kill(pids.dataPlane, 'SIGSTOP');
    try {
      const result = await runCli(['status', '--data-dir', dir, '--json', '--timeout', '1500']);
      expect(result.code).toBe(1);
      const status = JSON.parse(result.stdout) as StatusJson;
      expect(byName(status, 'kms')).toMatchObject({ health: 'down', reason: 'ETIMEDOUT' });
      expect(byName(status, 'objectstore')).toMatchObject({ health: 'down', reason: 'ETIMEDOUT' });
      expect(byName(status, 'api')?.health).toBe('healthy');

      const verify = await runCli(['verify', '--data-dir', dir, '--json']);
      const report = JSON.parse(verify.stdout) as VerifyJson;
      expect(report.checks[0]).toMatchObject({ id: 'stack.reachable', status: 'fail', evidence: { kms: 'unreachable (TIMEOUT)', objectstore: 'unreachable (TIMEOUT)' } });
      expect(report.checks.filter((c) => c.status === 'fail').map((c) => c.id)).toEqual(['stack.reachable']);
    } finally {
      process.kill(pids.dataPlane, 'SIGCONT');
    }
    // Resumed, it serves again.
    const again = await runCli(['status', '--data-dir', dir, '--json']);
    expect((JSON.parse(again.stdout) as StatusJson).health).toBe('healthy');
  });
});

describe('airlock down', () => {
  it('stops a running stack and says which process it signalled and which airlock up stopped', async () => {
    const { pid, pids } = await readEndpoints();
    const result = await runCli(['down', '--data-dir', dir, '--json']);
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout) as DownJson;
    expect(report.stopped).toBe(true);
    expect(report.processes).toEqual([
      { name: 'airlock up', pid, outcome: 'stopped', signalled: ['SIGTERM'] },
      { name: 'control plane', pid: pids.controlPlane, outcome: 'stopped', signalled: [] },
      { name: 'data plane', pid: pids.dataPlane, outcome: 'stopped', signalled: [] },
    ]);
    await expect(readFile(endpointsPath())).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await runCli(['status', '--data-dir', dir])).toMatchObject({ code: 3 });
  }, 60_000);

  it('processes that had already exited are reported so, not as a timeout; one that ignores SIGTERM is killed', async () => {
    // Recorded while it ran, then gone: even if the pid is handed to another process meanwhile (a busy machine), its start time tells them apart.
    const exited = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)']);
    const exitedIdentity = await processIdentity(exited.pid as number);
    exited.kill('SIGKILL');
    await once(exited, 'exit');
    const stubborn = spawn(process.execPath, ['-e', "process.on('SIGTERM', () => {}); process.stdout.write('ready\\n'); setInterval(() => {}, 1000);"]);
    await once(stubborn.stdout, 'data');
    const stubbornExit = once(stubborn, 'exit');
    const { pid: exitedPid } = exited;
    const file = {
      ...stackFile(exitedPid as number, { controlPlane: stubborn.pid as number, dataPlane: exitedPid as number }),
      processes: [exitedIdentity, await processIdentity(stubborn.pid as number)],
    };
    await writeFile(endpointsPath(), JSON.stringify(file));
    const result = await runCli(['down', '--data-dir', dir, '--stop-timeout', '1000']);
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toMatch(new RegExp(`airlock up\\s+pid ${exitedPid}\\s+had already exited`));
    expect(result.stdout).toMatch(new RegExp(`control plane\\s+pid ${stubborn.pid}\\s+sent SIGTERM, SIGKILL: still running after 1 s, killed`));
    expect(result.stdout).toMatch(new RegExp(`data plane\\s+pid ${exitedPid}\\s+had already exited`));
    expect(result.stdout).not.toMatch(/TIMEOUT|did not stop/);
    expect((await stubbornExit)[1]).toBe('SIGKILL');
    await expect(readFile(endpointsPath())).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('a pid that now belongs to another process (its start time differs from the recorded one) is never signalled', async () => {
    const stranger = spawn(process.execPath, ['-e', "process.stdout.write('ready\\n'); setInterval(() => {}, 1000);"]);
    try {
      await once(stranger.stdout, 'data');
      const identity = await processIdentity(stranger.pid as number);
      if (identity === undefined) throw new Error('no identity');
      const recorded = { ...identity, startTime: String(BigInt(identity.startTime) - 1n) };
      const pid = stranger.pid as number;
      await writeFile(endpointsPath(), JSON.stringify({ ...stackFile(pid, { controlPlane: pid, dataPlane: pid }), processes: [recorded] }));
      // status and verify see no stack; down signals nothing and removes the stale file.
      expect(await runCli(['status', '--data-dir', dir])).toMatchObject({ code: 3 });
      const result = await runCli(['down', '--data-dir', dir, '--json']);
      expect(result.code, result.stdout + result.stderr).toBe(0);
      const down = JSON.parse(result.stdout) as DownJson;
      expect(down.processes.map((p) => [p.outcome, p.signalled])).toEqual([
        ['already-exited', []],
        ['already-exited', []],
        ['already-exited', []],
      ]);
      expect(stranger.exitCode).toBeNull();
      expect(stranger.signalCode).toBeNull();
      expect(await isProcessRunning(pid)).toBe(true);
      await expect(readFile(endpointsPath())).rejects.toMatchObject({ code: 'ENOENT' });
    } finally {
      stranger.kill('SIGKILL');
    }
  });
});
