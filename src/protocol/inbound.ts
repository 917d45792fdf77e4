/**
 * Messages as a relay hands them over (a `message` frame, a poll or thread page), read so that no
 * single message can stop the reader. Whatever arrives becomes one of:
 *
 * - a `Message` (bounded in depth, normalised), with the size of its text for memory budgets;
 * - a `RejectedMessage` with the identity that could still be read (`message_id`, `sender_key`,
 *   `thread_id`, `expires_at`, found verbatim in the text even when the body is far too deep to
 *   parse safely), so the receiver can answer it with an error and acknowledge it;
 * - a `RejectedMessage` without identity when not even the id can be read.
 *
 * A page with one hostile message still yields all the others. `JSON.parse` itself is safe at
 * any depth (V8's parser is iterative); what overflows is the first recursive walk afterwards
 * (stringify, structured clone), so depth is measured on the text before anything walks a value.
 */
import { LIMITS, PUBLIC_KEY_RE } from './constants.js';
import { FrameParseError, normalizeMessage, parseServerFrame } from './frames.js';
import { jsonDepth, memberSpans } from './json.js';
import type { Message, ServerFrame } from './types.js';
import { isPlainObject } from './validate.js';

/** What could be read of a message that cannot be handed over. */
export interface MessageIdentity {
  message_id: string;
  /** `null` when missing or not a public key: such a message cannot be answered. */
  sender_key: string | null;
  thread_id: string | null;
  expires_at: string | null;
}

/** A message that was delivered but cannot be handled; `identity` is null when not even its id can be read. */
export interface RejectedMessage {
  identity: MessageIdentity | null;
  /** Stable: always `invalid_message` for now. */
  code: 'invalid_message';
  /** For people: what was wrong. */
  reason: string;
  /** Size of its text. */
  bytes: number;
}

/** Deepest nesting of a message object accepted for handling: the object, then a body of up to `maxJsonDepth`. */
export const MAX_MESSAGE_DEPTH = LIMITS.maxJsonDepth + 1;
/** Longest message id accepted (ours are ~32 characters). */
export const MAX_MESSAGE_ID_LENGTH = 256;

export type InboundMessage = { ok: true; message: Message; bytes: number } | { ok: false; rejected: RejectedMessage };

function stringAt(text: string, span: { start: number; end: number } | undefined, max: number): string | null {
  if (!span || text.charCodeAt(span.start) !== 0x22 /* " */ || span.end - span.start > max * 6 + 2) return null;
  try {
    const v = JSON.parse(text.slice(span.start, span.end)) as unknown;
    return typeof v === 'string' && v.length > 0 && v.length <= max ? v : null;
  } catch {
    return null;
  }
}

/**
 * Reads the identity fields of a message object found at `prefix` in `text` (already known to
 * be valid JSON), without parsing the rest. Null when there is no usable `message_id`.
 */
export function identify(text: string, prefix: readonly string[] = []): MessageIdentity | null {
  const fields = ['message_id', 'sender_key', 'thread_id', 'expires_at'] as const;
  const spans = memberSpans(
    text,
    fields.map((f) => [...prefix, f]),
  );
  const at = (f: (typeof fields)[number], max: number): string | null =>
    stringAt(text, spans.get([...prefix, f].join('.')), max);
  const id = at('message_id', MAX_MESSAGE_ID_LENGTH);
  if (id === null) return null;
  const sender = at('sender_key', 64);
  return {
    message_id: id,
    sender_key: sender !== null && PUBLIC_KEY_RE.test(sender) ? sender : null,
    thread_id: at('thread_id', LIMITS.threadIdMax * 2),
    expires_at: at('expires_at', 64),
  };
}

function reject(identity: MessageIdentity | null, reason: string, bytes: number): InboundMessage {
  return { ok: false, rejected: { identity, code: 'invalid_message', reason, bytes } };
}

/**
 * Turns a parsed value into a message, or a rejection naming what was wrong. `text` (the value's
 * JSON text, or one containing it at `prefix`) is only read when the value is rejected.
 */
function fromValue(value: unknown, text: () => string, prefix: readonly string[], bytes: number): InboundMessage {
  try {
    const message = normalizeMessage(value);
    if (message.message_id.length > MAX_MESSAGE_ID_LENGTH) return reject(null, 'the message id is too long', bytes);
    return { ok: true, message, bytes };
  } catch (err) {
    const identity = isPlainObject(value) ? identify(text(), prefix) : null;
    return reject(identity, `the relay delivered a malformed message (${(err as Error).message})`, bytes);
  }
}

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

const TOO_DEEP = `the message is nested deeper than ${LIMITS.maxJsonDepth} levels`;

/** Reads one message object given as its own JSON text (e.g. one element of a page). */
export function readMessageText(text: string): InboundMessage {
  const bytes = text.length;
  const depth = jsonDepth(text, MAX_MESSAGE_DEPTH);
  if (depth > MAX_MESSAGE_DEPTH) return reject(isJson(text) ? identify(text) : null, TOO_DEEP, bytes);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return reject(null, 'the message is not valid JSON', bytes);
  }
  return fromValue(value, () => text, [], bytes);
}

/**
 * Reads a relay → client frame. Never throws: a frame is read, or it is a `message` frame that
 * cannot be handed over (rejected, with whatever identity could be read), or it is an error.
 */
export function readServerFrame(
  text: string,
):
  | { kind: 'frame'; frame: ServerFrame; bytes: number }
  | { kind: 'rejected'; rejected: RejectedMessage }
  | { kind: 'error'; error: FrameParseError } {
  try {
    return { kind: 'frame', frame: parseServerFrame(text), bytes: text.length };
  } catch (raw) {
    const error =
      raw instanceof FrameParseError
        ? raw
        : new FrameParseError('invalid', `unreadable frame (${(raw as Error)?.message ?? String(raw)})`);
    let type = error.frameType;
    if (error.reason === 'too_deep') type = stringAt(text, memberSpans(text, [['type']]).get('type'), 64) ?? undefined;
    if (type !== 'message') return { kind: 'error', error };
    const deep = error.reason === 'too_deep';
    const identity = !deep || isJson(text) ? identify(text, ['message']) : null;
    const reason = deep ? TOO_DEEP : `the relay delivered a malformed message (${error.message})`;
    return { kind: 'rejected', rejected: { identity, code: 'invalid_message', reason, bytes: text.length } };
  }
}

/** [start, end) of each element of the array whose text is `text.slice(start, end)`. */
export function elementSpans(text: string, start: number, end: number): Array<{ start: number; end: number }> {
  const out: Array<{ start: number; end: number }> = [];
  if (text.charCodeAt(start) !== 0x5b /* [ */) return out;
  let depth = 0;
  let from = -1;
  for (let i = start + 1; i < end - 1; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) continue;
    if (from === -1 && depth === 0 && c !== 0x2c) from = i;
    if (c === 0x22 /* " */) {
      for (i++; i < end; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x5c /* \ */) i++;
        else if (d === 0x22) break;
      }
    } else if (c === 0x5b || c === 0x7b) depth++;
    else if (c === 0x5d || c === 0x7d) depth--;
    else if (c === 0x2c /* , */ && depth === 0) {
      if (from !== -1) out.push({ start: from, end: trimEnd(text, from, i) });
      from = -1;
    }
  }
  if (from !== -1) out.push({ start: from, end: trimEnd(text, from, end - 1) });
  return out;
}

function trimEnd(text: string, from: number, to: number): number {
  let j = to;
  while (j > from) {
    const c = text.charCodeAt(j - 1);
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
    j--;
  }
  return j;
}

/**
 * [start, end) of the value of the root object's member `name`, in a valid JSON text. Unlike
 * `memberSpans` it decodes keys at the top level only, so a page full of messages with large
 * bodies costs one quick pass.
 */
export function topLevelMemberSpan(text: string, name: string): { start: number; end: number } | undefined {
  let depth = 0;
  let found: { start: number; end: number } | undefined;
  let valueStart = -1;
  let key: string | undefined;
  let expectKey = false;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      const open = i;
      for (i++; i < n; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x5c /* \ */) i++;
        else if (d === 0x22) break;
      }
      if (depth === 1 && expectKey) {
        key = JSON.parse(text.slice(open, i + 1)) as string;
        expectKey = false;
      } else if (depth === 1 && valueStart === -1 && key === name) found = { start: open, end: i + 1 };
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (depth === 1 && key === name && valueStart === -1) valueStart = i;
      depth++;
      if (depth === 1) expectKey = c === 0x7b;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      depth--;
      if (depth === 1 && valueStart !== -1) {
        found = { start: valueStart, end: i + 1 };
        valueStart = -1;
      }
    } else if (c === 0x2c /* , */ && depth === 1) {
      expectKey = true;
      key = undefined;
    }
  }
  return found;
}

/** A poll or thread page, every message read on its own. */
export interface MessagePage {
  messages: Message[];
  /** Text size of each entry of `messages`. */
  sizes: number[];
  rejected: RejectedMessage[];
  has_more: boolean;
  next_cursor: string | null;
  /** The page's other top-level members (e.g. `thread_id`). */
  extra: Record<string, unknown>;
}

/** Thrown when the page as a whole is unreadable (not JSON, not an object, no `messages` array). */
export class PageError extends Error {
  override name = 'PageError';
}

/**
 * Reads a `{"messages": [...], "has_more", "next_cursor"}` page. The common case (nothing too
 * deep) is one `JSON.parse`; a page holding a message too deep to walk safely is split into its
 * elements, and each is read on its own.
 */
export function readMessagePage(text: string): MessagePage {
  let root: unknown;
  try {
    root = JSON.parse(text);
  } catch (err) {
    throw new PageError(`the relay answered with invalid JSON (${(err as Error).message})`);
  }
  if (!isPlainObject(root) || !Array.isArray(root['messages']))
    throw new PageError('the relay answered without a "messages" list');
  const page: MessagePage = {
    messages: [],
    sizes: [],
    rejected: [],
    has_more: root['has_more'] === true,
    next_cursor: typeof root['next_cursor'] === 'string' ? root['next_cursor'] : null,
    extra: {},
  };
  for (const [k, v] of Object.entries(root)) {
    if (k !== 'messages' && k !== 'has_more' && k !== 'next_cursor' && (v === null || typeof v !== 'object'))
      page.extra[k] = v;
  }
  const items = root['messages'] as unknown[];
  const span = topLevelMemberSpan(text, 'messages');
  const spans = span ? elementSpans(text, span.start, span.end) : [];
  const aligned = spans.length === items.length;
  const shallow = jsonDepth(text, MAX_MESSAGE_DEPTH + 2) <= MAX_MESSAGE_DEPTH + 2;
  for (let i = 0; i < items.length; i++) {
    const s = aligned ? spans[i]! : undefined;
    const bytes = s ? s.end - s.start : 0;
    let read: InboundMessage;
    if (shallow) read = fromValue(items[i], () => (s ? text.slice(s.start, s.end) : '{}'), [], bytes);
    else if (s) read = readMessageText(text.slice(s.start, s.end));
    else read = reject(null, 'unreadable page entry', 0);
    if (read.ok) {
      page.messages.push(read.message);
      page.sizes.push(read.bytes);
    } else page.rejected.push(read.rejected);
  }
  return page;
}
