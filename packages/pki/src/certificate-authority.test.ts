// Unit tests for CA creation: key type, CA extensions, key identifiers, PEM forms and intermediates.
import { createPrivateKey, X509Certificate as NodeX509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { rejectionCode } from '../test/helpers.js';
import { createCertificateAuthority, DEFAULT_CA_VALIDITY_SECONDS } from './certificate-authority.js';
import { x509 } from './internal/x509.js';

describe('createCertificateAuthority', () => {
  it('creates a self-signed ECDSA P-256 CA with CA extensions and a PKCS#8 key', async () => {
    const now = new Date('2030-01-01T00:00:00Z');
    const ca = await createCertificateAuthority({ now });

    expect(ca.cert).toMatch(/^-----BEGIN CERTIFICATE-----\n/);
    expect(ca.key).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    // Trailing newlines, so that PEM files can be concatenated into bundles.
    expect(ca.cert.endsWith('-----END CERTIFICATE-----\n')).toBe(true);
    expect(ca.key.endsWith('-----END PRIVATE KEY-----\n')).toBe(true);
    const key = createPrivateKey(ca.key);
    expect(key.asymmetricKeyType).toBe('ec');
    expect(key.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');

    const cert = new x509.X509Certificate(ca.cert);
    expect(cert.subject).toBe('CN=Airlock CA, O=Airlock');
    expect(cert.issuer).toBe(cert.subject);
    expect(await cert.isSelfSigned()).toBe(true);
    expect(cert.signatureAlgorithm).toMatchObject({ name: 'ECDSA', hash: { name: 'SHA-256' } });

    const constraints = cert.getExtension(x509.BasicConstraintsExtension);
    expect(constraints).toMatchObject({ ca: true, pathLength: 0, critical: true });
    const keyUsage = cert.getExtension(x509.KeyUsagesExtension);
    expect(keyUsage?.critical).toBe(true);
    expect(keyUsage?.usages).toBe(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
    const ski = cert.getExtension(x509.SubjectKeyIdentifierExtension);
    expect(ski?.keyId).toMatch(/^[0-9a-f]{40}$/);
    expect(cert.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId).toBe(ski?.keyId);

    // Validity: backdated a minute for clock skew, ten years long by default.
    expect(cert.notBefore.getTime()).toBe(now.getTime() - 60_000);
    expect(cert.notAfter.getTime()).toBe(now.getTime() + DEFAULT_CA_VALIDITY_SECONDS * 1000);

    // OpenSSL (through Node) reads it as a CA whose key matches the certificate.
    const openssl = new NodeX509Certificate(ca.cert);
    expect(openssl.ca).toBe(true);
    expect(openssl.checkPrivateKey(key)).toBe(true);
    expect(ca.info).toMatchObject({ isCertificateAuthority: true, commonName: 'Airlock CA', fingerprintSha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
  });

  it('uses a random serial of up to 16 bytes and a fresh key every time', async () => {
    const [a, b] = await Promise.all([createCertificateAuthority(), createCertificateAuthority()]);
    expect(a.info.serialNumber).not.toBe(b.info.serialNumber);
    expect(a.info.serialNumber.length).toBeGreaterThanOrEqual(24);
    expect(a.info.serialNumber.length).toBeLessThanOrEqual(32);
    expect(a.key).not.toBe(b.key);
  });

  it('creates an intermediate signed by a parent CA, within the parent path length', async () => {
    const root = await createCertificateAuthority({ commonName: 'Root', pathLength: 1 });
    const intermediate = await createCertificateAuthority({ commonName: 'Issuing', issuer: root });
    const cert = new x509.X509Certificate(intermediate.cert);
    const rootCert = new x509.X509Certificate(root.cert);
    expect(cert.issuer).toBe(rootCert.subject);
    expect(await cert.verify({ publicKey: rootCert, signatureOnly: true })).toBe(true);
    expect(cert.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId).toBe(rootCert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId);
    // It cannot outlive its parent.
    expect(cert.notAfter.getTime()).toBeLessThanOrEqual(rootCert.notAfter.getTime());
  });

  it('refuses an intermediate the parent path length forbids', async () => {
    const root = await createCertificateAuthority(); // pathLength 0
    expect(await rejectionCode(createCertificateAuthority({ issuer: root }))).toBe('INVALID_ARGUMENT');
  });

  it('refuses a parent whose key does not match its certificate', async () => {
    const [a, b] = await Promise.all([createCertificateAuthority({ pathLength: 1 }), createCertificateAuthority({ pathLength: 1 })]);
    expect(await rejectionCode(createCertificateAuthority({ issuer: { cert: a.cert, key: b.key } }))).toBe('INVALID_ARGUMENT');
  });

  it('validates its options', async () => {
    expect(await rejectionCode(createCertificateAuthority({ commonName: '' }))).toBe('INVALID_ARGUMENT');
    expect(await rejectionCode(createCertificateAuthority({ commonName: 'x'.repeat(65) }))).toBe('INVALID_ARGUMENT');
    expect(await rejectionCode(createCertificateAuthority({ validitySeconds: 1.5 }))).toBe('INVALID_ARGUMENT');
    expect(await rejectionCode(createCertificateAuthority({ pathLength: -1 }))).toBe('INVALID_ARGUMENT');
    expect(await rejectionCode(createCertificateAuthority({ now: new Date(Number.NaN) }))).toBe('INVALID_ARGUMENT');
  });

  it('keeps hostile subject text as data, not as DN syntax', async () => {
    const ca = await createCertificateAuthority({ commonName: 'A, O=Evil' });
    expect(ca.info.commonName).toBe('A, O=Evil');
    expect(new x509.X509Certificate(ca.cert).subjectName.getField('O')).toEqual(['Airlock']);
  });
});
