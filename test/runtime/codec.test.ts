/**
 * The codec seam (docs/architecture.md rule 5): a message is opened before its handler sees it; a
 * reply (and `ctx.reply`, `ctx.send`) is sealed once, before it is journaled; a resend after a
 * crash sends exactly the journaled bytes and the already-sent check compares them. The codec here
 * is a toy stand-in for end-to-end encryption whose seals, like HPKE's, differ every time — so a
 * re-seal anywhere would show up as a second, different reply.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import type { MessageCodec, OpenedMessage, PlainBody, SealContext, SealedBody } from '../../src/client/codec.js';
import { RelayClient } from '../../src/client/http.js';
import { ProtocolError, UsageError } from '../../src/core/errors.js';
import { Keypair } from '../../src/protocol/signing.js';
import type { JsonValue, Message } from '../../src/protocol/types.js';
import type { HandlerContext } from '../../src/runtime/handler.js';
import { Journal } from '../../src/runtime/journal.js';
import { encodedReplyTo } from '../../src/runtime/reply.js';
import { connected, handledN, Peer, startAgent } from '../helpers/agent.js';
import { tempDir } from '../helpers/cli.js';
import { startRelay } from '../helpers/relay.js';

/**
 * Sealed bodies are `{"sealed": base64url(plaintext JSON), "ct": content type, "nonce": random}`;
 * `"sealed": "broken"` cannot be opened. Every seal is counted.
 */
class ToyCodec implements MessageCodec {
  seals = 0;
  async open(message: Message): Promise<OpenedMessage> {
    const body = message.body as { sealed?: unknown; ct?: unknown } | null;
    if (body === null || typeof body !== 'object' || !('sealed' in body)) return { message, encrypted: false };
    if (typeof body.sealed !== 'string' || body.sealed === 'broken')
      throw new ProtocolError('decryption_failed', 'cannot decrypt: wrong keys or tampered data');
    const plain = JSON.parse(Buffer.from(body.sealed, 'base64url').toString()) as JsonValue;
    return { message: { ...message, body: plain, content_type: String(body.ct) }, encrypted: true };
  }
  async seal(body: PlainBody, context: SealContext): Promise<SealedBody> {
    this.seals++;
    if (body.bodyJson.includes('"huge"'))
      throw new UsageError('the sealed body would exceed 1 MiB', { code: 'payload_too_large' });
    if (!context.encrypt) return { bodyJson: body.bodyJson, contentType: body.contentType };
    const sealed = {
      sealed: Buffer.from(body.bodyJson).toString('base64url'),
      ct: body.contentType,
      nonce: randomUUID(),
    };
    return { bodyJson: JSON.stringify(sealed), contentType: 'application/json' };
  }
}

function sealedBody(plain: JsonValue): JsonValue {
  return { sealed: Buffer.from(JSON.stringify(plain)).toString('base64url'), ct: 'application/json', nonce: 'n0' };
}

/** Values as sorted JSON texts, to compare regardless of order. */
function texts(values: unknown[]): string[] {
  return values.map((v) => JSON.stringify(v)).sort();
}

function opened(body: unknown): unknown {
  const b = body as { sealed: string };
  return JSON.parse(Buffer.from(b.sealed, 'base64url').toString());
}

describe('the message codec', () => {
  it('a sealed message reaches the handler opened (ctx.encrypted); its replies and ctx.reply are sealed, once each', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0 });
    const codec = new ToyCodec();
    const seen: Array<[unknown, boolean]> = [];
    const agent = await startAgent(
      t,
      relay,
      async (msg: Message, ctx: HandlerContext) => {
        seen.push([msg.body, ctx.encrypted]);
        await ctx.reply({ progress: 1 });
        return { answer: (msg.body as { q: string }).q };
      },
      { options: { codec } },
    );
    agent.runtime.start();
    await connected(agent.runtime);
    const peer = await Peer.connect(t, relay);
    const done = handledN(agent.runtime, 2);
    const secret = await peer.send(agent.keypair.publicKey, sealedBody({ q: 'hi' }));
    const plain = await peer.send(agent.keypair.publicKey, { q: 'plain' });
    await done;
    await peer.waitForReplies(4);
    assert.deepEqual(
      texts(seen),
      texts([
        [{ q: 'hi' }, true],
        [{ q: 'plain' }, false],
      ]),
    );
    const toSecret = peer.replyTo(secret.message_id).map((m) => opened(m.body));
    assert.deepEqual(
      texts(toSecret),
      texts([{ answer: 'hi' }, { progress: 1 }]),
      'both replies to the sealed message are sealed',
    );
    assert.deepEqual(
      texts(peer.replyTo(plain.message_id).map((m) => m.body)),
      texts([{ answer: 'plain' }, { progress: 1 }]),
    );
    assert.equal(codec.seals, 4, 'each body sealed exactly once');
  });

  it('a message the codec cannot open is answered with its code; the handler never runs', async (t) => {
    const relay = await startRelay(t);
    let calls = 0;
    const agent = await startAgent(t, relay, () => void calls++, { options: { codec: new ToyCodec() } });
    const invalid = agent.runtime.next('invalid_message');
    const handled = agent.runtime.next('handled');
    agent.runtime.start();
    await connected(agent.runtime);
    const peer = await Peer.connect(t, relay);
    const sent = await peer.send(agent.keypair.publicKey, { sealed: 'broken' });
    const [[event], [result]] = await Promise.all([invalid, handled]);
    assert.equal(event.code, 'decryption_failed');
    assert.equal(result.outcome, 'error');
    assert.equal(result.error?.code, 'decryption_failed');
    const [reply] = await peer.waitForReplies(1);
    assert.equal(reply!.in_reply_to, sent.message_id);
    assert.deepEqual((reply!.body as { error: { code: string } }).error.code, 'decryption_failed');
    assert.equal(calls, 0);
  });

  it('a codec whose open() resolves with no message is a failed open: an error reply, the runner goes on', async (t) => {
    const relay = await startRelay(t);
    const seen: unknown[] = [];
    // A codec written elsewhere, with a bug: `undefined` for one body, no `message` for another.
    const buggy: MessageCodec = {
      async open(message) {
        const bad = (message.body as { bad?: string }).bad;
        if (bad === 'undefined') return undefined as unknown as OpenedMessage;
        if (bad === 'empty') return { encrypted: false } as unknown as OpenedMessage;
        return { message, encrypted: false };
      },
      seal: async (body) => body,
    };
    const agent = await startAgent(
      t,
      relay,
      (m) => {
        seen.push(m.body);
        return { done: true };
      },
      { options: { codec: buggy } },
    );
    const outcomes: string[] = [];
    const all = new Promise<void>((resolve) =>
      agent.runtime.on('handled', (e) => outcomes.push(`${e.outcome}:${e.error?.code ?? ''}`) === 3 && resolve()),
    );
    agent.runtime.start();
    await connected(agent.runtime);
    const peer = await Peer.connect(t, relay);
    await peer.send(agent.keypair.publicKey, { bad: 'undefined' });
    await peer.send(agent.keypair.publicKey, { bad: 'empty' });
    await peer.send(agent.keypair.publicKey, { ok: true });
    await all;
    assert.deepEqual(outcomes.sort(), ['error:invalid_message', 'error:invalid_message', 'replied:']);
    assert.deepEqual(seen, [{ ok: true }], 'the handler sees only the message the codec opened');
    const replies = await peer.waitForReplies(3);
    const codes = replies.map((r) => (r.body as { error?: { code: string } }).error?.code ?? 'ok').sort();
    assert.deepEqual(codes, ['invalid_message', 'invalid_message', 'ok']);
  });

  it('a body the codec refuses to seal becomes an error reply with the codec’s code', async (t) => {
    const relay = await startRelay(t);
    const agent = await startAgent(t, relay, () => ({ huge: true }), { options: { codec: new ToyCodec() } });
    agent.runtime.start();
    await connected(agent.runtime);
    const peer = await Peer.connect(t, relay);
    const done = agent.runtime.next('handled');
    await peer.send(agent.keypair.publicKey, { q: 1 });
    const [result] = await done;
    assert.equal(result.outcome, 'error');
    const [reply] = await peer.waitForReplies(1);
    assert.deepEqual((reply!.body as { error: { code: string } }).error.code, 'payload_too_large');
  });

  it('after a crash the journaled sealed reply is sent byte for byte, and one already sent is found by its text', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0 });
    const keypair = Keypair.generate();
    const journalDir = await tempDir(t);
    const peer = await Peer.connect(t, relay);
    const s1 = await peer.send(keypair.publicKey, sealedBody({ q: 1 }));
    const s2 = await peer.send(keypair.publicKey, sealedBody({ q: 2 }));
    const agentClient = new RelayClient({ relayUrl: relay.url, keypair });
    const [m1, m2] = (await agentClient.poll()).messages;
    // The earlier run: both handled and their replies sealed and journaled; m1's reply reached the
    // relay, then the process died before the journal heard of it.
    const before = new ToyCodec();
    const j = Journal.open(journalDir, { fsync: false });
    const requests = [];
    for (const m of [m1!, m2!]) {
      const sealed = await before.seal(
        { bodyJson: JSON.stringify({ answer: (opened(m.body) as { q: number }).q }), contentType: 'application/json' },
        { to: m.sender_key, encrypt: true },
      );
      const request = encodedReplyTo(m, sealed);
      requests.push(request);
      await j.received(m);
      await j.handled(m.message_id, { request, outcome: 'ok' });
    }
    j.close();
    await agentClient.send(requests[0]!);
    await peer.waitForReplies(1);

    const codec = new ToyCodec();
    let calls = 0;
    const b = await startAgent(t, relay, () => void calls++, { keypair, journalDir, options: { codec } });
    const done = handledN(b.runtime, 2);
    b.runtime.start();
    await done;
    await peer.waitForReplies(2);
    assert.equal(calls, 0, 'handlers are not run again');
    assert.equal(codec.seals, 0, 'nothing is sealed again');
    assert.equal(peer.replyTo(s1.message_id).length, 1, 'the reply already sent is found by its text, not sent again');
    const [r2] = peer.replyTo(s2.message_id);
    assert.deepEqual(r2!.body, JSON.parse(requests[1]!.body_json), 'the journaled bytes, same nonce');
  });

  it('the default codec: ctx.encrypted is false, and ctx.send(…, { encrypt: true }) fails instead of sending plain text', async (t) => {
    const relay = await startRelay(t);
    const other = Keypair.generate();
    const results: unknown[] = [];
    const agent = await startAgent(t, relay, async (_msg, ctx) => {
      results.push(ctx.encrypted);
      try {
        await ctx.send(other.publicKey, { secret: 1 }, { encrypt: true });
        results.push('sent');
      } catch (err) {
        results.push((err as { code?: string }).code);
      }
      return 'ok';
    });
    agent.runtime.start();
    await connected(agent.runtime);
    const peer = await Peer.connect(t, relay);
    const done = agent.runtime.next('handled');
    await peer.send(agent.keypair.publicKey, { q: 1 });
    await done;
    assert.deepEqual(results, [false, 'encryption_unavailable']);
    const inbox = await new RelayClient({ relayUrl: relay.url, keypair: other }).poll();
    assert.equal(inbox.messages.length, 0, 'nothing reached the recipient');
  });
});
