// End to end through `airlock up`: the agent's private key is stored sealed under the data plane's KMS key
// (alias/airlock/data-plane), and disabling that key stops the data plane from starting with an error that names the
// key and its state; re-enabling it (with `airlock kms serve` and `airlock keys enable`) lets the stack start again.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { interrupt, runCli, startCli } from './run-cli.js';

const PORT_FLAGS: readonly string[] = ['--api-port', '0', '--dispatch-port', '0', '--tunnel-port', '0', '--kms-port', '0', '--s3-port', '0'];
const KEY = 'alias/airlock/data-plane';
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'airlock-cli-agent-key-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('airlock up: the agent key under the data-plane KMS key', () => {
  it('stores the agent key sealed; a disabled key stops the data plane with the key and its state named; enabling it restores start-up', async () => {
    const first = await startCli(['up', '--data-dir', dir, ...PORT_FLAGS], /Press Ctrl-C/);
    try {
      const stored = await readFile(join(dir, 'data-plane', 'agent', 'credentials.json'), 'utf8');
      expect(stored).not.toContain('PRIVATE KEY');
      expect(JSON.parse(stored)).toMatchObject({ version: 2, sealedKey: { keyId: KEY } });
      const sealingKeys = await readFile(join(dir, 'data-plane', 'agent', 'sealing-keys.json'), 'utf8');
      expect(JSON.parse(sealingKeys)).toMatchObject({ version: 1, sealedKeys: { keyId: KEY } });
      const disabled = await runCli(['keys', 'disable', KEY, '--data-dir', dir]);
      expect(disabled.code, disabled.stderr).toBe(0);
    } finally {
      expect(await interrupt(first.child)).toBe(0);
    }

    const refused = await runCli(['up', '--data-dir', dir, ...PORT_FLAGS]);
    const output = refused.stdout + refused.stderr;
    expect(refused.code, output).not.toBe(0);
    // The data plane's sealing keys are opened first (before the agent's credentials), under the same key.
    expect(output).toContain("the data plane's sealing-key set is sealed under KMS key alias/airlock/data-plane");
    expect(output).toMatch(/which is Disabled: enable the key/);
    expect(output).toContain(`airlock keys enable ${KEY} --data-dir ${dir}`);
    expect(output).not.toContain('PRIVATE KEY');

    // The KMS alone, to re-enable the key: what the error tells an operator to do.
    const kms = await startCli(['kms', 'serve', '--data-dir', dir, '--port', '0'], /Press Ctrl-C/);
    try {
      const enabled = await runCli(['keys', 'enable', KEY, '--data-dir', dir]);
      expect(enabled.code, enabled.stderr).toBe(0);
    } finally {
      await interrupt(kms.child);
    }

    const again = await startCli(['up', '--data-dir', dir, ...PORT_FLAGS], /Press Ctrl-C/);
    expect(await interrupt(again.child)).toBe(0);
  }, 180_000);
});
