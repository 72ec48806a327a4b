// Structured logging with pino, with credentials and registered secret values redacted at every level.
import pino from 'pino';
import type { DestinationStream, Logger, LevelWithSilent } from 'pino';
import { configCheck, freezeConfig, type DeepReadonly } from './config.js';
import { defaultRedactor, type Redactor } from './redact.js';

export type { Logger } from 'pino';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export interface LoggerOptions {
  /** Component name, written as `name` on every line. @default "airlock" */
  readonly name?: string;
  /** Minimum level written. @default "info" */
  readonly level?: LevelWithSilent;
  /** Where lines go. @default standard error, written synchronously */
  readonly destination?: DestinationStream;
  /** Redactor holding registered secret values. @default the process-wide redactor */
  readonly redactor?: Redactor;
}

export type ResolvedLoggerConfig = DeepReadonly<{
  name: string;
  level: LevelWithSilent;
  destination: DestinationStream | undefined;
  redactor: Redactor;
}>;

export function resolveLoggerConfig(options: LoggerOptions = {}): ResolvedLoggerConfig {
  return freezeConfig({
    name: configCheck.nonEmptyString('logger.name', options.name ?? 'airlock'),
    level: configCheck.oneOf('logger.level', options.level ?? 'info', LOG_LEVELS),
    destination: options.destination,
    redactor: options.redactor ?? defaultRedactor,
  });
}

/**
 * Creates a logger. Redaction happens twice: structured fields are redacted by name before
 * serialisation (so a token under any `authorization`/`token`/`secret`… key never reaches text),
 * and every finished line is scrubbed of credential patterns and registered secrets, which covers
 * messages, error stacks and child-logger bindings too. Both run at every level, debug included.
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
  const logger = pino(
    {
      name: config.name,
      level: config.level,
      formatters: {
        log: (object) => redactor.redactValue(object) as Record<string, unknown>,
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
