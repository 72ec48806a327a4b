// Integration test: certificates, keys and CSRs made here are accepted by the real openssl, and openssl-made ones are handled here.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  checkCertificateChain,
  clusterIdentityUri,
  createCertificateAuthority,
  createCertificateRequest,
  issueClientCertificate,
  issueClientCertificateFromCsr,
  issueServerCertificate,
  type CertificateKeyPair,
} from '../src/index.js';
import { rejectionCode } from './helpers.js';

const OPENSSL = '/usr/bin/openssl';
const dir = mkdtempSync(join(tmpdir(), 'airlock-pki-openssl-'));

interface Run {
  readonly code: number;
  readonly output: string;
}

function openssl(args: readonly string[], input?: string): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(OPENSSL, args, { timeout: 30_000 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, output: `${stdout}${stderr}` });
    });
    // Most openssl commands here never read stdin and may exit before the end() reaches the pipe:
    // that EPIPE is expected, and unhandled it would surface as an uncaught exception of the run.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(input ?? '');
  });
}

function file(name: string, contents: string): string {
  const path = join(dir, name);
  writeFileSync(path, contents);
  return path;
}

let ca: CertificateKeyPair;
let caFile: string;

beforeAll(async () => {
  ca = await createCertificateAuthority();
  caFile = file('ca.pem', ca.cert);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('openssl accepts what @airlock/pki makes', () => {
  it('verifies server and client certificates for their purposes, and only those', async () => {
    const server = await issueServerCertificate({ ca, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
    const client = await issueClientCertificate({ ca, uri: clusterIdentityUri('eu-1') });
    const serverFile = file('server.pem', server.cert);
    const clientFile = file('client.pem', client.cert);
    expect((await openssl(['verify', '-x509_strict', '-CAfile', caFile, '-purpose', 'sslserver', '-verify_hostname', 'localhost', '-verify_ip', '127.0.0.1', serverFile])).code).toBe(0);
    expect((await openssl(['verify', '-x509_strict', '-CAfile', caFile, '-purpose', 'sslclient', clientFile])).code).toBe(0);
    expect((await openssl(['verify', '-CAfile', caFile, '-purpose', 'sslclient', serverFile])).code).not.toBe(0);
    expect((await openssl(['verify', '-CAfile', caFile, '-purpose', 'sslserver', clientFile])).code).not.toBe(0);
    expect((await openssl(['verify', '-CAfile', caFile, '-verify_hostname', 'other.test', serverFile])).code).not.toBe(0);
  });

  it('prints the expected extensions', async () => {
    const caText = (await openssl(['x509', '-noout', '-text', '-in', caFile])).output;
    expect(caText).toMatch(/Basic Constraints: critical\s+CA:TRUE, pathlen:0/);
    expect(caText).toMatch(/Key Usage: critical\s+Certificate Sign, CRL Sign/);
    expect(caText).toMatch(/Subject Key Identifier/);
    expect(caText).toMatch(/ASN1 OID: prime256v1/);

    const client = await issueClientCertificate({ ca, uri: clusterIdentityUri('eu-1') });
    const text = (await openssl(['x509', '-noout', '-text'], client.cert)).output;
    expect(text).toMatch(/Basic Constraints: critical\s+CA:FALSE/);
    expect(text).toMatch(/Key Usage: critical\s+Digital Signature/);
    expect(text).toMatch(/Extended Key Usage:\s+TLS Web Client Authentication/);
    expect(text).toMatch(/Subject Alternative Name:\s+URI:spiffe:\/\/airlock\/cluster\/eu-1/);
    expect(text).toMatch(/Authority Key Identifier/);
    expect(text).toMatch(/Signature Algorithm: ecdsa-with-SHA256/);
  });

  it('verifies a path through an intermediate', async () => {
    const root = await createCertificateAuthority({ commonName: 'Root', pathLength: 1 });
    const issuing = await createCertificateAuthority({ commonName: 'Issuing', issuer: root });
    const leaf = await issueServerCertificate({ ca: issuing, dnsNames: ['a.test'] });
    const run = await openssl(['verify', '-x509_strict', '-CAfile', file('root.pem', root.cert), '-untrusted', file('issuing.pem', issuing.cert), file('leaf.pem', leaf.cert)]);
    expect(run.code, run.output).toBe(0);
  });

  it('verifies the CSR self-signature and reads the PKCS#8 key', async () => {
    const request = await createCertificateRequest({ commonName: 'agent' });
    expect((await openssl(['req', '-verify', '-noout'], request.csr)).code).toBe(0);
    const key = await openssl(['pkey', '-noout', '-text'], request.key);
    expect(key.code).toBe(0);
    expect(key.output).toMatch(/NIST CURVE: P-256/);
  });
});

describe('@airlock/pki handles what openssl makes', () => {
  it('issues a client certificate for an openssl-generated CSR', async () => {
    const run = await openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'agent-key.pem'), '-subj', '/CN=agent']);
    expect(run.code, run.output).toBe(0);
    const issued = await issueClientCertificateFromCsr({ ca, csr: run.output.slice(run.output.indexOf('-----BEGIN CERTIFICATE REQUEST-----')), uri: clusterIdentityUri('agent') });
    expect(issued.info.uri).toBe('spiffe://airlock/cluster/agent');
    // The certificate is for openssl's key.
    const match = await openssl(['x509', '-noout', '-pubkey'], issued.cert);
    const expected = await openssl(['pkey', '-pubout', '-in', join(dir, 'agent-key.pem')]);
    expect(match.output).toBe(expected.output);
  });

  it('refuses an openssl RSA CSR', async () => {
    const run = await openssl(['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'rsa-key.pem'), '-subj', '/CN=rsa']);
    expect(run.code, run.output).toBe(0);
    const csr = run.output.slice(run.output.indexOf('-----BEGIN CERTIFICATE REQUEST-----'));
    expect(await rejectionCode(issueClientCertificateFromCsr({ ca, csr, uri: clusterIdentityUri('rsa') }))).toBe('CERTIFICATE_INVALID');
  });

  it('issues from an openssl-made CA with a SEC1 key, and validates the result', async () => {
    const keyFile = join(dir, 'ext-ca-key.pem');
    const certFile = join(dir, 'ext-ca.pem');
    expect((await openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', keyFile])).code).toBe(0);
    const made = await openssl([
      'req', '-x509', '-new', '-key', keyFile, '-out', certFile, '-subj', '/CN=External CA', '-days', '1',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    ]);
    expect(made.code, made.output).toBe(0);
    const external = { cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8') };
    expect(external.key).toMatch(/BEGIN EC PRIVATE KEY/);
    const leaf = await issueServerCertificate({ ca: external, dnsNames: ['ext.test'] });
    const checked = await checkCertificateChain({ leaf: leaf.cert, trusted: external.cert, purpose: 'server' });
    expect(checked.dnsNames).toEqual(['ext.test']);
    expect((await openssl(['verify', '-CAfile', certFile, '-purpose', 'sslserver', file('ext-leaf.pem', leaf.cert)])).code).toBe(0);
  });
});
