import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NOOP_METRICS, Registry } from '../../src/core/metrics.js';
import { parsePrometheus, sampleValue } from '../helpers/prometheus.js';

describe('core/metrics', () => {
  it('renders counters, gauges and histograms a Prometheus parser accepts', () => {
    const r = new Registry();
    const c = r.counter('jobs_total', 'Jobs by outcome');
    c.inc({ outcome: 'ok' });
    c.inc({ outcome: 'ok' }, 2);
    c.inc({ outcome: 'say "hi"\\\n' });
    let depth = 7;
    r.gauge('queue_depth', 'Waiting', { collect: () => depth });
    const g = r.gauge('temp', 'Settable');
    g.set(1.5);
    g.dec(undefined, 0.5);
    const h = r.histogram('latency_seconds', 'Latency', { buckets: [0.1, 1] });
    h.observe(0.05, { route: '/a' });
    h.observe(0.5, { route: '/a' });
    h.observe(5, { route: '/a' });
    r.histogram('empty_seconds', 'Never observed');
    const families = parsePrometheus(r.expose());
    assert.equal(sampleValue(families, 'jobs_total', { outcome: 'ok' }), 3);
    assert.equal(
      sampleValue(families, 'jobs_total', { outcome: 'say "hi"\\\n' }),
      1,
      'label values escaped and read back',
    );
    assert.equal(sampleValue(families, 'queue_depth'), 7);
    depth = 3;
    assert.equal(sampleValue(parsePrometheus(r.expose()), 'queue_depth'), 3, 'collected at exposition');
    assert.equal(sampleValue(families, 'temp'), 1);
    assert.equal(sampleValue(families, 'latency_seconds_bucket', { route: '/a', le: '0.1' }), 1);
    assert.equal(sampleValue(families, 'latency_seconds_bucket', { route: '/a', le: '1' }), 2);
    assert.equal(sampleValue(families, 'latency_seconds_bucket', { route: '/a', le: '+Inf' }), 3);
    assert.equal(sampleValue(families, 'latency_seconds_sum', { route: '/a' }), 5.55);
    assert.equal(sampleValue(families, 'empty_seconds_count'), 0);
    assert.equal(families.get('latency_seconds')!.type, 'histogram');
  });

  it('refuses bad names, duplicate registrations and counters going down', () => {
    const r = new Registry();
    assert.throws(() => r.counter('bad-name', 'x'), /invalid metric name/);
    r.counter('a_total', 'x');
    assert.throws(() => r.gauge('a_total', 'x'), /already registered/);
    assert.throws(() => r.counter('b_total', 'x').inc(undefined, -1), /only go up/);
    assert.throws(() => r.counter('c_total', 'x').inc({ 'bad-label': 'v' }), /invalid label name/);
    assert.throws(() => r.histogram('h', 'x', { buckets: [1, 1] }), /ascend/);
  });

  it('the no-op factory accepts everything and records nothing', () => {
    NOOP_METRICS.counter('x', 'y').inc({ a: 1 });
    NOOP_METRICS.gauge('x', 'y').set(1);
    NOOP_METRICS.histogram('x', 'y').observe(1);
  });
});
