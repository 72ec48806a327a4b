// A crypto KeyWrapper backed by a KMS key: envelope encryption with customer-managed keys.
import { AirlockError } from '@airlock/common';
import type { KeyWrapper } from '@airlock/crypto';
import type { Kms } from './kms.js';

/**
 * Wraps data keys with `keyId` on the KMS: generateDataKey → GenerateDataKey, wrapKey → Encrypt,
 * unwrapKey → Decrypt (insisting that the blob belongs to the key recorded with it). A disabled or
 * deleted key makes unwrapKey fail with the KMS's error, which is the kill switch.
 */
export function createKmsKeyWrapper(kms: Kms, keyId: string): KeyWrapper {
  return {
    async generateDataKey(context) {
      const key = await kms.generateDataKey(keyId, context);
      return { plaintext: key.plaintext, wrapped: { keyId: key.keyArn, ciphertext: key.ciphertextBlob } };
    },
    async wrapKey(plaintext, context) {
      const out = await kms.encrypt(keyId, plaintext, context);
      return { keyId: out.keyArn, ciphertext: out.ciphertextBlob };
    },
    async unwrapKey(wrapped, context) {
      if (wrapped.keyId.length === 0) throw new AirlockError('KEY_UNWRAP_FAILED', 'wrapped key names no KMS key');
      const out = await kms.decrypt(wrapped.ciphertext, context, { keyId: wrapped.keyId });
      return out.plaintext;
    },
  };
}
