/**
 * One hostile message never stops an agent (issue 9, item 8). Scripted relays deliver what our
 * relay never would — bodies nested 4,111 and 100,000 deep, huge numbers, garbage frames, message
 * frames missing fields or with wrong types — and then a normal message, which must be answered.
 * Identifiable hostile messages get an `invalid_message` error reply threaded to them and are
 * acknowledged; unidentifiable ones are reported.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RelayClient } from '../../src/client/http.js';
import { PollSource, WebSocketSource } from '../../src/client/source.js';
import { Keypair } from '../../src/protocol/signing.js';
import type { Message } from '../../src/protocol/types.js';
import { Journal } from '../../src/runtime/journal.js';
import { Runtime, type RuntimeEvents } from '../../src/runtime/runtime.js';
import { tempDir } from '../helpers/cli.js';
import { deepBody, scriptedPollRelay, scriptedWsRelay } from '../helpers/scripted.js';

const SENDER = Keypair.generate().publicKey;
const exp = (): string => new Date(Date.now() + 86_400_000).toISOString();

function messageText(id: string, bodyText: string, extra = ''): string {
  return `{"message_id":"${id}","sender_key":"${SENDER}","recipient_key":"","content_type":"application/json","body":${bodyText},"thread_id":null,"in_reply_to":null,"metadata":{},"attachments":[],"status":"sent","created_at":"${new Date().toISOString()}","expires_at":"${exp()}","delivered_at":null${extra}}`;
}

const frame = (messageJson: string): string => `{"type":"message","message":${messageJson}}`;

function collect<K extends keyof RuntimeEvents>(runtime: Runtime, event: K): RuntimeEvents[K][] {
  const seen: RuntimeEvents[K][] = [];
  runtime.on(event, (...args) => seen.push(args));
  return seen;
}

function assertErrorReply(reply: Record<string, unknown> | undefined, id: string): void {
  assert.ok(reply, `a reply to ${id}`);
  assert.equal(reply['in_reply_to'], id);
  assert.equal(reply['thread_id'], id);
  assert.equal(reply['recipient_key'], SENDER);
  const body = reply['body'] as { status: string; error: { code: string; message: string } };
  assert.equal(body.status, 'error');
  assert.equal(body.error.code, 'invalid_message');
  assert.match(body.error.message, /deeper than 128|malformed/);
}

describe('hostile messages never stop an agent', () => {
  it('websocket mode: deep bodies, garbage frames, missing fields and wrong types, then a normal message', async (t) => {
    const frames = [
      frame(messageText('m_deep4111', deepBody(4111))),
      frame(messageText('m_deep100k', deepBody(100_000))),
      'this is not json',
      '{"type":',
      '[1,2,3]',
      '{"type":"surprise"}',
      '{"type":"message"}',
      '{"type":"message","message":"a string"}',
      '{"type":"message","message":{"message_id":5,"sender_key":"x"}}',
      '{"type":"message","message":{"message_id":"m_nosender"}}',
      `{"type":"message","message":{"message_id":"m_anon${deepBody(10)}`,
      `{"type":"ping","ts":${deepBody(6000)}}`,
      `{"type":"message","x":${deepBody(5000)}}`,
      frame(messageText('m_huge', '{"big":123456789012345678901234567890,"inf":1e999,"neg":-1e-999}')),
      frame(
        `{"message_id":"m_types","sender_key":"${SENDER}","body":"just a string","thread_id":7,"metadata":[],"attachments":{},"status":9,"created_at":1,"expires_at":false}`,
      ),
      frame(messageText('m_ok', '{"q":"hello"}')),
    ];
    const relay = await scriptedWsRelay(t, () => frames);
    const dir = await tempDir(t);
    const client = new RelayClient({ relayUrl: relay.url, keypair: Keypair.generate() });
    const source = new WebSocketSource(client);
    const seen: Message[] = [];
    const runtime = new Runtime({
      handler: (msg) => {
        seen.push(msg);
        return { ok: msg.message_id };
      },
      source,
      client,
      journal: Journal.open(dir),
    });
    t.after(() => runtime.stop());
    const invalid = collect(runtime, 'invalid_message');
    const disconnects = collect(runtime, 'disconnected');
    runtime.start();

    await relay.record.until(() => relay.record.acks.includes('m_ok'), 'the normal message to be answered and acked');
    await relay.record.until(
      () =>
        ['m_deep4111', 'm_deep100k', 'm_nosender', 'm_huge', 'm_types'].every((id) => relay.record.acks.includes(id)),
      'every identifiable message to be acked',
    );
    assert.deepEqual(relay.record.repliesTo('m_ok')[0]!['body'], { ok: 'm_ok' });
    assertErrorReply(relay.record.repliesTo('m_deep4111')[0], 'm_deep4111');
    assertErrorReply(relay.record.repliesTo('m_deep100k')[0], 'm_deep100k');
    assert.equal(relay.record.repliesTo('m_nosender').length, 0, 'no sender: nothing to answer, only acked');
    assert.deepEqual(relay.record.repliesTo('m_huge')[0]!['body'], { ok: 'm_huge' }, 'huge numbers are just numbers');
    assert.deepEqual(
      relay.record.repliesTo('m_types')[0]!['body'],
      { ok: 'm_types' },
      'wrong optional fields get their defaults',
    );
    const types = seen.find((m) => m.message_id === 'm_types')!;
    assert.equal(types.body, 'just a string');
    assert.equal(types.thread_id, null);
    assert.deepEqual(types.metadata, {});
    assert.deepEqual(types.attachments, []);
    assert.deepEqual(
      seen.map((m) => m.message_id).sort(),
      ['m_huge', 'm_ok', 'm_types'],
      'the handler saw only messages it can handle',
    );
    assert.ok(invalid.length >= 6, `invalid_message events: ${JSON.stringify(invalid)}`);
    assert.ok(invalid.some(([e]) => e.messageId === 'm_deep100k' && e.answered));
    assert.ok(invalid.some(([e]) => e.messageId === 'm_nosender' && !e.answered));
    assert.ok(
      invalid.some(([e]) => e.messageId === undefined),
      'unidentifiable messages are reported',
    );
    assert.equal(disconnects.length, 0, 'the connection was never dropped');

    // Still serving: one more normal message on the same connection.
    relay.sockets[0]!.send(frame(messageText('m_after', '{"q":"again"}')));
    await relay.record.until(() => relay.record.acks.includes('m_after'), 'a message after all that');
    assert.equal(relay.record.sends.length, 6, 'one reply per answerable message, no more');
  });

  it('poll mode: a page with hostile messages still delivers the normal ones', async (t) => {
    const page = `{"messages":[${[
      messageText('p_deep', deepBody(100_000)),
      '"garbage"',
      '{"message_id":"p_nosender"}',
      messageText('p_ok1', '{"n":1}'),
      messageText('p_deep2', deepBody(4111)),
      messageText('p_ok2', '{"n":2}'),
    ].join(',')}],"has_more":false,"next_cursor":null}`;
    const relay = await scriptedPollRelay(t, [page]);
    const dir = await tempDir(t);
    const client = new RelayClient({ relayUrl: relay.url, keypair: Keypair.generate() });
    let runtime: Runtime | undefined;
    const source = new PollSource(client, { waitSeconds: 0, intervalMs: 20, capacity: () => runtime?.capacity() ?? 0 });
    const handledIds: string[] = [];
    runtime = new Runtime({
      handler: (msg) => {
        handledIds.push(msg.message_id);
        return 'ok';
      },
      source,
      client,
      journal: Journal.open(dir),
    });
    t.after(() => runtime!.stop());
    const invalid = collect(runtime, 'invalid_message');
    const handled = collect(runtime, 'handled');
    runtime.start();
    await relay.record.until(() => relay.record.sends.length >= 4, 'replies to p_ok1, p_ok2, p_deep and p_deep2');
    await relay.record.until(() => handled.length >= 5, 'five messages finished');
    assert.deepEqual(handledIds.sort(), ['p_ok1', 'p_ok2']);
    assertErrorReply(relay.record.repliesTo('p_deep')[0], 'p_deep');
    assertErrorReply(relay.record.repliesTo('p_deep2')[0], 'p_deep2');
    assert.ok(
      invalid.some(([e]) => e.messageId === undefined),
      'the garbage entry is reported',
    );
    assert.ok(invalid.some(([e]) => e.messageId === 'p_nosender' && !e.answered));
    const pollsBefore = relay.polls();
    await relay.record.until(() => relay.polls() > pollsBefore + 1, 'polling goes on');
  });
});
