// A debug-level logger whose lines tests keep, parsed and as raw text, to assert on events and on the absence of secrets.
import { createLogger, type Logger, type LoggerOptions } from '@airlock/common';

/** One parsed log line. */
export type LogLine = Record<string, unknown> & { event?: string; msg?: string };

export interface CaptureLoggerOptions {
  /** Lowest level kept. Debug by default, because redaction must hold at every level, debug included (DESIGN §7). @default "debug" */
  readonly level?: LoggerOptions['level'];
}

export interface CapturedLogger {
  readonly log: Logger;
  /** Every line, parsed, in order. */
  readonly lines: LogLine[];
  /** Every line exactly as written, joined: what a "no secret in the logs" check must search. */
  text(): string;
}

/** A logger that writes to memory instead of stdout, through the same createLogger (and so the same redaction) as production. */
export function captureLogger(name = 'test', options: CaptureLoggerOptions = {}): CapturedLogger {
  const raw: string[] = [];
  const lines: LogLine[] = [];
  const log = createLogger({
    name,
    level: options.level ?? 'debug',
    destination: {
      write(line: string) {
        raw.push(line);
        lines.push(JSON.parse(line) as LogLine);
      },
    },
  });
  return { log, lines, text: () => raw.join('') };
}
