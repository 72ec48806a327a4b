// Root key sources from command-line flags, shared by the KMS's --root-key-* and the control plane's --cp-key-* flags.
import { AirlockError } from '@airlock/common';
import type { RootKeyOptions } from '@airlock/crypto';

/**
 * A root key source from three mutually exclusive flags (`--<prefix>-file`, `-env`, `-passphrase-env`).
 * A passphrase is read from the named environment variable, never from argv. The KMS's
 * --root-key-* flags and the control plane's --cp-key-* flags both go through here.
 */
export function rootKeySourceFromFlags(
  prefix: string,
  flags: { readonly file?: string | undefined; readonly env?: string | undefined; readonly passphraseEnv?: string | undefined },
  env: NodeJS.ProcessEnv = process.env,
): RootKeyOptions | undefined {
  const chosen = [flags.file, flags.env, flags.passphraseEnv].filter((f) => f !== undefined);
  if (chosen.length > 1) throw new AirlockError('CONFIG_INVALID', `choose one of --${prefix}-file, --${prefix}-env and --${prefix}-passphrase-env`);
  if (flags.file !== undefined) return { file: flags.file };
  if (flags.env !== undefined) return { env: flags.env };
  if (flags.passphraseEnv !== undefined) {
    const passphrase = env[flags.passphraseEnv];
    if (passphrase === undefined) throw new AirlockError('CONFIG_INVALID', `environment variable ${flags.passphraseEnv} is not set`);
    return { passphrase };
  }
  return undefined;
}
