/**
 * From a handler's return value to the reply that goes out: the §4.4 threading, the §4.2 error
 * convention, and the limits a reply must meet before it is journaled (JSON, at most 1 MiB, at
 * most `LIMITS.maxJsonDepth` deep). A reply the relay would refuse becomes an error reply with a
 * stable code instead of no reply at all.
 */
import { LIMITS } from '../protocol/constants.js';
import { jsonDepth } from '../protocol/json.js';
import type { JsonValue, Message, SendRequest } from '../protocol/types.js';
import type { PlannedReply } from './journal.js';

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

/** `{"status":"error","error":{"code","message"}}` (§4.2 reply convention). */
export function errorReply(code: string, message: string, outcome: 'error' | 'timeout'): PlannedReply {
  return { body: { status: 'error', error: { code, message } }, content_type: 'application/json', outcome };
}

/**
 * Why a body cannot be sent as it is (`reply_too_large`, `invalid_reply`), or undefined. `json`
 * is the body's serialisation.
 */
export function replyProblem(json: string): { code: 'reply_too_large' | 'invalid_reply'; message: string } | undefined {
  const bytes = Buffer.byteLength(json);
  if (bytes > LIMITS.maxBodyBytes) {
    return { code: 'reply_too_large', message: `the reply is ${bytes} bytes; the most a message body may be is ${LIMITS.maxBodyBytes} bytes (1 MiB)` };
  }
  if (jsonDepth(json, LIMITS.maxJsonDepth) > LIMITS.maxJsonDepth) {
    return { code: 'invalid_reply', message: `the reply is nested deeper than ${LIMITS.maxJsonDepth} levels` };
  }
  return undefined;
}

/** A handler's return value as a planned reply: strings become `{"text": …}`, nothing means no reply. */
export function planReply(result: unknown): PlannedReply | null {
  if (result === undefined || result === null) return null;
  const body = typeof result === 'string' ? { text: result } : result;
  let json: string | undefined;
  try {
    json = JSON.stringify(body);
  } catch (err) {
    return errorReply('invalid_reply', `the handler returned a value that is not JSON (${(err as Error).message})`, 'error');
  }
  if (json === undefined) return errorReply('invalid_reply', `the handler returned a ${typeof result}, which is not JSON`, 'error');
  const problem = replyProblem(json);
  if (problem) return errorReply(problem.code, problem.message, 'error');
  return { body: JSON.parse(json) as JsonValue, content_type: 'application/json', outcome: 'ok' };
}
