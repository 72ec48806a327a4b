// @airlock/control-plane/key: the control plane's own key alone, without the database and servers, for processes that only need to open it (the local data plane unwrapping the local CA key).
export { openControlPlaneKey, type ControlPlaneKeyOptions, type OpenedControlPlaneKey } from './internal/db/control-plane-key.js';
export type { ControlPlaneKey } from './internal/db/keyring.js';
