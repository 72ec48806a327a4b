// Rate limiting of repeated log lines: the first few of each kind per window are written, the rest are counted and reported in one line.

/**
 * What makes two log calls "the same message": the level, the message template (pino's format
 * string, before its arguments are filled in), and the structured `event` and `code` fields. Field
 * values (addresses, ports, ids, sizes) are not part of it, so a flood that differs only in them is
 * one kind. An Error logged on its own is keyed on its `code` when it has one (an AirlockError, an
 * errno), else on its message.
 */
export interface LogKind {
  readonly level: number;
  readonly msg: string | undefined;
  readonly event: string | undefined;
  readonly code: string | undefined;
}

export interface LogRateLimits {
  /** Length of a window, in milliseconds. */
  readonly windowMs: number;
  /** Lines of one kind written per window; the rest of that window are counted. */
  readonly burst: number;
  /**
   * Kinds tracked per window. Past this many distinct kinds in one window, lines of further kinds
   * are counted together (they are most likely a message that carries values in its text).
   */
  readonly maxKinds: number;
  /** Lines at this level or above are never suppressed (pino's numeric levels: fatal is 60). */
  readonly neverSuppressFrom: number;
}

/** One report of suppressed lines, written when the window in which they were suppressed has ended. */
export interface SuppressedReport<Sink> {
  /** The kind that was suppressed; undefined for the overflow of kinds beyond `maxKinds`. */
  readonly kind: LogKind | undefined;
  /** The level to report at: the kind's level, or the highest level among overflowed lines. */
  readonly level: number;
  readonly count: number;
  /** Where the last suppressed line was headed (the child logger that made the call). */
  readonly sink: Sink;
}

interface Bucket<Sink> {
  readonly kind: LogKind;
  windowStart: number;
  written: number;
  suppressed: number;
  sink: Sink | undefined;
}

function stringField(value: unknown): string | undefined {
  return typeof value === 'string' ? value : typeof value === 'number' ? String(value) : undefined;
}

/** The kind of a pino log call, from its arguments: `(obj?, msg?, ...values)` or `(error)`. */
export function logKindOf(level: number, args: readonly unknown[]): LogKind {
  const [first, second] = args;
  if (typeof first === 'object' && first !== null) {
    const fields = first as Record<string, unknown>;
    const event = stringField(fields.event);
    let code = stringField(fields.code);
    let msg = typeof second === 'string' ? second : undefined;
    if (first instanceof Error) {
      code ??= stringField((first as Error & { code?: unknown }).code);
      // Without a code, the message is all that tells two errors apart.
      if (msg === undefined && code === undefined) msg = first.message;
      msg ??= first.name;
    } else if (fields.err instanceof Error) {
      code ??= stringField((fields.err as Error & { code?: unknown }).code);
    }
    return { level, msg, event, code };
  }
  return { level, msg: stringField(first), event: undefined, code: undefined };
}

function keyOf(kind: LogKind): string {
  // NUL cannot occur in a template an author wrote; it keeps "a"+"bc" apart from "ab"+"c".
  return `${kind.level}\u0000${kind.msg ?? ''}\u0000${kind.event ?? ''}\u0000${kind.code ?? ''}`;
}

/**
 * Fixed windows per kind: within a window that started at its kind's first line, the first `burst`
 * lines are admitted and the rest counted. Each count is reported once, when its window has ended:
 * by the next line of that kind, or by a timer if none comes (so a flood that stops is still
 * reported). Memory is bounded by `maxKinds` buckets.
 */
export class LogRateLimiter<Sink> {
  readonly #limits: LogRateLimits;
  readonly #report: (report: SuppressedReport<Sink>) => void;
  readonly #now: () => number;
  readonly #buckets = new Map<string, Bucket<Sink>>();
  #overflow: { windowStart: number; count: number; level: number; sink: Sink | undefined } | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** When #timer fires. */
  #timerAt = 0;

  constructor(limits: LogRateLimits, report: (report: SuppressedReport<Sink>) => void, now: () => number = Date.now) {
    this.#limits = limits;
    this.#report = report;
    this.#now = now;
  }

  /** True when the line may be written; false when it is counted instead. */
  admit(kind: LogKind, sink: Sink): boolean {
    if (kind.level >= this.#limits.neverSuppressFrom) return true;
    const now = this.#now();
    const key = keyOf(kind);
    let bucket = this.#buckets.get(key);
    if (bucket !== undefined && now - bucket.windowStart >= this.#limits.windowMs) {
      this.#flush(bucket);
      this.#buckets.delete(key);
      bucket = undefined;
    }
    if (bucket === undefined) {
      if (this.#buckets.size >= this.#limits.maxKinds) this.#sweep(now);
      if (this.#buckets.size >= this.#limits.maxKinds) return this.#countOverflow(kind.level, sink, now);
      bucket = { kind, windowStart: now, written: 0, suppressed: 0, sink: undefined };
      this.#buckets.set(key, bucket);
    }
    if (bucket.written < this.#limits.burst) {
      bucket.written++;
      return true;
    }
    bucket.suppressed++;
    bucket.sink = sink;
    this.#wakeAt(bucket.windowStart + this.#limits.windowMs, now);
    return false;
  }

  /** Reports every pending count now, whether or not its window has ended, and forgets all windows. */
  flushAll(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const bucket of this.#buckets.values()) this.#flush(bucket);
    this.#buckets.clear();
    this.#flushOverflow();
  }

  #countOverflow(level: number, sink: Sink, now: number): boolean {
    if (this.#overflow !== undefined && now - this.#overflow.windowStart >= this.#limits.windowMs) this.#flushOverflow();
    this.#overflow ??= { windowStart: now, count: 0, level, sink: undefined };
    this.#overflow.count++;
    this.#overflow.level = Math.max(this.#overflow.level, level);
    this.#overflow.sink = sink;
    this.#wakeAt(this.#overflow.windowStart + this.#limits.windowMs, now);
    return false;
  }

  /** Reports and drops the buckets whose window has ended. */
  #sweep(now: number): void {
    for (const [key, bucket] of this.#buckets) {
      if (now - bucket.windowStart < this.#limits.windowMs) continue;
      this.#flush(bucket);
      this.#buckets.delete(key);
    }
    if (this.#overflow !== undefined && now - this.#overflow.windowStart >= this.#limits.windowMs) this.#flushOverflow();
  }

  #flush(bucket: Bucket<Sink>): void {
    if (bucket.suppressed === 0 || bucket.sink === undefined) return;
    const report: SuppressedReport<Sink> = { kind: bucket.kind, level: bucket.kind.level, count: bucket.suppressed, sink: bucket.sink };
    bucket.suppressed = 0;
    bucket.sink = undefined;
    this.#report(report);
  }

  #flushOverflow(): void {
    const overflow = this.#overflow;
    this.#overflow = undefined;
    if (overflow === undefined || overflow.count === 0 || overflow.sink === undefined) return;
    this.#report({ kind: undefined, level: overflow.level, count: overflow.count, sink: overflow.sink });
  }

  /**
   * Reports counts whose window ends with no further line of their kind: a timer set for the end of
   * the earliest such window. Unref'd, so that it never keeps a process alive.
   */
  #wakeAt(at: number, now: number): void {
    if (this.#timer !== undefined && this.#timerAt <= at) return;
    clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      const current = this.#now();
      this.#sweep(current);
      let earliest = this.#overflow?.windowStart;
      for (const bucket of this.#buckets.values()) {
        if (bucket.suppressed > 0 && (earliest === undefined || bucket.windowStart < earliest)) earliest = bucket.windowStart;
      }
      if (earliest !== undefined) this.#wakeAt(earliest + this.#limits.windowMs, current);
    }, Math.max(1, at - now));
    this.#timer.unref();
  }
}
