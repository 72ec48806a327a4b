// Finds the local KMS of a data directory (endpoint.json, CA bundle, credentials) and builds a client for it.
import { readFile } from 'node:fs/promises';
import { AirlockError } from '@airlock/common';
import { createAwsKms, type KmsAdmin } from '@airlock/kms';
import { layout } from './data-dir.js';

/** What `airlock kms serve` writes to <data-dir>/kms/endpoint.json. No secret values. */
export interface KmsEndpointFile {
  readonly endpoint: string;
  readonly region: string;
  readonly caBundle: string;
  readonly credentialsFile: string;
  readonly profile: string;
}

/** Parses the [profile] section of an AWS shared credentials file. */
export function parseCredentialsFile(text: string, profile: string): { accessKeyId: string; secretAccessKey: string } {
  let current = '';
  const values: Record<string, string> = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const section = /^\[(.+)\]$/.exec(line);
    if (section !== null) current = (section[1] as string).trim();
    else if (current === profile) {
      const kv = /^([a-z_]+)\s*=\s*(.+)$/.exec(line);
      if (kv !== null) values[kv[1] as string] = (kv[2] as string).trim();
    }
  }
  const accessKeyId = values.aws_access_key_id;
  const secretAccessKey = values.aws_secret_access_key;
  if (accessKeyId === undefined || secretAccessKey === undefined) {
    throw new AirlockError('CONFIG_INVALID', `credentials file has no complete [${profile}] profile`, { details: { option: 'credentials' } });
  }
  return { accessKeyId, secretAccessKey };
}

export async function readKmsEndpoint(dataDir: string): Promise<KmsEndpointFile> {
  const path = layout.kmsEndpoint(dataDir);
  try {
    return JSON.parse(await readFile(path, 'utf8')) as KmsEndpointFile;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new AirlockError('UNAVAILABLE', `no KMS found in ${dataDir} (missing ${path}); start one with \`airlock kms serve --data-dir ${dataDir}\``);
    }
    throw AirlockError.from(error);
  }
}

/** A client of the data directory's KMS with its access key. @param maxAttempts tries per call (1: fail fast, for commands) */
export async function connectLocalKms(dataDir: string, options: { readonly maxAttempts?: number } = {}): Promise<KmsAdmin & { destroy(): void }> {
  const endpoint = await readKmsEndpoint(dataDir);
  const credentials = parseCredentialsFile(await readFile(endpoint.credentialsFile, 'utf8'), endpoint.profile);
  return createAwsKms({
    endpoint: endpoint.endpoint,
    region: endpoint.region,
    credentials,
    caBundle: await readFile(endpoint.caBundle, 'utf8'),
    maxAttempts: options.maxAttempts ?? 1,
  });
}
