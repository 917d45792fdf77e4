/**
 * Runs a handler over any message source, answering every message exactly once.
 *
 * For each message the order of effects is fixed: journal `received` (on disk) → handler →
 * journal `handled` with the reply (on disk) → reply accepted by the relay → ack → journal
 * `done`. A message already done is acked again and skipped; a message a crash interrupted is
 * resumed from its last step (the handler runs again only if it never finished; a reply is only
 * re-sent after checking the thread for it). Concurrency is bounded, each handler has a deadline,
 * and `stop()` drains: no new work, running handlers get `graceMs`, replies and acks are flushed.
 *
 * The runtime never prints: it reports through typed events.
 */
import { type Clock, systemClock, type Timer } from '../core/clock.js';
import { TypedEmitter } from '../core/emitter.js';
import { AbortError, type MrpError, TimeoutError, toMrpError } from '../core/errors.js';
import { formatDuration } from '../core/duration.js';
import type { RelayClient } from '../client/http.js';
import type { MessageSource } from '../client/source.js';
import { LIMITS } from '../protocol/constants.js';
import type { JsonValue, Message, SendRequest, SendResponse } from '../protocol/types.js';
import type { Handler, HandlerContext, HandlerLogger, SendOptions } from './handler.js';
import type { Journal, JournalEntry, PlannedReply } from './journal.js';
import { Outbox } from './outbox.js';

export type Outcome = 'replied' | 'no_reply' | 'error' | 'timeout' | 'reply_failed';

export interface HandledEvent {
  message: Message;
  outcome: Outcome;
  /** Handler start to ack. */
  durationMs: number;
  redelivered: boolean;
  replyId?: string;
  error?: { code: string; message: string };
}

export interface RuntimeEvents extends Record<string, unknown[]> {
  connecting: [];
  connected: [{ reconnected: boolean; detail: string }];
  disconnected: [{ explanation: string; willReconnect: boolean; delayMs: number; code?: number }];
  /** Messages resumed from the journal at start. */
  recovered: [{ count: number }];
  /** A message was taken in for handling. */
  received: [{ message: Message; redelivered: boolean }];
  /** A message that is already done or in progress was offered again. */
  duplicate: [{ message: Message; reason: 'done' | 'in_progress' }];
  handled: [HandledEvent];
  /** A handler threw or timed out (the error reply is on its way). */
  handler_error: [{ message: Message; error: Error }];
  /** A reply could not be sent yet and will be retried. */
  reply_retry: [{ messageId: string | undefined; error: MrpError; delayMs: number }];
  log: [{ level: 'debug' | 'info' | 'warn' | 'error'; message: string; fields: Record<string, unknown>; messageId: string }];
  warning: [MrpError];
  fatal: [MrpError];
  draining: [{ running: number; queued: number; replies: number }];
  stopped: [{ error?: MrpError }];
}

export interface RuntimeOptions {
  handler: Handler;
  source: MessageSource;
  client: RelayClient;
  journal: Journal;
  clock?: Clock;
  /** Handlers running at once (default 8). */
  concurrency?: number;
  /** Per-message handler deadline (default 30 s). */
  timeoutMs?: number;
  /** How long `stop()` lets running handlers finish (default 30 s). */
  graceMs?: number;
  /** Messages held waiting for a handler slot before intake pauses (default 1000). */
  maxQueued?: number;
  /** Turns a `ctx.send` recipient (a key or a contact name) into a key. */
  resolveRecipient?: (to: string) => string;
}

export const RUNTIME_DEFAULTS = { concurrency: 8, timeoutMs: 30_000, graceMs: 30_000, maxQueued: 1000 } as const;

interface Item {
  message: Message;
  redelivered: boolean;
  /** Resolves when the `received` record is on disk. */
  journaled: Promise<void>;
}

/** The reply envelope for a message (§4.4): threaded, `in_reply_to` the message. */
export function replyTo(message: Message, body: JsonValue, contentType = 'application/json'): SendRequest {
  return {
    recipient_key: message.sender_key,
    content_type: contentType,
    body,
    in_reply_to: message.message_id,
    thread_id: message.thread_id ?? message.message_id,
  };
}

/** A handler's return value as a planned reply: strings become `{"text": …}`, nothing means no reply. */
export function planReply(result: unknown): PlannedReply | null {
  if (result === undefined || result === null) return null;
  if (typeof result === 'string') return { body: { text: result }, content_type: 'application/json', outcome: 'ok' };
  let json: string | undefined;
  try {
    json = JSON.stringify(result);
  } catch (err) {
    return errorReply('invalid_reply', `the handler returned a value that is not JSON (${(err as Error).message})`, 'error');
  }
  if (json === undefined) return errorReply('invalid_reply', `the handler returned a ${typeof result}, which is not JSON`, 'error');
  if (Buffer.byteLength(json) > LIMITS.maxBodyBytes) {
    return errorReply('reply_too_large', `the reply is larger than ${LIMITS.maxBodyBytes} bytes`, 'error');
  }
  return { body: JSON.parse(json) as JsonValue, content_type: 'application/json', outcome: 'ok' };
}

/** `{"status":"error","error":{"code","message"}}` (§4.2 reply convention). */
export function errorReply(code: string, message: string, outcome: 'error' | 'timeout'): PlannedReply {
  return { body: { status: 'error', error: { code, message } }, content_type: 'application/json', outcome };
}

function errorCode(err: unknown): string {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' && code !== '' ? code : 'handler_error';
}

export class Runtime extends TypedEmitter<RuntimeEvents> {
  readonly #source: MessageSource;
  readonly #client: RelayClient;
  readonly #journal: Journal;
  readonly #clock: Clock;
  readonly #concurrency: number;
  readonly #outbox: Outbox;
  readonly #timeoutMs: number;
  readonly #graceMs: number;
  readonly #maxQueued: number;
  readonly #resolve: (to: string) => string;
  #handler: Handler;
  /** Ids queued, running or replying in this process. */
  readonly #active = new Set<string>();
  readonly #queue: Item[] = [];
  readonly #running = new Set<Promise<void>>();
  readonly #finishing = new Set<Promise<void>>();
  /** Set when running handlers are to be aborted (forced shutdown). */
  readonly #shutdown = new AbortController();
  /** The signal controllers of running handlers (one list, not a listener per handler). */
  readonly #controllers = new Set<AbortController>();
  #intake = true;
  #started = false;
  #overflowed = false;
  #stopped: Promise<void> | undefined;
  #resolveStopped!: () => void;
  readonly #finished = new Promise<void>((r) => (this.#resolveStopped = r));
  readonly stats = { received: 0, handled: 0, errors: 0, duplicates: 0, replies: 0 };

  constructor(options: RuntimeOptions) {
    super();
    this.#handler = options.handler;
    this.#source = options.source;
    this.#client = options.client;
    this.#journal = options.journal;
    this.#clock = options.clock ?? systemClock;
    this.#concurrency = options.concurrency ?? RUNTIME_DEFAULTS.concurrency;
    if (!Number.isInteger(this.#concurrency) || this.#concurrency < 1) {
      throw new RangeError(`concurrency must be a whole number ≥ 1 (got ${this.#concurrency})`);
    }
    this.#timeoutMs = options.timeoutMs ?? RUNTIME_DEFAULTS.timeoutMs;
    this.#graceMs = options.graceMs ?? RUNTIME_DEFAULTS.graceMs;
    this.#maxQueued = options.maxQueued ?? RUNTIME_DEFAULTS.maxQueued;
    if (!(this.#timeoutMs > 0)) throw new RangeError(`timeoutMs must be positive (got ${this.#timeoutMs})`);
    if (!(this.#graceMs >= 0)) throw new RangeError(`graceMs must be ≥ 0 (got ${this.#graceMs})`);
    this.#resolve = options.resolveRecipient ?? ((to) => to);
    this.#outbox = new Outbox({ send: (r) => this.#source.send(r), client: this.#client, clock: this.#clock });
    this.#outbox.on('retry', ({ request, error, delayMs }) =>
      this.emit('reply_retry', { messageId: request.in_reply_to ?? undefined, error, delayMs }),
    );

    this.#source.on('messages', (messages) => this.#accept(messages));
    this.#source.on('connecting', () => this.emit('connecting'));
    this.#source.on('connected', (info) => {
      // A new WebSocket connection brings the whole backlog again, overflow included.
      if (this.#source.kind === 'websocket') this.#overflowed = false;
      this.emit('connected', info);
    });
    this.#source.on('disconnected', (info) => this.emit('disconnected', info));
    this.#source.on('warning', (err) => this.emit('warning', err));
    this.#source.on('fatal', (err) => {
      this.emit('fatal', err);
      void this.stop(err);
    });
  }

  /** Handlers running now. */
  get running(): number {
    return this.#running.size;
  }

  /** Messages waiting for a handler slot. */
  get queued(): number {
    return this.#queue.length;
  }

  /** Resolves when the runtime has stopped (after `stop()` or a fatal error). */
  get finished(): Promise<void> {
    return this.#finished;
  }

  /** Swaps the handler (e.g. after the file changed); running handlers finish with the old one. */
  setHandler(handler: Handler): void {
    this.#handler = handler;
  }

  /** Resumes what a previous run left unfinished, then starts taking messages. */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    const recovered = this.#journal.takeRecovered();
    if (recovered.length) this.emit('recovered', { count: recovered.length });
    for (const entry of recovered) this.#resume(entry);
    this.#source.start();
  }

  #resume(entry: JournalEntry): void {
    this.#active.add(entry.id);
    if (entry.state === 'received') {
      // Redelivered only if a handler already began on it; messages that merely waited are new.
      this.stats.received++;
      this.#queue.push({ message: entry.message, redelivered: entry.started === true, journaled: Promise.resolve() });
      this.#pump();
      return;
    }
    this.#track(this.#finish(entry.message, entry.reply ?? null, entry.replyId, this.#clock.now(), true, true));
  }

  /** The consumer side of capacity: how many more messages a poll may bring. */
  capacity(): number {
    return Math.max(0, this.#maxQueued - this.#queue.length);
  }

  #accept(messages: Message[]): void {
    for (const message of messages) {
      const id = message.message_id;
      if (this.#journal.isDone(id)) {
        this.stats.duplicates++;
        this.#source.ack(id);
        this.emit('duplicate', { message, reason: 'done' });
        continue;
      }
      if (this.#active.has(id)) {
        this.stats.duplicates++;
        this.emit('duplicate', { message, reason: 'in_progress' });
        continue;
      }
      if (!this.#intake) {
        // Stopping. A poll already marked these delivered, so keep them for the next start;
        // a WebSocket push that is not acked will simply come again.
        if (this.#source.kind === 'poll') void this.#journal.received(message);
        continue;
      }
      if (this.#queue.length >= this.#maxQueued && this.#source.kind === 'websocket') {
        // Too much waiting: leave it unacked on the relay and fetch it when there is room.
        this.#overflowed = true;
        continue;
      }
      this.#active.add(id);
      this.stats.received++;
      this.#queue.push({ message, redelivered: false, journaled: this.#journal.received(message) });
      this.emit('received', { message, redelivered: false });
    }
    this.#pump();
  }

  /** Fetches messages left on the relay while the queue was full (WebSocket mode). */
  async #resync(): Promise<void> {
    if (!this.#overflowed || !this.#intake || this.#source.kind !== 'websocket') return;
    while (this.#overflowed && this.#intake && this.capacity() > this.#maxQueued / 2) {
      this.#overflowed = false;
      try {
        const page = await this.#client.poll({ limit: Math.min(LIMITS.pollLimitMax, this.capacity()) });
        this.#accept(page.messages);
        if (page.has_more) this.#overflowed = true;
      } catch (err) {
        this.#overflowed = true;
        this.emit('warning', toMrpError(err));
        return;
      }
    }
  }

  #pump(): void {
    while (this.#intake && this.#queue.length > 0 && this.#running.size < this.#concurrency) {
      const item = this.#queue.shift()!;
      const run = this.#run(item);
      this.#running.add(run);
      void run.finally(() => {
        this.#running.delete(run);
        this.#pump();
        this.#source.wake();
        if (this.#overflowed && this.#queue.length <= this.#maxQueued / 2) void this.#resync();
      });
    }
  }

  #track(p: Promise<void>): void {
    this.#finishing.add(p);
    void p.finally(() => this.#finishing.delete(p));
  }

  async #run(item: Item): Promise<void> {
    const { message } = item;
    const started = this.#clock.now();
    await item.journaled;
    if (this.#shutdown.signal.aborted) return this.#abandon(message);
    this.#journal.started(message.message_id);
    const plan = await this.#invoke(message, item.redelivered);
    if (plan === 'aborted') return this.#abandon(message);
    await this.#journal.handled(message.message_id, plan);
    this.#track(this.#finish(message, plan, undefined, started, item.redelivered, false));
  }

  #abandon(message: Message): void {
    // Left `received` in the journal: the next start handles it again.
    this.#active.delete(message.message_id);
  }

  async #invoke(message: Message, redelivered: boolean): Promise<PlannedReply | null | 'aborted'> {
    const controller = new AbortController();
    this.#controllers.add(controller);
    const timer = this.#clock.setTimeout(
      () => controller.abort(new TimeoutError(`the handler did not finish within ${formatDuration(this.#timeoutMs)}`)),
      this.#timeoutMs,
    );
    const aborted = new Promise<never>((_, reject) => {
      controller.signal.addEventListener('abort', () => reject(controller.signal.reason), { once: true });
    });
    aborted.catch(() => undefined);
    try {
      const ctx = this.#context(message, redelivered, controller.signal);
      const handler = this.#handler;
      const work = Promise.resolve().then(() => handler(message, ctx));
      work.catch(() => undefined);
      return planReply(await Promise.race([work, aborted]));
    } catch (err) {
      if (this.#shutdown.signal.aborted && controller.signal.reason instanceof AbortError) return 'aborted';
      const error = err instanceof Error ? err : new Error(String(err));
      this.stats.errors++;
      this.emit('handler_error', { message, error });
      if (err instanceof TimeoutError && controller.signal.reason === err) return errorReply('timeout', error.message, 'timeout');
      return errorReply(errorCode(err), error.message, 'error');
    } finally {
      timer.cancel();
      this.#controllers.delete(controller);
    }
  }

  #context(message: Message, redelivered: boolean, signal: AbortSignal): HandlerContext {
    const log = (level: 'debug' | 'info' | 'warn' | 'error') => (text: string, fields: Record<string, unknown> = {}) =>
      this.emit('log', { level, message: String(text), fields, messageId: message.message_id });
    const logger: HandlerLogger = { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };
    const live = (): void => {
      // A handler that timed out (or is being shut down) may still run; it must not send.
      if (signal.aborted) throw signal.reason instanceof Error ? signal.reason : new AbortError('handler aborted');
    };
    return {
      self: this.#client.publicKey,
      signal,
      log: logger,
      redelivered,
      reply: async (body, options = {}) => {
        live();
        const request = replyTo(message, body, options.contentType);
        return this.#outbox.send(request, { threadId: request.thread_id! });
      },
      send: async (to: string, body: JsonValue, options: SendOptions = {}): Promise<SendResponse> => {
        live();
        const request: SendRequest = { recipient_key: this.#resolve(to), body, content_type: options.contentType ?? 'application/json' };
        if (options.threadId !== undefined) request.thread_id = options.threadId;
        if (options.inReplyTo !== undefined) request.in_reply_to = options.inReplyTo;
        if (options.ttl !== undefined) request.expires_in = options.ttl;
        if (options.metadata !== undefined) request.metadata = options.metadata;
        // Within a thread a lost answer can be checked; a send outside any thread cannot.
        return this.#outbox.send(request, options.threadId === undefined ? undefined : { threadId: options.threadId });
      },
    };
  }

  /**
   * Reply (unless already sent) → ack → done. `resumed`: the handler finished in an earlier run,
   * which may have sent the reply without recording it, so the thread is checked first.
   */
  async #finish(
    message: Message,
    plan: PlannedReply | null,
    replyId: string | undefined,
    started: number,
    redelivered: boolean,
    resumed: boolean,
  ): Promise<void> {
    const id = message.message_id;
    let outcome: Outcome = plan === null ? 'no_reply' : plan.outcome === 'ok' ? 'replied' : plan.outcome;
    let error: HandledEvent['error'];
    if (plan?.outcome !== 'ok' && plan) {
      const e = (plan.body as { error?: { code: string; message: string } }).error;
      if (e) error = e;
    }
    if (plan && replyId === undefined) {
      try {
        const res = await this.#outbox.send(replyTo(message, plan.body, plan.content_type), {
          threadId: message.thread_id ?? id,
          checkFirst: resumed,
        });
        replyId = res.message_id;
        this.stats.replies++;
        this.#journal.replied(id, replyId);
      } catch (err) {
        const e = toMrpError(err);
        if (e.kind === 'aborted') {
          // Shutting down before the relay took the reply: the journal keeps it for next time.
          this.#active.delete(id);
          return;
        }
        // The relay refuses this reply for good (e.g. acl_denied): nothing to retry.
        outcome = 'reply_failed';
        error = { code: e.code, message: e.message };
      }
    }
    this.#source.ack(id);
    this.#journal.done(id);
    this.#active.delete(id);
    this.stats.handled++;
    this.emit('handled', {
      message,
      outcome,
      durationMs: this.#clock.now() - started,
      redelivered,
      ...(replyId ? { replyId } : {}),
      ...(error ? { error } : {}),
    });
  }

  /**
   * Graceful stop: no new messages, running handlers get `graceMs` to finish (then they are
   * aborted and left for the next start), replies and acks are flushed, the connection closes.
   */
  stop(error?: MrpError): Promise<void> {
    this.#stopped ??= this.#drain(error);
    return this.#stopped;
  }

  async #drain(error: MrpError | undefined): Promise<void> {
    const deadline = this.#clock.now() + this.#graceMs;
    this.#intake = false;
    const queued = this.#queue.splice(0);
    for (const item of queued) this.#abandon(item.message);
    this.emit('draining', { running: this.#running.size, queued: queued.length, replies: this.#outbox.pending });
    await this.#source.stopIntake();
    const inTime = async (work: Set<Promise<void>>): Promise<boolean> => {
      if (work.size === 0) return true;
      let timer: Timer | undefined;
      const late = new Promise<false>((resolve) => (timer = this.#clock.setTimeout(() => resolve(false), Math.max(0, deadline - this.#clock.now()))));
      const result = await Promise.race([Promise.all(work).then(() => true), late]);
      timer?.cancel();
      return result;
    };
    if (!(await inTime(this.#running))) {
      this.#shutdown.abort(new AbortError('the runner is shutting down'));
      for (const c of this.#controllers) c.abort(this.#shutdown.signal.reason);
      await Promise.all(this.#running);
    }
    if (!(await inTime(this.#finishing))) {
      this.#outbox.close();
      await Promise.all(this.#finishing);
    }
    this.#outbox.close();
    this.#journal.flush();
    await this.#source.close();
    this.#journal.close();
    this.emit('stopped', error ? { error } : {});
    this.#resolveStopped();
  }
}
