// Issuing end-entity certificates from the CA: server certificates (DNS/IP SANs) and client certificates (URI SAN identity).
import { AirlockError } from '@airlock/common';
import type { CertificateAuthority, CertificateKeyPair } from './certificate-authority.js';
import type { CertificateInfo, CertificateInput } from './certificate-info.js';
import { decodeCertificateRequest, encodePem } from './internal/certificates.js';
import { describeCertificate, EKU_OIDS } from './internal/describe.js';
import { exportPrivateKeyPem, generateEcKeyPair, isSupportedCurve } from './internal/keys.js';
import { loadAuthority, publicKeyOf, signCertificate, validityWindow, type LoadedAuthority } from './internal/signing.js';
import { checkCommonName, checkDate, checkDnsName, checkIpAddress, checkSeconds, checkUri, invalidArgument } from './internal/validate.js';
import { x509 } from './internal/x509.js';

/** Default server certificate lifetime: 90 days. */
export const DEFAULT_SERVER_CERT_VALIDITY_SECONDS = 90 * 24 * 3600;
/** Default client certificate lifetime: 24 hours. Data-plane agents renew well before expiry. */
export const DEFAULT_CLIENT_CERT_VALIDITY_SECONDS = 24 * 3600;
/** Upper bound for any end-entity certificate: 397 days, the CA/Browser Forum limit. */
export const MAX_LEAF_CERT_VALIDITY_SECONDS = 397 * 24 * 3600;
const MIN_LEAF_CERT_VALIDITY_SECONDS = 60;

interface IssueOptionsBase {
  /** The issuing CA. */
  readonly ca: CertificateAuthority;
  /** Subject common name. @default the first SAN (server), or the URI when it fits in 64 characters (client) */
  readonly commonName?: string;
  /** Lifetime in seconds. @default 7776000 (90 days) for servers, 86400 (24 hours) for clients */
  readonly validitySeconds?: number;
  /** Clock used for the validity window (tests). @default the current time */
  readonly now?: Date;
}

export interface ServerCertificateOptions extends IssueOptionsBase {
  /** DNS name SANs. At least one DNS name or IP address is required. */
  readonly dnsNames?: readonly string[];
  /** IP address SANs (IPv4 or IPv6). */
  readonly ipAddresses?: readonly string[];
}

export interface ClientCertificateOptions extends IssueOptionsBase {
  /** The identity, as a URI SAN, e.g. `clusterIdentityUri("eu-1")` = `spiffe://airlock/cluster/eu-1`. */
  readonly uri: string;
}

export interface FromCsrOptions {
  /** PEM (or DER) PKCS#10 request. Only its public key is used, after its signature is checked. */
  readonly csr: CertificateInput;
}

/** A certificate issued for a key the CA never saw. */
export interface IssuedCertificate {
  /** PEM certificate. */
  readonly cert: string;
  readonly info: CertificateInfo;
}

interface Profile {
  readonly subject: x509.Name;
  readonly extensions: x509.Extension[];
  readonly validitySeconds: number;
  readonly now: Date;
}

function checkValidity(value: number | undefined, fallback: number): number {
  return checkSeconds('validitySeconds', value ?? fallback, MIN_LEAF_CERT_VALIDITY_SECONDS, MAX_LEAF_CERT_VALIDITY_SECONDS);
}

function checkList<T>(argument: string, value: readonly T[] | undefined): readonly T[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || value.length > 100) throw invalidArgument(argument, 'must be an array of at most 100 entries');
  return value as readonly T[];
}

/** Extensions every end-entity certificate carries (RFC 5280 sections 4.2.1.3, 4.2.1.9, 4.2.1.12). */
function leafExtensions(eku: string, names: x509.JsonGeneralNames, sanCritical: boolean): x509.Extension[] {
  return [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension([eku], false),
    new x509.SubjectAlternativeNameExtension(names, sanCritical),
  ];
}

function serverProfile(options: ServerCertificateOptions): Profile {
  const dnsNames = checkList('dnsNames', options.dnsNames).map((name, i) => checkDnsName(`dnsNames[${i}]`, name));
  const ipAddresses = checkList('ipAddresses', options.ipAddresses).map((ip, i) => checkIpAddress(`ipAddresses[${i}]`, ip));
  const firstName = dnsNames[0] ?? ipAddresses[0];
  if (firstName === undefined) throw invalidArgument('dnsNames', 'or ipAddresses must name the server at least once');
  const names: x509.JsonGeneralNames = [
    ...dnsNames.map((value): x509.JsonGeneralName => ({ type: x509.DNS, value })),
    ...ipAddresses.map((value): x509.JsonGeneralName => ({ type: x509.IP, value })),
  ];
  return {
    subject: new x509.Name([{ CN: [checkCommonName('commonName', options.commonName ?? firstName)] }]),
    extensions: leafExtensions(EKU_OIDS.serverAuth, names, false),
    validitySeconds: checkValidity(options.validitySeconds, DEFAULT_SERVER_CERT_VALIDITY_SECONDS),
    now: checkDate('now', options.now ?? new Date()),
  };
}

function clientProfile(options: ClientCertificateOptions): Profile {
  const uri = checkUri('uri', options.uri);
  const commonName = options.commonName ?? (uri.length <= 64 ? uri : undefined);
  // With no subject name the SAN must be critical (RFC 5280 section 4.2.1.6); the identity is the
  // URI either way, as in SPIFFE X.509-SVIDs.
  const subject = commonName === undefined ? new x509.Name([]) : new x509.Name([{ CN: [checkCommonName('commonName', commonName)] }]);
  return {
    subject,
    extensions: leafExtensions(EKU_OIDS.clientAuth, [{ type: x509.URL, value: uri }], commonName === undefined),
    validitySeconds: checkValidity(options.validitySeconds, DEFAULT_CLIENT_CERT_VALIDITY_SECONDS),
    now: checkDate('now', options.now ?? new Date()),
  };
}

/**
 * Checks a CSR's self-signature (proof that the requester holds the private key) and key type,
 * and returns its public key. Everything else in the CSR is ignored.
 */
async function csrPublicKey(input: CertificateInput): Promise<x509.PublicKey> {
  const request = decodeCertificateRequest(input, 'csr');
  let verified = false;
  try {
    verified = await request.verify();
  } catch (error) {
    throw new AirlockError('CERTIFICATE_INVALID', 'The certificate request signature does not verify', { cause: error, details: { argument: 'csr' } });
  }
  if (!verified) {
    throw new AirlockError('CERTIFICATE_INVALID', 'The certificate request signature does not verify', { details: { argument: 'csr' } });
  }
  const algorithm = request.publicKey.algorithm as { name?: string; namedCurve?: string };
  if (algorithm.name !== 'ECDSA' || !isSupportedCurve(algorithm.namedCurve)) {
    throw new AirlockError('CERTIFICATE_INVALID', 'The certificate request key must be ECDSA P-256 or P-384', { details: { argument: 'csr' } });
  }
  return request.publicKey;
}

async function issue(ca: LoadedAuthority, publicKey: x509.PublicKey, profile: Profile): Promise<IssuedCertificate> {
  const certificate = await signCertificate({
    subject: profile.subject,
    publicKey,
    issuer: ca,
    ...validityWindow(profile.now, profile.validitySeconds, ca),
    extensions: profile.extensions,
  });
  return Object.freeze({ cert: encodePem(certificate.rawData, 'CERTIFICATE'), info: describeCertificate(certificate) });
}

async function issueWithNewKey(ca: CertificateAuthority, profile: Profile): Promise<CertificateKeyPair> {
  const authority = await loadAuthority(ca);
  const keys = await generateEcKeyPair();
  const issued = await issue(authority, await publicKeyOf(keys.publicKey), profile);
  return Object.freeze({ ...issued, key: await exportPrivateKeyPem(keys.privateKey) });
}

/**
 * Issues a TLS server certificate (EKU serverAuth) for the key in `csr`, with the given DNS and IP
 * SANs. Throws CERTIFICATE_INVALID when the CSR is malformed or its signature does not verify.
 */
export async function issueServerCertificateFromCsr(options: ServerCertificateOptions & FromCsrOptions): Promise<IssuedCertificate> {
  const profile = serverProfile(options);
  const authority = await loadAuthority(options.ca);
  return issue(authority, await csrPublicKey(options.csr), profile);
}

/**
 * Issues a TLS client certificate (EKU clientAuth) whose identity is the URI SAN `uri`, for the key
 * in `csr`. Throws CERTIFICATE_INVALID when the CSR is malformed or its signature does not verify.
 */
export async function issueClientCertificateFromCsr(options: ClientCertificateOptions & FromCsrOptions): Promise<IssuedCertificate> {
  const profile = clientProfile(options);
  const authority = await loadAuthority(options.ca);
  return issue(authority, await csrPublicKey(options.csr), profile);
}

/** Generates a P-256 key and issues a server certificate for it; for servers that hold the CA themselves. */
export async function issueServerCertificate(options: ServerCertificateOptions): Promise<CertificateKeyPair> {
  return issueWithNewKey(options.ca, serverProfile(options));
}

/** Generates a P-256 key and issues a client certificate for it (tests, local single-process deployments). */
export async function issueClientCertificate(options: ClientCertificateOptions): Promise<CertificateKeyPair> {
  return issueWithNewKey(options.ca, clientProfile(options));
}
