/**
 * Exactly one reply in long threads (issue 9, item 11): after a crash between sending a reply and
 * journaling it, the restarted runner looks for the reply in the thread before sending it again.
 * The thread here holds 2,050 older messages, so the reply sits past the first 2,000 (where the
 * old check stopped reading): it must still be found, and not be sent twice.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { plainSend } from '../../src/client/codec.js';
import { RelayClient } from '../../src/client/http.js';
import { Keypair } from '../../src/protocol/signing.js';
import { Journal } from '../../src/runtime/journal.js';
import { replyTo } from '../../src/runtime/reply.js';
import { handledN, startAgent } from '../helpers/agent.js';
import { tempDir } from '../helpers/cli.js';
import { startRelay } from '../helpers/relay.js';

describe('exactly one reply in long threads', () => {
  it('finds a reply sent before a crash in a thread with 2,050 older messages', { timeout: 120_000 }, async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0, receiveRatePerMinute: 0, requestRatePerMinute: 0 });
    const keypair = Keypair.generate();
    const journalDir = await tempDir(t);
    const agentClient = new RelayClient({ relayUrl: relay.url, keypair });
    const peer = new RelayClient({ relayUrl: relay.url, keypair: Keypair.generate() });
    const threadId = 'long-conversation';
    // 2,050 earlier messages of the conversation, sent by the agent (so nothing waits in its inbox).
    for (let i = 0; i < 2050; i += 50) {
      await Promise.all(
        Array.from({ length: Math.min(50, 2050 - i) }, (_, k) =>
          agentClient.send({ recipient_key: peer.publicKey, body: { n: i + k }, thread_id: threadId }),
        ),
      );
    }
    const sent = await peer.send({ recipient_key: keypair.publicKey, body: { q: 'last' }, thread_id: threadId });
    const [m] = (await agentClient.poll()).messages;
    assert.equal(m!.message_id, sent.message_id);

    // The earlier run: handled and journaled; its reply reached the relay; then the process died
    // before the journal heard of it.
    const request = plainSend(replyTo(m!, { answer: 42 }));
    const j = Journal.open(journalDir, { fsync: false });
    await j.received(m!);
    await j.handled(m!.message_id, { request, outcome: 'ok' });
    j.close();
    const first = await agentClient.send(request);
    const thread = await agentClient.thread(threadId, { limit: 100 });
    assert.equal(thread.has_more, true);

    let calls = 0;
    const b = await startAgent(t, relay, () => void calls++, { keypair, journalDir });
    const done = handledN(b.runtime, 1);
    b.runtime.start();
    const [handled] = await done;
    assert.equal(handled!.message.message_id, m!.message_id);
    assert.equal(handled!.replyId, first.message_id, 'the reply already sent was found');
    assert.equal(calls, 0);
    await b.runtime.stop();
    const replies = await peer.poll({ in_reply_to: m!.message_id, limit: 100 });
    assert.equal(replies.messages.length, 1, 'exactly one reply');
  });
});
