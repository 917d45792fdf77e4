/**
 * The relay's storage contract. Asynchronous, so that any backend fits: SQLite in this process
 * (`sqlite-store.ts`) or a database several relay processes share. Times are Unix milliseconds.
 *
 * A single-threaded server on a synchronous store got some atomicity for free: "select a page,
 * then mark it delivered" or "check the ACL, then insert" could not be interleaved with anything.
 * With an asynchronous store and several writers that is no longer true, so each such step is
 * ONE method here, atomic on its own, and `test/relay/store.contract.ts` proves it for every
 * backend:
 *
 * - `takeSent`: a poll page is read and marked delivered in one transaction; concurrent callers
 *   (in this process or another) never get the same message.
 * - `commit`: the recipient's inbox policy (§3.9) is checked again inside the transaction that
 *   inserts each message, against the stored agent and ACL, so an ACL change that committed first
 *   is never overtaken by a message that was checked against an older cache.
 * - `ensureAgent`: insert-if-absent, never overwriting a concurrent creation.
 * - `commit` also creates a pending webhook delivery for each message it stores whose recipient
 *   has an enabled webhook at that moment (same transaction: a crash loses none).
 * - `claimDeliveries`: due deliveries are handed out under a lease (their next attempt moved to
 *   `now + leaseMs`); concurrent claimers never get the same one (Postgres: `FOR UPDATE SKIP
 *   LOCKED`), and a claimer that dies leaves them due again when the lease ends.
 * - `completeDelivery` / `failDelivery`: an attempt's outcome, with the message's transition and
 *   the webhook's failure count, in one transaction.
 *
 * Connection counting is not storage: it lives behind `ConnectionRegistry` (`../connections.ts`).
 * Reads must see every committed write (no lagging replica behind `getMessages`): a bus event is
 * published after its commit, and its subscriber fetches what it names.
 *
 * What a store is NOT asked to do: order commits. `seq` is store order (assigned on insert), and
 * with several writers a smaller `seq` may commit after a larger one; readers that must not miss
 * a message (the WebSocket push) combine `seq` pages with bus events (`../delivery.ts`).
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
} from '../../protocol/types.js';

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
  /** Store order; assigned on insert (not commit order: see the file comment). */
  seq: number;
  message_id: string;
  sender_key: string;
  recipient_key: string;
  content_type: string;
  /** The body, serialised once: the sender's verbatim JSON text. */
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
  /**
   * A poll's take id (docs/protocol.md §3.6, our extension): `takeSent` records it on the messages
   * it marks delivered; a `delivered` listing keeps only the messages taken under it.
   */
  take?: string;
}

/** A place in the `(created_at, message_id)` order that polls and threads use (docs/protocol.md §3.6). */
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
  /** Most agents in the page. */
  limit: number;
  /**
   * Most bytes of stored capabilities and display names in the page, at least one agent: a page
   * stops early (with `hasMore`) rather than read 100 agents of 350 KB each.
   */
  maxBytes: number;
}

/** A page of discovered agents; `hasMore` when more match past its last. */
export interface AgentPage {
  agents: AgentRecord[];
  hasMore: boolean;
}

/** Writes the relay groups into one transaction (group commit). */
export interface WriteBatch {
  messages: MessageRecord[];
  /** Acknowledgements: `sent` and unexpired → `delivered`. */
  delivered: Array<{ message_id: string; recipient_key: string }>;
  /** Activity stamps: agent → time (only ever moves forward). */
  active: Map<string, number>;
}

/** Why the recipient's side refuses a message (§3.9): its policy, or it is suspended. */
export type InboxRefusal = 'acl_denied' | 'forbidden';

/**
 * Why a commit did not store a message: the recipient's policy, or an attachment whose blob no
 * longer exists, is not the sender's or has expired (it was deleted between the send's check and
 * the commit).
 */
export type CommitRefusal = InboxRefusal | { blob_missing: string };

export interface CommitResult {
  /** Messages of the batch NOT stored, with the reason (policy or a missing blob) at commit time. */
  refused: Map<string, CommitRefusal>;
  /** Acknowledgements that moved a message from `sent` to `delivered`. */
  delivered: Array<{ message_id: string; recipient_key: string }>;
  /**
   * The stored messages given a webhook delivery, when the store says (SQLite does): only those
   * wake the webhook worker. Absent: not known, and every stored message wakes it.
   */
  webhooks?: ReadonlySet<string>;
}

/** Metadata of one blob (docs/protocol.md §3.7); the bytes live in a `BlobStore`. */
export interface BlobRecord {
  /** `blob_` + 12 hex digits. */
  blob_id: string;
  /** The uploader. */
  owner_key: string;
  /** SHA-256 of the bytes, lowercase hex. */
  hash: string;
  size: number;
  content_type: string;
  created_at: number;
  /** Upload time + 7 days, extended to at least the `expires_at` of every message referencing it. */
  expires_at: number;
}

/** What an agent's unexpired blobs take. */
export interface BlobUsage {
  count: number;
  bytes: number;
}

/** Per-agent limits (§7): `507 insufficient_storage` beyond. */
export interface BlobQuota {
  maxCount: number;
  maxBytes: number;
}

export type InsertBlobResult =
  | { inserted: true; usage: BlobUsage }
  /** Over quota (`count` or `bytes`); `usage` is what the owner has without this blob. */
  | { inserted: false; reason: 'count' | 'bytes'; usage: BlobUsage };

export interface Store {
  /** Where the data lives, for logs and errors (a file path, a database name without secrets). */
  readonly location: string;

  getAgent(key: string): Promise<AgentRecord | undefined>;
  /** Inserts the agent unless it exists (atomically); returns the stored record and whether it was created. */
  ensureAgent(record: AgentRecord): Promise<{ agent: AgentRecord; created: boolean }>;
  /** Inserts or replaces the agent; `last_active_at` never moves backwards. */
  saveAgent(record: AgentRecord): Promise<void>;
  /**
   * Removes the agent, its capability tags, the ACL entries it owns, its webhook and pending
   * deliveries, every message addressed to it and the metadata of its blobs (the caller deletes
   * the bytes: `BlobStore.deleteOwner`).
   */
  deleteAgent(key: string): Promise<void>;
  /**
   * Public, active agents matching every condition, most recently active first, then by key: at
   * most `limit` of them and no more once their bytes reach `maxBytes` (at least one), read row
   * by row.
   */
  discover(query: DiscoverQuery): Promise<AgentPage>;
  /**
   * Tags of public, active agents with their agent counts, most used first, then by tag: the
   * first `limit` of them (a `LIMIT` in the query, so the answer is bounded however many tags exist).
   */
  capabilityTags(prefix: string | undefined, limit: number): Promise<Array<{ tag: string; agent_count: number }>>;

  /**
   * Applies a batch in one transaction: each message is inserted unless the recipient's policy
   * refuses its sender at that moment (see `inboxRefusal` in `../policy.ts`; a recipient without
   * an agent record is open), which assigns its `seq`; or unless one of its attachments names a
   * blob that is not (any more) the sender's unexpired blob (`{ blob_missing }`). A stored
   * message references its blobs (they become readable by its recipient and cannot be deleted
   * while it is unexpired) and extends each blob's `expires_at` to at least its own. Then the
   * acknowledgements and the activity stamps. All or nothing: on a failure nothing of the batch
   * is stored.
   */
  commit(batch: WriteBatch, now: number): Promise<CommitResult>;
  getMessage(id: string): Promise<MessageRecord | undefined>;
  /** The messages with these ids that exist and can be decoded, in any order. */
  getMessages(ids: readonly string[]): Promise<MessageRecord[]>;
  /**
   * A poll: `sent`, unexpired messages for `recipient`, oldest first, read one at a time and each
   * offered to `serve` (already showing `delivered` and `delivered_at = now`). Only those it takes
   * are marked delivered, in the same transaction; one it skips (cannot be served) stays `sent`;
   * `full` ends the page with `hasMore`. Stored rows that cannot be decoded are skipped the same
   * way. At most `limit` are taken. Atomic: concurrent takes never hand out the same message.
   */
  takeSent(
    recipient: string,
    filter: InboxFilter,
    limit: number,
    now: number,
    serve: (record: MessageRecord) => ServeVerdict,
  ): Promise<TakeResult>;
  /** A read-only inbox view (delivered / expired history): a page of at most `limit` messages and about `maxBytes` of bodies. */
  listInbox(
    recipient: string,
    filter: InboxFilter,
    limit: number,
    now: number,
    maxBytes: number,
  ): Promise<MessagePageRecords>;
  /**
   * `sent`, unexpired messages for `recipient` with `seq > afterSeq`, in `seq` order (WebSocket
   * backlog): at most `limit`, and no more once their bodies reach `maxBytes` (at least one).
   */
  pending(recipient: string, afterSeq: number, limit: number, now: number, maxBytes?: number): Promise<MessageRecord[]>;
  /** A page of a thread the caller took part in: at most `limit` messages and about `maxBytes` of bodies. */
  thread(
    caller: string,
    threadId: string,
    after: MessagePosition | undefined,
    limit: number,
    maxBytes: number,
  ): Promise<MessagePageRecords>;
  /** Marks overdue `sent` messages expired, purges what has outlived its retention, and drops references of expired messages to blobs. */
  sweep(now: number, expiredRetentionMs: number): Promise<{ expired: number; purged: number }>;

  // ── blobs (§3.7): metadata, quotas, message references ──
  /**
   * Inserts the blob's metadata unless that would put its owner over `quota` (counting the
   * owner's unexpired blobs at `now`). Check and insert are ONE atomic step: concurrent uploads
   * of one agent never exceed the quota together.
   */
  insertBlob(record: BlobRecord, quota: BlobQuota, now: number): Promise<InsertBlobResult>;
  /** The metadata of a blob, expired or not. */
  getBlob(blobId: string): Promise<BlobRecord | undefined>;
  /**
   * The unexpired blob if `agent` may read it: its owner, or the sender or recipient of an
   * unexpired message listing it as an attachment. Otherwise undefined.
   */
  readableBlob(blobId: string, agent: string, now: number): Promise<BlobRecord | undefined>;
  /** Count and bytes of `owner`'s unexpired blobs. */
  blobUsage(owner: string, now: number): Promise<BlobUsage>;
  /**
   * Removes the metadata of `owner`'s blob, atomically refusing while an unexpired message
   * references it. `not_found` when there is no such blob of that owner.
   */
  deleteBlob(owner: string, blobId: string, now: number): Promise<'deleted' | 'not_found' | 'referenced'>;
  /**
   * Removes the metadata of at most `limit` expired, unreferenced blobs and returns them, so that
   * their bytes can be deleted after (a crash in between leaves an orphan file, never a record
   * without bytes that a message could still point to).
   */
  sweepBlobs(now: number, limit: number): Promise<Array<{ owner_key: string; blob_id: string }>>;

  /** Adds or changes the entry (its `id` and `created_at` stay those of the first put). */
  putAcl(owner: string, peer: string, type: AclEntryType, now: number): Promise<AclEntry>;
  getAcl(owner: string, peer: string): Promise<AclEntry | undefined>;
  /** Entries of `owner` with `id > afterId`, by `id`, optionally of one type. */
  listAcl(owner: string, type: AclEntryType | undefined, afterId: number, limit: number): Promise<AclEntry[]>;
  deleteAcl(owner: string, peer: string): Promise<boolean>;

  /** Registers or replaces `agent`'s webhook: enabled, `consecutive_failures` 0, `created_at` now. */
  putWebhook(agent: string, url: string, secret: string, now: number): Promise<WebhookRecord>;
  getWebhook(agent: string): Promise<WebhookRecord | undefined>;
  /** Removes the webhook and its pending deliveries; false when there was none. */
  deleteWebhook(agent: string): Promise<boolean>;
  /**
   * Atomically claims due deliveries (`next_attempt_at <= now`) of enabled webhooks whose message
   * is still `sent` and unexpired, oldest due first: at most `limit` in all and, per agent, at
   * most `perAgent` minus what `inFlight` says that agent already has in flight. Each claimed
   * delivery's next attempt moves to `now + leaseMs` (so a claimer that dies leaves it due again
   * later, and concurrent claimers never get the same one). Due deliveries whose message was
   * delivered by another channel, expired or is gone are removed on the way.
   */
  claimDeliveries(now: number, options: ClaimOptions): Promise<DeliveryClaim[]>;
  /** The earliest `next_attempt_at` of a pending delivery of an enabled webhook, if any. */
  nextDeliveryAt(): Promise<number | undefined>;
  /**
   * A `200`: removes the delivery, marks its message delivered (if still `sent` and unexpired:
   * `delivered` true) and resets the webhook's `consecutive_failures` — one transaction.
   * Undefined when the delivery no longer exists.
   */
  completeDelivery(deliveryId: string, now: number): Promise<DeliveryCompletion | undefined>;
  /**
   * A failed attempt: `attempts` + 1 and the webhook's `consecutive_failures` + 1; the delivery is
   * due again at `nextAttemptAt`, or removed when that is null (its message expires first). When
   * the failures reach `disableAfter` the webhook is disabled and every pending delivery of that
   * agent removed — one transaction. Undefined when the delivery no longer exists.
   */
  failDelivery(
    deliveryId: string,
    now: number,
    nextAttemptAt: number | null,
    disableAfter: number,
  ): Promise<DeliveryFailure | undefined>;

  /** A cheap round trip to the storage. */
  ping(): Promise<void>;
  /** A real check: the disk or server, and a small committed write. Never rejects. */
  health(now: number): Promise<StorageHealth>;
  close(): Promise<void>;
}

/** A registered webhook (§3.8). The secret never leaves the relay except to sign. */
export interface WebhookRecord {
  agent_key: string;
  url: string;
  secret: string;
  enabled: boolean;
  consecutive_failures: number;
  created_at: number;
}

export interface ClaimOptions {
  /** Most deliveries claimed in all. */
  limit: number;
  /** How long a claim holds a delivery before it is due again (longer than an attempt can take). */
  leaseMs: number;
  /** Most deliveries per agent in flight at once (in this claimer). */
  perAgent: number;
  /** Deliveries the claimer already has in flight, by agent. */
  inFlight: ReadonlyMap<string, number>;
}

/** A delivery handed to one claimer: what to send and where. */
export interface DeliveryClaim {
  delivery_id: string;
  /** Failed attempts so far. */
  attempts: number;
  url: string;
  secret: string;
  message: MessageRecord;
}

export interface DeliveryCompletion {
  recipient_key: string;
  message_id: string;
  /** The message moved from `sent` to `delivered` now (false: another channel was first). */
  delivered: boolean;
}

export interface DeliveryFailure {
  consecutive_failures: number;
  /** This failure disabled the webhook. */
  disabled: boolean;
}

export interface StorageHealth {
  ok: boolean;
  /** Why not: `disk_full`, `corrupt`, `missing`, `write_failed`, `closed`. */
  reason?: string;
  detail?: string;
}

/** Most bytes of message bodies one page of messages holds (at least one message): memory by bytes. */
export const MESSAGE_PAGE_BYTES = 8 * 1024 * 1024;

/** Most bytes of capabilities and display names one `/v1/discover` page holds (at least one agent); our choice. */
export const DISCOVER_PAGE_BYTES = 1024 * 1024;

/** Most entries `GET /v1/capabilities` answers (the most used tags; `has_more` says there are others); our choice. */
export const CAPABILITY_TAGS_MAX = 1000;

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
