// Unit tests for issuing server and client certificates from CSRs: SANs, EKU, lifetimes, and CSR checks.
import { webcrypto, X509Certificate as NodeX509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { rejectionCode, tamperPem } from '../test/helpers.js';
import { createCertificateAuthority } from './certificate-authority.js';
import {
  DEFAULT_CLIENT_CERT_VALIDITY_SECONDS,
  DEFAULT_SERVER_CERT_VALIDITY_SECONDS,
  issueClientCertificate,
  issueClientCertificateFromCsr,
  issueServerCertificate,
  issueServerCertificateFromCsr,
} from './certificate-issuance.js';
import { createCertificateRequest } from './certificate-request.js';
import { x509 } from './internal/x509.js';
import { clusterIdentityUri } from './spiffe-identity.js';

const ca = await createCertificateAuthority();
// Whole seconds, as certificate times are.
const now = new Date(Math.floor(Date.now() / 1000) * 1000);

describe('createCertificateRequest', () => {
  it('returns a PKCS#8 key and a CSR whose self-signature verifies', async () => {
    const request = await createCertificateRequest({ commonName: 'agent-1' });
    expect(request.key).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    expect(request.csr).toMatch(/^-----BEGIN CERTIFICATE REQUEST-----\n/);
    const csr = new x509.Pkcs10CertificateRequest(request.csr);
    expect(await csr.verify()).toBe(true);
    expect(csr.subject).toBe('CN=agent-1');
    expect(csr.publicKey.algorithm).toMatchObject({ name: 'ECDSA', namedCurve: 'P-256' });
  });
});

describe('issueServerCertificateFromCsr', () => {
  it('issues a serverAuth certificate with DNS and IP SANs for the CSR key', async () => {
    const request = await createCertificateRequest({ commonName: 'ignored-by-ca' });
    const issued = await issueServerCertificateFromCsr({
      ca,
      csr: request.csr,
      dnsNames: ['cp.airlock.test', 'LOCALHOST'],
      ipAddresses: ['127.0.0.1', '::1'],
      now,
    });
    expect(issued.info).toMatchObject({
      commonName: 'cp.airlock.test',
      dnsNames: ['cp.airlock.test', 'localhost'],
      ipAddresses: ['127.0.0.1', '::1'],
      uris: [],
      extendedKeyUsages: ['serverAuth'],
      isCertificateAuthority: false,
      issuer: 'CN=Airlock CA, O=Airlock',
    });
    expect(issued.info.notAfter.getTime() - now.getTime()).toBe(DEFAULT_SERVER_CERT_VALIDITY_SECONDS * 1000);

    const cert = new x509.X509Certificate(issued.cert);
    const caCert = new x509.X509Certificate(ca.cert);
    expect(await cert.verify({ publicKey: caCert, signatureOnly: true })).toBe(true);
    expect(cert.getExtension(x509.KeyUsagesExtension)?.usages).toBe(x509.KeyUsageFlags.digitalSignature);
    expect(cert.getExtension(x509.BasicConstraintsExtension)?.ca).toBe(false);
    expect(cert.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId).toBe(caCert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId);
    expect(cert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId).toMatch(/^[0-9a-f]{40}$/);

    // The certificate is for the requester's key, and OpenSSL agrees on names and key.
    const openssl = new NodeX509Certificate(issued.cert);
    expect(openssl.checkPrivateKey((await import('node:crypto')).createPrivateKey(request.key))).toBe(true);
    expect(openssl.checkHost('cp.airlock.test')).toBe('cp.airlock.test');
    expect(openssl.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(openssl.checkIssued(new NodeX509Certificate(ca.cert))).toBe(true);
  });

  it('honours a configured lifetime, capped at the CA expiry', async () => {
    const shortCa = await createCertificateAuthority({ validitySeconds: 3600, now });
    const request = await createCertificateRequest({ commonName: 'x' });
    const short = await issueServerCertificateFromCsr({ ca, csr: request.csr, dnsNames: ['a.test'], validitySeconds: 600, now });
    expect(short.info.notAfter.getTime() - now.getTime()).toBe(600_000);
    const capped = await issueServerCertificateFromCsr({ ca: shortCa, csr: request.csr, dnsNames: ['a.test'], now });
    expect(capped.info.notAfter.getTime()).toBe(now.getTime() + 3_600_000);
  });

  it('refuses to issue from a CA outside its validity', async () => {
    const request = await createCertificateRequest({ commonName: 'x' });
    const later = new Date(now.getTime() + 20 * 365 * 24 * 3600 * 1000);
    expect(await rejectionCode(issueServerCertificateFromCsr({ ca, csr: request.csr, dnsNames: ['a.test'], now: later }))).toBe('CERTIFICATE_EXPIRED');
  });

  it('rejects a CSR whose signature was made with another key (no proof of possession)', async () => {
    const mine = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
    const other = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
    const forged = await x509.Pkcs10CertificateRequestGenerator.create({
      name: 'CN=victim',
      keys: { publicKey: mine.publicKey, privateKey: other.privateKey },
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    });
    const code = await rejectionCode(issueServerCertificateFromCsr({ ca, csr: forged.toString('pem'), dnsNames: ['a.test'] }));
    expect(code).toBe('CERTIFICATE_INVALID');
  });

  it('rejects a CSR altered after signing', async () => {
    const request = await createCertificateRequest({ commonName: 'honest-agent' });
    const altered = tamperPem(request.csr, 'CERTIFICATE REQUEST', 'honest', 'forged');
    expect(await rejectionCode(issueClientCertificateFromCsr({ ca, csr: altered, uri: clusterIdentityUri('eu-1') }))).toBe('CERTIFICATE_INVALID');
  });

  it('rejects malformed CSRs and non-ECDSA keys', async () => {
    expect(await rejectionCode(issueServerCertificateFromCsr({ ca, csr: 'not a csr', dnsNames: ['a.test'] }))).toBe('CERTIFICATE_INVALID');
    expect(await rejectionCode(issueServerCertificateFromCsr({ ca, csr: ca.cert, dnsNames: ['a.test'] }))).toBe('CERTIFICATE_INVALID');
    const rsa = await webcrypto.subtle.generateKey(
      { name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' },
      true,
      ['sign', 'verify'],
    );
    const rsaCsr = await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=rsa', keys: rsa, signingAlgorithm: { name: 'RSASSA-PKCS1-v1_5' } });
    expect(await rejectionCode(issueServerCertificateFromCsr({ ca, csr: rsaCsr.toString('pem'), dnsNames: ['a.test'] }))).toBe('CERTIFICATE_INVALID');
  });

  it('validates names and lifetimes', async () => {
    const { csr } = await createCertificateRequest({ commonName: 'x' });
    const code = (options: Partial<Parameters<typeof issueServerCertificateFromCsr>[0]>) =>
      rejectionCode(issueServerCertificateFromCsr({ ca, csr, dnsNames: ['a.test'], ...options }));
    expect(await code({ dnsNames: [] })).toBe('INVALID_ARGUMENT');
    expect(await code({ dnsNames: ['bad name'] })).toBe('INVALID_ARGUMENT');
    expect(await code({ dnsNames: ['-bad.test'] })).toBe('INVALID_ARGUMENT');
    expect(await code({ ipAddresses: ['300.1.1.1'] })).toBe('INVALID_ARGUMENT');
    expect(await code({ ipAddresses: ['fe80::1%eth0'] })).toBe('INVALID_ARGUMENT');
    expect(await code({ validitySeconds: 10 })).toBe('INVALID_ARGUMENT');
    expect(await code({ validitySeconds: 400 * 24 * 3600 })).toBe('INVALID_ARGUMENT');
    expect(await code({ ca: { cert: ca.cert, key: (await createCertificateAuthority()).key } })).toBe('INVALID_ARGUMENT');
  });

  it('refuses to sign with a non-CA certificate', async () => {
    const leaf = await issueServerCertificate({ ca, dnsNames: ['a.test'] });
    const { csr } = await createCertificateRequest({ commonName: 'x' });
    expect(await rejectionCode(issueServerCertificateFromCsr({ ca: leaf, csr, dnsNames: ['b.test'] }))).toBe('INVALID_ARGUMENT');
  });
});

describe('issueClientCertificateFromCsr', () => {
  it('issues a clientAuth certificate whose identity is the URI SAN', async () => {
    const request = await createCertificateRequest({ commonName: 'eu-1' });
    const uri = clusterIdentityUri('eu-1');
    const issued = await issueClientCertificateFromCsr({ ca, csr: request.csr, uri, now });
    expect(issued.info).toMatchObject({
      uri: 'spiffe://airlock/cluster/eu-1',
      uris: ['spiffe://airlock/cluster/eu-1'],
      dnsNames: [],
      ipAddresses: [],
      extendedKeyUsages: ['clientAuth'],
      commonName: 'spiffe://airlock/cluster/eu-1',
    });
    expect(issued.info.notAfter.getTime() - now.getTime()).toBe(DEFAULT_CLIENT_CERT_VALIDITY_SECONDS * 1000);
    // OpenSSL's view of the SAN, independently of our parser.
    expect(new NodeX509Certificate(issued.cert).subjectAltName).toBe('URI:spiffe://airlock/cluster/eu-1');
  });

  it('uses an empty subject and a critical SAN when the URI is too long for a common name', async () => {
    const uri = `spiffe://airlock/cluster/${'a'.repeat(63)}`;
    const issued = await issueClientCertificate({ ca, uri });
    expect(issued.info.subject).toBe('');
    expect(issued.info.uri).toBe(uri);
    expect(new x509.X509Certificate(issued.cert).getExtension(x509.SubjectAlternativeNameExtension)?.critical).toBe(true);
  });

  it('rejects malformed identities', async () => {
    const { csr } = await createCertificateRequest({ commonName: 'x' });
    for (const uri of ['', 'not a uri', 'spiffe://airlock/cluster/eu-1?x=1', 'spiffe://airlock', 'SPIFFE://airlock/x', 'spiffe://user@airlock/x']) {
      expect(await rejectionCode(issueClientCertificateFromCsr({ ca, csr, uri }))).toBe('INVALID_ARGUMENT');
    }
  });
});

describe('issueServerCertificate', () => {
  it('generates the key itself and returns cert, key and info', async () => {
    const issued = await issueServerCertificate({ ca, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
    expect(issued.key).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    expect(new NodeX509Certificate(issued.cert).checkPrivateKey((await import('node:crypto')).createPrivateKey(issued.key))).toBe(true);
    expect(issued.info.extendedKeyUsages).toEqual(['serverAuth']);
  });
});
