/**
 * The SQLite store on the store contract (test/relay/store.contract.ts): a fresh database in a
 * temporary directory per test; and the query plans of its inbox reads.
 */

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import Database from 'better-sqlite3';
import { inboxSql, MIGRATIONS, PENDING_SQL } from '../../src/relay/store/sqlite-schema.js';
import { SqliteStore } from '../../src/relay/store/sqlite-store.js';
import type { InboxFilter } from '../../src/relay/store/store.js';
import { storeContract } from './store.contract.js';

storeContract('sqlite', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mrp-store-'));
  const store = new SqliteStore(dir);
  return {
    store,
    close: async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

/** A new relay database (made by the store, then closed), opened directly for its query plans. */
async function freshDatabase(t: TestContext): Promise<Database.Database> {
  const dir = await mkdtemp(join(tmpdir(), 'mrp-store-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await new SqliteStore(dir).close();
  const db = new Database(join(dir, 'mrp.db'));
  t.after(() => db.close());
  return db;
}

describe('sqlite inbox queries', () => {
  const filters: InboxFilter[] = [];
  for (const status of ['sent', 'delivered', 'expired'] as const)
    for (const extra of [
      {},
      { sender_key: 'k' },
      { in_reply_to: 'm' },
      { thread_id: 't' },
      { since: 1 },
      { after: { t: 1, id: 'm' } },
      { take: 'tk' },
    ])
      filters.push({ status, ...extra });

  it("read only the recipient's own rows of the statuses asked for, through its index (no relay-wide scan)", async (t) => {
    const db = await freshDatabase(t);
    const plan = (f: InboxFilter): string => {
      const { sql, params } = inboxSql(f);
      return (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(1, 1, ...params, 1) as Array<{ detail: string }>)
        .map((r) => r.detail)
        .join(' | ');
    };
    for (const f of filters) {
      const p = plan(f);
      const index = f.status === 'delivered' && f.take !== undefined ? 'messages_take' : 'messages_inbox';
      assert.match(p, new RegExp(`^SEARCH messages USING INDEX ${index} \\(recipient_key=\\?`), JSON.stringify(f));
      // `expired` is two status ranges, merged by a sort.
      if (index === 'messages_inbox' && f.status !== 'expired')
        assert.doesNotMatch(p, /TEMP B-TREE/, JSON.stringify(f));
    }
  });

  it('read the WebSocket backlog through its pending-only index, in seq order (no sort)', async (t) => {
    const db = await freshDatabase(t);
    const plan = (db.prepare(`EXPLAIN QUERY PLAN ${PENDING_SQL}`).all('k', 0, 1, 1) as Array<{ detail: string }>)
      .map((r) => r.detail)
      .join(' | ');
    assert.match(plan, /^SEARCH messages USING INDEX messages_pending \(recipient_key=\? AND seq>\?\)$/);
    const sql =
      (db.prepare("SELECT sql FROM sqlite_master WHERE name = 'messages_pending'").pluck().get() as string) ?? '';
    assert.match(sql, /WHERE status = 'sent'/);
    assert.equal(db.prepare("SELECT count(*) FROM sqlite_master WHERE name = 'messages_backlog'").pluck().get(), 0);
  });

  it('a database of schema 5 moves to the pending-only backlog index, its pending messages still served', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'mrp-store-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const db = new Database(join(dir, 'mrp.db'));
    db.pragma('journal_mode = WAL');
    for (const m of MIGRATIONS.slice(0, 5)) db.exec(m);
    db.pragma('user_version = 5');
    const row = db.prepare(
      `INSERT INTO messages (message_id, sender_key, recipient_key, content_type, body, attachments, metadata, status, created_at, expires_at)
       VALUES (?, 's', 'r', 'application/json', '{}', '[]', '{}', ?, ?, ?)`,
    );
    const now = Date.now();
    row.run('msg_a', 'delivered', now, now + 60_000);
    row.run('msg_b', 'sent', now + 1, now + 60_000);
    row.run('msg_c', 'sent', now + 2, now - 1); // expired, not yet swept
    row.run('msg_d', 'sent', now + 3, now + 60_000);
    db.close();
    const store = new SqliteStore(dir);
    t.after(() => store.close());
    const pending = await store.pending('r', 0, 10, now);
    assert.deepEqual(
      pending.map((m) => m.message_id),
      ['msg_b', 'msg_d'],
    );
    assert.deepEqual(
      (await store.pending('r', pending[0]!.seq, 10, now)).map((m) => m.message_id),
      ['msg_d'],
    );
  });
});
