// Public API of @airlock/data-plane: the outbound-only tunnel agent and the tunnel services it serves to the control plane.
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
