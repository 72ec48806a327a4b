// Turns a decoded certificate into the public CertificateInfo record.
import { createHash } from 'node:crypto';
import type { CertificateInfo } from '../certificate-info.js';
import { x509 } from './x509.js';

/** Extended key usage OIDs (RFC 5280 section 4.2.1.12) by the names Airlock uses for them. */
export const EKU_OIDS = Object.freeze({
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
} as const);

const EKU_NAMES: ReadonlyMap<string, string> = new Map(Object.entries(EKU_OIDS).map(([name, oid]) => [oid, name]));

/** SHA-256 of DER bytes, as lowercase hex. */
export function sha256Hex(der: ArrayBuffer | Uint8Array): string {
  return createHash('sha256').update(der instanceof Uint8Array ? der : new Uint8Array(der)).digest('hex');
}

export function describeCertificate(certificate: x509.X509Certificate): CertificateInfo {
  const names = certificate.getExtension(x509.SubjectAlternativeNameExtension)?.names.items ?? [];
  const valuesOf = (type: string): string[] => names.filter((name) => name.type === type).map((name) => name.value);
  const uris = valuesOf(x509.URL);
  const eku = certificate.getExtension(x509.ExtendedKeyUsageExtension)?.usages ?? [];
  return Object.freeze({
    subject: certificate.subject,
    commonName: certificate.subjectName.getField('CN')[0],
    issuer: certificate.issuer,
    serialNumber: certificate.serialNumber.toLowerCase(),
    dnsNames: Object.freeze(valuesOf(x509.DNS)),
    ipAddresses: Object.freeze(valuesOf(x509.IP)),
    uris: Object.freeze(uris),
    uri: uris[0],
    fingerprintSha256: sha256Hex(certificate.rawData),
    notBefore: certificate.notBefore,
    notAfter: certificate.notAfter,
    isCertificateAuthority: certificate.getExtension(x509.BasicConstraintsExtension)?.ca === true,
    // Array.from: the library's usages list is an Array subclass; callers get a plain array.
    extendedKeyUsages: Object.freeze(Array.from(eku, (usage) => EKU_NAMES.get(String(usage)) ?? String(usage))),
  });
}
