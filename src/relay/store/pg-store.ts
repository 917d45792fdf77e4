/**
 * The PostgreSQL store (external mode, docs/protocol.md §10): every table of the relay in one
 * database that any number of relay processes share. The schema and its migrations are
 * `pg-schema.ts`; connecting (the driver is loaded lazily) is `pg-connect.ts`. Rows decode with
 * the SQLite store's converters (`sqlite-schema.ts`): the columns are the same.
 *
 * The atomic steps of `Store` (see store.ts), here:
 * - `commit`: one transaction — the recipients' policies and the ACL pairs they ask about are
 *   read inside it (after everything that committed before), the accepted messages inserted with
 *   one statement (`seq` from a sequence, in batch order), then the acks and activity stamps.
 *   Deadlocks and serialization failures with another process are retried (the whole batch).
 * - `takeSent`: `SELECT … FOR UPDATE SKIP LOCKED` through a cursor (rows are read a few at a
 *   time, so a page of large bodies is never held whole), then one `UPDATE` of what was taken, in
 *   one transaction: concurrent polls, in any process, never get the same message.
 * - `ensureAgent`: `INSERT … ON CONFLICT DO NOTHING`.
 * - `sweep`: under `pg_try_advisory_xact_lock`: one process at a time sweeps, the others skip.
 * - `insertBlob`: quota check and insert under a per-owner advisory transaction lock
 *   (`LOCKS.blobs`, `hashtext(owner)`): concurrent uploads of one agent, in any process, queue.
 * - blob references: `commit` locks the attachments' blob rows (`FOR NO KEY UPDATE`, in id order)
 *   before checking them; `deleteBlob` / `sweepBlobs` lock the blob row before looking for
 *   references. So a delete and a commit naming the same blob serialize: either the message is
 *   refused (`blob_missing`) or the delete sees its reference (`referenced`).
 * - webhook deliveries: inserted in the message's commit when the recipient's webhook is enabled
 *   (its row read `FOR KEY SHARE`, so a concurrent `deleteWebhook` waits and then removes them);
 *   `claimDeliveries` is `SELECT … FOR UPDATE OF d SKIP LOCKED` + a lease update in one
 *   transaction; `completeDelivery` / `failDelivery` lock the webhook row first, then the delivery.
 * Transactions that lose a deadlock or serialization race with another process are retried.
 */
import type { AclEntry, AclEntryType } from '../../protocol/types.js';
import { newDeliveryId } from '../../protocol/webhook.js';
import { inboxRefusal } from '../policy.js';
import { connectPostgres, type PgConnectOptions, redactUrl, type Sql, startupError } from './pg-connect.js';
import { LOCKS, migrate } from './pg-schema.js';
import {
  type AclRow,
  AFTER_SQL,
  AgentPageReader,
  type AgentRow,
  aclFromRow,
  agentFromRow,
  agentParams,
  inboxConditions,
  type MessageRow,
  ORDER_SQL,
  PageReader,
  rowsToRead,
  TakeReader,
  tagsOf,
  tryMessage,
  type WebhookRow,
  webhookFromRow,
} from './sqlite-schema.js';
import type {
  AgentPage,
  AgentRecord,
  BlobQuota,
  BlobRecord,
  BlobUsage,
  ClaimOptions,
  CommitRefusal,
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

/** Rows fetched per cursor round trip. */
const CURSOR_ROWS = 16;
/** Attempts of a transaction that lost a deadlock or serialization race with another process. */
const TX_ATTEMPTS = 5;
/** A claim looks at most this many due rows past what it can take (agents at their limit, dead deliveries). */
const MAX_CLAIM_SCAN = 1000;
/** Rounds of one claim (each locks what it may take; dead rows and agents at their limit make more). */
const CLAIM_ROUNDS = 8;

/** A due delivery as a claim reads it (no body). */
type DueRow = {
  delivery_id: string;
  agent_key: string;
  attempts: number;
  message_id: string;
  url: string;
  secret: string;
  deliverable: boolean;
};

export interface PgStoreOptions extends PgConnectOptions {}

type Runner = Pick<Sql, 'unsafe'>;
type Row = Record<string, unknown>;

/** `?` placeholders (the SQLite store's shared SQL fragments) numbered `$from`, `$from+1`, … */
function numbered(sql: string, from: number): string {
  let n = from;
  return sql.replace(/\?/g, () => `$${n++}`);
}

function run<T extends Row = Row>(db: Runner, text: string, params: unknown[] = []): Promise<T[]> {
  return db.unsafe(text, params as never[], { prepare: true }) as unknown as Promise<T[]>;
}

/** Reads rows of `text` a few at a time until `take` says stop. */
async function eachRow<T = MessageRow>(
  db: Runner,
  text: string,
  params: unknown[],
  take: (row: T) => boolean,
): Promise<void> {
  const cursor = db.unsafe(text, params as never[], { prepare: true }).cursor(CURSOR_ROWS) as AsyncIterable<Row[]>;
  for await (const rows of cursor) {
    for (const row of rows) if (!take(row as unknown as T)) return;
  }
}

/** Deadlock detected, serialization failure: the transaction did nothing and may run again. */
function retryable(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return code === '40P01' || code === '40001';
}

/** A `blobs` row as read: a `BlobRecord` whose BIGINT columns may arrive as strings. */
type BlobRow = Omit<BlobRecord, 'size' | 'created_at' | 'expires_at'> &
  Record<'size' | 'created_at' | 'expires_at', number | string>;

function blobFromRow(row: BlobRow): BlobRecord {
  return {
    blob_id: row.blob_id,
    owner_key: row.owner_key,
    hash: row.hash,
    size: Number(row.size),
    content_type: row.content_type,
    created_at: Number(row.created_at),
    expires_at: Number(row.expires_at),
  };
}

const AGENT_INSERT = `INSERT INTO agents (public_key, display_name, status, visibility, inbox_policy, created_at, last_active_at,
  metadata, capabilities, search_text) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`;

export class PgStore implements Store {
  readonly location: string;
  readonly #sql: Sql;
  #closed = false;

  private constructor(sql: Sql, location: string) {
    this.#sql = sql;
    this.location = location;
  }

  /**
   * Connects (a bounded pool), brings the schema up to date (under an advisory lock) and checks
   * the tables answer. Failures are `ConfigError`s naming the URL without its password.
   */
  static async open(url: string, options: PgStoreOptions = {}): Promise<PgStore> {
    const location = redactUrl(url);
    const sql = await connectPostgres(url, options);
    try {
      await migrate(sql, location);
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
        await sql.unsafe(`SELECT 1 FROM ${table} LIMIT 1`);
    } catch (err) {
      await sql.end({ timeout: 0 }).catch(() => {});
      throw startupError(location, err);
    }
    return new PgStore(sql, location);
  }

  /** The pool, for the shared process state and the bus (`pg-shared.ts`, `../pg-bus.ts`) on the same database. */
  get sql(): Sql {
    return this.#sql;
  }

  /** One transaction, run again (whole) when it lost a deadlock or serialization race with another process. */
  async #tx<T>(body: (tx: Runner) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return (await this.#sql.begin((tx) => body(tx))) as T;
      } catch (err) {
        if (attempt >= TX_ATTEMPTS || !retryable(err)) throw err;
      }
    }
  }

  // ── agents ──────────────────────────────────────────────────────────────────────────────────

  async getAgent(key: string): Promise<AgentRecord | undefined> {
    const [row] = await run<AgentRow & Row>(this.#sql, 'SELECT * FROM agents WHERE public_key = $1', [key]);
    return row ? agentFromRow(row) : undefined;
  }

  async ensureAgent(record: AgentRecord): Promise<{ agent: AgentRecord; created: boolean }> {
    const created = await this.#sql.begin(async (tx) => {
      const inserted = await run(
        tx,
        `${AGENT_INSERT} ON CONFLICT (public_key) DO NOTHING RETURNING public_key`,
        agentParams(record),
      );
      if (inserted.length > 0) await this.#saveTags(tx, record);
      return inserted.length > 0;
    });
    return created
      ? { agent: record, created }
      : { agent: (await this.getAgent(record.public_key)) ?? record, created };
  }

  async saveAgent(record: AgentRecord): Promise<void> {
    await this.#sql.begin(async (tx) => {
      await run(
        tx,
        `${AGENT_INSERT}
         ON CONFLICT (public_key) DO UPDATE SET display_name = excluded.display_name, status = excluded.status,
           visibility = excluded.visibility, inbox_policy = excluded.inbox_policy,
           last_active_at = GREATEST(agents.last_active_at, excluded.last_active_at), metadata = excluded.metadata,
           capabilities = excluded.capabilities, search_text = excluded.search_text`,
        agentParams(record),
      );
      await this.#saveTags(tx, record);
    });
  }

  async #saveTags(tx: Runner, record: AgentRecord): Promise<void> {
    await run(tx, 'DELETE FROM agent_tags WHERE agent_key = $1', [record.public_key]);
    const tags = tagsOf(record);
    if (tags.length > 0) {
      await run(
        tx,
        'INSERT INTO agent_tags (agent_key, tag) SELECT $1, t FROM unnest($2::text[]) t ON CONFLICT DO NOTHING',
        [record.public_key, tags],
      );
    }
  }

  async deleteAgent(key: string): Promise<void> {
    await this.#tx(async (tx) => {
      await run(tx, 'DELETE FROM agents WHERE public_key = $1', [key]);
      await run(tx, 'DELETE FROM agent_tags WHERE agent_key = $1', [key]);
      await run(tx, 'DELETE FROM acl WHERE owner_key = $1', [key]);
      await run(tx, 'DELETE FROM webhooks WHERE agent_key = $1', [key]);
      await run(tx, 'DELETE FROM webhook_deliveries WHERE agent_key = $1', [key]);
      await run(tx, 'DELETE FROM messages WHERE recipient_key = $1', [key]);
      await run(tx, 'DELETE FROM blob_refs WHERE recipient_key = $1 OR sender_key = $1', [key]);
      await run(tx, 'DELETE FROM blobs WHERE owner_key = $1', [key]);
    });
  }

  async discover(query: DiscoverQuery): Promise<AgentPage> {
    const where: string[] = ["a.visibility = 'public'", "a.status = 'active'"];
    const params: unknown[] = [];
    const p = (v: unknown): string => `$${params.push(v)}`;
    for (const tag of query.tags)
      where.push(`EXISTS (SELECT 1 FROM agent_tags t WHERE t.agent_key = a.public_key AND t.tag = ${p(tag)})`);
    if (query.tag_prefix !== undefined) {
      where.push(
        `EXISTS (SELECT 1 FROM agent_tags t WHERE t.agent_key = a.public_key AND starts_with(t.tag, ${p(query.tag_prefix)}))`,
      );
    }
    if (query.name !== undefined)
      where.push(`strpos(lower(coalesce(a.display_name, '')), ${p(query.name.toLowerCase())}) > 0`);
    for (const word of query.words) where.push(`strpos(a.search_text, ${p(word)}) > 0`);
    if (query.active_since !== undefined) where.push(`a.last_active_at >= ${p(query.active_since)}`);
    if (query.after) {
      const t = p(query.after.t);
      where.push(`(a.last_active_at < ${t} OR (a.last_active_at = ${t} AND a.public_key > ${p(query.after.k)}))`);
    }
    const sql = `SELECT a.* FROM agents a WHERE ${where.join(' AND ')} ORDER BY a.last_active_at DESC, a.public_key ASC LIMIT ${p(query.limit + 1)}`;
    // A few rows at a time, so a page of heavy profiles stops at the byte budget instead of being read whole.
    const page = new AgentPageReader(query.limit, query.maxBytes);
    await eachRow<AgentRow>(this.#sql, sql, params, (row) => page.add(row));
    return page.result;
  }

  async capabilityTags(
    prefix: string | undefined,
    limit: number,
  ): Promise<Array<{ tag: string; agent_count: number }>> {
    const filter = prefix === undefined ? '' : ' AND starts_with(t.tag, $2)';
    const rows = await run<{ tag: string; agent_count: number }>(
      this.#sql,
      `SELECT t.tag AS tag, COUNT(*) AS agent_count FROM agent_tags t JOIN agents a ON a.public_key = t.agent_key
       WHERE a.visibility = 'public' AND a.status = 'active'${filter}
       GROUP BY t.tag ORDER BY agent_count DESC, t.tag ASC LIMIT $1`,
      prefix === undefined ? [limit] : [limit, prefix],
    );
    return rows.map((r) => ({ tag: r.tag, agent_count: Number(r.agent_count) }));
  }

  // ── messages ────────────────────────────────────────────────────────────────────────────────

  async commit(batch: WriteBatch, now: number): Promise<CommitResult> {
    return this.#tx((tx) => this.#commitIn(tx, batch, now));
  }

  async #commitIn(tx: Runner, batch: WriteBatch, now: number): Promise<CommitResult> {
    const refused = new Map<string, CommitRefusal>();
    const allowed: MessageRecord[] = [];
    const accepted: MessageRecord[] = [];
    if (batch.messages.length > 0) {
      // The policies, read inside the transaction: everything committed before is seen.
      const recipientKeys = [...new Set(batch.messages.map((m) => m.recipient_key))];
      const recipients = new Map<string, Pick<AgentRecord, 'public_key' | 'status' | 'inbox_policy'>>();
      for (const r of await run<{ public_key: string; status: string; inbox_policy: string }>(
        tx,
        'SELECT public_key, status, inbox_policy FROM agents WHERE public_key = ANY($1::text[])',
        [recipientKeys],
      )) {
        recipients.set(r.public_key, r as Pick<AgentRecord, 'public_key' | 'status' | 'inbox_policy'>);
      }
      const owners: string[] = [];
      const peers: string[] = [];
      for (const m of batch.messages) {
        const policy = recipients.get(m.recipient_key)?.inbox_policy;
        if (policy === 'allowlist' || policy === 'blocklist') {
          owners.push(m.recipient_key);
          peers.push(m.sender_key);
        }
      }
      const pairs = new Map<string, AclEntryType>();
      if (owners.length > 0) {
        for (const r of await run<{ owner_key: string; peer_key: string; entry_type: AclEntryType }>(
          tx,
          'SELECT a.owner_key, a.peer_key, a.entry_type FROM acl a JOIN unnest($1::text[], $2::text[]) AS p(o, k) ON a.owner_key = p.o AND a.peer_key = p.k',
          [owners, peers],
        )) {
          pairs.set(`${r.owner_key} ${r.peer_key}`, r.entry_type);
        }
      }
      for (const m of batch.messages) {
        const refusal = inboxRefusal(recipients.get(m.recipient_key), m.sender_key, (peer) =>
          pairs.get(`${m.recipient_key} ${peer}`),
        );
        if (refusal) refused.set(m.message_id, refusal);
        else allowed.push(m);
      }
    }
    // Attachments: each must be the sender's unexpired blob. The rows are locked (in id order, so
    // two commits naming the same blobs queue instead of deadlocking) until this commit ends: a
    // concurrent deleteBlob / sweepBlobs waits, then sees the reference made here.
    const blobIds = [...new Set(allowed.flatMap((m) => m.attachments.map((a) => a.blob_id)))].sort();
    const blobs = new Map<string, { owner_key: string; expires_at: number }>();
    if (blobIds.length > 0) {
      for (const r of await run<{ blob_id: string; owner_key: string; expires_at: number }>(
        tx,
        'SELECT blob_id, owner_key, expires_at FROM blobs WHERE blob_id = ANY($1::text[]) ORDER BY blob_id FOR NO KEY UPDATE',
        [blobIds],
      )) {
        blobs.set(r.blob_id, { owner_key: r.owner_key, expires_at: Number(r.expires_at) });
      }
    }
    for (const m of allowed) {
      const missing = m.attachments.find((a) => {
        const blob = blobs.get(a.blob_id);
        return !blob || blob.owner_key !== m.sender_key || blob.expires_at <= now;
      });
      if (missing) refused.set(m.message_id, { blob_missing: missing.blob_id });
      else accepted.push(m);
    }
    if (accepted.length > 0) {
      const col = <T>(f: (m: MessageRecord) => T): T[] => accepted.map(f);
      const rows = await run<{ message_id: string; seq: number }>(
        tx,
        `INSERT INTO messages (message_id, sender_key, recipient_key, content_type, body, attachments, thread_id,
           in_reply_to, metadata, status, created_at, expires_at, delivered_at)
         SELECT i, s, r, ct, b, att, th, irt, md, st, ca, ea, da
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                     $9::text[], $10::text[], $11::bigint[], $12::bigint[], $13::bigint[])
              WITH ORDINALITY AS m(i, s, r, ct, b, att, th, irt, md, st, ca, ea, da, ord)
         ORDER BY ord
         RETURNING message_id, seq`,
        [
          col((m) => m.message_id),
          col((m) => m.sender_key),
          col((m) => m.recipient_key),
          col((m) => m.content_type),
          col((m) => m.body_json),
          col((m) => JSON.stringify(m.attachments)),
          col((m) => m.thread_id),
          col((m) => m.in_reply_to),
          col((m) => JSON.stringify(m.metadata)),
          col((m) => m.status),
          col((m) => m.created_at),
          col((m) => m.expires_at),
          col((m) => m.delivered_at),
        ],
      );
      const seqs = new Map(rows.map((r) => [r.message_id, Number(r.seq)]));
      for (const m of accepted) m.seq = seqs.get(m.message_id)!;
      await this.#addDeliveries(tx, accepted, now);
      await this.#addBlobRefs(tx, accepted);
    }
    const delivered: CommitResult['delivered'] = [];
    if (batch.delivered.length > 0) {
      const done = await run<{ message_id: string; recipient_key: string }>(
        tx,
        `UPDATE messages m SET status = 'delivered', delivered_at = $1
         FROM unnest($2::text[], $3::text[]) AS d(id, r)
         WHERE m.message_id = d.id AND m.recipient_key = d.r AND m.status = 'sent' AND m.expires_at > $1
         RETURNING m.message_id, m.recipient_key`,
        [now, batch.delivered.map((d) => d.message_id), batch.delivered.map((d) => d.recipient_key)],
      );
      const took = new Set(done.map((r) => `${r.message_id} ${r.recipient_key}`));
      for (const d of batch.delivered) {
        const k = `${d.message_id} ${d.recipient_key}`;
        if (took.delete(k)) delivered.push(d);
      }
    }
    if (batch.active.size > 0) {
      // Sorted, so two processes stamping the same agents lock them in one order.
      const stamps = [...batch.active].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      await run(
        tx,
        `UPDATE agents a SET last_active_at = v.at FROM unnest($1::text[], $2::bigint[]) AS v(k, at)
         WHERE a.public_key = v.k AND a.last_active_at < v.at`,
        [stamps.map(([k]) => k), stamps.map(([, at]) => at)],
      );
    }
    return { refused, delivered };
  }

  /** A pending delivery (due now) for each stored message whose recipient has an enabled webhook. */
  async #addDeliveries(tx: Runner, stored: MessageRecord[], now: number): Promise<void> {
    const recipients = [...new Set(stored.map((m) => m.recipient_key))].sort();
    // KEY SHARE: a concurrent deleteWebhook (which deletes the row first) waits for this commit,
    // then removes the deliveries made here; failure counting (no key update) is not blocked.
    const hooked = new Set(
      (
        await run<{ agent_key: string }>(
          tx,
          'SELECT agent_key FROM webhooks WHERE agent_key = ANY($1::text[]) AND enabled = 1 ORDER BY agent_key FOR KEY SHARE',
          [recipients],
        )
      ).map((r) => r.agent_key),
    );
    const due = stored.filter((m) => hooked.has(m.recipient_key));
    if (due.length === 0) return;
    await run(
      tx,
      `INSERT INTO webhook_deliveries (delivery_id, message_id, agent_key, attempts, next_attempt_at)
       SELECT d, m, a, 0, $4::bigint FROM unnest($1::text[], $2::text[], $3::text[]) AS v(d, m, a)`,
      [due.map(() => newDeliveryId()), due.map((m) => m.message_id), due.map((m) => m.recipient_key), now],
    );
  }

  /** References of stored messages to their blobs (access for the recipient, no delete while unexpired) and the blobs' expiry extended. */
  async #addBlobRefs(tx: Runner, stored: MessageRecord[]): Promise<void> {
    const refs = stored.flatMap((m) => m.attachments.map((a) => ({ blob_id: a.blob_id, m })));
    if (refs.length === 0) return;
    await run(
      tx,
      `INSERT INTO blob_refs (blob_id, message_id, sender_key, recipient_key, expires_at)
       SELECT b, m, s, r, e FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[]) AS v(b, m, s, r, e)
       ON CONFLICT DO NOTHING`,
      [
        refs.map((x) => x.blob_id),
        refs.map((x) => x.m.message_id),
        refs.map((x) => x.m.sender_key),
        refs.map((x) => x.m.recipient_key),
        refs.map((x) => x.m.expires_at),
      ],
    );
    await run(
      tx,
      `UPDATE blobs b SET expires_at = v.e FROM (
         SELECT b AS id, max(e) AS e FROM unnest($1::text[], $2::bigint[]) AS u(b, e) GROUP BY b
       ) v WHERE b.blob_id = v.id AND b.expires_at < v.e`,
      [refs.map((x) => x.blob_id), refs.map((x) => x.m.expires_at)],
    );
  }

  async getMessage(id: string): Promise<MessageRecord | undefined> {
    const [row] = await run<MessageRow & Row>(this.#sql, 'SELECT * FROM messages WHERE message_id = $1', [id]);
    return row ? tryMessage(row) : undefined;
  }

  async getMessages(ids: readonly string[]): Promise<MessageRecord[]> {
    if (ids.length === 0) return [];
    const rows = await run<MessageRow & Row>(this.#sql, 'SELECT * FROM messages WHERE message_id = ANY($1::text[])', [
      [...ids],
    ]);
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
    return this.#sql.begin(async (tx) => {
      const take = new TakeReader(limit, now, serve);
      const { sql, params } = inboxConditions(filter);
      const text = `SELECT * FROM messages WHERE recipient_key = $1 AND status = 'sent' AND expires_at > $2${numbered(sql, 3)}
        ${ORDER_SQL} LIMIT $${3 + params.length} FOR UPDATE SKIP LOCKED`;
      await eachRow(tx, text, [recipient, now, ...params, rowsToRead(limit)], (row) => take.add(row));
      if (take.messages.length > 0) {
        await run(
          tx,
          "UPDATE messages SET status = 'delivered', delivered_at = $1, take_id = $3 WHERE seq = ANY($2::bigint[]) AND status = 'sent'",
          [now, take.messages.map((m) => m.seq), filter.take ?? null],
        );
      }
      return take.result;
    }) as Promise<TakeResult>;
  }

  /** A page read row by row: at most `limit` messages, and none past `maxBytes` of bodies once one is in. */
  async #page(text: string, params: unknown[], limit: number, maxBytes: number): Promise<MessagePageRecords> {
    const page = new PageReader(limit, maxBytes);
    await eachRow(this.#sql, text, [...params, rowsToRead(limit)], (row) => page.add(row));
    return page.result;
  }

  async listInbox(
    recipient: string,
    filter: InboxFilter,
    limit: number,
    now: number,
    maxBytes: number,
  ): Promise<MessagePageRecords> {
    const { sql, params } = inboxConditions(filter);
    const statusSql =
      filter.status === 'expired'
        ? "(status = 'expired' OR (status = 'sent' AND expires_at <= $2))"
        : filter.status === 'sent'
          ? "(status = 'sent' AND expires_at > $2)"
          : "(status = 'delivered' AND $2::bigint IS NOT NULL)";
    const text = `SELECT * FROM messages WHERE recipient_key = $1 AND ${statusSql}${numbered(sql, 3)} ${ORDER_SQL} LIMIT $${3 + params.length}`;
    return this.#page(text, [recipient, now, ...params], limit, maxBytes);
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
    await eachRow(
      this.#sql,
      "SELECT * FROM messages WHERE recipient_key = $1 AND status = 'sent' AND seq > $2 AND expires_at > $3 ORDER BY seq LIMIT $4",
      [recipient, afterSeq, now, limit],
      (row) => {
        const record = tryMessage(row);
        if (!record) return true;
        out.push(record);
        bytes += row.body.length;
        return bytes < maxBytes;
      },
    );
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
    const text = `SELECT * FROM messages WHERE (thread_id = $1 OR message_id = $2) AND (sender_key = $3 OR recipient_key = $4) AND ${numbered(AFTER_SQL, 5)}
       ${ORDER_SQL} LIMIT $8`;
    return this.#page(text, [threadId, threadId, caller, caller, at.t, at.t, at.id], limit, maxBytes);
  }

  /** One process at a time (an advisory lock held for the transaction); the others skip their turn. */
  async sweep(now: number, expiredRetentionMs: number): Promise<{ expired: number; purged: number }> {
    return this.#sql.begin(async (tx) => {
      const [lock] = await run<{ ok: boolean }>(tx, 'SELECT pg_try_advisory_xact_lock($1, $2) AS ok', [
        LOCKS.namespace,
        LOCKS.sweep,
      ]);
      if (!lock?.ok) return { expired: 0, purged: 0 };
      const expired = await tx.unsafe(
        "UPDATE messages SET status = 'expired' WHERE status = 'sent' AND expires_at <= $1",
        [now],
      );
      const purged = await tx.unsafe(
        "DELETE FROM messages WHERE (status = 'delivered' AND expires_at <= $1) OR (status = 'expired' AND expires_at <= $2)",
        [now, now - expiredRetentionMs],
      );
      // Deliveries whose message was delivered by another channel, expired or purged.
      await tx.unsafe(
        `DELETE FROM webhook_deliveries d WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.message_id = d.message_id
           AND m.status = 'sent' AND m.expires_at > $1)`,
        [now],
      );
      // A reference only matters while its message is unexpired (access, 409 on delete).
      await tx.unsafe('DELETE FROM blob_refs WHERE expires_at <= $1', [now]);
      return { expired: expired.count, purged: purged.count };
    }) as Promise<{ expired: number; purged: number }>;
  }

  // ── blobs ───────────────────────────────────────────────────────────────────────────────────

  async insertBlob(record: BlobRecord, quota: BlobQuota, now: number): Promise<InsertBlobResult> {
    return this.#tx(async (tx): Promise<InsertBlobResult> => {
      // One owner's uploads queue here, in every process: check and insert cannot interleave.
      await run(tx, 'SELECT pg_advisory_xact_lock($1, hashtext($2))', [LOCKS.blobs, record.owner_key]);
      const usage = await this.#usage(tx, record.owner_key, now);
      if (usage.count + 1 > quota.maxCount) return { inserted: false, reason: 'count', usage };
      if (usage.bytes + record.size > quota.maxBytes) return { inserted: false, reason: 'bytes', usage };
      await run(
        tx,
        'INSERT INTO blobs (blob_id, owner_key, hash, size, content_type, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)',
        [
          record.blob_id,
          record.owner_key,
          record.hash,
          record.size,
          record.content_type,
          record.created_at,
          record.expires_at,
        ],
      );
      return { inserted: true, usage: { count: usage.count + 1, bytes: usage.bytes + record.size } };
    });
  }

  async #usage(db: Runner, owner: string, now: number): Promise<BlobUsage> {
    const [row] = await run<{ count: number; bytes: number }>(
      db,
      'SELECT COUNT(*) AS count, COALESCE(SUM(size), 0)::bigint AS bytes FROM blobs WHERE owner_key = $1 AND expires_at > $2',
      [owner, now],
    );
    return { count: Number(row?.count ?? 0), bytes: Number(row?.bytes ?? 0) };
  }

  async blobUsage(owner: string, now: number): Promise<BlobUsage> {
    return this.#usage(this.#sql, owner, now);
  }

  async getBlob(blobId: string): Promise<BlobRecord | undefined> {
    const [row] = await run<BlobRow & Row>(this.#sql, 'SELECT * FROM blobs WHERE blob_id = $1', [blobId]);
    return row ? blobFromRow(row) : undefined;
  }

  async readableBlob(blobId: string, agent: string, now: number): Promise<BlobRecord | undefined> {
    const [row] = await run<BlobRow & Row>(
      this.#sql,
      `SELECT b.* FROM blobs b WHERE b.blob_id = $1 AND b.expires_at > $2 AND (b.owner_key = $3 OR EXISTS (
         SELECT 1 FROM blob_refs r WHERE r.blob_id = b.blob_id AND r.expires_at > $2 AND (r.sender_key = $3 OR r.recipient_key = $3)))`,
      [blobId, now, agent],
    );
    return row ? blobFromRow(row) : undefined;
  }

  async deleteBlob(owner: string, blobId: string, now: number): Promise<'deleted' | 'not_found' | 'referenced'> {
    return this.#tx(async (tx) => {
      // The row lock first: a commit referencing this blob either finished (its reference is seen
      // below) or waits, then finds the blob gone.
      const [mine] = await run(tx, 'SELECT 1 FROM blobs WHERE blob_id = $1 AND owner_key = $2 FOR UPDATE', [
        blobId,
        owner,
      ]);
      if (!mine) return 'not_found' as const;
      const [ref] = await run(tx, 'SELECT 1 FROM blob_refs WHERE blob_id = $1 AND expires_at > $2 LIMIT 1', [
        blobId,
        now,
      ]);
      if (ref) return 'referenced' as const;
      await run(tx, 'DELETE FROM blobs WHERE blob_id = $1', [blobId]);
      await run(tx, 'DELETE FROM blob_refs WHERE blob_id = $1', [blobId]);
      return 'deleted' as const;
    });
  }

  async sweepBlobs(now: number, limit: number): Promise<Array<{ owner_key: string; blob_id: string }>> {
    return this.#tx(async (tx) => {
      // Locked (skipping rows a commit or another sweeper holds), then the references checked
      // again: this statement's snapshot is taken after the locks.
      const candidates = await run<{ blob_id: string }>(
        tx,
        `SELECT b.blob_id FROM blobs b WHERE b.expires_at <= $1
           AND NOT EXISTS (SELECT 1 FROM blob_refs r WHERE r.blob_id = b.blob_id AND r.expires_at > $1)
         ORDER BY b.expires_at, b.blob_id LIMIT $2 FOR UPDATE OF b SKIP LOCKED`,
        [now, limit],
      );
      if (candidates.length === 0) return [];
      const gone = await run<{ owner_key: string; blob_id: string }>(
        tx,
        `DELETE FROM blobs b WHERE b.blob_id IN (
           SELECT c.id FROM unnest($1::text[]) AS c(id)
           WHERE NOT EXISTS (SELECT 1 FROM blob_refs r WHERE r.blob_id = c.id AND r.expires_at > $2)
           LIMIT $3)
         RETURNING b.owner_key, b.blob_id`,
        [candidates.map((c) => c.blob_id), now, limit],
      );
      if (gone.length > 0)
        await run(tx, 'DELETE FROM blob_refs WHERE blob_id = ANY($1::text[])', [gone.map((g) => g.blob_id)]);
      return gone.map((g) => ({ owner_key: g.owner_key, blob_id: g.blob_id }));
    });
  }

  // ── ACL ─────────────────────────────────────────────────────────────────────────────────────

  async putAcl(owner: string, peer: string, type: AclEntryType, now: number): Promise<AclEntry> {
    const [row] = await run<AclRow & Row>(
      this.#sql,
      `INSERT INTO acl (owner_key, peer_key, entry_type, created_at) VALUES ($1, $2, $3, $4)
       ON CONFLICT (owner_key, peer_key) DO UPDATE SET entry_type = excluded.entry_type RETURNING *`,
      [owner, peer, type, now],
    );
    return aclFromRow(row!);
  }

  async getAcl(owner: string, peer: string): Promise<AclEntry | undefined> {
    const [row] = await run<AclRow & Row>(this.#sql, 'SELECT * FROM acl WHERE owner_key = $1 AND peer_key = $2', [
      owner,
      peer,
    ]);
    return row ? aclFromRow(row) : undefined;
  }

  async listAcl(owner: string, type: AclEntryType | undefined, afterId: number, limit: number): Promise<AclEntry[]> {
    const rows =
      type === undefined
        ? await run<AclRow & Row>(
            this.#sql,
            'SELECT * FROM acl WHERE owner_key = $1 AND id > $2 ORDER BY id LIMIT $3',
            [owner, afterId, limit],
          )
        : await run<AclRow & Row>(
            this.#sql,
            'SELECT * FROM acl WHERE owner_key = $1 AND entry_type = $2 AND id > $3 ORDER BY id LIMIT $4',
            [owner, type, afterId, limit],
          );
    return rows.map(aclFromRow);
  }

  async deleteAcl(owner: string, peer: string): Promise<boolean> {
    return (await this.#sql.unsafe('DELETE FROM acl WHERE owner_key = $1 AND peer_key = $2', [owner, peer])).count > 0;
  }

  // ── webhooks ────────────────────────────────────────────────────────────────────────────────

  async putWebhook(agent: string, url: string, secret: string, now: number): Promise<WebhookRecord> {
    await run(
      this.#sql,
      `INSERT INTO webhooks (agent_key, url, secret, enabled, consecutive_failures, created_at) VALUES ($1, $2, $3, 1, 0, $4)
       ON CONFLICT (agent_key) DO UPDATE SET url = excluded.url, secret = excluded.secret, enabled = 1,
         consecutive_failures = 0, created_at = excluded.created_at`,
      [agent, url, secret, now],
    );
    return { agent_key: agent, url, secret, enabled: true, consecutive_failures: 0, created_at: now };
  }

  async getWebhook(agent: string): Promise<WebhookRecord | undefined> {
    const [row] = await run<WebhookRow & Row>(this.#sql, 'SELECT * FROM webhooks WHERE agent_key = $1', [agent]);
    return row ? webhookFromRow({ ...row, created_at: Number(row.created_at) }) : undefined;
  }

  async deleteWebhook(agent: string): Promise<boolean> {
    return this.#tx(async (tx) => {
      // The webhook row first (a commit adding a delivery holds it KEY SHARE: this waits), then
      // the deliveries, read after that commit.
      const gone = await tx.unsafe('DELETE FROM webhooks WHERE agent_key = $1', [agent]);
      await tx.unsafe('DELETE FROM webhook_deliveries WHERE agent_key = $1', [agent]);
      return gone.count > 0;
    });
  }

  async claimDeliveries(now: number, options: ClaimOptions): Promise<DeliveryClaim[]> {
    if (options.limit <= 0) return [];
    return this.#tx(async (tx) => {
      const taken = new Map<string, number>();
      const picked: DueRow[] = [];
      const dead: string[] = [];
      /** Rows this claim locked but will not take (their agent reached its limit in this claim). */
      const kept: string[] = [];
      // The queue pattern: `FOR UPDATE SKIP LOCKED` under a LIMIT counts only rows this claim could
      // lock (a row another claimer holds is skipped, one it leased meanwhile is re-checked and no
      // longer due), so concurrent claimers split the due work instead of waiting or coming back
      // empty. Agents at their limit are left out by the query; a round that locked more of one
      // agent than it may take keeps the extra rows locked (untaken) until this transaction ends.
      for (let round = 0; round < CLAIM_ROUNDS && picked.length < options.limit; round++) {
        const full = new Set([...options.inFlight].filter(([, n]) => n >= options.perAgent).map(([agent]) => agent));
        for (const [agent, n] of taken) if ((options.inFlight.get(agent) ?? 0) + n >= options.perAgent) full.add(agent);
        // Rows this transaction locked already are not skipped by SKIP LOCKED: they are left out by id.
        const mine = [...dead, ...kept, ...picked.map((p) => p.delivery_id)];
        const due = await run<DueRow>(
          tx,
          `SELECT d.delivery_id, d.agent_key, d.attempts, d.message_id, w.url, w.secret,
             EXISTS (SELECT 1 FROM messages m WHERE m.message_id = d.message_id AND m.status = 'sent' AND m.expires_at > $1) AS deliverable
           FROM webhook_deliveries d
           JOIN webhooks w ON w.agent_key = d.agent_key AND w.enabled = 1
           WHERE d.next_attempt_at <= $1 AND NOT (d.agent_key = ANY($2::text[])) AND NOT (d.delivery_id = ANY($3::text[]))
           ORDER BY d.next_attempt_at, d.delivery_id
           LIMIT $4
           FOR UPDATE OF d SKIP LOCKED`,
          [now, [...full], mine, options.limit - picked.length],
        );
        for (const row of due) {
          if (!row.deliverable) {
            dead.push(row.delivery_id);
            continue;
          }
          const count = (options.inFlight.get(row.agent_key) ?? 0) + (taken.get(row.agent_key) ?? 0);
          if (count >= options.perAgent || picked.length >= options.limit) {
            kept.push(row.delivery_id);
            continue;
          }
          taken.set(row.agent_key, (taken.get(row.agent_key) ?? 0) + 1);
          picked.push(row);
        }
        if (due.length === 0 || dead.length + kept.length > MAX_CLAIM_SCAN) break;
      }
      const messages = new Map<string, MessageRecord>();
      if (picked.length > 0) {
        const rows = await run<MessageRow & Row>(tx, 'SELECT * FROM messages WHERE message_id = ANY($1::text[])', [
          picked.map((p) => p.message_id),
        ]);
        for (const row of rows) {
          const record = tryMessage(row);
          if (record) messages.set(record.message_id, record);
        }
      }
      const claims: DeliveryClaim[] = [];
      for (const row of picked) {
        const message = messages.get(row.message_id);
        if (!message) {
          dead.push(row.delivery_id);
          continue;
        }
        claims.push({
          delivery_id: row.delivery_id,
          attempts: Number(row.attempts),
          url: row.url,
          secret: row.secret,
          message,
        });
      }
      if (claims.length > 0) {
        await run(tx, 'UPDATE webhook_deliveries SET next_attempt_at = $1 WHERE delivery_id = ANY($2::text[])', [
          now + options.leaseMs,
          claims.map((c) => c.delivery_id),
        ]);
      }
      if (dead.length > 0) await run(tx, 'DELETE FROM webhook_deliveries WHERE delivery_id = ANY($1::text[])', [dead]);
      return claims;
    });
  }

  async nextDeliveryAt(): Promise<number | undefined> {
    const [row] = await run<{ at: number }>(
      this.#sql,
      `SELECT d.next_attempt_at AS at FROM webhook_deliveries d
       WHERE EXISTS (SELECT 1 FROM webhooks w WHERE w.agent_key = d.agent_key AND w.enabled = 1)
       ORDER BY d.next_attempt_at LIMIT 1`,
    );
    return row ? Number(row.at) : undefined;
  }

  /** The delivery's agent, with its webhook row locked first (the order every delivery outcome takes). */
  async #lockDelivery(
    tx: Runner,
    deliveryId: string,
  ): Promise<
    | { message_id: string; agent_key: string; webhook: { consecutive_failures: number; enabled: number } | undefined }
    | undefined
  > {
    const [peek] = await run<{ agent_key: string }>(
      tx,
      'SELECT agent_key FROM webhook_deliveries WHERE delivery_id = $1',
      [deliveryId],
    );
    if (!peek) return undefined;
    const [webhook] = await run<{ consecutive_failures: number; enabled: number }>(
      tx,
      'SELECT consecutive_failures, enabled FROM webhooks WHERE agent_key = $1 FOR NO KEY UPDATE',
      [peek.agent_key],
    );
    const [row] = await run<{ message_id: string; agent_key: string }>(
      tx,
      'SELECT message_id, agent_key FROM webhook_deliveries WHERE delivery_id = $1 FOR UPDATE',
      [deliveryId],
    );
    return row ? { ...row, webhook } : undefined;
  }

  async completeDelivery(deliveryId: string, now: number): Promise<DeliveryCompletion | undefined> {
    return this.#tx(async (tx): Promise<DeliveryCompletion | undefined> => {
      const row = await this.#lockDelivery(tx, deliveryId);
      if (!row) return undefined;
      await run(tx, 'DELETE FROM webhook_deliveries WHERE delivery_id = $1', [deliveryId]);
      await run(tx, 'UPDATE webhooks SET consecutive_failures = 0 WHERE agent_key = $1', [row.agent_key]);
      const done = await tx.unsafe(
        "UPDATE messages SET status = 'delivered', delivered_at = $1 WHERE message_id = $2 AND recipient_key = $3 AND status = 'sent' AND expires_at > $1",
        [now, row.message_id, row.agent_key],
      );
      return { recipient_key: row.agent_key, message_id: row.message_id, delivered: done.count > 0 };
    });
  }

  async failDelivery(
    deliveryId: string,
    _now: number,
    nextAttemptAt: number | null,
    disableAfter: number,
  ): Promise<DeliveryFailure | undefined> {
    return this.#tx(async (tx): Promise<DeliveryFailure | undefined> => {
      const row = await this.#lockDelivery(tx, deliveryId);
      if (!row) return undefined;
      if (nextAttemptAt === null) await run(tx, 'DELETE FROM webhook_deliveries WHERE delivery_id = $1', [deliveryId]);
      else
        await run(
          tx,
          'UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = $1 WHERE delivery_id = $2',
          [nextAttemptAt, deliveryId],
        );
      const [failures] = await run<{ consecutive_failures: number; enabled: number }>(
        tx,
        'UPDATE webhooks SET consecutive_failures = consecutive_failures + 1 WHERE agent_key = $1 RETURNING consecutive_failures, enabled',
        [row.agent_key],
      );
      if (!failures) return { consecutive_failures: 0, disabled: false };
      const disabled = failures.enabled === 1 && failures.consecutive_failures >= disableAfter;
      if (disabled) {
        await run(tx, 'UPDATE webhooks SET enabled = 0 WHERE agent_key = $1', [row.agent_key]);
        await run(tx, 'DELETE FROM webhook_deliveries WHERE agent_key = $1', [row.agent_key]);
      }
      return { consecutive_failures: failures.consecutive_failures, disabled };
    });
  }

  async ping(): Promise<void> {
    await this.#sql`SELECT 1`;
  }

  /** A committed write on the server, within 5 s. Never rejects. */
  async health(now: number): Promise<StorageHealth> {
    if (this.#closed) return { ok: false, reason: 'closed' };
    try {
      await this.#sql.begin(async (tx) => {
        await tx.unsafe("SET LOCAL statement_timeout = '5s'");
        await run(
          tx,
          'INSERT INTO health_probe (id, at) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET at = excluded.at',
          [now],
        );
      });
    } catch (err) {
      const code = String((err as { code?: unknown })?.code ?? '');
      const reason = /^(CONNECT|CONNECTION_|ECONN|ETIMEDOUT|08)/.test(code) ? 'unreachable' : 'write_failed';
      return { ok: false, reason, detail: `${code} ${(err as Error)?.message ?? String(err)}`.trim() };
    }
    return { ok: true };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#sql.end({ timeout: 5 });
  }
}
