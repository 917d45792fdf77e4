/**
 * Issue 13 (fleet): three `mrp run --journal postgres://…` processes serve one identity with one
 * shared journal (a throwaway PostgreSQL cluster) against an in-process relay. Two hold the
 * WebSocket slots, the third polls. One runner is SIGKILLed while it has a handler running: its
 * messages are taken over after the lease (as redeliveries), and every message is answered
 * exactly once (counted at the sender). The handler records every start and end in a file.
 *
 * Needs a build (bin/mrp.js runs dist/).
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { type PostgresCluster, postgresAvailable, startPostgres } from '../helpers/postgres.js';
import { startRelay } from '../helpers/relay.js';
import { Agent, type Child, Inbox, Scene, type Sent } from './_support.js';

const HANDLER = `// handler.ts — records each start and end (pid, redelivered), takes a little while
import { appendFileSync } from 'node:fs';
const LOG = process.env.FLEET_LOG!;
export default async function handler(msg: { message_id: string; body: { n: number } }, ctx: { redelivered: boolean }) {
  appendFileSync(LOG, JSON.stringify({ id: msg.message_id, pid: process.pid, phase: 'start', redelivered: ctx.redelivered }) + '\\n');
  await new Promise((r) => setTimeout(r, 150));
  appendFileSync(LOG, JSON.stringify({ id: msg.message_id, pid: process.pid, phase: 'end', redelivered: ctx.redelivered }) + '\\n');
  return { n: msg.body.n, pid: process.pid };
}
`;

interface Record_ {
  id: string;
  pid: number;
  phase: 'start' | 'end';
  redelivered: boolean;
}

function records(file: string): Record_[] {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record_);
}

/** Checks `cond` every 25 ms until it holds (a file has no events to wait for); fails with `what` after `ms`. */
async function until(cond: () => boolean, what: string, ms: number, detail: () => string = () => ''): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}\n${detail()}`);
    await delay(25);
  }
}

describe('a fleet of runners sharing one journal', { skip: postgresAvailable() }, () => {
  let cluster: PostgresCluster;
  before(async () => {
    cluster = await startPostgres();
  });
  after(async () => {
    await cluster?.stop();
  });

  it('three runners, one SIGKILLed mid-handler: every message answered exactly once', {
    timeout: 60_000,
  }, async (t) => {
    const N = 30;
    const scene = await Scene.create(t, 'fleet');
    const journal = await cluster.database(t);
    const relay = await startRelay(t, {
      sendRatePerMinute: 100_000,
      receiveRatePerMinute: 100_000,
      requestRatePerMinute: 100_000,
    });
    const keygen = await scene.mrp(['keygen', '--json']);
    assert.equal(keygen.exit.code, 0, keygen.stderr);
    const key = (JSON.parse(keygen.stdout) as { public_key: string }).public_key;
    writeFileSync(join(scene.dir, 'handler.ts'), HANDLER);
    const log = join(scene.dir, 'handled.jsonl');
    scene.env['FLEET_LOG'] = log;

    const runners: Child[] = [];
    for (let i = 0; i < 3; i++) {
      const r = scene.spawn(`runner#${i}`, [
        'run',
        '-H',
        './handler.ts',
        '--relay',
        relay.url,
        '--log-format',
        'json',
        '--journal',
        journal,
        '--lease',
        '2s',
        '--concurrency',
        '4',
        '--grace',
        '5s',
      ]);
      runners.push(r);
      // One at a time, so slots go in order: #0 and #1 take the WebSockets, #2 polls.
      const joined = await r.waitEvent('journal', { journal: 'shared' }, 'joins the fleet', 20_000);
      assert.equal(joined['mode'], i < 2 ? 'websocket' : 'poll', r.tail());
      await r.waitEvent(i < 2 ? 'ready' : 'ready', {}, 'ready', 20_000);
    }
    const status = await scene.mrp(['fleet', '--journal', journal, '--json']);
    assert.equal(status.exit.code, 0, status.stderr);
    const fleet = JSON.parse(status.stdout) as { runners: Array<{ pid: number; mode: string; slot: number | null }> };
    assert.deepEqual(
      fleet.runners.map((r) => [r.pid, r.mode, r.slot]).sort((a, b) => Number(a[0]) - Number(b[0])),
      runners
        .map((r, i) => [r.pid, i < 2 ? 'websocket' : 'poll', i < 2 ? i : null])
        .sort((a, b) => Number(a[0]) - Number(b[0])),
      '`mrp fleet` lists the three runners and their slots',
    );

    const sender = new Agent(relay.url, 'fleet');
    const inbox = new Inbox(sender);
    t.after(() => inbox.close());
    inbox.start();
    await inbox.waitUntil(() => inbox.authenticated > 0, "the sender's WebSocket", 10_000);
    const sent: Sent[] = [];
    for (let n = 1; n <= N; n++) sent.push(await sender.send(key, { n }));

    // Kill runner #0 while one of its handlers runs (a start without an end).
    const victim = runners[0]!;
    const open = (): string[] => {
      const rs = records(log).filter((r) => r.pid === victim.pid);
      const ended = new Set(rs.filter((r) => r.phase === 'end').map((r) => r.id));
      return rs.filter((r) => r.phase === 'start' && !ended.has(r.id)).map((r) => r.id);
    };
    await until(
      () => open().length > 0,
      'runner #0 to be inside a handler',
      20_000,
      () => victim.tail(),
    );
    victim.kill('SIGKILL');
    await victim.waitExit('SIGKILL', 5000);
    const interrupted = open();
    assert.ok(interrupted.length > 0);

    const detail = (): string =>
      `${sent.filter((s) => inbox.repliesTo(s.id).length === 0).length} unanswered\n${runners.map((r) => r.tail(8)).join('\n')}`;
    await inbox.waitUntil(
      () => sent.every((s) => inbox.repliesTo(s.id).length >= 1),
      `replies to all ${N} messages`,
      30_000,
      detail,
    );
    // The survivors drain and stop; a reply sent twice would have arrived by then.
    for (const r of runners.slice(1)) r.kill('SIGTERM');
    for (const r of runners.slice(1)) assert.equal((await r.waitExit('SIGTERM', 15_000)).code, 0, r.tail());
    const all = await sender.listInbox('delivered');
    inbox.add(all);
    for (const s of sent) assert.equal(inbox.repliesTo(s.id).length, 1, `exactly one reply to #${String(s.body['n'])}`);

    const rs = records(log);
    for (const s of sent) {
      const ends = rs.filter((r) => r.id === s.id && r.phase === 'end' && r.pid !== victim.pid);
      assert.ok(
        ends.length <= 1,
        `at most one completed handling of #${String(s.body['n'])} by the survivors: ${JSON.stringify(ends)}`,
      );
    }
    // What the dead runner had begun ran again elsewhere, flagged as a redelivery.
    for (const id of interrupted) {
      const again = rs.filter((r) => r.id === id && r.pid !== victim.pid && r.phase === 'start');
      assert.equal(again.length, 1, `${id} taken over once`);
      assert.equal(again[0]!.redelivered, true, `${id}: ctx.redelivered`);
    }
    t.diagnostic(
      `handled: ${runners.map((r) => `pid ${r.pid}: ${rs.filter((x) => x.pid === r.pid && x.phase === 'end').length}`).join(', ')}; taken over: ${interrupted.length}`,
    );
  });
});
