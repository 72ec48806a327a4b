// The data plane's tunnel services, served to the control plane over the tunnel: EchoService and TunnelHealthService, and with a run-data store SealedIoService and PresignService.
import { setTimeout as sleep } from 'node:timers/promises';
import { timestampNow } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, type ConnectRouter, type HandlerContext } from '@connectrpc/connect';
import { configCheck, configError, freezeConfig, type DeepReadonly, type Logger } from '@airlock/common';
import { EchoService, HealthStatus, TunnelHealthService } from '@airlock/protocol';
import type { RunDataStore } from './run-data-store.js';
import { registerRunDataServices } from './sealed-io-services.js';

/**
 * Request header that asks Echo to wait before answering, in milliseconds. Only honoured when the
 * agent was started with `maxEchoDelayMs` > 0: tests use it to hold a call in flight while they cut
 * the tunnel, and a production agent leaves it off so no caller can park handlers for free.
 */
export const ECHO_DELAY_HEADER = 'airlock-echo-delay-ms';

/** The version the health service reports until the agent build stamps its own. */
const DEFAULT_AGENT_VERSION = '0.1.0';

export interface TunnelServicesOptions {
  /** Reported by TunnelHealthService.Check, so the control plane can spot version skew. @default "0.1.0" */
  readonly agentVersion?: string;
  /**
   * Whether the data plane can serve tunnel requests (for example: is its KMS reachable). A thrown
   * error counts as not serving. @default always serving
   */
  readonly isServing?: () => boolean | Promise<boolean>;
  /** Upper bound for the ECHO_DELAY_HEADER delay; 0 ignores the header. @default 0 */
  readonly maxEchoDelayMs?: number;
  /** The run-data store; with it, SealedIoService and PresignService are served too. @default not served */
  readonly runData?: RunDataStore;
  /** Logs one line per run-data call (ids and codes only, never payloads, URLs or keys). @default none */
  readonly log?: Logger;
}

export type ResolvedTunnelServicesConfig = DeepReadonly<{
  agentVersion: string;
  isServing: () => boolean | Promise<boolean>;
  maxEchoDelayMs: number;
}>;

export function resolveTunnelServicesConfig(options: TunnelServicesOptions = {}): ResolvedTunnelServicesConfig {
  if (options.isServing !== undefined && typeof options.isServing !== 'function') {
    throw configError('tunnelServices.isServing', 'must be a function');
  }
  if (options.runData !== undefined && typeof options.runData.putInputs !== 'function') {
    throw configError('tunnelServices.runData', 'must be a RunDataStore');
  }
  return freezeConfig({
    agentVersion: configCheck.nonEmptyString('tunnelServices.agentVersion', options.agentVersion ?? DEFAULT_AGENT_VERSION),
    isServing: options.isServing ?? (() => true),
    maxEchoDelayMs: configCheck.integer('tunnelServices.maxEchoDelayMs', options.maxEchoDelayMs ?? 0, 0, 60_000),
  });
}

/** The delay an Echo call asked for, or 0; a malformed or excessive value is the caller's error. */
function requestedDelayMs(context: HandlerContext, maxEchoDelayMs: number): number {
  const raw = context.requestHeader.get(ECHO_DELAY_HEADER);
  if (raw === null || maxEchoDelayMs === 0) return 0;
  const delay = /^\d{1,6}$/.test(raw) ? Number(raw) : Number.NaN;
  if (!(delay <= maxEchoDelayMs)) {
    throw new ConnectError(`${ECHO_DELAY_HEADER} must be an integer from 0 to ${maxEchoDelayMs}`, Code.InvalidArgument);
  }
  return delay;
}

/** Registers EchoService and TunnelHealthService on a Connect router, and SealedIoService and PresignService when given a run-data store. */
export function registerTunnelServices(router: ConnectRouter, options: TunnelServicesOptions = {}): ConnectRouter {
  const config = resolveTunnelServicesConfig(options);
  router.service(EchoService, {
    async echo(request, context) {
      const delay = requestedDelayMs(context, config.maxEchoDelayMs);
      // The signal fires when the caller cancels or the tunnel dies, so a delayed handler never
      // outlives its call.
      if (delay > 0) await sleep(delay, undefined, { signal: context.signal });
      return { payload: request.payload };
    },
  });
  router.service(TunnelHealthService, {
    async check() {
      let serving: boolean;
      try {
        serving = (await config.isServing()) === true;
      } catch {
        serving = false;
      }
      return {
        status: serving ? HealthStatus.SERVING : HealthStatus.NOT_SERVING,
        agentVersion: config.agentVersion,
        serverTime: timestampNow(),
      };
    },
  });
  if (options.runData !== undefined) registerRunDataServices(router, { runData: options.runData, ...(options.log === undefined ? {} : { log: options.log }) });
  return router;
}

/** The tunnel services as a `routes` function for `startTunnelAgent` or `connectNodeAdapter`. */
export function tunnelServiceRoutes(options: TunnelServicesOptions = {}): (router: ConnectRouter) => void {
  // Resolve eagerly so a bad option fails at start-up, not on the first connection.
  resolveTunnelServicesConfig(options);
  return (router) => {
    registerTunnelServices(router, options);
  };
}
