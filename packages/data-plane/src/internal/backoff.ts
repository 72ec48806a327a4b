// Reconnect delays for the tunnel agent: capped exponential backoff with full jitter.

/** The shape of a backoff schedule. */
export interface BackoffOptions {
  /** The cap of the first retry's delay, in milliseconds. */
  readonly initialMs: number;
  /** No delay ever exceeds this, however many attempts have failed. */
  readonly maxMs: number;
}

/**
 * The delay before retry number `attempt` (0 for the first retry): a uniformly random value in
 * [0, min(maxMs, initialMs · 2^attempt)). Full jitter (AWS Architecture Blog, "Exponential Backoff
 * and Jitter") spreads a fleet of agents that lost the control plane at the same moment, so a
 * restarted control plane is not hit by every agent in the same millisecond.
 */
export function fullJitterBackoffMs(attempt: number, options: BackoffOptions, random: () => number = Math.random): number {
  // 2^attempt overflows to Infinity long after it passes any sane cap; min() then keeps the cap.
  const ceiling = Math.min(options.maxMs, options.initialMs * 2 ** Math.max(0, attempt));
  return Math.floor(random() * ceiling);
}
