/**
 * Poll double handling (issue 9), with real processes: a poll-mode runner (`mrp run --mode poll`)
 * is SIGKILLed while its long poll is outstanding — after the relay marked a message delivered
 * for that poll, before the runner could read (and journal) the answer, which goes to a dead
 * socket. Then `mrp recv` takes another message, in the same time window. The restarted runner
 * recovers its open take by its id: it handles its own message exactly once and never the one
 * `recv` took (a time-window recovery would handle both).
 *
 * The relay runs in process on a store whose `takeSent` kills the runner before it returns (so
 * the kill lands in exactly that gap). Needs a build (bin/mrp.js runs dist/).
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { SqliteStore } from '../../src/relay/index.js';
import { hookedStore, startRelay } from '../helpers/relay.js';
import { Agent, type Child, Scene } from './_support.js';

const HANDLER = `// handler.ts — notes every message it is given
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
export default async function handler(msg: { message_id: string }) {
  appendFileSync(join(process.cwd(), 'handled.log'), msg.message_id + '\\n');
  return { ok: true };
}
`;

async function handledIds(scene: Scene): Promise<string[]> {
  const text = await readFile(join(scene.dir, 'handled.log'), 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean);
}

async function waitHandled(scene: Scene, runner: Child, want: string, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await handledIds(scene)).includes(want)) {
    if (!runner.alive || Date.now() > until) throw new Error(`${want} was not handled\n${runner.tail()}`);
    await delay(50);
  }
}

describe('poll mode after a SIGKILL mid-poll', () => {
  it('the restarted runner handles its own taken message once and never what recv took', {
    timeout: 90_000,
  }, async (t) => {
    const scene = await Scene.create(t, 'poll-take');
    const keygen = await scene.mrp(['keygen', '--json']);
    assert.equal(keygen.exit.code, 0, keygen.stderr);
    const key = (JSON.parse(keygen.stdout) as { public_key: string }).public_key;
    await writeFile(join(scene.dir, 'handler.ts'), HANDLER);

    let runner: Child | undefined;
    let armed = false;
    let polling: () => void = () => undefined;
    const outstanding = new Promise<void>((resolve) => (polling = resolve));
    const dataDir = await mkdtemp(join(tmpdir(), 'mrp-relay-'));
    const inner = new SqliteStore(dataDir);
    const store = hookedStore(inner, async (_filter, result) => {
      if (result.messages.length === 0) {
        polling(); // the runner's long poll found nothing and waits
        return;
      }
      if (!armed || !runner) return;
      armed = false;
      // Marked delivered (committed) for this take; the runner dies before the answer is written.
      runner.kill('SIGKILL');
      await runner.waitExit('SIGKILL mid-poll', 10_000);
    });
    t.after(async () => {
      await scene.killAll();
      await store.close();
      await rm(dataDir, { recursive: true, force: true });
    });
    const relay = await startRelay(t, { store, sendRatePerMinute: 0, receiveRatePerMinute: 0 });
    const args = ['run', '--handler', './handler.ts', '--relay', relay.url, '--mode', 'poll', '--log-format', 'json'];
    const agent = new Agent(relay.url, 'poll-take');

    runner = scene.spawn('runner#1', args);
    await outstanding;
    armed = true;
    const mine = await agent.send(key, { n: 'mine' });
    const exit = await runner.waitExit('the relay hook to kill the runner', 20_000);
    assert.equal(exit.signal, 'SIGKILL');
    assert.equal(armed, false, 'killed by the hook, after the relay took the message for its poll');
    assert.deepEqual(await handledIds(scene), [], 'the dead runner never saw its answer');

    // `mrp recv` takes another message while the runner is down, within its poll's window.
    const theirs = await agent.send(key, { n: 'theirs' });
    const recv = await scene.mrp(['recv', '--relay', relay.url, '--json']);
    assert.equal(recv.exit.code, 0, recv.stderr);
    assert.match(recv.stdout, new RegExp(theirs.id));
    assert.doesNotMatch(recv.stdout, new RegExp(mine.id));

    const again = scene.spawn('runner#2', args);
    await waitHandled(scene, again, mine.id, 30_000);
    // Polling goes on after the recovery.
    const after = await agent.send(key, { n: 'after' });
    await waitHandled(scene, again, after.id, 30_000);
    assert.deepEqual(await handledIds(scene), [mine.id, after.id], 'its own message once, never the one recv took');
    again.kill('SIGTERM');
    assert.equal((await again.waitExit('SIGTERM', 20_000)).code, 0, again.tail());
  });
});
