// Sealed-message internals: the HPKE suite, key import, and seal/open with an optional fixed ephemeral seed.
import { webcrypto } from 'node:crypto';
import { Aes256Gcm, CipherSuite, DhkemX25519HkdfSha256, HkdfSha256 } from '@hpke/core';
import { AirlockError } from '@airlock/common';
import { assertBytes, constantTimeEqual } from '../bytes.js';
import { x25519PublicKey, X25519_KEY_LENGTH } from '../x25519.js';
import { pkcs8FromRaw } from './x25519-der.js';
import {
  authFailed,
  encodeHeader,
  hpkeAad,
  infoForPurpose,
  invalidArgument,
  keyIdOf,
  MAX_AAD_LENGTH,
  MAX_PLAINTEXT_LENGTH,
  parseSealed,
} from './sealed-format.js';

const EMPTY = new Uint8Array(0);

export interface SealCoreOptions {
  readonly recipientPublicKey: Uint8Array;
  readonly purpose: string;
  readonly plaintext: Uint8Array;
  readonly aad?: Uint8Array | undefined;
}

export interface OpenCoreOptions {
  readonly recipientPrivateKey: Uint8Array;
  readonly recipientPublicKey?: Uint8Array | undefined;
  readonly purpose: string;
  readonly sealed: Uint8Array;
  readonly aad?: Uint8Array | undefined;
}

let suite: CipherSuite | undefined;

/** RFC 9180 base mode with DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and AES-256-GCM. Stateless, so shared. */
function hpkeSuite(): CipherSuite {
  suite ??= new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: new Aes256Gcm() });
  return suite;
}

function checkAad(aad: unknown): Uint8Array {
  if (aad === undefined) return EMPTY;
  assertBytes('aad', aad);
  if (aad.byteLength > MAX_AAD_LENGTH) throw invalidArgument('aad', `aad must be at most ${MAX_AAD_LENGTH} bytes`);
  return aad;
}

/**
 * Imports the recipient's private key for WebCrypto (which @hpke/core uses) ourselves, rather than
 * through @hpke/core's deserializePrivateKey, so that the one DER copy we make can be zeroed.
 * The key is non-extractable: nothing needs to read it back out.
 */
async function importPrivateKey(privateKey: Uint8Array): Promise<webcrypto.CryptoKey> {
  const der = pkcs8FromRaw(privateKey);
  try {
    return await webcrypto.subtle.importKey('pkcs8', der, { name: 'X25519' }, false, ['deriveBits']);
  } finally {
    der.fill(0);
  }
}

/** Public keys must be extractable: DHKEM serializes pkR into kem_context (RFC 9180 §4.1). */
async function importPublicKey(publicKey: Uint8Array): Promise<webcrypto.CryptoKey> {
  return webcrypto.subtle.importKey('raw', publicKey, { name: 'X25519' }, true, []);
}

/**
 * Seals `plaintext` to `recipientPublicKey`. `ephemeralIkm`, when given, fixes the ephemeral key
 * through DeriveKeyPair (RFC 9180 §7.1.3), as the RFC's own test vectors do; it exists only for
 * known-answer tests and must never be used otherwise, since reusing it reuses the AEAD key.
 */
export async function sealWith(options: SealCoreOptions, ephemeralIkm?: Uint8Array): Promise<Buffer> {
  if (typeof options !== 'object' || options === null) throw invalidArgument('options', 'options must be an object');
  const { recipientPublicKey, purpose, plaintext } = options;
  assertBytes('recipientPublicKey', recipientPublicKey, X25519_KEY_LENGTH);
  const info = infoForPurpose(purpose);
  assertBytes('plaintext', plaintext);
  if (plaintext.byteLength > MAX_PLAINTEXT_LENGTH) {
    throw invalidArgument('plaintext', `plaintext must be at most ${MAX_PLAINTEXT_LENGTH} bytes`);
  }
  const aad = checkAad(options.aad);
  if (ephemeralIkm !== undefined) assertBytes('ephemeralIkm', ephemeralIkm, 32);

  const keyId = keyIdOf(recipientPublicKey);
  const pkR = await importPublicKey(recipientPublicKey);
  let sender;
  try {
    sender = await hpkeSuite().createSenderContext({
      recipientPublicKey: pkR,
      info,
      ...(ephemeralIkm === undefined ? {} : { ekm: ephemeralIkm }),
    });
  } catch (error) {
    // Encap fails only when DH gives the all-zero secret: pkR has small order (RFC 9180 §7.1.4).
    throw new AirlockError('INVALID_ARGUMENT', 'recipientPublicKey is not a usable X25519 public key', {
      cause: error,
      details: { argument: 'recipientPublicKey' },
    });
  }
  const header = encodeHeader(keyId, info, new Uint8Array(sender.enc));
  // The whole header is AAD, so editing any header byte (suite ids, key id, info, enc) fails Open.
  const ciphertext = await sender.seal(plaintext, hpkeAad(header, aad));
  return Buffer.concat([header, new Uint8Array(ciphertext)]);
}

/**
 * Opens a sealed message. Order of checks: arguments (INVALID_ARGUMENT), structure
 * (CIPHERTEXT_MALFORMED), recipient key id (SEALED_WRONG_RECIPIENT), then purpose and HPKE
 * decryption, both CIPHERTEXT_AUTH_FAILED without detail.
 */
export async function openWith(options: OpenCoreOptions): Promise<Buffer> {
  if (typeof options !== 'object' || options === null) throw invalidArgument('options', 'options must be an object');
  const { recipientPrivateKey } = options;
  assertBytes('recipientPrivateKey', recipientPrivateKey, X25519_KEY_LENGTH);
  infoForPurpose(options.purpose);
  assertBytes('sealed', options.sealed);
  checkAad(options.aad);
  const recipient = await importRecipient(recipientPrivateKey);
  if (options.recipientPublicKey !== undefined) {
    assertBytes('recipientPublicKey', options.recipientPublicKey, X25519_KEY_LENGTH);
    if (!constantTimeEqual(recipient.publicKey, options.recipientPublicKey)) {
      throw invalidArgument('recipientPublicKey', 'recipientPublicKey does not belong to recipientPrivateKey');
    }
  }
  return openWithRecipient(recipient, options);
}

/** A recipient's key pair imported once for WebCrypto, with its public key and key id: what opening needs besides the message. */
export interface ImportedRecipient {
  readonly publicKey: Buffer;
  readonly keyId: Buffer;
  readonly skR: webcrypto.CryptoKey;
  readonly pkR: webcrypto.CryptoKey;
}

/** Imports a raw X25519 private key (and its derived public key) for opening; the caller keeps and zeroizes its raw copy. */
export async function importRecipient(recipientPrivateKey: Uint8Array): Promise<ImportedRecipient> {
  assertBytes('recipientPrivateKey', recipientPrivateKey, X25519_KEY_LENGTH);
  const publicKey = x25519PublicKey(recipientPrivateKey);
  try {
    return { publicKey, keyId: keyIdOf(publicKey), skR: await importPrivateKey(recipientPrivateKey), pkR: await importPublicKey(publicKey) };
  } catch (error) {
    throw new AirlockError('INVALID_ARGUMENT', 'recipientPrivateKey could not be imported', {
      cause: error,
      details: { argument: 'recipientPrivateKey' },
    });
  }
}

/** Opens with an imported recipient: the checks and errors of openWith, without importing the key again. */
export async function openWithRecipient(recipient: ImportedRecipient, options: { readonly purpose: string; readonly sealed: Uint8Array; readonly aad?: Uint8Array | undefined }): Promise<Buffer> {
  const expectedInfo = infoForPurpose(options.purpose);
  assertBytes('sealed', options.sealed);
  const aad = checkAad(options.aad);
  const parsed = parseSealed(options.sealed);
  if (!constantTimeEqual(parsed.keyId, recipient.keyId)) throw new AirlockError('SEALED_WRONG_RECIPIENT');
  // The info string is bound into the HPKE key schedule (RFC 9180 §5.1) and the header into the
  // AAD, so a purpose mismatch could only fail later anyway; failing here just saves the work.
  if (parsed.info !== expectedInfo.toString('ascii')) throw authFailed();
  try {
    const context = await hpkeSuite().createRecipientContext({
      // Passing the pair spares @hpke/core re-deriving pkR from skR for kem_context.
      recipientKey: { privateKey: recipient.skR, publicKey: recipient.pkR },
      enc: parsed.enc,
      info: expectedInfo,
    });
    const plaintext = await context.open(parsed.ciphertext, hpkeAad(parsed.header, aad));
    return Buffer.from(plaintext);
  } catch {
    // Decap of a small-order enc, a bad tag, and everything in between: one code, no detail.
    throw authFailed();
  }
}
