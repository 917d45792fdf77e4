/**
 * End-to-end encryption in the runtime (docs/protocol.md §8) with the real codec
 * (`client/e2e-codec.ts`, HPKE Auth) against a real relay. The peer seals and opens with the
 * independent reference implementation (`test/helpers/hpke-reference.ts`, node:crypto only), so
 * these tests also check interoperability of the byte layout, not only that the code agrees with
 * itself.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MessageCodec } from '../../src/client/codec.js';
import { e2eCodec } from '../../src/client/e2e-codec.js';
import { RelayClient } from '../../src/client/http.js';
import { NetworkError, OutcomeUnknownError } from '../../src/core/errors.js';
import type { EncodedSend } from '../../src/protocol/frames.js';
import { Keypair } from '../../src/protocol/signing.js';
import type { JsonValue, Message } from '../../src/protocol/types.js';
import type { HandlerContext } from '../../src/runtime/handler.js';
import { Journal } from '../../src/runtime/journal.js';
import { connected, handledN, Peer, startAgent } from '../helpers/agent.js';
import { tempDir } from '../helpers/cli.js';
import { edSeedToX25519, refAuthOpen, refAuthSeal, x25519Public } from '../helpers/hpke-reference.js';
import { startRelay } from '../helpers/relay.js';

const ENCRYPTED = 'application/x-m2m-encrypted';
const EMPTY = new Uint8Array(0);

/** A v2 envelope sealed by `from` for `to` with the reference HPKE (§8.2, §8.3 layout). */
function refSeal(from: Keypair, to: Keypair, body: JsonValue, contentType = 'application/json'): JsonValue {
  const plaintext = Buffer.from(contentType === 'application/json' ? JSON.stringify(body) : String(body));
  const { enc, ct } = refAuthSeal(
    edSeedToX25519(from.exportSeed()),
    x25519Public(edSeedToX25519(to.exportSeed())),
    plaintext,
    EMPTY,
    EMPTY,
  );
  return { v: 2, enc: enc.toString('base64url'), ct: ct.toString('base64url'), ct_content_type: contentType };
}

/** Opens a message sealed by `from` for `to` with the reference HPKE: its content type and body. */
function refOpen(message: Message, to: Keypair, from: Keypair): { contentType: string; body: JsonValue } {
  assert.equal(message.content_type, ENCRYPTED, 'the message is encrypted');
  const env = message.body as { v: number; enc: string; ct: string; ct_content_type: string };
  assert.equal(env.v, 2);
  const plain = refAuthOpen(
    edSeedToX25519(to.exportSeed()),
    x25519Public(edSeedToX25519(from.exportSeed())),
    Buffer.from(env.enc, 'base64url'),
    Buffer.from(env.ct, 'base64url'),
    EMPTY,
    EMPTY,
  );
  return { contentType: env.ct_content_type, body: JSON.parse(plain.toString('utf8')) as JsonValue };
}

describe('end-to-end encryption in the runtime', () => {
  it('an encrypted message reaches the handler opened (ctx.encrypted); the reply and ctx.reply go back sealed to the sender', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0 });
    const agentKeys = Keypair.generate();
    const seen: Array<{ body: JsonValue; contentType: string; encrypted: boolean }> = [];
    const agent = await startAgent(
      t,
      relay,
      async (msg: Message, ctx: HandlerContext) => {
        seen.push({ body: msg.body, contentType: msg.content_type, encrypted: ctx.encrypted });
        await ctx.reply({ progress: 1 });
        return { echo: msg.body };
      },
      { keypair: agentKeys, options: { codec: e2eCodec(agentKeys) } },
    );
    agent.runtime.start();
    await connected(agent.runtime);
    const peer = await Peer.connect(t, relay);
    const done = handledN(agent.runtime, 2);
    const secret = await peer.send(agentKeys.publicKey, refSeal(peer.keypair, agentKeys, { q: 'secret' }), {
      content_type: ENCRYPTED,
    });
    const plain = await peer.send(agentKeys.publicKey, { q: 'plain' });
    const events = await done;
    await peer.waitForReplies(4);

    const byBody = (q: string) => seen.find((s) => JSON.stringify(s.body) === JSON.stringify({ q }));
    assert.deepEqual(byBody('secret'), { body: { q: 'secret' }, contentType: 'application/json', encrypted: true });
    assert.deepEqual(byBody('plain'), { body: { q: 'plain' }, contentType: 'application/json', encrypted: false });
    assert.ok(events.every((e) => e.outcome === 'replied'));

    const sealedReplies = peer.replyTo(secret.message_id);
    assert.equal(sealedReplies.length, 2);
    const openedReplies = sealedReplies
      .map((m) => refOpen(m, peer.keypair, agentKeys))
      .map((o) => JSON.stringify(o.body))
      .sort();
    assert.deepEqual(
      openedReplies,
      [JSON.stringify({ echo: { q: 'secret' } }), JSON.stringify({ progress: 1 })].sort(),
    );
    for (const m of sealedReplies) {
      assert.equal(m.thread_id, secret.message_id, 'threading stays in clear (§8.3)');
      assert.equal(m.in_reply_to, secret.message_id);
    }
    const plainReplies = peer.replyTo(plain.message_id);
    assert.deepEqual(
      plainReplies.map((m) => m.content_type),
      ['application/json', 'application/json'],
    );
  });

  it('a message that cannot be opened gets a plaintext decryption_failed reply; the handler never runs; it is acked and done', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0 });
    const agentKeys = Keypair.generate();
    let calls = 0;
    const agent = await startAgent(t, relay, () => void calls++, {
      keypair: agentKeys,
      options: { codec: e2eCodec(agentKeys) },
    });
    agent.runtime.start();
    await connected(agent.runtime);
    const peer = await Peer.connect(t, relay);
    const stranger = Keypair.generate();
    const good = refSeal(peer.keypair, agentKeys, { q: 1 }) as Record<string, string | number>;
    const ct = Buffer.from(good['ct'] as string, 'base64url');
    ct[0]! ^= 1;
    const cases: Record<string, JsonValue> = {
      tampered: { ...good, ct: ct.toString('base64url') },
      'for someone else': refSeal(peer.keypair, stranger, { q: 1 }),
      'claims another sender': refSeal(stranger, agentKeys, { q: 1 }),
      'version 1': { ...good, v: 1 },
      'not an envelope': 'hello',
      'short enc': { ...good, enc: 'AAAA' },
    };
    const invalid: string[] = [];
    agent.runtime.on('invalid_message', (e) => invalid.push(e.code ?? ''));
    const done = handledN(agent.runtime, Object.keys(cases).length);
    const sent = new Map<string, string>();
    for (const [name, body] of Object.entries(cases)) {
      sent.set((await peer.send(agentKeys.publicKey, body, { content_type: ENCRYPTED })).message_id, name);
    }
    const events = await done;
    await peer.waitForReplies(sent.size);
    assert.equal(calls, 0, 'the handler never sees a message it cannot read');
    assert.deepEqual(
      invalid,
      [...sent.keys()].map(() => 'decryption_failed'),
    );
    assert.ok(events.every((e) => e.outcome === 'error' && e.error?.code === 'decryption_failed'));
    for (const [id, name] of sent) {
      const [reply] = peer.replyTo(id);
      assert.ok(reply, `a reply for "${name}"`);
      assert.equal(reply.content_type, 'application/json', `the error reply is plaintext (${name})`);
      const body = reply.body as { status: string; error: { code: string; message: string } };
      assert.equal(body.status, 'error');
      assert.equal(body.error.code, 'decryption_failed', name);
      assert.match(body.error.message, /cannot open the encrypted message/);
    }
    const version = peer.replyTo([...sent].find(([, n]) => n === 'version 1')![0])[0]!.body as {
      error: { message: string };
    };
    assert.match(version.error.message, /unsupported encryption version 1/);
    // Acknowledged: nothing is left for the agent on the relay.
    const status = await agent.client.messageStatus([...sent.keys()][0]!);
    assert.equal(status.status, 'delivered');
  });

  it('ctx.send(…, { encrypt: true }) seals for any recipient, by its key alone', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0 });
    const agentKeys = Keypair.generate();
    const other = Keypair.generate();
    const agent = await startAgent(
      t,
      relay,
      async (_msg, ctx) => {
        await ctx.send(other.publicKey, { forwarded: true }, { encrypt: true, threadId: 'fw-1' });
        await ctx.send(other.publicKey, { clear: true });
        return null;
      },
      { keypair: agentKeys, options: { codec: e2eCodec(agentKeys) } },
    );
    agent.runtime.start();
    await connected(agent.runtime);
    const peer = await Peer.connect(t, relay);
    const done = agent.runtime.next('handled');
    await peer.send(agentKeys.publicKey, { go: 1 });
    await done;
    const inbox = await new RelayClient({ relayUrl: relay.url, keypair: other }).poll();
    const sealed = inbox.messages.find((m) => m.content_type === ENCRYPTED)!;
    assert.deepEqual(refOpen(sealed, other, agentKeys), { contentType: 'application/json', body: { forwarded: true } });
    assert.equal(sealed.thread_id, 'fw-1');
    assert.deepEqual(inbox.messages.find((m) => m.content_type === 'application/json')?.body, { clear: true });
  });

  it('a crash around sending a sealed reply: the journaled ciphertext is sent once, byte for byte, and never sealed again', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0 });
    const agentKeys = Keypair.generate();
    const journalDir = await tempDir(t);
    const peer = await Peer.connect(t, relay);
    // lost: the relay never got the reply. unheard: the relay stored it, the answer was lost.
    const lost = await peer.send(agentKeys.publicKey, refSeal(peer.keypair, agentKeys, { n: 'lost' }), {
      content_type: ENCRYPTED,
    });
    const unheard = await peer.send(agentKeys.publicKey, refSeal(peer.keypair, agentKeys, { n: 'unheard' }), {
      content_type: ENCRYPTED,
    });
    let calls = 0;
    const handler = (msg: Message) => {
      calls++;
      return { got: msg.body };
    };

    // Run 1: both handled, both replies sealed and journaled; then every send "loses its connection".
    const attempted = new Map<string, EncodedSend>();
    const first = await startAgent(t, relay, handler, {
      keypair: agentKeys,
      journalDir,
      options: { codec: e2eCodec(agentKeys), graceMs: 0 },
    });
    const realSend = first.source.send.bind(first.source);
    let bothAttempted!: () => void;
    const attemptedBoth = new Promise<void>((r) => (bothAttempted = r));
    // The network goes down for run 1 after each reply's first attempt: later attempts and the
    // "already sent?" thread check fail too, so only the journal carries the replies over.
    first.source.send = async (request: EncodedSend) => {
      const id = request.in_reply_to!;
      if (!attempted.has(id)) {
        attempted.set(id, request);
        if (id === unheard.message_id) await realSend(request);
        if (attempted.size === 2) bothAttempted();
      }
      throw new OutcomeUnknownError('the connection dropped before the relay answered');
    };
    first.client.thread = async () => {
      throw new NetworkError('the network is down');
    };
    first.runtime.start();
    await attemptedBoth;
    await first.runtime.stop();
    assert.equal(calls, 2);
    for (const request of attempted.values()) assert.equal(request.content_type, ENCRYPTED);

    // What the journal kept is exactly what was attempted.
    const j = Journal.open(journalDir, { fsync: false });
    const kept = new Map(j.takeRecovered().map((e) => [e.id, e.reply?.request.body_json]));
    j.close();
    assert.equal(kept.get(lost.message_id), attempted.get(lost.message_id)!.body_json);
    assert.equal(kept.get(unheard.message_id), attempted.get(unheard.message_id)!.body_json);

    // Run 2: resumes from the journal.
    let seals = 0;
    const codec = e2eCodec(agentKeys);
    const counting: MessageCodec = {
      open: (m) => codec.open(m),
      seal: (body, context) => {
        seals++;
        return codec.seal(body, context);
      },
    };
    const second = await startAgent(t, relay, handler, {
      keypair: agentKeys,
      journalDir,
      options: { codec: counting },
    });
    const done = handledN(second.runtime, 2);
    second.runtime.start();
    await done;
    await peer.waitForReplies(2);
    assert.equal(calls, 2, 'handlers are not run again');
    assert.equal(seals, 0, 'nothing is sealed again');
    for (const sent of [lost, unheard]) {
      const replies = peer.replyTo(sent.message_id);
      assert.equal(replies.length, 1, `exactly one reply to ${sent === lost ? 'lost' : 'unheard'}`);
      assert.deepEqual(
        replies[0]!.body,
        JSON.parse(attempted.get(sent.message_id)!.body_json),
        'the journaled ciphertext, same enc',
      );
      assert.deepEqual(refOpen(replies[0]!, peer.keypair, agentKeys).body, {
        got: { n: sent === lost ? 'lost' : 'unheard' },
      });
    }
  });
});
