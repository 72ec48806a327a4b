// The control plane's own key-encryption key: a local root key (0600 file, scrypt passphrase or environment) or a key on any AWS-KMS-protocol KMS.
import { AirlockError, type Logger } from '@airlock/common';
import { createLocalKeyWrapper, describeRootKeySource, hmacSha256, loadRootKey, resolveRootKeySource, type RootKeyOptions } from '@airlock/crypto';
import { createKmsKeyWrapper, type Kms } from '@airlock/kms';
import type { ControlPlaneKey } from './keyring.js';

export type ControlPlaneKeyOptions =
  | {
      /** Directory of the default root key file (`cp-root.key`) and passphrase salt (`cp-root.salt`). */
      readonly dir: string;
      /** @default a 0600 file in `dir`, created on first start */
      readonly root?: RootKeyOptions;
    }
  | {
      /** A KMS reachable over the AWS KMS protocol (a hosted control plane's cloud KMS). Never a data plane's. */
      readonly kms: Kms;
      /** Key id, ARN or alias of the control plane's KMS key. */
      readonly keyId: string;
    };

/** An opened control-plane key; `dispose` zeroes a local root key. */
export type OpenedControlPlaneKey = ControlPlaneKey & { dispose(): void };

/**
 * A public name for a local root key, derived from it: stored with every wrapped key, so that a
 * wrong key is reported as "wrapped by local:…, configured key is local:…" rather than as a
 * generic failure.
 */
function localKeyId(key: Uint8Array): string {
  return `local:${hmacSha256(key, Buffer.from('airlock/cp-root-key-id', 'utf8')).subarray(0, 8).toString('hex')}`;
}

/** Opens the control plane's key. Throws DB_KEY_INVALID naming the source when it cannot be loaded. */
export async function openControlPlaneKey(options: ControlPlaneKeyOptions, log: Logger, env: NodeJS.ProcessEnv = process.env): Promise<OpenedControlPlaneKey> {
  if ('kms' in options) {
    if (typeof options.keyId !== 'string' || options.keyId.length === 0) throw new AirlockError('CONFIG_INVALID', 'the control plane KMS key id is required', { details: { option: 'keyId' } });
    return { wrapper: createKmsKeyWrapper(options.kms, options.keyId), description: `KMS key ${options.keyId}`, dispose: () => undefined };
  }
  const source = resolveRootKeySource(options.dir, options.root, env, { fileName: 'cp-root.key', saltName: 'cp-root.salt' });
  const description = describeRootKeySource(source);
  let loaded;
  try {
    loaded = await loadRootKey(source, log);
  } catch (error) {
    const cause = AirlockError.from(error);
    throw new AirlockError('DB_KEY_INVALID', `The control-plane key could not be loaded from ${description}: ${cause.message}`, { cause, details: { keySource: description } });
  }
  const keyId = localKeyId(loaded.key);
  const wrapper = createLocalKeyWrapper({ keyId, key: loaded.key });
  loaded.key.fill(0);
  return { wrapper, description: `${description} (${keyId})`, dispose: () => wrapper.dispose() };
}
