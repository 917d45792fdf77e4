/**
 * Memory by bytes (issue 9, item 14): a busy runner holds at most `maxQueuedBytes` of messages
 * (plus one), in both modes; the rest stay on the relay and are taken when there is room. Every
 * message is still answered exactly once.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LIMITS } from '../../src/protocol/constants.js';
import { connected, gate, handledN, Peer, startAgent } from '../helpers/agent.js';
import { startRelay } from '../helpers/relay.js';

const BUDGET = 2 * 1024 * 1024;
const BODY = 'x'.repeat(400_000);

for (const mode of ['websocket', 'poll'] as const) {
  describe(`memory by bytes (${mode})`, () => {
    it('holds at most the byte budget while the handler is busy, then answers everything once', {
      timeout: 60_000,
    }, async (t) => {
      const relay = await startRelay(t, { sendRatePerMinute: 0, receiveRatePerMinute: 0, requestRatePerMinute: 0 });
      const busy = gate();
      let calls = 0;
      const agent = await startAgent(
        t,
        relay,
        async () => {
          calls++;
          await busy.wait;
          return 'done';
        },
        { mode, pollWaitSeconds: 1, options: { concurrency: 1, maxQueuedBytes: BUDGET } },
      );
      let peak = 0;
      agent.runtime.on('received', () => (peak = Math.max(peak, agent.runtime.heldBytes)));
      agent.runtime.start();
      await connected(agent.runtime);
      const peer = await Peer.connect(t, relay);
      const all = handledN(agent.runtime, 20);
      const firstTaken = agent.runtime.next('received');
      for (let i = 0; i < 20; i++) await peer.send(agent.keypair.publicKey, { i, pad: BODY });
      await firstTaken;
      // The relay has all 20; the runner took only what fits.
      assert.ok(agent.runtime.heldBytes <= BUDGET + LIMITS.maxEnvelopeBytes, `held ${agent.runtime.heldBytes} bytes`);
      assert.ok(agent.runtime.stats.received < 20, `took ${agent.runtime.stats.received} of 20 while busy`);
      busy.open();
      await all;
      await peer.waitForReplies(20);
      assert.equal(calls, 20);
      assert.equal(new Set(peer.replies.map((r) => r.in_reply_to)).size, 20, 'one reply each');
      assert.ok(peak <= BUDGET + LIMITS.maxEnvelopeBytes, `peak ${peak} bytes held`);
      assert.equal(agent.runtime.heldBytes, 0);
    });
  });
}
