// The stack's processes: endpoints.json's pid, its per-plane pids, and all their descendants.
import type { EndpointsFile } from '../endpoints-file.js';
import { processTree } from './socket-table.js';

/** Root pids named by endpoints.json (the `airlock up` process, plus `pids.*` when present). */
export function stackRootPids(file: EndpointsFile): number[] {
  return [...new Set([file.pid, ...(file.pids?.controlPlane === undefined ? [] : [file.pids.controlPlane]), ...(file.pids?.dataPlane === undefined ? [] : [file.pids.dataPlane])])];
}

/** Every pid of the stack: the roots and their descendants. */
export async function stackPids(file: EndpointsFile): Promise<Set<number>> {
  return processTree(stackRootPids(file));
}
