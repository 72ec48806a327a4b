// The data plane's own calls (object store → KMS) come from a bounded internal pool that public clients cannot starve: real servers, real sockets.
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { text } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseDescriptorLimit } from '@airlock/common';
import { createAwsKms } from '@airlock/kms';
import { createKmsServer, resolveKmsServerConfig } from '@airlock/kms/server';
import { createS3ObjectStore } from '@airlock/objectstore';
import { createObjectStoreServer, resolveObjectStoreServerConfig } from '@airlock/objectstore/server';
import {
  createCertificateAuthority,
  createConnectionBudget,
  issueServerCertificate,
  resolveInternalPoolConfig,
  type CertificateKeyPair,
  type ConnectionBudget,
  type ListenerLimitsOptions,
} from '@airlock/pki';
import { captureLogger } from '@airlock/testing';
import { eventually } from './helpers.js';

let dir: string;
let ca: CertificateKeyPair;
let leaf: { cert: string; key: string };
const closers: Array<() => Promise<void> | void> = [];
const logs = captureLogger('internal-pool');
/** Longer than the store's 1 s data-key cache, so that the next GET must ask the KMS again. */
const PAST_KEY_CACHE_MS = 1300;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'airlock-internal-pool-'));
  ca = await createCertificateAuthority({ commonName: 'internal pool test CA' });
  leaf = await issueServerCertificate({ ca, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
});

afterAll(async () => {
  for (const close of closers.reverse()) await close();
  await rm(dir, { recursive: true, force: true });
});

let count = 0;
/** A KMS and an object store in this process, the store calling the KMS through its internal pool (idle pooled sockets closed after 100 ms). */
async function startDataPlane(kmsLimits: ListenerLimitsOptions, budget?: ConnectionBudget) {
  const n = count++;
  const shared = budget === undefined ? {} : { connectionBudget: budget };
  const kmsServer = await createKmsServer(resolveKmsServerConfig({ dataDir: join(dir, `kms-${n}`), tls: leaf, logger: logs.log, limits: kmsLimits, ...shared }));
  closers.push(() => kmsServer.close());
  const credentials = kmsServer.createAccessKey('internal pool');
  const kms = createAwsKms({ endpoint: kmsServer.url, credentials, caBundle: ca.cert, maxAttempts: 1, pool: { maxSockets: 4, maxFreeSockets: 4, idleTimeoutMs: 100 } });
  const store = await createObjectStoreServer(
    resolveObjectStoreServerConfig({
      dataDir: join(dir, `objects-${n}`),
      tls: leaf,
      kms,
      lookupSecret: (id) => (id === credentials.accessKeyId ? credentials.secretAccessKey : undefined),
      logger: logs.log,
      ...shared,
    }),
  );
  closers.push(async () => {
    await store.close();
    kms.destroy();
  });
  const client = createS3ObjectStore({ endpoint: store.url, credentials, caBundle: ca.cert, maxAttempts: 1 });
  closers.push(() => client.destroy());
  await client.createBucket('pool');
  await client.put('pool', 'needs-kms', 'decrypted with a data key the KMS unwraps');
  return { kmsServer, store, client };
}

/** Opens `n` raw TCP connections from this process to `port` and holds them: public clients that never speak. */
async function hold(port: number, n: number): Promise<net.Socket[]> {
  const sockets = await Promise.all(
    Array.from({ length: n }, async () => {
      const socket = net.connect({ host: '127.0.0.1', port });
      socket.on('error', () => undefined);
      await once(socket, 'connect');
      return socket;
    }),
  );
  closers.push(() => {
    for (const socket of sockets) socket.destroy();
  });
  return sockets;
}

/** Whether a public TLS client still gets a handshake: false when the listener refused (destroyed) the connection. */
async function publicHandshake(port: number): Promise<boolean> {
  const socket = tls.connect({ host: '127.0.0.1', port, ca: ca.cert, servername: 'localhost' });
  try {
    return await new Promise<boolean>((resolve) => {
      socket.once('secureConnect', () => resolve(true));
      socket.once('error', () => resolve(false));
      socket.once('close', () => resolve(false));
    });
  } finally {
    socket.destroy();
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('the internal pool', () => {
  it('an S3 GET that needs the KMS succeeds while public clients hold every connection the KMS listener allows', async () => {
    const { kmsServer, client } = await startDataPlane({ maxConnections: 8, maxConnectionsPerAddress: 8 });
    // The store's pooled KMS connections close (100 ms idle) and its data keys expire (1 s): the next GET needs a new KMS connection.
    await sleep(PAST_KEY_CACHE_MS);
    // Public clients on the same address as the store's pool take every slot, per listener and per address (the extra ones are refused).
    await hold(kmsServer.port, 12);
    expect(await publicHandshake(kmsServer.port)).toBe(false);
    expect(await text(await client.get('pool', 'needs-kms'))).toBe('decrypted with a data key the KMS unwraps');
    // Still exhausted for the public afterwards.
    expect(await publicHandshake(kmsServer.port)).toBe(false);
    expect(logs.lines.some((entry) => entry.event === 'kms.connection_refused')).toBe(true);
  });

  it('a process-wide budget: once public clients of the object store spend it, the KMS refuses public clients too, and the store still reaches the KMS', async () => {
    const budget = createConnectionBudget({ descriptorLimit: 40, reserve: 20 });
    expect(budget.maxPublicConnections).toBe(20);
    const { kmsServer, store, client } = await startDataPlane({}, budget);
    // As above, the next GET will need a new KMS connection.
    await sleep(PAST_KEY_CACHE_MS);
    // The S3 client's keep-alive connection to the store was opened before the flood and stays open.
    const held = budget.inUse();
    expect(held).toBeGreaterThanOrEqual(1);
    await hold(store.port, budget.maxPublicConnections - held);
    // The client sees 'connect' before the server has accepted: wait for the listener to take them.
    await eventually('the budget spent', 5000, () => (budget.inUse() === budget.maxPublicConnections ? true : undefined));
    // Only the store was flooded, yet the KMS, sharing the budget, refuses a new public client.
    expect(await publicHandshake(kmsServer.port)).toBe(false);
    expect(await publicHandshake(store.port)).toBe(false);
    // Over the connection opened before the flood, a GET whose data key needs the KMS.
    expect(await text(await client.get('pool', 'needs-kms'))).toBe('decrypted with a data key the KMS unwraps');
    expect(budget.inUse()).toBe(budget.maxPublicConnections);
    expect(logs.lines.some((entry) => entry.reason === 'process-budget')).toBe(true);
  });
});

describe('configuration', () => {
  it('reads the soft descriptor limit from /proc/self/limits text', () => {
    const text = 'Limit                     Soft Limit           Hard Limit           Units     \nMax open files            1048576              1048576              files     \n';
    expect(parseDescriptorLimit(text)).toBe(1_048_576);
    expect(parseDescriptorLimit('Max open files            unlimited            unlimited            files\n')).toBeUndefined();
    expect(parseDescriptorLimit('')).toBeUndefined();
  });

  it('keeps a reserve of a quarter of the limit, at most 1024, and validates the pool options', () => {
    expect(createConnectionBudget({ descriptorLimit: 1024 }).reserve).toBe(256);
    expect(createConnectionBudget({ descriptorLimit: 1_048_576 }).maxPublicConnections).toBe(1_048_576 - 1024);
    expect(() => createConnectionBudget({ descriptorLimit: 100, reserve: 100 })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
    expect(resolveInternalPoolConfig(undefined, 'kms.pool')).toEqual({ maxSockets: 64, maxFreeSockets: 16, idleTimeoutMs: 30_000 });
    expect(() => resolveInternalPoolConfig({ maxSockets: 2, maxFreeSockets: 4 }, 'kms.pool')).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });
});
