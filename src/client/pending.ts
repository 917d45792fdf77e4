/**
 * Requests waiting for their answer on a connection, matched by id (habit 9, after nats.js). One
 * table and one timer for all of it: the timer is armed for the earliest deadline, and when it
 * fires every entry past its deadline is rejected and it is armed again. (A timer per request
 * costs a timer object and two timer-list operations per message, for timeouts that almost never
 * fire.) When the connection drops, everything pending is rejected with an OutcomeUnknownError:
 * the relay may or may not have acted, and only the caller knows whether resending is safe.
 */
import type { Clock, Timer } from '../core/clock.js';
import { OutcomeUnknownError } from '../core/errors.js';

interface Entry<T> {
  resolve(value: T): void;
  reject(err: unknown): void;
  /** Clock time after which it is given up. */
  deadline: number;
  timeoutMs: number;
  what: string;
}

export class PendingTable<T> {
  readonly #clock: Clock;
  readonly #entries = new Map<string, Entry<T>>();
  #timer: Timer | undefined;
  /** When the armed timer fires. */
  #armedFor = Number.POSITIVE_INFINITY;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Waits for the answer to `id`; rejects with OutcomeUnknownError after `timeoutMs`. */
  add(id: string, timeoutMs: number, what: string): Promise<T> {
    const deadline = this.#clock.now() + timeoutMs;
    return new Promise<T>((resolve, reject) => {
      this.#entries.set(id, { resolve, reject, deadline, timeoutMs, what });
      if (deadline < this.#armedFor) this.#arm(deadline, timeoutMs);
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
    this.#disarm();
    for (const e of entries) e.reject(err());
  }

  #take(id: string): Entry<T> | undefined {
    const e = this.#entries.get(id);
    if (!e) return undefined;
    this.#entries.delete(id);
    if (this.#entries.size === 0) this.#disarm();
    return e;
  }

  /** Arms the timer for deadline `at`, `delay` from now. */
  #arm(at: number, delay: number): void {
    this.#timer?.cancel();
    this.#armedFor = at;
    this.#timer = this.#clock.setTimeout(() => this.#expire(), Math.max(0, delay));
  }

  #disarm(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#armedFor = Number.POSITIVE_INFINITY;
  }

  /**
   * The timer for deadline `armedFor` fired: rejects every entry due by then, and arms the timer
   * for the earliest deadline left. Deadlines are compared with each other, never with the clock
   * again: the timer measures the time (monotonic), so a wall clock stepped back or forward
   * neither stretches nor cuts a timeout.
   */
  #expire(): void {
    const firedFor = this.#armedFor;
    this.#timer = undefined;
    this.#armedFor = Number.POSITIVE_INFINITY;
    const expired: Entry<T>[] = [];
    let next = Number.POSITIVE_INFINITY;
    for (const [id, e] of this.#entries) {
      if (e.deadline <= firedFor) {
        this.#entries.delete(id);
        expired.push(e);
      } else if (e.deadline < next) next = e.deadline;
    }
    if (next !== Number.POSITIVE_INFINITY) this.#arm(next, next - firedFor);
    for (const e of expired) e.reject(new OutcomeUnknownError(`${e.what}: no answer within ${e.timeoutMs} ms`));
  }
}
