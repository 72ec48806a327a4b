// The tunnel's acceptance signal: the HTTP/2 PING payload the control plane sends once a new tunnel connection has proven itself and carries the cluster's calls.

/**
 * The 8-byte PING payload (RFC 9113 §6.7) the control plane sends on a tunnel connection right
 * after it made that connection the cluster's tunnel, which it does only once the connection has
 * answered TunnelHealthService.Check. The data-plane agent treats a connection as up only after this
 * PING arrives, so "connected" on the agent's side means the control plane routes calls to it, and
 * a make-before-break rotation never drains the old connection before the new one carries calls.
 * The control plane's heartbeat PINGs carry other payloads.
 */
const ACCEPTED = 'airlk-ok';

/** A copy of the acceptance payload, to hand to `Http2Session.ping`. */
export function tunnelAcceptedPing(): Uint8Array {
  return new TextEncoder().encode(ACCEPTED);
}

/** True when a received PING payload is the control plane's acceptance signal. */
export function isTunnelAcceptedPing(payload: unknown): boolean {
  if (!(payload instanceof Uint8Array) || payload.length !== ACCEPTED.length) return false;
  return payload.every((byte, i) => byte === ACCEPTED.charCodeAt(i));
}
