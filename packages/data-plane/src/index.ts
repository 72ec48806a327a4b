// Public API of @airlock/data-plane: the outbound-only tunnel agent, the tunnel services it serves, and registration with certificate renewal.
export {
  createTunnelAgent,
  resolveTunnelAgentConfig,
  startTunnelAgent,
  type ResolvedTunnelAgentConfig,
  type TunnelAgent,
  type TunnelAgentConnectionInfo,
  type TunnelAgentOptions,
  type TunnelAgentState,
  type TunnelAgentStats,
  type TunnelCredentials,
} from './internal/tunnel-agent.js';
export {
  ECHO_DELAY_HEADER,
  registerTunnelServices,
  resolveTunnelServicesConfig,
  tunnelServiceRoutes,
  type ResolvedTunnelServicesConfig,
  type TunnelServicesOptions,
} from './internal/tunnel-services.js';
export {
  registerWithBootstrapToken,
  RENEW_AT_LIFETIME_FRACTION,
  renewalDelayMs,
  startCertificateRenewer,
  type CertificateRenewer,
  type CertificateRenewerOptions,
  type IssuedClusterCertificate,
  type RedeemBootstrapToken,
  type RegisteredCredentials,
  type RegisterWithBootstrapTokenOptions,
  type RenewClusterCertificate,
  type RenewerTimers,
} from './internal/registration.js';
