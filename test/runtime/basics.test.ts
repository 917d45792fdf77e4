import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { connected, gate, Peer, startAgent } from '../helpers/agent.js';
import { startRelay } from '../helpers/relay.js';

for (const mode of ['websocket', 'poll'] as const) {
  describe(`runtime happy path (${mode})`, () => {
    it('answers each message once, threaded, and acks it', async (t) => {
      const relay = await startRelay(t, { sendRatePerMinute: 0, receiveRatePerMinute: 0 });
      let calls = 0;
      const agent = await startAgent(
        t,
        relay,
        (msg) => {
          calls++;
          return { echo: msg.body };
        },
        { mode },
      );
      agent.runtime.start();
      await connected(agent.runtime);
      const peer = await Peer.connect(t, relay);
      const ids: string[] = [];
      for (let i = 0; i < 25; i++)
        ids.push(
          (await peer.send(agent.keypair.publicKey, { n: i }, i === 3 ? { thread_id: 'conv-1' } : {})).message_id,
        );
      const replies = await peer.waitForReplies(25);
      assert.equal(calls, 25);
      for (const [i, id] of ids.entries()) {
        const mine = peer.replyTo(id);
        assert.equal(mine.length, 1, `one reply to ${id}`);
        assert.deepEqual(mine[0]!.body, { echo: { n: i } });
        assert.equal(mine[0]!.thread_id, i === 3 ? 'conv-1' : id);
        assert.equal(mine[0]!.content_type, 'application/json');
        assert.equal(mine[0]!.sender_key, agent.keypair.publicKey);
      }
      assert.equal(replies.length, 25);
      await agent.runtime.stop();
      // Every original is delivered (acked or polled) on the relay.
      const status = await peer.client.messageStatus(ids[0]!);
      assert.equal(status.status, 'delivered');
    });
  });
}

describe('return values and errors', () => {
  it('string → {text}; undefined → no reply; thrown error → error reply; keeps serving', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0 });
    const agent = await startAgent(
      t,
      relay,
      (msg) => {
        const body = msg.body as { kind: string };
        if (body.kind === 'text') return 'hola';
        if (body.kind === 'none') return undefined;
        if (body.kind === 'null') return null;
        if (body.kind === 'coded') throw Object.assign(new Error('no such language'), { code: 'unsupported_language' });
        if (body.kind === 'throw') throw new Error('boom');
        if (body.kind === 'reject') return Promise.reject(new TypeError('bad type'));
        return { ok: true };
      },
      { options: { concurrency: 1 } },
    );
    agent.runtime.start();
    await connected(agent.runtime);
    const peer = await Peer.connect(t, relay);
    const send = async (kind: string) => (await peer.send(agent.keypair.publicKey, { kind })).message_id;
    const ids = {
      text: await send('text'),
      none: await send('none'),
      nul: await send('null'),
      coded: await send('coded'),
      thrown: await send('throw'),
      reject: await send('reject'),
      last: await send('ok'),
    };
    await peer.waitForReplies(5);
    assert.deepEqual(peer.replyTo(ids.text)[0]!.body, { text: 'hola' });
    assert.equal(peer.replyTo(ids.none).length, 0);
    assert.equal(peer.replyTo(ids.nul).length, 0);
    assert.deepEqual(peer.replyTo(ids.coded)[0]!.body, {
      status: 'error',
      error: { code: 'unsupported_language', message: 'no such language' },
    });
    assert.deepEqual(peer.replyTo(ids.thrown)[0]!.body, {
      status: 'error',
      error: { code: 'handler_error', message: 'boom' },
    });
    assert.deepEqual(peer.replyTo(ids.reject)[0]!.body, {
      status: 'error',
      error: { code: 'handler_error', message: 'bad type' },
    });
    assert.deepEqual(peer.replyTo(ids.last)[0]!.body, { ok: true });
    assert.equal(agent.runtime.stats.errors, 3);
  });

  it('a timeout replies with code timeout and aborts ctx.signal', async (t) => {
    const relay = await startRelay(t);
    let aborted: unknown;
    const agent = await startAgent(
      t,
      relay,
      (msg, ctx) =>
        new Promise((resolve) => {
          if ((msg.body as { fast?: boolean }).fast) return resolve('fast');
          ctx.signal.addEventListener('abort', () => {
            aborted = ctx.signal.reason;
          });
        }),
      { options: { timeoutMs: 150 } },
    );
    agent.runtime.start();
    await connected(agent.runtime);
    const peer = await Peer.connect(t, relay);
    const slow = await peer.send(agent.keypair.publicKey, { fast: false });
    const [reply] = await peer.waitForReplies(1);
    assert.equal(reply!.in_reply_to, slow.message_id);
    assert.equal((reply!.body as { error: { code: string } }).error.code, 'timeout');
    assert.match((reply!.body as { error: { message: string } }).error.message, /within 150ms/);
    assert.ok(aborted instanceof Error && (aborted as { code?: string }).code === 'timeout');
    await peer.send(agent.keypair.publicKey, { fast: true });
    await peer.waitForReplies(2);
    assert.deepEqual(peer.replies[1]!.body, { text: 'fast' });
  });
});

describe('concurrency', () => {
  it('runs at most --concurrency handlers at once and queues the rest', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0, receiveRatePerMinute: 0 });
    const open = gate();
    let running = 0;
    let max = 0;
    const started: Array<() => void> = [];
    const agent = await startAgent(
      t,
      relay,
      async () => {
        running++;
        max = Math.max(max, running);
        started.shift()?.();
        await open.wait;
        running--;
        return 'done';
      },
      { options: { concurrency: 3 } },
    );
    agent.runtime.start();
    await connected(agent.runtime);
    const threeRunning = new Promise<void>((resolve) => {
      let n = 0;
      for (let i = 0; i < 3; i++) started.push(() => ++n === 3 && resolve());
    });
    const peer = await Peer.connect(t, relay);
    const received = new Promise<void>((resolve) => {
      let n = 0;
      agent.runtime.on('received', () => ++n === 10 && resolve());
    });
    for (let i = 0; i < 10; i++) await peer.send(agent.keypair.publicKey, { i });
    await threeRunning;
    await received;
    assert.equal(agent.runtime.running, 3);
    assert.equal(agent.runtime.queued, 7);
    open.open();
    await peer.waitForReplies(10);
    assert.equal(max, 3);
  });
});

describe('ctx', () => {
  it('self, redelivered, log, reply() and send()', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0 });
    const peer = await Peer.connect(t, relay);
    const seen: unknown[] = [];
    const agent = await startAgent(t, relay, async (msg, ctx) => {
      seen.push({ self: ctx.self, redelivered: ctx.redelivered });
      ctx.log.info('working', { n: 1 });
      await ctx.reply({ progress: 0.5 }, { contentType: 'application/x-mrp-status+json' });
      await ctx.send(msg.sender_key, { note: 'side message' }, { threadId: 'side' });
      return { done: true };
    });
    const logs: unknown[] = [];
    agent.runtime.on('log', (l) => logs.push(l));
    agent.runtime.start();
    await connected(agent.runtime);
    const { message_id } = await peer.send(agent.keypair.publicKey, {});
    await peer.waitForReplies(3);
    assert.deepEqual(seen, [{ self: agent.keypair.publicKey, redelivered: false }]);
    const progress = peer.replies.find((m) => m.content_type === 'application/x-mrp-status+json')!;
    assert.equal(progress.in_reply_to, message_id);
    const side = peer.replies.find((m) => m.thread_id === 'side')!;
    assert.equal(side.in_reply_to, null);
    assert.deepEqual(peer.replies.find((m) => (m.body as { done?: boolean }).done)!.in_reply_to, message_id);
    assert.deepEqual(logs, [{ level: 'info', message: 'working', fields: { n: 1 }, messageId: message_id }]);
  });
});
