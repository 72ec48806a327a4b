// Tests aws-chunked decoding and encoding: AWS's published examples, round trips, tampering and framing errors.
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AirlockError } from '@airlock/common';
import {
  AWS_CHUNKED_MAX_CHUNK_SIZE,
  chunkedPayloadMode,
  createChunkedPayloadDecoder,
  createChunkedPayloadEncoder,
  deriveSigningKey,
  signRequest,
  STREAMING_SIGNED_PAYLOAD,
  STREAMING_SIGNED_PAYLOAD_TRAILER,
  STREAMING_UNSIGNED_PAYLOAD_TRAILER,
  verifyRequest,
  type ChunkedPayloadDecoderOptions,
  type ChunkSigningContext,
} from './sigv4.js';

/**
 * The worked examples of "Signature Calculations for the Authorization Header: Transferring Payload
 * in Multiple Chunks" (sigv4-streaming.html) and its trailer variant (sigv4-streaming-trailers.html)
 * in the Amazon S3 API reference: 65,536 + 1,024 bytes of 'a', chunk size 64 KiB.
 */
const DOC = {
  accessKeyId: 'AKIAIOSFODNN7EXAMPLE',
  secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
  date: new Date('2013-05-24T00:00:00Z'),
  payload: Buffer.alloc(66_560, 'a'),
  signed: {
    seed: '4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9',
    chunks: [
      'ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648',
      '0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497',
      'b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9',
    ],
    contentLength: 66_824,
  },
  trailer: {
    seed: '106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e',
    chunks: [
      'b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2',
      '1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7',
      '2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992',
    ],
    checksum: 'sOO8/Q==',
    trailerSignature: 'd81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435',
  },
} as const;

function docHeaders(trailer: boolean): Record<string, string> {
  return trailer
    ? {
        host: 's3.amazonaws.com',
        'content-encoding': 'aws-chunked',
        'x-amz-decoded-content-length': '66560',
        'x-amz-storage-class': 'REDUCED_REDUNDANCY',
        'x-amz-trailer': 'x-amz-checksum-crc32c',
      }
    : {
        host: 's3.amazonaws.com',
        'content-encoding': 'aws-chunked',
        'content-length': String(DOC.signed.contentLength),
        'x-amz-decoded-content-length': '66560',
        'x-amz-storage-class': 'REDUCED_REDUNDANCY',
      };
}

function signDoc(trailer: boolean) {
  return signRequest({
    method: 'PUT',
    path: '/examplebucket/chunkObject.txt',
    headers: docHeaders(trailer),
    payloadHash: trailer ? STREAMING_SIGNED_PAYLOAD_TRAILER : STREAMING_SIGNED_PAYLOAD,
    credentials: { accessKeyId: DOC.accessKeyId, secretAccessKey: DOC.secretAccessKey },
    region: 'us-east-1',
    service: 's3',
    date: DOC.date,
  });
}

async function collect(readable: Readable | Buffer[], transform: NodeJS.ReadWriteStream): Promise<Buffer> {
  const out: Buffer[] = [];
  transform.on('data', (piece: Buffer) => out.push(piece));
  await pipeline(Array.isArray(readable) ? Readable.from(readable) : readable, transform);
  return Buffer.concat(out);
}

/** Decodes `body` written in pieces of the given sizes (cycled), to exercise every split of the framing. */
interface Decoded {
  readonly data?: Buffer;
  readonly trailers?: ReadonlyMap<string, string>;
  readonly error?: AirlockError;
  /** Everything the decoder emitted, including before an error. */
  readonly emitted: Buffer;
}

async function decode(body: Buffer, options: ChunkedPayloadDecoderOptions, pieceSizes: readonly number[] = [body.byteLength || 1]): Promise<Decoded> {
  const pieces: Buffer[] = [];
  for (let offset = 0, i = 0; offset < body.byteLength; i++) {
    const size = Math.max(1, pieceSizes[i % pieceSizes.length] as number);
    pieces.push(body.subarray(offset, offset + size));
    offset += size;
  }
  const decoder = createChunkedPayloadDecoder(options);
  const emitted: Buffer[] = [];
  decoder.on('data', (piece: Buffer) => emitted.push(piece));
  try {
    await pipeline(Readable.from(pieces), decoder);
  } catch (error) {
    await expect(decoder.trailers).rejects.toBe(error);
    return { error: error as AirlockError, emitted: Buffer.concat(emitted) };
  }
  const data = Buffer.concat(emitted);
  return { data, trailers: await decoder.trailers, emitted: data };
}

async function encode(data: Buffer, options: Parameters<typeof createChunkedPayloadEncoder>[0]): Promise<Buffer> {
  return collect([data], createChunkedPayloadEncoder(options));
}

function contextFor(secret: string, seed: string, scope: string, date: string): ChunkSigningContext {
  const [shortDate = '', region = '', service = ''] = scope.split('/');
  return { signingKey: deriveSigningKey(secret, shortDate, region, service), seedSignature: seed, scope, date };
}

const DOC_SCOPE = '20130524/us-east-1/s3/aws4_request';
const DOC_DATE = '20130524T000000Z';

describe("AWS's published aws-chunked examples", () => {
  it('reproduce the seed signature, every chunk signature and the Content-Length of the signed example', async () => {
    const signed = signDoc(false);
    expect(signed.signature).toBe(DOC.signed.seed);
    const context = contextFor(DOC.secretAccessKey, signed.signature, signed.scope, signed.amzDate);
    const body = await encode(DOC.payload, { mode: 'signed', ...context, chunkSize: 65_536 });
    expect(body.byteLength).toBe(DOC.signed.contentLength);
    const expected = Buffer.concat([
      Buffer.from(`10000;chunk-signature=${DOC.signed.chunks[0]}\r\n`),
      DOC.payload.subarray(0, 65_536),
      Buffer.from(`\r\n400;chunk-signature=${DOC.signed.chunks[1]}\r\n`),
      DOC.payload.subarray(65_536),
      Buffer.from(`\r\n0;chunk-signature=${DOC.signed.chunks[2]}\r\n\r\n`),
    ]);
    expect(body.equals(expected)).toBe(true);
    const decoded = await decode(expected, { mode: 'signed', ...context, expectedDecodedLength: 66_560 });
    expect(decoded.data?.equals(DOC.payload)).toBe(true);
    expect(decoded.trailers?.size).toBe(0);
  });

  it('reproduce the seed, chunk and trailer signatures of the trailer example', async () => {
    const signed = signDoc(true);
    expect(signed.signature).toBe(DOC.trailer.seed);
    const context = contextFor(DOC.secretAccessKey, signed.signature, signed.scope, signed.amzDate);
    const body = await encode(DOC.payload, {
      mode: 'signed',
      ...context,
      chunkSize: 65_536,
      trailers: { 'x-amz-checksum-crc32c': DOC.trailer.checksum },
    });
    const expected = Buffer.concat([
      Buffer.from(`10000;chunk-signature=${DOC.trailer.chunks[0]}\r\n`),
      DOC.payload.subarray(0, 65_536),
      Buffer.from(`\r\n400;chunk-signature=${DOC.trailer.chunks[1]}\r\n`),
      DOC.payload.subarray(65_536),
      Buffer.from(`\r\n0;chunk-signature=${DOC.trailer.chunks[2]}\r\n`),
      Buffer.from(`x-amz-checksum-crc32c:${DOC.trailer.checksum}\r\nx-amz-trailer-signature:${DOC.trailer.trailerSignature}\r\n\r\n`),
    ]);
    expect(body.toString('latin1')).toBe(expected.toString('latin1'));
    const decoded = await decode(expected, { mode: 'signed', trailer: true, ...context, expectedDecodedLength: 66_560 });
    expect(decoded.data?.equals(DOC.payload)).toBe(true);
    expect([...(decoded.trailers ?? [])]).toEqual([['x-amz-checksum-crc32c', DOC.trailer.checksum]]);
  });

  it('verify the request end to end: a verified request spreads straight into the decoder', async () => {
    const signed = signDoc(false);
    const verified = await verifyRequest({
      method: 'PUT',
      path: '/examplebucket/chunkObject.txt',
      headers: { ...docHeaders(false), ...signed.headers },
      lookupSecret: (id) => (id === DOC.accessKeyId ? DOC.secretAccessKey : undefined),
      region: 'us-east-1',
      service: 's3',
      now: DOC.date,
      requireSignedAmzHeaders: true,
    });
    expect(verified.seedSignature).toBe(DOC.signed.seed);
    expect(verified.payloadHash).toBe(STREAMING_SIGNED_PAYLOAD);
    const mode = chunkedPayloadMode(verified.payloadHash);
    expect(mode).toEqual({ mode: 'signed', trailer: false });
    const body = await encode(DOC.payload, { mode: 'signed', ...contextFor(DOC.secretAccessKey, DOC.signed.seed, DOC_SCOPE, DOC_DATE) });
    const decoded = await decode(body, { ...verified, ...(mode as NonNullable<typeof mode>), expectedDecodedLength: 66_560 });
    expect(decoded.data?.equals(DOC.payload)).toBe(true);
    verified.signingKey.fill(0);
  });
});

describe('aws-chunked round trips', () => {
  const context = contextFor('round-trip-secret', 'a'.repeat(64), '20240102/eu-west-1/s3/aws4_request', '20240102T030405Z');

  it('signed, with and without a trailer, for any data, chunk size and write pattern', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 5000 }),
        fc.integer({ min: 1, max: 1500 }),
        fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 6 }),
        fc.boolean(),
        async (bytes, chunkSize, pieceSizes, trailer) => {
          const data = Buffer.from(bytes);
          const checksum = createHash('sha256').update(data).digest('base64');
          const body = await encode(data, {
            mode: 'signed',
            ...context,
            chunkSize,
            ...(trailer ? { trailers: () => ({ 'x-amz-checksum-sha256': checksum }) } : {}),
          });
          const decoded = await decode(body, { mode: 'signed', trailer, ...context, expectedDecodedLength: data.byteLength }, pieceSizes);
          expect(decoded.error).toBeUndefined();
          expect(decoded.data?.equals(data)).toBe(true);
          expect(Object.fromEntries(decoded.trailers ?? [])).toEqual(trailer ? { 'x-amz-checksum-sha256': checksum } : {});
        },
      ),
      { numRuns: 150 },
    );
  });

  it('unsigned with trailers, as @aws-sdk/client-s3 sends by default', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 3000 }), fc.integer({ min: 1, max: 1000 }), fc.integer({ min: 1, max: 300 }), async (bytes, chunkSize, piece) => {
        const data = Buffer.from(bytes);
        const body = await encode(data, { mode: 'unsigned', chunkSize, trailers: { 'x-amz-checksum-crc32': 'AAAAAA==' } });
        const decoded = await decode(body, { mode: 'unsigned', expectedDecodedLength: data.byteLength }, [piece]);
        expect(decoded.data?.equals(data)).toBe(true);
        expect(decoded.trailers?.get('x-amz-checksum-crc32')).toBe('AAAAAA==');
      }),
      { numRuns: 100 },
    );
  });

  it('parses the x-amz-checksum-crc32 trailer of a hand-written unsigned body', async () => {
    const body = Buffer.from('3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\r\n\r\n');
    const decoded = await decode(body, { mode: 'unsigned', expectedDecodedLength: 3 }, [1]);
    expect(decoded.data?.toString()).toBe('abc');
    expect([...(decoded.trailers ?? [])]).toEqual([['x-amz-checksum-crc32', 'NSRBwg==']]);
    expect(chunkedPayloadMode(STREAMING_UNSIGNED_PAYLOAD_TRAILER)).toEqual({ mode: 'unsigned', trailer: true });
    expect(chunkedPayloadMode('UNSIGNED-PAYLOAD')).toBeUndefined();
  });
});

describe('aws-chunked failures', () => {
  const context = contextFor('failure-secret', 'b'.repeat(64), '20240102/eu-west-1/s3/aws4_request', '20240102T030405Z');
  const data = randomBytes(10_000);
  const signedBody = (trailers?: Record<string, string>): Promise<Buffer> =>
    encode(data, { mode: 'signed', ...context, chunkSize: 4096, ...(trailers === undefined ? {} : { trailers }) });

  const expectCode = (error: AirlockError | undefined, code: string, reason: string, problem?: string): void => {
    expect(error).toBeInstanceOf(AirlockError);
    expect(error?.code).toBe(code);
    expect(error?.details?.reason).toBe(reason);
    if (problem !== undefined) expect(error?.details?.problem).toBe(problem);
  };

  it('rejects tampered chunk data with AUTH_SIGNATURE_MISMATCH, emitting nothing of that chunk', async () => {
    const body = await signedBody();
    // Find the second chunk's data by the framing, not by searching for CRLF: the random data of the
    // first chunk can hold a CRLF itself (about one run in sixteen), which put the tamper in chunk one.
    const firstDataStart = body.indexOf('\r\n') + 2;
    const secondHeaderStart = firstDataStart + 4096 + 2;
    expect(body.subarray(secondHeaderStart, secondHeaderStart + 4).toString()).toBe('1000');
    const offset = body.indexOf('\r\n', secondHeaderStart) + 2; // the second chunk's data
    const tampered = Buffer.from(body);
    tampered[offset + 100] = (tampered[offset + 100] as number) ^ 1;
    const result = await decode(tampered, { mode: 'signed', ...context });
    expectCode(result.error, 'AUTH_SIGNATURE_MISMATCH', 'chunk-signature-mismatch');
    // Only the first, verified chunk came out.
    expect(result.emitted.equals(data.subarray(0, 4096))).toBe(true);
  });

  it('rejects a wrong seed signature, a wrong key, reordered chunks and a changed chunk signature', async () => {
    const body = await signedBody();
    expectCode((await decode(body, { mode: 'signed', ...context, seedSignature: 'c'.repeat(64) })).error, 'AUTH_SIGNATURE_MISMATCH', 'chunk-signature-mismatch');
    const otherKey = deriveSigningKey('other-secret', '20240102', 'eu-west-1', 's3');
    expectCode((await decode(body, { mode: 'signed', ...context, signingKey: otherKey })).error, 'AUTH_SIGNATURE_MISMATCH', 'chunk-signature-mismatch');
    // Each full chunk is `1000;chunk-signature=<64 hex>\r\n` (87 bytes), 4096 data bytes and CRLF.
    const record = 87 + 4096 + 2;
    expect(body.subarray(record, record + 21).toString('latin1')).toBe('1000;chunk-signature=');
    const swapped = Buffer.concat([body.subarray(record, 2 * record), body.subarray(0, record), body.subarray(2 * record)]);
    expectCode((await decode(swapped, { mode: 'signed', ...context })).error, 'AUTH_SIGNATURE_MISMATCH', 'chunk-signature-mismatch');
    const text = body.toString('latin1');
    const lastSignature = /0;chunk-signature=([0-9a-f]{64})\r\n\r\n$/.exec(text)?.[1] ?? '';
    const changed = text.replace(`0;chunk-signature=${lastSignature}`, `0;chunk-signature=${lastSignature.slice(0, -1)}${lastSignature.endsWith('0') ? '1' : '0'}`);
    expectCode((await decode(Buffer.from(changed, 'latin1'), { mode: 'signed', ...context })).error, 'AUTH_SIGNATURE_MISMATCH', 'chunk-signature-mismatch');
  });

  it('rejects a truncated body, wherever it is cut', async () => {
    const body = await signedBody();
    for (const cut of [1, 10, 90, 4096, 4200, body.byteLength - 2, body.byteLength - 1]) {
      const result = await decode(body.subarray(0, cut), { mode: 'signed', ...context });
      expectCode(result.error, 'INVALID_ARGUMENT', 'chunk-malformed');
    }
    expectCode((await decode(Buffer.alloc(0), { mode: 'signed', ...context })).error, 'INVALID_ARGUMENT', 'chunk-malformed', 'truncated');
    // A signed body missing its final zero-length chunk is truncated, even if every chunk so far checked.
    const withoutFinal = body.subarray(0, body.lastIndexOf('0;chunk-signature='));
    expectCode((await decode(withoutFinal, { mode: 'signed', ...context })).error, 'INVALID_ARGUMENT', 'chunk-malformed', 'truncated');
  });

  it('checks the trailer signature', async () => {
    const body = await signedBody({ 'x-amz-checksum-crc32': 'AAAAAA==' });
    expect((await decode(body, { mode: 'signed', trailer: true, ...context })).error).toBeUndefined();
    const changedValue = Buffer.from(body.toString('latin1').replace('AAAAAA==', 'AAAAAB=='), 'latin1');
    expectCode((await decode(changedValue, { mode: 'signed', trailer: true, ...context })).error, 'AUTH_SIGNATURE_MISMATCH', 'trailer-signature-mismatch');
    const withoutSignature = Buffer.from(body.toString('latin1').replace(/x-amz-trailer-signature:[0-9a-f]{64}\r\n/, ''), 'latin1');
    expectCode((await decode(withoutSignature, { mode: 'signed', trailer: true, ...context })).error, 'AUTH_SIGNATURE_MISMATCH', 'trailer-signature-missing');
    // Trailers where none were announced are malformed.
    expectCode((await decode(body, { mode: 'signed', ...context })).error, 'INVALID_ARGUMENT', 'chunk-malformed', 'unexpected-trailer');
  });

  it('rejects malformed framing', async () => {
    const cases: Array<[string, string, ChunkedPayloadDecoderOptions]> = [
      ['3\r\nabc\r\n0\r\n\r\nextra', 'trailing-data', { mode: 'unsigned' }],
      ['3\r\nabcd\r\n0\r\n\r\n', 'missing-chunk-crlf', { mode: 'unsigned' }],
      ['zz\r\nabc\r\n0\r\n\r\n', 'chunk-header', { mode: 'unsigned' }],
      ['-3\r\nabc\r\n0\r\n\r\n', 'chunk-header', { mode: 'unsigned' }],
      [`3;chunk-signature=${'0'.repeat(64)}\r\nabc\r\n0\r\n\r\n`, 'chunk-header', { mode: 'unsigned' }],
      ['3\r\nabc\r\n0\r\n\r\n', 'chunk-header', { mode: 'signed', ...context }],
      [`${(AWS_CHUNKED_MAX_CHUNK_SIZE + 1).toString(16)}\r\n`, 'chunk-too-large', { mode: 'unsigned' }],
      ['400\r\n', 'chunk-too-large', { mode: 'unsigned', maxChunkSize: 1000 }],
      [`${'0'.repeat(5000)}\r\n`, 'line-too-long', { mode: 'unsigned' }],
      ['0'.repeat(5000), 'line-too-long', { mode: 'unsigned' }],
      ['0\r\nno-colon\r\n\r\n', 'trailer-line', { mode: 'unsigned' }],
      ['0\r\na:1\r\na:2\r\n\r\n', 'duplicate-trailer', { mode: 'unsigned' }],
      [`0\r\n${Array.from({ length: 17 }, (_, i) => `t${i}:v\r\n`).join('')}\r\n`, 'too-many-trailers', { mode: 'unsigned' }],
      [`0\r\nx-amz-trailer-signature:${'0'.repeat(64)}\r\n\r\n`, 'unexpected-trailer-signature', { mode: 'unsigned' }],
    ];
    for (const [body, problem, options] of cases) {
      expectCode((await decode(Buffer.from(body, 'latin1'), options, [7])).error, 'INVALID_ARGUMENT', 'chunk-malformed', problem);
    }
  });

  it('enforces x-amz-decoded-content-length both ways', async () => {
    const body = await signedBody();
    const short = await decode(body, { mode: 'signed', ...context, expectedDecodedLength: data.byteLength - 1 });
    expectCode(short.error, 'INVALID_ARGUMENT', 'decoded-length-mismatch');
    const long = await decode(body, { mode: 'signed', ...context, expectedDecodedLength: data.byteLength + 1 });
    expectCode(long.error, 'INVALID_ARGUMENT', 'decoded-length-mismatch');
  });

  it('validates its options', () => {
    const bad: unknown[] = [
      { mode: 'both' },
      { mode: 'signed' },
      { mode: 'signed', ...context, signingKey: new Uint8Array(16) },
      { mode: 'signed', ...context, seedSignature: 'xyz' },
      { mode: 'signed', ...context, scope: 'eu-west-1/s3' },
      { mode: 'signed', ...context, date: '2024-01-02' },
      { mode: 'unsigned', expectedDecodedLength: -1 },
      { mode: 'unsigned', maxChunkSize: AWS_CHUNKED_MAX_CHUNK_SIZE + 1 },
    ];
    for (const options of bad) {
      expect(() => createChunkedPayloadDecoder(options as ChunkedPayloadDecoderOptions)).toThrow(AirlockError);
    }
    expect(() => createChunkedPayloadEncoder({ mode: 'unsigned', chunkSize: 0 })).toThrow(AirlockError);
  });

  it('keeps its own copy of the signing key', async () => {
    const body = await signedBody();
    const key = Buffer.from(context.signingKey as Uint8Array);
    const decoder = createChunkedPayloadDecoder({ mode: 'signed', ...context, signingKey: key });
    key.fill(0);
    const out = await collect([body], decoder);
    expect(out.equals(data)).toBe(true);
  });
});
