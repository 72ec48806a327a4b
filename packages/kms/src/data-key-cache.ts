// A cache of decrypted data keys: 1 s at most (the kill-switch bound), or minutes while the KMS's key-event stream is live and drops them the instant their key changes.
import { createHash } from 'node:crypto';
import { configCheck, configError, freezeConfig, type AirlockError, type DeepReadonly } from '@airlock/common';
import { encodeEncryptionContext, zeroize, type EncryptionContext } from '@airlock/crypto';
import { hasKeyEvents, type Kms, type KmsKeyEvent, type KmsKeyEventSnapshot, type KmsKeyEventState, type KmsKeyEventSubscription } from './kms.js';

/** DESIGN §4: disabling a key cuts off its data within 1 second, so without live key events no cache entry may live longer. */
export const KILL_SWITCH_BOUND_MS = 1000;

export interface DataKeyCacheOptions {
  /** How long a decrypted data key may be reused while key events are not live, at most 1000 ms. @default 1000 */
  readonly ttlMs?: number;
  /**
   * How long a decrypted data key may be reused while the KMS's key-event stream is live (the entry
   * is dropped the moment its key leaves Enabled, is rotated or deleted). At most 24 h. @default 300000 (5 minutes)
   */
  readonly subscribedTtlMs?: number;
  /** Subscribe to the KMS's key events when the client can (the embedded KMS); false keeps every entry to `ttlMs`. @default true */
  readonly keyEvents?: boolean;
  /**
   * With no line (event or heartbeat) on the stream for this long, the cache falls back to `ttlMs` at
   * once; the KMS sends a heartbeat every 100 ms. Below 1000, so that a silent stream never stretches
   * revocation past the kill-switch bound. @default 500
   */
  readonly heartbeatTimeoutMs?: number;
  /** Most entries kept; the oldest go first. @default 1000 */
  readonly maxEntries?: number;
  /** Clock, for tests. @default Date.now */
  readonly now?: () => number;
}

export type ResolvedDataKeyCacheConfig = DeepReadonly<{
  ttlMs: number;
  subscribedTtlMs: number;
  keyEvents: boolean;
  heartbeatTimeoutMs: number;
  maxEntries: number;
  now: () => number;
}>;

export function resolveDataKeyCacheConfig(options: DataKeyCacheOptions = {}): ResolvedDataKeyCacheConfig {
  if (options.keyEvents !== undefined && typeof options.keyEvents !== 'boolean') throw configError('dataKeyCache.keyEvents', 'must be true or false');
  return freezeConfig({
    ttlMs: configCheck.integer('dataKeyCache.ttlMs', options.ttlMs ?? KILL_SWITCH_BOUND_MS, 0, KILL_SWITCH_BOUND_MS),
    subscribedTtlMs: configCheck.integer('dataKeyCache.subscribedTtlMs', options.subscribedTtlMs ?? 300_000, 0, 86_400_000),
    keyEvents: options.keyEvents ?? true,
    heartbeatTimeoutMs: configCheck.integer('dataKeyCache.heartbeatTimeoutMs', options.heartbeatTimeoutMs ?? 500, 50, KILL_SWITCH_BOUND_MS - 100),
    maxEntries: configCheck.integer('dataKeyCache.maxEntries', options.maxEntries ?? 1000, 1, 1_000_000),
    now: options.now ?? Date.now,
  });
}

interface Entry {
  readonly plaintext: Buffer;
  readonly keyArn: string;
  /** When the KMS call that produced it was sent: lifetimes count from there. */
  readonly fetchedAt: number;
  /** May live `subscribedTtlMs` while the stream is live: no change to its key arrived while it was fetched. */
  long: boolean;
}

export interface DataKeyCacheStats {
  hits: number;
  misses: number;
  /** Entries dropped (and zeroed) because a key-state event, snapshot or stream failure said so. */
  revoked: number;
  /** Key-state events received. */
  events: number;
}

/**
 * The key-event subscription as the cache sees it: `live` while the stream is open and its last line
 * is recent; `late` when a heartbeat is overdue (entries are held to the 1 s bound), `down` while it
 * reconnects, `unsupported` against a KMS without the extension, `off` when disabled.
 */
export interface KeyEventStatus {
  readonly state: 'off' | 'connecting' | 'live' | 'late' | 'down' | 'unsupported';
  /** The server run the stream belongs to. */
  readonly epoch: string | undefined;
  readonly lastSeq: number | undefined;
  /** Milliseconds since the stream's last line. */
  readonly lastMessageAgoMs: number | undefined;
  /** Streams opened so far (reconnections included). */
  readonly connections: number;
  /** Why the last stream ended: an AirlockError code (KMS_UNAVAILABLE, …), `sequence-gap` (events were missed) or `heartbeat-late` (silent too long). */
  readonly lastCloseReason: string | undefined;
}

export interface CachingKms {
  readonly stats: DataKeyCacheStats;
  /** Drops (and zeroes) every entry. */
  clear(): void;
  keyEventStatus(): KeyEventStatus;
  /**
   * Calls `listener` with `keyArn`'s state whenever the key-event stream reports it: on each event
   * for the key, and on each opening snapshot (Deleted when the key is not in it). Returns a function
   * that stops it. For holders of key material outside the cache (the data plane's sealing keys).
   */
  watchKey(keyArn: string, listener: (state: KmsKeyEventState) => void): () => void;
  /** Resolves once the key-event stream is live (true), or false after `timeoutMs` or when it cannot be (unsupported, off). */
  waitForKeyEvents(timeoutMs: number): Promise<boolean>;
  /** Ends the key-event stream and drops every entry. */
  close(): void;
}

const ALIAS = /(^alias\/)|(:alias\/)/;
const RECONNECT_MIN_MS = 100;
const RECONNECT_MAX_MS = 2000;

/**
 * Wraps a Kms so that `decrypt` of the same blob under the same context is served from memory.
 * Only decrypt is cached: generateDataKey and encrypt always reach the KMS. Callers get their own
 * copy of each key, so zeroing it never damages the cache; dropped entries are zeroed.
 *
 * Lifetimes: while the client's key-event stream (the embedded KMS's AirlockSubscribeKeyEvents) is
 * live, an entry lives `subscribedTtlMs` and is dropped the instant an event says its key changed
 * (disabled, pending deletion, deleted, rotated). Otherwise — no stream, a KMS without the extension,
 * a heartbeat more than `heartbeatTimeoutMs` late, a broken stream — every entry lives at most
 * `ttlMs` (≤ 1 s) from when it was fetched, as before key events existed.
 */
export function createCachingKms<K extends Kms>(kms: K, options: DataKeyCacheOptions = {}): K & CachingKms {
  const config = resolveDataKeyCacheConfig(options);
  const entries = new Map<string, Entry>();
  // Concurrent misses for the same blob share one KMS call (no thundering herd when an entry expires).
  const inFlight = new Map<string, Promise<{ plaintext: Buffer; keyArn: string }>>();
  const stats: DataKeyCacheStats = { hits: 0, misses: 0, revoked: 0, events: 0 };

  // --- key-event state ---------------------------------------------------------------------------
  let subscription: KmsKeyEventSubscription | undefined;
  let state: KeyEventStatus['state'] = 'off';
  let epoch: string | undefined;
  let lastSeq: number | undefined;
  let lastMessageAt = 0;
  let connections = 0;
  let lastError: string | undefined;
  let closed = false;
  let reconnectDelay = RECONNECT_MIN_MS;
  let reconnectTimer: NodeJS.Timeout | undefined;
  let watchdog: NodeJS.Timeout | undefined;
  /** Bumped on every change the stream reports, and on every (re)synchronisation. */
  let generation = 0;
  let resyncedAt = 0;
  const changedAt = new Map<string, number>();
  const keyStates = new Map<string, KmsKeyEventState>();
  const waiters = new Set<() => void>();
  const watchers = new Map<string, Set<(state: KmsKeyEventState) => void>>();
  const tell = (keyArn: string, keyState: KmsKeyEventState): void => {
    for (const listener of watchers.get(keyArn) ?? []) listener(keyState);
  };

  const live = (now: number): boolean => state === 'live' && now - lastMessageAt <= config.heartbeatTimeoutMs;
  const expiresAt = (entry: Entry, now: number): number => entry.fetchedAt + (entry.long && live(now) ? config.subscribedTtlMs : config.ttlMs);

  const evict = (key: string, entry: Entry): void => {
    zeroize(entry.plaintext);
    entries.delete(key);
  };
  const sweep = (now: number): void => {
    for (const [key, entry] of entries) {
      if (expiresAt(entry, now) <= now) evict(key, entry);
    }
  };
  const revokeKey = (keyArn: string): void => {
    for (const [key, entry] of entries) {
      if (entry.keyArn === keyArn) {
        evict(key, entry);
        stats.revoked++;
      }
    }
  };
  /** The stream can no longer vouch for anything: every entry is back to the 1 s bound, and older ones go now. */
  const fallBack = (): void => {
    for (const entry of entries.values()) entry.long = false;
    generation++;
    resyncedAt = generation;
    const now = config.now();
    for (const [key, entry] of entries) {
      if (expiresAt(entry, now) <= now) {
        evict(key, entry);
        stats.revoked++;
      }
    }
  };
  const notify = (): void => {
    for (const wake of waiters) wake();
  };

  const restartStream = (): void => {
    subscription?.close();
  };

  const onSnapshot = (snapshot: KmsKeyEventSnapshot): void => {
    epoch = snapshot.epoch;
    lastSeq = snapshot.seq;
    lastMessageAt = config.now();
    keyStates.clear();
    for (const key of snapshot.keys) keyStates.set(key.keyArn, key.state);
    generation++;
    resyncedAt = generation;
    // Whatever happened while the stream was down: keys not Enabled now lose their entries.
    for (const [key, entry] of entries) {
      if (keyStates.get(entry.keyArn) !== 'Enabled') {
        evict(key, entry);
        stats.revoked++;
      }
    }
    state = 'live';
    reconnectDelay = RECONNECT_MIN_MS;
    for (const keyArn of watchers.keys()) tell(keyArn, keyStates.get(keyArn) ?? 'Deleted');
    notify();
  };
  /** What an event says about its key: entries dropped unless it was created or enabled, watchers told. */
  const apply = (event: KmsKeyEvent): void => {
    stats.events++;
    keyStates.set(event.keyArn, event.state);
    changedAt.set(event.keyArn, ++generation);
    if (event.change !== 'created' && event.change !== 'enabled') revokeKey(event.keyArn);
    tell(event.keyArn, event.state);
  };
  const onEvent = (event: KmsKeyEvent): void => {
    // The stream covers every key, so sequence numbers run without gaps; a gap means lost events.
    if (lastSeq !== undefined && event.seq !== lastSeq + 1) {
      lastError = 'sequence-gap';
      // This event is still true of its key: act on it now (a disabled key's entries go at once),
      // then resynchronise, which drops the stream's word for everything else until a new snapshot.
      apply(event);
      restartStream();
      return;
    }
    lastSeq = event.seq;
    lastMessageAt = config.now();
    if (state === 'late') state = 'live';
    apply(event);
  };
  const onHeartbeat = (seq: number): void => {
    if (lastSeq !== undefined && seq !== lastSeq) {
      lastError = 'sequence-gap';
      restartStream();
      return;
    }
    lastMessageAt = config.now();
    if (state === 'late') state = 'live';
    // A stream that was late and caught up is live again without a new snapshot.
    if (waiters.size > 0) notify();
  };
  const connect = (): void => {
    if (closed || !hasKeyEvents(kms)) return;
    reconnectTimer = undefined;
    state = 'connecting';
    connections++;
    // Lines from a stream that is no longer the current one (replaced, or closed) are ignored.
    const stream: { current?: KmsKeyEventSubscription } = {};
    const handlers = {
      onSnapshot: (s: KmsKeyEventSnapshot) => stream.current === subscription && onSnapshot(s),
      onEvent: (e: KmsKeyEvent) => stream.current === subscription && onEvent(e),
      onHeartbeat: (seq: number) => stream.current === subscription && onHeartbeat(seq),
      onClose: (error: AirlockError | undefined) => {
        if (stream.current !== undefined && stream.current !== subscription) return;
        subscription = undefined;
        fallBack();
        if (closed) return;
        lastError = error?.code ?? lastError;
        if (error?.code === 'KMS_UNSUPPORTED_OPERATION') {
          // AWS KMS or another KMS without the extension: the 1 s bound, as before, and no more attempts.
          state = 'unsupported';
          notify();
          return;
        }
        state = 'down';
        reconnectTimer = setTimeout(connect, reconnectDelay);
        reconnectTimer.unref();
        reconnectDelay = Math.min(RECONNECT_MAX_MS, reconnectDelay * 2);
      },
    };
    stream.current = kms.subscribeKeyEvents(handlers);
    // onClose may already have run (synchronously refused); only a stream still open is current.
    if (state === 'connecting') subscription = stream.current;
  };

  if (config.keyEvents && hasKeyEvents(kms)) {
    connect();
    // Notices a late heartbeat even with no decrypt to look: entries past the 1 s bound are zeroed now, and a stream silent for long is reopened.
    watchdog = setInterval(() => {
      const now = config.now();
      if (state !== 'live' && state !== 'late') return;
      const silent = now - lastMessageAt;
      if (silent > config.heartbeatTimeoutMs) {
        if (state === 'live') {
          state = 'late';
          sweep(now);
        }
        if (silent > 4 * config.heartbeatTimeoutMs) {
          lastError = 'heartbeat-late';
          restartStream();
        }
      }
    }, Math.max(25, Math.floor(config.heartbeatTimeoutMs / 4)));
    watchdog.unref();
  }

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
      if (hit !== undefined) {
        if (expiresAt(hit, now) > now) {
          stats.hits++;
          return { plaintext: Buffer.from(hit.plaintext), keyArn: hit.keyArn };
        }
        evict(key, hit);
      }
      const pending = inFlight.get(key);
      if (pending !== undefined) {
        stats.hits++;
        const shared = await pending;
        return { plaintext: Buffer.from(shared.plaintext), keyArn: shared.keyArn };
      }
      stats.misses++;
      const startGeneration = generation;
      const liveAtStart = live(now);
      const request = kms.decrypt(ciphertextBlob, context, opts).then((result) => {
        const changed = (changedAt.get(result.keyArn) ?? 0) > startGeneration;
        // A change to the key that arrived while the call was out may postdate the KMS's answer: keep nothing.
        const long =
          liveAtStart && live(config.now()) && !changed && resyncedAt <= startGeneration && keyStates.get(result.keyArn) === 'Enabled' && (opts.keyId === undefined || !ALIAS.test(opts.keyId));
        if (!changed && (long || config.ttlMs > 0)) {
          sweep(config.now());
          if (entries.size >= config.maxEntries) {
            const oldest = entries.entries().next().value;
            if (oldest !== undefined) evict(oldest[0], oldest[1]);
          }
          entries.set(key, { plaintext: Buffer.from(result.plaintext), keyArn: result.keyArn, fetchedAt: now, long });
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
  const extra: CachingKms = {
    stats,
    clear() {
      for (const [key, entry] of entries) evict(key, entry);
    },
    keyEventStatus() {
      const now = config.now();
      // A reconnection in progress is still "down": only the first connection is "connecting".
      const shown = state === 'live' && !live(now) ? 'late' : state === 'connecting' && connections > 1 ? 'down' : state;
      return { state: shown, epoch, lastSeq, lastMessageAgoMs: lastMessageAt === 0 ? undefined : now - lastMessageAt, connections, lastCloseReason: lastError };
    },
    watchKey(keyArn, listener) {
      const set = watchers.get(keyArn) ?? new Set();
      set.add(listener);
      watchers.set(keyArn, set);
      return () => {
        set.delete(listener);
        if (set.size === 0) watchers.delete(keyArn);
      };
    },
    async waitForKeyEvents(timeoutMs) {
      const ready = (): boolean | undefined => (live(config.now()) ? true : state === 'off' || state === 'unsupported' || closed ? false : undefined);
      const settled = ready();
      if (settled !== undefined) return settled;
      return new Promise<boolean>((resolve) => {
        const finish = (value: boolean): void => {
          clearTimeout(timer);
          waiters.delete(wake);
          resolve(value);
        };
        const wake = (): void => {
          const now = ready();
          if (now !== undefined) finish(now);
        };
        const timer = setTimeout(() => finish(false), timeoutMs);
        waiters.add(wake);
      });
    },
    close() {
      closed = true;
      clearInterval(watchdog);
      clearTimeout(reconnectTimer);
      subscription?.close();
      subscription = undefined;
      state = 'off';
      notify();
      for (const [key, entry] of entries) evict(key, entry);
    },
  };
  return Object.assign(Object.create(kms) as K, cached, extra);
}

/** Whether a value is a caching Kms made by createCachingKms. */
export function isCachingKms(kms: Kms): kms is Kms & CachingKms {
  return typeof (kms as Partial<CachingKms>).keyEventStatus === 'function';
}
