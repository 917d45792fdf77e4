/**
 * `mrp run --mode webhook` as a real process (issue 12, runner side): it listens on
 * `--listen 127.0.0.1:0`, prints where, keeps its secret in the state directory, and answers
 * deliveries this test signs and POSTs the way a relay does (docs/protocol.md §3.8) around
 * messages an in-process relay really stored; replies go through that relay. A SIGKILL after a
 * delivery was journaled — the relay never counted it delivered — loses nothing and runs no
 * handler twice: the restarted runner finishes it from its journal, and the relay's retry gets
 * 200 without a second handling.
 *
 * Needs a build (bin/mrp.js runs dist/).
 */
import assert from 'node:assert/strict';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { formatTimestamp } from '../../src/protocol/signing.js';
import type { Message } from '../../src/protocol/types.js';
import { newDeliveryId, webhookSignature } from '../../src/protocol/webhook.js';
import { Peer } from '../helpers/agent.js';
import { startRelay, type TestRelay } from '../helpers/relay.js';
import { type Child, Scene } from './_support.js';

const HANDLER = `// handler.ts — logs each call; { block: true } waits for ./release to exist
import { appendFileSync, existsSync } from 'node:fs';
export default async function handler(msg: { message_id: string; body: { block?: boolean; n?: number } }) {
  appendFileSync('calls.log', msg.message_id + '\\n');
  while (msg.body?.block && !existsSync('release')) await new Promise((r) => setTimeout(r, 20));
  return { ok: msg.body?.n ?? 'unblocked' };
}
`;

interface Listening {
  url: string;
  secret: string;
}

async function setUp(
  t: TestContext,
  name: string,
): Promise<{ scene: Scene; relay: TestRelay; key: string; peer: Peer }> {
  const scene = await Scene.create(t, name);
  const keygen = await scene.mrp(['keygen', '--json']);
  assert.equal(keygen.exit.code, 0, keygen.stderr);
  const key = (JSON.parse(keygen.stdout) as { public_key: string }).public_key;
  await writeFile(join(scene.dir, 'handler.ts'), HANDLER);
  const relay = await startRelay(t, { allowPrivateWebhooks: true });
  const peer = await Peer.connect(t, relay);
  return { scene, relay, key, peer };
}

function runner(scene: Scene, relay: TestRelay, n: number, extra: string[] = []): Child {
  return scene.spawn(`runner#${n}`, [
    'run',
    '--handler',
    './handler.ts',
    '--relay',
    relay.url,
    '--mode',
    'webhook',
    '--listen',
    '127.0.0.1:0',
    '--log-format',
    'json',
    ...extra,
  ]);
}

/** Waits for the runner to say where it listens and to be ready; reads the secret it registered. */
async function listening(r: Child): Promise<Listening> {
  const event = await r.waitEvent('webhook', {}, 'the listening address', 20_000);
  await r.waitEvent('ready', { mode: 'webhook' }, 'ready', 20_000);
  assert.match(String(event['listen']), /^http:\/\/127\.0\.0\.1:\d+$/);
  const secret = (await readFile(String(event['secret_file']), 'utf8')).trim();
  assert.equal((await stat(String(event['secret_file']))).mode & 0o777, 0o600, 'the secret file is private');
  assert.ok(!r.lines.some((l) => l.text.includes(secret)), 'the secret is never printed');
  return { url: String(event['listen']), secret };
}

/** A delivery of `message` as the relay would POST it; `send` signs it with the runner's current secret. */
function delivery(message: Message) {
  const deliveryId = newDeliveryId();
  const text = JSON.stringify({ delivery_id: deliveryId, message });
  return {
    deliveryId,
    send: async (to: Listening): Promise<number> => {
      const res = await fetch(`${to.url}/`, {
        method: 'POST',
        headers: {
          'Content-Type': 'application/json',
          'X-M2M-Webhook-Signature': webhookSignature(to.secret, text),
          'X-M2M-Webhook-Timestamp': formatTimestamp(Date.now()),
          'X-M2M-Delivery-ID': deliveryId,
        },
        body: text,
      });
      await res.arrayBuffer();
      return res.status;
    },
  };
}

async function calls(scene: Scene): Promise<string[]> {
  return (await readFile(join(scene.dir, 'calls.log'), 'utf8').catch(() => '')).split('\n').filter(Boolean);
}

async function storedFor(peer: Peer, key: string, body: unknown): Promise<Message> {
  const { message_id } = await peer.send(key, body);
  return peer.client.getMessage(message_id);
}

async function repliesInRelay(peer: Peer, message: Message): Promise<Message[]> {
  const thread = await peer.client.thread(message.thread_id ?? message.message_id);
  return thread.messages.filter((m) => m.in_reply_to === message.message_id);
}

describe('mrp run --mode webhook', () => {
  it('serves signed deliveries, replies through the relay, answers duplicates once, exits 0 on SIGTERM', {
    timeout: 90_000,
  }, async (t) => {
    const { scene, relay, key, peer } = await setUp(t, 'webhook');
    const r = runner(scene, relay, 1);
    const to = await listening(r);
    // The relay delivers to the runner itself too (loopback targets allowed here): whichever copy comes first is handled, the rest are duplicates.
    const message = await storedFor(peer, key, { n: 1 });
    const d = delivery(message);
    assert.equal(await d.send(to), 200);
    const [reply] = await peer.waitForReplies(1, 20_000);
    assert.equal(reply!.in_reply_to, message.message_id);
    assert.deepEqual(reply!.body, { ok: 1 });
    // The relay's retries, two at once, and a new delivery of the same message: 200, no second run.
    const again = await Promise.all([d.send(to), d.send(to), delivery(message).send(to)]);
    assert.deepEqual(again, [200, 200, 200]);
    const health = (await (await fetch(`${to.url}/`)).json()) as Record<string, unknown>;
    assert.equal(health['mode'], 'webhook');
    assert.equal(health['agent'], key);
    r.kill('SIGTERM');
    const exit = await r.waitExit('SIGTERM', 30_000);
    assert.equal(exit.code, 0, r.tail());
    assert.deepEqual(await calls(scene), [message.message_id]);
    assert.equal((await repliesInRelay(peer, message)).length, 1, 'one reply in the relay');
  });

  it('catches up on messages stored before it registered (exactly once each), one delivered both by the catch-up poll and by webhook is handled once', {
    timeout: 90_000,
  }, async (t) => {
    const { scene, relay, key, peer } = await setUp(t, 'webhook-catch-up');
    // Stored with no webhook registered: the relay never pushes these (docs/protocol.md §3.8).
    const waiting: Message[] = [];
    for (let n = 1; n <= 3; n++) waiting.push(await storedFor(peer, key, { n }));
    const r = runner(scene, relay, 1);
    const to = await listening(r);
    await peer.waitForReplies(3, 30_000);
    for (const m of waiting) {
      const replies = await repliesInRelay(peer, m);
      assert.equal(replies.length, 1, `one reply to ${m.message_id}`);
      assert.equal((await peer.client.messageStatus(m.message_id)).status, 'delivered');
    }
    // The same message by webhook too (a relay that pushed it while the poll took it): 200, no second run.
    assert.equal(await delivery(waiting[0]!).send(to), 200);
    // And one stored now comes by webhook (the relay pushes it to the runner).
    const pushed = await storedFor(peer, key, { n: 4 });
    await peer.waitForReplies(4, 30_000);
    r.kill('SIGTERM');
    assert.equal((await r.waitExit('SIGTERM', 30_000)).code, 0, r.tail());
    const log = await calls(scene);
    assert.deepEqual(
      [...log].sort(),
      [...waiting.map((m) => m.message_id), pushed.message_id].sort(),
      `each handled once: ${log.join(', ')}`,
    );
    for (const m of [...waiting, pushed]) assert.equal((await repliesInRelay(peer, m)).length, 1);
  });

  it('--catch-up sets how often it polls for what deliveries did not bring', { timeout: 60_000 }, async (t) => {
    const { scene, relay, key } = await setUp(t, 'webhook-catch-up-interval');
    const r = runner(scene, relay, 1, ['--catch-up', '200ms']);
    await listening(r);
    // Each catch-up is a GET of the inbox by the runner's key (and re-registers the webhook first).
    const polls = () =>
      relay.logs.filter(
        (e) =>
          e.msg === 'request' &&
          e['agent'] === key &&
          e['method'] === 'GET' &&
          String(e['path']).startsWith('/v1/messages'),
      ).length;
    const deadline = Date.now() + 10_000; // at the 5-minute default, only the first would come
    while (polls() < 5) {
      assert.ok(Date.now() < deadline, `${polls()} catch-up polls in 10 s with --catch-up 200ms\n${r.tail()}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    r.kill('SIGTERM');
    assert.equal((await r.waitExit('SIGTERM', 30_000)).code, 0, r.tail());
  });

  it('killed after journaling a delivery the relay never saw answered: the restart finishes it, the retry gets 200, one handling, one reply', {
    timeout: 120_000,
  }, async (t) => {
    const { scene, relay, key, peer } = await setUp(t, 'webhook-crash');
    const first = runner(scene, relay, 1, ['--concurrency', '1']);
    const to1 = await listening(first);
    const blocker = await storedFor(peer, key, { block: true });
    const target = await storedFor(peer, key, { n: 2 });
    assert.equal(await delivery(blocker).send(to1), 200);
    // The blocker's handler holds the only slot, so the target is journaled and queued, not run.
    const d = delivery(target);
    assert.equal(await d.send(to1), 200, 'journaled (its 200 is written only after that)');
    // Whether the relay read that 200 is not something the runner can know or record: its state
    // on disk is the same either way. Kill it now and let the relay treat the answer as lost.
    first.kill('SIGKILL');
    await first.waitExit('SIGKILL', 10_000);
    assert.deepEqual(await calls(scene), [blocker.message_id], 'the target never started');
    await writeFile(join(scene.dir, 'release'), '');

    const second = runner(scene, relay, 2, ['--concurrency', '1']);
    const to2 = await listening(second);
    assert.notEqual(to2.secret, to1.secret, 'a fresh secret for each run');
    // The relay's retry, signed with what is registered now.
    assert.equal(await d.send(to2), 200);
    await peer.waitForReplies(2, 30_000);
    assert.equal(await d.send(to2), 200);
    second.kill('SIGTERM');
    assert.equal((await second.waitExit('SIGTERM', 30_000)).code, 0, second.tail());
    const log = await calls(scene);
    assert.equal(log.filter((id) => id === target.message_id).length, 1, `the target ran once: ${log.join(', ')}`);
    assert.equal((await repliesInRelay(peer, target)).length, 1, 'one reply to the target in the relay');
    assert.deepEqual((await repliesInRelay(peer, target))[0]!.body, { ok: 2 });
    assert.equal((await repliesInRelay(peer, blocker)).length, 1, 'one reply to the blocker');
  });
});
