// Helpers shared by the repository-level (cross-plane) tests.
import { join } from 'node:path';
import { createLogger, type Logger } from '@airlock/common';
import { openControlPlaneKey, openDatabase, resolveDatabaseConfig, type ControlPlaneDatabase } from '@airlock/control-plane';

export type LogLine = Record<string, unknown> & { event?: string; msg?: string };

/** A logger whose lines are kept for assertions (parsed, and as raw text for the no-secrets check). */
export function captureLogger(name: string): { log: Logger; lines: LogLine[]; text: () => string } {
  const raw: string[] = [];
  const lines: LogLine[] = [];
  const log = createLogger({
    name,
    level: 'debug',
    destination: {
      write(line: string) {
        raw.push(line);
        lines.push(JSON.parse(line) as LogLine);
      },
    },
  });
  return { log, lines, text: () => raw.join('') };
}

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
