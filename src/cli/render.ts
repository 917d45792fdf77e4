/** Messages for people: one-line previews (tail, run) and blocks (recv, get, thread, send --wait). */
import { type ContactBook, nameForKey } from '../protocol/contacts.js';
import { shortKey } from '../protocol/encoding.js';
import type { AgentProfile, Message } from '../protocol/types.js';
import type { Style } from './output.js';

export interface RenderContext {
  style: Style;
  contacts: ContactBook;
  /** Our own key, shown as "you". */
  self?: string;
}

/** A contact name, "you", or a shortened key. */
export function who(key: string, r: RenderContext): string {
  if (r.self && key === r.self) return 'you';
  return nameForKey(r.contacts, key) ?? shortKey(key);
}

/** The body in one line: `{"text": …}` shows as the text, anything else as compact JSON. */
export function bodyPreview(body: unknown, max = 120): string {
  const text =
    body !== null && typeof body === 'object' && !Array.isArray(body) && Object.keys(body).length === 1 && typeof (body as { text?: unknown }).text === 'string'
      ? (body as { text: string }).text
      : JSON.stringify(body) ?? 'null';
  const flat = text.replace(/\s+/g, ' ');
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

function clock(iso: string): string {
  const ms = Date.parse(iso);
  return Number.isFinite(ms) ? new Date(ms).toISOString().slice(11, 19) : '--:--:--';
}

/** `12:00:01  alice → you  application/json  #thread  hello` */
export function messageLine(m: Message, r: RenderContext, max = 120): string {
  const { style } = r;
  const thread = m.thread_id ? style.dim(`  #${m.thread_id.length > 24 ? `${m.thread_id.slice(0, 23)}…` : m.thread_id}`) : '';
  const reply = m.in_reply_to ? style.dim('  ↩') : '';
  return `${style.dim(clock(m.created_at))}  ${style.cyan(who(m.sender_key, r))} ${style.dim('→')} ${who(m.recipient_key, r)}  ${style.dim(m.content_type)}${thread}${reply}  ${bodyPreview(m.body, max)}`;
}

/** A message in full: header lines and the pretty-printed body. */
export function messageBlock(m: Message, r: RenderContext): string[] {
  const { style } = r;
  const head = [
    `${style.bold(m.message_id)}  ${style.dim(m.status)}`,
    `${style.dim('from')}     ${who(m.sender_key, r)} ${style.dim(m.sender_key)}`,
    `${style.dim('to')}       ${who(m.recipient_key, r)} ${style.dim(m.recipient_key)}`,
    `${style.dim('type')}     ${m.content_type}`,
    `${style.dim('sent')}     ${m.created_at}${m.delivered_at ? style.dim(`  delivered ${m.delivered_at}`) : ''}`,
  ];
  if (m.thread_id) head.push(`${style.dim('thread')}   ${m.thread_id}`);
  if (m.in_reply_to) head.push(`${style.dim('reply to')} ${m.in_reply_to}`);
  if (Object.keys(m.metadata).length) head.push(`${style.dim('metadata')} ${JSON.stringify(m.metadata)}`);
  if (m.attachments.length) head.push(`${style.dim('files')}    ${m.attachments.map((a) => a.filename ?? a.blob_id).join(', ')}`);
  return [...head, ...JSON.stringify(m.body, null, 2).split('\n').map((l) => `  ${l}`)];
}

/** An agent profile as aligned lines. */
export function profileLines(p: AgentProfile, style: Style): string[] {
  const rows: Array<[string, string]> = [
    ['key', p.public_key],
    ['name', p.display_name ?? style.dim('(none)')],
    ['status', p.status],
    ['visibility', p.visibility],
    ['inbox policy', p.inbox_policy],
    ['created', p.created_at],
    ['last active', p.last_active_at ?? '—'],
  ];
  for (const [k, v] of Object.entries(p.metadata)) rows.push([`meta ${k}`, v]);
  for (const c of p.capabilities) rows.push(['capability', `${c.name}${c.version ? ` v${c.version}` : ''}  ${style.dim(c.tags.join(' '))}${c.description ? `  ${c.description}` : ''}`]);
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${style.dim(k.padEnd(width))}  ${v}`);
}
