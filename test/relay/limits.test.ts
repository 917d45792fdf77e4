/** Conformance: rate limits (§7) over HTTP and WebSocket. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import type { RawResponse } from '../helpers/relay.js';
import { newAgent, startRelay } from '../helpers/relay.js';
import { Api, connectAt, expectError, expectOk, roundTrip } from './_support.js';

function rateHeaders(res: RawResponse): { limit: number; remaining: number; reset: number } {
  const limit = res.headers.get('x-ratelimit-limit');
  const remaining = res.headers.get('x-ratelimit-remaining');
  const reset = res.headers.get('x-ratelimit-reset');
  assert.ok(
    limit !== null && remaining !== null && reset !== null,
    `X-RateLimit-* headers missing (${res.status} ${res.text.slice(0, 200)})`,
  );
  for (const v of [limit, remaining, reset]) assert.match(v, /^\d+$/);
  return { limit: Number(limit), remaining: Number(remaining), reset: Number(reset) };
}

function expect429(res: RawResponse, limit: number): { retryAfter: number; details: Record<string, unknown> } {
  const err = expectError(res, 429, 'rate_limit_exceeded');
  const header = res.headers.get('retry-after');
  assert.ok(header !== null, 'Retry-After header');
  assert.match(header, /^\d+$/);
  const retryAfter = Number(header);
  assert.ok(retryAfter >= 1 && retryAfter <= 60, `Retry-After ${retryAfter}`);
  assert.equal(err.details?.limit, limit);
  assert.equal(err.details?.window, '1m');
  assert.equal(err.details?.retry_after, retryAfter, 'details.retry_after equals Retry-After');
  return { retryAfter, details: err.details };
}

describe('§7 send rate', () => {
  it('the 4th send within a minute (limit 3) → 429 with Retry-After and details; works again after the window', async (t) => {
    const clock = new ManualClock();
    const { url } = await startRelay(t, { clock, sendRatePerMinute: 3 });
    const api = new Api(url, clock);
    const a = newAgent();
    const b = newAgent();
    const nowSec = () => Math.floor(clock.now() / 1000);
    for (let i = 0; i < 3; i++) {
      const res = await api.post(a, '/v1/messages', { recipient_key: b.publicKey, body: { i } });
      expectOk(res, 201);
      const h = rateHeaders(res);
      assert.equal(h.limit, 3);
      assert.equal(h.remaining, 2 - i);
      assert.ok(h.reset >= nowSec() && h.reset <= nowSec() + 60, `X-RateLimit-Reset ${h.reset} vs now ${nowSec()}`);
      clock.advance(1000);
    }
    const over = await api.post(a, '/v1/messages', { recipient_key: b.publicKey, body: { i: 3 } });
    const { details } = expect429(over, 3);
    assert.equal(details.scope === undefined || details.scope === 'sender', true);
    const h = rateHeaders(over);
    assert.equal(h.limit, 3);
    assert.equal(h.remaining, 0);
    // The refused send was not stored.
    assert.equal(expectOk(await api.get(b, '/v1/messages')).messages.length, 3);

    // Half a minute later: still limited, with a shorter wait.
    clock.advance(30_000);
    const still = expect429(await api.post(a, '/v1/messages', { recipient_key: b.publicKey, body: { i: 4 } }), 3);
    assert.ok(still.retryAfter <= 30, `retry_after ${still.retryAfter} should have shrunk`);
    // After the window has passed: accepted again.
    clock.advance(31_000);
    expectOk(await api.post(a, '/v1/messages', { recipient_key: b.publicKey, body: { i: 5 } }), 201);
    // Other senders were never affected.
    expectOk(await api.post(newAgent(), '/v1/messages', { recipient_key: b.publicKey, body: { other: 1 } }), 201);
  });

  it('default send rate is 30/minute', async (t) => {
    const clock = new ManualClock();
    const { url } = await startRelay(t, { clock });
    const api = new Api(url, clock);
    const a = newAgent();
    const b = newAgent();
    for (let i = 0; i < 30; i++) {
      const res = await api.post(a, '/v1/messages', { recipient_key: b.publicKey, body: { i } });
      expectOk(res, 201);
      assert.equal(rateHeaders(res).limit, 30);
    }
    expect429(await api.post(a, '/v1/messages', { recipient_key: b.publicKey, body: { i: 30 } }), 30);
  });

  it('the WebSocket inline send shares the send limit (send_result error rate_limit_exceeded, connection kept)', async (t) => {
    const clock = new ManualClock(Date.now());
    const { url, wsUrl } = await startRelay(t, { clock, sendRatePerMinute: 2 });
    const api = new Api(url, clock);
    const a = newAgent();
    const b = newAgent();
    await api.send(a, b.publicKey, { via: 'http' });
    const sock = await connectAt(t, wsUrl, a, clock.now());
    sock.send({ type: 'send', request_id: 'w1', recipient_key: b.publicKey, body: { via: 'ws' } });
    const ok = await sock.next();
    assert.equal(ok.type, 'send_result');
    assert.equal(ok.status, 'ok', JSON.stringify(ok));
    sock.send({ type: 'send', request_id: 'w2', recipient_key: b.publicKey, body: { via: 'ws2' } });
    const refused = await sock.next();
    assert.equal(refused.type, 'send_result');
    assert.equal(refused.request_id, 'w2');
    assert.equal(refused.status, 'error');
    assert.equal(refused.error.code, 'rate_limit_exceeded');
    assert.equal(refused.error.details?.limit, 2);
    assert.equal(refused.error.details?.window, '1m');
    assert.equal(typeof refused.error.details?.retry_after, 'number');
    await roundTrip(sock);
    expect429(await api.post(a, '/v1/messages', { recipient_key: b.publicKey, body: { via: 'http2' } }), 2);
  });
});

describe('§7 receive rate', () => {
  it('enforced at send time against the recipient, with details.scope "recipient"', async (t) => {
    const clock = new ManualClock();
    const { url } = await startRelay(t, { clock, receiveRatePerMinute: 2 });
    const api = new Api(url, clock);
    const r = newAgent();
    const other = newAgent();
    await api.send(newAgent(), r.publicKey, { n: 1 });
    await api.send(newAgent(), r.publicKey, { n: 2 });
    const res = await api.post(newAgent(), '/v1/messages', { recipient_key: r.publicKey, body: { n: 3 } });
    const { details } = expect429(res, 2);
    assert.equal(details.scope, 'recipient');
    // Other recipients are unaffected.
    await api.send(newAgent(), other.publicKey, { n: 4 });
    clock.advance(61_000);
    await api.send(newAgent(), r.publicKey, { n: 5 });
    assert.equal(expectOk(await api.get(r, '/v1/messages')).messages.length, 3);
  });

  it("on a receive-limit 429 the X-RateLimit-* headers still describe the sender's send counter", async (t) => {
    const clock = new ManualClock();
    const { url } = await startRelay(t, { clock, receiveRatePerMinute: 1, sendRatePerMinute: 5 });
    const api = new Api(url, clock);
    const r = newAgent();
    const s = newAgent();
    await api.send(newAgent(), r.publicKey, { n: 1 });
    const res = await api.post(s, '/v1/messages', { recipient_key: r.publicKey, body: { n: 2 } });
    const err = expectError(res, 429, 'rate_limit_exceeded');
    assert.equal(err.details?.scope, 'recipient');
    const h = rateHeaders(res);
    assert.equal(
      h.limit,
      5,
      'X-RateLimit-Limit must be the send limit (§7: on POST /v1/messages the headers describe the send counter)',
    );
    assert.ok(h.remaining >= 4, `X-RateLimit-Remaining ${h.remaining}: the sender has not used its send allowance`);
  });

  it('default receive rate is 120/minute', async (t) => {
    const clock = new ManualClock();
    const { url } = await startRelay(t, { clock });
    const api = new Api(url, clock);
    const r = newAgent();
    const senders = Array.from({ length: 5 }, () => newAgent());
    for (let i = 0; i < 120; i++) await api.send(senders[i % 5]!, r.publicKey, { i });
    const { details } = expect429(
      await api.post(senders[4]!, '/v1/messages', { recipient_key: r.publicKey, body: { i: 120 } }),
      120,
    );
    assert.equal(details.scope, 'recipient');
  });
});

describe('§7 general request rate', () => {
  it('other authenticated requests count against requestRatePerMinute, with headers and 429', async (t) => {
    const clock = new ManualClock();
    const { url } = await startRelay(t, { clock, requestRatePerMinute: 3 });
    const api = new Api(url, clock);
    const a = newAgent();
    const b = newAgent();
    for (let i = 0; i < 3; i++) {
      const res = await api.get(a, `/v1/messages?limit=${10 + i}`);
      expectOk(res);
      const h = rateHeaders(res);
      assert.equal(h.limit, 3);
      assert.equal(h.remaining, 2 - i);
    }
    expect429(await api.get(a, '/v1/agents/me'), 3);
    expect429(await api.get(a, '/v1/discover'), 3);
    // Sends use the send counter, not the general one.
    const send = await api.post(a, '/v1/messages', { recipient_key: b.publicKey, body: {} });
    expectOk(send, 201);
    assert.equal(rateHeaders(send).limit, 30);
    // Another agent is not affected; health is not limited.
    expectOk(await api.get(b, '/v1/messages'));
    expectOk(
      await (async () => {
        const r = await fetch(`${url}/v1/health`);
        return { status: r.status, headers: r.headers, body: await r.json(), text: '' };
      })(),
    );
    clock.advance(60_000);
    expectOk(await api.get(a, '/v1/agents/me'));
  });

  it('the default general limit is 300/minute and its headers appear on responses', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const res = await api.get(a, '/v1/messages');
    const h = rateHeaders(res);
    assert.equal(h.limit, 300);
    assert.ok(h.remaining <= 299);
    // also on an authenticated error response
    const nf = await api.get(a, '/v1/messages/msg_1_000000000000');
    expectError(nf, 404, 'message_not_found');
    assert.equal(rateHeaders(nf).limit, 300);
  });

  it('limits of 0 mean unlimited', async (t) => {
    const clock = new ManualClock();
    const { url } = await startRelay(t, {
      clock,
      sendRatePerMinute: 0,
      receiveRatePerMinute: 0,
      requestRatePerMinute: 0,
    });
    const api = new Api(url, clock);
    const a = newAgent();
    const b = newAgent();
    for (let i = 0; i < 150; i++) await api.send(a, b.publicKey, { i });
    for (let i = 0; i < 305; i++) expectOk(await api.get(a, `/v1/messages?limit=${1 + (i % 100)}`));
    assert.equal(expectOk(await api.get(b, '/v1/messages?limit=100')).messages.length, 100);
  });
});
