// Certificate path validation: signatures up to a trusted CA, CA constraints on issuers, validity periods and purpose.
import { AirlockError } from '@airlock/common';
import type { CertificateInfo, CertificateInput } from './certificate-info.js';
import { decodeCertificates, sameBytes } from './internal/certificates.js';
import { describeCertificate, EKU_OIDS } from './internal/describe.js';
import { checkDate, invalidArgument } from './internal/validate.js';
import { x509 } from './internal/x509.js';

/** What the leaf will be used for; checked against its extended key usage. */
export type CertificatePurpose = 'server' | 'client';

export interface CertificateChainCheckOptions {
  /** The end-entity certificate. A PEM bundle may follow it with intermediates ("fullchain" files). */
  readonly leaf: CertificateInput;
  /** Untrusted intermediate CA certificates that may be needed to reach a trusted CA. */
  readonly intermediates?: readonly CertificateInput[];
  /** Trusted CA certificates (trust anchors). */
  readonly trusted: CertificateInput | readonly CertificateInput[];
  /** The time at which validity is judged (tests, audits). @default the current time */
  readonly now?: Date;
  /** When given, the leaf's extended key usage must allow it. @default no purpose check */
  readonly purpose?: CertificatePurpose;
}

/** A leaf that passed `checkCertificateChain`, with the path that proved it. */
export interface CheckedCertificate extends CertificateInfo {
  /** SHA-256 fingerprints from the leaf (first) to the trust anchor (last). */
  readonly chainFingerprints: readonly string[];
}

/** Longest path (leaf + intermediates + anchor) that is searched; Airlock's own paths have two or three. */
const MAX_PATH_LENGTH = 8;

/** Extensions this validator understands; a critical extension outside this set makes a certificate unusable (RFC 5280 section 4.2). */
const UNDERSTOOD_EXTENSIONS: ReadonlySet<string> = new Set([
  '2.5.29.14', // subjectKeyIdentifier
  '2.5.29.35', // authorityKeyIdentifier
  '2.5.29.15', // keyUsage
  '2.5.29.37', // extKeyUsage
  '2.5.29.17', // subjectAltName
  '2.5.29.19', // basicConstraints
]);

/** SHA-1 (and anything weaker) signatures are refused: they are forgeable in practice. */
const ACCEPTED_SIGNATURE_HASHES: ReadonlySet<string> = new Set(['SHA-256', 'SHA-384', 'SHA-512']);

function untrusted(reason: string, message: string): AirlockError {
  return new AirlockError('CERTIFICATE_UNTRUSTED', message, { details: { reason } });
}

function invalid(reason: string, message: string): AirlockError {
  return new AirlockError('CERTIFICATE_INVALID', message, { details: { reason } });
}

function nameBytes(name: x509.Name): ArrayBuffer {
  return name.toArrayBuffer();
}

/**
 * Could `issuer` have issued `subject`? Names must match exactly, and when both carry key
 * identifiers they must match too. This only selects candidates; the signature decides.
 */
function isCandidateIssuer(subject: x509.X509Certificate, issuer: x509.X509Certificate): boolean {
  if (!sameBytes(nameBytes(subject.issuerName), nameBytes(issuer.subjectName))) return false;
  const aki = subject.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId;
  const ski = issuer.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId;
  return aki === undefined || ski === undefined || aki.toLowerCase() === ski.toLowerCase();
}

async function signedBy(subject: x509.X509Certificate, issuer: x509.X509Certificate): Promise<boolean> {
  const hash = (subject.signatureAlgorithm as { hash?: { name?: string } }).hash?.name;
  if (hash === undefined || !ACCEPTED_SIGNATURE_HASHES.has(hash)) return false;
  try {
    return await subject.verify({ publicKey: issuer, signatureOnly: true });
  } catch {
    return false;
  }
}

function toList(value: CertificateInput | readonly CertificateInput[] | undefined): readonly CertificateInput[] {
  if (value === undefined) return [];
  return typeof value === 'string' || value instanceof Uint8Array ? [value] : value;
}

/**
 * Builds a path from `leaf` to one of the trusted certificates and returns the path
 * (leaf first, anchor last). Prefers anchors over intermediates at every step.
 */
async function buildPath(leaf: x509.X509Certificate, pool: readonly x509.X509Certificate[], anchors: readonly x509.X509Certificate[]): Promise<x509.X509Certificate[]> {
  const path = [leaf];
  let sawBadSignature = false;
  for (;;) {
    const current = path[path.length - 1] as x509.X509Certificate;
    if (anchors.some((anchor) => anchor.equal(current))) return path;
    if (path.length >= MAX_PATH_LENGTH) throw untrusted('path-too-long', 'No trusted path within the length limit');
    let next: x509.X509Certificate | undefined;
    for (const candidate of [...anchors, ...pool]) {
      if (path.some((seen) => seen.equal(candidate)) || !isCandidateIssuer(current, candidate)) continue;
      if (await signedBy(current, candidate)) {
        next = candidate;
        break;
      }
      sawBadSignature = true;
    }
    if (next === undefined) {
      // A named issuer whose key does not verify the signature means the certificate was altered
      // (or signed with a forbidden hash); no issuer by that name means it comes from elsewhere.
      if (sawBadSignature) throw invalid('signature', 'The certificate signature does not verify');
      throw untrusted('no-issuer', 'The certificate does not chain to a trusted authority');
    }
    path.push(next);
  }
}

/** RFC 5280 section 6.1.4 (k), (l), (n): every issuer must be a CA allowed to sign certificates at this depth. */
function checkIssuers(path: readonly x509.X509Certificate[]): void {
  for (let index = 1; index < path.length; index++) {
    const issuer = path[index] as x509.X509Certificate;
    const constraints = issuer.getExtension(x509.BasicConstraintsExtension);
    if (constraints?.ca !== true) throw untrusted('issuer-not-ca', 'An issuing certificate is not a CA');
    const keyUsage = issuer.getExtension(x509.KeyUsagesExtension);
    if (keyUsage !== null && (keyUsage.usages & x509.KeyUsageFlags.keyCertSign) === 0) {
      throw untrusted('issuer-key-usage', 'An issuing certificate may not sign certificates');
    }
    // Intermediates strictly between this issuer and the leaf.
    const below = index - 1;
    if (constraints.pathLength !== undefined && below > constraints.pathLength) {
      throw untrusted('path-length', 'A CA path length constraint is exceeded');
    }
  }
}

function checkCriticalExtensions(path: readonly x509.X509Certificate[]): void {
  for (const certificate of path) {
    for (const extension of certificate.extensions) {
      if (extension.critical && !UNDERSTOOD_EXTENSIONS.has(extension.type)) {
        throw invalid('critical-extension', 'A certificate has a critical extension this validator does not process');
      }
    }
  }
}

/** RFC 5280 section 4.1.2.5: both ends of the validity period are inclusive. */
function checkValidity(path: readonly x509.X509Certificate[], now: Date): void {
  const time = now.getTime();
  for (const certificate of path) {
    if (time < certificate.notBefore.getTime() || time > certificate.notAfter.getTime()) {
      throw new AirlockError('CERTIFICATE_EXPIRED', 'A certificate in the chain is outside its validity period', {
        details: { position: path.indexOf(certificate) },
      });
    }
  }
}

function checkPurpose(leaf: x509.X509Certificate, purpose: CertificatePurpose): void {
  const required = purpose === 'server' ? EKU_OIDS.serverAuth : EKU_OIDS.clientAuth;
  const eku = leaf.getExtension(x509.ExtendedKeyUsageExtension);
  if (eku !== null && !eku.usages.map(String).includes(required)) {
    throw untrusted('purpose', `The certificate is not valid for ${purpose} authentication`);
  }
  const keyUsage = leaf.getExtension(x509.KeyUsagesExtension);
  if (keyUsage !== null && (keyUsage.usages & x509.KeyUsageFlags.digitalSignature) === 0) {
    throw untrusted('purpose', 'The certificate key may not be used for TLS signatures');
  }
}

/**
 * Validates a certificate path and returns the leaf's identity. Checks, in order: that every
 * certificate parses; that signatures lead from the leaf to a trusted CA; that every issuer is a
 * CA allowed to sign at its depth; that no certificate has a critical extension we do not
 * understand; that every certificate in the path (anchor included) is valid at `now`; and, when
 * asked, the leaf's purpose.
 *
 * Throws CERTIFICATE_INVALID (malformed, bad signature), CERTIFICATE_UNTRUSTED (no path to a trusted
 * CA, issuer constraints or purpose violated) or CERTIFICATE_EXPIRED (outside a validity period).
 */
export async function checkCertificateChain(options: CertificateChainCheckOptions): Promise<CheckedCertificate> {
  const now = checkDate('now', options.now ?? new Date());
  if (options.purpose !== undefined && options.purpose !== 'server' && options.purpose !== 'client') {
    throw invalidArgument('purpose', 'must be "server" or "client"');
  }
  const [leaf, ...bundled] = decodeCertificates(options.leaf, 'leaf');
  if (leaf === undefined) throw invalid('empty', 'No leaf certificate');
  const pool = [...bundled, ...toList(options.intermediates).flatMap((input, i) => decodeCertificates(input, `intermediates[${i}]`))];
  const anchors = toList(options.trusted).flatMap((input, i) => decodeCertificates(input, `trusted[${i}]`));
  if (anchors.length === 0) throw invalidArgument('trusted', 'must name at least one trusted CA certificate');

  const path = await buildPath(leaf, pool, anchors);
  checkIssuers(path);
  checkCriticalExtensions(path);
  checkValidity(path, now);
  if (options.purpose !== undefined) checkPurpose(leaf, options.purpose);

  const info = describeCertificate(leaf);
  return Object.freeze({ ...info, chainFingerprints: Object.freeze(path.map((certificate) => describeCertificate(certificate).fingerprintSha256)) });
}
