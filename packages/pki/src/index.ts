// Public API of @airlock/pki: CA, certificate issuance and checking, TLS policy.
export {
  createCertificateAuthority,
  DEFAULT_CA_VALIDITY_SECONDS,
  type CertificateAuthority,
  type CertificateAuthorityOptions,
  type CertificateKeyPair,
} from './certificate-authority.js';
export { createCertificateRequest, type CertificateRequest, type CertificateRequestOptions } from './certificate-request.js';
export {
  DEFAULT_CLIENT_CERT_VALIDITY_SECONDS,
  DEFAULT_SERVER_CERT_VALIDITY_SECONDS,
  issueClientCertificate,
  issueClientCertificateFromCsr,
  issueServerCertificate,
  issueServerCertificateFromCsr,
  MAX_LEAF_CERT_VALIDITY_SECONDS,
  type ClientCertificateOptions,
  type FromCsrOptions,
  type IssuedCertificate,
  type ServerCertificateOptions,
} from './certificate-issuance.js';
export { certificateFingerprint, parseCertificate, parseCertificates, type CertificateInfo, type CertificateInput } from './certificate-info.js';
export {
  checkCertificateChain,
  type CertificateChainCheckOptions,
  type CertificatePurpose,
  type CheckedCertificate,
} from './certificate-chain.js';
export { AIRLOCK_TRUST_DOMAIN, clusterIdentityUri, isValidClusterName, parseClusterIdentity } from './spiffe-identity.js';
export {
  isAllowedCipherSuite,
  TLS_CIPHERS,
  TLS_ECDH_CURVES,
  TLS_MAX_VERSION,
  TLS_MIN_VERSION,
  TLS12_CIPHER_SUITE_IANA_NAMES,
  TLS12_CIPHER_SUITES,
  TLS13_CIPHER_SUITES,
  tlsClientOptions,
  tlsServerOptions,
  type PemInput,
  type Tls12CipherSuite,
  type Tls13CipherSuite,
  type TlsClientPolicyOptions,
  type TlsServerPolicyOptions,
} from './tls-policy.js';
export { describeTlsSocket, getPeerIdentity, type TlsConnectionDescription } from './tls-socket.js';
export { startHttp2Heartbeat, type Http2HeartbeatOptions } from './http2-heartbeat.js';
export {
  createLimitedHttp2Server,
  createLimitedHttp2SocketServer,
  createLimitedHttpsServer,
  createLimitedTlsServer,
  DEFAULT_LISTENER_LIMITS,
  createConnectionBudget,
  http2ServerSettings,
  LISTENER_LIMITS_ENV_PREFIX,
  listenerLimitsFromEnv,
  resolveListenerLimits,
  type ConnectionBudget,
  type ConnectionBudgetOptions,
  type HttpsListenerHandlers,
  type LimitedListener,
  type LimitedTlsListener,
  type ListenerContext,
  type ListenerLimitsOptions,
  type ListenerName,
  type ResolvedListenerLimits,
} from './listener-limits.js';
export {
  createInternalHttpsAgent,
  DEFAULT_INTERNAL_POOL,
  resolveInternalPoolConfig,
  type InternalPoolOptions,
  type ResolvedInternalPoolConfig,
} from './internal-pool.js';
