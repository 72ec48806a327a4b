// The object store under bad input and crashes: typed S3 errors, no partial objects, the server stays up.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { Agent, request } from 'node:https';
import { connect } from 'node:tls';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signRequest } from '@airlock/crypto';
import { createCertificateAuthority, issueServerCertificate } from '@airlock/pki';
import { createS3ObjectStore } from '../src/s3-object-store.js';
import { startTestObjectStore, type TestObjectStore } from './server-helpers.js';

let store: TestObjectStore;
beforeAll(async () => {
  store = await startTestObjectStore();
});
afterAll(async () => {
  await store.stop();
});

interface RawResponse {
  status: number;
  body: string;
  /** Whether the request went out on a kept-alive connection of `agent`. */
  reusedSocket: boolean;
}

/** A raw HTTPS request to the store, signed (or not) with Airlock's SigV4 signer. */
async function raw(method: string, path: string, body: Buffer | string = '', extraHeaders: Record<string, string> = {}, sign = true, agent?: Agent): Promise<RawResponse> {
  const url = new URL(store.server.url);
  const payload = Buffer.from(body);
  const headers: Record<string, string> = { host: url.host, ...extraHeaders };
  if (sign) {
    const [p, q] = path.split('?');
    Object.assign(
      headers,
      signRequest({
        method,
        path: p as string,
        query: q ?? '',
        headers,
        payloadHash: createHash('sha256').update(payload).digest('hex'),
        credentials: store.credentials,
        region: 'us-east-1',
        service: 's3',
        date: new Date(),
      }).headers,
    );
  }
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, method, path, headers, ca: store.caPem, ...(agent === undefined ? {} : { agent }) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), reusedSocket: req.reusedSocket }));
    });
    req.on('error', reject);
    req.end(payload);
  });
}

const code = (r: RawResponse): string | undefined => /<Code>([^<]+)<\/Code>/.exec(r.body)?.[1];

describe('bad input against the real store', () => {
  it('answers each with its S3 error and keeps serving', async () => {
    const client = store.client();
    await client.createBucket('bad-input');
    await client.put('bad-input', 'obj', 'twelve bytes');

    const xml = await raw('PUT', '/bad-input?encryption', '<ServerSideEncryptionConfiguration><Rule>', { 'content-type': 'application/xml' });
    expect([xml.status, code(xml)]).toEqual([400, 'MalformedXML']);

    await expect(client.get('bad-input', 'obj', { start: 100, end: 200 })).rejects.toMatchObject({ code: 'RANGE_NOT_SATISFIABLE' });

    const huge = await raw('GET', '/bad-input/obj', '', { 'x-padding': 'a'.repeat(20_000) }, false);
    expect(huge.status).toBe(431);

    await expect(client.put('bad-input', 'k', 'x', { encryption: { algorithm: 'aws:kms', kmsKeyId: 'alias/does-not-exist' } })).rejects.toMatchObject({
      code: 'KMS_KEY_NOT_FOUND',
    });

    const unsigned = await raw('GET', '/bad-input/obj', '', {}, false);
    expect([unsigned.status, code(unsigned)]).toEqual([403, 'AccessDenied']);

    // A body shorter than its Content-Length: the client gives up; nothing becomes visible.
    await new Promise<void>((resolve) => {
      const url = new URL(store.server.url);
      const socket = connect({ host: url.hostname, port: Number(url.port), ca: store.caPem, servername: 'localhost' }, () => {
        const headers: Record<string, string> = { host: url.host, 'content-length': '1000' };
        const signed = signRequest({ method: 'PUT', path: '/bad-input/short', headers, payloadHash: 'UNSIGNED-PAYLOAD', credentials: store.credentials, region: 'us-east-1', service: 's3', date: new Date() });
        const all = { ...headers, ...signed.headers, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' };
        socket.write(`PUT /bad-input/short HTTP/1.1\r\n${Object.entries(all).map(([k, v]) => `${k}: ${v}`).join('\r\n')}\r\n\r\n${'x'.repeat(10)}`);
        setTimeout(() => {
          socket.destroy();
          resolve();
        }, 200);
      });
      socket.on('error', () => resolve());
    });
    await expect(client.head('bad-input', 'short')).rejects.toMatchObject({ code: 'OBJECT_NOT_FOUND' });

    // Garbage bytes on the TLS socket.
    await new Promise<void>((resolve) => {
      const url = new URL(store.server.url);
      const socket = connect({ host: url.hostname, port: Number(url.port), ca: store.caPem, servername: 'localhost' }, () => socket.write(randomBytes(300)));
      let answer = '';
      socket.on('data', (d: Buffer) => (answer += d.toString('latin1')));
      const done = (): void => {
        socket.destroy();
        // Either a 400 came back or the connection was dropped; never a 2xx.
        expect(answer.startsWith('HTTP/1.1 2')).toBe(false);
        resolve();
      };
      socket.on('close', done);
      socket.on('error', done);
      setTimeout(done, 2000);
    });

    // Still serving, with the original bytes.
    expect((await buffer(await client.get('bad-input', 'obj'))).toString()).toBe('twelve bytes');
  });

  it('treats path-traversal keys as plain names: nothing escapes the data directory', async () => {
    const client = store.client();
    await client.createBucket('traversal');
    for (const key of ['../../../../etc/passwd', '../x', 'a/../../b', '..', '%2e%2e/y']) {
      await client.put('traversal', key, `content of ${key}`);
      expect((await buffer(await client.get('traversal', key))).toString()).toBe(`content of ${key}`);
    }
    const keys: string[] = [];
    for await (const entry of client.list('traversal')) keys.push(entry.key);
    expect(keys.sort()).toEqual(['%2e%2e/y', '..', '../../../../etc/passwd', '../x', 'a/../../b'].sort());
    // Every file the store wrote is inside its data directory, under hashed names.
    const entries = await readdir(join(store.dir, 'objects'), { recursive: true });
    expect(entries.some((e) => e.includes('..') || e.includes('passwd'))).toBe(false);
  });
});

describe('keep-alive', () => {
  it('keeps an idle keep-alive connection open past Node\'s 5 s default, so a pooled client connection is not closed under it', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1, ca: store.caPem });
    try {
      expect(await raw('GET', '/', '', {}, true, agent)).toMatchObject({ status: 200, reusedSocket: false });
      await new Promise((resolve) => setTimeout(resolve, 6000));
      expect(await raw('GET', '/', '', {}, true, agent)).toMatchObject({ status: 200, reusedSocket: true });
    } finally {
      agent.destroy();
    }
  }, 20_000);

  it('a refused request without a body (HEAD or GET of a missing key, an anonymous call) keeps its connection', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1, ca: store.caPem });
    try {
      expect(await raw('PUT', '/keepalive-refusals', '', {}, true, agent)).toMatchObject({ status: 200, reusedSocket: false });
      expect(await raw('HEAD', '/keepalive-refusals/missing', '', {}, true, agent)).toMatchObject({ status: 404, reusedSocket: true });
      expect(await raw('GET', '/keepalive-refusals/missing', '', {}, true, agent)).toMatchObject({ status: 404, reusedSocket: true });
      expect(await raw('HEAD', '/keepalive-refusals/missing', '', {}, false, agent)).toMatchObject({ status: 403, reusedSocket: true });
      expect(await raw('GET', '/', '', {}, true, agent)).toMatchObject({ status: 200, reusedSocket: true });
    } finally {
      agent.destroy();
    }
  });

  it('a refused request whose body was not read still ends its connection', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1, ca: store.caPem });
    try {
      expect(await raw('GET', '/', '', {}, true, agent)).toMatchObject({ status: 200, reusedSocket: false });
      // Unsigned, 4 MiB: refused before its body is read, so the connection cannot carry another request.
      expect(await raw('PUT', '/keepalive-refusals/large', Buffer.alloc(4 * 1024 * 1024), {}, false, agent)).toMatchObject({ status: 403, reusedSocket: true });
      expect(await raw('GET', '/', '', {}, true, agent)).toMatchObject({ status: 200, reusedSocket: false });
    } finally {
      agent.destroy();
    }
  });
});

describe('crash safety', () => {
  it('kill -9 during a large PUT: after restart the object is absent or complete, never partial', async () => {
    const ca = await createCertificateAuthority();
    const tls = await issueServerCertificate({ ca, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
    const dataDir = join(store.dir, 'crash-store');
    const env = {
      ...process.env,
      OS_ACCESS_KEY_ID: store.credentials.accessKeyId,
      OS_SECRET_ACCESS_KEY: store.credentials.secretAccessKey,
      OS_KMS_URL: store.kmsServer.url,
      OS_CA_PEM: store.caPem,
      OS_DATA_DIR: dataDir,
      OS_TLS_CERT: tls.cert,
      OS_TLS_KEY: tls.key,
    };
    const fixture = fileURLToPath(new URL('./fixtures/serve.ts', import.meta.url));
    const start = async (port = 0): Promise<{ child: ChildProcessWithoutNullStreams; url: string; port: number }> => {
      const child = spawn(process.execPath, ['--conditions=airlock-source', '--import', 'tsx', fixture], { env: { ...env, OS_PORT: String(port) } });
      const line = await new Promise<string>((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('\n')) resolve(out.split('\n')[0] as string);
        });
        child.once('exit', (c) => reject(new Error(`fixture exited ${String(c)}`)));
      });
      return { child, ...(JSON.parse(line) as { url: string; port: number }) };
    };
    const first = await start();
    const client = createS3ObjectStore({ endpoint: first.url, credentials: store.credentials, caBundle: ca.cert, maxAttempts: 1 });
    await client.createBucket('crash');
    const small = randomBytes(100_000);
    await client.put('crash', 'complete', small);

    let sent = 0;
    const big = new Readable({
      read() {
        sent += 1;
        if (sent === 40) first.child.kill('SIGKILL'); // about 40 MiB in
        this.push(sent <= 200 ? randomBytes(1024 * 1024) : null);
      },
    });
    await expect(client.put('crash', 'large', big, { contentLength: 200 * 1024 * 1024 })).rejects.toBeDefined();
    client.destroy();

    const second = await start(first.port);
    const after = createS3ObjectStore({ endpoint: second.url, credentials: store.credentials, caBundle: ca.cert, maxAttempts: 1 });
    try {
      await expect(after.head('crash', 'large')).rejects.toMatchObject({ code: 'OBJECT_NOT_FOUND' });
      expect((await buffer(await after.get('crash', 'complete'))).equals(small)).toBe(true);
      expect(await readdir(join(dataDir, 'tmp'))).toEqual([]);
      const dataFiles = (await readdir(join(dataDir, 'buckets'), { recursive: true })).filter((f) => f.endsWith('.data'));
      expect(dataFiles.length).toBe(1); // only the complete object's body survived
      expect((await readFile(join(dataDir, 'store.key'), 'utf8')).length).toBeGreaterThan(0);
    } finally {
      after.destroy();
      second.child.kill('SIGKILL');
    }
  }, 120_000);
});
