/**
 * The SQLite store (better-sqlite3, WAL): `DATA_DIR/mrp.db`, the official relay's embedded layout.
 * Schema changes are numbered migrations tracked in `PRAGMA user_version`. Every commit is in the
 * WAL before it returns (so it survives the process dying); with `synchronous=FULL` it is also
 * fsynced (so it survives a power cut). The relay groups writes into one transaction per
 * event-loop turn either way. Checkpoints (WAL → `mrp.db`, with their fsyncs) run in a worker
 * thread once the relay is busy (`sqlite-checkpoint.ts`), not inside a commit.
 */
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { AclEntry, AclEntryType } from '../../protocol/types.js';
import { DataDirLock } from './lock.js';
import { BackgroundCheckpoint, type CheckpointOptions } from './sqlite-checkpoint.js';
import { checkDbFile, ensureDbFile, hasDbHeader, prepareDataDir, storageError } from './sqlite-file.js';
import {
  type AclRow,
  AFTER_SQL,
  AgentPageReader,
  type AgentRow,
  aclFromRow,
  agentFromRow,
  agentParams,
  inboxSql,
  type MessageRow,
  MIGRATIONS,
  messageFromRow,
  ORDER_SQL,
  PageReader,
  PENDING_SQL,
  rowsToRead,
  tagsOf,
  tryMessage,
  type WebhookRow,
  webhookFromRow,
} from './sqlite-schema.js';
import { claimTransaction, commitTransaction, takeTransaction } from './sqlite-tx.js';
import type {
  AgentPage,
  AgentRecord,
  BlobQuota,
  BlobRecord,
  BlobUsage,
  ClaimOptions,
  CommitResult,
  DeliveryClaim,
  DeliveryCompletion,
  DeliveryFailure,
  DiscoverQuery,
  InboxFilter,
  InsertBlobResult,
  MessagePageRecords,
  MessagePosition,
  MessageRecord,
  ServeVerdict,
  StorageHealth,
  Store,
  TakeResult,
  WebhookRecord,
  WriteBatch,
} from './store.js';

/** Prepared statements kept (least recently used dropped): query shapes must not grow memory. */
const MAX_STATEMENTS = 64;
/**
 * The page size of a new database (SQLite's default is 4096). A group commit of a few hundred
 * messages blocks the event loop ~12% less in 8 KiB pages (fewer WAL frames, two `pwrite`s
 * each); a one-message commit costs about the same (`bench/relay-store.ts`). An existing database
 * keeps the size it was made with.
 */
const PAGE_SIZE = 8192;

export interface SqliteStoreOptions {
  /** `normal` (default): survives the process crashing. `full`: fsync every commit (survives a power cut). */
  synchronous?: 'full' | 'normal';
  /** Health: less free disk than this is "disk full" (default 4 MiB). */
  minFreeBytes?: number;
  /** Health: databases up to this size get a full `quick_check` (default 64 MiB). */
  quickCheckMaxBytes?: number;
  /** WAL checkpoints in a worker thread (`sqlite-checkpoint.ts`): when it starts, when the writer catches up. */
  checkpoint?: CheckpointOptions;
}

export class SqliteStore implements Store {
  readonly location: string;
  readonly #db: Database.Database;
  readonly #lock: DataDirLock;
  readonly #statements = new Map<string, Database.Statement>();
  readonly #commit: (batch: WriteBatch, now: number) => CommitResult;
  readonly #takeSent: (
    recipient: string,
    filter: InboxFilter,
    limit: number,
    now: number,
    serve: (record: MessageRecord) => ServeVerdict,
  ) => TakeResult;
  readonly #claim: (now: number, options: ClaimOptions) => DeliveryClaim[];
  readonly #checkpoint: BackgroundCheckpoint;
  readonly #fileCheck: { minFreeBytes: number; quickCheckMaxBytes: number };
  /** mrp.db has had a valid header while open: 0 bytes later means it was truncated under us. */
  #headerSeen = false;

  /**
   * Opens (or creates, mode 0600) `dataDir/mrp.db` and takes the directory's lock. Every failure
   * is a `ConfigError` whose message names the file: `data_dir_locked`, `storage_unusable`.
   */
  constructor(dataDir: string, options: SqliteStoreOptions = {}) {
    this.location = join(dataDir, 'mrp.db');
    this.#fileCheck = {
      minFreeBytes: options.minFreeBytes ?? 4 * 1024 * 1024,
      quickCheckMaxBytes: options.quickCheckMaxBytes ?? 64 * 1024 * 1024,
    };
    prepareDataDir(dataDir);
    this.#lock = DataDirLock.acquire(dataDir);
    let db: Database.Database | undefined;
    try {
      ensureDbFile(this.location);
      this.#db = db = new Database(this.location);
      // Takes effect only on an empty file (a new database), before WAL mode and the first table.
      this.#db.pragma(`page_size = ${PAGE_SIZE}`);
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

    this.#commit = commitTransaction(this.#db);
    this.#takeSent = takeTransaction(this.#db, (sql) => this.#stmt(sql));
    this.#claim = claimTransaction(this.#db);
    this.#checkpoint = new BackgroundCheckpoint(
      this.location,
      options.synchronous === 'full' ? 'FULL' : 'NORMAL',
      {
        setAutoCheckpoint: (pages) => {
          if (this.#db.open) this.#db.pragma(`wal_autocheckpoint = ${pages}`);
        },
        catchUp: () => {
          if (this.#db.open) this.#db.pragma('wal_checkpoint(PASSIVE)');
        },
      },
      { pageSize: this.#db.pragma('page_size', { simple: true }) as number, ...options.checkpoint },
    );
  }

  /** WAL checkpoints in a worker thread (see `sqlite-checkpoint.ts`): tests watch them here. */
  get checkpoints(): BackgroundCheckpoint {
    return this.#checkpoint;
  }

  /**
   * Start-up checks beyond opening: the schema's tables answer, and a small database gets a full
   * `quick_check` (a damaged page fails start-up with the file named instead of a later 500).
   */
  #checkAtStart(): void {
    for (const table of [
      'agents',
      'agent_tags',
      'messages',
      'acl',
      'webhooks',
      'webhook_deliveries',
      'blobs',
      'blob_refs',
    ])
      this.#db.prepare(`SELECT 1 FROM ${table} LIMIT 1`).all();
    // Put the schema into the main file now, so it has a header from the start: a fresh WAL-mode
    // database is otherwise 0 bytes until its first checkpoint, indistinguishable from a truncated one.
    this.#db.pragma('wal_checkpoint(PASSIVE)');
    this.#headerSeen = hasDbHeader(this.location);
    const health = checkDbFile(this.location, {
      minFreeBytes: 0,
      quickCheckMaxBytes: this.#fileCheck.quickCheckMaxBytes,
    });
    if (!health.ok && health.reason === 'corrupt') {
      throw Object.assign(new Error(`the database is corrupt: ${health.detail ?? ''}`), { code: 'SQLITE_CORRUPT' });
    }
  }

  #migrate(): void {
    const current = this.#db.pragma('user_version', { simple: true }) as number;
    if (current > MIGRATIONS.length) {
      throw new Error(
        `${this.location} has schema version ${current}, newer than this relay understands (${MIGRATIONS.length}); upgrade mrp`,
      );
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
      if (this.#statements.size >= MAX_STATEMENTS)
        this.#statements.delete(this.#statements.keys().next().value as string);
    }
    this.#statements.set(sql, s);
    return s;
  }

  // ── agents ──────────────────────────────────────────────────────────────────────────────────

  async getAgent(key: string): Promise<AgentRecord | undefined> {
    const row = this.#stmt('SELECT * FROM agents WHERE public_key = ?').get(key) as AgentRow | undefined;
    return row ? agentFromRow(row) : undefined;
  }

  async ensureAgent(record: AgentRecord): Promise<{ agent: AgentRecord; created: boolean }> {
    const created = this.#db.transaction(() => {
      const inserted =
        this.#stmt(
          `INSERT INTO agents (public_key, display_name, status, visibility, inbox_policy, created_at, last_active_at,
           metadata, capabilities, search_text)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (public_key) DO NOTHING`,
        ).run(...agentParams(record)).changes > 0;
      if (inserted) this.#saveTags(record);
      return inserted;
    })();
    return created
      ? { agent: record, created }
      : { agent: (await this.getAgent(record.public_key)) ?? record, created };
  }

  async saveAgent(record: AgentRecord): Promise<void> {
    this.#db.transaction(() => {
      this.#stmt(
        `INSERT INTO agents (public_key, display_name, status, visibility, inbox_policy, created_at, last_active_at,
           metadata, capabilities, search_text)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (public_key) DO UPDATE SET display_name = excluded.display_name, status = excluded.status,
           visibility = excluded.visibility, inbox_policy = excluded.inbox_policy,
           last_active_at = MAX(agents.last_active_at, excluded.last_active_at), metadata = excluded.metadata,
           capabilities = excluded.capabilities, search_text = excluded.search_text`,
      ).run(...agentParams(record));
      this.#saveTags(record);
    })();
  }

  #saveTags(record: AgentRecord): void {
    this.#stmt('DELETE FROM agent_tags WHERE agent_key = ?').run(record.public_key);
    const addTag = this.#stmt('INSERT OR IGNORE INTO agent_tags (agent_key, tag) VALUES (?, ?)');
    for (const tag of tagsOf(record)) addTag.run(record.public_key, tag);
  }

  async deleteAgent(key: string): Promise<void> {
    this.#db.transaction(() => {
      this.#stmt('DELETE FROM agents WHERE public_key = ?').run(key);
      this.#stmt('DELETE FROM agent_tags WHERE agent_key = ?').run(key);
      this.#stmt('DELETE FROM acl WHERE owner_key = ?').run(key);
      this.#stmt('DELETE FROM messages WHERE recipient_key = ?').run(key);
      this.#stmt('DELETE FROM webhooks WHERE agent_key = ?').run(key);
      this.#stmt('DELETE FROM webhook_deliveries WHERE agent_key = ?').run(key);
      this.#stmt('DELETE FROM blob_refs WHERE recipient_key = ? OR sender_key = ?').run(key, key);
      this.#stmt('DELETE FROM blobs WHERE owner_key = ?').run(key);
    })();
  }

  async discover(query: DiscoverQuery): Promise<AgentPage> {
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
    // Row by row, so a page of heavy profiles stops at the byte budget instead of being read whole.
    const page = new AgentPageReader(query.limit, query.maxBytes);
    for (const row of this.#stmt(sql).iterate(...params, query.limit + 1) as IterableIterator<AgentRow>)
      if (!page.add(row)) break;
    return page.result;
  }

  async capabilityTags(
    prefix: string | undefined,
    limit: number,
  ): Promise<Array<{ tag: string; agent_count: number }>> {
    const filter = prefix === undefined ? '' : ' AND substr(t.tag, 1, ?) = ?';
    const params = prefix === undefined ? [] : [prefix.length, prefix];
    return this.#stmt(
      `SELECT t.tag AS tag, COUNT(*) AS agent_count FROM agent_tags t JOIN agents a ON a.public_key = t.agent_key
       WHERE a.visibility = 'public' AND a.status = 'active'${filter}
       GROUP BY t.tag ORDER BY agent_count DESC, t.tag ASC LIMIT ?`,
    ).all(...params, limit) as Array<{ tag: string; agent_count: number }>;
  }

  // ── messages ────────────────────────────────────────────────────────────────────────────────

  async commit(batch: WriteBatch, now: number): Promise<CommitResult> {
    const result = this.#commit(batch, now);
    this.#checkpoint.committed();
    return result;
  }

  async getMessage(id: string): Promise<MessageRecord | undefined> {
    const row = this.#stmt('SELECT * FROM messages WHERE message_id = ?').get(id) as MessageRow | undefined;
    return row ? messageFromRow(row) : undefined;
  }

  async getMessages(ids: readonly string[]): Promise<MessageRecord[]> {
    if (ids.length === 0) return [];
    if (ids.length === 1) {
      const one = this.#stmt('SELECT * FROM messages WHERE message_id = ?').get(ids[0]) as MessageRow | undefined;
      const record = one && tryMessage(one);
      return record ? [record] : [];
    }
    // One statement shape for any number of ids: the list travels as one JSON parameter.
    const rows = this.#stmt('SELECT * FROM messages WHERE message_id IN (SELECT value FROM json_each(?))').all(
      JSON.stringify(ids),
    ) as MessageRow[];
    const out: MessageRecord[] = [];
    for (const row of rows) {
      const record = tryMessage(row);
      if (record) out.push(record);
    }
    return out;
  }

  async takeSent(
    recipient: string,
    filter: InboxFilter,
    limit: number,
    now: number,
    serve: (record: MessageRecord) => ServeVerdict,
  ): Promise<TakeResult> {
    const result = this.#takeSent(recipient, filter, limit, now, serve);
    if (result.messages.length > 0) this.#checkpoint.committed();
    return result;
  }

  /** Reads a page row by row: at most `limit` messages, and none past `maxBytes` of bodies once one is in. */
  #page(stmt: Database.Statement, params: unknown[], limit: number, maxBytes: number): MessagePageRecords {
    const page = new PageReader(limit, maxBytes);
    for (const row of stmt.iterate(...params, rowsToRead(limit)) as IterableIterator<MessageRow>)
      if (!page.add(row)) break;
    return page.result;
  }

  async listInbox(
    recipient: string,
    filter: InboxFilter,
    limit: number,
    now: number,
    maxBytes: number,
  ): Promise<MessagePageRecords> {
    const { sql, params } = inboxSql(filter);
    return this.#page(this.#stmt(sql), [recipient, now, ...params], limit, maxBytes);
  }

  async pending(
    recipient: string,
    afterSeq: number,
    limit: number,
    now: number,
    maxBytes = Number.POSITIVE_INFINITY,
  ): Promise<MessageRecord[]> {
    const out: MessageRecord[] = [];
    let bytes = 0;
    // Rows are read one at a time, so a page of large bodies stops at the byte budget.
    const rows = this.#stmt(PENDING_SQL).iterate(recipient, afterSeq, now, limit) as IterableIterator<MessageRow>;
    for (const row of rows) {
      const record = tryMessage(row);
      if (!record) continue;
      out.push(record);
      bytes += row.body.length;
      if (bytes >= maxBytes) break;
    }
    return out;
  }

  async thread(
    caller: string,
    threadId: string,
    after: MessagePosition | undefined,
    limit: number,
    maxBytes: number,
  ): Promise<MessagePageRecords> {
    const at = after ?? { t: -1, id: '' };
    const stmt = this.#stmt(
      `SELECT * FROM messages WHERE (thread_id = ? OR message_id = ?) AND (sender_key = ? OR recipient_key = ?) AND ${AFTER_SQL}
       ${ORDER_SQL} LIMIT ?`,
    );
    return this.#page(stmt, [threadId, threadId, caller, caller, at.t, at.t, at.id], limit, maxBytes);
  }

  async sweep(now: number, expiredRetentionMs: number): Promise<{ expired: number; purged: number }> {
    return this.#db.transaction(() => {
      const expired = this.#stmt(
        "UPDATE messages SET status = 'expired' WHERE status = 'sent' AND expires_at <= ?",
      ).run(now).changes;
      const purged = this.#stmt(
        "DELETE FROM messages WHERE (status = 'delivered' AND expires_at <= ?) OR (status = 'expired' AND expires_at <= ?)",
      ).run(now, now - expiredRetentionMs).changes;
      // Deliveries whose message was delivered by another channel, expired or purged.
      this.#stmt(
        `DELETE FROM webhook_deliveries WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.message_id = webhook_deliveries.message_id
           AND m.status = 'sent' AND m.expires_at > ?)`,
      ).run(now);
      // A reference only matters while its message is unexpired (access, 409 on delete).
      this.#stmt('DELETE FROM blob_refs WHERE expires_at <= ?').run(now);
      return { expired, purged };
    })();
  }

  // ── blobs ───────────────────────────────────────────────────────────────────────────────────

  async insertBlob(record: BlobRecord, quota: BlobQuota, now: number): Promise<InsertBlobResult> {
    return this.#db.transaction((): InsertBlobResult => {
      const usage = this.#usage(record.owner_key, now);
      if (usage.count + 1 > quota.maxCount) return { inserted: false, reason: 'count', usage };
      if (usage.bytes + record.size > quota.maxBytes) return { inserted: false, reason: 'bytes', usage };
      this.#stmt(
        'INSERT INTO blobs (blob_id, owner_key, hash, size, content_type, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ).run(
        record.blob_id,
        record.owner_key,
        record.hash,
        record.size,
        record.content_type,
        record.created_at,
        record.expires_at,
      );
      return { inserted: true, usage: { count: usage.count + 1, bytes: usage.bytes + record.size } };
    })();
  }

  #usage(owner: string, now: number): BlobUsage {
    const row = this.#stmt(
      'SELECT COUNT(*) AS count, COALESCE(SUM(size), 0) AS bytes FROM blobs WHERE owner_key = ? AND expires_at > ?',
    ).get(owner, now) as BlobUsage;
    return { count: row.count, bytes: row.bytes };
  }

  async blobUsage(owner: string, now: number): Promise<BlobUsage> {
    return this.#usage(owner, now);
  }

  async getBlob(blobId: string): Promise<BlobRecord | undefined> {
    return this.#stmt('SELECT * FROM blobs WHERE blob_id = ?').get(blobId) as BlobRecord | undefined;
  }

  async readableBlob(blobId: string, agent: string, now: number): Promise<BlobRecord | undefined> {
    return this.#stmt(
      `SELECT b.* FROM blobs b WHERE b.blob_id = ? AND b.expires_at > ? AND (b.owner_key = ? OR EXISTS (
         SELECT 1 FROM blob_refs r WHERE r.blob_id = b.blob_id AND r.expires_at > ? AND (r.sender_key = ? OR r.recipient_key = ?)))`,
    ).get(blobId, now, agent, now, agent, agent) as BlobRecord | undefined;
  }

  async deleteBlob(owner: string, blobId: string, now: number): Promise<'deleted' | 'not_found' | 'referenced'> {
    return this.#db.transaction(() => {
      if (!this.#stmt('SELECT 1 FROM blobs WHERE blob_id = ? AND owner_key = ?').get(blobId, owner)) return 'not_found';
      if (this.#stmt('SELECT 1 FROM blob_refs WHERE blob_id = ? AND expires_at > ? LIMIT 1').get(blobId, now))
        return 'referenced';
      this.#stmt('DELETE FROM blobs WHERE blob_id = ?').run(blobId);
      this.#stmt('DELETE FROM blob_refs WHERE blob_id = ?').run(blobId);
      return 'deleted';
    })();
  }

  async sweepBlobs(now: number, limit: number): Promise<Array<{ owner_key: string; blob_id: string }>> {
    return this.#db.transaction(() => {
      const gone = this.#stmt(
        `SELECT owner_key, blob_id FROM blobs b WHERE b.expires_at <= ? AND NOT EXISTS (
           SELECT 1 FROM blob_refs r WHERE r.blob_id = b.blob_id AND r.expires_at > ?) LIMIT ?`,
      ).all(now, now, limit) as Array<{ owner_key: string; blob_id: string }>;
      const remove = this.#stmt('DELETE FROM blobs WHERE blob_id = ?');
      const unref = this.#stmt('DELETE FROM blob_refs WHERE blob_id = ?');
      for (const g of gone) {
        remove.run(g.blob_id);
        unref.run(g.blob_id);
      }
      return gone;
    })();
  }

  // ── ACL ─────────────────────────────────────────────────────────────────────────────────────

  async putAcl(owner: string, peer: string, type: AclEntryType, now: number): Promise<AclEntry> {
    this.#stmt(
      `INSERT INTO acl (owner_key, peer_key, entry_type, created_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (owner_key, peer_key) DO UPDATE SET entry_type = excluded.entry_type`,
    ).run(owner, peer, type, now);
    return aclFromRow(this.#stmt('SELECT * FROM acl WHERE owner_key = ? AND peer_key = ?').get(owner, peer) as AclRow);
  }

  async getAcl(owner: string, peer: string): Promise<AclEntry | undefined> {
    const row = this.#stmt('SELECT * FROM acl WHERE owner_key = ? AND peer_key = ?').get(owner, peer) as
      | AclRow
      | undefined;
    return row ? aclFromRow(row) : undefined;
  }

  async listAcl(owner: string, type: AclEntryType | undefined, afterId: number, limit: number): Promise<AclEntry[]> {
    const rows =
      type === undefined
        ? this.#stmt('SELECT * FROM acl WHERE owner_key = ? AND id > ? ORDER BY id LIMIT ?').all(owner, afterId, limit)
        : this.#stmt('SELECT * FROM acl WHERE owner_key = ? AND entry_type = ? AND id > ? ORDER BY id LIMIT ?').all(
            owner,
            type,
            afterId,
            limit,
          );
    return (rows as AclRow[]).map(aclFromRow);
  }

  async deleteAcl(owner: string, peer: string): Promise<boolean> {
    return this.#stmt('DELETE FROM acl WHERE owner_key = ? AND peer_key = ?').run(owner, peer).changes > 0;
  }

  // ── webhooks ────────────────────────────────────────────────────────────────────────────────

  async putWebhook(agent: string, url: string, secret: string, now: number): Promise<WebhookRecord> {
    this.#stmt(
      `INSERT INTO webhooks (agent_key, url, secret, enabled, consecutive_failures, created_at) VALUES (?, ?, ?, 1, 0, ?)
       ON CONFLICT (agent_key) DO UPDATE SET url = excluded.url, secret = excluded.secret, enabled = 1,
         consecutive_failures = 0, created_at = excluded.created_at`,
    ).run(agent, url, secret, now);
    return { agent_key: agent, url, secret, enabled: true, consecutive_failures: 0, created_at: now };
  }

  async getWebhook(agent: string): Promise<WebhookRecord | undefined> {
    const row = this.#stmt('SELECT * FROM webhooks WHERE agent_key = ?').get(agent) as WebhookRow | undefined;
    return row ? webhookFromRow(row) : undefined;
  }

  async deleteWebhook(agent: string): Promise<boolean> {
    return this.#db.transaction(() => {
      this.#stmt('DELETE FROM webhook_deliveries WHERE agent_key = ?').run(agent);
      return this.#stmt('DELETE FROM webhooks WHERE agent_key = ?').run(agent).changes > 0;
    })();
  }

  async claimDeliveries(now: number, options: ClaimOptions): Promise<DeliveryClaim[]> {
    // The worker wakes after every commit; nothing due (no webhooks, the usual case) is one
    // indexed read instead of a transaction.
    const first = this.#stmt('SELECT MIN(next_attempt_at) FROM webhook_deliveries').pluck().get() as number | null;
    if (first === null || first > now) return [];
    return this.#claim(now, options);
  }

  async nextDeliveryAt(): Promise<number | undefined> {
    const at = this.#stmt(
      `SELECT d.next_attempt_at FROM webhook_deliveries d
       WHERE EXISTS (SELECT 1 FROM webhooks w WHERE w.agent_key = d.agent_key AND w.enabled = 1)
       ORDER BY d.next_attempt_at LIMIT 1`,
    )
      .pluck()
      .get() as number | undefined;
    return at ?? undefined;
  }

  async completeDelivery(deliveryId: string, now: number): Promise<DeliveryCompletion | undefined> {
    return this.#db.transaction((): DeliveryCompletion | undefined => {
      const row = this.#stmt('SELECT message_id, agent_key FROM webhook_deliveries WHERE delivery_id = ?').get(
        deliveryId,
      ) as { message_id: string; agent_key: string } | undefined;
      if (!row) return undefined;
      this.#stmt('DELETE FROM webhook_deliveries WHERE delivery_id = ?').run(deliveryId);
      this.#stmt('UPDATE webhooks SET consecutive_failures = 0 WHERE agent_key = ?').run(row.agent_key);
      const delivered =
        this.#stmt(
          `UPDATE messages SET status = 'delivered', delivered_at = ? WHERE message_id = ? AND recipient_key = ? AND status = 'sent' AND expires_at > ?`,
        ).run(now, row.message_id, row.agent_key, now).changes > 0;
      return { recipient_key: row.agent_key, message_id: row.message_id, delivered };
    })();
  }

  async failDelivery(
    deliveryId: string,
    _now: number,
    nextAttemptAt: number | null,
    disableAfter: number,
  ): Promise<DeliveryFailure | undefined> {
    return this.#db.transaction((): DeliveryFailure | undefined => {
      const agent = this.#stmt('SELECT agent_key FROM webhook_deliveries WHERE delivery_id = ?')
        .pluck()
        .get(deliveryId) as string | undefined;
      if (agent === undefined) return undefined;
      if (nextAttemptAt === null) this.#stmt('DELETE FROM webhook_deliveries WHERE delivery_id = ?').run(deliveryId);
      else
        this.#stmt(
          'UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = ? WHERE delivery_id = ?',
        ).run(nextAttemptAt, deliveryId);
      const failures = this.#stmt(
        'UPDATE webhooks SET consecutive_failures = consecutive_failures + 1 WHERE agent_key = ? RETURNING consecutive_failures, enabled',
      ).get(agent) as { consecutive_failures: number; enabled: number } | undefined;
      if (!failures) return { consecutive_failures: 0, disabled: false };
      const disabled = failures.enabled === 1 && failures.consecutive_failures >= disableAfter;
      if (disabled) {
        this.#stmt('UPDATE webhooks SET enabled = 0 WHERE agent_key = ?').run(agent);
        this.#stmt('DELETE FROM webhook_deliveries WHERE agent_key = ?').run(agent);
      }
      return { consecutive_failures: failures.consecutive_failures, disabled };
    })();
  }

  async ping(): Promise<void> {
    this.#stmt('SELECT 1').get();
  }

  async health(now: number): Promise<StorageHealth> {
    if (!this.#db.open) return { ok: false, reason: 'closed' };
    try {
      this.#headerSeen ||= hasDbHeader(this.location);
      const file = checkDbFile(this.location, { ...this.#fileCheck, headerSeen: this.#headerSeen });
      if (!file.ok) return file;
      this.#stmt('INSERT INTO health_probe (id, at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET at = excluded.at').run(
        now,
      );
    } catch (err) {
      return {
        ok: false,
        reason: 'write_failed',
        detail: `${(err as { code?: string }).code ?? ''} ${(err as Error).message}`.trim(),
      };
    }
    return { ok: true };
  }

  async close(): Promise<void> {
    await this.#checkpoint.close();
    if (this.#db.open) this.#db.close();
    this.#lock.release();
  }
}
