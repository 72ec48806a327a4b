// Unit tests of the agent credential store: round trip, file mode, expiry, and refusal of another cluster's or mismatched credentials.
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '@airlock/common';
import { clusterIdentityUri, createCertificateAuthority, issueClientCertificate, type CertificateKeyPair } from '@airlock/pki';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentCredentialsPath, checkCredentials, loadAgentCredentials, saveAgentCredentials } from './agent-state.js';

let ca: CertificateKeyPair;
let leaf: CertificateKeyPair;
let other: CertificateKeyPair;
let directory: string;

beforeAll(async () => {
  ca = await createCertificateAuthority({ commonName: 'agent state test CA' });
  leaf = await issueClientCertificate({ ca, uri: clusterIdentityUri('state-1'), validitySeconds: 3600 });
  other = await issueClientCertificate({ ca, uri: clusterIdentityUri('state-1'), validitySeconds: 3600 });
  directory = await mkdtemp(join(tmpdir(), 'airlock-agent-state-'));
});

afterAll(async () => {
  await rm(directory, { recursive: true, force: true });
});

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected the promise to reject');
    },
    (reason: unknown) => reason,
  );
}

describe('agent credentials', () => {
  it('round-trips through one 0600 file in a 0700 directory created on demand', async () => {
    const stateDir = join(directory, 'a', 'state');
    expect(await loadAgentCredentials(stateDir, 'state-1')).toEqual({ status: 'missing' });
    const credentials = checkCredentials('state-1', leaf.key, leaf.cert, ca.cert);
    await saveAgentCredentials(stateDir, 'state-1', credentials);
    expect((await stat(stateDir)).mode & 0o777).toBe(0o700);
    expect((await stat(agentCredentialsPath(stateDir))).mode & 0o777).toBe(0o600);
    const loaded = await loadAgentCredentials(stateDir, 'state-1');
    expect(loaded).toEqual({ status: 'valid', credentials });
  });

  it('tightens a file readable by others and says so', async () => {
    const stateDir = join(directory, 'b');
    await saveAgentCredentials(stateDir, 'state-1', checkCredentials('state-1', leaf.key, leaf.cert, ca.cert));
    await chmod(agentCredentialsPath(stateDir), 0o644);
    const lines: string[] = [];
    const log = createLogger({ name: 'state', destination: { write: (line: string) => lines.push(line) } });
    expect((await loadAgentCredentials(stateDir, 'state-1', { log })).status).toBe('valid');
    expect((await stat(agentCredentialsPath(stateDir))).mode & 0o777).toBe(0o600);
    expect(lines.join('')).toContain('agent.credentials_mode_fixed');
    expect(lines.join('')).not.toContain(leaf.key.split('\n')[1] ?? 'unreachable');
  });

  it('reports an expired certificate as expired', async () => {
    const stateDir = join(directory, 'c');
    await saveAgentCredentials(stateDir, 'state-1', checkCredentials('state-1', leaf.key, leaf.cert, ca.cert));
    const later = new Date(leaf.info.notAfter.getTime() + 1000);
    expect(await loadAgentCredentials(stateDir, 'state-1', { now: later })).toEqual({ status: 'expired', expiresAt: leaf.info.notAfter });
  });

  it('refuses credentials of another cluster, a key that does not match, and a corrupt file (CONFIG_INVALID)', async () => {
    const stateDir = join(directory, 'd');
    await saveAgentCredentials(stateDir, 'state-1', checkCredentials('state-1', leaf.key, leaf.cert, ca.cert));
    expect(await rejection(loadAgentCredentials(stateDir, 'state-2'))).toMatchObject({ code: 'CONFIG_INVALID' });
    expect(() => checkCredentials('state-1', other.key, leaf.cert, ca.cert)).toThrow(expect.objectContaining({ code: 'CERTIFICATE_INVALID' }));
    expect(() => checkCredentials('state-2', leaf.key, leaf.cert, ca.cert)).toThrow(expect.objectContaining({ code: 'CERTIFICATE_INVALID' }));
    const stored = JSON.parse(await readFile(agentCredentialsPath(stateDir), 'utf8')) as Record<string, unknown>;
    await writeFile(agentCredentialsPath(stateDir), JSON.stringify({ ...stored, keyPem: other.key }), { mode: 0o600 });
    expect(await rejection(loadAgentCredentials(stateDir, 'state-1'))).toMatchObject({ code: 'CONFIG_INVALID' });
    await writeFile(agentCredentialsPath(stateDir), '{', { mode: 0o600 });
    expect(await rejection(loadAgentCredentials(stateDir, 'state-1'))).toMatchObject({ code: 'CONFIG_INVALID' });
  });
});
