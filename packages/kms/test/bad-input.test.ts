// Hostile and malformed requests to the embedded KMS over raw TLS: each gets its AWS error type, and the server stays up.
import { Agent, request } from 'node:https';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signRequest } from '@airlock/crypto';
import { startTestKms, type TestKms } from './helpers.js';

let kms: TestKms;
let keyId = '';
let blob: Buffer;
const CONTEXT = { project: 'p1', secret: 's1' };

beforeAll(async () => {
  kms = await startTestKms();
  const client = kms.client();
  keyId = (await client.createKey({ description: 'bad input' })).keyId;
  blob = (await client.encrypt(keyId, Buffer.from('attack at dawn'), CONTEXT)).ciphertextBlob;
});
afterAll(async () => {
  await kms.stop();
});

interface RawResponse {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Buffer;
  /** Whether the request went out on a kept-alive connection of the request's agent. */
  readonly reusedSocket: boolean;
}

interface RawRequest {
  readonly method?: string;
  readonly path?: string;
  readonly headers: Record<string, string>;
  readonly body?: Buffer | string;
  /** A keep-alive agent to send it with; by default a connection of its own. */
  readonly agent?: Agent;
}

/** Sends exactly the given request over TLS (trusting the test CA) and collects the response. */
async function send(req: RawRequest): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const outgoing = request(
      { host: '127.0.0.1', port: kms.server.port, method: req.method ?? 'POST', path: req.path ?? '/', headers: req.headers, ca: kms.caPem, agent: req.agent ?? false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), reusedSocket: outgoing.reusedSocket }));
        res.on('error', reject);
      },
    );
    outgoing.on('error', reject);
    outgoing.end(req.body);
  });
}

interface SignOptions {
  /** X-Amz-Target; null leaves the header out. @default "TrentService.DescribeKey" */
  readonly target?: string | null;
  readonly region?: string;
  readonly service?: string;
  readonly date?: Date;
  readonly credentials?: { accessKeyId: string; secretAccessKey: string };
}

/** Headers for a request signed with our SigV4 signer, as the AWS SDK would send them. */
function signedHeaders(body: Buffer | string, options: SignOptions = {}): Record<string, string> {
  const target = options.target === undefined ? 'TrentService.DescribeKey' : options.target;
  const headers: Record<string, string> = {
    host: `127.0.0.1:${kms.server.port}`,
    'content-type': 'application/x-amz-json-1.1',
    'content-length': String(Buffer.byteLength(body)),
    ...(target === null ? {} : { 'x-amz-target': target }),
  };
  const signed = signRequest({
    method: 'POST',
    path: '/',
    headers,
    body,
    credentials: options.credentials ?? kms.credentials,
    region: options.region ?? 'us-east-1',
    service: options.service ?? 'kms',
    ...(options.date === undefined ? {} : { date: options.date }),
  });
  return { ...headers, ...signed.headers };
}

/** A signed KMS call with a JSON (or raw) body. */
async function call(operation: string | null, input: unknown, options: Omit<SignOptions, 'target'> = {}): Promise<RawResponse> {
  const body = typeof input === 'string' || Buffer.isBuffer(input) ? input : JSON.stringify(input);
  return send({ headers: signedHeaders(body, { ...options, target: operation === null ? null : `TrentService.${operation}` }), body });
}

/** Asserts an AWS JSON-protocol error response: HTTP 400, the `__type`, and the matching x-amzn-errortype header. */
function expectAwsError(response: RawResponse, type: string): void {
  expect({ status: response.status, type: errorType(response) }).toEqual({ status: 400, type });
  expect(response.headers['content-type']).toBe('application/x-amz-json-1.1');
  expect(response.headers['x-amzn-errortype']).toBe(type);
}

function errorType(response: RawResponse): unknown {
  try {
    return (JSON.parse(response.body.toString('utf8')) as { __type?: unknown }).__type;
  } catch {
    return `(not JSON: ${response.body.subarray(0, 80).toString('latin1')})`;
  }
}

const b64 = (bytes: Buffer): string => bytes.toString('base64');

function flipByte(bytes: Buffer, index: number): Buffer {
  const copy = Buffer.from(bytes);
  copy[index] = (copy[index] as number) ^ 0x01;
  return copy;
}

/** Writes raw bytes to a socket and collects whatever comes back until the peer closes (or a timeout). */
async function exchange(socket: Socket, bytes: Buffer | string, waitMs = 5_000): Promise<{ data: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const finish = (closed: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ data: Buffer.concat(chunks), closed });
    };
    const timer = setTimeout(() => finish(false), waitMs);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', () => finish(true));
    socket.on('close', () => finish(true));
    socket.write(bytes);
  });
}

describe('request framing and protocol', () => {
  it('a malformed JSON body → SerializationException', async () => {
    expectAwsError(await call('DescribeKey', '{"KeyId": "abc"'), 'SerializationException');
  });

  it('a JSON array (or other non-object) body → SerializationException', async () => {
    expectAwsError(await call('DescribeKey', `[${JSON.stringify({ KeyId: 'x' })}]`), 'SerializationException');
    expectAwsError(await call('DescribeKey', '"KeyId"'), 'SerializationException');
    expectAwsError(await call('DescribeKey', 'null'), 'SerializationException');
  });

  it('an unknown or missing X-Amz-Target → UnknownOperationException', async () => {
    expectAwsError(await call('NoSuchOp', { KeyId: keyId }), 'UnknownOperationException');
    expectAwsError(await call(null, { KeyId: keyId }), 'UnknownOperationException');
    const body = JSON.stringify({ KeyId: keyId });
    expectAwsError(await send({ headers: signedHeaders(body, { target: 'OtherService.DescribeKey' }), body }), 'UnknownOperationException');
    // Inherited object properties are not operations.
    expectAwsError(await call('constructor', {}), 'UnknownOperationException');
  });

  it('GET / and POST to another path → a 400 JSON error', async () => {
    const get = await send({ method: 'GET', path: '/', headers: {} });
    expectAwsError(get, 'UnknownOperationException');
    const body = JSON.stringify({ KeyId: keyId });
    expectAwsError(await send({ path: '/other', headers: signedHeaders(body), body }), 'UnknownOperationException');
  });

  it('a body the client cuts short → answered as its own fault (no internal error), server unaffected', async () => {
    const body = JSON.stringify({ KeyId: keyId, Description: 'x'.repeat(1000) });
    const logged = kms.logs.length;
    await new Promise<void>((resolve) => {
      const outgoing = request({ host: '127.0.0.1', port: kms.server.port, method: 'POST', path: '/', headers: signedHeaders(body), ca: kms.caPem, agent: false });
      outgoing.on('error', () => resolve());
      outgoing.on('close', () => resolve());
      outgoing.write(body.slice(0, 100), () => setTimeout(() => outgoing.destroy(), 20));
    });
    // The server logs each request it finishes; wait for this one.
    const deadline = Date.now() + 5_000;
    const finished = (): unknown => kms.logs.slice(logged).find((line) => line.includes('"msg":"KMS request"'));
    while (finished() === undefined && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(JSON.parse(finished() as string)).toMatchObject({ status: 400, outcome: 'SerializationException' });
  });

  it('a body above the 64 KiB limit → ValidationException', async () => {
    const big = JSON.stringify({ KeyId: keyId, Description: 'x'.repeat(200 * 1024) });
    expectAwsError(await call('DescribeKey', big), 'ValidationException');
  });

  it('a chunked body that grows above the limit → ValidationException', async () => {
    const big = JSON.stringify({ KeyId: keyId, Description: 'x'.repeat(200 * 1024) });
    const headers = signedHeaders(big);
    const { 'content-length': _length, ...chunked } = headers;
    expectAwsError(await send({ headers: { ...chunked, 'transfer-encoding': 'chunked' }, body: big }), 'ValidationException');
  });
});

describe('authentication', () => {
  const body = (): string => JSON.stringify({ KeyId: keyId });

  it('no Authorization header → MissingAuthenticationTokenException', async () => {
    const { authorization: _auth, ...headers } = signedHeaders(body());
    expectAwsError(await send({ headers, body: body() }), 'MissingAuthenticationTokenException');
  });

  it('an X-Amz-Target left out of the signature → IncompleteSignatureException, and nothing happens', async () => {
    // Signed as if the body alone mattered; the target is added afterwards, naming a different operation.
    const headers: Record<string, string> = { ...signedHeaders(body(), { target: null }), 'x-amz-target': 'TrentService.DisableKey' };
    expect(headers.authorization).not.toContain('x-amz-target');
    expectAwsError(await send({ headers, body: body() }), 'IncompleteSignatureException');
    expect((await kms.client().describeKey(keyId)).state).toBe('Enabled');
  });

  it('a wrong signature (one hex digit flipped) → InvalidSignatureException', async () => {
    const headers = signedHeaders(body());
    const flipped = headers.authorization?.replace(/Signature=([0-9a-f])/, (_m, c: string) => `Signature=${c === '0' ? '1' : '0'}`);
    expect(flipped).not.toBe(headers.authorization);
    expectAwsError(await send({ headers: { ...headers, authorization: flipped as string }, body: body() }), 'InvalidSignatureException');
  });

  it('a body altered after signing → InvalidSignatureException', async () => {
    const headers = signedHeaders(body());
    const altered = JSON.stringify({ KeyId: keyId.replace(/.$/, (c) => (c === '0' ? '1' : '0')) });
    expectAwsError(await send({ headers, body: altered }), 'InvalidSignatureException');
  });

  it('an unknown access key → UnrecognizedClientException', async () => {
    const credentials = { accessKeyId: 'AKIAUNKNOWNUNKNOWN00', secretAccessKey: kms.credentials.secretAccessKey };
    expectAwsError(await call('DescribeKey', { KeyId: keyId }, { credentials }), 'UnrecognizedClientException');
  });

  it('a wrong region or service in the credential scope → InvalidSignatureException', async () => {
    expectAwsError(await call('DescribeKey', { KeyId: keyId }, { region: 'us-west-2' }), 'InvalidSignatureException');
    expectAwsError(await call('DescribeKey', { KeyId: keyId }, { service: 's3' }), 'InvalidSignatureException');
  });

  it('a request signed 16 minutes ago (or ahead) → InvalidSignatureException', async () => {
    const minutes = (n: number): Date => new Date(Date.now() + n * 60_000);
    expectAwsError(await call('DescribeKey', { KeyId: keyId }, { date: minutes(-16) }), 'InvalidSignatureException');
    expectAwsError(await call('DescribeKey', { KeyId: keyId }, { date: minutes(16) }), 'InvalidSignatureException');
    // Within the 15-minute window it is accepted.
    expect((await call('DescribeKey', { KeyId: keyId }, { date: minutes(-14) })).status).toBe(200);
  });
});

describe('operation inputs', () => {
  it('Decrypt of a truncated or tampered blob → InvalidCiphertextException', async () => {
    const decrypt = async (bytes: Buffer): Promise<RawResponse> => call('Decrypt', { CiphertextBlob: b64(bytes), EncryptionContext: CONTEXT });
    expect((await decrypt(blob)).status).toBe(200);
    expectAwsError(await decrypt(blob.subarray(0, 40)), 'InvalidCiphertextException');
    expectAwsError(await decrypt(blob.subarray(0, blob.length - 1)), 'InvalidCiphertextException');
    // Magic, key version, nonce, ciphertext and tag: every byte outside the key id is authenticated.
    for (const index of [0, 23, 30, 40, blob.length - 1]) {
      expectAwsError(await decrypt(flipByte(blob, index)), 'InvalidCiphertextException');
    }
  });

  it('Decrypt under a different encryption context → InvalidCiphertextException', async () => {
    const decrypt = async (context: Record<string, string>): Promise<RawResponse> => call('Decrypt', { CiphertextBlob: b64(blob), EncryptionContext: context });
    expectAwsError(await decrypt({ project: 'p2', secret: 's1' }), 'InvalidCiphertextException');
    expectAwsError(await decrypt({ project: 'p1' }), 'InvalidCiphertextException');
    expectAwsError(await decrypt({ ...CONTEXT, extra: '' }), 'InvalidCiphertextException');
    expectAwsError(await call('Decrypt', { CiphertextBlob: b64(blob) }), 'InvalidCiphertextException');
  });

  it('Decrypt with a CiphertextBlob that is not base64 → SerializationException', async () => {
    expectAwsError(await call('Decrypt', { CiphertextBlob: '!!!not base64!!!' }), 'SerializationException');
    expectAwsError(await call('Decrypt', { CiphertextBlob: `${b64(blob)}$` }), 'SerializationException');
  });

  it('wrongly typed or out-of-range fields → ValidationException', async () => {
    expectAwsError(await call('Decrypt', { CiphertextBlob: 42 }), 'ValidationException');
    expectAwsError(await call('Decrypt', { CiphertextBlob: '' }), 'ValidationException');
    expectAwsError(await call('Decrypt', { CiphertextBlob: b64(blob), EncryptionContext: { a: 1 } }), 'ValidationException');
    expectAwsError(await call('DescribeKey', {}), 'ValidationException');
    expectAwsError(await call('GenerateDataKey', { KeyId: keyId }), 'ValidationException');
    expectAwsError(await call('GenerateDataKey', { KeyId: keyId, NumberOfBytes: 1025 }), 'ValidationException');
    expectAwsError(await call('ScheduleKeyDeletion', { KeyId: keyId, PendingWindowInDays: 6 }), 'ValidationException');
  });

  it('Encrypt of a 5000-byte plaintext (limit 4096) → ValidationException', async () => {
    expectAwsError(await call('Encrypt', { KeyId: keyId, Plaintext: b64(Buffer.alloc(5000, 7)) }), 'ValidationException');
    expect((await call('Encrypt', { KeyId: keyId, Plaintext: b64(Buffer.alloc(4096, 7)) })).status).toBe(200);
  });

  it('an unknown key → NotFoundException', async () => {
    expectAwsError(await call('DescribeKey', { KeyId: '00000000-0000-4000-8000-000000000000' }), 'NotFoundException');
    expectAwsError(await call('DescribeKey', { KeyId: 'alias/none' }), 'NotFoundException');
    expectAwsError(await call('DescribeKey', { KeyId: 'arn:aws:kms:eu-west-1:111122223333:key/x' }), 'NotFoundException');
  });
});

describe('below HTTP', () => {
  it('garbage bytes inside TLS → a 400 or a close, never a hang', async () => {
    const socket = tlsConnect({ host: '127.0.0.1', port: kms.server.port, ca: kms.caPem });
    await new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', resolve);
      socket.once('error', reject);
    });
    const { data, closed } = await exchange(socket, Buffer.from([0x00, 0xff, 0x13, 0x37, 0x0d, 0x0a, 0x0d, 0x0a, 0xde, 0xad, 0xbe, 0xef]));
    expect(closed).toBe(true);
    if (data.byteLength > 0) expect(data.toString('latin1')).toMatch(/^HTTP\/1\.1 400 /);
  });

  it('plaintext HTTP to the TLS port → no HTTP response (handshake refused)', async () => {
    const socket = netConnect({ host: '127.0.0.1', port: kms.server.port });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const { data, closed } = await exchange(socket, 'GET / HTTP/1.0\r\n\r\n');
    expect(closed).toBe(true);
    expect(data.toString('latin1')).not.toMatch(/HTTP\//);
  });
});

describe('keep-alive', () => {
  it('keeps an idle keep-alive connection open past Node\'s 5 s default, so a pooled client connection is not closed under it', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1, ca: kms.caPem });
    try {
      expect(await send({ method: 'GET', path: '/health', headers: {}, agent })).toMatchObject({ status: 200, reusedSocket: false });
      await new Promise((resolve) => setTimeout(resolve, 6000));
      expect(await send({ method: 'GET', path: '/health', headers: {}, agent })).toMatchObject({ status: 200, reusedSocket: true });
    } finally {
      agent.destroy();
    }
  }, 20_000);
});

describe('after all of that', () => {
  it('the server is still up and serves a valid DescribeKey; nothing crashed or failed internally', async () => {
    const response = await call('DescribeKey', { KeyId: keyId });
    expect(response.status).toBe(200);
    expect((JSON.parse(response.body.toString('utf8')) as { KeyMetadata: { KeyId: string } }).KeyMetadata.KeyId).toBe(keyId);
    expect((await kms.client().describeKey(keyId)).state).toBe('Enabled');
    const errors = kms.logs.filter((line) => (JSON.parse(line) as { level: number }).level >= 50);
    expect(errors).toEqual([]);
    const audit = await kms.server.verifyAudit();
    expect(audit.ok).toBe(true);
  });
});
