/**
 * The HTTP API (spec §3): one table of routes. Each handler gets the authenticated caller and the
 * parsed request and returns a reply; errors are thrown as ApiError and become §6 envelopes.
 */
import type { Clock } from '../core/clock.js';
import { ACL_ENTRY_TYPES, CLOSE_CODES, LIMITS, MESSAGE_STATUSES } from '../protocol/constants.js';
import { isPublicKey } from '../protocol/encoding.js';
import { memberText } from '../protocol/json.js';
import { formatInstant, formatTimestamp } from '../protocol/signing.js';
import type { AclEntryType, AgentProfile, MessageStatus } from '../protocol/types.js';
import { validateAclPut, validateProfilePatch, validateSendRequest } from '../protocol/validate.js';
import type { Authenticator } from './auth.js';
import type { Directory } from './directory.js';
import { ApiError } from './errors.js';
import {
  decodeCursor,
  encodeCursor,
  enumParam,
  intParam,
  keyParam,
  parseJsonBody,
  messageCursor,
  stringParam,
  timeParam,
} from './http.js';
import type { Hub } from './hub.js';
import type { RateState } from './limits.js';
import type { Logger } from './log.js';
import { effectiveStatus, type MessagePage, type Messenger, renderMessages, sendResponse, servableMessageJson } from './messenger.js';
import { type AgentRecord, MESSAGE_PAGE_BYTES, type MessageRecord, type StorageHealth, type Store } from './store.js';

export interface Services {
  clock: Clock;
  store: Store;
  directory: Directory;
  messenger: Messenger;
  hub: Hub;
  auth: Authenticator;
  version: string;
  maxBodyBytes: number;
  logger: Logger;
  /** Storage health (a real probe, cached briefly). */
  storageHealth(): StorageHealth;
}

export interface Request {
  method: string;
  params: Record<string, string>;
  query: URLSearchParams;
  body: Buffer;
  /** The authenticated caller (authenticated routes only). */
  caller: string;
  /** Aborts when the client goes away or the relay shuts down (long polls). */
  signal: AbortSignal;
}

export interface Reply {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
  /** Rate state of the send counter, when this reply is for a send. */
  sendRate?: RateState | undefined;
}

export interface Route {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  path: string;
  auth: boolean;
  /** Counted against the send limit instead of the general request limit. */
  send?: boolean;
  summary: string;
  handler(req: Request, svc: Services): Reply | Promise<Reply>;
}

const ok = (body: unknown, status = 200): Reply => ({ status, body });

/**
 * A list of messages as JSON text: the stored bodies go out exactly as they came in (never
 * parsed and re-serialised). Messages that cannot be served are left out and logged.
 */
function messageList(svc: Services, head: string, page: MessagePage, cursor: (last: MessageRecord) => string): Reply {
  if (page.skipped.length > 0) svc.logger.error('message_unservable', { message_ids: page.skipped.slice(0, 10), count: page.skipped.length });
  const next = page.hasMore && page.last ? JSON.stringify(cursor(page.last)) : 'null';
  return { status: 200, body: `{${head}"messages":[${page.json.join(',')}],"has_more":${page.hasMore},"next_cursor":${next}}` };
}

const messageCursorOf = (m: MessageRecord): string => encodeCursor({ t: m.created_at, id: m.message_id });
const noContent: Reply = { status: 204 };

function profile(agent: AgentRecord): AgentProfile {
  return {
    public_key: agent.public_key,
    display_name: agent.display_name,
    status: agent.status,
    visibility: agent.visibility,
    inbox_policy: agent.inbox_policy,
    created_at: formatInstant(agent.created_at),
    last_active_at: formatInstant(agent.last_active_at),
    metadata: agent.metadata,
    capabilities: agent.capabilities,
  };
}

/** The `{publicKey}` path parameter, with `me` meaning the caller (§3.1, our choice). */
function pathKey(req: Request, name = 'key'): string {
  const raw = req.params[name]!;
  const key = raw === 'me' ? req.caller : raw;
  if (!isPublicKey(key)) throw new ApiError('bad_request', `${raw} is not a public key`, { details: { field: name } });
  return key;
}

/** Own-profile-only routes (§2.4): any other key is 403 forbidden. */
function ownKey(req: Request): string {
  const key = pathKey(req);
  if (key !== req.caller) throw new ApiError('forbidden', 'you can only do this for your own agent');
  return key;
}

function existingAgent(svc: Services, key: string): AgentRecord {
  const agent = svc.directory.get(key);
  if (!agent) throw new ApiError('agent_not_found', `no agent with key ${key}`);
  return agent;
}

function visibleMessage(req: Request, svc: Services): ReturnType<Store['getMessage']> & object {
  const record = svc.store.getMessage(req.params['id']!);
  if (!record || (record.sender_key !== req.caller && record.recipient_key !== req.caller)) {
    throw new ApiError('message_not_found', `no message ${req.params['id']} visible to you`);
  }
  return record;
}

const notSupported = (what: string) => (): Reply => {
  throw new ApiError('not_found', `${what} are not supported by this relay`);
};

export const ROUTES: Route[] = [
  {
    method: 'GET',
    path: '/v1/agents/:key',
    auth: true,
    summary: 'Read a profile',
    handler: (req, svc) => ok(profile(existingAgent(svc, pathKey(req)))),
  },
  {
    method: 'PATCH',
    path: '/v1/agents/:key',
    auth: true,
    summary: 'Update your own profile',
    handler: (req, svc) => {
      const key = ownKey(req);
      const patch = validateProfilePatch(parseJsonBody(req.body).value);
      return ok(profile(svc.directory.update(key, patch, svc.clock.now())));
    },
  },
  {
    method: 'DELETE',
    path: '/v1/agents/:key',
    auth: true,
    summary: 'Delete your own agent and all its data',
    handler: (req, svc) => {
      const key = ownKey(req);
      svc.directory.delete(key);
      svc.hub.closeAgent(key, CLOSE_CODES.suspended, 'agent deleted');
      return noContent;
    },
  },
  {
    method: 'GET',
    path: '/v1/agents/:key/capabilities',
    auth: true,
    summary: "An agent's capabilities",
    handler: (req, svc) => {
      const agent = existingAgent(svc, pathKey(req));
      return ok({ public_key: agent.public_key, capabilities: agent.capabilities });
    },
  },
  {
    method: 'PUT',
    path: '/v1/agents/:key/acl',
    auth: true,
    summary: 'Add or change an ACL entry',
    handler: (req, svc) => {
      const key = ownKey(req);
      const { peer_key, entry_type } = validateAclPut(parseJsonBody(req.body).value);
      return ok(svc.directory.putAcl(key, peer_key, entry_type, svc.clock.now()));
    },
  },
  {
    method: 'GET',
    path: '/v1/agents/:key/acl',
    auth: true,
    summary: 'List ACL entries',
    handler: (req, svc) => {
      const key = ownKey(req);
      const type =
        enumParam<AclEntryType>(req.query, 'entry_type', ACL_ENTRY_TYPES, undefined) ??
        enumParam<AclEntryType>(req.query, 'type', ACL_ENTRY_TYPES, undefined);
      const limit = intParam(req.query, 'limit', LIMITS.aclLimitDefault, 1, LIMITS.aclLimitMax);
      const after = decodeCursor(req.query, (v) => (typeof v['i'] === 'number' ? v['i'] : undefined)) ?? 0;
      const rows = svc.store.listAcl(key, type, after, limit + 1);
      const entries = rows.slice(0, limit);
      const hasMore = rows.length > limit;
      return ok({ entries, has_more: hasMore, next_cursor: hasMore ? encodeCursor({ i: entries[entries.length - 1]!.id }) : null });
    },
  },
  {
    method: 'GET',
    path: '/v1/agents/:key/acl/:peer',
    auth: true,
    summary: 'Read one ACL entry',
    handler: (req, svc) => {
      const entry = svc.store.getAcl(ownKey(req), req.params['peer']!);
      if (!entry) throw new ApiError('not_found', 'no ACL entry for that peer');
      return ok(entry);
    },
  },
  {
    method: 'DELETE',
    path: '/v1/agents/:key/acl/:peer',
    auth: true,
    summary: 'Remove an ACL entry',
    handler: (req, svc) => {
      if (!svc.directory.deleteAcl(ownKey(req), req.params['peer']!)) throw new ApiError('not_found', 'no ACL entry for that peer');
      return noContent;
    },
  },
  ...(['PUT', 'GET', 'DELETE'] as const).map(
    (method): Route => ({
      method,
      path: '/v1/agents/:key/webhook',
      auth: true,
      summary: 'Webhooks (not supported by this relay)',
      handler: (req) => {
        ownKey(req);
        return notSupported('webhooks')();
      },
    }),
  ),
  {
    method: 'GET',
    path: '/v1/discover',
    auth: true,
    summary: 'Search public agents',
    handler: (req, svc) => {
      const limit = intParam(req.query, 'limit', LIMITS.discoverLimitDefault, 1, LIMITS.discoverLimitMax);
      const after = decodeCursor(req.query, (v) =>
        typeof v['t'] === 'number' && typeof v['k'] === 'string' ? { t: v['t'], k: v['k'] } : undefined,
      );
      const q = stringParam(req.query, 'q');
      const name = stringParam(req.query, 'name');
      const tagPrefix = stringParam(req.query, 'tag_prefix', 64);
      const activeSince = timeParam(req.query, 'active_since');
      // Each tag and word is a condition of the query: bounded, so no request builds a huge statement.
      const tags = [...new Set(req.query.getAll('tag').filter((t) => t !== ''))];
      if (tags.length > LIMITS.discoverMaxTags) {
        throw new ApiError('bad_request', `query parameter tag: at most ${LIMITS.discoverMaxTags} tags (got ${tags.length})`, {
          details: { field: 'tag', reason: `at most ${LIMITS.discoverMaxTags} tags`, limit: LIMITS.discoverMaxTags },
        });
      }
      for (const tag of tags) if (tag.length > LIMITS.tagMax) throw new ApiError('bad_request', `query parameter tag: at most ${LIMITS.tagMax} characters`, { details: { field: 'tag', reason: 'too long' } });
      const words = [...new Set((q ?? '').toLowerCase().split(/\s+/).filter(Boolean))];
      if (words.length > LIMITS.discoverMaxWords) {
        throw new ApiError('bad_request', `query parameter q: at most ${LIMITS.discoverMaxWords} words (got ${words.length})`, {
          details: { field: 'q', reason: `at most ${LIMITS.discoverMaxWords} words`, limit: LIMITS.discoverMaxWords },
        });
      }
      const rows = svc.store.discover({
        tags,
        ...(tagPrefix === undefined ? {} : { tag_prefix: tagPrefix }),
        ...(name === undefined ? {} : { name }),
        words,
        ...(activeSince === undefined ? {} : { active_since: activeSince }),
        ...(after === undefined ? {} : { after }),
        limit: limit + 1,
      });
      const page = rows.slice(0, limit);
      const last = page[page.length - 1];
      const hasMore = rows.length > limit;
      return ok({
        agents: page.map((a) => ({
          public_key: a.public_key,
          display_name: a.display_name,
          last_active_at: formatInstant(a.last_active_at),
          capabilities: a.capabilities,
        })),
        has_more: hasMore,
        next_cursor: hasMore && last ? encodeCursor({ t: last.last_active_at, k: last.public_key }) : null,
      });
    },
  },
  {
    method: 'GET',
    path: '/v1/capabilities',
    auth: true,
    summary: 'Capability tags in use, with agent counts',
    handler: (req, svc) => ok({ capabilities: svc.store.capabilityTags(stringParam(req.query, 'prefix', 64)) }),
  },
  {
    method: 'POST',
    path: '/v1/messages',
    auth: true,
    send: true,
    summary: 'Send a message',
    handler: async (req, svc) => {
      const { value, text } = parseJsonBody(req.body);
      const bodyText = typeof value === 'object' && value !== null && Object.hasOwn(value, 'body') ? memberText(text, ['body']) : undefined;
      const input = validateSendRequest(value, svc.maxBodyBytes, bodyText);
      const { record, rate } = await svc.messenger.send(req.caller, input);
      return { status: 201, body: sendResponse(record), sendRate: rate };
    },
  },
  {
    method: 'GET',
    path: '/v1/messages',
    auth: true,
    summary: 'Poll your inbox',
    handler: async (req, svc) => {
      const status = enumParam<MessageStatus>(req.query, 'status', MESSAGE_STATUSES, 'sent')!;
      const limit = intParam(req.query, 'limit', LIMITS.pollLimitDefault, 1, LIMITS.pollLimitMax);
      const wait = intParam(req.query, 'wait', 0, 0, LIMITS.pollWaitMaxSeconds);
      const after = decodeCursor(req.query, messageCursor);
      const threadId = stringParam(req.query, 'thread_id', LIMITS.threadIdMax);
      const inReplyTo = stringParam(req.query, 'in_reply_to', 128);
      const sender = keyParam(req.query, 'sender_key');
      const since = timeParam(req.query, 'since');
      const page = await svc.messenger.poll(
        req.caller,
        {
          status,
          ...(sender === undefined ? {} : { sender_key: sender }),
          ...(inReplyTo === undefined ? {} : { in_reply_to: inReplyTo }),
          ...(threadId === undefined ? {} : { thread_id: threadId }),
          ...(since === undefined ? {} : { since }),
          ...(after === undefined ? {} : { after }),
        },
        limit,
        wait * 1000,
        req.signal,
      );
      return messageList(svc, '', page, messageCursorOf);
    },
  },
  {
    method: 'GET',
    path: '/v1/messages/threads/:thread',
    auth: true,
    summary: 'Messages of a thread you took part in',
    handler: (req, svc) => {
      const threadId = req.params['thread']!;
      const limit = intParam(req.query, 'limit', LIMITS.threadLimitDefault, 1, LIMITS.threadLimitMax);
      const after = decodeCursor(req.query, messageCursor);
      const { messages, hasMore } =
        threadId.length <= 256 ? svc.store.thread(req.caller, threadId, after, limit, MESSAGE_PAGE_BYTES) : { messages: [], hasMore: false };
      const { json, skipped } = renderMessages(messages, svc.clock.now());
      return messageList(svc, `"thread_id":${JSON.stringify(threadId)},`, { json, skipped, hasMore, last: messages[messages.length - 1] }, messageCursorOf);
    },
  },
  {
    method: 'GET',
    path: '/v1/messages/:id',
    auth: true,
    summary: 'Read one message',
    handler: (req, svc) => {
      const record = visibleMessage(req, svc);
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
    handler: (req, svc) => {
      const m = visibleMessage(req, svc);
      return ok({
        message_id: m.message_id,
        status: effectiveStatus(m, svc.clock.now()),
        created_at: formatInstant(m.created_at),
        delivered_at: m.delivered_at === null ? null : formatInstant(m.delivered_at),
        expires_at: formatInstant(m.expires_at),
      });
    },
  },
  { method: 'POST', path: '/v1/blobs', auth: true, summary: 'Blobs (not supported by this relay)', handler: notSupported('blobs') },
  ...(['GET', 'DELETE'] as const).map(
    (method): Route => ({ method, path: '/v1/blobs/:blob', auth: true, summary: 'Blobs (not supported by this relay)', handler: notSupported('blobs') }),
  ),
];

/** Unauthenticated routes (§3.3). */
export const PUBLIC_ROUTES: Route[] = [
  {
    method: 'GET',
    path: '/v1/health',
    auth: false,
    summary: 'Basic health',
    handler: (_req, svc) => ok({ status: svc.storageHealth().ok ? 'ok' : 'degraded', version: svc.version, timestamp: formatTimestamp(svc.clock.now()) }),
  },
  {
    method: 'GET',
    path: '/v1/health/ready',
    auth: false,
    summary: 'Readiness',
    handler: (_req, svc) => {
      const health = svc.storageHealth();
      return health.ok ? ok({ status: 'ok' }) : ok({ status: 'unavailable', reason: health.reason }, 503);
    },
  },
  { method: 'GET', path: '/v1/health/live', auth: false, summary: 'Liveness', handler: () => ok({ status: 'ok' }) },
  {
    method: 'GET',
    path: '/v1/health/details',
    auth: false,
    summary: 'Per-component health',
    handler: (_req, svc) => {
      const started = performance.now();
      const health = svc.storageHealth();
      const dbOk = health.ok;
      const latency = Math.round(performance.now() - started);
      return ok({
        status: dbOk ? 'ok' : 'degraded',
        version: svc.version,
        timestamp: formatTimestamp(svc.clock.now()),
        mode: 'embedded',
        components: {
          database: dbOk ? { status: 'ok', latency_ms: latency } : { status: 'unavailable', reason: health.reason },
          blob_store: { status: 'disabled' },
          websocket: { status: 'ok', connections: svc.hub.connections },
        },
      });
    },
  },
  {
    method: 'GET',
    path: '/v1/openapi.json',
    auth: false,
    summary: 'This API as OpenAPI 3.1',
    handler: (_req, svc) => ok(openApi(svc.version)),
  },
];

function openApi(version: string): unknown {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of [...PUBLIC_ROUTES, ...ROUTES]) {
    const path = r.path.replace(/:(\w+)/g, (_m, name: string) => `{${name === 'key' ? 'publicKey' : name}}`);
    paths[path] ??= {};
    paths[path][r.method.toLowerCase()] = {
      summary: r.summary,
      ...(r.auth ? { security: [{ publicKey: [], timestamp: [], signature: [] }] } : {}),
      responses: { default: { description: 'JSON; errors use the {"error": {...}} envelope' } },
    };
  }
  return {
    openapi: '3.1.0',
    info: { title: 'MRP relay (mrp)', version },
    components: {
      securitySchemes: {
        publicKey: { type: 'apiKey', in: 'header', name: 'X-M2M-Public-Key' },
        timestamp: { type: 'apiKey', in: 'header', name: 'X-M2M-Timestamp' },
        signature: { type: 'apiKey', in: 'header', name: 'X-M2M-Signature' },
      },
    },
    paths,
  };
}
