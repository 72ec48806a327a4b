// Tests of the signed sealing keys and the pin: a known-answer vector, an independent check of the signed bytes, and refusal of every tampered field.
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { create, toBinary } from '@bufbuild/protobuf';
import { timestampFromDate, type Timestamp } from '@bufbuild/protobuf/wkt';
import { AirlockError } from '@airlock/common';
import { generateSealingKeyPair, sealingKeyId } from '@airlock/crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DataPlaneKeysSchema, SealingKeyStatementSchema, type DataPlaneKeys } from './gen/airlock/v1/common_pb.js';
import { identityFingerprint, parsePin, SEALING_KEYS_SIGNATURE_CONTEXT, signDataPlaneKeys, verifyDataPlaneKeys } from './data-plane-keys.js';

// RFC 8032 §7.1 TEST 1 secret key, as PKCS#8 (the fixed prefix for Ed25519, RFC 8410 §7).
const IDENTITY_SEED = '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60';
const identity = createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), Buffer.from(IDENTITY_SEED, 'hex')]), format: 'der', type: 'pkcs8' });
const IO_PUBLIC = Buffer.from('0d1a770fa1fa3444d84aec403febec71c58b63b49f4c68d839f1d32fc865083e', 'hex');
const SECRETS_PUBLIC = Buffer.from(createHash('sha256').update('secrets').digest());
const SIGNED_AT = new Date('2026-12-01T10:00:00.000Z');

function code(thunk: () => unknown): string | undefined {
  try {
    thunk();
  } catch (error) {
    return error instanceof AirlockError ? error.code : 'not an AirlockError';
  }
  return undefined;
}

function caught(thunk: () => unknown): AirlockError {
  try {
    thunk();
  } catch (error) {
    if (error instanceof AirlockError) return error;
    throw error;
  }
  throw new Error('expected a refusal');
}

const vector = (): DataPlaneKeys => signDataPlaneKeys({ cluster: 'eu-1', ioPublicKey: IO_PUBLIC, secretsPublicKey: SECRETS_PUBLIC, signedAt: SIGNED_AT, identityPrivateKey: identity });
const spki = (key: KeyObject): Buffer => createPublicKey(key).export({ type: 'spki', format: 'der' });
const PIN = identityFingerprint(spki(identity));

/** Signs an arbitrary statement with `key`, for checks that only a correctly signed statement reaches. */
function signedStatement(init: StatementInit, key: KeyObject = identity): DataPlaneKeys {
  const statement = toBinary(SealingKeyStatementSchema, create(SealingKeyStatementSchema, { cluster: init.cluster, ioKey: init.ioKey, secretsKey: init.secretsKey, signedAt: init.signedAt }));
  const signature = sign(null, Buffer.concat([Buffer.from(`${SEALING_KEYS_SIGNATURE_CONTEXT}\0`, 'ascii'), statement]), key);
  return create(DataPlaneKeysSchema, { statement, identityPublicKey: spki(key), signature });
}

interface StatementInit {
  readonly cluster: string;
  readonly ioKey?: { readonly publicKey: Uint8Array; readonly keyId: string } | undefined;
  readonly secretsKey?: { readonly publicKey: Uint8Array; readonly keyId: string } | undefined;
  readonly signedAt?: Timestamp | undefined;
}

const goodInit = (): StatementInit => ({
  cluster: 'eu-1',
  ioKey: { publicKey: IO_PUBLIC, keyId: sealingKeyId(IO_PUBLIC) },
  secretsKey: { publicKey: SECRETS_PUBLIC, keyId: sealingKeyId(SECRETS_PUBLIC) },
  signedAt: timestampFromDate(SIGNED_AT),
});

describe('identityFingerprint and parsePin', () => {
  it('is sha256: and 64 lowercase hex digits of SHA-256 over the DER SPKI (RFC 8032 TEST 1 public key)', () => {
    const der = spki(identity);
    // RFC 8032 §7.1 TEST 1: the public key is d75a9801…511a, after the 12-byte Ed25519 SPKI prefix.
    expect(der.subarray(12).toString('hex')).toBe('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a');
    expect(PIN).toBe(`sha256:${createHash('sha256').update(der).digest('hex')}`);
    expect(PIN).toMatch(/^sha256:[0-9a-f]{64}$/);
  });

  it('accepts sha256:<hex> and bare hex, in either case, and returns the canonical form', () => {
    const hex = PIN.slice('sha256:'.length);
    expect(parsePin(PIN)).toBe(PIN);
    expect(parsePin(hex)).toBe(PIN);
    expect(parsePin(` sha256:${hex.toUpperCase()}\n`)).toBe(PIN);
  });

  it('refuses anything else with INVALID_ARGUMENT', () => {
    for (const bad of ['', 'sha256:', `sha1:${'a'.repeat(64)}`, `sha256:${'a'.repeat(63)}`, `sha256:${'a'.repeat(65)}`, `sha256:${'g'.repeat(64)}`, `SHA256:${'a'.repeat(64)}`]) {
      expect(code(() => parsePin(bad)), bad).toBe('INVALID_ARGUMENT');
    }
    expect(code(() => parsePin(undefined as unknown as string))).toBe('INVALID_ARGUMENT');
  });
});

describe('signDataPlaneKeys', () => {
  it('produces the known-answer vector (Ed25519 is deterministic)', () => {
    const keys = vector();
    expect(Buffer.from(keys.statement).toString('hex')).toBe(
      '0a04' + Buffer.from('eu-1').toString('hex') +
        '1244' + '0a20' + IO_PUBLIC.toString('hex') + '1220' + Buffer.from(sealingKeyId(IO_PUBLIC)).toString('hex') +
        '1a44' + '0a20' + SECRETS_PUBLIC.toString('hex') + '1220' + Buffer.from(sealingKeyId(SECRETS_PUBLIC)).toString('hex') +
        '2206' + '08a0b5bad806',
    );
    expect(identityFingerprint(keys.identityPublicKey)).toBe(PIN);
    expect(Buffer.from(keys.signature).toString('hex')).toBe(
      'cb7be9ba6f1aebc517bde3324b6ef0bb356d0305f0950c48306990812430b1cf2e02eacce8a5dc6ac1765bc36d9ebd2c9227236d5b410633de3f7c1cf2158704',
    );
  });

  it('signs "airlock/v1/sealing-keys" ‖ 0x00 ‖ statement, checked with node:crypto directly', () => {
    const keys = vector();
    const message = Buffer.concat([Buffer.from('airlock/v1/sealing-keys', 'ascii'), Buffer.from([0]), keys.statement]);
    expect(verify(null, message, createPublicKey(identity), keys.signature)).toBe(true);
    // Without the prefix (a signature made for another purpose) it does not verify.
    expect(verify(null, keys.statement, createPublicKey(identity), keys.signature)).toBe(false);
  });

  it('refuses bad arguments', () => {
    const base = { cluster: 'eu-1', ioPublicKey: IO_PUBLIC, secretsPublicKey: SECRETS_PUBLIC, identityPrivateKey: identity };
    expect(code(() => signDataPlaneKeys({ ...base, cluster: 'EU_1' }))).toBe('INVALID_ARGUMENT');
    expect(code(() => signDataPlaneKeys({ ...base, ioPublicKey: IO_PUBLIC.subarray(1) }))).toBe('INVALID_ARGUMENT');
    expect(code(() => signDataPlaneKeys({ ...base, secretsPublicKey: IO_PUBLIC }))).toBe('INVALID_ARGUMENT');
    expect(code(() => signDataPlaneKeys({ ...base, identityPrivateKey: createPublicKey(identity) }))).toBe('INVALID_ARGUMENT');
    expect(code(() => signDataPlaneKeys({ ...base, identityPrivateKey: generateKeyPairSync('x25519').privateKey }))).toBe('INVALID_ARGUMENT');
    expect(code(() => signDataPlaneKeys({ ...base, signedAt: new Date(Number.NaN) }))).toBe('INVALID_ARGUMENT');
  });
});

describe('verifyDataPlaneKeys', () => {
  it('returns the keys, their ids, the fingerprint and the signing time for the pinned identity and the right cluster', () => {
    const verified = verifyDataPlaneKeys(vector(), PIN.slice('sha256:'.length).toUpperCase(), 'eu-1');
    expect(verified.fingerprint).toBe(PIN);
    expect(verified.ioKey).toEqual({ publicKey: IO_PUBLIC, keyId: sealingKeyId(IO_PUBLIC) });
    expect(verified.secretsKey).toEqual({ publicKey: SECRETS_PUBLIC, keyId: sealingKeyId(SECRETS_PUBLIC) });
    expect(verified.signedAt).toEqual(SIGNED_AT);
    expect(verified.statement.cluster).toBe('eu-1');
  });

  it('round-trips freshly generated keys', () => {
    const { privateKey } = generateKeyPairSync('ed25519');
    const io = generateSealingKeyPair();
    const secrets = generateSealingKeyPair();
    const keys = signDataPlaneKeys({ cluster: 'local', ioPublicKey: io.publicKey, secretsPublicKey: secrets.publicKey, identityPrivateKey: privateKey });
    const verified = verifyDataPlaneKeys(keys, identityFingerprint(spki(privateKey)), 'local');
    expect(verified.ioKey.keyId).toBe(io.keyId);
    expect(verified.secretsKey.keyId).toBe(secrets.keyId);
  });

  it('refuses another identity, naming both fingerprints', () => {
    const { privateKey } = generateKeyPairSync('ed25519');
    const impostor = signDataPlaneKeys({ cluster: 'eu-1', ioPublicKey: IO_PUBLIC, secretsPublicKey: SECRETS_PUBLIC, identityPrivateKey: privateKey });
    const error = caught(() => verifyDataPlaneKeys(impostor, PIN, 'eu-1'));
    expect(error.code).toBe('DATA_PLANE_PIN_MISMATCH');
    expect(error.details).toMatchObject({ reason: 'identity', pinned: PIN, presented: identityFingerprint(spki(privateKey)) });
    expect(error.message).toContain(PIN);
    expect(error.message).toContain(identityFingerprint(spki(privateKey)));
  });

  it('refuses missing keys, a statement for another cluster, a bad signature, mismatched key ids and missing fields', () => {
    const cases: Array<[string, DataPlaneKeys | undefined, string]> = [
      ['no keys', undefined, 'no-keys'],
      ['empty keys', create(DataPlaneKeysSchema), 'no-keys'],
      ['no signature', create(DataPlaneKeysSchema, { ...vector(), signature: new Uint8Array() }), 'no-keys'],
      ['another cluster', signedStatement({ ...goodInit(), cluster: 'us-1' }), 'cluster'],
      ['io key id mismatch', signedStatement({ ...goodInit(), ioKey: { publicKey: IO_PUBLIC, keyId: sealingKeyId(SECRETS_PUBLIC) } }), 'key'],
      ['secrets key id mismatch', signedStatement({ ...goodInit(), secretsKey: { publicKey: SECRETS_PUBLIC, keyId: '0'.repeat(32) } }), 'key'],
      ['no io key', signedStatement({ ...goodInit(), ioKey: undefined }), 'key'],
      ['no secrets key', signedStatement({ ...goodInit(), secretsKey: undefined }), 'key'],
      ['short io key', signedStatement({ ...goodInit(), ioKey: { publicKey: IO_PUBLIC.subarray(1), keyId: sealingKeyId(IO_PUBLIC) } }), 'key'],
      ['one key for both', signedStatement({ ...goodInit(), secretsKey: goodInit().ioKey }), 'key'],
      ['no signing time', signedStatement({ ...goodInit(), signedAt: undefined }), 'signed-at'],
      ['unparseable statement', (() => {
        const statement = Buffer.from([0xff, 0xff, 0xff]);
        const signature = sign(null, Buffer.concat([Buffer.from(`${SEALING_KEYS_SIGNATURE_CONTEXT}\0`), statement]), identity);
        return create(DataPlaneKeysSchema, { statement, identityPublicKey: spki(identity), signature });
      })(), 'statement'],
      ['signature over the bare statement', (() => {
        const keys = vector();
        return create(DataPlaneKeysSchema, { ...keys, signature: sign(null, keys.statement, identity) });
      })(), 'signature'],
    ];
    for (const [name, keys, reason] of cases) {
      const error = caught(() => verifyDataPlaneKeys(keys, PIN, 'eu-1'));
      expect(error.code, name).toBe('DATA_PLANE_PIN_MISMATCH');
      expect(error.details?.reason, name).toBe(reason);
      expect(error.message, name).toContain(PIN);
    }
    // The statement is fine for its own cluster; asking for another one is refused.
    expect(caught(() => verifyDataPlaneKeys(vector(), PIN, 'us-1')).details?.reason).toBe('cluster');
  });

  it('refuses a non-Ed25519 identity key even when the pin matches it', () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const statement = toBinary(SealingKeyStatementSchema, create(SealingKeyStatementSchema, goodInit()));
    const keys = create(DataPlaneKeysSchema, { statement, identityPublicKey: spki(privateKey), signature: sign('sha256', statement, privateKey) });
    const error = caught(() => verifyDataPlaneKeys(keys, identityFingerprint(spki(privateKey)), 'eu-1'));
    expect(error).toMatchObject({ code: 'DATA_PLANE_PIN_MISMATCH', details: { reason: 'identity-key' } });
  });

  it('refuses bad arguments with INVALID_ARGUMENT', () => {
    expect(code(() => verifyDataPlaneKeys(vector(), 'not a pin', 'eu-1'))).toBe('INVALID_ARGUMENT');
    expect(code(() => verifyDataPlaneKeys(vector(), PIN, 'Not A Cluster'))).toBe('INVALID_ARGUMENT');
  });

  it('property: flipping any bit of the statement, the identity key or the signature is refused', () => {
    const keys = vector();
    const fields = ['statement', 'identityPublicKey', 'signature'] as const;
    fc.assert(
      fc.property(fc.constantFrom(...fields), fc.nat(), fc.integer({ min: 0, max: 7 }), (field, index, bit) => {
        const bytes = Buffer.from(keys[field]);
        const at = index % bytes.length;
        bytes[at] = (bytes[at] ?? 0) ^ (1 << bit);
        const tampered = create(DataPlaneKeysSchema, { ...keys, [field]: bytes });
        expect(code(() => verifyDataPlaneKeys(tampered, PIN, 'eu-1'))).toBe('DATA_PLANE_PIN_MISMATCH');
      }),
      { numRuns: 300 },
    );
  });

  it('property: truncating or extending any field is refused', () => {
    const keys = vector();
    fc.assert(
      fc.property(fc.constantFrom('statement', 'identityPublicKey', 'signature'), fc.boolean(), fc.uint8Array({ minLength: 1, maxLength: 8 }), (field, extend, extra) => {
        const bytes = Buffer.from(keys[field as 'statement']);
        const changed = extend ? Buffer.concat([bytes, extra]) : bytes.subarray(0, Math.max(0, bytes.length - extra.length));
        const tampered = create(DataPlaneKeysSchema, { ...keys, [field]: changed });
        expect(code(() => verifyDataPlaneKeys(tampered, PIN, 'eu-1'))).toBe('DATA_PLANE_PIN_MISMATCH');
      }),
      { numRuns: 200 },
    );
  });
});
