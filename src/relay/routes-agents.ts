/**
 * The agent half of the HTTP API (docs/protocol.md §3): profiles, capabilities, ACLs, discovery and
 * webhooks (§3.8; deliveries are `webhooks.ts`). Handlers get the authenticated caller and return a
 * reply; errors are thrown as ApiError and become §6 envelopes.
 */
import { ACL_ENTRY_TYPES, LIMITS } from '../protocol/constants.js';
import { formatInstant } from '../protocol/signing.js';
import type { AclEntryType } from '../protocol/types.js';
import { isPlainObject, validateAclPut, validateProfilePatch } from '../protocol/validate.js';
import { isWebhookSecret, WEBHOOK_SECRET_LIMITS } from '../protocol/webhook.js';
import { ApiError } from './errors.js';
import { decodeCursor, encodeCursor, enumParam, intParam, stringParam, timeParam } from './http.js';
import { JSON_BODY, NO_BODY } from './router.js';
import { existingAgent, noContent, ok, ownKey, pathKey, profile, type RelayRoute } from './services.js';
import { CAPABILITY_TAGS_MAX, DISCOVER_PAGE_BYTES, type WebhookRecord } from './store/store.js';
import { checkWebhookUrl } from './webhook-target.js';

/** The GET shape of a webhook (§3.8): never the secret. */
function webhookJson(hook: WebhookRecord) {
  return {
    url: hook.url,
    enabled: hook.enabled,
    consecutive_failures: hook.consecutive_failures,
    created_at: formatInstant(hook.created_at),
  };
}

export const AGENT_ROUTES: RelayRoute[] = [
  {
    method: 'GET',
    path: '/v1/agents/:key',
    auth: true,
    summary: 'Read a profile',
    body: NO_BODY,
    reply: 'json',
    handler: async (req, svc) => ok(profile(await existingAgent(svc, pathKey(req)))),
  },
  {
    method: 'PATCH',
    path: '/v1/agents/:key',
    auth: true,
    summary: 'Update your own profile',
    body: JSON_BODY,
    reply: 'json',
    handler: async (req, svc) => {
      const key = ownKey(req);
      const patch = validateProfilePatch(req.json().value);
      return ok(profile(await svc.directory.update(key, patch, svc.clock.now())));
    },
  },
  {
    method: 'DELETE',
    path: '/v1/agents/:key',
    auth: true,
    summary: 'Delete your own agent and all its data',
    body: NO_BODY,
    reply: 'json',
    handler: async (req, svc) => {
      // Its sockets, wherever they are, are closed (4003) by the hub that holds them (bus: agent.deleted).
      const key = ownKey(req);
      await svc.directory.delete(key);
      // Blob metadata went with the agent; the bytes follow (a failure leaves orphans the sweeper reclaims).
      const blobs = await svc.blobs.store().catch(() => undefined);
      await blobs?.deleteOwner(key).catch((err: unknown) =>
        svc.logger.error('storage_error', {
          where: 'blob_delete_owner',
          error: (err as Error)?.message ?? String(err),
        }),
      );
      return noContent;
    },
  },
  {
    method: 'GET',
    path: '/v1/agents/:key/capabilities',
    auth: true,
    summary: "An agent's capabilities",
    body: NO_BODY,
    reply: 'json',
    handler: async (req, svc) => {
      const agent = await existingAgent(svc, pathKey(req));
      return ok({ public_key: agent.public_key, capabilities: agent.capabilities });
    },
  },
  {
    method: 'PUT',
    path: '/v1/agents/:key/acl',
    auth: true,
    summary: 'Add or change an ACL entry',
    body: JSON_BODY,
    reply: 'json',
    handler: async (req, svc) => {
      const key = ownKey(req);
      const { peer_key, entry_type } = validateAclPut(req.json().value);
      return ok(await svc.directory.putAcl(key, peer_key, entry_type, svc.clock.now()));
    },
  },
  {
    method: 'GET',
    path: '/v1/agents/:key/acl',
    auth: true,
    summary: 'List ACL entries',
    body: NO_BODY,
    reply: 'json',
    handler: async (req, svc) => {
      const key = ownKey(req);
      const type =
        enumParam<AclEntryType>(req.query, 'entry_type', ACL_ENTRY_TYPES, undefined) ??
        enumParam<AclEntryType>(req.query, 'type', ACL_ENTRY_TYPES, undefined);
      const limit = intParam(req.query, 'limit', LIMITS.aclLimitDefault, 1, LIMITS.aclLimitMax);
      const after = decodeCursor(req.query, (v) => (typeof v['i'] === 'number' ? v['i'] : undefined)) ?? 0;
      const rows = await svc.store.listAcl(key, type, after, limit + 1);
      const entries = rows.slice(0, limit);
      const hasMore = rows.length > limit;
      return ok({
        entries,
        has_more: hasMore,
        next_cursor: hasMore ? encodeCursor({ i: entries[entries.length - 1]!.id }) : null,
      });
    },
  },
  {
    method: 'GET',
    path: '/v1/agents/:key/acl/:peer',
    auth: true,
    summary: 'Read one ACL entry',
    body: NO_BODY,
    reply: 'json',
    handler: async (req, svc) => {
      const entry = await svc.store.getAcl(ownKey(req), req.params['peer']!);
      if (!entry) throw new ApiError('not_found', 'no ACL entry for that peer');
      return ok(entry);
    },
  },
  {
    method: 'DELETE',
    path: '/v1/agents/:key/acl/:peer',
    auth: true,
    summary: 'Remove an ACL entry',
    body: NO_BODY,
    reply: 'json',
    handler: async (req, svc) => {
      if (!(await svc.directory.deleteAcl(ownKey(req), req.params['peer']!)))
        throw new ApiError('not_found', 'no ACL entry for that peer');
      return noContent;
    },
  },
  {
    method: 'PUT',
    path: '/v1/agents/:key/webhook',
    auth: true,
    summary: 'Register or replace your webhook (re-enables it, resets its failure count)',
    body: JSON_BODY,
    reply: 'json',
    handler: async (req, svc) => {
      const key = ownKey(req);
      const input = req.json().value;
      if (!isPlainObject(input))
        throw new ApiError('bad_request', 'body must be a JSON object {url, secret}', { details: { field: 'body' } });
      const url = checkWebhookUrl(input['url'], svc.allowPrivateWebhooks);
      const secret = input['secret'];
      if (!isWebhookSecret(secret)) {
        const reason = `must be a string of ${WEBHOOK_SECRET_LIMITS.min}–${WEBHOOK_SECRET_LIMITS.max} characters`;
        throw new ApiError('bad_request', `secret: ${reason}`, { details: { field: 'secret', reason } });
      }
      return ok(webhookJson(await svc.store.putWebhook(key, url, secret, svc.clock.now())));
    },
  },
  {
    method: 'GET',
    path: '/v1/agents/:key/webhook',
    auth: true,
    summary: 'Your webhook (never its secret)',
    body: NO_BODY,
    reply: 'json',
    handler: async (req, svc) => {
      const hook = await svc.store.getWebhook(ownKey(req));
      if (!hook) throw new ApiError('not_found', 'no webhook is registered for this agent');
      return ok(webhookJson(hook));
    },
  },
  {
    method: 'DELETE',
    path: '/v1/agents/:key/webhook',
    auth: true,
    summary: 'Remove your webhook and its pending deliveries',
    body: NO_BODY,
    reply: 'json',
    handler: async (req, svc) => {
      await svc.store.deleteWebhook(ownKey(req));
      return noContent;
    },
  },
  {
    method: 'GET',
    path: '/v1/discover',
    auth: true,
    summary: 'Search public agents',
    body: NO_BODY,
    reply: 'json',
    handler: async (req, svc) => {
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
        throw new ApiError(
          'bad_request',
          `query parameter tag: at most ${LIMITS.discoverMaxTags} tags (got ${tags.length})`,
          {
            details: { field: 'tag', reason: `at most ${LIMITS.discoverMaxTags} tags`, limit: LIMITS.discoverMaxTags },
          },
        );
      }
      for (const tag of tags)
        if (tag.length > LIMITS.tagMax)
          throw new ApiError('bad_request', `query parameter tag: at most ${LIMITS.tagMax} characters`, {
            details: { field: 'tag', reason: 'too long' },
          });
      const words = [...new Set((q ?? '').toLowerCase().split(/\s+/).filter(Boolean))];
      if (words.length > LIMITS.discoverMaxWords) {
        throw new ApiError(
          'bad_request',
          `query parameter q: at most ${LIMITS.discoverMaxWords} words (got ${words.length})`,
          {
            details: { field: 'q', reason: `at most ${LIMITS.discoverMaxWords} words`, limit: LIMITS.discoverMaxWords },
          },
        );
      }
      // A page holds at most `limit` agents and about DISCOVER_PAGE_BYTES of their profiles (at
      // least one): 100 agents of 20 capabilities with 16 KiB schemas each would be 35 MB.
      const { agents: page, hasMore } = await svc.store.discover({
        tags,
        ...(tagPrefix === undefined ? {} : { tag_prefix: tagPrefix }),
        ...(name === undefined ? {} : { name }),
        words,
        ...(activeSince === undefined ? {} : { active_since: activeSince }),
        ...(after === undefined ? {} : { after }),
        limit,
        maxBytes: DISCOVER_PAGE_BYTES,
      });
      const last = page[page.length - 1];
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
    body: NO_BODY,
    reply: 'json',
    handler: async (req, svc) => {
      // The most used tags only, however many exist: each agent may bring 400 tags of its own.
      const limit = intParam(req.query, 'limit', CAPABILITY_TAGS_MAX, 1, CAPABILITY_TAGS_MAX);
      const tags = await svc.store.capabilityTags(stringParam(req.query, 'prefix', 64), limit + 1);
      return ok({ capabilities: tags.slice(0, limit), has_more: tags.length > limit });
    },
  },
];
