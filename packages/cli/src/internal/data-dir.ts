// Where a local stack keeps its state: --data-dir, else $AIRLOCK_DATA_DIR, else ./.airlock.
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { AirlockError } from '@airlock/common';

export const DEFAULT_DATA_DIR = '.airlock';

export function resolveDataDir(option: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return resolve(option ?? env.AIRLOCK_DATA_DIR ?? DEFAULT_DATA_DIR);
}

/** Fixed layout inside a data directory, shared by every command. */
export const layout = {
  endpoints: (dir: string): string => resolve(dir, 'endpoints.json'),
  caCert: (dir: string): string => resolve(dir, 'ca', 'ca.pem'),
  /** The CA's private key, sealed under the control plane's key (ASF1 envelope, 0600). */
  caKeySealed: (dir: string): string => resolve(dir, 'ca', 'ca-key.sealed'),
  /** The plaintext CA key an earlier release wrote; sealed and removed at the next start. */
  legacyCaKey: (dir: string): string => resolve(dir, 'ca', 'ca-key.pem'),
  kmsDir: (dir: string): string => resolve(dir, 'kms'),
  kmsEndpoint: (dir: string): string => resolve(dir, 'kms', 'endpoint.json'),
  kmsCredentials: (dir: string): string => resolve(dir, 'kms', 'credentials'),
  objectStoreDir: (dir: string): string => resolve(dir, 'objectstore'),
  objectStoreEndpoint: (dir: string): string => resolve(dir, 'objectstore', 'endpoint.json'),
  controlPlaneDir: (dir: string): string => resolve(dir, 'control-plane'),
  controlPlaneEndpoint: (dir: string): string => resolve(dir, 'control-plane', 'endpoint.json'),
  /** Where the control plane writes heap snapshots when signalled (0700; `airlock verify` removes each one after scanning it). */
  controlPlaneDiagnostics: (dir: string): string => resolve(dir, 'control-plane', 'diagnostics'),
  /** The control plane's encrypted SQLite database (its key file sits beside it as `.key`). */
  controlPlaneDatabase: (dir: string): string => resolve(dir, 'control-plane', 'control-plane.db'),
  /** JSON state of the release before the database; imported once, then removed. */
  legacyClusterRegistry: (dir: string): string => resolve(dir, 'control-plane', 'clusters.json'),
  legacyApiTokens: (dir: string): string => resolve(dir, 'control-plane', 'api-tokens.json'),
  legacyActionQueue: (dir: string): string => resolve(dir, 'control-plane', 'actions.json'),
  /** The local admin's API token (secret, 0600): what `airlock` client commands log in with. */
  clientToken: (dir: string): string => resolve(dir, 'client', 'token'),
  /** The client configuration `airlock up` writes: API, CA, token file, the data plane's pinned identity (no secrets). */
  clientConfig: (dir: string): string => resolve(dir, 'client', 'config.json'),
  dataPlaneDir: (dir: string): string => resolve(dir, 'data-plane'),
  /** The agent's key, certificate and CA (key 0600). */
  agentStateDir: (dir: string): string => resolve(dir, 'data-plane', 'agent'),
  /** A one-time bootstrap token handed from the local control plane to the local agent (0600, deleted once redeemed). */
  bootstrapToken: (dir: string): string => resolve(dir, 'data-plane', 'bootstrap.token'),
  dataPlaneEndpoint: (dir: string): string => resolve(dir, 'data-plane', 'endpoint.json'),
} as const;

/** The cluster name of the data plane that `airlock up` runs. */
export const LOCAL_CLUSTER_NAME = 'local';

/** A data-directory file's text, or undefined when it does not exist (any other failure is an AirlockError). */
export async function readDataFile(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw AirlockError.from(error);
  }
}
