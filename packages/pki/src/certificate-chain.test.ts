// Unit tests for chain checking: trusted paths pass; foreign, expired, tampered and mis-constrained certificates fail with the right code.
import { webcrypto } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { derToPem, pemToDer, rejectionCode, tamperPem } from '../test/helpers.js';
import { createCertificateAuthority } from './certificate-authority.js';
import { checkCertificateChain } from './certificate-chain.js';
import { certificateFingerprint, parseCertificate } from './certificate-info.js';
import { issueClientCertificate, issueServerCertificate } from './certificate-issuance.js';
import { x509 } from './internal/x509.js';
import { clusterIdentityUri } from './spiffe-identity.js';

const ca = await createCertificateAuthority();
const server = await issueServerCertificate({ ca, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
const client = await issueClientCertificate({ ca, uri: clusterIdentityUri('eu-1') });

/** Signs an arbitrary certificate with `signer` (for shapes the public API refuses to make). */
async function rawCertificate(options: {
  signer: { cert: string; key: string } | 'self';
  subject: string;
  extensions: x509.Extension[];
  signingHash?: 'SHA-1' | 'SHA-256';
}): Promise<{ cert: string; key: string }> {
  const keys = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
  let issuerName = options.subject;
  let signingKey = keys.privateKey;
  let aki: x509.Extension[] = [];
  if (options.signer !== 'self') {
    const issuerCert = new x509.X509Certificate(options.signer.cert);
    issuerName = issuerCert.subject;
    signingKey = await webcrypto.subtle.importKey('pkcs8', pemToDer(options.signer.key), { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
    aki = [await x509.AuthorityKeyIdentifierExtension.create(issuerCert.publicKey)];
  }
  const cert = await x509.X509CertificateGenerator.create({
    subject: options.subject,
    issuer: issuerName,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 3_600_000),
    publicKey: keys.publicKey,
    signingKey,
    signingAlgorithm: { name: 'ECDSA', hash: options.signingHash ?? 'SHA-256' },
    extensions: [...options.extensions, await x509.SubjectKeyIdentifierExtension.create(keys.publicKey), ...aki],
  });
  const key = derToPem(new Uint8Array(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)), 'PRIVATE KEY');
  return { cert: cert.toString('pem'), key };
}

describe('checkCertificateChain', () => {
  it('accepts a server certificate issued by the trusted CA and returns its identity', async () => {
    const checked = await checkCertificateChain({ leaf: server.cert, trusted: ca.cert, purpose: 'server' });
    expect(checked).toMatchObject({ commonName: 'localhost', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], fingerprintSha256: server.info.fingerprintSha256 });
    expect(checked.chainFingerprints).toEqual([server.info.fingerprintSha256, ca.info.fingerprintSha256]);
    expect(checked.notBefore).toEqual(server.info.notBefore);
    expect(checked.notAfter).toEqual(server.info.notAfter);
  });

  it('accepts a client certificate and exposes its URI SAN identity', async () => {
    const checked = await checkCertificateChain({ leaf: client.cert, trusted: [ca.cert], purpose: 'client' });
    expect(checked.uri).toBe('spiffe://airlock/cluster/eu-1');
    expect(checked.fingerprintSha256).toBe(certificateFingerprint(client.cert));
  });

  it('accepts DER input and finds the right anchor among several', async () => {
    const other = await createCertificateAuthority({ commonName: 'Other CA' });
    const checked = await checkCertificateChain({ leaf: pemToDer(server.cert), trusted: [other.cert, ca.cert] });
    expect(checked.chainFingerprints.at(-1)).toBe(ca.info.fingerprintSha256);
  });

  it('rejects a certificate from a foreign CA with CERTIFICATE_UNTRUSTED, even when the CA names match', async () => {
    const foreignCa = await createCertificateAuthority(); // same default subject "CN=Airlock CA, O=Airlock"
    const foreign = await issueServerCertificate({ ca: foreignCa, dnsNames: ['localhost'] });
    expect(await rejectionCode(checkCertificateChain({ leaf: foreign.cert, trusted: ca.cert }))).toBe('CERTIFICATE_UNTRUSTED');
    expect(await rejectionCode(checkCertificateChain({ leaf: foreignCa.cert, trusted: ca.cert }))).toBe('CERTIFICATE_UNTRUSTED');
  });

  it('rejects certificates outside their validity with CERTIFICATE_EXPIRED (injected clock)', async () => {
    const { notBefore, notAfter } = client.info;
    const at = (time: number) => checkCertificateChain({ leaf: client.cert, trusted: ca.cert, now: new Date(time) });
    expect(await rejectionCode(at(notAfter.getTime() + 1000))).toBe('CERTIFICATE_EXPIRED');
    expect(await rejectionCode(at(notBefore.getTime() - 1000))).toBe('CERTIFICATE_EXPIRED');
    // Both ends are inclusive (RFC 5280 section 4.1.2.5).
    await expect(at(notAfter.getTime())).resolves.toMatchObject({ uri: client.info.uri });
    await expect(at(notBefore.getTime())).resolves.toMatchObject({ uri: client.info.uri });
  });

  it('rejects a chain whose CA has expired even while the leaf is current', async () => {
    const now = new Date();
    const shortCa = await createCertificateAuthority({ validitySeconds: 3600, now });
    const leaf = await issueServerCertificate({ ca: shortCa, dnsNames: ['a.test'], now });
    const later = new Date(now.getTime() + 2 * 3_600_000);
    expect(await rejectionCode(checkCertificateChain({ leaf: leaf.cert, trusted: shortCa.cert, now: later }))).toBe('CERTIFICATE_EXPIRED');
  });

  it('rejects a tampered certificate with CERTIFICATE_INVALID', async () => {
    const renamed = tamperPem(server.cert, 'CERTIFICATE', 'localhost', 'evilhost1');
    expect(parseCertificate(renamed).commonName).toBe('evilhost1'); // still well-formed
    expect(await rejectionCode(checkCertificateChain({ leaf: renamed, trusted: ca.cert }))).toBe('CERTIFICATE_INVALID');

    const der = pemToDer(server.cert);
    const flipped = Uint8Array.from(der);
    flipped[flipped.length - 1] = (flipped[flipped.length - 1] as number) ^ 0x01; // last byte of the signature
    expect(await rejectionCode(checkCertificateChain({ leaf: flipped, trusted: ca.cert }))).toBe('CERTIFICATE_INVALID');
  });

  it('rejects malformed input with CERTIFICATE_INVALID', async () => {
    const der = pemToDer(server.cert);
    const truncated = derToPem(der.subarray(0, der.length - 10), 'CERTIFICATE');
    const trailing = derToPem(Uint8Array.from([...der, 0x00, 0x00]), 'CERTIFICATE');
    for (const leaf of ['garbage', '', truncated, trailing, server.key, new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x01])]) {
      expect(await rejectionCode(checkCertificateChain({ leaf, trusted: ca.cert }))).toBe('CERTIFICATE_INVALID');
    }
    expect(await rejectionCode(checkCertificateChain({ leaf: server.cert, trusted: 'garbage' }))).toBe('CERTIFICATE_INVALID');
    expect(await rejectionCode(checkCertificateChain({ leaf: server.cert, trusted: [] }))).toBe('INVALID_ARGUMENT');
  });

  it('follows intermediates given separately or bundled after the leaf', async () => {
    const root = await createCertificateAuthority({ commonName: 'Root', pathLength: 1 });
    const issuing = await createCertificateAuthority({ commonName: 'Issuing', issuer: root });
    const leaf = await issueClientCertificate({ ca: issuing, uri: clusterIdentityUri('dp') });
    const separate = await checkCertificateChain({ leaf: leaf.cert, intermediates: [issuing.cert], trusted: root.cert });
    expect(separate.chainFingerprints).toEqual([leaf.info.fingerprintSha256, issuing.info.fingerprintSha256, root.info.fingerprintSha256]);
    await expect(checkCertificateChain({ leaf: leaf.cert + issuing.cert, trusted: root.cert })).resolves.toMatchObject({ uri: 'spiffe://airlock/cluster/dp' });
    // Without the intermediate there is no path.
    expect(await rejectionCode(checkCertificateChain({ leaf: leaf.cert, trusted: root.cert }))).toBe('CERTIFICATE_UNTRUSTED');
    // Trusting the intermediate directly is enough.
    await expect(checkCertificateChain({ leaf: leaf.cert, trusted: issuing.cert })).resolves.toBeDefined();
  });

  it('enforces the path length constraint of issuers', async () => {
    const root = await createCertificateAuthority({ commonName: 'Root', pathLength: 1 });
    const issuing = await createCertificateAuthority({ commonName: 'Issuing', issuer: root, pathLength: 0 });
    // The API refuses to go deeper, so sign a sub-CA by hand.
    const deeper = await rawCertificate({
      signer: issuing,
      subject: 'CN=Too Deep',
      extensions: [new x509.BasicConstraintsExtension(true, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true)],
    });
    const leaf = await rawCertificate({ signer: deeper, subject: 'CN=leaf', extensions: [] });
    const code = await rejectionCode(checkCertificateChain({ leaf: leaf.cert, intermediates: [deeper.cert, issuing.cert], trusted: root.cert }));
    expect(code).toBe('CERTIFICATE_UNTRUSTED');
  });

  it('rejects a path through an issuer that is not a CA', async () => {
    const notCa = await rawCertificate({ signer: ca, subject: 'CN=Not A CA', extensions: [new x509.BasicConstraintsExtension(false, undefined, true)] });
    const leaf = await rawCertificate({ signer: notCa, subject: 'CN=leaf', extensions: [] });
    expect(await rejectionCode(checkCertificateChain({ leaf: leaf.cert, intermediates: [notCa.cert], trusted: ca.cert }))).toBe('CERTIFICATE_UNTRUSTED');
    // A server certificate used as a CA, likewise.
    const underServer = await rawCertificate({ signer: server, subject: 'CN=leaf', extensions: [] });
    expect(await rejectionCode(checkCertificateChain({ leaf: underServer.cert, intermediates: [server.cert], trusted: ca.cert }))).toBe('CERTIFICATE_UNTRUSTED');
  });

  it('rejects an unknown critical extension and SHA-1 signatures', async () => {
    const critical = await rawCertificate({ signer: ca, subject: 'CN=leaf', extensions: [new x509.Extension('1.2.3.4.5', true, new Uint8Array([0x05, 0x00]))] });
    expect(await rejectionCode(checkCertificateChain({ leaf: critical.cert, trusted: ca.cert }))).toBe('CERTIFICATE_INVALID');
    const sha1 = await rawCertificate({ signer: ca, subject: 'CN=leaf', extensions: [], signingHash: 'SHA-1' });
    expect(await rejectionCode(checkCertificateChain({ leaf: sha1.cert, trusted: ca.cert }))).toBe('CERTIFICATE_INVALID');
  });

  it('checks the purpose when asked', async () => {
    expect(await rejectionCode(checkCertificateChain({ leaf: server.cert, trusted: ca.cert, purpose: 'client' }))).toBe('CERTIFICATE_UNTRUSTED');
    expect(await rejectionCode(checkCertificateChain({ leaf: client.cert, trusted: ca.cert, purpose: 'server' }))).toBe('CERTIFICATE_UNTRUSTED');
  });
});
