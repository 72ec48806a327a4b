// The data plane's key vault: secrets the agent keeps on disk (its private key now, its sealing keys next) sealed under a data-plane KMS key.
import { AirlockError } from '@airlock/common';
import { envelopeDecrypt, envelopeEncrypt, type EncryptionContext, type KeyWrapper } from '@airlock/crypto';
import { createKmsKeyWrapper, ensureKey, type Kms, type KmsAdmin } from '@airlock/kms';

/** The data plane's own KMS key, created on first start when it is an alias that does not exist. */
export const DEFAULT_DATA_PLANE_KEY_ID = 'alias/airlock/data-plane';

/**
 * Seals and opens small secrets under one KMS key (envelope encryption: a fresh data key per value,
 * wrapped by the KMS key, ASF1 with the context as associated data). Opening needs the KMS key to be
 * enabled, which is the kill switch: a disabled key stops whatever needs the secret.
 */
export interface DataPlaneKeyVault {
  /** The KMS key as configured (alias, id or ARN), for messages. */
  readonly keyId: string;
  seal(plaintext: Uint8Array, context: EncryptionContext): Promise<Buffer>;
  /**
   * Opens a sealed value. When the KMS refuses, the error keeps the KMS's code (KMS_KEY_DISABLED,
   * KMS_KEY_PENDING_DELETION, KMS_KEY_NOT_FOUND, …) and its message names `what` (e.g. "the agent's
   * private key"), the key and its state.
   */
  open(sealed: Uint8Array, context: EncryptionContext, what: string): Promise<Buffer>;
}

/** Codes with which a KMS refuses a key for what it is (as opposed to a tampered blob). */
const KEY_STATE_CODES = new Set(['KMS_KEY_DISABLED', 'KMS_KEY_PENDING_DELETION', 'KMS_KEY_NOT_FOUND', 'KMS_INVALID_STATE']);

function remedy(state: string | undefined, keyId: string): string {
  switch (state) {
    case 'Disabled':
      return `enable the key (\`aws kms enable-key --key-id ${keyId}\`) and start again`;
    case 'PendingDeletion':
      return `cancel its deletion (\`aws kms cancel-key-deletion --key-id ${keyId}\`), enable it, and start again`;
    case undefined:
      return 'the key no longer exists, so this secret cannot be recovered';
    default:
      return 'wait until the key is Enabled and start again';
  }
}

/**
 * A vault over `keyId` on `kms`. `describe` supplies the key's ARN and state for error messages
 * (a KMS that cannot describe the key leaves them out).
 */
export function createKeyVault(options: {
  readonly keyId: string;
  readonly wrapper: KeyWrapper;
  readonly describe?: () => Promise<{ arn: string; state: string } | undefined>;
}): DataPlaneKeyVault {
  const { keyId, wrapper } = options;
  return {
    keyId,
    seal: (plaintext, context) => envelopeEncrypt(plaintext, { wrapper, context }),
    async open(sealed, context, what) {
      try {
        return await envelopeDecrypt(sealed, { wrapper, context });
      } catch (error) {
        const e = AirlockError.from(error);
        if (!KEY_STATE_CODES.has(e.code)) {
          throw new AirlockError(e.code, `${what} could not be opened with KMS key ${keyId}: ${e.message}`, { details: { keyId }, cause: error });
        }
        const described = await options.describe?.().catch(() => undefined);
        const state = e.code === 'KMS_KEY_NOT_FOUND' ? undefined : (described?.state ?? e.code.replace(/^KMS_KEY_/, '').toLowerCase());
        const named = described === undefined || described.arn === keyId ? keyId : `${keyId} (${described.arn})`;
        throw new AirlockError(
          e.code,
          `${what} is sealed under KMS key ${named}, which is ${state ?? 'not found'}: ${remedy(state, keyId)}`,
          { details: { keyId, ...(described === undefined ? {} : { keyArn: described.arn }), keyState: state ?? 'NotFound' }, cause: error },
        );
      }
    },
  };
}

/**
 * The vault over a KMS key reached through the `Kms` client (the embedded KMS or any AWS-KMS
 * compatible one). With `create`, a missing alias is created with a new key first.
 */
export async function openKmsKeyVault(kms: Kms | KmsAdmin, keyId: string = DEFAULT_DATA_PLANE_KEY_ID, options: { readonly create?: boolean } = {}): Promise<DataPlaneKeyVault & { readonly keyArn: string | undefined; readonly created: boolean }> {
  let keyArn: string | undefined;
  let created = false;
  if (options.create === true) {
    try {
      ({ arn: keyArn, created } = await ensureKey(kms, keyId, 'Airlock data plane: the agent\'s private key and sealing keys'));
    } catch (error) {
      // A disabled key is reported when something sealed under it is opened, naming what and why.
      if (!KEY_STATE_CODES.has(AirlockError.from(error).code)) throw error;
    }
  }
  const vault = createKeyVault({
    keyId,
    wrapper: createKmsKeyWrapper(kms, keyId),
    describe: async () => {
      const metadata = await kms.describeKey(keyId);
      return { arn: metadata.arn, state: metadata.state };
    },
  });
  return { ...vault, keyArn, created };
}
