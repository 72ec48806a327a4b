// The TLS policy every Airlock server and client uses: TLS 1.2+, ECDHE with AEAD only, modern curves, no renegotiation.
import { constants } from 'node:crypto';
import type { ConnectionOptions, TlsOptions } from 'node:tls';
import { AirlockError, configError } from '@airlock/common';

/** Lowest protocol version accepted. TLS 1.3 is preferred (it is the highest the stack offers). */
export const TLS_MIN_VERSION = 'TLSv1.2' as const;
export const TLS_MAX_VERSION = 'TLSv1.3' as const;

/** TLS 1.3 suites, in preference order. All of TLS 1.3's suites are AEAD; CCM ones are left out as unusual. */
export const TLS13_CIPHER_SUITES = Object.freeze(['TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256', 'TLS_AES_128_GCM_SHA256'] as const);

/**
 * TLS 1.2 suites, OpenSSL names, in preference order: forward secrecy (ECDHE) and AEAD
 * (AES-GCM, ChaCha20-Poly1305) only. Node's default list also accepts CBC (Lucky13-prone), CCM8 and
 * ARIA suites, so it is always replaced, never extended.
 */
export const TLS12_CIPHER_SUITES = Object.freeze([
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
] as const);

export type Tls13CipherSuite = (typeof TLS13_CIPHER_SUITES)[number];
export type Tls12CipherSuite = (typeof TLS12_CIPHER_SUITES)[number];

/** IANA (RFC) names of the TLS 1.2 suites, as printed by nmap, testssl and `getCipher().standardName`. */
export const TLS12_CIPHER_SUITE_IANA_NAMES: Readonly<Record<Tls12CipherSuite, string>> = Object.freeze({
  'ECDHE-ECDSA-AES256-GCM-SHA384': 'TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384': 'TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305': 'TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256',
  'ECDHE-RSA-CHACHA20-POLY1305': 'TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256': 'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256': 'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256',
});

/**
 * The `ciphers` string for Node: TLS 1.3 suites and TLS 1.2 suites in one list (Node routes the
 * `TLS_*` names to SSL_CTX_set_ciphersuites and the rest to SSL_CTX_set_cipher_list).
 */
export const TLS_CIPHERS = [...TLS13_CIPHER_SUITES, ...TLS12_CIPHER_SUITES].join(':');

/** Key-exchange groups, in preference order. */
export const TLS_ECDH_CURVES = 'X25519:P-256:P-384';

/** True when `name` (OpenSSL or IANA spelling) is a suite the policy allows. */
export function isAllowedCipherSuite(name: string): boolean {
  return (
    (TLS13_CIPHER_SUITES as readonly string[]).includes(name) ||
    (TLS12_CIPHER_SUITES as readonly string[]).includes(name) ||
    Object.values(TLS12_CIPHER_SUITE_IANA_NAMES).includes(name)
  );
}

/**
 * OpenSSL option bits set on every context. SSL_OP_NO_RENEGOTIATION (OpenSSL 1.1.0h+, present in
 * every Node 20 build) refuses all renegotiation in both directions; without it Node only
 * rate-limits client-initiated renegotiation (tls.CLIENT_RENEG_LIMIT), which still leaves the
 * renegotiation DoS and the old injection attack surface.
 */
function secureOptions(): number {
  const noRenegotiation = (constants as { SSL_OP_NO_RENEGOTIATION?: unknown }).SSL_OP_NO_RENEGOTIATION;
  if (typeof noRenegotiation !== 'number' || noRenegotiation === 0) {
    // Fail closed rather than silently allow renegotiation on an unusual build.
    throw new AirlockError('INTERNAL', 'This Node.js build does not expose SSL_OP_NO_RENEGOTIATION');
  }
  return noRenegotiation | constants.SSL_OP_NO_COMPRESSION;
}

/** The policy fields shared by servers and clients. */
function policyFields(): Pick<TlsOptions, 'minVersion' | 'maxVersion' | 'ciphers' | 'ecdhCurve' | 'secureOptions'> {
  return {
    minVersion: TLS_MIN_VERSION,
    maxVersion: TLS_MAX_VERSION,
    ciphers: TLS_CIPHERS,
    ecdhCurve: TLS_ECDH_CURVES,
    secureOptions: secureOptions(),
  };
}

/** PEM text or bytes, alone or as a list (several certificates, or several cert/key pairs). */
export type PemInput = string | Buffer | ReadonlyArray<string | Buffer>;

function pemOption(option: string, value: PemInput | undefined, required: boolean): string | Buffer | Array<string | Buffer> | undefined {
  if (value === undefined) {
    if (required) throw configError(option, 'is required');
    return undefined;
  }
  const list = typeof value === 'string' || Buffer.isBuffer(value) ? [value] : Array.isArray(value) ? value : undefined;
  if (list === undefined || list.length === 0 || !list.every((item) => (typeof item === 'string' || Buffer.isBuffer(item)) && item.length > 0)) {
    throw configError(option, 'must be non-empty PEM text or bytes, or a list of them');
  }
  // A fresh mutable copy: Node's option types want mutable arrays, and callers' arrays stay untouched.
  return typeof value === 'string' || Buffer.isBuffer(value) ? value : [...(list as ReadonlyArray<string | Buffer>)];
}

export interface TlsServerPolicyOptions {
  /** PEM certificate chain, leaf first; a list when serving several key types (e.g. ECDSA and RSA). */
  readonly cert: PemInput;
  /** PEM private key(s), matching `cert`. Secret. */
  readonly key: PemInput;
  /** CA certificate(s) that client certificates must chain to. Required with `requestClientCert`. */
  readonly ca?: PemInput;
  /**
   * Mutual TLS: request a client certificate and refuse the handshake unless one is presented and
   * chains to `ca` (with the clientAuth purpose). @default false
   */
  readonly requestClientCert?: boolean;
}

/**
 * Options for `tls.createServer`, `https.createServer` and `http2.createSecureServer` that apply
 * the Airlock TLS policy. Spread them and add protocol-specific fields (ALPN, `allowHTTP1`).
 * Throws CONFIG_INVALID for a missing certificate or key, or mTLS without a CA.
 */
export function tlsServerOptions(options: TlsServerPolicyOptions): TlsOptions {
  const requestClientCert = options.requestClientCert ?? false;
  if (typeof requestClientCert !== 'boolean') throw configError('tls.requestClientCert', 'must be a boolean');
  const ca = pemOption('tls.ca', options.ca, requestClientCert);
  return {
    ...policyFields(),
    cert: pemOption('tls.cert', options.cert, true),
    key: pemOption('tls.key', options.key, true),
    ...(ca === undefined ? {} : { ca }),
    // The server's order wins, so a client that lists a weaker allowed suite first still gets the strongest.
    honorCipherOrder: true,
    requestCert: requestClientCert,
    rejectUnauthorized: requestClientCert,
  };
}

export interface TlsClientPolicyOptions {
  /**
   * CA certificate(s) the server must chain to. This replaces Node's public root store: Airlock
   * clients trust only the CAs they are given.
   */
  readonly ca: PemInput;
  /** PEM client certificate chain for mutual TLS. Requires `key`. */
  readonly cert?: PemInput;
  /** PEM private key for `cert`. Secret. */
  readonly key?: PemInput;
  /** SNI and the name the server certificate must match. @default the host being dialled */
  readonly servername?: string;
}

/**
 * Options for `tls.connect`, `https.request`/`https.Agent` and `http2.connect` that apply the
 * Airlock TLS policy. Server certificates are always verified, host name included.
 * Throws CONFIG_INVALID for a missing CA or a certificate without its key.
 */
export function tlsClientOptions(options: TlsClientPolicyOptions): ConnectionOptions {
  const cert = pemOption('tls.cert', options.cert, false);
  const key = pemOption('tls.key', options.key, false);
  if ((cert === undefined) !== (key === undefined)) throw configError('tls.key', 'and tls.cert must be given together');
  if (options.servername !== undefined && (typeof options.servername !== 'string' || options.servername.length === 0)) {
    throw configError('tls.servername', 'must be a non-empty string');
  }
  return {
    ...policyFields(),
    ca: pemOption('tls.ca', options.ca, true),
    ...(cert === undefined ? {} : { cert, key }),
    ...(options.servername === undefined ? {} : { servername: options.servername }),
    rejectUnauthorized: true,
  };
}
