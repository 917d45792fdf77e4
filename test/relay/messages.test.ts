/** Conformance: sending and reading messages (§3.6), status lifecycle (§4.3), threads (§4.4), limits. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { newAgent, PAIRED, signed, startRelay } from '../helpers/relay.js';
import { Api, expectError, expectOk, MESSAGE_FIELDS, MSG_ID_RE, RFC3339_UTC_RE, startTicking } from './_support.js';

const MiB = 1024 * 1024;
describe('§3.6 POST /v1/messages', () => {
  it('→ 201 {message_id, status: sent, created_at, expires_at}; default TTL 7 days', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const b = newAgent();
    const before = Math.floor(Date.now() / 1000);
    const res = await api.post(a, '/v1/messages', { recipient_key: b.publicKey, body: { text: 'hi' } });
    const sent = expectOk(res, 201);
    const after = Math.ceil(Date.now() / 1000);
    assert.deepEqual(Object.keys(sent).sort(), ['created_at', 'expires_at', 'message_id', 'status']);
    assert.match(sent.message_id, MSG_ID_RE);
    const unix = Number(sent.message_id.split('_')[1]);
    assert.ok(unix >= before && unix <= after, `message id seconds ${unix} not in [${before}, ${after}]`);
    assert.equal(sent.status, 'sent');
    assert.match(sent.created_at, RFC3339_UTC_RE);
    assert.match(sent.expires_at, RFC3339_UTC_RE);
    assert.equal(Date.parse(sent.expires_at) - Date.parse(sent.created_at), 604_800_000);
    const created = Date.parse(sent.created_at) / 1000;
    assert.ok(created >= before - 1 && created <= after, 'created_at is now');
  });

  it('expires_in sets the TTL; 1 and 2592000 are accepted', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const b = newAgent();
    for (const ttl of [1, 3600, 2_592_000]) {
      const sent = await api.send(a, b.publicKey, { ttl }, { expires_in: ttl });
      assert.equal(Date.parse(sent.expires_at) - Date.parse(sent.created_at), ttl * 1000);
    }
  });

  it('stores the message with documented defaults; the sender is always the caller', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const b = newAgent();
    const sent = await api.send(a, b.publicKey, { text: 'hello' }, { sender_key: b.publicKey });
    const m = expectOk(await api.get(a, `/v1/messages/${sent.message_id}`));
    assert.deepEqual(Object.keys(m).sort(), MESSAGE_FIELDS);
    assert.equal(m.message_id, sent.message_id);
    assert.equal(m.sender_key, a.publicKey);
    assert.equal(m.recipient_key, b.publicKey);
    assert.equal(m.content_type, 'application/json');
    assert.deepEqual(m.body, { text: 'hello' });
    assert.deepEqual(m.attachments, []);
    assert.equal(m.thread_id, null);
    assert.equal(m.in_reply_to, null);
    assert.deepEqual(m.metadata, {});
    assert.equal(m.status, 'sent');
    assert.equal(m.created_at, sent.created_at);
    assert.equal(m.expires_at, sent.expires_at);
    assert.equal(m.delivered_at, null);
  });

  it('keeps sender-supplied fields; body may be any JSON value', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const b = newAgent();
    const body = { action: 'translate', params: { text: 'Hello', target_language: 'es' }, response_format: 'json' };
    const sent = await api.send(a, b.publicKey, body, {
      content_type: 'application/x-mrp-request+json',
      thread_id: 'conv-1:a.b_c',
      metadata: { trace: 'abc', nested: { n: 1 } },
    });
    const m = expectOk(await api.get(b, `/v1/messages/${sent.message_id}`));
    assert.equal(m.content_type, 'application/x-mrp-request+json');
    assert.deepEqual(m.body, body);
    assert.equal(m.thread_id, 'conv-1:a.b_c');
    assert.deepEqual(m.metadata, { trace: 'abc', nested: { n: 1 } });
    for (const [i, value] of (
      ['plain text', 42, [1, 'two', { three: 3 }], false, null, { ü: '😀' }] as unknown[]
    ).entries()) {
      const s = await api.send(a, b.publicKey, value, { content_type: i === 0 ? 'text/plain' : 'application/json' });
      const got = expectOk(await api.get(a, `/v1/messages/${s.message_id}`));
      assert.deepEqual(got.body, value);
    }
  });

  it('JSON request bodies are parsed whatever the Content-Type says', async (t) => {
    const { url } = await startRelay(t);
    const a = newAgent();
    const b = newAgent();
    const body = { recipient_key: b.publicKey, body: { ct: 'text/plain' } };
    const res = await signed(url, a, 'POST', '/v1/messages', body, { headers: { 'Content-Type': 'text/plain' } });
    expectOk(res, 201);
    const res2 = await signed(
      url,
      a,
      'POST',
      '/v1/messages',
      { ...body, body: { ct: 'octet' } },
      { headers: { 'Content-Type': 'application/octet-stream' } },
    );
    expectOk(res2, 201);
  });

  it('sending to yourself is allowed', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const sent = await api.send(a, a.publicKey, { note: 'self' });
    const poll = expectOk(await api.get(a, '/v1/messages'));
    assert.deepEqual(
      poll.messages.map((m: { message_id: string }) => m.message_id),
      [sent.message_id],
    );
  });

  it('bad requests → 400 bad_request with details.field', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const bKp = newAgent();
    const b = bKp.publicKey;
    const cases: Array<[string, unknown, string | undefined]> = [
      ['missing recipient_key', { body: { x: 1 } }, 'recipient_key'],
      ['short recipient_key', { recipient_key: b.slice(1), body: {} }, 'recipient_key'],
      ['recipient_key with bad char', { recipient_key: `${b.slice(0, 42)}+`, body: {} }, 'recipient_key'],
      ['recipient_key not a string', { recipient_key: 42, body: {} }, 'recipient_key'],
      ['missing body', { recipient_key: b }, 'body'],
      ['expires_in 0', { recipient_key: b, body: {}, expires_in: 0 }, 'expires_in'],
      ['expires_in 2592001', { recipient_key: b, body: {}, expires_in: 2_592_001 }, 'expires_in'],
      ['expires_in negative', { recipient_key: b, body: {}, expires_in: -5 }, 'expires_in'],
      ['expires_in fractional', { recipient_key: b, body: {}, expires_in: 1.5 }, 'expires_in'],
      ['expires_in string', { recipient_key: b, body: {}, expires_in: '60' }, 'expires_in'],
      ['metadata not an object', { recipient_key: b, body: {}, metadata: [1] }, 'metadata'],
      ['thread_id with a space', { recipient_key: b, body: {}, thread_id: 'a b' }, 'thread_id'],
      ['thread_id too long', { recipient_key: b, body: {}, thread_id: 'x'.repeat(129) }, 'thread_id'],
      ['attachments not an array', { recipient_key: b, body: {}, attachments: 'blob_a1b2c3d4e5f6' }, 'attachments'],
    ];
    for (const [name, body, field] of cases) {
      const res = await api.post(a, '/v1/messages', body);
      assert.equal(res.status, 400, `${name}: ${res.text}`);
      const err = expectError(res, 400, 'bad_request');
      if (field) assert.equal(err.details?.field, field, `${name}: ${res.text}`);
    }
    // Eleven attachments are well-formed and too many: 422, before any blob is looked up.
    const eleven = Array.from({ length: 11 }, (_, i) => ({ blob_id: `blob_a1b2c3d4e5${String(i).padStart(2, '0')}` }));
    const tooMany = expectError(
      await api.post(a, '/v1/messages', { recipient_key: b, body: {}, attachments: eleven }),
      422,
      'unprocessable_entity',
    );
    assert.equal(tooMany.details?.field, 'attachments');
    // Not JSON, not an object, empty.
    expectError(await api.post(a, '/v1/messages', '{"recipient_key":'), 400, 'bad_request');
    expectError(await api.post(a, '/v1/messages', 'not json at all'), 400, 'bad_request');
    expectError(await api.post(a, '/v1/messages', [b]), 400, 'bad_request');
    expectError(await api.req(a, 'POST', '/v1/messages'), 400, 'bad_request');
    // A 128-character thread id is fine.
    const okSend = await api.send(a, b, {}, { thread_id: 'x'.repeat(128) });
    // Nothing but that one was stored.
    const poll = expectOk(await api.get(bKp, '/v1/messages'));
    assert.deepEqual(
      poll.messages.map((m: { message_id: string }) => m.message_id),
      [okSend.message_id],
    );
  });

  it('an unknown blob attachment → 422 unprocessable_entity with details.blob_id', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const b = newAgent();
    const res = await api.post(a, '/v1/messages', {
      recipient_key: b.publicKey,
      body: {},
      attachments: [{ blob_id: 'blob_000000000000' }],
    });
    const err = expectError(res, 422, 'unprocessable_entity');
    assert.equal(err.details?.blob_id, 'blob_000000000000');
    // attachments alone (no body) are a valid shape; the unknown blob is still 422
    const res2 = await api.post(a, '/v1/messages', {
      recipient_key: b.publicKey,
      attachments: [{ blob_id: 'blob_111111111111', filename: 'a.pdf' }],
    });
    expectError(res2, 422, 'unprocessable_entity');
  });

  it('body over 1 MiB → 413 payload_too_large; exactly 1 MiB is accepted', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const b = newAgent();
    const exact = 'x'.repeat(MiB - 2); // JSON string: 2 quotes + MiB-2 bytes = 1 MiB
    assert.equal(Buffer.byteLength(JSON.stringify(exact)), MiB);
    const ok = await api.send(a, b.publicKey, exact);
    assert.match(ok.message_id, MSG_ID_RE);
    const over = await api.post(a, '/v1/messages', { recipient_key: b.publicKey, body: `${exact}x` });
    expectError(over, 413, 'payload_too_large');
    const overObj = await api.post(a, '/v1/messages', { recipient_key: b.publicKey, body: { data: 'y'.repeat(MiB) } });
    expectError(overObj, 413, 'payload_too_large');
    // The accepted one round-trips intact.
    const m = expectOk(await api.get(b, `/v1/messages/${ok.message_id}`));
    assert.equal(m.body.length, MiB - 2);
  });

  it('whole request over 2 MiB → 413 payload_too_large; a 1.9 MiB envelope with a small-enough body is accepted', {
    skip: PAIRED
      ? 'MRP_TEST_PAIR: the test proxy loses an answer sent before the body is read (413, then close: EPIPE upstream)'
      : false,
  }, async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const b = newAgent();
    const big = await api.post(a, '/v1/messages', {
      recipient_key: b.publicKey,
      body: { t: 1 },
      metadata: { pad: 'p'.repeat(2 * MiB + 16) },
    });
    expectError(big, 413, 'payload_too_large');
    const okRes = await api.post(a, '/v1/messages', {
      recipient_key: b.publicKey,
      body: 'b'.repeat(MiB - 100),
      metadata: { pad: 'p'.repeat(Math.floor(0.9 * MiB)) },
    });
    expectOk(okRes, 201);
  });
});

describe('§3.6 GET /v1/messages/{id} and /status', () => {
  it('visible to sender and recipient only; others and unknown ids → 404 message_not_found', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const b = newAgent();
    const c = newAgent();
    const sent = await api.send(a, b.publicKey, { secret: 1 });
    expectOk(await api.get(a, `/v1/messages/${sent.message_id}`));
    expectOk(await api.get(b, `/v1/messages/${sent.message_id}`));
    expectError(await api.get(c, `/v1/messages/${sent.message_id}`), 404, 'message_not_found');
    expectError(await api.get(c, `/v1/messages/${sent.message_id}/status`), 404, 'message_not_found');
    expectError(await api.get(a, '/v1/messages/msg_1772712000_0a1b2c3d4e5f'), 404, 'message_not_found');
    expectError(await api.get(a, '/v1/messages/msg_1772712000_0a1b2c3d4e5f/status'), 404, 'message_not_found');
  });

  it('reading a message does not change its status', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const b = newAgent();
    const sent = await api.send(a, b.publicKey);
    assert.equal(expectOk(await api.get(b, `/v1/messages/${sent.message_id}`)).status, 'sent');
    assert.equal(expectOk(await api.get(b, `/v1/messages/${sent.message_id}/status`)).status, 'sent');
    const poll = expectOk(await api.get(b, '/v1/messages'));
    assert.equal(poll.messages.length, 1);
  });

  it('status endpoint shape: sent → delivered with delivered_at after a poll', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const b = newAgent();
    const sent = await api.send(a, b.publicKey);
    const s1 = expectOk(await api.get(a, `/v1/messages/${sent.message_id}/status`));
    assert.deepEqual(s1, {
      message_id: sent.message_id,
      status: 'sent',
      created_at: sent.created_at,
      delivered_at: null,
      expires_at: sent.expires_at,
    });
    expectOk(await api.get(b, '/v1/messages'));
    for (const who of [a, b]) {
      const s2 = expectOk(await api.get(who, `/v1/messages/${sent.message_id}/status`));
      assert.deepEqual(Object.keys(s2).sort(), ['created_at', 'delivered_at', 'expires_at', 'message_id', 'status']);
      assert.equal(s2.status, 'delivered');
      assert.match(s2.delivered_at, RFC3339_UTC_RE);
      assert.ok(Date.parse(s2.delivered_at) >= Date.parse(sent.created_at));
    }
    const m = expectOk(await api.get(a, `/v1/messages/${sent.message_id}`));
    assert.equal(m.status, 'delivered');
    assert.match(m.delivered_at, RFC3339_UTC_RE);
  });
});

describe('§4.3 TTL expiry', () => {
  it('a sent message past expires_at is expired: status, GET, not in sent polls, in status=expired polls', async (t) => {
    const clock = new ManualClock();
    const { url } = await startRelay(t, { clock, sweepIntervalMs: 3_600_000 });
    const api = new Api(url, clock);
    const a = newAgent();
    const b = newAgent();
    const short = await api.send(a, b.publicKey, { n: 'short' }, { expires_in: 60 });
    const long = await api.send(a, b.publicKey, { n: 'long' }, { expires_in: 3600 });
    await clock.advanceAsync(61_000);
    const st = expectOk(await api.get(a, `/v1/messages/${short.message_id}/status`));
    assert.equal(st.status, 'expired');
    assert.equal(st.delivered_at, null);
    assert.equal(expectOk(await api.get(b, `/v1/messages/${short.message_id}`)).status, 'expired');
    const expired = expectOk(await api.get(b, '/v1/messages?status=expired'));
    assert.deepEqual(
      expired.messages.map((m: { message_id: string; status: string }) => [m.message_id, m.status]),
      [[short.message_id, 'expired']],
    );
    const poll = expectOk(await api.get(b, '/v1/messages'));
    assert.deepEqual(
      poll.messages.map((m: { message_id: string }) => m.message_id),
      [long.message_id],
    );
    // Transitions never go backwards: still expired, never delivered.
    assert.equal(expectOk(await api.get(a, `/v1/messages/${short.message_id}/status`)).status, 'expired');
  });

  it('a delivered message stays delivered after expires_at (transitions never go backwards)', async (t) => {
    const clock = new ManualClock();
    const { url } = await startRelay(t, { clock, sweepIntervalMs: 3_600_000 });
    const api = new Api(url, clock);
    const a = newAgent();
    const b = newAgent();
    const sent = await api.send(a, b.publicKey, { n: 1 }, { expires_in: 10 });
    expectOk(await api.get(b, '/v1/messages'));
    await clock.advanceAsync(11_000); // past expiry, before the sweeper purges it
    const st = await api.get(a, `/v1/messages/${sent.message_id}/status`);
    if (st.status === 200) assert.equal(st.body.status, 'delivered');
    else expectError(st, 404, 'message_not_found'); // already purged is fine too
    assert.deepEqual(expectOk(await api.get(b, '/v1/messages?status=expired')).messages, []);
  });

  it('expired messages stay visible for 24 hours, then are purged; delivered ones are kept until expires_at', async (t) => {
    const clock = new ManualClock();
    const { url } = await startRelay(t, { clock, sweepIntervalMs: 3_600_000 });
    const api = new Api(url, clock);
    const a = newAgent();
    const b = newAgent();
    const del = await api.send(a, b.publicKey, { n: 1 }, { expires_in: 7200 });
    // deliver it by polling
    const p = expectOk(await api.get(b, '/v1/messages'));
    assert.deepEqual(
      p.messages.map((m: { message_id: string }) => m.message_id),
      [del.message_id],
    );
    const exp2 = await api.send(a, b.publicKey, { n: 2 }, { expires_in: 60 });
    await clock.advanceAsync(61_000);
    await clock.advanceAsync(3600_000); // +1h: del (delivered, TTL 2h) still kept, exp2 expired < 24h
    assert.equal(expectOk(await api.get(b, `/v1/messages/${del.message_id}`)).status, 'delivered');
    assert.equal(expectOk(await api.get(a, `/v1/messages/${exp2.message_id}/status`)).status, 'expired');
    await clock.advanceAsync(2 * 3600_000); // +3h: del past expires_at → purged
    expectError(await api.get(b, `/v1/messages/${del.message_id}`), 404, 'message_not_found');
    assert.equal(expectOk(await api.get(a, `/v1/messages/${exp2.message_id}/status`)).status, 'expired');
    await clock.advanceAsync(22 * 3600_000); // expired for > 24 h → purged
    expectError(await api.get(a, `/v1/messages/${exp2.message_id}/status`), 404, 'message_not_found');
    const hist = expectOk(await api.get(b, '/v1/messages?status=expired'));
    assert.deepEqual(hist.messages, []);
  });
});

describe('§4.4 threads', () => {
  it('GET /v1/messages/threads/{id}: root and replies the caller took part in, oldest first', async (t) => {
    const { api } = await startTicking(t);

    const a = newAgent();
    const b = newAgent();
    const c = newAgent();
    const root = await api.send(a, b.publicKey, { step: 'root' });
    // reply with in_reply_to only: relay fills thread_id = root id
    const r1 = await api.send(b, a.publicKey, { step: 'r1' }, { in_reply_to: root.message_id });
    const r1m = expectOk(await api.get(b, `/v1/messages/${r1.message_id}`));
    assert.equal(r1m.thread_id, root.message_id);
    assert.equal(r1m.in_reply_to, root.message_id);
    // reply to the reply: thread_id = parent's thread_id
    const r2 = await api.send(a, b.publicKey, { step: 'r2' }, { in_reply_to: r1.message_id });
    assert.equal(expectOk(await api.get(a, `/v1/messages/${r2.message_id}`)).thread_id, root.message_id);
    // C writes into the same thread id with B; A did not take part in that message
    const cMsg = await api.send(c, b.publicKey, { step: 'c' }, { thread_id: root.message_id });

    const forA = expectOk(await api.get(a, `/v1/messages/threads/${root.message_id}`));
    assert.deepEqual(Object.keys(forA).sort(), ['has_more', 'messages', 'next_cursor', 'thread_id']);
    assert.equal(forA.thread_id, root.message_id);
    assert.deepEqual(
      forA.messages.map((m: { message_id: string }) => m.message_id),
      [root.message_id, r1.message_id, r2.message_id],
    );
    assert.equal(forA.has_more, false);
    assert.equal(forA.next_cursor, null);
    for (const m of forA.messages) assert.deepEqual(Object.keys(m).sort(), MESSAGE_FIELDS);

    const forB = expectOk(await api.get(b, `/v1/messages/threads/${root.message_id}`));
    assert.deepEqual(
      forB.messages.map((m: { message_id: string }) => m.message_id),
      [root.message_id, r1.message_id, r2.message_id, cMsg.message_id],
    );
    const forC = expectOk(await api.get(c, `/v1/messages/threads/${root.message_id}`));
    assert.deepEqual(
      forC.messages.map((m: { message_id: string }) => m.message_id),
      [cMsg.message_id],
    );
    // Reading a thread changes no status.
    assert.equal(expectOk(await api.get(a, `/v1/messages/${root.message_id}/status`)).status, 'sent');
    // Unknown thread → empty list.
    assert.deepEqual(expectOk(await api.get(a, '/v1/messages/threads/no-such-thread')), {
      thread_id: 'no-such-thread',
      messages: [],
      has_more: false,
      next_cursor: null,
    });
  });

  it('thread pagination with limit and cursor; limit bounds', async (t) => {
    const { api } = await startTicking(t);

    const a = newAgent();
    const b = newAgent();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await api.send(a, b.publicKey, { i }, { thread_id: 'topic-1' })).message_id);
    const p1 = expectOk(await api.get(a, '/v1/messages/threads/topic-1?limit=2'));
    assert.equal(p1.has_more, true);
    const p2 = expectOk(
      await api.get(a, `/v1/messages/threads/topic-1?limit=2&cursor=${encodeURIComponent(p1.next_cursor)}`),
    );
    const p3 = expectOk(
      await api.get(a, `/v1/messages/threads/topic-1?limit=2&cursor=${encodeURIComponent(p2.next_cursor)}`),
    );
    assert.equal(p3.has_more, false);
    assert.equal(p3.next_cursor, null);
    assert.deepEqual(
      [...p1.messages, ...p2.messages, ...p3.messages].map((m: { message_id: string }) => m.message_id),
      ids,
    );
    expectError(await api.get(a, '/v1/messages/threads/topic-1?limit=0'), 400, 'bad_request');
    expectError(await api.get(a, '/v1/messages/threads/topic-1?limit=101'), 400, 'bad_request');
  });

  it('the literal `threads` segment wins over {messageId}: a thread called "status" is a thread', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const b = newAgent();
    const m = await api.send(a, b.publicKey, { x: 1 }, { thread_id: 'status' });
    const res = expectOk(await api.get(a, '/v1/messages/threads/status'));
    assert.equal(res.thread_id, 'status');
    assert.deepEqual(
      res.messages.map((x: { message_id: string }) => x.message_id),
      [m.message_id],
    );
  });

  it('thread limit defaults to 50', async (t) => {
    const { url } = await startRelay(t, { sendRatePerMinute: 0 });
    const api = new Api(url);
    const a = newAgent();
    const b = newAgent();
    await Promise.all(Array.from({ length: 51 }, (_, i) => api.send(a, b.publicKey, { i }, { thread_id: 'big' })));
    const page = expectOk(await api.get(b, '/v1/messages/threads/big'));
    assert.equal(page.messages.length, 50);
    assert.equal(page.has_more, true);
    assert.equal(typeof page.next_cursor, 'string');
  });

  it('in_reply_to without thread_id is filled only when the parent is visible to the sender', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const b = newAgent();
    const c = newAgent();
    const root = await api.send(a, b.publicKey, { q: 1 }, { thread_id: 'chosen-thread' });
    // B answers: parent visible, parent has a thread id → inherits it
    const reply = await api.send(b, a.publicKey, { a: 1 }, { in_reply_to: root.message_id });
    assert.equal(expectOk(await api.get(b, `/v1/messages/${reply.message_id}`)).thread_id, 'chosen-thread');
    // C cannot see root: thread_id stays null, in_reply_to kept as given
    const stray = await api.send(c, b.publicKey, { a: 2 }, { in_reply_to: root.message_id });
    const sm = expectOk(await api.get(c, `/v1/messages/${stray.message_id}`));
    assert.equal(sm.thread_id, null);
    assert.equal(sm.in_reply_to, root.message_id);
    // in_reply_to naming nothing is kept, not validated
    const ghost = await api.send(c, b.publicKey, { a: 3 }, { in_reply_to: 'msg_1_ffffffffffff' });
    const gm = expectOk(await api.get(c, `/v1/messages/${ghost.message_id}`));
    assert.equal(gm.in_reply_to, 'msg_1_ffffffffffff');
    assert.equal(gm.thread_id, null);
    // An explicit thread_id wins over filling.
    const explicit = await api.send(b, a.publicKey, { a: 4 }, { in_reply_to: root.message_id, thread_id: 'other' });
    assert.equal(expectOk(await api.get(b, `/v1/messages/${explicit.message_id}`)).thread_id, 'other');
  });
});
