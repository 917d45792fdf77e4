/**
 * The way out for replies and handler sends: a queue that waits out the relay's rate limits
 * (429 + Retry-After, X-RateLimit-Remaining: 0) instead of failing, retries transient failures
 * with backoff, and never sends a reply twice: when a send's outcome is unknown (the connection
 * dropped before the answer) it first looks in the thread for a reply it already made.
 *
 * It only ever handles encoded sends (`EncodedSend`: the body is the exact JSON text the codec
 * produced, sealed or plain). Every attempt sends those bytes, and the thread check compares them
 * with the body text the relay holds: nothing here encodes a body again.
 */

import { setMaxListeners } from 'node:events';
import type { RelayClient } from '../client/http.js';
import { sleep } from '../core/async.js';
import { Backoff } from '../core/backoff.js';
import { type Clock, systemClock } from '../core/clock.js';
import { TypedEmitter } from '../core/emitter.js';
import {
  AbortError,
  MrpError,
  OutcomeUnknownError,
  ProtocolError,
  RateLimitError,
  RelayError,
  toMrpError,
} from '../core/errors.js';
import { LIMITS } from '../protocol/constants.js';
import type { EncodedSend } from '../protocol/frames.js';
import type { Message, SendResponse } from '../protocol/types.js';

/**
 * Most thread pages read when looking for an already-sent reply: 100,000 pages of 100 is ten
 * million messages, more than two agents can exchange within the longest TTL at the default
 * send rate (30/min each for 30 days is about 2.6 million).
 */
export const MAX_THREAD_PAGES = 100_000;

export interface OutboxEvents extends Record<string, unknown[]> {
  retry: [{ request: EncodedSend; error: MrpError; delayMs: number; attempt: number }];
}

/** Where to look for a send whose outcome is unknown: the thread it belongs to. */
export interface ReplyKey {
  threadId: string;
  /** Check the thread before the first attempt too (resuming after a crash). */
  checkFirst?: boolean;
  /**
   * Asked immediately before every send attempt (a fleet's lease, `RuntimeJournal.fence`): the
   * milliseconds the attempt may take, or `undefined` when the reply must not be sent (the send
   * rejects with `TakenOverError`). An attempt cut off by that deadline has an unknown outcome.
   */
  fence?: () => Promise<number | undefined>;
}

/** The reply's message was taken over by another runner of the fleet: it answers, not this one. */
export class TakenOverError extends AbortError {
  constructor(message: string) {
    super(message);
    this.name = 'TakenOverError';
  }
}

export interface OutboxOptions {
  /**
   * Sends one message (inline when connected, HTTP otherwise), its body text verbatim; with
   * `timeoutMs`, an answer not in by then is `OutcomeUnknownError` (the attempt is given up).
   */
  send(request: EncodedSend, timeoutMs?: number): Promise<SendResponse>;
  client: RelayClient;
  clock?: Clock;
  /**
   * A refused identity (bad signature, clock skew, a suspended agent) fails the send at once
   * instead of being retried. The runtime keeps retrying (its connection reports the refusal and
   * stops it); a lone send (the library's `Agent.send`) has nobody else to stop it.
   */
  authIsFinal?: boolean;
}

/** Relay errors that no retry can fix. */
function isPermanent(err: MrpError, authIsFinal: boolean): boolean {
  if (!(err instanceof RelayError)) return err.kind === 'usage' || err.kind === 'config';
  if (err.code === 'rate_limit_exceeded' || err.code === 'replay_detected') return false;
  if (err.kind === 'auth') return authIsFinal;
  const status = err.status ?? 0;
  return status >= 400 && status < 500;
}

export class Outbox extends TypedEmitter<OutboxEvents> {
  readonly #send: (request: EncodedSend, timeoutMs?: number) => Promise<SendResponse>;
  readonly #client: RelayClient;
  readonly #clock: Clock;
  readonly #authIsFinal: boolean;
  readonly #closing = new AbortController();
  #blockedUntil = 0;
  #pending = 0;

  constructor(options: OutboxOptions) {
    super();
    // Every reply waiting out a retry listens on this one signal: hundreds under a rate limit or an
    // outage. Not a leak (each wait removes its listener), so no MaxListenersExceededWarning, which
    // Node would print into `--log-format json`'s stream on stderr.
    setMaxListeners(0, this.#closing.signal);
    this.#send = options.send;
    this.#client = options.client;
    this.#clock = options.clock ?? systemClock;
    this.#authIsFinal = options.authIsFinal === true;
  }

  get pending(): number {
    return this.#pending;
  }

  /**
   * Sends `request`, retrying until it is accepted or fails for good. One async frame per send:
   * a runner holds one for every reply the relay has not answered yet, hundreds under load.
   * `giveUpAt` (on the outbox's clock): no wait (a backoff, a rate limit) past it; the send
   * rejects with the failure it would have waited out instead (a `RateLimitError` for a rate limit).
   */
  async send(request: EncodedSend, reply?: ReplyKey, giveUpAt?: number): Promise<SendResponse> {
    this.#pending++;
    try {
      // Made on the first retry: most replies are accepted at once.
      let backoff: Backoff | undefined;
      let unknown = reply?.checkFirst === true;
      for (let attempt = 1; ; attempt++) {
        this.#check();
        if (unknown && reply) {
          let found: Message | undefined;
          try {
            found = await this.#findReply(reply, request);
          } catch (raw) {
            const err = toMrpError(raw);
            if (this.#closing.signal.aborted) throw new AbortError('outbox closed', { cause: err });
            if (err.code === 'thread_too_long') throw err;
            // Not known yet whether it was sent: look again later, never send blind.
            const delayMs = (backoff ??= new Backoff()).next();
            this.emit('retry', { request, error: err, delayMs, attempt });
            await this.#waitOrGiveUp(
              delayMs,
              giveUpAt,
              () =>
                new OutcomeUnknownError(
                  `the relay did not confirm this message, and the thread could not be checked for it (${err.message}); it may have been sent`,
                  { cause: err },
                ),
            );
            continue;
          }
          if (found)
            return {
              message_id: found.message_id,
              status: 'sent',
              created_at: found.created_at,
              expires_at: found.expires_at,
            };
        }
        const rateWait = this.#rateLimitWait();
        if (rateWait > 0) {
          await this.#waitOrGiveUp(rateWait, giveUpAt, () => {
            const retryAfter = Math.ceil(rateWait / 1000);
            return new RateLimitError(
              'rate_limit_exceeded',
              `the relay's send rate limit is reached; retry in ${retryAfter} s`,
              {
                status: 429,
                retryAfter,
              },
            );
          });
        }
        let timeoutMs: number | undefined;
        if (reply?.fence) {
          try {
            timeoutMs = await reply.fence();
          } catch (raw) {
            // The fence could not be taken (the journal is unreachable): not sent; try again later.
            const err = toMrpError(raw);
            if (this.#closing.signal.aborted) throw new AbortError('outbox closed', { cause: err });
            const delayMs = (backoff ??= new Backoff()).next();
            this.emit('retry', { request, error: err, delayMs, attempt });
            await this.#wait(delayMs);
            continue;
          }
          if (timeoutMs === undefined)
            throw new TakenOverError(
              `the message ${request.in_reply_to ?? ''} was taken over by another runner; it sends the reply`,
            );
          this.#check();
        }
        try {
          return await this.#send(request, timeoutMs);
        } catch (raw) {
          const err = toMrpError(raw);
          if (this.#closing.signal.aborted) throw new AbortError('outbox closed', { cause: err });
          if (isPermanent(err, this.#authIsFinal)) throw err;
          unknown = err instanceof OutcomeUnknownError;
          let delayMs: number;
          if (err instanceof RelayError && err.code === 'rate_limit_exceeded') {
            delayMs = Math.max(1, err.retryAfter ?? 1) * 1000;
            this.#blockedUntil = Math.max(this.#blockedUntil, this.#clock.now() + delayMs);
          } else {
            delayMs = (backoff ??= new Backoff()).next();
          }
          this.emit('retry', { request, error: err, delayMs, attempt });
          await this.#waitOrGiveUp(delayMs, giveUpAt, () => err);
        }
      }
    } finally {
      this.#pending--;
    }
  }

  /**
   * Looks in the thread for this very message (same recipient, parent, content type and body)
   * already sent by this agent. Matching the body keeps a handler's `ctx.reply()` progress
   * messages from being mistaken for its final reply.
   *
   * The body is compared as text: the journaled `body_json` against the body's source text in
   * the relay's answer (our relay stores and forwards bodies verbatim). A relay that re-formats
   * bodies (whitespace, escapes) is still matched by value: the two texts parsed and compared.
   * Either way what was sent is compared, never a fresh encoding of it.
   *
   * The whole thread is read, however long: the relay lists a thread oldest first and has no
   * newest-first or "sent by me" filter, and a reply missed because it sits past some page limit
   * would be sent twice. The bound is a relay that stops advancing its cursor (an error, so the
   * check is retried) and `MAX_THREAD_PAGES`, far beyond what rate limits let one relay hold.
   */
  async #findReply(key: ReplyKey, request: EncodedSend): Promise<Message | undefined> {
    const parent = request.in_reply_to ?? null;
    let value: string | undefined;
    /** The body's value, for relays that re-format body text (parsed once, on demand). */
    const sameValue = (m: Message): boolean => {
      value ??= JSON.stringify(JSON.parse(request.body_json));
      return JSON.stringify(m.body) === value;
    };
    const seen = new Set<string>();
    let cursor: string | undefined;
    for (let page = 0; page < MAX_THREAD_PAGES; page++) {
      const query = { limit: LIMITS.threadLimitMax, ...(cursor ? { cursor } : {}) };
      const res = await this.#client.thread(key.threadId, query, this.#closing.signal, { bodies: true });
      const hit = res.messages.find(
        (m) =>
          m.sender_key === this.#client.publicKey &&
          m.recipient_key === request.recipient_key &&
          m.in_reply_to === parent &&
          m.content_type === request.content_type &&
          (res.bodyTexts?.get(m.message_id) === request.body_json || sameValue(m)),
      );
      if (hit) return hit;
      if (!res.has_more || !res.next_cursor) return undefined;
      if (seen.has(res.next_cursor))
        throw new ProtocolError(
          'invalid_response',
          `the relay repeated a thread cursor while listing thread ${key.threadId}`,
        );
      seen.add(res.next_cursor);
      cursor = res.next_cursor;
    }
    throw new MrpError(
      'protocol',
      'thread_too_long',
      `thread ${key.threadId} is longer than ${MAX_THREAD_PAGES * LIMITS.threadLimitMax} messages; cannot check whether the reply was already sent`,
    );
  }

  /** How long to wait before sending, for the relay's rate limit (0: now). */
  #rateLimitWait(): number {
    const rate = this.#client.lastRate.get('send');
    if (rate && rate.remaining <= 0) this.#blockedUntil = Math.max(this.#blockedUntil, rate.reset * 1000);
    return Math.max(0, this.#blockedUntil - this.#clock.now());
  }

  /**
   * Waits `delayMs` (a backoff, a rate limit), unless that ends past `giveUpAt`: then throws the
   * failure it would have waited out (made only then: most waits never give up).
   */
  async #waitOrGiveUp(delayMs: number, giveUpAt: number | undefined, failure: () => MrpError): Promise<void> {
    if (giveUpAt !== undefined && this.#clock.now() + delayMs > giveUpAt) throw failure();
    await this.#wait(delayMs);
  }

  async #wait(ms: number): Promise<void> {
    try {
      await sleep(ms, { clock: this.#clock, signal: this.#closing.signal });
    } catch {
      throw new AbortError('outbox closed');
    }
  }

  #check(): void {
    if (this.#closing.signal.aborted) throw new AbortError('outbox closed');
  }

  /** Gives up on everything still waiting (shutdown): those sends reject with AbortError. */
  close(): void {
    this.#closing.abort(new AbortError('outbox closed'));
  }
}
