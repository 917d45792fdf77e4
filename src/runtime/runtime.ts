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
 * The runtime knows no transport: a `MessageSource` hands it batches (`deliver`, resolved once
 * they are journaled) and is its way out (`ack`, `send`). Between a message and its handler, and
 * between the handler's result and the journal, sits the message codec (`open`, `seal`): a reply
 * is sealed once, journaled as the exact bytes to send, and re-sent as those bytes after a crash.
 *
 * Nothing a source delivers stops it: a message that cannot be handed to the handler (too deep,
 * malformed, or one the codec cannot open) is answered with an error reply (`invalid_message`, or
 * the codec's code such as `decryption_failed`) and acknowledged; one that cannot even be
 * identified is reported. A message whose handler keeps killing the process is run alone
 * after the first crash and, after `maxCrashes`, answered with `handler_crashed` instead of run.
 * Memory is bounded by bytes as well as by count: past `maxQueuedBytes` of messages held, no more
 * are taken (they stay on the relay). While the journal cannot be written, no more are taken
 * either (`readiness` events say so).
 *
 * The runtime never prints: it reports through typed events.
 */

import { checkOpened, type MessageCodec, type OpenedMessage, plainCodec } from '../client/codec.js';
import type { RelayClient } from '../client/http.js';
import type { MessageSource } from '../client/source.js';
import { type Clock, systemClock, type Timer } from '../core/clock.js';
import { cloneJson } from '../core/clone.js';
import { formatDuration } from '../core/duration.js';
import { TypedEmitter } from '../core/emitter.js';
import { AbortError, type MrpError, TimeoutError, toMrpError } from '../core/errors.js';
import { LIMITS } from '../protocol/constants.js';
import type { Message } from '../protocol/types.js';
import { relayAttachments } from './attachments.js';
import { type ContextDeps, HandlerRun, handlerContext } from './context.js';
import { RUNTIME_DEFAULTS } from './defaults.js';
import type { RuntimeEvents } from './events.js';
import { Finisher } from './finish.js';
import type { Handler } from './handler.js';
import { estimateBytes, Intake, type Item } from './intake.js';
import { crashesOf, type JournalEntry } from './journal.js';
import type { RuntimeJournal } from './journal-port.js';
import { Outbox } from './outbox.js';
import { codeOf, draftReply, errorDraft, type ReplyDraft } from './reply.js';
import { safeFields, safeText } from './safe.js';
import { inHandlerScope } from './scope.js';

export type { HandledEvent, Outcome, RuntimeEvents } from './events.js';
export { errorReply, planReply, replyTo } from './reply.js';

export interface RuntimeOptions {
  handler: Handler;
  source: MessageSource;
  client: RelayClient;
  /** The default is a local `Journal`; a fleet shares a `SharedJournal`. */
  journal: RuntimeJournal;
  /** How bodies are opened for the handler and sealed for the relay (default: pass-through). */
  codec?: MessageCodec;
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
  /** Emit `ctx.log.debug` lines as `log` events (default true; `mrp run` without --debug: false). */
  debugLogs?: boolean;
}

export { RUNTIME_DEFAULTS };

function positiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`${name} must be a whole number ≥ 1 (got ${value})`);
  return value;
}

export class Runtime extends TypedEmitter<RuntimeEvents> {
  readonly #source: MessageSource;
  readonly #client: RelayClient;
  readonly #journal: RuntimeJournal;
  readonly #codec: MessageCodec;
  readonly #clock: Clock;
  readonly #concurrency: number;
  readonly #outbox: Outbox;
  readonly #finisher: Finisher;
  readonly #intake: Intake;
  readonly #timeoutMs: number;
  readonly #graceMs: number;
  readonly #maxQueued: number;
  readonly #maxBytes: number;
  readonly #maxCrashes: number;
  readonly #contextDeps: ContextDeps;
  #handler: Handler;
  /** Ids queued, running or replying in this process, with the bytes each holds. */
  readonly #active = new Map<string, number>();
  #heldBytes = 0;
  readonly #queue: Item[] = [];
  readonly #running = new Set<Promise<void>>();
  readonly #finishing = new Set<Promise<void>>();
  /** Set when running handlers are to be aborted (forced shutdown). */
  readonly #shutdown = new AbortController();
  /**
   * Those waiting for the journal (or the codec), rejected when the shutdown is forced. A set of
   * callbacks, not a race against one long-lived promise: each race would leave a reaction on it
   * (~300 bytes) until shutdown, per message.
   */
  readonly #waiting = new Set<(reason: unknown) => void>();
  /** The abort states of running handlers (one list, not a listener per handler). */
  readonly #runs = new Set<HandlerRun>();
  /** Taking new work (false once stopping). */
  #accepting = true;
  #started = false;
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
    this.#codec = options.codec ?? plainCodec;
    this.#clock = options.clock ?? systemClock;
    this.#concurrency = positiveInteger('concurrency', options.concurrency ?? RUNTIME_DEFAULTS.concurrency);
    this.#timeoutMs = options.timeoutMs ?? RUNTIME_DEFAULTS.timeoutMs;
    this.#graceMs = options.graceMs ?? RUNTIME_DEFAULTS.graceMs;
    this.#maxQueued = positiveInteger('maxQueued', options.maxQueued ?? RUNTIME_DEFAULTS.maxQueued);
    this.#maxBytes = positiveInteger('maxQueuedBytes', options.maxQueuedBytes ?? RUNTIME_DEFAULTS.maxQueuedBytes);
    this.#maxCrashes = positiveInteger('maxCrashes', options.maxCrashes ?? RUNTIME_DEFAULTS.maxCrashes);
    if (!(this.#timeoutMs > 0)) throw new RangeError(`timeoutMs must be positive (got ${this.#timeoutMs})`);
    if (!(this.#graceMs >= 0)) throw new RangeError(`graceMs must be ≥ 0 (got ${this.#graceMs})`);
    this.#outbox = new Outbox({
      send: (r, timeoutMs) => this.#source.send(r, timeoutMs === undefined ? undefined : { timeoutMs }),
      client: this.#client,
      clock: this.#clock,
    });
    this.#outbox.on('retry', ({ request, error, delayMs }) =>
      this.emit('reply_retry', { messageId: request.in_reply_to ?? undefined, error, delayMs }),
    );
    this.#finisher = new Finisher({
      journal: this.#journal,
      source: this.#source,
      outbox: this.#outbox,
      codec: this.#codec,
      clock: this.#clock,
      untilJournaled: (written) => this.#untilJournaled(written),
      release: (id) => this.#release(id),
      replied: () => void this.stats.replies++,
      finished: (event) => {
        this.stats.handled++;
        this.emit('handled', event);
      },
    });
    this.#intake = new Intake({
      journal: this.#journal,
      finisher: this.#finisher,
      clock: this.#clock,
      stats: this.stats,
      emit: (event, ...args) => this.emit(event, ...args),
      ack: (id) => this.#source.ack(id),
      accepting: () => this.#accepting,
      roomForOne: () =>
        this.#journal.writable && this.#queue.length < this.#maxQueued && this.#heldBytes < this.#maxBytes,
      active: (id) => this.#active.has(id),
      hold: (id, bytes) => this.#hold(id, bytes),
      enqueue: (item) => void this.#queue.push(item),
      pump: () => this.#pump(),
      track: (work) => this.#track(work),
      untilJournaled: (written) => this.#untilJournaled(written),
      guard: (fn) => this.#guard(fn),
    });
    const debugLogs = options.debugLogs ?? true;
    this.#contextDeps = {
      self: this.#client.publicKey,
      codec: this.#codec,
      outbox: this.#outbox,
      resolve: options.resolveRecipient ?? ((to) => to),
      // Logging never fails the handler: fields are made JSON-safe and bounded first.
      log: (messageId, level, text, fields) => {
        if (level === 'debug' && !debugLogs) return;
        this.#guard(() => this.emit('log', { level, message: safeText(text), fields: safeFields(fields), messageId }));
      },
      attachments: relayAttachments(this.#client, this.#journal),
    };

    // Listeners on sources and the journal never throw: a failure is a warning, never a stall.
    this.#source.on('connecting', () => this.emit('connecting'));
    this.#source.on('connected', (info) => this.emit('connected', info));
    this.#source.on('disconnected', (info) => this.emit('disconnected', info));
    this.#source.on('warning', (err) => this.emit('warning', err));
    this.#source.on('fatal', (err) => {
      this.emit('fatal', err);
      void this.stop(err);
    });
    this.#journal.on('unwritable', ({ error, retryInMs }) =>
      this.#guard(() => this.emit('readiness', { ready: false, error, retryInMs })),
    );
    this.#journal.on('writable', () =>
      this.#guard(() => {
        this.emit('readiness', { ready: true });
        this.#source.wake();
      }),
    );
    // A shared journal hands over what a dead runner of the fleet left unfinished.
    this.#journal.on('recovered', (entries) =>
      this.#guard(() => {
        if (!this.#accepting) return;
        for (const entry of entries) {
          if (this.#active.has(entry.id)) this.#journal.skipped?.(entry.id);
          else this.#guard(() => this.#resume(entry));
        }
        this.#pump();
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
    this.#source.start({
      deliver: (batch) => this.#intake.deliver(batch),
      capacity: () => this.capacity(),
      hasRoom: () => this.#hasRoom(0.5),
    });
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
    this.#source.wake();
  }

  /** Whether at most `fraction` of the count and byte budgets are in use (and the journal works). */
  #hasRoom(fraction: number): boolean {
    return (
      this.#journal.writable &&
      this.#queue.length <= this.#maxQueued * fraction &&
      this.#heldBytes <= this.#maxBytes * fraction
    );
  }

  #resume(entry: JournalEntry): void {
    this.#hold(entry.id, estimateBytes(entry.message));
    if (entry.state === 'received') {
      const crashes = crashesOf(entry);
      this.stats.received++;
      if (crashes >= this.#maxCrashes) {
        this.emit('handler_crashed', { message: entry.message, crashes });
        const draft = errorDraft(
          'handler_crashed',
          `the handler stopped the runner ${crashes} times while handling this message; it is not run again`,
          'error',
        );
        this.#track(this.#finisher.answer(entry.message, draft, undefined, this.#clock.now(), true));
        return;
      }
      // Redelivered only if a handler already began on it; messages that merely waited are new.
      this.#queue.push({
        message: entry.message,
        redelivered: entry.started === true,
        journaled: Promise.resolve(),
        suspect: crashes > 0,
      });
      return;
    }
    this.#track(
      this.#finisher.finish(
        entry.message,
        { reply: entry.reply ?? null },
        entry.replyId,
        this.#clock.now(),
        true,
        true,
      ),
    );
  }

  /**
   * The consumer side of capacity: how many more messages a source may bring. Bounded by count,
   * and by bytes assuming each may be as large as a message can be.
   */
  capacity(): number {
    if (!this.#journal.writable) return 0;
    const count = Math.max(0, this.#maxQueued - this.#queue.length);
    const room = this.#maxBytes - this.#heldBytes;
    if (room <= 0) return 0;
    return Math.min(count, Math.max(1, Math.floor(room / LIMITS.maxEnvelopeBytes)));
  }

  #pump(): void {
    while (this.#accepting && !this.#solo && this.#queue.length > 0 && this.#running.size < this.#concurrency) {
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

  /** Waits for journal records (or a codec), giving up when the shutdown is forced. */
  #untilJournaled<T>(written: Promise<T>): Promise<T> {
    if (this.#shutdown.signal.aborted) return Promise.reject(this.#shutdown.signal.reason);
    // The local journal hands every record of one write the same promise: wrap it once.
    if (written === this.#lastWritten) return this.#lastWrapped as Promise<T>;
    const wrapped = this.#wrapJournaled(written);
    this.#lastWritten = written;
    this.#lastWrapped = wrapped;
    return wrapped;
  }

  #lastWritten: Promise<unknown> | undefined;
  #lastWrapped: Promise<unknown> | undefined;

  #wrapJournaled<T>(written: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#waiting.add(reject);
      written.then(
        (value) => {
          this.#waiting.delete(reject);
          resolve(value);
        },
        (err: unknown) => {
          this.#waiting.delete(reject);
          reject(err);
        },
      );
    });
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
    // A shared journal's claim may bring back a message that stopped other runners of the fleet
    // (offered again over a WebSocket): the crash limit holds for it too.
    const claimed = item.suspect ? undefined : this.#journal.get(id);
    const crashes = claimed?.state === 'received' ? crashesOf(claimed) : 0;
    if (crashes >= this.#maxCrashes) {
      this.#guard(() => this.emit('handler_crashed', { message, crashes }));
      const draft = errorDraft(
        'handler_crashed',
        `the handler stopped the runner ${crashes} times while handling this message; it is not run again`,
        'error',
      );
      this.#track(this.#finisher.answer(message, draft, undefined, started, true));
      return;
    }
    let opened: OpenedMessage;
    try {
      // Not raced with a forced shutdown: a codec computes, it does not wait on the world.
      opened = checkOpened(await this.#codec.open(message));
    } catch (err) {
      if (this.#shutdown.signal.aborted) return this.#release(id);
      // The codec cannot open it: the sender hears why, the handler never sees it.
      const code = codeOf(err, 'invalid_message');
      const reason = safeText((err as Error)?.message ?? err);
      this.stats.invalid++;
      this.#guard(() =>
        this.emit('invalid_message', { messageId: id, senderKey: message.sender_key, reason, answered: true, code }),
      );
      this.#track(
        this.#finisher.answer(message, errorDraft(code, reason, 'error'), undefined, started, item.redelivered),
      );
      return;
    }
    if (this.#shutdown.signal.aborted) return this.#release(id);
    // A shared journal may say a handler already began on it elsewhere (a takeover).
    if (!item.redelivered && this.#journal.get(id)?.started === true) item.redelivered = true;
    const recorded = this.#journal.started(id);
    if (recorded !== undefined) {
      try {
        await recorded;
      } catch (err) {
        // The journal closed first: left for the next start. Any other failure (not one the
        // journal retries) runs the handler as before, its start counted here only.
        if (err instanceof AbortError) return this.#release(id);
      }
    }
    const draft = await this.#invoke(message, opened, item.redelivered);
    if (draft === 'aborted') {
      // Stopped on purpose: not a crash. Left `received`: the next start handles it again.
      this.#journal.aborted(id);
      return this.#release(id);
    }
    const sealed = await this.#finisher.seal(message, draft, opened.encrypted);
    try {
      await this.#untilJournaled(this.#journal.handled(id, sealed.reply));
    } catch {
      return this.#release(id);
    }
    this.#track(this.#finisher.finish(message, sealed, undefined, started, item.redelivered, false));
  }

  async #invoke(message: Message, opened: OpenedMessage, redelivered: boolean): Promise<ReplyDraft | null | 'aborted'> {
    const run = new HandlerRun();
    this.#runs.add(run);
    const timer = this.#clock.setTimeout(
      () => run.abort(new TimeoutError(`the handler did not finish within ${formatDuration(this.#timeoutMs)}`)),
      this.#timeoutMs,
    );
    try {
      const ctx = handlerContext(this.#contextDeps, message, opened, redelivered, run);
      const handler = this.#handler;
      // The handler gets its own copy: whatever it changes, the runtime acks and replies to
      // the message it received.
      const copy = cloneJson(opened.message);
      const id = message.message_id;
      // Called in a later microtask (after the `started` record is written), raced against the
      // run's abort without a Promise.race: one settle function for both.
      const result = await new Promise<unknown>((resolve, reject) => {
        run.onAbort = reject;
        Promise.resolve()
          .then(() => inHandlerScope(id, () => handler(copy, ctx)))
          .then(resolve, reject);
      });
      return draftReply(result);
    } catch (err) {
      if (this.#shutdown.signal.aborted && run.reason instanceof AbortError) return 'aborted';
      const error = err instanceof Error ? err : new Error(safeText(err));
      this.stats.errors++;
      this.#guard(() => this.emit('handler_error', { message, error }));
      if (err instanceof TimeoutError && run.reason === err) return errorDraft('timeout', error.message, 'timeout');
      return errorDraft(codeOf(err, 'handler_error'), safeText(error.message), 'error');
    } finally {
      run.onAbort = undefined;
      timer.cancel();
      this.#runs.delete(run);
    }
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
    this.#accepting = false;
    const queued = this.#queue.splice(0);
    for (const item of queued) this.#release(item.message.message_id);
    this.emit('draining', { running: this.#running.size, queued: queued.length, replies: this.#outbox.pending });
    const inTime = async (work: Set<Promise<void>>): Promise<boolean> => {
      if (work.size === 0) return true;
      let timer: Timer | undefined;
      const late = new Promise<false>(
        (resolve) => (timer = this.#clock.setTimeout(() => resolve(false), Math.max(0, deadline - this.#clock.now()))),
      );
      const result = await Promise.race([Promise.all(work).then(() => true), late]);
      timer?.cancel();
      return result;
    };
    const force = (): void => {
      if (this.#shutdown.signal.aborted) return;
      this.#shutdown.abort(new AbortError('the runner is shutting down'));
      for (const c of this.#runs) c.abort(this.#shutdown.signal.reason);
      for (const reject of this.#waiting) reject(this.#shutdown.signal.reason);
      this.#waiting.clear();
    };
    // A source may be handing a batch over (waiting for the journal): give it the grace too.
    const intakeStopped = this.#source.stopIntake();
    if (!(await inTime(new Set([intakeStopped])))) {
      force();
      await intakeStopped;
    }
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
      await this.#journal.close();
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
