/**
 * Per-agent sliding-window rate limits (spec §7): a message counts for exactly one minute after
 * it was accepted. Exact (a log of accept times, at most `limit` per key) and configurable; a
 * limit of 0 means unlimited.
 */
import type { Clock } from '../core/clock.js';

export interface RateState {
  limit: number;
  remaining: number;
  /** Unix seconds when the oldest counted event leaves the window. */
  reset: number;
  /** Seconds until one more event is allowed (0 when allowed now). */
  retryAfter: number;
}

export class SlidingWindow {
  readonly limit: number;
  readonly windowMs: number;
  readonly #clock: Clock;
  readonly #log = new Map<string, number[]>();

  constructor(limit: number, clock: Clock, windowMs = 60_000) {
    this.limit = limit;
    this.windowMs = windowMs;
    this.#clock = clock;
  }

  get enabled(): boolean {
    return this.limit > 0;
  }

  #events(key: string, now: number): number[] {
    const events = this.#log.get(key);
    if (!events) return [];
    let drop = 0;
    while (drop < events.length && events[drop]! <= now - this.windowMs) drop++;
    if (drop > 0) events.splice(0, drop);
    if (events.length === 0) this.#log.delete(key);
    return events;
  }

  /** The state for `key` now, without counting anything. */
  peek(key: string): RateState {
    const now = this.#clock.now();
    const events = this.#events(key, now);
    const oldest = events[0];
    const resetMs = oldest === undefined ? now + this.windowMs : oldest + this.windowMs;
    const full = events.length >= this.limit;
    return {
      limit: this.limit,
      remaining: Math.max(0, this.limit - events.length),
      reset: Math.ceil(resetMs / 1000),
      retryAfter: full ? Math.max(1, Math.ceil((resetMs - now) / 1000)) : 0,
    };
  }

  /** Counts one event for `key` (call only for accepted events). */
  record(key: string): void {
    if (!this.enabled) return;
    const now = this.#clock.now();
    let events = this.#log.get(key);
    if (!events) this.#log.set(key, (events = []));
    events.push(now);
    if (events.length > this.limit) events.splice(0, events.length - this.limit);
  }

  /** Drops keys whose windows are empty (memory hygiene). */
  prune(): void {
    const now = this.#clock.now();
    for (const key of [...this.#log.keys()]) this.#events(key, now);
  }
}

/** `X-RateLimit-*` headers for a state. */
export function rateHeaders(state: RateState): Record<string, string> {
  return {
    'X-RateLimit-Limit': String(state.limit),
    'X-RateLimit-Remaining': String(state.remaining),
    'X-RateLimit-Reset': String(state.reset),
  };
}
