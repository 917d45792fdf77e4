/** Conformance: GET /v1/messages — polling, filters, pagination, long poll, exactly-once hand-out (§3.6). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { signRequest } from '../../src/protocol/signing.js';
import type { LogEntry } from '../../src/relay/log.js';
import { newAgent, signed, startRelay } from '../helpers/relay.js';
import { Api, expectError, expectOk, startTicking } from './_support.js';

const ids = (res: any): string[] => res.messages.map((m: { message_id: string }) => m.message_id);

describe('§3.6 GET /v1/messages', () => {
  it('defaults to status=sent and limit=50; answers {messages, has_more, next_cursor}', async (t) => {
    const { api } = await startTicking(t, { sendRatePerMinute: 0 });

    const a = newAgent();
    const b = newAgent();
    const sent: string[] = [];
    for (let i = 0; i < 55; i++) sent.push((await api.send(a, b.publicKey, { i })).message_id);
    const p1 = expectOk(await api.get(b, '/v1/messages'));
    assert.deepEqual(Object.keys(p1).sort(), ['has_more', 'messages', 'next_cursor']);
    assert.equal(p1.messages.length, 50);
    assert.equal(p1.has_more, true);
    assert.equal(typeof p1.next_cursor, 'string');
    assert.deepEqual(ids(p1), sent.slice(0, 50), 'oldest first');
    for (const m of p1.messages) {
      assert.equal(m.recipient_key, b.publicKey);
      assert.equal(m.sender_key, a.publicKey);
    }
    const p2 = expectOk(await api.get(b, '/v1/messages'));
    assert.deepEqual(ids(p2), sent.slice(50));
    assert.equal(p2.has_more, false);
    assert.equal(p2.next_cursor, null);
    const p3 = expectOk(await api.get(b, '/v1/messages?limit=10'));
    assert.deepEqual(p3, { messages: [], has_more: false, next_cursor: null });
  });

  it('ordering is oldest first by created_at, then message_id (messages created in the same second)', async (t) => {
    const clock = new ManualClock();
    const { url } = await startRelay(t, { clock, sendRatePerMinute: 0 });
    const api = new Api(url, clock);
    const a = newAgent();
    const b = newAgent();
    // Two seconds with 8 messages each; the clock does not move within a second.
    const sent: Array<{ message_id: string; created_at: string }> = [];
    for (let sec = 0; sec < 2; sec++) {
      for (let i = 0; i < 8; i++) sent.push(await api.send(a, b.publicKey, { sec, i }));
      clock.advance(1000);
    }
    const key = (m: { created_at: string; message_id: string }) => [Date.parse(m.created_at), m.message_id] as const;
    const specOrder = [...sent]
      .sort((x, y) => {
        const [tx, ix] = key(x);
        const [ty, iy] = key(y);
        return tx - ty || (ix < iy ? -1 : ix > iy ? 1 : 0);
      })
      .map((m) => m.message_id);
    const history = ids(expectOk(await api.get(b, '/v1/messages')));
    assert.deepEqual(history, specOrder, 'poll order must be (created_at, message_id)');
  });

  it('messages created in the same millisecond come back in the order they arrived (ids ascend within a second)', async (t) => {
    const clock = new ManualClock();
    const { url } = await startRelay(t, { clock, sendRatePerMinute: 0 });
    const api = new Api(url, clock);
    const a = newAgent();
    const b = newAgent();
    const sent: string[] = [];
    for (let i = 0; i < 20; i++) sent.push((await api.send(a, b.publicKey, { i })).message_id);
    assert.deepEqual(ids(expectOk(await api.get(b, '/v1/messages'))), sent);
  });

  it('a poll marks returned messages delivered: second poll empty, status delivered, history view has them', async (t) => {
    const { api } = await startTicking(t);

    const a = newAgent();
    const b = newAgent();
    const m1 = await api.send(a, b.publicKey, { n: 1 });
    const m2 = await api.send(a, b.publicKey, { n: 2 });
    assert.deepEqual(ids(expectOk(await api.get(b, '/v1/messages'))), [m1.message_id, m2.message_id]);
    assert.deepEqual(expectOk(await api.get(b, '/v1/messages?limit=49')).messages, []);
    for (const m of [m1, m2]) {
      const s = expectOk(await api.get(a, `/v1/messages/${m.message_id}/status`));
      assert.equal(s.status, 'delivered');
      assert.equal(typeof s.delivered_at, 'string');
    }
    // status=delivered is a read-only history view: same answer twice
    const h1 = expectOk(await api.get(b, '/v1/messages?status=delivered'));
    const h2 = expectOk(await api.get(b, '/v1/messages?status=delivered&limit=50'));
    assert.deepEqual(ids(h1), [m1.message_id, m2.message_id]);
    assert.deepEqual(ids(h2), ids(h1));
    for (const m of h1.messages) {
      assert.equal(m.status, 'delivered');
      assert.equal(typeof m.delivered_at, 'string');
    }
    // only the caller's inbox: the sender's poll is empty
    assert.deepEqual(expectOk(await api.get(a, '/v1/messages?status=delivered')).messages, []);
  });

  it('take ids (our extension): a poll with take=<id> is echoed in X-MRP-Take; status=delivered&take=<id> lists exactly what it took', async (t) => {
    const { api } = await startTicking(t);
    const a = newAgent();
    const b = newAgent();
    const m1 = await api.send(a, b.publicKey, { n: 1 });
    const m2 = await api.send(a, b.publicKey, { n: 2 });
    const first = await api.get(b, '/v1/messages?limit=1&take=tk_1');
    assert.equal(first.headers.get('x-mrp-take'), 'tk_1');
    assert.deepEqual(ids(expectOk(first)), [m1.message_id]);
    // Another consumer (recv) takes the rest without a take id: not part of tk_1.
    const other = await api.get(b, '/v1/messages');
    assert.equal(other.headers.get('x-mrp-take'), null);
    assert.deepEqual(ids(expectOk(other)), [m2.message_id]);
    assert.deepEqual(ids(expectOk(await api.get(b, '/v1/messages?status=delivered&take=tk_1'))), [m1.message_id]);
    assert.deepEqual(expectOk(await api.get(b, '/v1/messages?status=delivered&take=tk_2')).messages, []);
    const bad = expectError(await api.get(b, '/v1/messages?take=no%20spaces'), 400, 'bad_request');
    assert.equal(bad.details.field, 'take');
  });

  it('a limited poll only marks what it returned', async (t) => {
    const { api } = await startTicking(t);

    const a = newAgent();
    const b = newAgent();
    const sent = [];
    for (let i = 0; i < 3; i++) sent.push((await api.send(a, b.publicKey, { i })).message_id);
    const p = expectOk(await api.get(b, '/v1/messages?limit=1'));
    assert.deepEqual(ids(p), [sent[0]]);
    assert.equal(p.has_more, true);
    assert.equal(expectOk(await api.get(a, `/v1/messages/${sent[1]}/status`)).status, 'sent');
    assert.deepEqual(ids(expectOk(await api.get(b, '/v1/messages'))), sent.slice(1));
  });

  it('filters: sender_key, in_reply_to, thread_id (only matching messages are taken)', async (t) => {
    const { api } = await startTicking(t);

    const a = newAgent();
    const c = newAgent();
    const b = newAgent();
    const fromA = await api.send(a, b.publicKey, { from: 'a' });
    const fromC = await api.send(c, b.publicKey, { from: 'c' });
    const parent = await api.send(b, a.publicKey, { q: 1 });
    const reply = await api.send(a, b.publicKey, { r: 1 }, { in_reply_to: parent.message_id });
    const threaded = await api.send(c, b.publicKey, { t: 1 }, { thread_id: 'T-42' });

    assert.deepEqual(ids(expectOk(await api.get(b, `/v1/messages?in_reply_to=${parent.message_id}`))), [
      reply.message_id,
    ]);
    assert.deepEqual(ids(expectOk(await api.get(b, '/v1/messages?thread_id=T-42'))), [threaded.message_id]);
    assert.deepEqual(ids(expectOk(await api.get(b, `/v1/messages?sender_key=${a.publicKey}`))), [fromA.message_id]);
    // The rest is still there for an unfiltered poll.
    assert.deepEqual(ids(expectOk(await api.get(b, '/v1/messages'))), [fromC.message_id]);
    // Filters apply to history views too.
    assert.deepEqual(ids(expectOk(await api.get(b, `/v1/messages?status=delivered&sender_key=${c.publicKey}`))), [
      fromC.message_id,
      threaded.message_id,
    ]);
    expectError(await api.get(b, '/v1/messages?sender_key=not-a-key'), 400, 'bad_request');
  });

  it('since: only messages created after the instant', async (t) => {
    const clock = new ManualClock();
    const { url } = await startRelay(t, { clock });
    const api = new Api(url, clock);
    const a = newAgent();
    const b = newAgent();
    const first = await api.send(a, b.publicKey, { n: 1 });
    clock.advance(10_000);
    const second = await api.send(a, b.publicKey, { n: 2 });
    // Exactly the first message's created_at: "after" excludes it.
    assert.deepEqual(
      ids(expectOk(await api.get(b, `/v1/messages?status=sent&since=${encodeURIComponent(first.created_at)}&limit=9`))),
      [second.message_id],
    );
    // An instant between the two (with fractional seconds), on the history view.
    const mid = new Date(Date.parse(first.created_at) + 5000).toISOString();
    assert.deepEqual(
      ids(expectOk(await api.get(b, `/v1/messages?status=delivered&since=${encodeURIComponent(mid)}&limit=10`))),
      [second.message_id],
    );
    // The older one was not taken.
    assert.deepEqual(ids(expectOk(await api.get(b, '/v1/messages'))), [first.message_id]);
    expectError(await api.get(b, '/v1/messages?since=last-week'), 400, 'bad_request');
  });

  it('status=expired lists expired messages; bad status → 400', async (t) => {
    const clock = new ManualClock();
    const { url } = await startRelay(t, { clock });
    const api = new Api(url, clock);
    const a = newAgent();
    const b = newAgent();
    const gone = await api.send(a, b.publicKey, { n: 1 }, { expires_in: 5 });
    const kept = await api.send(a, b.publicKey, { n: 2 });
    await clock.advanceAsync(6000);
    const ex = expectOk(await api.get(b, '/v1/messages?status=expired'));
    assert.deepEqual(ids(ex), [gone.message_id]);
    assert.equal(ex.messages[0].status, 'expired');
    // read-only: still there
    assert.deepEqual(ids(expectOk(await api.get(b, '/v1/messages?status=expired&limit=5'))), [gone.message_id]);
    assert.deepEqual(ids(expectOk(await api.get(b, '/v1/messages'))), [kept.message_id]);
    expectError(await api.get(b, '/v1/messages?status=queued'), 400, 'bad_request');
  });

  it('limit bounds 1–100 (0 and 101 → 400); wait bounds 0–30', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const b = newAgent();
    for (const q of ['limit=0', 'limit=101', 'limit=-1', 'limit=ten', 'wait=31', 'wait=-1']) {
      const err = expectError(await api.get(b, `/v1/messages?${q}`), 400, 'bad_request');
      assert.equal(err.details?.field, q.split('=')[0], JSON.stringify(err));
    }
    expectOk(await api.get(b, '/v1/messages?limit=1'));
    expectOk(await api.get(b, '/v1/messages?limit=100'));
    expectOk(await api.get(b, '/v1/messages?wait=0'));
  });

  it('cursor pagination over the history view: no duplicates, nothing missing, oldest first', async (t) => {
    const { api } = await startTicking(t);

    const a = newAgent();
    const b = newAgent();
    const sent: string[] = [];
    for (let i = 0; i < 7; i++) sent.push((await api.send(a, b.publicKey, { i })).message_id);
    expectOk(await api.get(b, '/v1/messages'));
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const target: string = `/v1/messages?status=delivered&limit=3${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
      const page = expectOk(await api.get(b, target));
      seen.push(...ids(page));
      cursor = page.has_more ? page.next_cursor : null;
      if (!page.has_more) assert.equal(page.next_cursor, null);
      assert.ok(++pages < 10);
    } while (cursor);
    assert.equal(pages, 3);
    assert.deepEqual(seen, sent);
  });

  it('cursor pagination over sent messages hands each out once', async (t) => {
    const { api } = await startTicking(t);

    const a = newAgent();
    const b = newAgent();
    const sent: string[] = [];
    for (let i = 0; i < 5; i++) sent.push((await api.send(a, b.publicKey, { i })).message_id);
    const p1 = expectOk(await api.get(b, '/v1/messages?limit=2'));
    assert.equal(p1.has_more, true);
    const p2 = expectOk(await api.get(b, `/v1/messages?limit=2&cursor=${encodeURIComponent(p1.next_cursor)}`));
    const p3 = expectOk(await api.get(b, `/v1/messages?limit=2&cursor=${encodeURIComponent(p2.next_cursor)}`));
    assert.equal(p3.has_more, false);
    assert.deepEqual([...ids(p1), ...ids(p2), ...ids(p3)], sent);
    expectError(await api.get(b, '/v1/messages?cursor=%%%'), 400, 'bad_request');
  });

  it('long poll: wait returns as soon as a message arrives', async (t) => {
    const clock = new ManualClock(Date.now());
    const { url } = await startRelay(t, { clock });
    const api = new Api(url, clock);
    const a = newAgent();
    const b = newAgent();
    const c = newAgent();
    await api.touch(b);
    let settled = false;
    const pending = api.get(b, `/v1/messages?wait=30&sender_key=${a.publicKey}`).then((r) => {
      settled = true;
      return r;
    });
    // Let the poll reach the relay (full round trips on other connections), then check it waits.
    await api.touch(c);
    await api.touch(c);
    assert.equal(settled, false, 'an empty long poll must wait');
    // A message that does not match the filter does not end the wait.
    await api.send(c, b.publicKey, { other: true });
    await api.touch(c);
    assert.equal(settled, false, 'a non-matching message must not end the wait');
    // The clock does not move, so only the matching message can end the poll.
    const sent = await api.send(a, b.publicKey, { wake: 'up' });
    const res = await pending;
    const body = expectOk(res);
    assert.deepEqual(ids(body), [sent.message_id]);
    assert.deepEqual(body.messages[0].body, { wake: 'up' });
    // It was handed out (delivered) by the long poll.
    assert.equal(expectOk(await api.get(a, `/v1/messages/${sent.message_id}/status`)).status, 'delivered');
  });

  it('long poll: a client that leaves ends the wait at once, and the poll takes nothing', async (t) => {
    const clock = new ManualClock(Date.now());
    let onLog: ((e: LogEntry) => void) | undefined;
    const { url } = await startRelay(t, { clock, logger: (e) => onLog?.(e) });
    const api = new Api(url, clock);
    const a = newAgent();
    const b = newAgent();
    const c = newAgent();
    await api.touch(b);
    const target = '/v1/messages?wait=30';
    const ended = new Promise<LogEntry>((resolve) => {
      onLog = (e) => {
        // Its end is logged (the path without its query): the only poll of b's until then.
        if (e.msg === 'request' && e['path'] === '/v1/messages' && e['agent'] === b.publicKey) resolve(e);
      };
    });
    const gone = new AbortController();
    const left = fetch(url + target, {
      headers: { ...signRequest(b, 'GET', target, '', clock.now()) },
      signal: gone.signal,
    }).then(
      () => 'answered',
      () => 'left',
    );
    // Let the poll reach the relay and start waiting (full round trips on other connections).
    await api.touch(c);
    await api.touch(c);
    gone.abort();
    assert.equal(await left, 'left');
    // The clock does not move: only the client leaving can end the wait.
    let deadline: NodeJS.Timeout | undefined;
    await Promise.race([
      ended,
      new Promise((_, reject) => {
        deadline = setTimeout(() => reject(new Error('the abandoned long poll kept waiting')), 10_000);
      }),
    ]).finally(() => clearTimeout(deadline));
    const sent = await api.send(a, b.publicKey, { after: 'left' });
    assert.deepEqual(ids(expectOk(await api.get(b, '/v1/messages'))), [sent.message_id]);
  });

  it('long poll: an empty list when the time runs out', async (t) => {
    const { url } = await startRelay(t);
    const b = newAgent();
    const started = Date.now();
    const res = await signed(url, b, 'GET', '/v1/messages?wait=1');
    const took = Date.now() - started;
    assert.deepEqual(expectOk(res), { messages: [], has_more: false, next_cursor: null });
    assert.ok(took >= 900, `returned after ${took} ms, before the wait ran out`);
    assert.ok(took < 5000, `took ${took} ms`);
  });

  it('concurrent polls never get the same message, and together get all of them', async (t) => {
    const { url } = await startRelay(t, { sendRatePerMinute: 0, requestRatePerMinute: 0 });
    const api = new Api(url);
    const a = newAgent();
    const b = newAgent();
    const sent = new Set<string>();
    await Promise.all(
      Array.from({ length: 60 }, async (_, i) => {
        sent.add((await api.send(a, b.publicKey, { i })).message_id);
      }),
    );
    assert.equal(sent.size, 60);
    const got: string[] = [];
    for (let round = 0; round < 10 && got.length < 60; round++) {
      const polls = await Promise.all(Array.from({ length: 16 }, (_, i) => api.get(b, `/v1/messages?limit=${3 + i}`)));
      for (const p of polls) got.push(...ids(expectOk(p)));
    }
    assert.equal(new Set(got).size, got.length, 'a message was handed to two polls');
    assert.deepEqual(new Set(got), sent);
  });
});
