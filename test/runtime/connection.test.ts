import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import WebSocket, { WebSocketServer } from 'ws';
import { Session } from '../../src/client/session.js';
import { ManualClock } from '../../src/core/clock.js';
import { isRetryable } from '../../src/core/errors.js';
import { Keypair } from '../../src/protocol/signing.js';
import { Journal } from '../../src/runtime/journal.js';
import { connected, gate, Peer, startAgent } from '../helpers/agent.js';
import { RawSocket, startRelay } from '../helpers/relay.js';

/** A scripted relay that authenticates anyone, then never says another word. */
async function silentServer(t: import('node:test').TestContext): Promise<{ url: string; connections: () => number }> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await once(wss, 'listening');
  let count = 0;
  wss.on('connection', (ws) => {
    count++;
    ws.on('message', (data) => {
      const frame = JSON.parse(data.toString());
      if (frame.type === 'auth')
        ws.send(JSON.stringify({ type: 'auth_result', status: 'ok', public_key: frame.public_key }));
    });
  });
  t.after(() => {
    for (const c of wss.clients) c.terminate();
    wss.close();
  });
  return { url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/v1/ws`, connections: () => count };
}

function session(
  t: import('node:test').TestContext,
  url: string,
  clock: ManualClock,
  keypair = Keypair.generate(),
  sockets: WebSocket[] = [],
): Session {
  const s = new Session({
    url,
    keypair,
    clock,
    backoff: { random: () => 0 },
    createSocket: (u) => {
      const ws = new WebSocket(u, { perMessageDeflate: false });
      sockets.push(ws);
      return ws;
    },
  });
  t.after(() => s.close());
  return s;
}

describe('session: staying connected', () => {
  it('detects a silent (zombie) connection and reconnects', async (t) => {
    const server = await silentServer(t);
    const clock = new ManualClock(Date.now());
    const s = session(t, server.url, clock);
    s.start();
    await s.ready();
    clock.advance(30_000); // idle → JSON ping
    const disconnect = s.next('disconnect');
    clock.advance(10_000); // no answer → dead
    const [info] = await disconnect;
    assert.match(info.explanation, /no sign of life/);
    assert.equal(info.willReconnect, true);
    assert.equal(info.delayMs, 0, 'reconnects at once');
    const again = s.next('ready');
    clock.advance(0);
    await again;
    assert.equal(server.connections(), 2);
  });

  it('a relay that answers stays connected across heartbeats', async (t) => {
    const relay = await startRelay(t);
    const clock = new ManualClock(Date.now());
    const sockets: WebSocket[] = [];
    const s = session(t, relay.wsUrl, clock, Keypair.generate(), sockets);
    s.start();
    await s.ready();
    let drops = 0;
    s.on('disconnect', () => drops++);
    for (let i = 0; i < 3; i++) {
      const pong = once(sockets[0]!, 'message');
      clock.advance(i === 0 ? 30_000 : 20_000); // 30 s of silence → JSON ping
      await pong;
      clock.advance(10_000); // the deadline passes with an answer in hand
    }
    assert.equal(drops, 0);
    assert.equal(s.status, 'ready');
  });

  it('close 4002: explains that another process holds the key and waits 30 s', async (t) => {
    const relay = await startRelay(t);
    const kp = Keypair.generate();
    const holders = [await RawSocket.open(relay.wsUrl), await RawSocket.open(relay.wsUrl)];
    for (const [i, h] of holders.entries()) {
      t.after(() => h.ws.terminate());
      // Distinct seconds: the same key signing the same second twice would be a replay.
      assert.equal((await h.auth(kp, Date.now() - 2000 * (i + 1))).status, 'ok');
    }
    const clock = new ManualClock(Date.now());
    const s = session(t, relay.wsUrl, clock, kp);
    const disconnect = s.next('disconnect');
    s.start();
    const [info] = await disconnect;
    assert.equal(info.code, 4002);
    assert.match(info.explanation, /another process/);
    assert.ok(info.delayMs >= 30_000, `waits ${info.delayMs} ms`);
    assert.equal(info.authError?.code, 'too_many_connections');
    holders[0]!.ws.close();
    await holders[0]!.closed;
    const ready = s.next('ready');
    clock.advance(info.delayMs);
    await ready;
  });

  it('authentication refused (clock skew): explained, backed off, then gives up', async (t) => {
    const relay = await startRelay(t);
    const clock = new ManualClock(Date.now() + 10 * 60_000);
    const s = session(t, relay.wsUrl, clock);
    const infos: Array<{ explanation: string; willReconnect: boolean; delayMs: number }> = [];
    const fatal = s.next('fatal');
    s.on('disconnect', (info) => {
      infos.push(info);
      if (info.willReconnect) setImmediate(() => clock.advance(info.delayMs));
    });
    s.start();
    const [err] = await fatal;
    assert.equal(infos.length, 5);
    assert.ok(infos.every((i) => /clock/.test(i.explanation)));
    assert.deepEqual(
      infos.map((i) => i.willReconnect),
      [true, true, true, true, false],
    );
    assert.ok(infos[1]!.delayMs > infos[0]!.delayMs, 'backs off');
    assert.equal(err.kind, 'auth');
    assert.equal(err.code, 'timestamp_expired');
    assert.equal(s.status, 'closed');
  });
});

describe('suspended while connected', () => {
  it('is an auth refusal (kind auth, not retryable), as it is when suspended before connecting', async (t) => {
    const relay = await startRelay(t);
    const agent = await startAgent(t, relay, () => 'ok');
    const fatal = agent.runtime.next('fatal');
    agent.runtime.start();
    await connected(agent.runtime);
    await relay.relay.setAgentStatus(agent.keypair.publicKey, 'suspended');
    const [err] = await fatal;
    assert.equal(err.code, 'agent_suspended');
    assert.equal(err.kind, 'auth');
    assert.equal(isRetryable(err), false);
  });
});

describe('runtime across relay restarts', () => {
  it('reconnects after the relay restarts and answers what arrived meanwhile', async (t) => {
    const first = await startRelay(t);
    const port = first.relay.port;
    const agent = await startAgent(t, first, (m) => ({ got: m.body }));
    agent.runtime.start();
    await connected(agent.runtime);
    const peer1 = await Peer.connect(t, first);
    await peer1.send(agent.keypair.publicKey, { n: 1 });
    await peer1.waitForReplies(1);

    const down = agent.runtime.next('disconnected');
    await first.relay.close();
    const [info] = await down;
    assert.equal(info.willReconnect, true);
    const second = await startRelay(t, { dataDir: first.dataDir, port });
    const peer2 = await Peer.connect(t, second);
    const { message_id } = await peer2.send(agent.keypair.publicKey, { n: 2 });
    await agent.runtime.next('connected');
    const [reply] = await peer2.waitForReplies(1);
    assert.equal(reply!.in_reply_to, message_id);
    assert.deepEqual(reply!.body, { got: { n: 2 } });
  });
});

describe('rate-limited replies', () => {
  it('wait for the relay window instead of failing; every reply arrives once', async (t) => {
    const clock = new ManualClock(Date.now());
    const relay = await startRelay(t, { clock, sendRatePerMinute: 2, heartbeatIntervalMs: 3_600_000 });
    const agent = await startAgent(
      t,
      relay,
      async (m, ctx) => {
        await ctx.reply({ step: 1, of: m.body });
        await ctx.reply({ step: 2, of: m.body });
        return { step: 3, of: m.body };
      },
      // Jumping the clock a minute must not look like a silent connection.
      { clock, options: { timeoutMs: 3_600_000 }, session: { heartbeatIdleMs: 3_600_000 } },
    );
    const retries: number[] = [];
    agent.runtime.on('reply_retry', ({ error, delayMs }) => {
      // Jumping the clock a minute can also time out a send still in flight (outcome unknown):
      // the outbox then checks the thread before sending again.
      if (error.code === 'rate_limit_exceeded') retries.push(delayMs);
      setImmediate(() => clock.advance(delayMs));
    });
    agent.runtime.start();
    await connected(agent.runtime);
    const peer = await Peer.connect(t, relay, clock);
    await peer.send(agent.keypair.publicKey, 'a');
    await peer.send(agent.keypair.publicKey, 'b');
    const replies = await peer.waitForReplies(6);
    assert.ok(retries.length >= 2, `waited out the limit ${retries.length} times`);
    assert.ok(retries.every((d) => d > 0 && d <= 60_000));
    const keys = replies.map((r) => JSON.stringify(r.body));
    assert.equal(new Set(keys).size, 6, 'no duplicates');
  });
});

describe('drain', () => {
  it('stop() lets running handlers finish, then flushes the reply and the ack', async (t) => {
    const relay = await startRelay(t);
    const release = gate();
    let startedHandler!: () => void;
    const started = new Promise<void>((r) => (startedHandler = r));
    const agent = await startAgent(t, relay, async () => {
      startedHandler();
      await release.wait;
      return 'finished during drain';
    });
    agent.runtime.start();
    await connected(agent.runtime);
    const peer = await Peer.connect(t, relay);
    const { message_id } = await peer.send(agent.keypair.publicKey, {});
    await started;
    const draining = agent.runtime.next('draining');
    const stopped = agent.runtime.stop();
    assert.deepEqual((await draining)[0], { running: 1, queued: 0, replies: 0 });
    release.open();
    await stopped;
    assert.equal(peer.replyTo(message_id).length, 1);
    assert.equal((await peer.client.messageStatus(message_id)).status, 'delivered', 'acked before closing');
  });

  it('a handler that outlives the grace period is aborted and left for the next start', async (t) => {
    const relay = await startRelay(t);
    let abortedWith: unknown;
    const agent = await startAgent(
      t,
      relay,
      (_m, ctx) =>
        new Promise(() => {
          ctx.signal.addEventListener('abort', () => (abortedWith = ctx.signal.reason));
        }),
      { options: { graceMs: 50 } },
    );
    const received = agent.runtime.next('received');
    agent.runtime.start();
    await connected(agent.runtime);
    const peer = await Peer.connect(t, relay);
    const { message_id } = await peer.send(agent.keypair.publicKey, {});
    await received;
    await agent.runtime.stop();
    assert.match(String((abortedWith as Error)?.message), /shutting down/);
    assert.equal((await peer.client.messageStatus(message_id)).status, 'sent', 'not acked');
    const journal = Journal.open(agent.journalDir);
    t.after(() => journal.close());
    assert.deepEqual(
      journal.takeRecovered().map((e) => [e.id, e.state]),
      [[message_id, 'received']],
    );
  });
});

describe('poll mode stops promptly', () => {
  it('an idle poller cancels its long poll on stop, and nothing is lost', async (t) => {
    const relay = await startRelay(t);
    const agent = await startAgent(t, relay, () => 'ok', { mode: 'poll', pollWaitSeconds: 30 });
    agent.runtime.start();
    await connected(agent.runtime);
    const started = performance.now();
    await agent.runtime.stop();
    assert.ok(performance.now() - started < 5000, 'does not sit out the 30 s long poll');
    // A message sent now stays for the next start.
    const peer = await Peer.connect(t, relay);
    const { message_id } = await peer.send(agent.keypair.publicKey, {});
    assert.equal((await peer.client.messageStatus(message_id)).status, 'sent');
  });
});
