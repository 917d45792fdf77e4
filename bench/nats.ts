/**
 * The NATS anchor (issue 15): NATS core request-reply, not durable, as a second yardstick next to
 * the floor. Three processes on loopback, like the other round trips: `nats-server` (the Debian
 * package, a child on a free port), one responder (bench/nats-responder.ts, nats.js, the product's
 * echo shape) and the requester here, in the bench process.
 *
 * The requester publishes with a reply subject under one inbox it subscribes to (`<inbox>.>`) —
 * what nats.js `request()` does inside, minus a promise and a timer per request — so it sees every
 * reply and can count lost and duplicated ones, and can keep a window of requests in flight. It
 * speaks the same plan as the WebSocket requester (bench/requester.ts) and returns the same
 * ExchangeResult. Skipped, with the reason, when `nats-server` is not on PATH or the `nats` package
 * (a dev dependency) is not installed: CI and `npm ci` never need either.
 */
import { accessSync, constants, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { delimiter, join } from 'node:path';
import type { Msg, NatsConnection } from 'nats';
import { type Child, ROOT, startNode, startProcess } from './lib.js';
import { type ExchangeResult, type Exchanger, exchangeResult, exchangeRun, newRun, type RunBase } from './requester.js';

/** Versions of what the anchor runs, for the report. */
export interface NatsVersions {
  server: string;
  client: string;
}

/** The nats-server binary on PATH, or undefined. */
function natsServerBinary(): string | undefined {
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    if (!dir) continue;
    const file = join(dir, 'nats-server');
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {}
  }
  return undefined;
}

/** Why the anchor cannot run here (a sentence), or its versions when it can. */
export async function natsAvailable(): Promise<{ skipped: string } | NatsVersions> {
  const bin = natsServerBinary();
  if (!bin) return { skipped: 'nats-server is not on PATH (Debian: apt-get install nats-server)' };
  try {
    await import('nats');
  } catch {
    return { skipped: 'the nats package is not installed (it is a dev dependency: npm install)' };
  }
  const { spawnSync } = await import('node:child_process');
  const out = spawnSync(bin, ['--version'], { encoding: 'utf8', timeout: 10_000 });
  let client = 'unknown';
  try {
    client = String(
      (JSON.parse(readFileSync(join(ROOT, 'node_modules', 'nats', 'package.json'), 'utf8')) as { version: string })
        .version,
    );
  } catch {}
  return { server: (out.stdout || out.stderr || 'unknown').trim().replace(/^nats-server:\s*/, ''), client };
}

/** A loopback port nobody listens on right now (nats-server cannot pick one and tell us). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export interface NatsAnchor {
  server: Child;
  responder: Child;
  url: string;
  subject: string;
}

/** nats-server on a free loopback port and one echo responder, both ready. */
export async function startNats(from: string): Promise<NatsAnchor> {
  const bin = natsServerBinary();
  if (!bin) throw new Error('nats-server is not on PATH');
  let server: Child | undefined;
  let url = '';
  // The port is free when chosen, not necessarily when nats-server binds it: try again then.
  for (let attempt = 1; !server; attempt++) {
    const port = await freePort();
    const child = startProcess('nats-server', bin, ['-a', '127.0.0.1', '-p', String(port)]);
    try {
      await child.waitForStderr(/Server is ready/, 15_000);
      server = child;
      url = `nats://127.0.0.1:${port}`;
    } catch (e) {
      await child.stop();
      if (attempt >= 3) throw e;
    }
  }
  const subject = 'mrp.bench.echo';
  try {
    const responder = startNode('nats responder', ['--import', 'tsx', 'bench/nats-responder.ts', url, subject, from]);
    await responder.waitForJson((v) => v['ready'] === true, 15_000);
    return { server, responder, url, subject };
  } catch (e) {
    await server.stop();
    throw e;
  }
}

interface Run extends RunBase {
  ok: number;
  /** 1 once request n has had its reply. */
  seen: Uint8Array;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export class NatsRequester implements Exchanger {
  readonly #nc: NatsConnection;
  readonly #subject: string;
  readonly #inbox: string;
  #run: Run | undefined;
  #runs = 0;

  private constructor(nc: NatsConnection, subject: string, inbox: string) {
    this.#nc = nc;
    this.#subject = subject;
    this.#inbox = inbox;
  }

  /** A requester on its own connection to `url` that asks on `subject`. */
  static async open(url: string, subject: string): Promise<NatsRequester> {
    const { connect, createInbox } = await import('nats');
    const nc = await connect({ servers: url, name: 'mrp-bench-requester' });
    const r = new NatsRequester(nc, subject, createInbox());
    nc.subscribe(`${r.#inbox}.>`, { callback: (err, msg) => err || r.#onReply(msg, performance.now()) });
    await nc.flush();
    return r;
  }

  close(): void {
    void this.#nc.close();
  }

  /** As Requester.exchange: `count` requests, at most `window` unanswered, until all are answered or `timeoutMs`. */
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
        run = { ...newRun(++this.#runs, count, window, progress, finish), ok: 0, seen: new Uint8Array(count) };
        this.#run = run;
        this.#pump(run);
      },
      (timedOut) => {
        this.#run = undefined;
        return exchangeResult({ started, ...run, errors: 0, timedOut });
      },
    );
  }

  #pump(run: Run): void {
    while (run.sent < run.count && run.sent - run.answered < run.window) {
      const n = run.sent++;
      run.sentAt[n] = performance.now();
      this.#nc.publish(this.#subject, encoder.encode(`{"run":${run.id},"n":${n}}`), {
        reply: `${this.#inbox}.${run.id}.${n}`,
      });
    }
  }

  #onReply(msg: Msg, at: number): void {
    const run = this.#run;
    if (!run) return;
    let echo: { run?: unknown; n?: unknown } | undefined;
    try {
      echo = (JSON.parse(decoder.decode(msg.data)) as { echo?: { run?: unknown; n?: unknown } }).echo;
    } catch {
      return;
    }
    const n = echo?.n;
    if (echo?.run !== run.id || typeof n !== 'number' || !(n >= 0 && n < run.sent)) return;
    if (run.seen[n]) {
      run.duplicates++;
      return;
    }
    run.seen[n] = 1;
    // Correlated: the reply came back on the reply subject of the request it echoes.
    if (msg.subject === `${this.#inbox}.${run.id}.${n}`) run.ok++;
    run.latencies.push(at - run.sentAt[n]!);
    run.answered++;
    run.progress?.(run.answered);
    if (run.answered >= run.count) run.finish();
    else this.#pump(run);
  }
}
