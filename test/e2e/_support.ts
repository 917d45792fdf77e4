/**
 * End-to-end support: real `mrp` child processes (started through bin/mrp.js, so the build in
 * dist/ is what runs), a line reader that waits for JSON events, and an independent MRP agent
 * written from the spec (§2 signing, §3.6 messages, §5 WebSocket) with `fetch` and `ws` only.
 *
 * Nothing here sleeps a fixed time to "let things happen": every wait is for an observable
 * condition and has a deadline whose failure message says what was awaited and shows the tail of
 * the child's output.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { TestContext } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import WebSocket from 'ws';
import { authFrame, Keypair, signRequest } from '../../src/protocol/signing.js';
import type { Message } from '../../src/protocol/types.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const BIN = join(ROOT, 'bin', 'mrp.js');

export type Json = Record<string, unknown>;

export interface OutLine {
  /** Index in `lines`. */
  n: number;
  text: string;
  json: Json | undefined;
  at: number;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  at: number;
}

function describeExit(e: ExitInfo): string {
  return e.signal ? `signal ${e.signal}` : `code ${e.code}`;
}

/** One `node bin/mrp.js …` child: stdout read line by line (JSON parsed when it is JSON). */
export class Child {
  readonly name: string;
  readonly proc: ChildProcess;
  readonly started = Date.now();
  readonly lines: OutLine[] = [];
  stderr = '';
  exit: ExitInfo | undefined;
  readonly exited: Promise<ExitInfo>;
  readonly #listeners = new Set<() => void>();

  constructor(name: string, args: string[], options: { cwd: string; env: NodeJS.ProcessEnv }) {
    this.name = name;
    this.proc = spawn(process.execPath, [BIN, ...args], {
      cwd: options.cwd,
      env: options.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const rl = createInterface({ input: this.proc.stdout!, crlfDelay: Infinity });
    rl.on('line', (text) => {
      let json: Json | undefined;
      try {
        const v: unknown = JSON.parse(text);
        if (v && typeof v === 'object' && !Array.isArray(v)) json = v as Json;
      } catch {
        // Not JSON: kept as text.
      }
      this.lines.push({ n: this.lines.length, text, json, at: Date.now() });
      this.#notify();
    });
    this.proc.stderr!.setEncoding('utf8');
    this.proc.stderr!.on('data', (d: string) => {
      this.stderr += d;
    });
    // 'close' comes after stdout and stderr are fully read, so no line is missed.
    this.exited = new Promise((resolve) => {
      this.proc.on('close', (code, signal) => {
        this.exit = { code, signal, at: Date.now() };
        resolve(this.exit);
        this.#notify();
      });
    });
  }

  get pid(): number {
    return this.proc.pid ?? -1;
  }

  get alive(): boolean {
    return this.exit === undefined;
  }

  #notify(): void {
    for (const l of [...this.#listeners]) l();
  }

  /** The number of stdout lines so far: pass it as `from` to wait only for later lines. */
  mark(): number {
    return this.lines.length;
  }

  events(event: string): Json[] {
    return this.lines.flatMap((l) => (l.json && l.json['event'] === event ? [l.json] : []));
  }

  tail(n = 15): string {
    const out = this.lines.slice(-n).map((l) => `  | ${l.text.length > 400 ? `${l.text.slice(0, 400)}…` : l.text}`);
    const err = this.stderr
      .trim()
      .split('\n')
      .slice(-8)
      .map((l) => `  ! ${l.length > 400 ? `${l.slice(0, 400)}…` : l}`);
    return [
      `--- ${this.name} (pid ${this.pid}, ${this.exit ? `exited: ${describeExit(this.exit)}` : 'running'}): last stdout lines`,
      ...(out.length ? out : ['  | (none)']),
      ...(this.stderr.trim() ? ['--- stderr tail', ...err] : []),
    ].join('\n');
  }

  /** Resolves with the first stdout line (at index ≥ `from`) matching `pred`. */
  waitFor(pred: (line: OutLine) => boolean, what: string, timeoutMs: number, from = 0): Promise<OutLine> {
    return new Promise((resolve, reject) => {
      let i = from;
      const done = (): void => {
        clearTimeout(timer);
        this.#listeners.delete(check);
      };
      const check = (): void => {
        for (; i < this.lines.length; i++) {
          const line = this.lines[i]!;
          if (pred(line)) {
            done();
            resolve(line);
            return;
          }
        }
        if (this.exit) {
          done();
          reject(
            new Error(`${this.name} exited (${describeExit(this.exit)}) while we waited for ${what}\n${this.tail()}`),
          );
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${this.tail()}`));
      }, timeoutMs);
      this.#listeners.add(check);
      check();
    });
  }

  /** Waits for a JSON event line whose fields include `fields` (shallow equality). */
  waitEvent(event: string, fields: Json, what: string, timeoutMs: number, from = 0): Promise<Json> {
    return this.waitFor(
      (l) =>
        l.json !== undefined && l.json['event'] === event && Object.entries(fields).every(([k, v]) => l.json![k] === v),
      `${this.name}: ${what} (event "${event}" ${JSON.stringify(fields)})`,
      timeoutMs,
      from,
    ).then((l) => l.json!);
  }

  async waitExit(what: string, timeoutMs: number): Promise<ExitInfo> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new Error(`timed out after ${timeoutMs} ms waiting for ${this.name} to exit (${what})\n${this.tail()}`),
          ),
        timeoutMs,
      );
    });
    try {
      return await Promise.race([this.exited, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  kill(signal: NodeJS.Signals): void {
    if (this.alive) this.proc.kill(signal);
  }
}

/** A temp dir used as the user's project dir (and, under `.mrp`, as MRP_HOME), plus its children. */
export class Scene {
  readonly dir: string;
  readonly home: string;
  readonly env: NodeJS.ProcessEnv;
  readonly children: Child[] = [];

  private constructor(dir: string) {
    this.dir = dir;
    this.home = join(dir, '.mrp');
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) {
      // The user's own mrp settings must not leak in.
      if (!k.startsWith('MRP_') && k !== 'NODE_OPTIONS' && k !== 'NODE_TEST_CONTEXT') env[k] = v;
    }
    this.env = { ...env, MRP_HOME: this.home, NO_COLOR: '1' };
  }

  /** A fresh scene; every child is SIGKILLed and the directory removed when the test ends. */
  static async create(t: TestContext, prefix: string): Promise<Scene> {
    const scene = new Scene(await mkdtemp(join(tmpdir(), `mrp-e2e-${prefix}-`)));
    t.after(async () => {
      await scene.killAll();
      if (!process.env['MRP_E2E_KEEP']) {
        await rm(scene.dir, { recursive: true, force: true });
        return;
      }
      // Keep everything, with each child's output, for a post-mortem.
      for (const [i, c] of scene.children.entries()) {
        const name = `${String(i).padStart(2, '0')}-${c.name.replace(/[^\w#.-]+/g, '_')}`;
        await writeFile(join(scene.dir, `${name}.stdout`), c.lines.map((l) => `${l.text}\n`).join(''));
        await writeFile(join(scene.dir, `${name}.stderr`), c.stderr);
      }
      t.diagnostic(`kept ${scene.dir}`);
    });
    return scene;
  }

  spawn(name: string, args: string[]): Child {
    const child = new Child(name, args, { cwd: this.dir, env: this.env });
    this.children.push(child);
    return child;
  }

  /** Runs `mrp <args>` to completion. */
  async mrp(
    args: string[],
    timeoutMs = 15_000,
  ): Promise<{ exit: ExitInfo; stdout: string; stderr: string; ms: number; child: Child }> {
    const child = this.spawn(`mrp ${args[0] ?? ''}`, args);
    const exit = await child.waitExit(`mrp ${args.join(' ')}`, timeoutMs);
    return {
      exit,
      stdout: child.lines.map((l) => `${l.text}\n`).join(''),
      stderr: child.stderr,
      ms: exit.at - child.started,
      child,
    };
  }

  async killAll(): Promise<void> {
    for (const c of this.children) c.kill('SIGKILL');
    await Promise.all(this.children.map((c) => c.waitExit('cleanup', 5000).catch(() => undefined)));
  }
}

export interface RelayProc {
  child: Child;
  url: string;
  port: number;
}

/**
 * `mrp relay --port <port> --data-dir <dir> --json --log-format json --send-rate 0 --receive-rate 0`;
 * resolves with the URL from its one JSON stdout line. A restart on the same port retries briefly
 * if the port is still held (it should not be: the listener closes with the killed process).
 */
export async function startRelay(scene: Scene, dataDir: string, port: number, name: string): Promise<RelayProc> {
  const args = [
    'relay',
    '--port',
    String(port),
    '--data-dir',
    dataDir,
    '--json',
    '--log-format',
    'json',
    '--send-rate',
    '0',
    '--receive-rate',
    '0',
  ];
  for (let attempt = 1; ; attempt++) {
    const child = scene.spawn(attempt === 1 ? name : `${name} (try ${attempt})`, args);
    try {
      const line = await child.waitFor((l) => typeof l.json?.['url'] === 'string', `${name} to print its URL`, 15_000);
      const url = line.json!['url'] as string;
      return { child, url, port: Number(new URL(url).port) };
    } catch (err) {
      if (attempt < 20 && port !== 0 && child.exit && /address_in_use|already in use/.test(child.stderr)) {
        await delay(100);
        continue;
      }
      throw err;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The independent agent (docs/protocol.md §2, §3.6, §5), not using src/client.

export interface HttpResult {
  status: number;
  json: any;
}

/** The code of a fetch failure (walks `cause`): ECONNREFUSED, ECONNRESET, UND_ERR_SOCKET, … */
export function failureCode(err: unknown): string {
  let e: unknown = err;
  for (let i = 0; i < 6 && e; i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    const errors = (e as { errors?: unknown[] }).errors;
    if (Array.isArray(errors) && errors.length) {
      const codes = errors.map((x) => (x as { code?: unknown }).code);
      if (codes.every((c) => c === 'ECONNREFUSED')) return 'ECONNREFUSED';
    }
    e = (e as { cause?: unknown }).cause;
  }
  return (err as Error)?.name ?? 'unknown';
}

export type AttemptOutcome = 'stored' | 'not_sent' | 'uncertain';

export interface Attempt {
  nonce: string;
  body: Json;
  outcome: AttemptOutcome;
  detail: string;
  id?: string;
}

export interface Sent {
  seq: number;
  /** The message id from the 201 of the attempt that got one. */
  id: string;
  body: Json;
  attempts: Attempt[];
}

export class Agent {
  readonly kp = Keypair.generate();
  readonly baseUrl: string;
  readonly tag: string;
  readonly sent: Sent[] = [];
  /** Every attempt of every send, in order. */
  readonly attempts: Attempt[] = [];
  #seq = 0;

  constructor(baseUrl: string, tag: string) {
    this.baseUrl = baseUrl;
    this.tag = tag;
  }

  get key(): string {
    return this.kp.publicKey;
  }

  /** One signed request, signed now (§2); throws on connection failures. */
  async once(method: string, target: string, body?: unknown, timeoutMs = 10_000): Promise<HttpResult> {
    const text = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = { ...signRequest(this.kp, method, target, text ?? '', Date.now()) };
    if (text !== undefined) headers['Content-Type'] = 'application/json';
    const res = await fetch(this.baseUrl + target, {
      method,
      headers,
      ...(text !== undefined ? { body: text } : {}),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const raw = await res.text();
    let json: unknown;
    try {
      json = raw ? JSON.parse(raw) : undefined;
    } catch {
      json = raw;
    }
    return { status: res.status, json };
  }

  /** A read (GET): retried on connection errors, 429, 5xx and same-second replays until `deadline`. */
  async get(target: string, deadlineMs = 20_000): Promise<HttpResult> {
    const until = Date.now() + deadlineMs;
    let last = '';
    while (Date.now() < until) {
      try {
        const res = await this.once('GET', target);
        if (res.status === 409 && res.json?.error?.code === 'replay_detected') {
          // Same target signed in the same second: wait for the next second (§2.3 step 5).
          last = '409 replay_detected';
          await delay(1005 - (Date.now() % 1000));
          continue;
        }
        if (res.status === 429 || res.status >= 500) {
          last = `${res.status} ${JSON.stringify(res.json)}`;
          const after = Number(res.json?.error?.details?.retry_after ?? 1);
          await delay(Math.min(5000, Math.max(100, after * 1000)));
          continue;
        }
        return res;
      } catch (err) {
        last = failureCode(err);
        await delay(100);
      }
    }
    throw new Error(`GET ${target}: gave up after ${deadlineMs} ms (last: ${last})`);
  }

  /**
   * POST /v1/messages until one attempt gets a 201. Every attempt has its own body (an `attempt`
   * number and a unique `nonce`), so it is freshly signed and can be told apart later. An attempt
   * that fails before the relay can have read it (ECONNREFUSED) is `not_sent`; one whose answer is
   * lost (connection reset, timeout) is `uncertain`: it may or may not be stored.
   */
  async send(to: string, extra: Json = {}, deadlineMs = 25_000): Promise<Sent> {
    const seq = ++this.#seq;
    const attempts: Attempt[] = [];
    const until = Date.now() + deadlineMs;
    for (let k = 1; Date.now() < until; k++) {
      const body: Json = { seq, attempt: k, nonce: `${this.tag}-${seq}-${k}`, ...extra };
      const attempt: Attempt = { nonce: body['nonce'] as string, body, outcome: 'uncertain', detail: '' };
      attempts.push(attempt);
      this.attempts.push(attempt);
      let res: HttpResult;
      try {
        res = await this.once('POST', '/v1/messages', { recipient_key: to, body });
      } catch (err) {
        const code = failureCode(err);
        attempt.detail = code;
        attempt.outcome = code === 'ECONNREFUSED' ? 'not_sent' : 'uncertain';
        await delay(100);
        continue;
      }
      if (res.status === 201 && typeof res.json?.message_id === 'string') {
        attempt.outcome = 'stored';
        attempt.id = res.json.message_id as string;
        attempt.detail = '201';
        const sent: Sent = { seq, id: attempt.id, body, attempts };
        this.sent.push(sent);
        return sent;
      }
      // The relay answered with an error: it did not store the message.
      attempt.outcome = 'not_sent';
      attempt.detail = `${res.status} ${JSON.stringify(res.json)}`;
      if (res.status !== 429 && res.status < 500) throw new Error(`POST /v1/messages refused: ${attempt.detail}`);
      await delay(200);
    }
    throw new Error(
      `send #${seq} ${JSON.stringify(extra)}: no 201 within ${deadlineMs} ms (attempts: ${attempts.map((a) => a.detail).join(', ')})`,
    );
  }

  uncertain(): Attempt[] {
    return this.attempts.filter((a) => a.outcome === 'uncertain');
  }

  /** Every message in the agent's inbox with `status` (paginated; `sent` polls mark them delivered). */
  async listInbox(status: 'sent' | 'delivered'): Promise<Message[]> {
    const all: Message[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < 100; page++) {
      const target = `/v1/messages?status=${status}&limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
      const res = await this.get(target);
      if (res.status !== 200) throw new Error(`GET ${target}: ${res.status} ${JSON.stringify(res.json)}`);
      all.push(...(res.json.messages as Message[]));
      if (!res.json.has_more || !res.json.next_cursor) return all;
      cursor = res.json.next_cursor as string;
    }
    throw new Error('inbox listing did not end after 100 pages');
  }
}

/**
 * The agent's own WebSocket (§5): authenticates, records every pushed message (by message id, so
 * a redelivery is not a second reply), acks it, and reconnects whenever the connection drops.
 */
export class Inbox {
  readonly agent: Agent;
  readonly wsUrl: string;
  readonly messages = new Map<string, Message>();
  /** Pushes of a message id already seen (redeliveries; harmless). */
  redeliveries = 0;
  authenticated = 0;
  #ws: WebSocket | undefined;
  #closed = false;
  readonly #listeners = new Set<() => void>();

  constructor(agent: Agent) {
    this.agent = agent;
    this.wsUrl = `${agent.baseUrl.replace(/^http/, 'ws')}/v1/ws`;
  }

  start(): void {
    this.#connect();
  }

  #connect(): void {
    if (this.#closed) return;
    const ws = new WebSocket(this.wsUrl, { perMessageDeflate: false, handshakeTimeout: 5000 });
    this.#ws = ws;
    ws.on('open', () => ws.send(JSON.stringify(authFrame(this.agent.kp, Date.now()))));
    ws.on('message', (data) => {
      let frame: Json;
      try {
        frame = JSON.parse(String(data)) as Json;
      } catch {
        return;
      }
      if (frame['type'] === 'auth_result' && frame['status'] === 'ok') {
        this.authenticated++;
        this.#notify();
      } else if (frame['type'] === 'message') {
        const m = frame['message'] as Message;
        if (this.messages.has(m.message_id)) this.redeliveries++;
        else this.messages.set(m.message_id, m);
        ws.send(JSON.stringify({ type: 'ack', message_id: m.message_id }));
        this.#notify();
      } else if (frame['type'] === 'ping') {
        ws.send(JSON.stringify({ type: 'pong', ...(frame['ts'] !== undefined ? { ts: frame['ts'] } : {}) }));
      }
    });
    ws.on('error', () => {
      // 'close' follows and reconnects.
    });
    ws.on('close', () => {
      if (this.#ws === ws) this.#ws = undefined;
      if (!this.#closed) setTimeout(() => this.#connect(), 150);
    });
  }

  #notify(): void {
    for (const l of [...this.#listeners]) l();
  }

  add(messages: Iterable<Message>): void {
    for (const m of messages) if (!this.messages.has(m.message_id)) this.messages.set(m.message_id, m);
  }

  repliesTo(id: string): Message[] {
    return [...this.messages.values()].filter((m) => m.in_reply_to === id);
  }

  /** Resolves once `done()` holds (checked on every push); rejects after `timeoutMs` with `detail()`. */
  waitUntil(done: () => boolean, what: string, timeoutMs: number, detail: () => string = () => ''): Promise<void> {
    return new Promise((resolve, reject) => {
      const finish = (): void => {
        clearTimeout(timer);
        this.#listeners.delete(check);
      };
      const check = (): void => {
        if (done()) {
          finish();
          resolve();
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}${detail() ? `\n${detail()}` : ''}`));
      }, timeoutMs);
      this.#listeners.add(check);
      check();
    });
  }

  close(): void {
    this.#closed = true;
    this.#ws?.terminate();
  }
}

// ---------------------------------------------------------------------------------------------
// Ground truth: the relay's own storage (read only), to settle sends whose answer was lost.

export interface StoredRow {
  message_id: string;
  sender_key: string;
  recipient_key: string;
  body: Json;
  thread_id: string | null;
  in_reply_to: string | null;
  status: string;
}

/** Every message the relay stored between `a` and `b` (either direction). */
export function storedMessages(dataDir: string, a: string, b: string): StoredRow[] {
  const db = new Database(join(dataDir, 'mrp.db'), { readonly: true, fileMustExist: true });
  try {
    db.pragma('busy_timeout = 5000');
    const rows = db
      .prepare(
        `SELECT message_id, sender_key, recipient_key, body, thread_id, in_reply_to, status FROM messages
         WHERE (sender_key = ? AND recipient_key = ?) OR (sender_key = ? AND recipient_key = ?) ORDER BY seq`,
      )
      .all(a, b, b, a) as Array<Omit<StoredRow, 'body'> & { body: string }>;
    return rows.map((r) => ({ ...r, body: JSON.parse(r.body) as Json }));
  } finally {
    db.close();
  }
}
