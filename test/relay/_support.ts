/**
 * Extra helpers for the relay conformance suite (written from docs/protocol.md). Not a test file.
 *
 * - `expectError` checks the §6 error envelope, its `request_id`, and the `X-Request-Id` header.
 * - `Api` signs every request afresh and never sends the same (method, target, body, timestamp)
 *   twice, so deliberate repeats are never mistaken for replays (§2.3 step 5).
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import type { ClientRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { type Clock, ManualClock } from '../../src/core/clock.js';
import { authFrame, type Keypair } from '../../src/protocol/signing.js';
import { type RawResponse, RawSocket, signed, startRelay } from '../helpers/relay.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const BIN = join(ROOT, 'bin', 'mrp.js');

export const KEY_RE = /^[A-Za-z0-9_-]{43}$/;
export const MSG_ID_RE = /^msg_\d+_[0-9a-f]{12}$/;
export const REQ_ID_RE = /^req_[0-9a-f]{16}$/;
/** Every field of a message object (docs/protocol.md §3.6), sorted. */
export const MESSAGE_FIELDS = [
  'attachments',
  'body',
  'content_type',
  'created_at',
  'delivered_at',
  'expires_at',
  'in_reply_to',
  'message_id',
  'metadata',
  'recipient_key',
  'sender_key',
  'status',
  'thread_id',
];

/** RFC 3339, UTC. */
export const RFC3339_UTC_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z$/;

const describeRes = (res: RawResponse): string => `${res.status} ${res.text.slice(0, 400)}`;

/** Asserts a §6 error envelope with the given status and code; returns `error`. */
export function expectError(res: RawResponse, status: number, code: string): any {
  assert.equal(res.status, status, `expected ${status} ${code}, got ${describeRes(res)}`);
  assert.ok(res.body && typeof res.body === 'object', `error body must be JSON: ${res.text}`);
  const keys = Object.keys(res.body);
  assert.deepEqual(keys, ['error'], `error body must be {"error": {...}}: ${res.text}`);
  const err = res.body.error;
  assert.equal(err.code, code, `error code: ${res.text}`);
  assert.equal(typeof err.message, 'string');
  assert.ok(err.message.length > 0, 'error.message must not be empty');
  assert.equal(typeof err.request_id, 'string', 'error.request_id is always present');
  assert.match(err.request_id, REQ_ID_RE);
  assert.equal(res.headers.get('x-request-id'), err.request_id, 'X-Request-Id header must equal error.request_id');
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  if (err.details !== undefined)
    assert.ok(err.details !== null && typeof err.details === 'object' && !Array.isArray(err.details));
  for (const k of Object.keys(err))
    assert.ok(['code', 'message', 'details', 'request_id'].includes(k), `unexpected error field ${k}`);
  return err;
}

/** Asserts a JSON success with the given status; every response carries X-Request-Id (§3.2). */
export function expectOk(res: RawResponse, status = 200): any {
  assert.equal(res.status, status, `expected ${status}, got ${describeRes(res)}`);
  assert.match(res.headers.get('x-request-id') ?? '', REQ_ID_RE, 'every response carries X-Request-Id');
  if (status !== 204) assert.match(res.headers.get('content-type') ?? '', /^application\/json; charset=utf-8$/i);
  return res.body;
}

/** A signing client that never repeats a signature by accident. */
export class Api {
  readonly url: string;
  readonly clock: Pick<Clock, 'now'> | undefined;
  /** With a ManualClock: advance it this much after every `send`, so no two messages share a created_at second. */
  readonly tickMs: number;
  readonly #used = new Set<string>();

  constructor(url: string, clock?: Pick<Clock, 'now'>, options: { tickMs?: number } = {}) {
    this.url = url;
    this.clock = clock;
    this.tickMs = options.tickMs ?? 0;
  }

  #at(kp: Keypair, method: string, target: string, text: string): number {
    const now = this.clock ? this.clock.now() : Date.now();
    let sec = Math.floor(now / 1000);
    for (let i = 0; i < 240; i++, sec--) {
      const id = `${kp.publicKey} ${method} ${target} ${sec} ${text}`;
      if (!this.#used.has(id)) {
        this.#used.add(id);
        return sec * 1000;
      }
    }
    throw new Error('too many identical requests');
  }

  req(kp: Keypair, method: string, target: string, body?: unknown): Promise<RawResponse> {
    const text = body === undefined ? '' : typeof body === 'string' ? body : JSON.stringify(body);
    return signed(this.url, kp, method, target, body, { at: this.#at(kp, method, target, text) });
  }

  get(kp: Keypair, target: string): Promise<RawResponse> {
    return this.req(kp, 'GET', target);
  }
  post(kp: Keypair, target: string, body: unknown): Promise<RawResponse> {
    return this.req(kp, 'POST', target, body);
  }
  patch(kp: Keypair, target: string, body: unknown): Promise<RawResponse> {
    return this.req(kp, 'PATCH', target, body);
  }
  put(kp: Keypair, target: string, body: unknown): Promise<RawResponse> {
    return this.req(kp, 'PUT', target, body);
  }
  delete(kp: Keypair, target: string): Promise<RawResponse> {
    return this.req(kp, 'DELETE', target);
  }

  /** POST /v1/messages; asserts 201 and returns the send response. */
  async send(
    kp: Keypair,
    to: string,
    body: unknown = { text: 'hi' },
    extra: Record<string, unknown> = {},
  ): Promise<any> {
    const res = await this.post(kp, '/v1/messages', { recipient_key: to, body, ...extra });
    if (this.tickMs && this.clock instanceof ManualClock) this.clock.advance(this.tickMs);
    return expectOk(res, 201);
  }

  /** Makes sure the agent exists (first signed request auto-creates it). */
  async touch(kp: Keypair): Promise<void> {
    expectOk(await this.get(kp, `/v1/agents/${kp.publicKey}`));
  }

  async profile(kp: Keypair, patch: Record<string, unknown>): Promise<Record<string, unknown>> {
    return expectOk(await this.patch(kp, `/v1/agents/${kp.publicKey}`, patch));
  }
}

const usedAuthSeconds = new Map<string, Set<number>>();

/**
 * A WebSocket auth frame whose (key, timestamp) — hence signature — was never used before in this
 * process: connecting the same agent twice in one second would otherwise be a replay (§5.1).
 */
export function freshAuthFrame(kp: Keypair, now: number = Date.now()): ReturnType<typeof authFrame> {
  let used = usedAuthSeconds.get(kp.publicKey);
  if (!used) usedAuthSeconds.set(kp.publicKey, (used = new Set()));
  let sec = Math.floor(now / 1000);
  while (used.has(sec)) sec--;
  used.add(sec);
  return authFrame(kp, sec * 1000);
}

/** Opens and authenticates a socket with a fresh auth frame; closed when the test ends. */
export async function wsConnect(t: TestContext, wsUrl: string, kp: Keypair, now?: number): Promise<RawSocket> {
  const s = await openSocket(t, wsUrl);
  s.send(freshAuthFrame(kp, now));
  const res = await s.next();
  assert.deepEqual(res, { type: 'auth_result', status: 'ok', public_key: kp.publicKey });
  return s;
}

/** Opens a raw socket closed when the test ends (not authenticated). */
export async function openSocket(t: TestContext, wsUrl: string): Promise<RawSocket> {
  const s = await RawSocket.open(wsUrl);
  t.after(() => s.ws.terminate());
  return s;
}

/** Opens and authenticates a socket with the given signing time (ManualClock friendly). */
export function connectAt(t: TestContext, wsUrl: string, kp: Keypair, at: number): Promise<RawSocket> {
  return wsConnect(t, wsUrl, kp, at);
}

/** Waits until `frames` contains a frame matching `pred` (frames read via `next`). */
export async function nextMatching(s: RawSocket, pred: (f: any) => boolean, timeoutMs = 5000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const f = await s.next(Math.max(1, deadline - Date.now()));
    if (pred(f)) return f;
  }
}

/** Round trip: a JSON ping answered by pong proves the connection is open and frames before it were handled. */
export async function roundTrip(s: RawSocket, ts: number = Math.floor(Math.random() * 1e9)): Promise<void> {
  s.send({ type: 'ping', ts });
  const f = await nextMatching(s, (x) => x.type === 'pong' && x.ts === ts);
  assert.equal(f.type, 'pong');
}

/** Waits until the WebSocket connection count in /v1/health/details equals `n`. */
export async function waitForConnections(url: string, n: number, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await fetch(`${url}/v1/health/details`);
    const body = (await res.json()) as { components?: { websocket?: { connections?: number } } };
    if (body.components?.websocket?.connections === n) return;
    if (Date.now() > deadline)
      throw new Error(`connections never became ${n} (last ${JSON.stringify(body.components?.websocket)})`);
    await new Promise((r) => setImmediate(r));
  }
}

export function wsClient(url: string, options: WebSocket.ClientOptions = {}): WebSocket {
  return new WebSocket(url, options);
}

export async function tempDir(t: TestContext, prefix = 'mrp-conf-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

export interface SpawnedRelay {
  child: ChildProcess;
  url: string;
  wsUrl: string;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Spawns `mrp relay` from bin/mrp.js (needs a build: `npx tsc -p tsconfig.json`) and waits for
 * its first stdout line. With `--json` that line is JSON carrying `url`; otherwise the text line
 * holds the URL.
 */
export async function spawnRelay(
  t: TestContext,
  args: string[],
  env: Record<string, string> = {},
  cwd: string = ROOT,
): Promise<SpawnedRelay> {
  if (!existsSync(join(ROOT, 'dist', 'cli', 'bin.js'))) {
    throw new Error('bin/mrp.js needs a build: run `npx tsc -p tsconfig.json` (CI builds before testing)');
  }
  const child = spawn(process.execPath, [BIN, 'relay', ...args], {
    cwd,
    env: { ...process.env, NO_COLOR: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`relay did not start: ${out} ${err}`)), 15_000);
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const m = /http:\/\/[0-9.:[\]a-z]+:\d+/i.exec(out);
      if (m && out.includes('\n')) {
        clearTimeout(timer);
        resolve(m[0]);
      }
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`relay exited early (${code ?? signal}): ${out} ${err}`));
    });
  });
  return { child, url, wsUrl: `${url.replace(/^http/, 'ws')}/v1/ws`, stdout: () => out, stderr: () => err, exited };
}

/** A relay on a ManualClock that starts at the real time (so real-time signatures stay valid) and an Api that ticks 1 s per send. */
export async function startTicking(t: TestContext, options: Record<string, unknown> = {}) {
  const clock = new ManualClock(Math.floor(Date.now() / 1000) * 1000);
  const relay = await startRelay(t, { clock, ...options });
  return { ...relay, clock, api: new Api(relay.url, clock, { tickMs: 1000 }) };
}

export { once };

/** Resolves once `req` takes more bytes, or is gone (a streamed upload's backpressure). */
export function drained(req: ClientRequest): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      req.off('drain', done);
      req.off('close', done);
      resolve();
    };
    req.on('drain', done);
    req.on('close', done);
  });
}
