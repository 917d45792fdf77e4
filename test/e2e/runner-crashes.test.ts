/**
 * Faults never wedge silently (issue 9, item 10, handler half), with real processes: a handler
 * that calls `process.exit(0)` on one message ends `mrp run` with exit code 70 (never 0); each
 * restart runs that message again (alone) until `--max-crashes` runs ended that way, then it is
 * answered with `handler_crashed` and the runner keeps serving. A handler that SIGKILLs its own
 * process is counted the same way, through the journal; so is one that calls the internal
 * `process.reallyExit(0)` (what `process.exit` ends in).
 *
 * Needs a build (bin/mrp.js runs dist/).
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Agent, Inbox, type RelayProc, Scene, type Scene as SceneT, startRelay } from './_support.js';

const HANDLER = `// handler.ts — exits or kills its own process on request
export default async function handler(msg: { body: { exit?: boolean; reallyExit?: boolean; kill?: boolean; n?: number } }) {
  if (msg.body?.exit) process.exit(0);
  // Node's internal exit (what process.exit ends in): skips 'exit' listeners, same effect.
  if (msg.body?.reallyExit) (process as unknown as { reallyExit(code: number): void }).reallyExit(0);
  if (msg.body?.kill) process.kill(process.pid, 'SIGKILL');
  return { ok: msg.body?.n ?? null };
}
`;

async function setUp(
  t: Parameters<typeof Scene.create>[0],
  name: string,
): Promise<{ scene: SceneT; relay: RelayProc; key: string; agent: Agent; inbox: Inbox }> {
  const scene = await Scene.create(t, name);
  const keygen = await scene.mrp(['keygen', '--json']);
  assert.equal(keygen.exit.code, 0, keygen.stderr);
  const key = (JSON.parse(keygen.stdout) as { public_key: string }).public_key;
  await writeFile(join(scene.dir, 'handler.ts'), HANDLER);
  const relay = await startRelay(scene, join(scene.dir, 'relay-data'), 0, 'relay');
  const agent = new Agent(relay.url, name);
  const inbox = new Inbox(agent);
  t.after(() => inbox.close());
  inbox.start();
  await inbox.waitUntil(() => inbox.authenticated > 0, "the agent's WebSocket to authenticate", 10_000);
  return { scene, relay, key, agent, inbox };
}

function runner(scene: SceneT, relay: RelayProc, n: number, extra: string[] = []) {
  return scene.spawn(`runner#${n}`, [
    'run',
    '--handler',
    './handler.ts',
    '--relay',
    relay.url,
    '--log-format',
    'json',
    ...extra,
  ]);
}

describe('a handler that ends the process', () => {
  it('process.exit(0) in a handler: exit 70 each time, then handler_crashed after 3, and the runner keeps serving', {
    timeout: 120_000,
  }, async (t) => {
    const { scene, relay, key, agent, inbox } = await setUp(t, 'exit');
    const bad = await agent.send(key, { exit: true });
    const good = await agent.send(key, { n: 1 });
    for (let i = 1; i <= 3; i++) {
      const r = runner(scene, relay, i);
      const exit = await r.waitExit(`runner #${i} to be ended by the handler`, 30_000);
      assert.equal(exit.code, 70, `exit code 70, not 0 (run ${i})\n${r.tail()}`);
      assert.ok(r.events('handler_exit').length === 1, `reports handler_exit\n${r.tail()}`);
    }
    const r = runner(scene, relay, 4);
    await inbox.waitUntil(
      () => inbox.repliesTo(bad.id).length > 0 && inbox.repliesTo(good.id).length > 0,
      'replies to both messages',
      30_000,
      () => r.tail(),
    );
    const crashed = inbox.repliesTo(bad.id)[0]!.body as { status: string; error: { code: string; message: string } };
    assert.equal(crashed.status, 'error');
    assert.equal(crashed.error.code, 'handler_crashed');
    assert.match(crashed.error.message, /3 times/);
    assert.deepEqual(inbox.repliesTo(good.id)[0]!.body, { ok: 1 });
    // Still serving.
    const after = await agent.send(key, { n: 2 });
    await inbox.waitUntil(
      () => inbox.repliesTo(after.id).length > 0,
      'a reply to a later message',
      20_000,
      () => r.tail(),
    );
    r.kill('SIGTERM');
    const exit = await r.waitExit('SIGTERM', 20_000);
    assert.equal(exit.code, 0, r.tail());
    assert.equal(inbox.repliesTo(bad.id).length, 1, 'one reply, ever');
    assert.equal(inbox.repliesTo(good.id).length, 1);
  });

  it('process.reallyExit(0) in a handler is trapped too: exit 70 (not 0), reported once, counted as a crash', {
    timeout: 60_000,
  }, async (t) => {
    const { scene, relay, key, agent, inbox } = await setUp(t, 'really-exit');
    const bad = await agent.send(key, { reallyExit: true });
    const first = runner(scene, relay, 1, ['--max-crashes', '1']);
    const exit = await first.waitExit('the handler to end the runner', 30_000);
    assert.equal(exit.code, 70, `exit code 70, not 0\n${first.tail()}`);
    const reported = first.events('handler_exit');
    assert.equal(reported.length, 1, `reports handler_exit once\n${first.tail()}`);
    assert.match(JSON.stringify(reported[0]), /process\.reallyExit\(0\)/);
    const second = runner(scene, relay, 2, ['--max-crashes', '1']);
    await inbox.waitUntil(
      () => inbox.repliesTo(bad.id).length > 0,
      'the handler_crashed reply',
      30_000,
      () => second.tail(),
    );
    assert.equal((inbox.repliesTo(bad.id)[0]!.body as { error: { code: string } }).error.code, 'handler_crashed');
    second.kill('SIGTERM');
    assert.equal((await second.waitExit('SIGTERM', 20_000)).code, 0, second.tail());
  });

  it('a handler that SIGKILLs its process is counted through the journal (--max-crashes 1)', {
    timeout: 60_000,
  }, async (t) => {
    const { scene, relay, key, agent, inbox } = await setUp(t, 'kill');
    const bad = await agent.send(key, { kill: true });
    const first = runner(scene, relay, 1, ['--max-crashes', '1']);
    const exit = await first.waitExit('the handler to kill the runner', 30_000);
    assert.equal(exit.signal, 'SIGKILL');
    const second = runner(scene, relay, 2, ['--max-crashes', '1']);
    await inbox.waitUntil(
      () => inbox.repliesTo(bad.id).length > 0,
      'the handler_crashed reply',
      30_000,
      () => second.tail(),
    );
    assert.equal((inbox.repliesTo(bad.id)[0]!.body as { error: { code: string } }).error.code, 'handler_crashed');
    await second.waitEvent('handler_crashed', { id: bad.id }, 'the handler_crashed event', 5000);
    second.kill('SIGTERM');
    assert.equal((await second.waitExit('SIGTERM', 20_000)).code, 0, second.tail());
  });
});
