/**
 * What `mrp run --health-port` serves, built only from what the runtime and the client already
 * report (runtime events, trace callbacks): nothing in the runtime knows it is being watched.
 *
 *   /healthz  200 while the process answers (liveness).
 *   /readyz   200 when connected (or polling successfully), the journal is writable and the
 *             runner is not draining; 503 otherwise. The body says which check failed.
 *             "Writable" follows the runtime's `readiness` events (a journal write failed, e.g.
 *             disk full, until one works again) as well as the file's write permission: a
 *             permission check alone says yes on a full disk.
 *   /metrics  Prometheus text: messages by outcome, handler latency, queue depth, in flight,
 *             reconnects, duplicates suppressed, 429 answers.
 */
import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import type { HttpTrace } from '../client/http.js';
import type { FrameTrace } from '../client/session.js';
import { PROMETHEUS_CONTENT_TYPE, Registry } from '../core/metrics.js';
import type { Runtime } from '../runtime/runtime.js';
import type { Probe, Routes } from './health-server.js';
import type { Tracers } from './trace.js';

/** Handler latencies: 1 ms … 60 s (a handler's default deadline is 30 s). */
const LATENCY_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export class RunnerMonitor {
  readonly registry = new Registry();
  readonly #messages = this.registry.counter(
    'mrp_runner_messages_total',
    'Messages handled, by outcome (replied, no_reply, error, timeout, reply_failed)',
  );
  readonly #latency = this.registry.histogram(
    'mrp_runner_handler_duration_seconds',
    'From handler start to acknowledgement, by outcome',
    {
      buckets: LATENCY_BUCKETS,
    },
  );
  readonly #reconnects = this.registry.counter(
    'mrp_runner_reconnects_total',
    'Connections re-established after a drop',
  );
  readonly #disconnects = this.registry.counter(
    'mrp_runner_disconnects_total',
    'Connections to the relay lost (polling: failures after polls worked); failed reconnect attempts are not counted',
  );
  readonly #duplicates = this.registry.counter(
    'mrp_runner_duplicates_suppressed_total',
    'Messages offered again and not handled twice, by reason',
  );
  readonly #rateLimited = this.registry.counter(
    'mrp_runner_rate_limited_total',
    'Answers refused for a rate limit (HTTP 429 or rate_limit_exceeded frames)',
  );
  readonly #handlerErrors = this.registry.counter(
    'mrp_runner_handler_errors_total',
    'Handlers that threw or timed out',
  );
  #runtime: Runtime | undefined;
  #mode: string | undefined;
  #journalPath: string | undefined;
  #connected = false;
  #draining = false;
  /** Why the journal cannot be written now (an error code from the runtime's `readiness` events). */
  #journalFailure: string | undefined;

  /** For the client's trace callbacks: counts 429s. */
  readonly onHttp = (e: HttpTrace): void => {
    if (e.status === 429) this.#rateLimited.inc({ via: 'http' });
  };

  readonly onFrame = (e: FrameTrace): void => {
    if (e.direction === 'in' && e.code === 'rate_limit_exceeded') this.#rateLimited.inc({ via: 'websocket' });
  };

  /** The given trace printers, plus this monitor's counting. */
  tracers(print: Tracers): Required<Tracers> {
    return {
      http: (e) => {
        print.http?.(e);
        this.onHttp(e);
      },
      ws: (e) => {
        print.ws?.(e);
        this.onFrame(e);
      },
    };
  }

  /**
   * Starts listening to a runtime; `journalPath` is the file whose writability /readyz checks;
   * `mode` (websocket, poll, webhook) is shown by /healthz.
   */
  attach(runtime: Runtime, journalPath: string, mode?: string): void {
    this.#runtime = runtime;
    this.#mode = mode;
    this.#journalPath = journalPath;
    this.registry.gauge('mrp_runner_queue_depth', 'Messages waiting for a handler slot', {
      collect: () => runtime.queued,
    });
    this.registry.gauge('mrp_runner_in_flight', 'Handlers running now', { collect: () => runtime.running });
    this.registry.gauge('mrp_runner_connected', '1 when connected to the relay (or polling successfully)', {
      collect: () => (this.#connected ? 1 : 0),
    });
    runtime.on('connected', ({ reconnected }) => {
      this.#connected = true;
      if (reconnected) this.#reconnects.inc();
    });
    // A connection lost, not every failed attempt to get one back: a source reports each refused
    // reconnect as `disconnected` too, while it was not connected.
    runtime.on('disconnected', () => {
      if (this.#connected) this.#disconnects.inc();
      this.#connected = false;
    });
    runtime.on('handled', (h) => {
      this.#messages.inc({ outcome: h.outcome });
      this.#latency.observe(h.durationMs / 1000, { outcome: h.outcome });
    });
    runtime.on('handler_error', () => this.#handlerErrors.inc());
    runtime.on('duplicate', ({ reason }) => this.#duplicates.inc({ reason }));
    runtime.on('readiness', ({ ready, error }) => {
      // The code only: the message names local paths, and /readyz may be reachable from outside.
      this.#journalFailure = ready ? undefined : (error?.code ?? 'journal_unwritable');
    });
    runtime.on('draining', () => (this.#draining = true));
    runtime.on('stopped', () => {
      this.#draining = true;
      this.#connected = false;
    });
  }

  /** The readiness checks, each true when fine. */
  async readiness(): Promise<{
    ready: boolean;
    connected: boolean;
    journal_writable: boolean;
    draining: boolean;
    journal_error?: string;
  }> {
    const failure = this.#journalFailure;
    let journalWritable = false;
    if (this.#journalPath && failure === undefined) {
      journalWritable = await access(this.#journalPath, constants.W_OK).then(
        () => true,
        () => false,
      );
    }
    const connected = this.#runtime !== undefined && this.#connected;
    return {
      ready: connected && journalWritable && !this.#draining,
      connected,
      journal_writable: journalWritable,
      draining: this.#draining,
      ...(failure === undefined ? {} : { journal_error: failure }),
    };
  }

  routes(): Routes {
    const json = (status: number, value: unknown): Probe => ({
      status,
      body: `${JSON.stringify(value)}\n`,
      contentType: 'application/json',
    });
    return {
      '/healthz': () => json(200, { alive: true, ...(this.#mode === undefined ? {} : { mode: this.#mode }) }),
      '/readyz': async () => {
        const r = await this.readiness();
        return json(r.ready ? 200 : 503, r);
      },
      '/metrics': () => ({ status: 200, body: this.registry.expose(), contentType: PROMETHEUS_CONTENT_TYPE }),
    };
  }
}
