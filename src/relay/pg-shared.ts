/**
 * The process-local state of docs/architecture.md §5.3 that relay processes on one PostgreSQL
 * database must share (external mode), in tables of that database (`pg-schema.ts`,
 * `shared_state`):
 *
 * - `PgReplayCache`: a signature is remembered with one atomic upsert — inserted, or taken over
 *   when the stored one has expired; anything else is a replay (409 in every process). Expired
 *   rows are pruned by the sweeper. A replay to the same process is refused from memory first.
 * - `PgConnectionRegistry`: one row per WebSocket slot with the id of the process holding it;
 *   each process keeps a lease row alive (a heartbeat every third of the lease). `tryAcquire`
 *   counts and inserts in one transaction under the agent's advisory lock, ignoring (and
 *   deleting) slots of processes whose lease ran out: a SIGKILLed process's connections free up
 *   after one lease (15 s by default). A process that missed its own lease (a long pause) renews
 *   it at its next heartbeat; its slots may have been freed meanwhile (the cap may be exceeded
 *   for that while).
 * - `PgRateLimiter`: per (scope, key) a counter per second in the window, bumped with an atomic
 *   upsert; the window is the sum of the last 60 seconds' counters (an event counts for between
 *   60 and 61 s). `peek` then `record` as in `limits.ts`: not atomic across processes.
 *
 * Times of the replay cache and rate windows come from the relay's clock (tests inject one);
 * leases use the database server's clock, which every process shares.
 */
import { randomBytes } from 'node:crypto';
import type postgres from 'postgres';
import type { Clock } from '../core/clock.js';
import type { ConnectionRegistry } from './connections.js';
import type { RateLimiter, RateLimiterFactory, RateState } from './limits.js';
import type { ReplayCache } from './replay-cache.js';
import { LOCKS } from './store/pg-schema.js';

type Sql = postgres.Sql;

/** Ids remembered in memory per process (a replay to the same process answers without a round trip). */
const LOCAL_REPLAY_ENTRIES = 10_000;

export class PgReplayCache implements ReplayCache {
  readonly #sql: Sql;
  readonly #clock: Clock;
  /** id → forget-after (ms), insertion order. */
  readonly #recent = new Map<string, number>();

  constructor(sql: Sql, clock: Clock) {
    this.#sql = sql;
    this.#clock = clock;
  }

  async remember(id: string, forgetAt: number): Promise<boolean> {
    const now = this.#clock.now();
    const known = this.#recent.get(id);
    if (known !== undefined && known > now) return false;
    const rows = await this.#sql.unsafe(
      `INSERT INTO replay_cache (id, forget_at) VALUES ($1, $2)
       ON CONFLICT (id) DO UPDATE SET forget_at = excluded.forget_at WHERE replay_cache.forget_at <= $3
       RETURNING 1`,
      [id, forgetAt, now] as never[],
      { prepare: true },
    );
    if (rows.length === 0) return false;
    this.#recent.set(id, forgetAt);
    if (this.#recent.size > LOCAL_REPLAY_ENTRIES) this.#recent.delete(this.#recent.keys().next().value as string);
    return true;
  }

  async prune(): Promise<void> {
    const now = this.#clock.now();
    await this.#sql.unsafe('DELETE FROM replay_cache WHERE forget_at <= $1', [now] as never[]);
    for (const [id, until] of this.#recent) if (until <= now) this.#recent.delete(id);
  }
}

export interface PgConnectionRegistryOptions {
  /** A process's slots are freed this long after its last heartbeat (default 15 s). */
  leaseMs?: number;
  /** Told about a failed heartbeat (the relay logs it). */
  onError?: (err: unknown) => void;
}

export class PgConnectionRegistry implements ConnectionRegistry {
  /** This process in `relay_processes` and `ws_slots`. */
  readonly processId = `${process.pid}-${randomBytes(6).toString('base64url')}`;
  readonly #sql: Sql;
  readonly #leaseMs: number;
  readonly #onError: (err: unknown) => void;
  #timer: NodeJS.Timeout | undefined;
  #beating: Promise<void> | undefined;
  #closed = false;

  private constructor(sql: Sql, options: PgConnectionRegistryOptions) {
    this.#sql = sql;
    this.#leaseMs = options.leaseMs ?? 15_000;
    this.#onError = options.onError ?? (() => {});
  }

  /** Registers this process (its first lease) and starts the heartbeat. */
  static async open(sql: Sql, options: PgConnectionRegistryOptions = {}): Promise<PgConnectionRegistry> {
    const registry = new PgConnectionRegistry(sql, options);
    await registry.heartbeat();
    registry.#timer = setInterval(
      () => {
        registry.#beating ??= registry
          .heartbeat()
          .catch((err: unknown) => registry.#onError(err))
          .finally(() => {
            registry.#beating = undefined;
          });
      },
      Math.max(50, Math.floor(registry.#leaseMs / 3)),
    );
    registry.#timer.unref();
    return registry;
  }

  /** Renews this process's lease and frees the slots of processes whose lease ran out. */
  async heartbeat(): Promise<void> {
    if (this.#closed) return;
    const lease = `${this.#leaseMs} milliseconds`;
    await this.#sql.unsafe(
      `INSERT INTO relay_processes (process_id, lease_until) VALUES ($1, clock_timestamp() + $2::interval)
       ON CONFLICT (process_id) DO UPDATE SET lease_until = excluded.lease_until`,
      [this.processId, lease] as never[],
    );
    await this.#sql.unsafe(
      `WITH dead AS (DELETE FROM relay_processes WHERE lease_until < clock_timestamp() RETURNING process_id)
       DELETE FROM ws_slots WHERE process_id IN (SELECT process_id FROM dead)`,
    );
  }

  #slot(connectionId: string): string {
    return `${this.processId}/${connectionId}`;
  }

  async tryAcquire(agent: string, connectionId: string, max: number): Promise<boolean> {
    const slot = this.#slot(connectionId);
    return this.#sql.begin(async (tx) => {
      await tx.unsafe('SELECT pg_advisory_xact_lock($1, hashtext($2))', [LOCKS.slots, agent] as never[]);
      const held = await tx.unsafe<Array<{ connection_id: string }>>(
        `SELECT s.connection_id FROM ws_slots s JOIN relay_processes p ON p.process_id = s.process_id
         WHERE s.agent_key = $1 AND p.lease_until >= clock_timestamp()`,
        [agent] as never[],
        { prepare: true },
      );
      if (held.some((r) => r.connection_id === slot)) return true;
      if (held.length >= max) return false;
      await tx.unsafe(
        'INSERT INTO ws_slots (connection_id, agent_key, process_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING',
        [slot, agent, this.processId] as never[],
      );
      return true;
    }) as Promise<boolean>;
  }

  async release(_agent: string, connectionId: string): Promise<void> {
    await this.#sql.unsafe('DELETE FROM ws_slots WHERE connection_id = $1', [this.#slot(connectionId)] as never[], {
      prepare: true,
    });
  }

  /** Slots `agent` holds in live processes (tests and diagnostics). */
  async count(agent: string): Promise<number> {
    const [row] = await this.#sql.unsafe<Array<{ n: number }>>(
      `SELECT count(*) AS n FROM ws_slots s JOIN relay_processes p ON p.process_id = s.process_id
       WHERE s.agent_key = $1 AND p.lease_until >= clock_timestamp()`,
      [agent] as never[],
    );
    return Number(row?.n ?? 0);
  }

  /** Stops the heartbeat and gives back this process's slots and lease. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    await this.#beating;
    await this.#sql.unsafe('DELETE FROM ws_slots WHERE process_id = $1', [this.processId] as never[]).catch(() => {});
    await this.#sql
      .unsafe('DELETE FROM relay_processes WHERE process_id = $1', [this.processId] as never[])
      .catch(() => {});
  }
}

/** Window of the shared rate limits, and the width of one counter. */
const WINDOW_MS = 60_000;
const BUCKET_MS = 1_000;

export class PgRateLimiter implements RateLimiter {
  readonly limit: number;
  readonly #sql: Sql;
  readonly #scope: string;
  readonly #clock: Clock;

  constructor(sql: Sql, scope: string, limit: number, clock: Clock) {
    this.#sql = sql;
    this.#scope = scope;
    this.limit = limit;
    this.#clock = clock;
  }

  /** Counters of buckets `> this` are in the window at `now`. */
  #floor(now: number): number {
    return Math.floor((now - WINDOW_MS) / BUCKET_MS);
  }

  async peek(key: string): Promise<RateState> {
    const now = this.#clock.now();
    if (this.limit <= 0) return { limit: 0, remaining: 0, reset: Math.ceil((now + WINDOW_MS) / 1000), retryAfter: 0 };
    const [row] = await this.#sql.unsafe<Array<{ n: number | null; oldest: number | null }>>(
      'SELECT sum(count)::bigint AS n, min(bucket) AS oldest FROM rate_counts WHERE scope = $1 AND key = $2 AND bucket > $3',
      [this.#scope, key, this.#floor(now)] as never[],
      { prepare: true },
    );
    const n = Number(row?.n ?? 0);
    const resetMs = row?.oldest == null ? now + WINDOW_MS : (Number(row.oldest) + 1) * BUCKET_MS + WINDOW_MS;
    const full = n >= this.limit;
    return {
      limit: this.limit,
      remaining: Math.max(0, this.limit - n),
      reset: Math.ceil(resetMs / 1000),
      retryAfter: full ? Math.max(1, Math.ceil((resetMs - now) / 1000)) : 0,
    };
  }

  async record(key: string): Promise<void> {
    if (this.limit <= 0) return;
    const bucket = Math.floor(this.#clock.now() / BUCKET_MS);
    await this.#sql.unsafe(
      `INSERT INTO rate_counts (scope, key, bucket, count) VALUES ($1, $2, $3, 1)
       ON CONFLICT (scope, key, bucket) DO UPDATE SET count = rate_counts.count + 1`,
      [this.#scope, key, bucket] as never[],
      { prepare: true },
    );
  }

  async prune(): Promise<void> {
    if (this.limit <= 0) return;
    await this.#sql.unsafe('DELETE FROM rate_counts WHERE scope = $1 AND bucket <= $2', [
      this.#scope,
      this.#floor(this.#clock.now()),
    ] as never[]);
  }
}

/** `createRelay({ rateLimiter })` for windows shared through `sql`. */
export function pgRateLimiter(sql: Sql): RateLimiterFactory {
  return (scope, limit, clock) => new PgRateLimiter(sql, scope, limit, clock);
}
