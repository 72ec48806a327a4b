// How `airlock up` and the plane processes it starts talk: a ready message over the IPC channel, and graceful shutdown on signals.
import type { StackEndpoint } from '@airlock/verify';
import { print } from './output.js';

/** An endpoint a plane process serves, as listed in endpoints.json (the shape `airlock verify` reads). */
export type PlaneEndpoint = StackEndpoint;

/** Sent by a plane process to its parent once every listener is up (and, for the data plane, the agent is registered). */
export interface PlaneReadyMessage {
  readonly type: 'airlock.ready';
  readonly plane: 'control' | 'data';
  readonly pid: number;
  readonly endpoints: readonly PlaneEndpoint[];
}

export function isPlaneReadyMessage(value: unknown): value is PlaneReadyMessage {
  const message = value as Partial<PlaneReadyMessage> | null;
  return (
    typeof message === 'object' &&
    message !== null &&
    message.type === 'airlock.ready' &&
    (message.plane === 'control' || message.plane === 'data') &&
    typeof message.pid === 'number' &&
    Array.isArray(message.endpoints)
  );
}

/** Tells the parent `airlock up` (when there is one) that this plane is ready. */
export function announceReady(plane: 'control' | 'data', endpoints: readonly PlaneEndpoint[]): void {
  const message: PlaneReadyMessage = { type: 'airlock.ready', plane, pid: process.pid, endpoints };
  process.send?.(message);
}

/**
 * Resolves after SIGINT or SIGTERM (or the parent's IPC channel closing, so a plane never outlives
 * a killed `airlock up`) once `close` has finished.
 */
export async function serveUntilSignalled(what: string, close: () => Promise<void>, options: { quiet?: boolean } = {}): Promise<void> {
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (): void => {
      if (stopping) return;
      stopping = true;
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      process.off('disconnect', stop);
      if (options.quiet !== true) print(`\nStopping ${what} …`);
      close().then(resolve, resolve);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    if (process.connected) process.on('disconnect', stop);
  });
}
