/**
 * Agents and their inbox rules, cached in memory in front of the store (one relay process owns
 * its database — `DataDirLock` makes sure — so the cache is always right). Auto-creation with the
 * documented defaults, the once-a-minute activity stamp, and the inbox policy decision live here.
 *
 * Both caches are bounded by count and by (estimated) bytes: a profile may be ~450 KiB, so a count
 * alone would allow gigabytes. ACL decisions are cached per (owner, peer) pair, never as whole
 * lists, so one owner with a huge list costs no more than anyone else.
 */
import { AGENT_DEFAULTS, TIMING } from '../protocol/constants.js';
import type { AclEntry, AclEntryType, ProfilePatch } from '../protocol/types.js';
import type { Batcher } from './batcher.js';
import { Lru } from './lru.js';
import type { AgentRecord, Store } from './store.js';

const MiB = 1024 * 1024;
/** Agent profiles cached: at most this many, and about this many bytes. */
const MAX_AGENTS = 50_000;
const MAX_AGENT_BYTES = 32 * MiB;
/** ACL decisions cached (each ~200 bytes). */
const MAX_ACL_PAIRS = 100_000;

/** A rough size of a cached profile: what its variable parts serialise to, plus overhead. */
function agentBytes(agent: AgentRecord | null): number {
  if (!agent) return 128;
  return 512 + 2 * (agent.display_name?.length ?? 0) + 2 * JSON.stringify(agent.metadata).length + 2 * JSON.stringify(agent.capabilities).length;
}

/** Why a send is refused by the recipient's side, or undefined when it may go through. */
export type InboxRefusal = 'acl_denied' | 'forbidden' | undefined;

/**
 * The inbox policy decision (spec §3.9; sending to yourself always allowed: our choice). A
 * recipient without an agent record is treated as `open`.
 */
export function inboxRefusal(recipient: AgentRecord | undefined, sender: string, acl: (peer: string) => AclEntryType | undefined): InboxRefusal {
  if (!recipient) return undefined;
  if (recipient.status === 'suspended') return 'forbidden';
  if (recipient.public_key === sender) return undefined;
  switch (recipient.inbox_policy) {
    case 'open':
      return undefined;
    case 'closed':
      return 'acl_denied';
    case 'allowlist':
      return acl(sender) === 'allow' ? undefined : 'acl_denied';
    case 'blocklist':
      return acl(sender) === 'block' ? 'acl_denied' : undefined;
  }
}

export class Directory {
  readonly #store: Store;
  readonly #batcher: Batcher;
  readonly #agents = new Lru<string, AgentRecord | null>(MAX_AGENTS, MAX_AGENT_BYTES, agentBytes);
  /** `owner peer` → the entry type, or null for "no entry". */
  readonly #acl = new Lru<string, AclEntryType | null>(MAX_ACL_PAIRS, MAX_ACL_PAIRS * 256, () => 200);

  constructor(store: Store, batcher: Batcher) {
    this.#store = store;
    this.#batcher = batcher;
  }

  get(key: string): AgentRecord | undefined {
    const cached = this.#agents.get(key);
    if (cached !== undefined) return cached ?? undefined;
    return this.#agents.set(key, this.#store.getAgent(key) ?? null) ?? undefined;
  }

  /** The agent for an authenticated key, created with the defaults on first sight (§2.3 step 6). */
  ensure(key: string, now: number): AgentRecord {
    const existing = this.get(key);
    if (existing) return existing;
    const record = this.#store.ensureAgent({
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
    return this.#agents.set(key, record);
  }

  /** Stamps activity, at most once per minute per agent (§3.5). */
  touch(key: string, now: number): void {
    const agent = this.get(key);
    if (!agent || now - agent.last_active_at < TIMING.lastActiveResolutionMs) return;
    agent.last_active_at = now;
    this.#batcher.touch(key, now);
  }

  /** Applies a validated PATCH: omitted fields untouched; metadata and capabilities replaced. */
  update(key: string, patch: ProfilePatch, now: number): AgentRecord {
    const current = this.ensure(key, now);
    // Activity is stamped by `touch` (at most once a minute), not by what the request does.
    const next: AgentRecord = { ...current };
    if (patch.display_name !== undefined) next.display_name = patch.display_name;
    if (patch.visibility !== undefined) next.visibility = patch.visibility;
    if (patch.inbox_policy !== undefined) next.inbox_policy = patch.inbox_policy;
    if (patch.metadata !== undefined) next.metadata = patch.metadata;
    if (patch.capabilities !== undefined) next.capabilities = patch.capabilities;
    this.#store.saveAgent(next);
    return this.#agents.set(key, next);
  }

  /** Suspends or reactivates an agent (operator action; there is no public API for it). */
  setStatus(key: string, status: AgentRecord['status'], now: number): AgentRecord {
    const next = { ...this.ensure(key, now), status };
    this.#store.saveAgent(next);
    return this.#agents.set(key, next);
  }

  delete(key: string): void {
    this.#batcher.flush();
    this.#store.deleteAgent(key);
    this.#agents.set(key, null);
    // Its ACL rows are gone. Pairs are cached by (owner, peer), so forget them all: deletions are
    // rare, and a miss costs one indexed lookup.
    this.#acl.clear();
  }

  #aclKey(owner: string, peer: string): string {
    return `${owner} ${peer}`;
  }

  /** The ACL entry type `owner` has for `peer`, if any. */
  aclFor(owner: string, peer: string): AclEntryType | undefined {
    const key = this.#aclKey(owner, peer);
    const cached = this.#acl.get(key);
    if (cached !== undefined) return cached ?? undefined;
    return this.#acl.set(key, this.#store.getAcl(owner, peer)?.entry_type ?? null) ?? undefined;
  }

  putAcl(owner: string, peer: string, type: AclEntryType, now: number): AclEntry {
    const entry = this.#store.putAcl(owner, peer, type, now);
    this.#acl.set(this.#aclKey(owner, peer), type);
    return entry;
  }

  deleteAcl(owner: string, peer: string): boolean {
    const removed = this.#store.deleteAcl(owner, peer);
    this.#acl.set(this.#aclKey(owner, peer), null);
    return removed;
  }

  /** Whether `sender` may write to `recipientKey` now. */
  refusal(recipientKey: string, sender: string): InboxRefusal {
    return inboxRefusal(this.get(recipientKey), sender, (peer) => this.aclFor(recipientKey, peer));
  }
}
