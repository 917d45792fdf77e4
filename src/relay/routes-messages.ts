/**
 * The message half of the HTTP API (docs/protocol.md §3): send, poll (with long polls), threads, one message
 * and its status. Message lists are JSON text
 * built around the stored bodies, which go out exactly as they came in.
 */
import { LIMITS, MESSAGE_STATUSES, TAKE_ID_RE } from '../protocol/constants.js';
import { encodeMessagePage } from '../protocol/frames.js';
import { formatInstant } from '../protocol/signing.js';
import type { MessageStatus } from '../protocol/types.js';
import { validateSendRequest } from '../protocol/validate.js';
import { ApiError } from './errors.js';
import {
  decodeCursor,
  encodeCursor,
  enumParam,
  intParam,
  keyParam,
  messageCursor,
  stringParam,
  timeParam,
} from './http.js';
import {
  effectiveStatus,
  type MessagePage,
  renderMessages,
  sendResponse,
  servableMessageJson,
} from './message-json.js';
import { JSON_BODY, NO_BODY, type Reply, type Request } from './router.js';
import { ok, type RelayRoute, type Services } from './services.js';
import { MESSAGE_PAGE_BYTES, type MessageRecord } from './store/store.js';

/**
 * A list of messages as JSON text: the stored bodies go out exactly as they came in (never
 * parsed and re-serialised). Messages that cannot be served are left out and logged.
 */
function messageList(svc: Services, threadId: string | undefined, page: MessagePage): Reply {
  if (page.skipped.length > 0)
    svc.logger.error('message_unservable', { message_ids: page.skipped.slice(0, 10), count: page.skipped.length });
  const next = page.hasMore && page.last ? messageCursorOf(page.last) : null;
  const body = encodeMessagePage({
    ...(threadId === undefined ? {} : { thread_id: threadId }),
    messages: page.json,
    has_more: page.hasMore,
    next_cursor: next,
  });
  return { kind: 'json', status: 200, body };
}

/** `take=<id>` (our extension, docs/protocol.md §3.6): the poll's take id, recorded on what it marks delivered. */
function takeParam(query: URLSearchParams): string | undefined {
  const raw = query.get('take');
  if (raw === null || raw === '') return undefined;
  if (!TAKE_ID_RE.test(raw)) {
    throw new ApiError('bad_request', 'take must be 1–64 characters of A–Z, a–z, 0–9, "_" or "-"', {
      details: { field: 'take', reason: 'invalid' },
    });
  }
  return raw;
}

const messageCursorOf = (m: MessageRecord): string => encodeCursor({ t: m.created_at, id: m.message_id });

async function visibleMessage(req: Request, svc: Services): Promise<MessageRecord> {
  const record = await svc.store.getMessage(req.params['id']!);
  if (!record || (record.sender_key !== req.caller && record.recipient_key !== req.caller)) {
    throw new ApiError('message_not_found', `no message ${req.params['id']} visible to you`);
  }
  return record;
}

export const MESSAGE_ROUTES: RelayRoute[] = [
  {
    method: 'POST',
    path: '/v1/messages',
    auth: true,
    send: true,
    summary: 'Send a message',
    body: JSON_BODY,
    reply: 'json',
    handler: async (req, svc) => {
      const { value, text, body } = req.json();
      const bodyText = body && text.slice(body.start, body.end);
      const input = validateSendRequest(value, svc.maxBodyBytes, bodyText);
      const { record, rate } = await svc.messenger.send(req.caller, input);
      return { kind: 'json', status: 201, body: sendResponse(record), sendRate: rate };
    },
  },
  {
    method: 'GET',
    path: '/v1/messages',
    auth: true,
    summary: 'Poll your inbox',
    body: NO_BODY,
    reply: 'json',
    handler: async (req, svc) => {
      const status = enumParam<MessageStatus>(req.query, 'status', MESSAGE_STATUSES, 'sent')!;
      const limit = intParam(req.query, 'limit', LIMITS.pollLimitDefault, 1, LIMITS.pollLimitMax);
      const wait = intParam(req.query, 'wait', 0, 0, LIMITS.pollWaitMaxSeconds);
      const after = decodeCursor(req.query, messageCursor);
      const threadId = stringParam(req.query, 'thread_id', LIMITS.threadIdMax);
      const inReplyTo = stringParam(req.query, 'in_reply_to', 128);
      const sender = keyParam(req.query, 'sender_key');
      const since = timeParam(req.query, 'since');
      const take = takeParam(req.query);
      const page = await svc.messenger.poll(
        req.caller,
        {
          status,
          ...(sender === undefined ? {} : { sender_key: sender }),
          ...(inReplyTo === undefined ? {} : { in_reply_to: inReplyTo }),
          ...(threadId === undefined ? {} : { thread_id: threadId }),
          ...(since === undefined ? {} : { since }),
          ...(after === undefined ? {} : { after }),
          ...(take === undefined ? {} : { take }),
        },
        limit,
        wait * 1000,
        req,
      );
      const reply = messageList(svc, undefined, page);
      // Says this relay records take ids, so a client may rely on `status=delivered&take=` later.
      if (take !== undefined && reply.kind === 'json') reply.headers = { ...reply.headers, 'X-MRP-Take': take };
      return reply;
    },
  },
  {
    method: 'GET',
    path: '/v1/messages/threads/:thread',
    auth: true,
    summary: 'Messages of a thread you took part in',
    body: NO_BODY,
    reply: 'json',
    handler: async (req, svc) => {
      const threadId = req.params['thread']!;
      const limit = intParam(req.query, 'limit', LIMITS.threadLimitDefault, 1, LIMITS.threadLimitMax);
      const after = decodeCursor(req.query, messageCursor);
      const { messages, hasMore } =
        threadId.length <= 256
          ? await svc.store.thread(req.caller, threadId, after, limit, MESSAGE_PAGE_BYTES)
          : { messages: [], hasMore: false };
      const { json, skipped } = renderMessages(messages, svc.clock.now());
      return messageList(svc, threadId, {
        json,
        skipped,
        hasMore,
        last: messages[messages.length - 1],
      });
    },
  },
  {
    method: 'GET',
    path: '/v1/messages/:id',
    auth: true,
    summary: 'Read one message',
    body: NO_BODY,
    reply: 'json',
    handler: async (req, svc) => {
      const record = await visibleMessage(req, svc);
      try {
        return ok(servableMessageJson(record, svc.clock.now()));
      } catch {
        svc.logger.error('message_unservable', { message_ids: [record.message_id], count: 1 });
        throw new ApiError('internal_error', 'this message is damaged in storage and cannot be served');
      }
    },
  },
  {
    method: 'GET',
    path: '/v1/messages/:id/status',
    auth: true,
    summary: 'Delivery status of a message',
    body: NO_BODY,
    reply: 'json',
    handler: async (req, svc) => {
      const m = await visibleMessage(req, svc);
      return ok({
        message_id: m.message_id,
        status: effectiveStatus(m, svc.clock.now()),
        created_at: formatInstant(m.created_at),
        delivered_at: m.delivered_at === null ? null : formatInstant(m.delivered_at),
        expires_at: formatInstant(m.expires_at),
      });
    },
  },
];
