/**
 * The relay's storage contract. Synchronous on purpose: the SQLite implementation is synchronous
 * (better-sqlite3), and a synchronous store makes "select then mark delivered" atomic for free in
 * a single-threaded server. Times are Unix milliseconds.
 */
import type {
  AclEntry,
  AclEntryType,
  Attachment,
  Capability,
  InboxPolicy,
  JsonObject,
  MessageStatus,
  Visibility,
} from '../protocol/types.js';

export interface AgentRecord {
  public_key: string;
  display_name: string | null;
  status: 'active' | 'suspended';
  visibility: Visibility;
  inbox_policy: InboxPolicy;
  created_at: number;
  last_active_at: number;
  metadata: Record<string, string>;
  capabilities: Capability[];
}

export interface MessageRecord {
  /** Store order; assigned on insert. */
  seq: number;
  message_id: string;
  sender_key: string;
  recipient_key: string;
  content_type: string;
  /** The body, serialised once. */
  body_json: string;
  attachments: Attachment[];
  thread_id: string | null;
  in_reply_to: string | null;
  metadata: JsonObject;
  status: MessageStatus;
  created_at: number;
  expires_at: number;
  delivered_at: number | null;
}

export interface InboxFilter {
  status: MessageStatus;
  sender_key?: string;
  in_reply_to?: string;
  thread_id?: string;
  /** Only messages created strictly after this instant. */
  since?: number;
  /** Only messages after this position in `(created_at, message_id)` order (cursor). */
  after?: MessagePosition;
}

/** A place in the `(created_at, message_id)` order that polls and threads use (spec §3.6). */
export interface MessagePosition {
  t: number;
  id: string;
}

export interface DiscoverQuery {
  tags: string[];
  tag_prefix?: string;
  name?: string;
  /** Lower-case words that must all appear in the agent's searchable text. */
  words: string[];
  active_since?: number;
  /** Cursor: continue after (last_active_at, public_key). */
  after?: { t: number; k: string };
  limit: number;
}

/** Writes the relay groups into one transaction (group commit). */
export interface WriteBatch {
  messages: MessageRecord[];
  delivered: Array<{ message_id: string; recipient_key: string }>;
  active: Map<string, number>;
}

export interface Store {
  readonly location: string;

  getAgent(key: string): AgentRecord | undefined;
  /** Inserts the agent unless it exists; returns the stored record. */
  ensureAgent(record: AgentRecord): AgentRecord;
  saveAgent(record: AgentRecord): void;
  /** Removes the agent, its ACL entries and every message addressed to it. */
  deleteAgent(key: string): void;
  discover(query: DiscoverQuery): AgentRecord[];
  capabilityTags(prefix: string | undefined): Array<{ tag: string; agent_count: number }>;

  /** Applies a batch in one transaction; assigns `seq` to the inserted messages. */
  commit(batch: WriteBatch, now: number): void;
  getMessage(id: string): MessageRecord | undefined;
  /**
   * A poll: `sent`, unexpired messages for `recipient`, oldest first, read one at a time and each
   * offered to `serve` (already showing `delivered` and `delivered_at = now`). Only those it takes
   * are marked delivered, in the same transaction; one it skips (cannot be served) stays `sent`;
   * `full` ends the page with `hasMore`. Stored rows that cannot be decoded are skipped the same
   * way. At most `limit` are taken.
   */
  takeSent(recipient: string, filter: InboxFilter, limit: number, now: number, serve: (record: MessageRecord) => ServeVerdict): TakeResult;
  /** A read-only inbox view (delivered / expired history): a page of at most `limit` messages and about `maxBytes` of bodies. */
  listInbox(recipient: string, filter: InboxFilter, limit: number, now: number, maxBytes: number): MessagePageRecords;
  /**
   * `sent`, unexpired messages for `recipient` after `afterSeq`, oldest first (WebSocket backlog):
   * at most `limit`, and no more once their bodies reach `maxBytes` (at least one).
   */
  pending(recipient: string, afterSeq: number, limit: number, now: number, maxBytes?: number): MessageRecord[];
  /** A page of a thread the caller took part in: at most `limit` messages and about `maxBytes` of bodies. */
  thread(caller: string, threadId: string, after: MessagePosition | undefined, limit: number, maxBytes: number): MessagePageRecords;
  /** Marks overdue `sent` messages expired and purges what has outlived its retention. */
  sweep(now: number, expiredRetentionMs: number): { expired: number; purged: number };

  putAcl(owner: string, peer: string, type: AclEntryType, now: number): AclEntry;
  getAcl(owner: string, peer: string): AclEntry | undefined;
  listAcl(owner: string, type: AclEntryType | undefined, afterId: number, limit: number): AclEntry[];
  deleteAcl(owner: string, peer: string): boolean;

  /** A cheap round trip to the storage. */
  ping(): void;
  /** A real check: the disk (free space, the file, its pages) and a small committed write. */
  health(now: number): StorageHealth;
  close(): void;
}

export interface StorageHealth {
  ok: boolean;
  /** Why not: `disk_full`, `corrupt`, `missing`, `write_failed`. */
  reason?: string;
  detail?: string;
}

/** Most bytes of message bodies one page of messages holds (at least one message): memory by bytes. */
export const MESSAGE_PAGE_BYTES = 8 * 1024 * 1024;

/** A page of stored messages; undecodable rows are left out. */
export interface MessagePageRecords {
  messages: MessageRecord[];
  hasMore: boolean;
}

/** What `serve` says about one message offered to a poll. */
export type ServeVerdict = 'taken' | 'skip' | 'full';

export interface TakeResult {
  messages: MessageRecord[];
  hasMore: boolean;
  /** Ids of messages left `sent` because they could not be served. */
  skipped: string[];
}
