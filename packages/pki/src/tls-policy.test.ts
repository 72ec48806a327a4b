// Unit tests for the TLS policy option builders and cipher constants.
import { constants } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import { describe, expect, it } from 'vitest';
import { thrownCode } from '../test/helpers.js';
import {
  isAllowedCipherSuite,
  TLS_CIPHERS,
  TLS12_CIPHER_SUITE_IANA_NAMES,
  TLS12_CIPHER_SUITES,
  TLS13_CIPHER_SUITES,
  tlsClientOptions,
  tlsServerOptions,
} from './tls-policy.js';

const PEM = '-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n';

describe('TLS cipher constants', () => {
  it('lists only ECDHE key exchange with AEAD ciphers for TLS 1.2', () => {
    for (const suite of TLS12_CIPHER_SUITES) {
      expect(suite).toMatch(/^ECDHE-(ECDSA|RSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)$/);
      expect(TLS12_CIPHER_SUITE_IANA_NAMES[suite]).toMatch(/^TLS_ECDHE_(ECDSA|RSA)_WITH_(AES_(128|256)_GCM|CHACHA20_POLY1305)_SHA(256|384)$/);
    }
    expect(TLS13_CIPHER_SUITES).toEqual(['TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256', 'TLS_AES_128_GCM_SHA256']);
    expect(TLS_CIPHERS.split(':')).toEqual([...TLS13_CIPHER_SUITES, ...TLS12_CIPHER_SUITES]);
  });

  it('uses names the linked OpenSSL knows, one by one', () => {
    // An unknown name in a list is silently skipped by OpenSSL, so each is tried alone.
    for (const suite of TLS12_CIPHER_SUITES) expect(() => createSecureContext({ ciphers: suite })).not.toThrow();
    for (const suite of TLS13_CIPHER_SUITES) expect(() => createSecureContext({ ciphers: suite })).not.toThrow();
    expect(() => createSecureContext({ ciphers: 'NOT-A-CIPHER' })).toThrow();
  });

  it('recognises allowed suites by OpenSSL or IANA name, and nothing else', () => {
    expect(isAllowedCipherSuite('ECDHE-ECDSA-AES128-GCM-SHA256')).toBe(true);
    expect(isAllowedCipherSuite('TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256')).toBe(true);
    expect(isAllowedCipherSuite('TLS_AES_128_GCM_SHA256')).toBe(true);
    for (const weak of ['ECDHE-ECDSA-AES128-SHA', 'AES128-GCM-SHA256', 'ECDHE-ECDSA-AES128-CCM8', 'ECDHE-ECDSA-ARIA128-GCM-SHA256', 'TLS_AES_128_CCM_8_SHA256', 'DHE-RSA-AES128-GCM-SHA256']) {
      expect(isAllowedCipherSuite(weak)).toBe(false);
    }
  });
});

describe('tlsServerOptions', () => {
  it('applies the policy', () => {
    const options = tlsServerOptions({ cert: PEM, key: 'key' });
    expect(options).toMatchObject({
      minVersion: 'TLSv1.2',
      maxVersion: 'TLSv1.3',
      ciphers: TLS_CIPHERS,
      ecdhCurve: 'X25519:P-256:P-384',
      honorCipherOrder: true,
      requestCert: false,
      rejectUnauthorized: false,
      cert: PEM,
      key: 'key',
    });
    expect(constants.SSL_OP_NO_RENEGOTIATION).toBeGreaterThan(0);
    expect((options.secureOptions ?? 0) & constants.SSL_OP_NO_RENEGOTIATION).toBe(constants.SSL_OP_NO_RENEGOTIATION);
  });

  it('requires and verifies client certificates in mutual TLS mode', () => {
    const options = tlsServerOptions({ cert: PEM, key: 'key', ca: PEM, requestClientCert: true });
    expect(options).toMatchObject({ requestCert: true, rejectUnauthorized: true, ca: PEM });
  });

  it('returns a fresh object with copies of list inputs', () => {
    const certs = [PEM, PEM];
    const a = tlsServerOptions({ cert: certs, key: ['k1', 'k2'] });
    const b = tlsServerOptions({ cert: certs, key: ['k1', 'k2'] });
    expect(a).not.toBe(b);
    expect(a.cert).toEqual(certs);
    expect(a.cert).not.toBe(certs);
  });

  it('rejects incomplete configuration with CONFIG_INVALID', () => {
    expect(thrownCode(() => tlsServerOptions({ cert: PEM, key: '' }))).toBe('CONFIG_INVALID');
    expect(thrownCode(() => tlsServerOptions({ cert: [], key: 'k' }))).toBe('CONFIG_INVALID');
    expect(thrownCode(() => tlsServerOptions({ cert: PEM, key: 'k', requestClientCert: true }))).toBe('CONFIG_INVALID');
  });
});

describe('tlsClientOptions', () => {
  it('applies the policy and always verifies the server', () => {
    const options = tlsClientOptions({ ca: PEM, servername: 'cp.airlock.test' });
    expect(options).toMatchObject({
      minVersion: 'TLSv1.2',
      ciphers: TLS_CIPHERS,
      ecdhCurve: 'X25519:P-256:P-384',
      rejectUnauthorized: true,
      ca: PEM,
      servername: 'cp.airlock.test',
    });
    expect(options).not.toHaveProperty('cert');
    expect((options.secureOptions ?? 0) & constants.SSL_OP_NO_RENEGOTIATION).toBe(constants.SSL_OP_NO_RENEGOTIATION);
  });

  it('carries a client certificate for mutual TLS', () => {
    expect(tlsClientOptions({ ca: PEM, cert: PEM, key: 'k' })).toMatchObject({ cert: PEM, key: 'k' });
  });

  it('rejects incomplete configuration with CONFIG_INVALID', () => {
    expect(thrownCode(() => tlsClientOptions({ ca: '' }))).toBe('CONFIG_INVALID');
    expect(thrownCode(() => tlsClientOptions({ ca: PEM, cert: PEM }))).toBe('CONFIG_INVALID');
    expect(thrownCode(() => tlsClientOptions({ ca: PEM, key: 'k' }))).toBe('CONFIG_INVALID');
    expect(thrownCode(() => tlsClientOptions({ ca: PEM, servername: '' }))).toBe('CONFIG_INVALID');
  });
});
