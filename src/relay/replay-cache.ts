/**
 * The replay cache (§2.3 step 5) behind an interface, because it is process-local state that a
 * relay shared by several processes must share too: a request replayed to another process has to
 * be refused as well (a shared version is an atomic "insert if absent, with a TTL" in Postgres or
 * Redis). `MemoryReplayCache` is the one-process version.
 *
 * It is bounded: at most `maxEntries` ids, each kept until its forget-after time (twice the
 * timestamp tolerance, decided by the caller). Evicting an entry that is still inside its window
 * would let that request be replayed, so when the cache is full of live entries new requests are
 * refused with `503 service_unavailable` (and `Retry-After`) instead.
 */
import type { Clock } from '../core/clock.js';
import { ApiError } from './errors.js';

export interface ReplayCache {
  /**
   * Remembers `id` until `forgetAt` (Unix ms) unless it is already remembered. Resolves `true`
   * when it was new, `false` for a replay. Atomic: of concurrent calls with one id, one sees
   * `true`. Rejects with an `ApiError` (503) when it cannot remember more right now.
   */
  remember(id: string, forgetAt: number): Promise<boolean>;
  /**
   * Optional: whether `id` is remembered now, without remembering it. Lets the relay refuse a
   * replayed request before it reads the body (a signature can only be verified after); a cache
   * without it is asked only once the body is in.
   */
  seen?(id: string): Promise<boolean> | boolean;
  /** Forgets every expired entry (the sweeper calls it). */
  prune(): Promise<void>;
}

/** Default cap of the in-memory replay cache: about 60 MB when full. */
export const DEFAULT_MAX_REPLAY_ENTRIES = 1_000_000;

export class MemoryReplayCache implements ReplayCache {
  readonly #clock: Clock;
  readonly maxEntries: number;
  /** Id → Unix second after which it may be forgotten. Insertion order ≈ expiry order. */
  readonly #seen = new Map<string, number>();
  #lastFullPrune = Number.NEGATIVE_INFINITY;

  constructor(clock: Clock, maxEntries: number = DEFAULT_MAX_REPLAY_ENTRIES) {
    this.#clock = clock;
    this.maxEntries = maxEntries;
  }

  get size(): number {
    return this.#seen.size;
  }

  seen(id: string): boolean {
    const until = this.#seen.get(id);
    return until !== undefined && until > this.#clock.now() / 1000;
  }

  async remember(id: string, forgetAt: number): Promise<boolean> {
    if (this.#seen.has(id)) return false;
    this.#makeRoom();
    this.#seen.set(id, Math.ceil(forgetAt / 1000));
    return true;
  }

  /** Forgets expired entries from the front; when still full, refuses (see the file comment). */
  #makeRoom(): void {
    const nowSec = this.#clock.now() / 1000;
    for (const [id, until] of this.#seen) {
      if (until > nowSec) break;
      this.#seen.delete(id);
    }
    if (this.#seen.size < this.maxEntries) return;
    // Out-of-order expiries (a clock that moved back) are only found by a full scan: at most one a second.
    if (nowSec - this.#lastFullPrune >= 1) {
      this.#lastFullPrune = nowSec;
      this.#pruneAll();
      if (this.#seen.size < this.maxEntries) return;
    }
    const oldest = this.#seen.values().next().value as number;
    const retryAfter = Math.max(1, Math.ceil(oldest - nowSec));
    throw new ApiError(
      'service_unavailable',
      `the relay is handling too many signed requests; retry in ${retryAfter} s`,
      {
        details: { reason: 'replay_cache_full', retry_after: retryAfter },
        headers: { 'Retry-After': String(retryAfter) },
      },
    );
  }

  #pruneAll(): void {
    const nowSec = this.#clock.now() / 1000;
    for (const [id, until] of this.#seen) if (until <= nowSec) this.#seen.delete(id);
  }

  async prune(): Promise<void> {
    this.#pruneAll();
  }
}
