/**
 * Bounded JSON: every JSON text that arrives from outside (frames, HTTP bodies, files) goes
 * through here before anything else touches it. Two things make plain `JSON.parse` unsafe:
 *
 * - **Depth.** `JSON.parse` accepts any nesting, but the first `JSON.stringify`, structured clone
 *   or recursive walk of a 6,000-deep value overflows the stack and, inside a socket listener,
 *   kills the process. The depth is measured on the text, iteratively, before parsing.
 * - **Fidelity.** Parsing and re-serialising rewrites what a peer sent (`12345678901234567890`
 *   loses digits, `1e999` becomes `null`, duplicate keys collapse). Bodies must travel verbatim,
 *   so `memberSpans` finds the exact source text of chosen members (such as `body`) without
 *   re-serialising anything.
 *
 * The scanners are iterative (an explicit stack of path segments), so they work on inputs of any
 * depth: a runner can still find `message_id` in a message whose body is too deep to parse.
 */
import { LIMITS } from './constants.js';

export type JsonErrorReason = 'not_json' | 'too_deep' | 'not_utf8';

/** Input that is not acceptable JSON; `reason` is stable, the message says what was wrong. */
export class JsonInputError extends Error {
  override name = 'JsonInputError';
  constructor(
    readonly reason: JsonErrorReason,
    message: string,
  ) {
    super(message);
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Decodes strict UTF-8 (no replacement characters); throws `JsonInputError('not_utf8')`. */
export function decodeUtf8(bytes: Uint8Array): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw new JsonInputError('not_utf8', 'not valid UTF-8');
  }
}

/**
 * The deepest nesting of arrays/objects in a JSON text (0 for a scalar). Strings are skipped, so
 * brackets inside them do not count. Stops counting early once `stopAbove` is exceeded.
 */
export function jsonDepth(text: string, stopAbove = Number.POSITIVE_INFINITY): number {
  let depth = 0;
  let max = 0;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      i = skipString(text, i);
    } else if (c === 0x5b /* [ */ || c === 0x7b /* { */) {
      depth++;
      if (depth > max) {
        max = depth;
        if (max > stopAbove) return max;
      }
    } else if (c === 0x5d /* ] */ || c === 0x7d /* } */) {
      depth--;
    }
  }
  return max;
}

/** Index of the closing quote of the string opening at `i` (or the text's end). */
function skipString(text: string, i: number): number {
  const n = text.length;
  for (let j = i + 1; j < n; j++) {
    const c = text.charCodeAt(j);
    if (c === 0x5c /* \ */) j++;
    else if (c === 0x22) return j;
  }
  return n;
}

/**
 * `JSON.parse` with a nesting limit checked first (default `LIMITS.maxJsonDepth`).
 * Throws `JsonInputError` with reason `too_deep` or `not_json`.
 */
export function parseJson(text: string, maxDepth: number = LIMITS.maxJsonDepth): unknown {
  return parseMeasured(text, jsonDepth(text, maxDepth), maxDepth);
}

/**
 * `parseJson`, and where the root object's member `name` is in the text (`scanRootMember`: the
 * depth check and the span are one scan). A send's body is kept as this exact text.
 */
export function parseJsonMember(
  text: string,
  name: string,
  maxDepth: number = LIMITS.maxJsonDepth,
): { value: unknown; span: Span | undefined } {
  const { depth, span } = scanRootMember(text, name, maxDepth);
  return { value: parseMeasured(text, depth, maxDepth), span };
}

function parseMeasured(text: string, depth: number, maxDepth: number): unknown {
  if (depth > maxDepth) throw new JsonInputError('too_deep', `JSON nested deeper than ${maxDepth} levels`);
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new JsonInputError('not_json', `not valid JSON (${(err as Error).message})`);
  }
}

/** [start, end) of a value in the source text. */
export interface Span {
  start: number;
  end: number;
}

/**
 * One pass over a JSON text for what a relay needs before and after `JSON.parse`: its deepest
 * nesting (as `jsonDepth`, stopping once past `stopAbove`) and the source text's span of the root
 * object's member `name` (the last one, as `JSON.parse` keeps; the span `memberSpans` gives for
 * `[[name]]`). A send frame's depth check and its verbatim body cost one scan instead of two;
 * only the root's keys are compared, none is copied unless it has an escape.
 *
 * Meant for text that is then parsed; on any other text it still returns and never throws.
 */
export function scanRootMember(
  text: string,
  name: string,
  stopAbove = Number.POSITIVE_INFINITY,
): {
  depth: number;
  span: Span | undefined;
} {
  const n = text.length;
  let depth = 0;
  let max = 0;
  let span: Span | undefined;
  // Inside the root object (depth 1): the next string is a key; the key just read was `name`;
  // where its value began (-1: not in one).
  const rootIsObject = firstNonSpace(text) === 0x7b;
  let expectKey = false;
  let wanted = false;
  let start = -1;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09 || c === 0x3a /* : */) continue;
    if (c === 0x2c /* , */) {
      if (depth === 1 && rootIsObject) expectKey = true;
      continue;
    }
    if (c === 0x22 /* " */) {
      const close = skipString(text, i);
      if (depth === 1 && rootIsObject) {
        if (expectKey) {
          // An escaped key is decoded; any other is compared in place.
          wanted = hasBackslash(text, i + 1, close)
            ? memberName(text, i, close) === name
            : close - i - 1 === name.length && text.startsWith(name, i + 1);
          expectKey = false;
        } else if (wanted) {
          span = { start: i, end: Math.min(close + 1, n) };
          wanted = false;
        }
      }
      i = close;
      continue;
    }
    if (c === 0x7b || c === 0x5b) {
      if (depth === 1 && wanted) {
        start = i;
        wanted = false;
      }
      depth++;
      if (depth > max) {
        max = depth;
        if (max > stopAbove) return { depth: max, span: undefined };
      }
      if (depth === 1) expectKey = c === 0x7b;
      continue;
    }
    if (c === 0x7d || c === 0x5d) {
      depth--; // as `jsonDepth` counts (below 0 only in broken text)
      if (depth === 1 && start !== -1) {
        span = { start, end: i + 1 };
        start = -1;
      }
      if (depth <= 1) expectKey = false;
      continue;
    }
    const j = scalarEnd(text, i);
    if (depth === 1 && wanted) {
      span = { start: i, end: j };
      wanted = false;
    }
    i = j - 1;
  }
  return { depth: max, span };
}

/**
 * Where the scalar (number, true, false, null, or garbage) starting at `i` ends: at the next
 * delimiter, whitespace, quote or bracket. Stopping at an opening bracket too keeps broken text's
 * brackets counted, as `jsonDepth` counts them.
 */
function scalarEnd(text: string, i: number): number {
  const n = text.length;
  let j = i + 1;
  while (j < n) {
    const d = text.charCodeAt(j);
    if (
      d === 0x2c ||
      d === 0x7d ||
      d === 0x5d ||
      d === 0x7b ||
      d === 0x5b ||
      d === 0x20 ||
      d === 0x0a ||
      d === 0x0d ||
      d === 0x09 ||
      d === 0x22 ||
      d === 0x3a
    )
      break;
    j++;
  }
  return j;
}

function hasBackslash(text: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (text.charCodeAt(i) === 0x5c) return true;
  return false;
}

function firstNonSpace(text: string): number {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return c;
  }
  return -1;
}

/**
 * Finds the source text of object members by path. `paths` are member-name paths from the root
 * object, e.g. `[['body'], ['message', 'body']]`. Like `JSON.parse`, the last occurrence of a
 * duplicated key wins. Returns a map keyed by the path joined with `.`; absent members are absent
 * from the map.
 *
 * Meant for text already known to be valid JSON (parse it first); on any other text it still
 * returns (possibly meaningless spans) and never throws. Memory is bounded by the longest path,
 * not by the nesting of the text: levels deeper than that are only counted.
 */
export function memberSpans(text: string, paths: ReadonlyArray<ReadonlyArray<string>>): Map<string, Span> {
  const wanted = new Set(paths.map((p) => p.join('\u0000')));
  const maxLen = Math.max(0, ...paths.map((p) => p.length));
  const out = new Map<string, Span>();
  // For containers at depth 1..maxLen: their kind and, for objects, the key being read.
  const keys: Array<string | undefined> = [];
  const kinds: number[] = []; // 0x7b object, 0x5b array
  let depth = 0;
  // A member value whose span is being recorded: the container depth it started at.
  let pendingKey = '';
  let pendingStart = -1;
  let pendingDepth = -1;
  let expectKey = false;
  const n = text.length;

  // The last segment of every wanted path: most values are ruled out by their own key alone,
  // without building their path.
  const lastNames = new Set(paths.map((p) => p[p.length - 1]));
  const startValue = (i: number): void => {
    if (pendingStart !== -1 || depth === 0 || depth > maxLen || kinds[depth - 1] !== 0x7b) return;
    if (!lastNames.has(keys[depth - 1])) return;
    const path = keys.slice(0, depth) as string[];
    if (wanted.has(path.join('\u0000'))) {
      pendingKey = path.join('.');
      pendingStart = i;
      pendingDepth = depth;
    }
  };
  const endValue = (end: number): void => {
    if (pendingStart !== -1 && depth === pendingDepth) {
      // Clamped: an unterminated string in broken text "ends" past the last character.
      out.set(pendingKey, { start: pendingStart, end: Math.min(end, n) });
      pendingStart = -1;
    }
  };

  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09 || c === 0x3a /* : */) continue;
    if (c === 0x2c /* , */) {
      if (depth > 0 && depth <= maxLen && kinds[depth - 1] === 0x7b) expectKey = true;
      continue;
    }
    if (c === 0x22 /* " */) {
      const close = skipString(text, i);
      if (depth <= maxLen) {
        if (expectKey) {
          keys[depth - 1] = memberName(text, i, close);
          expectKey = false;
        } else {
          startValue(i);
          endValue(close + 1);
        }
      }
      i = close;
      continue;
    }
    if (c === 0x7b || c === 0x5b) {
      startValue(i);
      depth++;
      if (depth <= maxLen) {
        kinds[depth - 1] = c;
        keys[depth - 1] = undefined;
        expectKey = c === 0x7b;
      }
      continue;
    }
    if (c === 0x7d || c === 0x5d) {
      if (depth > 0) depth--;
      if (depth <= maxLen) {
        expectKey = false;
        endValue(i + 1);
      }
      continue;
    }
    const j = scalarEnd(text, i);
    if (depth <= maxLen) {
      startValue(i);
      endValue(j);
    }
    i = j - 1;
  }
  return out;
}

/** The decoded name of the member key whose quotes are at `open` and `close`. */
function memberName(text: string, open: number, close: number): string {
  const raw = text.slice(open + 1, close);
  if (!raw.includes('\\')) return raw;
  try {
    return JSON.parse(text.slice(open, close + 1)) as string;
  } catch {
    return raw;
  }
}

/** The source text of one member (see `memberSpans`), or undefined when absent. */
export function memberText(text: string, path: ReadonlyArray<string>): string | undefined {
  const span = memberSpans(text, [path]).get(path.join('.'));
  return span && text.slice(span.start, span.end);
}
