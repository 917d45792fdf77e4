/**
 * The runtime's durable memory: exactly-once handling on top of at-least-once delivery.
 *
 * One append-only JSON-lines file per identity records, for each message, `received` (before its
 * handler runs, with the whole message, so a crash after a poll loses nothing), `handled` (with
 * the reply to send), `replied` (the reply's message id) and `done` (acknowledged). On start the
 * file is replayed: done ids are remembered until their message can no longer be redelivered,
 * unfinished messages are resumed from where they stopped.
 *
 * Writes made in one event-loop turn share one write (and, with `fsync`, one fdatasync). The file is
 * compacted (rewritten from memory, then renamed) once what was appended since the last rewrite
 * outweighs it, with the done ids packed (16 bytes of base64 each, 4,096 a line: 2 million open in
 * ~1.3 s, where a line per id took ~12 s). A lock file keeps two runners of the same identity from
 * sharing it.
 *
 * A write that fails (disk full, I/O error) is never dropped and never thrown at a caller: the
 * unwritten bytes are kept, everyone waiting for them keeps waiting, and the write is retried
 * with backoff (`unwritable` events report it; `writable` when it works again). The runtime
 * stops taking messages meanwhile, because nothing it takes can be journaled. File system calls
 * go through a small injectable interface (`JournalFs`) so tests can make the disk fail.
 *
 * Two more facts are kept per message and across restarts: how many times its handler started
 * (and how many of those runs were stopped on purpose), so a handler that keeps killing the
 * process on one message can be recognised; and, in poll mode, whether a poll was in flight when
 * the process died (`take` records), so exactly that poll's window is looked at again.
 *
 * The file also names the relay its messages came from (a `relay` record). Message ids, threads
 * and acknowledgements belong to one relay: an unfinished message is finished against the relay
 * it came from, never another one. Opened for another relay while messages are unfinished, the
 * journal refuses (`journal_other_relay`, naming both); with nothing unfinished it moves over.
 */
import * as nodeFs from 'node:fs';
import { join, resolve } from 'node:path';
import { type Deferred, deferred } from '../core/async.js';
import { Backoff, type BackoffOptions } from '../core/backoff.js';
import { type Clock, systemClock, type Timer } from '../core/clock.js';
import { TypedEmitter } from '../core/emitter.js';
import { AbortError, ConfigError, MrpError } from '../core/errors.js';
import { TAKE_ID_RE } from '../protocol/constants.js';
import type { EncodedSend } from '../protocol/frames.js';
import type { Attachment, JsonValue, Message } from '../protocol/types.js';
import { isPlainObject } from '../protocol/validate.js';
import { ExpiringIdSet, hash64, PACKED_ENTRY_BYTES, parseHashHex } from './idset.js';
import { isAlive } from './pid.js';

/**
 * The reply a finished handler asked for (`null`: no reply), already sealed: `request` is exactly
 * what is sent, and sent again after a crash (its body is never encoded a second time).
 */
export interface JournaledReply {
  request: EncodedSend;
  /** How the handler ended. */
  outcome: 'ok' | 'error' | 'timeout';
  /** For error replies: the code and message the body carries (for reports). */
  error?: { code: string; message: string };
}

/** A `handled` record written before replies were sealed: the body as a value. */
interface LegacyReply {
  body: JsonValue;
  content_type: string;
  outcome: 'ok' | 'error' | 'timeout';
}

/**
 * An older journal's reply as a sealed one: it was always sent as plain JSON, threaded to its
 * message, so that is what it becomes.
 */
function upgradeReply(reply: JournaledReply | LegacyReply | null, message: Message): JournaledReply | null {
  if (reply === null || 'request' in reply) return reply;
  const out: JournaledReply = {
    request: {
      recipient_key: message.sender_key,
      content_type: reply.content_type,
      body_json: JSON.stringify(reply.body),
      in_reply_to: message.message_id,
      thread_id: message.thread_id ?? message.message_id,
    },
    outcome: reply.outcome,
  };
  const error = (reply.body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  if (reply.outcome !== 'ok' && typeof error?.code === 'string')
    out.error = { code: error.code, message: String(error.message ?? '') };
  return out;
}

/**
 * A `handled` record's reply as written (sealed, legacy or none), not something damaged into
 * another shape.
 */
function replyShaped(reply: unknown): reply is JournaledReply | LegacyReply | null {
  if (reply === null) return true;
  if (!isPlainObject(reply)) return false;
  if ('request' in reply) {
    const request = reply['request'];
    return (
      isPlainObject(request) &&
      typeof request['recipient_key'] === 'string' &&
      typeof request['content_type'] === 'string' &&
      typeof request['body_json'] === 'string'
    );
  }
  return typeof reply['content_type'] === 'string' && 'body' in reply;
}

export type EntryState = 'received' | 'handled' | 'replied';

export interface JournalEntry {
  id: string;
  message: Message;
  state: EntryState;
  reply?: JournaledReply | null;
  replyId?: string;
  /** Unix ms after which the relay can no longer redeliver this message. */
  expiresAt: number;
  /** Its handler began running (so a resumed run is a redelivery). */
  started?: boolean;
  /** Handler runs begun on it, in all runs so far. */
  starts?: number;
  /** Of those, runs stopped on purpose (shutdown), not by the process dying. */
  aborts?: number;
  /** Blobs its handler uploaded (`ctx.upload`), by upload key (runtime/attachments.ts). */
  uploads?: Record<string, Attachment>;
}

/** Handler runs on this entry that ended with the process dying (started, never finished nor stopped). */
export function crashesOf(entry: Pick<JournalEntry, 'starts' | 'aborts'>): number {
  return Math.max(0, (entry.starts ?? 0) - (entry.aborts ?? 0));
}

/** The file system calls the journal makes (node:fs by default); tests inject failures. */
export interface JournalFs {
  mkdirSync(path: string, options: { recursive: true; mode: number }): unknown;
  openSync(path: string, flags: string, mode?: number): number;
  closeSync(fd: number): void;
  writeSync(fd: number, buffer: Uint8Array, offset: number, length: number): number;
  fdatasyncSync(fd: number): void;
  fstatSync(fd: number): { size: number };
  readFileSync(path: string, encoding: 'utf8'): string;
  writeFileSync(path: string, data: string, options: { flag: string; mode: number }): void;
  renameSync(from: string, to: string): void;
  unlinkSync(path: string): void;
}

/**
 * A poll in flight when the process died: its start (local clock), long-poll wait and the take id
 * it sent (docs/protocol.md §3.6; absent in journals written before take ids).
 */
export interface OpenTake {
  at: number;
  waitSeconds: number;
  id?: string;
}

export interface JournalEvents extends Record<string, unknown[]> {
  /** A write failed; it is retried after `retryInMs`. Messages are not taken meanwhile. */
  unwritable: [{ error: MrpError; retryInMs: number; pendingBytes: number }];
  /** Writes work again after failing. */
  writable: [];
  /** Unfinished entries taken over while running (a shared journal: another runner died). */
  recovered: [JournalEntry[]];
}

type Line =
  | { k: 'recv'; id: string; exp: number; m: Message }
  /** `n`: a count (compacted form); absent means one. */
  | { k: 'started'; id: string; n?: number }
  | { k: 'aborted'; id: string; n?: number }
  | { k: 'take'; at: number; wait: number; id?: string }
  | { k: 'taken' }
  | { k: 'handled'; id: string; reply: JournaledReply | LegacyReply | null }
  /** A blob the handler uploaded, so a re-run after a crash reuses it. */
  | { k: 'upload'; id: string; key: string; a: Attachment }
  | { k: 'replied'; id: string; to: string }
  | { k: 'done'; id: string; until: number }
  /** A done id kept across compactions, as its 64-bit hash (compactions before `dones`). */
  | { k: 'done'; h: string; until: number; id?: undefined }
  /** Done ids kept across compactions: `ExpiringIdSet.pack`'s bytes, base64. */
  | { k: 'dones'; b: string }
  /** The relay the messages come from (`relayKey`). */
  | { k: 'relay'; url: string };

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
  /** File system calls (default node:fs). */
  fs?: JournalFs;
  /** Delays between retries of a failed write (default 250 ms – 1 s, doubling to 30 s). */
  retryBackoff?: BackoffOptions;
  /**
   * The relay the messages come from (its URL, or any stable name for it). A journal left with
   * unfinished messages from another relay is not opened (`journal_other_relay`). Absent: not
   * checked, and the file's record is kept as it is.
   */
  relay?: string;
}

/** How a journal names a relay: its URL without a trailing slash (scheme and host lowercased). */
export function relayKey(relay: string): string {
  try {
    const url = new URL(relay);
    return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
  } catch {
    return relay;
  }
}

const DAY = 86_400_000;
/** Lock files of the journals open in this process (`close()` releases them). */
const HELD = new Set<string>();
const RESOLVED = Promise.resolve();
const MAX_TTL_MS = 30 * DAY;
/** Done ids per `dones` line of a compacted file (48 KiB of packed entries, 64 KiB of base64). */
const DONE_IDS_PER_LINE = 4096;
const DONES_PREFIX = '{"k":"dones","b":"';
/**
 * The file is rewritten once what was appended since the last rewrite is as large as that rewrite
 * and at least this: about twice what memory holds at most, and each byte rewritten about once.
 */
const COMPACT_MIN_BYTES = 8 * 1024 * 1024;

export const JOURNAL_DEFAULTS = { minRetentionMs: 7 * DAY, maxDone: 2_000_000 } as const;

function describeFsError(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  const message = String(e?.message ?? err);
  // node:fs messages already begin with the code ("ENOSPC: no space left on device, write").
  return e?.code && !message.startsWith(e.code) ? `${e.code}: ${message}` : message;
}

export class Journal extends TypedEmitter<JournalEvents> {
  readonly dir: string;
  readonly path: string;
  readonly #lockPath: string;
  readonly #clock: Clock;
  readonly #fs: JournalFs;
  readonly #minRetention: number;
  readonly #fsync: boolean;
  readonly #live = new Map<string, JournalEntry>();
  readonly #done: ExpiringIdSet;
  readonly #recovered: JournalEntry[] = [];
  readonly #retry: Backoff;
  /** The poll the previous run had in flight when it died, if any. */
  readonly openTake: OpenTake | undefined;
  #fd: number;
  #buffer: string[] = [];
  /** Bytes a failed write left unwritten (written first, before anything newer). */
  #unwritten: Buffer | undefined;
  /** Written but not yet synced, for waiters who need the sync. */
  #unsynced = false;
  /**
   * Settled by the next successful write: handed to every durable record and `durable()` caller
   * until then (one promise a write, not one a record).
   */
  #barrier: Deferred<void> | undefined;
  #durable = false;
  #scheduled = false;
  #retryTimer: Timer | undefined;
  #failing: MrpError | undefined;
  /** The poll in flight now (poll mode), as the file says. */
  #take: OpenTake | undefined;
  /** The relay the messages come from, as the file says (`relayKey`). */
  #relay: string | undefined;
  /** Bytes appended since the last compaction, and the size of what that compaction wrote. */
  #appended = 0;
  #compacted = 0;
  /** After a failed compaction: do not try again before this many bytes were appended. */
  #compactAt = 0;
  #closed = false;

  private constructor(dir: string, options: JournalOptions) {
    super();
    this.dir = dir;
    this.path = join(dir, 'journal.jsonl');
    this.#lockPath = resolve(dir, 'lock');
    this.#clock = options.clock ?? systemClock;
    this.#fs = options.fs ?? (nodeFs as unknown as JournalFs);
    this.#minRetention = options.minRetentionMs ?? JOURNAL_DEFAULTS.minRetentionMs;
    this.#fsync = options.fsync ?? false;
    this.#retry = new Backoff(options.retryBackoff);
    this.#done = new ExpiringIdSet(options.maxDone ?? JOURNAL_DEFAULTS.maxDone);
    this.#fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.#lock();
    try {
      this.openTake = this.#replay();
      this.#take = this.openTake;
      if (options.relay !== undefined) this.#checkRelay(relayKey(options.relay));
      this.#compact();
      this.#fd = this.#fs.openSync(this.path, 'a', 0o600);
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
        this.#fs.writeFileSync(this.#lockPath, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
        HELD.add(this.#lockPath);
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const pid = Number(this.#fs.readFileSync(this.#lockPath, 'utf8').trim());
        // Our own pid: stale only if no journal of this process holds it (two `Agent`s or
        // runtimes on one key in one process would otherwise both serve and answer twice).
        if (pid === process.pid && HELD.has(this.#lockPath)) {
          throw new ConfigError(
            'journal_locked',
            `this identity's journal (${this.dir}) is already open in this process: another agent or runner with the same key is running`,
            { file: this.#lockPath, hint: 'stop the other one first, or use another key' },
          );
        }
        if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid)) {
          throw new ConfigError(
            'journal_locked',
            `another mrp run (pid ${pid}) is already running with this identity (${this.dir})`,
            {
              file: this.#lockPath,
              hint: `stop it first, or use another key with --key`,
            },
          );
        }
        this.#fs.unlinkSync(this.#lockPath);
      }
    }
  }

  /** Refuses another relay's unfinished messages; takes the journal over when none are left. */
  #checkRelay(relay: string): void {
    const before = this.#relay;
    if (before !== undefined && before !== relay) {
      const open = this.#live.size;
      if (open > 0 || this.#take) {
        const what = open > 0 ? `${open} unfinished message${open === 1 ? '' : 's'}` : 'a poll in flight';
        throw new ConfigError(
          'journal_other_relay',
          `this identity's journal (${this.path}) holds ${what} from relay ${before}, not ${relay}: they can only be finished there`,
          {
            file: this.path,
            hint: `run once against ${before}${/^https?:\/\//.test(before) ? ` (mrp run --relay ${before})` : ''} to finish them, or move ${this.path} aside to drop them`,
          },
        );
      }
    }
    this.#relay = relay;
  }

  #unlock(): void {
    HELD.delete(this.#lockPath);
    try {
      this.#fs.unlinkSync(this.#lockPath);
    } catch {
      // Already gone.
    }
  }

  /** Rebuilds memory from the file; a torn last line (crash mid-write) is ignored. */
  #replay(): OpenTake | undefined {
    let text: string;
    try {
      text = this.#fs.readFileSync(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    const now = this.#clock.now();
    let take: OpenTake | undefined;
    const lines = text.split('\n');
    // Room for every packed done id first (a compacted file may hold millions).
    let packed = 0;
    for (const raw of lines)
      if (raw.startsWith(DONES_PREFIX)) packed += Math.floor((raw.length * 3) / 4 / PACKED_ENTRY_BYTES);
    this.#done.reserve(packed, now);
    for (const raw of lines) {
      if (!raw) continue;
      let line: Line;
      try {
        line = JSON.parse(raw) as Line;
      } catch {
        continue;
      }
      // A damaged line (not a record, a record without its id, a field of the wrong type) is
      // skipped like a torn one: at worst a handler runs again, never does the runner stay down.
      if (!line || typeof line !== 'object') continue;
      if ('id' in line && line.id !== undefined && typeof line.id !== 'string') continue;
      try {
        if (line.k === 'take') take = openTakeOf(line);
        else if (line.k === 'taken') take = undefined;
        else if (line.k === 'relay') this.#relay = typeof line.url === 'string' ? line.url : this.#relay;
        else this.#replayLine(line, now);
      } catch {
        // Skipped (see above).
      }
    }
    this.#recovered.push(...this.#live.values());
    return take;
  }

  /** One record of `#replay` (not `take`/`taken`); a field of the wrong type makes it a no-op. */
  #replayLine(line: Exclude<Line, { k: 'take' } | { k: 'taken' } | { k: 'relay' }>, now: number): void {
    const count = (n: unknown): number => (Number.isSafeInteger(n) && (n as number) > 0 ? (n as number) : 1);
    switch (line.k) {
      case 'recv':
        if (typeof line.id !== 'string' || !line.m || typeof line.m !== 'object') return;
        if (!this.#done.has(line.id, now))
          this.#live.set(line.id, {
            id: line.id,
            message: line.m,
            state: 'received',
            expiresAt: Number.isFinite(line.exp) ? line.exp : now + MAX_TTL_MS,
          });
        return;
      case 'started': {
        const e = this.#live.get(line.id);
        if (e) Object.assign(e, { started: true, starts: (e.starts ?? 0) + count(line.n) });
        return;
      }
      case 'aborted': {
        const e = this.#live.get(line.id);
        if (e) e.aborts = (e.aborts ?? 0) + count(line.n);
        return;
      }
      case 'upload': {
        const e = this.#live.get(line.id);
        if (e && typeof line.key === 'string' && isPlainObject(line.a))
          e.uploads = { ...e.uploads, [line.key]: line.a };
        return;
      }
      case 'handled': {
        const e = this.#live.get(line.id);
        if (!e || !replyShaped(line.reply)) return;
        Object.assign(e, { state: 'handled', reply: upgradeReply(line.reply, e.message) });
        return;
      }
      case 'replied': {
        const e = this.#live.get(line.id);
        if (e && typeof line.to === 'string') Object.assign(e, { state: 'replied', replyId: line.to });
        return;
      }
      case 'done': {
        // Finished either way; a damaged `until` is remembered as long as any message could live.
        const until = Number.isFinite(line.until) ? line.until : now + MAX_TTL_MS;
        if (line.id !== undefined) this.#live.delete(line.id);
        const hash = line.id !== undefined ? hash64(line.id) : parseHashHex(String(line.h));
        if (hash && until > now) this.#done.addHash(hash, until, now);
        return;
      }
      case 'dones':
        if (typeof line.b === 'string') this.#done.addPacked(Buffer.from(line.b, 'base64'), now);
        return;
    }
  }

  /** Rewrites the file from memory (live entries and unexpired done ids), atomically. */
  #compact(): void {
    const now = this.#clock.now();
    const out: string[] = [];
    if (this.#relay !== undefined) out.push(JSON.stringify({ k: 'relay', url: this.#relay } satisfies Line));
    this.#done.sweep(now);
    // Packed, 4,096 ids a line: millions of them are a copy and a base64 encoding, not a string each.
    for (const chunk of this.#done.pack(now, DONE_IDS_PER_LINE))
      out.push(`${DONES_PREFIX}${chunk.toString('base64')}"}`);
    for (const e of this.#live.values()) {
      out.push(JSON.stringify({ k: 'recv', id: e.id, exp: e.expiresAt, m: e.message } satisfies Line));
      if (e.started) out.push(JSON.stringify({ k: 'started', id: e.id, n: e.starts ?? 1 } satisfies Line));
      if (e.aborts) out.push(JSON.stringify({ k: 'aborted', id: e.id, n: e.aborts } satisfies Line));
      for (const [key, a] of Object.entries(e.uploads ?? {}))
        out.push(JSON.stringify({ k: 'upload', id: e.id, key, a } satisfies Line));
      if (e.reply !== undefined) out.push(JSON.stringify({ k: 'handled', id: e.id, reply: e.reply } satisfies Line));
      if (e.replyId !== undefined) out.push(JSON.stringify({ k: 'replied', id: e.id, to: e.replyId } satisfies Line));
    }
    // An open take stays open until it is settled (its answer journaled, or recovered).
    if (this.#take) out.push(JSON.stringify(takeLine(this.#take)));
    const tmp = `${this.path}.tmp`;
    let written = 0;
    const fd = this.#fs.openSync(tmp, 'w', 0o600);
    try {
      if (out.length) {
        const bytes = Buffer.from(`${out.join('\n')}\n`);
        for (let off = 0; off < bytes.length; ) off += this.#fs.writeSync(fd, bytes, off, bytes.length - off);
        written = bytes.length;
      }
      if (this.#fsync) this.#fs.fdatasyncSync(fd);
    } finally {
      this.#fs.closeSync(fd);
    }
    this.#fs.renameSync(tmp, this.path);
    this.#appended = 0;
    this.#compacted = written;
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
   * the next turn, or kill the process) but not synced: it survives the process dying, and it
   * counts handler runs that never finished.
   */
  started(id: string): void {
    const e = this.#live.get(id);
    if (e) {
      e.started = true;
      e.starts = (e.starts ?? 0) + 1;
    }
    this.#appendText(`{"k":"started","id":${JSON.stringify(id)}}\n`, false);
    // Written before the handler runs (it is called in a later microtask than this one), and
    // shared by every handler that starts before then: one write, not one per message.
    if (!this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(this.#flushNow);
    }
  }

  #flushQueued = false;
  readonly #flushNow = (): void => {
    this.#flushQueued = false;
    this.flush();
  };

  /** Records that a started handler was stopped on purpose (shutdown): not a crash. */
  aborted(id: string): void {
    const e = this.#live.get(id);
    if (e) e.aborts = (e.aborts ?? 0) + 1;
    void this.#append({ k: 'aborted', id }, false);
  }

  /** Records a blob the handler uploaded (`ctx.upload`); resolves once it is on disk. */
  uploaded(id: string, key: string, attachment: Attachment): Promise<void> {
    const e = this.#live.get(id);
    if (e) e.uploads = { ...e.uploads, [key]: attachment };
    return this.#append({ k: 'upload', id, key, a: attachment }, true);
  }

  /** Records the handler's result (the sealed reply to send); resolves once it is on disk. */
  handled(id: string, reply: JournaledReply | null): Promise<void> {
    const e = this.#live.get(id);
    if (e) Object.assign(e, { state: 'handled', reply });
    return this.#append({ k: 'handled', id, reply }, true);
  }

  /** Records the relay's id for the reply. */
  replied(id: string, replyId: string): void {
    const e = this.#live.get(id);
    if (e) {
      e.state = 'replied';
      e.replyId = replyId;
    }
    this.#appendText(`{"k":"replied","id":${JSON.stringify(id)},"to":${JSON.stringify(replyId)}}\n`, false);
  }

  /** Marks a message finished (acknowledged); it will be recognised if it comes again. */
  done(id: string): void {
    const e = this.#live.get(id);
    this.#live.delete(id);
    const now = this.#clock.now();
    const until = Math.max(e?.expiresAt ?? now + MAX_TTL_MS, now + this.#minRetention) + 3_600_000;
    this.#done.add(id, until, now);
    this.#appendText(`{"k":"done","id":${JSON.stringify(id)},"until":${until}}\n`, false);
  }

  /**
   * Poll mode: a poll is about to be sent (`at`: local clock; `id`: the take id it carries). Written at once, so a process that
   * dies before the poll's answer is journaled leaves this record last.
   */
  takeBegun(at: number, waitSeconds: number, id?: string): void {
    this.#take = { at, waitSeconds, ...(id === undefined ? {} : { id }) };
    void this.#append(takeLine(this.#take), false);
    this.flush();
  }

  /** Poll mode: the poll's answer is journaled (its messages' `recv` records precede this). */
  takeEnded(): void {
    this.#take = undefined;
    // Not written at once: the next `takeBegun` (right after, when polling goes on) writes both
    // in one go. Left unwritten by a crash, the take looks open, and recovery finds its messages
    // already journaled.
    this.#appendText('{"k":"taken"}\n', false);
  }

  /** True while writes fail (and are being retried). */
  get writable(): boolean {
    return this.#failing === undefined;
  }

  #append(line: Line, durable: boolean): Promise<void> {
    if (this.#closed) return durable ? Promise.reject(new AbortError('the journal is closed')) : Promise.resolve();
    this.#appendText(`${JSON.stringify(line)}\n`, durable);
    if (!durable) return RESOLVED;
    return this.#nextWrite();
  }

  /**
   * Settles with the next successful write (which writes everything buffered so far): one promise
   * shared by every record and barrier until then, not one per record.
   */
  #nextWrite(): Promise<void> {
    if (!this.#barrier) {
      this.#barrier = deferred();
      // Whoever waits on it handles a rejection; one nobody waits on is not unhandled.
      this.#barrier.promise.catch(() => undefined);
    }
    return this.#barrier.promise;
  }

  /** Buffers one record's line (`JSON.stringify` of a `Line`, or the same text built by hand). */
  #appendText(text: string, durable: boolean): void {
    if (this.#closed) return;
    this.#buffer.push(text);
    this.#durable ||= durable;
    this.#schedule();
  }

  #schedule(): void {
    if (!this.#scheduled && this.#retryTimer === undefined) {
      this.#scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /**
   * Resolves once every record made so far is written (and synced, with `fsync`) — a barrier for
   * whoever must not say "safe" before then (a source answering its relay). Rejects when the
   * journal closes first.
   */
  durable(): Promise<void> {
    if (this.#closed) return Promise.reject(new AbortError('the journal is closed'));
    if (this.#buffer.length === 0 && this.#unwritten === undefined && this.#retryTimer === undefined && this.#fd >= 0)
      return RESOLVED;
    this.#durable = true;
    this.#schedule();
    // Everyone asking before the next successful write shares one promise.
    return this.#nextWrite();
  }

  /**
   * Writes (and, if anyone waits for it, syncs) everything buffered. Never throws: a failure
   * keeps the unwritten bytes and the waiters, and schedules a retry.
   */
  flush(): void {
    this.#scheduled = false;
    // While a retry is pending, only the retry writes (the buffer keeps growing meanwhile).
    if (this.#closed || this.#retryTimer !== undefined) return;
    if (this.#buffer.length === 0 && !this.#unwritten && !this.#unsynced) {
      if (this.#fd >= 0) this.#healthy();
      return;
    }
    const count = this.#buffer.length;
    if (count > 0) {
      const text = Buffer.from(this.#buffer.join(''));
      this.#unwritten = this.#unwritten ? Buffer.concat([this.#unwritten, text]) : text;
      this.#buffer = [];
      this.#appended += text.length;
    }
    // No file open (a reopen after compaction is being retried): keep everything for it.
    if (this.#fd < 0) return;
    const sync = this.#durable && this.#fsync;
    const barrier = this.#barrier;
    try {
      const bytes = this.#unwritten;
      if (bytes) {
        let off = 0;
        try {
          while (off < bytes.length) off += this.#fs.writeSync(this.#fd, bytes, off, bytes.length - off);
        } finally {
          // What was written stays written: a retry continues after it, so no line is torn twice.
          this.#unwritten = off < bytes.length ? bytes.subarray(off) : undefined;
        }
      }
      if (sync || this.#unsynced) {
        this.#unsynced = true;
        this.#fs.fdatasyncSync(this.#fd);
        this.#unsynced = false;
      }
    } catch (err) {
      this.#fail(err);
      return;
    }
    this.#barrier = undefined;
    this.#durable = false;
    this.#healthy();
    barrier?.resolve();
    // Rewrite once the file holds about twice what memory does (COMPACT_MIN_BYTES): bounded, amortised.
    if (this.#appended > Math.max(this.#compactAt, this.#compacted, COMPACT_MIN_BYTES)) this.#rotate();
  }

  #healthy(): void {
    if (!this.#failing) return;
    this.#failing = undefined;
    this.#retry.reset();
    this.emit('writable');
  }

  #fail(err: unknown): void {
    const retryInMs = this.#retry.next();
    this.#failing = new MrpError(
      'internal',
      'journal_unwritable',
      `cannot write the journal ${this.path} (${describeFsError(err)}); retrying`,
      {
        cause: err,
        hint: 'free disk space or fix the file system; nothing is lost while it retries',
      },
    );
    this.#retryTimer?.cancel();
    this.#retryTimer = this.#clock.setTimeout(() => {
      this.#retryTimer = undefined;
      this.flush();
    }, retryInMs);
    this.emit('unwritable', {
      error: this.#failing,
      retryInMs,
      pendingBytes: (this.#unwritten?.length ?? 0) + this.#buffer.length,
    });
  }

  /**
   * Compacts into a new file and switches to it. A failure (e.g. no space for the copy) leaves
   * the current file in use and tries again only after as many more lines.
   */
  #rotate(): void {
    try {
      this.#compact();
    } catch {
      this.#compactAt = this.#appended * 2;
      return;
    }
    const old = this.#fd;
    try {
      this.#fd = this.#fs.openSync(this.path, 'a', 0o600);
    } catch (err) {
      // The compacted file replaced the old one but cannot be opened, and the old descriptor
      // writes to an unlinked file: keep retrying the open; writes wait (and are kept) meanwhile.
      this.#fd = -1;
      this.#reopen(err);
    }
    try {
      this.#fs.closeSync(old);
    } catch {
      // Nothing to keep from it.
    }
    this.#compactAt = 0;
  }

  #reopen(err: unknown): void {
    this.#failing ??= new MrpError(
      'internal',
      'journal_unwritable',
      `cannot reopen the journal ${this.path} (${describeFsError(err)}); retrying`,
      { cause: err },
    );
    const retryInMs = this.#retry.next();
    this.emit('unwritable', { error: this.#failing, retryInMs, pendingBytes: this.#unwritten?.length ?? 0 });
    this.#retryTimer = this.#clock.setTimeout(() => {
      this.#retryTimer = undefined;
      try {
        this.#fd = this.#fs.openSync(this.path, 'a', 0o600);
      } catch (again) {
        this.#reopen(again);
        return;
      }
      this.flush();
    }, retryInMs);
  }

  /** Size of the file on disk, in bytes. */
  get sizeOnDisk(): number {
    return this.#fs.fstatSync(this.#fd).size;
  }

  #cancelRetry(): void {
    this.#retryTimer?.cancel();
    this.#retryTimer = undefined;
  }

  /**
   * Flushes, syncs and releases the lock. Throws `journal_unwritable` when what was buffered
   * could not be written; whoever still waits for a write is rejected (the message comes again).
   */
  close(): void {
    if (this.#closed) return;
    this.#cancelRetry();
    this.flush();
    // A last write that failed scheduled a retry that will never be made: a pending timer would
    // keep the process alive up to a backoff (30 s) past the shutdown's grace.
    this.#cancelRetry();
    let error = this.#failing;
    if (!error && this.#fsync) {
      try {
        this.#fs.fdatasyncSync(this.#fd);
      } catch (err) {
        error = new MrpError(
          'internal',
          'journal_unwritable',
          `cannot sync the journal ${this.path} (${describeFsError(err)})`,
          { cause: err },
        );
      }
    }
    this.#closed = true;
    this.#barrier?.reject(new AbortError('the journal closed before this record could be written'));
    this.#barrier = undefined;
    try {
      this.#fs.closeSync(this.#fd);
    } catch {
      // Closing cannot be retried.
    }
    this.#unlock();
    if (error) throw error;
  }
}

/** The pid of a live process holding the journal lock in `dir`, if any (`mrp doctor` asks). */
export function journalLockHolder(dir: string): number | undefined {
  let text: string;
  try {
    text = nodeFs.readFileSync(join(dir, 'lock'), 'utf8');
  } catch {
    return undefined;
  }
  const pid = Number(text.trim());
  return Number.isInteger(pid) && pid > 0 && isAlive(pid) ? pid : undefined;
}

function takeLine(take: OpenTake): Line {
  return { k: 'take', at: take.at, wait: take.waitSeconds, ...(take.id === undefined ? {} : { id: take.id }) };
}

/** A `take` record back as an open take; an id that is not a valid take id is dropped (window recovery). */
function openTakeOf(line: { at: number; wait: number; id?: unknown }): OpenTake {
  const id = typeof line.id === 'string' && TAKE_ID_RE.test(line.id) ? line.id : undefined;
  return { at: line.at, waitSeconds: line.wait, ...(id === undefined ? {} : { id }) };
}
