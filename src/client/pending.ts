/**
 * Requests waiting for their answer on a connection, matched by id (habit 9, after nats.js):
 * one table, one timer per entry. When the connection drops, everything pending is rejected with
 * an OutcomeUnknownError: the relay may or may not have acted, and only the caller knows whether
 * resending is safe.
 */
import type { Clock, Timer } from '../core/clock.js';
import { OutcomeUnknownError } from '../core/errors.js';

interface Entry<T> {
  resolve(value: T): void;
  reject(err: unknown): void;
  timer: Timer;
}

export class PendingTable<T> {
  readonly #clock: Clock;
  readonly #entries = new Map<string, Entry<T>>();

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Waits for the answer to `id`; rejects with OutcomeUnknownError after `timeoutMs`. */
  add(id: string, timeoutMs: number, what: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = this.#clock.setTimeout(() => {
        this.#entries.delete(id);
        reject(new OutcomeUnknownError(`${what}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#entries.set(id, { resolve, reject, timer });
    });
  }

  resolve(id: string, value: T): boolean {
    const e = this.#take(id);
    e?.resolve(value);
    return e !== undefined;
  }

  reject(id: string, err: unknown): boolean {
    const e = this.#take(id);
    e?.reject(err);
    return e !== undefined;
  }

  /** Fails everything pending (the connection is gone). */
  rejectAll(err: () => Error): void {
    const entries = [...this.#entries.values()];
    this.#entries.clear();
    for (const e of entries) {
      e.timer.cancel();
      e.reject(err());
    }
  }

  #take(id: string): Entry<T> | undefined {
    const e = this.#entries.get(id);
    if (!e) return undefined;
    this.#entries.delete(id);
    e.timer.cancel();
    return e;
  }
}
