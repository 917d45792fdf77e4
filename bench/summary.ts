/**
 * What `npm run bench` reports about the round trips: one round's figures per system, the median
 * over alternating rounds (`--rounds N`: floor, NATS, ws, poll, relay only, then again), the
 * runner's memory curve, and every figure as a ratio to the floor and to the NATS anchor.
 *
 * Medians are per figure (p50, throughput, CPU of each process, RSS) over the rounds, so one noisy
 * moment on a shared machine does not decide; lost, duplicated and failed requests are summed over
 * the rounds, since one lost message is one too many.
 */
import { median } from './lib.js';
import type { ExchangeResult } from './requester.js';

export interface RoundTrip {
  latency: ExchangeResult;
  throughput: ExchangeResult;
  /** Responder RSS (MB) after warm-up and at every 5% of the throughput run (`seconds` into it). */
  rss: Array<{ messages: number; mb: number; seconds: number }>;
  /** CPU time per message during the throughput run, in µs, per process ("relay" is nats-server for NATS). */
  cpuUs: { relay: number; responder: number; requester: number };
  /** The responder's RSS split at the end of the throughput run, MB (`memorySplitMb`). */
  split?: { private: number; shared: number };
}

/** The median figure over `values`, with the smallest and the largest. */
export interface Spread {
  median: number;
  min: number;
  max: number;
}

export function spread(values: readonly number[]): Spread {
  return { median: median(values), min: Math.min(...values), max: Math.max(...values) };
}

function combineExchange(results: readonly ExchangeResult[]): ExchangeResult {
  const med = (pick: (r: ExchangeResult) => number): number => median(results.map(pick));
  const sum = (pick: (r: ExchangeResult) => number): number => results.reduce((a, r) => a + pick(r), 0);
  return {
    count: results[0]!.count,
    window: results[0]!.window,
    seconds: med((r) => r.seconds),
    perSecond: med((r) => r.perSecond),
    p50: med((r) => r.p50),
    p95: med((r) => r.p95),
    p99: med((r) => r.p99),
    lost: sum((r) => r.lost),
    duplicates: sum((r) => r.duplicates),
    errors: sum((r) => r.errors),
    timedOut: results.some((r) => r.timedOut),
  };
}

/**
 * One RoundTrip standing for several: the median of every timing and CPU figure, lost/dup/errors
 * summed over the rounds, and the RSS curve of the round whose last sample is nearest the median.
 */
export function combine(trips: readonly RoundTrip[]): RoundTrip {
  if (trips.length === 1) return trips[0]!;
  const med = (pick: (t: RoundTrip) => number): number => median(trips.map(pick));
  const last = (t: RoundTrip): number => t.rss.at(-1)?.mb ?? Number.NaN;
  const middle = median(trips.map(last));
  return {
    latency: combineExchange(trips.map((t) => t.latency)),
    throughput: combineExchange(trips.map((t) => t.throughput)),
    rss: trips.reduce((a, t) => (Math.abs(last(t) - middle) < Math.abs(last(a) - middle) ? t : a)).rss,
    cpuUs: {
      relay: med((t) => t.cpuUs.relay),
      responder: med((t) => t.cpuUs.responder),
      requester: med((t) => t.cpuUs.requester),
    },
    ...(trips.every((t) => t.split)
      ? { split: { private: med((t) => t.split!.private), shared: med((t) => t.split!.shared) } }
      : {}),
  };
}

/** The runner's memory over one throughput run of `total` messages. */
export interface Memory {
  /** RSS after warm-up and after each quarter of the run, MB. */
  quarters: number[];
  peak: number;
  /** Least-squares slope of RSS over the second half of the run, in MB per 10k messages. */
  slopeMbPer10k: number;
}

export function memory(trip: RoundTrip, total: number): Memory {
  const q = total / 4;
  const at = (n: number): number => trip.rss.find((s) => s.messages === n)?.mb ?? Number.NaN;
  const pts = trip.rss.filter((s) => s.messages >= 2 * q);
  const mx = pts.reduce((a, p) => a + p.messages, 0) / pts.length;
  const my = pts.reduce((a, p) => a + p.mb, 0) / pts.length;
  const sxy = pts.reduce((a, p) => a + (p.messages - mx) * (p.mb - my), 0);
  const sxx = pts.reduce((a, p) => a + (p.messages - mx) ** 2, 0);
  return {
    quarters: [0, q, 2 * q, 3 * q, 4 * q].map(at),
    peak: Math.max(...trip.rss.map((s) => s.mb)),
    slopeMbPer10k: (sxy / sxx) * 10_000,
  };
}

/** The median of each memory figure over the rounds. */
export function combineMemory(list: readonly Memory[]): Memory {
  const med = (pick: (m: Memory) => number): number => median(list.map(pick));
  return {
    quarters: list[0]!.quarters.map((_, i) => med((m) => m.quarters[i]!)),
    peak: med((m) => m.peak),
    slopeMbPer10k: med((m) => m.slopeMbPer10k),
  };
}

/** A system's figures divided by a reference system's (2 = twice the reference's). */
export interface Ratios {
  p50: number;
  throughput: number;
  cpu: { relay: number; responder: number; requester: number; relayPlusResponder: number };
}

export function ratios(of: RoundTrip, to: RoundTrip): Ratios {
  return {
    p50: of.latency.p50 / to.latency.p50,
    throughput: of.throughput.perSecond / to.throughput.perSecond,
    cpu: {
      relay: of.cpuUs.relay / to.cpuUs.relay,
      responder: of.cpuUs.responder / to.cpuUs.responder,
      requester: of.cpuUs.requester / to.cpuUs.requester,
      relayPlusResponder: (of.cpuUs.relay + of.cpuUs.responder) / (to.cpuUs.relay + to.cpuUs.responder),
    },
  };
}

export interface SideBySideRow {
  system: string;
  /** This system in each round (for the ranges). */
  rounds: readonly RoundTrip[];
  /** The median over the rounds. */
  combined: RoundTrip;
}

/**
 * The comparison as a table: p50, round trips/s and CPU per message (relay or server /
 * responder or runner), each next to its ratio to the floor and to NATS. With more than one round
 * a figure shows its median and, in brackets, the range over the rounds.
 */
export function sideBySide(rows: readonly SideBySideRow[], floor: RoundTrip, nats: RoundTrip | undefined): string[] {
  const fmt = (n: number, digits = 2): string => n.toFixed(digits);
  const int = (n: number): string => Math.round(n).toLocaleString('en-US');
  const x = (n: number): string => `${fmt(n)}×`;
  const ranged = (values: number[], show: (n: number) => string): string => {
    const s = spread(values);
    return values.length > 1 ? `${show(s.median)} (${show(s.min)}–${show(s.max)})` : show(s.median);
  };
  const header = ['System', 'p50 ms', '×floor', '×NATS', 'round trips/s', '×floor', '×NATS'];
  header.push('CPU µs/msg relay / responder', '×floor', '×NATS');
  const body = rows.map(({ system, rounds, combined }) => {
    const vsFloor = ratios(combined, floor);
    const vsNats = nats && ratios(combined, nats);
    const cpuRatio = (r: Ratios | undefined): string => (r ? `${fmt(r.cpu.relay)} / ${fmt(r.cpu.responder)}` : '—');
    return [
      system,
      ranged(
        rounds.map((t) => t.latency.p50),
        (n) => fmt(n),
      ),
      x(vsFloor.p50),
      vsNats ? x(vsNats.p50) : '—',
      ranged(
        rounds.map((t) => t.throughput.perSecond),
        int,
      ),
      x(vsFloor.throughput),
      vsNats ? x(vsNats.throughput) : '—',
      `${int(combined.cpuUs.relay)} / ${int(combined.cpuUs.responder)}`,
      cpuRatio(vsFloor),
      cpuRatio(vsNats),
    ];
  });
  const width = (i: number): number => Math.max(...[header, ...body].map((r) => r[i]!.length));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => c.padEnd(width(i)))
      .join('  ')
      .trimEnd();
  return [line(header), line(header.map((_, i) => '─'.repeat(width(i)))), ...body.map(line)];
}
