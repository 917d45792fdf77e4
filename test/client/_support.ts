/**
 * Helpers for the client unit tests. Not a test file.
 *
 * - `WatchedClock`: a ManualClock that also says when someone schedules a timer and for how long,
 *   so a test can wait for "the client is now waiting" instead of sleeping and hoping.
 * - `scriptedHttp`: a tiny real `node:http` server on port 0 whose answers each test scripts; it
 *   records every request (method, raw target, headers, body).
 * - `scriptedWs`: a tiny WebSocket server on port 0 that authenticates anyone and then does what
 *   the test says (close with a code, stay silent, …) — misbehaviour a real relay will not produce.
 */
import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';
import { type WebSocket, WebSocketServer } from 'ws';
import { ManualClock, type Timer } from '../../src/core/clock.js';

export class WatchedClock extends ManualClock {
  /** Every `setTimeout` delay, in order. */
  readonly delays: number[] = [];
  #waiters: Array<{ n: number; resolve: (ms: number) => void }> = [];

  override setTimeout(fn: () => void, ms: number): Timer {
    const timer = super.setTimeout(fn, ms);
    this.delays.push(ms);
    const n = this.delays.length - 1;
    for (const w of this.#waiters.filter((x) => x.n === n)) w.resolve(ms);
    this.#waiters = this.#waiters.filter((x) => x.n !== n);
    return timer;
  }

  /** Resolves with the delay of the `n`-th (0-based) `setTimeout` ever scheduled, now or later. */
  timer(n: number, timeoutMs = 5000): Promise<number> {
    if (n < this.delays.length) return Promise.resolve(this.delays[n]!);
    return new Promise((resolve, reject) => {
      const guard = setTimeout(
        () => reject(new Error(`timer #${n} was not scheduled within ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.#waiters.push({
        n,
        resolve: (ms) => {
          clearTimeout(guard);
          resolve(ms);
        },
      });
    });
  }

  /** Resolves with the delay of the next `setTimeout` scheduled from now on. */
  nextTimer(timeoutMs = 5000): Promise<number> {
    return this.timer(this.delays.length, timeoutMs);
  }
}

export interface SeenRequest {
  method: string;
  /** The raw request target (path and query), exactly as received. */
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/** How a scripted server answers request number `n` (0-based). */
export type Script = (req: SeenRequest, res: ServerResponse, n: number) => void;

export interface ScriptedHttp {
  url: string;
  seen: SeenRequest[];
  /** Resolves when request number `n` (0-based) has arrived. */
  request(n: number, timeoutMs?: number): Promise<SeenRequest>;
}

/** Writes a JSON answer. */
export function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': String(Buffer.byteLength(text)),
    ...headers,
  });
  res.end(text);
}

/** The §6 error envelope. */
export function envelope(code: string, message = code, details?: Record<string, unknown>): unknown {
  return { error: { code, message, ...(details ? { details } : {}), request_id: 'req_0123456789abcdef' } };
}

export async function scriptedHttp(t: TestContext, script: Script): Promise<ScriptedHttp> {
  const seen: SeenRequest[] = [];
  const waiters = new Map<number, () => void>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const n = seen.length;
      const r: SeenRequest = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      };
      seen.push(r);
      script(r, res, n);
      waiters.get(n)?.();
      waiters.delete(n);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    request(n, timeoutMs = 5000) {
      if (seen[n]) return Promise.resolve(seen[n]);
      return new Promise((resolve, reject) => {
        const guard = setTimeout(
          () => reject(new Error(`request #${n} did not arrive within ${timeoutMs} ms`)),
          timeoutMs,
        );
        waiters.set(n, () => {
          clearTimeout(guard);
          resolve(seen[n]!);
        });
      });
    },
  };
}

export interface ScriptedWs {
  url: string;
  /** Connections accepted so far. */
  readonly connections: number;
  /** Resolves when connection number `n` (0-based) has authenticated. */
  authenticated(n: number, timeoutMs?: number): Promise<WebSocket>;
}

/**
 * A WebSocket server that answers every auth frame with `ok` (or what `onAuth` returns), then
 * hands the socket to `after` with its connection number.
 */
export async function scriptedWs(
  t: TestContext,
  after: (ws: WebSocket, n: number) => void,
  onAuth: (frame: { public_key: string }, n: number) => unknown = (f) => ({
    type: 'auth_result',
    status: 'ok',
    public_key: f.public_key,
  }),
): Promise<ScriptedWs> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await once(wss, 'listening');
  let count = 0;
  const sockets: WebSocket[] = [];
  const waiters = new Map<number, (ws: WebSocket) => void>();
  wss.on('connection', (ws) => {
    const n = count++;
    ws.on('message', (data) => {
      const frame = JSON.parse(data.toString()) as { type: string; public_key: string };
      if (frame.type !== 'auth') return;
      ws.send(JSON.stringify(onAuth(frame, n)));
      sockets[n] = ws;
      waiters.get(n)?.(ws);
      waiters.delete(n);
      after(ws, n);
    });
  });
  t.after(async () => {
    for (const c of wss.clients) c.terminate();
    await new Promise<void>((resolve) => wss.close(() => resolve()));
  });
  return {
    url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/v1/ws`,
    get connections() {
      return count;
    },
    authenticated(n, timeoutMs = 5000) {
      if (sockets[n]) return Promise.resolve(sockets[n]);
      return new Promise((resolve, reject) => {
        const guard = setTimeout(
          () => reject(new Error(`connection #${n} did not authenticate within ${timeoutMs} ms`)),
          timeoutMs,
        );
        waiters.set(n, (ws) => {
          clearTimeout(guard);
          resolve(ws);
        });
      });
    },
  };
}
