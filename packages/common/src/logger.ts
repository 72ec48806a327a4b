// Structured logging with pino: credentials and registered secret values redacted at every level, repeated lines rate-limited.
import pino from 'pino';
import type { DestinationStream, Logger, LevelWithSilent } from 'pino';
import { configCheck, configError, freezeConfig, type DeepReadonly } from './config.js';
import { LogRateLimiter, logKindOf, type SuppressedReport } from './internal/log-rate-limiter.js';
import { defaultRedactor, type Redactor } from './redact.js';

export type { Logger } from 'pino';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/**
 * Rate limiting of repeated lines. Lines are "the same" when their level, message template, and
 * `event` and `code` fields match; other field values do not count. Per window, the first `burst`
 * lines of each kind are written and the rest are counted; once the window has ended, one line at
 * the same level reports the count (`event: "log.suppressed"`, `suppressed: N`, message
 * "N similar messages suppressed"). Fatal lines are never suppressed.
 */
export interface LogRateLimitOptions {
  /** Length of a window, in milliseconds. @default 10000 */
  readonly windowMs?: number;
  /** Lines of one kind written per window. @default 20 */
  readonly burst?: number;
  /**
   * Distinct kinds tracked per window; lines of further kinds in the same window are counted
   * together and reported as one line, so that output stays bounded even when a message carries
   * values in its text. @default 1000
   */
  readonly maxKinds?: number;
}

export type ResolvedLogRateLimit = DeepReadonly<Required<LogRateLimitOptions>>;

export const DEFAULT_LOG_RATE_LIMIT: ResolvedLogRateLimit = Object.freeze({ windowMs: 10_000, burst: 20, maxKinds: 1000 });

export interface LoggerOptions {
  /** Component name, written as `name` on every line. @default "airlock" */
  readonly name?: string;
  /** Minimum level written. @default "info" */
  readonly level?: LevelWithSilent;
  /** Where lines go. @default standard error, written synchronously */
  readonly destination?: DestinationStream;
  /** Redactor holding registered secret values. @default the process-wide redactor */
  readonly redactor?: Redactor;
  /** Rate limiting of repeated lines, or false for none (tests of the limiter itself). @default DEFAULT_LOG_RATE_LIMIT */
  readonly rateLimit?: LogRateLimitOptions | false;
}

export type ResolvedLoggerConfig = DeepReadonly<{
  name: string;
  level: LevelWithSilent;
  destination: DestinationStream | undefined;
  redactor: Redactor;
  rateLimit: ResolvedLogRateLimit | false;
}>;

function resolveRateLimit(options: LogRateLimitOptions | false | undefined): ResolvedLogRateLimit | false {
  if (options === false) return false;
  if (options !== undefined && (typeof options !== 'object' || options === null)) throw configError('logger.rateLimit', 'must be an object or false');
  return Object.freeze({
    windowMs: configCheck.integer('logger.rateLimit.windowMs', options?.windowMs ?? DEFAULT_LOG_RATE_LIMIT.windowMs, 1, 3_600_000),
    burst: configCheck.integer('logger.rateLimit.burst', options?.burst ?? DEFAULT_LOG_RATE_LIMIT.burst, 1, 1_000_000),
    maxKinds: configCheck.integer('logger.rateLimit.maxKinds', options?.maxKinds ?? DEFAULT_LOG_RATE_LIMIT.maxKinds, 1, 1_000_000),
  });
}

export function resolveLoggerConfig(options: LoggerOptions = {}): ResolvedLoggerConfig {
  return freezeConfig({
    name: configCheck.nonEmptyString('logger.name', options.name ?? 'airlock'),
    level: configCheck.oneOf('logger.level', options.level ?? 'info', LOG_LEVELS),
    destination: options.destination,
    redactor: options.redactor ?? defaultRedactor,
    rateLimit: resolveRateLimit(options.rateLimit),
  });
}

/** pino's level at and above which nothing is suppressed (fatal). */
const FATAL = 60;

/**
 * Limiters whose pending counts are reported when the process exits (a crash loop must not hide a
 * flood). Held weakly, so a logger that is no longer used can be collected; one 'exit' listener serves all.
 */
const limitersToFlushOnExit = new Set<WeakRef<LogRateLimiter<Logger>>>();
let exitListener = false;
function flushOnExit(limiter: LogRateLimiter<Logger>): void {
  if (!exitListener) {
    exitListener = true;
    process.once('exit', () => {
      for (const ref of limitersToFlushOnExit) ref.deref()?.flushAll();
    });
  } else if (limitersToFlushOnExit.size % 256 === 0) {
    for (const ref of limitersToFlushOnExit) if (ref.deref() === undefined) limitersToFlushOnExit.delete(ref);
  }
  limitersToFlushOnExit.add(new WeakRef(limiter));
}

/**
 * Creates a logger. Redaction happens twice: structured fields are redacted by name before
 * serialisation (so a token under any `authorization`/`token`/`secret`… key never reaches text),
 * and every finished line is scrubbed of credential patterns and registered secrets, which covers
 * messages, error stacks and child-logger bindings too. Both run at every level, debug included.
 * Repeated lines are rate-limited (see LogRateLimitOptions); the limiter is shared by the logger's
 * children, and a count still pending when the process exits is reported then.
 */
export function createLogger(options: LoggerOptions | ResolvedLoggerConfig = {}): Logger {
  const config = resolveLoggerConfig(options as LoggerOptions);
  const redactor = config.redactor;
  const inner: DestinationStream = config.destination ?? pino.destination({ fd: 2, sync: true });
  const destination: DestinationStream = {
    write(line: string): void {
      inner.write(redactor.scrubJson(line));
    },
  };
  const limits = config.rateLimit;
  // Set while a report of suppressed lines is written, so that it is not itself counted.
  let reporting = false;
  const limiter =
    limits === false
      ? undefined
      : new LogRateLimiter<Logger>({ ...limits, neverSuppressFrom: FATAL }, (report: SuppressedReport<Logger>) => {
          const label = report.sink.levels.labels[report.level] as pino.Level | undefined;
          if (label === undefined) return;
          reporting = true;
          try {
            report.sink[label](
              {
                event: 'log.suppressed',
                suppressed: report.count,
                windowMs: limits.windowMs,
                // What was suppressed: the kind's template and fields, never the suppressed lines' values.
                ...(report.kind === undefined
                  ? { similar: 'more distinct messages than logger.rateLimit.maxKinds' }
                  : { similar: { msg: report.kind.msg, event: report.kind.event, code: report.kind.code } }),
              },
              `${report.count} similar messages suppressed`,
            );
          } finally {
            reporting = false;
          }
        });
  if (limiter !== undefined) flushOnExit(limiter);
  const logger = pino(
    {
      name: config.name,
      level: config.level,
      formatters: {
        log: (object) => redactor.redactValue(object) as Record<string, unknown>,
      },
      hooks: {
        // Called only for levels that are enabled, before anything is serialised: a suppressed line costs a map lookup.
        logMethod(args, method, level) {
          if (limiter === undefined || reporting || limiter.admit(logKindOf(level, args), this)) method.apply(this, args);
        },
      },
    },
    destination,
  );
  // Child bindings bypass the log formatter, so they are redacted when the child is made. Children
  // inherit from their parent's prototype chain, so grandchildren go through this too.
  // Called below with an explicit `this`, so that grandchildren attach to their own parent.
  // eslint-disable-next-line @typescript-eslint/unbound-method
  const child = logger.child;
  logger.child = function redactingChild(this: Logger, bindings: Record<string, unknown>, childOptions?: object) {
    return child.call(this, redactor.redactValue(bindings) as Record<string, unknown>, childOptions);
  } as typeof logger.child;
  return logger;
}
