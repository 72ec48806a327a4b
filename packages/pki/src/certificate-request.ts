// Key pair and PKCS#10 CSR generation, used by agents and servers to obtain certificates without sending their private key.
import { encodePem } from './internal/certificates.js';
import { exportPrivateKeyPem, generateEcKeyPair } from './internal/keys.js';
import { checkCommonName } from './internal/validate.js';
import { x509 } from './internal/x509.js';

export interface CertificateRequestOptions {
  /** Subject common name, e.g. the cluster or host name. Informational: the CA decides the SANs. */
  readonly commonName: string;
}

/** A new private key and the CSR that proves possession of it. */
export interface CertificateRequest {
  /** PKCS#8 PEM private key. Secret: it stays with the requester and is never logged. */
  readonly key: string;
  /** PEM PKCS#10 certificate request ("CERTIFICATE REQUEST"), signed with `key`. */
  readonly csr: string;
}

/**
 * Generates an ECDSA P-256 key pair and a CSR signed with it (ECDSA with SHA-256). The CSR carries
 * no requested extensions: the CA sets names and usages from its own records, never from the CSR.
 */
export async function createCertificateRequest(options: CertificateRequestOptions): Promise<CertificateRequest> {
  const commonName = checkCommonName('commonName', options.commonName);
  const keys = await generateEcKeyPair();
  const request = await x509.Pkcs10CertificateRequestGenerator.create({
    name: new x509.Name([{ CN: [commonName] }]),
    keys,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
  });
  return Object.freeze({ key: await exportPrivateKeyPem(keys.privateKey), csr: encodePem(request.rawData, 'CERTIFICATE REQUEST') });
}
