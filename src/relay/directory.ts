/**
 * Agents and their inbox rules, cached in memory in front of the store (one relay process owns
 * its database, so the cache is always right). Auto-creation with the documented defaults, the
 * once-a-minute activity stamp, and the inbox policy decision live here.
 */
import { AGENT_DEFAULTS, TIMING } from '../protocol/constants.js';
import type { AclEntry, AclEntryType, ProfilePatch } from '../protocol/types.js';
import type { Batcher } from './batcher.js';
import type { AgentRecord, Store } from './store.js';

const MAX_CACHED = 50_000;

/** Why a send is refused by the recipient's side, or undefined when it may go through. */
export type InboxRefusal = 'acl_denied' | 'forbidden' | undefined;

/**
 * The inbox policy decision (spec §3.9; sending to yourself always allowed: our choice). A
 * recipient without an agent record is treated as `open`.
 */
export function inboxRefusal(recipient: AgentRecord | undefined, sender: string, acl: Map<string, AclEntryType> | undefined): InboxRefusal {
  if (!recipient) return undefined;
  if (recipient.status === 'suspended') return 'forbidden';
  if (recipient.public_key === sender) return undefined;
  switch (recipient.inbox_policy) {
    case 'open':
      return undefined;
    case 'closed':
      return 'acl_denied';
    case 'allowlist':
      return acl?.get(sender) === 'allow' ? undefined : 'acl_denied';
    case 'blocklist':
      return acl?.get(sender) === 'block' ? 'acl_denied' : undefined;
  }
}

export class Directory {
  readonly #store: Store;
  readonly #batcher: Batcher;
  readonly #agents = new Map<string, AgentRecord | null>();
  readonly #acl = new Map<string, Map<string, AclEntryType>>();

  constructor(store: Store, batcher: Batcher) {
    this.#store = store;
    this.#batcher = batcher;
  }

  #remember<K, V, T extends V>(map: Map<K, V>, key: K, value: T): T {
    if (map.size >= MAX_CACHED && !map.has(key)) map.delete(map.keys().next().value as K);
    map.set(key, value);
    return value;
  }

  get(key: string): AgentRecord | undefined {
    const cached = this.#agents.get(key);
    if (cached !== undefined) return cached ?? undefined;
    return this.#remember(this.#agents, key, this.#store.getAgent(key) ?? null) ?? undefined;
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
    return this.#remember(this.#agents, key, record);
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
    return this.#remember(this.#agents, key, next);
  }

  /** Suspends or reactivates an agent (operator action; there is no public API for it). */
  setStatus(key: string, status: AgentRecord['status'], now: number): AgentRecord {
    const next = { ...this.ensure(key, now), status };
    this.#store.saveAgent(next);
    return this.#remember(this.#agents, key, next);
  }

  delete(key: string): void {
    this.#batcher.flush();
    this.#store.deleteAgent(key);
    this.#agents.set(key, null);
    this.#acl.delete(key);
  }

  acl(owner: string): Map<string, AclEntryType> {
    return this.#acl.get(owner) ?? this.#remember(this.#acl, owner, this.#store.aclEntries(owner));
  }

  putAcl(owner: string, peer: string, type: AclEntryType, now: number): AclEntry {
    const entry = this.#store.putAcl(owner, peer, type, now);
    this.acl(owner).set(peer, type);
    return entry;
  }

  deleteAcl(owner: string, peer: string): boolean {
    const removed = this.#store.deleteAcl(owner, peer);
    this.acl(owner).delete(peer);
    return removed;
  }

  /** Whether `sender` may write to `recipientKey` now. */
  refusal(recipientKey: string, sender: string): InboxRefusal {
    const recipient = this.get(recipientKey);
    return inboxRefusal(recipient, sender, recipient ? this.acl(recipientKey) : undefined);
  }
}
