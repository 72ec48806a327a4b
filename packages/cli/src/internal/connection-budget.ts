// The process-wide budget of public connections for a plane process, from its descriptor limit (read here, at the edge).
import { readFile } from 'node:fs/promises';
import { parseDescriptorLimit } from '@airlock/common';
import { createConnectionBudget, type ConnectionBudget } from '@airlock/pki';

/**
 * One budget for every listener of this process: the soft descriptor limit (Node raises it to the
 * hard limit at start-up) less a reserve for the internal pool, files and logs. Undefined where
 * /proc/self/limits cannot be read (not Linux) or the limit is unlimited: then only each listener's
 * own caps apply.
 */
export async function processConnectionBudget(): Promise<ConnectionBudget | undefined> {
  const text = await readFile('/proc/self/limits', 'utf8').catch(() => undefined);
  const descriptorLimit = text === undefined ? undefined : parseDescriptorLimit(text);
  return descriptorLimit === undefined ? undefined : createConnectionBudget({ descriptorLimit });
}
