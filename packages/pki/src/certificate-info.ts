// Reading a certificate's identity (subject, SANs, fingerprint, validity) without judging whether it is trusted.
import { decodeCertificate, decodeCertificates, type CertificateInput } from './internal/certificates.js';
import { describeCertificate } from './internal/describe.js';

export type { CertificateInput } from './internal/certificates.js';

/** The parsed, non-secret facts about one certificate. */
export interface CertificateInfo {
  /** Subject distinguished name, RFC 4514 style, e.g. `CN=cp.example, O=Airlock`. */
  readonly subject: string;
  /** The subject's first common name, if any. */
  readonly commonName: string | undefined;
  readonly issuer: string;
  /** Serial number as lowercase hex. */
  readonly serialNumber: string;
  /** DNS name SANs. */
  readonly dnsNames: readonly string[];
  /** IP address SANs, in text form. */
  readonly ipAddresses: readonly string[];
  /** URI SANs, e.g. `spiffe://airlock/cluster/eu-1`. */
  readonly uris: readonly string[];
  /** The first URI SAN: the workload identity of an Airlock client certificate. */
  readonly uri: string | undefined;
  /** SHA-256 of the DER encoding, lowercase hex without separators. */
  readonly fingerprintSha256: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** True when basicConstraints says CA:TRUE. */
  readonly isCertificateAuthority: boolean;
  /** Extended key usages: `serverAuth`, `clientAuth`, or the dotted OID of any other purpose. */
  readonly extendedKeyUsages: readonly string[];
}

/**
 * Parses one certificate (PEM or DER) and returns its identity. This does not check signatures,
 * validity or trust: call `checkCertificateChain` before relying on the identity.
 * Throws CERTIFICATE_INVALID when the input is not a well-formed certificate.
 */
export function parseCertificate(input: CertificateInput): CertificateInfo {
  return describeCertificate(decodeCertificate(input, 'certificate'));
}

/** Parses every certificate in a PEM bundle (or one DER certificate), in order. */
export function parseCertificates(input: CertificateInput): CertificateInfo[] {
  return decodeCertificates(input, 'certificates').map(describeCertificate);
}

/** The SHA-256 fingerprint (lowercase hex) of one certificate, as used in logs, pins and `airlock verify`. */
export function certificateFingerprint(input: CertificateInput): string {
  return parseCertificate(input).fingerprintSha256;
}
