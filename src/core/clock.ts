/**
 * Time as a parameter. Everything that waits (backoff, heartbeats, timeouts, TTLs, rate windows)
 * takes a `Clock`, so tests drive time with a `ManualClock` instead of sleeping.
 */

/** A scheduled callback. `unref` lets the process exit while it is pending. */
export interface Timer {
  cancel(): void;
  unref(): Timer;
}

export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  setTimeout(fn: () => void, ms: number): Timer;
  setInterval(fn: () => void, ms: number): Timer;
}

class SystemTimer implements Timer {
  readonly #handle: NodeJS.Timeout;
  readonly #interval: boolean;
  constructor(handle: NodeJS.Timeout, interval: boolean) {
    this.#handle = handle;
    this.#interval = interval;
  }
  cancel(): void {
    if (this.#interval) clearInterval(this.#handle);
    else clearTimeout(this.#handle);
  }
  unref(): Timer {
    this.#handle.unref();
    return this;
  }
}

/** The real clock. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => new SystemTimer(setTimeout(fn, Math.max(0, ms)), false),
  setInterval: (fn, ms) => new SystemTimer(setInterval(fn, Math.max(1, ms)), true),
};

interface ManualEntry {
  id: number;
  due: number;
  every: number | undefined;
  fn: () => void;
}

/**
 * A clock that only moves when told to. Timers fire in due order during `advance`; an interval
 * fires once per period crossed. `advanceAsync` lets promise chains run between timers, which is
 * what tests with real sockets want.
 */
export class ManualClock implements Clock {
  #now: number;
  #nextId = 1;
  #timers = new Map<number, ManualEntry>();

  constructor(start = Date.UTC(2026, 2, 5, 12, 0, 0)) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): Timer {
    return this.#add(fn, Math.max(0, ms), undefined);
  }

  setInterval(fn: () => void, ms: number): Timer {
    const period = Math.max(1, ms);
    return this.#add(fn, period, period);
  }

  /** Number of timers still scheduled. */
  get pending(): number {
    return this.#timers.size;
  }

  /** Milliseconds until the next timer fires, or undefined when none is scheduled. */
  nextDelay(): number | undefined {
    let min: number | undefined;
    for (const t of this.#timers.values()) if (min === undefined || t.due < min) min = t.due;
    return min === undefined ? undefined : min - this.#now;
  }

  /** Moves time forward by `ms`, firing due timers synchronously in order. */
  advance(ms: number): void {
    const target = this.#now + ms;
    for (let t = this.#nextDue(target); t; t = this.#nextDue(target)) this.#fire(t);
    this.#now = target;
  }

  /** Like `advance`, but yields to the event loop before and after each timer. */
  async advanceAsync(ms: number): Promise<void> {
    const target = this.#now + ms;
    await yieldToEventLoop();
    for (let t = this.#nextDue(target); t; t = this.#nextDue(target)) {
      const result = this.#fire(t);
      // A timer whose work is asynchronous (a sweep on a database) is waited for.
      if (result instanceof Promise) await result.catch(() => {});
      await yieldToEventLoop();
    }
    this.#now = target;
    await yieldToEventLoop();
  }

  /** Sets the wall clock without firing timers (to simulate clock skew). */
  set(ms: number): void {
    this.#now = ms;
  }

  #add(fn: () => void, delay: number, every: number | undefined): Timer {
    const id = this.#nextId++;
    this.#timers.set(id, { id, due: this.#now + delay, every, fn });
    const timers = this.#timers;
    const timer: Timer = {
      cancel: () => void timers.delete(id),
      unref: () => timer,
    };
    return timer;
  }

  #nextDue(limit: number): ManualEntry | undefined {
    let best: ManualEntry | undefined;
    for (const t of this.#timers.values()) {
      if (t.due > limit) continue;
      if (!best || t.due < best.due || (t.due === best.due && t.id < best.id)) best = t;
    }
    return best;
  }

  /** Runs a due timer; returns what its function returned (a promise `advanceAsync` waits for). */
  #fire(t: ManualEntry): unknown {
    this.#now = Math.max(this.#now, t.due);
    if (t.every === undefined) this.#timers.delete(t.id);
    else t.due += t.every;
    return (t.fn as () => unknown)();
  }
}

function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
