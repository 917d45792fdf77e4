/**
 * What the SQLite store keeps on disk and how rows become records: the numbered migrations (the
 * schema's history, never edited once released), the row shapes, the conversions (a damaged row
 * decodes to `undefined` instead of throwing) and the SQL for the inbox filters and the
 * `(created_at, message_id)` order. Apart from `sqlite-store.ts` so that the queries read on
 * their own.
 */

import { formatInstant } from '../../protocol/signing.js';
import type {
  AclEntry,
  AclEntryType,
  Attachment,
  Capability,
  JsonObject,
  MessageStatus,
} from '../../protocol/types.js';
import type {
  AgentPage,
  AgentRecord,
  InboxFilter,
  MessagePageRecords,
  MessageRecord,
  ServeVerdict,
  TakeResult,
  WebhookRecord,
} from './store.js';

/** Each entry moves the schema one version forward. Never edit a released entry; append. */
export const MIGRATIONS: string[] = [
  `
  CREATE TABLE agents (
    public_key     TEXT PRIMARY KEY,
    display_name   TEXT,
    status         TEXT NOT NULL,
    visibility     TEXT NOT NULL,
    inbox_policy   TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    last_active_at INTEGER NOT NULL,
    metadata       TEXT NOT NULL,
    capabilities   TEXT NOT NULL,
    search_text    TEXT NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX agents_activity ON agents (visibility, last_active_at DESC, public_key);

  CREATE TABLE agent_tags (
    agent_key TEXT NOT NULL,
    tag       TEXT NOT NULL,
    PRIMARY KEY (agent_key, tag)
  ) WITHOUT ROWID;
  CREATE INDEX agent_tags_by_tag ON agent_tags (tag, agent_key);

  CREATE TABLE messages (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id    TEXT NOT NULL UNIQUE,
    sender_key    TEXT NOT NULL,
    recipient_key TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    body          TEXT NOT NULL,
    attachments   TEXT NOT NULL,
    thread_id     TEXT,
    in_reply_to   TEXT,
    metadata      TEXT NOT NULL,
    status        TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    delivered_at  INTEGER
  );
  CREATE INDEX messages_inbox ON messages (recipient_key, status, created_at, message_id);
  CREATE INDEX messages_backlog ON messages (recipient_key, status, seq);
  CREATE INDEX messages_thread ON messages (thread_id) WHERE thread_id IS NOT NULL;
  CREATE INDEX messages_reply ON messages (in_reply_to) WHERE in_reply_to IS NOT NULL;
  CREATE INDEX messages_expiry ON messages (status, expires_at);

  CREATE TABLE acl (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    owner_key  TEXT NOT NULL,
    peer_key   TEXT NOT NULL,
    entry_type TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (owner_key, peer_key)
  );
  `,
  `
  CREATE TABLE health_probe (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL
  );
  `,
  // 3: webhooks (docs/protocol.md §3.8): one config per agent, and the pending deliveries (created in
  // the commit that stores the message, so a crash between the two cannot lose one).
  `
  CREATE TABLE webhooks (
    agent_key            TEXT PRIMARY KEY,
    url                  TEXT NOT NULL,
    secret               TEXT NOT NULL,
    enabled              INTEGER NOT NULL,
    consecutive_failures INTEGER NOT NULL,
    created_at           INTEGER NOT NULL
  ) WITHOUT ROWID;

  CREATE TABLE webhook_deliveries (
    delivery_id     TEXT PRIMARY KEY,
    message_id      TEXT NOT NULL UNIQUE,
    agent_key       TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at);
  CREATE INDEX webhook_deliveries_agent ON webhook_deliveries (agent_key);
  `,
  // 4: the take id of the poll that marked a message delivered (a runner's recovery asks for exactly its take).
  `
  ALTER TABLE messages ADD COLUMN take_id TEXT;
  CREATE INDEX messages_take ON messages (recipient_key, take_id) WHERE take_id IS NOT NULL;
  `,
  // 5: blobs (§3.7) and the references of messages to them (who may read a blob, what may not be deleted).
  `
  CREATE TABLE blobs (
    blob_id      TEXT PRIMARY KEY,
    owner_key    TEXT NOT NULL,
    hash         TEXT NOT NULL,
    size         INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX blobs_owner ON blobs (owner_key, expires_at);
  CREATE INDEX blobs_expiry ON blobs (expires_at);

  CREATE TABLE blob_refs (
    blob_id       TEXT NOT NULL,
    message_id    TEXT NOT NULL,
    sender_key    TEXT NOT NULL,
    recipient_key TEXT NOT NULL,
    expires_at    INTEGER NOT NULL,
    PRIMARY KEY (blob_id, message_id)
  ) WITHOUT ROWID;
  CREATE INDEX blob_refs_expiry ON blob_refs (expires_at);
  CREATE INDEX blob_refs_recipient ON blob_refs (recipient_key);
  `,
  // 6: the WebSocket backlog's index holds pending messages only. Keyed by status, an ack moved each
  // entry from the recipient's 'sent' range to its 'delivered' one (two b-tree writes, two pages);
  // partial, an ack deletes it next to where it was inserted, and the index stays the size of the
  // backlog instead of the history (`bench/relay-store.ts`: ~8% less time per message in a commit).
  `
  DROP INDEX messages_backlog;
  CREATE INDEX messages_pending ON messages (recipient_key, seq) WHERE status = 'sent';
  `,
];

export interface AgentRow {
  public_key: string;
  display_name: string | null;
  status: string;
  visibility: string;
  inbox_policy: string;
  created_at: number;
  last_active_at: number;
  metadata: string;
  capabilities: string;
}

export interface MessageRow {
  seq: number;
  message_id: string;
  sender_key: string;
  recipient_key: string;
  content_type: string;
  body: string;
  attachments: string;
  thread_id: string | null;
  in_reply_to: string | null;
  metadata: string;
  status: string;
  created_at: number;
  expires_at: number;
  delivered_at: number | null;
}

export interface WebhookRow {
  agent_key: string;
  url: string;
  secret: string;
  enabled: number;
  consecutive_failures: number;
  created_at: number;
}

export function webhookFromRow(row: WebhookRow): WebhookRecord {
  return {
    agent_key: row.agent_key,
    url: row.url,
    secret: row.secret,
    enabled: row.enabled === 1,
    consecutive_failures: row.consecutive_failures,
    created_at: row.created_at,
  };
}

export interface AclRow {
  id: number;
  owner_key: string;
  peer_key: string;
  entry_type: string;
  created_at: number;
}

export function agentFromRow(row: AgentRow): AgentRecord {
  return {
    public_key: row.public_key,
    display_name: row.display_name,
    status: row.status as AgentRecord['status'],
    visibility: row.visibility as AgentRecord['visibility'],
    inbox_policy: row.inbox_policy as AgentRecord['inbox_policy'],
    created_at: row.created_at,
    last_active_at: row.last_active_at,
    metadata: JSON.parse(row.metadata) as Record<string, string>,
    capabilities: JSON.parse(row.capabilities) as Capability[],
  };
}

export function messageFromRow(row: MessageRow): MessageRecord {
  return {
    seq: row.seq,
    message_id: row.message_id,
    sender_key: row.sender_key,
    recipient_key: row.recipient_key,
    content_type: row.content_type,
    body_json: row.body,
    attachments: JSON.parse(row.attachments) as Attachment[],
    thread_id: row.thread_id,
    in_reply_to: row.in_reply_to,
    metadata: JSON.parse(row.metadata) as JsonObject,
    status: row.status as MessageStatus,
    created_at: row.created_at,
    expires_at: row.expires_at,
    delivered_at: row.delivered_at,
  };
}

/** The record of a row, or undefined when its stored JSON columns are damaged (never throws). */
export function tryMessage(row: MessageRow): MessageRecord | undefined {
  try {
    return messageFromRow(row);
  } catch {
    return undefined;
  }
}

/** A page or poll examines at most this many undecodable or unservable rows past its end. */
export const MAX_SKIPPED = 100;

/** Rows a page of `limit` reads at most: the page, what it may skip, and one to know there is more. */
export function rowsToRead(limit: number): number {
  return limit + MAX_SKIPPED + 1;
}

/**
 * A page read row by row, for both stores: at most `limit` items, and none past `maxBytes` (each
 * row weighed by `weigh`) once one is in; a row `convert` cannot read is passed over. `add` says
 * whether to read on.
 */
class BoundedPage<R, T> {
  readonly items: T[] = [];
  hasMore = false;
  #bytes = 0;
  readonly #weigh: (row: R) => number;
  readonly #convert: (row: R) => T | undefined;

  constructor(
    readonly limit: number,
    readonly maxBytes: number,
    weigh: (row: R) => number,
    convert: (row: R) => T | undefined,
  ) {
    this.#weigh = weigh;
    this.#convert = convert;
  }

  add(row: R): boolean {
    const bytes = this.#weigh(row);
    if (this.items.length >= this.limit || (this.items.length > 0 && this.#bytes + bytes > this.maxBytes)) {
      this.hasMore = true;
      return false;
    }
    const item = this.#convert(row);
    if (item !== undefined) {
      this.items.push(item);
      this.#bytes += bytes;
    }
    return true;
  }
}

/** A page of messages (history, thread, inbox), bounded by the bytes of its bodies; damaged rows are passed over. */
export class PageReader extends BoundedPage<MessageRow, MessageRecord> {
  constructor(limit: number, maxBytes: number) {
    super(limit, maxBytes, (row) => row.body.length, tryMessage);
  }

  get result(): MessagePageRecords {
    return { messages: this.items, hasMore: this.hasMore };
  }
}

/** A discover page (`Store.discover`), bounded by what its rows weigh: capabilities and display name as stored. */
export class AgentPageReader extends BoundedPage<AgentRow, AgentRecord> {
  constructor(limit: number, maxBytes: number) {
    super(
      limit,
      maxBytes,
      (row) => row.capabilities.length + (row.display_name?.length ?? 0) + row.public_key.length,
      agentFromRow,
    );
  }

  get result(): AgentPage {
    return { agents: this.items, hasMore: this.hasMore };
  }
}

/**
 * A poll's page (`Store.takeSent`) read row by row, for both stores: each readable row is offered
 * to `serve` as delivered at `now`; what it takes is kept (the store marks those rows), what it
 * skips — and rows that cannot be read — are listed in `skipped`, at most `MAX_SKIPPED` of them.
 * `add` says whether to read on.
 */
export class TakeReader {
  readonly messages: MessageRecord[] = [];
  readonly skipped: string[] = [];
  hasMore = false;

  constructor(
    readonly limit: number,
    readonly now: number,
    readonly serve: (record: MessageRecord) => ServeVerdict,
  ) {}

  add(row: MessageRow): boolean {
    const record = this.messages.length < this.limit ? tryMessage(row) : undefined;
    let verdict: ServeVerdict = this.messages.length < this.limit ? 'skip' : 'full';
    if (record) {
      record.status = 'delivered';
      record.delivered_at = this.now;
      verdict = this.serve(record);
    }
    if (verdict === 'full') {
      this.hasMore = true;
      return false;
    }
    if (verdict === 'taken') this.messages.push(record!);
    else if (this.skipped.push(row.message_id) > MAX_SKIPPED) {
      this.hasMore = true;
      return false;
    }
    return true;
  }

  get result(): TakeResult {
    return { messages: this.messages, hasMore: this.hasMore, skipped: this.skipped };
  }
}

export function aclFromRow(row: AclRow): AclEntry {
  return {
    id: row.id,
    owner_key: row.owner_key,
    peer_key: row.peer_key,
    entry_type: row.entry_type as AclEntryType,
    created_at: formatInstant(row.created_at),
  };
}

/** Lower-cased text `q` searches: display name, capability names and descriptions. */
export function searchText(agent: AgentRecord): string {
  return [agent.display_name ?? '', ...agent.capabilities.flatMap((c) => [c.name, c.description])]
    .join('\n')
    .toLowerCase();
}

export function tagsOf(agent: AgentRecord): string[] {
  return [...new Set(agent.capabilities.flatMap((c) => c.tags))];
}

/** The agents table's columns in insert order. */
export function agentParams(record: AgentRecord): unknown[] {
  return [
    record.public_key,
    record.display_name,
    record.status,
    record.visibility,
    record.inbox_policy,
    record.created_at,
    record.last_active_at,
    JSON.stringify(record.metadata),
    JSON.stringify(record.capabilities),
    searchText(record),
  ];
}

/**
 * The WebSocket backlog (`Store.pending`): the statement takes the recipient, the seq to start
 * after, the current time and the row limit. The index is named, as in `inboxSql`: without
 * statistics the planner could prefer `messages_inbox` and sort.
 */
export const PENDING_SQL =
  "SELECT * FROM messages INDEXED BY messages_pending WHERE recipient_key = ? AND status = 'sent' AND seq > ? AND expires_at > ? ORDER BY seq LIMIT ?";

/** Polls and threads list oldest first: `(created_at, message_id)` (docs/protocol.md §3.6). */
export const ORDER_SQL = 'ORDER BY created_at, message_id';
export const AFTER_SQL = '(created_at > ? OR (created_at = ? AND message_id > ?))';

/**
 * The SQLite inbox query (history pages and poll takes) for `filter`, with the filter's own
 * parameters: the statement takes the recipient, the current time, `params`, then the row limit.
 *
 * The index is named, not left to the planner: without statistics SQLite walks
 * `messages_expiry` for `status = 'sent'` — every unexpired pending message of every recipient,
 * then a sort — so one poll cost as much as the whole relay's backlog. `messages_inbox` reads
 * only this recipient's rows of that status, already in page order; a take id has its own index.
 */
export function inboxSql(filter: InboxFilter): { sql: string; params: unknown[] } {
  const { sql, params } = inboxConditions(filter);
  const page = `${sql} ${ORDER_SQL} LIMIT ?`;
  return { sql: `SELECT * FROM messages INDEXED BY ${inboxWhere(filter)}${page}`, params };
}

/** The index and the status conditions of `inboxSql`. */
function inboxWhere(filter: InboxFilter): string {
  switch (filter.status) {
    case 'sent':
      return "messages_inbox WHERE recipient_key = ? AND status = 'sent' AND expires_at > ?";
    case 'delivered':
      return `${filter.take !== undefined ? 'messages_take' : 'messages_inbox'} WHERE recipient_key = ? AND status = 'delivered' AND ? IS NOT NULL`;
    case 'expired':
      // Two statuses (a pending message past its expiry counts): both ranges of the recipient's
      // entries, merged by a sort — never its delivered history.
      return "messages_inbox WHERE recipient_key = ? AND status IN ('expired', 'sent') AND (status = 'expired' OR expires_at <= ?)";
  }
}

/** SQL and parameters for the optional inbox filters. */
export function inboxConditions(filter: InboxFilter): { sql: string; params: unknown[] } {
  const parts: string[] = [];
  const params: unknown[] = [];
  if (filter.sender_key !== undefined) {
    parts.push('sender_key = ?');
    params.push(filter.sender_key);
  }
  if (filter.in_reply_to !== undefined) {
    parts.push('in_reply_to = ?');
    params.push(filter.in_reply_to);
  }
  if (filter.thread_id !== undefined) {
    parts.push('(thread_id = ? OR message_id = ?)');
    params.push(filter.thread_id, filter.thread_id);
  }
  if (filter.since !== undefined) {
    parts.push('created_at > ?');
    params.push(filter.since);
  }
  if (filter.after !== undefined) {
    parts.push(AFTER_SQL);
    params.push(filter.after.t, filter.after.t, filter.after.id);
  }
  if (filter.take !== undefined && filter.status === 'delivered') {
    parts.push('take_id = ?');
    params.push(filter.take);
  }
  return { sql: parts.map((p) => ` AND ${p}`).join(''), params };
}
