// Checks SigV4 signing and verification against every case of the AWS SigV4 test suite (aws-c-auth).
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { AirlockError, type AirlockErrorCode } from '@airlock/common';
import { presignUrl, signRequest, verifyRequest, type VerifyRequestOptions } from '../src/sigv4.js';
import { headersDistinct, readSigV4Case, sigv4CaseNames, type RawRequest, type SigV4VectorCase } from './sigv4-vector-cases.js';

const CASE_NAMES = sigv4CaseNames();
const checked = { header: new Set<string>(), query: new Set<string>() };

const sha256 = (data: Uint8Array): string => createHash('sha256').update(data).digest('hex');

async function expectAuthError(promise: Promise<unknown>, code: AirlockErrorCode, reason?: string): Promise<AirlockError> {
  const error: unknown = await promise.then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(error, `expected ${code}`).toBeInstanceOf(AirlockError);
  const airlock = error as AirlockError;
  expect(airlock.code).toBe(code);
  if (reason !== undefined) expect(airlock.details?.reason).toBe(reason);
  return airlock;
}

/** Verifier options for a signed request of the suite, as a server with the case's configuration would pass them. */
function verifyOptions(vector: SigV4VectorCase, wire: RawRequest, overrides: Partial<VerifyRequestOptions> = {}): VerifyRequestOptions {
  const { context } = vector;
  return {
    method: wire.method,
    path: wire.path,
    rawQuery: wire.rawQuery,
    headers: headersDistinct(wire.headers),
    payloadHash: sha256(wire.body),
    lookupSecret: (id) => (id === context.credentials.access_key_id ? context.credentials.secret_access_key : undefined),
    region: context.region,
    service: context.service,
    now: new Date(context.timestamp),
    normalizePath: context.normalize,
    uriEscapePath: true,
    unsignedSessionToken: context.omit_session_token === true,
    ...overrides,
  };
}

/** The headers of a request as a sorted multiset of "name:value" lines. */
function headerLines(pairs: ReadonlyArray<readonly [string, string]>): string[] {
  return pairs.map(([name, value]) => `${name.toLowerCase()}:${value}`).sort();
}

/** Replaces the last (hex) character of a signature, or of a value ending in one, with a different digit. */
function flipLastHexDigit(signature: string): string {
  const last = signature.at(-1);
  return `${signature.slice(0, -1)}${last === '0' ? '1' : '0'}`;
}

/** A different value of the same form: a hex digest stays a hex digest (anything else would be malformed, not mismatched). */
function alter(value: string): string {
  return /^[0-9a-f]{64}$/.test(value) ? flipLastHexDigit(value) : `${value}x`;
}

/** Signed header names of a verified request other than the ones whose change is caught elsewhere. */
function mutableSignedHeaders(signedHeaders: readonly string[]): string[] {
  return signedHeaders.filter((name) => name !== 'x-amz-date');
}

function withHeaderValue(pairs: ReadonlyArray<readonly [string, string]>, name: string, change: (value: string) => string): Array<[string, string]> {
  let changed = false;
  return pairs.map(([key, value]) => {
    if (!changed && key.toLowerCase() === name) {
      changed = true;
      return [key, change(value)];
    }
    return [key, value];
  });
}

describe('AWS SigV4 test suite', () => {
  it('finds the case directories', () => {
    // vectors/README.md: 38 cases.
    expect(CASE_NAMES.length).toBe(38);
  });

  describe.each(CASE_NAMES)('%s', (name) => {
    const vector = readSigV4Case(name);
    const { context, request } = vector;
    const credentials = {
      accessKeyId: context.credentials.access_key_id,
      secretAccessKey: context.credentials.secret_access_key,
      ...(context.credentials.token === undefined ? {} : { sessionToken: context.credentials.token }),
    };
    const base = {
      method: request.method,
      path: request.path,
      query: request.rawQuery,
      headers: request.headers,
      credentials,
      region: context.region,
      service: context.service,
      date: new Date(context.timestamp),
      normalizePath: context.normalize,
      uriEscapePath: true,
      omitSessionToken: context.omit_session_token === true,
      ...(context.sign_body ? { body: request.body } : {}),
    };

    it('header auth: signs as expected, verifies, and rejects every tampering', async () => {
      const expected = vector.expected.header;
      const signed = signRequest({ ...base, addContentSha256Header: context.sign_body });
      expect(signed.canonicalRequest).toBe(expected.canonicalRequest);
      expect(signed.stringToSign).toBe(expected.stringToSign);
      expect(signed.signature).toBe(expected.signature);
      // The signed request is the original plus exactly the headers the signer returned.
      expect(headerLines([...request.headers, ...Object.entries(signed.headers)])).toEqual(headerLines(expected.text.headers));

      const wire = expected.wire;
      const verified = await verifyRequest(verifyOptions(vector, wire));
      expect(verified.authType).toBe('header');
      expect(verified.accessKeyId).toBe(context.credentials.access_key_id);
      expect(verified.seedSignature).toBe(expected.signature);
      expect(verified.signedHeaders.join(';')).toBe(signed.signedHeaders);
      expect(verified.scope).toBe('20150830/us-east-1/service/aws4_request');
      expect(verified.signingKey.byteLength).toBe(32);
      // S3 neither normalizes nor double-encodes: the unnormalized expectations are S3's.
      if (!context.normalize) await verifyRequest(verifyOptions(vector, wire, { uriEscapePath: false, normalizePath: false }));

      // (a) one changed signature digit.
      // The Authorization value ends with the signature.
      const badSignature = withHeaderValue(wire.headers, 'authorization', flipLastHexDigit);
      const mismatch = await expectAuthError(
        verifyRequest(verifyOptions(vector, wire, { headers: headersDistinct(badSignature) })),
        'AUTH_SIGNATURE_MISMATCH',
        'signature-mismatch',
      );
      // The error carries what S3 puts in its SignatureDoesNotMatch body, and no key or expected signature.
      expect(mismatch.details?.canonicalRequest).toBe(
        context.credentials.token !== undefined && !base.omitSessionToken
          ? expected.canonicalRequest.replace(context.credentials.token, '[REDACTED]')
          : expected.canonicalRequest,
      );
      expect(mismatch.details?.stringToSign).toBe(expected.stringToSign);
      expect(JSON.stringify(mismatch.toJSON())).not.toContain(expected.signature);
      expect(JSON.stringify(mismatch.toJSON())).not.toContain(context.credentials.secret_access_key);

      // (b) each signed header value changed, and the body changed.
      for (const header of mutableSignedHeaders(verified.signedHeaders)) {
        const tampered = withHeaderValue(wire.headers, header, alter);
        await expectAuthError(verifyRequest(verifyOptions(vector, wire, { headers: headersDistinct(tampered) })), 'AUTH_SIGNATURE_MISMATCH');
      }
      const laterDate = withHeaderValue(wire.headers, 'x-amz-date', () => '20150830T123601Z');
      await expectAuthError(verifyRequest(verifyOptions(vector, wire, { headers: headersDistinct(laterDate) })), 'AUTH_SIGNATURE_MISMATCH');
      await expectAuthError(
        verifyRequest(verifyOptions(vector, wire, { payloadHash: sha256(Buffer.concat([wire.body, Buffer.from('x')])) })),
        'AUTH_SIGNATURE_MISMATCH',
      );
      await expectAuthError(verifyRequest(verifyOptions(vector, wire, { path: `${wire.path}x` })), 'AUTH_SIGNATURE_MISMATCH');
      await expectAuthError(verifyRequest(verifyOptions(vector, wire, { method: wire.method === 'GET' ? 'PUT' : 'GET' })), 'AUTH_SIGNATURE_MISMATCH');

      // (c) the clock 15 minutes and one second away either way; exactly 15 minutes is still fine.
      const time = new Date(context.timestamp).getTime();
      await expectAuthError(verifyRequest(verifyOptions(vector, wire, { now: new Date(time + 901_000) })), 'AUTH_REQUEST_EXPIRED', 'request-time-skewed');
      await expectAuthError(verifyRequest(verifyOptions(vector, wire, { now: new Date(time - 901_000) })), 'AUTH_REQUEST_EXPIRED', 'request-time-skewed');
      await verifyRequest(verifyOptions(vector, wire, { now: new Date(time + 900_000) }));

      // (d) another region or service.
      await expectAuthError(verifyRequest(verifyOptions(vector, wire, { region: 'eu-west-1' })), 'AUTH_SCOPE_INVALID', 'region-mismatch');
      await expectAuthError(verifyRequest(verifyOptions(vector, wire, { service: 'kms' })), 'AUTH_SCOPE_INVALID', 'service-mismatch');

      // (e) an unknown access key.
      await expectAuthError(verifyRequest(verifyOptions(vector, wire, { lookupSecret: () => undefined })), 'AUTH_UNKNOWN_ACCESS_KEY');
      // The wrong secret for the key is a mismatch.
      await expectAuthError(verifyRequest(verifyOptions(vector, wire, { lookupSecret: () => 'not-the-secret' })), 'AUTH_SIGNATURE_MISMATCH');
      checked.header.add(name);
    });

    it('query auth: presigns as expected, verifies, and rejects every tampering', async () => {
      const expected = vector.expected.query;
      const presigned = presignUrl({ ...base, expiresInSeconds: context.expiration_in_seconds });
      expect(presigned.canonicalRequest).toBe(expected.canonicalRequest);
      expect(presigned.stringToSign).toBe(expected.stringToSign);
      expect(presigned.signature).toBe(expected.signature);
      // Byte for byte the suite's request target, parameters in aws-c-auth's order.
      expect(`${presigned.path}?${presigned.query}`).toBe(expected.text.target);
      expect(headerLines(request.headers)).toEqual(headerLines(expected.text.headers));

      const wire = expected.wire;
      const verified = await verifyRequest(verifyOptions(vector, wire));
      expect(verified.authType).toBe('query');
      expect(verified.seedSignature).toBe(expected.signature);
      expect(verified.expiresAt?.getTime()).toBe(new Date(context.timestamp).getTime() + context.expiration_in_seconds * 1000);
      expect(verified.sessionToken).toBe(context.credentials.token);
      if (!context.normalize) await verifyRequest(verifyOptions(vector, wire, { uriEscapePath: false, normalizePath: false }));

      // (a) one changed signature digit.
      const badQuery = wire.rawQuery.replace(/(X-Amz-Signature=)([0-9a-f]{64})/, (_match, prefix: string, signature: string) => `${prefix}${flipLastHexDigit(signature)}`);
      expect(badQuery).not.toBe(wire.rawQuery);
      await expectAuthError(verifyRequest(verifyOptions(vector, wire, { rawQuery: badQuery })), 'AUTH_SIGNATURE_MISMATCH', 'signature-mismatch');

      // (b) each signed header value changed; an added or changed query parameter; the body.
      for (const header of mutableSignedHeaders(verified.signedHeaders)) {
        const tampered = withHeaderValue(wire.headers, header, alter);
        await expectAuthError(verifyRequest(verifyOptions(vector, wire, { headers: headersDistinct(tampered) })), 'AUTH_SIGNATURE_MISMATCH');
      }
      await expectAuthError(verifyRequest(verifyOptions(vector, wire, { rawQuery: `extra=1&${wire.rawQuery}` })), 'AUTH_SIGNATURE_MISMATCH');
      await expectAuthError(
        verifyRequest(verifyOptions(vector, wire, { rawQuery: wire.rawQuery.replace('X-Amz-Expires=3600', 'X-Amz-Expires=3601') })),
        'AUTH_SIGNATURE_MISMATCH',
      );
      await expectAuthError(
        verifyRequest(verifyOptions(vector, wire, { payloadHash: sha256(Buffer.concat([wire.body, Buffer.from('x')])) })),
        'AUTH_SIGNATURE_MISMATCH',
      );

      // (c) past expiry (the last valid second still verifies), or dated beyond the skew in the future.
      const expiry = new Date(context.timestamp).getTime() + context.expiration_in_seconds * 1000;
      await verifyRequest(verifyOptions(vector, wire, { now: new Date(expiry) }));
      await expectAuthError(verifyRequest(verifyOptions(vector, wire, { now: new Date(expiry + 1000) })), 'AUTH_REQUEST_EXPIRED', 'presigned-url-expired');
      await expectAuthError(
        verifyRequest(verifyOptions(vector, wire, { now: new Date(new Date(context.timestamp).getTime() - 901_000) })),
        'AUTH_REQUEST_EXPIRED',
        'request-not-yet-valid',
      );

      // (d) another region or service.
      await expectAuthError(verifyRequest(verifyOptions(vector, wire, { region: ['eu-west-1', 'eu-central-1'] })), 'AUTH_SCOPE_INVALID', 'region-mismatch');
      await expectAuthError(verifyRequest(verifyOptions(vector, wire, { service: 's3' })), 'AUTH_SCOPE_INVALID', 'service-mismatch');

      // (e) an unknown access key.
      await expectAuthError(verifyRequest(verifyOptions(vector, wire, { lookupSecret: async () => undefined })), 'AUTH_UNKNOWN_ACCESS_KEY');
      checked.query.add(name);
    });
  });

  it('checked every case directory both ways (runs last, so the suite cannot pass vacuously)', () => {
    expect(CASE_NAMES.length).toBeGreaterThan(0);
    expect([...checked.header].sort()).toEqual(CASE_NAMES);
    expect([...checked.query].sort()).toEqual(CASE_NAMES);
  });
});
