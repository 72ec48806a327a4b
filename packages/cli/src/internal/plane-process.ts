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
  /** The data plane's identity: what clients pin before sealing anything to it (docs/runs.md). */
  readonly identity?: { readonly cluster: string; readonly pin: string };
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

/**
 * V8 flags `airlock up` gives each plane process. The planes stream data: every 64 KiB segment an
 * object-store GET decrypts is a fresh buffer (node:crypto's decipher has no decrypt-into), and with
 * V8's default initial old-generation limit that churn starts a full mark-compact every 25 MiB or so.
 * Measured on a 256 MiB GET by the AWS CLI: 11 mark-compacts, whose concurrent marking cost 0.5 s of
 * CPU on V8's worker threads next to the main thread's 0.73 s. With a 128 MiB initial old space the
 * cheap young-generation collections free those buffers instead: no mark-compact, and the server's CPU
 * per GET drops from 1.3 s to 0.8 s. The flag moves only the point where the first full collection
 * starts; it limits nothing. V8 reads it at start-up only (not from NODE_OPTIONS, not from
 * v8.setFlagsFromString), so it has to be on the child's command line.
 */
export const PLANE_NODE_FLAGS: readonly string[] = Object.freeze(['--initial-old-space-size=128']);

/** `execArgv` for a plane process: this process's own flags plus PLANE_NODE_FLAGS, except where a flag of the same name is already given (the user's value wins). */
export function planeExecArgv(execArgv: readonly string[]): string[] {
  const name = (flag: string): string => flag.split('=')[0] ?? flag;
  const given = new Set(execArgv.map(name));
  return [...execArgv, ...PLANE_NODE_FLAGS.filter((flag) => !given.has(name(flag)))];
}

/**
 * For a server started by hand (`airlock objectstore serve`, `airlock data-plane serve`) without
 * PLANE_NODE_FLAGS: a line telling the user how to start it with them. Undefined when they are set.
 */
export function planeFlagsHint(execArgv: readonly string[], command: string): string | undefined {
  const missing = planeExecArgv(execArgv).slice(execArgv.length);
  if (missing.length === 0) return undefined;
  return `Note: started without ${missing.join(' ')}, so streaming large objects costs more CPU (docs/objectstore.md, Performance). Start it with: node ${missing.join(' ')} "$(command -v airlock)" ${command} …`;
}

/** Tells the parent `airlock up` (when there is one) that this plane is ready. */
export function announceReady(plane: 'control' | 'data', endpoints: readonly PlaneEndpoint[], identity?: PlaneReadyMessage['identity']): void {
  const message: PlaneReadyMessage = { type: 'airlock.ready', plane, pid: process.pid, endpoints, ...(identity === undefined ? {} : { identity }) };
  process.send?.(message);
}

/**
 * Resolves after SIGINT or SIGTERM (or the parent's IPC channel closing, so a plane never outlives
 * a killed `airlock up`) once `close` has finished.
 */
/**
 * Every file a plane process creates holds secret or encrypted material (keys, sealed records,
 * encrypted objects, the KMS database and its WAL and SHM files), so a plane process creates files
 * 0600 and directories 0700 whatever umask it was started with. Files meant to be public (the CA
 * certificate, endpoint files) are written with their mode set explicitly.
 */
export const PLANE_UMASK = 0o077;

/** Sets PLANE_UMASK for this process; called first thing by every plane's serve command. */
export function restrictFileCreationMode(): void {
  process.umask(PLANE_UMASK);
}

export async function serveUntilSignalled(what: string, close: () => Promise<void>, options: { quiet?: boolean } = {}): Promise<void> {
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (): void => {
      // The signal handlers stay installed while stopping, so a repeated signal cannot kill the process half-way through
      // close(). The 'disconnect' listener goes: while it is there, the IPC channel to `airlock up` keeps the process alive.
      if (stopping) return;
      stopping = true;
      process.off('disconnect', stop);
      if (options.quiet !== true) print(`\nStopping ${what} …`);
      close().then(resolve, resolve);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    if (process.connected) process.on('disconnect', stop);
  });
}
