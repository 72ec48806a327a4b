// The embedded KMS's key-event hub: streams key-state changes and heartbeats to subscribers (the Airlock-only AirlockSubscribeKeyEvents).
import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { Logger } from '@airlock/common';
import type { KeyState, KeyStateChange } from './engine.js';

/** The X-Amz-Target operation (after `TrentService.`) that opens a key-event stream. */
export const KEY_EVENTS_OPERATION = 'AirlockSubscribeKeyEvents';
/** One JSON object per line. */
export const KEY_EVENTS_CONTENT_TYPE = 'application/x-ndjson';

/** The first line of a stream: the state of every subscribed key when the stream opened. */
export interface KeyEventsHello {
  readonly type: 'hello';
  /** Identifies this run of the server; sequence numbers restart with a new epoch. */
  readonly epoch: string;
  /** The sequence number of the last event published before the snapshot. */
  readonly seq: number;
  readonly heartbeatMs: number;
  readonly keys: ReadonlyArray<{ keyId: string; keyArn: string; state: KeyState; version: number }>;
}

export interface KeyEventLine extends KeyStateChange {
  readonly type: 'key';
  readonly seq: number;
  readonly time: string;
}

export interface HeartbeatLine {
  readonly type: 'heartbeat';
  /** The sequence number of the last event published (to any subscriber): a subscriber checks it has seen every event up to it. */
  readonly seq: number;
}

export interface KeyEventHubOptions {
  readonly heartbeatMs: number;
  /** How long a publication waits for each subscriber's connection to take the event; slower subscribers are cut off. */
  readonly publishTimeoutMs: number;
  readonly now: () => number;
  readonly log: Logger;
}

interface Subscriber {
  readonly res: ServerResponse;
  /** Key ids subscribed to; undefined for every key. */
  readonly keyIds: ReadonlySet<string> | undefined;
  /** The last sequence number whose event this subscriber was sent (or skipped, as not subscribed). */
  seq: number;
}

/** How lost events show (loseKeyEventsForTesting). */
export type LostKeyEventsRevealedBy = 'heartbeat' | 'next-event';

const lostForTesting: { count: number; revealedBy: LostKeyEventsRevealedBy } = { count: 0, revealedBy: 'heartbeat' };

/**
 * Test hook, for the package's own tests only (src/internal is not among the package's exports, and
 * nothing else calls it): the next `count` events published, by any hub in this process, reach no
 * subscriber, as if lost on the way; their sequence numbers are spent. With `heartbeat`, subscribers
 * are counted as having been sent them, so the next heartbeat shows the gap; with `next-event`,
 * heartbeats keep the last number each subscriber was really sent, so the gap shows first in the next event.
 */
export function loseKeyEventsForTesting(count: number, revealedBy: LostKeyEventsRevealedBy = 'heartbeat'): void {
  lostForTesting.count = count;
  lostForTesting.revealedBy = revealedBy;
}

/** A subscriber that has this much unsent output is not reading: it is cut off rather than buffered for. */
const MAX_BUFFERED_BYTES = 256 * 1024;

/**
 * Keeps the open key-event streams. `publish` writes a change to every subscriber at once and returns
 * its sequence number; `settled()` resolves once every subscriber's connection has taken every event
 * published so far, or has been cut off — the server awaits it before acknowledging the request that
 * caused the change, so DisableKey returns only after its event is on its way to every subscriber.
 */
export class KeyEventHub {
  readonly epoch = randomUUID();
  readonly #options: KeyEventHubOptions;
  readonly #subscribers = new Set<Subscriber>();
  readonly #pending = new Set<Promise<void>>();
  readonly #timer: NodeJS.Timeout;
  #seq = 0;
  #closed = false;

  constructor(options: KeyEventHubOptions) {
    this.#options = options;
    this.#timer = setInterval(() => this.#heartbeat(), options.heartbeatMs);
    this.#timer.unref();
  }

  get subscriberCount(): number {
    return this.#subscribers.size;
  }

  get seq(): number {
    return this.#seq;
  }

  /** Takes over `res` as a stream: the opening snapshot now, then events and heartbeats until either side closes. */
  subscribe(res: ServerResponse, keyIds: ReadonlySet<string> | undefined, snapshot: KeyEventsHello['keys'], requestId: string): void {
    if (this.#closed) {
      res.destroy();
      return;
    }
    // Connection: close — a stream's connection is never reused for another request.
    res.writeHead(200, { 'content-type': KEY_EVENTS_CONTENT_TYPE, 'cache-control': 'no-store', 'x-amzn-requestid': requestId, connection: 'close' });
    res.socket?.setNoDelay(true);
    const subscriber: Subscriber = { res, keyIds, seq: this.#seq };
    this.#subscribers.add(subscriber);
    res.once('close', () => this.#subscribers.delete(subscriber));
    const hello: KeyEventsHello = { type: 'hello', epoch: this.epoch, seq: this.#seq, heartbeatMs: this.#options.heartbeatMs, keys: snapshot };
    void this.#write(subscriber, hello);
  }

  /** Sends a change to every subscriber of its key; returns its sequence number. */
  publish(change: KeyStateChange): number {
    const seq = ++this.#seq;
    const line: KeyEventLine = { type: 'key', seq, time: new Date(this.#options.now()).toISOString(), ...change };
    if (lostForTesting.count > 0) {
      lostForTesting.count--;
      if (lostForTesting.revealedBy === 'heartbeat') for (const subscriber of this.#subscribers) subscriber.seq = seq;
      return seq;
    }
    for (const subscriber of this.#subscribers) {
      subscriber.seq = seq;
      if (subscriber.keyIds !== undefined && !subscriber.keyIds.has(change.keyId)) continue;
      const flushed = this.#write(subscriber, line);
      if (flushed !== undefined) this.#track(subscriber, flushed);
    }
    return seq;
  }

  /** Resolves once every event published so far has been taken by, or has cut off, each subscriber. */
  async settled(): Promise<void> {
    while (this.#pending.size > 0) await Promise.all([...this.#pending]);
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#timer);
    for (const subscriber of this.#subscribers) subscriber.res.end();
    this.#subscribers.clear();
  }

  #track(subscriber: Subscriber, flushed: Promise<void>): void {
    let timer: NodeJS.Timeout | undefined;
    const bounded = Promise.race([
      flushed,
      new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          // Its client cannot be told in time: cut it off, so that it falls back to its short cache bound at once.
          this.#options.log.warn({ event: 'kms.key_events_subscriber_cut', timeoutMs: this.#options.publishTimeoutMs }, 'a key-event subscriber did not take an event in time; its stream is cut');
          subscriber.res.destroy();
          resolve();
        }, this.#options.publishTimeoutMs);
      }),
    ]).finally(() => {
      clearTimeout(timer);
      this.#pending.delete(bounded);
    });
    this.#pending.add(bounded);
  }

  /** Writes one line; the promise resolves when the connection has taken it (undefined if the subscriber is gone). */
  #write(subscriber: Subscriber, line: KeyEventsHello | KeyEventLine | HeartbeatLine): Promise<void> | undefined {
    const { res } = subscriber;
    if (res.destroyed || res.writableEnded) return undefined;
    if (res.writableLength > MAX_BUFFERED_BYTES) {
      res.destroy();
      return undefined;
    }
    return new Promise<void>((resolve) => {
      res.write(`${JSON.stringify(line)}\n`, () => resolve());
    });
  }

  #heartbeat(): void {
    for (const subscriber of this.#subscribers) void this.#write(subscriber, { type: 'heartbeat', seq: subscriber.seq });
  }
}
