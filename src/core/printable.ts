/**
 * Remote text made safe for a terminal. Display names, bodies, relay error messages and close
 * reasons are written by someone else: printed raw, they could retitle the terminal (OSC), clear
 * the screen, fake hyperlinks, move the cursor (C1 CSI) or overwrite a line with `\r`, and bidi
 * overrides can make text read differently from what it is. Here they become visible escapes.
 */

// C0 controls, DEL, C1 controls, bidi embeddings/overrides/isolates and marks, line/paragraph separators.
const UNSAFE_RE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const UNSAFE_MULTILINE_RE =
  /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function escapeChar(c: string): string {
  const code = c.charCodeAt(0);
  return (
    NAMED[c] ?? (code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`)
  );
}

/**
 * Control characters, ESC sequences, `\r` and bidi controls become visible escapes (`\x1b`, `\r`,
 * `\u202e`). `multiline` keeps `\n` and `\t` (for a body shown over several lines). Use it on every
 * string a peer or the relay chose, before it reaches a terminal.
 */
export function printable(text: string, options: { multiline?: boolean } = {}): string {
  return text.replace(options.multiline ? UNSAFE_MULTILINE_RE : UNSAFE_RE, escapeChar);
}

/**
 * A URL as it may be echoed in an error: a user name and password (`scheme://user:pw@host`) become
 * `…`. For a string that is no URL at all, everything from `://` to its last `@` is hidden.
 */
export function withoutUrlCredentials(value: string): string {
  return value.replace(/^([^:/?#]*:\/\/).*@/s, '$1…@');
}

/** C0 and C1 control characters and DEL: never part of a name or an id someone types. */
const CONTROL_RE = /[\u0000-\u001f\u007f-\u009f]/;

/** Whether `text` holds a control character (a line break, a tab, an escape). */
export function hasControlChars(text: string): boolean {
  return CONTROL_RE.test(text);
}
