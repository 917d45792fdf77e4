/**
 * What a route handler may use, and the small helpers every route table shares: JSON replies,
 * the `{publicKey}` path parameter (with `me`), own-key-only checks.
 */
import type { Clock } from '../core/clock.js';
import { isPublicKey } from '../protocol/encoding.js';
import { formatInstant } from '../protocol/signing.js';
import type { AgentProfile } from '../protocol/types.js';
import type { BlobStore } from './blobs/blob-store.js';
import type { Directory } from './directory.js';
import { ApiError } from './errors.js';
import type { Logger } from './log.js';
import type { Messenger } from './messenger.js';
import type { JsonReply, Request, Route } from './router.js';
import type { AgentRecord, BlobQuota, StorageHealth, Store } from './store/store.js';

/** The blob side of a relay: its bytes store (opened on first use) and its limits. */
export interface BlobServices {
  /** The bytes store, or undefined when this relay keeps no blobs (no `blobStore`, no `dataDir`). */
  store(): Promise<BlobStore | undefined>;
  maxBytes: number;
  quota: BlobQuota;
  ttlMs: number;
}

export interface Services {
  clock: Clock;
  store: Store;
  blobs: BlobServices;
  directory: Directory;
  messenger: Messenger;
  version: string;
  maxBodyBytes: number;
  logger: Logger;
  /** Storage health (a real probe, its verdict reused for a second). */
  storageHealth(): Promise<StorageHealth>;
  /** Open WebSocket connections of this process. */
  connections(): number;
  /** Webhook URLs may name private addresses (`allowPrivateWebhooks`). */
  allowPrivateWebhooks: boolean;
}

/** A route of the relay's own tables. */
export type RelayRoute = Route<Services>;

export const ok = (body: unknown, status = 200): JsonReply => ({ kind: 'json', status, body });
export const noContent: JsonReply = { kind: 'json', status: 204 };

export function profile(agent: AgentRecord): AgentProfile {
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
export function pathKey(req: Request, name = 'key'): string {
  const raw = req.params[name]!;
  const key = raw === 'me' ? req.caller : raw;
  if (!isPublicKey(key)) throw new ApiError('bad_request', `${raw} is not a public key`, { details: { field: name } });
  return key;
}

/** Own-profile-only routes (§2.4): any other key is 403 forbidden. */
export function ownKey(req: Request): string {
  const key = pathKey(req);
  if (key !== req.caller) throw new ApiError('forbidden', 'you can only do this for your own agent');
  return key;
}

export async function existingAgent(svc: Services, key: string): Promise<AgentRecord> {
  const agent = await svc.directory.get(key);
  if (!agent) throw new ApiError('agent_not_found', `no agent with key ${key}`);
  return agent;
}

export const notSupported = (what: string) => (): never => {
  throw new ApiError('not_found', `${what} are not supported by this relay`);
};
