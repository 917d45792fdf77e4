/**
 * The handler cannot corrupt the runtime (issue 9, item 13): it gets its own copy of the message,
 * `ctx.log` takes anything, and a reply the relay would refuse becomes an error reply.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LIMITS } from '../../src/protocol/constants.js';
import type { Message } from '../../src/protocol/types.js';
import { planReply } from '../../src/runtime/reply.js';
import type { RuntimeEvents } from '../../src/runtime/runtime.js';
import { safeFields } from '../../src/runtime/safe.js';
import { connected, handledN, Peer, startAgent } from '../helpers/agent.js';
import { startRelay } from '../helpers/relay.js';

describe('the handler cannot corrupt the runtime', () => {
  it('changing msg.message_id / sender_key / thread_id does not change what is acked or whom the reply goes to', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0 });
    const other = await Peer.connect(t, relay);
    const agent = await startAgent(t, relay, (msg: Message) => {
      msg.message_id = 'msg_0_000000000000';
      msg.sender_key = other.publicKey;
      msg.thread_id = 'hijacked';
      (msg.body as Record<string, unknown>)['changed'] = true;
      return { seen: msg.body };
    });
    agent.runtime.start();
    await connected(agent.runtime);
    const peer = await Peer.connect(t, relay);
    const handled = handledN(agent.runtime, 1);
    const { message_id } = await peer.send(agent.keypair.publicKey, { q: 1 });
    const [reply] = await peer.waitForReplies(1);
    await handled;
    // The ack travels on the same socket before it closes with 1000.
    await agent.runtime.stop();
    assert.equal(reply!.in_reply_to, message_id);
    assert.equal(reply!.thread_id, message_id);
    assert.deepEqual(reply!.body, { seen: { q: 1, changed: true } });
    assert.equal(other.replies.length, 0, 'nothing went to the other agent');
    assert.equal((await peer.client.messageStatus(message_id)).status, 'delivered', 'the real id was acked');
  });

  it('ctx.log with circular, BigInt, throwing getters and huge fields never fails the handler', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0 });
    const agent = await startAgent(t, relay, (_msg, ctx) => {
      const circular: Record<string, unknown> = { name: 'loop' };
      circular['self'] = circular;
      const getter = Object.defineProperty({}, 'boom', {
        enumerable: true,
        get: () => {
          throw new Error('no');
        },
      });
      ctx.log.info('with fields', {
        circular,
        big: 12345678901234567890n,
        getter,
        fn: () => 1,
        sym: Symbol('s'),
        huge: 'x'.repeat(1_000_000),
        err: new Error('inner'),
      });
      ctx.log.warn({ not: 'a string' } as unknown as string, 'not an object' as unknown as Record<string, unknown>);
      return 'fine';
    });
    const logs: RuntimeEvents['log'][] = [];
    agent.runtime.on('log', (...e) => logs.push(e));
    agent.runtime.start();
    await connected(agent.runtime);
    const peer = await Peer.connect(t, relay);
    await peer.send(agent.keypair.publicKey, {});
    const [reply] = await peer.waitForReplies(1);
    assert.deepEqual(reply!.body, { text: 'fine' });
    const fields = logs[0]![0].fields;
    assert.equal((fields['circular'] as Record<string, unknown>)['self'], '[Circular]');
    assert.equal(fields['big'], '12345678901234567890n');
    assert.deepEqual(fields['getter'], { boom: '[unreadable]' });
    assert.deepEqual(fields['err'], { name: 'Error', message: 'inner' });
    assert.ok(JSON.stringify(fields).length < 20_000, 'bounded');
    assert.equal(logs[1]![0].message, '[object Object]');
    assert.deepEqual(logs[1]![0].fields, { value: 'not an object' });
  });

  it('a string or object reply over 1 MiB is answered with reply_too_large; ctx.reply and ctx.send refuse one', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0 });
    let replyError: unknown;
    let sendError: unknown;
    const agent = await startAgent(t, relay, async (msg, ctx) => {
      const kind = (msg.body as { kind: string }).kind;
      if (kind === 'string') return 'x'.repeat(LIMITS.maxBodyBytes + 1);
      if (kind === 'object') return { data: 'y'.repeat(LIMITS.maxBodyBytes) };
      try {
        await ctx.reply({ data: 'z'.repeat(LIMITS.maxBodyBytes) });
      } catch (err) {
        replyError = err;
      }
      try {
        await ctx.send(msg.sender_key, { data: 'z'.repeat(LIMITS.maxBodyBytes) });
      } catch (err) {
        sendError = err;
      }
      return 'after';
    });
    agent.runtime.start();
    await connected(agent.runtime);
    const peer = await Peer.connect(t, relay);
    const done = handledN(agent.runtime, 3);
    const s = await peer.send(agent.keypair.publicKey, { kind: 'string' });
    const o = await peer.send(agent.keypair.publicKey, { kind: 'object' });
    const r = await peer.send(agent.keypair.publicKey, { kind: 'ctx' });
    await done;
    await peer.waitForReplies(3);
    for (const id of [s.message_id, o.message_id]) {
      const body = peer.replyTo(id)[0]!.body as { status: string; error: { code: string } };
      assert.equal(body.status, 'error');
      assert.equal(body.error.code, 'reply_too_large');
    }
    assert.equal((replyError as { code?: string }).code, 'reply_too_large');
    assert.match((replyError as Error).message, /^the reply is \d+ bytes/);
    assert.equal((sendError as { code?: string }).code, 'reply_too_large');
    assert.match((sendError as Error).message, /^the message is \d+ bytes/, 'ctx.send sends a message, not a reply');
    assert.deepEqual(peer.replyTo(r.message_id)[0]!.body, { text: 'after' });
  });

  it('planReply: too deep, BigInt and circular values are invalid_reply', () => {
    let deep: unknown = 1;
    for (let i = 0; i < 200; i++) deep = [deep];
    assert.equal((planReply(deep)!.body as { error: { code: string } }).error.code, 'invalid_reply');
    assert.equal((planReply({ n: 1n })!.body as { error: { code: string } }).error.code, 'invalid_reply');
    const c: Record<string, unknown> = {};
    c['c'] = c;
    assert.equal((planReply(c)!.body as { error: { code: string } }).error.code, 'invalid_reply');
    assert.deepEqual(safeFields(undefined), {});
  });
});
