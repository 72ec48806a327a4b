// The certificate signer shared by CA creation and leaf issuance: loads an authority and builds signed certificates.
import { randomBytes, webcrypto } from 'node:crypto';
import { AirlockError } from '@airlock/common';
import type { CertificateAuthority } from '../certificate-authority.js';
import { decodeCertificate } from './certificates.js';
import { importSigningKeyPem, signingAlgorithmFor, type ImportedSigningKey } from './keys.js';
import { x509 } from './x509.js';

/**
 * Certificates start this long before the moment they are issued, so that a peer whose clock is
 * slightly behind the CA's does not reject a certificate it has just received.
 */
export const BACKDATE_MS = 60_000;

/** An authority ready to sign: its parsed certificate, signing key and key identifier. */
export interface LoadedAuthority {
  readonly certificate: x509.X509Certificate;
  readonly signingKey: ImportedSigningKey;
  /** Hex key identifier placed in the authorityKeyIdentifier of everything it signs. */
  readonly keyIdentifier: string;
  /** basicConstraints pathLenConstraint, when the authority has one. */
  readonly pathLength: number | undefined;
}

/** Parses a CA's certificate and key and checks that they form a usable, matching pair. */
export async function loadAuthority(ca: CertificateAuthority, argument = 'ca'): Promise<LoadedAuthority> {
  if (typeof ca !== 'object' || ca === null) {
    throw new AirlockError('INVALID_ARGUMENT', `${argument} must be an object with cert and key`, { details: { argument } });
  }
  const certificate = decodeCertificate(ca.cert, `${argument}.cert`);
  const signingKey = await importSigningKeyPem(ca.key, `${argument}.key`);
  if (!Buffer.from(certificate.publicKey.rawData).equals(signingKey.publicKeySpki)) {
    throw new AirlockError('INVALID_ARGUMENT', `${argument}.key does not belong to ${argument}.cert`, { details: { argument } });
  }
  const constraints = certificate.getExtension(x509.BasicConstraintsExtension);
  const keyUsage = certificate.getExtension(x509.KeyUsagesExtension);
  if (constraints?.ca !== true || (keyUsage !== null && (keyUsage.usages & x509.KeyUsageFlags.keyCertSign) === 0)) {
    throw new AirlockError('INVALID_ARGUMENT', `${argument}.cert is not a certificate authority`, { details: { argument } });
  }
  const ski = certificate.getExtension(x509.SubjectKeyIdentifierExtension);
  const keyIdentifier = ski?.keyId ?? Buffer.from(await certificate.publicKey.getKeyIdentifier()).toString('hex');
  return { certificate, signingKey, keyIdentifier, pathLength: constraints.pathLength };
}

export interface SignCertificateParams {
  readonly subject: x509.Name;
  readonly publicKey: x509.PublicKey;
  /** The signer; omit for a self-signed certificate, which is then signed by `selfSigningKey`. */
  readonly issuer: LoadedAuthority | undefined;
  readonly selfSigningKey?: ImportedSigningKey;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** Profile extensions; the key identifiers are added here. */
  readonly extensions: readonly x509.Extension[];
}

/** Builds and signs a certificate with a random 16-byte serial and subject/authority key identifiers. */
export async function signCertificate(params: SignCertificateParams): Promise<x509.X509Certificate> {
  const subjectKeyId = await x509.SubjectKeyIdentifierExtension.create(params.publicKey);
  const signingKey = params.issuer?.signingKey ?? params.selfSigningKey;
  if (signingKey === undefined) throw new AirlockError('INTERNAL', 'No signing key for certificate');
  const authorityKeyId = params.issuer?.keyIdentifier ?? subjectKeyId.keyId;
  // RFC 5280 section 4.1.2.2: serials are positive and at most 20 octets; 16 random octets give
  // the unpredictability CA/B Forum rules ask for. The encoder adds a 0x00 byte when the top bit is set.
  const serialNumber = randomBytes(16).toString('hex');
  return x509.X509CertificateGenerator.create({
    serialNumber,
    subject: params.subject,
    issuer: params.issuer?.certificate.subjectName ?? params.subject,
    notBefore: params.notBefore,
    notAfter: params.notAfter,
    publicKey: params.publicKey,
    signingKey: signingKey.privateKey,
    signingAlgorithm: signingAlgorithmFor(signingKey.curve),
    extensions: [...params.extensions, subjectKeyId, new x509.AuthorityKeyIdentifierExtension(authorityKeyId)],
  });
}

/** Works out a validity window: backdated start, requested lifetime, never outside the issuer's own validity. */
export function validityWindow(clock: Date, lifetimeSeconds: number, issuer: LoadedAuthority | undefined): { notBefore: Date; notAfter: Date } {
  // Certificate times have whole-second precision; rounding first keeps the lifetime exact.
  const now = new Date(Math.floor(clock.getTime() / 1000) * 1000);
  let notBefore = new Date(now.getTime() - BACKDATE_MS);
  let notAfter = new Date(now.getTime() + lifetimeSeconds * 1000);
  if (issuer !== undefined) {
    const { notBefore: caNotBefore, notAfter: caNotAfter } = issuer.certificate;
    if (now.getTime() < caNotBefore.getTime() || now.getTime() >= caNotAfter.getTime()) {
      throw new AirlockError('CERTIFICATE_EXPIRED', 'The issuing CA is outside its validity period', { details: { argument: 'ca' } });
    }
    // A certificate that outlives its issuer is unusable once the issuer expires; capping it makes
    // renewal fall due no later than the CA's own replacement.
    if (notBefore.getTime() < caNotBefore.getTime()) notBefore = caNotBefore;
    if (notAfter.getTime() > caNotAfter.getTime()) notAfter = caNotAfter;
  }
  return { notBefore, notAfter };
}

/** The public half of a WebCrypto key pair, as an X.509 SubjectPublicKeyInfo. */
export async function publicKeyOf(key: webcrypto.CryptoKey): Promise<x509.PublicKey> {
  return new x509.PublicKey(await webcrypto.subtle.exportKey('spki', key));
}
