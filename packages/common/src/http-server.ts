// Defaults shared by Airlock's HTTP/1.1 listeners (the KMS and the object store).

/**
 * How long an idle keep-alive connection stays open between requests. Node's default is 5 s, shorter
 * than the idle time of clients' connection pools (the AWS SDK keeps pooled sockets with no idle
 * limit): a client that reuses a pooled connection just as the server closes it gets EPIPE or
 * ECONNRESET. An SDK PutObject sent 5.2 s after the previous request failed that way. 65 s outlasts
 * common client and load-balancer idle timeouts (60 s); each listener's own idle timeout still ends a
 * connection that stalls mid-request.
 */
export const KEEP_ALIVE_TIMEOUT_MS = 65_000;
