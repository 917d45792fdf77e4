/**
 * WebSocket frame codec (docs/protocol.md §5), both directions, pure: text in, typed frame out, or a
 * FrameParseError that says exactly what was wrong so each side can answer as §5 prescribes
 * (unparseable → close 4000, unknown type → error frame, malformed auth → auth_result error,
 * malformed send → send_result error). The client's way out is encoded here too (see the
 * encoders at the end): every frame a client writes and the `POST /v1/messages` body.
 */
import { ProtocolError } from '../core/errors.js';
import { LIMITS, MESSAGE_STATUSES } from './constants.js';
import { JsonInputError, jsonDepth, memberSpans, memberText, parseJsonMember, type Span } from './json.js';
import type {
  AckFrame,
  Attachment,
  AuthFrame,
  ErrorFrame,
  FrameError,
  JsonObject,
  JsonValue,
  Message,
  MessageStatus,
  PingFrame,
  PongFrame,
  SendRequest,
  SendResultFrame,
  ServerFrame,
} from './types.js';
import { isPlainObject, type NormalizedSend, ValidationError, validateSendRequest } from './validate.js';

/**
 * Why a frame was refused. `not_json`: unparseable; `too_deep`: nested deeper than
 * `LIMITS.maxJsonDepth` (refused before anything else looks at it); `not_object`: JSON but not an
 * object; `unknown_type`; `invalid`: a known type with bad fields.
 */
export type FrameErrorReason = 'not_json' | 'not_object' | 'unknown_type' | 'invalid' | 'too_deep';

/** A frame that could not be parsed or failed validation. */
export class FrameParseError extends ProtocolError {
  override name = 'FrameParseError';
  readonly reason: FrameErrorReason;
  /** The frame's `type`, when it had a string one. */
  readonly frameType: string | undefined;
  /** JSON path of the offending field, when known. */
  readonly field: string | undefined;
  /** The client's `request_id` of a send frame, so the error can be matched. */
  readonly requestId: string | undefined;
  /** For send frames: the validation error (with HTTP-equivalent status). */
  readonly validation: ValidationError | undefined;

  constructor(
    reason: FrameErrorReason,
    message: string,
    extra: { frameType?: string; field?: string; requestId?: string; validation?: ValidationError } = {},
  ) {
    super('invalid_frame', message, { details: { reason, ...(extra.field ? { field: extra.field } : {}) } });
    this.reason = reason;
    this.frameType = extra.frameType;
    this.field = extra.field;
    this.requestId = extra.requestId;
    this.validation = extra.validation;
  }
}

/**
 * A client frame after validation; `send` carries the normalised message fields (with the body's
 * verbatim text in `message.body_text`), `ping` the verbatim text of its `ts` in `ts_text`.
 */
export type ParsedClientFrame =
  | AuthFrame
  | AckFrame
  | (PingFrame & { ts_text?: string })
  | PongFrame
  | { type: 'send'; request_id?: string; message: NormalizedSend };

export interface ClientFrameOptions {
  /** Largest message body, counted in bytes of its JSON text as sent (default 1 MiB). */
  maxBodyBytes?: number;
  /** Deepest nesting of the whole frame (default `LIMITS.maxJsonDepth`). */
  maxDepth?: number;
}

/** A `request_id` as the relay echoes it: a string, or a number turned into one. */
function requestIdOf(value: unknown): string | undefined {
  return typeof value === 'string' ? value : typeof value === 'number' ? String(value) : undefined;
}

/**
 * The top-level `type` and `request_id` of a frame too deep to parse, read from their source text
 * when they are short scalars, so a too-deep `send` can still be answered with its `send_result`.
 */
function identify(text: string): { frameType?: string; requestId?: string } {
  const spans = memberSpans(text, [['type'], ['request_id']]);
  const read = (key: string): string | undefined => {
    const span = spans.get(key);
    if (!span || span.end - span.start > 1024) return undefined;
    const raw = text.slice(span.start, span.end);
    if (!/^(?:"|-?\d)/.test(raw)) return undefined;
    try {
      return requestIdOf(JSON.parse(raw));
    } catch {
      return undefined;
    }
  };
  const frameType = read('type');
  const requestId = read('request_id');
  return { ...(frameType === undefined ? {} : { frameType }), ...(requestId === undefined ? {} : { requestId }) };
}

/** The frame parsed, depth checked on the text first; with where a top-level `body` is in the text. */
function decodeClient(
  text: string,
  maxDepth: number,
): { frame: Record<string, unknown>; type: string; body: Span | undefined } {
  let value: unknown;
  let span: Span | undefined;
  try {
    ({ value, span } = parseJsonMember(text, 'body', maxDepth));
  } catch (err) {
    if (err instanceof JsonInputError && err.reason === 'too_deep') {
      throw new FrameParseError('too_deep', `frame is nested deeper than ${maxDepth} levels`, identify(text));
    }
    throw new FrameParseError('not_json', 'frame is not valid JSON');
  }
  if (!isPlainObject(value)) throw new FrameParseError('not_object', 'frame must be a JSON object');
  const type = value['type'];
  if (typeof type !== 'string') throw new FrameParseError('invalid', 'frame has no string "type"', { field: 'type' });
  return { frame: value, type, body: span };
}

function decode(text: string): { frame: Record<string, unknown>; type: string } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new FrameParseError('not_json', 'frame is not valid JSON');
  }
  if (!isPlainObject(value)) throw new FrameParseError('not_object', 'frame must be a JSON object');
  const type = value['type'];
  if (typeof type !== 'string') throw new FrameParseError('invalid', 'frame has no string "type"', { field: 'type' });
  return { frame: value, type };
}

function requireString(frame: Record<string, unknown>, type: string, field: string): string {
  const v = frame[field];
  if (typeof v !== 'string' || v.length === 0) {
    throw new FrameParseError('invalid', `${type} frame needs a string "${field}"`, { frameType: type, field });
  }
  return v;
}

function withTs<T extends 'ping' | 'pong'>(type: T, frame: Record<string, unknown>): { type: T; ts?: JsonValue } {
  return frame['ts'] === undefined ? { type } : { type, ts: frame['ts'] as JsonValue };
}

/**
 * Parses a frame a client sent to the relay. Depth is checked on the text before parsing; a send's
 * body is measured and kept as the exact text the client sent (bodies travel verbatim).
 */
export function parseClientFrame(text: string, options: ClientFrameOptions = {}): ParsedClientFrame {
  const { frame, type, body } = decodeClient(text, options.maxDepth ?? LIMITS.maxJsonDepth);
  switch (type) {
    case 'auth':
      return {
        type,
        public_key: requireString(frame, type, 'public_key'),
        timestamp: requireString(frame, type, 'timestamp'),
        signature: requireString(frame, type, 'signature'),
      };
    case 'ack':
      return { type, message_id: requireString(frame, type, 'message_id') };
    case 'ping': {
      const ping = withTs(type, frame);
      const tsText = ping.ts === undefined ? undefined : memberText(text, ['ts']);
      return tsText === undefined ? ping : { ...ping, ts_text: tsText };
    }
    case 'pong':
      return withTs(type, frame);
    case 'send': {
      const rawId = frame['request_id'];
      const requestId = requestIdOf(rawId);
      // Optional, a string or a number (echoed as a string); anything else could not be echoed,
      // so the client could not match the answer (docs/protocol.md §5.4).
      if (requestId === undefined && rawId !== undefined && rawId !== null) {
        const err = new ValidationError(400, 'request_id', 'must be a string or a number');
        throw new FrameParseError('invalid', err.message, { frameType: type, field: err.field, validation: err });
      }
      // Lenient form: {"type":"send","message":{...}} (docs/protocol.md §5.4).
      const nested = isPlainObject(frame['message']) && frame['recipient_key'] === undefined;
      const fields = nested ? (frame['message'] as Record<string, unknown>) : frame;
      try {
        const bodyText = !Object.hasOwn(fields, 'body')
          ? undefined
          : nested
            ? memberText(text, ['message', 'body'])
            : body && text.slice(body.start, body.end);
        const message = validateSendRequest(fields, options.maxBodyBytes, bodyText);
        return requestId === undefined ? { type, message } : { type, request_id: requestId, message };
      } catch (err) {
        if (!(err instanceof ValidationError)) throw err;
        throw new FrameParseError('invalid', err.message, {
          frameType: type,
          field: err.field,
          validation: err,
          ...(requestId === undefined ? {} : { requestId }),
        });
      }
    }
    default:
      throw new FrameParseError('unknown_type', `unknown frame type "${type}"`, { frameType: type });
  }
}

function parseFrameError(value: unknown, type: string): FrameError {
  if (!isPlainObject(value) || typeof value['code'] !== 'string') {
    throw new FrameParseError('invalid', `${type} frame needs an "error" object with a "code"`, {
      frameType: type,
      field: 'error',
    });
  }
  const error: FrameError = {
    code: value['code'],
    message: typeof value['message'] === 'string' ? value['message'] : value['code'],
  };
  if (isPlainObject(value['details'])) error.details = value['details'] as JsonObject;
  return error;
}

function optionalStringOrNull(value: unknown): string | null {
  return typeof value === 'string' ? value : null;
}

/**
 * Normalises a message object from the relay. Only `message_id` and `sender_key` are required
 * (the hosted relay's documented push shows a subset); missing fields get their documented
 * defaults so handlers always see the full §3.6 shape.
 */
export function normalizeMessage(value: unknown, field = 'message'): Message {
  if (!isPlainObject(value)) throw new FrameParseError('invalid', `${field} must be an object`, { field });
  for (const key of ['message_id', 'sender_key'] as const) {
    if (typeof value[key] !== 'string' || value[key] === '') {
      throw new FrameParseError('invalid', `${field}.${key} must be a string`, { field: `${field}.${key}` });
    }
  }
  // Filled in place: the object was just parsed from a frame and belongs to nobody else.
  const m = value;
  if (typeof m['recipient_key'] !== 'string') m['recipient_key'] = '';
  if (typeof m['content_type'] !== 'string') m['content_type'] = 'application/json';
  m['body'] ??= null;
  if (!Array.isArray(m['attachments'])) m['attachments'] = [] satisfies Attachment[];
  m['thread_id'] = optionalStringOrNull(m['thread_id']);
  m['in_reply_to'] = optionalStringOrNull(m['in_reply_to']);
  if (!isPlainObject(m['metadata'])) m['metadata'] = {} satisfies JsonObject;
  if (!(MESSAGE_STATUSES as readonly unknown[]).includes(m['status'])) m['status'] = 'sent' satisfies MessageStatus;
  if (typeof m['created_at'] !== 'string') m['created_at'] = '';
  if (typeof m['expires_at'] !== 'string') m['expires_at'] = '';
  m['delivered_at'] = optionalStringOrNull(m['delivered_at']);
  return m as unknown as Message;
}

/**
 * Deepest frame a client accepts from the relay: a `message` frame (1) holding a message (2)
 * whose body may be nested `LIMITS.maxJsonDepth` deep.
 */
export const MAX_SERVER_FRAME_DEPTH = LIMITS.maxJsonDepth + 2;

/**
 * Parses a frame the relay sent to a client. Nesting is checked on the text first (reason
 * `too_deep`), so nothing parsed here can overflow the stack when it is walked later.
 */
export function parseServerFrame(text: string): ServerFrame {
  if (jsonDepth(text, MAX_SERVER_FRAME_DEPTH) > MAX_SERVER_FRAME_DEPTH) {
    throw new FrameParseError('too_deep', `frame nested deeper than ${MAX_SERVER_FRAME_DEPTH} levels`);
  }
  const { frame, type } = decode(text);
  switch (type) {
    case 'auth_result': {
      const status = frame['status'];
      if (status === 'ok')
        return { type, status, public_key: typeof frame['public_key'] === 'string' ? frame['public_key'] : '' };
      if (status === 'error') return { type, status, error: parseFrameError(frame['error'], type) };
      throw new FrameParseError('invalid', 'auth_result status must be "ok" or "error"', {
        frameType: type,
        field: 'status',
      });
    }
    case 'message':
      try {
        return { type, message: normalizeMessage(frame['message']) };
      } catch (err) {
        if (!(err instanceof FrameParseError)) throw err;
        throw new FrameParseError('invalid', err.message, {
          frameType: type,
          ...(err.field ? { field: err.field } : {}),
        });
      }
    case 'send_result': {
      const rid = frame['request_id'];
      const requestId = typeof rid === 'string' ? { request_id: rid } : {};
      if (frame['status'] === 'error') {
        return {
          type,
          status: 'error',
          ...requestId,
          error: parseFrameError(frame['error'], type),
        } satisfies SendResultFrame;
      }
      if (frame['status'] !== 'ok' && frame['status'] !== 'sent') {
        throw new FrameParseError('invalid', 'send_result status must be "ok" or "error"', {
          frameType: type,
          field: 'status',
        });
      }
      return {
        type,
        status: 'ok',
        ...requestId,
        message_id: requireString(frame, type, 'message_id'),
        created_at: typeof frame['created_at'] === 'string' ? frame['created_at'] : '',
        expires_at: typeof frame['expires_at'] === 'string' ? frame['expires_at'] : '',
      };
    }
    case 'error': {
      const out: ErrorFrame = { type, error: parseFrameError(frame['error'], type) };
      if (typeof frame['request_id'] === 'string') out.request_id = frame['request_id'];
      return out;
    }
    case 'ping':
    case 'pong':
      return withTs(type, frame);
    default:
      throw new FrameParseError('unknown_type', `unknown frame type "${type}"`, { frameType: type });
  }
}

// ── Client → relay encoders ─────────────────────────────────────────────────────────────────────
//
// Every frame a client writes, and the `POST /v1/messages` body, is built here and nowhere else.
// A body travels as the exact JSON text it was encoded to (`EncodedSend.body_json`): once a reply
// is sealed and journaled, every (re)send carries those very bytes, never a re-serialisation.

/**
 * A send whose body is already encoded: `body_json` is the exact JSON text of the body (plain, or
 * a sealed envelope) and is written verbatim. It must be one complete JSON value — whoever builds
 * an `EncodedSend` (the message codec) guarantees that; the encoders below do not re-check it.
 */
export interface EncodedSend {
  recipient_key: string;
  content_type: string;
  body_json: string;
  attachments?: Attachment[];
  thread_id?: string | null;
  in_reply_to?: string | null;
  expires_in?: number;
  metadata?: JsonObject;
}

/** True for an `EncodedSend` (its body is text), false for a `SendRequest` (its body is a value). */
export function isEncodedSend(request: SendRequest | EncodedSend): request is EncodedSend {
  return typeof (request as Partial<EncodedSend>).body_json === 'string';
}

/**
 * `,"name":value` for each present member after the body, in the order of §3.6. Written with one
 * `JSON.stringify` per member so a body never goes through it.
 */
function sendTail(request: EncodedSend): string {
  let out = '';
  if (request.attachments !== undefined) out += `,"attachments":${JSON.stringify(request.attachments)}`;
  if (request.thread_id !== undefined) out += `,"thread_id":${JSON.stringify(request.thread_id)}`;
  if (request.in_reply_to !== undefined) out += `,"in_reply_to":${JSON.stringify(request.in_reply_to)}`;
  if (request.expires_in !== undefined) out += `,"expires_in":${JSON.stringify(request.expires_in)}`;
  if (request.metadata !== undefined) out += `,"metadata":${JSON.stringify(request.metadata)}`;
  return out;
}

function sendMembers(request: SendRequest | EncodedSend): string {
  if (!isEncodedSend(request)) {
    const text = JSON.stringify(request);
    return text.length > 2 ? text.slice(1, -1) : '';
  }
  return (
    `"recipient_key":${JSON.stringify(request.recipient_key)},"content_type":${JSON.stringify(request.content_type)},` +
    `"body":${request.body_json}${sendTail(request)}`
  );
}

/** The `POST /v1/messages` body (§3.6). An encoded body is written verbatim. */
export function encodeSendRequest(request: SendRequest | EncodedSend): string {
  return `{${sendMembers(request)}}`;
}

/** An inline `send` frame (§5.4): the send request's members after `type` and `request_id`. */
export function encodeSendFrame(requestId: string, request: SendRequest | EncodedSend): string {
  const members = sendMembers(request);
  return `{"type":"send","request_id":${JSON.stringify(requestId)}${members ? `,${members}` : ''}}`;
}

/** The `auth` frame (§5.1); build its fields with `authFrame()` from signing.ts. */
export function encodeAuthFrame(frame: AuthFrame): string {
  return JSON.stringify({
    type: 'auth',
    public_key: frame.public_key,
    timestamp: frame.timestamp,
    signature: frame.signature,
  } satisfies AuthFrame);
}

/** An `ack` frame (§5.3). */
export function encodeAckFrame(messageId: string): string {
  return `{"type":"ack","message_id":${JSON.stringify(messageId)}}`;
}

/** A JSON `ping` frame (§5.5); `ts` is echoed by the relay's `pong`. */
export function encodePingFrame(ts?: JsonValue): string {
  return JSON.stringify(
    ts === undefined ? ({ type: 'ping' } satisfies PingFrame) : ({ type: 'ping', ts } satisfies PingFrame),
  );
}

/** A `pong` frame answering a relay `ping`, echoing its `ts` when it had one. */
export function encodePongFrame(ts?: JsonValue): string {
  return JSON.stringify(
    ts === undefined ? ({ type: 'pong' } satisfies PongFrame) : ({ type: 'pong', ts } satisfies PongFrame),
  );
}

// ── Frames the relay sends (docs/protocol.md §5), encoded in one place ─────────────────────────────────────
// The relay builds every server→client frame here, so the wire shape of each lives in one
// function and nothing in `src/relay` writes `{"type":…}` by hand. Field order is part of the
// output (tests and clients compare text), so each encoder writes its fields in a fixed order.

/** A message object (§3.6) with its body as verbatim JSON text and its times already formatted. */
export interface MessageParts extends Omit<Message, 'body'> {
  /** The body exactly as the sender wrote it (valid JSON text): spliced, never re-serialised. */
  body_text: string;
}

/**
 * The §3.6 message object as JSON text around the verbatim body text. Keys and statuses are
 * written without escaping (base64url keys and fixed words need none); every other string is
 * JSON-escaped. Used for pushes (`message` frames) and HTTP answers alike.
 */
export function encodeMessageObject(m: MessageParts): string {
  return (
    `{"message_id":${JSON.stringify(m.message_id)},"sender_key":"${m.sender_key}","recipient_key":"${m.recipient_key}",` +
    `"content_type":${JSON.stringify(m.content_type)},"body":${m.body_text},"attachments":${JSON.stringify(m.attachments)},` +
    `"thread_id":${JSON.stringify(m.thread_id)},"in_reply_to":${JSON.stringify(m.in_reply_to)},` +
    `"metadata":${JSON.stringify(m.metadata)},"status":"${m.status}",` +
    `"created_at":"${m.created_at}","expires_at":"${m.expires_at}",` +
    `"delivered_at":${m.delivered_at === null ? 'null' : `"${m.delivered_at}"`}}`
  );
}

/**
 * A page of messages as the HTTP API answers it (§3.2, §3.6): `{"messages": [...], "has_more",
 * "next_cursor"}`, preceded by `thread_id` for a thread. `messages` are message objects' JSON
 * texts (`encodeMessageObject`), spliced as they are.
 */
export function encodeMessagePage(page: {
  thread_id?: string;
  messages: readonly string[];
  has_more: boolean;
  next_cursor: string | null;
}): string {
  const head = page.thread_id === undefined ? '' : `"thread_id":${JSON.stringify(page.thread_id)},`;
  return `{${head}"messages":[${page.messages.join(',')}],"has_more":${page.has_more},"next_cursor":${JSON.stringify(page.next_cursor)}}`;
}

/** `{"type":"message","message":…}` around a message object's JSON text (`encodeMessageObject`). */
export function encodeMessageFrame(messageText: string): string {
  return `{"type":"message","message":${messageText}}`;
}

export function encodeAuthOk(publicKey: string): string {
  return JSON.stringify({ type: 'auth_result', status: 'ok', public_key: publicKey });
}

export function encodeAuthError(error: FrameError): string {
  return JSON.stringify({ type: 'auth_result', status: 'error', error });
}

/** An `error` frame; `request_id` (when the offending frame had one) follows the error. */
export function encodeErrorFrame(error: FrameError, requestId?: string): string {
  return JSON.stringify(
    requestId === undefined ? { type: 'error', error } : { type: 'error', error, request_id: requestId },
  );
}

/** `send_result ok`: the §3.4 send response fields, `request_id` echoed when the send had one. */
export function encodeSendResultOk(
  requestId: string | undefined,
  result: { message_id: string; created_at: string; expires_at: string },
): string {
  const { message_id, created_at, expires_at } = result;
  return JSON.stringify(
    requestId === undefined
      ? { type: 'send_result', status: 'ok', message_id, created_at, expires_at }
      : { type: 'send_result', request_id: requestId, status: 'ok', message_id, created_at, expires_at },
  );
}

/** `send_result error`: `details` is always an object (`{}` when there are none). */
export function encodeSendResultError(requestId: string | undefined, error: FrameError): string {
  const err = { code: error.code, message: error.message, details: error.details ?? {} };
  return JSON.stringify(
    requestId === undefined
      ? { type: 'send_result', status: 'error', error: err }
      : { type: 'send_result', request_id: requestId, status: 'error', error: err },
  );
}

/** A pong; `tsText` is the verbatim JSON text of the ping's `ts` (the caller bounds it). */
export function encodePong(tsText?: string): string {
  return tsText === undefined ? '{"type":"pong"}' : `{"type":"pong","ts":${tsText}}`;
}
