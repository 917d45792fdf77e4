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
 * Nothing a source delivers stops it: a message that cannot be handed to the handler (too deep,
 * malformed) is answered with an `invalid_message` error reply and acknowledged; one that cannot
 * even be identified is reported. A message whose handler keeps killing the process is run alone
 * after the first crash and, after `maxCrashes`, answered with `handler_crashed` instead of run.
 * Memory is bounded by bytes as well as by count: past `maxQueuedBytes` of messages held, no more
 * are taken (they stay on the relay). While the journal cannot be written, no more are taken
 * either (`readiness` events say so).
 *
 * The runtime never prints: it reports through typed events.
 */
import { type Clock, systemClock, type Timer } from '../core/clock.js';
import { TypedEmitter } from '../core/emitter.js';
import { AbortError, MrpError, TimeoutError, toMrpError } from '../core/errors.js';
import { formatDuration } from '../core/duration.js';
import type { RelayClient } from '../client/http.js';
import type { MessageSource } from '../client/source.js';
import { LIMITS } from '../protocol/constants.js';
import type { MessageIdentity, RejectedMessage } from '../protocol/inbound.js';
import type { JsonValue, Message, SendRequest, SendResponse } from '../protocol/types.js';
import type { Handler, HandlerContext, HandlerLogger, SendOptions } from './handler.js';
import { crashesOf, type Journal, type JournalEntry, type PlannedReply } from './journal.js';
import { Outbox } from './outbox.js';
import { errorReply, planReply, replyProblem, replyTo } from './reply.js';
import { safeFields, safeText } from './safe.js';
import { inHandlerScope } from './scope.js';

export { errorReply, planReply, replyTo } from './reply.js';

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
  /** A message whose handler stopped the process `crashes` times is answered with `handler_crashed`. */
  handler_crashed: [{ message: Message; crashes: number }];
  /**
   * A delivered message could not be handed to the handler. With an id (and a sender), it is
   * answered with an `invalid_message` error reply (`answered`) and acknowledged; without, it
   * can only be reported.
   */
  invalid_message: [{ messageId?: string; senderKey?: string; reason: string; answered: boolean }];
  /** A reply could not be sent yet and will be retried. */
  reply_retry: [{ messageId: string | undefined; error: MrpError; delayMs: number }];
  /** Whether messages can be taken: false while the journal cannot be written (retried meanwhile). */
  readiness: [{ ready: boolean; error?: MrpError; retryInMs?: number }];
  log: [{ level: 'debug' | 'info' | 'warn' | 'error'; message: string; fields: Record<string, JsonValue>; messageId: string }];
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
  /** Bytes of messages held (queued, running or replying) before intake pauses (default 32 MiB). */
  maxQueuedBytes?: number;
  /** Handler runs on one message that may end with the process dying before it is answered with `handler_crashed` (default 3). */
  maxCrashes?: number;
  /** Turns a `ctx.send` recipient (a key or a contact name) into a key. */
  resolveRecipient?: (to: string) => string;
}

export const RUNTIME_DEFAULTS = {
  concurrency: 8,
  timeoutMs: 30_000,
  graceMs: 30_000,
  maxQueued: 1000,
  maxQueuedBytes: 32 * 1024 * 1024,
  maxCrashes: 3,
} as const;

interface Item {
  message: Message;
  redelivered: boolean;
  /** Resolves when the `received` record is on disk. */
  journaled: Promise<void>;
  /** Its handler was running when the process died before: run it alone. */
  suspect: boolean;
}

function errorCode(err: unknown): string {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' && code !== '' ? code : 'handler_error';
}

/** Size of a message's JSON text, for memory budgets (when the source did not say). */
function estimateBytes(message: Message): number {
  try {
    return JSON.stringify(message).length;
  } catch {
    return 1024;
  }
}

/** A message object for what could be read of a message that cannot be handled. */
function stubMessage(identity: MessageIdentity): Message {
  return {
    message_id: identity.message_id,
    sender_key: identity.sender_key ?? '',
    recipient_key: '',
    content_type: 'application/json',
    body: null,
    attachments: [],
    thread_id: identity.thread_id,
    in_reply_to: null,
    metadata: {},
    status: 'delivered',
    created_at: '',
    expires_at: identity.expires_at ?? '',
    delivered_at: null,
  };
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`${name} must be a whole number ≥ 1 (got ${value})`);
  return value;
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
  readonly #maxBytes: number;
  readonly #maxCrashes: number;
  readonly #resolve: (to: string) => string;
  #handler: Handler;
  /** Ids queued, running or replying in this process, with the bytes each holds. */
  readonly #active = new Map<string, number>();
  #heldBytes = 0;
  readonly #queue: Item[] = [];
  readonly #running = new Set<Promise<void>>();
  readonly #finishing = new Set<Promise<void>>();
  /** Set when running handlers are to be aborted (forced shutdown). */
  readonly #shutdown = new AbortController();
  /** Rejects when the shutdown is forced: everything waiting for the journal gives up then. */
  readonly #forced: Promise<never>;
  /** The signal controllers of running handlers (one list, not a listener per handler). */
  readonly #controllers = new Set<AbortController>();
  #intake = true;
  #started = false;
  #overflowed = false;
  /** A suspect (see Item) is running: nothing else starts until it ends. */
  #solo = false;
  #stopped: Promise<void> | undefined;
  #resolveStopped!: () => void;
  readonly #finished = new Promise<void>((r) => (this.#resolveStopped = r));
  readonly stats = { received: 0, handled: 0, errors: 0, duplicates: 0, replies: 0, invalid: 0 };

  constructor(options: RuntimeOptions) {
    super();
    this.#handler = options.handler;
    this.#source = options.source;
    this.#client = options.client;
    this.#journal = options.journal;
    this.#clock = options.clock ?? systemClock;
    this.#concurrency = positiveInteger('concurrency', options.concurrency ?? RUNTIME_DEFAULTS.concurrency);
    this.#timeoutMs = options.timeoutMs ?? RUNTIME_DEFAULTS.timeoutMs;
    this.#graceMs = options.graceMs ?? RUNTIME_DEFAULTS.graceMs;
    this.#maxQueued = positiveInteger('maxQueued', options.maxQueued ?? RUNTIME_DEFAULTS.maxQueued);
    this.#maxBytes = positiveInteger('maxQueuedBytes', options.maxQueuedBytes ?? RUNTIME_DEFAULTS.maxQueuedBytes);
    this.#maxCrashes = positiveInteger('maxCrashes', options.maxCrashes ?? RUNTIME_DEFAULTS.maxCrashes);
    if (!(this.#timeoutMs > 0)) throw new RangeError(`timeoutMs must be positive (got ${this.#timeoutMs})`);
    if (!(this.#graceMs >= 0)) throw new RangeError(`graceMs must be ≥ 0 (got ${this.#graceMs})`);
    this.#resolve = options.resolveRecipient ?? ((to) => to);
    this.#forced = new Promise<never>((_, reject) => {
      this.#shutdown.signal.addEventListener('abort', () => reject(this.#shutdown.signal.reason), { once: true });
    });
    this.#forced.catch(() => undefined);
    this.#outbox = new Outbox({ send: (r) => this.#source.send(r), client: this.#client, clock: this.#clock });
    this.#outbox.on('retry', ({ request, error, delayMs }) =>
      this.emit('reply_retry', { messageId: request.in_reply_to ?? undefined, error, delayMs }),
    );

    // Listeners on sources and the journal never throw: a failure is a warning, never a stall.
    this.#source.on('messages', (messages, sizes) => this.#guard(() => this.#accept(messages, sizes)));
    this.#source.on('rejected', (rejected) => this.#guard(() => this.#acceptRejected(rejected)));
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
    this.#journal.on('unwritable', ({ error, retryInMs }) => this.#guard(() => this.emit('readiness', { ready: false, error, retryInMs })));
    this.#journal.on('writable', () =>
      this.#guard(() => {
        this.emit('readiness', { ready: true });
        this.#roomAgain();
      }),
    );
  }

  /** Handlers running now. */
  get running(): number {
    return this.#running.size;
  }

  /** Messages waiting for a handler slot. */
  get queued(): number {
    return this.#queue.length;
  }

  /** Bytes of messages held now (queued, running, replying). */
  get heldBytes(): number {
    return this.#heldBytes;
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
    for (const entry of recovered) this.#guard(() => this.#resume(entry));
    this.#pump();
    this.#source.start();
  }

  #guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      try {
        this.emit('warning', toMrpError(err));
      } catch {
        // A listener failed while being told about a failure: nothing more to do.
      }
    }
  }

  #hold(id: string, bytes: number): void {
    this.#active.set(id, bytes);
    this.#heldBytes += bytes;
  }

  /** The message is finished or abandoned in this process: its memory and slot are free. */
  #release(id: string): void {
    const bytes = this.#active.get(id);
    if (bytes === undefined) return;
    this.#active.delete(id);
    this.#heldBytes -= bytes;
    this.#roomAgain();
  }

  #roomAgain(): void {
    this.#source.wake();
    if (this.#overflowed && this.#hasRoom(0.5)) void this.#resync();
  }

  /** Whether at most `fraction` of the count and byte budgets are in use (and the journal works). */
  #hasRoom(fraction: number): boolean {
    return this.#journal.writable && this.#queue.length <= this.#maxQueued * fraction && this.#heldBytes <= this.#maxBytes * fraction;
  }

  #resume(entry: JournalEntry): void {
    this.#hold(entry.id, estimateBytes(entry.message));
    if (entry.state === 'received') {
      const crashes = crashesOf(entry);
      this.stats.received++;
      if (crashes >= this.#maxCrashes) {
        this.emit('handler_crashed', { message: entry.message, crashes });
        const plan = errorReply(
          'handler_crashed',
          `the handler stopped the runner ${crashes} times while handling this message; it is not run again`,
          'error',
        );
        this.#track(
          this.#untilJournaled(this.#journal.handled(entry.id, plan)).then(
            () => this.#finish(entry.message, plan, undefined, this.#clock.now(), true, false),
            () => this.#release(entry.id),
          ),
        );
        return;
      }
      // Redelivered only if a handler already began on it; messages that merely waited are new.
      this.#queue.push({ message: entry.message, redelivered: entry.started === true, journaled: Promise.resolve(), suspect: crashes > 0 });
      return;
    }
    this.#track(this.#finish(entry.message, entry.reply ?? null, entry.replyId, this.#clock.now(), true, true));
  }

  /**
   * The consumer side of capacity: how many more messages a poll may bring. Bounded by count,
   * and by bytes assuming each may be as large as a message can be.
   */
  capacity(): number {
    if (!this.#journal.writable) return 0;
    const count = Math.max(0, this.#maxQueued - this.#queue.length);
    const room = this.#maxBytes - this.#heldBytes;
    if (room <= 0) return 0;
    return Math.min(count, Math.max(1, Math.floor(room / LIMITS.maxEnvelopeBytes)));
  }

  /** `polled`: a poll returned them (so the relay marked them delivered): they must be kept. */
  #accept(messages: Message[], sizes: number[] | undefined, polled = this.#source.kind === 'poll'): void {
    for (let i = 0; i < messages.length; i++) this.#guard(() => this.#acceptOne(messages[i]!, sizes?.[i], polled));
    this.#pump();
  }

  #acceptOne(message: Message, size: number | undefined, polled: boolean): void {
    const id = message.message_id;
    if (this.#journal.isDone(id)) {
      this.stats.duplicates++;
      this.#source.ack(id);
      this.emit('duplicate', { message, reason: 'done' });
      return;
    }
    if (this.#active.has(id)) {
      this.stats.duplicates++;
      this.emit('duplicate', { message, reason: 'in_progress' });
      return;
    }
    if (!this.#intake) {
      // Stopping. A poll already marked these delivered, so keep them for the next start;
      // a WebSocket push that is not acked will simply come again.
      if (polled) this.#journal.received(message).catch(() => undefined);
      return;
    }
    if (!polled && !(this.#journal.writable && this.#queue.length < this.#maxQueued && this.#heldBytes < this.#maxBytes)) {
      // Too much held, or nothing can be journaled: leave it unacked on the relay and fetch it
      // when there is room. Until then the source need not even read pushes.
      this.#overflowed = true;
      this.#source.hold?.();
      return;
    }
    this.#hold(id, size ?? estimateBytes(message));
    this.stats.received++;
    const journaled = this.#journal.received(message);
    journaled.catch(() => undefined);
    this.#queue.push({ message, redelivered: false, journaled, suspect: false });
    this.emit('received', { message, redelivered: false });
  }

  /** Messages delivered that cannot be handed over: answered (or parked) and acknowledged. */
  #acceptRejected(rejected: RejectedMessage[], polled = this.#source.kind === 'poll'): void {
    for (const r of rejected) this.#guard(() => this.#rejectOne(r, polled));
  }

  #rejectOne(r: RejectedMessage, polled: boolean): void {
    const identity = r.identity;
    this.stats.invalid++;
    if (!identity) {
      this.emit('invalid_message', { reason: r.reason, answered: false });
      return;
    }
    const id = identity.message_id;
    const message = stubMessage(identity);
    if (this.#journal.isDone(id)) {
      this.stats.duplicates++;
      this.#source.ack(id);
      this.emit('duplicate', { message, reason: 'done' });
      return;
    }
    if (this.#active.has(id)) return;
    const plan = identity.sender_key ? errorReply('invalid_message', r.reason, 'error') : null;
    this.emit('invalid_message', { messageId: id, ...(identity.sender_key ? { senderKey: identity.sender_key } : {}), reason: r.reason, answered: plan !== null });
    if (!plan) {
      // No one to answer: acknowledge it so it is not offered again, and remember it.
      this.#source.ack(id);
      this.#journal.done(id);
      this.emit('handled', { message, outcome: 'error', durationMs: 0, redelivered: false, error: { code: r.code, message: r.reason } });
      return;
    }
    if (!this.#intake) {
      if (polled) {
        this.#journal.received(message).catch(() => undefined);
        this.#journal.handled(id, plan).catch(() => undefined);
      }
      return;
    }
    this.#hold(id, 1024);
    this.stats.received++;
    const started = this.#clock.now();
    const written = Promise.all([this.#journal.received(message), this.#journal.handled(id, plan)]);
    this.#track(
      this.#untilJournaled(written).then(
        () => this.#finish(message, plan, undefined, started, false, false),
        () => this.#release(id),
      ),
    );
  }

  /** Fetches messages left on the relay while there was no room (WebSocket mode). */
  async #resync(): Promise<void> {
    if (!this.#overflowed || !this.#intake || this.#source.kind !== 'websocket') return;
    while (this.#overflowed && this.#intake && this.#hasRoom(0.5)) {
      this.#overflowed = false;
      try {
        const page = await this.#client.poll({ limit: Math.max(1, Math.min(LIMITS.pollLimitMax, this.capacity())) });
        this.#accept(page.messages, page.sizes, true);
        this.#acceptRejected(page.rejected, true);
        // The poll marked them delivered: on disk before anything else happens.
        this.#journal.flush();
        if (page.has_more) this.#overflowed = true;
      } catch (err) {
        this.#overflowed = true;
        this.emit('warning', toMrpError(err));
        return;
      }
    }
  }

  #pump(): void {
    while (this.#intake && !this.#solo && this.#queue.length > 0 && this.#running.size < this.#concurrency) {
      const head = this.#queue[0]!;
      if (head.suspect) {
        // Its handler was running when the process died: alone, a crash can only be its own.
        if (this.#running.size > 0) return;
        this.#solo = true;
      }
      this.#queue.shift();
      const run = this.#run(head);
      this.#running.add(run);
      void run.finally(() => {
        this.#running.delete(run);
        if (head.suspect) this.#solo = false;
        this.#pump();
        this.#source.wake();
      });
    }
  }

  #track(p: Promise<void>): void {
    const tracked = p.catch((err: unknown) => this.#guard(() => this.emit('warning', toMrpError(err))));
    this.#finishing.add(tracked);
    void tracked.finally(() => this.#finishing.delete(tracked));
  }

  /** Waits for journal records, giving up when the shutdown is forced. */
  #untilJournaled<T>(written: Promise<T>): Promise<T> {
    return Promise.race([written, this.#forced]);
  }

  async #run(item: Item): Promise<void> {
    const { message } = item;
    const id = message.message_id;
    const started = this.#clock.now();
    try {
      await this.#untilJournaled(item.journaled);
    } catch {
      return this.#release(id);
    }
    if (this.#shutdown.signal.aborted) return this.#release(id);
    this.#journal.started(id);
    const plan = await this.#invoke(message, item.redelivered);
    if (plan === 'aborted') {
      // Stopped on purpose: not a crash. Left `received`: the next start handles it again.
      this.#journal.aborted(id);
      return this.#release(id);
    }
    try {
      await this.#untilJournaled(this.#journal.handled(id, plan));
    } catch {
      return this.#release(id);
    }
    this.#track(this.#finish(message, plan, undefined, started, item.redelivered, false));
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
      // The handler gets its own copy: whatever it changes, the runtime acks and replies to
      // the message it received.
      const copy = structuredClone(message);
      const work = Promise.resolve().then(() => inHandlerScope(message.message_id, () => handler(copy, ctx)));
      work.catch(() => undefined);
      return planReply(await Promise.race([work, aborted]));
    } catch (err) {
      if (this.#shutdown.signal.aborted && controller.signal.reason instanceof AbortError) return 'aborted';
      const error = err instanceof Error ? err : new Error(safeText(err));
      this.stats.errors++;
      this.#guard(() => this.emit('handler_error', { message, error }));
      if (err instanceof TimeoutError && controller.signal.reason === err) return errorReply('timeout', error.message, 'timeout');
      return errorReply(errorCode(err), safeText(error.message), 'error');
    } finally {
      timer.cancel();
      this.#controllers.delete(controller);
    }
  }

  #context(message: Message, redelivered: boolean, signal: AbortSignal): HandlerContext {
    // Logging never fails the handler: fields are made JSON-safe and bounded first.
    const log = (level: 'debug' | 'info' | 'warn' | 'error') => (text: string, fields?: Record<string, unknown>) =>
      this.#guard(() => this.emit('log', { level, message: safeText(text), fields: safeFields(fields), messageId: message.message_id }));
    const logger: HandlerLogger = { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };
    const live = (): void => {
      // A handler that timed out (or is being shut down) may still run; it must not send.
      if (signal.aborted) throw signal.reason instanceof Error ? signal.reason : new AbortError('handler aborted');
    };
    const checked = (body: JsonValue): void => {
      let json: string | undefined;
      try {
        json = JSON.stringify(body);
      } catch (err) {
        throw new MrpError('handler', 'invalid_reply', `the body is not JSON (${(err as Error).message})`);
      }
      const problem = json === undefined ? { code: 'invalid_reply', message: 'the body is not JSON' } : replyProblem(json);
      if (problem) throw new MrpError('handler', problem.code, problem.message);
    };
    return {
      self: this.#client.publicKey,
      signal,
      log: logger,
      redelivered,
      reply: async (body, options = {}) => {
        live();
        checked(body);
        const request = replyTo(message, body, options.contentType);
        return this.#outbox.send(request, { threadId: request.thread_id! });
      },
      send: async (to: string, body: JsonValue, options: SendOptions = {}): Promise<SendResponse> => {
        live();
        checked(body);
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
          this.#release(id);
          return;
        }
        // The relay refuses this reply for good (e.g. acl_denied): nothing to retry.
        outcome = 'reply_failed';
        error = { code: e.code, message: e.message };
      }
    }
    this.#source.ack(id);
    this.#journal.done(id);
    this.#release(id);
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
    for (const item of queued) this.#release(item.message.message_id);
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
    const force = (): void => {
      if (this.#shutdown.signal.aborted) return;
      this.#shutdown.abort(new AbortError('the runner is shutting down'));
      for (const c of this.#controllers) c.abort(this.#shutdown.signal.reason);
    };
    if (!(await inTime(this.#running))) {
      force();
      await Promise.all(this.#running);
    }
    if (!(await inTime(this.#finishing))) {
      force();
      this.#outbox.close();
      await Promise.all(this.#finishing);
    }
    this.#outbox.close();
    await this.#source.close();
    let failure = error;
    try {
      this.#journal.close();
    } catch (err) {
      // What could not be written is not lost: unacked messages come again, and replies are
      // checked against the thread before being sent again.
      const e = toMrpError(err);
      this.#guard(() => this.emit('fatal', e));
      failure ??= e;
    }
    this.emit('stopped', failure ? { error: failure } : {});
    this.#resolveStopped();
  }
}
