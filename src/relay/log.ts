/**
 * Structured relay logs: one object per request or connection event, filtered by level. The relay
 * never prints; the CLI decides where lines go. Message bodies are never logged.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface LogEntry {
  level: LogLevel;
  msg: string;
  [field: string]: unknown;
}

export type LogSink = (entry: LogEntry) => void;

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export function isLogLevel(value: string): value is LogLevel {
  return Object.hasOwn(ORDER, value);
}

export class Logger {
  readonly #sink: LogSink | undefined;
  readonly #min: number;

  constructor(sink: LogSink | undefined, level: LogLevel = 'info') {
    this.#sink = sink;
    this.#min = ORDER[level];
  }

  enabled(level: LogLevel): boolean {
    return this.#sink !== undefined && ORDER[level] >= this.#min;
  }

  /** Never throws: a failing sink must not turn a log line into a crash of the listener that logged it. */
  log(level: LogLevel, msg: string, fields: Record<string, unknown> = {}): void {
    if (!this.enabled(level)) return;
    try {
      this.#sink!({ level, msg, ...fields });
    } catch {
      // Nothing sensible is left to do with a line the sink refused.
    }
  }

  debug(msg: string, fields?: Record<string, unknown>): void {
    this.log('debug', msg, fields);
  }
  info(msg: string, fields?: Record<string, unknown>): void {
    this.log('info', msg, fields);
  }
  warn(msg: string, fields?: Record<string, unknown>): void {
    this.log('warn', msg, fields);
  }
  error(msg: string, fields?: Record<string, unknown>): void {
    this.log('error', msg, fields);
  }
}
