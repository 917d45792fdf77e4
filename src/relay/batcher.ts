/**
 * Group commit. Writes that arrive during one event-loop turn go to the store in one transaction
 * (one fsync), scheduled with setImmediate; while a commit is in flight (an asynchronous store)
 * the next batch keeps filling, so a slow commit makes batches larger instead of queueing
 * transactions. Commits of one batcher never overlap, so one process's commits keep their order.
 *
 * A message's sender is answered only after the commit that holds it: batching changes
 * throughput, never the promise that a 201 survives a crash. A message the recipient's policy
 * refuses at commit time (`Store.commit` checks it inside the transaction) is answered with that
 * refusal. Acks and activity timestamps ride along without anyone waiting for them (losing one to
 * a crash means a redelivery, which at-least-once delivery allows).
 *
 * After each commit the batcher publishes what happened on the bus — `message.stored` for each
 * stored message, `message.delivered` for each ack that took effect — and only then answers the
 * senders. It never calls the hub or the long polls itself.
 *
 * Subscribers fetch what an event names. For messages this process has just committed, the
 * records are still in hand: `justCommitted` lends them until the end of the event-loop turn of
 * their commit (a read-through in front of `Store.getMessages`, saving the live push a query per
 * message). What it lends is exactly what was committed, and only for that turn, so it is never
 * older than the event that named it.
 */
import type { Bus, BusEvent } from './bus.js';
import { ApiError } from './errors.js';
import type { CommitResult, MessageRecord, Store, WriteBatch } from './store/store.js';

interface Pending {
  record: MessageRecord;
  resolve(): void;
  reject(err: unknown): void;
}

export interface BatcherOptions {
  /** Most messages per transaction. */
  maxBatch?: number;
  now(): number;
  bus: Bus;
  /** Called after every successful commit with the messages it stored (seq assigned): metrics. */
  onCommit?(messages: MessageRecord[]): void;
  onError(err: unknown): void;
}

const REFUSALS = {
  acl_denied: () => new ApiError('acl_denied', 'recipient does not accept messages from this sender'),
  forbidden: () => new ApiError('forbidden', 'the recipient is suspended'),
} as const;

/** An attachment's blob went away (deleted, expired) between the send's check and the commit (§3.7). */
function blobMissing(blobId: string, record: MessageRecord): ApiError {
  const index = Math.max(
    0,
    record.attachments.findIndex((a) => a.blob_id === blobId),
  );
  return new ApiError('unprocessable_entity', `blob ${blobId} does not exist or is not yours`, {
    details: { field: `attachments[${index}].blob_id`, reason: 'unknown blob', blob_id: blobId },
  });
}

export class Batcher {
  readonly #store: Store;
  readonly #options: Required<Pick<BatcherOptions, 'maxBatch'>> & BatcherOptions;
  #messages: Pending[] = [];
  #delivered: WriteBatch['delivered'] = [];
  #active = new Map<string, number>();
  #scheduled = false;
  #closed = false;
  /** The last commit started (commits are chained, never concurrent). */
  #tail: Promise<void> = Promise.resolve();
  /** Records of the latest commit, until the end of its event-loop turn (see the file comment). */
  #lent = new Map<string, MessageRecord>();
  #lentClear = false;

  constructor(store: Store, options: BatcherOptions) {
    this.#store = store;
    this.#options = { maxBatch: 2000, ...options };
  }

  /** Stores a message; resolves once it is committed, rejects with the refusal or the storage error. */
  addMessage(record: MessageRecord): Promise<void> {
    if (this.#closed) return Promise.reject(new ApiError('service_unavailable', 'the relay is shutting down'));
    return new Promise((resolve, reject) => {
      this.#messages.push({ record, resolve, reject });
      if (this.#messages.length >= this.#options.maxBatch) void this.flush();
      else this.#schedule();
    });
  }

  /** Marks a message delivered (acknowledged), at the next commit. */
  addDelivered(messageId: string, recipientKey: string): void {
    this.#delivered.push({ message_id: messageId, recipient_key: recipientKey });
    this.#schedule();
  }

  /** Records an agent's activity time, at the next commit. */
  touch(key: string, at: number): void {
    this.#active.set(key, at);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#scheduled || this.#closed) return;
    this.#scheduled = true;
    setImmediate(() => void this.flush());
  }

  /** Commits everything queued so far; resolves once it is committed (or failed and was reported). */
  flush(): Promise<void> {
    this.#scheduled = false;
    this.#tail = this.#tail.then(() => this.#commitQueued());
    return this.#tail;
  }

  /** One transaction of at most `maxBatch` messages plus every queued ack and stamp; more → another. */
  async #commitQueued(): Promise<void> {
    while (this.#messages.length > 0 || this.#delivered.length > 0 || this.#active.size > 0) {
      const pending = this.#messages.splice(0, this.#options.maxBatch);
      const batch: WriteBatch = {
        messages: pending.map((p) => p.record),
        delivered: this.#delivered,
        active: this.#active,
      };
      this.#delivered = [];
      this.#active = new Map();
      let result: CommitResult;
      try {
        result = await this.#store.commit(batch, this.#options.now());
      } catch (err) {
        this.#options.onError(err);
        for (const p of pending) p.reject(err);
        continue;
      }
      this.#published(pending, result);
    }
  }

  /** A message this process committed in the current event-loop turn, as committed. */
  justCommitted(messageId: string): MessageRecord | undefined {
    return this.#lent.get(messageId);
  }

  #lend(record: MessageRecord): void {
    this.#lent.set(record.message_id, record);
    if (this.#lentClear) return;
    this.#lentClear = true;
    setImmediate(() => {
      this.#lent = new Map();
      this.#lentClear = false;
    });
  }

  /** Publishes what a commit did, then answers the senders. */
  #published(pending: Pending[], result: CommitResult): void {
    const events: BusEvent[] = [];
    const stored: MessageRecord[] = [];
    for (const { record } of pending) {
      if (result.refused.has(record.message_id)) continue;
      stored.push(record);
      this.#lend(record);
      events.push({
        type: 'message.stored',
        recipient: record.recipient_key,
        message_id: record.message_id,
        created_at: record.created_at,
        seq: record.seq,
        ...(result.webhooks ? { webhook: result.webhooks.has(record.message_id) } : {}),
      });
    }
    for (const d of result.delivered)
      events.push({ type: 'message.delivered', recipient: d.recipient_key, message_id: d.message_id, via: 'ack' });
    this.#options.bus.publish(events);
    if (stored.length > 0) {
      try {
        this.#options.onCommit?.(stored);
      } catch (err) {
        this.#options.onError(err);
      }
    }
    for (const p of pending) {
      const refusal = result.refused.get(p.record.message_id);
      if (typeof refusal === 'object') p.reject(blobMissing(refusal.blob_missing, p.record));
      else if (refusal) p.reject(REFUSALS[refusal]());
      else p.resolve();
    }
  }

  /** Commits what is queued and refuses further messages. */
  async close(): Promise<void> {
    await this.flush();
    this.#closed = true;
  }
}
