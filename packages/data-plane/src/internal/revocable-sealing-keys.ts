// The data plane's sealing keys held only while their KMS key is Enabled: zeroed the moment a key-state event says otherwise, loaded again when it is Enabled again.
import { AirlockError, type Logger } from '@airlock/common';
import type { CachingKms, Kms, KmsKeyEventState } from '@airlock/kms';
import type { DataPlaneSealingKeys } from './sealing-keys.js';

/** Without live key events, the key's state is asked of the KMS at most this often: the kill-switch bound. */
const STATE_CHECK_MS = 1000;

export interface RevocableSealingKeysOptions {
  /** The keys as loaded at start. */
  readonly keys: DataPlaneSealingKeys;
  /** Loads them again (opening the sealed file through the KMS): after the key is re-enabled. */
  readonly reload: () => Promise<DataPlaneSealingKeys>;
  /** The caching client whose key-event stream reports the key's state. */
  readonly kms: Kms & CachingKms;
  /** The KMS key (ARN) that seals the keys. */
  readonly keyArn: string;
  readonly log?: Logger;
  /** @default Date.now */
  readonly now?: () => number;
}

const REFUSAL: Readonly<Record<string, 'KMS_KEY_DISABLED' | 'KMS_KEY_PENDING_DELETION' | 'KMS_KEY_NOT_FOUND' | 'KMS_INVALID_STATE'>> = {
  Disabled: 'KMS_KEY_DISABLED',
  PendingDeletion: 'KMS_KEY_PENDING_DELETION',
  Deleted: 'KMS_KEY_NOT_FOUND',
};

/**
 * Sealing keys that follow their KMS key (DESIGN §4, the kill switch): while the key-event stream is
 * live, an event that the key left Enabled zeroes the private keys at once; without a live stream,
 * each use asks the KMS for the key's state at most once a second (DescribeKey), so revocation never
 * takes longer than the 1 s bound. While revoked, `openIo` and `sign` fail with the KMS's code
 * (KMS_KEY_DISABLED, …); once the key is Enabled again the keys are loaded again through the KMS.
 * The public facts (fingerprint, public keys) never change.
 */
export function createRevocableSealingKeys(options: RevocableSealingKeysOptions): DataPlaneSealingKeys & { readonly revoked: boolean } {
  const { kms, keyArn, log } = options;
  const now = options.now ?? Date.now;
  const facts = options.keys;
  let current: DataPlaneSealingKeys | undefined = options.keys;
  let refusedState: KmsKeyEventState = 'Enabled';
  let reloading: Promise<void> | undefined;
  let checkedAt = 0;
  let checking: Promise<void> | undefined;
  let destroyed = false;

  const revoke = (state: KmsKeyEventState): void => {
    refusedState = state;
    if (current === undefined) return;
    current.destroy();
    current = undefined;
    log?.warn({ event: 'agent.sealing_keys_revoked', keyArn, keyState: state }, 'the data-plane KMS key left Enabled: the sealing keys are zeroed until it is enabled again');
  };
  const reload = (): Promise<void> => {
    reloading ??= options
      .reload()
      .then((keys) => {
        if (destroyed || refusedState !== 'Enabled') {
          keys.destroy();
          return;
        }
        current?.destroy();
        current = keys;
        log?.info({ event: 'agent.sealing_keys_restored', keyArn }, 'the data-plane KMS key is Enabled again: the sealing keys are loaded');
      })
      .catch((error: unknown) => {
        log?.warn({ event: 'agent.sealing_keys_reload_failed', keyArn, code: AirlockError.from(error).code }, 'the sealing keys could not be loaded again');
      })
      .finally(() => {
        reloading = undefined;
      });
    return reloading;
  };
  const onState = (state: KmsKeyEventState): void => {
    if (destroyed) return;
    if (state !== 'Enabled') revoke(state);
    else {
      refusedState = 'Enabled';
      if (current === undefined) void reload();
    }
  };
  const unwatch = kms.watchKey(keyArn, onState);

  const refusal = (): AirlockError => {
    if (destroyed) return new AirlockError('UNAVAILABLE', 'The data-plane sealing keys were destroyed');
    const code = REFUSAL[refusedState] ?? 'KMS_INVALID_STATE';
    return new AirlockError(code, `The data-plane sealing keys are unavailable: their KMS key ${keyArn} is ${refusedState}`, { details: { keyArn, keyState: refusedState } });
  };
  /** The keys, if their KMS key is Enabled as far as the stream (or, without it, a ≤ 1 s old DescribeKey) knows. */
  const usable = async (): Promise<DataPlaneSealingKeys> => {
    if (!destroyed && kms.keyEventStatus().state !== 'live' && now() - checkedAt >= STATE_CHECK_MS) {
      const started = now();
      checking ??= kms
        .describeKey(keyArn)
        .then(
          (metadata) => {
            checkedAt = started;
            onState(metadata.state === 'Enabled' ? 'Enabled' : metadata.state === 'PendingDeletion' ? 'PendingDeletion' : 'Disabled');
          },
          (error: unknown) => {
            // A key that no longer exists is revoked; a KMS that cannot answer leaves the keys to the 1 s bound of the next check.
            if (AirlockError.is(error, 'KMS_KEY_NOT_FOUND')) {
              checkedAt = started;
              onState('Deleted');
            } else throw error;
          },
        )
        .finally(() => {
          checking = undefined;
        });
      await checking;
    }
    if (current === undefined && refusedState === 'Enabled' && !destroyed) await reload();
    if (current === undefined) throw refusal();
    return current;
  };

  return {
    identityFingerprint: facts.identityFingerprint,
    identityPublicKey: facts.identityPublicKey,
    io: facts.io,
    secrets: facts.secrets,
    get revoked() {
      return current === undefined;
    },
    sign(cluster, signedAt) {
      if (current === undefined) throw refusal();
      return current.sign(cluster, signedAt);
    },
    async openIo(sealed, purpose, aad) {
      return (await usable()).openIo(sealed, purpose, aad);
    },
    destroy() {
      destroyed = true;
      unwatch();
      current?.destroy();
      current = undefined;
    },
  };
}
