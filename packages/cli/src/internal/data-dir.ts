// Where a local stack keeps its state: --data-dir, else $AIRLOCK_DATA_DIR, else ./.airlock.
import { resolve } from 'node:path';

export const DEFAULT_DATA_DIR = '.airlock';

export function resolveDataDir(option: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return resolve(option ?? env.AIRLOCK_DATA_DIR ?? DEFAULT_DATA_DIR);
}

/** Fixed layout inside a data directory, shared by every command. */
export const layout = {
  endpoints: (dir: string): string => resolve(dir, 'endpoints.json'),
  caCert: (dir: string): string => resolve(dir, 'ca', 'ca.pem'),
  caKey: (dir: string): string => resolve(dir, 'ca', 'ca-key.pem'),
  kmsDir: (dir: string): string => resolve(dir, 'kms'),
  kmsEndpoint: (dir: string): string => resolve(dir, 'kms', 'endpoint.json'),
  kmsCredentials: (dir: string): string => resolve(dir, 'kms', 'credentials'),
  objectStoreDir: (dir: string): string => resolve(dir, 'objectstore'),
  objectStoreEndpoint: (dir: string): string => resolve(dir, 'objectstore', 'endpoint.json'),
} as const;
