// Sealed messages: HPKE (RFC 9180) base mode to an X25519 sealing key, in the ASM1 format of docs/formats/sealed.md.
import { AirlockError } from '@airlock/common';
import { assertBytes, assertLength } from './bytes.js';
import { importRecipient, openWith, openWithRecipient, sealWith, type ImportedRecipient } from './internal/sealed-core.js';
import {
  AEAD_ID,
  HEADER_OVERHEAD,
  KDF_ID,
  KEM_ID,
  MAX_PLAINTEXT_LENGTH,
  infoForPurpose,
  keyIdOf,
  parseSealed,
  TAG_LENGTH,
  VERSION,
} from './internal/sealed-format.js';
import { generateX25519KeyPair, X25519_KEY_LENGTH } from './x25519.js';

export {
  AEAD_ID as HPKE_AEAD_ID,
  KDF_ID as HPKE_KDF_ID,
  KEM_ID as HPKE_KEM_ID,
  KEY_ID_LENGTH as SEALING_KEY_ID_LENGTH,
  MAX_AAD_LENGTH as SEALED_MAX_AAD_LENGTH,
  MAX_PLAINTEXT_LENGTH as SEALED_MAX_PLAINTEXT_LENGTH,
  PURPOSE_PATTERN as SEALED_PURPOSE_PATTERN,
} from './internal/sealed-format.js';

/** An X25519 sealing key pair with raw 32-byte keys. The caller owns `privateKey` and zeroizes it when done. */
export interface SealingKeyPair {
  readonly publicKey: Buffer;
  readonly privateKey: Buffer;
  /** {@link sealingKeyId} of `publicKey`. */
  readonly keyId: string;
}

export interface SealOptions {
  /** The recipient's raw 32-byte X25519 public key. */
  readonly recipientPublicKey: Uint8Array;
  /** What the message is for, e.g. `io`, `secret` or `log`; the HPKE info is `airlock/v1/<purpose>`. */
  readonly purpose: string;
  readonly plaintext: Uint8Array;
  /** Extra associated data the opener must supply byte for byte; not stored in the message. @default empty */
  readonly aad?: Uint8Array;
}

export interface OpenOptions {
  /** The recipient's raw 32-byte X25519 private key. Not retained; the caller zeroizes it when done. */
  readonly recipientPrivateKey: Uint8Array;
  /** If given, must be the public key of `recipientPrivateKey` (a consistency check). @default derived */
  readonly recipientPublicKey?: Uint8Array;
  /** Must equal the purpose the message was sealed for. */
  readonly purpose: string;
  readonly sealed: Uint8Array;
  /** Must equal the `aad` given to {@link seal}. @default empty */
  readonly aad?: Uint8Array;
}

/** What a sealed message's header says, readable without any key. Nothing here is authenticated until {@link open} succeeds. */
export interface SealedHeader {
  readonly version: number;
  readonly kemId: number;
  readonly kdfId: number;
  readonly aeadId: number;
  /** Recipient key id, lowercase hex (see {@link sealingKeyId}). */
  readonly keyId: string;
  /** The HPKE info string, `airlock/v1/<purpose>`. */
  readonly info: string;
  readonly purpose: string;
  /** The HPKE encapsulated key (the sender's ephemeral X25519 public key). */
  readonly enc: Buffer;
  readonly headerLength: number;
  /** Length of the AEAD ciphertext including its 16-byte tag. */
  readonly ciphertextLength: number;
}

/**
 * The id of a sealing public key: lowercase hex of the first 16 bytes of SHA-256 over the raw
 * 32-byte key. It names the key in sealed-message headers so a data plane holding several sealing
 * keys (I/O, secrets, rotated versions) picks the right one. It is a name, not a trust anchor:
 * HPKE binds the actual public key into the key schedule (RFC 9180 §4.1, kem_context).
 */
export function sealingKeyId(publicKey: Uint8Array): string {
  assertBytes('publicKey', publicKey, X25519_KEY_LENGTH);
  return keyIdOf(publicKey).toString('hex');
}

/** Generates a fresh X25519 sealing key pair. */
export function generateSealingKeyPair(): SealingKeyPair {
  const { publicKey, privateKey } = generateX25519KeyPair();
  return { publicKey, privateKey, keyId: sealingKeyId(publicKey) };
}

/** Validates a purpose and returns its HPKE info string, `airlock/v1/<purpose>`. */
export function sealedInfo(purpose: string): string {
  return infoForPurpose(purpose).toString('ascii');
}

/** Exact sealed-message length for a plaintext of `plaintextLength` bytes sealed for `purpose`. */
export function sealedLength(plaintextLength: number, purpose: string): number {
  assertLength('plaintextLength', plaintextLength, 0, MAX_PLAINTEXT_LENGTH);
  return HEADER_OVERHEAD + infoForPurpose(purpose).byteLength + plaintextLength + TAG_LENGTH;
}

/**
 * Seals `plaintext` to a recipient public key with HPKE base mode, DHKEM(X25519, HKDF-SHA256),
 * HKDF-SHA256, AES-256-GCM (RFC 9180 §5.1.1, §6.1). Each call uses a fresh ephemeral key, so
 * sealing the same plaintext twice gives unrelated outputs.
 */
export async function seal(options: SealOptions): Promise<Buffer> {
  return sealWith(options);
}

/**
 * Opens a sealed message. Throws INVALID_ARGUMENT for bad arguments, CIPHERTEXT_MALFORMED when the
 * bytes are not a well-formed v1 sealed message, SEALED_WRONG_RECIPIENT when the header names
 * another key, and CIPHERTEXT_AUTH_FAILED (with no detail) for a different purpose or AAD, or any
 * tampering. No plaintext is ever returned unless the AEAD tag verifies.
 */
export async function open(options: OpenOptions): Promise<Buffer> {
  return openWith(options);
}

/** A recipient's private key imported once, for a holder that opens many messages (a data plane's I/O key). */
export interface SealedOpener {
  /** The recipient's raw public key. */
  readonly publicKey: Buffer;
  /** {@link sealingKeyId} of `publicKey`. */
  readonly keyId: string;
  /** {@link open} with this recipient: the same checks, errors and order. Throws UNAVAILABLE after destroy(). */
  open(options: Omit<OpenOptions, 'recipientPrivateKey' | 'recipientPublicKey'>): Promise<Buffer>;
  /** Drops the imported key; the opener is unusable afterwards. */
  destroy(): void;
}

/**
 * Imports `recipientPrivateKey` once (deriving its public key and importing both for WebCrypto costs
 * more than an open of a small message) and returns an opener. The raw key is not retained: the
 * caller zeroizes its copy whenever it likes.
 */
export async function createSealedOpener(recipientPrivateKey: Uint8Array): Promise<SealedOpener> {
  let recipient: ImportedRecipient | undefined = await importRecipient(recipientPrivateKey);
  const publicKey = Buffer.from(recipient.publicKey);
  return Object.freeze({
    publicKey,
    keyId: sealingKeyId(publicKey),
    async open(options: Omit<OpenOptions, 'recipientPrivateKey' | 'recipientPublicKey'>) {
      if (recipient === undefined) throw new AirlockError('UNAVAILABLE', 'The sealed-message opener was destroyed');
      if (typeof options !== 'object' || options === null) throw new AirlockError('INVALID_ARGUMENT', 'options must be an object', { details: { argument: 'options' } });
      return openWithRecipient(recipient, options);
    },
    destroy() {
      recipient = undefined;
    },
  });
}

/** Reads a sealed message's header without decrypting it. Throws CIPHERTEXT_MALFORMED if it is not well formed. */
export function parseSealedHeader(sealed: Uint8Array): SealedHeader {
  assertBytes('sealed', sealed);
  const parsed = parseSealed(sealed);
  return {
    version: VERSION,
    kemId: KEM_ID,
    kdfId: KDF_ID,
    aeadId: AEAD_ID,
    keyId: parsed.keyId.toString('hex'),
    info: parsed.info,
    purpose: parsed.purpose,
    enc: Buffer.from(parsed.enc),
    headerLength: parsed.header.byteLength,
    ciphertextLength: parsed.ciphertext.byteLength,
  };
}
