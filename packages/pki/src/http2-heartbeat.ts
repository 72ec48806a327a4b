// HTTP/2 PING heartbeats for long-lived mTLS sessions: a peer that died silently is noticed within interval + timeout.
import type { Http2Session } from 'node:http2';

export interface Http2HeartbeatOptions {
  /** Time between PINGs. */
  readonly intervalMs: number;
  /** How long a PING may go unanswered before `onTimeout`. */
  readonly timeoutMs: number;
  /** Whether the session is still worth pinging (not closed, not destroyed). */
  readonly isAlive: () => boolean;
  /** Called when a PING goes unanswered for `timeoutMs`: the caller drops the session. */
  readonly onTimeout: () => void;
  /** Called with the error code when a PING fails because the session is going away. */
  readonly onPingError?: (code: string) => void;
}

/**
 * PINGs `session` every `intervalMs`, whether or not calls are in flight: a tunnel is idle most of
 * the time, and an idle one that died silently (a NAT dropped it, the peer's host froze) must still
 * be noticed. At most one PING is outstanding. Returns `stop`, to call when the session closes.
 */
export function startHttp2Heartbeat(session: Http2Session, options: Http2HeartbeatOptions): { stop(): void } {
  let pending = false;
  const ping = (): void => {
    if (pending || !options.isAlive()) return;
    pending = true;
    const deadline = setTimeout(options.onTimeout, options.timeoutMs);
    deadline.unref();
    try {
      session.ping((error) => {
        clearTimeout(deadline);
        pending = false;
        // ERR_HTTP2_PING_CANCEL means the session is going away; its close event reports that.
        if (error !== null) options.onPingError?.((error as NodeJS.ErrnoException).code ?? error.name);
      });
    } catch {
      // The session was destroyed between isAlive() and ping(); its 'close' handles the rest.
      clearTimeout(deadline);
      pending = false;
    }
  };
  const timer = setInterval(ping, options.intervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
