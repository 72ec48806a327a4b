// Helpers shared by the repository-level (cross-plane) tests; those shared with package tests live in @airlock/testing.
import { join } from 'node:path';
import type { Logger } from '@airlock/common';
import { openControlPlaneKey, openDatabase, resolveDatabaseConfig, type ControlPlaneDatabase } from '@airlock/control-plane';

/** Polls until `check` returns (or resolves to) a value other than undefined; fails after `timeoutMs`. */
export async function eventually<T>(what: string, timeoutMs: number, check: () => T | undefined | Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/**
 * The control-plane database of a test's directory: `control-plane.db`, its keys wrapped by a root
 * key file in the same directory, so that opening the directory again finds the same state.
 */
export async function openTestDatabase(directory: string, log: Logger): Promise<ControlPlaneDatabase> {
  const key = await openControlPlaneKey({ dir: directory }, log);
  const database = await openDatabase(resolveDatabaseConfig({ path: join(directory, 'control-plane.db'), key, log }));
  return {
    ...database,
    async close() {
      await database.close();
      key.dispose();
    },
  };
}
