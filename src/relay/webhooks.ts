/**
 * The webhook delivery worker (docs/protocol.md §3.8). The schedule lives in the store, not here:
 * a pending delivery is created in the same commit as its message, claimed under a lease
 * (`Store.claimDeliveries`), and its outcome recorded in one transaction — so a restart or a
 * kill -9 at any point loses none (at worst a delivery is sent again when its lease ends, which
 * at-least-once delivery allows), and several relay processes can share the work.
 *
 * What wakes the worker: `message.stored` on the bus (a first attempt is due at its commit), the
 * end of each attempt, a timer on the injected clock set to the store's next due time, and the
 * sweeper (a catch-up if a bus event was lost). Each wake claims as much as fits.
 *
 * Bounds, because the other end is anyone's server: at most `concurrency` requests in flight and
 * `perAgent` per agent (in this process); each attempt has `timeoutMs` in all (only a `200`
 * before it counts); at most `RESPONSE_BYTES` of a response are read; redirects are not followed
 * (node:http never follows them; a 3xx is a failure); and unless `allowPrivate`, every address a
 * host name resolves to is checked at connect time (`webhook-target.ts`, DNS rebinding).
 *
 * The body is `{"delivery_id", "message"}` with the full §3.6 message object (the stored body
 * text verbatim, attachments as metadata only — never blob bytes), signed over its exact bytes.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP } from 'node:net';
import type { Clock, Timer } from '../core/clock.js';
import { formatTimestamp } from '../protocol/signing.js';
import { encodeWebhookDelivery, webhookSignature } from '../protocol/webhook.js';
import type { Bus } from './bus.js';
import type { Logger } from './log.js';
import { servableMessageJson } from './message-json.js';
import type { DeliveryClaim, Store } from './store/store.js';
import { guardedLookup, type HostResolver, hostOf, isRefusedAddress } from './webhook-target.js';

/** Waits after the 1st, 2nd, … failure (§3.8, our choice); past the list, hourly. */
export const RETRY_DELAYS_MS = [10_000, 30_000, 120_000, 600_000, 1_800_000, 3_600_000] as const;
/** Consecutive failures that disable a webhook (§3.8, our choice). */
export const DISABLE_AFTER_FAILURES = 20;
/** Bytes of a response read before the connection is cut (the status is all that matters). */
export const RESPONSE_BYTES = 4096;

/** The wait before the next attempt after `failures` failed attempts of one delivery (≥ 1). */
export function retryDelayMs(failures: number): number {
  return RETRY_DELAYS_MS[Math.max(0, failures - 1)] ?? 3_600_000;
}

export interface WebhookWorkerOptions {
  /** Time an attempt may take, connect to response (default 10 s). */
  timeoutMs: number;
  /** Requests in flight at once, in this process. */
  concurrency: number;
  /** Requests in flight at once per agent, in this process. */
  perAgent: number;
  /** Deliver to loopback, private and link-local addresses too (development). */
  allowPrivate: boolean;
  /** How host names are resolved (default: the system's `dns.lookup`). */
  resolver?: HostResolver;
}

export interface WebhookWorkerDeps {
  store: Store;
  bus: Bus;
  clock: Clock;
  logger: Logger;
  /** Told about each attempt's end: metrics. */
  onAttempt?(result: 'succeeded' | 'failed'): void;
}

/** The outcome of one POST: a status, or why there was none. */
type PostResult = { status: number } | { error: string };

export class WebhookWorker {
  readonly #deps: WebhookWorkerDeps;
  readonly #o: WebhookWorkerOptions;
  readonly #inFlight = new Map<string, number>();
  readonly #attempts = new Set<Promise<void>>();
  readonly #aborts = new Set<AbortController>();
  #total = 0;
  #timer: Timer | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  #pendingWake = false;
  #closed = false;
  #unsubscribe: (() => void) | undefined;

  constructor(deps: WebhookWorkerDeps, options: WebhookWorkerOptions) {
    this.#deps = deps;
    this.#o = options;
  }

  /** Subscribes to new messages and looks for due deliveries (left over from before a restart, too). */
  start(): void {
    // A message its commit gave no delivery (no enabled webhook) has nothing for the worker.
    this.#unsubscribe ??= this.#deps.bus.subscribe('message.stored', (e) => {
      if (e.webhook !== false) this.#soon();
    });
    void this.wake();
  }

  /** One wake for all the events of a turn (a commit publishes one per message), outside the publisher. */
  #soon(): void {
    if (this.#pendingWake || this.#closed) return;
    this.#pendingWake = true;
    setImmediate(() => {
      this.#pendingWake = false;
      void this.wake();
    });
  }

  /** Claims and starts what is due (one run at a time; a wake during a run runs again after it). */
  wake(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    if (this.#running) {
      this.#again = true;
      return this.#running;
    }
    this.#running = this.#run()
      .catch((err: unknown) =>
        this.#deps.logger.error('storage_error', { where: 'webhooks', error: (err as Error)?.message ?? String(err) }),
      )
      .finally(() => {
        this.#running = undefined;
        if (this.#again) {
          this.#again = false;
          void this.wake();
        }
      });
    return this.#running;
  }

  async #run(): Promise<void> {
    const { store, clock } = this.#deps;
    let claimedAt = clock.now();
    while (!this.#closed && this.#total < this.#o.concurrency) {
      claimedAt = clock.now();
      const claims = await store.claimDeliveries(claimedAt, {
        limit: this.#o.concurrency - this.#total,
        // Longer than an attempt can take, so a live claimer's delivery is never due elsewhere.
        leaseMs: this.#o.timeoutMs + 60_000,
        perAgent: this.#o.perAgent,
        inFlight: this.#inFlight,
      });
      if (claims.length === 0) break;
      for (const claim of claims) this.#start(claim);
    }
    await this.#schedule(claimedAt);
  }

  /** The timer for the next due delivery (none while attempts in flight will wake the worker anyway). */
  async #schedule(claimedAt: number): Promise<void> {
    const at = await this.#deps.store.nextDeliveryAt();
    if (this.#closed) return;
    this.#timer?.cancel();
    this.#timer = undefined;
    if (at === undefined) return;
    const now = this.#deps.clock.now();
    const wait = at - now;
    // Due but not claimable (agents at their limit): the end of an attempt wakes the worker.
    if (wait <= 0 && this.#total > 0) return;
    // Became due after the last claim looked (the clock moved during the store's round trips): claim again now.
    if (wait <= 0 && at > claimedAt) {
      this.#again = true;
      return;
    }
    this.#timer = this.#deps.clock.setTimeout(() => void this.wake(), wait > 0 ? wait : 1000).unref();
  }

  #start(claim: DeliveryClaim): void {
    const agent = claim.message.recipient_key;
    this.#total++;
    this.#inFlight.set(agent, (this.#inFlight.get(agent) ?? 0) + 1);
    const attempt = this.#attempt(claim)
      .catch((err: unknown) =>
        this.#deps.logger.error('internal_error', {
          where: 'webhook_attempt',
          error: (err as Error)?.stack ?? String(err),
        }),
      )
      .finally(() => {
        this.#total--;
        const left = (this.#inFlight.get(agent) ?? 1) - 1;
        if (left > 0) this.#inFlight.set(agent, left);
        else this.#inFlight.delete(agent);
        this.#attempts.delete(attempt);
        void this.wake();
      });
    this.#attempts.add(attempt);
  }

  async #attempt(claim: DeliveryClaim): Promise<void> {
    const { store, clock, bus, logger } = this.#deps;
    const id = claim.delivery_id;
    const message = claim.message;
    const now = clock.now();
    let result: PostResult;
    try {
      const body = encodeWebhookDelivery(id, servableMessageJson(message, now));
      const abort = new AbortController();
      this.#aborts.add(abort);
      try {
        result = await this.#post(
          claim.url,
          body,
          {
            'Content-Type': 'application/json',
            'X-M2M-Webhook-Signature': webhookSignature(claim.secret, body),
            'X-M2M-Webhook-Timestamp': formatTimestamp(now),
            'X-M2M-Delivery-ID': id,
          },
          abort.signal,
        );
      } finally {
        this.#aborts.delete(abort);
      }
    } catch {
      result = { error: 'unservable_message' };
    }
    // Shutting down mid-attempt: nothing is recorded; the lease makes it due again after a restart.
    if (this.#closed && 'error' in result && result.error === 'aborted') return;
    const ended = clock.now();
    if ('status' in result && result.status === 200) {
      this.#deps.onAttempt?.('succeeded');
      const done = await store.completeDelivery(id, ended);
      if (done?.delivered)
        bus.publish([
          { type: 'message.delivered', recipient: done.recipient_key, message_id: done.message_id, via: 'webhook' },
        ]);
      logger.debug('webhook_delivered', {
        delivery_id: id,
        message_id: message.message_id,
        agent: message.recipient_key,
      });
      return;
    }
    this.#deps.onAttempt?.('failed');
    const failures = claim.attempts + 1;
    const next = ended + retryDelayMs(failures);
    const outcome = await store.failDelivery(
      id,
      ended,
      next < message.expires_at ? next : null,
      DISABLE_AFTER_FAILURES,
    );
    const why = 'status' in result ? { status: result.status } : { error: result.error };
    logger.info('webhook_failed', {
      delivery_id: id,
      agent: message.recipient_key,
      attempt: failures,
      ...why,
      consecutive_failures: outcome?.consecutive_failures,
    });
    if (outcome?.disabled)
      logger.warn('webhook_disabled', {
        agent: message.recipient_key,
        consecutive_failures: outcome.consecutive_failures,
      });
  }

  /** One POST with every bound applied; never rejects. */
  #post(target: string, body: string, headers: Record<string, string>, signal: AbortSignal): Promise<PostResult> {
    let url: URL;
    try {
      url = new URL(target);
    } catch {
      return Promise.resolve({ error: 'bad_url' });
    }
    const host = hostOf(url);
    if (
      !this.#o.allowPrivate &&
      ((isIP(host) !== 0 && isRefusedAddress(host)) || host === 'localhost' || host.endsWith('.localhost'))
    ) {
      return Promise.resolve({ error: 'refused_address' });
    }
    return new Promise<PostResult>((resolve) => {
      let settled = false;
      const settle = (r: PostResult): void => {
        if (settled) return;
        settled = true;
        resolve(r);
      };
      const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
      const req = send(url, {
        method: 'POST',
        headers: { ...headers, 'Content-Length': String(Buffer.byteLength(body)) },
        // A connection of its own per attempt (bounded by the concurrency), checked addresses.
        agent: false,
        ...(this.#o.allowPrivate ? {} : { lookup: guardedLookup(this.#o.resolver) }),
      });
      const finish = (): void => {
        timer.cancel();
        signal.removeEventListener('abort', onAbort);
        req.destroy();
      };
      const timer = this.#deps.clock.setTimeout(() => {
        settle({ error: 'timeout' });
        finish();
      }, this.#o.timeoutMs);
      const onAbort = (): void => {
        settle({ error: 'aborted' });
        finish();
      };
      signal.addEventListener('abort', onAbort, { once: true });
      req.on('error', (err: NodeJS.ErrnoException) => {
        settle({ error: err.code ?? err.name });
        finish();
      });
      req.on('response', (res: IncomingMessage) => {
        settle({ status: res.statusCode ?? 0 });
        // Read a little of the answer (polite to the server), never more than RESPONSE_BYTES.
        let bytes = 0;
        res.on('data', (chunk: Buffer) => {
          bytes += chunk.length;
          if (bytes > RESPONSE_BYTES) finish();
        });
        res.on('end', finish);
        res.on('error', finish);
      });
      req.end(body);
    });
  }

  /** Stops claiming, cuts attempts in flight (they stay due after their lease) and waits for them. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#unsubscribe?.();
    this.#timer?.cancel();
    for (const a of this.#aborts) a.abort();
    await this.#running;
    await Promise.all([...this.#attempts]);
  }
}
