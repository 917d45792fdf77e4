/**
 * ISO 8601 times for values whose second repeats (a commit's messages, one second's log lines):
 * the `YYYY-MM-DDTHH:MM:SS` part is cached for the last 64 seconds seen, and only the
 * milliseconds are formatted each time. Outside plain four-digit years, or for a non-integer, the
 * answer is `Date`'s own.
 */
const prefixes = new Map<number, string>();
const MAX_PREFIXES = 64;
/** Whole milliseconds from year 0 to 9999: `toISOString` gives exactly 24 characters. */
const LAST_PLAIN_MS = 253_402_300_799_999;

function prefixOf(second: number): string {
  let prefix = prefixes.get(second);
  if (prefix === undefined) {
    if (prefixes.size >= MAX_PREFIXES) prefixes.clear();
    prefix = new Date(second).toISOString().slice(0, 19);
    prefixes.set(second, prefix);
  }
  return prefix;
}

function millis(milli: number): string {
  return milli < 10 ? `00${milli}` : milli < 100 ? `0${milli}` : `${milli}`;
}

/** Exactly `new Date(ms).toISOString()`. */
export function isoTime(ms: number): string {
  if (!Number.isInteger(ms) || ms < 0 || ms > LAST_PLAIN_MS) return new Date(ms).toISOString();
  const milli = ms % 1000;
  return `${prefixOf(ms - milli)}.${millis(milli)}Z`;
}

/** `isoTime` without `.000` when the milliseconds are zero (the protocol's instants). */
export function isoInstant(ms: number): string {
  if (!Number.isInteger(ms) || ms < 0 || ms > LAST_PLAIN_MS) return new Date(ms).toISOString().replace('.000Z', 'Z');
  const milli = ms % 1000;
  return milli === 0 ? `${prefixOf(ms)}Z` : `${prefixOf(ms - milli)}.${millis(milli)}Z`;
}
