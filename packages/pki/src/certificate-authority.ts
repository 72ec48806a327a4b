// Creating Airlock's certificate authority: an ECDSA P-256 root (or intermediate) that signs server and client certificates.
import { AirlockError } from '@airlock/common';
import type { CertificateInfo } from './certificate-info.js';
import { encodePem } from './internal/certificates.js';
import { describeCertificate } from './internal/describe.js';
import { exportPrivateKeyPem, generateEcKeyPair, type ImportedSigningKey } from './internal/keys.js';
import { loadAuthority, publicKeyOf, signCertificate, validityWindow } from './internal/signing.js';
import { checkCommonName, checkDate, checkSeconds, invalidArgument } from './internal/validate.js';
import { x509 } from './internal/x509.js';

/** A CA as the issuing functions take it: its certificate and its private key, both PEM. */
export interface CertificateAuthority {
  /** PEM certificate of the CA (exactly one block). */
  readonly cert: string;
  /** PEM private key of the CA (PKCS#8; SEC1 "EC PRIVATE KEY" is also read). Secret. */
  readonly key: string;
}

/** A certificate with its freshly generated private key. Spreads straight into TLS options (`cert`, `key`). */
export interface CertificateKeyPair {
  /** PEM certificate. */
  readonly cert: string;
  /** PKCS#8 PEM private key. Secret: never log it. */
  readonly key: string;
  readonly info: CertificateInfo;
}

export interface CertificateAuthorityOptions {
  /** Subject common name. @default "Airlock CA" */
  readonly commonName?: string;
  /** Subject organisation. @default "Airlock" */
  readonly organization?: string;
  /** Lifetime in seconds. @default 315360000 (10 years) */
  readonly validitySeconds?: number;
  /**
   * basicConstraints pathLenConstraint: how many intermediate CAs may sit below this one.
   * @default 0 (this CA signs only end-entity certificates)
   */
  readonly pathLength?: number;
  /** Parent CA for an intermediate. @default none: a self-signed root */
  readonly issuer?: CertificateAuthority;
  /** Clock used for the validity window (tests). @default the current time */
  readonly now?: Date;
}

export const DEFAULT_CA_VALIDITY_SECONDS = 10 * 365 * 24 * 3600;
const MAX_CA_VALIDITY_SECONDS = 30 * 365 * 24 * 3600;

/**
 * Creates a CA: a fresh ECDSA P-256 key and a certificate with basicConstraints CA:TRUE (critical),
 * keyUsage keyCertSign + cRLSign (critical) and a subject key identifier. Self-signed unless
 * `issuer` is given, in which case the result is an intermediate signed by that CA.
 */
export async function createCertificateAuthority(options: CertificateAuthorityOptions = {}): Promise<CertificateKeyPair> {
  const commonName = checkCommonName('commonName', options.commonName ?? 'Airlock CA');
  const organization = checkCommonName('organization', options.organization ?? 'Airlock');
  const validitySeconds = checkSeconds('validitySeconds', options.validitySeconds ?? DEFAULT_CA_VALIDITY_SECONDS, 60, MAX_CA_VALIDITY_SECONDS);
  const pathLength = options.pathLength ?? 0;
  if (!Number.isSafeInteger(pathLength) || pathLength < 0 || pathLength > 8) {
    throw invalidArgument('pathLength', 'must be an integer from 0 to 8');
  }
  const now = checkDate('now', options.now ?? new Date());
  const issuer = options.issuer === undefined ? undefined : await loadAuthority(options.issuer, 'issuer');
  if (issuer?.pathLength !== undefined && pathLength >= issuer.pathLength) {
    // RFC 5280 section 4.2.1.9: the issuer's constraint would make this CA's certificates fail validation.
    throw new AirlockError('INVALID_ARGUMENT', 'issuer does not allow an intermediate with this pathLength', {
      details: { argument: 'pathLength' },
    });
  }

  const keys = await generateEcKeyPair();
  const publicKey = await publicKeyOf(keys.publicKey);
  const selfSigningKey: ImportedSigningKey = { privateKey: keys.privateKey, curve: 'P-256', publicKeySpki: Buffer.from(publicKey.rawData) };
  const certificate = await signCertificate({
    subject: new x509.Name([{ CN: [commonName] }, { O: [organization] }]),
    publicKey,
    issuer,
    selfSigningKey,
    ...validityWindow(now, validitySeconds, issuer),
    extensions: [
      new x509.BasicConstraintsExtension(true, pathLength, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    ],
  });
  return Object.freeze({
    cert: encodePem(certificate.rawData, 'CERTIFICATE'),
    key: await exportPrivateKeyPem(keys.privateKey),
    info: describeCertificate(certificate),
  });
}
