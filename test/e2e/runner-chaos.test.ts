/**
 * `mrp run` as a new user runs it, under chaos, with real processes only:
 *
 *   keygen → handler.ts (importing ./helper.ts) → `mrp relay` → `mrp run` → an independent agent
 *   (hand-signed HTTP + its own WebSocket) sends ~60 messages while (2) the relay is SIGKILLed
 *   and restarted, (3) the runner is SIGTERMed mid-handler (it must finish it and exit 0),
 *   (3b) SIGKILLed mid-handler (the handler must run again), (3c) SIGKILLed at an arbitrary point
 *   of a burst, and (4) some handlers fail on purpose. Once in websocket mode, once in poll mode.
 *
 * At the end, for every message the relay stored from the agent: exactly one reply, threaded
 * (`in_reply_to` = `thread_id` = the message id), with the body the handler returned (or the error
 * shape); no reply to anything else; the handler ran once per message (twice only where a SIGKILL
 * cut it short). Sends whose answer was lost when the relay died are settled against the relay's
 * own database (read only): stored → exactly one reply, not stored → none. Last, an idle runner
 * must exit promptly on SIGTERM.
 *
 * Needs a build (bin/mrp.js runs dist/). Run alone with:
 *   node --import tsx --test test/e2e/runner-chaos.test.ts
 * Set MRP_E2E_KEEP=1 to keep the temp directories.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import type { Message } from '../../src/protocol/types.js';
import {
  Agent,
  type Child,
  Inbox,
  type Json,
  type RelayProc,
  Scene,
  type Sent,
  startRelay,
  storedMessages,
} from './_support.js';

const HELPER_TS = `// helper.ts — builds the reply (imported by handler.ts)
export interface Answer {
  status: 'ok';
  result: { handled: string; echo: unknown; by: string };
}

export function answer(messageId: string, body: unknown): Answer {
  return { status: 'ok', result: { handled: messageId, echo: body, by: 'helper.ts' } };
}
`;

function handlerTs(callsLog: string, runsLog: string): string {
  return `// handler.ts — a user's handler: logs each call, answers through helper.ts
import { appendFileSync } from 'node:fs';
import { answer } from './helper.ts';

interface Body {
  nonce?: string;
  slow_ms?: number;
  fail?: boolean;
}

class BadInput extends Error {
  code = 'bad_input';
}

export default async function handler(msg: { message_id: string; body: Body }, ctx: { log: { info(text: string, fields?: object): void } }) {
  // Synchronous append: a crash right after this line cannot lose it.
  appendFileSync(${JSON.stringify(callsLog)}, msg.message_id + '\\n');
  // Which runner process ran it (to tell runs cut short by a SIGKILL from real double runs).
  appendFileSync(${JSON.stringify(runsLog)}, 'start ' + msg.message_id + ' ' + process.pid + '\\n');
  ctx.log.info('handler started', { nonce: msg.body?.nonce ?? null });
  const body: Body = msg.body ?? {};
  if (typeof body.slow_ms === 'number') await new Promise((resolve) => setTimeout(resolve, body.slow_ms));
  if (body.fail === true) throw new BadInput('cannot handle ' + String(body.nonce));
  return answer(msg.message_id, body);
}
`;
}

/** The reply the handler must produce for an original message body. */
function expectedReply(id: string, body: Json): Json {
  if (body['fail'] === true)
    return { status: 'error', error: { code: 'bad_input', message: `cannot handle ${String(body['nonce'])}` } };
  return { status: 'ok', result: { handled: id, echo: body, by: 'helper.ts' } };
}

/**
 * How long an idle runner may take to exit after SIGTERM. Nothing is running, so there is nothing
 * to wait for; `--grace` (default 30 s) is for running handlers, and service managers SIGKILL
 * after 10 s (docker stop, systemd's common setting).
 */
const IDLE_STOP_LIMIT_MS = 5000;

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

type Mode = 'websocket' | 'poll';

interface Stage {
  name: string;
  ms: number;
}

class Scenario {
  readonly t: TestContext;
  readonly scene: Scene;
  readonly mode: Mode;
  readonly dataDir: string;
  readonly callsLog: string;
  readonly runsLog: string;
  /** Runner processes ended by SIGKILL. */
  readonly killedPids = new Set<number>();
  readonly stages: Stage[] = [];
  #stageStart = Date.now();
  runnerKey = '';
  relay!: RelayProc;
  runner!: Child;
  runners = 0;
  relays = 0;
  agent!: Agent;
  inbox!: Inbox;
  /** Messages whose handler was SIGKILLed mid-run: handled twice, answered once. */
  readonly killedMidHandler = new Set<string>();

  constructor(t: TestContext, scene: Scene, mode: Mode) {
    this.t = t;
    this.scene = scene;
    this.mode = mode;
    this.dataDir = join(scene.dir, 'relay-data');
    this.callsLog = join(scene.dir, 'calls.log');
    this.runsLog = join(scene.dir, 'runs.log');
  }

  stage(name: string): void {
    const now = Date.now();
    this.stages.push({ name, ms: now - this.#stageStart });
    this.#stageStart = now;
  }

  async startRelay(port: number): Promise<void> {
    this.relays++;
    this.relay = await startRelay(this.scene, this.dataDir, port, `relay#${this.relays}`);
  }

  async startRunner(): Promise<Child> {
    this.runners++;
    const args = ['run', '--handler', './handler.ts', '--relay', this.relay.url, '--log-format', 'json'];
    if (this.mode === 'poll') args.push('--mode', 'poll');
    this.runner = this.scene.spawn(`runner#${this.runners}`, args);
    await this.runner.waitEvent('ready', {}, 'the runner to be ready', 20_000);
    return this.runner;
  }

  send(extra: Json = {}): Promise<Sent> {
    return this.agent.send(this.runnerKey, extra);
  }

  sendMany(n: number, extra: Json = {}): Promise<Sent[]> {
    return Promise.all(range(n).map(() => this.send(extra)));
  }

  /** Waits for the runner's "handler started" log line of message `id`. */
  handlerStarted(id: string, timeoutMs = 15_000): Promise<Json> {
    return this.runner.waitEvent('log', { id, msg: 'handler started' }, `the handler to start on ${id}`, timeoutMs);
  }

  /** Waits until each of `ids` has at least one reply on the agent's WebSocket. */
  async replies(ids: string[], what: string, timeoutMs = 25_000): Promise<void> {
    await this.inbox.waitUntil(
      () => ids.every((id) => this.inbox.repliesTo(id).length > 0),
      `replies to ${ids.length} messages (${what})`,
      timeoutMs,
      () => {
        const missing = ids.filter((id) => this.inbox.repliesTo(id).length === 0);
        return `no reply yet to ${missing.length}: ${missing.slice(0, 8).join(', ')}${missing.length > 8 ? ', …' : ''}\n${this.runner.tail(20)}\n${this.relay.child.tail(5)}`;
      },
    );
  }

  /** Message ids whose handler started in a runner that was later SIGKILLed. */
  startedInKilledRunner(): Set<string> {
    const ids = new Set<string>();
    if (!existsSync(this.runsLog)) return ids;
    for (const line of readFileSync(this.runsLog, 'utf8').split('\n')) {
      const [what, id, pid] = line.split(' ');
      if (what === 'start' && id && this.killedPids.has(Number(pid))) ids.add(id);
    }
    return ids;
  }

  async killRunner(): Promise<void> {
    this.killedPids.add(this.runner.pid);
    this.runner.kill('SIGKILL');
    const crashed = await this.runner.waitExit('SIGKILL of the runner', 5000);
    assert.equal(crashed.signal, 'SIGKILL');
  }

  calls(): Map<string, number> {
    const counts = new Map<string, number>();
    if (!existsSync(this.callsLog)) return counts;
    for (const id of readFileSync(this.callsLog, 'utf8').split('\n')) if (id) counts.set(id, (counts.get(id) ?? 0) + 1);
    return counts;
  }
}

async function chaos(t: TestContext, mode: Mode): Promise<void> {
  const scene = await Scene.create(t, `chaos-${mode}`);
  const s = new Scenario(t, scene, mode);

  // --- As a new user: keygen, a handler importing a helper, a relay, `mrp run`.
  const keygen = await scene.mrp(['keygen', '--json']);
  assert.equal(keygen.exit.code, 0, `mrp keygen failed:\n${keygen.stderr}`);
  s.runnerKey = (JSON.parse(keygen.stdout) as { public_key: string }).public_key;
  await writeFile(join(scene.dir, 'helper.ts'), HELPER_TS);
  await writeFile(join(scene.dir, 'handler.ts'), handlerTs(s.callsLog, s.runsLog));
  await s.startRelay(0);
  const port = s.relay.port;
  await s.startRunner();
  s.agent = new Agent(s.relay.url, `${mode}-${process.pid}`);
  s.inbox = new Inbox(s.agent);
  t.after(() => s.inbox.close());
  s.inbox.start();
  await s.inbox.waitUntil(() => s.inbox.authenticated > 0, "the agent's WebSocket to authenticate", 10_000);
  s.stage('setup');

  // --- (1) Normal traffic.
  const p1 = await s.sendMany(10);
  await s.replies(
    p1.map((m) => m.id),
    'phase 1: normal',
  );
  s.stage('1 normal');

  // --- (2) SIGKILL the relay while messages are in flight: slow handlers running, replies
  // pending, sends on the wire. Restart it on the same port and data dir; keep sending.
  const slow = await s.sendMany(4, { slow_ms: 400 });
  await s.handlerStarted(slow[0]!.id);
  const burst = range(6).map(() => s.send());
  await Promise.race(burst); // one answered: the others are (most likely) still in flight
  s.relay.child.kill('SIGKILL');
  const killed = await s.relay.child.waitExit('SIGKILL of the relay', 5000);
  assert.equal(killed.signal, 'SIGKILL');
  const whileDown = range(4).map(() => s.send());
  await s.startRelay(port);
  assert.equal(s.relay.port, port, 'the relay restarted on the same port');
  const p2 = [...slow, ...(await Promise.all(burst)), ...(await Promise.all(whileDown)), ...(await s.sendMany(6))];
  await s.replies(
    p2.map((m) => m.id),
    'phase 2: relay SIGKILLed and restarted',
  );
  s.stage('2 relay SIGKILL');

  // --- (3) SIGTERM the runner while a slow handler runs: it finishes that handler, replies,
  // and exits 0. Messages sent meanwhile wait for the next start.
  const drained = await s.send({ slow_ms: 1500 });
  await s.handlerStarted(drained.id);
  const from = s.runner.mark();
  s.runner.kill('SIGTERM');
  const duringStop = s.sendMany(3);
  const stopped = await s.runner.waitExit('SIGTERM while a handler runs (it must drain)', 30_000);
  assert.deepEqual(
    { code: stopped.code, signal: stopped.signal },
    { code: 0, signal: null },
    `the runner must exit 0 after SIGTERM\n${s.runner.tail()}`,
  );
  const handledOnStop = s.runner.events('handled').find((e) => e['id'] === drained.id);
  assert.ok(
    handledOnStop,
    `the runner stopped without finishing the running handler of ${drained.id}\n${s.runner.tail()}`,
  );
  assert.equal(handledOnStop['outcome'], 'replied');
  assert.ok(
    s.runner.lines.slice(from).some((l) => l.json?.['event'] === 'stopped'),
    'a "stopped" event before exit',
  );
  const p3 = [drained, ...(await duringStop), ...(await s.sendMany(2))]; // the last two while no runner runs
  await s.startRunner();
  p3.push(...(await s.sendMany(2)));
  await s.replies(
    p3.map((m) => m.id),
    'phase 3: runner SIGTERMed mid-handler and restarted',
  );
  s.stage('3 runner SIGTERM');

  // --- (3b) SIGKILL the runner mid-handler: on restart that message is handled again
  // (the handler never finished) and answered once.
  const victim = await s.send({ slow_ms: 2000 });
  await s.handlerStarted(victim.id);
  await s.killRunner();
  s.killedMidHandler.add(victim.id);
  const p3b = [victim, ...(await s.sendMany(2))];
  await s.startRunner();
  const again = await s.runner.waitEvent(
    'handled',
    { id: victim.id },
    `the killed message ${victim.id} to be handled again`,
    20_000,
  );
  assert.equal(again['outcome'], 'replied');
  assert.equal(again['redelivered'], true, 'the re-run is flagged as redelivered');
  await s.replies(
    p3b.map((m) => m.id),
    'phase 3b: runner SIGKILLed mid-handler and restarted',
  );
  s.stage('3b runner SIGKILL');

  // --- (3c) SIGKILL the runner at an arbitrary point of a burst: handlers running, replies on
  // the wire, acks pending. Whatever state each message was in, it is answered exactly once.
  const from3c = s.runner.mark();
  const burst3c = s.sendMany(12, { slow_ms: 150 });
  await s.runner.waitFor(
    (l) => l.json?.['event'] === 'handled',
    'the first handled event of the burst',
    15_000,
    from3c,
  );
  await s.killRunner();
  const p3c = await burst3c;
  await s.startRunner();
  await s.replies(
    p3c.map((m) => m.id),
    'phase 3c: runner SIGKILLed during a burst',
  );
  s.stage('3c runner SIGKILL in a burst');

  // --- (4) Failing handlers → error replies; normal ones still fine.
  const p4 = await Promise.all([...range(4).map(() => s.send({ fail: true })), ...range(3).map(() => s.send())]);
  await s.replies(
    p4.map((m) => m.id),
    'phase 4: failing handlers',
  );
  for (const m of p4.filter((x) => x.body['fail'] === true)) {
    // The reply can reach the agent before the runner's stdout line reaches us: wait for it.
    const h = await s.runner.waitEvent('handled', { id: m.id }, `the handled event of failing ${m.id}`, 10_000);
    assert.equal(h['outcome'], 'error', `handled event for failing ${m.id}`);
    assert.deepEqual(h['error'], { code: 'bad_input', message: `cannot handle ${String(m.body['nonce'])}` });
  }
  s.stage('4 failures');

  // --- Settle: sends whose answer was lost may have been stored; those must be answered too.
  const agentKey = s.agent.key;
  const originalsNow = (): string[] =>
    storedMessages(s.dataDir, agentKey, s.runnerKey)
      .filter((r) => r.sender_key === agentKey)
      .map((r) => r.message_id);
  await s.replies(originalsNow(), 'every message the relay stored, including uncertain sends');

  // Graceful stop of the idle runner (exit 0), then the authoritative reply list over HTTP.
  const termAt = Date.now();
  s.runner.kill('SIGTERM');
  const final = await s.runner.waitExit('final SIGTERM', 40_000);
  const idleStopMs = final.at - termAt;
  assert.equal(final.code, 0, `final SIGTERM: the runner must exit 0\n${s.runner.tail()}`);
  s.inbox.add(await s.agent.listInbox('sent'));
  s.inbox.add(await s.agent.listInbox('delivered'));
  s.inbox.close();
  s.relay.child.kill('SIGTERM');
  const relayExit = await s.relay.child.waitExit('SIGTERM of the relay', 15_000);
  assert.equal(relayExit.code, 0, `the relay must exit 0 on SIGTERM\n${s.relay.child.tail()}`);
  s.stage('settle + stop');

  // ============================== Assertions ==============================
  const stored = storedMessages(s.dataDir, agentKey, s.runnerKey);
  const originals = stored.filter((r) => r.sender_key === agentKey);
  const storedReplies = stored.filter((r) => r.sender_key === s.runnerKey);
  const byId = new Map(originals.map((r) => [r.message_id, r]));
  const attempts = new Map(s.agent.attempts.map((a) => [a.nonce, a]));

  // Every 201 is stored; every stored original is one of our attempts, stored at most once; an
  // attempt that never reached the relay is not stored.
  for (const sent of s.agent.sent)
    assert.ok(byId.has(sent.id), `message ${sent.id} got a 201 but is not in the relay's database`);
  const nonces = new Map<string, string>();
  for (const r of originals) {
    const nonce = String(r.body['nonce']);
    const a = attempts.get(nonce);
    assert.ok(a, `stored message ${r.message_id} (${nonce}) matches no attempt of ours`);
    assert.ok(!nonces.has(nonce), `attempt ${nonce} is stored twice (${nonces.get(nonce)}, ${r.message_id})`);
    nonces.set(nonce, r.message_id);
    assert.notEqual(a.outcome, 'not_sent', `attempt ${nonce} failed (${a.detail}) but was stored as ${r.message_id}`);
    if (a.outcome === 'stored') assert.equal(a.id, r.message_id);
    assert.equal(r.thread_id, null, 'originals carry no thread_id');
    assert.equal(r.in_reply_to, null, 'originals are not replies');
  }
  const uncertain = s.agent.uncertain();
  const uncertainStored = uncertain.filter((a) => nonces.has(a.nonce));

  // Replies: what the agent received (WebSocket + HTTP history) is exactly what the relay stored.
  const replies: Message[] = [...s.inbox.messages.values()].filter((m) => m.sender_key === s.runnerKey);
  const strangers = [...s.inbox.messages.values()].filter((m) => m.sender_key !== s.runnerKey);
  assert.deepEqual(
    strangers.map((m) => m.message_id),
    [],
    'the agent received messages from someone other than the runner',
  );
  assert.deepEqual(
    replies.map((m) => m.message_id).sort(),
    storedReplies.map((r) => r.message_id).sort(),
    'the replies the agent saw are the replies the relay stored',
  );
  for (const r of replies) {
    assert.ok(
      r.in_reply_to !== null && byId.has(r.in_reply_to),
      `reply ${r.message_id} answers an unknown message ${r.in_reply_to}`,
    );
  }
  const problems: string[] = [];
  for (const o of originals) {
    const mine = replies.filter((r) => r.in_reply_to === o.message_id);
    if (mine.length !== 1) {
      problems.push(
        `${o.message_id} ${JSON.stringify(o.body)}: ${mine.length} replies ${mine.map((r) => `${r.message_id}=${JSON.stringify(r.body)}`).join(' ')}`,
      );
      continue;
    }
    const reply = mine[0]!;
    if (reply.thread_id !== o.message_id) problems.push(`${o.message_id}: reply thread_id ${reply.thread_id}`);
    if (reply.recipient_key !== agentKey) problems.push(`${o.message_id}: reply sent to ${reply.recipient_key}`);
    try {
      assert.deepEqual(reply.body, expectedReply(o.message_id, o.body));
    } catch {
      problems.push(
        `${o.message_id}: reply body ${JSON.stringify(reply.body)}, expected ${JSON.stringify(expectedReply(o.message_id, o.body))}`,
      );
    }
  }
  assert.deepEqual(
    problems,
    [],
    `every stored message gets exactly one correct, threaded reply (${problems.length} wrong)`,
  );

  // The handler ran once per message; twice only where it was killed mid-run.
  const calls = s.calls();
  const cutShort = s.startedInKilledRunner();
  const callProblems: string[] = [];
  for (const id of calls.keys()) if (!byId.has(id)) callProblems.push(`handler ran for unknown message ${id}`);
  for (const o of originals) {
    const n = calls.get(o.message_id) ?? 0;
    if (s.killedMidHandler.has(o.message_id)) {
      if (n !== 2)
        callProblems.push(
          `${o.message_id} ${JSON.stringify(o.body)}: handler killed mid-run, then ran ${n}× in all (expected 2)`,
        );
    } else if (cutShort.has(o.message_id)) {
      // Started in a runner that was SIGKILLed during a burst: it may have been cut short.
      if (n < 1 || n > 2)
        callProblems.push(
          `${o.message_id} ${JSON.stringify(o.body)}: handler ran ${n}× (expected 1, or 2 after the SIGKILL)`,
        );
    } else if (n !== 1)
      callProblems.push(`${o.message_id} ${JSON.stringify(o.body)}: handler ran ${n}× (expected exactly 1)`);
  }
  assert.deepEqual(callProblems, [], 'handler invocations per message');

  const reruns = [...calls].filter(([, n]) => n > 1).length;

  const total = s.stages.reduce((sum, x) => sum + x.ms, 0);
  t.diagnostic(
    `${mode}: ${originals.length} messages stored (${s.agent.sent.length} acknowledged sends, ${uncertain.length} uncertain attempts, ` +
      `${uncertainStored.length} of them stored), ${replies.length} replies, ${s.inbox.redeliveries} reply redeliveries, ` +
      `${s.relays} relay starts, ${s.runners} runner starts, ${reruns} handler re-runs after SIGKILL, idle stop ${idleStopMs} ms`,
  );
  if (uncertain.length)
    t.diagnostic(
      `uncertain attempts: ${uncertain.map((a) => `${a.nonce} (${a.detail}) ${nonces.has(a.nonce) ? 'stored' : 'not stored'}`).join(', ')}`,
    );
  t.diagnostic(`${mode} timings: ${s.stages.map((x) => `${x.name} ${x.ms} ms`).join(' · ')} · total ${total} ms`);

  // An idle runner (no handler running, nothing queued) stops promptly on SIGTERM.
  assert.ok(
    idleStopMs <= IDLE_STOP_LIMIT_MS,
    `${mode}: an idle runner took ${idleStopMs} ms to exit after SIGTERM (limit ${IDLE_STOP_LIMIT_MS} ms)\n${s.runner.tail(6)}`,
  );
}

describe('mrp run under chaos (real processes)', () => {
  it(
    'websocket mode: relay SIGKILL/restart, runner SIGTERM and SIGKILL mid-handler, failing handlers',
    { timeout: 120_000 },
    (t) => chaos(t, 'websocket'),
  );

  it('poll mode: the same scenario with --mode poll', { timeout: 120_000 }, (t) => chaos(t, 'poll'));

  it('bad handler paths fail fast with exit 2 and one clear line', { timeout: 60_000 }, async (t) => {
    const scene = await Scene.create(t, 'badpath');
    const keygen = await scene.mrp(['keygen']);
    assert.equal(keygen.exit.code, 0, keygen.stderr);
    // A relay nobody listens on: failing fast means never trying to connect.
    const relay = 'http://127.0.0.1:9';

    const missing = await scene.mrp(['run', '--handler', './nope.ts', '--relay', relay], 10_000);
    assert.equal(missing.exit.code, 2, `missing handler: exit code\n${missing.stderr}`);
    assert.ok(missing.ms < 5000, `missing handler: took ${missing.ms} ms`);
    const missingLines = missing.stderr.trim().split('\n');
    assert.equal(missingLines.length, 1, `one line on stderr, got:\n${missing.stderr}`);
    assert.match(missingLines[0]!, /nope\.ts/);
    assert.equal(missing.stdout, '', 'nothing on stdout');

    await writeFile(
      join(scene.dir, 'broken.ts'),
      [
        '// a handler with a syntax error on line 4',
        'export default async function handler() {',
        "  const greeting = 'hi';",
        '  return { text: greeting +  };',
        '}',
        '',
      ].join('\n'),
    );
    const broken = await scene.mrp(['run', '--handler', './broken.ts', '--relay', relay], 10_000);
    assert.equal(broken.exit.code, 2, `syntax error: exit code\n${broken.stderr}`);
    assert.ok(broken.ms < 5000, `syntax error: took ${broken.ms} ms`);
    const brokenLines = broken.stderr.trim().split('\n');
    assert.equal(brokenLines.length, 1, `one line on stderr, got:\n${broken.stderr}`);
    assert.match(brokenLines[0]!, /broken\.ts:4\b/, 'names the file and the line');
    t.diagnostic(`nope.ts: ${missing.ms} ms: ${missingLines[0]}`);
    t.diagnostic(`broken.ts: ${broken.ms} ms: ${brokenLines[0]}`);
  });
});
