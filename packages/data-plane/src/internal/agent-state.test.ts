// Unit tests of the agent credential store against a real embedded KMS over TLS: round trip with the key sealed, file
// mode, expiry, import of a version-1 (key in clear) file, refusal of another cluster's or mismatched credentials, and the
// kill switch: a disabled or deletion-pending data-plane key stops the load with an error naming the key and its state.
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '@airlock/common';
import { createAwsKms, type KmsAdmin } from '@airlock/kms';
import { createKmsServer, resolveKmsServerConfig, type KmsServer } from '@airlock/kms/server';
import { clusterIdentityUri, createCertificateAuthority, issueClientCertificate, issueServerCertificate, type CertificateKeyPair } from '@airlock/pki';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentCredentialsPath, checkCredentials, loadAgentCredentials, saveAgentCredentials } from './agent-state.js';
import { openKmsKeyVault, type DataPlaneKeyVault } from './key-vault.js';

let ca: CertificateKeyPair;
let leaf: CertificateKeyPair;
let other: CertificateKeyPair;
let directory: string;
let kmsServer: KmsServer;
let kms: KmsAdmin & { destroy(): void };
let vault: DataPlaneKeyVault;
let keyCount = 0;

/** The base64 body lines of a PEM key: none of them may appear in a file that holds the key sealed. */
const pemBody = (pem: string): string[] => pem.split('\n').filter((line) => line.length > 0 && !line.startsWith('-----'));

beforeAll(async () => {
  ca = await createCertificateAuthority({ commonName: 'agent state test CA' });
  leaf = await issueClientCertificate({ ca, uri: clusterIdentityUri('state-1'), validitySeconds: 3600 });
  other = await issueClientCertificate({ ca, uri: clusterIdentityUri('state-1'), validitySeconds: 3600 });
  directory = await mkdtemp(join(tmpdir(), 'airlock-agent-state-'));
  const tls = await issueServerCertificate({ ca, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  kmsServer = await createKmsServer(
    resolveKmsServerConfig({ dataDir: join(directory, 'kms'), tls: { cert: tls.cert, key: tls.key }, logger: createLogger({ level: 'silent' }) }),
  );
  kms = createAwsKms({ endpoint: kmsServer.url, credentials: kmsServer.createAccessKey('agent state tests'), caBundle: ca.cert, maxAttempts: 1 });
  vault = await openKmsKeyVault(kms, 'alias/airlock/data-plane', { create: true });
}, 30_000);

afterAll(async () => {
  kms.destroy();
  await kmsServer.close();
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

/** A vault over a fresh key of its own, so that disabling it touches no other test. */
async function freshVault(): Promise<DataPlaneKeyVault & { keyArn: string | undefined }> {
  return openKmsKeyVault(kms, `alias/airlock/test-${keyCount++}`, { create: true });
}

describe('agent credentials', () => {
  it('round-trips through one 0600 file in a 0700 directory created on demand, the private key sealed under the KMS key', async () => {
    const stateDir = join(directory, 'a', 'state');
    expect(await loadAgentCredentials(stateDir, 'state-1', { vault })).toEqual({ status: 'missing' });
    const credentials = checkCredentials('state-1', leaf.key, leaf.cert, ca.cert);
    await saveAgentCredentials(stateDir, 'state-1', credentials, vault);
    expect((await stat(stateDir)).mode & 0o777).toBe(0o700);
    expect((await stat(agentCredentialsPath(stateDir))).mode & 0o777).toBe(0o600);
    const text = await readFile(agentCredentialsPath(stateDir), 'utf8');
    expect(text).not.toContain('PRIVATE KEY');
    for (const line of pemBody(leaf.key)) expect(text).not.toContain(line);
    expect(JSON.parse(text)).toMatchObject({ version: 2, sealedKey: { keyId: 'alias/airlock/data-plane' } });
    const loaded = await loadAgentCredentials(stateDir, 'state-1', { vault });
    expect(loaded).toEqual({ status: 'valid', credentials });
  });

  it('tightens a file readable by others and says so', async () => {
    const stateDir = join(directory, 'b');
    await saveAgentCredentials(stateDir, 'state-1', checkCredentials('state-1', leaf.key, leaf.cert, ca.cert), vault);
    await chmod(agentCredentialsPath(stateDir), 0o644);
    const lines: string[] = [];
    const log = createLogger({ name: 'state', destination: { write: (line: string) => lines.push(line) } });
    expect((await loadAgentCredentials(stateDir, 'state-1', { vault, log })).status).toBe('valid');
    expect((await stat(agentCredentialsPath(stateDir))).mode & 0o777).toBe(0o600);
    expect(lines.join('')).toContain('agent.credentials_mode_fixed');
    expect(lines.join('')).not.toContain(leaf.key.split('\n')[1] ?? 'unreachable');
  });

  it('reports an expired certificate as expired', async () => {
    const stateDir = join(directory, 'c');
    await saveAgentCredentials(stateDir, 'state-1', checkCredentials('state-1', leaf.key, leaf.cert, ca.cert), vault);
    const later = new Date(leaf.info.notAfter.getTime() + 1000);
    expect(await loadAgentCredentials(stateDir, 'state-1', { vault, now: later })).toEqual({ status: 'expired', expiresAt: leaf.info.notAfter });
  });

  it('refuses credentials of another cluster, a key that does not match, a blob moved from another cluster, and a corrupt file', async () => {
    const stateDir = join(directory, 'd');
    await saveAgentCredentials(stateDir, 'state-1', checkCredentials('state-1', leaf.key, leaf.cert, ca.cert), vault);
    expect(await rejection(loadAgentCredentials(stateDir, 'state-2', { vault }))).toMatchObject({ code: 'CONFIG_INVALID' });
    expect(() => checkCredentials('state-1', other.key, leaf.cert, ca.cert)).toThrow(expect.objectContaining({ code: 'CERTIFICATE_INVALID' }));
    expect(() => checkCredentials('state-2', leaf.key, leaf.cert, ca.cert)).toThrow(expect.objectContaining({ code: 'CERTIFICATE_INVALID' }));
    const stored = JSON.parse(await readFile(agentCredentialsPath(stateDir), 'utf8')) as Record<string, unknown>;

    // Another key, properly sealed, beside this cluster's certificate: refused, never used.
    const mismatched = join(directory, 'd-mismatch');
    await saveAgentCredentials(mismatched, 'state-1', { ...checkCredentials('state-1', leaf.key, leaf.cert, ca.cert), key: other.key }, vault);
    expect(await rejection(loadAgentCredentials(mismatched, 'state-1', { vault }))).toMatchObject({ code: 'CONFIG_INVALID' });

    // The sealed key is bound to its cluster: relabelled as another cluster's, it does not open.
    await writeFile(agentCredentialsPath(stateDir), JSON.stringify({ ...stored, cluster: 'state-2' }), { mode: 0o600 });
    expect(await rejection(loadAgentCredentials(stateDir, 'state-2', { vault }))).toMatchObject({ code: 'KMS_INVALID_CIPHERTEXT' });

    await writeFile(agentCredentialsPath(stateDir), JSON.stringify({ ...stored, version: 3 }), { mode: 0o600 });
    expect(await rejection(loadAgentCredentials(stateDir, 'state-1', { vault }))).toMatchObject({ code: 'CONFIG_INVALID' });
    await writeFile(agentCredentialsPath(stateDir), '{', { mode: 0o600 });
    expect(await rejection(loadAgentCredentials(stateDir, 'state-1', { vault }))).toMatchObject({ code: 'CONFIG_INVALID' });
  });

  it('seals a version-1 file (key in clear) on first load and removes the clear key', async () => {
    const stateDir = join(directory, 'e');
    await rm(stateDir, { recursive: true, force: true });
    await saveAgentCredentials(stateDir, 'state-1', checkCredentials('state-1', leaf.key, leaf.cert, ca.cert), vault);
    const v1 = { version: 1, cluster: 'state-1', keyPem: leaf.key, certPem: leaf.cert, caPem: ca.cert, savedAt: new Date().toISOString() };
    await writeFile(agentCredentialsPath(stateDir), JSON.stringify(v1), { mode: 0o600 });
    const lines: string[] = [];
    const log = createLogger({ name: 'state', destination: { write: (line: string) => lines.push(line) } });
    const loaded = await loadAgentCredentials(stateDir, 'state-1', { vault, log });
    expect(loaded.status).toBe('valid');
    const text = await readFile(agentCredentialsPath(stateDir), 'utf8');
    expect(text).not.toContain('PRIVATE KEY');
    for (const line of pemBody(leaf.key)) expect(text).not.toContain(line);
    expect(lines.join('')).toContain('agent.credentials_sealed');
    expect(await loadAgentCredentials(stateDir, 'state-1', { vault })).toEqual(loaded);
  });

  it('a disabled key stops the load with KMS_KEY_DISABLED naming the key and its state; enabling it restores access', async () => {
    const keyVault = await freshVault();
    const stateDir = join(directory, 'f');
    await saveAgentCredentials(stateDir, 'state-1', checkCredentials('state-1', leaf.key, leaf.cert, ca.cert), keyVault);
    await kms.disableKey(keyVault.keyId);
    const error = (await rejection(loadAgentCredentials(stateDir, 'state-1', { vault: keyVault }))) as Error & { code: string; details: Record<string, unknown> };
    expect(error.code).toBe('KMS_KEY_DISABLED');
    expect(error.message).toContain("the agent's private key");
    expect(error.message).toContain(keyVault.keyId);
    expect(error.message).toContain(keyVault.keyArn);
    expect(error.message).toContain('Disabled');
    expect(error.details).toMatchObject({ keyId: keyVault.keyId, keyArn: keyVault.keyArn, keyState: 'Disabled' });
    expect(error.message).not.toContain(pemBody(leaf.key)[0]);
    await kms.enableKey(keyVault.keyId);
    expect((await loadAgentCredentials(stateDir, 'state-1', { vault: keyVault })).status).toBe('valid');
  });

  it('a key pending deletion stops the load with KMS_KEY_PENDING_DELETION, naming the state and how to cancel', async () => {
    const keyVault = await freshVault();
    const stateDir = join(directory, 'g');
    await saveAgentCredentials(stateDir, 'state-1', checkCredentials('state-1', leaf.key, leaf.cert, ca.cert), keyVault);
    await kms.scheduleKeyDeletion(keyVault.keyId, 7);
    const error = (await rejection(loadAgentCredentials(stateDir, 'state-1', { vault: keyVault }))) as Error & { code: string };
    expect(error.code).toBe('KMS_KEY_PENDING_DELETION');
    expect(error.message).toContain('PendingDeletion');
    expect(error.message).toContain('cancel-key-deletion');
  });
});
