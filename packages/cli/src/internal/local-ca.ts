// The data directory's certificate authority: created once, its private key stored only sealed under the control plane's key (ca/ca-key.sealed, 0600), then used to issue listener certificates.
import { mkdir, readFile, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { AirlockError, writeFileAtomic, type Logger } from '@airlock/common';
import { openControlPlaneKey, type ControlPlaneKey } from '@airlock/control-plane/key';
import { envelopeDecrypt, envelopeEncrypt, type EncryptionContext, type RootKeyOptions } from '@airlock/crypto';
import { createCertificateAuthority, issueServerCertificate, type CertificateAuthority, type CertificateKeyPair } from '@airlock/pki';
import { layout, readDataFile } from './data-dir.js';
import { rootKeySourceFromFlags } from './root-key-flags.js';

/** What the sealed CA key is bound to: moved anywhere else, it does not open. */
export const CA_KEY_CONTEXT: EncryptionContext = { purpose: 'airlock/ca-key' };

async function sealCaKey(key: ControlPlaneKey, pem: string): Promise<Buffer> {
  return envelopeEncrypt(Buffer.from(pem, 'utf8'), { wrapper: key.wrapper, context: CA_KEY_CONTEXT });
}

async function openCaKey(key: ControlPlaneKey, sealed: Buffer, path: string): Promise<string> {
  try {
    return (await envelopeDecrypt(sealed, { wrapper: key.wrapper, context: CA_KEY_CONTEXT })).toString('utf8');
  } catch (error) {
    const cause = AirlockError.from(error);
    throw new AirlockError('DB_KEY_INVALID', `The CA key in ${path} does not open with the control-plane key (${key.description}): ${cause.code}`, {
      cause,
      details: { path, keySource: key.description },
    });
  }
}

/**
 * Loads the CA of a data directory, creating it on first use. The private key exists on disk only
 * sealed under `key`; a plaintext `ca/ca-key.pem` left by an earlier release is sealed and removed.
 */
export async function ensureLocalCa(dataDir: string, key: ControlPlaneKey, log?: Logger): Promise<CertificateAuthority & { created: boolean }> {
  const certPath = layout.caCert(dataDir);
  const sealedPath = layout.caKeySealed(dataDir);
  const legacyPath = layout.legacyCaKey(dataDir);
  const cert = await readDataFile(certPath);
  const sealed = await readFile(sealedPath).catch((error: unknown) => {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw AirlockError.from(error);
  });
  if (cert !== undefined && sealed !== undefined) {
    await rm(legacyPath, { force: true });
    return { cert, key: await openCaKey(key, sealed, sealedPath), created: false };
  }
  const legacy = await readDataFile(legacyPath);
  if (cert !== undefined && legacy !== undefined) {
    await writeFileAtomic(sealedPath, await sealCaKey(key, legacy), { mode: 0o600 });
    await rm(legacyPath, { force: true });
    log?.warn({ event: 'ca.key_sealed', path: sealedPath, removed: legacyPath }, 'sealed the CA key under the control-plane key and removed its plaintext file');
    return { cert, key: legacy, created: false };
  }
  if (cert !== undefined) {
    throw new AirlockError('NOT_FOUND', `The CA certificate ${certPath} exists but its key (${sealedPath}) does not; restore it, or remove ${dirname(certPath)} to start a new CA`, {
      details: { path: sealedPath },
    });
  }
  await mkdir(dirname(certPath), { recursive: true, mode: 0o700 });
  const ca = await createCertificateAuthority({ commonName: 'Airlock local CA' });
  // Key first: a crash between the two writes leaves no certificate without its key.
  await writeFileAtomic(sealedPath, await sealCaKey(key, ca.key), { mode: 0o600 });
  await writeFileAtomic(certPath, ca.cert, { mode: 0o644 });
  return { cert: ca.cert, key: ca.key, created: true };
}

/** Where the control plane's root key comes from, as command-line flags (like the KMS's --root-key-*). */
export interface ControlPlaneKeyFlags {
  /** @default <data-dir>/control-plane/cp-root.key, created on first start */
  readonly cpKeyFile?: string;
  readonly cpKeyEnv?: string;
  readonly cpKeyPassphraseEnv?: string;
}

/** The flags as a root key source; a passphrase is read from the named environment variable, never from argv. */
export function controlPlaneRootFromFlags(flags: ControlPlaneKeyFlags, env: NodeJS.ProcessEnv = process.env): RootKeyOptions | undefined {
  return rootKeySourceFromFlags('cp-key', { file: flags.cpKeyFile, env: flags.cpKeyEnv, passphraseEnv: flags.cpKeyPassphraseEnv }, env);
}

/** Just the control-plane key flags of a larger options object, the unset ones left out. */
export function pickControlPlaneKeyFlags(options: ControlPlaneKeyFlags): ControlPlaneKeyFlags {
  return {
    ...(options.cpKeyFile === undefined ? {} : { cpKeyFile: options.cpKeyFile }),
    ...(options.cpKeyEnv === undefined ? {} : { cpKeyEnv: options.cpKeyEnv }),
    ...(options.cpKeyPassphraseEnv === undefined ? {} : { cpKeyPassphraseEnv: options.cpKeyPassphraseEnv }),
  };
}

/** The same flags, passed on to a child `airlock … serve` (names of files and variables only, never a key). */
export function controlPlaneKeyArgs(flags: ControlPlaneKeyFlags): string[] {
  return [
    ...(flags.cpKeyFile === undefined ? [] : ['--cp-key-file', flags.cpKeyFile]),
    ...(flags.cpKeyEnv === undefined ? [] : ['--cp-key-env', flags.cpKeyEnv]),
    ...(flags.cpKeyPassphraseEnv === undefined ? [] : ['--cp-key-passphrase-env', flags.cpKeyPassphraseEnv]),
  ];
}

/**
 * The control plane's key of a data directory, as the local commands open it: the root key file
 * `control-plane/cp-root.key` (created on first use) unless the flags name another source. The
 * caller disposes of it.
 */
export async function openLocalControlPlaneKey(dataDir: string, flags: ControlPlaneKeyFlags, log: Logger): ReturnType<typeof openControlPlaneKey> {
  await mkdir(layout.controlPlaneDir(dataDir), { recursive: true, mode: 0o700 });
  const root = controlPlaneRootFromFlags(flags);
  return openControlPlaneKey({ dir: layout.controlPlaneDir(dataDir), ...(root === undefined ? {} : { root }) }, log);
}

/**
 * Loads (or creates) the CA with the data directory's control-plane key, disposing of the key
 * afterwards. In the local stack the data plane's KMS and object store issue their listener
 * certificates from this CA too, so they open the same key; a split deployment gives the data plane
 * certificates of its own.
 */
export async function loadLocalCa(dataDir: string, flags: ControlPlaneKeyFlags, log: Logger): Promise<CertificateAuthority & { created: boolean }> {
  const key = await openLocalControlPlaneKey(dataDir, flags, log);
  try {
    return await ensureLocalCa(dataDir, key, log);
  } finally {
    key.dispose();
  }
}

/**
 * A fresh server certificate for a local listener. It is issued at every start and kept in memory
 * only, so no listener key is ever written to disk.
 */
export async function issueLocalServerCertificate(ca: CertificateAuthority, extraNames: readonly string[] = []): Promise<CertificateKeyPair> {
  return issueServerCertificate({
    ca,
    dnsNames: ['localhost', ...extraNames],
    ipAddresses: ['127.0.0.1', '::1'],
    validitySeconds: 30 * 24 * 3600,
  });
}
