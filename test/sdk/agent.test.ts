/**
 * The library's `Agent` against a real relay in process: announce, serve (threaded replies, the
 * error convention of `mrp run`), send, iterate the inbox once per message across restarts, drain
 * on stop, and the key file it creates or reads.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { Agent, Keypair, RateLimitError, RelayClient, UsageError } from '../../src/index.js';
import type { Message } from '../../src/protocol/types.js';
import { SqliteStore } from '../../src/relay/store/sqlite-store.js';
import { invoke } from '../../src/testing.js';
import { gate, Peer } from '../helpers/agent.js';
import { hookedStore, newAgent, signed, startRelay } from '../helpers/relay.js';

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'mrp-sdk-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Runs the agent until the test ends; resolves once it is connected, with run()'s promise. */
async function serve(
  t: TestContext,
  agent: Agent,
  mode: 'websocket' | 'ws' | 'poll' = 'websocket',
): Promise<{ running: Promise<void> }> {
  const connected = agent.next('connected');
  const running = agent.run({ mode });
  running.catch(() => undefined);
  t.after(() => agent.stop());
  await connected;
  return { running };
}

describe('Agent', () => {
  for (const mode of ['ws', 'poll'] as const) {
    it(`announces its profile and answers threaded (${mode})`, async (t) => {
      const relay = await startRelay(t, { sendRatePerMinute: 0 });
      const dir = tempDir(t);
      const keyFile = join(dir, 'realtime.key');
      const agent = new Agent(relay.url, {
        keyFile,
        name: 'RealtimeBot',
        capabilities: [{ name: 'translate', description: 'Translate text', tags: ['text', 'i18n'] }],
        metadata: { version: '1' },
        graceMs: 5000,
      });
      assert.equal(statSync(keyFile).mode & 0o777, 0o600, 'key file created 0600');
      const seen: Message[] = [];
      agent.onMessage(async (msg, ctx) => {
        seen.push(msg);
        assert.equal(ctx.self, agent.publicKey);
        return { translation: 'Hola' };
      });
      const announced = agent.next('announced');
      const { running } = await serve(t, agent, mode);
      await announced;
      const profile = await signed(relay.url, newAgent(), 'GET', `/v1/agents/${agent.publicKey}`);
      assert.equal(profile.status, 200);
      assert.equal(profile.body.display_name, 'RealtimeBot');
      assert.deepEqual(profile.body.capabilities, [
        { name: 'translate', description: 'Translate text', tags: ['text', 'i18n'] },
      ]);
      assert.deepEqual(profile.body.metadata, { version: '1' });

      const peer = await Peer.connect(t, relay);
      const handled = agent.next('handled');
      const { message_id } = await peer.send(agent.publicKey, { text: 'Hello' });
      const [reply] = await peer.waitForReplies(1);
      assert.deepEqual(reply!.body, { translation: 'Hola' });
      assert.equal(reply!.in_reply_to, message_id);
      assert.equal(reply!.thread_id, message_id);
      assert.equal(reply!.sender_key, agent.publicKey);
      const [event] = await handled;
      assert.equal(event.outcome, 'replied');
      assert.equal(event.message.message_id, message_id);
      assert.equal(seen.length, 1);

      // agent.send: a key in, the relay's id out; the peer gets exactly that message.
      const id = await agent.send(peer.publicKey, { hello: 'peer' });
      const got = await peer.waitForReplies(2);
      assert.equal(got[1]!.message_id, id);
      assert.deepEqual(got[1]!.body, { hello: 'peer' });

      await agent.stop();
      await running;
    });
  }

  it('sends a thrown error back exactly as invoke (and mrp run) shape it', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0 });
    const handler = async (msg: Message) => {
      if ((msg.body as { n: number }).n === 1)
        throw Object.assign(new Error('no such language'), { code: 'unsupported_language' });
      throw new Error('boom');
    };
    const agent = new Agent(relay.url, { keyFile: join(tempDir(t), 'k.key') });
    agent.onMessage(handler);
    await serve(t, agent);
    const peer = await Peer.connect(t, relay);
    for (const n of [1, 2]) {
      const { message_id } = await peer.send(agent.publicKey, { n });
      const replies = await peer.waitForReplies(n);
      const reply = replies.find((r) => r.in_reply_to === message_id)!;
      const local = await invoke(handler, { body: { n } });
      assert.deepEqual(reply.body, local.reply!.body);
      assert.equal(reply.content_type, local.reply!.contentType);
    }
    assert.deepEqual(peer.replies[0]!.body, {
      status: 'error',
      error: { code: 'unsupported_language', message: 'no such language' },
    });
  });

  it('log: what a peer wrote reaches the log lines escaped, one line per event', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0 });
    const lines: string[] = [];
    const agent = new Agent(relay.url, { keyFile: join(tempDir(t), 'k.key'), log: (line) => lines.push(line) });
    agent.onMessage((msg, ctx) => {
      ctx.log.info(`asked: ${(msg.body as { text: string }).text}`);
      return null;
    });
    await serve(t, agent);
    const peer = await Peer.connect(t, relay);
    const logged = agent.next('log');
    await peer.send(agent.publicKey, { text: '\u001b]0;pwned\u0007\u001b[2J\r\nfake line\u202e' });
    await logged;
    const line = lines.find((l) => l.includes('asked:'));
    assert.ok(line, lines.join('\n'));
    assert.equal(line, 'mrp [info] asked: \\x1b]0;pwned\\x07\\x1b[2J\\r\\nfake line\\u202e');
    assert.ok(!lines.some((l) => /[\u0000-\u001f\u007f-\u009f\u202e]/.test(l)), 'no control characters');
  });

  it('messages() with log: an encrypted message that cannot be opened is skipped with a log line saying so', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0 });
    const lines: string[] = [];
    const agent = new Agent(relay.url, { keyFile: join(tempDir(t), 'k.key'), log: (line) => lines.push(line) });
    const peer = await Peer.connect(t, relay);
    // A tampered envelope: a peer's text in it must not reach the log raw either.
    const bad = (
      await peer.send(
        agent.publicKey,
        { v: 1, enc: 'AAAA', ct: 'AAAA\u001b[2J', ct_content_type: 'application/json' },
        { content_type: 'application/x-m2m-encrypted' },
      )
    ).message_id;
    const good = (await peer.send(agent.publicKey, { ok: 1 })).message_id;
    for await (const msg of agent.messages({ wait: 1 })) {
      assert.equal(msg.message_id, good);
      break;
    }
    const line = lines.find((l) => l.includes(bad));
    assert.ok(line, lines.join('\n'));
    assert.match(line, /^mrp invalid message msg_\S+ from \S+ \(\w+\): .+; skipped$/);
    assert.ok(!lines.some((l) => /[\u0000-\u001f\u007f-\u009f]/.test(l)), 'no control characters');
  });

  it('send() refuses a body over 1 MiB before sending: payload_too_large, worded for a message', async (t) => {
    const relay = await startRelay(t);
    const agent = new Agent(relay.url, { keyFile: join(tempDir(t), 'k.key') });
    await assert.rejects(agent.send(Keypair.generate().publicKey, { s: 'x'.repeat(1_100_000) }), (err: Error) => {
      assert.equal((err as { code?: string }).code, 'payload_too_large');
      assert.match(err.message, /^the message is 1100008 bytes; the most a message body may be is \d+ bytes/);
      assert.ok(err instanceof UsageError, 'a typed error: the caller passed it');
      return true;
    });
    await assert.rejects(agent.send(agent.publicKey, undefined as never), (err: Error) => {
      assert.ok(err instanceof UsageError);
      assert.equal((err as UsageError).code, 'invalid_argument');
      assert.equal(err.message, 'agent.send: a body is required unless attachments are given');
      return true;
    });
  });

  it('send() by a suspended agent fails at once with agent_suspended instead of retrying forever', {
    timeout: 20_000,
  }, async (t) => {
    const relay = await startRelay(t);
    const agent = new Agent(relay.url, { keyFile: join(tempDir(t), 'k.key') });
    await agent.send(Keypair.generate().publicKey, { before: true });
    await relay.relay.setAgentStatus(agent.publicKey, 'suspended');
    const late = setTimeout(() => void agent.stop(), 10_000);
    t.after(() => clearTimeout(late));
    await assert.rejects(agent.send(Keypair.generate().publicKey, { after: true }), (err: Error) => {
      assert.equal((err as { code?: string }).code, 'agent_suspended', String(err));
      return true;
    });
  });

  it('stop() gives a send still retrying (the relay is down) graceMs, then it rejects with aborted', {
    timeout: 20_000,
  }, async (t) => {
    // A "relay" that drops every connection: each attempt fails, and is counted.
    let attempts = 0;
    let second!: () => void;
    const retried = new Promise<void>((r) => (second = r));
    const down = createServer((socket) => {
      if (++attempts === 2) second();
      socket.destroy();
    });
    await new Promise<void>((r) => down.listen(0, '127.0.0.1', r));
    t.after(() => new Promise<void>((r) => down.close(() => r())));
    const url = `http://127.0.0.1:${(down.address() as AddressInfo).port}`;
    const agent = new Agent(url, { keyFile: join(tempDir(t), 'k.key'), graceMs: 300 });
    let settled = false;
    const sent = agent.send(Keypair.generate().publicKey, { n: 1 }).finally(() => (settled = true));
    sent.catch(() => undefined);
    await retried;
    assert.equal(settled, false, 'still retrying while the relay is down');
    const started = Date.now();
    await agent.stop();
    assert.ok(Date.now() - started < 5000, 'stop() does not wait for the relay to come back');
    await assert.rejects(sent, (err: Error) => {
      assert.equal((err as { code?: string }).code, 'aborted');
      assert.match(
        err.message,
        /^agent\.stop\(\) gave up on this message before the relay accepted it; it may not have been sent/,
      );
      return true;
    });
    const tried = attempts;
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(attempts, tried, 'nothing retries after stop()');
  });

  it('send() announces the profile in the options first, once: the peer the message reaches finds the sender by name', async (t) => {
    const relay = await startRelay(t);
    const peer = await Peer.connect(t, relay);
    const agent = new Agent(relay.url, {
      keyFile: join(tempDir(t), 'sender.key'),
      name: 'Sender',
      capabilities: [{ name: 'echo', description: 'says it back', tags: ['text'] }],
    });
    const announced: string[] = [];
    agent.on('announced', (p) => announced.push(p.display_name ?? ''));
    const id = await agent.send(peer.publicKey, { n: 1 });
    const [got] = await peer.waitForReplies(1);
    assert.equal(got!.message_id, id);
    const profile = await peer.client.getAgent(got!.sender_key);
    assert.equal(profile.display_name, 'Sender');
    assert.deepEqual(
      profile.capabilities.map((c) => c.name),
      ['echo'],
    );
    await Promise.all([agent.send(peer.publicKey, { n: 2 }), agent.send(peer.publicKey, { n: 3 })]);
    assert.deepEqual(announced, ['Sender'], 'announced once');
    // An agent without profile options sends without a PATCH.
    const plain = new Agent(relay.url, { keyFile: join(tempDir(t), 'plain.key') });
    plain.on('announced', () => assert.fail('nothing to announce'));
    await plain.send(peer.publicKey, { n: 4 });
  });

  it('send() gives up after sendTimeoutMs: a relay that stays unreachable rejects with the network error, a rate limit that outlasts it with RateLimitError', {
    timeout: 20_000,
  }, async (t) => {
    // A port nothing listens on.
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const down = new Agent(`http://127.0.0.1:${port}`, { keypair: Keypair.generate(), sendTimeoutMs: 300 });
    await assert.rejects(down.send(Keypair.generate().publicKey, { n: 1 }), (err: Error & { kind?: string }) => {
      assert.equal(err.kind, 'network', err.message);
      return true;
    });

    const relay = await startRelay(t, { sendRatePerMinute: 1 });
    const agent = new Agent(relay.url, { keypair: Keypair.generate(), sendTimeoutMs: 2_000 });
    await agent.send(Keypair.generate().publicKey, { n: 1 });
    const started = Date.now();
    await assert.rejects(agent.send(Keypair.generate().publicKey, { n: 2 }), (err: Error) => {
      assert.ok(err instanceof RateLimitError, `${err.name}: ${err.message}`);
      assert.equal(err.code, 'rate_limit_exceeded');
      assert.ok((err.retryAfter ?? 0) > 2, `retryAfter ${err.retryAfter}`);
      return true;
    });
    assert.ok(Date.now() - started < 2_000, 'given up at once: the wait would outlast sendTimeoutMs');
    // Infinity is accepted (until stop()); nonsense is named.
    assert.doesNotThrow(() => new Agent(relay.url, { keypair: Keypair.generate(), sendTimeoutMs: Infinity }));
    assert.throws(() => new Agent(relay.url, { keypair: Keypair.generate(), sendTimeoutMs: -1 }), /sendTimeoutMs/);
  });

  it('an agent sends again after stop()', async (t) => {
    const relay = await startRelay(t);
    const agent = new Agent(relay.url, { keyFile: join(tempDir(t), 'k.key'), graceMs: 300 });
    await agent.send(Keypair.generate().publicKey, { n: 1 });
    await agent.stop();
    assert.match(await agent.send(Keypair.generate().publicKey, { n: 2 }), /^msg_/);
  });

  it('messages(): a message a codec written elsewhere opens to nothing is reported and skipped, the loop goes on', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0 });
    const peer = await Peer.connect(t, relay);
    const agent = new Agent(relay.url, {
      keyFile: join(tempDir(t), 'codec.key'),
      codec: {
        // A bug: no answer for one body.
        open: async (m) => ((m.body as { bad?: boolean }).bad ? undefined : { message: m, encrypted: false }) as never,
        seal: async (body) => body,
      },
    });
    const invalid: string[] = [];
    agent.on('invalid_message', (e) => invalid.push(String(e.messageId)));
    const bad = (await peer.send(agent.publicKey, { bad: true })).message_id;
    const good = (await peer.send(agent.publicKey, { ok: 1 })).message_id;
    for await (const msg of agent.messages()) {
      assert.equal(msg.message_id, good);
      break;
    }
    assert.deepEqual(invalid, [bad]);
  });

  it('messages() yields each message once, across loops and restarts; breaking out finishes the current one', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0 });
    const keyFile = join(tempDir(t), 'inbox.key');
    const peer = await Peer.connect(t, relay);
    const first = new Agent(relay.url, { keyFile });
    const ids: string[] = [];
    for (let n = 1; n <= 4; n++) ids.push((await peer.send(first.publicKey, { n })).message_id);

    const loop1: string[] = [];
    for await (const msg of first.messages()) {
      loop1.push(msg.message_id);
      if (loop1.length === 2) break; // the loop is done with it: it never comes again
    }
    assert.deepEqual(loop1, ids.slice(0, 2));

    // The same agent, a second loop: it starts after what the first yielded.
    const again: string[] = [];
    for await (const msg of first.messages()) {
      again.push(msg.message_id);
      break;
    }
    assert.deepEqual(again, ids.slice(2, 3));

    // A new process (a new Agent on the same key file): nothing yielded before comes again.
    const second = new Agent(relay.url, { keyFile, graceMs: 5000 });
    assert.equal(second.publicKey, first.publicKey);
    const loop2: string[] = [];
    const extra = (await peer.send(second.publicKey, { n: 5 })).message_id;
    for await (const msg of second.messages()) {
      loop2.push(msg.message_id);
      if (loop2.length === 2) void second.stop(); // ends the loop when it asks for the next one
    }
    assert.deepEqual(loop2, [ids[3], extra]);

    const third = new Agent(relay.url, { keyFile });
    const later = (await peer.send(third.publicKey, { n: 6 })).message_id;
    const reply = third.reply.bind(third);
    for await (const msg of third.messages()) {
      assert.equal(msg.message_id, later, 'done messages are never yielded again');
      const replyId = await reply(msg, { got: msg.body });
      const [r] = await peer.waitForReplies(1);
      assert.equal(r!.message_id, replyId);
      assert.equal(r!.in_reply_to, later);
      assert.equal(r!.thread_id, later);
      break;
    }
  });

  it('messages() holds at most maxQueuedBytes of messages while the loop is busy; the rest wait on the relay', {
    timeout: 60_000,
  }, async (t) => {
    // Every poll's take is seen as the relay makes it: how many the agent holds is checked then,
    // at each take, for the whole run (no window of time to wait out).
    let taken = 0;
    let yielded = 0;
    let mostHeld = 0;
    let onTaken: (() => void) | undefined;
    const dataDir = await mkdtemp(join(tmpdir(), 'mrp-relay-'));
    const inner = new SqliteStore(dataDir);
    const store = hookedStore(inner, async (_filter, result) => {
      taken += result.messages.length;
      // The loop's current message counts as yielded; one more may be on its way to the loop.
      mostHeld = Math.max(mostHeld, taken - yielded);
      onTaken?.();
    });
    const relay = await startRelay(t, {
      store,
      dataDir,
      sendRatePerMinute: 0,
      receiveRatePerMinute: 0,
      requestRatePerMinute: 0,
    });
    // After the relay's own close (hooks run in the order they were added): the store is the test's.
    t.after(async () => {
      await inner.close();
      await rm(dataDir, { recursive: true, force: true });
    });
    const peer = await Peer.connect(t, relay);
    // 1 MiB: room for one message of the largest size, so one is taken at a time until ~1 MiB is held.
    const agent = new Agent(relay.url, { keyFile: join(tempDir(t), 'bytes.key'), maxQueuedBytes: 1024 * 1024 });
    const pad = 'x'.repeat(300_000);
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) ids.push((await peer.send(agent.publicKey, { i, pad })).message_id);
    const seen: string[] = [];
    for await (const msg of agent.messages()) {
      yielded++;
      seen.push(msg.message_id);
      if (seen.length === 1) {
        // The loop is busy with its first message: the agent fills its byte budget (4 × 300 KB
        // held, the yielded one apart). Before, it took up to 100 at once.
        while (taken < 5) await new Promise<void>((r) => (onTaken = r));
      }
      if (seen.length === 12) break;
    }
    assert.deepEqual(seen, ids, 'every message once, in order');
    assert.ok(mostHeld <= 5, `held at most 5 besides the yielded one; held ${mostHeld}`);
  });

  it('messages() announces the profile in the options too (an inbox read only this way keeps its policy)', {
    timeout: 20_000,
  }, async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0 });
    const peer = await Peer.connect(t, relay);
    const agent = new Agent(relay.url, {
      keyFile: join(tempDir(t), 'inbox.key'),
      name: 'Inbox',
      inboxPolicy: 'allowlist',
    });
    await peer.send(agent.publicKey, { before: 'the policy' });
    const announced = agent.next('announced');
    for await (const _ of agent.messages()) {
      await announced;
      break;
    }
    const stranger = new Agent(relay.url, { keyFile: join(tempDir(t), 'stranger.key') });
    const profile = await stranger.client.getAgent(agent.publicKey);
    assert.equal(profile.display_name, 'Inbox');
    assert.equal(profile.inbox_policy, 'allowlist');
    await assert.rejects(stranger.send(agent.publicKey, { hi: 1 }), { code: 'acl_denied' });
  });

  it('messages(): a loop that throws is done with its message too; request and reply rounds each see their own reply', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0 });
    const dir = tempDir(t);
    const server = new Agent(relay.url, { keyFile: join(dir, 's.key'), graceMs: 1000 });
    server.onMessage((msg) => ({ echo: msg.body }));
    await serve(t, server);
    const user = new Agent(relay.url, { keyFile: join(dir, 'u.key') });
    for (let round = 1; round <= 3; round++) {
      const id = await user.send(server.publicKey, { round });
      for await (const msg of user.messages()) {
        assert.equal(msg.in_reply_to, id, `round ${round}: the reply to this round, not an earlier one`);
        assert.deepEqual(msg.body, { echo: { round } });
        break;
      }
    }
    await user.send(server.publicKey, { round: 'throws' });
    await assert.rejects(
      (async () => {
        for await (const _ of user.messages()) throw new Error('the body failed');
      })(),
      /the body failed/,
    );
    const last = await user.send(server.publicKey, { round: 'after' });
    for await (const msg of user.messages()) {
      assert.equal(msg.in_reply_to, last, 'the message the throwing loop held is not yielded again');
      break;
    }
  });

  it('messages(): a process that dies holding a message gets it again after the restart', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0 });
    const keyFile = join(tempDir(t), 'crash.key');
    const peer = await Peer.connect(t, relay);
    const agent = new Agent(relay.url, { keyFile });
    const ids: string[] = [];
    for (let n = 1; n <= 2; n++) ids.push((await peer.send(agent.publicKey, { n })).message_id);
    const script = `import { Agent } from ${JSON.stringify(new URL('../../src/index.ts', import.meta.url).href)};
const agent = new Agent(process.argv[1], { keyFile: process.argv[2] });
for await (const msg of agent.messages()) {
  console.log(msg.message_id);
  process.exit(9); // dies while the loop body holds it
}`;
    // Asynchronously: the relay answering it lives in this process.
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', script, relay.url, keyFile],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const [status] = (await once(child, 'exit')) as [number | null];
    assert.equal(status, 9, stderr);
    assert.equal(stdout.trim(), ids[0]);
    const seen: string[] = [];
    for await (const msg of agent.messages()) {
      seen.push(msg.message_id);
      if (seen.length === 2) break;
    }
    assert.deepEqual(seen, ids, 'the one it died holding comes again, then the rest');
  });

  it('messages() with a temporary journal: what a loop fetched but did not yield comes in the next loop, until stop()', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0 });
    const peer = await Peer.connect(t, relay);
    const agent = new Agent(relay.url, { keypair: Keypair.generate(), graceMs: 5000 });
    t.after(() => agent.stop());
    const ids: string[] = [];
    for (let n = 1; n <= 3; n++) ids.push((await peer.send(agent.publicKey, { n })).message_id);
    for await (const msg of agent.messages()) {
      assert.equal(msg.message_id, ids[0]);
      break; // the poll took all three from the relay; only the journal has the other two now
    }
    const loop2: string[] = [];
    for await (const msg of agent.messages()) {
      loop2.push(msg.message_id);
      if (loop2.length === 2) void agent.stop();
    }
    assert.deepEqual(loop2, ids.slice(1));
  });

  it('stop() while the loop body holds a message waits for that body (the message is done once); polling stops at once', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0 });
    const peer = await Peer.connect(t, relay);
    const keyFile = join(tempDir(t), 'stopper.key');
    const agent = new Agent(relay.url, { keyFile, graceMs: 30_000 });
    const ids: string[] = [];
    for (let n = 1; n <= 3; n++) ids.push((await peer.send(agent.publicKey, { n })).message_id);
    const seen: string[] = [];
    let stopping: Promise<void> | undefined;
    let stopped = false;
    for await (const msg of agent.messages()) {
      seen.push(msg.message_id);
      if (seen.length === 1) {
        // As a SIGTERM handler would: stop() from outside the body's await chain.
        stopping = agent.stop().then(() => {
          stopped = true;
        });
        for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
        assert.equal(stopped, false, 'stop() waits for the body holding a message');
      }
    }
    await stopping;
    assert.deepEqual(seen, ids.slice(0, 1), 'nothing is yielded after stop()');
    // The one it handled is done; the others come in the next loop.
    const again = new Agent(relay.url, { keyFile, graceMs: 30_000 });
    const next: string[] = [];
    for await (const msg of again.messages()) {
      next.push(msg.message_id);
      if (next.length === 2) void again.stop();
    }
    assert.deepEqual(next, ids.slice(1));
  });

  it('two agents on one key file in one process: the second is refused while the first runs (journal_locked)', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0 });
    const keyFile = join(tempDir(t), 'same.key');
    const a = new Agent(relay.url, { keyFile, graceMs: 1000 }).onMessage(() => ({ from: 'a' }));
    const b = new Agent(relay.url, { keyFile, graceMs: 1000 }).onMessage(() => ({ from: 'b' }));
    const { running } = await serve(t, a);
    await assert.rejects(b.run(), { code: 'journal_locked' });
    const peer = await Peer.connect(t, relay);
    await peer.send(a.publicKey, { q: 1 });
    const [reply] = await peer.waitForReplies(1);
    assert.deepEqual(reply!.body, { from: 'a' });
    await a.stop();
    await running;
    // Once the first has stopped, the second may serve.
    await serve(t, b);
    await peer.send(b.publicKey, { q: 2 });
    const replies = await peer.waitForReplies(2);
    assert.deepEqual(replies[1]!.body, { from: 'b' });
    assert.equal(peer.replies.length, 2, 'each message answered once');
  });

  it('stop() drains: a running handler finishes and its reply goes out', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0 });
    const agent = new Agent(relay.url, { keyFile: join(tempDir(t), 'k.key'), graceMs: 10_000 });
    const started = gate();
    const release = gate();
    agent.onMessage(async () => {
      started.open();
      await release.wait;
      return { done: true };
    });
    const { running } = await serve(t, agent);
    const peer = await Peer.connect(t, relay);
    const { message_id } = await peer.send(agent.publicKey, {});
    await started.wait;
    const draining = agent.next('draining');
    const stopped = agent.stop();
    const [d] = await draining;
    assert.equal(d.running, 1);
    release.open();
    await stopped;
    await running;
    const [reply] = await peer.waitForReplies(1);
    assert.equal(reply!.in_reply_to, message_id);
    assert.deepEqual(reply!.body, { done: true });
  });

  it('one thing at a time: run() while messages() runs is agent_busy', async (t) => {
    const relay = await startRelay(t);
    const agent = new Agent(relay.url, { keyFile: join(tempDir(t), 'k.key'), journal: false, graceMs: 1000 });
    agent.onMessage(() => undefined);
    const iterator = agent.messages();
    const pending = iterator.next();
    await assert.rejects(agent.run(), { code: 'agent_busy' });
    await agent.stop();
    assert.deepEqual(await pending, { value: undefined, done: true });
  });

  it('ACL and discovery', async (t) => {
    const relay = await startRelay(t);
    const agent = new Agent(relay.url, {
      keyFile: join(tempDir(t), 'k.key'),
      name: 'Finder',
      visibility: 'public',
      capabilities: [{ name: 'find', description: 'Finds', tags: ['search'] }],
    });
    const other = new Agent(relay.url, { keyFile: join(tempDir(t), 'o.key'), contacts: { contacts: [], extra: {} } });
    await agent.announce();
    const found = await other.discover({ tag: 'search' });
    assert.deepEqual(
      found.agents.map((a) => a.public_key),
      [agent.publicKey],
    );
    await agent.block(other.publicKey);
    assert.deepEqual(
      (await agent.listAcl()).entries.map((e) => [e.peer_key, e.entry_type]),
      [[other.publicKey, 'block']],
    );
    await assert.rejects(other.send(agent.publicKey, { hi: 1 }), { code: 'acl_denied' });
    await agent.unblock(other.publicKey);
    assert.equal((await agent.listAcl()).entries.length, 0);
    await assert.rejects(other.send('nobody', {}), { code: 'unknown_contact' });
    // Without the contacts option no file is read: the hint says what works in the library.
    await assert.rejects(agent.send('bob', {}), (err: Error & { code?: string; hint?: string }) => {
      assert.equal(err.code, 'unknown_contact');
      assert.match(err.hint ?? '', /^pass the 43-character key, or the contacts option/);
      return true;
    });
    await assert.rejects(agent.send(undefined as never, {}), { code: 'invalid_argument' });
  });
});

describe('Agent key file and options', () => {
  it('reuses an existing key file; refuses a malformed or open one, naming it', (t) => {
    const dir = tempDir(t);
    const keyFile = join(dir, 'sub', 'a.key');
    const a = new Agent('http://127.0.0.1:1', { keyFile });
    assert.equal(statSync(join(dir, 'sub')).mode & 0o777, 0o700);
    assert.equal(new Agent('http://127.0.0.1:1', { keyFile }).publicKey, a.publicKey);
    const bad = join(dir, 'bad.key');
    writeFileSync(bad, 'not a key', { mode: 0o600 });
    assert.throws(
      () => new Agent('http://127.0.0.1:1', { keyFile: bad }),
      (err: Error & { code?: string; hint?: string }) =>
        err.code === 'key_invalid' &&
        err.message.includes(bad) &&
        err.hint === 'point keyFile at a key created by `mrp keygen` or an MRP SDK',
    );
    chmodSync(keyFile, 0o644);
    assert.throws(() => new Agent('http://127.0.0.1:1', { keyFile }), { code: 'key_permissions' });
  });

  it('Keypair.fromFile(path, { create }) and keypair.save(path), as the MRP SDKs have them', (t) => {
    const dir = tempDir(t);
    const path = join(dir, 'new', 'k.key');
    assert.throws(
      () => Keypair.fromFile(path),
      (e: Error & { code?: string; file?: string }) => {
        return e.code === 'key_not_found' && e.file === path && e.message === `key file ${path} does not exist`;
      },
    );
    const created = Keypair.fromFile(path, { create: true });
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.equal(statSync(path).size, 32, 'the raw seed, as the Python SDK writes it');
    assert.equal(Keypair.fromFile(path).publicKey, created.publicKey);
    assert.equal(Keypair.fromFile(path, { create: true }).publicKey, created.publicKey, 'an existing file is read');
    assert.equal(new Agent('http://127.0.0.1:1', { keyFile: path }).publicKey, created.publicKey);

    const kp = Keypair.generate();
    const saved = join(dir, 'saved.key');
    kp.save(saved);
    assert.equal(statSync(saved).mode & 0o777, 0o600);
    assert.equal(Keypair.fromFile(saved).publicKey, kp.publicKey);
    assert.throws(() => Keypair.generate().save(saved), { code: 'key_exists' });
    assert.equal(Keypair.fromFile(saved).publicKey, kp.publicKey, 'never overwritten');
    chmodSync(saved, 0o644);
    assert.throws(() => Keypair.fromFile(saved), { code: 'key_permissions' });
  });

  it("names a method's misspelt option instead of ignoring it, and a reply to something that is not a message", {
    timeout: 10_000,
  }, async (t) => {
    const agent = new Agent('http://127.0.0.1:1', { keyFile: join(tempDir(t), 'k.key') });
    const peer = Keypair.generate().publicKey;
    await assert.rejects(agent.send(peer, {}, { threadID: 't' } as never), {
      code: 'invalid_argument',
      message: /^agent\.send: unknown option "threadID" \(did you mean "threadId"\?\)/,
    });
    await assert.rejects(agent.discover({ tags: 'x' } as never), {
      code: 'invalid_argument',
      message: /^agent\.discover: unknown option "tags" \(did you mean "tag"\?\)/,
    });
    await assert.rejects(agent.listAcl({ entry_type: 'allow' } as never), { code: 'invalid_argument' });
    await assert.rejects(agent.reply({ message_id: 'm' } as never, {}, { encrypted: true } as never), {
      message: /^agent\.reply: unknown option "encrypted" \(did you mean "encrypt"\?\)/,
    });
    await assert.rejects(agent.reply({} as never, { x: 1 }), {
      code: 'invalid_argument',
      message: 'agent.reply: the first argument must be a received message (with message_id and sender_key)',
    });
  });

  it("takes the MRP guides' names too: send's expiresIn (ttl) and run's pollIntervalMs", async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0 });
    const peer = await Peer.connect(t, relay);
    const agent = new Agent(relay.url, { keyFile: join(tempDir(t), 'k.key'), graceMs: 1000 });
    await agent.send(peer.publicKey, { n: 1 }, { expiresIn: 120 });
    const [got] = await peer.waitForReplies(1);
    assert.equal(Date.parse(got!.expires_at) - Date.parse(got!.created_at), 120_000);
    await assert.rejects(agent.send(peer.publicKey, {}, { ttl: 60, expiresIn: 120 }), {
      code: 'invalid_argument',
      message: 'agent.send: ttl and expiresIn are the same setting; give one',
    });
    agent.onMessage(() => null);
    await assert.rejects(agent.run({ mode: 'poll', interval: 5 } as never), {
      code: 'invalid_argument',
      message: /^agent\.run: unknown option "interval"/,
    });
    await serve(t, agent, 'poll');
  });

  it("new Agent({ relayUrl, ...options }), the MRP SDKs' form, works like new Agent(relayUrl, options)", async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0 });
    const keypair = Keypair.generate();
    const agent = new Agent({ relayUrl: relay.url, keypair, name: 'ObjectForm', journal: false });
    assert.equal(agent.publicKey, keypair.publicKey);
    agent.onMessage((msg) => ({ got: msg.body }));
    const announced = agent.next('announced');
    const { running } = await serve(t, agent, 'ws');
    await announced;
    const profile = await signed(relay.url, newAgent(), 'GET', `/v1/agents/${agent.publicKey}`);
    assert.equal(profile.body.display_name, 'ObjectForm');
    const peer = await Peer.connect(t, relay);
    await peer.send(agent.publicKey, { n: 1 });
    const [reply] = await peer.waitForReplies(1);
    assert.deepEqual(reply!.body, { got: { n: 1 } });
    await agent.stop();
    await running;

    assert.throws(() => new Agent({ keypair } as never), {
      code: 'invalid_option',
      message: /^Agent option relayUrl: a relay URL is required/,
    });
    assert.throws(() => new Agent({ relayURL: relay.url, keypair } as never), {
      code: 'invalid_option',
      message: /relayURL: unknown option \(did you mean "relayUrl"\?\)/,
    });
    assert.throws(() => new (Agent as new (...a: unknown[]) => Agent)({ relayUrl: relay.url, keypair }, { keypair }), {
      code: 'invalid_option',
      message: /not both/,
    });
  });

  it("journal: a URL (a fleet's postgres://…) is refused by name instead of becoming a directory called postgres:", () => {
    const keypair = Keypair.generate();
    const cwd = mkdtempSync(join(tmpdir(), 'mrp-agent-journal-'));
    const before = process.cwd();
    process.chdir(cwd);
    try {
      assert.throws(() => new Agent('http://127.0.0.1:1', { keypair, journal: 'postgres://u:pw@db:5432/mrp' }), {
        code: 'invalid_option',
        message: /^Agent option journal: must be a directory path or false, not a URL .*mrp run --journal postgres:/,
      });
    } finally {
      process.chdir(before);
      rmSync(cwd, { recursive: true, force: true });
    }
  });

  it("send({ to, body, ...options }), the MRP SDKs' form, with attachments given as blob ids", async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0 });
    const agent = new Agent({ relayUrl: relay.url, keypair: Keypair.generate(), journal: false });
    const peer = await Peer.connect(t, relay);
    const blob = await agent.client.uploadBlob(Buffer.from('report'), { contentType: 'text/plain' });
    const id = await agent.send({
      to: peer.publicKey,
      body: { see: 'attached' },
      attachments: [blob.blob_id],
      metadata: { k: 'v' },
      expiresIn: 600,
    });
    const [got] = await peer.waitForReplies(1);
    assert.equal(got!.message_id, id);
    assert.deepEqual(got!.body, { see: 'attached' });
    assert.deepEqual(
      got!.attachments.map((a) => a.blob_id),
      [blob.blob_id],
    );
    assert.deepEqual(got!.metadata, { k: 'v' });
    const lives = Date.parse(got!.expires_at) - Date.parse(got!.created_at);
    assert.equal(lives, 600_000);
    await assert.rejects(agent.send({ to: peer.publicKey, bdy: 1 } as never), {
      code: 'invalid_argument',
      message: /unknown option "bdy" \(did you mean "body"\?\)/,
    });
    await assert.rejects(agent.send({ to: peer.publicKey } as never), {
      code: 'invalid_argument',
      message: /a body is required unless attachments are given/,
    });
    await assert.rejects(agent.send({ body: 1 } as never), { code: 'invalid_argument', message: /to must be/ });
    await assert.rejects(
      (agent.send as (...a: unknown[]) => Promise<string>)({ to: peer.publicKey, body: 1 }, { x: 1 }),
      { code: 'invalid_argument', message: /not both/ },
    );
  });

  it('the rest of the SDK surface: register, name, upload/download, decrypt, status, thread, webhooks', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0, allowPrivateWebhooks: true });
    const alice = new Agent({ relayUrl: relay.url, keypair: Keypair.generate(), name: 'Alice', journal: false });
    const bob = new Agent({ relayUrl: relay.url, keypair: Keypair.generate(), journal: false });
    assert.equal(alice.name, 'Alice');
    assert.equal(bob.name, undefined);
    assert.equal((await alice.register()).display_name, 'Alice');
    await bob.register();

    const blob = await alice.upload(Buffer.from('quarterly numbers'), 'text/plain');
    assert.equal(blob.size, 17);
    const down = await alice.download(blob.blob_id);
    assert.equal(down.data.toString(), 'quarterly numbers');
    assert.equal(down.contentType, 'text/plain');
    await assert.rejects(alice.download(blob.blob_id, { maxBytes: 4 }), { code: 'payload_too_large' });

    // An attachment sealed for Bob: the relay keeps ciphertext; Bob opens it with its message.
    const sealed = await alice.upload(Buffer.from('for bob only'), {
      encryptFor: bob.publicKey,
      filename: 'note.txt',
      contentType: 'text/plain',
    });
    assert.equal(sealed.attachment.encrypted, true);
    assert.equal(sealed.attachment.filename, 'note.txt');
    assert.notEqual((await alice.download(sealed.blob_id)).data.toString(), 'for bob only', 'ciphertext on the relay');
    const withFile = await alice.send(bob.publicKey, { see: 'attached' }, { attachments: [sealed.attachment] });
    const received = await bob.client.getMessage(withFile);
    const opened = await bob.download(received.attachments[0]!, { from: received });
    assert.deepEqual(opened, { data: Buffer.from('for bob only'), contentType: 'text/plain' });
    await assert.rejects(bob.download(received.attachments[0]!), {
      code: 'invalid_argument',
      message: /download\(attachment, \{ from: message \}\)/,
    });
    const plainFile = await alice.upload('plain text', { filename: 'p.txt', contentType: 'text/plain' });
    assert.deepEqual(plainFile.attachment, {
      blob_id: plainFile.blob_id,
      filename: 'p.txt',
      content_type: 'text/plain',
    });

    const id = await alice.send(bob.publicKey, { secret: 'plans' }, { encrypt: true });
    const raw = await bob.client.getMessage(id);
    assert.equal(raw.content_type, 'application/x-m2m-encrypted');
    assert.deepEqual(await bob.decrypt(raw), {
      body: { secret: 'plans' },
      contentType: 'application/json',
      encrypted: true,
    });
    const plain = await bob.client.getMessage(await alice.send(bob.publicKey, { open: true }));
    assert.deepEqual(await bob.decrypt(plain), {
      body: { open: true },
      contentType: 'application/json',
      encrypted: false,
    });
    await assert.rejects(
      bob.decrypt({ ...raw, body: { v: 1, nonsense: true } }),
      (e: Error & { code?: string }) => typeof e.code === 'string',
    );
    await assert.rejects(bob.decrypt(null as never), { code: 'invalid_argument' });

    assert.equal((await alice.status(id)).status, 'sent');
    const page = await bob.thread(id);
    assert.deepEqual(
      page.messages.map((m) => m.message_id),
      [id],
    );
    await assert.rejects(bob.thread(id, { limt: 1 } as never), { code: 'invalid_argument' });

    const secret = 'a-webhook-secret-of-enough-length';
    await bob.setWebhook('http://127.0.0.1:9/hook', secret);
    const hook = await bob.getWebhook();
    assert.equal(hook.url, 'http://127.0.0.1:9/hook');
    assert.equal(JSON.stringify(hook).includes(secret), false, 'the secret is never returned');
    await bob.deleteWebhook();
    await assert.rejects(bob.getWebhook(), { status: 404 });
  });

  it('messages({ limit, wait }): polls that many at most (the rest stay sent on the relay); a bad argument is named', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0 });
    const sender = new RelayClient({ relayUrl: relay.url, keypair: Keypair.generate() });
    const agent = new Agent({ relayUrl: relay.url, keypair: Keypair.generate(), journal: false });
    const ids: string[] = [];
    for (let n = 1; n <= 3; n++)
      ids.push((await sender.send({ recipient_key: agent.publicKey, body: { n } })).message_id);
    // The real client's polls, watched (each goes through to the relay as it is).
    const polls = t.mock.method(agent.client, 'poll');
    const asked = (): Array<[number | undefined, number | undefined]> =>
      polls.mock.calls
        .map((c) => c.arguments[0] as { limit?: number; wait?: number; status?: string })
        // Not the look at what a cancelled long poll took (status=delivered&take=…).
        .filter((q) => q.status !== 'delivered')
        .map((q) => [q.limit, q.wait]);
    for await (const msg of agent.messages({ limit: 1, wait: 0, status: 'sent' })) {
      assert.equal(msg.message_id, ids[0]);
      break;
    }
    assert.ok(polls.mock.callCount() >= 1);
    assert.ok(
      asked().every(([limit, wait]) => limit === 1 && wait === undefined),
      JSON.stringify(asked()),
    );
    polls.mock.resetCalls();
    const rest: string[] = [];
    for await (const msg of agent.messages({ limit: 2, wait: 5 })) {
      rest.push(msg.message_id);
      if (rest.length === 2) break;
    }
    assert.deepEqual(rest, ids.slice(1));
    assert.ok(
      asked().every(([limit, wait]) => limit !== undefined && limit <= 2 && wait === 5),
      JSON.stringify(asked()),
    );
    await agent.stop();
    for (const [options, message] of [
      [{ limit: 0 }, /agent\.messages: limit must be an integer from 1 to 100 \(got 0\)/],
      [{ wait: 31 }, /agent\.messages: wait must be an integer from 0 to 30 \(got 31\)/],
      [{ status: 'delivered' }, /status "delivered" is not supported/],
      [{ limt: 5 }, /unknown option "limt" \(did you mean "limit"\?\)/],
    ] as const) {
      await assert.rejects(agent.messages(options as never).next(), { code: 'invalid_argument', message });
    }
  });

  it('names a bad option', async () => {
    // Neither keyFile nor keypair: agent.key in the working directory, created 0600 (the Python SDK's default).
    const cwd = process.cwd();
    const here = mkdtempSync(join(tmpdir(), 'mrp-sdk-cwd-'));
    try {
      process.chdir(here);
      const made = new Agent({ relayUrl: 'http://127.0.0.1:1' });
      assert.equal(statSync(join(here, 'agent.key')).mode & 0o777, 0o600);
      assert.equal(new Agent('http://127.0.0.1:1').publicKey, made.publicKey, 'the same file read again');
    } finally {
      process.chdir(cwd);
      rmSync(here, { recursive: true, force: true });
    }
    assert.throws(() => new Agent('http://127.0.0.1:1', { keyFile: '' }), {
      code: 'invalid_option',
      message: 'Agent option keyFile: must be a file path (got "")',
    });
    assert.throws(() => new Agent('http://127.0.0.1:1', { keyFile: 5 as never }), {
      code: 'invalid_option',
      message: 'Agent option keyFile: must be a file path (got 5)',
    });
    assert.throws(() => new Agent('http://127.0.0.1:1', { keypair: 'seed' as never }), {
      code: 'invalid_option',
      message: /^Agent option keypair: must be a Keypair/,
    });
    assert.throws(
      () => new Agent('http://127.0.0.1:1', { keyFile: '/nonexistent-dir-for-sure/x.key', concurrency: 0 }),
      { code: 'invalid_option', message: /concurrency/ },
    );
    const dir = mkdtempSync(join(tmpdir(), 'mrp-sdk-'));
    try {
      const keyFile = join(dir, 'k.key');
      assert.throws(() => new Agent('http://127.0.0.1:1', { keyFile, inboxPolicy: 'sometimes' as never }), {
        code: 'invalid_option',
        message: /inboxPolicy/,
      });
      assert.throws(
        () => new Agent('http://127.0.0.1:1', { keyFile, capabilities: [{ name: '', description: 'x', tags: [] }] }),
        { code: 'invalid_option', message: /capabilities/ },
      );
      // Keys the options do not have are typos (JavaScript callers have no compiler): named, with a suggestion.
      assert.throws(() => new Agent('http://127.0.0.1:1', { keyFile, capabilites: [] } as never), {
        code: 'invalid_option',
        message: /capabilites: unknown option \(did you mean "capabilities"\?\)/,
      });
      assert.throws(
        () =>
          new Agent('http://127.0.0.1:1', {
            keyFile,
            capabilities: [{ name: 'x', descripton: 'y', tags: ['abc'] } as never],
          }),
        {
          code: 'invalid_option',
          message: /capabilities\[0\]\.descripton: unknown capability key \(did you mean "description"\?\)/,
        },
      );
      await assert.rejects(new Agent('http://127.0.0.1:1', { keyFile }).run({ mode: 'carrier-pigeon' as never }), {
        code: 'invalid_argument',
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
