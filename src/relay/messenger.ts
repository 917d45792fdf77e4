/**
 * The message pipeline shared by `POST /v1/messages` and the WebSocket `send` frame: policy,
 * rate limits, thread filling, ids, durable storage, then fan-out to live connections and
 * waiting long-polls. Also the poll side (take-and-mark-delivered, long-poll waits).
 */
import type { Clock } from '../core/clock.js';
import { encodeMessageObject } from '../protocol/frames.js';
import { formatInstant } from '../protocol/signing.js';
import type { MessageStatus, SendResponse } from '../protocol/types.js';
import type { NormalizedSend } from '../protocol/validate.js';
import type { Batcher } from './batcher.js';
import type { Directory } from './directory.js';
import { ApiError } from './errors.js';
import { messageId } from './ids.js';
import { rateHeaders, type RateState, SlidingWindow } from './limits.js';
import { type InboxFilter, MESSAGE_PAGE_BYTES, type MessageRecord, type Store } from './store.js';

/** The status a client sees: `sent` past its expiry is `expired` even before the sweeper runs. */
export function effectiveStatus(record: MessageRecord, now: number): MessageStatus {
  return record.status === 'sent' && record.expires_at <= now ? 'expired' : record.status;
}

/** Message times keep their milliseconds, so `(created_at, message_id)` order is arrival order. */
const iso = (ms: number): string => formatInstant(ms);

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
    created_at: iso(record.created_at),
    expires_at: iso(record.expires_at),
    delivered_at: record.delivered_at === null ? null : iso(record.delivered_at),
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
  return { message_id: record.message_id, status: 'sent', created_at: iso(record.created_at), expires_at: iso(record.expires_at) };
}

export interface MessengerOptions {
  sendPerMinute: number;
  receivePerMinute: number;
}

export interface SendOutcome {
  record: MessageRecord;
  /** The sender's rate state after this send (for X-RateLimit-* headers). */
  rate: RateState | undefined;
}

type Waiter = () => void;

export class Messenger {
  readonly #store: Store;
  readonly #batcher: Batcher;
  readonly #directory: Directory;
  readonly #clock: Clock;
  readonly sendLimit: SlidingWindow;
  readonly #receiveLimit: SlidingWindow;
  readonly #waiters = new Map<string, Set<Waiter>>();

  constructor(store: Store, batcher: Batcher, directory: Directory, clock: Clock, options: MessengerOptions) {
    this.#store = store;
    this.#batcher = batcher;
    this.#directory = directory;
    this.#clock = clock;
    this.sendLimit = new SlidingWindow(options.sendPerMinute, clock);
    this.#receiveLimit = new SlidingWindow(options.receivePerMinute, clock);
  }

  /** Accepts a validated message from `sender`; resolves once it is durably stored. */
  async send(sender: string, input: NormalizedSend): Promise<SendOutcome> {
    const now = this.#clock.now();
    const first = input.attachments[0];
    if (first) {
      // This relay stores no blobs yet, so no blob id can be valid (§3.7: 422 with details.blob_id).
      throw new ApiError('unprocessable_entity', `blob ${first.blob_id} does not exist or is not yours`, {
        details: { field: 'attachments[0].blob_id', reason: 'unknown blob', blob_id: first.blob_id },
      });
    }
    const refusal = this.#directory.refusal(input.recipient_key, sender);
    if (refusal === 'forbidden') throw new ApiError('forbidden', 'the recipient is suspended');
    if (refusal === 'acl_denied') throw new ApiError('acl_denied', 'recipient does not accept messages from this sender');

    this.#checkRate(this.sendLimit, sender, sender, 'sender', 'Too many messages');
    this.#checkRate(this.#receiveLimit, input.recipient_key, sender, 'recipient', 'The recipient is receiving too many messages');

    let threadId = input.thread_id;
    if (threadId === null && input.in_reply_to !== null) {
      const parent = this.#store.getMessage(input.in_reply_to);
      if (parent && (parent.sender_key === sender || parent.recipient_key === sender)) threadId = parent.thread_id ?? parent.message_id;
    }
    const created = now;
    const record: MessageRecord = {
      seq: 0,
      message_id: messageId(now),
      sender_key: sender,
      recipient_key: input.recipient_key,
      content_type: input.content_type,
      // The sender's text exactly as received; re-serialising would rewrite numbers and keys.
      body_json: input.body_text ?? JSON.stringify(input.body),
      attachments: input.attachments,
      thread_id: threadId,
      in_reply_to: input.in_reply_to,
      metadata: input.metadata,
      status: 'sent',
      created_at: created,
      expires_at: created + input.expires_in * 1000,
      delivered_at: null,
    };
    this.sendLimit.record(sender);
    this.#receiveLimit.record(input.recipient_key);
    const rate = this.sendLimit.enabled ? this.sendLimit.peek(sender) : undefined;
    await this.#batcher.addMessage(record);
    return { record, rate };
  }

  /**
   * Refuses with 429 when `key`'s window is full. The `X-RateLimit-*` headers always describe the
   * sender's send counter (§7, our choice), even when it is the recipient that is saturated.
   */
  #checkRate(window: SlidingWindow, key: string, sender: string, scope: 'sender' | 'recipient', text: string): void {
    if (!window.enabled) return;
    const state = window.peek(key);
    if (state.retryAfter === 0) return;
    throw new ApiError('rate_limit_exceeded', `${text}; retry in ${state.retryAfter} s.`, {
      details: { limit: state.limit, window: '1m', retry_after: state.retryAfter, ...(scope === 'recipient' ? { scope } : {}) },
      headers: {
        'Retry-After': String(state.retryAfter),
        ...(this.sendLimit.enabled ? rateHeaders(this.sendLimit.peek(sender)) : {}),
      },
    });
  }

  /** Called after each commit: wakes long-polls of the recipients. */
  notify(records: MessageRecord[]): void {
    for (const r of records) {
      const waiters = this.#waiters.get(r.recipient_key);
      if (!waiters) continue;
      this.#waiters.delete(r.recipient_key);
      // One turn later: a client that went away (its close may be in this same batch of I/O
      // events) is noticed before its long poll takes messages it will never read.
      setImmediate(() => {
        for (const w of waiters) w();
      });
    }
  }

  /**
   * A poll: `sent` messages are handed out once and marked delivered atomically — only those that
   * make it into the answer (see `Store.takeSent`); with `waitMs` an empty answer waits for new
   * messages until the deadline or until `signal` aborts.
   */
  async poll(recipient: string, filter: InboxFilter, limit: number, waitMs: number, signal: AbortSignal): Promise<MessagePage> {
    if (filter.status !== 'sent') {
      const now = this.#clock.now();
      const { messages, hasMore } = this.#store.listInbox(recipient, filter, limit, now, MESSAGE_PAGE_BYTES);
      const { json, skipped } = renderMessages(messages, now);
      return { json, last: messages[messages.length - 1], hasMore, skipped };
    }
    const deadline = this.#clock.now() + waitMs;
    for (;;) {
      if (signal.aborted) return { json: [], last: undefined, hasMore: false, skipped: [] };
      const page = this.#take(recipient, filter, limit);
      const left = deadline - this.#clock.now();
      if (page.json.length > 0 || left <= 0) return page;
      await this.#waitFor(recipient, left, signal);
    }
  }

  #take(recipient: string, filter: InboxFilter, limit: number): MessagePage {
    const now = this.#clock.now();
    const json: string[] = [];
    let bytes = 0;
    let last: MessageRecord | undefined;
    const { hasMore, skipped } = this.#store.takeSent(recipient, filter, limit, now, (record) => {
      let text: string;
      try {
        text = servableMessageJson(record, now);
      } catch {
        return 'skip';
      }
      if (json.length > 0 && bytes + text.length > MESSAGE_PAGE_BYTES) return 'full';
      json.push(text);
      bytes += text.length;
      last = record;
      return 'taken';
    });
    return { json, last, hasMore, skipped };
  }

  #waitFor(recipient: string, ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      let set = this.#waiters.get(recipient);
      if (!set) this.#waiters.set(recipient, (set = new Set()));
      const done = (): void => {
        timer.cancel();
        signal.removeEventListener('abort', done);
        this.#waiters.get(recipient)?.delete(done);
        resolve();
      };
      const timer = this.#clock.setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
      set.add(done);
    });
  }

  pruneLimits(): void {
    this.sendLimit.prune();
    this.#receiveLimit.prune();
  }
}
