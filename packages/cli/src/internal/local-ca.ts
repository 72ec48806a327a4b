// The data directory's certificate authority: created once (key 0600), then used to issue listener certificates.
import { mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { AirlockError, writeFileAtomic } from '@airlock/common';
import { createCertificateAuthority, issueServerCertificate, type CertificateAuthority, type CertificateKeyPair } from '@airlock/pki';
import { layout } from './data-dir.js';

/** Loads the CA of a data directory, creating it on first use. */
export async function ensureLocalCa(dataDir: string): Promise<CertificateAuthority & { created: boolean }> {
  const certPath = layout.caCert(dataDir);
  const keyPath = layout.caKey(dataDir);
  try {
    return { cert: await readFile(certPath, 'utf8'), key: await readFile(keyPath, 'utf8'), created: false };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw AirlockError.from(error);
  }
  await mkdir(dirname(certPath), { recursive: true, mode: 0o700 });
  const ca = await createCertificateAuthority({ commonName: 'Airlock local CA' });
  // Key first: a crash between the two writes leaves no certificate without its key.
  await writeFileAtomic(keyPath, ca.key, { mode: 0o600 });
  await writeFileAtomic(certPath, ca.cert, { mode: 0o644 });
  return { cert: ca.cert, key: ca.key, created: true };
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
