// `airlock login`: records a control plane, its token file and a data plane's pinned identity in the client configuration, after checking all three.
import { access, constants } from 'node:fs/promises';
import { resolve } from 'node:path';
import { AirlockError } from '@airlock/common';
import { ClusterState, Role, parsePin, verifyDataPlaneKeys } from '@airlock/protocol';
import { connectApi } from '../internal/api-client.js';
import { CLIENT_CONFIG_VERSION, clientConfigPath, writeClientConfig, type ClientConfig } from '../internal/client-config.js';
import { print, printJson } from '../internal/output.js';

export interface LoginOptions {
  readonly api: string;
  readonly tokenFile: string;
  readonly pin: string;
  readonly ca?: string;
  readonly cluster?: string;
  readonly project?: string;
  readonly config?: string;
  readonly dataDir?: string;
  readonly json?: boolean;
}

export async function runLogin(options: LoginOptions): Promise<void> {
  let api: URL;
  try {
    api = new URL(options.api);
  } catch {
    throw new AirlockError('INVALID_ARGUMENT', `--api ${options.api} is not a URL`, { details: { argument: 'api' } });
  }
  if (api.protocol !== 'https:') throw new AirlockError('INVALID_ARGUMENT', '--api must be an https:// URL: the API has no plaintext port', { details: { argument: 'api' } });
  const pin = parsePin(options.pin);
  const tokenFile = resolve(options.tokenFile);
  await access(tokenFile, constants.R_OK).catch(() => {
    throw new AirlockError('INVALID_ARGUMENT', `Cannot read --token-file ${options.tokenFile}`, { details: { argument: 'token-file' } });
  });
  const draft: ClientConfig = {
    version: CLIENT_CONFIG_VERSION,
    api: api.origin,
    ...(options.ca === undefined ? {} : { caFile: resolve(options.ca) }),
    tokenFile,
    project: options.project ?? 'default',
    pins: {},
  };
  const connection = await connectApi(draft);
  try {
    const { client } = connection;
    const me = await client.whoAmI({});
    let cluster = options.cluster;
    if (cluster === undefined) {
      const active = (await client.listClusters({ pageSize: 100 })).clusters.filter((c) => c.state === ClusterState.ACTIVE);
      if (active.length !== 1 || active[0] === undefined) {
        throw new AirlockError('INVALID_ARGUMENT', `Name the data plane the pin belongs to with --cluster (registered: ${active.map((c) => c.name).join(', ') || 'none'})`, {
          details: { argument: 'cluster' },
        });
      }
      cluster = active[0].name;
    }
    const { cluster: found } = await client.getCluster({ name: cluster });
    // A mismatch is a hard error naming both fingerprints: nothing is written.
    verifyDataPlaneKeys(found?.keys, pin, cluster);
    const config: ClientConfig = { ...draft, cluster, pins: { [cluster]: pin } };
    const path = clientConfigPath(options);
    await writeClientConfig(path, config);
    const roles = me.roles.map((r) => `${r.project}:${Role[r.role]?.toLowerCase() ?? 'none'}`);
    if (options.json === true) return printJson({ config: path, subject: me.subject, roles, cluster, pin });
    print(`Logged in to ${api.origin} as ${me.subject} (${roles.join(', ')})`);
    print(`Data plane "${cluster}" pinned at ${pin}`);
    print(`Configuration written to ${path}`);
  } finally {
    connection.close();
  }
}
