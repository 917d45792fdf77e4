/**
 * The library as an outside tester reads the spec: every item of PROTOCOL.md §9.1's "Our TS SDK"
 * paragraph, and each Python-SDK (`mrp-sdk`) behaviour it maps, against real relays in process,
 * through the package entry points only (`mrp` → src/index.ts, `mrp/testing` → src/testing.ts).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import {
  Agent,
  checkWebhookTimestamp,
  fileBlobInput,
  type Handler,
  isRetryable,
  Keypair,
  type Message,
  MrpError,
  RateLimitError,
  RelayClient,
  RelayError,
  Runtime,
  Session,
  verifyWebhookSignature,
  WEBHOOK_HEADERS,
  WebhookSource,
  webhookSignature,
} from '../../src/index.js';
import { createTestRelay, invoke } from '../../src/testing.js';
import { startRelay } from '../helpers/relay.js';

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'mrp-spec-sdk-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** An agent with a fresh identity and a temporary journal, stopped when the test ends. */
function agentOn(t: TestContext, relayUrl: string, options: Record<string, unknown> = {}): Agent {
  const agent = new Agent({ relayUrl, keypair: Keypair.generate(), journal: false, ...options });
  t.after(() => agent.stop());
  return agent;
}

/** The first `n` messages `messages()` yields (then the loop is left). */
async function take(agent: Agent, n = 1, options: { limit?: number; wait?: number } = {}): Promise<Message[]> {
  const got: Message[] = [];
  if (n === 0) return got;
  for await (const m of agent.messages({ wait: 5, ...options })) {
    got.push(m);
    if (got.length === n) break;
  }
  return got;
}

/** Serves `handler` on `agent` until the test ends; resolves once connected. */
async function serve(t: TestContext, agent: Agent, handler: Handler, mode: 'websocket' | 'poll' = 'websocket') {
  agent.onMessage(handler);
  const connected = agent.next('connected');
  const running = agent.run(mode === 'poll' ? { mode, pollIntervalMs: 50 } : { mode });
  running.catch(() => undefined);
  t.after(() => agent.stop());
  await connected;
}

describe('spec §9.1: Keypair', () => {
  it('generate / fromFile(path, { create }) / save(path): one identity through every file form', (t) => {
    const dir = tempDir(t);
    const kp = Keypair.generate();
    assert.match(kp.publicKey, /^[A-Za-z0-9_-]{43}$/);
    const file = join(dir, 'agent.key');
    kp.save(file);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(Keypair.fromFile(file).publicKey, kp.publicKey);
    // Saving over an existing key would lose an identity: refused.
    assert.throws(
      () => kp.save(file),
      (e: unknown) => e instanceof MrpError && e.code === 'key_exists',
    );
    // A missing file without create is an error naming it; with create it is made, 0600, and stable.
    const missing = join(dir, 'new.key');
    assert.throws(
      () => Keypair.fromFile(missing),
      (e: unknown) => e instanceof MrpError && e.message.includes(missing),
    );
    // A misspelt or mistyped option is named, not read as "do not create".
    for (const bad of [{ creat: true }, { create: 'yes' }, 'create'])
      assert.throws(
        () => Keypair.fromFile(missing, bad as never),
        (e: unknown) => e instanceof MrpError && e.code === 'invalid_argument' && e.message.includes('create'),
      );
    const created = Keypair.fromFile(missing, { create: true });
    assert.equal(statSync(missing).mode & 0o777, 0o600);
    assert.equal(Keypair.fromFile(missing, { create: true }).publicKey, created.publicKey);
    // The forms read (§1.2): 32 raw seed bytes, seed‖public (64 bytes), hex, base64url, base64.
    const seed = Buffer.alloc(32, 7);
    const expected = Keypair.fromSeed(seed).publicKey;
    const forms: Array<[string, Buffer | string]> = [
      ['raw.key', seed],
      ['libsodium.key', Buffer.concat([seed, Buffer.from(expected, 'base64url')])],
      ['hex.key', `${seed.toString('hex')}\n`],
      ['b64url.key', seed.toString('base64url')],
      ['b64.key', seed.toString('base64')],
    ];
    for (const [name, content] of forms) {
      writeFileSync(join(dir, name), content, { mode: 0o600 });
      assert.equal(Keypair.fromFile(join(dir, name)).publicKey, expected, name);
    }
    const raw = join(dir, 'raw.key');
    // new Agent({ keyFile }) reads the same identity.
    const agent = new Agent({ relayUrl: 'http://127.0.0.1:9', keyFile: raw, journal: false });
    assert.equal(agent.publicKey, expected);
  });
});

describe('spec §9.1: Agent against a relay', () => {
  it('new Agent({ relayUrl, keyFile, name, capabilities, metadata, visibility, inboxPolicy }) + register() pushes the profile; discover({ tag, q, name, activeSince, limit }) finds it', async (t) => {
    const r = await startRelay(t);
    const dir = tempDir(t);
    const agent = new Agent({
      relayUrl: r.url,
      keyFile: join(dir, 'a.key'),
      journal: false,
      name: 'SpecTranslator',
      capabilities: [{ name: 'translate', description: 'Translate text', tags: ['i18n', 'text'] }],
      metadata: { team: 'spec' },
      visibility: 'public',
      inboxPolicy: 'blocklist',
    });
    t.after(() => agent.stop());
    assert.equal(agent.name, 'SpecTranslator');
    const other = agentOn(t, r.url, { name: 'Other', visibility: 'public' });
    await other.register();
    const profile = await agent.register();
    assert.equal(profile.display_name, 'SpecTranslator');
    assert.equal(profile.visibility, 'public');
    assert.equal(profile.inbox_policy, 'blocklist');
    assert.deepEqual(profile.metadata, { team: 'spec' });
    const seen = (await agent.client.getAgent(agent.publicKey)) as unknown as Record<string, unknown>;
    assert.equal(seen['display_name'], 'SpecTranslator');

    const keys = (res: { agents: Array<{ public_key: string }> }) => res.agents.map((a) => a.public_key);
    const byTag = await other.discover({ tag: 'i18n' });
    assert.deepEqual(keys(byTag), [agent.publicKey]);
    const peer = byTag.agents[0]!;
    for (const field of ['public_key', 'display_name', 'last_active_at', 'capabilities'])
      assert.ok(field in peer, `discover result has ${field}`);
    assert.deepEqual(keys(await other.discover({ q: 'translat' })), [agent.publicKey]);
    assert.deepEqual(keys(await other.discover({ name: 'SpecTrans' })), [agent.publicKey]);
    assert.deepEqual(keys(await other.discover({ tag: 'nothing-like-it' })), []);
    const all = await other.discover({ activeSince: new Date(Date.now() - 3_600_000).toISOString(), limit: 1 });
    assert.equal(all.agents.length, 1);
    assert.equal(all.has_more, true);
  });

  it('send({ to, body, contentType, threadId, inReplyTo, attachments, expiresIn, metadata }) arrives with every field; messages({ status, limit, wait }) yields it; reply(msg, body) threads it; status and thread', async (t) => {
    const r = await startRelay(t);
    const alice = agentOn(t, r.url);
    const bob = agentOn(t, r.url);
    const blob = await alice.upload(Buffer.from('spec attachment'), 'text/plain');
    assert.equal(blob.size, 15);
    assert.match(blob.blob_id, /\S/);
    const first = await alice.send({ to: bob.publicKey, body: { n: 1 } });
    const id = await alice.send({
      to: bob.publicKey,
      body: { text: 'hi' },
      contentType: 'application/json',
      threadId: 'thread-spec-1',
      inReplyTo: first,
      attachments: [blob.blob_id],
      expiresIn: 600,
      metadata: { k: 'v' },
    });
    const [m1, m2] = await take(bob, 2, { limit: 1 });
    assert.equal(m1!.message_id, first);
    assert.equal(m2!.message_id, id);
    assert.deepEqual(m2!.body, { text: 'hi' });
    assert.equal(m2!.content_type, 'application/json');
    assert.equal(m2!.thread_id, 'thread-spec-1');
    assert.equal(m2!.in_reply_to, first);
    assert.equal(m2!.sender_key, alice.publicKey);
    assert.deepEqual(
      m2!.attachments.map((a) => a.blob_id),
      [blob.blob_id],
    );
    assert.deepEqual(m2!.metadata, { k: 'v' });
    const ttl = Date.parse(m2!.expires_at) - Date.parse(m2!.created_at);
    assert.ok(ttl > 590_000 && ttl <= 600_000, `expires in 600 s (got ${ttl} ms)`);
    // The attachment can be downloaded by the recipient: bytes and content type.
    const down = await bob.download(m2!.attachments[0]!.blob_id);
    assert.equal(down.data.toString(), 'spec attachment');
    assert.equal(down.contentType, 'text/plain');

    const replyId = await bob.reply(m2!, { ok: true });
    const [answer] = await take(alice, 1);
    assert.equal(answer!.message_id, replyId);
    assert.equal(answer!.in_reply_to, id);
    assert.equal(answer!.thread_id, 'thread-spec-1');
    assert.deepEqual(answer!.body, { ok: true });

    const st = await alice.status(id);
    assert.equal(st.message_id, id);
    assert.equal(st.status, 'delivered');
    const thread = await alice.thread('thread-spec-1');
    assert.deepEqual(
      thread.messages.map((m) => m.message_id),
      [id, replyId],
    );
    // Each message comes once: a new loop's first poll (answered, not guessed at with a timer)
    // finds nothing, and the loop yields nothing before it is stopped.
    const poll = bob.client.poll.bind(bob.client);
    const pages: number[] = [];
    let answered!: () => void;
    const firstPage = new Promise<void>((resolve) => {
      answered = resolve;
    });
    t.mock.method(bob.client, 'poll', async (...args: Parameters<typeof poll>) => {
      const page = await poll(...args);
      if (args[0]?.status !== 'delivered') {
        pages.push(page.messages.length);
        answered();
      }
      return page;
    });
    const again = bob.messages({ wait: 0 })[Symbol.asyncIterator]();
    const next = again.next();
    await firstPage;
    await bob.stop();
    assert.equal((await next).done, true, 'nothing yielded again');
    assert.equal(pages[0], 0, 'the relay offers nothing more');
  });

  it('messages({ status: "sent" }) iterates; a string body is sent as JSON', async (t) => {
    const r = await startRelay(t);
    const alice = agentOn(t, r.url);
    const bob = agentOn(t, r.url);
    await alice.send(bob.publicKey, 'plain words');
    for await (const m of bob.messages({ status: 'sent', limit: 5, wait: 5 })) {
      assert.equal(m.body, 'plain words');
      break;
    }
  });

  for (const mode of ['websocket', 'poll'] as const) {
    it(`onMessage + run({ mode: '${mode}' }): an object return is the reply, a string return is {"text": …}, undefined and null send nothing`, async (t) => {
      const r = await startRelay(t);
      const server = agentOn(t, r.url);
      const client = agentOn(t, r.url);
      await serve(
        t,
        server,
        async (msg) => {
          const kind = (msg.body as { kind: string }).kind;
          if (kind === 'object') return { echoed: kind };
          if (kind === 'string') return 'hello there';
          if (kind === 'null') return null;
          return undefined;
        },
        mode,
      );
      const handled: string[] = [];
      server.on('handled', (e) => handled.push(e.message.message_id));
      const ids = [];
      for (const kind of ['object', 'string', 'null', 'undefined'])
        ids.push(await client.send({ to: server.publicKey, body: { kind } }));
      const replies = await take(client, 2);
      const byParent = new Map(replies.map((m) => [m.in_reply_to, m]));
      const objectReply = byParent.get(ids[0]!);
      assert.deepEqual(objectReply?.body, { echoed: 'object' });
      assert.equal(objectReply?.content_type, 'application/json');
      const stringReply = byParent.get(ids[1]!);
      assert.deepEqual(stringReply?.body, { text: 'hello there' });
      assert.equal(stringReply?.content_type, 'application/json');
      // The null and undefined messages were handled, and nothing came back for them.
      while (!ids.every((id) => handled.includes(id))) await server.next('handled');
      const status = await Promise.all(ids.map((id) => client.status(id)));
      assert.deepEqual(
        status.map((s) => s.status),
        ['delivered', 'delivered', 'delivered', 'delivered'],
      );
      const more = await client.client.poll({ wait: 0 });
      assert.deepEqual(more.messages, []);
    });
  }

  it('run({ mode: "websocket" }) is a loop that reconnects by itself: a relay restarted on its address is served again', async (t) => {
    const dataDir = tempDir(t);
    const first = await startRelay(t, { dataDir });
    const port = Number(new URL(first.url).port);
    const server = new Agent({ relayUrl: first.url, keypair: Keypair.generate(), journal: false });
    await serve(t, server, async (msg) => ({ got: msg.body }));
    const disconnected = server.next('disconnected');
    await first.relay.close();
    await disconnected;
    const reconnected = server.next('connected');
    const second = await startRelay(t, { dataDir, port });
    assert.equal(second.url, first.url);
    await reconnected;
    const peer = agentOn(t, second.url);
    const id = await peer.send(server.publicKey, { after: 'restart' });
    const [reply] = await take(peer, 1);
    assert.equal(reply!.in_reply_to, id);
    assert.deepEqual(reply!.body, { got: { after: 'restart' } });
  });

  it('ACL: allow, block, unblock (removes the entry), listAcl() and listAcl("allow")', async (t) => {
    const r = await startRelay(t);
    const owner = agentOn(t, r.url);
    const friend = agentOn(t, r.url);
    const pest = agentOn(t, r.url);
    await owner.allow(friend.publicKey);
    await owner.block(pest.publicKey);
    const all = await owner.listAcl();
    assert.deepEqual(
      all.entries.map((e) => `${e.entry_type}:${e.peer_key}`).sort(),
      [`allow:${friend.publicKey}`, `block:${pest.publicKey}`].sort(),
    );
    assert.deepEqual(
      (await owner.listAcl('allow')).entries.map((e) => e.peer_key),
      [friend.publicKey],
    );
    assert.deepEqual(
      (await owner.listAcl({ type: 'block' })).entries.map((e) => e.peer_key),
      [pest.publicKey],
    );
    // A blocked sender is refused.
    await assert.rejects(
      pest.client.send({ recipient_key: owner.publicKey, body: { x: 1 } }),
      (e: unknown) => e instanceof RelayError && e.status === 403,
    );
    await owner.unblock(pest.publicKey);
    assert.deepEqual(
      (await owner.listAcl()).entries.map((e) => e.peer_key),
      [friend.publicKey],
    );
    await pest.send(owner.publicKey, { x: 2 });
    const [m] = await take(owner, 1);
    assert.equal(m!.sender_key, pest.publicKey);
  });

  it('decrypt(msg) of an application/x-m2m-encrypted message → plaintext body and content type; reply() to it is sealed', async (t) => {
    const r = await startRelay(t);
    const alice = agentOn(t, r.url);
    const bob = agentOn(t, r.url);
    const id = await alice.send({ to: bob.publicKey, body: { secret: 42 }, encrypt: true });
    const raw = await bob.client.getMessage(id);
    assert.equal(raw.content_type, 'application/x-m2m-encrypted');
    assert.ok(!JSON.stringify(raw.body).includes('42'), 'the relay holds ciphertext');
    const opened = await bob.decrypt(raw);
    assert.deepEqual(opened.body, { secret: 42 });
    assert.equal(opened.contentType, 'application/json');
    assert.equal(opened.encrypted, true);
    // A plain message decrypts to itself.
    const plainId = await alice.send(bob.publicKey, { open: true });
    const plain = await bob.decrypt(await bob.client.getMessage(plainId));
    assert.deepEqual(plain, { body: { open: true }, contentType: 'application/json', encrypted: false });
    // messages() yields it opened; a reply to it is sealed for the sender.
    const [m] = await take(bob, 1);
    assert.deepEqual(m!.body, { secret: 42 });
    const replyId = await bob.reply(m!, { thanks: true });
    const sealed = await alice.client.getMessage(replyId);
    assert.equal(sealed.content_type, 'application/x-m2m-encrypted');
    assert.deepEqual((await alice.decrypt(sealed)).body, { thanks: true });
    // A reply to the raw envelope (read with getMessage or thread, never decrypted) is sealed too.
    const rawReplyId = await alice.reply(await alice.client.getMessage(replyId), { still: 'secret' });
    const rawReply = await bob.client.getMessage(rawReplyId);
    assert.equal(rawReply.content_type, 'application/x-m2m-encrypted');
    assert.deepEqual((await bob.decrypt(rawReply)).body, { still: 'secret' });
  });

  it('upload(bytes, contentType) → { blob_id, size }; download(blob_id) → { data, contentType }, binary-exact', async (t) => {
    const r = await startRelay(t);
    const agent = agentOn(t, r.url);
    const bytes = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 31) & 0xff));
    const info = await agent.upload(bytes, 'application/octet-stream');
    assert.equal(info.size, bytes.length);
    assert.equal(info.hash, createHash('sha256').update(bytes).digest('hex'));
    const { data, contentType } = await agent.download(info.blob_id);
    assert.ok(data.equals(bytes));
    assert.equal(contentType, 'application/octet-stream');
    // The options form and a file stream.
    const dir = tempDir(t);
    const file = join(dir, 'report.pdf');
    writeFileSync(file, '%PDF-1.4 spec');
    const fromFile = await agent.upload(await fileBlobInput(file), { contentType: 'application/pdf' });
    const back = await agent.download(fromFile.blob_id);
    assert.equal(back.data.toString(), '%PDF-1.4 spec');
    assert.equal(back.contentType, 'application/pdf');
  });

  it('a 429 is a RateLimitError with retryAfter (seconds)', async (t) => {
    const r = await startRelay(t, { sendRatePerMinute: 1 });
    const kp = Keypair.generate();
    const to = Keypair.generate().publicKey;
    const client = new RelayClient({ relayUrl: r.url, keypair: kp, maxAttempts: 1 });
    await client.send({ recipient_key: to, body: { n: 1 } });
    const err = await client.send({ recipient_key: to, body: { n: 2 } }).then(
      () => assert.fail('the second send was accepted'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof RateLimitError, String(err));
    assert.ok(err instanceof RelayError);
    assert.equal(err.status, 429);
    assert.equal(typeof err.retryAfter, 'number');
    assert.ok(err.retryAfter! > 0 && err.retryAfter! <= 60, `retryAfter ${err.retryAfter}`);
  });

  it('setWebhook(url, secret) / getWebhook() / deleteWebhook(); a delivery verifies with the exported helpers', async (t) => {
    const r = await startRelay(t, { allowPrivateWebhooks: true });
    const agent = agentOn(t, r.url);
    const sender = agentOn(t, r.url);
    const secret = 'whsec_spec_0123456789abcdef0123456789';
    const deliveries: Array<{ headers: Record<string, unknown>; body: Buffer }> = [];
    let arrived: (() => void) | undefined;
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        deliveries.push({ headers: req.headers, body: Buffer.concat(chunks) });
        res.writeHead(200).end();
        arrived?.();
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    t.after(() => server.close());
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
    const set = await agent.setWebhook(url, secret);
    assert.equal(set.url, url);
    const got = await agent.getWebhook();
    assert.equal(got.url, url);
    assert.equal(got.enabled, true);
    assert.ok(!JSON.stringify(got).includes(secret), 'the secret is never read back');

    const came = new Promise<void>((res) => (arrived = res));
    const id = await sender.send(agent.publicKey, { via: 'webhook' });
    await came;
    const d = deliveries[0]!;
    const signature = d.headers[WEBHOOK_HEADERS.signature] as string;
    assert.equal(verifyWebhookSignature(secret, d.body, signature), true);
    assert.equal(verifyWebhookSignature('another-secret-of-16+', d.body, signature), false);
    assert.equal(verifyWebhookSignature(secret, Buffer.concat([d.body, Buffer.from(' ')]), signature), false);
    assert.equal(webhookSignature(secret, d.body), signature);
    assert.equal(checkWebhookTimestamp(d.headers[WEBHOOK_HEADERS.timestamp] as string, Date.now()), 'ok');
    assert.equal(
      checkWebhookTimestamp(d.headers[WEBHOOK_HEADERS.timestamp] as string, Date.now() + 3_600_000),
      'too_old',
    );
    assert.equal(JSON.parse(d.body.toString()).message.message_id, id);
    assert.equal(typeof WebhookSource, 'function');

    await agent.deleteWebhook();
    await assert.rejects(agent.getWebhook(), (e: unknown) => e instanceof RelayError && e.status === 404);
  });
});

describe('spec §9.1: arguments a JavaScript caller gets wrong', () => {
  const invalid = (e: unknown) => e instanceof MrpError && e.code === 'invalid_argument';

  it('send/reply: encrypt must be a boolean (never silently in the clear), attachments an array', async (t) => {
    const r = await startRelay(t);
    const alice = agentOn(t, r.url);
    const bob = agentOn(t, r.url);
    for (const encrypt of ['yes', 1, 'true'])
      await assert.rejects(alice.send({ to: bob.publicKey, body: { s: 1 }, encrypt: encrypt as never }), invalid);
    await assert.rejects(
      alice.send({ to: bob.publicKey, body: {}, attachments: 'blob_x' as never }),
      (e: unknown) => invalid(e) && (e as Error).message.includes('attachments'),
    );
    // Nothing of the refused sends reached the relay.
    const id = await alice.send({ to: bob.publicKey, body: { n: 'last' } });
    const [m] = await take(bob, 1);
    assert.equal(m!.message_id, id);
    await assert.rejects(bob.reply(m!, {}, { encrypt: 'yes' as never }), invalid);
    await assert.rejects(bob.reply(m!, {}, { attachments: 'blob_x' as never }), invalid);
    // reply takes blob ids like send does.
    const blob = await bob.upload('reply attachment', 'text/plain');
    const replyId = await bob.reply(m!, { see: 'attached' }, { attachments: [blob.blob_id] });
    const [answer] = await take(alice, 1);
    assert.equal(answer!.message_id, replyId);
    assert.deepEqual(
      answer!.attachments.map((a) => a.blob_id),
      [blob.blob_id],
    );
    assert.equal((await alice.download(blob.blob_id)).data.toString(), 'reply attachment');
  });

  it('send/reply: the body may be left out when there are attachments (§3.6), not otherwise', async (t) => {
    const r = await startRelay(t);
    const alice = agentOn(t, r.url);
    const bob = agentOn(t, r.url);
    const blob = await alice.upload(Buffer.from('only a file'), 'text/plain');
    const id = await alice.send({ to: bob.publicKey, attachments: [blob.blob_id] });
    const sealedId = await alice.send(bob.publicKey, undefined, { attachments: [blob.blob_id], encrypt: true });
    await assert.rejects(alice.send({ to: bob.publicKey }), (e: unknown) => invalid(e) && /body/.test(String(e)));
    await assert.rejects(alice.send({ to: bob.publicKey, attachments: [] }), invalid);
    const [m, sealed] = await take(bob, 2);
    assert.equal(m!.message_id, id);
    assert.equal(m!.body, null);
    assert.deepEqual(
      m!.attachments.map((a) => a.blob_id),
      [blob.blob_id],
    );
    assert.equal(sealed!.message_id, sealedId);
    assert.equal(sealed!.body, null);
    const back = await bob.upload(Buffer.from('answer file'), 'text/plain');
    const replyId = await bob.reply(m!, undefined, { attachments: [back.blob_id] });
    await assert.rejects(bob.reply(m!, undefined), invalid);
    const [answer] = await take(alice, 1);
    assert.equal(answer!.message_id, replyId);
    assert.equal(answer!.body, null);
    assert.equal(answer!.in_reply_to, id);
  });

  it('status/thread: a missing or malformed id is invalid_argument, not a request for "undefined"', async (t) => {
    const r = await startRelay(t);
    const agent = agentOn(t, r.url);
    for (const id of [undefined, '', '\ud800', 'a\nb', 5])
      await assert.rejects(agent.status(id as never), invalid, String(id));
    for (const id of [undefined, '', '\ud800', 'x'.repeat(300)])
      await assert.rejects(agent.thread(id as never), invalid, String(id));
    await assert.rejects(agent.client.getMessage(undefined as never), invalid);
  });

  it('discover({ activeSince }) takes a Date as well as an RFC 3339 string', async (t) => {
    const r = await startRelay(t);
    const peer = agentOn(t, r.url, { name: 'Recent', visibility: 'public' });
    await peer.register();
    const seeker = agentOn(t, r.url);
    const res = await seeker.discover({ activeSince: new Date(Date.now() - 3_600_000) });
    assert.deepEqual(
      res.agents.map((a) => a.public_key),
      [peer.publicKey],
    );
    assert.deepEqual((await seeker.discover({ activeSince: new Date(Date.now() + 3_600_000) })).agents, []);
    await assert.rejects(seeker.discover({ activeSince: new Date(Number.NaN) }), invalid);
  });
});

describe('README Library samples, run as written (local relay)', () => {
  it('the Agent sample: new Agent(url, { keyFile, name, capabilities }), onMessage, on("handled"), run({ mode: "websocket" })', async (t) => {
    const relay = await createTestRelay();
    t.after(() => relay.close());
    const dir = tempDir(t);
    const agent = new Agent(relay.url, {
      keyFile: join(dir, 'realtime.key'),
      name: 'RealtimeBot',
      capabilities: [{ name: 'translate', description: 'Translate text', tags: ['text', 'i18n'] }],
    });
    agent.onMessage(async (_msg, _ctx) => ({ translation: 'Hola' }));
    const outcomes: string[] = [];
    agent.on('handled', (e) => outcomes.push(`${e.outcome} ${typeof e.durationMs}`));
    const announced = agent.next('announced');
    const running = agent.run({ mode: 'websocket' });
    await announced;
    const peer = agentOn(t, relay.url);
    const id = await peer.send(agent.publicKey, { text: 'Hello' });
    const [reply] = await take(peer, 1);
    assert.equal(reply!.in_reply_to, id);
    assert.deepEqual(reply!.body, { translation: 'Hola' });
    assert.deepEqual(outcomes, ['replied number']);
    await agent.stop();
    await running;
  });

  it('the testing sample: invoke(handler, { body }) and an Agent over createTestRelay()', async (t) => {
    const handler: Handler = async () => ({ translation: 'Hola' });
    const result = await invoke(handler, { body: { text: 'Hello' } });
    assert.equal(result.outcome, 'ok');
    assert.deepEqual(result.reply?.body, { translation: 'Hola' });
    assert.equal(result.reply?.contentType, 'application/json');
    const relay = await createTestRelay();
    t.after(() => relay.close());
    const dir = tempDir(t);
    const agent = new Agent(relay.url, { keyFile: join(dir, 'test.key'), journal: false }).onMessage(handler);
    await serve(t, agent, handler);
    const peer = agentOn(t, relay.url);
    await peer.send(agent.publicKey, { text: 'Hello' });
    const [reply] = await take(peer, 1);
    assert.deepEqual(reply!.body, { translation: 'Hola' });
  });

  it('the "parts underneath" import line: RelayClient, Session, Runtime, Keypair, isRetryable', () => {
    for (const part of [RelayClient, Session, Runtime, Keypair, isRetryable]) assert.equal(typeof part, 'function');
    const limited = new RateLimitError('rate_limit_exceeded', 'slow down', { status: 429, retryAfter: 7 });
    assert.equal(limited.retryAfter, 7);
    assert.equal(isRetryable(limited), true);
  });

  it('the blob sample: RelayClient uploadBlob(fileBlobInput) → send with attachments → downloadBlob / downloadBlobBytes / headBlob; deleteBlob refused while referenced', async (t) => {
    const relay = await createTestRelay();
    t.after(() => relay.close());
    const dir = tempDir(t);
    const file = join(dir, 'report.pdf');
    writeFileSync(file, Buffer.alloc(5000, 1));
    const client = new RelayClient({ relayUrl: relay.url, keypair: Keypair.generate() });
    const bob = Keypair.generate().publicKey;
    let progressed = 0;
    const info = await client.uploadBlob(await fileBlobInput(file), {
      contentType: 'application/pdf',
      onProgress: (sent) => {
        progressed = sent;
      },
    });
    assert.equal(progressed, 5000);
    await client.send({
      recipient_key: bob,
      body: { see: 'attached' },
      attachments: [{ blob_id: info.blob_id, filename: 'report.pdf' }],
    });
    const { info: head, body } = await client.downloadBlob(info.blob_id);
    assert.equal(head.size, 5000);
    let n = 0;
    for await (const chunk of body) n += (chunk as Uint8Array).length;
    assert.equal(n, 5000);
    const small = await client.downloadBlobBytes(info.blob_id, { maxBytes: 1 << 20 });
    assert.equal(small.length, 5000);
    assert.equal((await client.headBlob(info.blob_id)).size, 5000);
    await assert.rejects(
      client.deleteBlob(info.blob_id),
      (e: unknown) => e instanceof RelayError && e.code === 'blob_referenced' && e.status === 409,
    );
  });
});
