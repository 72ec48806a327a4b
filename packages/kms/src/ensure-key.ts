// Finds a component's own KMS key by alias, creating the key and the alias on first use (the object store's key, the data plane's key).
import { AirlockError } from '@airlock/common';
import type { Kms, KmsAdmin } from './kms.js';

/**
 * Resolves `keyId` to its key ARN. When it is an alias that does not exist and `kms` can manage
 * keys, a new symmetric key is created with `description` and the alias is pointed at it; any
 * other failure (a disabled key included) is the caller's to report.
 */
export async function ensureKey(kms: Kms | KmsAdmin, keyId: string, description: string): Promise<{ readonly arn: string; readonly created: boolean }> {
  try {
    return { arn: (await kms.describeKey(keyId)).arn, created: false };
  } catch (error) {
    const e = AirlockError.from(error);
    const admin = kms as Partial<KmsAdmin>;
    if (e.code !== 'KMS_KEY_NOT_FOUND' || !keyId.startsWith('alias/') || admin.createKey === undefined || admin.createAlias === undefined) throw e;
    const key = await admin.createKey({ description });
    await admin.createAlias(keyId, key.keyId);
    return { arn: key.arn, created: true };
  }
}
