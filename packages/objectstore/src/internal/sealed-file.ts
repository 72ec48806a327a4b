// Metadata files of the object store, sealed with AES-256-GCM and bound to their own path.
import { readFile } from 'node:fs/promises';
import { AirlockError, writeFileAtomic } from '@airlock/common';
import { aesGcmDecrypt, aesGcmEncrypt, randomBytes, zeroize } from '@airlock/crypto';

/**
 * Format: nonce (12) ‖ AES-256-GCM(metadata key, JSON, aad = "airlock objectstore meta v1\0" ‖ relative path).
 * Binding the path means a metadata file copied over another object's is rejected, not believed.
 */
export class SealedFiles {
  readonly #key: Buffer;

  constructor(key: Buffer) {
    this.#key = key;
  }

  #aad(relativePath: string): Buffer {
    return Buffer.from(`airlock objectstore meta v1\0${relativePath}`, 'utf8');
  }

  seal(relativePath: string, value: unknown): Buffer {
    const nonce = randomBytes(12);
    const json = Buffer.from(JSON.stringify(value), 'utf8');
    try {
      return Buffer.concat([nonce, aesGcmEncrypt(this.#key, nonce, json, this.#aad(relativePath))]);
    } finally {
      zeroize(json);
    }
  }

  open<T>(relativePath: string, bytes: Buffer): T {
    if (bytes.byteLength < 28) throw new AirlockError('CIPHERTEXT_MALFORMED', `metadata file ${relativePath} is truncated`);
    let json: Buffer;
    try {
      json = aesGcmDecrypt(this.#key, bytes.subarray(0, 12), bytes.subarray(12), this.#aad(relativePath));
    } catch {
      throw new AirlockError('CIPHERTEXT_AUTH_FAILED', `metadata file ${relativePath} failed authentication`);
    }
    try {
      return JSON.parse(json.toString('utf8')) as T;
    } finally {
      zeroize(json);
    }
  }

  async write(root: string, relativePath: string, value: unknown): Promise<void> {
    await writeFileAtomic(`${root}/${relativePath}`, this.seal(relativePath, value), { mode: 0o600 });
  }

  async read<T>(root: string, relativePath: string): Promise<T> {
    let bytes: Buffer;
    try {
      bytes = await readFile(`${root}/${relativePath}`);
    } catch (error) {
      throw AirlockError.from(error);
    }
    return this.open<T>(relativePath, bytes);
  }

  dispose(): void {
    zeroize(this.#key);
  }
}
