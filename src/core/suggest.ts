/** "Did you mean …?" for mistyped names (config keys, manifest keys, …), and the library's argument checks that use it. */

import { UsageError } from './errors.js';

/** Edit distance (insert, delete, substitute, swap of neighbours), small inputs only. */
function distance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[][] = Array.from({ length: rows }, (_, i) =>
    Array.from({ length: cols }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/** The closest candidate within a third of the word's length (at least 1 edit), if any. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  if (word.length > 64) return undefined;
  const limit = Math.max(1, Math.floor(word.length / 3));
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const c of candidates) {
    const d = distance(word.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  return bestDistance <= limit ? best : undefined;
}

/** The first key of `given` that `known` does not list, if any (a misspelt option, field or key). */
export function unknownKey(given: object, known: readonly string[]): string | undefined {
  for (const key of Object.keys(given)) if (!known.includes(key)) return key;
  return undefined;
}

/** ` (did you mean "x"?)`, or `` when no candidate is close. */
export function didYouMean(word: string, candidates: readonly string[]): string {
  const c = closest(word, candidates);
  return c === undefined ? '' : ` (did you mean "${c}"?)`;
}

/**
 * A method's options object: an unknown key is a typo a JavaScript caller has no compiler to
 * catch (`{ threadID }`, `{ creat: true }`), so the call would do something else than asked:
 * refused (`invalid_argument`), named, with a "did you mean". `undefined` is no options.
 */
export function knownArgs(method: string, given: unknown, known: readonly string[]): void {
  if (given === undefined) return;
  if (given === null || typeof given !== 'object' || Array.isArray(given))
    throw new UsageError(`${method}: the options must be an object (known: ${known.join(', ')})`, {
      code: 'invalid_argument',
    });
  const key = unknownKey(given, known);
  if (key !== undefined)
    throw new UsageError(`${method}: unknown option "${key}"${didYouMean(key, known)}; known: ${known.join(', ')}`, {
      code: 'invalid_argument',
    });
}

/** A boolean option, or undefined when left out: `'yes'` or `1` is refused, not taken as true or false. */
export function booleanArg(method: string, name: string, value: unknown): boolean | undefined {
  if (value === undefined || typeof value === 'boolean') return value;
  throw new UsageError(`${method}: ${name} must be true or false (got ${JSON.stringify(value) ?? String(value)})`, {
    code: 'invalid_argument',
  });
}
