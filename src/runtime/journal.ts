/**
 * The runtime's durable memory: exactly-once handling on top of at-least-once delivery.
 *
 * One append-only JSON-lines file per identity records, for each message, `received` (before its
 * handler runs, with the whole message, so a crash after a poll loses nothing), `handled` (with
 * the reply to send), `replied` (the reply's message id) and `done` (acknowledged). On start the
 * file is replayed: done ids are remembered until their message can no longer be redelivered,
 * unfinished messages are resumed from where they stopped.
 *
 * Writes made in one event-loop turn share one write (and, with `fsync`, one fdatasync). The file is compacted (rewritten from memory, then renamed) as it grows, and a
 * lock file keeps two runners of the same identity from sharing it.
 */
import {
  closeSync,
  fdatasyncSync,
  fstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { type Clock, systemClock } from '../core/clock.js';
import { ConfigError } from '../core/errors.js';
import type { JsonValue, Message } from '../protocol/types.js';
import { ExpiringIdSet, hash64, hashHex, parseHashHex } from './idset.js';

/** The reply a finished handler asked for (`null`: no reply). */
export interface PlannedReply {
  body: JsonValue;
  content_type: string;
  /** How the handler ended. */
  outcome: 'ok' | 'error' | 'timeout';
}

export type EntryState = 'received' | 'handled' | 'replied';

export interface JournalEntry {
  id: string;
  message: Message;
  state: EntryState;
  reply?: PlannedReply | null;
  replyId?: string;
  /** Unix ms after which the relay can no longer redeliver this message. */
  expiresAt: number;
  /** Its handler began running (so a resumed run is a redelivery). */
  started?: boolean;
}

type Line =
  | { k: 'recv'; id: string; exp: number; m: Message }
  | { k: 'started'; id: string }
  | { k: 'handled'; id: string; reply: PlannedReply | null }
  | { k: 'replied'; id: string; to: string }
  | { k: 'done'; id: string; until: number }
  /** A done id kept across compactions, as its 64-bit hash. */
  | { k: 'done'; h: string; until: number; id?: undefined };

export interface JournalOptions {
  clock?: Clock;
  /** Keep done ids at least this long after they finish (default 7 days, the default TTL). */
  minRetentionMs?: number;
  /** Hard cap on remembered done ids (oldest dropped first). */
  maxDone?: number;
  /**
   * Records are always written to the OS before the runtime moves on, so they survive the process
   * dying (kill -9). `fsync: true` also syncs them to disk (survives a power cut; one disk sync
   * per batch on the message's path).
   */
  fsync?: boolean;
}

const DAY = 86_400_000;
const MAX_TTL_MS = 30 * DAY;

export const JOURNAL_DEFAULTS = { minRetentionMs: 7 * DAY, maxDone: 2_000_000 } as const;

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class Journal {
  readonly dir: string;
  readonly path: string;
  readonly #lockPath: string;
  readonly #clock: Clock;
  readonly #minRetention: number;
  readonly #fsync: boolean;
  readonly #live = new Map<string, JournalEntry>();
  readonly #done: ExpiringIdSet;
  readonly #recovered: JournalEntry[] = [];
  /** When the previous run last wrote the journal (0 when there was none). */
  readonly lastWriteBefore: number;
  #fd: number;
  #buffer: string[] = [];
  #waiters: Array<() => void> = [];
  #durable = false;
  #scheduled = false;
  #lines = 0;
  #closed = false;

  private constructor(dir: string, options: JournalOptions) {
    this.dir = dir;
    this.path = join(dir, 'journal.jsonl');
    this.#lockPath = join(dir, 'lock');
    this.#clock = options.clock ?? systemClock;
    this.#minRetention = options.minRetentionMs ?? JOURNAL_DEFAULTS.minRetentionMs;
    this.#fsync = options.fsync ?? false;
    this.#done = new ExpiringIdSet(options.maxDone ?? JOURNAL_DEFAULTS.maxDone);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.#lock();
    let lastWrite = 0;
    try {
      lastWrite = statSync(this.path).mtimeMs;
    } catch {
      // No journal yet.
    }
    this.lastWriteBefore = lastWrite;
    try {
      this.#replay();
      this.#compact();
      this.#fd = openSync(this.path, 'a', 0o600);
    } catch (err) {
      this.#unlock();
      throw err;
    }
  }

  /** Opens (creating if needed) the journal in `dir`, taking its lock. */
  static open(dir: string, options: JournalOptions = {}): Journal {
    return new Journal(dir, options);
  }

  #lock(): void {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        writeFileSync(this.#lockPath, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const pid = Number(readFileSync(this.#lockPath, 'utf8').trim());
        if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid)) {
          throw new ConfigError('journal_locked', `another mrp run (pid ${pid}) is already running with this identity (${this.dir})`, {
            file: this.#lockPath,
            hint: `stop it first, or use another key with --key`,
          });
        }
        unlinkSync(this.#lockPath);
      }
    }
  }

  #unlock(): void {
    try {
      unlinkSync(this.#lockPath);
    } catch {
      // Already gone.
    }
  }

  /** Rebuilds memory from the file; a torn last line (crash mid-write) is ignored. */
  #replay(): void {
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    const now = this.#clock.now();
    for (const raw of text.split('\n')) {
      if (!raw) continue;
      let line: Line;
      try {
        line = JSON.parse(raw) as Line;
      } catch {
        continue;
      }
      switch (line.k) {
        case 'recv':
          if (!this.#done.has(line.id, now)) this.#live.set(line.id, { id: line.id, message: line.m, state: 'received', expiresAt: line.exp });
          break;
        case 'started': {
          const e = this.#live.get(line.id);
          if (e) e.started = true;
          break;
        }
        case 'handled': {
          const e = this.#live.get(line.id);
          if (e) Object.assign(e, { state: 'handled', reply: line.reply });
          break;
        }
        case 'replied': {
          const e = this.#live.get(line.id);
          if (e) Object.assign(e, { state: 'replied', replyId: line.to });
          break;
        }
        case 'done': {
          if (line.id !== undefined) this.#live.delete(line.id);
          const hash = line.id !== undefined ? hash64(line.id) : parseHashHex(line.h);
          if (hash && line.until > now) this.#done.addHash(hash, line.until, now);
          break;
        }
      }
    }
    this.#recovered.push(...this.#live.values());
  }

  /** Rewrites the file from memory (live entries and unexpired done ids), atomically. */
  #compact(): void {
    const now = this.#clock.now();
    const out: string[] = [];
    this.#done.sweep(now);
    for (const [hash, until] of this.#done.entries(now)) out.push(JSON.stringify({ k: 'done', h: hashHex(hash), until } satisfies Line));
    for (const e of this.#live.values()) {
      out.push(JSON.stringify({ k: 'recv', id: e.id, exp: e.expiresAt, m: e.message } satisfies Line));
      if (e.started) out.push(JSON.stringify({ k: 'started', id: e.id } satisfies Line));
      if (e.reply !== undefined) out.push(JSON.stringify({ k: 'handled', id: e.id, reply: e.reply } satisfies Line));
      if (e.replyId !== undefined) out.push(JSON.stringify({ k: 'replied', id: e.id, to: e.replyId } satisfies Line));
    }
    const tmp = `${this.path}.tmp`;
    const fd = openSync(tmp, 'w', 0o600);
    try {
      if (out.length) writeSync(fd, `${out.join('\n')}\n`);
      if (this.#fsync) fdatasyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.path);
    this.#lines = out.length;
  }

  /** Entries a previous run left unfinished, in the order they arrived. Call once, at start. */
  takeRecovered(): JournalEntry[] {
    return this.#recovered.splice(0);
  }

  /** The unfinished entry for `id`, if any. */
  get(id: string): JournalEntry | undefined {
    return this.#live.get(id);
  }

  isDone(id: string): boolean {
    return this.#done.has(id, this.#clock.now());
  }

  get unfinishedCount(): number {
    return this.#live.size;
  }

  get doneCount(): number {
    return this.#done.size;
  }

  /** Records a message before its handler runs; resolves once it is on disk. */
  received(message: Message): Promise<void> {
    const exp = Date.parse(message.expires_at);
    const entry: JournalEntry = {
      id: message.message_id,
      message,
      state: 'received',
      expiresAt: Number.isFinite(exp) ? exp : this.#clock.now() + MAX_TTL_MS,
    };
    this.#live.set(entry.id, entry);
    return this.#append({ k: 'recv', id: entry.id, exp: entry.expiresAt, m: message }, true);
  }

  /**
   * Records that the handler is about to run. Written at once (a handler may have effects before
   * the next turn) but not synced: it survives the process dying, and it only refines
   * `redelivered`.
   */
  started(id: string): void {
    const e = this.#live.get(id);
    if (e) e.started = true;
    void this.#append({ k: 'started', id }, false);
    this.flush();
  }

  /** Records the handler's result (the reply to send); resolves once it is on disk. */
  handled(id: string, reply: PlannedReply | null): Promise<void> {
    const e = this.#live.get(id);
    if (e) Object.assign(e, { state: 'handled', reply });
    return this.#append({ k: 'handled', id, reply }, true);
  }

  /** Records the relay's id for the reply. */
  replied(id: string, replyId: string): void {
    const e = this.#live.get(id);
    if (e) Object.assign(e, { state: 'replied', replyId });
    void this.#append({ k: 'replied', id, to: replyId }, false);
  }

  /** Marks a message finished (acknowledged); it will be recognised if it comes again. */
  done(id: string): void {
    const e = this.#live.get(id);
    this.#live.delete(id);
    const now = this.#clock.now();
    const until = Math.max(e?.expiresAt ?? now + MAX_TTL_MS, now + this.#minRetention) + 3_600_000;
    this.#done.add(id, until, now);
    void this.#append({ k: 'done', id, until }, false);
  }

  #append(line: Line, durable: boolean): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#buffer.push(`${JSON.stringify(line)}\n`);
    this.#durable ||= durable;
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.flush());
    }
    if (!durable) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Writes (and, if anyone waits for it, syncs) everything buffered. */
  flush(): void {
    this.#scheduled = false;
    if (this.#buffer.length === 0 || this.#closed) return;
    const text = this.#buffer.join('');
    const count = this.#buffer.length;
    const waiters = this.#waiters;
    const sync = this.#durable && this.#fsync;
    this.#buffer = [];
    this.#waiters = [];
    this.#durable = false;
    writeSync(this.#fd, text);
    if (sync) fdatasyncSync(this.#fd);
    this.#lines += count;
    for (const w of waiters) w();
    // Rewrite once the file holds about twice what memory does (plus slack): bounded, amortised.
    if (this.#lines > 10_000 + 2 * (this.#done.size + 3 * this.#live.size)) this.#rotate();
  }

  #rotate(): void {
    closeSync(this.#fd);
    this.#compact();
    this.#fd = openSync(this.path, 'a', 0o600);
  }

  /** Size of the file on disk, in bytes. */
  get sizeOnDisk(): number {
    return fstatSync(this.#fd).size;
  }

  /** Flushes, syncs and releases the lock. */
  close(): void {
    if (this.#closed) return;
    this.flush();
    if (this.#fsync) fdatasyncSync(this.#fd);
    this.#closed = true;
    closeSync(this.#fd);
    this.#unlock();
  }
}

/** The pid of a live process holding the journal lock in `dir`, if any (`mrp doctor` asks). */
export function journalLockHolder(dir: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(join(dir, 'lock'), 'utf8');
  } catch {
    return undefined;
  }
  const pid = Number(text.trim());
  return Number.isInteger(pid) && pid > 0 && isAlive(pid) ? pid : undefined;
}
