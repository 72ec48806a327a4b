// The data plane's long-lived sealing keys (identity Ed25519, I/O and secrets X25519): created on first start, kept on disk only sealed under the data-plane KMS key, signed into the statement sent at Register.
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { chmod, mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { AirlockError, writeFileAtomic, type Logger } from '@airlock/common';
import { createSealedOpener, generateX25519KeyPair, sealingKeyId, x25519PublicKey, zeroize, type SealedOpener } from '@airlock/crypto';
import { identityFingerprint, signDataPlaneKeys, type DataPlaneKeys } from '@airlock/protocol';
import type { DataPlaneKeyVault } from './key-vault.js';

/** The file, under the agent's state directory, that holds the sealing keys (sealed). */
export const SEALING_KEYS_FILE = 'sealing-keys.json';
const FILE_VERSION = 1;
/** Layout of the sealed plaintext: a version byte, then the three 32-byte private keys. */
const BLOB_VERSION = 1;
const KEY_LENGTH = 32;
const BLOB_LENGTH = 1 + 3 * KEY_LENGTH;
/** PKCS#8 of an Ed25519 key is this fixed prefix then the 32-byte seed (RFC 8410 §7). */
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

/** A public sealing key as clients see it. */
export interface SealingPublicKeyInfo {
  readonly publicKey: Buffer;
  readonly keyId: string;
}

/**
 * The data plane's sealing keys in memory. The private keys never leave this object: it signs the
 * statement and opens payloads sealed to the I/O key.
 */
export interface DataPlaneSealingKeys {
  /** `sha256:<64 hex>` over the identity key's DER SPKI: what clients pin. */
  readonly identityFingerprint: string;
  /** The identity public key as DER SPKI. */
  readonly identityPublicKey: Buffer;
  readonly io: SealingPublicKeyInfo;
  readonly secrets: SealingPublicKeyInfo;
  /** The signed statement of the keys for `cluster`, sent in RegisterRequest.keys. */
  sign(cluster: string, signedAt?: Date): DataPlaneKeys;
  /**
   * Opens a message sealed to the I/O key (HPKE, `purpose`, `aad`). Throws SEALED_WRONG_RECIPIENT,
   * CIPHERTEXT_AUTH_FAILED or CIPHERTEXT_MALFORMED as `open` of @airlock/crypto does.
   */
  openIo(sealed: Uint8Array, purpose: string, aad: Uint8Array): Promise<Buffer>;
  /** Zeroes the private keys held in buffers; the object is unusable afterwards. */
  destroy(): void;
}

interface SealingKeysFile {
  version: number;
  cluster: string;
  /** The three private keys, sealed by the key vault (envelope encryption, ASF1) under `keyId`. */
  sealedKeys: { keyId: string; ciphertext: string };
  /** Public facts, for operators reading the file; checked against the opened keys. */
  identityFingerprint: string;
  ioKeyId: string;
  secretsKeyId: string;
  createdAt: string;
}

/** Binds the sealed keys to their purpose and cluster: a blob copied from another file or cluster does not open. */
function sealingContext(clusterName: string): Record<string, string> {
  return { purpose: 'airlock/data-plane-sealing-keys', cluster: clusterName };
}

export function sealingKeysPath(stateDir: string): string {
  return join(stateDir, SEALING_KEYS_FILE);
}

function corrupt(path: string, problem: string, cause?: unknown): AirlockError {
  // Never regenerate silently: new keys mean a new pin, and every client would refuse the data plane.
  return new AirlockError('CONFIG_INVALID', `The data-plane sealing keys file ${problem}; restore it from a backup, or remove it to create new keys (clients must then pin the new identity)`, {
    details: { path },
    ...(cause === undefined ? {} : { cause }),
  });
}

function ed25519FromSeed(seed: Uint8Array): KeyObject {
  const der = Buffer.concat([ED25519_PKCS8_PREFIX, seed]);
  try {
    return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  } finally {
    zeroize(der);
  }
}

function ed25519Seed(key: KeyObject): Buffer {
  const der = key.export({ format: 'der', type: 'pkcs8' });
  const seed = Buffer.from(der.subarray(der.length - KEY_LENGTH));
  zeroize(der);
  return seed;
}

/** Builds the in-memory keys from the three raw private keys (copied; the caller zeroes its own). */
function keysFrom(identitySeed: Uint8Array, ioPrivate: Uint8Array, secretsPrivate: Uint8Array): DataPlaneSealingKeys {
  const identity = ed25519FromSeed(identitySeed);
  const identityPublicKey = createPublicKey(identity).export({ type: 'spki', format: 'der' });
  const ioKey = Buffer.from(ioPrivate);
  const secretsKey = Buffer.from(secretsPrivate);
  const ioPublic = x25519PublicKey(ioKey);
  const secretsPublic = x25519PublicKey(secretsKey);
  let destroyed = false;
  let ioOpener: Promise<SealedOpener> | undefined;
  const alive = (): void => {
    if (destroyed) throw new AirlockError('UNAVAILABLE', 'The data-plane sealing keys were destroyed');
  };
  return Object.freeze({
    identityFingerprint: identityFingerprint(identityPublicKey),
    identityPublicKey,
    io: Object.freeze({ publicKey: ioPublic, keyId: sealingKeyId(ioPublic) }),
    secrets: Object.freeze({ publicKey: secretsPublic, keyId: sealingKeyId(secretsPublic) }),
    sign(cluster: string, signedAt?: Date) {
      alive();
      return signDataPlaneKeys({ cluster, ioPublicKey: ioPublic, secretsPublicKey: secretsPublic, identityPrivateKey: identity, ...(signedAt === undefined ? {} : { signedAt }) });
    },
    async openIo(sealed: Uint8Array, purpose: string, aad: Uint8Array) {
      alive();
      // Imported once, on first use: importing costs more than opening a small message.
      ioOpener ??= createSealedOpener(ioKey);
      return (await ioOpener).open({ purpose, sealed, aad });
    },
    destroy() {
      destroyed = true;
      zeroize(ioKey, secretsKey);
      void ioOpener?.then((opener) => opener.destroy(), () => undefined);
      ioOpener = undefined;
    },
  });
}

/** Fresh keys, never seen by anything but this process. */
function generateKeys(): { blob: Buffer; keys: DataPlaneSealingKeys } {
  const identitySeed = ed25519Seed(generateKeyPairSync('ed25519').privateKey);
  const io = generateX25519KeyPair().privateKey;
  const secrets = generateX25519KeyPair().privateKey;
  const blob = Buffer.concat([Buffer.from([BLOB_VERSION]), identitySeed, io, secrets]);
  try {
    return { blob, keys: keysFrom(identitySeed, io, secrets) };
  } finally {
    zeroize(identitySeed, io, secrets);
  }
}

export interface LoadSealingKeysOptions {
  /** Seals and opens the keys (the same DataPlaneKeyVault as the agent's private key). A disabled key fails the load with the KMS's code. */
  readonly vault: DataPlaneKeyVault;
  readonly log?: Logger;
}

/**
 * Loads the sealing keys of `clusterName` from `stateDir`, or creates and stores them (sealed,
 * atomically, mode 0600) when the directory holds none. A file that exists but cannot be opened is
 * an error, never a reason to make new keys: a disabled KMS key fails with its KMS code
 * (KMS_KEY_DISABLED, …), anything unreadable with CONFIG_INVALID.
 */
export async function loadOrCreateSealingKeys(stateDir: string, clusterName: string, options: LoadSealingKeysOptions): Promise<{ keys: DataPlaneSealingKeys; created: boolean }> {
  const path = sealingKeysPath(stateDir);
  let text: string | undefined;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw AirlockError.from(error);
  }
  if (text === undefined) {
    await mkdir(stateDir, { recursive: true, mode: 0o700 });
    const { blob, keys } = generateKeys();
    try {
      const sealed = await options.vault.seal(blob, sealingContext(clusterName));
      const content: SealingKeysFile = {
        version: FILE_VERSION,
        cluster: clusterName,
        sealedKeys: { keyId: options.vault.keyId, ciphertext: sealed.toString('base64') },
        identityFingerprint: keys.identityFingerprint,
        ioKeyId: keys.io.keyId,
        secretsKeyId: keys.secrets.keyId,
        createdAt: new Date().toISOString(),
      };
      await writeFileAtomic(path, `${JSON.stringify(content, null, 2)}\n`, { mode: 0o600 });
    } catch (error) {
      keys.destroy();
      throw AirlockError.from(error);
    } finally {
      zeroize(blob);
    }
    options.log?.info(
      { event: 'agent.sealing_keys_created', cluster: clusterName, identityFingerprint: keys.identityFingerprint, ioKeyId: keys.io.keyId, secretsKeyId: keys.secrets.keyId, kmsKeyId: options.vault.keyId },
      'created the data-plane sealing keys',
    );
    return { keys, created: true };
  }

  const mode = (await stat(path)).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    options.log?.warn({ event: 'agent.sealing_keys_mode_fixed', path, mode: mode.toString(8) }, 'sealing keys file was readable by others; mode set to 0600');
    await chmod(path, 0o600);
  }
  let parsed: Partial<SealingKeysFile>;
  try {
    parsed = JSON.parse(text) as Partial<SealingKeysFile>;
  } catch (error) {
    throw corrupt(path, 'is not valid JSON', error);
  }
  if (parsed === null || typeof parsed !== 'object' || parsed.version !== FILE_VERSION || typeof parsed.sealedKeys?.ciphertext !== 'string') {
    throw corrupt(path, 'has an unknown format');
  }
  if (parsed.cluster !== clusterName) {
    throw new AirlockError('CONFIG_INVALID', `The data-plane sealing keys in ${path} belong to another cluster`, { details: { path, cluster: clusterName } });
  }
  const blob = await options.vault.open(Buffer.from(parsed.sealedKeys.ciphertext, 'base64'), sealingContext(clusterName), "the data plane's sealing-key set");
  let keys: DataPlaneSealingKeys;
  try {
    if (blob.length !== BLOB_LENGTH || blob[0] !== BLOB_VERSION) throw corrupt(path, 'holds keys in an unknown layout');
    keys = keysFrom(blob.subarray(1, 33), blob.subarray(33, 65), blob.subarray(65, 97));
  } finally {
    zeroize(blob);
  }
  if (keys.identityFingerprint !== parsed.identityFingerprint || keys.io.keyId !== parsed.ioKeyId || keys.secrets.keyId !== parsed.secretsKeyId) {
    keys.destroy();
    throw corrupt(path, 'names keys other than the ones it holds');
  }
  return { keys, created: false };
}
