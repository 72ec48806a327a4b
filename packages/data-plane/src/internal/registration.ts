// Agent-side registration: bootstrap token + locally generated key/CSR → client certificate, and renewal at two thirds of its lifetime.
import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import { AirlockError, type Logger } from '@airlock/common';
import { certificateFingerprint, clusterIdentityUri, createCertificateRequest, parseCertificate } from '@airlock/pki';

/** What the control plane returns for a CSR (bootstrap redemption or renewal). */
export interface IssuedClusterCertificate {
  readonly certPem: string;
  readonly caPem: string;
  readonly expiresAt: Date;
}

/** The agent's credentials: its own key (secret, never logged or sent), its certificate and the CA. */
export interface RegisteredCredentials {
  readonly cert: string;
  readonly key: string;
  readonly ca: string;
  readonly expiresAt: Date;
  readonly fingerprintSha256: string;
}

/** Transport to the control plane's redemption call (dispatch gRPC, later). */
export type RedeemBootstrapToken = (token: string, csrPem: string) => Promise<IssuedClusterCertificate>;
/** Transport to the control plane's renewal call; `current` is the certificate the agent authenticates with. */
export type RenewClusterCertificate = (csrPem: string, current: RegisteredCredentials) => Promise<IssuedClusterCertificate>;

export interface RegisterWithBootstrapTokenOptions {
  readonly clusterName: string;
  /** Secret: never logged. */
  readonly token: string;
  readonly redeem: RedeemBootstrapToken;
  readonly log?: Logger;
}

/** Checks that an issued certificate names this cluster and certifies the key we hold, and builds the credentials. */
function credentialsFrom(clusterName: string, key: string, issued: IssuedClusterCertificate): RegisteredCredentials {
  const info = parseCertificate(issued.certPem);
  const expected = clusterIdentityUri(clusterName);
  if (info.uri !== expected) {
    throw new AirlockError('CERTIFICATE_INVALID', 'The issued certificate does not carry this cluster identity', { details: { cluster: clusterName } });
  }
  const certKey = new X509Certificate(issued.certPem).publicKey.export({ type: 'spki', format: 'der' });
  const ownKey = createPublicKey(createPrivateKey(key)).export({ type: 'spki', format: 'der' });
  if (!certKey.equals(ownKey)) {
    throw new AirlockError('CERTIFICATE_INVALID', 'The issued certificate is not for this agent key', { details: { cluster: clusterName } });
  }
  return Object.freeze({ cert: issued.certPem, key, ca: issued.caPem, expiresAt: info.notAfter, fingerprintSha256: certificateFingerprint(issued.certPem) });
}

async function requestCertificate(
  clusterName: string,
  send: (csrPem: string) => Promise<IssuedClusterCertificate>,
): Promise<RegisteredCredentials> {
  const request = await createCertificateRequest({ commonName: clusterName });
  return credentialsFrom(clusterName, request.key, await send(request.csr));
}

/** Registers with a one-time bootstrap token: generates a key and CSR here, so the private key never leaves the agent. */
export async function registerWithBootstrapToken(options: RegisterWithBootstrapTokenOptions): Promise<RegisteredCredentials> {
  const { clusterName, token, redeem, log } = options;
  const credentials = await requestCertificate(clusterName, (csr) => redeem(token, csr));
  log?.info(
    { event: 'registration.registered', cluster: clusterName, certFingerprintSha256: credentials.fingerprintSha256, expiresAt: credentials.expiresAt.toISOString() },
    'registered with the control plane',
  );
  return credentials;
}

/** Timer functions, injectable for tests. */
export interface RenewerTimers {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface CertificateRenewerOptions {
  readonly clusterName: string;
  readonly initial: RegisteredCredentials;
  readonly renew: RenewClusterCertificate;
  /** Switched to the new credentials (make-before-break): its `rotate()` is called after each renewal. */
  readonly agent?: { rotate(): Promise<unknown> };
  /** Called with the new credentials after each renewal (after `agent.rotate()`). */
  readonly onRenewed?: (credentials: RegisteredCredentials) => void | Promise<void>;
  readonly log: Logger;
  /** Clock in epoch milliseconds. @default Date.now */
  readonly now?: () => number;
  readonly timers?: RenewerTimers;
  /** Random source in [0, 1) for the ±5% jitter. @default Math.random */
  readonly random?: () => number;
  /** Delay before retrying a failed renewal (capped at a tenth of the remaining lifetime, at least 1 s). @default 30000 */
  readonly retryDelayMs?: number;
}

export interface CertificateRenewer {
  /** The current credentials; pass `() => renewer.credentials()` as the agent's `getCredentials`. */
  credentials(): RegisteredCredentials;
  /** When the next renewal is due (epoch ms), or undefined once stopped. */
  nextRenewalAt(): number | undefined;
  /** Renews now (also used by the timer). Concurrent calls share one renewal. */
  renewNow(): Promise<RegisteredCredentials>;
  stop(): void;
}

/** The fraction of a certificate's lifetime after which it is renewed. */
export const RENEW_AT_LIFETIME_FRACTION = 2 / 3;
const JITTER = 0.05;

/** Delay from `receivedAt` until renewal: two thirds of the remaining lifetime, ±5% jitter. */
export function renewalDelayMs(receivedAt: number, expiresAt: number, random: () => number = Math.random): number {
  const lifetime = Math.max(0, expiresAt - receivedAt);
  const jitter = 1 + (random() * 2 - 1) * JITTER;
  return Math.max(0, Math.round(lifetime * RENEW_AT_LIFETIME_FRACTION * jitter));
}

/** Starts renewing `initial` at two thirds of its lifetime, and each renewed certificate likewise, until `stop()`. */
export function startCertificateRenewer(options: CertificateRenewerOptions): CertificateRenewer {
  const now = options.now ?? Date.now;
  const timers: RenewerTimers = options.timers ?? {
    setTimeout: (callback, ms) => setTimeout(callback, ms),
    clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
  };
  const random = options.random ?? Math.random;
  const retryDelayMs = options.retryDelayMs ?? 30_000;
  const { clusterName, log } = options;
  let current = options.initial;
  let timer: unknown;
  let dueAt: number | undefined;
  let stopped = false;
  let inFlight: Promise<RegisteredCredentials> | undefined;

  const schedule = (delayMs: number): void => {
    if (stopped) return;
    if (timer !== undefined) timers.clearTimeout(timer);
    dueAt = now() + delayMs;
    timer = timers.setTimeout(() => {
      timer = undefined;
      renewNow().catch(() => undefined);
    }, delayMs);
  };

  const renewOnce = async (): Promise<RegisteredCredentials> => {
    const previous = current;
    log.info({ event: 'registration.renewing', cluster: clusterName, certFingerprintSha256: previous.fingerprintSha256 }, 'renewing client certificate');
    const next = await requestCertificate(clusterName, (csr) => options.renew(csr, previous));
    if (stopped) return next;
    current = next;
    log.info(
      { event: 'registration.renewed', cluster: clusterName, certFingerprintSha256: next.fingerprintSha256, expiresAt: next.expiresAt.toISOString() },
      'client certificate renewed',
    );
    schedule(renewalDelayMs(now(), next.expiresAt.getTime(), random));
    if (options.agent !== undefined) {
      // The agent keeps its current connection for in-flight calls until the new one is up.
      await options.agent.rotate().catch((error: unknown) => {
        log.warn({ event: 'registration.rotate.failed', cluster: clusterName, err: AirlockError.from(error).code }, 'tunnel rotation failed; the next connection uses the new certificate');
      });
    }
    await options.onRenewed?.(next);
    return next;
  };

  const renewNow = (): Promise<RegisteredCredentials> => {
    if (stopped) return Promise.reject(new AirlockError('UNAVAILABLE', 'The certificate renewer is stopped'));
    inFlight ??= renewOnce()
      .catch((error: unknown) => {
        const remaining = current.expiresAt.getTime() - now();
        const retryIn = Math.max(1000, Math.min(retryDelayMs, Math.floor(remaining / 10)));
        log.warn(
          { event: 'registration.renew.failed', cluster: clusterName, code: AirlockError.from(error).code, retryInMs: retryIn },
          'client certificate renewal failed; retrying',
        );
        schedule(retryIn);
        throw error;
      })
      .finally(() => {
        inFlight = undefined;
      });
    return inFlight;
  };

  schedule(renewalDelayMs(now(), current.expiresAt.getTime(), random));

  return {
    credentials: () => current,
    nextRenewalAt: () => (stopped ? undefined : dueAt),
    renewNow,
    stop() {
      stopped = true;
      dueAt = undefined;
      if (timer !== undefined) timers.clearTimeout(timer);
      timer = undefined;
    },
  };
}
