/**
 * From a handler's return value to the reply that goes out: the §4.4 threading, the §4.2 error
 * convention, the limits a reply must meet before it is journaled (JSON, at most 1 MiB, at most
 * `LIMITS.maxJsonDepth` deep), and the codec seam. A reply the relay would refuse becomes an
 * error reply with a stable code instead of no reply at all.
 *
 * A reply passes three stages: a *draft* (the body's JSON text, produced once from the handler's
 * value), then *sealed* by the message codec (once, async), then an `EncodedSend` that is
 * journaled exactly as it will be sent — and re-sent, byte for byte, after a crash.
 */
import type { MessageCodec, SealedBody } from '../client/codec.js';
import { LIMITS } from '../protocol/constants.js';
import type { EncodedSend } from '../protocol/frames.js';
import { jsonDepth } from '../protocol/json.js';
import type { Attachment, JsonValue, Message, SendRequest } from '../protocol/types.js';
import { isReplyWithAttachments } from './attachments.js';
import type { JournaledReply } from './journal.js';

export type ReplyOutcome = 'ok' | 'error' | 'timeout';

/** A reply as a value (the shape `planReply` returns; kept for library users). */
export interface PlannedReply {
  body: JsonValue;
  content_type: string;
  /** How the handler ended. */
  outcome: ReplyOutcome;
}

/** A reply before sealing: its body as checked JSON text. */
export interface ReplyDraft {
  bodyJson: string;
  contentType: string;
  outcome: ReplyOutcome;
  /** For error replies: what the body says, for reports (a sealed body cannot be read back). */
  error?: { code: string; message: string };
  /** Attachments the reply carries (`withAttachments`). */
  attachments?: Attachment[];
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

/** `replyTo` for a body that is already encoded (sealed or plain JSON text), with any attachments. */
export function encodedReplyTo(message: Message, sealed: SealedBody, attachments?: readonly Attachment[]): EncodedSend {
  const request: EncodedSend = {
    recipient_key: message.sender_key,
    content_type: sealed.contentType,
    body_json: sealed.bodyJson,
    in_reply_to: message.message_id,
    thread_id: message.thread_id ?? message.message_id,
  };
  if (attachments?.length) request.attachments = attachments.map((a) => ({ ...a }));
  return request;
}

/** Why a list of attachments cannot go out (too many, not objects with a blob id), or undefined. */
export function attachmentsProblem(attachments: readonly unknown[]): string | undefined {
  if (attachments.length > LIMITS.maxAttachments)
    return `a message carries at most ${LIMITS.maxAttachments} attachments (got ${attachments.length})`;
  const bad = attachments.findIndex(
    (a) => !a || typeof a !== 'object' || typeof (a as Attachment).blob_id !== 'string',
  );
  return bad >= 0 ? `attachment ${bad} is not an attachment object with a blob_id (use ctx.upload)` : undefined;
}

/** `{"status":"error","error":{"code","message"}}` (§4.2 reply convention), as a draft. */
export function errorDraft(code: string, message: string, outcome: 'error' | 'timeout'): ReplyDraft {
  return {
    bodyJson: JSON.stringify({ status: 'error', error: { code, message } }),
    contentType: 'application/json',
    outcome,
    error: { code, message },
  };
}

/** The same error reply as a value. */
export function errorReply(code: string, message: string, outcome: 'error' | 'timeout'): PlannedReply {
  return { body: { status: 'error', error: { code, message } }, content_type: 'application/json', outcome };
}

/**
 * Why a body cannot be sent as it is (`reply_too_large`, `invalid_reply`), or undefined. `json`
 * is the body's serialisation; `what` names it in the message: a `reply`, or a `message` sent on
 * its own (`agent.send`, `ctx.send`).
 */
export function replyProblem(
  json: string,
  what: 'reply' | 'message' = 'reply',
): { code: 'reply_too_large' | 'invalid_reply'; message: string } | undefined {
  const bytes = Buffer.byteLength(json);
  if (bytes > LIMITS.maxBodyBytes) {
    return {
      code: 'reply_too_large',
      message: `the ${what} is ${bytes} bytes; the most a message body may be is ${LIMITS.maxBodyBytes} bytes (1 MiB)`,
    };
  }
  if (jsonDepth(json, LIMITS.maxJsonDepth) > LIMITS.maxJsonDepth) {
    return { code: 'invalid_reply', message: `the ${what} is nested deeper than ${LIMITS.maxJsonDepth} levels` };
  }
  return undefined;
}

/** The string `code` an error carries, or `fallback`. */
export function codeOf(err: unknown, fallback: string): string {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' && code !== '' ? code : fallback;
}

/**
 * A handler's return value as a draft reply: strings become `{"text": …}`, nothing means no reply,
 * `withAttachments(body, attachments)` is `body` with attachments.
 */
export function draftReply(returned: unknown): ReplyDraft | null {
  if (isReplyWithAttachments(returned)) {
    const draft = draftReply(returned.body ?? null);
    if (draft?.outcome !== 'ok')
      return draft ?? errorDraft('invalid_reply', 'withAttachments needs a body (not null)', 'error');
    if (!Array.isArray(returned.attachments))
      return errorDraft('invalid_reply', 'withAttachments: attachments must be an array', 'error');
    const problem = attachmentsProblem(returned.attachments);
    if (problem) return errorDraft('invalid_reply', problem, 'error');
    if (returned.attachments.length) draft.attachments = returned.attachments.map((a) => ({ ...a }));
    return draft;
  }
  const result = returned;
  if (result === undefined || result === null) return null;
  const body = typeof result === 'string' ? { text: result } : result;
  let json: string | undefined;
  try {
    json = JSON.stringify(body);
  } catch (err) {
    return errorDraft(
      'invalid_reply',
      `the handler returned a value that is not JSON (${(err as Error).message})`,
      'error',
    );
  }
  if (json === undefined)
    return errorDraft('invalid_reply', `the handler returned a ${typeof result}, which is not JSON`, 'error');
  const problem = replyProblem(json);
  if (problem) return errorDraft(problem.code, problem.message, 'error');
  return { bodyJson: json, contentType: 'application/json', outcome: 'ok' };
}

/** A handler's return value as a planned reply (a value): strings become `{"text": …}`, nothing means no reply. */
export function planReply(result: unknown): PlannedReply | null {
  const draft = draftReply(result);
  return (
    draft && { body: JSON.parse(draft.bodyJson) as JsonValue, content_type: draft.contentType, outcome: draft.outcome }
  );
}

/** What sealing a draft came to: the reply to journal (or none), or why none could be sealed. */
export interface Sealed {
  reply: JournaledReply | null;
  failure?: { code: string; message: string };
}

/**
 * Seals a draft reply to `message` into what is journaled and sent. When the codec refuses the
 * body (too large once sealed, say), the sender gets an error reply with the codec's code
 * instead; if even that cannot be sealed, `failure` says why and nothing is sent. Never rejects.
 */
export async function sealReply(
  codec: MessageCodec,
  message: Message,
  draft: ReplyDraft,
  encrypt: boolean,
): Promise<Sealed> {
  const context = { to: message.sender_key, encrypt, inReplyTo: message.message_id };
  let current = draft;
  for (let attempt = 0; ; attempt++) {
    try {
      const sealed = await codec.seal({ bodyJson: current.bodyJson, contentType: current.contentType }, context);
      const reply: JournaledReply = {
        request: encodedReplyTo(message, sealed, current.attachments),
        outcome: current.outcome,
      };
      if (current.error) reply.error = current.error;
      return { reply };
    } catch (err) {
      const failure = { code: codeOf(err, 'reply_failed'), message: (err as Error)?.message ?? String(err) };
      if (attempt > 0) return { reply: null, failure };
      current = errorDraft(failure.code, failure.message, 'error');
    }
  }
}
