// The data plane's signed sealing keys and the client's pin (docs/runs.md, "Data-plane sealing keys and the pin"): fingerprint, sign, verify.
import { createHash, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { timestampDate, timestampFromDate } from '@bufbuild/protobuf/wkt';
import { AirlockError } from '@airlock/common';
import { constantTimeEqual, sealingKeyId } from '@airlock/crypto';
import { DataPlaneKeysSchema, SealingKeyStatementSchema, type DataPlaneKeys, type SealingKeyStatement } from './gen/airlock/v1/common_pb.js';

/**
 * The domain-separation prefix of the identity key's signature: the signed bytes are this ASCII
 * string, one zero byte, then the serialized statement (common.proto, DataPlaneKeys.signature).
 */
export const SEALING_KEYS_SIGNATURE_CONTEXT = 'airlock/v1/sealing-keys';

const PIN_PREFIX = 'sha256:';
const PIN = /^(?:sha256:)?([0-9a-fA-F]{64})$/;
// The cluster-name rule of @airlock/pki (isValidClusterName), repeated to keep this module free of X.509.
const CLUSTER_NAME = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const X25519_PUBLIC_KEY_LENGTH = 32;
/** Bounds on what is parsed before the signature is checked, so a hostile relay cannot make a client parse megabytes. */
const MAX_STATEMENT_BYTES = 4096;
const MAX_SPKI_BYTES = 1024;
const ED25519_SIGNATURE_LENGTH = 64;

/** A sealing public key as verified: the raw X25519 key and its id. */
export interface VerifiedSealingKey {
  readonly publicKey: Buffer;
  readonly keyId: string;
}

/** What {@link verifyDataPlaneKeys} returns once everything checks out. */
export interface VerifiedDataPlaneKeys {
  readonly statement: SealingKeyStatement;
  /** The key that run inputs are sealed to (purpose `io`). */
  readonly ioKey: VerifiedSealingKey;
  /** The key that secret values are sealed to (purpose `secret`). */
  readonly secretsKey: VerifiedSealingKey;
  /** The identity fingerprint, equal to the pin, `sha256:<64 lowercase hex>`. */
  readonly fingerprint: string;
  /** When the data plane signed the statement. */
  readonly signedAt: Date;
}

export interface SignDataPlaneKeysOptions {
  /** The cluster the keys belong to (its certificate's name). */
  readonly cluster: string;
  /** The raw 32-byte X25519 I/O public key. */
  readonly ioPublicKey: Uint8Array;
  /** The raw 32-byte X25519 secrets public key. */
  readonly secretsPublicKey: Uint8Array;
  /** @default now */
  readonly signedAt?: Date;
  /** The Ed25519 identity private key. */
  readonly identityPrivateKey: KeyObject;
}

/** The pin of an identity key: `sha256:` and the 64 lowercase hex digits of SHA-256 over its DER SubjectPublicKeyInfo. */
export function identityFingerprint(spkiDer: Uint8Array): string {
  if (!(spkiDer instanceof Uint8Array) || spkiDer.byteLength === 0) {
    throw new AirlockError('INVALID_ARGUMENT', 'spkiDer must be a non-empty Uint8Array', { details: { argument: 'spkiDer' } });
  }
  return `${PIN_PREFIX}${createHash('sha256').update(spkiDer).digest('hex')}`;
}

/**
 * Reads a pin as a user typed or a configuration file stored it: `sha256:<64 hex>` or 64 bare hex
 * digits, surrounding white space ignored. Returns the canonical form `sha256:<64 lowercase hex>`;
 * throws INVALID_ARGUMENT for anything else.
 */
export function parsePin(text: string): string {
  const match = typeof text === 'string' ? PIN.exec(text.trim()) : null;
  if (match?.[1] === undefined) {
    throw new AirlockError('INVALID_ARGUMENT', 'A data-plane pin is "sha256:" followed by 64 hexadecimal digits', { details: { argument: 'pin' } });
  }
  return `${PIN_PREFIX}${match[1].toLowerCase()}`;
}

/** The exact bytes the identity key signs. */
function signedBytes(statement: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from(SEALING_KEYS_SIGNATURE_CONTEXT, 'ascii'), Buffer.alloc(1), statement]);
}

function checkSealingPublicKey(name: string, value: unknown): Buffer {
  if (!(value instanceof Uint8Array) || value.byteLength !== X25519_PUBLIC_KEY_LENGTH) {
    throw new AirlockError('INVALID_ARGUMENT', `${name} must be a raw 32-byte X25519 public key`, { details: { argument: name } });
  }
  return Buffer.from(value);
}

/**
 * Signs a statement of the data plane's sealing keys with its Ed25519 identity key, and returns the
 * DataPlaneKeys the agent sends at Register.
 */
export function signDataPlaneKeys(options: SignDataPlaneKeysOptions): DataPlaneKeys {
  const { cluster, identityPrivateKey } = options;
  if (typeof cluster !== 'string' || !CLUSTER_NAME.test(cluster)) {
    throw new AirlockError('INVALID_ARGUMENT', 'cluster must be 1 to 63 lower-case letters, digits or inner hyphens', { details: { argument: 'cluster' } });
  }
  if (typeof identityPrivateKey !== 'object' || identityPrivateKey === null || identityPrivateKey.type !== 'private' || identityPrivateKey.asymmetricKeyType !== 'ed25519') {
    throw new AirlockError('INVALID_ARGUMENT', 'identityPrivateKey must be an Ed25519 private KeyObject', { details: { argument: 'identityPrivateKey' } });
  }
  const io = checkSealingPublicKey('ioPublicKey', options.ioPublicKey);
  const secrets = checkSealingPublicKey('secretsPublicKey', options.secretsPublicKey);
  if (io.equals(secrets)) {
    throw new AirlockError('INVALID_ARGUMENT', 'The I/O and secrets keys must be different keys', { details: { argument: 'secretsPublicKey' } });
  }
  const signedAt = options.signedAt ?? new Date();
  if (!(signedAt instanceof Date) || Number.isNaN(signedAt.getTime())) {
    throw new AirlockError('INVALID_ARGUMENT', 'signedAt must be a valid Date', { details: { argument: 'signedAt' } });
  }
  const statement = toBinary(
    SealingKeyStatementSchema,
    create(SealingKeyStatementSchema, {
      cluster,
      ioKey: { publicKey: io, keyId: sealingKeyId(io) },
      secretsKey: { publicKey: secrets, keyId: sealingKeyId(secrets) },
      signedAt: timestampFromDate(signedAt),
    }),
  );
  const identityPublicKey = createPublicKey(identityPrivateKey).export({ type: 'spki', format: 'der' });
  // Ed25519 (RFC 8032 §5.1.6) hashes internally: node:crypto takes a null digest.
  const signature = sign(null, signedBytes(statement), identityPrivateKey);
  return create(DataPlaneKeysSchema, { statement, identityPublicKey, signature });
}

/**
 * Verifies a data plane's signed sealing keys against the pinned identity fingerprint and the
 * cluster the client means to seal to. Every refusal is DATA_PLANE_PIN_MISMATCH, whose message names
 * the pinned and the presented fingerprints and whose details.reason says which check failed:
 * `no-keys`, `identity` (another identity key), `identity-key` (not an Ed25519 SPKI), `signature`,
 * `statement` (unparseable), `cluster`, `key` (a missing or malformed key, a key id that does not
 * match its key, or one key used for both purposes), `signed-at`. Throws INVALID_ARGUMENT for a
 * malformed pin or cluster argument.
 */
export function verifyDataPlaneKeys(keys: DataPlaneKeys | undefined, pin: string, cluster: string): VerifiedDataPlaneKeys {
  const pinned = parsePin(pin);
  if (typeof cluster !== 'string' || !CLUSTER_NAME.test(cluster)) {
    throw new AirlockError('INVALID_ARGUMENT', 'cluster must be 1 to 63 lower-case letters, digits or inner hyphens', { details: { argument: 'cluster' } });
  }
  const present = keys !== undefined && keys.identityPublicKey.byteLength > 0 && keys.identityPublicKey.byteLength <= MAX_SPKI_BYTES;
  const presented = present ? identityFingerprint(keys.identityPublicKey) : 'none';
  const refuse = (reason: string, problem: string): AirlockError =>
    new AirlockError('DATA_PLANE_PIN_MISMATCH', `The sealing keys of cluster ${cluster} ${problem} (pinned identity ${pinned}, presented ${presented})`, {
      details: { reason, cluster, pinned, presented },
    });
  if (!present || keys.statement.byteLength === 0 || keys.signature.byteLength === 0) throw refuse('no-keys', 'are missing or incomplete');
  if (!constantTimeEqual(Buffer.from(presented, 'ascii'), Buffer.from(pinned, 'ascii'))) {
    throw refuse('identity', 'are signed by another identity than the pinned one');
  }
  let identityKey: KeyObject;
  try {
    identityKey = createPublicKey({ key: Buffer.from(keys.identityPublicKey), format: 'der', type: 'spki' });
  } catch {
    throw refuse('identity-key', 'carry an identity key that is not a valid public key');
  }
  if (identityKey.asymmetricKeyType !== 'ed25519') throw refuse('identity-key', 'carry an identity key that is not Ed25519');
  if (keys.signature.byteLength !== ED25519_SIGNATURE_LENGTH || keys.statement.byteLength > MAX_STATEMENT_BYTES) throw refuse('signature', 'carry an invalid signature');
  let valid: boolean;
  try {
    valid = verify(null, signedBytes(keys.statement), identityKey, keys.signature);
  } catch {
    valid = false;
  }
  if (!valid) throw refuse('signature', 'carry an invalid signature');

  // Only signed bytes are parsed from here on.
  let statement: SealingKeyStatement;
  try {
    statement = fromBinary(SealingKeyStatementSchema, keys.statement);
  } catch {
    throw refuse('statement', 'carry a statement that cannot be read');
  }
  if (statement.cluster !== cluster) throw refuse('cluster', `are signed for cluster "${statement.cluster.slice(0, 63)}"`);
  const checkKey = (name: string, key: SealingKeyStatement['ioKey']): VerifiedSealingKey => {
    if (key === undefined || key.publicKey.byteLength !== X25519_PUBLIC_KEY_LENGTH) throw refuse('key', `lack a valid ${name} key`);
    const publicKey = Buffer.from(key.publicKey);
    const keyId = sealingKeyId(publicKey);
    if (key.keyId !== keyId) throw refuse('key', `name a ${name} key id that does not match the key`);
    return { publicKey, keyId };
  };
  const ioKey = checkKey('I/O', statement.ioKey);
  const secretsKey = checkKey('secrets', statement.secretsKey);
  if (ioKey.publicKey.equals(secretsKey.publicKey)) throw refuse('key', 'use one key for both I/O and secrets');
  if (statement.signedAt === undefined) throw refuse('signed-at', 'carry no signing time');
  const signedAt = timestampDate(statement.signedAt);
  if (Number.isNaN(signedAt.getTime())) throw refuse('signed-at', 'carry an invalid signing time');
  return Object.freeze({ statement, ioKey, secretsKey, fingerprint: presented, signedAt });
}
