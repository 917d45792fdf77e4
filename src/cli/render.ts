/**
 * Text for people: one-line message previews (tail, run), blocks (recv, get, thread, send --wait),
 * profiles, times, and `safeText`, which every piece of remote text passes through before it
 * reaches a terminal.
 *
 * Display names, descriptions, tags, bodies and relay error messages are written by someone else.
 * Printed raw, they could retitle the terminal (OSC), clear the screen, fake hyperlinks, move the
 * cursor (C1 CSI) or overwrite a line with `\r`, and bidi overrides can make text read differently
 * from what it is. JSON output is already exact and escaped; human output escapes these visibly.
 */
import { printable } from '../core/printable.js';
import { type ContactBook, nameForKey } from '../protocol/contacts.js';
import type { AgentProfile, Message } from '../protocol/types.js';
import type { Style } from './output.js';

/**
 * Remote text made safe for a terminal: control characters, ESC sequences, `\r` and bidi controls
 * become visible escapes (`\x1b`, `\r`, `\u202e`). `multiline` keeps `\n` and `\t` (for a body
 * shown over several lines). Use it on every string a peer or the relay chose, before painting.
 */
export function safeText(text: string, options: { multiline?: boolean } = {}): string {
  return printable(text, options);
}

// What JSON.stringify leaves raw inside strings but a terminal may act on: DEL and C1 controls
// (0x9b is CSI), bidi controls, line/paragraph separators.
const UNSAFE_IN_JSON_RE = /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/**
 * `JSON.stringify(value)` with the characters above written as `\uXXXX`: the same JSON value
 * (they can only occur inside strings), but safe to print on a terminal. Every JSON document the
 * CLI prints (`--json`, NDJSON, `-q` bodies) goes through it, so JSON output stays exact and a
 * peer's text cannot reach a terminal raw through it either.
 */
export function jsonText(value: unknown): string {
  const text = JSON.stringify(value) ?? 'null';
  return text.replace(UNSAFE_IN_JSON_RE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** How a message arrived, for the 🔒 marker (see `cli/opener.ts`). */
export interface Sealing {
  encrypted: boolean;
  /** Why it is shown still encrypted. */
  sealed?: { message: string };
}

/** `🔒 encrypted`, `🔒 cannot decrypt: …`, or nothing for a plaintext message. */
export function lockMark(sealing: Sealing | undefined, style: Style): string {
  if (!sealing?.encrypted) return '';
  if (sealing.sealed) return style.yellow(`🔒 ${safeText(sealing.sealed.message)}`);
  return style.green('🔒 encrypted');
}

export interface RenderContext {
  style: Style;
  contacts: ContactBook;
  /** Our own key, shown as "you". */
  self?: string;
}

/** A contact name, "you", or the full key (never shortened: people copy it). */
export function who(key: string, r: RenderContext): string {
  if (r.self && key === r.self) return 'you';
  return safeText(nameForKey(r.contacts, key) ?? key);
}

/** The body in one line: `{"text": …}` shows as the text, anything else as compact JSON. */
export function bodyPreview(body: unknown, max = 120): string {
  const text =
    body !== null &&
    typeof body === 'object' &&
    !Array.isArray(body) &&
    Object.keys(body).length === 1 &&
    typeof (body as { text?: unknown }).text === 'string'
      ? (body as { text: string }).text
      : (JSON.stringify(body) ?? 'null');
  const flat = safeText(text.replace(/[ \t\n]+/g, ' '));
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

function toMs(time: string | number): number {
  return typeof time === 'number' ? time : Date.parse(time);
}

/**
 * The one timestamp style for people: UTC, RFC 3339 to the second (`2026-03-05T12:00:01Z`, the
 * form `--active-since` takes and JSON carries, without the milliseconds).
 */
export function fullTime(time: string | number | null | undefined): string {
  if (time === null || time === undefined) return '—';
  const ms = toMs(time);
  return Number.isFinite(ms) ? new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z') : safeText(String(time));
}

/** The same clock in live lines (tail, run, reconnects): `12:00:01` (UTC). */
export function clockTime(time: string | number): string {
  const ms = toMs(time);
  return Number.isFinite(ms) ? new Date(ms).toISOString().slice(11, 19) : '--:--:--';
}

/** `12:00:01  alice → you  application/json  #thread  hello` */
export function messageLine(m: Message, r: RenderContext, max = 120, sealing?: Sealing): string {
  const { style } = r;
  const threadId = m.thread_id ? safeText(m.thread_id) : undefined;
  const thread = threadId ? style.dim(`  #${threadId.length > 24 ? `${threadId.slice(0, 23)}…` : threadId}`) : '';
  const reply = m.in_reply_to ? style.dim('  ↩') : '';
  const lock = lockMark(sealing, style);
  // A message that could not be opened shows why instead of its ciphertext.
  const body = sealing?.sealed ? lock : `${lock ? `${lock}  ` : ''}${bodyPreview(m.body, max)}`;
  return `${style.dim(clockTime(m.created_at))}  ${style.cyan(who(m.sender_key, r))} ${style.dim('→')} ${who(m.recipient_key, r)}  ${style.dim(safeText(m.content_type))}${thread}${reply}  ${body}`;
}

/** A message in full: header lines and the pretty-printed body. */
export function messageBlock(m: Message, r: RenderContext, sealing?: Sealing): string[] {
  const { style } = r;
  const lock = lockMark(sealing, style);
  const head = [
    `${style.bold(safeText(m.message_id))}  ${style.dim(safeText(m.status))}`,
    `${style.dim('from')}     ${who(m.sender_key, r)}${nameOrYou(m.sender_key, r) ? ` ${style.dim(m.sender_key)}` : ''}`,
    `${style.dim('to')}       ${who(m.recipient_key, r)}${nameOrYou(m.recipient_key, r) ? ` ${style.dim(m.recipient_key)}` : ''}`,
    `${style.dim('type')}     ${safeText(m.content_type)}${lock ? `  ${lock}` : ''}`,
    `${style.dim('sent')}     ${fullTime(m.created_at)}${m.delivered_at ? style.dim(`  delivered ${fullTime(m.delivered_at)}`) : ''}`,
  ];
  if (m.thread_id) head.push(`${style.dim('thread')}   ${safeText(m.thread_id)}`);
  if (m.in_reply_to) head.push(`${style.dim('reply to')} ${safeText(m.in_reply_to)}`);
  if (Object.keys(m.metadata).length) head.push(`${style.dim('metadata')} ${safeText(JSON.stringify(m.metadata))}`);
  if (m.attachments.length)
    head.push(`${style.dim('files')}    ${m.attachments.map((a) => safeText(a.filename ?? a.blob_id)).join(', ')}`);
  return [
    ...head,
    ...safeText(JSON.stringify(m.body, null, 2) ?? 'null', { multiline: true })
      .split('\n')
      .map((l) => `  ${l}`),
  ];
}

/** True when `who` showed a name or "you" rather than the key itself. */
function nameOrYou(key: string, r: RenderContext): boolean {
  return (r.self !== undefined && key === r.self) || nameForKey(r.contacts, key) !== undefined;
}

/** An agent profile as aligned lines. */
export function profileLines(p: AgentProfile, style: Style): string[] {
  const rows: Array<[string, string]> = [
    ['key', safeText(p.public_key)],
    ['name', p.display_name === null ? style.dim('(none)') : safeText(p.display_name)],
    ['status', safeText(p.status)],
    ['visibility', safeText(p.visibility)],
    ['inbox policy', safeText(p.inbox_policy)],
    ['created', fullTime(p.created_at)],
    ['last active', fullTime(p.last_active_at)],
  ];
  for (const [k, v] of Object.entries(p.metadata)) rows.push([`meta ${safeText(k)}`, safeText(v)]);
  for (const c of p.capabilities) {
    rows.push([
      'capability',
      `${safeText(c.name)}${c.version ? ` v${safeText(c.version)}` : ''}  ${style.dim(safeText(c.tags.join(' ')))}${c.description ? `  ${safeText(c.description)}` : ''}`,
    ]);
  }
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${style.dim(k.padEnd(width))}  ${v}`);
}
