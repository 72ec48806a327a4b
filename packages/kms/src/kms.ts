// The Kms interface every Airlock component uses for keys; implemented over the AWS KMS protocol (and, later, Vault Transit).
import type { AirlockError } from '@airlock/common';
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

/** A key's state as key events report it: Deleted once its deletion completed. */
export type KmsKeyEventState = 'Enabled' | 'Disabled' | 'PendingDeletion' | 'Deleted';

/** One key-state change published by the embedded KMS (docs/kms.md, "Key-state events"). */
export interface KmsKeyEvent {
  /** Increases by one per change published by this server run (epoch). */
  readonly seq: number;
  readonly keyId: string;
  readonly keyArn: string;
  readonly state: KmsKeyEventState;
  /** The key's newest version after the change. */
  readonly version: number;
  readonly change: 'created' | 'enabled' | 'disabled' | 'pending-deletion' | 'deletion-cancelled' | 'deleted' | 'rotated';
}

/** The opening line of a key-event stream: every subscribed key's state when it opened. */
export interface KmsKeyEventSnapshot {
  /** Identifies the server run; sequence numbers restart with a new epoch. */
  readonly epoch: string;
  /** The last sequence number published before the snapshot. */
  readonly seq: number;
  /** How often the server sends a heartbeat. */
  readonly heartbeatMs: number;
  readonly keys: ReadonlyArray<{ readonly keyId: string; readonly keyArn: string; readonly state: KmsKeyEventState; readonly version: number }>;
}

export interface KmsKeyEventHandlers {
  onSnapshot(snapshot: KmsKeyEventSnapshot): void;
  onEvent(event: KmsKeyEvent): void;
  /** `seq` is the last sequence number the server had published when it sent the heartbeat. */
  onHeartbeat(seq: number): void;
  /**
   * The stream ended (closed by either side, broken, or refused). It is called exactly once; with
   * KMS_UNSUPPORTED_OPERATION when the KMS has no key-event extension (AWS KMS, other KMSs).
   */
  onClose(error: AirlockError | undefined): void;
}

/** An open key-event stream. */
export interface KmsKeyEventSubscription {
  close(): void;
}

/**
 * An Airlock extension of the embedded KMS: a SigV4-signed stream of key-state changes with
 * heartbeats. `keyIds` limits it to some keys (resolved when it opens); by default every key.
 */
export interface KmsKeyEventSource {
  subscribeKeyEvents(handlers: KmsKeyEventHandlers, options?: { readonly keyIds?: readonly string[] }): KmsKeyEventSubscription;
}

/** Whether a Kms client can open key-event streams (the AWS-protocol adapter can; against AWS KMS the stream is refused). */
export function hasKeyEvents<K extends Kms>(kms: K): kms is K & KmsKeyEventSource {
  return typeof (kms as Partial<KmsKeyEventSource>).subscribeKeyEvents === 'function';
}
