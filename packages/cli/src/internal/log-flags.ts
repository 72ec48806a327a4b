// The serve commands' flags for the rate limit of repeated log lines, turned into the logger's options here, at the edge.
import type { LogRateLimitOptions } from '@airlock/common';

/** `--log-rate-window <ms>` and `--log-rate-burst <lines>` (docs/listener-limits.md, "Log volume"). */
export interface LogRateFlags {
  /** Length of a window, per kind of line. @default 10000 (DEFAULT_LOG_RATE_LIMIT) */
  readonly logRateWindow?: number;
  /** Lines of one kind written per window; the rest are counted in one summary line. @default 20 (DEFAULT_LOG_RATE_LIMIT) */
  readonly logRateBurst?: number;
}

/** The logger's `rateLimit` option for the flags given; those not given keep the logger's defaults. */
export function logRateLimit(flags: LogRateFlags): LogRateLimitOptions {
  return {
    ...(flags.logRateWindow === undefined ? {} : { windowMs: flags.logRateWindow }),
    ...(flags.logRateBurst === undefined ? {} : { burst: flags.logRateBurst }),
  };
}

/** The same flags as arguments, for `airlock up` to hand to the planes it starts. */
export function logRateArgs(flags: LogRateFlags): string[] {
  return [
    ...(flags.logRateWindow === undefined ? [] : ['--log-rate-window', String(flags.logRateWindow)]),
    ...(flags.logRateBurst === undefined ? [] : ['--log-rate-burst', String(flags.logRateBurst)]),
  ];
}
