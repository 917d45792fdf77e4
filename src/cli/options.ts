/** Parsing of flag values, with errors that name the flag and say what is expected. */
import { parseDuration } from '../core/duration.js';
import { UsageError } from '../core/errors.js';
import type { AgentMode } from '../runtime/mode.js';

/** The modes `mrp dev --mode` takes (its own relay, so no webhook); shell completion offers them. */
export const DEV_MODES = ['websocket', 'poll'] as const satisfies readonly AgentMode[];

export function durationOption(value: string | undefined, flag: string, fallbackMs: number): number {
  if (value === undefined) return fallbackMs;
  const ms = parseDuration(value);
  if (ms === undefined || ms < 0) {
    throw new UsageError(`${flag}: "${value}" is not a duration; use e.g. 30s, 5m, 1h30m or 500ms`, {
      code: 'invalid_argument',
    });
  }
  return ms;
}

export function intOption(
  value: string | undefined,
  flag: string,
  fallback: number,
  min = 0,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value.trim()))
    throw new UsageError(`${flag}: "${value}" is not a whole number`, { code: 'invalid_argument' });
  const n = Number(value);
  if (n < min || n > max)
    throw new UsageError(`${flag}: ${n} is out of range (${min}–${max})`, { code: 'invalid_argument' });
  return n;
}

/** Commander argument parser for repeatable options (`--tag a --tag b`). */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** `key=value` pairs of a repeatable flag, in order. */
export function keyValuePairs(pairs: readonly string[], flag: string): Array<[string, string]> {
  return pairs.map((pair) => {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new UsageError(`${flag} "${pair}" must look like key=value`, { code: 'invalid_argument' });
    return [pair.slice(0, eq), pair.slice(eq + 1)];
  });
}

/** The `--journal` URL (flag, else `MRP_JOURNAL`), checked: a shared journal is a postgres:// URL. */
export function sharedJournalUrl(value: string | undefined, flag = '--journal'): string | undefined {
  if (value === undefined || value === '' || value === 'local') return undefined;
  if (!/^postgres(ql)?:\/\/\S+$/i.test(value)) {
    throw new UsageError(`${flag}: expected a postgres://user:password@host:port/database URL (or "local")`, {
      code: 'invalid_argument',
    });
  }
  return value;
}

/**
 * A server that could not listen, as a usage error naming the flag: the port is taken
 * (`address_in_use`), or the host is not an address of this machine, does not resolve, or the
 * port needs privileges (`invalid_argument`). Anything else is returned as it was.
 */
export function listenError(err: unknown, flag: string, where: string, hint: string): unknown {
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code === 'EADDRINUSE')
    return new UsageError(`${flag}: ${where} is already in use`, { code: 'address_in_use', hint });
  const why: Record<string, string> = {
    EADDRNOTAVAIL: 'not an address of this machine',
    ENOTFOUND: 'the host name does not resolve',
    EAI_AGAIN: 'the host name does not resolve (yet)',
    EACCES: 'permission denied: ports below 1024 need privileges',
  };
  if (code !== undefined && why[code] !== undefined)
    return new UsageError(`${flag}: cannot listen on ${where} (${why[code]})`, { code: 'invalid_argument' });
  return err;
}
