/**
 * Poll mode handles only what it took (issue 9, item 12). A poll marks what it returns delivered,
 * so the runner journals each poll's answer before anything else and notes each poll in flight
 * (`take`). On restart it looks again only at a poll that was in flight when the process died —
 * only at the messages delivered within that poll's window — and never at what `recv` or
 * `tail --ack` took while it was stopped.
 */
import assert from 'node:assert/strict';
import { appendFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { RelayClient } from '../../src/client/http.js';
import { Keypair } from '../../src/protocol/signing.js';
import { Journal } from '../../src/runtime/journal.js';
import { connected, handledN, Peer, startAgent } from '../helpers/agent.js';
import { tempDir } from '../helpers/cli.js';
import { startRelay } from '../helpers/relay.js';

describe('poll mode recovers exactly what it took', () => {
  it('after a stop, messages another consumer took are not handled on restart', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0, receiveRatePerMinute: 0 });
    const keypair = Keypair.generate();
    const journalDir = await tempDir(t);
    const handled: string[] = [];
    const handler = (msg: { message_id: string }) => {
      handled.push(msg.message_id);
      return 'ok';
    };
    const a = await startAgent(t, relay, handler, { mode: 'poll', keypair, journalDir });
    a.runtime.start();
    await connected(a.runtime);
    const peer = await Peer.connect(t, relay);
    const first = handledN(a.runtime, 1);
    const m0 = await peer.send(keypair.publicKey, { n: 0 });
    await first;
    await a.runtime.stop();

    // While the runner is stopped, `mrp recv` (a plain poll) takes three messages.
    const sent = [
      await peer.send(keypair.publicKey, { n: 1 }),
      await peer.send(keypair.publicKey, { n: 2 }),
      await peer.send(keypair.publicKey, { n: 3 }),
    ];
    const recv = await new RelayClient({ relayUrl: relay.url, keypair }).poll({ limit: 10 });
    assert.deepEqual(
      recv.messages.map((m) => m.message_id),
      sent.map((m) => m.message_id),
    );

    const b = await startAgent(t, relay, handler, { mode: 'poll', keypair, journalDir });
    b.runtime.start();
    const next = handledN(b.runtime, 1);
    const m4 = await peer.send(keypair.publicKey, { n: 4 });
    await next;
    assert.deepEqual(handled, [m0.message_id, m4.message_id], 'only what the runner itself took');
  });

  it('after a crash mid-poll, only messages delivered within that poll window are fetched again', {
    timeout: 30_000,
  }, async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0, receiveRatePerMinute: 0 });
    const keypair = Keypair.generate();
    const journalDir = await tempDir(t);
    const consumer = new RelayClient({ relayUrl: relay.url, keypair });
    const peer = await Peer.connect(t, relay);
    // Taken by `recv` earlier, while the runner was not running.
    const old = await peer.send(keypair.publicKey, { n: 'old' });
    assert.equal((await consumer.poll()).messages.length, 1);
    const tookOld = Date.now();
    // The relay's Date header has whole seconds: the window's margin is 2 s; be clear of it.
    while (Date.now() < tookOld + 3000) await delay(100);

    // The crashed run: a long poll was sent at `at` and the relay answered it with `lost`, but the
    // process died before reading the answer; its journal ends with that open take.
    const at = Date.now();
    const j = Journal.open(journalDir);
    j.takeBegun(at, 5);
    j.close();
    const lost = await peer.send(keypair.publicKey, { n: 'lost' });
    assert.deepEqual(
      (await consumer.poll()).messages.map((m) => m.message_id),
      [lost.message_id],
    );

    const handled: string[] = [];
    const b = await startAgent(t, relay, (msg) => void handled.push(msg.message_id), {
      mode: 'poll',
      keypair,
      journalDir,
    });
    const one = handledN(b.runtime, 1);
    b.runtime.start();
    const [e] = await one;
    assert.equal(e!.message.message_id, lost.message_id);
    assert.equal(e!.redelivered, false);
    // Polling goes on, and the take is settled: a restart would not look again.
    const after = handledN(b.runtime, 1);
    const m = await peer.send(keypair.publicKey, { n: 'after' });
    await after;
    assert.deepEqual(handled, [lost.message_id, m.message_id]);
    assert.ok(!handled.includes(old.message_id));
    await b.runtime.stop();
    const again = Journal.open(journalDir);
    assert.equal(again.openTake, undefined, 'no poll left open after a clean stop');
    again.close();
  });

  it("the journal keeps an open poll's take id across restarts and compactions; a bad id falls back to the window", async (t) => {
    const dir = await tempDir(t);
    const j = Journal.open(dir);
    j.takeBegun(1_000, 20, 'take_A-1');
    j.close();
    const again = Journal.open(dir); // replays, then compacts
    assert.deepEqual(again.openTake, { at: 1_000, waitSeconds: 20, id: 'take_A-1' });
    again.close();
    const third = Journal.open(dir);
    assert.deepEqual(third.openTake, { at: 1_000, waitSeconds: 20, id: 'take_A-1' });
    third.close();
    appendFileSync(third.path, `${JSON.stringify({ k: 'take', at: 2_000, wait: 5, id: 'not a take id!' })}\n`);
    const fourth = Journal.open(dir);
    assert.deepEqual(fourth.openTake, { at: 2_000, waitSeconds: 5 });
    fourth.takeEnded();
    fourth.close();
    const fifth = Journal.open(dir);
    assert.equal(fifth.openTake, undefined);
    fifth.close();
  });
});
