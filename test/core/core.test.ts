import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LazyAbort, sleep } from '../../src/core/async.js';
import { Backoff } from '../../src/core/backoff.js';
import { ManualClock } from '../../src/core/clock.js';
import { TypedEmitter } from '../../src/core/emitter.js';
import {
  AbortError,
  ConfigError,
  isRetryable,
  type MrpError,
  NetworkError,
  OutcomeUnknownError,
  RelayError,
  TimeoutError,
  toMrpError,
  UsageError,
} from '../../src/core/errors.js';

describe('errors', () => {
  it('classifies relay codes into auth and api', () => {
    for (const code of ['unauthorized', 'invalid_signature', 'timestamp_expired', 'agent_suspended']) {
      assert.equal(new RelayError(code, 'x', { status: 401 }).kind, 'auth');
    }
    assert.equal(new RelayError('acl_denied', 'x', { status: 403 }).kind, 'api');
  });

  it('one isRetryable for everything', () => {
    const yes = [
      new NetworkError('down'),
      new TimeoutError('slow'),
      new OutcomeUnknownError('dropped'),
      new RelayError('rate_limit_exceeded', 'x', { status: 429 }),
      new RelayError('replay_detected', 'x', { status: 409 }),
      new RelayError('internal_error', 'x', { status: 500 }),
      new RelayError('bad_gateway', 'x', { status: 502 }),
    ];
    const no = [
      new RelayError('acl_denied', 'x', { status: 403 }),
      new RelayError('bad_request', 'x', { status: 400 }),
      new RelayError('invalid_signature', 'x', { status: 401 }),
      new RelayError('insufficient_storage', 'x', { status: 507 }),
      new UsageError('bad flag'),
      new ConfigError('key_not_found', 'x'),
      new AbortError(),
      new Error('plain'),
      'string',
    ];
    for (const e of yes) assert.equal(isRetryable(e), true, (e as MrpError).code);
    for (const e of no) assert.equal(isRetryable(e), false, String((e as MrpError).code ?? e));
  });

  it('wraps unknown throwables', () => {
    const e = toMrpError(new Error('boom'));
    assert.equal(e.code, 'internal_error');
    assert.equal(e.message, 'boom');
    assert.equal(toMrpError('s').message, 's');
    const u = new UsageError('x');
    assert.equal(toMrpError(u), u);
  });
});

describe('backoff (§5.7)', () => {
  it('first retry in [250, 1000], then doubling with equal jitter up to 30 s', () => {
    const low = new Backoff({ random: () => 0 });
    const high = new Backoff({ random: () => 0.999999 });
    const lows = Array.from({ length: 8 }, () => low.next());
    const highs = Array.from({ length: 8 }, () => high.next());
    assert.deepEqual(lows, [250, 1000, 2000, 4000, 8000, 15000, 15000, 15000]);
    assert.deepEqual(highs, [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
    low.reset();
    assert.equal(low.attempt, 0);
    assert.equal(low.next(), 250);
  });
  it('checks its options', () => {
    assert.throws(() => new Backoff({ firstMinMs: 10, firstMaxMs: 5 }), /firstMinMs/);
  });
});

describe('ManualClock', () => {
  it('fires timers in due order and intervals once per period', () => {
    const clock = new ManualClock(0);
    const seen: string[] = [];
    clock.setTimeout(() => seen.push('b@20'), 20);
    clock.setTimeout(() => seen.push('a@10'), 10);
    const every = clock.setInterval(() => seen.push(`i@${clock.now()}`), 15);
    const cancelled = clock.setTimeout(() => seen.push('never'), 5);
    cancelled.cancel();
    clock.advance(31);
    assert.deepEqual(seen, ['a@10', 'i@15', 'b@20', 'i@30']);
    assert.equal(clock.now(), 31);
    every.cancel();
    assert.equal(clock.pending, 0);
  });

  it('timers scheduled by timers run within the same advance', () => {
    const clock = new ManualClock(0);
    const seen: number[] = [];
    clock.setTimeout(() => clock.setTimeout(() => seen.push(clock.now()), 5), 5);
    clock.advance(10);
    assert.deepEqual(seen, [10]);
  });

  it('advanceAsync lets promise chains run between timers', async () => {
    const clock = new ManualClock(0);
    const order: string[] = [];
    void sleep(10, { clock }).then(async () => {
      order.push('first');
      await sleep(10, { clock });
      order.push('second');
    });
    await clock.advanceAsync(25);
    assert.deepEqual(order, ['first', 'second']);
  });
});

describe('async helpers', () => {
  it('sleep rejects when aborted', async () => {
    const clock = new ManualClock(0);
    const ac = new AbortController();
    const p = sleep(1000, { clock, signal: ac.signal });
    ac.abort(new AbortError('stop'));
    await assert.rejects(p, /stop/);
    assert.equal(clock.pending, 0);
  });
});

describe('TypedEmitter', () => {
  class E extends TypedEmitter<{ tick: [number]; done: [] }> {
    fire(n: number): void {
      this.emit('tick', n);
    }
  }
  it('on, once, off, next', async () => {
    const e = new E();
    const seen: number[] = [];
    const l = (n: number): void => void seen.push(n);
    e.on('tick', l);
    e.once('tick', (n) => seen.push(n * 10));
    e.fire(1);
    e.fire(2);
    e.off('tick', l);
    e.fire(3);
    assert.deepEqual(seen, [1, 10, 2]);
    const next = e.next('tick');
    e.fire(7);
    assert.deepEqual(await next, [7]);
    assert.equal(e.listenerCount('tick'), 0);
  });
});

describe('LazyAbort', () => {
  it('makes its signal only when asked, aborted with the first reason even when made afterwards', () => {
    const before = new LazyAbort();
    const early = before.signal;
    before.abort(new Error('first'));
    before.abort(new Error('second'));
    assert.equal(early.aborted, true);
    assert.equal((early.reason as Error).message, 'first');

    const after = new LazyAbort();
    after.abort('gone');
    assert.equal(after.aborted, true);
    assert.equal(after.reason, 'gone');
    assert.equal(after.signal.aborted, true, 'a signal made after the abort is aborted');
    assert.equal(after.signal.reason, 'gone');
    assert.equal(new LazyAbort().signal.aborted, false);
  });

  it('without a reason, reports the same AbortError as its signal, whenever the signal is made', () => {
    for (const early of [true, false]) {
      const a = new LazyAbort();
      const signal = early ? a.signal : undefined;
      a.abort();
      assert.equal((a.reason as DOMException).name, 'AbortError');
      assert.equal((signal ?? a.signal).reason, a.reason);
    }
  });
});
