/**
 * Group commit. Writes that arrive during one event-loop turn go to the store in one transaction
 * (one fsync), scheduled with setImmediate. A message's sender is answered only after the commit
 * that holds it: batching changes throughput, never the promise that a 201 survives a crash.
 * Acks and activity timestamps ride along without anyone waiting for them (losing one to a crash
 * means a redelivery, which at-least-once delivery allows).
 */
import type { MessageRecord, Store, WriteBatch } from './store.js';

interface Waiter {
  resolve(): void;
  reject(err: unknown): void;
}

export interface BatcherOptions {
  /** Most messages per transaction. */
  maxBatch?: number;
  now(): number;
  /** Called after every successful commit with the messages it stored (seq assigned). */
  onCommit(messages: MessageRecord[]): void;
  onError(err: unknown): void;
}

export class Batcher {
  readonly #store: Store;
  readonly #options: Required<Pick<BatcherOptions, 'maxBatch'>> & BatcherOptions;
  #batch: WriteBatch = { messages: [], delivered: [], active: new Map() };
  #waiters: Waiter[] = [];
  #scheduled = false;
  #closed = false;

  constructor(store: Store, options: BatcherOptions) {
    this.#store = store;
    this.#options = { maxBatch: 2000, ...options };
  }

  /** Stores a message; resolves once it is committed. */
  addMessage(record: MessageRecord): Promise<void> {
    if (this.#closed) return Promise.reject(new Error('relay is shutting down'));
    return new Promise((resolve, reject) => {
      this.#batch.messages.push(record);
      this.#waiters.push({ resolve, reject });
      if (this.#batch.messages.length >= this.#options.maxBatch) this.flush();
      else this.#schedule();
    });
  }

  /** Marks a message delivered (acknowledged), at the next commit. */
  addDelivered(messageId: string, recipientKey: string): void {
    this.#batch.delivered.push({ message_id: messageId, recipient_key: recipientKey });
    this.#schedule();
  }

  /** Records an agent's activity time, at the next commit. */
  touch(key: string, at: number): void {
    this.#batch.active.set(key, at);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#scheduled || this.#closed) return;
    this.#scheduled = true;
    setImmediate(() => this.flush());
  }

  /** Commits everything queued, now. */
  flush(): void {
    this.#scheduled = false;
    const batch = this.#batch;
    const waiters = this.#waiters;
    if (batch.messages.length === 0 && batch.delivered.length === 0 && batch.active.size === 0) return;
    this.#batch = { messages: [], delivered: [], active: new Map() };
    this.#waiters = [];
    try {
      this.#store.commit(batch, this.#options.now());
    } catch (err) {
      this.#options.onError(err);
      for (const w of waiters) w.reject(err);
      return;
    }
    if (batch.messages.length > 0) this.#options.onCommit(batch.messages);
    for (const w of waiters) w.resolve();
  }

  /** Flushes and refuses further messages. */
  close(): void {
    this.flush();
    this.#closed = true;
  }
}
