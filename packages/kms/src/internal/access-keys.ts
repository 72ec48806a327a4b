// Access keys the embedded KMS issues and checks SigV4 signatures against; stored sealed in the record store.
import { randomBytes } from '@airlock/crypto';
import type { RecordStore } from './record-store.js';

export interface AccessKey {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly description: string;
  readonly createdAt: number;
}

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** AWS-shaped credentials: a 20-character id starting "AKIA" and a 40-character base64 secret. */
export function newAccessKey(description: string, now: number): AccessKey {
  const id = [...randomBytes(16)].map((b) => BASE32[b % 32]).join('');
  return {
    accessKeyId: `AKIA${id}`,
    secretAccessKey: randomBytes(30).toString('base64'),
    description,
    createdAt: now,
  };
}

export class AccessKeys {
  readonly #store: RecordStore;
  readonly #keys = new Map<string, AccessKey>();

  constructor(store: RecordStore) {
    this.#store = store;
    for (const key of store.all<AccessKey>('access-key')) this.#keys.set(key.accessKeyId, key);
  }

  get size(): number {
    return this.#keys.size;
  }

  secretFor(accessKeyId: string): string | undefined {
    return this.#keys.get(accessKeyId)?.secretAccessKey;
  }

  create(description: string, now: number): AccessKey {
    const key = newAccessKey(description, now);
    this.#store.transaction((tx) => tx.put('access-key', key.accessKeyId, key));
    this.#keys.set(key.accessKeyId, key);
    return key;
  }

  list(): Array<Omit<AccessKey, 'secretAccessKey'>> {
    return [...this.#keys.values()].map(({ secretAccessKey: _secret, ...rest }) => rest);
  }
}
