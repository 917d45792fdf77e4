/**
 * WAL checkpoints off the relay's event loop. SQLite's automatic checkpoint runs inside the
 * commit that crosses its threshold: every ~4 MiB of WAL one commit also copies the WAL into
 * `mrp.db` and fsyncs both files, and better-sqlite3 is synchronous, so the whole event loop
 * (every socket, every sender waiting for its `send_result`) waits for those fsyncs.
 *
 * Here a worker thread with its own connection to the same file runs `wal_checkpoint(PASSIVE)`
 * when the writer has committed since the last one (at most every CHECKPOINT_EVERY_MS). A passive
 * checkpoint never blocks the writer or readers: it copies the frames committed when it began.
 * The writer starts the WAL over only at a transaction that begins with everything copied, which
 * under steady load never happens by itself (commits land while the worker copies). So once the
 * WAL holds RESET_BYTES, the writer runs one passive checkpoint itself right after the worker's
 * (`catchUp`): it copies only what was committed meanwhile, and its next commit starts the WAL
 * over. That costs the writer two fsyncs every RESET_BYTES instead of a full copy and two fsyncs
 * every 4 MiB. The writer keeps an automatic checkpoint as a backstop at FALLBACK_BYTES (a
 * worker that lags or died cannot let the WAL grow without bound), and goes back to SQLite's
 * default (4 MiB of WAL) if the worker fails.
 *
 * Durability does not depend on checkpoints: a commit is durable when it is in the WAL (written
 * before `commit` returns, and fsynced then with `synchronous=FULL`). The worker's connection
 * uses the writer's `synchronous` level, never lower (at least NORMAL), so a checkpoint fsyncs
 * the WAL before copying and `mrp.db` before it lets the writer reuse the WAL: frames are never
 * overwritten before their copy is on disk, exactly as with the automatic checkpoint.
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/** The writer's automatic checkpoint while the worker runs: at this much WAL (in pages of the database's size). */
export const FALLBACK_BYTES = 64 * 1024 * 1024;
/** A WAL this long is caught up by the writer after the worker's checkpoint, to start it over. */
export const RESET_BYTES = 16 * 1024 * 1024;
/** SQLite's default automatic checkpoint (1000 pages of its default 4 KiB), for when there is no worker. */
const DEFAULT_BYTES = 1000 * 4096;
/** At most one background checkpoint this often (while commits keep coming). */
export const CHECKPOINT_EVERY_MS = 100;
/**
 * The worker starts at this many commits (a relay that hardly writes, or a test's, never pays for a
 * thread; until then SQLite's default automatic checkpoint is in place).
 */
export const START_AFTER_COMMITS = 100;

/** The worker: plain CommonJS (evaluated, so no file to resolve under tsx or from dist). */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
let db;
try {
  db = new Database(workerData.path, { fileMustExist: true });
  db.pragma('busy_timeout = 0');
  db.pragma('synchronous = ' + workerData.synchronous);
} catch (err) {
  parentPort.postMessage({ failed: String((err && err.message) || err) });
  process.exit(0);
}
parentPort.postMessage({ ready: true });
parentPort.on('message', (m) => {
  if (m === 'close') {
    db.close();
    parentPort.close();
    return;
  }
  try {
    const row = db.pragma('wal_checkpoint(PASSIVE)')[0];
    parentPort.postMessage({ done: true, log: row.log, checkpointed: row.checkpointed });
  } catch (err) {
    // Busy (another checkpoint under way) or an I/O error: the next one tries again, and the
    // writer's backstop still bounds the WAL.
    parentPort.postMessage({ done: true, error: String((err && err.code) || (err && err.message) || err) });
  }
});
`;

export interface CheckpointResult {
  /** Frames in the WAL and frames copied into the database by this checkpoint (-1 when it failed). */
  log: number;
  checkpointed: number;
  error?: string | undefined;
}

export interface CheckpointOptions {
  /** Commits before the worker starts (default START_AFTER_COMMITS; Infinity: never, SQLite checkpoints inside commits). */
  after?: number;
  /** WAL pages at which the writer catches up to start the WAL over (default RESET_BYTES in pages). */
  resetPages?: number;
  /** The database's page size in bytes (default 4096): the byte limits above become page counts. */
  pageSize?: number;
}

export class BackgroundCheckpoint {
  readonly #path: string;
  readonly #synchronous: 'FULL' | 'NORMAL';
  readonly #startAfter: number;
  readonly #resetPages: number;
  /** The writer's backstop while the worker runs, in pages (FALLBACK_BYTES). */
  readonly fallbackPages: number;
  /** The writer's own checkpoint without a worker, in pages (DEFAULT_BYTES). */
  readonly #defaultPages: number;
  #worker: Worker | undefined;
  #commits = 0;
  readonly #setAutoCheckpoint: (pages: number) => void;
  readonly #catchUp: () => void;
  #inFlight = false;
  #dirty = false;
  #lastAt = 0;
  #timer: NodeJS.Timeout | undefined;
  #failed = false;
  #closed = false;
  #exited: Promise<void> = Promise.resolve();
  /** Each finished checkpoint (tests, diagnostics). */
  onCheckpoint: ((result: CheckpointResult) => void) | undefined;

  /**
   * Checkpoints `path` from a worker once `options.after` commits were reported. The writer's side: `setAutoCheckpoint` sets its `wal_autocheckpoint` (the backstop
   * while the worker runs, SQLite's default again if it fails); `catchUp` runs a passive
   * checkpoint on it (see the file comment).
   */
  constructor(
    path: string,
    synchronous: 'FULL' | 'NORMAL',
    writer: { setAutoCheckpoint(pages: number): void; catchUp(): void },
    options: CheckpointOptions = {},
  ) {
    this.#path = path;
    this.#synchronous = synchronous;
    this.#setAutoCheckpoint = (pages) => writer.setAutoCheckpoint(pages);
    this.#catchUp = () => writer.catchUp();
    this.#startAfter = options.after ?? START_AFTER_COMMITS;
    const pageSize = options.pageSize ?? 4096;
    this.#resetPages = options.resetPages ?? Math.ceil(RESET_BYTES / pageSize);
    this.fallbackPages = Math.ceil(FALLBACK_BYTES / pageSize);
    this.#defaultPages = Math.ceil(DEFAULT_BYTES / pageSize);
    // Until the worker starts, the writer's own checkpoints keep the WAL as short as SQLite's
    // default does with its default pages (whatever this database's page size).
    this.#setAutoCheckpoint(this.#defaultPages);
  }

  /** Whether the worker has been started (and has not failed). */
  get running(): boolean {
    return this.#worker !== undefined && !this.#failed && !this.#closed;
  }

  #start(): Worker {
    const driver = createRequire(import.meta.url).resolve('better-sqlite3');
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { path: this.#path, synchronous: this.#synchronous, driver },
    });
    worker.unref();
    this.#exited = new Promise((resolve) => worker.once('exit', () => resolve()));
    worker.on(
      'message',
      (m: { ready?: true; failed?: string; log?: number; checkpointed?: number; error?: string }) => {
        if (m.failed !== undefined) return this.#fail();
        if (m.ready) {
          // Until now SQLite's own checkpoints kept the WAL short; from here on they are the backstop.
          if (!this.#closed) this.#setAutoCheckpoint(this.fallbackPages);
          return;
        }
        this.#inFlight = false;
        if (this.#closed) return;
        if ((m.log ?? 0) >= this.#resetPages) {
          try {
            this.#catchUp();
          } catch {
            // Busy or an I/O error: the next round (or the backstop) tries again.
          }
        }
        this.onCheckpoint?.({ log: m.log ?? -1, checkpointed: m.checkpointed ?? -1, error: m.error });
        if (this.#dirty) this.committed();
      },
    );
    worker.on('error', () => this.#fail());
    worker.on('exit', () => {
      if (!this.#closed) this.#fail();
    });
    return worker;
  }

  /** The writer committed: a checkpoint soon (at most one in flight, one per CHECKPOINT_EVERY_MS). */
  committed(): void {
    if (this.#failed || this.#closed) return;
    if (!this.#worker) {
      if (++this.#commits < this.#startAfter) return;
      try {
        this.#worker = this.#start();
      } catch {
        this.#failed = true;
        return;
      }
    }
    this.#dirty = true;
    if (this.#inFlight || this.#timer) return;
    const wait = this.#lastAt + CHECKPOINT_EVERY_MS - Date.now();
    if (wait > 0) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.committed();
      }, wait);
      this.#timer.unref();
      return;
    }
    this.#dirty = false;
    this.#inFlight = true;
    this.#lastAt = Date.now();
    this.#worker.postMessage('checkpoint');
  }

  #fail(): void {
    if (this.#failed || this.#closed) return;
    this.#failed = true;
    clearTimeout(this.#timer);
    this.#setAutoCheckpoint(this.#defaultPages);
  }

  /** Stops the worker (its connection closed first); the writer's own checkpoints take over. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    const worker = this.#worker;
    if (!worker) return;
    worker.postMessage('close');
    const timer = setTimeout(() => void worker.terminate(), 5000);
    await this.#exited;
    clearTimeout(timer);
  }
}
