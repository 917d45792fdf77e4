/**
 * The message pipeline shared by `POST /v1/messages` and the WebSocket `send` frame: policy,
 * rate limits, thread filling, ids, durable storage (the batcher, which publishes on the bus once
 * the message is committed). Also the poll side: take-and-mark-delivered (one atomic store call)
 * and long-poll waits.
 *
 * A long poll is woken by `message.stored` events on the bus, wherever the message was committed.
 * It starts watching BEFORE it reads the inbox, so a message committed while the read is in
 * flight (possible with an asynchronous store, or another process) wakes it instead of being
 * noticed only at the deadline.
 */
import type { Clock } from '../core/clock.js';
import type { Attachment } from '../protocol/types.js';
import type { NormalizedSend } from '../protocol/validate.js';
import type { Batcher } from './batcher.js';
import type { Bus } from './bus.js';
import type { Directory } from './directory.js';
import { ApiError } from './errors.js';
import { messageId } from './ids.js';
import { limits, type RateLimiter, type RateState, rateHeaders } from './limits.js';
import { type MessagePage, renderMessages, servableMessageJson } from './message-json.js';
import { type InboxFilter, MESSAGE_PAGE_BYTES, type MessageRecord, type Store } from './store/store.js';

export interface MessengerDeps {
  store: Store;
  batcher: Batcher;
  directory: Directory;
  bus: Bus;
  clock: Clock;
  sendLimit: RateLimiter;
  receiveLimit: RateLimiter;
}

/** A poll's client-gone state (the route's `Request`): `aborted` is read freely, `signal` only to wait. */
export interface PollAbort {
  readonly aborted: boolean;
  readonly signal: AbortSignal;
}

export interface SendOutcome {
  record: MessageRecord;
  /** The sender's rate state after this send (for X-RateLimit-* headers). */
  rate: RateState | undefined;
}

/** A long poll's interest in one recipient's new messages, taken before its read. */
class Watch {
  woken = false;
  #wake: (() => void) | undefined;

  fire(): void {
    this.woken = true;
    this.#wake?.();
  }

  /** Resolves when fired (at once if it already was), after `ms`, or when `signal` aborts. */
  wait(clock: Clock, ms: number, signal: AbortSignal): Promise<void> {
    if (this.woken || signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        this.#wake = undefined;
        timer.cancel();
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = clock.setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
      this.#wake = done;
    });
  }
}

export class Messenger {
  readonly #deps: MessengerDeps;
  readonly #clock: Clock;
  readonly #watches = new Map<string, Set<Watch>>();

  constructor(deps: MessengerDeps) {
    this.#deps = deps;
    this.#clock = deps.clock;
    deps.bus.subscribe('message.stored', (e) => this.#wake(e.recipient));
    // Events may have been missed: every held poll polls again.
    deps.bus.subscribe('bus.resync', () => {
      for (const recipient of [...this.#watches.keys()]) this.#wake(recipient);
    });
  }

  /**
   * Checks and fills a send's attachments (§3.7, our choice): each blob must exist, be unexpired
   * and be the sender's (422 `unprocessable_entity` with `details.blob_id` otherwise); `size` and
   * `hash` always come from the blob, `content_type` from the blob unless the sender gave one;
   * `filename`, `encrypted`, `dek_enc`, `dek_ct` pass through. The commit checks the blobs again
   * (`Store.commit`), so one deleted in between is refused there.
   */
  async #attachments(sender: string, given: readonly Attachment[], now: number): Promise<Attachment[]> {
    const out: Attachment[] = [];
    for (const [i, a] of given.entries()) {
      const blob = await this.#deps.store.getBlob(a.blob_id);
      if (!blob || blob.owner_key !== sender || blob.expires_at <= now) {
        throw new ApiError('unprocessable_entity', `blob ${a.blob_id} does not exist or is not yours`, {
          details: { field: `attachments[${i}].blob_id`, reason: 'unknown blob', blob_id: a.blob_id },
        });
      }
      const filled: Attachment = { blob_id: a.blob_id };
      if (a.filename !== undefined) filled.filename = a.filename;
      filled.content_type = a.content_type ?? blob.content_type;
      filled.size = blob.size;
      filled.hash = blob.hash;
      if (a.encrypted !== undefined) filled.encrypted = a.encrypted;
      if (a.dek_enc !== undefined) filled.dek_enc = a.dek_enc;
      if (a.dek_ct !== undefined) filled.dek_ct = a.dek_ct;
      out.push(filled);
    }
    return out;
  }

  /** The sender's send window (its state goes into the `X-RateLimit-*` headers of sends). */
  get sendLimit(): RateLimiter {
    return this.#deps.sendLimit;
  }

  /** Accepts a validated message from `sender`; resolves once it is durably stored. */
  async send(sender: string, input: NormalizedSend): Promise<SendOutcome> {
    const { directory, store, batcher, sendLimit, receiveLimit } = this.#deps;
    // Most messages have none: no lookup to wait for.
    const attachments =
      input.attachments.length === 0 ? [] : await this.#attachments(sender, input.attachments, this.#clock.now());
    // Early refusal from the caches; the commit checks the stored policy again (Store.commit).
    const decided = directory.refusal(input.recipient_key, sender);
    const refusal = typeof decided === 'object' ? await decided : decided;
    if (refusal === 'forbidden') throw new ApiError('forbidden', 'the recipient is suspended');
    if (refusal === 'acl_denied')
      throw new ApiError('acl_denied', 'recipient does not accept messages from this sender');

    // Check every window, then count in each (a refused send counts nowhere); windows of 0 are off.
    const limitSend = limits(sendLimit);
    const limitReceive = limits(receiveLimit);
    if (limitSend) await this.#checkRate(sendLimit, sender, sender, 'sender', 'Too many messages');
    if (limitReceive)
      await this.#checkRate(
        receiveLimit,
        input.recipient_key,
        sender,
        'recipient',
        'The recipient is receiving too many messages',
      );
    if (limitSend) await sendLimit.record(sender);
    if (limitReceive) await receiveLimit.record(input.recipient_key);
    const rate = limitSend ? await sendLimit.peek(sender) : undefined;

    let threadId = input.thread_id;
    if (threadId === null && input.in_reply_to !== null) {
      const parent = await store.getMessage(input.in_reply_to);
      if (parent && (parent.sender_key === sender || parent.recipient_key === sender))
        threadId = parent.thread_id ?? parent.message_id;
    }
    // Stamped after every asynchronous check, right before it joins the write batch: within one
    // process, `created_at` order is then `seq` order (the order pushes and backlogs follow).
    const now = this.#clock.now();
    const record: MessageRecord = {
      seq: 0,
      message_id: messageId(now),
      sender_key: sender,
      recipient_key: input.recipient_key,
      content_type: input.content_type,
      // The sender's text exactly as received; re-serialising would rewrite numbers and keys.
      body_json: input.body_text ?? JSON.stringify(input.body),
      attachments,
      thread_id: threadId,
      in_reply_to: input.in_reply_to,
      metadata: input.metadata,
      status: 'sent',
      created_at: now,
      expires_at: now + input.expires_in * 1000,
      delivered_at: null,
    };
    await batcher.addMessage(record);
    return { record, rate };
  }

  /**
   * Refuses with 429 when `key`'s window is full. The `X-RateLimit-*` headers always describe the
   * sender's send counter (§7, our choice), even when it is the recipient that is saturated.
   */
  async #checkRate(
    window: RateLimiter,
    key: string,
    sender: string,
    scope: 'sender' | 'recipient',
    text: string,
  ): Promise<void> {
    const state = await window.peek(key);
    if (state.retryAfter === 0) return;
    const sendLimit = this.#deps.sendLimit;
    throw new ApiError('rate_limit_exceeded', `${text}; retry in ${state.retryAfter} s.`, {
      details: {
        limit: state.limit,
        window: '1m',
        retry_after: state.retryAfter,
        ...(scope === 'recipient' ? { scope } : {}),
      },
      headers: {
        'Retry-After': String(state.retryAfter),
        ...(limits(sendLimit) ? rateHeaders(await sendLimit.peek(sender)) : {}),
      },
    });
  }

  /** A message was committed for `recipient` (any process): wakes its long polls one turn later. */
  #wake(recipient: string): void {
    const watches = this.#watches.get(recipient);
    if (!watches) return;
    this.#watches.delete(recipient);
    // One turn later: a client that went away (its close may be in this same batch of I/O
    // events) is noticed before its long poll takes messages it will never read.
    setImmediate(() => {
      for (const w of watches) w.fire();
    });
  }

  #watch(recipient: string): Watch {
    const watch = new Watch();
    let set = this.#watches.get(recipient);
    if (!set) this.#watches.set(recipient, (set = new Set()));
    set.add(watch);
    return watch;
  }

  #unwatch(recipient: string, watch: Watch): void {
    const set = this.#watches.get(recipient);
    if (!set?.delete(watch)) return;
    if (set.size === 0) this.#watches.delete(recipient);
  }

  /**
   * A poll: `sent` messages are handed out once and marked delivered atomically — only those that
   * make it into the answer (see `Store.takeSent`); with `waitMs` an empty answer waits for new
   * messages until the deadline or until `abort.signal` aborts (read only then: a poll that does
   * not wait never makes one).
   */
  async poll(
    recipient: string,
    filter: InboxFilter,
    limit: number,
    waitMs: number,
    abort: PollAbort,
  ): Promise<MessagePage> {
    if (filter.status !== 'sent') {
      const now = this.#clock.now();
      const { messages, hasMore } = await this.#deps.store.listInbox(recipient, filter, limit, now, MESSAGE_PAGE_BYTES);
      const { json, skipped } = renderMessages(messages, now);
      return { json, last: messages[messages.length - 1], hasMore, skipped };
    }
    const deadline = this.#clock.now() + waitMs;
    for (;;) {
      if (abort.aborted) return { json: [], last: undefined, hasMore: false, skipped: [] };
      const watch = waitMs > 0 ? this.#watch(recipient) : undefined;
      try {
        const page = await this.#take(recipient, filter, limit, abort);
        const left = deadline - this.#clock.now();
        if (page.json.length > 0 || left <= 0 || !watch) return page;
        await watch.wait(this.#clock, left, abort.signal);
      } finally {
        if (watch) this.#unwatch(recipient, watch);
      }
    }
  }

  async #take(recipient: string, filter: InboxFilter, limit: number, abort: PollAbort): Promise<MessagePage> {
    // A client that left while this poll waited for its turn takes nothing.
    if (abort.aborted) return { json: [], last: undefined, hasMore: false, skipped: [] };
    const now = this.#clock.now();
    const json: string[] = [];
    let bytes = 0;
    let last: MessageRecord | undefined;
    const { messages, hasMore, skipped } = await this.#deps.store.takeSent(recipient, filter, limit, now, (record) => {
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
    if (messages.length > 0) {
      this.#deps.bus.publish(
        messages.map((m) => ({ type: 'message.delivered', recipient, message_id: m.message_id, via: 'poll' })),
      );
    }
    return { json, last, hasMore, skipped };
  }
}
