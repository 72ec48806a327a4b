// Cluster registry: one-time bootstrap tokens (stored hashed), CSR-based client certificate issuance, renewal and revocation.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { AirlockError, configError, writeFileAtomic, type Logger } from '@airlock/common';
import {
  clusterIdentityUri,
  DEFAULT_CLIENT_CERT_VALIDITY_SECONDS,
  isValidClusterName,
  issueClientCertificateFromCsr,
  type CertificateAuthority,
} from '@airlock/pki';

/** Prefix of every bootstrap token, so a leaked one is recognisable (secret scanners, logs). */
export const BOOTSTRAP_TOKEN_PREFIX = 'alb_';
const TOKEN_BYTES = 32;
/** How many issued certificates of one cluster stay valid: the current one and the one it replaced. */
const KEPT_CERTIFICATES = 2;
const STATE_VERSION = 1;

export interface ClusterRegistryOptions {
  /** The CA that issues data-plane client certificates (the tunnel endpoint must trust it). */
  readonly ca: CertificateAuthority;
  /** JSON state file (mode 0600). Only token hashes are stored. @default in memory only */
  readonly path?: string;
  /** Lifetime of issued client certificates. @default 86400 (24 hours) */
  readonly certificateValiditySeconds?: number;
  /** Clock (tests). @default the current time */
  readonly now?: () => Date;
  readonly log?: Logger;
}

/** A bootstrap token, returned once: only its hash is kept. */
export interface BootstrapToken {
  /** Secret: hand it to the data-plane operator; never log it. */
  readonly token: string;
  readonly cluster: string;
  readonly expiresAt: Date;
}

/** A client certificate issued to a cluster. */
export interface ClusterCertificate {
  readonly certPem: string;
  /** The issuing CA certificate, to trust the tunnel endpoint with. */
  readonly caPem: string;
  readonly expiresAt: Date;
  readonly fingerprintSha256: string;
}

/** Non-secret facts about a registered cluster. */
export interface ClusterRecord {
  readonly name: string;
  readonly registeredAt: Date;
  readonly revoked: boolean;
  /** Fingerprints of its still-recorded certificates, newest first. */
  readonly certificates: readonly { readonly fingerprintSha256: string; readonly expiresAt: Date }[];
}

export interface ClusterRegistry {
  /** Creates a one-time bootstrap token for `clusterName`, valid for `ttlMs`. */
  createBootstrapToken(clusterName: string, ttlMs: number): Promise<BootstrapToken>;
  /**
   * Redeems a bootstrap token for a client certificate (URI SAN `spiffe://airlock/cluster/<name>`)
   * for the key in `csrPem`. Throws ACCESS_DENIED (details.reason token-unknown, token-used or
   * token-expired), or CERTIFICATE_INVALID for a bad CSR (the token then stays redeemable). With
   * `expectedCluster`, a token created for another cluster is refused (reason cluster-mismatch)
   * before it is spent, so a mistyped cluster name neither burns the token nor re-registers the
   * token's real cluster.
   */
  redeemBootstrapToken(token: string, csrPem: string, now?: Date, expectedCluster?: string): Promise<ClusterCertificate>;
  /**
   * Issues a new certificate to a registered, non-revoked cluster that presents its current
   * certificate. The previous certificate stays valid until it expires. Throws ACCESS_DENIED
   * (details.reason cluster-unknown, cluster-revoked or certificate-mismatch).
   */
  renew(clusterName: string, presentedFingerprint: string, csrPem: string): Promise<ClusterCertificate>;
  /** Revokes a cluster: its certificates and pending bootstrap tokens stop working. Throws NOT_FOUND for an unknown cluster. */
  revoke(clusterName: string): Promise<void>;
  /** For `startTunnelEndpoint`: true only for a certificate issued to this (registered, non-revoked) cluster and not yet expired. */
  isClusterAllowed(clusterName: string, fingerprintSha256: string): boolean;
  cluster(clusterName: string): ClusterRecord | undefined;
  clusters(): ClusterRecord[];
}

interface TokenEntry {
  hash: string;
  cluster: string;
  expiresAt: number;
  used: boolean;
}

interface CertificateEntry {
  fingerprint: string;
  expiresAt: number;
}

interface ClusterEntry {
  registeredAt: number;
  revoked: boolean;
  certificates: CertificateEntry[];
}

interface RegistryState {
  version: number;
  tokens: TokenEntry[];
  clusters: Record<string, ClusterEntry>;
}

function denied(reason: string, message: string, details: Record<string, string> = {}): AirlockError {
  return new AirlockError('ACCESS_DENIED', message, { details: { reason, ...details } });
}

function hashToken(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

function checkClusterName(name: string): string {
  if (!isValidClusterName(name)) {
    throw new AirlockError('INVALID_ARGUMENT', 'clusterName must be 1 to 63 lower-case letters, digits or inner hyphens', {
      details: { argument: 'clusterName' },
    });
  }
  return name;
}

function parseState(text: string, path: string): RegistryState {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new AirlockError('CONFIG_INVALID', 'The cluster registry file is not valid JSON', { cause: error, details: { path } });
  }
  const state = value as Partial<RegistryState> | null;
  if (state === null || typeof state !== 'object' || state.version !== STATE_VERSION || !Array.isArray(state.tokens) || typeof state.clusters !== 'object') {
    throw new AirlockError('CONFIG_INVALID', 'The cluster registry file has an unknown format', { details: { path } });
  }
  return { version: STATE_VERSION, tokens: state.tokens, clusters: { ...state.clusters } };
}

/** Opens (or creates) a cluster registry; with `path`, its state is loaded from and saved to that file. */
export async function openClusterRegistry(options: ClusterRegistryOptions): Promise<ClusterRegistry> {
  const validitySeconds = options.certificateValiditySeconds ?? DEFAULT_CLIENT_CERT_VALIDITY_SECONDS;
  if (!Number.isInteger(validitySeconds) || validitySeconds <= 0) throw configError('clusterRegistry.certificateValiditySeconds', 'must be a positive integer');
  const clock = options.now ?? ((): Date => new Date());
  const { ca, path, log } = options;
  let state: RegistryState = { version: STATE_VERSION, tokens: [], clusters: {} };
  if (path !== undefined) {
    const text = await readFile(path, 'utf8').catch((error: unknown) => {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw AirlockError.from(error);
    });
    if (text !== undefined) state = parseState(text, path);
  }

  // Writes are chained so that two concurrent changes never race on the file.
  let saving: Promise<void> = Promise.resolve();
  const save = (): Promise<void> => {
    const now = clock().getTime();
    // Expired tokens and certificates are no longer needed to decide anything.
    state.tokens = state.tokens.filter((entry) => entry.expiresAt > now);
    for (const entry of Object.values(state.clusters)) entry.certificates = entry.certificates.filter((cert) => cert.expiresAt > now);
    if (path === undefined) return Promise.resolve();
    const content = `${JSON.stringify(state, null, 2)}\n`;
    saving = saving.catch(() => undefined).then(() => writeFileAtomic(path, content, { mode: 0o600 }));
    return saving;
  };

  const clusterEntry = (name: string): ClusterEntry | undefined => (Object.hasOwn(state.clusters, name) ? state.clusters[name] : undefined);

  const issue = async (cluster: string, csrPem: string, now: Date): Promise<ClusterCertificate> => {
    const issued = await issueClientCertificateFromCsr({ ca, csr: csrPem, uri: clusterIdentityUri(cluster), validitySeconds, now });
    return Object.freeze({
      certPem: issued.cert,
      caPem: ca.cert,
      expiresAt: issued.info.notAfter,
      fingerprintSha256: issued.info.fingerprintSha256,
    });
  };

  const record = (name: string, entry: ClusterEntry): ClusterRecord =>
    Object.freeze({
      name,
      registeredAt: new Date(entry.registeredAt),
      revoked: entry.revoked,
      certificates: entry.certificates.map((cert) => Object.freeze({ fingerprintSha256: cert.fingerprint, expiresAt: new Date(cert.expiresAt) })),
    });

  return {
    async createBootstrapToken(clusterName, ttlMs) {
      const cluster = checkClusterName(clusterName);
      if (!Number.isFinite(ttlMs) || ttlMs <= 0) {
        throw new AirlockError('INVALID_ARGUMENT', 'ttlMs must be a positive number of milliseconds', { details: { argument: 'ttlMs' } });
      }
      const token = `${BOOTSTRAP_TOKEN_PREFIX}${randomBytes(TOKEN_BYTES).toString('base64url')}`;
      const expiresAt = clock().getTime() + ttlMs;
      state.tokens.push({ hash: hashToken(token).toString('hex'), cluster, expiresAt, used: false });
      await save();
      log?.info({ event: 'cluster.token.created', cluster, expiresAt: new Date(expiresAt).toISOString() }, 'bootstrap token created');
      return Object.freeze({ token, cluster, expiresAt: new Date(expiresAt) });
    },

    async redeemBootstrapToken(token, csrPem, now = clock(), expectedCluster) {
      const presented = hashToken(typeof token === 'string' ? token : '');
      // Compare against every stored hash in constant time, without an early exit.
      let match: TokenEntry | undefined;
      for (const entry of state.tokens) {
        const stored = Buffer.from(entry.hash, 'hex');
        if (stored.length === presented.length && timingSafeEqual(stored, presented) && match === undefined) match = entry;
      }
      if (match === undefined || typeof token !== 'string' || !token.startsWith(BOOTSTRAP_TOKEN_PREFIX)) {
        log?.warn({ event: 'cluster.token.refused', reason: 'token-unknown' }, 'bootstrap token refused');
        throw denied('token-unknown', 'The bootstrap token is not known');
      }
      const { cluster } = match;
      if (expectedCluster !== undefined && expectedCluster !== cluster) {
        log?.warn({ event: 'cluster.token.refused', reason: 'cluster-mismatch', cluster: expectedCluster }, 'bootstrap token refused');
        throw denied('cluster-mismatch', 'The bootstrap token was created for another cluster', { cluster: expectedCluster });
      }
      if (match.used) {
        log?.warn({ event: 'cluster.token.refused', reason: 'token-used', cluster }, 'bootstrap token refused');
        throw denied('token-used', 'The bootstrap token has already been used', { cluster });
      }
      if (now.getTime() >= match.expiresAt) {
        log?.warn({ event: 'cluster.token.refused', reason: 'token-expired', cluster }, 'bootstrap token refused');
        throw denied('token-expired', 'The bootstrap token has expired', { cluster });
      }
      // Consumed before the first await, so two concurrent redemptions cannot both succeed.
      match.used = true;
      let certificate: ClusterCertificate;
      try {
        certificate = await issue(cluster, csrPem, now);
      } catch (error) {
        match.used = false;
        throw error;
      }
      // A new registration supersedes any earlier one, including a revocation.
      state.clusters[cluster] = {
        registeredAt: now.getTime(),
        revoked: false,
        certificates: [{ fingerprint: certificate.fingerprintSha256, expiresAt: certificate.expiresAt.getTime() }],
      };
      await save();
      log?.info(
        { event: 'cluster.registered', cluster, certFingerprintSha256: certificate.fingerprintSha256, expiresAt: certificate.expiresAt.toISOString() },
        'cluster registered',
      );
      return certificate;
    },

    async renew(clusterName, presentedFingerprint, csrPem) {
      const now = clock();
      const entry = clusterEntry(clusterName);
      if (entry === undefined) throw denied('cluster-unknown', 'The cluster is not registered', { cluster: clusterName });
      if (entry.revoked) throw denied('cluster-revoked', 'The cluster has been revoked', { cluster: clusterName });
      const current = entry.certificates[0];
      if (current?.fingerprint !== presentedFingerprint || current.expiresAt <= now.getTime()) {
        log?.warn({ event: 'cluster.renew.refused', cluster: clusterName, reason: 'certificate-mismatch' }, 'certificate renewal refused');
        throw denied('certificate-mismatch', 'The presented certificate is not the current certificate of this cluster', { cluster: clusterName });
      }
      const certificate = await issue(clusterName, csrPem, now);
      // Re-read after the await: a revocation in the meantime wins.
      if (entry.revoked || clusterEntry(clusterName) !== entry) throw denied('cluster-revoked', 'The cluster has been revoked', { cluster: clusterName });
      entry.certificates = [{ fingerprint: certificate.fingerprintSha256, expiresAt: certificate.expiresAt.getTime() }, ...entry.certificates].slice(
        0,
        KEPT_CERTIFICATES,
      );
      await save();
      log?.info(
        { event: 'cluster.renewed', cluster: clusterName, certFingerprintSha256: certificate.fingerprintSha256, expiresAt: certificate.expiresAt.toISOString() },
        'cluster certificate renewed',
      );
      return certificate;
    },

    async revoke(clusterName) {
      const entry = clusterEntry(clusterName);
      if (entry === undefined) throw new AirlockError('NOT_FOUND', 'The cluster is not registered', { details: { cluster: clusterName } });
      entry.revoked = true;
      state.tokens = state.tokens.filter((token) => token.cluster !== clusterName);
      await save();
      log?.info({ event: 'cluster.revoked', cluster: clusterName }, 'cluster revoked');
    },

    isClusterAllowed(clusterName, fingerprintSha256) {
      const entry = clusterEntry(clusterName);
      if (entry === undefined || entry.revoked) return false;
      const now = clock().getTime();
      return entry.certificates.some((cert) => cert.fingerprint === fingerprintSha256 && cert.expiresAt > now);
    },

    cluster(clusterName) {
      const entry = clusterEntry(clusterName);
      return entry === undefined ? undefined : record(clusterName, entry);
    },

    clusters() {
      return Object.entries(state.clusters).map(([name, entry]) => record(name, entry));
    },
  };
}
