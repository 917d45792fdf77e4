/**
 * Poll mode (docs/protocol.md §3.6): `GET /v1/messages` in a loop, every attempt freshly signed. Uses the
 * long-poll `wait` parameter where the relay honours it and falls back to a fixed interval where
 * it does not (an empty answer that comes back well before the wait ran out). Backs off on
 * errors, honours Retry-After, gives up after repeated authentication failures.
 *
 * A poll marks what it returns delivered, so the consumer must make each batch durable before
 * handling it: pages are handed over one at a time (`deliver`, awaited before the poll's take is
 * closed and the next poll is sent; without it, `batch` events), and the poller asks
 * `capacity()` how many more it may fetch so a busy consumer is not flooded.
 */
import { randomBytes } from 'node:crypto';
import { sleep } from '../core/async.js';
import { Backoff, type BackoffOptions } from '../core/backoff.js';
import { type Clock, systemClock } from '../core/clock.js';
import { TypedEmitter } from '../core/emitter.js';
import { MrpError, RelayError, toMrpError } from '../core/errors.js';
import { LIMITS, TIMING } from '../protocol/constants.js';
import type { RejectedMessage } from '../protocol/inbound.js';
import { formatTimestamp } from '../protocol/signing.js';
import type { Message } from '../protocol/types.js';
import { neverReachedRelay, type PollPage, type RelayClient } from './http.js';

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
  /** Notes each poll in flight (see TakeLog). */
  takes?: TakeLog;
  /** A fresh take id for each poll (docs/protocol.md §3.6; default: 16 random bytes, base64url). */
  takeId?: () => string;
  /**
   * Takes each non-empty page and resolves once the consumer has it durably (journaled). The
   * poll's take is closed only then; a rejection leaves the take open, so that window is looked
   * at again (like a poll whose answer was lost). Without it, pages are emitted as events.
   */
  deliver?: (page: PollPage) => Promise<void>;
}

/** Clock margin around a poll's window when the relay's clock is not known: the skew allowed at all. */
const RECOVERY_MARGIN_MS = TIMING.timestampToleranceMs;
/** Clock margin when it was estimated from the relay's `Date` headers (1 s resolution, plus latency). */
const RECOVERY_MARGIN_KNOWN_CLOCK_MS = 2000;
/** How long after its wait a poll may still be answered (reaching the relay late, a slow answer). */
const TAKE_SLACK_MS = 3000;

/**
 * Where the poller notes what is in flight (the journal, under `mrp run`): `begin` right before a
 * poll is sent (with the take id the poll carries), `end` once its answer has been handed over
 * (and so journaled). A process that dies in between leaves a take open, and the next start
 * looks at exactly what that poll took (by its id; by its window on a relay without take ids).
 * `begin` may return a promise (a fleet's journal records the take in its database): the poll is
 * sent only once it resolves; a rejection means the take could not be recorded, and the poll is
 * not sent (tried again after a backoff, as a failed poll).
 */
export interface TakeLog {
  begin(at: number, waitSeconds: number, id: string): void | Promise<void>;
  end(): void;
}

/** A poll whose answer may not have been read: when it was sent (local clock), its wait, its take id. */
export interface Take {
  at: number;
  waitSeconds: number;
  id?: string;
}

function randomTakeId(): string {
  return randomBytes(16).toString('base64url');
}
/** How long a cancelled long poll may take to reach the relay before the recovery look. */
const RECOVERY_SETTLE_MS = 500;

export const POLLER_DEFAULTS = {
  waitSeconds: 20,
  intervalMs: 2000,
  limit: LIMITS.pollLimitMax,
  maxAuthFailures: 5,
} as const;

/**
 * The warning a source that catches up with polls (WebSocket overflow, webhook mode) emits for a
 * failed poll the poller will retry: the poller's `retry` event, said as the source's.
 */
export function catchUpRetryWarning({ error, delayMs }: { error: MrpError; delayMs: number }): MrpError {
  return new MrpError(
    error.kind,
    error.code,
    `catching up on messages waiting on the relay (a poll) failed: ${error.message}; again in ${Math.ceil(delayMs / 1000)} s`,
    { cause: error },
  );
}

export class Poller extends TypedEmitter<PollerEvents> {
  readonly #client: RelayClient;
  readonly #clock: Clock;
  readonly #intervalMs: number;
  readonly #limit: number;
  readonly #capacity: () => number;
  readonly #backoff: Backoff;
  readonly #maxAuthFailures: number;
  readonly #takes: TakeLog | undefined;
  readonly #deliver: ((page: PollPage) => Promise<void>) | undefined;
  readonly #takeId: () => string;
  /**
   * Whether this relay records take ids: true once a poll's answer echoed its id, false once one
   * did not (or a take listing came back unfiltered); unknown before either.
   */
  #recordsTakes: boolean | undefined;
  #waitSeconds: number;
  #running = false;
  /** `stop()` was called: nothing more is polled, not even a catch-up. */
  #stopped = false;
  #loop: Promise<unknown> | undefined;
  #catchingUp: Promise<boolean> | undefined;
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
    this.#takes = options.takes;
    this.#deliver = options.deliver;
    this.#takeId = options.takeId ?? randomTakeId;
  }

  /** Whether the relay is known to record take ids (undefined: not known yet). */
  get recordsTakes(): boolean | undefined {
    return this.#recordsTakes;
  }

  get mode(): 'long-poll' | 'interval' {
    return this.#waitSeconds > 0 ? 'long-poll' : 'interval';
  }

  start(): void {
    if (this.#running || this.#stopped) return;
    this.#running = true;
    this.#loop = this.#run(false);
  }

  /**
   * Polls without waiting, each poll's take noted and closed exactly like the loop's (it is the
   * loop, run until caught up), until the relay answers a page with nothing behind it
   * (`has_more` false): what was waiting on the relay, taken once and handed over. For a source
   * whose messages otherwise come another way (webhook mode: what was stored before its webhook
   * was registered, or while it was disabled). Respects `capacity()` like the loop. Resolves true
   * once caught up; false when stopped first or given up (`fatal`). A call while one is running
   * shares it; not for a poller that was `start`ed.
   */
  catchUp(): Promise<boolean> {
    if (this.#catchingUp) return this.#catchingUp;
    if (this.#running || this.#stopped) return Promise.resolve(false);
    this.#running = true;
    const run = this.#run(true).finally(() => {
      this.#catchingUp = undefined;
      this.#loop = undefined;
      this.#running = false;
    });
    this.#catchingUp = run;
    this.#loop = run;
    return run;
  }

  /** The consumer has room again. */
  wake(): void {
    this.#wake?.();
  }

  /** Stops polling: cancels a waiting long poll (recovering what it may have taken) and returns. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#running = false;
    this.#idle.abort();
    this.#wake?.();
    await this.#loop;
  }

  /**
   * Looks again at what one poll may have taken without its answer being read — a long poll
   * cancelled by `stop()` in the instant the relay answered it, or one in flight when the process
   * died — and hands those messages over (the consumer skips those it already has). Messages
   * `recv` or another consumer took are left alone: with the poll's take id, on a relay that
   * records take ids, exactly what that poll took is listed (`status=delivered&take=<id>`);
   * otherwise the time window of the poll (see `#recoverWindow`). Resolves false if the relay
   * could not be asked (try again).
   */
  async recoverTake(take: Take, until?: number): Promise<boolean> {
    const result = await this.#recover(take, until);
    if (result instanceof MrpError) {
      this.emit('warning', result);
      return false;
    }
    return result;
  }

  /** `recoverTake`, the relay's failure returned instead of emitted (the caller reports it). */
  async #recover(take: Take, until?: number): Promise<boolean | MrpError> {
    try {
      if (take.id !== undefined && this.#recordsTakes !== false) {
        const exact = await this.#recoverById(take.id);
        if (exact !== 'ignored') return exact;
      }
      return await this.#recoverWindow(take, until);
    } catch (err) {
      return toMrpError(err);
    }
  }

  /**
   * Hands over the messages delivered under take `id`. A relay that does not echo the id in
   * `X-MRP-Take` ignored the parameter (its listing is every delivered message): 'ignored', and
   * the caller falls back to the window.
   */
  async #recoverById(id: string): Promise<boolean | 'ignored'> {
    return this.#recoverPages({ take: id }, (res) => {
      if (!res.takeEchoed) {
        this.#recordsTakes = false;
        return 'ignored';
      }
      this.#recordsTakes = true;
      return res.messages.map(() => true);
    });
  }

  /**
   * `take.at` is when that poll was sent (local clock); the relay can only have taken messages for
   * it between then and its wait running out, so only messages delivered within that window (on
   * the relay's clock, estimated from its `Date` headers, ± a margin) are handed over. What `recv`
   * took inside that window cannot be told apart: relays that record take ids avoid this.
   */
  async #recoverWindow(take: Take, until?: number): Promise<boolean> {
    const offset = this.#client.clockOffsetMs;
    const margin = offset === undefined ? RECOVERY_MARGIN_MS : RECOVERY_MARGIN_KNOWN_CLOCK_MS;
    const from = take.at + (offset ?? 0) - margin;
    const to = (until ?? take.at + take.waitSeconds * 1000 + TAKE_SLACK_MS) + (offset ?? 0) + margin;
    const result = await this.#recoverPages({ since: formatTimestamp(from) }, (res) =>
      res.messages.map((m) => {
        const at = m.delivered_at === null ? Number.NaN : Date.parse(m.delivered_at);
        return at >= from && at <= to;
      }),
    );
    return result === true;
  }

  /**
   * Walks a `status=delivered` listing, handing over what `pick` keeps on each page; `pick` may
   * stop the walk with 'ignored' (before anything is handed over). False when a hand-off failed.
   */
  async #recoverPages(
    query: { take?: string; since?: string },
    pick: (res: PollPage) => boolean[] | 'ignored',
  ): Promise<boolean | 'ignored'> {
    const seen = new Set<string>();
    let cursor: string | undefined;
    for (;;) {
      // One attempt: a failure is reported and retried by the caller's loop, with its backoff.
      const res = await this.#client.poll(
        // Pages no larger than the poller's own (what a relay may answer is bounded by the limit).
        { status: 'delivered', ...query, limit: this.#limit, ...(cursor ? { cursor } : {}) },
        undefined,
        { once: true },
      );
      const keep = pick(res);
      if (keep === 'ignored') return 'ignored';
      const handed = await this.#hand({
        ...res,
        messages: res.messages.filter((_, i) => keep[i]),
        sizes: res.sizes.filter((_, i) => keep[i]),
        rejected: [],
      });
      if (!handed) return false;
      if (!res.has_more || !res.next_cursor || seen.has(res.next_cursor)) return true;
      seen.add(res.next_cursor);
      cursor = res.next_cursor;
    }
  }

  /**
   * Hands a page to the consumer; false when `deliver` failed (the page is not safe yet). What the
   * consumer does with it is not a failed poll (the relay already marked these messages
   * delivered), so nothing it throws may reach the poll loop.
   */
  async #hand(page: PollPage): Promise<boolean> {
    try {
      if (page.messages.length === 0 && page.rejected.length === 0) return true;
      if (this.#deliver) {
        await this.#deliver(page);
        return true;
      }
      if (page.messages.length > 0) this.emit('batch', page.messages, page.sizes);
      if (page.rejected.length > 0) this.emit('rejected', page.rejected);
      return true;
    } catch (err) {
      this.emit('warning', toMrpError(err));
      return !this.#deliver;
    }
  }

  /**
   * Waits for a take's record (`TakeLog.begin`'s promise): undefined once it is recorded, the
   * error when it could not be, 'stopped' when `stop()` came first (a journal retrying through a
   * database outage must not hold up a stop).
   */
  async #recorded(begun: Promise<void>): Promise<MrpError | 'stopped' | undefined> {
    const signal = this.#idle.signal;
    if (signal.aborted) return 'stopped';
    let onAbort: () => void = () => undefined;
    const stopped = new Promise<'stopped'>((resolve) => {
      onAbort = () => resolve('stopped');
      signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      return await Promise.race([
        begun.then(
          () => undefined,
          (err: unknown) => toMrpError(err),
        ),
        stopped,
      ]);
    } finally {
      signal.removeEventListener('abort', onAbort);
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

  /**
   * The poll the previous run left open (from the journal), settled before anything else is
   * polled: `recoverTake` until the relay could be asked, then the take is closed. A failed look
   * is a `retry` event with the backoff's next delay; `again(delayMs)` waits that long and says
   * whether to go on; false when it gave up (stopping: the take stays open for the next start).
   * One loop for every source that polls (poll mode, the WebSocket source's catch-up, webhook
   * mode's).
   */
  async settleOpenTake(take: Take, again: (delayMs: number) => Promise<boolean>): Promise<boolean> {
    for (;;) {
      const result = await this.#recover(take);
      if (result === true) break;
      const delayMs = this.#backoff.next();
      if (result instanceof MrpError) this.emit('retry', { error: result, delayMs });
      if (!(await again(delayMs))) return false;
    }
    this.#takes?.end();
    return true;
  }

  /** How long to wait after a failure before the next attempt (the poller's backoff, shared). */
  nextRetryDelay(): number {
    return this.#backoff.next();
  }

  /**
   * Settles a poll whose answer may have been lost (see `recoverTake`). False, or the relay's
   * failure, when it could not be asked: the take stays open (in the journal too) and is looked
   * at again.
   */
  async #settle(take: Take & { until: number }): Promise<boolean | MrpError> {
    const result = await this.#recover(take, take.until);
    if (result !== true) return result;
    this.#takes?.end();
    return true;
  }

  /** The poll loop; `untilCaughtUp`: without waiting, and only until a page has nothing behind it (true then). */
  async #run(untilCaughtUp: boolean): Promise<boolean> {
    let failures = 0;
    let authFailures = 0;
    /** A poll whose answer may have been lost and that is not settled yet. */
    let lost: (Take & { until: number }) | undefined;
    while (this.#running) {
      if (lost) {
        const settled = await this.#settle(lost);
        if (settled === true) lost = undefined;
        else {
          const delayMs = this.#backoff.next();
          // Said like a failed poll (the relay is still unreachable, say), not as a bare warning.
          if (settled instanceof MrpError) this.emit('retry', { error: settled, delayMs });
          await this.#pause(delayMs);
          continue;
        }
      }
      await this.#waitForCapacity();
      if (!this.#running) break;
      const limit = Math.max(1, Math.min(this.#limit, this.#capacity()));
      const wait = untilCaughtUp ? 0 : this.#waitSeconds;
      const started = this.#clock.now();
      const id = this.#takeId();
      // On disk before the poll is sent: a process that dies with it in flight recovers this id.
      const begun = this.#takes?.begin(started, wait, id);
      if (begun instanceof Promise) {
        const recorded = await this.#recorded(begun);
        // Stopped meanwhile, or not recorded: nothing was polled, so nothing is lost.
        if (recorded === 'stopped' || !this.#running) {
          this.#takes?.end();
          break;
        }
        if (recorded !== undefined) {
          this.#takes?.end();
          const delayMs = this.#backoff.next();
          this.emit('retry', { error: recorded, delayMs });
          await this.#pause(delayMs);
          continue;
        }
      }
      try {
        // One attempt (a 429 too): the backoff below retries, honouring Retry-After, and says so.
        const page = await this.#client.poll({ limit, ...(wait > 0 ? { wait } : {}), take: id }, this.#idle.signal, {
          once: true,
        });
        this.#recordsTakes = page.takeEchoed === true;
        if (failures > 0) this.emit('recovered');
        failures = 0;
        authFailures = 0;
        this.#backoff.reset();
        const empty = page.messages.length === 0 && page.rejected.length === 0;
        // The take closes once the page is journaled; if the hand-off failed it stays open and
        // the window is looked at again (or at the next start, if this one is stopping).
        if (await this.#hand(page)) {
          this.#takes?.end();
          if (untilCaughtUp && !page.has_more) return true;
        } else lost = { at: started, waitSeconds: wait, id, until: this.#clock.now() };
        if (empty && wait > 0 && this.#clock.now() - started < (wait - 1) * 1000 && this.#running) {
          // An empty answer long before the wait ran out: this relay ignores `wait`.
          this.#waitSeconds = 0;
          this.emit('mode', 'interval');
        }
        if (empty && this.#waitSeconds === 0 && this.#running) await this.#pause(this.#intervalMs);
      } catch (err) {
        if (this.#idle.signal.aborted) {
          // Stopped while a poll was in flight: see what the relay may have handed it, once the
          // relay has had a moment to notice the cancelled request. If the relay cannot be
          // asked, the take stays open for the next start.
          await sleep(RECOVERY_SETTLE_MS, { clock: this.#clock });
          const settled = await this.#settle({ at: started, waitSeconds: wait, id, until: this.#clock.now() });
          if (settled instanceof MrpError) this.emit('warning', settled);
          break;
        }
        const error = toMrpError(err);
        // A relay that answered with an error took nothing, nor did a poll that never reached
        // it (refused, unknown host); a broken connection may have.
        if (error instanceof RelayError || neverReachedRelay(error)) this.#takes?.end();
        else lost = { at: started, waitSeconds: wait, id, until: this.#clock.now() };
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
    return false;
  }
}
