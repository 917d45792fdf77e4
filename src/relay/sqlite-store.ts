/**
 * The SQLite store (better-sqlite3, WAL): `DATA_DIR/mrp.db`, the official relay's embedded layout.
 * Schema changes are numbered migrations tracked in `PRAGMA user_version`. Every commit is in the
 * WAL before it returns (so it survives the process dying); with `synchronous=FULL` it is also
 * fsynced (so it survives a power cut). The relay groups writes into one transaction per
 * event-loop turn either way.
 */
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { AclEntry, AclEntryType, Attachment, Capability, JsonObject, MessageStatus } from '../protocol/types.js';
import { formatInstant } from '../protocol/signing.js';
import { DataDirLock } from './lock.js';
import { checkDbFile, ensureDbFile, prepareDataDir, storageError } from './storage-file.js';
import type {
  AgentRecord,
  DiscoverQuery,
  InboxFilter,
  MessagePageRecords,
  MessagePosition,
  MessageRecord,
  ServeVerdict,
  StorageHealth,
  Store,
  TakeResult,
  WriteBatch,
} from './store.js';

/** Prepared statements kept (least recently used dropped): query shapes must not grow memory. */
const MAX_STATEMENTS = 64;
/** A poll examines at most this many undecodable or unservable messages past its page. */
const MAX_SKIPPED = 100;

/** Each entry moves the schema one version forward. Never edit a released entry; append. */
const MIGRATIONS: string[] = [
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
];

interface AgentRow {
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

interface MessageRow {
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

interface AclRow {
  id: number;
  owner_key: string;
  peer_key: string;
  entry_type: string;
  created_at: number;
}

function agentFromRow(row: AgentRow): AgentRecord {
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

function messageFromRow(row: MessageRow): MessageRecord {
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
function tryMessage(row: MessageRow): MessageRecord | undefined {
  try {
    return messageFromRow(row);
  } catch {
    return undefined;
  }
}

function aclFromRow(row: AclRow): AclEntry {
  return {
    id: row.id,
    owner_key: row.owner_key,
    peer_key: row.peer_key,
    entry_type: row.entry_type as AclEntryType,
    created_at: formatInstant(row.created_at),
  };
}

/** Lower-cased text `q` searches: display name, capability names and descriptions. */
function searchText(agent: AgentRecord): string {
  return [agent.display_name ?? '', ...agent.capabilities.flatMap((c) => [c.name, c.description])].join('\n').toLowerCase();
}

function tagsOf(agent: AgentRecord): string[] {
  return [...new Set(agent.capabilities.flatMap((c) => c.tags))];
}

/** Polls and threads list oldest first: `(created_at, message_id)` (spec §3.6). */
const ORDER_SQL = 'ORDER BY created_at, message_id';
const AFTER_SQL = '(created_at > ? OR (created_at = ? AND message_id > ?))';

/** SQL and parameters for the optional inbox filters. */
function inboxConditions(filter: InboxFilter): { sql: string; params: unknown[] } {
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
  return { sql: parts.map((p) => ` AND ${p}`).join(''), params };
}

export interface SqliteStoreOptions {
  /** `normal` (default): survives the process crashing. `full`: fsync every commit (survives a power cut). */
  synchronous?: 'full' | 'normal';
  /** Health: less free disk than this is "disk full" (default 4 MiB). */
  minFreeBytes?: number;
  /** Health: databases up to this size get a full `quick_check` (default 64 MiB). */
  quickCheckMaxBytes?: number;
}

export class SqliteStore implements Store {
  readonly location: string;
  readonly #db: Database.Database;
  readonly #lock: DataDirLock;
  readonly #statements = new Map<string, Database.Statement>();
  readonly #commit: (batch: WriteBatch, now: number) => void;
  readonly #takeSent: (recipient: string, filter: InboxFilter, limit: number, now: number, serve: (record: MessageRecord) => ServeVerdict) => TakeResult;
  readonly #fileCheck: { minFreeBytes: number; quickCheckMaxBytes: number };

  /**
   * Opens (or creates, mode 0600) `dataDir/mrp.db` and takes the directory's lock. Every failure
   * is a `ConfigError` whose message names the file: `data_dir_locked`, `storage_unusable`.
   */
  constructor(dataDir: string, options: SqliteStoreOptions = {}) {
    this.location = join(dataDir, 'mrp.db');
    this.#fileCheck = { minFreeBytes: options.minFreeBytes ?? 4 * 1024 * 1024, quickCheckMaxBytes: options.quickCheckMaxBytes ?? 64 * 1024 * 1024 };
    prepareDataDir(dataDir);
    this.#lock = DataDirLock.acquire(dataDir);
    let db: Database.Database | undefined;
    try {
      ensureDbFile(this.location);
      this.#db = db = new Database(this.location);
      this.#db.pragma('journal_mode = WAL');
      this.#db.pragma(`synchronous = ${options.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
      this.#db.pragma('busy_timeout = 5000');
      this.#migrate();
      this.#checkAtStart();
    } catch (err) {
      if (db?.open) db.close();
      this.#lock.release();
      throw storageError(this.location, err);
    }

    const insert = this.#db.prepare(
      `INSERT INTO messages (message_id, sender_key, recipient_key, content_type, body, attachments, thread_id,
         in_reply_to, metadata, status, created_at, expires_at, delivered_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    const deliver = this.#db.prepare(
      `UPDATE messages SET status = 'delivered', delivered_at = ? WHERE message_id = ? AND recipient_key = ? AND status = 'sent' AND expires_at > ?`,
    );
    const touch = this.#db.prepare('UPDATE agents SET last_active_at = ? WHERE public_key = ? AND last_active_at < ?');
    this.#commit = this.#db.transaction((batch: WriteBatch, now: number) => {
      for (const m of batch.messages) {
        const info = insert.run(
          m.message_id,
          m.sender_key,
          m.recipient_key,
          m.content_type,
          m.body_json,
          JSON.stringify(m.attachments),
          m.thread_id,
          m.in_reply_to,
          JSON.stringify(m.metadata),
          m.status,
          m.created_at,
          m.expires_at,
          m.delivered_at,
        );
        m.seq = Number(info.lastInsertRowid);
      }
      for (const d of batch.delivered) deliver.run(now, d.message_id, d.recipient_key, now);
      for (const [key, at] of batch.active) touch.run(at, key, at);
    });

    const markOne = this.#db.prepare(`UPDATE messages SET status = 'delivered', delivered_at = ? WHERE seq = ? AND status = 'sent'`);
    this.#takeSent = this.#db.transaction(
      (recipient: string, filter: InboxFilter, limit: number, now: number, serve: (record: MessageRecord) => ServeVerdict): TakeResult => {
        const messages: MessageRecord[] = [];
        const skipped: string[] = [];
        let hasMore = false;
        const { sql, params } = inboxConditions(filter);
        // Rows are read one at a time (a page of large bodies never sits in memory whole) and marked
        // after the read, in the same transaction: the connection cannot write while it iterates.
        const rows = this.#stmt(
          `SELECT * FROM messages WHERE recipient_key = ? AND status = 'sent' AND expires_at > ?${sql} ${ORDER_SQL} LIMIT ?`,
        ).iterate(recipient, now, ...params, limit + MAX_SKIPPED + 1) as IterableIterator<MessageRow>;
        for (const row of rows) {
          const record = messages.length < limit ? tryMessage(row) : undefined;
          let verdict: ServeVerdict = messages.length < limit ? 'skip' : 'full';
          if (record) {
            record.status = 'delivered';
            record.delivered_at = now;
            verdict = serve(record);
          }
          if (verdict === 'full') {
            hasMore = true;
            break;
          }
          if (verdict === 'taken') messages.push(record!);
          else if (skipped.push(row.message_id) > MAX_SKIPPED) {
            hasMore = true;
            break;
          }
        }
        for (const m of messages) markOne.run(now, m.seq);
        return { messages, hasMore, skipped };
      },
    );
  }

  /**
   * Start-up checks beyond opening: the schema's tables answer, and a small database gets a full
   * `quick_check` (a damaged page fails start-up with the file named instead of a later 500).
   */
  #checkAtStart(): void {
    for (const table of ['agents', 'agent_tags', 'messages', 'acl']) this.#db.prepare(`SELECT 1 FROM ${table} LIMIT 1`).all();
    const health = checkDbFile(this.location, { minFreeBytes: 0, quickCheckMaxBytes: this.#fileCheck.quickCheckMaxBytes });
    if (!health.ok && health.reason === 'corrupt') {
      throw Object.assign(new Error(`the database is corrupt: ${health.detail ?? ''}`), { code: 'SQLITE_CORRUPT' });
    }
  }

  #migrate(): void {
    const current = this.#db.pragma('user_version', { simple: true }) as number;
    if (current > MIGRATIONS.length) {
      throw new Error(`${this.location} has schema version ${current}, newer than this relay understands (${MIGRATIONS.length}); upgrade mrp`);
    }
    for (let v = current; v < MIGRATIONS.length; v++) {
      this.#db.transaction(() => {
        this.#db.exec(MIGRATIONS[v]!);
        this.#db.pragma(`user_version = ${v + 1}`);
      })();
    }
  }

  /** A prepared statement from a small LRU cache (one per query shape in use). */
  #stmt(sql: string): Database.Statement {
    let s = this.#statements.get(sql);
    if (s) {
      this.#statements.delete(sql);
    } else {
      s = this.#db.prepare(sql);
      if (this.#statements.size >= MAX_STATEMENTS) this.#statements.delete(this.#statements.keys().next().value as string);
    }
    this.#statements.set(sql, s);
    return s;
  }

  // ── agents ──────────────────────────────────────────────────────────────────────────────────

  getAgent(key: string): AgentRecord | undefined {
    const row = this.#stmt('SELECT * FROM agents WHERE public_key = ?').get(key) as AgentRow | undefined;
    return row ? agentFromRow(row) : undefined;
  }

  ensureAgent(record: AgentRecord): AgentRecord {
    const existing = this.getAgent(record.public_key);
    if (existing) return existing;
    this.saveAgent(record);
    return record;
  }

  saveAgent(record: AgentRecord): void {
    this.#db.transaction(() => {
      this.#stmt(
        `INSERT INTO agents (public_key, display_name, status, visibility, inbox_policy, created_at, last_active_at,
           metadata, capabilities, search_text)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (public_key) DO UPDATE SET display_name = excluded.display_name, status = excluded.status,
           visibility = excluded.visibility, inbox_policy = excluded.inbox_policy,
           last_active_at = MAX(agents.last_active_at, excluded.last_active_at), metadata = excluded.metadata,
           capabilities = excluded.capabilities, search_text = excluded.search_text`,
      ).run(
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
      );
      this.#stmt('DELETE FROM agent_tags WHERE agent_key = ?').run(record.public_key);
      const addTag = this.#stmt('INSERT OR IGNORE INTO agent_tags (agent_key, tag) VALUES (?, ?)');
      for (const tag of tagsOf(record)) addTag.run(record.public_key, tag);
    })();
  }

  deleteAgent(key: string): void {
    this.#db.transaction(() => {
      this.#stmt('DELETE FROM agents WHERE public_key = ?').run(key);
      this.#stmt('DELETE FROM agent_tags WHERE agent_key = ?').run(key);
      this.#stmt('DELETE FROM acl WHERE owner_key = ?').run(key);
      this.#stmt('DELETE FROM messages WHERE recipient_key = ?').run(key);
    })();
  }

  discover(query: DiscoverQuery): AgentRecord[] {
    const where: string[] = ["a.visibility = 'public'", "a.status = 'active'"];
    const params: unknown[] = [];
    for (const tag of query.tags) {
      where.push('EXISTS (SELECT 1 FROM agent_tags t WHERE t.agent_key = a.public_key AND t.tag = ?)');
      params.push(tag);
    }
    if (query.tag_prefix !== undefined) {
      where.push('EXISTS (SELECT 1 FROM agent_tags t WHERE t.agent_key = a.public_key AND substr(t.tag, 1, ?) = ?)');
      params.push(query.tag_prefix.length, query.tag_prefix);
    }
    if (query.name !== undefined) {
      where.push("instr(lower(coalesce(a.display_name, '')), ?) > 0");
      params.push(query.name.toLowerCase());
    }
    for (const word of query.words) {
      where.push('instr(a.search_text, ?) > 0');
      params.push(word);
    }
    if (query.active_since !== undefined) {
      where.push('a.last_active_at >= ?');
      params.push(query.active_since);
    }
    if (query.after) {
      where.push('(a.last_active_at < ? OR (a.last_active_at = ? AND a.public_key > ?))');
      params.push(query.after.t, query.after.t, query.after.k);
    }
    const sql = `SELECT a.* FROM agents a WHERE ${where.join(' AND ')} ORDER BY a.last_active_at DESC, a.public_key ASC LIMIT ?`;
    return (this.#stmt(sql).all(...params, query.limit) as AgentRow[]).map(agentFromRow);
  }

  capabilityTags(prefix: string | undefined): Array<{ tag: string; agent_count: number }> {
    const filter = prefix === undefined ? '' : ' AND substr(t.tag, 1, ?) = ?';
    const params = prefix === undefined ? [] : [prefix.length, prefix];
    return this.#stmt(
      `SELECT t.tag AS tag, COUNT(*) AS agent_count FROM agent_tags t JOIN agents a ON a.public_key = t.agent_key
       WHERE a.visibility = 'public' AND a.status = 'active'${filter}
       GROUP BY t.tag ORDER BY agent_count DESC, t.tag ASC`,
    ).all(...params) as Array<{ tag: string; agent_count: number }>;
  }

  // ── messages ────────────────────────────────────────────────────────────────────────────────

  commit(batch: WriteBatch, now: number): void {
    this.#commit(batch, now);
  }

  getMessage(id: string): MessageRecord | undefined {
    const row = this.#stmt('SELECT * FROM messages WHERE message_id = ?').get(id) as MessageRow | undefined;
    return row ? messageFromRow(row) : undefined;
  }

  takeSent(recipient: string, filter: InboxFilter, limit: number, now: number, serve: (record: MessageRecord) => ServeVerdict): TakeResult {
    return this.#takeSent(recipient, filter, limit, now, serve);
  }

  /** Reads a page row by row: at most `limit` messages, and none past `maxBytes` of bodies once one is in. */
  #page(stmt: Database.Statement, params: unknown[], limit: number, maxBytes: number): MessagePageRecords {
    const messages: MessageRecord[] = [];
    let bytes = 0;
    let hasMore = false;
    for (const row of stmt.iterate(...params, limit + MAX_SKIPPED + 1) as IterableIterator<MessageRow>) {
      if (messages.length >= limit || (messages.length > 0 && bytes + row.body.length > maxBytes)) {
        hasMore = true;
        break;
      }
      const record = tryMessage(row);
      if (!record) continue;
      messages.push(record);
      bytes += row.body.length;
    }
    return { messages, hasMore };
  }

  listInbox(recipient: string, filter: InboxFilter, limit: number, now: number, maxBytes: number): MessagePageRecords {
    const { sql, params } = inboxConditions(filter);
    const statusSql =
      filter.status === 'expired'
        ? "(status = 'expired' OR (status = 'sent' AND expires_at <= ?))"
        : filter.status === 'sent'
          ? "(status = 'sent' AND expires_at > ?)"
          : "(status = 'delivered' AND ? IS NOT NULL)";
    const stmt = this.#stmt(`SELECT * FROM messages WHERE recipient_key = ? AND ${statusSql}${sql} ${ORDER_SQL} LIMIT ?`);
    return this.#page(stmt, [recipient, now, ...params], limit, maxBytes);
  }

  pending(recipient: string, afterSeq: number, limit: number, now: number, maxBytes = Number.POSITIVE_INFINITY): MessageRecord[] {
    const out: MessageRecord[] = [];
    let bytes = 0;
    // Rows are read one at a time, so a page of large bodies stops at the byte budget.
    const rows = this.#stmt(
      "SELECT * FROM messages WHERE recipient_key = ? AND status = 'sent' AND seq > ? AND expires_at > ? ORDER BY seq LIMIT ?",
    ).iterate(recipient, afterSeq, now, limit) as IterableIterator<MessageRow>;
    for (const row of rows) {
      const record = tryMessage(row);
      if (!record) continue;
      out.push(record);
      bytes += row.body.length;
      if (bytes >= maxBytes) break;
    }
    return out;
  }

  thread(caller: string, threadId: string, after: MessagePosition | undefined, limit: number, maxBytes: number): MessagePageRecords {
    const at = after ?? { t: -1, id: '' };
    const stmt = this.#stmt(
      `SELECT * FROM messages WHERE (thread_id = ? OR message_id = ?) AND (sender_key = ? OR recipient_key = ?) AND ${AFTER_SQL}
       ${ORDER_SQL} LIMIT ?`,
    );
    return this.#page(stmt, [threadId, threadId, caller, caller, at.t, at.t, at.id], limit, maxBytes);
  }

  sweep(now: number, expiredRetentionMs: number): { expired: number; purged: number } {
    return this.#db.transaction(() => {
      const expired = this.#stmt("UPDATE messages SET status = 'expired' WHERE status = 'sent' AND expires_at <= ?").run(now).changes;
      const purged = this.#stmt(
        "DELETE FROM messages WHERE (status = 'delivered' AND expires_at <= ?) OR (status = 'expired' AND expires_at <= ?)",
      ).run(now, now - expiredRetentionMs).changes;
      return { expired, purged };
    })();
  }

  // ── ACL ─────────────────────────────────────────────────────────────────────────────────────

  putAcl(owner: string, peer: string, type: AclEntryType, now: number): AclEntry {
    this.#stmt(
      `INSERT INTO acl (owner_key, peer_key, entry_type, created_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (owner_key, peer_key) DO UPDATE SET entry_type = excluded.entry_type`,
    ).run(owner, peer, type, now);
    return this.getAcl(owner, peer)!;
  }

  getAcl(owner: string, peer: string): AclEntry | undefined {
    const row = this.#stmt('SELECT * FROM acl WHERE owner_key = ? AND peer_key = ?').get(owner, peer) as AclRow | undefined;
    return row ? aclFromRow(row) : undefined;
  }

  listAcl(owner: string, type: AclEntryType | undefined, afterId: number, limit: number): AclEntry[] {
    const rows =
      type === undefined
        ? this.#stmt('SELECT * FROM acl WHERE owner_key = ? AND id > ? ORDER BY id LIMIT ?').all(owner, afterId, limit)
        : this.#stmt('SELECT * FROM acl WHERE owner_key = ? AND entry_type = ? AND id > ? ORDER BY id LIMIT ?').all(owner, type, afterId, limit);
    return (rows as AclRow[]).map(aclFromRow);
  }

  deleteAcl(owner: string, peer: string): boolean {
    return this.#stmt('DELETE FROM acl WHERE owner_key = ? AND peer_key = ?').run(owner, peer).changes > 0;
  }

  ping(): void {
    this.#stmt('SELECT 1').get();
  }

  health(now: number): StorageHealth {
    if (!this.#db.open) return { ok: false, reason: 'closed' };
    const file = checkDbFile(this.location, this.#fileCheck);
    if (!file.ok) return file;
    try {
      this.#stmt('INSERT INTO health_probe (id, at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET at = excluded.at').run(now);
    } catch (err) {
      return { ok: false, reason: 'write_failed', detail: `${(err as { code?: string }).code ?? ''} ${(err as Error).message}`.trim() };
    }
    return { ok: true };
  }

  close(): void {
    if (this.#db.open) this.#db.close();
    this.#lock.release();
  }
}
