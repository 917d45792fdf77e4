import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { plainSend } from '../../src/client/codec.js';
import { RelayClient } from '../../src/client/http.js';
import type { MessageSource, SourceConsumer, SourceEvents } from '../../src/client/source.js';
import { TypedEmitter } from '../../src/core/emitter.js';
import type { EncodedSend } from '../../src/protocol/frames.js';
import { normalizeMessage } from '../../src/protocol/frames.js';
import { Keypair } from '../../src/protocol/signing.js';
import type { Message, SendResponse } from '../../src/protocol/types.js';
import { Journal } from '../../src/runtime/journal.js';
import { replyTo } from '../../src/runtime/reply.js';
import { Runtime } from '../../src/runtime/runtime.js';
import { connected, gate, Peer, startAgent } from '../helpers/agent.js';
import { tempDir } from '../helpers/cli.js';
import { startRelay } from '../helpers/relay.js';

/** A source the test drives by hand: it offers messages (as pushes) and records acks and sends. */
class FakeSource extends TypedEmitter<SourceEvents> implements MessageSource {
  readonly status = 'ready';
  readonly acks: string[] = [];
  readonly sent: EncodedSend[] = [];
  #consumer: SourceConsumer | undefined;
  start(consumer: SourceConsumer): void {
    this.#consumer = consumer;
    this.emit('connected', { reconnected: false, detail: 'fake' });
  }
  offer(...messages: Message[]): void {
    void this.#consumer!.deliver({ messages, taken: false });
  }
  async stopIntake(): Promise<void> {}
  async close(): Promise<void> {}
  ack(id: string): void {
    this.acks.push(id);
  }
  async send(request: EncodedSend): Promise<SendResponse> {
    this.sent.push(request);
    return {
      message_id: `msg_1_${String(this.sent.length).padStart(12, '0')}`,
      status: 'sent',
      created_at: '',
      expires_at: '',
    };
  }
  wake(): void {}
}

function msg(id: string): Message {
  return normalizeMessage({
    message_id: id,
    sender_key: Keypair.generate().publicKey,
    body: { id },
    expires_at: new Date(Date.now() + 86_400_000).toISOString(),
  });
}

describe('exactly once over at-least-once', () => {
  it('a redelivered message that is done is acked again and not handled twice, also after a restart', async (t) => {
    const dir = await tempDir(t);
    const client = new RelayClient({ relayUrl: 'http://127.0.0.1:9', keypair: Keypair.generate() });
    let calls = 0;
    const handler = () => {
      calls++;
      return 'ok';
    };
    const source = new FakeSource();
    const runtime = new Runtime({ handler, source, client, journal: Journal.open(dir, { fsync: false }) });
    runtime.start();
    const m = msg('msg_1_aaaaaaaaaaaa');
    const done = runtime.next('handled');
    source.offer(m);
    source.offer(m); // pushed twice while in progress (two connections, say)
    await done;
    const dup = runtime.next('duplicate');
    source.offer(m); // redelivered after it was done
    assert.deepEqual((await dup)[0].reason, 'done');
    assert.equal(calls, 1);
    assert.equal(source.sent.length, 1, 'one reply');
    assert.deepEqual(source.acks, [m.message_id, m.message_id]);
    await runtime.stop();

    const source2 = new FakeSource();
    const runtime2 = new Runtime({ handler, source: source2, client, journal: Journal.open(dir, { fsync: false }) });
    t.after(() => runtime2.stop());
    runtime2.start();
    const dup2 = runtime2.next('duplicate');
    source2.offer(m);
    await dup2;
    assert.equal(calls, 1, 'not handled again after a restart');
    assert.equal(source2.sent.length, 0);
    assert.deepEqual(source2.acks, [m.message_id]);
  });

  for (const mode of ['websocket', 'poll'] as const) {
    it(`a crash mid-handler is handled again after restart (${mode})`, async (t) => {
      const relay = await startRelay(t);
      const keypair = Keypair.generate();
      const journalDir = await mkdtemp(join(tmpdir(), 'mrp-crash-'));
      const stuck = gate();
      let firstStarted!: () => void;
      const started = new Promise<void>((r) => (firstStarted = r));
      const a = await startAgent(
        t,
        relay,
        async () => {
          firstStarted();
          await stuck.wait; // never opens: the "process" dies here
          return 'from the first run';
        },
        { mode, keypair, journalDir, options: { graceMs: 0 } },
      );
      a.runtime.start();
      await connected(a.runtime);
      const peer = await Peer.connect(t, relay);
      const { message_id } = await peer.send(keypair.publicKey, { work: 1 });
      await started;
      // Crash: the journal keeps what it has on disk, the connection dies without an ack.
      await a.source.close();
      a.runtime.stop(); // aborts the stuck handler immediately (grace 0); nothing was acked or replied
      // The "process" is gone before the next one starts (a journal open in this process is locked).
      await a.runtime.finished;

      const seen: boolean[] = [];
      const b = await startAgent(
        t,
        relay,
        (_m, ctx) => {
          seen.push(ctx.redelivered);
          return 'from the second run';
        },
        { mode, keypair, journalDir },
      );
      b.runtime.start();
      const [reply] = await peer.waitForReplies(1);
      assert.equal(reply!.in_reply_to, message_id);
      assert.deepEqual(reply!.body, { text: 'from the second run' });
      assert.deepEqual(seen, [true], 'handled once more, flagged as redelivered');
      await b.runtime.stop();
      assert.equal(peer.replies.length, 1);
    });
  }

  it('a reply the crashed run already sent is found in the thread and not sent again', async (t) => {
    const relay = await startRelay(t);
    const keypair = Keypair.generate();
    const journalDir = await tempDir(t);
    const peer = await Peer.connect(t, relay);
    const sent = await peer.send(keypair.publicKey, { q: 1 });
    const sent2 = await peer.send(keypair.publicKey, { q: 2 });
    const agentClient = new RelayClient({ relayUrl: relay.url, keypair });
    const page = await agentClient.poll();
    const [m1, m2] = page.messages;
    // The earlier run: both handled; m1's reply reached the relay but the journal never heard.
    const j = Journal.open(journalDir, { fsync: false });
    for (const m of [m1!, m2!]) {
      await j.received(m);
      await j.handled(m.message_id, { request: plainSend(replyTo(m, { answer: m.message_id })), outcome: 'ok' });
    }
    j.close();
    await agentClient.send({
      recipient_key: peer.publicKey,
      body: { answer: sent.message_id },
      in_reply_to: sent.message_id,
      thread_id: sent.message_id,
    });
    await peer.waitForReplies(1);

    let calls = 0;
    const b = await startAgent(t, relay, () => void calls++, { keypair, journalDir });
    const handled = new Promise<void>((resolve) => {
      let n = 0;
      b.runtime.on('handled', () => ++n === 2 && resolve());
    });
    b.runtime.start();
    await handled;
    await peer.waitForReplies(2);
    assert.equal(calls, 0, 'handlers are not run again: their results were journaled');
    assert.equal(peer.replyTo(sent.message_id).length, 1, 'no second reply to m1');
    assert.equal(peer.replyTo(sent2.message_id).length, 1, 'the missing reply to m2 is sent');
  });
});
