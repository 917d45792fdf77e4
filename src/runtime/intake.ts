/**
 * The runtime's side of a source's hand-off (`SourceConsumer.deliver`): for each message of a
 * batch, decide — already done (ack again), already here, keep (journal `received`, queue it),
 * or leave it on the relay (full, or stopping; only for batches the relay will offer again) —
 * and resolve once everything kept is on disk, so the source may tell its relay the batch is
 * safe. Entries that cannot be handed to a handler are answered with `invalid_message`.
 *
 * Nothing here knows the transport: "taken" (the relay will not offer it again) is all a source
 * says about where a batch came from.
 */

import type { Batch, DeliveryReceipt } from '../client/source.js';
import type { Clock } from '../core/clock.js';
import type { MessageIdentity, RejectedMessage } from '../protocol/inbound.js';
import type { Message } from '../protocol/types.js';
import type { RuntimeEvents } from './events.js';
import type { Finisher } from './finish.js';
import type { RuntimeJournal } from './journal-port.js';
import { errorDraft } from './reply.js';

/** A message waiting for (or running in) a handler slot. */
export interface Item {
  message: Message;
  redelivered: boolean;
  /** Resolves when the `received` record is on disk. */
  journaled: Promise<void>;
  /** Its handler was running when the process died before: run it alone. */
  suspect: boolean;
}

/** The counters intake moves (the runtime's `stats`). */
export interface IntakeStats {
  received: number;
  duplicates: number;
  invalid: number;
}

/** What intake needs from its runtime. */
export interface IntakeHost {
  journal: RuntimeJournal;
  finisher: Finisher;
  clock: Clock;
  stats: IntakeStats;
  emit<K extends keyof RuntimeEvents>(event: K, ...args: RuntimeEvents[K]): void;
  ack(id: string): void;
  /** Taking new work (false once stopping). */
  accepting(): boolean;
  /** Room for one more message that could be left on the relay instead. */
  roomForOne(): boolean;
  /** Queued, running or replying in this process. */
  active(id: string): boolean;
  /** Counts a message's bytes against the budget until it is released. */
  hold(id: string, bytes: number): void;
  enqueue(item: Item): void;
  /** Starts queued handlers while there are free slots. */
  pump(): void;
  /** Work that must finish before the runtime stops. */
  track(work: Promise<void>): void;
  /** Waits for journal records, rejecting when the shutdown is forced. */
  untilJournaled<T>(written: Promise<T>): Promise<T>;
  /** Runs `fn`; what it throws becomes a warning. */
  guard(fn: () => void): void;
}

/** Size of a message's JSON text, for memory budgets (when the source did not say). */
export function estimateBytes(message: Message): number {
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

export class Intake {
  readonly #host: IntakeHost;

  constructor(host: IntakeHost) {
    this.#host = host;
  }

  /**
   * Takes in what fits (all of a taken batch), then resolves once all of it is journaled.
   * `writes`: journal records besides `received` that must be on disk before the source is told.
   */
  async deliver(batch: Batch): Promise<DeliveryReceipt> {
    const host = this.#host;
    const writes: Array<Promise<unknown>> = [];
    let declined = 0;
    let kept = 0;
    const count = (accepted: boolean | undefined): void => {
      // A failure while deciding is a warning; the message counts as what its batch is.
      if ((accepted ?? batch.taken) === false) declined++;
      else kept++;
    };
    for (let i = 0; i < batch.messages.length; i++) {
      let accepted: boolean | undefined;
      host.guard(() => (accepted = this.#acceptOne(batch.messages[i]!, batch.sizes?.[i], batch.taken)));
      count(accepted);
    }
    for (const r of batch.rejected ?? []) {
      let accepted: boolean | undefined;
      host.guard(() => (accepted = this.#rejectOne(r, batch.taken, writes)));
      count(accepted);
    }
    host.pump();
    if (kept === 0) return { declined };
    // The relay already counts a taken batch delivered: on disk before anything else happens.
    if (batch.taken) host.journal.flush();
    const barrier = host.journal.durable();
    await host.untilJournaled<unknown>(writes.length === 0 ? barrier : Promise.all([...writes, barrier]));
    return { declined };
  }

  /** Takes one message in; false when it is left on the relay (full, or stopping). */
  #acceptOne(message: Message, size: number | undefined, taken: boolean): boolean {
    const host = this.#host;
    const id = message.message_id;
    if (host.journal.isDone(id)) {
      host.stats.duplicates++;
      host.ack(id);
      host.emit('duplicate', { message, reason: 'done' });
      return true;
    }
    if (host.active(id)) {
      host.stats.duplicates++;
      host.emit('duplicate', { message, reason: 'in_progress' });
      return true;
    }
    if (!host.accepting()) {
      // Stopping. A taken message is kept for the next start; any other comes again by itself.
      if (!taken) return false;
      host.journal.received(message).catch(() => undefined);
      return true;
    }
    // Too much held, or nothing can be journaled: leave it on the relay (the source fetches it,
    // or it is offered again, when there is room).
    if (!taken && !host.roomForOne()) return false;
    host.hold(id, size ?? estimateBytes(message));
    host.stats.received++;
    const journaled = host.journal.received(message);
    journaled.catch(() => undefined);
    host.enqueue({ message, redelivered: false, journaled, suspect: false });
    host.emit('received', { message, redelivered: false });
    return true;
  }

  /** A message delivered that cannot be handed over: answered (or parked) and acknowledged. */
  #rejectOne(r: RejectedMessage, taken: boolean, writes: Array<Promise<unknown>>): boolean {
    const host = this.#host;
    const identity = r.identity;
    host.stats.invalid++;
    if (!identity) {
      host.emit('invalid_message', { reason: r.reason, answered: false });
      return true;
    }
    const id = identity.message_id;
    const message = stubMessage(identity);
    if (host.journal.isDone(id)) {
      host.stats.duplicates++;
      host.ack(id);
      host.emit('duplicate', { message, reason: 'done' });
      return true;
    }
    if (host.active(id)) return true;
    const sender = identity.sender_key;
    host.emit('invalid_message', {
      messageId: id,
      ...(sender ? { senderKey: sender } : {}),
      reason: r.reason,
      answered: sender !== null,
    });
    if (sender === null) {
      // No one to answer: acknowledge it so it is not offered again, and remember it.
      host.ack(id);
      host.journal.done(id);
      host.emit('handled', {
        message,
        outcome: 'error',
        durationMs: 0,
        redelivered: false,
        error: { code: r.code, message: r.reason },
      });
      return true;
    }
    if (!host.accepting() && !taken) return false;
    const draft = errorDraft('invalid_message', r.reason, 'error');
    if (!host.accepting()) {
      // Stopping: journal it with its answer, which the next start sends.
      const handled = host.finisher.seal(message, draft, false).then((s) => host.journal.handled(id, s.reply));
      writes.push(host.journal.received(message), handled);
      return true;
    }
    host.hold(id, 1024);
    host.stats.received++;
    const written = host.journal.received(message);
    writes.push(written);
    host.track(host.finisher.answer(message, draft, written, host.clock.now(), false, writes));
    return true;
  }
}
