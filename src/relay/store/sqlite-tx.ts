/**
 * The SQLite store's transactions that must be atomic (see `Store`): a commit that inserts each
 * message only if the recipient's policy, read inside the transaction, lets it in (and creates
 * its webhook delivery when the recipient has an enabled webhook); a poll that reads a page and
 * marks what it hands out; and the claim of due webhook deliveries. better-sqlite3 runs a
 * transaction synchronously on the one connection, so nothing interleaves with any of them.
 */
import type Database from 'better-sqlite3';
import type { AclEntryType } from '../../protocol/types.js';
import { newDeliveryId } from '../../protocol/webhook.js';
import { inboxRefusal } from '../policy.js';
import { inboxSql, type MessageRow, rowsToRead, TakeReader, tryMessage } from './sqlite-schema.js';
import type {
  AgentRecord,
  ClaimOptions,
  CommitRefusal,
  CommitResult,
  DeliveryClaim,
  InboxFilter,
  MessageRecord,
  ServeVerdict,
  TakeResult,
  WriteBatch,
} from './store.js';

/** `Store.commit`: messages (the policy checked again, inside), acks, activity stamps — one transaction. */
export function commitTransaction(db: Database.Database): (batch: WriteBatch, now: number) => CommitResult {
  const insert = db.prepare(
    `INSERT INTO messages (message_id, sender_key, recipient_key, content_type, body, attachments, thread_id,
       in_reply_to, metadata, status, created_at, expires_at, delivered_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const deliver = db.prepare(
    `UPDATE messages SET status = 'delivered', delivered_at = ? WHERE message_id = ? AND recipient_key = ? AND status = 'sent' AND expires_at > ?`,
  );
  const touch = db.prepare('UPDATE agents SET last_active_at = ? WHERE public_key = ? AND last_active_at < ?');
  const policyOf = db.prepare('SELECT public_key, status, inbox_policy FROM agents WHERE public_key = ?');
  const aclOf = db.prepare('SELECT entry_type FROM acl WHERE owner_key = ? AND peer_key = ?').pluck();
  const hookOf = db.prepare('SELECT enabled FROM webhooks WHERE agent_key = ?').pluck();
  const addDelivery = db.prepare(
    'INSERT INTO webhook_deliveries (delivery_id, message_id, agent_key, attempts, next_attempt_at) VALUES (?, ?, ?, 0, ?)',
  );
  const blobOf = db.prepare('SELECT owner_key, expires_at FROM blobs WHERE blob_id = ?');
  const addRef = db.prepare(
    'INSERT OR IGNORE INTO blob_refs (blob_id, message_id, sender_key, recipient_key, expires_at) VALUES (?, ?, ?, ?, ?)',
  );
  const extend = db.prepare('UPDATE blobs SET expires_at = MAX(expires_at, ?) WHERE blob_id = ?');
  /** The first attachment that is not the sender's unexpired blob. */
  const missingBlob = (m: WriteBatch['messages'][number], now: number): string | undefined => {
    for (const a of m.attachments) {
      const blob = blobOf.get(a.blob_id) as { owner_key: string; expires_at: number } | undefined;
      if (!blob || blob.owner_key !== m.sender_key || blob.expires_at <= now) return a.blob_id;
    }
    return undefined;
  };
  return db.transaction((batch: WriteBatch, now: number): CommitResult => {
    const refused = new Map<string, CommitRefusal>();
    const hooks = new Map<string, boolean>();
    const webhooks = new Set<string>();
    // The policy is read once per recipient (and ACL pair) per batch: nothing else writes in between.
    const recipients = new Map<string, Pick<AgentRecord, 'public_key' | 'status' | 'inbox_policy'> | undefined>();
    const pairs = new Map<string, AclEntryType | undefined>();
    for (const m of batch.messages) {
      let recipient = recipients.get(m.recipient_key);
      if (!recipients.has(m.recipient_key)) {
        recipient = policyOf.get(m.recipient_key) as AgentRecord | undefined;
        recipients.set(m.recipient_key, recipient);
      }
      const refusal = inboxRefusal(recipient, m.sender_key, (peer) => {
        const pair = `${m.recipient_key} ${peer}`;
        if (!pairs.has(pair)) pairs.set(pair, aclOf.get(m.recipient_key, peer) as AclEntryType | undefined);
        return pairs.get(pair);
      });
      if (refusal) {
        refused.set(m.message_id, refusal);
        continue;
      }
      const missing = m.attachments.length === 0 ? undefined : missingBlob(m, now);
      if (missing !== undefined) {
        refused.set(m.message_id, { blob_missing: missing });
        continue;
      }
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
      let hook = hooks.get(m.recipient_key);
      if (hook === undefined) hooks.set(m.recipient_key, (hook = hookOf.get(m.recipient_key) === 1));
      if (hook) {
        addDelivery.run(newDeliveryId(), m.message_id, m.recipient_key, now);
        webhooks.add(m.message_id);
      }
      for (const a of m.attachments) {
        addRef.run(a.blob_id, m.message_id, m.sender_key, m.recipient_key, m.expires_at);
        extend.run(m.expires_at, a.blob_id);
      }
    }
    const delivered: CommitResult['delivered'] = [];
    for (const d of batch.delivered)
      if (deliver.run(now, d.message_id, d.recipient_key, now).changes > 0) delivered.push(d);
    for (const [key, at] of batch.active) touch.run(at, key, at);
    return { refused, delivered, webhooks };
  });
}

/** `Store.takeSent`: read a page row by row, mark what `serve` took — one transaction. */
export function takeTransaction(
  db: Database.Database,
  stmt: (sql: string) => Database.Statement,
): (
  recipient: string,
  filter: InboxFilter,
  limit: number,
  now: number,
  serve: (record: MessageRecord) => ServeVerdict,
) => TakeResult {
  const markOne = db.prepare(
    `UPDATE messages SET status = 'delivered', delivered_at = ?, take_id = ? WHERE seq = ? AND status = 'sent'`,
  );
  return db.transaction(
    (
      recipient: string,
      filter: InboxFilter,
      limit: number,
      now: number,
      serve: (record: MessageRecord) => ServeVerdict,
    ): TakeResult => {
      const take = new TakeReader(limit, now, serve);
      const { sql, params } = inboxSql({ ...filter, status: 'sent' });
      // Rows are read one at a time (a page of large bodies never sits in memory whole) and marked
      // after the read, in the same transaction: the connection cannot write while it iterates.
      const rows = stmt(sql).iterate(recipient, now, ...params, rowsToRead(limit)) as IterableIterator<MessageRow>;
      for (const row of rows) if (!take.add(row)) break;
      for (const m of take.messages) markOne.run(now, filter.take ?? null, m.seq);
      return take.result;
    },
  );
}

/** A claim looks at most this many due rows past what it can take (agents at their limit, gone messages). */
const MAX_CLAIM_SCAN = 1000;

interface DueRow {
  delivery_id: string;
  agent_key: string;
  attempts: number;
  message_id: string;
  url: string;
  secret: string;
  deliverable: number;
}

/**
 * `Store.claimDeliveries`: read due deliveries oldest first (light rows; agents already at their
 * limit left out by the query), lease what fits, drop the dead — one transaction. Message bodies
 * are read only for what is claimed.
 */
export function claimTransaction(db: Database.Database): (now: number, options: ClaimOptions) => DeliveryClaim[] {
  const due = db.prepare(
    `SELECT d.delivery_id, d.agent_key, d.attempts, d.message_id, w.url, w.secret,
       EXISTS (SELECT 1 FROM messages m WHERE m.message_id = d.message_id AND m.status = 'sent' AND m.expires_at > ?) AS deliverable
     FROM webhook_deliveries d
     JOIN webhooks w ON w.agent_key = d.agent_key AND w.enabled = 1
     WHERE d.next_attempt_at <= ? AND d.agent_key NOT IN (SELECT value FROM json_each(?))
     ORDER BY d.next_attempt_at, d.delivery_id
     LIMIT ?`,
  );
  const messageOf = db.prepare('SELECT * FROM messages WHERE message_id = ?');
  const lease = db.prepare('UPDATE webhook_deliveries SET next_attempt_at = ? WHERE delivery_id = ?');
  const drop = db.prepare('DELETE FROM webhook_deliveries WHERE delivery_id = ?');
  return db.transaction((now: number, options: ClaimOptions): DeliveryClaim[] => {
    const full = [...options.inFlight].filter(([, n]) => n >= options.perAgent).map(([agent]) => agent);
    const picked: DueRow[] = [];
    const dead: string[] = [];
    const taken = new Map<string, number>();
    // Rows are read one at a time and written after the read (the connection cannot write while it iterates).
    for (const row of due.iterate(
      now,
      now,
      JSON.stringify(full),
      options.limit + MAX_CLAIM_SCAN,
    ) as IterableIterator<DueRow>) {
      if (picked.length >= options.limit) break;
      if (row.deliverable !== 1) {
        dead.push(row.delivery_id);
        continue;
      }
      const count = (options.inFlight.get(row.agent_key) ?? 0) + (taken.get(row.agent_key) ?? 0);
      if (count >= options.perAgent) continue;
      taken.set(row.agent_key, (taken.get(row.agent_key) ?? 0) + 1);
      picked.push(row);
    }
    const claims: DeliveryClaim[] = [];
    for (const row of picked) {
      const message = tryMessage(messageOf.get(row.message_id) as MessageRow);
      if (!message) {
        dead.push(row.delivery_id);
        continue;
      }
      lease.run(now + options.leaseMs, row.delivery_id);
      claims.push({ delivery_id: row.delivery_id, attempts: row.attempts, url: row.url, secret: row.secret, message });
    }
    for (const id of dead) drop.run(id);
    return claims;
  });
}
