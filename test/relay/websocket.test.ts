/** Conformance: the WebSocket protocol (§5): auth, frames, delivery, inline send, heartbeat, limits. */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import WebSocket from 'ws';
import { ManualClock } from '../../src/core/clock.js';
import { authFrame } from '../../src/protocol/signing.js';
import { newAgent, type RawSocket, startRelay } from '../helpers/relay.js';
import {
  Api,
  wsConnect as connect,
  expectOk,
  freshAuthFrame,
  MESSAGE_FIELDS,
  MSG_ID_RE,
  openSocket,
  RFC3339_UTC_RE,
  roundTrip,
  startTicking,
  waitForConnections,
} from './_support.js';

/** The next frame must be a pong for this ts (proves nothing else was queued before it). */
async function expectOnlyPong(s: RawSocket, ts: number): Promise<void> {
  s.send({ type: 'ping', ts });
  const f = await s.next();
  assert.deepEqual(f, { type: 'pong', ts }, `expected only a pong, got ${JSON.stringify(f).slice(0, 200)}`);
}

async function authFails(
  wsUrl: string,
  t: Parameters<typeof startRelay>[0],
  frame: unknown,
  code: string,
): Promise<void> {
  const s = await openSocket(t, wsUrl);
  s.send(frame);
  const res = await s.next();
  assert.equal(res.type, 'auth_result', JSON.stringify(res));
  assert.equal(res.status, 'error');
  assert.equal(res.error.code, code, JSON.stringify(res));
  assert.equal(typeof res.error.message, 'string');
  assert.equal((await s.closed).code, 4001);
}

describe('§5.1 WebSocket authentication', () => {
  it('auth ok frame: {type: auth_result, status: ok, public_key}; the auth frame auto-creates the agent', async (t) => {
    const { url, wsUrl } = await startRelay(t);
    const kp = newAgent();
    const s = await openSocket(t, wsUrl);
    const res = await s.auth(kp);
    assert.deepEqual(res, { type: 'auth_result', status: 'ok', public_key: kp.publicKey });
    const p = expectOk(await new Api(url).get(newAgent(), `/v1/agents/${kp.publicKey}`));
    assert.equal(p.visibility, 'private');
    assert.equal(p.inbox_policy, 'blocklist');
  });

  it('bad signature → auth_result error invalid_signature, close 4001', async (t) => {
    const { wsUrl } = await startRelay(t);
    const kp = newAgent();
    const frame = authFrame(kp, Date.now());
    await authFails(
      wsUrl,
      t,
      { ...frame, signature: authFrame(newAgent(), Date.now()).signature },
      'invalid_signature',
    );
    // Signature over the HTTP canonical form instead of "WS\n"+timestamp.
    await authFails(
      wsUrl,
      t,
      { ...frame, signature: kp.sign(`GET\n/v1/ws\n${frame.timestamp}\n47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU`) },
      'invalid_signature',
    );
  });

  it('stale or future timestamp → auth_result error timestamp_expired, close 4001', async (t) => {
    const { wsUrl } = await startRelay(t);
    await authFails(wsUrl, t, authFrame(newAgent(), Date.now() - 6 * 60_000), 'timestamp_expired');
    await authFails(wsUrl, t, authFrame(newAgent(), Date.now() + 6 * 60_000), 'timestamp_expired');
  });

  it('replayed auth frame → auth_result error replay_detected, close 4001', async (t) => {
    const { wsUrl } = await startRelay(t);
    const kp = newAgent();
    const frame = authFrame(kp, Date.now());
    const s1 = await openSocket(t, wsUrl);
    s1.send(frame);
    assert.equal((await s1.next()).status, 'ok');
    await authFails(wsUrl, t, frame, 'replay_detected');
  });

  it('malformed auth frame → auth_result error unauthorized, close 4001', async (t) => {
    const { wsUrl } = await startRelay(t);
    const kp = newAgent();
    const good = authFrame(kp, Date.now());
    await authFails(wsUrl, t, { type: 'auth', public_key: kp.publicKey, timestamp: good.timestamp }, 'unauthorized');
    await authFails(wsUrl, t, { ...good, public_key: 'short' }, 'unauthorized');
    await authFails(wsUrl, t, { ...good, timestamp: 'now' }, 'unauthorized');
    await authFails(wsUrl, t, { ...good, signature: 12 }, 'unauthorized');
  });

  it('no auth within authTimeoutMs → auth_result naming the configured time, close 4001', async (t) => {
    const { wsUrl } = await startRelay(t, { authTimeoutMs: 200 });
    const s = await openSocket(t, wsUrl);
    const started = Date.now();
    const result = await s.next();
    assert.equal(result.type, 'auth_result');
    assert.equal(result.error.code, 'unauthorized');
    assert.equal(result.error.message, 'no auth frame within 200 ms');
    const closed = await s.closed;
    assert.equal(closed.code, 4001);
    assert.ok(Date.now() - started >= 150, 'closed before the auth timeout');
  });

  it('pings do not stand in for auth: the auth timeout still closes with 4001', async (t) => {
    const { wsUrl } = await startRelay(t, { authTimeoutMs: 200 });
    const s = await openSocket(t, wsUrl);
    s.send({ type: 'ping', ts: 1 });
    assert.deepEqual(await s.next(), { type: 'pong', ts: 1 });
    assert.equal((await s.closed).code, 4001);
  });

  it('a non-auth frame before auth → error frame and close 4001; ping before auth gets pong', async (t) => {
    const { wsUrl } = await startRelay(t);
    const s = await openSocket(t, wsUrl);
    s.send({ type: 'ping', ts: 7 });
    assert.deepEqual(await s.next(), { type: 'pong', ts: 7 });
    // Still usable: authenticate after the ping.
    assert.equal((await s.auth(newAgent())).status, 'ok');

    const s2 = await openSocket(t, wsUrl);
    s2.send({ type: 'ack', message_id: 'msg_1_000000000000' });
    const f = await s2.next();
    assert.equal(f.type, 'error', JSON.stringify(f));
    assert.equal(typeof f.error.code, 'string');
    assert.equal((await s2.closed).code, 4001);

    const s3 = await openSocket(t, wsUrl);
    s3.send({ type: 'send', recipient_key: newAgent().publicKey, body: {} });
    assert.equal((await s3.closed).code, 4001);
  });

  it('an unparseable frame → error frame and close 4000 (before and after auth)', async (t) => {
    const { wsUrl } = await startRelay(t);
    const s = await openSocket(t, wsUrl);
    s.send('{not json');
    const f = await s.next();
    assert.equal(f.type, 'error');
    assert.equal(typeof f.error.code, 'string');
    assert.equal((await s.closed).code, 4000);

    const s2 = await connect(t, wsUrl, newAgent());
    s2.send('this is not json');
    const f2 = await s2.next();
    assert.equal(f2.type, 'error');
    assert.equal((await s2.closed).code, 4000);
  });

  it('a suspended agent is refused with agent_suspended', async (t) => {
    const { url, wsUrl, relay } = await startRelay(t);
    const kp = newAgent();
    await new Api(url).touch(kp);
    await relay.setAgentStatus(kp.publicKey, 'suspended');
    const s = await openSocket(t, wsUrl);
    const res = await s.auth(kp);
    assert.equal(res.type, 'auth_result');
    assert.equal(res.status, 'error');
    assert.equal(res.error.code, 'agent_suspended');
    const { code } = await s.closed;
    assert.ok(code === 4003 || code === 4001, `close ${code}`);
  });
});

describe('§5.2 frames after auth', () => {
  it('unknown type → error frame bad_request, connection kept', async (t) => {
    const { wsUrl } = await startRelay(t);
    const s = await connect(t, wsUrl, newAgent());
    s.send({ type: 'subscribe', topic: 'x' });
    const f = await s.next();
    assert.equal(f.type, 'error');
    assert.equal(f.error.code, 'bad_request');
    assert.equal(typeof f.error.message, 'string');
    await expectOnlyPong(s, 1);
  });

  it('a second auth → error frame bad_request, connection kept', async (t) => {
    const { wsUrl } = await startRelay(t);
    const kp = newAgent();
    const s = await connect(t, wsUrl, kp);
    s.send(freshAuthFrame(kp));
    const f = await s.next();
    assert.equal(f.type, 'error', JSON.stringify(f));
    assert.equal(f.error.code, 'bad_request');
    await expectOnlyPong(s, 2);
  });

  it('JSON ping → pong echoing ts (any JSON value); without ts → {type: pong}', async (t) => {
    const { wsUrl } = await startRelay(t);
    const s = await connect(t, wsUrl, newAgent());
    s.send({ type: 'ping', ts: 1772712000123 });
    assert.deepEqual(await s.next(), { type: 'pong', ts: 1772712000123 });
    s.send({ type: 'ping', ts: 'abc' });
    assert.deepEqual(await s.next(), { type: 'pong', ts: 'abc' });
    s.send({ type: 'ping' });
    assert.deepEqual(await s.next(), { type: 'pong' });
  });
});

describe('§5.3 delivery over WebSocket', () => {
  it('pushes the backlog oldest first after auth, then live messages, as full message objects', async (t) => {
    const { wsUrl, api } = await startTicking(t);

    const a = newAgent();
    const b = newAgent();
    const backlog: string[] = [];
    for (let i = 0; i < 5; i++) backlog.push((await api.send(a, b.publicKey, { i })).message_id);
    const s = await connect(t, wsUrl, b);
    for (let i = 0; i < 5; i++) {
      const f = await s.next();
      assert.equal(f.type, 'message');
      assert.deepEqual(Object.keys(f).sort(), ['message', 'type']);
      assert.deepEqual(Object.keys(f.message).sort(), MESSAGE_FIELDS);
      assert.equal(f.message.message_id, backlog[i]);
      assert.deepEqual(f.message.body, { i });
      assert.equal(f.message.sender_key, a.publicKey);
      assert.equal(f.message.recipient_key, b.publicKey);
      assert.equal(f.message.status, 'sent');
      assert.match(f.message.created_at, RFC3339_UTC_RE);
    }
    const live = await api.send(a, b.publicKey, { live: true }, { thread_id: 'th-1', metadata: { m: 1 } });
    const f = await s.next();
    assert.equal(f.type, 'message');
    assert.equal(f.message.message_id, live.message_id);
    assert.equal(f.message.thread_id, 'th-1');
    assert.deepEqual(f.message.metadata, { m: 1 });
    // Pushing alone does not change status.
    assert.equal(expectOk(await api.get(a, `/v1/messages/${live.message_id}/status`)).status, 'sent');
  });

  it('a large backlog arrives completely and in order, and live messages sent meanwhile follow without gaps or duplicates', async (t) => {
    const { url, wsUrl } = await startRelay(t, {
      sendRatePerMinute: 0,
      receiveRatePerMinute: 0,
      requestRatePerMinute: 0,
    });
    const api = new Api(url);
    const a = newAgent();
    const b = newAgent();
    const expected: string[] = [];
    for (let batch = 0; batch < 12; batch++) {
      const res = await Promise.all(
        Array.from({ length: 50 }, (_, i) => api.send(a, b.publicKey, { n: batch * 50 + i, pad: 'x'.repeat(200) })),
      );
      expected.push(...res.map((r) => r.message_id as string));
    }
    const s = await connect(t, wsUrl, b);
    const live: Promise<string>[] = [];
    const got: string[] = [];
    while (got.length < expected.length + 20) {
      const f = await s.next();
      assert.equal(f.type, 'message');
      got.push(f.message.message_id);
      // Start sending live messages while the backlog is still streaming.
      if (got.length === 10)
        for (let i = 0; i < 20; i++)
          live.push(api.send(a, b.publicKey, { live: i }).then((r) => r.message_id as string));
    }
    const liveIds = await Promise.all(live);
    assert.equal(new Set(got).size, got.length, 'a message was pushed twice');
    assert.deepEqual(new Set(got), new Set([...expected, ...liveIds]));
    // The stored backlog arrives in store order, before messages sent after the connection opened.
    const backlogPart = got.filter((id) => expected.includes(id));
    assert.deepEqual(new Set(backlogPart), new Set(expected));
    await expectOnlyPong(s, 99);
  });

  it('expired messages are not pushed', async (t) => {
    const clock = new ManualClock();
    const { url, wsUrl } = await startRelay(t, { clock, heartbeatIntervalMs: 3_600_000 });
    const api = new Api(url, clock);
    const a = newAgent();
    const b = newAgent();
    await api.send(a, b.publicKey, { short: true }, { expires_in: 5 });
    const keep = await api.send(a, b.publicKey, { long: true });
    await clock.advanceAsync(6000);
    const s = await connect(t, wsUrl, b, clock.now());
    const f = await s.next();
    assert.equal(f.message.message_id, keep.message_id);
    await expectOnlyPong(s, 41);
  });

  it('an ack that arrives after expires_at does not turn an expired message into a delivered one', async (t) => {
    const clock = new ManualClock();
    const { url, wsUrl } = await startRelay(t, { clock, heartbeatIntervalMs: 3_600_000, sweepIntervalMs: 3_600_000 });
    const api = new Api(url, clock);
    const a = newAgent();
    const b = newAgent();
    const s = await connect(t, wsUrl, b, clock.now());
    const sent = await api.send(a, b.publicKey, { ttl: 5 }, { expires_in: 5 });
    assert.equal((await s.next()).message.message_id, sent.message_id);
    await clock.advanceAsync(6000);
    assert.equal(expectOk(await api.get(a, `/v1/messages/${sent.message_id}/status`)).status, 'expired');
    s.send({ type: 'ack', message_id: sent.message_id });
    await expectOnlyPong(s, 43);
    const st = expectOk(await api.get(a, `/v1/messages/${sent.message_id}/status`));
    assert.equal(st.status, 'expired', 'expired is terminal: sent → expired never continues to delivered');
    assert.equal(st.delivered_at, null);
  });

  it('WebSocket frames count as activity for last_active_at (at most once per minute)', async (t) => {
    const clock = new ManualClock();
    const { url, wsUrl } = await startRelay(t, { clock, heartbeatIntervalMs: 3_600_000 });
    const api = new Api(url, clock);
    const b = newAgent();
    const s = await connect(t, wsUrl, b, clock.now());
    const before = expectOk(await api.get(newAgent(), `/v1/agents/${b.publicKey}`)).last_active_at;
    assert.equal(Date.parse(before), clock.now());
    await clock.advanceAsync(2 * 60_000);
    await expectOnlyPong(s, 42);
    const after = expectOk(await api.get(newAgent(), `/v1/agents/${b.publicKey}`)).last_active_at;
    assert.equal(Date.parse(after), clock.now());
  });

  it('a slow reader loses nothing: pushes resume in order after the client catches up', async (t) => {
    const { url, wsUrl } = await startRelay(t, {
      sendRatePerMinute: 0,
      receiveRatePerMinute: 0,
      requestRatePerMinute: 0,
    });
    const api = new Api(url);
    const a = newAgent();
    const b = newAgent();
    const s = await connect(t, wsUrl, b);
    const sock = (s.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket;
    sock.pause();
    const big = 'y'.repeat(200 * 1024);
    const sent: string[] = [];
    // 8 at once: the relay reads at most 8 bodies at once from one address (maxConcurrentBodiesPerAddress).
    for (let batch = 0; batch < 10; batch++) {
      const res = await Promise.all(
        Array.from({ length: 8 }, (_, i) => api.send(a, b.publicKey, { n: batch * 8 + i, big })),
      );
      sent.push(...res.map((r) => r.message_id as string));
    }
    sock.resume();
    const got: string[] = [];
    const times: number[] = [];
    while (got.length < sent.length) {
      const f = await s.next(10_000);
      assert.equal(f.type, 'message');
      got.push(f.message.message_id);
      times.push(Date.parse(f.message.created_at));
    }
    assert.equal(new Set(got).size, got.length, 'duplicate push');
    assert.deepEqual(new Set(got), new Set(sent));
    assert.deepEqual(
      times,
      [...times].sort((x, y) => x - y),
      'oldest first',
    );
    await expectOnlyPong(s, 98);
    // and live pushes still work afterwards
    const after = await api.send(a, b.publicKey, { after: true });
    assert.equal((await s.next()).message.message_id, after.message_id);
  });

  it('ack marks the message delivered; acked messages are not offered again', async (t) => {
    const { url, wsUrl } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const b = newAgent();
    const s = await connect(t, wsUrl, b);
    const sent = await api.send(a, b.publicKey, { ack: 'me' });
    const f = await s.next();
    assert.equal(f.message.message_id, sent.message_id);
    s.send({ type: 'ack', message_id: sent.message_id });
    await expectOnlyPong(s, 3); // the relay acks nothing back
    const st = expectOk(await api.get(a, `/v1/messages/${sent.message_id}/status`));
    assert.equal(st.status, 'delivered');
    assert.match(st.delivered_at, RFC3339_UTC_RE);
    assert.deepEqual(expectOk(await api.get(b, '/v1/messages')).messages, []);
    s.close();
    await s.closed;
    const s2 = await connect(t, wsUrl, b);
    await expectOnlyPong(s2, 4);
  });

  it('unacked messages stay sent, are not re-pushed on the same connection, and are pushed again on the next one', async (t) => {
    const { wsUrl, api } = await startTicking(t);

    const a = newAgent();
    const b = newAgent();
    const s = await connect(t, wsUrl, b);
    const m1 = await api.send(a, b.publicKey, { n: 1 });
    assert.equal((await s.next()).message.message_id, m1.message_id);
    const m2 = await api.send(a, b.publicKey, { n: 2 });
    assert.equal((await s.next()).message.message_id, m2.message_id, 'no re-push of m1 on the same connection');
    await expectOnlyPong(s, 5);
    assert.equal(expectOk(await api.get(a, `/v1/messages/${m1.message_id}/status`)).status, 'sent');
    s.close();
    await s.closed;
    const s2 = await connect(t, wsUrl, b);
    assert.equal((await s2.next()).message.message_id, m1.message_id);
    assert.equal((await s2.next()).message.message_id, m2.message_id);
    await expectOnlyPong(s2, 6);
    // and polling can still fetch them
    s2.close();
    const poll = expectOk(await api.get(b, '/v1/messages'));
    assert.deepEqual(
      poll.messages.map((m: { message_id: string }) => m.message_id),
      [m1.message_id, m2.message_id],
    );
  });

  it('an ack by someone other than the recipient is ignored', async (t) => {
    const { url, wsUrl } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const b = newAgent();
    const sent = await api.send(a, b.publicKey, { n: 1 });
    const sa = await connect(t, wsUrl, a);
    sa.send({ type: 'ack', message_id: sent.message_id });
    await roundTrip(sa);
    assert.equal(expectOk(await api.get(a, `/v1/messages/${sent.message_id}/status`)).status, 'sent');
    const poll = expectOk(await api.get(b, '/v1/messages'));
    assert.equal(poll.messages.length, 1);
  });
});

describe('§5.4 inline send', () => {
  it('send → send_result ok with request_id echoed; the recipient gets the message', async (t) => {
    const { url, wsUrl } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const b = newAgent();
    const s = await connect(t, wsUrl, a);
    s.send({
      type: 'send',
      request_id: 'c-17',
      recipient_key: b.publicKey,
      content_type: 'application/json',
      body: { text: 'Hi' },
      thread_id: null,
      in_reply_to: null,
      expires_in: 3600,
      metadata: { k: 'v' },
      attachments: [],
    });
    const r = await s.next();
    assert.deepEqual(Object.keys(r).sort(), ['created_at', 'expires_at', 'message_id', 'request_id', 'status', 'type']);
    assert.equal(r.type, 'send_result');
    assert.equal(r.request_id, 'c-17');
    assert.equal(r.status, 'ok');
    assert.match(r.message_id, MSG_ID_RE);
    assert.equal(Date.parse(r.expires_at) - Date.parse(r.created_at), 3600_000);
    const m = expectOk(await api.get(b, `/v1/messages/${r.message_id}`));
    assert.equal(m.sender_key, a.publicKey);
    assert.deepEqual(m.body, { text: 'Hi' });
    assert.deepEqual(m.metadata, { k: 'v' });
  });

  it('the nested {"type":"send","message":{...}} form is accepted', async (t) => {
    const { url, wsUrl } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const b = newAgent();
    const s = await connect(t, wsUrl, a);
    s.send({ type: 'send', request_id: 'n-1', message: { recipient_key: b.publicKey, body: { nested: true } } });
    const r = await s.next();
    assert.equal(r.type, 'send_result');
    assert.equal(r.status, 'ok', JSON.stringify(r));
    assert.equal(r.request_id, 'n-1');
    assert.deepEqual(expectOk(await api.get(b, `/v1/messages/${r.message_id}`)).body, { nested: true });
  });

  it('errors come back as send_result errors and keep the connection open', async (t) => {
    const { url, wsUrl } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const closed = newAgent();
    await api.profile(closed, { inbox_policy: 'closed' });
    const s = await connect(t, wsUrl, a);

    s.send({ type: 'send', request_id: 'e1', recipient_key: closed.publicKey, body: {} });
    const r1 = await s.next();
    assert.equal(r1.type, 'send_result');
    assert.equal(r1.request_id, 'e1');
    assert.equal(r1.status, 'error');
    assert.equal(r1.error.code, 'acl_denied');
    assert.equal(typeof r1.error.message, 'string');
    await expectOnlyPong(s, 11);

    s.send({ type: 'send', request_id: 'e2', recipient_key: 'not-a-key', body: {} });
    const r2 = await s.next();
    assert.equal(r2.status, 'error');
    assert.equal(r2.request_id, 'e2');
    assert.equal(r2.error.code, 'bad_request');
    assert.equal(r2.error.details?.field, 'recipient_key');
    await expectOnlyPong(s, 12);

    s.send({ type: 'send', request_id: 'e3', recipient_key: newAgent().publicKey, body: {}, expires_in: 0 });
    const r3 = await s.next();
    assert.equal(r3.error.code, 'bad_request');
    assert.equal(r3.error.details?.field, 'expires_in');

    s.send({ type: 'send', request_id: 'e4', recipient_key: newAgent().publicKey, body: 'x'.repeat(1024 * 1024) });
    const r4 = await s.next();
    assert.equal(r4.type, 'send_result');
    assert.equal(r4.request_id, 'e4');
    assert.equal(r4.status, 'error');
    assert.equal(r4.error.code, 'payload_too_large');
    await expectOnlyPong(s, 13);

    // A frame larger than the 2 MiB envelope limit (body within 1 MiB, padding in metadata).
    s.send({
      type: 'send',
      request_id: 'e4b',
      recipient_key: newAgent().publicKey,
      body: {},
      metadata: { pad: 'p'.repeat(2 * 1024 * 1024 + 16) },
    });
    const r4b = await s.next();
    assert.equal(r4b.type, 'send_result');
    assert.equal(r4b.request_id, 'e4b');
    assert.equal(r4b.status, 'error');
    assert.equal(r4b.error.code, 'payload_too_large');
    await expectOnlyPong(s, 14);

    s.send({
      type: 'send',
      request_id: 'e5',
      recipient_key: newAgent().publicKey,
      body: {},
      attachments: [{ blob_id: 'blob_000000000000' }],
    });
    const r5 = await s.next();
    assert.equal(r5.error.code, 'unprocessable_entity');

    // A request_id that is neither a string nor a number cannot be echoed: bad_request naming it.
    for (const [i, bad] of [{ id: 1 }, [1], true].entries()) {
      s.send({ type: 'send', request_id: bad, recipient_key: newAgent().publicKey, body: {} });
      const r6 = await s.next();
      assert.equal(r6.type, 'send_result');
      assert.equal(r6.status, 'error');
      assert.equal(r6.error.code, 'bad_request');
      assert.equal(r6.error.details?.field, 'request_id');
      assert.equal(r6.request_id, undefined);
      await expectOnlyPong(s, 20 + i);
    }
    // A number is echoed as a string; null counts as absent.
    s.send({ type: 'send', request_id: 42, recipient_key: newAgent().publicKey, body: {} });
    const r7 = await s.next();
    assert.equal(r7.status, 'ok');
    assert.equal(r7.request_id, '42');
    s.send({ type: 'send', request_id: null, recipient_key: newAgent().publicKey, body: {} });
    const r8 = await s.next();
    assert.equal(r8.status, 'ok');
    assert.equal(r8.request_id, undefined);

    // And a good send still works afterwards.
    s.send({ type: 'send', request_id: 'ok', recipient_key: newAgent().publicKey, body: {} });
    const ok = await s.next();
    assert.equal(ok.status, 'ok');
    assert.equal(ok.request_id, 'ok');
  });
});

describe('§5.4 inline send: size limit far above the envelope', () => {
  it('a 4 MiB send frame gets send_result payload_too_large and the connection stays open', async (t) => {
    const { wsUrl } = await startRelay(t);
    const s = await connect(t, wsUrl, newAgent());
    s.send({
      type: 'send',
      request_id: 'huge',
      recipient_key: newAgent().publicKey,
      body: 'z'.repeat(4 * 1024 * 1024),
    });
    const r = await Promise.race([s.next(), s.closed.then((c) => ({ closed: c.code }))]);
    assert.equal(
      r.closed,
      undefined,
      `the relay dropped the connection (close ${r.closed}) instead of answering send_result payload_too_large`,
    );
    assert.equal(r.type, 'send_result');
    assert.equal(r.request_id, 'huge');
    assert.equal(r.status, 'error');
    assert.equal(r.error.code, 'payload_too_large');
    await expectOnlyPong(s, 15);
  });
});

describe('§5.5 heartbeat', () => {
  it('a client that does not answer control pings is closed with 4005', async (t) => {
    const { wsUrl } = await startRelay(t, { heartbeatIntervalMs: 100, heartbeatTimeoutMs: 100 });
    const ws = new WebSocket(wsUrl, { autoPong: false });
    t.after(() => ws.terminate());
    await once(ws, 'open');
    const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)));
    let pings = 0;
    ws.on('ping', () => pings++);
    const auth = new Promise<unknown>((resolve) => ws.once('message', (d) => resolve(JSON.parse(d.toString()))));
    ws.send(JSON.stringify(authFrame(newAgent(), Date.now())));
    assert.equal(((await auth) as { status: string }).status, 'ok');
    assert.equal(await closed, 4005);
    assert.ok(pings >= 1, 'the relay sent a control ping before giving up');
  });

  it('any frame counts as a sign of life: a client that answers pings with JSON frames stays connected', async (t) => {
    const { wsUrl } = await startRelay(t, { heartbeatIntervalMs: 100, heartbeatTimeoutMs: 100 });
    const ws = new WebSocket(wsUrl, { autoPong: false });
    t.after(() => ws.terminate());
    await once(ws, 'open');
    let closedCode: number | undefined;
    ws.on('close', (code) => (closedCode = code));
    const auth = new Promise<unknown>((resolve) => ws.once('message', (d) => resolve(JSON.parse(d.toString()))));
    ws.send(JSON.stringify(authFrame(newAgent(), Date.now())));
    assert.equal(((await auth) as { status: string }).status, 'ok');
    let pings = 0;
    await new Promise<void>((resolve) =>
      ws.on('ping', () => {
        ws.send(JSON.stringify({ type: 'ping' }));
        if (++pings === 4) resolve();
      }),
    );
    assert.equal(closedCode, undefined);
    assert.equal(ws.readyState, WebSocket.OPEN);
  });

  it('a normal client (auto pong) stays connected across several intervals (and past the auth timeout)', async (t) => {
    const { wsUrl } = await startRelay(t, { heartbeatIntervalMs: 100, heartbeatTimeoutMs: 100, authTimeoutMs: 150 });
    const s = await connect(t, wsUrl, newAgent());
    let closedCode: number | undefined;
    void s.closed.then((c) => (closedCode = c.code));
    let pings = 0;
    await new Promise<void>((resolve) => s.ws.on('ping', () => ++pings === 5 && resolve()));
    assert.equal(closedCode, undefined);
    await expectOnlyPong(s, 21);
  });
});

describe('§5.6 connection limits and close codes', () => {
  it('at most 2 connections per agent: the third gets too_many_connections and 4002; the first two keep working', async (t) => {
    const { url, wsUrl } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const b = newAgent();
    const c1 = await connect(t, wsUrl, b);
    const c2 = await connect(t, wsUrl, b);
    const c3 = await openSocket(t, wsUrl);
    c3.send(freshAuthFrame(b));
    const res = await c3.next();
    assert.equal(res.type, 'auth_result');
    assert.equal(res.status, 'error');
    assert.equal(res.error.code, 'too_many_connections');
    assert.equal((await c3.closed).code, 4002);
    // Another agent is not affected by b's limit.
    await connect(t, wsUrl, a);
    // Both existing connections receive each new message.
    const m = await api.send(a, b.publicKey, { to: 'both' });
    assert.equal((await c1.next()).message.message_id, m.message_id);
    assert.equal((await c2.next()).message.message_id, m.message_id);
    // First ack wins; the other ack is harmless.
    c1.send({ type: 'ack', message_id: m.message_id });
    c2.send({ type: 'ack', message_id: m.message_id });
    await roundTrip(c1);
    await roundTrip(c2);
    assert.equal(expectOk(await api.get(a, `/v1/messages/${m.message_id}/status`)).status, 'delivered');
    // After one closes, a new connection is accepted.
    c1.close();
    await c1.closed;
    await waitForConnections(url, 2); // c2 and a's connection
    const c4 = await connect(t, wsUrl, b);
    const m2 = await api.send(a, b.publicKey, { to: 'c2 and c4' });
    assert.equal((await c2.next()).message.message_id, m2.message_id);
    assert.equal((await c4.next()).message.message_id, m2.message_id);
  });

  it('DELETE of the agent closes its sockets (4003)', async (t) => {
    const { url, wsUrl } = await startRelay(t);
    const api = new Api(url);
    const b = newAgent();
    const s1 = await connect(t, wsUrl, b);
    const s2 = await connect(t, wsUrl, b);
    const del = await api.delete(b, `/v1/agents/${b.publicKey}`);
    assert.equal(del.status, 204);
    assert.equal((await s1.closed).code, 4003);
    assert.equal((await s2.closed).code, 4003);
    // The key can come back as a fresh agent.
    const s3 = await connect(t, wsUrl, b);
    await expectOnlyPong(s3, 31);
  });

  it('a refused connection is not counted', async (t) => {
    const { wsUrl } = await startRelay(t);
    const b = newAgent();
    await connect(t, wsUrl, b);
    const bad = await openSocket(t, wsUrl);
    bad.send({ ...freshAuthFrame(b), signature: authFrame(newAgent(), Date.now()).signature });
    assert.equal((await bad.next()).error.code, 'invalid_signature');
    await bad.closed;
    await connect(t, wsUrl, b); // second valid connection still fits
  });
});

describe('§5 HTTP side of /v1/ws', () => {
  it('the WebSocket upgrade needs no HTTP auth headers', async (t) => {
    const { wsUrl } = await startRelay(t);
    const s = await openSocket(t, wsUrl);
    assert.equal(s.ws.readyState, WebSocket.OPEN);
  });
});
