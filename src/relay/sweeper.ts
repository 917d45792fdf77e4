/**
 * The relay's housekeeping, every `sweepIntervalMs` (30 s by default): expire and purge messages
 * (§4.3) in the store, and let the process-local state forget what no longer counts (replay
 * entries past their window, empty rate windows); and, on a sweeper of its own so that message
 * expiry never waits behind file I/O, delete expired blobs (`blobSweep`: metadata first, bytes
 * after, and now and then the orphan files a crash left between the two). Webhook retries will
 * be a task here too.
 *
 * Tasks run one after another; a failing task is logged and the next one still runs; a tick that
 * comes while the previous sweep still runs is skipped (a slow store never piles sweeps up).
 * With several relay processes on one database every process runs every task; the store task
 * does its work in one of them at a time (`PgStore.sweep` takes an advisory lock and skips when
 * another process holds it), and the shared prunes are idempotent deletes.
 */
import type { Clock, Timer } from '../core/clock.js';
import type { BlobStore } from './blobs/blob-store.js';
import { isStorageFailure } from './errors.js';
import type { Logger } from './log.js';
import type { Store } from './store/store.js';

export interface SweepTask {
  /** For logs: `store`, `replay_cache`, `rate_limits`, … */
  name: string;
  run(now: number): Promise<void>;
}

export class Sweeper {
  readonly #clock: Clock;
  readonly #intervalMs: number;
  readonly #logger: Logger;
  readonly #tasks: SweepTask[];
  #timer: Timer | undefined;
  #running: Promise<void> | undefined;

  constructor(clock: Clock, intervalMs: number, logger: Logger, tasks: SweepTask[]) {
    this.#clock = clock;
    this.#intervalMs = intervalMs;
    this.#logger = logger;
    this.#tasks = tasks;
  }

  start(): void {
    // The returned promise (never rejected) lets a test clock's `advanceAsync` wait for the sweep.
    this.#timer ??= this.#clock.setInterval(() => this.sweep(), this.#intervalMs).unref();
  }

  /** Runs every task once (unless a sweep is already running: then waits for that one). */
  sweep(): Promise<void> {
    this.#running ??= this.#runAll().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #runAll(): Promise<void> {
    for (const task of this.#tasks) {
      try {
        await task.run(this.#clock.now());
      } catch (err) {
        const where = isStorageFailure(err) ? 'storage_error' : 'internal_error';
        this.#logger.error(where, { where: `sweep_${task.name}`, error: (err as Error)?.message ?? String(err) });
      }
    }
  }

  /** Stops the timer and waits for a sweep in progress. */
  async stop(): Promise<void> {
    this.#timer?.cancel();
    this.#timer = undefined;
    await this.#running;
  }
}

/** Expired blobs removed per sweep (the rest wait for the next one). */
const BLOB_SWEEP_BATCH = 500;
/** How often the blob files are compared with the metadata, and how old an orphan must be to go. */
export const ORPHAN_SCAN_MS = 3_600_000;
export const ORPHAN_GRACE_MS = 10 * 60_000;

/**
 * The blob task: expired blobs lose their metadata (`Store.sweepBlobs`), then their bytes; a
 * crash in between (or a failed delete) leaves orphan files, which a scan every `ORPHAN_SCAN_MS`
 * removes once they are `ORPHAN_GRACE_MS` old (younger ones may be an upload whose metadata is
 * being written). A store without `list` is not scanned.
 */
export function blobSweep(
  store: Store,
  blobs: () => Promise<BlobStore | undefined>,
  logger: Logger,
): SweepTask & { lastScan: number } {
  const task = {
    name: 'blobs',
    lastScan: Number.NEGATIVE_INFINITY,
    async run(now: number): Promise<void> {
      const bytes = await blobs();
      if (!bytes) return;
      const gone = await store.sweepBlobs(now, BLOB_SWEEP_BATCH);
      for (const g of gone) await bytes.delete(g.owner_key, g.blob_id);
      if (gone.length > 0) logger.debug('sweep_blobs', { deleted: gone.length });
      if (bytes.list === undefined || now - task.lastScan < ORPHAN_SCAN_MS) return;
      task.lastScan = now;
      let orphans = 0;
      for await (const file of bytes.list()) {
        if (now - file.modifiedAt < ORPHAN_GRACE_MS) continue;
        const record = await store.getBlob(file.blobId);
        if (record && record.owner_key === file.owner) continue;
        if (await bytes.delete(file.owner, file.blobId)) orphans++;
      }
      if (orphans > 0) logger.info('sweep_blob_orphans', { deleted: orphans });
    },
  };
  return task;
}
