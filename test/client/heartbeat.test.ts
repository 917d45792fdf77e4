/**
 * Client liveness (§5.5): after `idleMs` of silence a JSON ping; if nothing at all arrives within
 * `timeoutMs` more, the connection is dead. Driven entirely by the manual clock.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Heartbeat } from '../../src/client/heartbeat.js';
import { ManualClock } from '../../src/core/clock.js';

function setup(options = { idleMs: 30_000, timeoutMs: 10_000 }) {
  const clock = new ManualClock();
  const calls: string[] = [];
  const hb = new Heartbeat(
    clock,
    { ping: () => calls.push(`ping@${clock.now() - start}`), dead: () => calls.push(`dead@${clock.now() - start}`) },
    options,
  );
  const start = clock.now();
  return { clock, hb, calls };
}

describe('Heartbeat', () => {
  it('pings after exactly idleMs of silence, not before', () => {
    const { clock, hb, calls } = setup();
    hb.start();
    clock.advance(29_999);
    assert.deepEqual(calls, []);
    clock.advance(1);
    assert.deepEqual(calls, ['ping@30000']);
  });

  it('declares the connection dead when nothing answers the ping within timeoutMs', () => {
    const { clock, hb, calls } = setup();
    hb.start();
    clock.advance(30_000);
    clock.advance(9_999);
    assert.deepEqual(calls, ['ping@30000']);
    clock.advance(1);
    assert.deepEqual(calls, ['ping@30000', 'dead@40000']);
    clock.advance(600_000);
    assert.deepEqual(calls, ['ping@30000', 'dead@40000'], 'dead once, then silent');
    assert.equal(clock.pending, 0);
  });

  it('any activity answers a ping; the next ping comes idleMs after the last activity', () => {
    const { clock, hb, calls } = setup();
    hb.start();
    clock.advance(30_000); // ping
    clock.advance(4_000);
    hb.activity(); // at 34 s: a pong, a message, a control ping — anything
    clock.advance(6_000); // the ping's deadline (40 s) passes with an answer in hand
    assert.deepEqual(calls, ['ping@30000']);
    clock.advance(23_999); // 63 999: still within 30 s of the last activity
    assert.deepEqual(calls, ['ping@30000']);
    clock.advance(1);
    assert.deepEqual(calls, ['ping@30000', 'ping@64000']);
  });

  it('activity during the idle period postpones the ping', () => {
    const { clock, hb, calls } = setup();
    hb.start();
    clock.advance(20_000);
    hb.activity();
    clock.advance(10_000); // 30 s after start, 10 s after the activity
    assert.deepEqual(calls, []);
    clock.advance(20_000);
    assert.deepEqual(calls, ['ping@50000']);
  });

  it('a steady stream of traffic never pings', () => {
    const { clock, hb, calls } = setup();
    hb.start();
    for (let i = 0; i < 100; i++) {
      clock.advance(5_000);
      hb.activity();
    }
    assert.deepEqual(calls, []);
  });

  it('stop() cancels everything, including a ping waiting for its answer', () => {
    const { clock, hb, calls } = setup();
    hb.start();
    clock.advance(30_000);
    hb.stop();
    assert.equal(clock.pending, 0);
    clock.advance(600_000);
    assert.deepEqual(calls, ['ping@30000'], 'no dead() after stop');
  });

  it('can be started again after a stop (a new connection)', () => {
    const { clock, hb, calls } = setup({ idleMs: 1000, timeoutMs: 500 });
    hb.start();
    hb.stop();
    clock.advance(5_000);
    assert.deepEqual(calls, []);
    hb.start();
    clock.advance(1000);
    assert.deepEqual(calls, ['ping@6000']);
    clock.advance(500);
    assert.deepEqual(calls, ['ping@6000', 'dead@6500']);
  });
});
