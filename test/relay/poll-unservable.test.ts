/**
 * Issue 9, relay item 4: a poll never loses messages. A page is marked delivered only for what
 * it answers; a stored message that cannot be served stays `sent` and does not break the page.
 * Hostile rows are written straight into a stopped relay's database (as an older relay, or a
 * damaged disk, could have left them), then a relay is started on it.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { createRelay } from '../../src/relay/index.js';
import type { LogEntry } from '../../src/relay/log.js';
import { newAgent } from '../helpers/relay.js';
import { deep, signedBytes } from './_raw.js';
import { Api, expectOk, tempDir } from './_support.js';

function insertRow(
  dataDir: string,
  row: { id: string; recipient: string; sender: string; body: string; metadata?: string; at: number },
): void {
  const db = new Database(join(dataDir, 'mrp.db'));
  try {
    db.prepare(
      `INSERT INTO messages (message_id, sender_key, recipient_key, content_type, body, attachments, thread_id, in_reply_to,
         metadata, status, created_at, expires_at, delivered_at)
       VALUES (?, ?, ?, 'application/json', ?, '[]', NULL, NULL, ?, 'sent', ?, ?, NULL)`,
    ).run(row.id, row.sender, row.recipient, row.body, row.metadata ?? '{}', row.at, row.at + 3_600_000);
  } finally {
    db.close();
  }
}

function statusOf(dataDir: string, id: string): string | undefined {
  const db = new Database(join(dataDir, 'mrp.db'), { readonly: true });
  try {
    return (db.prepare('SELECT status FROM messages WHERE message_id = ?').get(id) as { status: string } | undefined)
      ?.status;
  } finally {
    db.close();
  }
}

describe('item 4: a poll never loses messages', () => {
  it('10 honest messages and hostile rows: the page is 200, honest and deep ones are answered, damaged ones stay sent', async (t) => {
    const dataDir = await tempDir(t);
    const a = newAgent();
    const b = newAgent();
    const first = createRelay({ dataDir, port: 0, logLevel: 'error' });
    const url1 = await first.listen();
    const api1 = new Api(url1);
    const honest: string[] = [];
    for (let i = 0; i < 10; i++) honest.push((await api1.send(a, b.publicKey, { i })).message_id);
    await first.close();

    const now = Date.now();
    // A body nested 5,000 deep, as relays before the depth limit accepted: valid JSON, served verbatim.
    insertRow(dataDir, {
      id: 'msg_1_deepdeepdeep',
      sender: a.publicKey,
      recipient: b.publicKey,
      body: `{"x":${deep(5000)}}`,
      at: now + 1,
    });
    // Damaged rows: a body that is not JSON, metadata that is not JSON.
    insertRow(dataDir, {
      id: 'msg_1_badbodybadbo',
      sender: a.publicKey,
      recipient: b.publicKey,
      body: '{"unterminated":',
      at: now + 2,
    });
    insertRow(dataDir, {
      id: 'msg_1_badmetabadme',
      sender: a.publicKey,
      recipient: b.publicKey,
      body: '1',
      metadata: 'not json',
      at: now + 3,
    });
    insertRow(dataDir, {
      id: 'msg_1_lastlastlast',
      sender: a.publicKey,
      recipient: b.publicKey,
      body: '"after the damage"',
      at: now + 4,
    });

    const logs: LogEntry[] = [];
    const second = createRelay({ dataDir, port: 0, logger: (e) => logs.push(e), logLevel: 'info' });
    const url2 = await second.listen();
    t.after(() => second.close());

    const page = await signedBytes(url2, b, 'GET', '/v1/messages?limit=100', '');
    assert.equal(page.status, 200, page.text.slice(0, 300));
    assert.ok(page.text.includes(`"body":{"x":${deep(5000)}}`), 'the deep legacy body is served verbatim');
    const ids = (page.body as { messages: Array<{ message_id: string }> }).messages.map((m) => m.message_id);
    assert.deepEqual(ids, [...honest, 'msg_1_deepdeepdeep', 'msg_1_lastlastlast']);
    assert.ok(
      logs.some((e) => e.msg === 'message_unservable'),
      'the damaged rows are logged',
    );

    // Nothing answered twice, nothing answered lost; the damaged ones are still waiting.
    const again = expectOk(await new Api(url2).get(b, '/v1/messages'));
    assert.deepEqual(again.messages, []);
    await second.close();
    for (const id of [...honest, 'msg_1_deepdeepdeep', 'msg_1_lastlastlast'])
      assert.equal(statusOf(dataDir, id), 'delivered', id);
    assert.equal(statusOf(dataDir, 'msg_1_badbodybadbo'), 'sent');
    assert.equal(statusOf(dataDir, 'msg_1_badmetabadme'), 'sent');
  });

  it('a page is bounded by bytes: large messages spread over several polls, each marked only when answered', async (t) => {
    const dataDir = await tempDir(t);
    const relay = createRelay({ dataDir, port: 0, logLevel: 'error', sendRatePerMinute: 0, receiveRatePerMinute: 0 });
    const url = await relay.listen();
    t.after(() => relay.close());
    const api = new Api(url);
    const a = newAgent();
    const b = newAgent();
    const big = 'z'.repeat(1024 * 1024 - 16);
    for (let i = 0; i < 12; i++) await api.send(a, b.publicKey, big);
    const seen: number[] = [];
    for (let round = 0; round < 5 && seen.length < 12; round++) {
      const res = await api.get(b, '/v1/messages?limit=100');
      const body = expectOk(res);
      assert.ok(res.text.length < 10 * 1024 * 1024, `page of ${res.text.length} bytes`);
      seen.push(body.messages.length);
      if (body.messages.length < 12) assert.equal(body.has_more, seen.reduce((x, y) => x + y, 0) < 12);
    }
    assert.equal(
      seen.reduce((x, y) => x + y, 0),
      12,
      `pages ${seen.join(', ')}`,
    );
    assert.ok(seen.length > 1);
  });
});
