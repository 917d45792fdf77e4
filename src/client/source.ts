/**
 * Where a runtime's messages come from, behind one interface the runtime uses without knowing
 * the transport: a source hands over batches through `deliver` and learns when they are
 * journaled; it reports its `status`; it is the way out for acks and sends. Everything that
 * depends on the transport — reconnecting, catching up on what was left on the relay while the
 * consumer was full, recovering a poll whose answer was lost — happens inside the source.
 *
 * Two implementations live here: `WebSocketSource` (pushes, acks, inline sends) and `PollSource`
 * (long polls, each noted before it is sent). A webhook source (an HTTP server) or a fleet
 * source is written against the same contract, with no change to the runtime; see
 * `MessageSource` for what each must do.
 */
import { sleep } from '../core/async.js';
import { type Clock, systemClock } from '../core/clock.js';
import { type Listenable, TypedEmitter } from '../core/emitter.js';
import { type MrpError, NetworkError, OutcomeUnknownError, TimeoutError, toMrpError } from '../core/errors.js';
import { PATHS, TIMING } from '../protocol/constants.js';
import type { EncodedSend } from '../protocol/frames.js';
import type { RejectedMessage } from '../protocol/inbound.js';
import type { Message, SendResponse } from '../protocol/types.js';
import type { PollPage, RelayClient } from './http.js';
import { catchUpRetryWarning, Poller, type PollerOptions, type TakeLog } from './poller.js';
import { Session, type SessionOptions, type SessionStatus } from './session.js';

/** A poll that was in flight when the previous run died: when it was sent (local clock) and its wait. */
export interface OpenTake {
  at: number;
  waitSeconds: number;
}

/**
 * Where a source stands:
 * - `idle`: not started;
 * - `connecting`: starting, nothing received from the relay yet;
 * - `ready`: messages flow;
 * - `degraded`: the connection is lost or failing and is being retried (nothing flows meanwhile);
 * - `draining`: `stopIntake()` was called — nothing new is taken (a webhook source answers 503),
 *   the way out (`ack`, `send`) still works;
 * - `stopped`: closed, or given up after a fatal error.
 */
export type SourceStatus = 'idle' | 'connecting' | 'ready' | 'degraded' | 'draining' | 'stopped';

/** What a source hands over in one go, oldest first. */
export interface Batch {
  messages: Message[];
  /** The size of each message's text, when known (memory budgets). */
  sizes?: number[];
  /**
   * Entries delivered that cannot be handed to a handler (too deep, malformed). Those with an
   * identity are answered with an `invalid_message` error reply and acknowledged like any other.
   */
  rejected?: RejectedMessage[];
  /**
   * The relay already counts these as delivered and will not offer them again by itself (a poll
   * marked them so): the consumer keeps every one — journaled even when full or stopping — and
   * never declines any. `false` when a message left unacknowledged comes again anyway (a
   * WebSocket push, a webhook delivery not answered 200): the consumer may then decline it.
   */
  taken: boolean;
}

/** What `deliver` resolves to. */
export interface DeliveryReceipt {
  /**
   * Messages of the batch the consumer did not take (full, or stopping); never any for a taken
   * batch. They are not journaled: leave them on the relay — a WebSocket source fetches them once
   * the consumer has room, a webhook source answers 503 so the relay tries again.
   */
  declined: number;
}

/** The runtime side of a source: where batches go, and how much room there is. */
export interface SourceConsumer {
  /**
   * Hands a batch over. Resolves once every message of it the consumer kept is journaled (on
   * disk; synced with `--fsync`), including messages it already had: only then may a source tell
   * the relay the batch is safe (answer a webhook 200, close a poll's take). Rejects when they
   * cannot be journaled because the consumer is stopping (the journal closed first): treat the
   * batch as not received.
   */
  deliver(batch: Batch): Promise<DeliveryReceipt>;
  /** How many more messages the consumer can take now (0: take nothing until `wake()`). */
  capacity(): number;
  /**
   * Whether at most half of the consumer's budgets are in use: the moment for a source that left
   * messages on the relay while the consumer was full to fetch them (not sooner, or it would
   * fetch one message at a time).
   */
  hasRoom(): boolean;
}

export interface SourceEvents extends Record<string, unknown[]> {
  status: [SourceStatus];
  /** First attempt to reach the relay (reconnects are announced by `disconnected`). */
  connecting: [];
  connected: [{ reconnected: boolean; detail: string }];
  disconnected: [{ explanation: string; willReconnect: boolean; delayMs: number; code?: number }];
  warning: [MrpError];
  /** The source gave up (repeated auth failures, a suspended agent): the consumer stops. */
  fatal: [MrpError];
}

/**
 * A source of messages for a runtime. The contract, for whoever writes one:
 *
 * - **Hand-off.** `start(consumer)` begins intake; every message goes to `consumer.deliver(batch)`,
 *   in the order received. A source must not tell its relay a message is safe before `deliver`
 *   resolved: a webhook source answers `200` only then (`503` when the receipt declines it or
 *   `deliver` rejects), a poll source closes its take only then. `deliver` never needs to be
 *   serialised by the source, but a source that wants order across batches awaits each one.
 * - **Taken or not.** A batch is `taken` when the relay will not offer it again by itself;
 *   otherwise the consumer may decline messages (`DeliveryReceipt.declined`), which stay on the
 *   relay. A source that can fetch them later (WebSocket: a catch-up poll) does so when
 *   `consumer.hasRoom()` after `wake()`; one that cannot (webhook) lets the relay retry.
 * - **Flow control.** `consumer.capacity()` says how many more messages fit; `wake()` is called
 *   whenever room frees up. A source with nothing to fetch may ignore both.
 * - **Status.** `status` and the `status` event follow `SourceStatus`; `connecting`,
 *   `connected`, `disconnected` describe the transport for people; `fatal` makes the consumer
 *   stop. Listeners may be called synchronously from `start()`.
 * - **Draining.** `stopIntake()` stops taking messages (a webhook source keeps listening and
 *   answers `503`; a poll source cancels its poll and settles what it may have taken); `ack` and
 *   `send` keep working until `close()`, which releases everything.
 * - **The way out.** `ack(id)` tells the relay a message is handled (a no-op where taking it
 *   already did); `send(request)` sends an encoded message (its `body_json` verbatim) by whatever
 *   path the source has (inline over the socket, HTTP). A lost answer is `OutcomeUnknownError`.
 * - **Events.** Only `on`/`off`/`once` are asked of the source: any emitter with those fits (a
 *   source written outside this project may extend `TypedEmitter`, exported by `mrp`).
 */
export interface MessageSource extends Listenable<SourceEvents> {
  readonly status: SourceStatus;
  start(consumer: SourceConsumer): void;
  /** Stops taking messages; the way out (`send`, `ack`) keeps working until `close`. */
  stopIntake(): Promise<void>;
  /** Releases the connection (or server). */
  close(): Promise<void>;
  /** Tells the relay a message is handled (§5.3). */
  ack(messageId: string): void;
  /**
   * Sends one message, its encoded body verbatim. With `timeoutMs`, an answer not in by then
   * rejects with `OutcomeUnknownError` and the attempt is given up (a fleet's fenced reply).
   */
  send(request: EncodedSend, options?: SendOptions): Promise<SendResponse>;
  /** The consumer has room again. */
  wake(): void;
}

export interface SendOptions {
  timeoutMs?: number;
}

/** An HTTP send given up after `timeoutMs` (outcome unknown), or a plain one without it. */
export function sendOverHttp(
  client: RelayClient,
  request: EncodedSend,
  options: SendOptions = {},
): Promise<SendResponse> {
  const ms = options.timeoutMs;
  if (ms === undefined) return client.send(request);
  const deadline = new AbortController();
  const timer = setTimeout(
    () =>
      deadline.abort(
        new OutcomeUnknownError(`POST /v1/messages: given up after ${ms} ms; the relay may or may not have it`),
      ),
    Math.max(1, ms),
  );
  return client.send(request, deadline.signal).finally(() => clearTimeout(timer));
}

/** A source's status bookkeeping (shared by the implementations here). */
export abstract class BaseSource extends TypedEmitter<SourceEvents> {
  #status: SourceStatus = 'idle';
  protected consumer: SourceConsumer | undefined;

  get status(): SourceStatus {
    return this.#status;
  }

  protected setStatus(status: SourceStatus): void {
    if (this.#status === status || this.#status === 'stopped') return;
    // Draining is left only for stopped: reconnects meanwhile are not "ready" for new work.
    if (this.#status === 'draining' && status !== 'stopped') return;
    this.#status = status;
    this.emit('status', status);
  }

  /** Hands a batch over; a consumer failure is a warning, never a crash of the transport. */
  protected async handOver(batch: Batch): Promise<DeliveryReceipt> {
    const consumer = this.consumer;
    if (!consumer) return { declined: batch.messages.length };
    return consumer.deliver(batch);
  }
}

export interface WebSocketSourceOptions extends Omit<SessionOptions, 'url' | 'keypair'> {
  /** Where each catch-up poll in flight is noted (the journal), as in poll mode. */
  takes?: TakeLog;
  /** The poll the previous run had in flight when it died (from the journal), settled first. */
  openTake?: OpenTake & { id?: string };
}

/**
 * Messages pushed over a WebSocket session (§5.3), acked over it, replies sent inline while
 * connected. When the consumer declines pushes (full), later pushes are skipped unread and the
 * source catches up with polls once the consumer has room; a new connection brings the whole
 * backlog again, so that also ends a catch-up. A catch-up poll marks what it takes delivered, so
 * it is poll mode's own loop (`Poller.catchUp`): each poll's take is noted in the journal before
 * it is sent and closed once its page is journaled, and a take the previous run left open is
 * settled at start — a process killed mid-catch-up loses nothing.
 */
export class WebSocketSource extends BaseSource implements MessageSource {
  readonly session: Session;
  readonly #client: RelayClient;
  readonly #poller: Poller;
  readonly #openTake: (OpenTake & { id?: string }) | undefined;
  readonly #clock: Clock;
  #intake = true;
  /** Messages were left on the relay while the consumer was full: fetch them when there is room. */
  #overflowed = false;
  /** The catch-up in progress, if any (`stopIntake` waits for it: a poll took its messages). */
  #catchingUp: Promise<void> | undefined;
  /** Settling the previous run's open take, if any. */
  #recovering: Promise<void> | undefined;
  /** Aborted by `stopIntake`: a wait between two looks at the open take ends at once. */
  readonly #stopping = new AbortController();

  constructor(client: RelayClient, options: WebSocketSourceOptions = {}) {
    super();
    const { takes, openTake, ...sessionOptions } = options;
    this.#client = client;
    this.#openTake = openTake;
    this.#clock = options.clock ?? systemClock;
    this.session = new Session({ ...sessionOptions, url: client.wsUrl, keypair: client.keypair });
    this.#poller = new Poller({
      client,
      clock: this.#clock,
      capacity: () => this.consumer?.capacity() ?? 0,
      deliver: (page) =>
        this.handOver({ messages: page.messages, sizes: page.sizes, rejected: page.rejected, taken: true }).then(
          () => undefined,
        ),
      ...(takes ? { takes } : {}),
    });
    this.#poller.on('retry', (retry) => this.emit('warning', catchUpRetryWarning(retry)));
    this.#poller.on('warning', (e) => this.emit('warning', e));
    // A catch-up that gave up (the relay refused the key again and again) ends the source, as in
    // poll and webhook mode: what it did not fetch stays on the relay.
    this.#poller.on('fatal', (e) => this.emit('fatal', e));
    this.session.on('status', (s) => this.#onSessionStatus(s));
    this.session.on('ready', ({ reconnected }) => {
      // A new connection brings the whole backlog again, overflow included.
      this.#overflowed = false;
      this.emit('connected', { reconnected, detail: client.wsUrl });
    });
    this.session.on('message', (m, bytes) => {
      if (!this.#intake) return;
      const batch = this.#gathering();
      batch.messages.push(m);
      batch.sizes!.push(bytes);
    });
    this.session.on('rejected', (r) => {
      if (this.#intake) this.#gathering().rejected!.push(r);
    });
    this.session.on('disconnect', (d) =>
      this.emit('disconnected', {
        explanation: d.explanation,
        willReconnect: d.willReconnect,
        delayMs: d.delayMs,
        code: d.code,
      }),
    );
    this.session.on('warning', (e) => this.emit('warning', e));
    this.session.on('fatal', (e) => this.emit('fatal', e));
  }

  #onSessionStatus(s: SessionStatus): void {
    if (s === 'connecting') {
      // Reconnects are announced by `disconnected` (with their delay); this is the first attempt.
      this.setStatus('connecting');
      this.emit('connecting');
    } else if (s === 'ready') this.setStatus('ready');
    else if (s === 'reconnecting') this.setStatus('degraded');
    else if (s === 'closed') this.setStatus('stopped');
  }

  /**
   * The batch being gathered: pushes that arrive together (one read from the socket) are handed
   * over as one batch once the frames of that read are parsed (process.nextTick) — one hand-off
   * and one journal barrier for all of them instead of one each.
   */
  #gathered: Required<Pick<Batch, 'messages' | 'sizes' | 'rejected'>> | undefined;

  #gathering(): Required<Pick<Batch, 'messages' | 'sizes' | 'rejected'>> {
    if (!this.#gathered) {
      this.#gathered = { messages: [], sizes: [], rejected: [] };
      process.nextTick(this.#handOverGathered);
    }
    return this.#gathered;
  }

  readonly #handOverGathered = (): void => {
    const batch = this.#gathered;
    this.#gathered = undefined;
    if (!batch) return;
    try {
      this.#push({ ...batch, taken: false });
    } catch (err) {
      // A consumer that throws instead of rejecting: a warning (they stay unacked on the relay),
      // never an exception out of this tick.
      this.emit('warning', toMrpError(err));
    }
  };

  #push(batch: Batch): void {
    if (!this.consumer) return;
    this.consumer.deliver(batch).then(
      (receipt) => {
        if (receipt.declined > 0) {
          // Full: leave them unacked on the relay, skip further pushes unread, fetch them later.
          this.#overflowed = true;
          this.session.dropMessages = true;
        }
      },
      // Not journaled (stopping): unacked, so the relay offers it again on the next connection.
      () => undefined,
    );
  }

  start(consumer: SourceConsumer): void {
    this.consumer = consumer;
    this.session.start();
    const take = this.#openTake;
    if (take) this.#recovering = this.#recover(take);
  }

  /** The previous run's catch-up poll that was in flight when it died: what it took, handed over again. */
  async #recover(take: OpenTake & { id?: string }): Promise<void> {
    await this.#poller.settleOpenTake(take, async (delayMs) => {
      if (!this.#intake) return false;
      // The poller's backoff (up to 30 s): a stop meanwhile must not wait it out.
      await sleep(delayMs, { clock: this.#clock, signal: this.#stopping.signal }).catch(() => undefined);
      return this.#intake;
    });
  }

  async stopIntake(): Promise<void> {
    this.#intake = false;
    this.#stopping.abort();
    this.setStatus('draining');
    await this.#poller.stop();
    await this.#catchingUp;
    await this.#recovering;
  }

  close(): Promise<void> {
    return this.session.close();
  }

  ack(messageId: string): void {
    this.session.ack(messageId);
  }

  send(request: EncodedSend, options: SendOptions = {}): Promise<SendResponse> {
    return this.session.status === 'ready'
      ? this.session.send(request, options)
      : sendOverHttp(this.#client, request, options);
  }

  wake(): void {
    this.session.dropMessages = false;
    this.#poller.wake();
    if (this.#overflowed && !this.#catchingUp && this.consumer?.hasRoom()) {
      this.#catchingUp = this.#catchUp().finally(() => (this.#catchingUp = undefined));
    }
  }

  /** Fetches what was left on the relay while the consumer was full, until nothing is (`has_more` false). */
  async #catchUp(): Promise<void> {
    await this.#recovering;
    while (this.#overflowed && this.#intake) {
      this.#overflowed = false;
      if (!(await this.#poller.catchUp())) return;
    }
  }
}

export interface PollSourceOptions extends Omit<PollerOptions, 'client' | 'deliver'> {
  clock?: Clock;
  /** The poll the previous run had in flight when it died (from the journal), if any. */
  openTake?: OpenTake;
}

/** How long poll mode's first request may go unanswered before the relay is said unreachable (as a WebSocket handshake). */
const PROBE_TIMEOUT_MS = TIMING.wsAuthTimeoutMs;

/**
 * Long polls (§3.6). A poll marks what it returns delivered, so each batch is `taken` and the
 * poll's take (noted in the journal before it is sent) is closed only after `deliver` resolved.
 */
export class PollSource extends BaseSource implements MessageSource {
  readonly poller: Poller;
  readonly #client: RelayClient;
  readonly #clock: Clock;
  readonly #openTake: OpenTake | undefined;
  #connected = false;
  #stopped = false;
  readonly #stopping = new AbortController();

  /**
   * `takes`: where each poll in flight is noted (the journal). `openTake`: the poll the previous
   * run had in flight when it died, if any; only the messages the relay delivered within that
   * poll's window are fetched again before polling starts (the consumer skips those it already
   * has). Messages `recv` or `tail --ack` took at other times are never touched. `capacity`
   * defaults to the consumer's.
   */
  constructor(client: RelayClient, options: PollSourceOptions = {}) {
    super();
    this.#client = client;
    this.#clock = options.clock ?? systemClock;
    this.#openTake = options.openTake;
    const { openTake: _openTake, ...pollerOptions } = options;
    this.poller = new Poller({
      ...pollerOptions,
      clock: this.#clock,
      client,
      capacity: options.capacity ?? (() => this.consumer?.capacity() ?? 0),
      deliver: (page) => this.#deliver(page),
    });
    this.poller.on('retry', ({ error, delayMs }) => this.#unreachable(error, delayMs));
    this.poller.on('recovered', () => this.#markConnected());
    this.poller.on('mode', (mode) =>
      this.emit('connected', { reconnected: this.#connected, detail: `poll (${mode})` }),
    );
    this.poller.on('warning', (e) => this.emit('warning', e));
    this.poller.on('fatal', (e) => {
      this.setStatus('stopped');
      this.emit('fatal', e);
    });
  }

  async #deliver(page: PollPage): Promise<void> {
    if (page.messages.length > 0) this.#markConnected();
    await this.handOver({ messages: page.messages, sizes: page.sizes, rejected: page.rejected, taken: true });
  }

  #markConnected(): void {
    if (this.#connected) return;
    this.#connected = true;
    this.setStatus('ready');
    this.emit('connected', { reconnected: false, detail: `poll (${this.poller.mode})` });
  }

  start(consumer: SourceConsumer): void {
    this.consumer = consumer;
    this.setStatus('connecting');
    this.emit('connecting');
    void this.#begin();
  }

  async #begin(): Promise<void> {
    // Say we are connected once the relay answers: a cheap signed request, which also tells
    // the relay's clock (to place a lost poll's window on it). One attempt: a relay that cannot
    // be reached is said at once (as the WebSocket source does), then retried with the backoff.
    const failure = await this.#client
      .request('GET', PATHS.agent(this.#client.publicKey), {
        idempotent: false,
        once: true,
        timeoutMs: PROBE_TIMEOUT_MS,
      })
      .then(() => undefined)
      .catch((err: unknown) => toMrpError(err));
    if (failure === undefined) this.#markConnected();
    else if (failure instanceof NetworkError || failure instanceof TimeoutError) {
      const delayMs = this.poller.nextRetryDelay();
      this.#unreachable(failure, delayMs);
      if (!(await this.#wait(delayMs))) return;
    }
    const take = this.#openTake;
    if (take) {
      const settled = await this.poller.settleOpenTake(take, (delayMs) => this.#wait(delayMs));
      if (!settled || this.#stopped) return;
      this.#markConnected();
    }
    if (!this.#stopped) this.poller.start();
  }

  /** The relay could not be asked: said like a dropped connection, with when the next try is. */
  #unreachable(error: MrpError, delayMs: number): void {
    this.#connected = false;
    this.setStatus('degraded');
    this.emit('disconnected', { explanation: error.message, willReconnect: true, delayMs });
  }

  /** Waits `ms` unless stopping; false once stopping. */
  async #wait(ms: number): Promise<boolean> {
    if (this.#stopped) return false;
    await sleep(ms, { clock: this.#clock, signal: this.#stopping.signal }).catch(() => undefined);
    return !this.#stopped;
  }

  stopIntake(): Promise<void> {
    this.#stopped = true;
    this.#stopping.abort();
    this.setStatus('draining');
    return this.poller.stop();
  }

  async close(): Promise<void> {
    this.#stopped = true;
    this.#stopping.abort();
    await this.poller.stop();
    this.setStatus('stopped');
  }

  ack(): void {
    // A poll marks what it returns delivered (§3.6); there is nothing to acknowledge.
  }

  send(request: EncodedSend, options: SendOptions = {}): Promise<SendResponse> {
    return sendOverHttp(this.#client, request, options);
  }

  wake(): void {
    this.poller.wake();
  }
}
