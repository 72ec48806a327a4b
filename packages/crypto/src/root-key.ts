// Local root keys (the embedded KMS's, the control plane's): from a 0600 file (default, created on first start), a passphrase (scrypt) or the environment.
import { constants } from 'node:fs';
import { open, readFile, stat } from 'node:fs/promises';
import { scrypt as scryptCallback } from 'node:crypto';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { AirlockError, type Logger } from '@airlock/common';
import { randomBytes } from './bytes.js';

const scrypt = promisify(scryptCallback) as (password: string, salt: Buffer, keylen: number, options: object) => Promise<Buffer>;

/** How a user names a root key: a file, a passphrase (the salt file sits in the data directory) or an environment variable. */
export type RootKeyOptions =
  | { readonly file: string }
  | { readonly passphrase: string }
  | { readonly env: string };

/** A root key source resolved against a data directory and the environment. */
export type RootKeySource =
  | { readonly kind: 'file'; readonly path: string }
  | { readonly kind: 'passphrase'; readonly passphrase: string; readonly saltPath: string }
  | { readonly kind: 'env'; readonly variable: string; readonly value: string | undefined };

/** scrypt cost: N = 2^17, r = 8, p = 1 (OWASP's minimum for scrypt is N = 2^17). About 128 MiB and 0.3 s. */
const SCRYPT = { N: 2 ** 17, r: 8, p: 1, maxmem: 256 * 1024 * 1024 } as const;

export interface LoadedRootKey {
  readonly key: Buffer;
  /** Where it came from, for logs; never the key itself. */
  readonly description: string;
}

function decodeKey(text: string, where: string): Buffer {
  const key = Buffer.from(text.trim(), 'base64');
  if (key.byteLength !== 32 || key.toString('base64') !== text.trim()) {
    throw new AirlockError('CONFIG_INVALID', `root key in ${where} must be 32 bytes, base64-encoded`, { details: { option: 'rootKey' } });
  }
  return key;
}

/** Creates a file with `content` only if it does not exist, with mode 0600, fsynced. Returns false if it existed. */
async function createExclusive(path: string, content: string): Promise<boolean> {
  let handle;
  try {
    handle = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw AirlockError.from(error);
  }
  try {
    await handle.writeFile(content);
    await handle.sync();
  } finally {
    await handle.close();
  }
  return true;
}

/**
 * Resolves where a root key comes from. Without options it is `<dir>/<fileName>`, created on first
 * use; a passphrase keeps its scrypt salt beside it as `<dir>/<saltName>`.
 */
export function resolveRootKeySource(
  dir: string,
  root: RootKeyOptions | undefined,
  env: NodeJS.ProcessEnv,
  names: { readonly fileName: string; readonly saltName: string } = { fileName: 'root.key', saltName: 'root.salt' },
): RootKeySource {
  if (root === undefined) return { kind: 'file', path: join(dir, names.fileName) };
  if ('file' in root) return { kind: 'file', path: root.file };
  if ('passphrase' in root) return { kind: 'passphrase', passphrase: root.passphrase, saltPath: join(dir, names.saltName) };
  return { kind: 'env', variable: root.env, value: env[root.env] };
}

/** A short, secret-free description of a source for error messages and logs. */
export function describeRootKeySource(source: RootKeySource): string {
  switch (source.kind) {
    case 'file':
      return `root key file ${source.path}`;
    case 'passphrase':
      return `root key passphrase (scrypt, salt ${source.saltPath})`;
    case 'env':
      return `root key in environment variable ${source.variable}`;
  }
}

/** Loads (or, for a missing default file, creates) a 32-byte root key. The caller zeroes `key` when done. */
export async function loadRootKey(source: RootKeySource, log: Logger): Promise<LoadedRootKey> {
  switch (source.kind) {
    case 'file': {
      if (await createExclusive(source.path, `${randomBytes(32).toString('base64')}\n`)) {
        log.warn(
          { file: source.path },
          'created a new root key file; anyone who can read it can read every key under it. Keep it 0600 and back it up, or use a passphrase or environment root key',
        );
      }
      const info = await stat(source.path).catch((error: unknown) => {
        throw AirlockError.from(error);
      });
      if ((info.mode & 0o077) !== 0) {
        throw new AirlockError('PERMISSION_DENIED', `root key file ${source.path} must not be readable by group or others (chmod 600)`, {
          details: { option: 'rootKey' },
        });
      }
      return { key: decodeKey(await readFile(source.path, 'utf8'), source.path), description: `file ${source.path}` };
    }
    case 'passphrase': {
      if (source.passphrase.length < 12) {
        throw new AirlockError('CONFIG_INVALID', 'root key passphrase must be at least 12 characters', { details: { option: 'rootKey' } });
      }
      await createExclusive(source.saltPath, `${randomBytes(32).toString('base64')}\n`);
      const salt = Buffer.from((await readFile(source.saltPath, 'utf8')).trim(), 'base64');
      if (salt.byteLength !== 32) throw new AirlockError('CONFIG_INVALID', `salt file ${source.saltPath} is damaged`, { details: { option: 'rootKey' } });
      return { key: await scrypt(source.passphrase, salt, 32, SCRYPT), description: 'passphrase (scrypt)' };
    }
    case 'env': {
      if (source.value === undefined || source.value === '') {
        throw new AirlockError('CONFIG_INVALID', `environment variable ${source.variable} is not set`, { details: { option: 'rootKey' } });
      }
      return { key: decodeKey(source.value, `$${source.variable}`), description: `environment variable ${source.variable}` };
    }
  }
}
