/**
 * Where a runtime's messages come from: a WebSocket session or a poller behind one interface,
 * plus the one way out (`send`): an inline WebSocket send when connected, HTTP otherwise.
 */
import { sleep } from '../core/async.js';
import { type Clock, systemClock } from '../core/clock.js';
import { TypedEmitter } from '../core/emitter.js';
import type { MrpError } from '../core/errors.js';
import type { RejectedMessage } from '../protocol/inbound.js';

/** A poll that was in flight when the previous run died: when it was sent (local clock) and its wait. */
export interface OpenTake {
  at: number;
  waitSeconds: number;
}
import type { Message, SendRequest, SendResponse } from '../protocol/types.js';
import type { RelayClient } from './http.js';
import { Poller, type PollerOptions, type TakeLog } from './poller.js';
import { Session, type SessionOptions } from './session.js';

export interface SourceEvents extends Record<string, unknown[]> {
  /** Messages to handle, oldest first, with the size of each one's text when known. */
  messages: [messages: Message[], sizes?: number[]];
  /**
   * Messages delivered that cannot be handed over (too deep, malformed). Those with an identity
   * must be answered and acknowledged like any other; the rest can only be reported.
   */
  rejected: [RejectedMessage[]];
  connecting: [];
  connected: [{ reconnected: boolean; detail: string }];
  disconnected: [{ explanation: string; willReconnect: boolean; delayMs: number; code?: number }];
  warning: [MrpError];
  fatal: [MrpError];
}

export interface MessageSource extends TypedEmitter<SourceEvents> {
  readonly kind: 'websocket' | 'poll';
  start(): void;
  /** Stops taking messages; the way out (`send`, `ack`) keeps working until `close`. */
  stopIntake(): Promise<void>;
  /** Releases the connection. */
  close(): Promise<void>;
  /** Tells the relay a message is handled (§5.3). A poll already marked it delivered. */
  ack(messageId: string): void;
  /** Sends a message: inline over the socket when connected, else over HTTP. */
  send(request: SendRequest): Promise<SendResponse>;
  /** The consumer has room again (poll mode fetches more; WebSocket mode reads pushes again). */
  wake(): void;
  /**
   * The consumer has no room: take nothing more until `wake()`. Messages not taken stay on the
   * relay (unacked); the consumer fetches them later.
   */
  hold?(): void;
}

export class WebSocketSource extends TypedEmitter<SourceEvents> implements MessageSource {
  readonly kind = 'websocket';
  readonly session: Session;
  readonly #client: RelayClient;
  #intake = true;

  constructor(client: RelayClient, options: Omit<SessionOptions, 'url' | 'keypair'> = {}) {
    super();
    this.#client = client;
    this.session = new Session({ ...options, url: client.wsUrl, keypair: client.keypair });
    // Reconnects are announced by `disconnected` (with their delay); this is the first attempt.
    this.session.on('status', (s) => {
      if (s === 'connecting') this.emit('connecting');
    });
    this.session.on('ready', ({ reconnected }) => this.emit('connected', { reconnected, detail: client.wsUrl }));
    this.session.on('message', (m, bytes) => {
      if (this.#intake) this.emit('messages', [m], [bytes]);
    });
    this.session.on('rejected', (r) => {
      if (this.#intake) this.emit('rejected', [r]);
    });
    this.session.on('disconnect', (d) =>
      this.emit('disconnected', { explanation: d.explanation, willReconnect: d.willReconnect, delayMs: d.delayMs, code: d.code }),
    );
    this.session.on('warning', (e) => this.emit('warning', e));
    this.session.on('fatal', (e) => this.emit('fatal', e));
  }

  start(): void {
    this.session.start();
  }

  async stopIntake(): Promise<void> {
    this.#intake = false;
  }

  close(): Promise<void> {
    return this.session.close();
  }

  ack(messageId: string): void {
    this.session.ack(messageId);
  }

  send(request: SendRequest): Promise<SendResponse> {
    return this.session.status === 'ready' ? this.session.send(request) : this.#client.send(request);
  }

  wake(): void {
    this.session.dropMessages = false;
  }

  hold(): void {
    this.session.dropMessages = true;
  }
}

export class PollSource extends TypedEmitter<SourceEvents> implements MessageSource {
  readonly kind = 'poll';
  readonly poller: Poller;
  readonly #client: RelayClient;
  readonly #clock: Clock;
  readonly #openTake: OpenTake | undefined;
  readonly #takes: TakeLog | undefined;
  #connected = false;
  #stopped = false;

  /**
   * `takes`: where each poll in flight is noted (the journal). `openTake`: the poll the previous
   * run had in flight when it died, if any; only the messages the relay delivered within that
   * poll's window are fetched again before polling starts (the consumer skips those it already
   * has). Messages `recv` or `tail --ack` took at other times are never touched.
   */
  constructor(client: RelayClient, options: Omit<PollerOptions, 'client'> & { clock?: Clock; openTake?: OpenTake } = {}) {
    super();
    this.#client = client;
    this.#clock = options.clock ?? systemClock;
    this.#openTake = options.openTake;
    this.#takes = options.takes;
    this.poller = new Poller({ ...options, clock: this.#clock, client });
    this.poller.on('batch', (messages, sizes) => {
      this.#markConnected();
      this.emit('messages', messages, sizes);
    });
    this.poller.on('rejected', (rejected) => this.emit('rejected', rejected));
    this.poller.on('retry', ({ error, delayMs }) => {
      this.#connected = false;
      this.emit('disconnected', { explanation: error.message, willReconnect: true, delayMs });
    });
    this.poller.on('recovered', () => this.#markConnected());
    this.poller.on('mode', (mode) => this.emit('connected', { reconnected: this.#connected, detail: `poll (${mode})` }));
    this.poller.on('warning', (e) => this.emit('warning', e));
    this.poller.on('fatal', (e) => this.emit('fatal', e));
  }

  #markConnected(): void {
    if (this.#connected) return;
    this.#connected = true;
    this.emit('connected', { reconnected: false, detail: `poll (${this.poller.mode})` });
  }

  start(): void {
    this.emit('connecting');
    void this.#begin();
  }

  async #begin(): Promise<void> {
    // Say we are connected once the relay answers: a cheap signed request, which also tells
    // the relay's clock (to place a lost poll's window on it).
    const answered = await this.#client
      .getAgent(this.#client.publicKey)
      .then(() => true)
      .catch(() => false);
    if (answered) this.#markConnected();
    const take = this.#openTake;
    if (take) {
      while (!this.#stopped && !(await this.poller.recoverTake(take))) await sleep(2000, { clock: this.#clock });
      if (this.#stopped) return;
      this.#takes?.end();
      this.#markConnected();
    }
    if (!this.#stopped) this.poller.start();
  }

  stopIntake(): Promise<void> {
    this.#stopped = true;
    return this.poller.stop();
  }

  async close(): Promise<void> {
    await this.poller.stop();
  }

  ack(): void {
    // A poll marks what it returns delivered (§3.6); there is nothing to acknowledge.
  }

  send(request: SendRequest): Promise<SendResponse> {
    return this.#client.send(request);
  }

  wake(): void {
    this.poller.wake();
  }
}
