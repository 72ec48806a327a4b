// Cluster registry: one-time bootstrap tokens (stored hashed), CSR-based client certificate issuance, renewal and revocation.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { AirlockError, configError, type Logger } from '@airlock/common';
import {
  clusterIdentityUri,
  DEFAULT_CLIENT_CERT_VALIDITY_SECONDS,
  isValidClusterName,
  issueClientCertificateFromCsr,
  type CertificateAuthority,
} from '@airlock/pki';
import { hasControlCharacter } from './action-queue.js';
import type { ControlPlaneDatabase } from './db/database.js';

/** Prefix of every bootstrap token, so a leaked one is recognisable (secret scanners, logs). */
export const BOOTSTRAP_TOKEN_PREFIX = 'alb_';
const TOKEN_BYTES = 32;
/** How many issued certificates of one cluster stay valid: the current one and the one it replaced. */
const KEPT_CERTIFICATES = 2;

export interface ClusterRegistryOptions {
  /** The CA that issues data-plane client certificates (the tunnel endpoint must trust it). */
  readonly ca: CertificateAuthority;
  /** Where registrations and token hashes live; cluster names and token reasons are stored sealed. */
  readonly database: ControlPlaneDatabase;
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
  /**
   * Creates a one-time bootstrap token for `clusterName`, valid for `ttlMs`. `reason` is free text
   * for the audit trail (stored sealed, at most 512 printable characters).
   */
  createBootstrapToken(clusterName: string, ttlMs: number, reason?: string): Promise<BootstrapToken>;
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
  isClusterAllowed(clusterName: string, fingerprintSha256: string): Promise<boolean>;
  cluster(clusterName: string): Promise<ClusterRecord | undefined>;
  clusters(): Promise<ClusterRecord[]>;
}

const MAX_REASON_LENGTH = 512;
/** Blind-index domain of cluster names. */
const CLUSTER_INDEX = 'cluster';

function denied(reason: string, message: string, details: Record<string, string> = {}): AirlockError {
  return new AirlockError('ACCESS_DENIED', message, { details: { reason, ...details } });
}

function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

function checkClusterName(name: string): string {
  if (!isValidClusterName(name)) {
    throw new AirlockError('INVALID_ARGUMENT', 'clusterName must be 1 to 63 lower-case letters, digits or inner hyphens', {
      details: { argument: 'clusterName' },
    });
  }
  return name;
}

function checkReason(reason: unknown): string | undefined {
  if (reason === undefined || reason === '') return undefined;
  if (typeof reason !== 'string' || reason.length > MAX_REASON_LENGTH || hasControlCharacter(reason)) {
    throw new AirlockError('INVALID_ARGUMENT', `reason must be at most ${MAX_REASON_LENGTH} printable characters`, { details: { argument: 'reason' } });
  }
  return reason;
}

/** Opens the cluster registry over the control-plane database. */
export function openClusterRegistry(options: ClusterRegistryOptions): ClusterRegistry {
  const validitySeconds = options.certificateValiditySeconds ?? DEFAULT_CLIENT_CERT_VALIDITY_SECONDS;
  if (!Number.isInteger(validitySeconds) || validitySeconds <= 0) throw configError('clusterRegistry.certificateValiditySeconds', 'must be a positive integer');
  if (typeof options.database?.db !== 'object') throw configError('clusterRegistry.database', 'is required');
  const clock = options.now ?? ((): Date => new Date());
  const { ca, log } = options;
  const { db, sealer } = options.database;
  const clusterId = (name: string): string => sealer.blindIndex(CLUSTER_INDEX, name);

  const issue = async (cluster: string, csrPem: string, now: Date): Promise<ClusterCertificate> => {
    const issued = await issueClientCertificateFromCsr({ ca, csr: csrPem, uri: clusterIdentityUri(cluster), validitySeconds, now });
    return Object.freeze({
      certPem: issued.cert,
      caPem: ca.cert,
      expiresAt: issued.info.notAfter,
      fingerprintSha256: issued.info.fingerprintSha256,
    });
  };

  /** Expired tokens and certificates no longer decide anything. */
  const prune = async (now: number): Promise<void> => {
    await db.deleteFrom('bootstrap_tokens').where('expires_at', '<=', now).execute();
    await db.deleteFrom('cluster_certificates').where('expires_at', '<=', now).execute();
  };

  const load = async (id: string): Promise<ClusterRecord | undefined> => {
    const row = await db.selectFrom('clusters').selectAll().where('cluster_id', '=', id).executeTakeFirst();
    if (row === undefined) return undefined;
    const now = clock().getTime();
    const certificates = await db
      .selectFrom('cluster_certificates')
      .select(['fingerprint', 'expires_at'])
      .where('cluster_id', '=', id)
      .where('expires_at', '>', now)
      .orderBy('issued_at', 'desc')
      .orderBy('fingerprint')
      .execute();
    return Object.freeze({
      name: sealer.openText({ table: 'clusters', column: 'name_sealed', row: id }, row.name_sealed),
      registeredAt: new Date(row.registered_at),
      revoked: row.revoked !== 0,
      certificates: certificates.map((cert) => Object.freeze({ fingerprintSha256: cert.fingerprint, expiresAt: new Date(cert.expires_at) })),
    });
  };

  return {
    async createBootstrapToken(clusterName, ttlMs, reasonText) {
      const cluster = checkClusterName(clusterName);
      if (!Number.isFinite(ttlMs) || ttlMs <= 0) {
        throw new AirlockError('INVALID_ARGUMENT', 'ttlMs must be a positive number of milliseconds', { details: { argument: 'ttlMs' } });
      }
      const reason = checkReason(reasonText);
      const token = `${BOOTSTRAP_TOKEN_PREFIX}${randomBytes(TOKEN_BYTES).toString('base64url')}`;
      const now = clock().getTime();
      const expiresAt = now + ttlMs;
      const hash = hashToken(token);
      await prune(now);
      await db
        .insertInto('bootstrap_tokens')
        .values({
          token_hash: hash,
          cluster_id: clusterId(cluster),
          cluster_name_sealed: sealer.sealText({ table: 'bootstrap_tokens', column: 'cluster_name_sealed', row: hash }, cluster),
          reason_sealed: reason === undefined ? null : sealer.sealText({ table: 'bootstrap_tokens', column: 'reason_sealed', row: hash }, reason),
          created_at: now,
          expires_at: expiresAt,
          used_at: null,
        })
        .execute();
      log?.info({ event: 'cluster.token.created', cluster, expiresAt: new Date(expiresAt).toISOString() }, 'bootstrap token created');
      return Object.freeze({ token, cluster, expiresAt: new Date(expiresAt) });
    },

    async redeemBootstrapToken(token, csrPem, now = clock(), expectedCluster) {
      // Looked up by the hash of what was presented: timing can tell a caller only about the hash of
      // their own guess, never about a stored token.
      const presented = hashToken(typeof token === 'string' ? token : '');
      const row =
        typeof token === 'string' && token.startsWith(BOOTSTRAP_TOKEN_PREFIX)
          ? await db.selectFrom('bootstrap_tokens').selectAll().where('token_hash', '=', presented).executeTakeFirst()
          : undefined;
      if (row === undefined || !timingSafeEqual(Buffer.from(row.token_hash, 'hex'), Buffer.from(presented, 'hex'))) {
        log?.warn({ event: 'cluster.token.refused', reason: 'token-unknown' }, 'bootstrap token refused');
        throw denied('token-unknown', 'The bootstrap token is not known');
      }
      const cluster = sealer.openText({ table: 'bootstrap_tokens', column: 'cluster_name_sealed', row: row.token_hash }, row.cluster_name_sealed);
      if (expectedCluster !== undefined && expectedCluster !== cluster) {
        log?.warn({ event: 'cluster.token.refused', reason: 'cluster-mismatch', cluster: expectedCluster }, 'bootstrap token refused');
        throw denied('cluster-mismatch', 'The bootstrap token was created for another cluster', { cluster: expectedCluster });
      }
      if (row.used_at !== null) {
        log?.warn({ event: 'cluster.token.refused', reason: 'token-used', cluster }, 'bootstrap token refused');
        throw denied('token-used', 'The bootstrap token has already been used', { cluster });
      }
      if (now.getTime() >= row.expires_at) {
        log?.warn({ event: 'cluster.token.refused', reason: 'token-expired', cluster }, 'bootstrap token refused');
        throw denied('token-expired', 'The bootstrap token has expired', { cluster });
      }
      // Spent with a conditional update, so two concurrent redemptions (even on two control planes) cannot both win.
      const spent = await db
        .updateTable('bootstrap_tokens')
        .set({ used_at: now.getTime() })
        .where('token_hash', '=', row.token_hash)
        .where('used_at', 'is', null)
        .executeTakeFirst();
      if (Number(spent.numUpdatedRows) !== 1) {
        log?.warn({ event: 'cluster.token.refused', reason: 'token-used', cluster }, 'bootstrap token refused');
        throw denied('token-used', 'The bootstrap token has already been used', { cluster });
      }
      let certificate: ClusterCertificate;
      try {
        certificate = await issue(cluster, csrPem, now);
      } catch (error) {
        await db.updateTable('bootstrap_tokens').set({ used_at: null }).where('token_hash', '=', row.token_hash).execute();
        throw error;
      }
      const id = clusterId(cluster);
      // A new registration supersedes any earlier one, including a revocation.
      await db.transaction().execute(async (trx) => {
        await trx.deleteFrom('cluster_certificates').where('cluster_id', '=', id).execute();
        const values = {
          name_sealed: sealer.sealText({ table: 'clusters', column: 'name_sealed', row: id }, cluster),
          registered_at: now.getTime(),
          revoked: 0,
          updated_at: now.getTime(),
        };
        await trx
          .insertInto('clusters')
          .values({ cluster_id: id, ...values })
          .onConflict((conflict) => conflict.column('cluster_id').doUpdateSet(values))
          .execute();
        await trx
          .insertInto('cluster_certificates')
          .values({ fingerprint: certificate.fingerprintSha256, cluster_id: id, issued_at: now.getTime(), expires_at: certificate.expiresAt.getTime() })
          .execute();
      });
      log?.info(
        { event: 'cluster.registered', cluster, certFingerprintSha256: certificate.fingerprintSha256, expiresAt: certificate.expiresAt.toISOString() },
        'cluster registered',
      );
      return certificate;
    },

    async renew(clusterName, presentedFingerprint, csrPem) {
      const now = clock();
      const id = clusterId(clusterName);
      const entry = await load(id);
      if (entry === undefined) throw denied('cluster-unknown', 'The cluster is not registered', { cluster: clusterName });
      if (entry.revoked) throw denied('cluster-revoked', 'The cluster has been revoked', { cluster: clusterName });
      const current = entry.certificates[0];
      if (current?.fingerprintSha256 !== presentedFingerprint || current.expiresAt.getTime() <= now.getTime()) {
        log?.warn({ event: 'cluster.renew.refused', cluster: clusterName, reason: 'certificate-mismatch' }, 'certificate renewal refused');
        throw denied('certificate-mismatch', 'The presented certificate is not the current certificate of this cluster', { cluster: clusterName });
      }
      const certificate = await issue(clusterName, csrPem, now);
      await db.transaction().execute(async (trx) => {
        // Re-read inside the transaction: a revocation (or re-registration) in the meantime wins.
        const row = await trx.selectFrom('clusters').select(['revoked', 'registered_at']).where('cluster_id', '=', id).executeTakeFirst();
        if (row === undefined || row.revoked !== 0 || row.registered_at !== entry.registeredAt.getTime()) {
          throw denied('cluster-revoked', 'The cluster has been revoked', { cluster: clusterName });
        }
        await trx
          .insertInto('cluster_certificates')
          .values({ fingerprint: certificate.fingerprintSha256, cluster_id: id, issued_at: now.getTime(), expires_at: certificate.expiresAt.getTime() })
          .execute();
        const kept = await trx
          .selectFrom('cluster_certificates')
          .select('fingerprint')
          .where('cluster_id', '=', id)
          .orderBy('issued_at', 'desc')
          .orderBy('fingerprint')
          .limit(KEPT_CERTIFICATES)
          .execute();
        await trx
          .deleteFrom('cluster_certificates')
          .where('cluster_id', '=', id)
          .where(
            'fingerprint',
            'not in',
            kept.map((cert) => cert.fingerprint),
          )
          .execute();
        await trx.updateTable('clusters').set({ updated_at: now.getTime() }).where('cluster_id', '=', id).execute();
      });
      log?.info(
        { event: 'cluster.renewed', cluster: clusterName, certFingerprintSha256: certificate.fingerprintSha256, expiresAt: certificate.expiresAt.toISOString() },
        'cluster certificate renewed',
      );
      return certificate;
    },

    async revoke(clusterName) {
      const id = clusterId(clusterName);
      const revoked = await db.transaction().execute(async (trx) => {
        const result = await trx.updateTable('clusters').set({ revoked: 1, updated_at: clock().getTime() }).where('cluster_id', '=', id).executeTakeFirst();
        if (Number(result.numUpdatedRows) === 0) return false;
        await trx.deleteFrom('bootstrap_tokens').where('cluster_id', '=', id).execute();
        return true;
      });
      if (!revoked) throw new AirlockError('NOT_FOUND', 'The cluster is not registered', { details: { cluster: clusterName } });
      log?.info({ event: 'cluster.revoked', cluster: clusterName }, 'cluster revoked');
    },

    async isClusterAllowed(clusterName, fingerprintSha256) {
      if (typeof clusterName !== 'string' || typeof fingerprintSha256 !== 'string') return false;
      const row = await db
        .selectFrom('cluster_certificates')
        .innerJoin('clusters', 'clusters.cluster_id', 'cluster_certificates.cluster_id')
        .select('clusters.revoked')
        .where('cluster_certificates.fingerprint', '=', fingerprintSha256)
        .where('cluster_certificates.cluster_id', '=', clusterId(clusterName))
        .where('cluster_certificates.expires_at', '>', clock().getTime())
        .executeTakeFirst();
      return row !== undefined && row.revoked === 0;
    },

    cluster(clusterName) {
      return load(clusterId(clusterName));
    },

    async clusters() {
      const rows = await db.selectFrom('clusters').select('cluster_id').execute();
      const records: ClusterRecord[] = [];
      for (const row of rows) {
        const record = await load(row.cluster_id);
        if (record !== undefined) records.push(record);
      }
      return records;
    },
  };
}
