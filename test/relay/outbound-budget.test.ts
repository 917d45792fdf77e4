/**
 * Issue 9 leftovers, relay side: what a WebSocket peer makes the relay hold for it.
 * - Answers (JSON pongs, control pongs, results, errors) it does not read: at most 256 KiB unsent
 *   per connection (MAX_CONTROL_UNSENT), then close 1008.
 * - Unsent bytes across all connections (`maxOutboundBytes`): past the budget, the connection with
 *   the most is cut (1013); the others go on.
 * - An unfinished frame that makes no progress for `partialFrameTimeoutMs` (manual clock): 1008.
 * `bench/attacks.ts` (`unread-pongs`, `control-pings`) measures the relay's RSS under the same attacks.
 */
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { LIMITS } from '../../src/protocol/constants.js';
import type { Keypair } from '../../src/protocol/signing.js';
import { MAX_CONTROL_UNSENT } from '../../src/relay/hub.js';
import { newAgent, startRelay } from '../helpers/relay.js';
import { frameHeader, type TcpWs, tcpWs, textFrame, write } from './_raw.js';
import { freshAuthFrame, roundTrip, wsConnect } from './_support.js';

const MiB = 1024 * 1024;

async function until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

async function authed(t: TestContext, wsUrl: string, kp: Keypair = newAgent(), now?: number): Promise<TcpWs> {
  const s = await tcpWs(t, wsUrl);
  await write(s.socket, textFrame(JSON.stringify(freshAuthFrame(kp, now))));
  await until(() => s.received().includes('"status":"ok"'), 'auth_result ok');
  return s;
}

/** Writes `frame` in bursts, never reading, until `stop()` holds or the relay cuts the socket (at most 400 MiB). */
async function flood(s: TcpWs, frame: Buffer, stop: () => boolean): Promise<void> {
  s.socket.pause();
  const burst = Buffer.concat(Array.from({ length: 256 }, () => frame));
  for (let sent = 0; sent < 400 * MiB && !stop(); sent += burst.length) {
    if (!(await write(s.socket, burst))) break;
  }
}

const bigPing = textFrame(`{"type":"ping","ts":"${'p'.repeat(LIMITS.pongTsMaxBytes - 2)}"}`);

describe('unsent bytes are bounded per connection and relay-wide', () => {
  it('JSON pings whose pongs are never read: cut (1008) with at most 256 KiB of answers unsent', async (t) => {
    const { wsUrl, logs, relay } = await startRelay(t);
    const reader = await wsConnect(t, wsUrl, newAgent());
    const s = await authed(t, wsUrl);
    const cut = () => logs.some((e) => e.msg === 'ws_slow_reader');
    await flood(s, bigPing, cut);
    await until(cut, 'the slow-reader cut', 20_000);
    const entry = logs.find((e) => e.msg === 'ws_slow_reader')!;
    // Cut once answers are unsent AND the socket holds them (the kernel refused them): what this
    // process holds is `buffered`, at most one pong past the cap; `answers` also counts what sits
    // in the kernel's socket buffer.
    assert.ok((entry['answers'] as number) > MAX_CONTROL_UNSENT, JSON.stringify(entry));
    assert.ok((entry['buffered'] as number) > MAX_CONTROL_UNSENT, JSON.stringify(entry));
    assert.ok(
      (entry['buffered'] as number) <= MAX_CONTROL_UNSENT + 2 * 1024,
      `one pong past the cap at most: ${JSON.stringify(entry)}`,
    );
    await s.gone;
    await roundTrip(reader);
    assert.equal(relay.connections, 1);
  });

  it('control pings whose pongs are never read count the same way (the relay answers them, not ws)', async (t) => {
    const { wsUrl, logs } = await startRelay(t);
    const s = await authed(t, wsUrl);
    const ping = Buffer.concat([frameHeader(125, 9), Buffer.alloc(125, 0x70)]);
    const cut = () => logs.some((e) => e.msg === 'ws_slow_reader');
    await flood(s, ping, cut);
    await until(cut, 'the slow-reader cut', 20_000);
    const entry = logs.find((e) => e.msg === 'ws_slow_reader')!;
    assert.ok((entry['buffered'] as number) <= MAX_CONTROL_UNSENT + 256, JSON.stringify(entry));
    await s.gone;
  });

  it('a burst of answers the kernel takes at once is not a slow reader (1,000 inline sends committed together)', async (t) => {
    const { wsUrl, logs } = await startRelay(t, { sendRatePerMinute: 0, receiveRatePerMinute: 0 });
    const recipient = newAgent();
    const s = await wsConnect(t, wsUrl, newAgent());
    const results: unknown[] = [];
    s.ws.on('message', (data: Buffer) => {
      const frame = JSON.parse(data.toString()) as { type: string };
      if (frame.type === 'send_result') results.push(frame);
    });
    const frames = Array.from({ length: 1000 }, (_, n) =>
      JSON.stringify({
        type: 'send',
        request_id: `r${n}-${'x'.repeat(200)}`,
        recipient_key: recipient.publicKey,
        body: { n },
      }),
    );
    for (const f of frames) s.ws.send(f);
    await until(() => results.length === 1000, '1,000 send_results', 30_000);
    assert.equal(logs.filter((e) => e.msg === 'ws_slow_reader').length, 0);
  });

  it('a control ping is still answered with its payload', async (t) => {
    const { wsUrl } = await startRelay(t);
    const s = await authed(t, wsUrl);
    const mark = s.received().length;
    await write(s.socket, Buffer.concat([frameHeader(5, 9), Buffer.from('hello')]));
    // A pong frame: opcode 10, unmasked, length 5, "hello".
    await until(
      () =>
        s
          .received()
          .subarray(mark)
          .equals(Buffer.from([0x8a, 5, ...Buffer.from('hello')])),
      'the control pong',
    );
  });

  it('past the relay-wide budget the connection with the most unsent bytes is cut (1013); the others go on', async (t) => {
    // Below the per-connection cap for answers, so the relay-wide budget is what cuts.
    const { wsUrl, logs, relay } = await startRelay(t, { maxOutboundBytes: 128 * 1024 });
    const attacker = newAgent();
    const idle = await authed(t, wsUrl);
    idle.socket.pause();
    const reader = await wsConnect(t, wsUrl, newAgent());
    const s = await authed(t, wsUrl, attacker);
    const cut = () => logs.some((e) => e.msg === 'ws_outbound_budget');
    await flood(s, bigPing, cut);
    await until(cut, 'the outbound budget cut', 20_000);
    const entry = logs.find((e) => e.msg === 'ws_outbound_budget')!;
    assert.equal(entry['agent'], attacker.publicKey, JSON.stringify(entry));
    assert.ok((entry['total'] as number) > 128 * 1024);
    assert.ok(!logs.some((e) => e.msg === 'ws_slow_reader'), 'the budget, not the per-connection cap');
    await s.gone;
    // The connection that holds nothing unsent, and the honest one, are untouched.
    await roundTrip(reader);
    assert.equal(idle.socket.destroyed, false);
    assert.equal(relay.connections, 2);
  });
});

describe('an unfinished frame that stalls', () => {
  it('is cut (1008) once partialFrameTimeoutMs pass without a new byte; progress restarts the wait', async (t) => {
    const clock = new ManualClock(Date.now());
    const { wsUrl, relay, logs } = await startRelay(t, { clock, heartbeatIntervalMs: 3_600_000 });
    const s = await authed(t, wsUrl, newAgent(), clock.now());
    const pongs = () => s.received().toString('latin1').split('"pong"').length - 1;
    // A whole ping, then half of a second one (its pong says the relay read the chunk).
    const second = textFrame(`{"type":"ping","ts":"${'q'.repeat(200)}"}`);
    await write(s.socket, Buffer.concat([textFrame('{"type":"ping"}'), second.subarray(0, 100)]));
    await until(() => pongs() === 1, 'the first pong');
    clock.advance(20_000);
    // The rest of it (answered), and the start of a third frame: the last byte arrived at +20 s.
    await write(s.socket, Buffer.concat([second.subarray(100), frameHeader(1000), Buffer.alloc(10, 0x20)]));
    await until(() => pongs() === 2, 'the second pong');
    clock.advance(15_000); // +35 s: the first look finds 15 s without progress, and waits on
    assert.equal(relay.connections, 1);
    assert.ok(!logs.some((e) => e.msg === 'ws_frame_stalled'));
    clock.advance(15_000); // +50 s: 30 s since the last byte
    assert.ok(logs.some((e) => e.msg === 'ws_frame_stalled'));
    assert.equal(await s.closeCode(), 1008);
    await s.gone;
  });

  it('frames that complete are never cut, however long the connection lives', async (t) => {
    const clock = new ManualClock(Date.now());
    const { wsUrl, relay } = await startRelay(t, { clock, heartbeatIntervalMs: 3_600_000 });
    const s = await authed(t, wsUrl, newAgent(), clock.now());
    for (let i = 1; i <= 3; i++) {
      await write(s.socket, textFrame('{"type":"ping"}'));
      await until(() => s.received().toString('latin1').split('"pong"').length - 1 === i, `pong ${i}`);
      clock.advance(40_000);
    }
    assert.equal(relay.connections, 1);
  });
});
