import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { connect, newAgent, signed, startRelay } from '../helpers/relay.js';

describe('relay smoke', () => {
  it('HTTP send → WebSocket push → ack → delivered; poll sees nothing', async (t) => {
    const { url, wsUrl } = await startRelay(t);
    const a = newAgent();
    const b = newAgent();
    const sock = await connect(t, wsUrl, b);
    const sent = await signed(url, a, 'POST', '/v1/messages', { recipient_key: b.publicKey, body: { text: 'hi' } });
    assert.equal(sent.status, 201, sent.text);
    assert.match(sent.body.message_id, /^msg_\d+_[0-9a-f]{12}$/);
    const frame = await sock.next();
    assert.equal(frame.type, 'message');
    assert.equal(frame.message.message_id, sent.body.message_id);
    assert.deepEqual(frame.message.body, { text: 'hi' });
    sock.send({ type: 'ack', message_id: sent.body.message_id });
    sock.send({ type: 'ping', ts: 1 });
    assert.deepEqual(await sock.next(), { type: 'pong', ts: 1 });
    const status = await signed(url, a, 'GET', `/v1/messages/${sent.body.message_id}/status`);
    assert.equal(status.body.status, 'delivered');
    const poll = await signed(url, b, 'GET', '/v1/messages');
    assert.deepEqual(poll.body, { messages: [], has_more: false, next_cursor: null });
  });

  it('inline send and poll marks delivered once', async (t) => {
    const { url, wsUrl } = await startRelay(t);
    const a = newAgent();
    const b = newAgent();
    const sock = await connect(t, wsUrl, a);
    sock.send({ type: 'send', request_id: 'c-1', recipient_key: b.publicKey, body: { n: 1 } });
    const res = await sock.next();
    assert.equal(res.type, 'send_result');
    assert.equal(res.status, 'ok');
    assert.equal(res.request_id, 'c-1');
    // Different targets: identical requests in the same second would be replays.
    const [p1, p2] = await Promise.all([
      signed(url, b, 'GET', '/v1/messages?limit=10'),
      signed(url, b, 'GET', '/v1/messages?limit=11'),
    ]);
    assert.equal(p1.body.messages.length + p2.body.messages.length, 1);
  });
});
