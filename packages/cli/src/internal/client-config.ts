// The client configuration: which control plane to call, with which token and CA, and the pinned identity of each data plane (like SSH's known_hosts).
import { mkdir, readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { AirlockError, failureReason, writeFileAtomic } from '@airlock/common';
import { layout, resolveDataDir } from './data-dir.js';

export const CLIENT_CONFIG_VERSION = 1;

/** What `airlock up` and `airlock login` write, and every client command reads. Holds no secret: the token stays in its own 0600 file. */
export interface ClientConfig {
  readonly version: typeof CLIENT_CONFIG_VERSION;
  /** The control plane's API, e.g. `https://127.0.0.1:8443`. */
  readonly api: string;
  /** PEM bundle that verifies the API's certificate; unset means the system's trust store. */
  readonly caFile?: string;
  /** The file holding the bearer token (0600). */
  readonly tokenFile: string;
  /** The project commands act on unless `--project` says otherwise. */
  readonly project: string;
  /** The data plane runs go to unless `--cluster` says otherwise; unset means the only active one. */
  readonly cluster?: string;
  /** Pinned identity fingerprints (`sha256:<hex>`) by cluster name. */
  readonly pins: Readonly<Record<string, string>>;
}

export interface ClientConfigLocation {
  /** `--config`. */
  readonly config?: string | undefined;
  /** `--data-dir`. */
  readonly dataDir?: string | undefined;
}

/** `--config`, else $AIRLOCK_CONFIG, else `<data-dir>/client/config.json`. */
export function clientConfigPath(location: ClientConfigLocation, env: NodeJS.ProcessEnv = process.env): string {
  if (location.config !== undefined) return resolve(location.config);
  if (env.AIRLOCK_CONFIG !== undefined && env.AIRLOCK_CONFIG.length > 0) return resolve(env.AIRLOCK_CONFIG);
  return layout.clientConfig(resolveDataDir(location.dataDir, env));
}

function invalid(path: string, reason: string): AirlockError {
  return new AirlockError('CONFIG_INVALID', `The client configuration ${path} is not usable: ${reason}`, { details: { path } });
}

/** Reads and checks the client configuration; a missing file says how to make one. */
export async function loadClientConfig(location: ClientConfigLocation): Promise<ClientConfig & { readonly path: string }> {
  const path = clientConfigPath(location);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new AirlockError(
        'NOT_FOUND',
        `No client configuration at ${path}: start a local stack with \`npx airlock up\` (it writes one), or run \`npx airlock login --api <url> --token-file <file> --pin <sha256:…>\``,
        { details: { path } },
      );
    }
    throw AirlockError.from(error);
  }
  let parsed: Partial<ClientConfig>;
  try {
    parsed = JSON.parse(text) as Partial<ClientConfig>;
  } catch (error) {
    throw invalid(path, `not JSON (${failureReason(error)})`);
  }
  if (parsed.version !== CLIENT_CONFIG_VERSION) throw invalid(path, `version ${String(parsed.version)}, this CLI reads version ${CLIENT_CONFIG_VERSION}`);
  if (typeof parsed.api !== 'string' || !/^https:\/\//.test(parsed.api)) throw invalid(path, '"api" must be an https:// URL');
  if (typeof parsed.tokenFile !== 'string' || parsed.tokenFile.length === 0) throw invalid(path, '"tokenFile" is missing');
  if (parsed.caFile !== undefined && typeof parsed.caFile !== 'string') throw invalid(path, '"caFile" must be a path');
  if (typeof parsed.project !== 'string' || parsed.project.length === 0) throw invalid(path, '"project" is missing');
  if (typeof parsed.pins !== 'object' || parsed.pins === null) throw invalid(path, '"pins" must be an object');
  const base = dirname(path);
  return {
    path,
    version: CLIENT_CONFIG_VERSION,
    api: parsed.api,
    ...(parsed.caFile === undefined ? {} : { caFile: resolve(base, parsed.caFile) }),
    tokenFile: resolve(base, parsed.tokenFile),
    project: parsed.project,
    ...(typeof parsed.cluster === 'string' ? { cluster: parsed.cluster } : {}),
    pins: parsed.pins,
  };
}

/** Writes the configuration atomically (0600, directory 0700). */
export async function writeClientConfig(path: string, config: ClientConfig): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await writeFileAtomic(path, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
}

/** The bearer token from the configured file. */
export async function readClientToken(config: Pick<ClientConfig, 'tokenFile'>): Promise<string> {
  let token: string;
  try {
    token = (await readFile(config.tokenFile, 'utf8')).trim();
  } catch (error) {
    throw new AirlockError('AUTH_MISSING', `Cannot read the API token file ${config.tokenFile}: ${failureReason(error)}`);
  }
  if (token.length === 0) throw new AirlockError('AUTH_MISSING', `The API token file ${config.tokenFile} is empty`);
  return token;
}
