// A short-lived cache of decrypted data keys that never outlives the kill-switch bound (1 second).
import { createHash } from 'node:crypto';
import { configCheck, freezeConfig, type DeepReadonly } from '@airlock/common';
import { encodeEncryptionContext, zeroize, type EncryptionContext } from '@airlock/crypto';
import type { Kms } from './kms.js';

/** DESIGN §4: disabling a key cuts off its data within 1 second, so no cache entry may live longer. */
export const KILL_SWITCH_BOUND_MS = 1000;

export interface DataKeyCacheOptions {
  /** How long a decrypted data key may be reused, at most 1000 ms. @default 1000 */
  readonly ttlMs?: number;
  /** Most entries kept; the oldest go first. @default 1000 */
  readonly maxEntries?: number;
  /** Clock, for tests. @default Date.now */
  readonly now?: () => number;
}

export type ResolvedDataKeyCacheConfig = DeepReadonly<{ ttlMs: number; maxEntries: number; now: () => number }>;

export function resolveDataKeyCacheConfig(options: DataKeyCacheOptions = {}): ResolvedDataKeyCacheConfig {
  return freezeConfig({
    ttlMs: configCheck.integer('dataKeyCache.ttlMs', options.ttlMs ?? KILL_SWITCH_BOUND_MS, 0, KILL_SWITCH_BOUND_MS),
    maxEntries: configCheck.integer('dataKeyCache.maxEntries', options.maxEntries ?? 1000, 1, 1_000_000),
    now: options.now ?? Date.now,
  });
}

interface Entry {
  readonly plaintext: Buffer;
  readonly keyArn: string;
  readonly expires: number;
}

export interface DataKeyCacheStats {
  hits: number;
  misses: number;
}

/**
 * Wraps a Kms so that `decrypt` of the same blob under the same context within `ttlMs` is served
 * from memory. Only decrypt is cached: generateDataKey and encrypt always reach the KMS. Callers
 * get their own copy of each key, so zeroing it never damages the cache; expired entries are zeroed.
 * Because an entry lives at most 1 s, a DisableKey takes effect within the kill-switch bound.
 */
export function createCachingKms<K extends Kms>(kms: K, options: DataKeyCacheOptions = {}): K & { readonly stats: DataKeyCacheStats; clear(): void } {
  const config = resolveDataKeyCacheConfig(options);
  const entries = new Map<string, Entry>();
  // Concurrent misses for the same blob share one KMS call (no thundering herd when an entry expires).
  const inFlight = new Map<string, Promise<{ plaintext: Buffer; keyArn: string }>>();
  const stats: DataKeyCacheStats = { hits: 0, misses: 0 };
  const evict = (key: string, entry: Entry): void => {
    zeroize(entry.plaintext);
    entries.delete(key);
  };
  const sweep = (now: number): void => {
    for (const [key, entry] of entries) {
      if (entry.expires <= now) evict(key, entry);
    }
  };
  const cacheKey = (blob: Uint8Array, context: EncryptionContext, keyId: string | undefined): string =>
    createHash('sha256').update(blob).update(encodeEncryptionContext(context)).update(keyId ?? '').digest('base64');

  const cached: Kms = {
    generateDataKey: (...args) => kms.generateDataKey(...args),
    encrypt: (...args) => kms.encrypt(...args),
    reEncrypt: (...args) => kms.reEncrypt(...args),
    describeKey: (...args) => kms.describeKey(...args),
    async decrypt(ciphertextBlob, context, opts = {}) {
      const now = config.now();
      const key = cacheKey(ciphertextBlob, context, opts.keyId);
      const hit = entries.get(key);
      if (hit !== undefined && hit.expires > now) {
        stats.hits++;
        return { plaintext: Buffer.from(hit.plaintext), keyArn: hit.keyArn };
      }
      const pending = inFlight.get(key);
      if (pending !== undefined) {
        stats.hits++;
        const shared = await pending;
        return { plaintext: Buffer.from(shared.plaintext), keyArn: shared.keyArn };
      }
      stats.misses++;
      const request = kms.decrypt(ciphertextBlob, context, opts).then((result) => {
        if (config.ttlMs > 0) {
          sweep(now);
          if (entries.size >= config.maxEntries) {
            const oldest = entries.entries().next().value;
            if (oldest !== undefined) evict(oldest[0], oldest[1]);
          }
          // The entry's lifetime counts from when the request was sent, not when it returned.
          entries.set(key, { plaintext: Buffer.from(result.plaintext), keyArn: result.keyArn, expires: now + config.ttlMs });
        }
        return { plaintext: Buffer.from(result.plaintext), keyArn: result.keyArn };
      });
      inFlight.set(key, request);
      try {
        const result = await request;
        return { plaintext: Buffer.from(result.plaintext), keyArn: result.keyArn };
      } finally {
        inFlight.delete(key);
      }
    },
  };
  return Object.assign(Object.create(kms) as K, cached, {
    stats,
    clear() {
      for (const [key, entry] of entries) evict(key, entry);
    },
  });
}
