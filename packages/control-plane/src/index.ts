// Public API of @airlock/control-plane: the tunnel endpoint through which the control plane calls data-plane services, and the cluster registry.
export {
  resolveTunnelEndpointConfig,
  startTunnelEndpoint,
  type ResolvedTunnelEndpointConfig,
  type TunnelConnectionInfo,
  type TunnelEndpoint,
  type TunnelEndpointOptions,
} from './internal/tunnel-endpoint.js';
export type { TunnelProtocol, TunnelTransportOptions } from './internal/tunnel-transport.js';
export {
  BOOTSTRAP_TOKEN_PREFIX,
  openClusterRegistry,
  type BootstrapToken,
  type ClusterCertificate,
  type ClusterRecord,
  type ClusterRegistry,
  type ClusterRegistryOptions,
} from './internal/cluster-registry.js';
