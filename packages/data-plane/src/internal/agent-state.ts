// The agent's credential store: its private key (sealed under the data plane's KMS key), client certificate and CA in one 0600 file under the state directory, replaced atomically.
import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import { chmod, mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { AirlockError, writeFileAtomic, type Logger } from '@airlock/common';
import { certificateFingerprint, clusterIdentityUri, parseCertificate } from '@airlock/pki';
import type { DataPlaneKeyVault } from './key-vault.js';
import type { RegisteredCredentials } from './registration.js';

/** The file, under the state directory, that holds the agent's credentials. */
export const AGENT_CREDENTIALS_FILE = 'credentials.json';
/** Version 1 held the private key in clear; it is read once and rewritten as version 2. */
const STATE_VERSION = 2;
const LEGACY_PLAINTEXT_VERSION = 1;

/** What was found in a state directory. */
export type StoredCredentials =
  | { readonly status: 'missing' }
  /** The certificate has expired (renewal is impossible; a new bootstrap token is needed). */
  | { readonly status: 'expired'; readonly expiresAt: Date }
  | { readonly status: 'valid'; readonly credentials: RegisteredCredentials };

interface CredentialsFile {
  version: number;
  cluster: string;
  /** The private key (PEM), sealed under `keyId` by the key vault (envelope encryption, ASF1). */
  sealedKey: { keyId: string; ciphertext: string };
  certPem: string;
  caPem: string;
  savedAt: string;
}

/** Version 1: the private key in clear (a 0600 file). Read only to seal it. */
interface LegacyCredentialsFile {
  version: 1;
  cluster: string;
  keyPem: string;
  certPem: string;
  caPem: string;
}

/** Binds the sealed key to its purpose and cluster: a blob copied from another cluster's file does not open. */
function sealingContext(clusterName: string): Record<string, string> {
  return { purpose: 'airlock/agent-private-key', cluster: clusterName };
}

export function agentCredentialsPath(stateDir: string): string {
  return join(stateDir, AGENT_CREDENTIALS_FILE);
}

function corrupt(path: string, problem: string, cause?: unknown): AirlockError {
  return new AirlockError('CONFIG_INVALID', `The agent credentials file ${problem}; remove it and bootstrap again with a new token`, {
    details: { path },
    ...(cause === undefined ? {} : { cause }),
  });
}

export interface LoadAgentCredentialsOptions {
  /** Opens the sealed private key. A disabled key fails the load with the KMS's code, naming the key and its state. */
  readonly vault: DataPlaneKeyVault;
  readonly now?: Date;
  readonly log?: Logger;
}

/**
 * Reads the credentials stored for `clusterName`. Throws CONFIG_INVALID when the file is unreadable
 * as credentials, names another cluster, or holds a key that does not match its certificate: a
 * silent re-bootstrap would hide a misconfigured state directory. An expired certificate is reported
 * without opening the key. A version-1 file (key in clear) is sealed and rewritten on the spot.
 */
export async function loadAgentCredentials(stateDir: string, clusterName: string, options: LoadAgentCredentialsOptions): Promise<StoredCredentials> {
  const path = agentCredentialsPath(stateDir);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { status: 'missing' };
    throw AirlockError.from(error);
  }
  const mode = (await stat(path)).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    // The file must be readable by the agent alone; tighten rather than refuse, and say so.
    options.log?.warn({ event: 'agent.credentials_mode_fixed', path, mode: mode.toString(8) }, 'agent credentials file was readable by others; mode set to 0600');
    await chmod(path, 0o600);
  }
  let parsed: Partial<CredentialsFile> | Partial<LegacyCredentialsFile>;
  try {
    parsed = JSON.parse(text) as Partial<CredentialsFile>;
  } catch (error) {
    throw corrupt(path, 'is not valid JSON', error);
  }
  if (parsed === null || typeof parsed !== 'object' || typeof parsed.certPem !== 'string' || typeof parsed.caPem !== 'string') {
    throw corrupt(path, 'has an unknown format');
  }
  const legacy = parsed.version === LEGACY_PLAINTEXT_VERSION && 'keyPem' in parsed && typeof parsed.keyPem === 'string';
  const sealed = parsed.version === STATE_VERSION && 'sealedKey' in parsed ? parsed.sealedKey : undefined;
  if (!legacy && (sealed === undefined || typeof sealed.ciphertext !== 'string' || typeof sealed.keyId !== 'string')) {
    throw corrupt(path, 'has an unknown format');
  }
  if (parsed.cluster !== clusterName) {
    throw new AirlockError('CONFIG_INVALID', `The agent credentials in ${path} belong to another cluster`, { details: { path, cluster: clusterName } });
  }
  let notAfter: Date;
  try {
    notAfter = parseCertificate(parsed.certPem).notAfter;
  } catch (error) {
    throw corrupt(path, 'does not hold a usable certificate', error);
  }
  const now = options.now ?? new Date();
  if (notAfter.getTime() <= now.getTime()) return { status: 'expired', expiresAt: notAfter };

  let keyPem: string;
  if (legacy) {
    keyPem = (parsed as LegacyCredentialsFile).keyPem;
  } else {
    const opened = await options.vault.open(Buffer.from(sealed!.ciphertext, 'base64'), sealingContext(clusterName), "the agent's private key");
    keyPem = opened.toString('utf8');
    opened.fill(0);
  }
  let credentials: RegisteredCredentials;
  try {
    credentials = checkCredentials(clusterName, keyPem, parsed.certPem, parsed.caPem);
  } catch (error) {
    throw corrupt(path, 'does not hold a usable key and certificate for this cluster', error);
  }
  if (legacy) {
    await saveAgentCredentials(stateDir, clusterName, credentials, options.vault);
    options.log?.info({ event: 'agent.credentials_sealed', path, kmsKeyId: options.vault.keyId }, 'agent private key found in clear; sealed under the data-plane KMS key');
  }
  return { status: 'valid', credentials };
}

/** Builds credentials from PEM, checking that the certificate names the cluster and certifies the key. */
export function checkCredentials(clusterName: string, keyPem: string, certPem: string, caPem: string): RegisteredCredentials {
  const info = parseCertificate(certPem);
  if (info.uri !== clusterIdentityUri(clusterName)) {
    throw new AirlockError('CERTIFICATE_INVALID', 'The certificate does not carry this cluster identity', { details: { cluster: clusterName } });
  }
  const certKey = new X509Certificate(certPem).publicKey.export({ type: 'spki', format: 'der' });
  const ownKey = createPublicKey(createPrivateKey(keyPem)).export({ type: 'spki', format: 'der' });
  if (!certKey.equals(ownKey)) throw new AirlockError('CERTIFICATE_INVALID', 'The certificate is not for the stored key', { details: { cluster: clusterName } });
  return Object.freeze({ cert: certPem, key: keyPem, ca: caPem, expiresAt: info.notAfter, fingerprintSha256: certificateFingerprint(certPem) });
}

/**
 * Stores credentials atomically (one file, so the key and its certificate never get out of step,
 * even if the agent dies mid-write), the private key sealed by `vault`. The directory is created
 * with mode 0700 if missing.
 */
export async function saveAgentCredentials(stateDir: string, clusterName: string, credentials: RegisteredCredentials, vault: DataPlaneKeyVault): Promise<void> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const sealed = await vault.seal(Buffer.from(credentials.key, 'utf8'), sealingContext(clusterName));
  const content: CredentialsFile = {
    version: STATE_VERSION,
    cluster: clusterName,
    sealedKey: { keyId: vault.keyId, ciphertext: sealed.toString('base64') },
    certPem: credentials.cert,
    caPem: credentials.ca,
    savedAt: new Date().toISOString(),
  };
  await writeFileAtomic(agentCredentialsPath(stateDir), `${JSON.stringify(content, null, 2)}\n`, { mode: 0o600 });
}
