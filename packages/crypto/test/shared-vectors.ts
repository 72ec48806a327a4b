// Locates the known-answer vectors kept outside the repository (../shared/vectors), read in place, never copied.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/**
 * The vectors directory: $AIRLOCK_SHARED_VECTORS, else `../shared/vectors` next to the checkout, else
 * `/work/shared/vectors` (where the team's machines keep them, e.g. for a CI checkout elsewhere).
 * Throws — the vector tests must fail, not pass vacuously — when none exists.
 */
export function sharedVectorsDir(kind: 'wycheproof' | 'aws-sigv4'): string {
  const candidates = [process.env.AIRLOCK_SHARED_VECTORS, join(REPO_ROOT, '..', 'shared', 'vectors'), '/work/shared/vectors'].filter(
    (c): c is string => c !== undefined && c !== '',
  );
  for (const candidate of candidates) {
    if (existsSync(join(candidate, kind))) return join(candidate, kind);
  }
  throw new Error(`known-answer vectors not found; looked for ${kind}/ in: ${candidates.join(', ')} (set AIRLOCK_SHARED_VECTORS)`);
}
