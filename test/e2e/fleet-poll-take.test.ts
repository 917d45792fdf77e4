/**
 * Issue 13 (fleet) with real processes: a poll-mode runner of a fleet (`mrp run --mode poll
 * --journal postgres://…`) is SIGKILLed after the relay marked a page delivered for its poll and
 * before it could claim it in the shared journal (the relay's store kills it inside `takeSent`,
 * before the answer is written). The relay will not offer those messages again; the poll's take
 * was recorded in the shared journal before the poll was sent, so a second runner of the fleet
 * (here on a WebSocket) takes that take over once the dead runner's lease ran out and its poll is
 * over, lists it on the relay (`status=delivered&take=<id>`) and handles what it took. Every
 * message is handled exactly once, and answered exactly once.
 *
 * Needs a build (bin/mrp.js runs dist/).
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SqliteStore } from '../../src/relay/index.js';
import { type PostgresCluster, postgresAvailable, startPostgres } from '../helpers/postgres.js';
import { hookedStore, startRelay } from '../helpers/relay.js';
import { Agent, type Child, Inbox, Scene, type Sent } from './_support.js';

const HANDLER = `// handler.ts — notes every message it is given, with the runner's pid
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
export default async function handler(msg: { message_id: string; body: { n: number } }) {
  appendFileSync(join(process.cwd(), 'handled.log'), msg.message_id + ' ' + process.pid + '\\n');
  return { n: msg.body.n };
}
`;

async function handled(scene: Scene): Promise<Array<{ id: string; pid: number }>> {
  const text = await readFile(join(scene.dir, 'handled.log'), 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [id, pid] = l.split(' ');
      return { id: id!, pid: Number(pid) };
    });
}

describe('a fleet runner killed between a poll’s answer and its claims', { skip: postgresAvailable() }, () => {
  let cluster: PostgresCluster;
  before(async () => {
    cluster = await startPostgres();
  });
  after(async () => {
    await cluster?.stop();
  });

  it('another runner of the fleet recovers the dead poll’s take: every message handled and answered exactly once', {
    timeout: 120_000,
  }, async (t) => {
    const scene = await Scene.create(t, 'fleet-take');
    const journal = await cluster.database(t);
    const keygen = await scene.mrp(['keygen', '--json']);
    assert.equal(keygen.exit.code, 0, keygen.stderr);
    const key = (JSON.parse(keygen.stdout) as { public_key: string }).public_key;
    await writeFile(join(scene.dir, 'handler.ts'), HANDLER);

    let victim: Child | undefined;
    let armed = false;
    let killedFor: string[] = [];
    let polling: () => void = () => undefined;
    const outstanding = new Promise<void>((resolve) => (polling = resolve));
    const dataDir = await mkdtemp(join(tmpdir(), 'mrp-relay-'));
    const inner = new SqliteStore(dataDir);
    const store = hookedStore(inner, async (_filter, result) => {
      if (!armed || !victim) return;
      if (result.messages.length === 0) {
        polling(); // the victim's long poll found nothing and waits
        return;
      }
      armed = false;
      killedFor = result.messages.map((m) => m.message_id);
      // Marked delivered (committed) for this take; the runner dies before the answer is written.
      victim.kill('SIGKILL');
      await victim.waitExit('SIGKILL mid-poll', 10_000);
    });
    t.after(async () => {
      await scene.killAll();
      await store.close();
      await rm(dataDir, { recursive: true, force: true });
    });
    const relay = await startRelay(t, { store, sendRatePerMinute: 0, receiveRatePerMinute: 0 });
    const fleetArgs = ['-H', './handler.ts', '--relay', relay.url, '--log-format', 'json', '--journal', journal];
    const sender = new Agent(relay.url, 'fleet-take');
    const inbox = new Inbox(sender);
    t.after(() => inbox.close());
    inbox.start();
    await inbox.waitUntil(() => inbox.authenticated > 0, "the sender's WebSocket", 10_000);

    victim = scene.spawn('poller', ['run', ...fleetArgs, '--mode', 'poll', '--lease', '1s']);
    const joined = await victim.waitEvent('journal', { journal: 'shared' }, 'joins the fleet', 20_000);
    assert.equal(joined['mode'], 'poll', victim.tail());
    armed = true;
    await outstanding;
    const sent: Sent[] = [await sender.send(key, { n: 1 })];
    const exit = await victim.waitExit('the relay hook to kill the poller', 20_000);
    assert.equal(exit.signal, 'SIGKILL');
    assert.deepEqual(killedFor, [sent[0]!.id], 'killed by the hook, after the relay took the message for its poll');
    assert.deepEqual(await handled(scene), [], 'the dead runner never saw its answer');

    // A second runner joins the fleet (on a WebSocket: the relay will not push the delivered
    // message to it); more messages come meanwhile.
    const survivor = scene.spawn('survivor', ['run', ...fleetArgs, '--lease', '1s']);
    const joined2 = await survivor.waitEvent('journal', { journal: 'shared' }, 'joins the fleet', 20_000);
    assert.equal(joined2['mode'], 'websocket', survivor.tail());
    for (let n = 2; n <= 4; n++) sent.push(await sender.send(key, { n }));
    await inbox.waitUntil(
      () => sent.every((s) => inbox.repliesTo(s.id).length >= 1),
      'replies to every message, the one the dead poller took included',
      60_000,
      () => survivor.tail(),
    );
    survivor.kill('SIGTERM');
    assert.equal((await survivor.waitExit('SIGTERM', 20_000)).code, 0, survivor.tail());
    inbox.add(await sender.listInbox('delivered'));
    for (const s of sent) assert.equal(inbox.repliesTo(s.id).length, 1, `exactly one reply to #${String(s.body['n'])}`);
    const log = await handled(scene);
    assert.deepEqual(log.map((h) => h.id).sort(), sent.map((s) => s.id).sort(), 'every message handled exactly once');
    assert.ok(
      log.every((h) => h.pid === survivor.pid),
      'by the survivor',
    );
  });
});
