// Unit tests for SigV4 signing and verification: encoding rules, every failure reason, argument checks and the key cache.
import { createHash, createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { AirlockError, type AirlockErrorCode } from '@airlock/common';
import { canonicalUri, parseRawQuery, canonicalQueryString, normalizeUriPath } from './internal/sigv4-encoding.js';
import { signingKeyCacheSize, SIGNING_KEY_CACHE_SIZE } from './internal/sigv4-canonical.js';
import {
  clearSigningKeyCache,
  deriveSigningKey,
  EMPTY_SHA256,
  MAX_PRESIGN_EXPIRES_SECONDS,
  presignUrl,
  signRequest,
  UNSIGNED_PAYLOAD,
  verifyRequest,
  type SignRequestOptions,
  type VerifyRequestOptions,
} from './sigv4.js';

const CREDENTIALS = { accessKeyId: 'AKIDUNITTEST', secretAccessKey: 'unit/test+secret=key' };
const NOW = new Date('2024-06-01T10:20:30Z');
const lookupSecret = (id: string): string | undefined => (id === CREDENTIALS.accessKeyId ? CREDENTIALS.secretAccessKey : undefined);
const sha256 = (data: string): string => createHash('sha256').update(data).digest('hex');

async function rejection(promise: Promise<unknown>): Promise<AirlockError> {
  const error: unknown = await promise.then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(AirlockError);
  return error as AirlockError;
}

async function expectReject(promise: Promise<unknown>, code: AirlockErrorCode, reason?: string): Promise<AirlockError> {
  const error = await rejection(promise);
  expect(error.code).toBe(code);
  if (reason !== undefined) expect(error.details?.reason).toBe(reason);
  return error;
}

/** A KMS-style request signed by our signer, and the options that verify it. */
function kmsRequest(overrides: Partial<SignRequestOptions> = {}) {
  const body = '{"KeyId":"alias/test"}';
  const headers: Record<string, string> = { host: 'kms.local:4443', 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': 'TrentService.Encrypt' };
  const signed = signRequest({ method: 'POST', path: '/', headers, body, credentials: CREDENTIALS, region: 'eu-west-1', service: 'kms', date: NOW, ...overrides });
  const options: VerifyRequestOptions = {
    method: 'POST',
    path: '/',
    headers: { ...headers, ...signed.headers },
    payloadHash: sha256(body),
    lookupSecret,
    region: 'eu-west-1',
    service: 'kms',
    now: NOW,
  };
  return { signed, options, headers };
}

describe('SigV4 encoding rules', () => {
  it('encodes the canonical query per RFC 3986, sorting by encoded name then value', () => {
    const query = canonicalQueryString(parseRawQuery('b=2&a=3&a=1&acl&c=x+y&d=%7e!*&e=%2f%zz&=empty&&', 'latin1'));
    expect(query).toBe('=empty&a=1&a=3&acl=&b=2&c=x%2By&d=~%21%2A&e=%2F%25zz');
    expect(canonicalQueryString(parseRawQuery('space=a%20b&plus=a+b', 'latin1'))).toBe('plus=a%2Bb&space=a%20b');
  });

  it('builds the canonical URI: double-encoded and normalised, or (S3) encoded once as sent', () => {
    const plain = { normalize: true, escape: true, encoding: 'latin1' } as const;
    const s3 = { normalize: false, escape: false, encoding: 'latin1' } as const;
    expect(canonicalUri('/a%20b/./c/../d//e/', plain)).toBe('/a%2520b/d/e/');
    expect(canonicalUri('', plain)).toBe('/');
    expect(canonicalUri('/a%20b/./c/../d//e/', s3)).toBe('/a%20b/./c/../d//e/');
    // S3: %2F inside a key stays encoded; escapes and raw characters both come out canonical.
    expect(canonicalUri('/bucket/a%2Fb/%7e/~/!/%21/%e2%82%ac', s3)).toBe('/bucket/a%2Fb/~/~/%21/%21/%E2%82%AC');
    expect(normalizeUriPath('/a/b/../../..')).toBe('/');
    expect(normalizeUriPath('/a/./b/')).toBe('/a/b/');
  });

  it('reads latin1 wire strings byte for byte, and refuses characters a wire cannot carry', async () => {
    // "é" as UTF-8 bytes, the way Node presents a raw UTF-8 path.
    expect(canonicalUri('/caf\u00c3\u00a9', { normalize: false, escape: false, encoding: 'latin1' })).toBe('/caf%C3%A9');
    expect(canonicalUri('/café', { normalize: false, escape: false, encoding: 'utf8' })).toBe('/caf%C3%A9');
    const { options } = kmsRequest();
    await expectReject(verifyRequest({ ...options, path: '/€' }), 'INVALID_ARGUMENT');
  });
});

describe('signRequest and presignUrl', () => {
  it('adds x-amz-content-sha256 for S3, signs the session token, and skips unsignable headers', () => {
    const signed = signRequest({
      method: 'PUT',
      path: '/bucket/key',
      headers: { Host: 's3.local', 'User-Agent': 'test', 'X-Amz-Meta-A': '  two   spaces ', Expect: '100-continue' },
      body: 'data',
      credentials: { ...CREDENTIALS, sessionToken: 'token/value' },
      region: 'eu-west-1',
      service: 's3',
      date: NOW,
    });
    expect(signed.signedHeaders).toBe('host;x-amz-content-sha256;x-amz-date;x-amz-meta-a;x-amz-security-token');
    expect(signed.headers).toEqual({
      authorization: signed.authorization,
      'x-amz-date': '20240601T102030Z',
      'x-amz-security-token': 'token/value',
      'x-amz-content-sha256': sha256('data'),
    });
    expect(signed.canonicalRequest).toContain('\nx-amz-meta-a:two spaces\n');
    expect(signed.authorization).toMatch(/^AWS4-HMAC-SHA256 Credential=AKIDUNITTEST\/20240601\/eu-west-1\/s3\/aws4_request, SignedHeaders=\S+, Signature=[0-9a-f]{64}$/);
  });

  it('presigns S3 URLs with UNSIGNED-PAYLOAD that verify without a body hash', async () => {
    const presigned = presignUrl({
      method: 'GET',
      path: '/bucket/a%20key',
      query: [['versionId', 'v 1']],
      headers: { host: 's3.local:9000' },
      credentials: { ...CREDENTIALS, sessionToken: 'tok' },
      region: 'eu-west-1',
      service: 's3',
      date: NOW,
      expiresInSeconds: 600,
    });
    expect(presigned.payloadHash).toBe(UNSIGNED_PAYLOAD);
    expect(presigned.url).toBe(`https://s3.local:9000/bucket/a%20key?${presigned.query}`);
    expect(presigned.query.startsWith('versionId=v%201&X-Amz-Algorithm=AWS4-HMAC-SHA256&')).toBe(true);
    expect(presigned.expiresAt.toISOString()).toBe('2024-06-01T10:30:30.000Z');
    const verified = await verifyRequest({
      method: 'GET',
      path: '/bucket/a%20key',
      rawQuery: presigned.query,
      headers: { host: 's3.local:9000' },
      payloadHash: sha256('ignored: presigned S3 requests sign UNSIGNED-PAYLOAD'),
      lookupSecret,
      region: ['us-east-1', 'eu-west-1'],
      service: 's3',
      now: new Date(NOW.getTime() + 600_000),
    });
    expect(verified).toMatchObject({ authType: 'query', sessionToken: 'tok', payloadHash: UNSIGNED_PAYLOAD, scope: '20240601/eu-west-1/s3/aws4_request' });
  });

  it('validates its arguments', () => {
    const base: SignRequestOptions = { method: 'GET', path: '/', headers: { host: 'h' }, credentials: CREDENTIALS, region: 'r', service: 's', date: NOW };
    const bad: Array<Partial<SignRequestOptions> | Record<string, unknown>> = [
      { method: 'GE T' },
      { path: 'relative' },
      { path: '/a?b=c' },
      { headers: {} },
      { headers: { host: ['a', 'b'] } },
      { headers: { 'bad name': 'x', host: 'h' } },
      { credentials: { accessKeyId: 'a/b', secretAccessKey: 's' } },
      { credentials: { accessKeyId: 'a', secretAccessKey: '' } },
      { region: 'us/east' },
      { service: '' },
      { date: new Date(Number.NaN) },
      { payloadHash: 'abc' },
      { payloadHash: EMPTY_SHA256, body: '' },
      { query: [['a']] },
      { normalizePath: 'yes' },
      { headers: { host: 'h', 'x-amz-content-sha256': 'nonsense' } },
    ];
    for (const override of bad) {
      expect(() => signRequest({ ...base, ...override }), JSON.stringify(override)).toThrow(AirlockError);
    }
    for (const expiresInSeconds of [0, -1, 1.5, MAX_PRESIGN_EXPIRES_SECONDS + 1]) {
      expect(() => presignUrl({ ...base, expiresInSeconds })).toThrow(AirlockError);
    }
    expect(() => presignUrl({ ...base, query: 'X-Amz-Signature=x', expiresInSeconds: 60 })).toThrow(AirlockError);
  });
});

describe('verifyRequest', () => {
  it('accepts a signed request and returns what the edge needs', async () => {
    const { signed, options } = kmsRequest();
    const verified = await verifyRequest(options);
    expect(verified).toMatchObject({
      authType: 'header',
      accessKeyId: CREDENTIALS.accessKeyId,
      sessionToken: undefined,
      region: 'eu-west-1',
      service: 'kms',
      scope: '20240601/eu-west-1/kms/aws4_request',
      date: '20240601T102030Z',
      expiresAt: undefined,
      seedSignature: signed.signature,
      payloadHash: sha256('{"KeyId":"alias/test"}'),
    });
    expect(verified.signedHeaders).toEqual(['content-type', 'host', 'x-amz-date', 'x-amz-target']);
    expect(verified.signingKey.equals(deriveSigningKey(CREDENTIALS.secretAccessKey, NOW, 'eu-west-1', 'kms'))).toBe(true);
    // The key is the caller's copy: wiping it leaves later verifications intact.
    verified.signingKey.fill(0);
    await verifyRequest(options);
  });

  it('reports a missing or doubled authentication', async () => {
    const { options, headers } = kmsRequest();
    await expectReject(verifyRequest({ ...options, headers }), 'AUTH_MISSING', 'no-authentication');
    await expectReject(verifyRequest({ ...options, rawQuery: 'X-Amz-Signature=abc' }), 'AUTH_MALFORMED', 'multiple-auth-mechanisms');
    // A SigV2 presigned URL is named as such, not as a request without authentication.
    await expectReject(verifyRequest({ ...options, headers, rawQuery: 'AWSAccessKeyId=AKIDUNITTEST&Expires=1717237230&Signature=c2lnbmF0dXJl' }), 'AUTH_MALFORMED', 'sigv2-unsupported');
  });

  it('compares signatures as text, as AWS does: an upper-cased copy is a mismatch', async () => {
    const { options, signed } = kmsRequest();
    const upper = signed.authorization.replace(signed.signature, signed.signature.toUpperCase());
    expect(upper).not.toBe(signed.authorization);
    await expectReject(verifyRequest({ ...options, headers: { ...(options.headers as Record<string, string>), authorization: upper } }), 'AUTH_SIGNATURE_MISMATCH', 'signature-mismatch');
    await verifyRequest(options);
  });

  it('reports malformed Authorization headers', async () => {
    const { options, signed } = kmsRequest();
    const withAuthorization = (authorization: string | string[]): VerifyRequestOptions => ({
      ...options,
      headers: { ...(options.headers as Record<string, string>), authorization },
    });
    const signature = signed.signature;
    const cases: Array<[string | string[], AirlockErrorCode, string]> = [
      ['AWS AKIDUNITTEST:c2lnbmF0dXJl', 'AUTH_MALFORMED', 'sigv2-unsupported'],
      ['AWS4-ECDSA-P256-SHA256 Credential=x', 'AUTH_MALFORMED', 'unsupported-algorithm'],
      [`AWS4-HMAC-SHA256 Credential=AKIDUNITTEST/20240601/eu-west-1/kms/aws4_request, Signature=${signature}`, 'AUTH_MALFORMED', 'authorization-header-incomplete'],
      [`AWS4-HMAC-SHA256 Credential=AKIDUNITTEST/20240601/eu-west-1/kms/aws4_request, SignedHeaders=host, Signature=${signature}, Extra=1`, 'AUTH_MALFORMED', 'authorization-header-malformed'],
      [`AWS4-HMAC-SHA256 Credential=AKIDUNITTEST/20240601/eu-west-1/kms, SignedHeaders=host, Signature=${signature}`, 'AUTH_MALFORMED', 'credential-malformed'],
      [`AWS4-HMAC-SHA256 Credential=AKIDUNITTEST/2024-06-01/eu-west-1/kms/aws4_request, SignedHeaders=host, Signature=${signature}`, 'AUTH_MALFORMED', 'credential-malformed'],
      [`AWS4-HMAC-SHA256 Credential=AKIDUNITTEST/20240601/eu-west-1/kms/aws4_request, SignedHeaders=Host;x-amz-date, Signature=${signature}`, 'AUTH_MALFORMED', 'signed-headers-malformed'],
      [`AWS4-HMAC-SHA256 Credential=AKIDUNITTEST/20240601/eu-west-1/kms/aws4_request, SignedHeaders=host, Signature=${signature.slice(1)}`, 'AUTH_MALFORMED', 'signature-malformed'],
      [`AWS4-HMAC-SHA256 Credential=AKIDUNITTEST/20240601/eu-west-1/kms/aws4_request, SignedHeaders=x-amz-date, Signature=${signature}`, 'AUTH_MALFORMED', 'host-not-signed'],
      [`AWS4-HMAC-SHA256 Credential=AKIDUNITTEST/20240601/eu-west-1/kms/aws4_request, SignedHeaders=host;x-absent, Signature=${signature}`, 'AUTH_SIGNATURE_MISMATCH', 'signed-header-missing'],
      [`AWS4-HMAC-SHA256 Credential=AKIDUNITTEST/20240602/eu-west-1/kms/aws4_request, SignedHeaders=host, Signature=${signature}`, 'AUTH_SCOPE_INVALID', 'date-mismatch'],
      [[signed.authorization, signed.authorization], 'AUTH_MALFORMED', 'duplicate-header'],
    ];
    for (const [authorization, code, reason] of cases) await expectReject(verifyRequest(withAuthorization(authorization)), code, reason);
    // Components in another order, without spaces, still parse.
    const reordered = signed.authorization.replace(/^AWS4-HMAC-SHA256 (Credential=[^,]+), (SignedHeaders=[^,]+), (Signature=\w+)$/, 'AWS4-HMAC-SHA256 $3,$1,$2');
    expect(reordered).not.toBe(signed.authorization);
    await verifyRequest(withAuthorization(reordered));
  });

  it('reads the request time from x-amz-date, else the Date header, and checks its form', async () => {
    const { options } = kmsRequest();
    const headers = options.headers as Record<string, string>;
    await expectReject(verifyRequest({ ...options, headers: { ...headers, 'x-amz-date': '2024-06-01T10:20:30Z' } }), 'AUTH_MALFORMED', 'date-malformed');
    await expectReject(verifyRequest({ ...options, headers: { ...headers, 'x-amz-date': '20240631T102030Z' } }), 'AUTH_MALFORMED', 'date-malformed');
    const { 'x-amz-date': _dropped, ...withoutDate } = headers;
    await expectReject(verifyRequest({ ...options, headers: withoutDate }), 'AUTH_MALFORMED', 'missing-date');
    // A request dated by the HTTP Date header alone: its time, in x-amz-date form, is what was signed.
    const httpDate = 'Sat, 01 Jun 2024 10:20:30 GMT';
    const canonical = `GET\n/\n\ndate:${httpDate}\nhost:h\n\ndate;host\n${EMPTY_SHA256}`;
    const stringToSign = `AWS4-HMAC-SHA256\n20240601T102030Z\n20240601/eu-west-1/kms/aws4_request\n${sha256(canonical)}`;
    const signature = createHmac('sha256', deriveSigningKey(CREDENTIALS.secretAccessKey, NOW, 'eu-west-1', 'kms')).update(stringToSign).digest('hex');
    const authorization = `AWS4-HMAC-SHA256 Credential=AKIDUNITTEST/20240601/eu-west-1/kms/aws4_request, SignedHeaders=date;host, Signature=${signature}`;
    const dated = { ...options, method: 'GET', headers: { host: 'h', date: httpDate, authorization }, payloadHash: EMPTY_SHA256 };
    expect((await verifyRequest(dated)).date).toBe('20240601T102030Z');
    await expectReject(verifyRequest({ ...dated, headers: { ...dated.headers, date: 'Sat, 01 Jun 2024 10:20:31 GMT' } }), 'AUTH_SIGNATURE_MISMATCH');
    await expectReject(verifyRequest({ ...dated, headers: { ...dated.headers, date: 'tomorrow' } }), 'AUTH_MALFORMED', 'date-malformed');
  });

  it('checks the payload hash against the body and the declared x-amz-content-sha256', async () => {
    const { options } = kmsRequest({ addContentSha256Header: true });
    await verifyRequest(options);
    await expectReject(verifyRequest({ ...options, payloadHash: sha256('other body') }), 'AUTH_SIGNATURE_MISMATCH', 'payload-hash-mismatch');
    const headers = options.headers as Record<string, string>;
    await expectReject(verifyRequest({ ...options, headers: { ...headers, 'x-amz-content-sha256': 'SOMETHING' } }), 'AUTH_MALFORMED', 'content-sha256-invalid');
    const { payloadHash: _omitted, ...withoutHash } = kmsRequest().options;
    await expectReject(verifyRequest(withoutHash), 'AUTH_MALFORMED', 'content-sha256-missing');
  });

  it('accepts UNSIGNED-PAYLOAD and STREAMING-… only where allowed (S3 by default), and never streaming in a URL', async () => {
    const { options } = kmsRequest({ payloadHash: UNSIGNED_PAYLOAD, addContentSha256Header: true, body: undefined });
    await expectReject(verifyRequest(options), 'AUTH_MALFORMED', 'unsigned-payload-not-allowed');
    expect((await verifyRequest({ ...options, allowUnsignedPayload: true })).payloadHash).toBe(UNSIGNED_PAYLOAD);
    const presigned = presignUrl({
      method: 'PUT',
      path: '/b/k',
      query: [['X-Amz-Content-Sha256', 'STREAMING-UNSIGNED-PAYLOAD-TRAILER']],
      headers: { host: 's3.local' },
      payloadHash: 'STREAMING-UNSIGNED-PAYLOAD-TRAILER',
      credentials: CREDENTIALS,
      region: 'eu-west-1',
      service: 's3',
      date: NOW,
      expiresInSeconds: 60,
    });
    await expectReject(
      verifyRequest({ method: 'PUT', path: '/b/k', rawQuery: presigned.query, headers: { host: 's3.local' }, lookupSecret, region: 'eu-west-1', service: 's3', now: NOW }),
      'AUTH_MALFORMED',
      'streaming-presigned',
    );
  });

  it('can require every x-amz-* header to be signed, as S3 does', async () => {
    const { options } = kmsRequest();
    const headers = { ...(options.headers as Record<string, string>), 'x-amz-meta-late': 'added in transit' };
    await verifyRequest({ ...options, headers });
    await expectReject(verifyRequest({ ...options, headers, requireSignedAmzHeaders: true }), 'AUTH_MALFORMED', 'amz-header-not-signed');
  });

  it('reports the presigned-URL failures S3 distinguishes', async () => {
    const presigned = presignUrl({
      method: 'GET',
      path: '/b/k',
      headers: { host: 's3.local' },
      credentials: CREDENTIALS,
      region: 'eu-west-1',
      service: 's3',
      date: NOW,
      expiresInSeconds: 60,
    });
    const options: VerifyRequestOptions = { method: 'GET', path: '/b/k', rawQuery: presigned.query, headers: { host: 's3.local' }, lookupSecret, region: 'eu-west-1', service: 's3', now: NOW };
    await verifyRequest(options);
    const withParam = (name: string, value: string | undefined): string =>
      presigned.query
        .split('&')
        .map((part) => (part.startsWith(`${name}=`) ? (value === undefined ? '' : `${name}=${value}`) : part))
        .filter((part) => part !== '')
        .join('&');
    const cases: Array<[string, AirlockErrorCode, string]> = [
      [withParam('X-Amz-Expires', '604801'), 'AUTH_EXPIRES_TOO_LARGE', 'expires-too-large'],
      [withParam('X-Amz-Expires', '0'), 'AUTH_EXPIRES_TOO_LARGE', 'expires-invalid'],
      [withParam('X-Amz-Expires', '-5'), 'AUTH_EXPIRES_TOO_LARGE', 'expires-invalid'],
      [withParam('X-Amz-Expires', '1e3'), 'AUTH_EXPIRES_TOO_LARGE', 'expires-invalid'],
      [withParam('X-Amz-Expires', undefined), 'AUTH_MALFORMED', 'missing-query-parameter'],
      [withParam('X-Amz-Date', undefined), 'AUTH_MALFORMED', 'missing-query-parameter'],
      [withParam('X-Amz-Algorithm', 'AWS4-HMAC-SHA512'), 'AUTH_MALFORMED', 'unsupported-algorithm'],
      [withParam('X-Amz-Date', '20240601T102030'), 'AUTH_MALFORMED', 'date-malformed'],
      [`${presigned.query}&X-Amz-Date=20240601T102030Z`, 'AUTH_MALFORMED', 'duplicate-query-parameter'],
      [withParam('X-Amz-Credential', 'AKIDUNITTEST%2F20240601%2Fus-east-1%2Fs3%2Faws4_request'), 'AUTH_SCOPE_INVALID', 'region-mismatch'],
      [withParam('X-Amz-Credential', 'AKIDOTHER%2F20240601%2Feu-west-1%2Fs3%2Faws4_request'), 'AUTH_UNKNOWN_ACCESS_KEY', 'unknown-access-key'],
    ];
    for (const [rawQuery, code, reason] of cases) await expectReject(verifyRequest({ ...options, rawQuery }), code, reason);
    await expectReject(verifyRequest({ ...options, now: new Date(NOW.getTime() + 61_000) }), 'AUTH_REQUEST_EXPIRED', 'presigned-url-expired');
    await expectReject(verifyRequest({ ...options, now: new Date(NOW.getTime() - 901_000) }), 'AUTH_REQUEST_EXPIRED', 'request-not-yet-valid');
  });

  it('puts the canonical request and string to sign in a mismatch, never the secret, key or expected signature', async () => {
    const { options, signed } = kmsRequest({ credentials: { ...CREDENTIALS, sessionToken: 'SESSION-TOKEN-CANARY' } });
    const error = await expectReject(
      verifyRequest({ ...options, lookupSecret: () => 'a-different-secret' }),
      'AUTH_SIGNATURE_MISMATCH',
      'signature-mismatch',
    );
    const wire = JSON.stringify(error.toJSON());
    expect(error.details?.canonicalRequest).toBe(signed.canonicalRequest.replace('SESSION-TOKEN-CANARY', '[REDACTED]'));
    expect(error.details?.stringToSign).toBe(signed.stringToSign);
    expect(error.details?.accessKeyId).toBe(CREDENTIALS.accessKeyId);
    for (const secret of ['a-different-secret', CREDENTIALS.secretAccessKey, 'SESSION-TOKEN-CANARY']) expect(wire).not.toContain(secret);
    const key = deriveSigningKey('a-different-secret', NOW, 'eu-west-1', 'kms');
    expect(wire).not.toContain(key.toString('hex'));
    // The signature the server expected is the one our signer made with the other secret.
    const expected = signRequest({
      method: 'POST',
      path: '/',
      headers: { host: 'kms.local:4443', 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': 'TrentService.Encrypt' },
      body: '{"KeyId":"alias/test"}',
      credentials: { ...CREDENTIALS, secretAccessKey: 'a-different-secret', sessionToken: 'SESSION-TOKEN-CANARY' },
      region: 'eu-west-1',
      service: 'kms',
      date: NOW,
    }).signature;
    expect(wire).not.toContain(expected);
  });

  it('handles session tokens added after signing (aws-c-auth omit_session_token) only when told to', async () => {
    const presigned = presignUrl({
      method: 'GET',
      path: '/',
      headers: { host: 'iot.local' },
      credentials: { ...CREDENTIALS, sessionToken: 'late-token' },
      region: 'eu-west-1',
      service: 'iotdevicegateway',
      date: NOW,
      expiresInSeconds: 60,
      omitSessionToken: true,
      payloadHash: EMPTY_SHA256,
    });
    expect(presigned.query).toContain('X-Amz-Security-Token=late-token');
    expect(presigned.canonicalRequest).not.toContain('late-token');
    const options: VerifyRequestOptions = {
      method: 'GET',
      path: '/',
      rawQuery: presigned.query,
      headers: { host: 'iot.local' },
      payloadHash: EMPTY_SHA256,
      lookupSecret,
      region: 'eu-west-1',
      service: 'iotdevicegateway',
      now: NOW,
    };
    await expectReject(verifyRequest(options), 'AUTH_SIGNATURE_MISMATCH');
    expect((await verifyRequest({ ...options, unsignedSessionToken: true })).sessionToken).toBe('late-token');
  });

  it('accepts Node-style repeated headers and a secret lookup that is async', async () => {
    const signed = signRequest({
      method: 'GET',
      path: '/',
      headers: [
        ['host', 'h'],
        ['x-multi', 'b'],
        ['X-Multi', 'a'],
      ],
      credentials: CREDENTIALS,
      region: 'eu-west-1',
      service: 'kms',
      date: NOW,
    });
    expect(signed.canonicalRequest).toContain('\nx-multi:b,a\n');
    const options: VerifyRequestOptions = {
      method: 'GET',
      path: '/',
      headers: { host: ['h'], 'x-multi': ['b', 'a'], ...signed.headers },
      payloadHash: EMPTY_SHA256,
      lookupSecret: async (id) => lookupSecret(id),
      region: 'eu-west-1',
      service: 'kms',
      now: NOW,
    };
    await verifyRequest(options);
    // The order of repeated values is signed.
    await expectReject(verifyRequest({ ...options, headers: { ...options.headers, 'x-multi': ['a', 'b'] } }), 'AUTH_SIGNATURE_MISMATCH');
    // Node's req.headers joins them with ', ', which is not what was signed.
    await expectReject(verifyRequest({ ...options, headers: { ...options.headers, 'x-multi': 'b, a' } }), 'AUTH_SIGNATURE_MISMATCH');
  });

  it('validates its arguments', async () => {
    const { options } = kmsRequest();
    const bad: Array<Record<string, unknown>> = [
      { method: '' },
      { path: 'x' },
      { path: '/a?b' },
      { rawQuery: 'a#b' },
      { region: [] },
      { region: 'a/b' },
      { service: 7 },
      { lookupSecret: 'secret' },
      { now: new Date(Number.NaN) },
      { maxSkewSeconds: -1 },
      { maxSkewSeconds: 1.5 },
      { payloadHash: 'UNSIGNED-PAYLOAD' },
      { wireEncoding: 'ascii' },
      { headers: null },
      { headers: { host: { nested: true } } },
    ];
    for (const override of bad) {
      const error = await rejection(verifyRequest({ ...options, ...override }));
      expect(error.code, JSON.stringify(override)).toBe('INVALID_ARGUMENT');
    }
  });
});

describe('signing keys', () => {
  it('derive per AWS (the SigV4 documentation example key)', () => {
    // "Examples of how to derive a signing key for Signature Version 4" in the AWS General Reference.
    const key = deriveSigningKey('wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY', '20120215', 'us-east-1', 'iam');
    expect(key.toString('hex')).toBe('f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d');
    expect(() => deriveSigningKey('', '20120215', 'us-east-1', 'iam')).toThrow(AirlockError);
    expect(() => deriveSigningKey('s', '2012-02-15', 'us-east-1', 'iam')).toThrow(AirlockError);
  });

  it('are cached in a bounded cache', () => {
    clearSigningKeyCache();
    expect(signingKeyCacheSize()).toBe(0);
    for (let i = 0; i < SIGNING_KEY_CACHE_SIZE * 2; i++) {
      signRequest({ method: 'GET', path: '/', headers: { host: 'h' }, credentials: { accessKeyId: 'A', secretAccessKey: `secret-${i}` }, region: 'r', service: 's', date: NOW });
    }
    expect(signingKeyCacheSize()).toBe(SIGNING_KEY_CACHE_SIZE);
    clearSigningKeyCache();
    expect(signingKeyCacheSize()).toBe(0);
  });
});
