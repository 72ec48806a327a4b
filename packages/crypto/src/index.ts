// Public API of @airlock/crypto: AEAD and KDF helpers, ASF1, envelopes and HPKE sealing.
export { asBuffer, assertBytes, constantTimeEqual, randomBytes, zeroize } from './bytes.js';
export { AES_256_KEY_LENGTH, aesGcmDecrypt, aesGcmEncrypt, GCM_NONCE_LENGTH, GCM_TAG_LENGTH, hkdfSha256, hmacSha256 } from './aead.js';
export { encodeEncryptionContext, MAX_ENCRYPTION_CONTEXT_BYTES, type EncryptionContext } from './encryption-context.js';
export {
  ASF1_DATA_KEY_LENGTH,
  ASF1_MAX_KEY_REF_LENGTH,
  ASF1_SEGMENT_SIZE,
  asf1CiphertextLength,
  asf1PlaintextLength,
  createAsf1DecryptStream,
  createAsf1EncryptStream,
  decryptAsf1,
  decryptAsf1ToChunks,
  encryptAsf1,
  encryptAsf1ToChunks,
  readAsf1Header,
  type Asf1DecryptOptions,
  type Asf1EncryptOptions,
  type Asf1Header,
  type KeyResolver,
} from './asf1.js';
export { Asf1Reader, bufferSource, fileSource, openAsf1File, openAsf1Reader, type Asf1ReaderOptions, type RandomAccessSource } from './asf1-reader.js';
export {
  createEnvelopeDecryptStream,
  createEnvelopeEncryptStream,
  createLocalKeyWrapper,
  decodeEnvelopeHeader,
  encodeEnvelopeHeader,
  envelopeDecrypt,
  envelopeEncrypt,
  generateDataKey,
  type DataKey,
  type EnvelopeOptions,
  type KeyWrapper,
  type WrappedKey,
} from './envelope.js';
export { generateX25519KeyPair, X25519_KEY_LENGTH, x25519PublicKey, x25519SharedSecret, type X25519KeyPair } from './x25519.js';
export {
  generateSealingKeyPair,
  HPKE_AEAD_ID,
  HPKE_KDF_ID,
  HPKE_KEM_ID,
  open as openSealed,
  parseSealedHeader,
  seal,
  SEALED_MAX_AAD_LENGTH,
  SEALED_MAX_PLAINTEXT_LENGTH,
  SEALED_PURPOSE_PATTERN,
  sealedInfo,
  sealedLength,
  sealingKeyId,
  SEALING_KEY_ID_LENGTH,
  type OpenOptions,
  type SealedHeader,
  type SealingKeyPair,
  type SealOptions,
} from './hpke.js';
