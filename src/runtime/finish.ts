/**
 * The way out for one message once its handler is done (or will not run): the draft reply is
 * sealed by the codec — once — and journaled as the exact request to send; then the reply is sent
 * (unless it already was), the message acknowledged and journaled done. Split from the runtime,
 * which owns the queue and the lifecycle; this owns the steps after "handled".
 */

import type { MessageCodec } from '../client/codec.js';
import type { MessageSource } from '../client/source.js';
import type { Clock } from '../core/clock.js';
import { AbortError, toMrpError } from '../core/errors.js';
import { CONTENT_TYPES } from '../protocol/constants.js';
import type { Message } from '../protocol/types.js';
import type { HandledEvent, Outcome } from './events.js';
import type { JournaledReply } from './journal.js';
import type { RuntimeJournal } from './journal-port.js';
import type { Outbox } from './outbox.js';
import { errorDraft, type ReplyDraft, type Sealed, sealReply } from './reply.js';

/** What the finisher needs from its runtime. */
export interface FinisherHost {
  journal: RuntimeJournal;
  /** For acknowledgements. */
  source: MessageSource;
  outbox: Outbox;
  codec: MessageCodec;
  clock: Clock;
  /** Waits for journal records (or the codec), rejecting when the shutdown is forced. */
  untilJournaled<T>(written: Promise<T>): Promise<T>;
  /** The message is finished or abandoned in this process. */
  release(id: string): void;
  /** A reply was accepted by the relay. */
  replied(): void;
  /** The message is done (acknowledged, journaled). */
  finished(event: HandledEvent): void;
}

export class Finisher {
  readonly #host: FinisherHost;

  constructor(host: FinisherHost) {
    this.#host = host;
  }

  /** A draft reply to `message`, sealed by the codec (once). Never rejects. */
  seal(message: Message, draft: ReplyDraft | null, encrypt: boolean): Promise<Sealed> {
    return draft ? sealReply(this.#host.codec, message, draft, encrypt) : Promise.resolve({ reply: null });
  }

  /**
   * Seals an error reply for a message the handler never sees, journals it, then finishes.
   * `received`: the message's own record, when it is being written now. `writes`: where to report
   * the reply's record, for a hand-off that waits for it (filled before the first await).
   */
  async answer(
    message: Message,
    draft: ReplyDraft,
    received: Promise<void> | undefined,
    started: number,
    redelivered: boolean,
    writes?: Array<Promise<unknown>>,
  ): Promise<void> {
    const id = message.message_id;
    const sealing = this.seal(message, draft, false);
    const handled = sealing.then((s) => this.#host.journal.handled(id, s.reply));
    writes?.push(handled);
    try {
      await this.#host.untilJournaled(Promise.all([received, handled]));
    } catch {
      return this.#host.release(id);
    }
    await this.finish(message, await sealing, undefined, started, redelivered, false);
  }

  /**
   * Reply (unless already sent) → ack → done. `resumed`: the handler finished in an earlier run,
   * which may have sent the reply without recording it, so the thread is checked first. The reply
   * is sent exactly as journaled.
   */
  async finish(
    message: Message,
    sealed: Sealed,
    replyId: string | undefined,
    started: number,
    redelivered: boolean,
    resumed: boolean,
  ): Promise<void> {
    const host = this.#host;
    const id = message.message_id;
    const plan = sealed.reply;
    let outcome: Outcome = sealed.failure
      ? 'reply_failed'
      : plan === null
        ? 'no_reply'
        : plan.outcome === 'ok'
          ? 'replied'
          : plan.outcome;
    let error: HandledEvent['error'] = sealed.failure ?? plan?.error;
    if (plan && replyId === undefined) {
      try {
        const res = await host.outbox.send(plan.request, {
          threadId: plan.request.thread_id ?? id,
          // Also when the journal no longer holds it (a fleet member took it over): it may have replied.
          checkFirst: resumed || host.journal.get(id) === undefined,
          ...(host.journal.fence ? { fence: () => host.journal.fence!(id) } : {}),
        });
        replyId = res.message_id;
        host.replied();
        host.journal.replied(id, replyId);
      } catch (err) {
        const e = toMrpError(err);
        if (e instanceof AbortError) {
          // Shutting down before the relay took the reply: the journal keeps it for next time.
          // Or (TakenOverError) a fleet member took the message over: it replies and acks.
          host.release(id);
          return;
        }
        // The relay refuses this reply for good (an attachment it does not hold, acl_denied…):
        // nothing to retry. The sender still gets an answer if one can be sent: an error reply
        // naming the refusal, sealed as the refused reply was.
        outcome = 'reply_failed';
        error = { code: e.code, message: e.message };
        replyId = await this.#refusalReply(message, plan, error);
      }
    }
    host.source.ack(id);
    host.journal.done(id);
    host.release(id);
    host.finished({
      message,
      outcome,
      durationMs: host.clock.now() - started,
      redelivered,
      ...(replyId ? { replyId } : {}),
      ...(error ? { error } : {}),
    });
  }

  /**
   * After the relay refused `refused` for good: one error reply `{"status":"error","error":{code,
   * message}}` without attachments, so the sender is not left waiting. Unless the refused reply
   * was an error reply already; a refusal of this one too (acl_denied, say) is the end of it.
   * Resolves with its id, or undefined.
   */
  async #refusalReply(
    message: Message,
    refused: JournaledReply,
    why: { code: string; message: string },
  ): Promise<string | undefined> {
    if (refused.error) return undefined;
    const host = this.#host;
    const encrypt = refused.request.content_type === CONTENT_TYPES.encrypted;
    const draft = errorDraft(why.code, `the relay refused the reply: ${why.message}`, 'error');
    const { reply } = await this.seal(message, draft, encrypt);
    if (!reply) return undefined;
    try {
      const res = await host.outbox.send(reply.request, {
        threadId: reply.request.thread_id ?? message.message_id,
        checkFirst: false,
        ...(host.journal.fence ? { fence: () => host.journal.fence!(message.message_id) } : {}),
      });
      host.replied();
      host.journal.replied(message.message_id, res.message_id);
      return res.message_id;
    } catch {
      return undefined;
    }
  }
}
