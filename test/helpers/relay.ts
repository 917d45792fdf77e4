/**
 * Test helpers for the relay: a real relay in process on port 0 with a temp data directory, and
 * raw wire-level clients (signed HTTP, plain WebSocket) written from the spec, independent of
 * src/client.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, request as httpRequest } from 'node:http';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { TestContext } from 'node:test';
import { pathToFileURL } from 'node:url';
import WebSocket from 'ws';
import { Keypair, signRequest } from '../../src/protocol/signing.js';
import { createRelay, type Relay, type RelayOptions } from '../../src/relay/index.js';
import type { LogEntry } from '../../src/relay/log.js';
import type { SqliteStore } from '../../src/relay/store/sqlite-store.js';
import type { InboxFilter, Store, TakeResult } from '../../src/relay/store/store.js';

export interface TestRelay {
  relay: Relay;
  url: string;
  wsUrl: string;
  dataDir: string;
  logs: LogEntry[];
}

/**
 * `MRP_TEST_STORE=<module>`: every relay started here runs on a store from that module's
 * `openStore(dataDir, options): Promise<Store>` (`options`: the relay's, for a store that honours
 * some) instead of the one `createRelay` builds — the relay
 * conformance suite against a store written elsewhere (`test/relay/_external-store.ts` is one;
 * see docs/architecture.md §5.1). The store is closed when its relay closes.
 */
const EXTERNAL_STORE = process.env['MRP_TEST_STORE'];

async function externalStore(dataDir: string, options: Partial<RelayOptions>): Promise<Store | undefined> {
  if (!EXTERNAL_STORE) return undefined;
  const mod = (await import(pathToFileURL(resolve(EXTERNAL_STORE)).href)) as {
    openStore(dataDir: string, options: Partial<RelayOptions>): Promise<Store>;
  };
  return mod.openStore(dataDir, options);
}

/**
 * Whether a relay started here keeps its storage as `mrp.db` in its data directory (SQLite: no
 * `MRP_TEST_STORE`, or a module that does too). A module whose store lives elsewhere (PostgreSQL)
 * exports `dataDirFiles = false`; tests that inspect or damage `mrp.db` skip then.
 */
export const STORE_IN_DATA_DIR: boolean = EXTERNAL_STORE
  ? ((await import(pathToFileURL(resolve(EXTERNAL_STORE)).href)) as { dataDirFiles?: boolean }).dataDirFiles !== false
  : true;

/**
 * `MRP_TEST_PAIR=1` with an `MRP_TEST_STORE` module that exports `openShared(dataDir, options)`
 * (`test/relay/_pg-store.ts` does): every relay started here is two relays sharing that state,
 * behind a proxy that sends each HTTP request and each WebSocket connection to the next one in
 * turn. `relay` (operator actions, connection counts) is the first; logs are both relays'.
 */
const PAIR = process.env['MRP_TEST_PAIR'] === '1' && EXTERNAL_STORE !== undefined;
/**
 * Whether relays started here are such pairs: a test that depends on the relay answering before it
 * reads the request body (the proxy's upload leg fails with EPIPE and loses that answer) skips then.
 */
export const PAIRED = PAIR;

type Shared = { relayOptions: Array<Partial<RelayOptions>>; close(): Promise<void> };

async function startPair(
  t: TestContext,
  options: Partial<RelayOptions>,
  dataDir: string,
): Promise<TestRelay | undefined> {
  const mod = (await import(pathToFileURL(resolve(EXTERNAL_STORE!)).href)) as {
    openShared?: (d: string, o: Partial<RelayOptions>) => Promise<Shared>;
  };
  if (!mod.openShared) return undefined;
  const shared = await mod.openShared(dataDir, options);
  const logs: LogEntry[] = [];
  const relays = shared.relayOptions.map((parts) =>
    createRelay({ port: 0, logger: (e) => logs.push(e), logLevel: 'debug', ...options, ...parts }),
  );
  const ports: number[] = [];
  for (const r of relays) {
    await r.listen();
    ports.push(r.port);
  }
  let turn = 0;
  const next = (): number => ports[turn++ % ports.length]!;
  const proxy = createServer((req, res) => {
    const up = httpRequest(
      { host: '127.0.0.1', port: next(), method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  // Upgraded (WebSocket) sockets are no longer the HTTP server's to close: tracked here, so that
  // closing the pair never waits on a socket a test left open.
  const upgraded = new Set<{ destroy(): void }>();
  proxy.on('upgrade', (req, socket, head) => {
    upgraded.add(socket);
    socket.on('close', () => upgraded.delete(socket));
    const up = netConnect(next(), '127.0.0.1', () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      up.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (head.length) up.write(head);
      up.pipe(socket).pipe(up);
    });
    up.on('error', () => socket.destroy());
    socket.on('error', () => up.destroy());
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()));
  const url = `http://127.0.0.1:${(proxy.address() as { port: number }).port}`;
  const first = relays[0]!;
  const closers = relays.map((r) => r.close.bind(r));
  const close = async (): Promise<void> => {
    const proxyClosed = new Promise<void>((r) => proxy.close(() => r()));
    proxy.closeAllConnections();
    for (const s of upgraded) s.destroy();
    await proxyClosed;
    for (const c of closers) await c();
    await shared.close();
  };
  let closed: Promise<void> | undefined;
  first.close = () => (closed ??= close());
  t.after(async () => {
    await first.close();
    if (!options.dataDir) await rm(dataDir, { recursive: true, force: true });
  });
  return { relay: first, url, wsUrl: `${url.replace(/^http/, 'ws')}/v1/ws`, dataDir, logs };
}

/** Starts a relay on 127.0.0.1:0; closed (and its directory removed) when the test ends. */
export async function startRelay(t: TestContext, options: Partial<RelayOptions> = {}): Promise<TestRelay> {
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'mrp-relay-')));
  if (PAIR && !options.store) {
    const pair = await startPair(t, options, dataDir);
    if (pair) return pair;
  }
  const logs: LogEntry[] = [];
  const store = options.store ? undefined : await externalStore(dataDir, options);
  const relay = createRelay({
    port: 0,
    logger: (e) => logs.push(e),
    logLevel: 'debug',
    ...options,
    dataDir,
    ...(store ? { store } : {}),
  });
  if (store) {
    const close = relay.close.bind(relay);
    let closed: Promise<void> | undefined;
    relay.close = () => (closed ??= close().then(() => store.close()));
  }
  const url = await relay.listen();
  t.after(async () => {
    await relay.close();
    if (!options.dataDir) await rm(dataDir, { recursive: true, force: true });
  });
  return { relay, url, wsUrl: `${url.replace(/^http/, 'ws')}/v1/ws`, dataDir, logs };
}

export interface RawResponse {
  status: number;
  headers: Headers;
  body: any;
  text: string;
}

export interface SignOptions {
  /** Override the signing time (ms). */
  at?: number;
  /** Send these headers instead of computing them. */
  headers?: Record<string, string>;
  /** Sign this target instead of the one requested. */
  signTarget?: string;
  /** Sign this body instead of the one sent. */
  signBody?: string;
  /** Give up (the test fails) after this long: a stuck relay fails one test, not the whole file. Default 60 s. */
  timeoutMs?: number;
}

/** One signed request, built by hand from docs/protocol.md §2 (no SDK code involved). */
export async function signed(
  baseUrl: string,
  kp: Keypair | undefined,
  method: string,
  target: string,
  body?: unknown,
  options: SignOptions = {},
): Promise<RawResponse> {
  const text = body === undefined ? '' : typeof body === 'string' ? body : JSON.stringify(body);
  const auth = kp
    ? signRequest(kp, method, options.signTarget ?? target, options.signBody ?? text, options.at ?? Date.now())
    : {};
  const res = await fetch(baseUrl + target, {
    method,
    headers: { ...auth, ...(text ? { 'Content-Type': 'application/json' } : {}), ...options.headers },
    ...(text ? { body: text } : {}),
    signal: AbortSignal.timeout(options.timeoutMs ?? 60_000),
  });
  const raw = await res.text();
  let parsed: unknown;
  try {
    parsed = raw ? JSON.parse(raw) : undefined;
  } catch {
    parsed = raw;
  }
  return { status: res.status, headers: res.headers, body: parsed, text: raw };
}

/** A raw WebSocket with a frame queue: `next()` waits for the next frame, never sleeps. */
export class RawSocket {
  readonly ws: WebSocket;
  readonly frames: any[] = [];
  readonly #waiters: Array<(f: unknown) => void> = [];
  closed: Promise<{ code: number; reason: string }>;

  constructor(url: string) {
    this.ws = new WebSocket(url);
    this.ws.on('message', (data) => {
      const frame = JSON.parse(data.toString());
      const w = this.#waiters.shift();
      if (w) w(frame);
      else this.frames.push(frame);
    });
    this.closed = new Promise((resolve) =>
      this.ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })),
    );
  }

  static async open(url: string): Promise<RawSocket> {
    const s = new RawSocket(url);
    await new Promise<void>((resolve, reject) => {
      s.ws.once('open', () => resolve());
      s.ws.once('error', reject);
    });
    return s;
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  next(timeoutMs = 5000): Promise<any> {
    const queued = this.frames.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no frame within ${timeoutMs} ms`)), timeoutMs);
      this.#waiters.push((f) => {
        clearTimeout(timer);
        resolve(f);
      });
    });
  }

  /** Authenticates with a fresh signature; returns the auth_result frame. */
  async auth(kp: Keypair, at = Date.now()): Promise<any> {
    const { authFrame } = await import('../../src/protocol/signing.js');
    this.send(authFrame(kp, at));
    return this.next();
  }

  close(): void {
    this.ws.close();
  }
}

/** An authenticated raw socket, closed when the test ends. */
export async function connect(t: TestContext, wsUrl: string, kp: Keypair): Promise<RawSocket> {
  const s = await RawSocket.open(wsUrl);
  t.after(() => s.ws.terminate());
  const res = await s.auth(kp);
  if (res.type !== 'auth_result' || res.status !== 'ok') throw new Error(`auth failed: ${JSON.stringify(res)}`);
  return s;
}

export function newAgent(): Keypair {
  return Keypair.generate();
}

/** The store's `takeSent`, with a hook run on each take-id poll's result before it is returned. */
export function hookedStore(
  inner: SqliteStore,
  onTake: (filter: InboxFilter, result: TakeResult) => Promise<void>,
): Store {
  return new Proxy(inner, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target) as unknown;
      if (prop === 'takeSent') {
        return async (...args: Parameters<Store['takeSent']>) => {
          const result = await target.takeSent(...args);
          if (args[1].take !== undefined) await onTake(args[1], result);
          return result;
        };
      }
      return typeof value === 'function' ? value.bind(target) : value;
    },
  }) as Store;
}
