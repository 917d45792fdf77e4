/**
 * bench/summary.ts: medians over alternating rounds, the memory curve and the ratios to the floor
 * and to NATS that `npm run bench` prints.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ExchangeResult } from '../../bench/requester.js';
import { combine, combineMemory, memory, type RoundTrip, ratios, sideBySide, spread } from '../../bench/summary.js';

const exchange = (over: Partial<ExchangeResult>): ExchangeResult => ({
  count: 100,
  window: 1,
  seconds: 1,
  perSecond: 100,
  p50: 1,
  p95: 2,
  p99: 3,
  lost: 0,
  duplicates: 0,
  errors: 0,
  timedOut: false,
  ...over,
});

/** A round trip whose responder RSS grows by `mbPer10k` per 10k messages over 100k messages. */
const trip = (p50: number, perSecond: number, relayUs: number, responderUs: number, mbPer10k = 0): RoundTrip => ({
  latency: exchange({ p50 }),
  throughput: exchange({ perSecond, window: 1000, count: 100_000 }),
  rss: Array.from({ length: 21 }, (_, i) => ({
    messages: i * 5000,
    mb: 50 + (i * 5000 * mbPer10k) / 10_000,
    seconds: i,
  })),
  cpuUs: { relay: relayUs, responder: responderUs, requester: 10 },
});

describe('bench summary', () => {
  it('takes the median of every figure over the rounds and sums what was lost', () => {
    const rounds = [trip(0.5, 7000, 90, 130), trip(0.9, 3000, 150, 400), trip(0.6, 6800, 100, 128)];
    rounds[1]!.throughput.lost = 2;
    rounds[2]!.throughput.duplicates = 1;
    const c = combine(rounds);
    assert.equal(c.latency.p50, 0.6);
    assert.equal(c.throughput.perSecond, 6800);
    assert.deepEqual(c.cpuUs, { relay: 100, responder: 130, requester: 10 });
    assert.equal(c.throughput.lost, 2);
    assert.equal(c.throughput.duplicates, 1);
    assert.equal(c.throughput.count, 100_000, 'count stays per round');
    assert.deepEqual(spread([3, 1, 2]), { median: 2, min: 1, max: 3 });
    assert.equal(combine([rounds[0]!]), rounds[0], 'one round stands for itself');
    assert.equal(c.split, undefined, 'no memory split when the rounds have none');
    const split = [48, 57, 52].map((mb, i) => ({ ...rounds[i]!, split: { private: mb, shared: 42 + i } }));
    assert.deepEqual(combine(split).split, { private: 52, shared: 43 });
  });

  it('measures the RSS slope over the second half in MB per 10k messages', () => {
    const growing = memory(trip(1, 1, 1, 1, 2), 100_000);
    assert.deepEqual(growing.quarters, [50, 55, 60, 65, 70]);
    assert.ok(Math.abs(growing.slopeMbPer10k - 2) < 1e-9);
    assert.equal(growing.peak, 70);
    const flat = memory(trip(1, 1, 1, 1, 0), 100_000);
    assert.equal(flat.slopeMbPer10k, 0);
    const med = combineMemory([growing, flat, memory(trip(1, 1, 1, 1, 1), 100_000)]);
    assert.ok(Math.abs(med.slopeMbPer10k - 1) < 1e-9);
    assert.equal(med.quarters[4], 60);
  });

  it('divides each figure by the reference system’s', () => {
    const floor = trip(0.2, 20_000, 40, 20);
    const product = trip(0.5, 7000, 100, 130);
    const r = ratios(product, floor);
    assert.equal(r.p50, 2.5);
    assert.equal(r.throughput, 0.35);
    assert.equal(r.cpu.relay, 2.5);
    assert.equal(r.cpu.responder, 6.5);
    assert.equal(r.cpu.relayPlusResponder, 230 / 60);
  });

  it('prints one row per system with ratios to the floor and to NATS, and ranges over rounds', () => {
    const floor = trip(0.2, 20_000, 40, 20);
    const nats = trip(0.25, 30_000, 10, 20);
    const ws = [trip(0.5, 7000, 100, 130), trip(0.7, 6000, 100, 130)];
    const lines = sideBySide(
      [
        { system: 'nats', rounds: [nats], combined: nats },
        { system: 'floor', rounds: [floor], combined: floor },
        { system: 'ws', rounds: ws, combined: combine(ws) },
      ],
      floor,
      nats,
    );
    assert.equal(lines.length, 5);
    const wsLine = lines[4]!;
    assert.match(wsLine, /^ws\s+0\.60 \(0\.50–0\.70\)\s+3\.00×\s+2\.40×\s+6,500 \(6,000–7,000\)\s+0\.33×\s+0\.22×/);
    assert.match(wsLine, /100 \/ 130\s+2\.50 \/ 6\.50\s+10\.00 \/ 6\.50$/);
    const without = sideBySide([{ system: 'floor', rounds: [floor], combined: floor }], floor, undefined);
    assert.match(without[2]!, /^floor\s+0\.20\s+1\.00×\s+—\s+20,000\s+1\.00×\s+—/);
  });
});
