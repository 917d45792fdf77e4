/**
 * How a message body is opened on the way in and sealed on the way out: the one seam where
 * end-to-end encryption (docs/protocol.md §8) plugs in. The runtime opens every message before its handler
 * sees it and seals every reply and `ctx.send` before anything is journaled or sent; the CLI's
 * `send`/`recv`/`thread` are meant to use the same codec, which is why it lives in `client/` (the
 * lowest layer both import) rather than in `runtime/`.
 *
 * The contract that keeps exactly-once handling intact:
 * - `seal` runs ONCE per outgoing body, before the result is journaled. Its output (`bodyJson`, the
 *   exact JSON text of the body to send) is what the journal stores, what every resend after a
 *   crash sends, and what the already-sent check compares with the relay's copy. Nothing is ever
 *   sealed again (HPKE is randomised: a second seal would not match the first).
 * - `open` may run more than once for a message (again after a crash); it must not have effects.
 * - Both compute and settle promptly: they are not raced with a forced shutdown (a codec that
 *   needs the network — fetching a key, say — must bound its own wait).
 * - Failures are errors with a stable string `code` (e.g. `decryption_failed`): a message that
 *   cannot be opened is answered with `{"status":"error","error":{"code":…}}` instead of reaching
 *   the handler; a body that cannot be sealed fails `ctx.reply`/`ctx.send` with that code.
 *
 * `plainCodec` is today's behaviour: bodies pass through untouched.
 */
import { UsageError } from '../core/errors.js';
import type { EncodedSend } from '../protocol/frames.js';
import type { Message, SendRequest } from '../protocol/types.js';

/** A message as the handler will see it. */
export interface OpenedMessage {
  /** The message with its body opened (the very object passed in when there was nothing to open). */
  message: Message;
  /** Whether the body arrived end-to-end encrypted (`ctx.encrypted`). */
  encrypted: boolean;
}

/** A body to seal: its JSON text (already checked: JSON, ≤ 1 MiB, ≤ 128 deep) and content type. */
export interface PlainBody {
  bodyJson: string;
  contentType: string;
}

/** A body ready for `POST /v1/messages`: `bodyJson` is sent verbatim, under `contentType`. */
export interface SealedBody {
  bodyJson: string;
  contentType: string;
}

/** For whom, and why, a body is sealed. */
export interface SealContext {
  /** The recipient's public key. */
  to: string;
  /**
   * End-to-end encryption is required: this answers a message that arrived encrypted, or the
   * handler asked for it (`ctx.send(…, { encrypt: true })`). A codec that cannot encrypt must
   * then fail, never send plaintext.
   */
  encrypt: boolean;
  /** The message being answered, for replies and `ctx.reply`. */
  inReplyTo?: string;
}

export interface MessageCodec {
  /**
   * Opens an incoming message for its handler. Throws an error with a string `code` when it
   * cannot be opened (the sender gets an error reply with that code; the handler is not called).
   */
  open(message: Message): Promise<OpenedMessage>;
  /** Encodes one outgoing body. Async (HPKE is); called once per body, before journaling. */
  seal(body: PlainBody, context: SealContext): Promise<SealedBody>;
}

/**
 * What `codec.open(message)` resolved with, checked: a codec written elsewhere that resolves with
 * something other than `{ message: object, encrypted }` fails here like a codec that cannot open
 * the message, instead of the caller reading a field of `undefined` far from the seam (an
 * unhandled rejection in the runtime). Synchronous, so the hot path pays no extra promise:
 * `checkOpened(await codec.open(message))`.
 */
export function checkOpened(opened: unknown): OpenedMessage {
  const inner = (opened as Partial<OpenedMessage> | null)?.message;
  if (typeof opened !== 'object' || opened === null || typeof inner !== 'object' || inner === null) {
    throw new Error('the message codec opened nothing: open() must resolve with { message, encrypted }');
  }
  return opened as OpenedMessage;
}

/** The pass-through codec: nothing is encrypted, bodies go out exactly as given. */
export const plainCodec: MessageCodec = {
  async open(message) {
    return { message, encrypted: false };
  },
  async seal(body, context) {
    if (context.encrypt) {
      throw new UsageError(`cannot encrypt the message to ${context.to}: this runner has no end-to-end encryption`, {
        code: 'encryption_unavailable',
      });
    }
    return { bodyJson: body.bodyJson, contentType: body.contentType };
  },
};

/**
 * A `SendRequest` as an `EncodedSend` with a plain body (its JSON text): for callers that hold a
 * request with a body value (tests, library users of the outbox).
 */
export function plainSend(request: SendRequest): EncodedSend {
  const { body, content_type, ...rest } = request;
  return { ...rest, content_type: content_type ?? 'application/json', body_json: JSON.stringify(body ?? null) };
}
