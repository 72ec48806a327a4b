// Public API of @airlock/crypto: AEAD and KDF helpers, ASF1, envelopes and HPKE sealing.
export { asBuffer, assertBytes, constantTimeEqual, randomBytes, zeroize } from './bytes.js';
export { AES_256_KEY_LENGTH, aesGcmDecrypt, aesGcmEncrypt, GCM_NONCE_LENGTH, GCM_TAG_LENGTH, hkdfSha256, hmacSha256 } from './aead.js';
