/**
 * The relay's own metrics: requests by route and status, messages accepted, webhook attempts,
 * open sockets and store latency. The relay asks a `MetricsFactory` (core/metrics.ts) for its instruments; the
 * default factory records nothing, so a relay without `metrics` pays one no-op call per event.
 * The CLI passes a `Registry` and serves its text on `--metrics-port`.
 */
import { type MetricsFactory, NOOP_METRICS } from '../core/metrics.js';
import type { Store } from './store/store.js';

export type { MetricsFactory } from '../core/metrics.js';

/** Store calls take microseconds to milliseconds; the default buckets start too high. */
const STORE_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1];

export interface RelayMetrics {
  /** One HTTP request answered; `route` is the route pattern (bounded), never the raw path. */
  request(method: string, route: string, status: number, seconds: number): void;
  /** Messages committed to storage. */
  accepted(count: number): void;
  /** One webhook delivery attempt ended (§3.8). */
  webhook(result: 'succeeded' | 'failed'): void;
  /** Wraps the store so that every call's duration is observed, by operation. */
  instrument(store: Store): Store;
}

export function relayMetrics(factory: MetricsFactory | undefined, live: { connections: () => number }): RelayMetrics {
  const f = factory ?? NOOP_METRICS;
  const requests = f.counter('mrp_relay_http_requests_total', 'HTTP requests answered, by method, route and status');
  const requestSeconds = f.histogram(
    'mrp_relay_http_request_duration_seconds',
    'Time to answer an HTTP request, by route',
  );
  const accepted = f.counter(
    'mrp_relay_messages_accepted_total',
    'Messages committed to storage (HTTP and WebSocket sends)',
  );
  const webhooks = f.counter(
    'mrp_relay_webhook_attempts_total',
    'Webhook delivery attempts, by result (succeeded: a 200; failed: anything else)',
  );
  f.gauge('mrp_relay_websockets_open', 'Open WebSocket connections', { collect: live.connections });
  const storeSeconds = f.histogram('mrp_relay_store_duration_seconds', 'Time of a storage call, by operation', {
    buckets: STORE_BUCKETS,
  });
  return {
    request(method, route, status, seconds) {
      requests.inc({ method, route, status });
      requestSeconds.observe(seconds, { route });
    },
    accepted(count) {
      if (count > 0) accepted.inc(undefined, count);
    },
    webhook(result) {
      webhooks.inc({ result });
    },
    instrument(store) {
      if (f === NOOP_METRICS) return store;
      return new Proxy(store, {
        get(target, prop) {
          const value: unknown = Reflect.get(target, prop);
          if (typeof value !== 'function' || typeof prop !== 'string') return value;
          return (...args: unknown[]) => {
            const started = performance.now();
            const done = (): void => storeSeconds.observe((performance.now() - started) / 1000, { op: prop });
            let result: unknown;
            try {
              result = (value as (...a: unknown[]) => unknown).apply(target, args);
            } catch (err) {
              done();
              throw err;
            }
            // An asynchronous store is timed until its promise settles.
            if (result instanceof Promise) return result.finally(done);
            done();
            return result;
          };
        },
      });
    },
  };
}
