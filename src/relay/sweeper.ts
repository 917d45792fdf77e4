/**
 * The relay's housekeeping, every `sweepIntervalMs` (30 s by default): expire and purge messages
 * (§4.3) in the store, and let the process-local state forget what no longer counts (replay
 * entries past their window, empty rate windows). Blob purges and webhook retries will be tasks
 * here too.
 *
 * Tasks run one after another; a failing task is logged and the next one still runs; a tick that
 * comes while the previous sweep still runs is skipped (a slow store never piles sweeps up).
 * With several relay processes on one database every process prunes its own state, but the
 * store task should run in one of them at a time (a lease or an advisory lock around it: a
 * shared store can take one in `sweep`).
 */
import type { Clock, Timer } from '../core/clock.js';
import { isStorageFailure } from './errors.js';
import type { Logger } from './log.js';

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
    this.#timer ??= this.#clock.setInterval(() => void this.sweep(), this.#intervalMs).unref();
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
