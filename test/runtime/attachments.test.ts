/**
 * Attachments in the handler (docs/protocol.md §3.7, §8.4) against a real relay: `ctx.download`
 * (hash-checked, decrypted), `ctx.upload` (encrypted by default when the message was), replies
 * carrying attachments (`withAttachments`, `ctx.reply(…, { attachments })`), and uploads journaled
 * so that a crash between an upload and the reply neither uploads twice nor replies twice. The
 * peer seals and opens with the independent reference HPKE (`test/helpers/hpke-reference.ts`) and
 * the blob cipher, so the layout is checked, not only self-consistency.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { e2eCodec } from '../../src/client/e2e-codec.js';
import { RelayClient } from '../../src/client/http.js';
import { openBlob, sealBlob } from '../../src/protocol/blob-crypto.js';
import { LIMITS } from '../../src/protocol/constants.js';
import { Keypair } from '../../src/protocol/signing.js';
import type { Attachment, JsonValue, Message } from '../../src/protocol/types.js';
import { relayAttachments, withAttachments } from '../../src/runtime/attachments.js';
import type { HandlerContext } from '../../src/runtime/handler.js';
import { Journal } from '../../src/runtime/journal.js';
import type { RuntimeJournal } from '../../src/runtime/journal-port.js';
import { connected, gate, handledN, Peer, startAgent } from '../helpers/agent.js';
import { tempDir } from '../helpers/cli.js';
import { edSeedToX25519, refAuthOpen, refAuthSeal, x25519Public } from '../helpers/hpke-reference.js';
import { startRelay } from '../helpers/relay.js';

const ENCRYPTED = 'application/x-m2m-encrypted';
const EMPTY = new Uint8Array(0);

function refSealBody(from: Keypair, to: Keypair, body: JsonValue): JsonValue {
  const { enc, ct } = refAuthSeal(
    edSeedToX25519(from.exportSeed()),
    x25519Public(edSeedToX25519(to.exportSeed())),
    Buffer.from(JSON.stringify(body)),
    EMPTY,
    EMPTY,
  );
  return { v: 2, enc: enc.toString('base64url'), ct: ct.toString('base64url'), ct_content_type: 'application/json' };
}

/** Opens a body `from` sealed for `to` with the reference: its JSON. */
function refOpenBody(to: Keypair, from: Keypair, body: JsonValue): JsonValue {
  const { enc, ct } = body as { enc: string; ct: string };
  const plain = refAuthOpen(
    edSeedToX25519(to.exportSeed()),
    x25519Public(edSeedToX25519(from.exportSeed())),
    Buffer.from(enc, 'base64url'),
    Buffer.from(ct, 'base64url'),
    EMPTY,
    EMPTY,
  );
  return JSON.parse(plain.toString('utf8')) as JsonValue;
}

/** The peer uploads `plaintext` encrypted for `to` (§8.4) and returns the attachment to send. */
async function refEncryptedAttachment(
  client: RelayClient,
  from: Keypair,
  to: Keypair,
  plaintext: Uint8Array,
  filename: string,
  otherDek?: Buffer,
): Promise<Attachment> {
  const dek = randomBytes(32);
  const info = await client.uploadBlob(sealBlob(dek, plaintext), { contentType: 'application/octet-stream' });
  // `otherDek`: wrap that instead (the attachment then cannot be decrypted).
  const wrapped = otherDek ?? dek;
  const { enc, ct } = refAuthSeal(
    edSeedToX25519(from.exportSeed()),
    x25519Public(edSeedToX25519(to.exportSeed())),
    wrapped,
    EMPTY,
    EMPTY,
  );
  return {
    blob_id: info.blob_id,
    filename,
    content_type: 'text/plain',
    encrypted: true,
    dek_enc: enc.toString('base64url'),
    dek_ct: ct.toString('base64url'),
  };
}

/** Opens an encrypted attachment sent by `from` to `to` with the reference: its plaintext. */
async function refOpenAttachment(client: RelayClient, a: Attachment, to: Keypair, from: Keypair): Promise<Buffer> {
  assert.equal(a.encrypted, true);
  const dek = refAuthOpen(
    edSeedToX25519(to.exportSeed()),
    x25519Public(edSeedToX25519(from.exportSeed())),
    Buffer.from(a.dek_enc!, 'base64url'),
    Buffer.from(a.dek_ct!, 'base64url'),
    EMPTY,
    EMPTY,
  );
  const bytes = await client.downloadBlobBytes(a.blob_id, { maxBytes: 1 << 20 });
  return Buffer.from(openBlob(dek, bytes));
}

describe('attachments in the handler', () => {
  it('an encrypted attachment is ctx.download()ed as plaintext; the reply carries a ctx.upload()ed attachment encrypted for the sender', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0 });
    const agentKeys = Keypair.generate();
    const got: Array<{ text: string; encrypted: boolean }> = [];
    const agent = await startAgent(
      t,
      relay,
      async (msg: Message, ctx: HandlerContext) => {
        const bytes = await ctx.download(msg.attachments[0]!);
        got.push({ text: bytes.toString('utf8'), encrypted: ctx.encrypted });
        const back = await ctx.upload(Buffer.from(bytes.toString('utf8').toUpperCase()), {
          filename: 'upper.txt',
          contentType: 'text/plain',
        });
        const progress = await ctx.upload('progress file', { filename: 'p.txt', encrypt: false });
        await ctx.reply({ progress: true }, { attachments: [progress] });
        return withAttachments({ done: true }, [back]);
      },
      { keypair: agentKeys, options: { codec: e2eCodec(agentKeys) } },
    );
    agent.runtime.start();
    await connected(agent.runtime);
    const peer = await Peer.connect(t, relay);
    const attachment = await refEncryptedAttachment(
      peer.client,
      peer.keypair,
      agentKeys,
      Buffer.from('secret file'),
      'secret.txt',
    );
    const done = handledN(agent.runtime, 1);
    const sent = await peer.send(agentKeys.publicKey, refSealBody(peer.keypair, agentKeys, { q: 1 }), {
      content_type: ENCRYPTED,
      attachments: [attachment],
    });
    const [event] = await done;
    assert.equal(event!.outcome, 'replied', JSON.stringify(event!.error));
    assert.deepEqual(got, [{ text: 'secret file', encrypted: true }]);
    await peer.waitForReplies(2);
    const replies = peer.replyTo(sent.message_id);
    const final = replies.find((m) => m.attachments.some((a) => a.filename === 'upper.txt'))!;
    assert.equal(final.content_type, ENCRYPTED, 'the reply body is sealed too');
    const a = final.attachments[0]!;
    assert.equal(a.content_type, 'text/plain', 'the plaintext media type is kept');
    assert.equal((await refOpenAttachment(peer.client, a, peer.keypair, agentKeys)).toString(), 'SECRET FILE');
    const progress = replies.find((m) => m.attachments.some((x) => x.filename === 'p.txt'))!.attachments[0]!;
    assert.equal(progress.encrypted, false);
    assert.equal(
      (await peer.client.downloadBlobBytes(progress.blob_id, { maxBytes: 100 })).toString(),
      'progress file',
    );
  });

  it('a reply the relay refuses for its attachment (a blob it does not hold) becomes one error reply naming the refusal, sealed like the reply', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0 });
    const agentKeys = Keypair.generate();
    const missing: Attachment = { blob_id: 'blob_0123456789ab', filename: 'gone.txt', content_type: 'text/plain' };
    const agent = await startAgent(t, relay, () => withAttachments({ done: true }, [missing]), {
      keypair: agentKeys,
      options: { codec: e2eCodec(agentKeys) },
    });
    agent.runtime.start();
    await connected(agent.runtime);
    const peer = await Peer.connect(t, relay);
    for (const encrypted of [false, true]) {
      const done = handledN(agent.runtime, 1);
      const sent = encrypted
        ? await peer.send(agentKeys.publicKey, refSealBody(peer.keypair, agentKeys, { q: 1 }), {
            content_type: ENCRYPTED,
          })
        : await peer.send(agentKeys.publicKey, { q: 1 });
      const [event] = await done;
      assert.equal(event!.outcome, 'reply_failed');
      assert.equal(typeof event!.replyId, 'string', 'the error reply was sent');
      await peer.waitForReplies(encrypted ? 2 : 1);
      const replies = peer.replyTo(sent.message_id);
      assert.equal(replies.length, 1);
      const reply = replies[0]!;
      assert.equal(reply.message_id, event!.replyId);
      assert.deepEqual(reply.attachments, []);
      assert.equal(reply.content_type, encrypted ? ENCRYPTED : 'application/json');
      const body = (encrypted ? refOpenBody(peer.keypair, agentKeys, reply.body) : reply.body) as {
        status: string;
        error: { code: string; message: string };
      };
      assert.equal(body.status, 'error');
      assert.equal(body.error.code, event!.error!.code);
      assert.match(body.error.message, /^the relay refused the reply: /);
    }
  });

  it('a hash that does not match the blob is blob_hash_mismatch; a DEK that does not open the blob is decryption_failed', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0 });
    const agentKeys = Keypair.generate();
    const codes: string[] = [];
    const agent = await startAgent(
      t,
      relay,
      async (msg: Message, ctx: HandlerContext) => {
        const [good, wrongKey] = msg.attachments;
        for (const a of [{ ...good!, hash: 'f'.repeat(64) }, wrongKey!, { ...good!, dek_ct: 'AAAA' }]) {
          await ctx.download(a).then(
            () => codes.push('ok'),
            (err: { code?: string }) => codes.push(err.code ?? '?'),
          );
        }
        await ctx.download(good!, { maxBytes: 3 }).catch((err: { code?: string }) => codes.push(err.code ?? '?'));
        return (await ctx.download(good!)).toString();
      },
      { keypair: agentKeys, options: { codec: e2eCodec(agentKeys) } },
    );
    agent.runtime.start();
    await connected(agent.runtime);
    const peer = await Peer.connect(t, relay);
    const good = await refEncryptedAttachment(peer.client, peer.keypair, agentKeys, Buffer.from('fine'), 'a.txt');
    const wrongKey = await refEncryptedAttachment(
      peer.client,
      peer.keypair,
      agentKeys,
      Buffer.from('fine'),
      'b.txt',
      randomBytes(32),
    );
    const done = handledN(agent.runtime, 1);
    await peer.send(agentKeys.publicKey, { q: 1 }, { attachments: [good, wrongKey] });
    await done;
    const [reply] = await peer.waitForReplies(1);
    assert.deepEqual(codes, ['blob_hash_mismatch', 'decryption_failed', 'decryption_failed', 'payload_too_large']);
    assert.deepEqual(reply!.body, { text: 'fine' });
  });

  it('ctx.upload checks the bytes uploaded against the per-blob limit: encrypted, 100 MiB of data is 28 bytes over (payload_too_large, nothing uploaded)', async () => {
    let touched = 0;
    const client = new Proxy({} as RelayClient, {
      get: () => {
        touched++;
        return () => Promise.reject(new Error('no request expected'));
      },
    });
    const journal = { get: () => undefined } as unknown as RuntimeJournal;
    const port = relayAttachments(client, journal);
    const message = { message_id: 'msg_1_000000000000', sender_key: Keypair.generate().publicKey } as Message;
    // Zero pages mapped lazily: nothing is written; only the size is looked at.
    const signal = new AbortController().signal;
    const cases = [
      {
        encrypt: true,
        data: new Uint8Array(LIMITS.maxBlobBytes),
        said: /104857628 bytes encrypted \(104857600 \+ 28\)/,
      },
      { encrypt: false, data: new Uint8Array(LIMITS.maxBlobBytes + 1), said: /104857601 bytes is more/ },
    ];
    for (const { encrypt, data, said } of cases) {
      const o = { contentType: 'application/octet-stream', encrypt, to: message.sender_key };
      await assert.rejects(port.upload(message, data, o, signal), (err: { code?: string; message?: string }) => {
        assert.equal(err.code, 'payload_too_large');
        assert.match(err.message ?? '', said);
        return true;
      });
    }
    assert.equal(touched, 0, 'no relay call');
  });

  it('a crash between ctx.upload and the reply: the re-run reuses the journaled blob (one upload), one reply; a deleted blob is uploaded again', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0 });
    const keypair = Keypair.generate();
    const journalDir = await tempDir(t);
    const stuck = gate();
    const uploaded = gate();
    const firstRun: Attachment[] = [];
    const a = await startAgent(
      t,
      relay,
      async (_m, ctx) => {
        firstRun.push(await ctx.upload('report', { filename: 'r.txt', encrypt: true }));
        firstRun.push(await ctx.upload('gone', { filename: 'g.txt' }));
        uploaded.open();
        await stuck.wait; // the "process" dies here
        return 'never';
      },
      { keypair, journalDir, options: { graceMs: 0 } },
    );
    a.runtime.start();
    await connected(a.runtime);
    const peer = await Peer.connect(t, relay);
    const { message_id } = await peer.send(keypair.publicKey, { work: 1 });
    await uploaded.wait;
    await a.source.close();
    a.runtime.stop();
    await a.runtime.finished;
    // The second blob disappears while the runner is down (deleted; or expired).
    await a.client.deleteBlob(firstRun[1]!.blob_id);

    const b = await startAgent(
      t,
      relay,
      async (_m, ctx) => {
        const report = await ctx.upload('report', { filename: 'r.txt', encrypt: true });
        const gone = await ctx.upload('gone', { filename: 'g.txt' });
        return withAttachments({ redelivered: ctx.redelivered }, [report, gone]);
      },
      { keypair, journalDir },
    );
    let uploads = 0;
    const upload = b.client.uploadBlob.bind(b.client);
    b.client.uploadBlob = (input, opts) => {
      uploads++;
      return upload(input, opts);
    };
    b.runtime.start();
    const [reply] = await peer.waitForReplies(1);
    assert.equal(reply!.in_reply_to, message_id);
    assert.deepEqual(reply!.body, { redelivered: true });
    assert.equal(uploads, 1, 'only the deleted blob is uploaded again');
    assert.equal(reply!.attachments[0]!.blob_id, firstRun[0]!.blob_id, 'the journaled upload is reused');
    assert.equal(reply!.attachments[0]!.dek_ct, firstRun[0]!.dek_ct, 'with its wrapped key');
    assert.notEqual(reply!.attachments[1]!.blob_id, firstRun[1]!.blob_id);
    assert.equal(
      (await refOpenAttachment(peer.client, reply!.attachments[0]!, peer.keypair, keypair)).toString(),
      'report',
    );
    await b.runtime.stop();
    assert.equal(peer.replies.length, 1, 'one reply');
  });

  it('a crash after the handler finished: the journaled reply is sent with the same blob ids, the handler is not run again', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0 });
    const keypair = Keypair.generate();
    const journalDir = await tempDir(t);
    const peer = await Peer.connect(t, relay);
    const sent = await peer.send(keypair.publicKey, { q: 1 });
    const client = new RelayClient({ relayUrl: relay.url, keypair });
    const blob = await client.uploadBlob(Buffer.from('data'), { contentType: 'text/plain' });
    const [m] = (await client.poll()).messages;
    const j = Journal.open(journalDir, { fsync: false });
    await j.received(m!);
    await j.handled(m!.message_id, {
      request: {
        recipient_key: peer.publicKey,
        content_type: 'application/json',
        body_json: '{"ok":1}',
        attachments: [{ blob_id: blob.blob_id, filename: 'd.txt' }],
        in_reply_to: m!.message_id,
        thread_id: m!.message_id,
      },
      outcome: 'ok',
    });
    j.close();
    let calls = 0;
    const b = await startAgent(t, relay, () => void calls++, { keypair, journalDir });
    b.runtime.start();
    const [reply] = await peer.waitForReplies(1);
    assert.equal(calls, 0);
    assert.equal(reply!.in_reply_to, sent.message_id);
    assert.deepEqual(
      reply!.attachments.map((x) => [x.blob_id, x.filename, x.size]),
      [[blob.blob_id, 'd.txt', 4]],
    );
  });
});
