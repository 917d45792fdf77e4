/**
 * Per-agent rate limits (docs/protocol.md §7) behind the `RateLimiter` interface, because the windows are
 * process-local state: with several relay processes a shared limiter (Postgres, Redis) must count
 * across them. `SlidingWindow` is the one-process version: a message counts for exactly one
 * minute after it was accepted; exact (a log of accept times, at most `limit` per key). A limit
 * of 0 means unlimited.
 *
 * `peek` then `record` is the protocol (check every window a request touches, then count it in
 * each only once all agreed), so a refused request counts nowhere. Across processes the pair is
 * not atomic: a shared limiter may admit a few more than `limit` under concurrent requests of one
 * key (at most one per process in flight), which §7 tolerates.
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

export interface RateLimiter {
  /** Events per window and key; 0 = unlimited (then `peek` always allows and `record` does nothing). */
  readonly limit: number;
  /** The state for `key` now, without counting anything. */
  peek(key: string): Promise<RateState>;
  /** Counts one event for `key` (call only for accepted events). */
  record(key: string): Promise<void>;
  /** Drops what no longer counts (the sweeper calls it). */
  prune(): Promise<void>;
}

/** The three windows a relay keeps (§7). */
export type RateScope = 'send' | 'receive' | 'request';

/** Makes a limiter per scope: `createRelay({ rateLimiter })` takes one of these. */
export type RateLimiterFactory = (scope: RateScope, limitPerMinute: number, clock: Clock) => RateLimiter;

/** The default factory: one in-memory sliding window per scope. */
export const memoryRateLimiter: RateLimiterFactory = (_scope, limit, clock) => new SlidingWindow(limit, clock);

/** Whether a limiter limits at all. */
export function limits(limiter: RateLimiter): boolean {
  return limiter.limit > 0;
}

export class SlidingWindow implements RateLimiter {
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

  async peek(key: string): Promise<RateState> {
    return this.peekNow(key);
  }

  /** `peek`, synchronously. */
  peekNow(key: string): RateState {
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

  async record(key: string): Promise<void> {
    this.recordNow(key);
  }

  /** `record`, synchronously. */
  recordNow(key: string): void {
    if (!this.enabled) return;
    const now = this.#clock.now();
    let events = this.#log.get(key);
    if (!events) this.#log.set(key, (events = []));
    events.push(now);
    if (events.length > this.limit) events.splice(0, events.length - this.limit);
  }

  /** Drops keys whose windows are empty (memory hygiene). */
  async prune(): Promise<void> {
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
