/**
 * Poll mode (spec §3.6): `GET /v1/messages` in a loop, every attempt freshly signed. Uses the
 * long-poll `wait` parameter where the relay honours it and falls back to a fixed interval where
 * it does not (an empty answer that comes back well before the wait ran out). Backs off on
 * errors, honours Retry-After, gives up after repeated authentication failures.
 *
 * A poll marks what it returns delivered, so the consumer must make each batch durable before
 * handling it: messages are emitted one batch at a time, and the poller asks `capacity()` how
 * many more it may fetch so a busy consumer is not flooded.
 */
import { sleep } from '../core/async.js';
import { Backoff, type BackoffOptions } from '../core/backoff.js';
import { type Clock, systemClock } from '../core/clock.js';
import { TypedEmitter } from '../core/emitter.js';
import { type MrpError, RelayError, toMrpError } from '../core/errors.js';
import { LIMITS, TIMING } from '../protocol/constants.js';
import { formatTimestamp } from '../protocol/signing.js';
import type { RejectedMessage } from '../protocol/inbound.js';
import type { Message } from '../protocol/types.js';
import type { PollPage, RelayClient } from './http.js';

export interface PollerEvents extends Record<string, unknown[]> {
  /** One poll's messages, oldest first, with the size of each one's text. */
  batch: [messages: Message[], sizes: number[]];
  /** Messages a poll returned (and so marked delivered) that cannot be handled. */
  rejected: [RejectedMessage[]];
  /** The poller switched between long-poll and interval polling. */
  mode: ['long-poll' | 'interval'];
  /** A failed poll; the next attempt comes after `delayMs`. */
  retry: [{ error: MrpError; delayMs: number }];
  /** Recovered after failures. */
  recovered: [];
  /** Something went wrong that the poller worked around. */
  warning: [MrpError];
  fatal: [MrpError];
}

export interface PollerOptions {
  client: RelayClient;
  clock?: Clock;
  /** Long-poll wait in seconds (default 20; 0 disables long polling). */
  waitSeconds?: number;
  /** Pause between polls in interval mode (default 2 s). */
  intervalMs?: number;
  /** Most messages per poll (default 100). */
  limit?: number;
  /** How many more messages the consumer can take right now (default: unlimited). */
  capacity?: () => number;
  backoff?: BackoffOptions;
  maxAuthFailures?: number;
}

/** How far back (before a cancelled poll started) to look for messages it may have taken. */
const RECOVERY_MARGIN_MS = TIMING.timestampToleranceMs;
/** How long a cancelled long poll may take to reach the relay before the recovery look. */
const RECOVERY_SETTLE_MS = 500;

export const POLLER_DEFAULTS = { waitSeconds: 20, intervalMs: 2000, limit: LIMITS.pollLimitMax, maxAuthFailures: 5 } as const;

export class Poller extends TypedEmitter<PollerEvents> {
  readonly #client: RelayClient;
  readonly #clock: Clock;
  readonly #intervalMs: number;
  readonly #limit: number;
  readonly #capacity: () => number;
  readonly #backoff: Backoff;
  readonly #maxAuthFailures: number;
  #waitSeconds: number;
  #running = false;
  #loop: Promise<void> | undefined;
  #idle = new AbortController();
  #wake: (() => void) | undefined;

  constructor(options: PollerOptions) {
    super();
    this.#client = options.client;
    this.#clock = options.clock ?? systemClock;
    this.#waitSeconds = Math.min(options.waitSeconds ?? POLLER_DEFAULTS.waitSeconds, LIMITS.pollWaitMaxSeconds);
    this.#intervalMs = options.intervalMs ?? POLLER_DEFAULTS.intervalMs;
    this.#limit = Math.min(options.limit ?? POLLER_DEFAULTS.limit, LIMITS.pollLimitMax);
    this.#capacity = options.capacity ?? (() => Number.POSITIVE_INFINITY);
    this.#backoff = new Backoff(options.backoff);
    this.#maxAuthFailures = options.maxAuthFailures ?? POLLER_DEFAULTS.maxAuthFailures;
  }

  get mode(): 'long-poll' | 'interval' {
    return this.#waitSeconds > 0 ? 'long-poll' : 'interval';
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#loop = this.#run();
  }

  /** The consumer has room again. */
  wake(): void {
    this.#wake?.();
  }

  /** Stops polling: cancels a waiting long poll (recovering what it may have taken) and returns. */
  async stop(): Promise<void> {
    this.#running = false;
    this.#idle.abort();
    this.#wake?.();
    await this.#loop;
  }

  /**
   * Emits the messages delivered to this agent since `since` (minus a margin for clock skew).
   * A poll marks what it returns delivered, so a poll whose answer was never read — cancelled by
   * `stop()` in the instant the relay answered it, or cut off by a crash — loses those messages
   * unless someone looks. They were created after that poll started, so they are in this list;
   * the consumer skips those it already has.
   */
  async recoverSince(since: number): Promise<boolean> {
    const from = since - RECOVERY_MARGIN_MS;
    let cursor: string | undefined;
    try {
      for (let page = 0; page < 10; page++) {
        const res = await this.#client.poll({ status: 'delivered', since: formatTimestamp(from), limit: LIMITS.pollLimitMax, ...(cursor ? { cursor } : {}) });
        const keep = res.messages.map((m) => m.delivered_at !== null && Date.parse(m.delivered_at) >= from);
        this.#hand({ ...res, messages: res.messages.filter((_, i) => keep[i]), sizes: res.sizes.filter((_, i) => keep[i]), rejected: [] });
        if (!res.has_more || !res.next_cursor) return true;
        cursor = res.next_cursor;
      }
      return true;
    } catch (err) {
      this.emit('warning', toMrpError(err));
      return false;
    }
  }

  /**
   * Hands a page to the consumer. What the consumer does with it is not a failed poll (the relay
   * already marked these messages delivered), so nothing it throws may reach the poll loop.
   */
  #hand(page: PollPage): void {
    try {
      if (page.messages.length > 0) this.emit('batch', page.messages, page.sizes);
      if (page.rejected.length > 0) this.emit('rejected', page.rejected);
    } catch (err) {
      this.emit('warning', toMrpError(err));
    }
  }

  async #pause(ms: number): Promise<void> {
    await sleep(ms, { clock: this.#clock, signal: this.#idle.signal }).catch(() => undefined);
  }

  async #waitForCapacity(): Promise<void> {
    while (this.#running && this.#capacity() <= 0) {
      await new Promise<void>((resolve) => (this.#wake = resolve));
      this.#wake = undefined;
    }
  }

  async #run(): Promise<void> {
    let failures = 0;
    let authFailures = 0;
    while (this.#running) {
      await this.#waitForCapacity();
      if (!this.#running) break;
      const limit = Math.max(1, Math.min(this.#limit, this.#capacity()));
      const wait = this.#waitSeconds;
      const started = this.#clock.now();
      try {
        const page = await this.#client.poll({ limit, ...(wait > 0 ? { wait } : {}) }, this.#idle.signal);
        if (failures > 0) this.emit('recovered');
        failures = 0;
        authFailures = 0;
        this.#backoff.reset();
        const empty = page.messages.length === 0 && page.rejected.length === 0;
        this.#hand(page);
        if (empty && wait > 0 && this.#clock.now() - started < (wait - 1) * 1000 && this.#running) {
          // An empty answer long before the wait ran out: this relay ignores `wait`.
          this.#waitSeconds = 0;
          this.emit('mode', 'interval');
        }
        if (empty && this.#waitSeconds === 0 && this.#running) await this.#pause(this.#intervalMs);
      } catch (err) {
        if (this.#idle.signal.aborted) {
          // Stopped while a long poll was waiting: see what the relay may have handed it, once
          // the relay has had a moment to notice the cancelled request.
          if (wait > 0) {
            await sleep(RECOVERY_SETTLE_MS, { clock: this.#clock });
            await this.recoverSince(started);
          }
          break;
        }
        const error = toMrpError(err);
        if (error instanceof RelayError && error.code === 'bad_request' && wait > 0 && /wait/.test(error.message)) {
          this.#waitSeconds = 0;
          this.emit('mode', 'interval');
          continue;
        }
        failures++;
        if (error.kind === 'auth') authFailures++;
        if (authFailures >= this.#maxAuthFailures || error.kind === 'config' || error.kind === 'usage') {
          this.emit('fatal', error);
          this.#running = false;
          break;
        }
        const retryAfter = error instanceof RelayError && error.retryAfter !== undefined ? error.retryAfter * 1000 : 0;
        const delayMs = Math.max(this.#backoff.next(), retryAfter);
        this.emit('retry', { error, delayMs });
        await this.#pause(delayMs);
      }
    }
  }
}
