// Public API of @airlock/control-plane: the tunnel endpoint through which the control plane calls data-plane services.
export {
  resolveTunnelEndpointConfig,
  startTunnelEndpoint,
  type ResolvedTunnelEndpointConfig,
  type TunnelConnectionInfo,
  type TunnelEndpoint,
  type TunnelEndpointOptions,
} from './internal/tunnel-endpoint.js';
export type { TunnelProtocol, TunnelTransportOptions } from './internal/tunnel-transport.js';
