/**
 * Agents and their inbox rules, cached in front of the store. Auto-creation with the documented
 * defaults, the once-a-minute activity stamp, and the early inbox-policy decision live here.
 *
 * The caches are this process's (`Cache`, `lru.ts`). They stay right when other processes share
 * the store because every change is published on the bus (`agent.changed`, `agent.deleted`,
 * `acl.changed`) and every directory drops what an event names, its own events included. The
 * early policy decision may still be a moment stale; the store decides again inside the commit
 * (`Store.commit`), so a stale cache can delay a refusal, never let a message through.
 *
 * Both caches are bounded by count and by (estimated) bytes: a profile may be ~450 KiB, so a count
 * alone would allow gigabytes. ACL decisions are cached per (owner, peer) pair, never as whole
 * lists, so one owner with a huge list costs no more than anyone else.
 */
import { AGENT_DEFAULTS, TIMING } from '../protocol/constants.js';
import type { AclEntry, AclEntryType, ProfilePatch } from '../protocol/types.js';
import type { Batcher } from './batcher.js';
import type { Bus } from './bus.js';
import { type Cache, Lru } from './lru.js';
import { type InboxRefusal, inboxRefusal } from './policy.js';
import type { AgentRecord, Store } from './store/store.js';

const MiB = 1024 * 1024;
/** Agent profiles cached: at most this many, and about this many bytes. */
const MAX_AGENTS = 50_000;
const MAX_AGENT_BYTES = 32 * MiB;
/** ACL decisions cached (each ~200 bytes). */
const MAX_ACL_PAIRS = 100_000;

/** A rough size of a cached profile: what its variable parts serialise to, plus overhead. */
function agentBytes(agent: AgentRecord | null): number {
  if (!agent) return 128;
  return (
    512 +
    2 * (agent.display_name?.length ?? 0) +
    2 * JSON.stringify(agent.metadata).length +
    2 * JSON.stringify(agent.capabilities).length
  );
}

/** Profiles by key (`null`: "no such agent"). */
export type AgentCache = Cache<string, AgentRecord | null>;
/** ACL decisions by `"owner peer"` (`null`: "no entry"). */
export type AclCache = Cache<string, AclEntryType | null>;

/** The default caches: bounded LRUs. */
export function defaultCaches(): { agents: AgentCache; acl: AclCache } {
  return {
    agents: new Lru<string, AgentRecord | null>(MAX_AGENTS, MAX_AGENT_BYTES, agentBytes),
    acl: new Lru<string, AclEntryType | null>(MAX_ACL_PAIRS, MAX_ACL_PAIRS * 256, () => 200),
  };
}

export type { InboxRefusal } from './policy.js';

export interface DirectoryDeps {
  store: Store;
  batcher: Batcher;
  bus: Bus;
  caches: { agents: AgentCache; acl: AclCache };
  /** Told about a background failure (an activity stamp that could not load its agent). */
  onError(err: unknown): void;
}

export class Directory {
  readonly #store: Store;
  readonly #batcher: Batcher;
  readonly #bus: Bus;
  readonly #agents: AgentCache;
  readonly #acl: AclCache;
  readonly #onError: (err: unknown) => void;

  constructor(deps: DirectoryDeps) {
    this.#store = deps.store;
    this.#batcher = deps.batcher;
    this.#bus = deps.bus;
    this.#agents = deps.caches.agents;
    this.#acl = deps.caches.acl;
    this.#onError = deps.onError;
    this.#bus.subscribe('agent.changed', (e) => this.#agents.delete(e.agent));
    this.#bus.subscribe('agent.deleted', (e) => {
      this.#agents.delete(e.agent);
      // Its ACL rows are gone. Pairs are cached by (owner, peer), so forget them all: deletions are
      // rare, and a miss costs one indexed lookup.
      this.#acl.clear();
    });
    this.#bus.subscribe('acl.changed', (e) => this.#acl.delete(this.#aclKey(e.owner, e.peer)));
    // Invalidations may have been missed: forget everything cached.
    this.#bus.subscribe('bus.resync', () => {
      this.#agents.clear();
      this.#acl.clear();
    });
  }

  async get(key: string): Promise<AgentRecord | undefined> {
    const cached = this.#agents.get(key);
    if (cached !== undefined) return cached ?? undefined;
    return this.#agents.set(key, (await this.#store.getAgent(key)) ?? null) ?? undefined;
  }

  /** The agent for an authenticated key, created with the defaults on first sight (§2.3 step 6). */
  async ensure(key: string, now: number): Promise<AgentRecord> {
    const existing = await this.get(key);
    if (existing) return existing;
    const { agent, created } = await this.#store.ensureAgent({
      public_key: key,
      display_name: null,
      status: 'active',
      visibility: AGENT_DEFAULTS.visibility,
      inbox_policy: AGENT_DEFAULTS.inbox_policy,
      created_at: now,
      last_active_at: now,
      metadata: {},
      capabilities: [],
    });
    // Other processes may have cached "no such agent".
    if (created) this.#bus.publish([{ type: 'agent.changed', agent: key, status: agent.status }]);
    return this.#agents.set(key, agent);
  }

  /**
   * Stamps activity, at most once per minute per agent (§3.5). Never waits and never throws: a
   * profile not in the cache is loaded in the background (a failure is reported, not raised).
   */
  touch(key: string, now: number): void {
    const cached = this.#agents.get(key);
    if (cached !== undefined) {
      this.#stamp(cached, key, now);
      return;
    }
    this.get(key).then(
      (agent) => this.#stamp(agent ?? null, key, now),
      (err: unknown) => this.#onError(err),
    );
  }

  #stamp(agent: AgentRecord | null, key: string, now: number): void {
    if (!agent || now - agent.last_active_at < TIMING.lastActiveResolutionMs) return;
    agent.last_active_at = now;
    this.#batcher.touch(key, now);
  }

  /** Applies a validated PATCH: omitted fields untouched; metadata and capabilities replaced. */
  async update(key: string, patch: ProfilePatch, now: number): Promise<AgentRecord> {
    const current = await this.ensure(key, now);
    // Activity is stamped by `touch` (at most once a minute), not by what the request does.
    const next: AgentRecord = { ...current };
    if (patch.display_name !== undefined) next.display_name = patch.display_name;
    if (patch.visibility !== undefined) next.visibility = patch.visibility;
    if (patch.inbox_policy !== undefined) next.inbox_policy = patch.inbox_policy;
    if (patch.metadata !== undefined) next.metadata = patch.metadata;
    if (patch.capabilities !== undefined) next.capabilities = patch.capabilities;
    return this.#save(next);
  }

  /** Suspends or reactivates an agent (operator action; there is no public API for it). */
  async setStatus(key: string, status: AgentRecord['status'], now: number): Promise<AgentRecord> {
    return this.#save({ ...(await this.ensure(key, now)), status });
  }

  async #save(next: AgentRecord): Promise<AgentRecord> {
    await this.#store.saveAgent(next);
    this.#bus.publish([{ type: 'agent.changed', agent: next.public_key, status: next.status }]);
    return this.#agents.set(next.public_key, next);
  }

  /** Deletes the agent and what it owns; its sockets are closed by whoever holds them (bus). */
  async delete(key: string): Promise<void> {
    // Messages to it still waiting for the group commit are stored first, then deleted with the rest.
    await this.#batcher.flush();
    await this.#store.deleteAgent(key);
    this.#bus.publish([{ type: 'agent.deleted', agent: key }]);
    this.#agents.set(key, null);
  }

  #aclKey(owner: string, peer: string): string {
    return `${owner} ${peer}`;
  }

  /** The ACL entry type `owner` has for `peer`, if any. */
  async aclFor(owner: string, peer: string): Promise<AclEntryType | undefined> {
    const key = this.#aclKey(owner, peer);
    const cached = this.#acl.get(key);
    if (cached !== undefined) return cached ?? undefined;
    return this.#acl.set(key, (await this.#store.getAcl(owner, peer))?.entry_type ?? null) ?? undefined;
  }

  async putAcl(owner: string, peer: string, type: AclEntryType, now: number): Promise<AclEntry> {
    const entry = await this.#store.putAcl(owner, peer, type, now);
    this.#bus.publish([{ type: 'acl.changed', owner, peer }]);
    this.#acl.set(this.#aclKey(owner, peer), type);
    return entry;
  }

  async deleteAcl(owner: string, peer: string): Promise<boolean> {
    const removed = await this.#store.deleteAcl(owner, peer);
    this.#bus.publish([{ type: 'acl.changed', owner, peer }]);
    this.#acl.set(this.#aclKey(owner, peer), null);
    return removed;
  }

  /**
   * Whether `sender` may write to `recipientKey` now, from the caches (the commit checks again).
   * Answered at once when the caches know (the common case: no promise, no turn of the microtask
   * queue on the send path); otherwise a promise that loads what is missing.
   */
  refusal(recipientKey: string, sender: string): InboxRefusal | undefined | Promise<InboxRefusal | undefined> {
    const cached = this.#agents.get(recipientKey);
    if (cached !== undefined) {
      const recipient = cached ?? undefined;
      if (!this.#needsAcl(recipient, sender)) return inboxRefusal(recipient, sender, () => undefined);
      const entry = this.#acl.get(this.#aclKey(recipientKey, sender));
      if (entry !== undefined) return inboxRefusal(recipient, sender, () => entry ?? undefined);
    }
    return this.#loadRefusal(recipientKey, sender);
  }

  async #loadRefusal(recipientKey: string, sender: string): Promise<InboxRefusal | undefined> {
    const recipient = await this.get(recipientKey);
    const entry = this.#needsAcl(recipient, sender) ? await this.aclFor(recipientKey, sender) : undefined;
    return inboxRefusal(recipient, sender, () => entry);
  }

  /** Whether the decision for `sender` depends on `recipient`'s ACL. */
  #needsAcl(recipient: AgentRecord | undefined, sender: string): boolean {
    const policy = recipient?.inbox_policy;
    return (
      recipient?.status === 'active' &&
      recipient.public_key !== sender &&
      (policy === 'allowlist' || policy === 'blocklist')
    );
  }
}
