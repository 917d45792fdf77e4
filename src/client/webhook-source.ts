/**
 * A `MessageSource` that is an HTTP server: the relay POSTs each message to it (docs/protocol.md
 * §3.8) and retries until it gets a `200`. That `200` is the relay's "delivered" mark, so it is
 * written only once the runtime's `deliver` resolved — the message is journaled — and never
 * before; anything else (`401`, `413`, `503`, a dropped connection) makes the relay try again
 * later. Exactly-once handling rests on the journal (message ids) like every other source; a
 * small bounded set of recent delivery ids answers a plain retry without even asking the runtime.
 *
 * What comes in is hostile until proven otherwise, and the proof is cheap, so it comes first:
 * the body is read up to a bound (413 past it) within the server's header/request timeouts,
 * then the HMAC signature is checked in constant time over exactly those bytes (401, nothing
 * else happens), then the timestamp against a window (401), and only then is the text parsed —
 * with depth bounded, a message that cannot be handled becoming an error reply like on the
 * other transports (protocol/inbound.ts). Nothing throws out of the request listener.
 *
 * Trade-offs: `ack` is a no-op, because the `200` already told the relay; acking again after
 * the handler would need a relay call that does not exist. When the runtime is full or
 * draining the source answers `503` with `Retry-After` and lets the relay's retry schedule do
 * the waiting. Registration (`PUT …/webhook`) goes through the `register` callback so that the
 * relay client's own method can replace the call without touching this file.
 *
 * Catch-up: the relay pushes only messages stored while the webhook is registered and enabled
 * (docs/protocol.md §3.8); the rest wait for a poll. So once registered, and then every
 * `catchUpIntervalMs` (re-registering first if the relay disabled this webhook after repeated
 * failures), and when the runtime has room again after it declined deliveries, the source polls
 * `status=sent` until nothing is left (`Poller.catchUp`: poll mode's own loop, each poll's take
 * id journaled before it is sent, closed once its page is journaled). Those batches are `taken`;
 * a message that comes both ways is journaled once (the journal de-duplicates on message id).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sleep } from '../core/async.js';
import { Backoff } from '../core/backoff.js';
import { type Clock, systemClock } from '../core/clock.js';
import { isRetryable, MrpError, RelayError, toMrpError } from '../core/errors.js';
import { LIMITS } from '../protocol/constants.js';
import type { EncodedSend } from '../protocol/frames.js';
import { readMessageText } from '../protocol/inbound.js';
import { memberSpans } from '../protocol/json.js';
import type { SendResponse } from '../protocol/types.js';
import { isPlainObject } from '../protocol/validate.js';
import {
  checkWebhookTimestamp,
  verifyWebhookSignature,
  WEBHOOK_HEADERS,
  WEBHOOK_TIMESTAMP_TOLERANCE_MS,
} from '../protocol/webhook.js';
import type { PollPage, RelayClient } from './http.js';
import { catchUpRetryWarning, Poller, type TakeLog } from './poller.js';
import {
  BaseSource,
  type Batch,
  type MessageSource,
  type OpenTake,
  type SendOptions,
  type SourceConsumer,
  sendOverHttp,
} from './source.js';

export const WEBHOOK_SOURCE_DEFAULTS = {
  host: '127.0.0.1',
  port: 8787,
  /** The largest delivery body: a whole message envelope (2 MiB) plus room for the delivery around it. */
  maxBodyBytes: LIMITS.maxEnvelopeBytes + 64 * 1024,
  /** Deliveries being read or handed over at once; more are answered 503. */
  maxInFlight: 32,
  /** Time for a request's headers, and for the whole request (the relay gives up after 10 s anyway). */
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 15_000,
  keepAliveTimeoutMs: 5_000,
  /** `Retry-After` (seconds) on a 503. */
  retryAfterSeconds: 5,
  /** Delivery ids remembered after their 200, to answer a retry at once. */
  recentDeliveries: 10_000,
  timestampToleranceMs: WEBHOOK_TIMESTAMP_TOLERANCE_MS,
  /** Between catch-up polls for messages the webhook does not bring (see the file comment); 0: only at start. */
  catchUpIntervalMs: 5 * 60_000,
} as const;

/** Longest `delivery_id` taken (ours are 16 characters). */
const MAX_DELIVERY_ID = 128;
const DELIVERY_ID_RE = /^[\x21-\x7e]+$/;

/** Registers `url` and `secret` as this agent's webhook (`PUT /v1/agents/{key}/webhook`). */
export type RegisterWebhook = (url: string, secret: string) => Promise<void>;

export interface WebhookSourceOptions {
  /** The way out: replies and sends go over `POST /v1/messages`. */
  client: RelayClient;
  /** The secret deliveries are signed with (also what `register` registers). */
  secret: string;
  host?: string;
  /** 0: any free port (see `url` after `listen`). */
  port?: number;
  /**
   * The URL the relay posts to, when it is not this server's own (behind a proxy, a load
   * balancer, TLS). Deliveries are taken at its path (and at `/`, for proxies that strip it).
   */
  publicUrl?: string;
  /** Registers the webhook once listening; left out, nothing is registered. */
  register?: RegisterWebhook;
  clock?: Clock;
  maxBodyBytes?: number;
  maxInFlight?: number;
  headersTimeoutMs?: number;
  requestTimeoutMs?: number;
  retryAfterSeconds?: number;
  recentDeliveries?: number;
  timestampToleranceMs?: number;
  /** Between catch-up polls (default 5 minutes); 0: only once registered. */
  catchUpIntervalMs?: number;
  /** Where each catch-up poll's take is noted (the journal), as in poll mode. */
  takes?: TakeLog;
  /** The poll the previous run had in flight when it died (from the journal): settled first. */
  openTake?: OpenTake & { id?: string };
}

/** Whether a delivery's `X-M2M-Webhook-Timestamp` is acceptable now (our window: ±5 minutes). */
export function deliveryIsFresh(
  header: string | undefined,
  nowMs: number,
  toleranceMs: number = WEBHOOK_TIMESTAMP_TOLERANCE_MS,
): boolean {
  return checkWebhookTimestamp(header, nowMs, toleranceMs) === 'ok';
}

/**
 * What a failed registration means: `retry` (the relay could not be reached, or failed), `unsupported`
 * (the relay has no webhook routes: it answers 404 — deliveries can still be posted by hand or by
 * another relay), or `fatal` (the relay refused the URL or the secret: fix the flags).
 */
export function registrationOutcome(err: unknown): 'retry' | 'unsupported' | 'fatal' {
  if (isRetryable(err)) return 'retry';
  if (err instanceof RelayError && err.status === 404) return 'unsupported';
  return 'fatal';
}

/** A 503 answer's body, and the others', as one small JSON object. */
interface Answer {
  status: number;
  body: Record<string, unknown>;
  headers?: Record<string, string>;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

export class WebhookSource extends BaseSource implements MessageSource {
  readonly #client: RelayClient;
  readonly #secret: string;
  readonly #host: string;
  readonly #port: number;
  readonly #publicUrl: string | undefined;
  readonly #path: string;
  readonly #register: RegisterWebhook | undefined;
  readonly #clock: Clock;
  readonly #o: {
    maxBodyBytes: number;
    maxInFlight: number;
    headersTimeoutMs: number;
    requestTimeoutMs: number;
    retryAfterSeconds: number;
    recentDeliveries: number;
    timestampToleranceMs: number;
  };
  readonly #server: Server;
  /** Deliveries being read or handed over (answers not written yet). */
  readonly #inFlight = new Set<Promise<void>>();
  /** delivery_id → its hand-off in progress: a concurrent retry waits for the same answer. */
  readonly #pending = new Map<string, Promise<Answer>>();
  /** delivery ids answered 200, oldest first (bounded). */
  readonly #recent = new Set<string>();
  #listening: string | undefined;
  #intake = true;
  #closed: Promise<void> | undefined;
  readonly #stop = new AbortController();
  /** Catch-up polls (see the file comment). */
  readonly #poller: Poller;
  #openTake: (OpenTake & { id?: string }) | undefined;
  readonly #catchUpIntervalMs: number;
  /** Cuts the wait for the next catch-up short (`wake` after declined deliveries). */
  #nudge: AbortController | undefined;
  /** Deliveries were declined (503): catch up as soon as the runtime has room. */
  #declined = false;
  #catchUps: Promise<void> | undefined;
  /** Counters for the health answer. */
  readonly counts = {
    delivered: 0,
    duplicates: 0,
    unauthorized: 0,
    busy: 0,
    invalid: 0,
    /** Messages taken by catch-up polls. */
    caught_up: 0,
  };

  constructor(options: WebhookSourceOptions) {
    super();
    this.#client = options.client;
    this.#secret = options.secret;
    this.#host = options.host ?? WEBHOOK_SOURCE_DEFAULTS.host;
    this.#port = options.port ?? WEBHOOK_SOURCE_DEFAULTS.port;
    this.#publicUrl = options.publicUrl;
    this.#register = options.register;
    this.#clock = options.clock ?? systemClock;
    const d = WEBHOOK_SOURCE_DEFAULTS;
    this.#o = {
      maxBodyBytes: positive('maxBodyBytes', options.maxBodyBytes ?? d.maxBodyBytes),
      maxInFlight: positive('maxInFlight', options.maxInFlight ?? d.maxInFlight),
      headersTimeoutMs: positive('headersTimeoutMs', options.headersTimeoutMs ?? d.headersTimeoutMs),
      requestTimeoutMs: positive('requestTimeoutMs', options.requestTimeoutMs ?? d.requestTimeoutMs),
      retryAfterSeconds: positive('retryAfterSeconds', options.retryAfterSeconds ?? d.retryAfterSeconds),
      recentDeliveries: positive('recentDeliveries', options.recentDeliveries ?? d.recentDeliveries),
      timestampToleranceMs: positive('timestampToleranceMs', options.timestampToleranceMs ?? d.timestampToleranceMs),
    };
    if (!Number.isInteger(this.#port) || this.#port < 0 || this.#port > 65535) {
      throw new MrpError(
        'usage',
        'invalid_option',
        `WebhookSource: options.port must be 0–65535 (got ${String(options.port)})`,
      );
    }
    this.#path = '/';
    if (this.#publicUrl !== undefined) {
      let url: URL;
      try {
        url = new URL(this.#publicUrl);
      } catch {
        throw new MrpError(
          'usage',
          'invalid_option',
          `WebhookSource: options.publicUrl "${this.#publicUrl}" is not a URL`,
        );
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') {
        throw new MrpError(
          'usage',
          'invalid_option',
          `WebhookSource: options.publicUrl "${this.#publicUrl}" must be http:// or https://`,
        );
      }
      this.#path = url.pathname || '/';
    }
    this.#server = createServer((req, res) => this.#onRequest(req, res));
    this.#server.headersTimeout = this.#o.headersTimeoutMs;
    this.#server.requestTimeout = this.#o.requestTimeoutMs;
    this.#server.keepAliveTimeout = WEBHOOK_SOURCE_DEFAULTS.keepAliveTimeoutMs;
    this.#server.on('clientError', (_err, socket) => socket.destroy());
    const interval = options.catchUpIntervalMs ?? WEBHOOK_SOURCE_DEFAULTS.catchUpIntervalMs;
    if (!(Number.isFinite(interval) && interval >= 0))
      throw new MrpError(
        'usage',
        'invalid_option',
        `WebhookSource: options.catchUpIntervalMs must be 0 or more (got ${String(interval)})`,
      );
    this.#catchUpIntervalMs = interval;
    this.#openTake = options.openTake;
    this.#poller = new Poller({
      client: this.#client,
      clock: this.#clock,
      capacity: () => this.consumer?.capacity() ?? 0,
      deliver: (page) => this.#deliverTaken(page),
      ...(options.takes ? { takes: options.takes } : {}),
    });
    this.#poller.on('retry', (retry) => this.emit('warning', catchUpRetryWarning(retry)));
    this.#poller.on('warning', (e) => this.emit('warning', e));
    this.#poller.on('fatal', (e) => {
      this.setStatus('stopped');
      this.emit('fatal', e);
    });
  }

  /** `http://host:port` this server listens on (after `listen`). */
  get url(): string | undefined {
    return this.#listening;
  }

  /** The URL the relay is told to post to. */
  get deliveryUrl(): string | undefined {
    if (this.#publicUrl !== undefined) return this.#publicUrl;
    return this.#listening === undefined ? undefined : `${this.#listening}${this.#path === '/' ? '/' : this.#path}`;
  }

  /** Deliveries being read or handed over now. */
  get inFlight(): number {
    return this.#inFlight.size;
  }

  /** Starts listening (before `start`, so a taken port fails the start-up); resolves with the bound URL. */
  async listen(): Promise<string> {
    if (this.#listening) return this.#listening;
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.#port, this.#host, () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
    const { port } = this.#server.address() as AddressInfo;
    const host = this.#host.includes(':') ? `[${this.#host}]` : this.#host;
    this.#listening = `http://${host}:${port}`;
    return this.#listening;
  }

  start(consumer: SourceConsumer): void {
    this.consumer = consumer;
    this.setStatus('connecting');
    this.emit('connecting');
    void this.#begin();
  }

  async #begin(): Promise<void> {
    try {
      await this.listen();
    } catch (err) {
      this.setStatus('stopped');
      this.emit('fatal', toMrpError(err));
      return;
    }
    const url = this.deliveryUrl!;
    if (this.#register) {
      const backoff = new Backoff();
      for (;;) {
        if (this.#stop.signal.aborted) return;
        try {
          await this.#register(url, this.#secret);
          break;
        } catch (raw) {
          const err = toMrpError(raw);
          const outcome = registrationOutcome(raw);
          if (outcome === 'unsupported') {
            this.emit(
              'warning',
              new MrpError(
                'api',
                'webhook_unsupported',
                `the relay has no webhooks (404 on PUT /v1/agents/…/webhook): nothing will be delivered to ${url} by it`,
                {
                  hint: 'use --mode websocket or --mode poll with this relay',
                  cause: err,
                },
              ),
            );
            break;
          }
          if (outcome === 'fatal') {
            this.setStatus('stopped');
            this.emit('fatal', err);
            return;
          }
          const delayMs = backoff.next();
          this.setStatus('degraded');
          this.emit('disconnected', {
            explanation: `registering the webhook failed: ${err.message}`,
            willReconnect: true,
            delayMs,
          });
          try {
            await sleep(delayMs, { clock: this.#clock, signal: this.#stop.signal });
          } catch {
            return;
          }
        }
      }
    }
    if (this.#stop.signal.aborted) return;
    this.setStatus('ready');
    this.emit('connected', { reconnected: false, detail: `webhook ${url} (listening on ${this.#listening})` });
    this.#catchUps = this.#catchUpLoop(url);
  }

  /**
   * What the webhook does not bring, taken by polls (see the file comment): the previous run's
   * open take first, then a catch-up now, and again every `catchUpIntervalMs` (or sooner, when
   * `wake` finds room after declined deliveries).
   */
  async #catchUpLoop(url: string): Promise<void> {
    const stop = this.#stop.signal;
    const take = this.#openTake;
    if (take) {
      // A failed look waits out its backoff: room after a declined delivery is for catch-ups.
      const again = (delayMs: number) => this.#pause(delayMs, false);
      if (!(await this.#poller.settleOpenTake(take, again)) || stop.aborted) return;
      this.#openTake = undefined;
    }
    for (let first = true; !stop.aborted; first = false) {
      if (!first) await this.#reRegister(url);
      this.#declined = false;
      if (!(await this.#poller.catchUp())) return;
      if (this.#catchUpIntervalMs === 0 && !this.#declined) {
        // Only on a nudge from here on.
        if (!(await this.#pause(Number.POSITIVE_INFINITY))) return;
      } else if (!(await this.#pause(this.#catchUpIntervalMs))) return;
    }
  }

  /**
   * Waits `ms` (or, between catch-ups, until `wake` nudges); false once stopping. `catchUp`
   * false: only stopping ends the wait early (a backoff after a failure).
   */
  async #pause(ms: number, catchUp = true): Promise<boolean> {
    // Declined while the catch-up ran (a `wake` then found no pause to cut short): go again now.
    if (catchUp && this.#declined && this.consumer?.hasRoom()) return !this.#stop.signal.aborted;
    const nudge = new AbortController();
    if (catchUp) this.#nudge = nudge;
    try {
      if (Number.isFinite(ms)) {
        await sleep(ms, { clock: this.#clock, signal: AbortSignal.any([this.#stop.signal, nudge.signal]) });
      } else {
        await new Promise<void>((resolve) => {
          const signal = AbortSignal.any([this.#stop.signal, nudge.signal]);
          if (signal.aborted) return resolve();
          signal.addEventListener('abort', () => resolve(), { once: true });
        });
      }
    } catch {
      // Stopped or nudged.
    } finally {
      if (this.#nudge === nudge) this.#nudge = undefined;
    }
    return !this.#stop.signal.aborted;
  }

  /**
   * Before a periodic catch-up: if the relay disabled this webhook (20 failed attempts in a row,
   * pending deliveries dropped), registers it again, so pushes resume; the catch-up then takes
   * what was dropped. A webhook another process registered (another URL) or removed is left alone.
   */
  async #reRegister(url: string): Promise<void> {
    if (!this.#register) return;
    try {
      const config = await this.#client.getWebhook(this.#stop.signal);
      if (config.enabled !== false || config.url !== url) return;
      await this.#register(url, this.#secret);
      this.emit(
        'warning',
        new MrpError(
          'api',
          'webhook_reenabled',
          `the relay had disabled this webhook after ${
            // The relay's word: a count when it is one, nothing else into the message.
            Number.isSafeInteger(config.consecutive_failures) ? config.consecutive_failures : 'repeated'
          } failed deliveries; registered it again`,
        ),
      );
    } catch (err) {
      if (this.#stop.signal.aborted) return;
      if (err instanceof RelayError && err.status === 404) return;
      this.emit('warning', toMrpError(err));
    }
  }

  /** A catch-up poll's page: taken (the poll marked it delivered), so kept whole. */
  async #deliverTaken(page: PollPage): Promise<void> {
    // Never without a consumer (catch-ups begin after `start`); a taken page must not be dropped.
    if (!this.consumer) throw new Error('WebhookSource: a catch-up page before start');
    this.counts.caught_up += page.messages.length;
    await this.handOver({ messages: page.messages, sizes: page.sizes, rejected: page.rejected, taken: true });
  }

  async stopIntake(): Promise<void> {
    this.#intake = false;
    this.setStatus('draining');
    this.#stop.abort();
    // A catch-up poll in flight is settled (what it took is journaled, or its take left open).
    await this.#poller.stop();
    await this.#catchUps;
    // Deliveries already being handed over finish (and are answered); new ones get 503.
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
  }

  close(): Promise<void> {
    this.#closed ??= (async () => {
      this.#intake = false;
      this.#stop.abort();
      await this.#poller.stop();
      await this.#catchUps;
      while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
      await new Promise<void>((resolve) => {
        if (!this.#listening) return resolve();
        this.#server.close(() => resolve());
        this.#server.closeAllConnections();
      });
      this.setStatus('stopped');
    })();
    return this.#closed;
  }

  ack(): void {
    // The 200 answered after the hand-off is the relay's "delivered" mark (§3.8); there is
    // nothing more to tell it once the handler is done.
  }

  send(request: EncodedSend, options: SendOptions = {}): Promise<SendResponse> {
    return sendOverHttp(this.#client, request, options);
  }

  wake(): void {
    this.#poller.wake();
    // What was declined (503) would come again only on the relay's schedule (minutes, then
    // hourly): fetch it now that there is room.
    if (this.#declined && this.consumer?.hasRoom()) this.#nudge?.abort();
  }

  // ── requests ──────────────────────────────────────────────────────────────────────────────

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    let work: Promise<void>;
    try {
      work = this.#handle(req, res);
    } catch (err) {
      work = Promise.reject(err);
    }
    work.catch(() => {
      try {
        this.#write(req, res, { status: 500, body: { error: 'internal_error' } });
      } catch {
        res.destroy();
      }
    });
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0]!;
    const method = req.method ?? 'GET';
    if ((method === 'GET' || method === 'HEAD') && (path === '/' || path === this.#path)) {
      return this.#write(req, res, { status: 200, body: this.health() });
    }
    if (path !== this.#path && path !== '/')
      return this.#refuse(req, res, { status: 404, body: { error: 'not_found' } });
    if (method !== 'POST')
      return this.#refuse(req, res, {
        status: 405,
        body: { error: 'method_not_allowed' },
        headers: { Allow: 'POST, GET, HEAD' },
      });
    if (!this.#intake || !this.consumer) return this.#refuse(req, res, this.#busy('draining'));
    const declared = Number(req.headers['content-length'] ?? Number.NaN);
    if (declared > this.#o.maxBodyBytes) return this.#refuse(req, res, tooLarge(this.#o.maxBodyBytes));
    if (this.#inFlight.size >= this.#o.maxInFlight) {
      this.counts.busy++;
      return this.#refuse(req, res, this.#busy('busy'));
    }
    const work = this.#deliver(req, res);
    this.#inFlight.add(work);
    try {
      await work;
    } finally {
      this.#inFlight.delete(work);
    }
  }

  async #deliver(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const raw = await readBounded(req, this.#o.maxBodyBytes);
    if (raw === 'too_large') return this.#refuse(req, res, tooLarge(this.#o.maxBodyBytes));
    if (raw === 'aborted') return void res.destroy();
    // Proof first: a delivery that is not signed with our secret changes nothing.
    const signature = header(req, WEBHOOK_HEADERS.signature);
    if (!verifyWebhookSignature(this.#secret, raw, signature)) {
      this.counts.unauthorized++;
      return this.#write(req, res, { status: 401, body: { error: 'invalid_signature' } });
    }
    if (!deliveryIsFresh(header(req, WEBHOOK_HEADERS.timestamp), this.#clock.now(), this.#o.timestampToleranceMs)) {
      this.counts.unauthorized++;
      return this.#write(req, res, { status: 401, body: { error: 'stale_timestamp' } });
    }
    const read = readDelivery(raw);
    if (typeof read === 'string') {
      this.counts.invalid++;
      return this.#write(req, res, { status: 400, body: { error: 'invalid_delivery', reason: read } });
    }
    const recipient = read.recipientKey;
    if (recipient && recipient !== this.#client.publicKey) {
      this.counts.invalid++;
      return this.#write(req, res, {
        status: 400,
        body: { error: 'invalid_delivery', reason: 'the message is addressed to another agent' },
      });
    }
    // The timestamp header is not signed (§3.8), so a delivery captured on the way can be sent
    // again later with a fresh one. The journal knows a handled message until it expires (and
    // some days more); a relay never delivers an expired message. So one that expired (beyond the
    // clock tolerance) can only be such a replay, made once the journal may have forgotten it.
    const expires = Date.parse(read.expiresAt ?? '');
    if (Number.isFinite(expires) && expires < this.#clock.now() - this.#o.timestampToleranceMs) {
      this.counts.invalid++;
      return this.#write(req, res, {
        status: 400,
        body: { error: 'invalid_delivery', reason: 'the message has expired (a replayed delivery?)' },
      });
    }
    const answer = await this.#handOver(read.deliveryId, read.batch);
    return this.#write(req, res, answer);
  }

  /** One hand-off per delivery id at a time; a retry of an answered one is 200 at once. */
  #handOver(deliveryId: string, batch: Batch): Promise<Answer> {
    if (this.#recent.has(deliveryId)) {
      this.counts.duplicates++;
      return Promise.resolve({ status: 200, body: { delivery_id: deliveryId, status: 'duplicate' } });
    }
    const pending = this.#pending.get(deliveryId);
    if (pending) {
      this.counts.duplicates++;
      return pending;
    }
    const work = this.#deliverBatch(deliveryId, batch).finally(() => this.#pending.delete(deliveryId));
    this.#pending.set(deliveryId, work);
    return work;
  }

  async #deliverBatch(deliveryId: string, batch: Batch): Promise<Answer> {
    let declined: number;
    try {
      declined = (await this.handOver(batch)).declined;
    } catch {
      // Not journaled (stopping, or the disk failed): the relay tries again.
      return this.#busy('not_journaled');
    }
    if (declined > 0) {
      this.#declined = true;
      this.counts.busy++;
      return this.#busy(this.#intake ? 'busy' : 'draining');
    }
    this.counts.delivered++;
    this.#remember(deliveryId);
    return { status: 200, body: { delivery_id: deliveryId, status: 'accepted' } };
  }

  #remember(deliveryId: string): void {
    this.#recent.add(deliveryId);
    if (this.#recent.size > this.#o.recentDeliveries) {
      const oldest = this.#recent.values().next().value;
      if (oldest !== undefined) this.#recent.delete(oldest);
    }
  }

  #busy(reason: string): Answer {
    return { status: 503, body: { error: reason }, headers: { 'Retry-After': String(this.#o.retryAfterSeconds) } };
  }

  /** What `GET /` answers: enough for a load balancer's health check and for people. */
  health(): Record<string, unknown> {
    return {
      status: this.status,
      mode: 'webhook',
      agent: this.#client.publicKey,
      in_flight: this.#inFlight.size,
      ...this.counts,
    };
  }

  /** An answer given before the body was read: the connection cannot be reused. */
  #refuse(req: IncomingMessage, res: ServerResponse, answer: Answer): void {
    const unread = !req.complete;
    this.#write(req, res, unread ? { ...answer, headers: { ...answer.headers, Connection: 'close' } } : answer);
    if (unread) req.resume();
  }

  #write(req: IncomingMessage, res: ServerResponse, answer: Answer): void {
    if (res.headersSent || res.destroyed) return;
    const text = `${JSON.stringify(answer.body)}\n`;
    res.writeHead(answer.status, {
      'Content-Type': 'application/json',
      'Cache-Control': 'no-store',
      'Content-Length': String(Buffer.byteLength(text)),
      ...answer.headers,
    });
    res.end(req.method === 'HEAD' ? undefined : text);
  }
}

function positive(name: string, value: number): number {
  if (!(Number.isFinite(value) && value > 0))
    throw new MrpError(
      'usage',
      'invalid_option',
      `WebhookSource: options.${name} must be a positive number (got ${String(value)})`,
    );
  return value;
}

function tooLarge(max: number): Answer {
  return { status: 413, body: { error: 'payload_too_large', max_bytes: max } };
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** The request body, up to `max` bytes; `too_large` past it (the rest is not kept), `aborted` if the peer went away. */
function readBounded(req: IncomingMessage, max: number): Promise<Buffer | 'too_large' | 'aborted'> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const settle = (v: Buffer | 'too_large' | 'aborted'): void => {
      if (settled) return;
      settled = true;
      req.off('data', onData);
      resolve(v);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > max) {
        chunks.length = 0;
        settle('too_large');
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.on('end', () => settle(Buffer.concat(chunks, size)));
    req.on('error', () => settle('aborted'));
    req.on('close', () => settle(req.complete ? Buffer.concat(chunks, size) : 'aborted'));
  });
}

/**
 * Reads `{"delivery_id": …, "message": {…}}` from a verified body: the message is read like one
 * pushed over any other transport (bounded depth; one that cannot be handled becomes a rejected
 * entry, answered with `invalid_message`). A string is the reason the delivery itself is unusable.
 */
export function readDelivery(
  raw: Uint8Array,
): { deliveryId: string; batch: Batch; recipientKey?: string; expiresAt?: string } | string {
  let text: string;
  try {
    text = strictUtf8.decode(raw);
  } catch {
    return 'the body is not UTF-8';
  }
  let root: unknown;
  try {
    // V8's parser is iterative: safe at any depth; nothing walks the value (depth is bounded below).
    root = JSON.parse(text);
  } catch {
    return 'the body is not JSON';
  }
  if (!isPlainObject(root)) return 'the body is not a JSON object';
  const id = root['delivery_id'];
  if (typeof id !== 'string' || id.length === 0 || id.length > MAX_DELIVERY_ID || !DELIVERY_ID_RE.test(id)) {
    return `delivery_id must be a string of 1–${MAX_DELIVERY_ID} printable characters`;
  }
  const span = memberSpans(text, [['message']]).get('message');
  if (!span || !isPlainObject(root['message'])) return 'message must be an object';
  const read = readMessageText(text.slice(span.start, span.end));
  const batch: Batch = read.ok
    ? { messages: [read.message], sizes: [read.bytes], taken: false }
    : { messages: [], rejected: [read.rejected], taken: false };
  // Read from the parsed value as well, so that a message that cannot be handled (too deep, a
  // field of the wrong type) is still checked for its addressee and expiry before it is answered.
  const message = root['message'] as Record<string, unknown>;
  const recipientKey = read.ok ? read.message.recipient_key : message['recipient_key'];
  const expiresAt = read.ok ? read.message.expires_at : message['expires_at'];
  return {
    deliveryId: id,
    batch,
    ...(typeof recipientKey === 'string' && recipientKey ? { recipientKey } : {}),
    ...(typeof expiresAt === 'string' ? { expiresAt } : {}),
  };
}
