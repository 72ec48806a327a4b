// Envelope encryption: per-blob data keys wrapped by a KeyWrapper (a KMS key), stored in ASF1 headers.
import type { Transform } from 'node:stream';
import { AirlockError } from '@airlock/common';
import { aesGcmDecrypt, aesGcmEncrypt, GCM_NONCE_LENGTH } from './aead.js';
import { createAsf1DecryptStream, createAsf1EncryptStream, decryptAsf1, encryptAsf1, readAsf1Header } from './asf1.js';
import { assertBytes, randomBytes, zeroize } from './bytes.js';
import { encodeEncryptionContext, type EncryptionContext } from './encryption-context.js';
import { ASF1_DATA_KEY_LENGTH } from './asf1.js';

/** A data key as stored: which wrapping key protects it, and the wrapped bytes (e.g. a KMS ciphertext blob). */
export interface WrappedKey {
  /** Identifies the wrapping key, e.g. a KMS key ARN. */
  readonly keyId: string;
  readonly ciphertext: Uint8Array;
}

/** A fresh data key: use `plaintext`, store `wrapped`, then zeroize `plaintext`. */
export interface DataKey {
  readonly plaintext: Buffer;
  readonly wrapped: WrappedKey;
}

/**
 * Wraps and unwraps data keys under a key-encryption key. The KMS client implements this; so does
 * createLocalKeyWrapper. The encryption context must be bound into the wrapping, so a wrapped key
 * moved to another context does not unwrap.
 */
export interface KeyWrapper {
  /** Generates and wraps a new 32-byte key in one step (KMS GenerateDataKey). Optional. */
  generateDataKey?(context: EncryptionContext): Promise<DataKey>;
  wrapKey(plaintext: Uint8Array, context: EncryptionContext): Promise<WrappedKey>;
  /** Returns the plaintext key, or throws (KEY_UNWRAP_FAILED, or a KMS error such as a disabled key). */
  unwrapKey(wrapped: WrappedKey, context: EncryptionContext): Promise<Uint8Array>;
}

/** Generates a 32-byte data key and wraps it through `wrapper`. */
export async function generateDataKey(wrapper: KeyWrapper, context: EncryptionContext = {}): Promise<DataKey> {
  if (wrapper.generateDataKey !== undefined) return wrapper.generateDataKey(context);
  const plaintext = randomBytes(ASF1_DATA_KEY_LENGTH);
  try {
    return { plaintext, wrapped: await wrapper.wrapKey(plaintext, context) };
  } catch (error) {
    zeroize(plaintext);
    throw error;
  }
}

const ENVELOPE_MAGIC = Buffer.from('AENV', 'ascii');
const ENVELOPE_VERSION = 1;
const MAX_KEY_ID_BYTES = 2048;
const MAX_WRAPPED_BYTES = 2048;

/**
 * Encodes a wrapped key as an envelope header (docs/formats/envelope.md):
 * "AENV" ‖ u8 version ‖ u16 keyId length ‖ keyId (UTF-8) ‖ u16 wrapped length ‖ wrapped bytes.
 */
export function encodeEnvelopeHeader(wrapped: WrappedKey): Buffer {
  const keyId = Buffer.from(wrapped.keyId, 'utf8');
  assertBytes('wrapped.ciphertext', wrapped.ciphertext);
  if (keyId.byteLength === 0 || keyId.byteLength > MAX_KEY_ID_BYTES || wrapped.ciphertext.byteLength > MAX_WRAPPED_BYTES) {
    throw new AirlockError('INVALID_ARGUMENT', 'wrapped key id or ciphertext has an invalid length', {
      details: { argument: 'wrapped' },
    });
  }
  const out = Buffer.allocUnsafe(4 + 1 + 2 + keyId.byteLength + 2 + wrapped.ciphertext.byteLength);
  ENVELOPE_MAGIC.copy(out, 0);
  out[4] = ENVELOPE_VERSION;
  let offset = out.writeUInt16BE(keyId.byteLength, 5);
  offset += keyId.copy(out, offset);
  offset = out.writeUInt16BE(wrapped.ciphertext.byteLength, offset);
  out.set(wrapped.ciphertext, offset);
  return out;
}

/** Decodes an envelope header; throws CIPHERTEXT_MALFORMED on anything else. */
export function decodeEnvelopeHeader(bytes: Uint8Array): WrappedKey {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const bad = (): AirlockError => new AirlockError('CIPHERTEXT_MALFORMED', 'not a valid envelope header');
  if (buf.byteLength < 9 || !buf.subarray(0, 4).equals(ENVELOPE_MAGIC) || buf[4] !== ENVELOPE_VERSION) throw bad();
  const keyIdLength = buf.readUInt16BE(5);
  if (keyIdLength === 0 || buf.byteLength < 9 + keyIdLength) throw bad();
  const keyId = buf.toString('utf8', 7, 7 + keyIdLength);
  const wrappedLength = buf.readUInt16BE(7 + keyIdLength);
  if (buf.byteLength !== 9 + keyIdLength + wrappedLength) throw bad();
  return { keyId, ciphertext: Buffer.from(buf.subarray(9 + keyIdLength)) };
}

export interface EnvelopeOptions {
  readonly wrapper: KeyWrapper;
  /** Bound into both the data-key wrapping and the ASF1 stream. @default {} */
  readonly context?: EncryptionContext;
}

/** Encrypts a buffer under a fresh data key; the result is a self-describing ASF1 blob. */
export async function envelopeEncrypt(plaintext: Uint8Array, options: EnvelopeOptions): Promise<Buffer> {
  const context = options.context ?? {};
  const dataKey = await generateDataKey(options.wrapper, context);
  try {
    return encryptAsf1(plaintext, { key: dataKey.plaintext, context, keyRef: encodeEnvelopeHeader(dataKey.wrapped) });
  } finally {
    zeroize(dataKey.plaintext);
  }
}

/** Decrypts a blob made by envelopeEncrypt: unwraps its data key through `wrapper`, then opens the ASF1 stream. */
export async function envelopeDecrypt(ciphertext: Uint8Array, options: EnvelopeOptions): Promise<Buffer> {
  const context = options.context ?? {};
  const header = readAsf1Header(ciphertext);
  const key = await options.wrapper.unwrapKey(decodeEnvelopeHeader(header.keyRef), context);
  try {
    return decryptAsf1(ciphertext, { key, context });
  } finally {
    zeroize(key);
  }
}

/** A Transform that encrypts under a fresh wrapped data key. */
export async function createEnvelopeEncryptStream(options: EnvelopeOptions): Promise<Transform> {
  const context = options.context ?? {};
  const dataKey = await generateDataKey(options.wrapper, context);
  try {
    return createAsf1EncryptStream({ key: dataKey.plaintext, context, keyRef: encodeEnvelopeHeader(dataKey.wrapped) });
  } finally {
    // The stream has already derived its own segment key; the data key itself is no longer needed.
    zeroize(dataKey.plaintext);
  }
}

/** A Transform that decrypts envelope blobs, unwrapping the data key when the header arrives. */
export function createEnvelopeDecryptStream(options: EnvelopeOptions): Transform {
  const context = options.context ?? {};
  return createAsf1DecryptStream({
    context,
    resolveKey: (keyRef) => options.wrapper.unwrapKey(decodeEnvelopeHeader(keyRef), context),
  });
}

const LOCAL_WRAP_LABEL = Buffer.from('airlock local key wrap v1', 'ascii');

/**
 * A KeyWrapper over a 32-byte key held in memory: AES-256-GCM with a random 96-bit nonce, the key
 * id and encryption context as associated data. Wrapped form: nonce ‖ ciphertext ‖ tag. Used where
 * the key-encryption key is local (the embedded KMS's root key, tests).
 */
export function createLocalKeyWrapper(options: { readonly keyId: string; readonly key: Uint8Array }): KeyWrapper & { dispose(): void } {
  assertBytes('key', options.key, 32);
  const kek = Buffer.from(options.key);
  const keyId = options.keyId;
  const aadFor = (context: EncryptionContext): Buffer =>
    Buffer.concat([LOCAL_WRAP_LABEL, encodeEncryptionContext({ keyId }), encodeEncryptionContext(context)]);
  return {
    wrapKey(plaintext, context) {
      assertBytes('plaintext', plaintext);
      const nonce = randomBytes(GCM_NONCE_LENGTH);
      const sealed = aesGcmEncrypt(kek, nonce, plaintext, aadFor(context));
      return Promise.resolve({ keyId, ciphertext: Buffer.concat([nonce, sealed]) });
    },
    unwrapKey(wrapped, context) {
      if (wrapped.keyId !== keyId || wrapped.ciphertext.byteLength < GCM_NONCE_LENGTH + 16) {
        return Promise.reject(new AirlockError('KEY_UNWRAP_FAILED'));
      }
      const bytes = Buffer.from(wrapped.ciphertext);
      try {
        return Promise.resolve(aesGcmDecrypt(kek, bytes.subarray(0, GCM_NONCE_LENGTH), bytes.subarray(GCM_NONCE_LENGTH), aadFor(context)));
      } catch {
        return Promise.reject(new AirlockError('KEY_UNWRAP_FAILED'));
      }
    },
    dispose() {
      kek.fill(0);
    },
  };
}
