/**
 * The requester side of a round trip, over one WebSocket: inline `send` frames out, replies back
 * as pushed `message` frames (each acked). Works unchanged against the MRP relay and the floor.
 */
import WebSocket from 'ws';
import { authFrame, type Keypair } from '../src/protocol/signing.js';
import { percentile } from './lib.js';

type Frame = Record<string, unknown> & { type?: unknown };

/** Opens a socket to `wsUrl` and authenticates (§5.1); `onFrame` sees every later frame. */
export async function connect(
  wsUrl: string,
  keypair: Keypair,
  onFrame: (frame: Frame, at: number) => void,
): Promise<WebSocket> {
  const ws = new WebSocket(wsUrl, { perMessageDeflate: false });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const authed = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no auth_result from ${wsUrl}`)), 10_000);
    ws.on('message', (data) => {
      const frame = JSON.parse(String(data)) as Frame;
      if (frame.type === 'auth_result') {
        clearTimeout(timer);
        if (frame['status'] === 'ok') resolve();
        else reject(new Error(`auth refused: ${JSON.stringify(frame)}`));
      } else onFrame(frame, performance.now());
    });
  });
  ws.send(JSON.stringify(authFrame(keypair, Date.now())));
  await authed;
  return ws;
}

/** An exchange's figures from what it counted (`started`: `performance.now()` at its start). */
export function exchangeResult(r: {
  count: number;
  window: number;
  started: number;
  ok: number;
  duplicates: number;
  errors: number;
  latencies: number[];
  timedOut: boolean;
}): ExchangeResult {
  const seconds = (performance.now() - r.started) / 1000;
  const sorted = r.latencies.sort((a, b) => a - b);
  return {
    count: r.count,
    window: r.window,
    seconds,
    perSecond: r.ok / seconds,
    p50: percentile(sorted, 50),
    p95: percentile(sorted, 95),
    p99: percentile(sorted, 99),
    lost: r.count - r.ok,
    duplicates: r.duplicates,
    errors: r.errors,
    timedOut: r.timedOut,
  };
}

export interface ExchangeResult {
  count: number;
  window: number;
  seconds: number;
  perSecond: number;
  p50: number;
  p95: number;
  p99: number;
  /** Requests without a reply whose in_reply_to names their message id. */
  lost: number;
  /** Replies to a message that already had one. */
  duplicates: number;
  /** send_result errors. */
  errors: number;
  timedOut: boolean;
}

/** A requester as the round-trip plan drives it: the WebSocket one here, the NATS one in bench/nats.ts. */
/**
 * The scaffolding of one `exchange`, shared by the requesters: `begin(finish)` makes the run and
 * starts sending (`finish` ends it once all are answered); the result is `end(timedOut)`'s, when
 * it finishes or `timeoutMs` passes, whichever comes first.
 */
export function exchangeRun(
  timeoutMs: number,
  begin: (finish: () => void) => void,
  end: (timedOut: boolean) => ExchangeResult,
): Promise<ExchangeResult> {
  return new Promise((resolve) => {
    let timer: NodeJS.Timeout | undefined;
    const finish = (timedOut: boolean): void => {
      clearTimeout(timer);
      resolve(end(timedOut));
    };
    timer = setTimeout(() => finish(true), timeoutMs);
    begin(() => finish(false));
  });
}

export interface Exchanger {
  /**
   * Sends `count` requests keeping at most `window` unanswered, until all are answered or
   * `timeoutMs` passes; `progress` sees the number answered after each reply.
   */
  exchange(
    count: number,
    window: number,
    timeoutMs: number,
    progress?: (answered: number) => void,
  ): Promise<ExchangeResult>;
  close(): void;
}

/** The bookkeeping of one `exchange` that every requester keeps. */
export interface RunBase {
  id: number;
  count: number;
  window: number;
  sent: number;
  answered: number;
  duplicates: number;
  sentAt: Float64Array;
  latencies: number[];
  progress: ((answered: number) => void) | undefined;
  finish: () => void;
}

/** A fresh `RunBase`: nothing sent yet. */
export function newRun(
  id: number,
  count: number,
  window: number,
  progress: ((answered: number) => void) | undefined,
  finish: () => void,
): RunBase {
  return {
    id,
    count,
    window,
    sent: 0,
    answered: 0,
    duplicates: 0,
    sentAt: new Float64Array(count),
    latencies: [],
    progress,
    finish,
  };
}

interface Run extends RunBase {
  errors: number;
  /** message_id (from send_result) → request number. */
  ids: Map<string, number>;
  /** in_reply_to → request number echoed in the reply body. */
  replies: Map<string, number>;
}

export class Requester implements Exchanger {
  readonly #recipient: string;
  #ws!: WebSocket;
  #run: Run | undefined;
  #runs = 0;

  private constructor(recipient: string) {
    this.#recipient = recipient;
  }

  /** A requester that sends to `recipient` through the relay at `wsUrl`. */
  static async open(wsUrl: string, keypair: Keypair, recipient: string): Promise<Requester> {
    const r = new Requester(recipient);
    r.#ws = await connect(wsUrl, keypair, (frame, at) => r.#onFrame(frame, at));
    return r;
  }

  close(): void {
    this.#ws.close();
  }

  /**
   * Sends `count` requests keeping at most `window` unanswered, until all are answered or
   * `timeoutMs` passes. `window` 1 measures latency; a large window, throughput.
   */
  exchange(
    count: number,
    window: number,
    timeoutMs: number,
    progress?: (answered: number) => void,
  ): Promise<ExchangeResult> {
    const started = performance.now();
    let run!: Run;
    return exchangeRun(
      timeoutMs,
      (finish) => {
        run = {
          ...newRun(++this.#runs, count, window, progress, finish),
          errors: 0,
          ids: new Map(),
          replies: new Map(),
        };
        this.#run = run;
        this.#pump(run);
      },
      (timedOut) => {
        this.#run = undefined;
        let ok = 0;
        for (const [replyTo, n] of run.replies) if (run.ids.get(replyTo) === n) ok++;
        return exchangeResult({ started, ok, ...run, timedOut });
      },
    );
  }

  #pump(run: Run): void {
    while (run.sent < run.count && run.sent - run.answered - run.errors < run.window) {
      const n = run.sent++;
      run.sentAt[n] = performance.now();
      this.#ws.send(
        `{"type":"send","request_id":"${run.id}:${n}","recipient_key":"${this.#recipient}","body":{"run":${run.id},"n":${n}}}`,
      );
    }
  }

  #onFrame(frame: Frame, at: number): void {
    if (frame.type === 'message') {
      const message = frame['message'] as {
        message_id: string;
        in_reply_to?: string | null;
        body?: { echo?: { run?: number; n?: number } };
      };
      this.#ws.send(`{"type":"ack","message_id":"${message.message_id}"}`);
      const run = this.#run;
      const echo = message.body?.echo;
      if (!run || echo?.run !== run.id || typeof echo.n !== 'number' || !message.in_reply_to) return;
      if (run.replies.has(message.in_reply_to)) {
        run.duplicates++;
        return;
      }
      run.replies.set(message.in_reply_to, echo.n);
      run.latencies.push(at - run.sentAt[echo.n]!);
      run.answered++;
      run.progress?.(run.answered);
      if (run.answered + run.errors >= run.count) run.finish();
      else this.#pump(run);
    } else if (frame.type === 'send_result') {
      const run = this.#run;
      const [runId, n] = String(frame['request_id']).split(':').map(Number);
      if (!run || runId !== run.id || n === undefined) return;
      if (frame['status'] === 'ok') run.ids.set(String(frame['message_id']), n);
      else {
        run.errors++;
        if (run.errors <= 3) console.error(`send failed: ${JSON.stringify(frame)}`);
        if (run.answered + run.errors >= run.count) run.finish();
        else this.#pump(run);
      }
    }
  }
}
