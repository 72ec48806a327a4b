// The S3 client's request timeout (createS3ObjectStore requestTimeoutMs), against real TLS servers that accept a call and then go silent.
import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AirlockError } from '@airlock/common';
import { createCertificateAuthority, issueServerCertificate, tlsServerOptions } from '@airlock/pki';
import { createS3ObjectStore, resolveS3ObjectStoreConfig } from '../src/s3-object-store.js';

const TIMEOUT_MS = 500;
const credentials = { accessKeyId: 'AKIDTIMEOUTTEST', secretAccessKey: 'timeout-test-secret' };

let ca: string;
let tls: { cert: string; key: string };
beforeAll(async () => {
  const authority = await createCertificateAuthority({ commonName: 'client timeout test CA' });
  ca = authority.cert;
  const leaf = await issueServerCertificate({ ca: authority, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  tls = { cert: leaf.cert, key: leaf.key };
});

const servers: Server[] = [];
const clients: Array<ReturnType<typeof createS3ObjectStore>> = [];
afterEach(async () => {
  for (const client of clients.splice(0)) client.destroy();
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

/** A TLS server whose every request is handed to `answer` (which may never answer). */
async function serve(answer: (res: ServerResponse) => void): Promise<string> {
  const server = createServer(tlsServerOptions(tls), (req, res) => {
    req.resume();
    req.once('end', () => answer(res));
  });
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function client(endpoint: string, requestTimeoutMs = TIMEOUT_MS): ReturnType<typeof createS3ObjectStore> {
  const store = createS3ObjectStore({ endpoint, credentials, caBundle: ca, maxAttempts: 1, requestTimeoutMs });
  clients.push(store);
  return store;
}

describe('createS3ObjectStore requestTimeoutMs', () => {
  it('defaults to 30 s and refuses values out of range with CONFIG_INVALID', () => {
    expect(resolveS3ObjectStoreConfig({}).requestTimeoutMs).toBe(30_000);
    expect(() => resolveS3ObjectStoreConfig({ requestTimeoutMs: 10 })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }) as Error);
  });

  it('fails a call to a store that accepted it and never answers with TIMEOUT, after the timeout', async () => {
    const endpoint = await serve(() => undefined);
    const store = client(endpoint);
    const started = Date.now();
    await expect(store.head('bucket', 'key')).rejects.toMatchObject({ code: 'TIMEOUT' });
    // Not before the timeout; the upper bound is the test's own timeout (nothing else ends the call).
    expect(Date.now() - started).toBeGreaterThanOrEqual(TIMEOUT_MS - 50);
    await expect(store.put('bucket', 'key', Buffer.from('payload'))).rejects.toMatchObject({ code: 'TIMEOUT' });
  });

  it('fails a download whose body stops midway with a TIMEOUT stream error', async () => {
    const endpoint = await serve((res) => {
      res.writeHead(200, { 'content-length': '1000', etag: '"x"' });
      res.write(Buffer.alloc(100, 1)); // and then nothing more
    });
    const body = await client(endpoint).get('bucket', 'key');
    const error = await buffer(body).then(
      () => undefined,
      (reason: unknown) => reason,
    );
    expect(error).toBeDefined();
    expect(AirlockError.from(error).code).toBe('TIMEOUT');
  });

  it('does not cut a call that keeps moving, however much longer than the timeout it takes (upload and download)', async () => {
    // 20 bytes, one every 100 ms: 2 s in all, four times the timeout, never idle for half of it.
    const trickle = async function* (): AsyncGenerator<Buffer> {
      for (let i = 0; i < 20; i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        yield Buffer.from([i]);
      }
    };
    const endpoint = await serve((res) => {
      if (res.req.method === 'PUT') {
        res.writeHead(200, { etag: '"uploaded"', 'content-length': '0' });
        res.end();
        return;
      }
      res.writeHead(200, { 'content-length': '20', etag: '"x"' });
      const body = Readable.from(trickle());
      body.pipe(res);
      res.once('close', () => body.destroy());
    });
    const store = client(endpoint);
    let started = Date.now();
    expect(await store.put('bucket', 'key', Readable.from(trickle()), { contentLength: 20 })).toEqual({ etag: '"uploaded"' });
    expect(Date.now() - started).toBeGreaterThan(4 * TIMEOUT_MS - 200);
    started = Date.now();
    const bytes = await buffer(await store.get('bucket', 'key'));
    expect(bytes).toEqual(Buffer.from(Array.from({ length: 20 }, (_, i) => i)));
    expect(Date.now() - started).toBeGreaterThan(4 * TIMEOUT_MS - 200);
  });
});
