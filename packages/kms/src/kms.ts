// The Kms interface every Airlock component uses for keys; implemented over the AWS KMS protocol (and, later, Vault Transit).
import type { EncryptionContext } from '@airlock/crypto';

export type KmsKeyState = 'Enabled' | 'Disabled' | 'PendingDeletion' | 'PendingImport' | 'Unavailable' | 'Creating' | 'Updating';

export interface KmsKeyMetadata {
  readonly keyId: string;
  readonly arn: string;
  readonly state: KmsKeyState;
  readonly enabled: boolean;
  readonly description: string;
  readonly creationDate: Date | undefined;
  readonly deletionDate: Date | undefined;
  readonly keySpec: string;
  readonly keyUsage: string;
}

export interface KmsDataKey {
  /** The plaintext key. The caller zeroes it when done. */
  readonly plaintext: Buffer;
  /** The key wrapped by the KMS key: store this. */
  readonly ciphertextBlob: Buffer;
  /** ARN of the KMS key that wrapped it. */
  readonly keyArn: string;
}

export interface KmsAlias {
  readonly aliasName: string;
  readonly aliasArn: string;
  readonly targetKeyId: string | undefined;
}

export interface KmsRotationStatus {
  readonly enabled: boolean;
  readonly periodDays: number | undefined;
  readonly nextRotationDate: Date | undefined;
}

/**
 * Cryptographic use of customer-managed keys. Every call is checked by the KMS against the key's
 * current state, so a disabled key fails the next call (KMS_KEY_DISABLED). Errors are AirlockErrors
 * with KMS_* codes whatever the backend. Key identifiers may be key ids, key ARNs, alias names
 * (`alias/…`) or alias ARNs. A Vault Transit adapter maps these onto transit keys: generateDataKey →
 * `datakey/wrapped`+`plaintext`, encrypt/decrypt → `encrypt`/`decrypt` with the context as
 * `context`, reEncrypt → `rewrap`.
 */
export interface Kms {
  generateDataKey(keyId: string, context: EncryptionContext, options?: { readonly numberOfBytes?: number }): Promise<KmsDataKey>;
  encrypt(keyId: string, plaintext: Uint8Array, context: EncryptionContext): Promise<{ ciphertextBlob: Buffer; keyArn: string }>;
  /** Decrypts a blob; the blob names its own key. Pass `keyId` to insist on a particular key (KMS_INCORRECT_KEY otherwise). */
  decrypt(ciphertextBlob: Uint8Array, context: EncryptionContext, options?: { readonly keyId?: string }): Promise<{ plaintext: Buffer; keyArn: string }>;
  /** Moves a blob to `destinationKeyId`'s newest version (rotation re-wrapping) without exposing the plaintext to the caller. */
  reEncrypt(
    ciphertextBlob: Uint8Array,
    sourceContext: EncryptionContext,
    destinationKeyId: string,
    destinationContext: EncryptionContext,
  ): Promise<{ ciphertextBlob: Buffer; keyArn: string }>;
  describeKey(keyId: string): Promise<KmsKeyMetadata>;
}

/** Key lifecycle management: what `airlock keys …` uses. */
export interface KmsAdmin extends Kms {
  createKey(options?: { readonly description?: string }): Promise<KmsKeyMetadata>;
  listKeys(): Promise<Array<{ keyId: string; arn: string }>>;
  enableKey(keyId: string): Promise<void>;
  disableKey(keyId: string): Promise<void>;
  scheduleKeyDeletion(keyId: string, pendingWindowInDays?: number): Promise<{ deletionDate: Date | undefined }>;
  cancelKeyDeletion(keyId: string): Promise<void>;
  createAlias(aliasName: string, targetKeyId: string): Promise<void>;
  updateAlias(aliasName: string, targetKeyId: string): Promise<void>;
  deleteAlias(aliasName: string): Promise<void>;
  listAliases(keyId?: string): Promise<KmsAlias[]>;
  enableKeyRotation(keyId: string, periodDays?: number): Promise<void>;
  disableKeyRotation(keyId: string): Promise<void>;
  getKeyRotationStatus(keyId: string): Promise<KmsRotationStatus>;
  rotateKeyOnDemand(keyId: string): Promise<void>;
}
