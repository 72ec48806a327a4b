// End to end: `airlock up` in a fresh data directory, then `airlock verify` (table and --json) against it, and with no stack.
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openKmsKeyVault } from '@airlock/data-plane';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectLocalKms } from '../src/internal/kms-client.js';
import { interrupt, runCli, startCli } from './run-cli.js';

/** Polls an async check until it returns a value; fails after `timeoutMs`. */
async function eventuallyAsync<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

interface JsonReport {
  ok: boolean;
  checks: Array<{ id: string; title: string; status: 'pass' | 'fail' | 'skip'; evidence: Record<string, unknown>; details?: string }>;
}

/** Every listener on a free port, so this stack never collides with another test's. */
const PORT_FLAGS = ['--api-port', '0', '--dispatch-port', '0', '--tunnel-port', '0', '--kms-port', '0', '--s3-port', '0'];
const ENDPOINT_NAMES = ['api', 'dispatch', 'tunnel', 'kms', 'objectstore'];

interface UpEndpoints {
  pid: number;
  pids: { controlPlane: number; dataPlane: number };
  client: { tokenFile: string };
  endpoints: Array<{ name: string; plane: string; url: string }>;
}

const readUpEndpoints = async (): Promise<UpEndpoints> => JSON.parse(await readFile(join(dir, 'endpoints.json'), 'utf8')) as UpEndpoints;

let dir: string;
let empty: string;
let up: Awaited<ReturnType<typeof startCli>>;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'airlock-cli-verify-'));
  empty = await mkdtemp(join(tmpdir(), 'airlock-cli-verify-empty-'));
  // At info, so the planes' handshake logs (the seed's "tunnel pod logs" check) reach the output.
  up = await startCli(['up', '--data-dir', dir, ...PORT_FLAGS, '--log-level', 'info'], /Press Ctrl-C/);
}, 90_000);

afterAll(async () => {
  if (up !== undefined) expect(await interrupt(up.child)).toBe(0);
  await rm(dir, { recursive: true, force: true });
  await rm(empty, { recursive: true, force: true });
});

describe('airlock verify', () => {
  it('exits 0 against a fresh `airlock up`, with every check passing and none skipped', async () => {
    const result = await runCli(['verify', '--data-dir', dir]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/CHECK\s+STATUS\s+EVIDENCE/);
    expect(result.stdout).toMatch(/tls\.versions\s+PASS\s+5 endpoints: TLSv1\.3 TLS_AES_256_GCM_SHA384; TLS 1\.0\/1\.1 refused/);
    expect(result.stdout).toMatch(/tls\.aead-only\s+PASS/);
    expect(result.stdout).toMatch(/transport\.no-plaintext\s+PASS/);
    expect(result.stdout).toMatch(/tunnel\.refuses-unauthenticated\s+PASS\s+no certificate: refused; foreign-CA certificate: refused/);
    expect(result.stdout).toMatch(/dataplane\.outbound-only\s+PASS\s+\d+ connections dialled by the data plane/);
    expect(result.stdout).toMatch(/controlplane\.database-sealed\s+PASS\s+canary written as a bootstrap-token reason; absent from \d+ files/);
    expect(result.stdout).toMatch(/stack\.reachable\s+PASS\s+5 endpoints answer; plane processes running/);
    expect(result.stdout).toMatch(/runs\.canary\s+PASS\s+run [0-9a-f]{8}… SUCCEEDED; canary in none of \d+ control-plane files \(\d+ bytes\) and a \d+-byt/);
    expect(result.stdout).toMatch(/kms\.kill-switch\s+PASS\s+GET refused \d+ ms after DisableKey returned \(event path live\); restored on EnableKey/);
    expect(result.stdout).toMatch(/9 passed, 0 failed, 0 skipped\. Verification passed\./);
    // The heap snapshot holds the control plane's memory: it is removed once scanned.
    expect((await readdir(join(dir, 'control-plane', 'diagnostics'))).filter((name) => name.endsWith('.heapsnapshot'))).toEqual([]);
  });

  it('--json parses, is ok, and carries each endpoint\'s negotiated protocol and cipher and the plane processes', async () => {
    const result = await runCli(['verify', '--data-dir', dir, '--json']);
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout) as JsonReport;
    expect(report.ok).toBe(true);
    expect(report.checks.map((c) => [c.id, c.status])).toEqual([
      ['stack.reachable', 'pass'],
      ['tls.versions', 'pass'],
      ['tls.aead-only', 'pass'],
      ['transport.no-plaintext', 'pass'],
      ['tunnel.refuses-unauthenticated', 'pass'],
      ['dataplane.outbound-only', 'pass'],
      ['controlplane.database-sealed', 'pass'],
      ['runs.canary', 'pass'],
      ['kms.kill-switch', 'pass'],
    ]);
    // The kill switch, measured: a GET refused with KMS.DisabledException within the 1 s bound, on the live event path.
    const killSwitch = report.checks[8]?.evidence ?? {};
    expect(killSwitch).toMatchObject({ refusedWith: 'KMS.DisabledException', eventPathLive: true, keyEvents: 'live', restored: true });
    expect(killSwitch.latencyMs).toBeGreaterThanOrEqual(0);
    expect(killSwitch.latencyMs).toBeLessThanOrEqual(1000);
    const canary = report.checks[7]?.evidence ?? {};
    expect(canary.heapSnapshotBytes).toBeGreaterThan(1_000_000);
    expect(canary.found).toEqual([]);
    expect(canary.controlPlaneFiles).toBeGreaterThanOrEqual(3);
    const versions = report.checks[1]?.evidence ?? {};
    const aead = report.checks[2]?.evidence ?? {};
    const endpoints = await readUpEndpoints();
    expect(endpoints.endpoints.map((e) => e.name)).toEqual(ENDPOINT_NAMES);
    for (const { name } of endpoints.endpoints) {
      expect(versions[`${name}.protocol`]).toBe('TLSv1.3');
      expect(versions[`${name}.cipher`]).toBe('TLS_AES_256_GCM_SHA384');
      expect(versions[`${name}.tls1_1`]).toMatch(/^refused/);
      expect(versions[`${name}.tls1`]).toMatch(/^refused/);
      if (name !== 'tunnel') {
        // The tunnel drops a client it does not know right after the handshake, so only the others report a TLS 1.2 session here.
        expect(versions[`${name}.tls1_2`]).toMatch(/^accepted TLSv1\.2 ECDHE-ECDSA-\S+-(GCM-SHA\d+|POLY1305)$/);
        expect((aead[`${name}.tls12`] as string[]).length).toBeGreaterThan(0);
      }
      expect(((aead[`${name}.tls12`] as string[] | undefined) ?? []).every((suite) => /GCM|CHACHA20/.test(suite))).toBe(true);
    }
    // Every listening socket of the stack's processes was found, each endpoint among them, and each owned by one of them.
    const sockets = report.checks[3]?.evidence.sockets as string[];
    for (const { url } of endpoints.endpoints) expect(sockets.some((s) => s.startsWith(`${new URL(url).host} `))).toBe(true);
    const stackPids = [endpoints.pid, endpoints.pids.controlPlane, endpoints.pids.dataPlane];
    expect(sockets.every((s) => stackPids.some((pid) => s.endsWith(`/${pid})`)))).toBe(true);
    const outbound = report.checks[5]?.evidence ?? {};
    expect(outbound.controlPlanePid).toBe(endpoints.pids.controlPlane);
    expect(outbound.dataPlanePid).toBe(endpoints.pids.dataPlane);
    expect(outbound.controlPlaneToDataPlane).toEqual([]);
  });

  it('prints no secret: neither the access key secret nor the CA key appears in the report', async () => {
    const result = await runCli(['verify', '--data-dir', dir, '--json']);
    const credentials = await readFile(join(dir, 'kms', 'credentials'), 'utf8');
    const secret = /aws_secret_access_key = (\S+)/.exec(credentials)?.[1];
    expect(secret).toBeDefined();
    expect(result.stdout).not.toContain(secret as string);
    expect(result.stdout).not.toMatch(/PRIVATE KEY|Master-Key/);
    const token = (await readFile(join(dir, 'client', 'token'), 'utf8')).trim();
    expect(token).toMatch(/^alt_/);
    expect(result.stdout).not.toContain(token);
    expect(await readFile(join(dir, 'endpoints.json'), 'utf8')).not.toContain(token);
  });

  it('the data plane logs each tunnel and dispatch handshake at info (protocol, cipher, peer fingerprint and expiry), and no secret', async () => {
    const lines = up
      .output()
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    const endpoints = await readUpEndpoints();
    for (const event of ['tunnel.handshake', 'dispatch.handshake']) {
      const handshake = lines.find((line) => line.event === event && line.pid === endpoints.pids.dataPlane);
      expect(handshake, event).toBeDefined();
      expect(handshake).toMatchObject({ level: 30, name: 'data-plane', protocol: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384' });
      expect(handshake?.peerFingerprintSha256).toMatch(/^[0-9a-f]{64}$/);
      expect(Date.parse(String(handshake?.peerValidTo))).toBeGreaterThan(Date.now());
    }
    const token = (await readFile(join(dir, 'client', 'token'), 'utf8')).trim();
    const credentials = await readFile(join(dir, 'kms', 'credentials'), 'utf8');
    const secret = /aws_secret_access_key = (\S+)/.exec(credentials)?.[1] ?? 'unreachable';
    // The agent's private key, opened through the data plane's KMS (it is stored only sealed): its second base64 line
    // holds the private scalar (the first is the common ASN.1 header).
    const stored = JSON.parse(await readFile(join(dir, 'data-plane', 'agent', 'credentials.json'), 'utf8')) as { sealedKey: { ciphertext: string } };
    const kms = await connectLocalKms(dir);
    let agentKeyPem: string;
    try {
      const vault = await openKmsKeyVault(kms);
      agentKeyPem = (await vault.open(Buffer.from(stored.sealedKey.ciphertext, 'base64'), { purpose: 'airlock/agent-private-key', cluster: 'local' }, 'the agent key')).toString('utf8');
    } finally {
      kms.destroy();
    }
    const agentKey = agentKeyPem.split('\n')[2] ?? 'unreachable';
    expect(agentKey.length).toBeGreaterThan(40);
    for (const canary of [token, secret, agentKey]) expect(up.output()).not.toContain(canary);
    expect(up.output()).not.toMatch(/alb_[A-Za-z0-9_-]{20}/);
  });

  it('restarts a killed control plane on the same ports; the agent reconnects and verify passes again', async () => {
    const before = await readUpEndpoints();
    process.kill(before.pids.controlPlane, 'SIGKILL');
    const after = await eventuallyAsync('a restarted control plane in endpoints.json', 60_000, async () => {
      const current = await readUpEndpoints().catch(() => undefined);
      return current !== undefined && current.pids.controlPlane !== before.pids.controlPlane ? current : undefined;
    });
    expect(after.endpoints).toEqual(before.endpoints);
    expect(after.pids.dataPlane).toBe(before.pids.dataPlane);
    // The data plane (same process) re-dials the new control plane: outbound-only passes with the new pid.
    const report = await eventuallyAsync('verify passing after the restart', 60_000, async () => {
      const result = await runCli(['verify', '--data-dir', dir, '--json']);
      const parsed = JSON.parse(result.stdout) as JsonReport;
      return parsed.ok ? parsed : undefined;
    });
    expect(report.checks.find((c) => c.id === 'dataplane.outbound-only')?.evidence.controlPlanePid).toBe(after.pids.controlPlane);
    expect(up.output()).toMatch(/The control plane exited \(SIGKILL\); restarting it/);
  }, 150_000);

  it('says "no running stack" and exits 1 when the data directory has no endpoints.json', async () => {
    const result = await runCli(['verify', '--data-dir', empty]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/no running stack/);
    const viaEnv = await runCli(['verify'], { AIRLOCK_DATA_DIR: empty });
    expect(viaEnv.code).toBe(1);
    expect(viaEnv.stderr).toContain(`no running stack in ${empty}`);
  });
});
