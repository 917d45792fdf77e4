/**
 * Stored messages as the JSON the relay answers with. The message object itself is encoded by
 * `encodeMessageObject` (`protocol/frames.ts`, the one place that splices the stored body text);
 * this file maps a record onto it (the status a client sees, times as RFC 3339) and decides what
 * can be served: a stored body that does not parse is left out and named, never sent.
 */
import { encodeMessageObject } from '../protocol/frames.js';
import { formatInstant } from '../protocol/signing.js';
import type { MessageStatus, SendResponse } from '../protocol/types.js';
import type { MessageRecord } from './store/store.js';

/** The status a client sees: `sent` past its expiry is `expired` even before the sweeper runs. */
export function effectiveStatus(record: MessageRecord, now: number): MessageStatus {
  return record.status === 'sent' && record.expires_at <= now ? 'expired' : record.status;
}

/** The §3.6 message object as JSON text, built around the stored body text (no re-serialising). */
export function messageJson(record: MessageRecord, now: number): string {
  return encodeMessageObject({
    message_id: record.message_id,
    sender_key: record.sender_key,
    recipient_key: record.recipient_key,
    content_type: record.content_type,
    body_text: record.body_json,
    attachments: record.attachments,
    thread_id: record.thread_id,
    in_reply_to: record.in_reply_to,
    metadata: record.metadata,
    status: effectiveStatus(record, now),
    created_at: formatInstant(record.created_at),
    expires_at: formatInstant(record.expires_at),
    delivered_at: record.delivered_at === null ? null : formatInstant(record.delivered_at),
  });
}

/**
 * `messageJson` for an HTTP answer, checked first: the stored body is the one part not built
 * here, so it must parse, or a single damaged row would make the whole answer unreadable (and a
 * poll would have marked its messages delivered). Throws when it cannot be served.
 */
export function servableMessageJson(record: MessageRecord, now: number): string {
  JSON.parse(record.body_json);
  return messageJson(record, now);
}

/** Message objects as JSON texts, leaving out (and naming) those that cannot be served. */
export function renderMessages(records: MessageRecord[], now: number): { json: string[]; skipped: string[] } {
  const json: string[] = [];
  const skipped: string[] = [];
  for (const record of records) {
    try {
      json.push(servableMessageJson(record, now));
    } catch {
      skipped.push(record.message_id);
    }
  }
  return { json, skipped };
}

/** A page of message objects, already JSON text, with what is needed for its cursor. */
export interface MessagePage {
  json: string[];
  /** The last message on the page (cursor). */
  last: MessageRecord | undefined;
  hasMore: boolean;
  /** Messages left out because they cannot be served (poll: left `sent`). */
  skipped: string[];
}

export function sendResponse(record: MessageRecord): SendResponse {
  return {
    message_id: record.message_id,
    status: 'sent',
    created_at: formatInstant(record.created_at),
    expires_at: formatInstant(record.expires_at),
  };
}
