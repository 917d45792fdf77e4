/**
 * Counters, gauges and histograms with the Prometheus text exposition format (version 0.0.4).
 *
 * Why not prom-client: the relay layer may only use `ws` and `better-sqlite3`, the runner needs
 * six metrics and the relay five, and the exposition format is a few lines of text. This file is
 * pure (no I/O): the CLI serves `expose()` over HTTP. Label values are escaped as the format
 * requires; label sets are bounded by the callers (outcomes, routes, statuses — never keys or ids).
 */

export type Labels = Readonly<Record<string, string | number>>;

export interface Counter {
  inc(labels?: Labels, value?: number): void;
}

export interface Gauge {
  set(value: number, labels?: Labels): void;
  inc(labels?: Labels, value?: number): void;
  dec(labels?: Labels, value?: number): void;
}

export interface Histogram {
  observe(value: number, labels?: Labels): void;
}

export interface GaugeOptions {
  /** Read at every exposition instead of being set (e.g. a queue's length). */
  collect?: () => number;
}

export interface HistogramOptions {
  /** Upper bounds, ascending (default: 5 ms … 10 s, in seconds). */
  buckets?: readonly number[];
}

/** What instrumented code needs: a factory of metrics. A registry is one; a no-op is another. */
export interface MetricsFactory {
  counter(name: string, help: string): Counter;
  gauge(name: string, help: string, options?: GaugeOptions): Gauge;
  histogram(name: string, help: string, options?: HistogramOptions): Histogram;
}

export const DEFAULT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;

const NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

/** Checks label names when a series is first seen (not on every update). */
function checked(labels: Labels | undefined): Labels | undefined {
  for (const k of Object.keys(labels ?? {}))
    if (!LABEL_RE.test(k)) throw new RangeError(`metrics: invalid label name "${k}"`);
  return labels;
}

function labelText(labels: Labels | undefined, extra?: [string, string]): string {
  const pairs = Object.entries(labels ?? {}).map(([k, v]) => `${k}="${escapeLabel(String(v))}"`);
  if (extra) pairs.push(`${extra[0]}="${escapeLabel(extra[1])}"`);
  return pairs.length ? `{${pairs.join(',')}}` : '';
}

function number(n: number): string {
  if (Number.isNaN(n)) return 'NaN';
  if (n === Infinity) return '+Inf';
  if (n === -Infinity) return '-Inf';
  return String(n);
}

/** A stable key for a label set (sorted, so `{a,b}` and `{b,a}` are one series). */
function seriesKey(labels: Labels | undefined): string {
  if (!labels) return '';
  return JSON.stringify(
    Object.keys(labels)
      .sort()
      .map((k) => [k, String(labels[k])]),
  );
}

interface Metric {
  readonly name: string;
  lines(): string[];
}

class CounterImpl implements Counter, Metric {
  readonly #series = new Map<string, { labels: Labels | undefined; value: number }>();
  readonly name: string;
  readonly help: string;
  constructor(name: string, help: string) {
    this.name = name;
    this.help = help;
  }
  inc(labels?: Labels, value = 1): void {
    if (!(value >= 0)) throw new RangeError(`metrics: ${this.name} can only go up (got ${value})`);
    const key = seriesKey(labels);
    const s = this.#series.get(key);
    if (s) s.value += value;
    else this.#series.set(key, { labels: checked(labels), value });
  }
  lines(): string[] {
    const out = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    if (this.#series.size === 0) out.push(`${this.name} 0`);
    for (const s of this.#series.values()) out.push(`${this.name}${labelText(s.labels)} ${number(s.value)}`);
    return out;
  }
}

class GaugeImpl implements Gauge, Metric {
  readonly #series = new Map<string, { labels: Labels | undefined; value: number }>();
  readonly #collect: (() => number) | undefined;
  readonly name: string;
  readonly help: string;
  constructor(name: string, help: string, options: GaugeOptions) {
    this.name = name;
    this.help = help;
    this.#collect = options.collect;
  }
  set(value: number, labels?: Labels): void {
    const key = seriesKey(labels);
    const s = this.#series.get(key);
    if (s) s.value = value;
    else this.#series.set(key, { labels: checked(labels), value });
  }
  inc(labels?: Labels, value = 1): void {
    const key = seriesKey(labels);
    const s = this.#series.get(key);
    if (s) s.value += value;
    else this.#series.set(key, { labels: checked(labels), value });
  }
  dec(labels?: Labels, value = 1): void {
    this.inc(labels, -value);
  }
  lines(): string[] {
    if (this.#collect) this.set(this.#collect());
    const out = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} gauge`];
    if (this.#series.size === 0) out.push(`${this.name} 0`);
    for (const s of this.#series.values()) out.push(`${this.name}${labelText(s.labels)} ${number(s.value)}`);
    return out;
  }
}

class HistogramImpl implements Histogram, Metric {
  readonly #buckets: readonly number[];
  readonly #series = new Map<string, { labels: Labels | undefined; counts: number[]; sum: number; count: number }>();
  readonly name: string;
  readonly help: string;
  constructor(name: string, help: string, options: HistogramOptions) {
    this.name = name;
    this.help = help;
    this.#buckets = options.buckets ?? DEFAULT_BUCKETS;
    for (let i = 1; i < this.#buckets.length; i++) {
      if (!(this.#buckets[i]! > this.#buckets[i - 1]!)) throw new RangeError(`metrics: ${name} buckets must ascend`);
    }
  }
  observe(value: number, labels?: Labels): void {
    const key = seriesKey(labels);
    let s = this.#series.get(key);
    if (!s)
      this.#series.set(key, (s = { labels: checked(labels), counts: this.#buckets.map(() => 0), sum: 0, count: 0 }));
    for (let i = 0; i < this.#buckets.length; i++) if (value <= this.#buckets[i]!) s.counts[i]!++;
    s.sum += value;
    s.count++;
  }
  lines(): string[] {
    const out = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    const series = this.#series.size
      ? [...this.#series.values()]
      : [{ labels: undefined, counts: this.#buckets.map(() => 0), sum: 0, count: 0 }];
    for (const s of series) {
      this.#buckets.forEach((le, i) => {
        out.push(`${this.name}_bucket${labelText(s.labels, ['le', number(le)])} ${s.counts[i]}`);
      });
      out.push(`${this.name}_bucket${labelText(s.labels, ['le', '+Inf'])} ${s.count}`);
      out.push(`${this.name}_sum${labelText(s.labels)} ${number(s.sum)}`);
      out.push(`${this.name}_count${labelText(s.labels)} ${s.count}`);
    }
    return out;
  }
}

/** Holds metrics and renders them as Prometheus text. */
export class Registry implements MetricsFactory {
  readonly #metrics = new Map<string, Metric>();

  #add<M extends Metric>(metric: M): M {
    if (!NAME_RE.test(metric.name)) throw new RangeError(`metrics: invalid metric name "${metric.name}"`);
    if (this.#metrics.has(metric.name)) throw new RangeError(`metrics: ${metric.name} is already registered`);
    this.#metrics.set(metric.name, metric);
    return metric;
  }

  counter(name: string, help: string): Counter {
    return this.#add(new CounterImpl(name, help));
  }

  gauge(name: string, help: string, options: GaugeOptions = {}): Gauge {
    return this.#add(new GaugeImpl(name, help, options));
  }

  histogram(name: string, help: string, options: HistogramOptions = {}): Histogram {
    return this.#add(new HistogramImpl(name, help, options));
  }

  /** The exposition text (`Content-Type: text/plain; version=0.0.4`). */
  expose(): string {
    return `${[...this.#metrics.values()].flatMap((m) => m.lines()).join('\n')}\n`;
  }
}

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

const noop = (): void => undefined;
const NOOP_INSTRUMENT = { inc: noop, dec: noop, set: noop, observe: noop };

/** Instruments that record nothing: the default when nobody asked for metrics. */
export const NOOP_METRICS: MetricsFactory = {
  counter: () => NOOP_INSTRUMENT,
  gauge: () => NOOP_INSTRUMENT,
  histogram: () => NOOP_INSTRUMENT,
};
