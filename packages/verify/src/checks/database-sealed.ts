// Check controlplane.database-sealed: a canary written through the API (a bootstrap token's reason) appears in none of the control-plane database's files.
import { randomBytes } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { request } from 'node:https';
import { isAbsolute, resolve } from 'node:path';
import { AirlockError } from '@airlock/common';
import { tlsClientOptions } from '@airlock/pki';
import { checkResult, type Check, type CheckResult } from '../check.js';
import type { CheckContext } from '../endpoints-file.js';

/** The cluster name the canary token is made for: not a real cluster; the token expires unused. */
const CANARY_CLUSTER = 'verify-canary';

/** POSTs a Connect JSON request to the API with the stack's admin token; resolves with the parsed answer. */
async function callApi(ctx: CheckContext, method: string, body: unknown, signal: AbortSignal): Promise<unknown> {
  const api = ctx.endpointsFile.endpoints.find((endpoint) => endpoint.name === 'api');
  const tokenFile = ctx.endpointsFile.client?.tokenFile;
  if (api === undefined || tokenFile === undefined) throw new AirlockError('NOT_FOUND', 'endpoints.json names no API endpoint or no client token file');
  const token = (await readFile(isAbsolute(tokenFile) ? tokenFile : resolve(ctx.dataDir, tokenFile), 'utf8')).trim();
  const payload = Buffer.from(JSON.stringify(body), 'utf8');
  const url = new URL(`/airlock.v1.AirlockService/${method}`, api.url);
  return new Promise((resolvePromise, reject) => {
    const req = request(
      url,
      {
        ...tlsClientOptions({ ca: ctx.caPem }),
        method: 'POST',
        signal,
        headers: { 'content-type': 'application/json', 'content-length': payload.byteLength, authorization: `Bearer ${token}` },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          if (res.statusCode !== 200) {
            reject(new AirlockError('UNAVAILABLE', `the API answered ${method} with HTTP ${res.statusCode ?? '?'}`, { details: { status: String(res.statusCode) } }));
            return;
          }
          try {
            resolvePromise(JSON.parse(text));
          } catch (error) {
            reject(AirlockError.from(error));
          }
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/** Files of `paths` that contain `needle`, and how many bytes were read. Files that do not exist (an absent WAL) are skipped. */
async function filesContaining(paths: readonly string[], needle: Buffer): Promise<{ found: string[]; scanned: string[]; bytes: number }> {
  const found: string[] = [];
  const scanned: string[] = [];
  let bytes = 0;
  for (const path of paths) {
    let content: Buffer;
    try {
      if (!(await stat(path)).isFile()) continue;
      content = await readFile(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw AirlockError.from(error);
    }
    scanned.push(path);
    bytes += content.byteLength;
    if (content.includes(needle)) found.push(path);
  }
  return { found, scanned, bytes };
}

export const databaseSealedCheck: Check = {
  id: 'controlplane.database-sealed',
  title: 'The control-plane database holds no plaintext: a canary written through the API is in none of its files',
  async run(ctx, signal): Promise<CheckResult> {
    const self = databaseSealedCheck;
    const database = ctx.endpointsFile.database;
    if (database === undefined) {
      return checkResult(self, 'fail', {}, { summary: 'endpoints.json does not describe the control-plane database', details: 'start the stack with this release of `airlock up`' });
    }
    if (database.backend === 'postgres' || database.files.length === 0) {
      return checkResult(
        self,
        'skip',
        { database: database.description },
        {
          summary: `${database.description}: its data directory is not readable from here`,
          details: 'on PostgreSQL every customer-derived value is sealed per column before it is sent; scan the server data directory after CHECKPOINT to see it for yourself',
        },
      );
    }
    const canary = `airlock-verify-canary-${randomBytes(16).toString('hex')}`;
    await callApi(ctx, 'CreateBootstrapToken', { cluster: CANARY_CLUSTER, ttl: '60s', reason: canary }, signal);
    // The commit has reached the WAL (or the main file) before the API answered; both are scanned.
    const forms = [Buffer.from(canary, 'utf8'), Buffer.from(canary, 'utf16le')];
    const found = new Set<string>();
    let scan = { scanned: [] as string[], bytes: 0 };
    for (const form of forms) {
      const result = await filesContaining(database.files, form);
      for (const file of result.found) found.add(file);
      scan = result;
    }
    const evidence = { database: database.description, filesScanned: scan.scanned, bytesScanned: scan.bytes, canaryFoundIn: [...found] };
    if (scan.scanned.length === 0) {
      return checkResult(self, 'fail', evidence, { summary: 'none of the database files could be read', details: `expected ${database.files.join(', ')}` });
    }
    if (found.size > 0) {
      return checkResult(self, 'fail', evidence, { summary: `the canary is in plaintext in ${[...found].join(', ')}`, details: 'a value written through the API reached the database unencrypted' });
    }
    return checkResult(self, 'pass', evidence, {
      summary: `canary written as a bootstrap-token reason; absent from ${scan.scanned.length} files (${scan.bytes} bytes): ${database.description}`,
    });
  },
};
