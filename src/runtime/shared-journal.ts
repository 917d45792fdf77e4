/**
 * A journal shared by a fleet of runners serving one identity, in PostgreSQL (`mrp run --journal
 * postgres://…`; docs/architecture.md §2 "shared journal"). Loaded only when asked for: it is the
 * only module that imports the `postgres` driver (with `mrp fleet`, which reads the same tables).
 *
 * Every message is a row claimed by one runner at a time under a lease:
 * - `received` claims it: `INSERT … ON CONFLICT DO UPDATE … WHERE` the row is not done and its
 *   lease ran out (a takeover) or is this runner's. A message found done elsewhere is
 *   acknowledged and skipped; one held by a live runner is skipped without an ack (its owner acks).
 * - The row keeps the whole message, so a message a dead runner polled (the relay counts it
 *   delivered and will not offer it again) is still here: every heartbeat (a third of the lease)
 *   scans for rows whose lease ran out and takes them over (`recovered` events). Handler starts
 *   are counted in the row, so a taken-over message runs as a redelivery (`ctx.redelivered`) and a
 *   message that keeps killing runners is answered with `handler_crashed` fleet-wide.
 * - `handled` stores the sealed reply (the exact request) only while this runner owns the row:
 *   a runner that lost its lease sends nothing. A takeover of a handled-but-not-replied row sends
 *   the stored request through the outbox, which first checks the thread for it (a reply is never
 *   sent twice, even if the dead runner's send did reach the relay).
 * - Leases of the rows this runner works on are renewed by the heartbeat; a graceful stop ends
 *   them at once so others take over without waiting.
 * - WebSocket slots (`mrp_fleet_slots`, slot 0 and 1): the protocol allows two connections per
 *   agent, so at most two runners hold one (under a lease too); the others poll or wait.
 * - Polls' takes (`mrp_fleet_takes`): a poll marks what it returns delivered, so a runner that died
 *   between the relay's answer and its claims would lose that page. Each poll's take id is
 *   recorded (under the runner's lease) before the poll is sent and deleted once its page is
 *   claimed; a take whose lease ran out (and whose poll is over) is taken over in one statement by
 *   one runner, which lists it on the relay (`status=delivered&take=<id>`, through its own
 *   client: `recoverTakesWith`) and claims what it finds as its own.
 *
 * Times are the injected clock's milliseconds, passed into every statement (never the database's
 * `now()`), so tests drive leases with a manual clock. Writes that fail on the connection are
 * retried with backoff (`unwritable` / `writable` events, as the local journal's).
 */

import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import postgres from '../../vendor/postgres/index.js';
import type { TakeLog } from '../client/poller.js';
import { Backoff } from '../core/backoff.js';
import { type Clock, systemClock, type Timer } from '../core/clock.js';
import { TypedEmitter } from '../core/emitter.js';
import { AbortError, MrpError, UsageError } from '../core/errors.js';
import { TAKE_ID_RE } from '../protocol/constants.js';
import type { Message } from '../protocol/types.js';
import { FLEET_LEASE_MS } from './defaults.js';
import { ExpiringIdSet } from './idset.js';
import type { JournalEntry, JournalEvents, JournaledReply } from './journal.js';
import type { RuntimeJournal, TakeRecoverer } from './journal-port.js';

export const SHARED_JOURNAL_DEFAULTS = {
  leaseMs: FLEET_LEASE_MS,
  /** Rows taken over per heartbeat at most. */
  scanLimit: 64,
  /** Dead runners stay listed (by `mrp fleet`) this long after their last heartbeat. */
  keepDeadRunnersMs: 3_600_000,
  /** WebSocket slots per identity (docs/protocol.md §7: two connections per agent). */
  slots: 2,
  /** Open takes of dead runners taken over per heartbeat at most. */
  takeScanLimit: 16,
  /**
   * How long after its wait a dead runner's poll may still be answered by the relay (a relay that
   * did not notice the lost connection): its take is recovered only after that.
   */
  takeSlackMs: 3000,
} as const;

/**
 * Bump with every change to the tables below (and add the step to `SCHEMA`, idempotent). 2: the
 * runners' own lease (`lease_ms`, NULL in rows written by version 1: the default lease), and
 * `mrp_fleet_takes`.
 */
export const SHARED_JOURNAL_SCHEMA_VERSION = 2;

const SCHEMA = [
  `CREATE TABLE IF NOT EXISTS mrp_fleet_schema (version integer NOT NULL)`,
  `CREATE TABLE IF NOT EXISTS mrp_fleet_runners (
     runner_id text PRIMARY KEY, identity text NOT NULL, host text NOT NULL, pid integer NOT NULL,
     mode text NOT NULL, started_at bigint NOT NULL, heartbeat_at bigint NOT NULL)`,
  `CREATE INDEX IF NOT EXISTS mrp_fleet_runners_identity ON mrp_fleet_runners (identity)`,
  `CREATE TABLE IF NOT EXISTS mrp_fleet_entries (
     identity text NOT NULL, message_id text NOT NULL, message text,
     state text NOT NULL CHECK (state IN ('received', 'handled', 'replied', 'done')),
     owner text, lease_until bigint NOT NULL DEFAULT 0, starts integer NOT NULL DEFAULT 0,
     aborts integer NOT NULL DEFAULT 0, reply text, reply_id text, expires_at bigint NOT NULL,
     received_at bigint NOT NULL, done_at bigint,
     PRIMARY KEY (identity, message_id))`,
  `CREATE INDEX IF NOT EXISTS mrp_fleet_entries_open ON mrp_fleet_entries (identity, lease_until) WHERE state <> 'done'`,
  `CREATE TABLE IF NOT EXISTS mrp_fleet_slots (
     identity text NOT NULL, slot integer NOT NULL, runner_id text NOT NULL, lease_until bigint NOT NULL,
     PRIMARY KEY (identity, slot))`,
  // Version 2.
  `ALTER TABLE mrp_fleet_runners ADD COLUMN IF NOT EXISTS lease_ms integer`,
  `CREATE TABLE IF NOT EXISTS mrp_fleet_takes (
     identity text NOT NULL, take_id text NOT NULL, runner_id text NOT NULL, at bigint NOT NULL,
     wait_s integer NOT NULL, lease_until bigint NOT NULL,
     PRIMARY KEY (identity, take_id))`,
];

const DAY = 86_400_000;

export interface SharedJournalOptions {
  /** `postgres://user:pass@host:port/db` (the password never appears in output). */
  url: string;
  /** The public key the fleet serves. */
  identity: string;
  clock?: Clock;
  /** How long a claim holds without a heartbeat (default 30 s); renewed every third of it. */
  leaseMs?: number;
  /** Default: host-pid-random. */
  runnerId?: string;
  /** What this runner does, as `mrp fleet` shows it (updated by `setMode`). */
  mode?: string;
  /** Acknowledges a message another runner already finished (the runtime never sees it). */
  ack?: (id: string) => void;
  /** Heartbeat on a timer (default true); tests call `tick()` themselves to freeze a runner. */
  heartbeat?: boolean;
  /** Connections in the pool (default 4). */
  maxConnections?: number;
}

/** `postgres host:port/db` without user or password, for banners and errors. */
export function describePostgresUrl(url: string): string {
  try {
    const u = new URL(url);
    const db = u.pathname.replace(/^\//, '') || 'postgres';
    const host = u.host || u.searchParams.get('host') || 'localhost';
    return `postgres ${host}/${db}`;
  } catch {
    return 'postgres (unparsable URL)';
  }
}

/** Whether `value` names a shared journal (`postgres://` or `postgresql://`). */
export function isPostgresUrl(value: string): boolean {
  return /^postgres(ql)?:\/\//i.test(value);
}

type Sql = postgres.Sql<Record<string, never>>;

interface EntryRow {
  message_id: string;
  message: string | null;
  state: 'received' | 'handled' | 'replied' | 'done';
  starts: number;
  aborts: number;
  reply: string | null;
  reply_id: string | null;
  expires_at: string | number;
}

/** A connection failure or a transient server state: worth retrying. Anything else is a bug or bad input. */
function isTransient(err: unknown): boolean {
  const e = err as { code?: unknown; severity?: unknown; errno?: unknown };
  const code = typeof e?.code === 'string' ? e.code : '';
  if (typeof e?.severity === 'string') return /^(08|53|57P|40001|40P01)/.test(code);
  return true;
}

function describe(err: unknown): string {
  const e = err as { code?: unknown; message?: unknown };
  return `${typeof e?.code === 'string' ? `${e.code}: ` : ''}${String(e?.message ?? err)}`;
}

function toEntry(row: EntryRow): JournalEntry | undefined {
  if (row.message === null) return undefined;
  let message: Message;
  let reply: JournaledReply | null | undefined;
  try {
    message = JSON.parse(row.message) as Message;
    reply = row.reply === null ? undefined : (JSON.parse(row.reply) as JournaledReply | null);
  } catch {
    return undefined;
  }
  const entry: JournalEntry = {
    id: row.message_id,
    message,
    state: row.state === 'done' ? 'replied' : row.state,
    expiresAt: Number(row.expires_at),
    starts: Number(row.starts),
    aborts: Number(row.aborts),
  };
  if (row.starts > 0) entry.started = true;
  if (reply !== undefined) entry.reply = reply;
  if (row.reply_id !== null) entry.replyId = row.reply_id;
  return entry;
}

export class SharedJournal extends TypedEmitter<JournalEvents> implements RuntimeJournal {
  readonly runnerId: string;
  readonly identity: string;
  readonly leaseMs: number;
  /** Where it lives, for people (no credentials). */
  readonly location: string;
  readonly #sql: Sql;
  readonly #clock: Clock;
  readonly #ack: (id: string) => void;
  /** Rows this runner holds and works on (their leases are renewed). */
  readonly #live = new Map<string, JournalEntry>();
  readonly #done = new ExpiringIdSet(1_000_000);
  /** Every write in flight (close waits for them). */
  readonly #pending = new Set<Promise<unknown>>();
  /** Writes someone waits for (claims, handled): what `durable()` waits for. */
  readonly #awaited = new Set<Promise<unknown>>();
  /** Heartbeats on their own connection: never queued behind message writes (a lease must not lapse under load). */
  readonly #hb: Sql;
  readonly #retry = new Backoff({ firstMinMs: 100, firstMaxMs: 400, maxMs: 5000 });
  #recovered: JournalEntry[] | undefined = [];
  #adopt: JournalEntry[] = [];
  #heartbeat: Timer | undefined;
  #ticking: Promise<void> | undefined;
  #failing: MrpError | undefined;
  #mode: string;
  #slot: number | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;
  /** This runner's polls in flight (take ids): recorded, their leases renewed by the heartbeat. */
  readonly #openTakes = new Set<string>();
  /** Dead runners' takes this runner took over and is listing on the relay (renewed too). */
  readonly #recoveringTakes = new Set<string>();
  /** How this runner lists a take on the relay; without it, no take is taken over. */
  #recoverTake: TakeRecoverer | undefined;

  private constructor(sql: Sql, options: SharedJournalOptions) {
    super();
    this.#sql = sql;
    this.#hb = connect(options.url, 1);
    this.identity = options.identity;
    this.#clock = options.clock ?? systemClock;
    this.leaseMs = options.leaseMs ?? SHARED_JOURNAL_DEFAULTS.leaseMs;
    this.runnerId = options.runnerId ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
    this.#mode = options.mode ?? 'starting';
    this.#ack = options.ack ?? (() => undefined);
    this.location = describePostgresUrl(options.url);
  }

  /**
   * Connects, creates the tables if needed, registers this runner and takes over what dead runners
   * left (handed out by `takeRecovered`). Throws `journal_unreachable` when the database cannot be
   * reached or used.
   */
  static async open(options: SharedJournalOptions): Promise<SharedJournal> {
    const leaseMs = options.leaseMs ?? SHARED_JOURNAL_DEFAULTS.leaseMs;
    if (!Number.isInteger(leaseMs) || leaseMs < 300)
      throw new RangeError(`leaseMs must be a whole number ≥ 300 (got ${leaseMs})`);
    const sql = connect(options.url, options.maxConnections ?? 8);
    const journal = new SharedJournal(sql, options);
    try {
      await migrate(sql);
      const now = journal.#clock.now();
      // Its own lease with the row: `mrp fleet` marks a runner gone after *its* lease.
      await sql`INSERT INTO mrp_fleet_runners (runner_id, identity, host, pid, mode, started_at, heartbeat_at, lease_ms)
        VALUES (${journal.runnerId}, ${journal.identity}, ${hostname()}, ${process.pid}, ${journal.#mode}, ${now}, ${now}, ${journal.leaseMs})
        ON CONFLICT (runner_id) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at, mode = EXCLUDED.mode, lease_ms = EXCLUDED.lease_ms`;
      journal.#recovered!.push(...(await journal.#scan()));
    } catch (err) {
      await sql.end({ timeout: 1 }).catch(() => undefined);
      await journal.#hb.end({ timeout: 1 }).catch(() => undefined);
      throw unreachable(options.url, err);
    }
    if (options.heartbeat !== false) {
      const every = Math.max(100, Math.floor(journal.leaseMs / 3));
      journal.#heartbeat = journal.#clock.setInterval(() => void journal.tick(), every);
      journal.#heartbeat.unref();
    }
    return journal;
  }

  get writable(): boolean {
    return this.#failing === undefined;
  }

  /** The WebSocket slot this runner holds, if any. */
  get slot(): number | undefined {
    return this.#slot;
  }

  get unfinishedCount(): number {
    return this.#live.size;
  }

  takeRecovered(): JournalEntry[] {
    const out = this.#recovered ?? [];
    this.#recovered = undefined;
    for (const e of out) this.#live.set(e.id, e);
    return out;
  }

  get(id: string): JournalEntry | undefined {
    return this.#live.get(id);
  }

  isDone(id: string): boolean {
    return this.#done.has(id, this.#clock.now());
  }

  received(message: Message): Promise<void> {
    const id = message.message_id;
    const parsed = Date.parse(message.expires_at);
    const entry: JournalEntry = {
      id,
      message,
      state: 'received',
      expiresAt: Number.isFinite(parsed) ? parsed : this.#clock.now() + 30 * DAY,
    };
    this.#live.set(id, entry);
    return this.#track(this.#claims.add({ id, text: JSON.stringify(message), expiresAt: entry.expiresAt })).then(
      (claim) => {
        if (claim === 'done' || claim === 'held') {
          this.#drop(id, entry);
          if (claim === 'done') {
            this.#remember(id, entry.expiresAt);
            this.#ack(id);
          }
          throw new AbortError(
            claim === 'done'
              ? `message ${id} was already handled by another runner`
              : `message ${id} is being handled by another runner`,
          );
        }
        if (claim.state !== 'received') {
          // Its handler finished on a runner that died: resumed (reply checked, then sent), not run again.
          this.#drop(id, entry);
          const resumed = toEntry(claim);
          if (resumed) this.#adopt.push(resumed);
          throw new AbortError(`message ${id} was handled by a runner that stopped; its reply is resumed`);
        }
        entry.starts = claim.starts;
        entry.aborts = claim.aborts;
        if (claim.starts > 0) entry.started = true;
      },
      (err: unknown) => {
        this.#drop(id, entry);
        throw err;
      },
    );
  }

  started(id: string): Promise<void> {
    const e = this.#live.get(id);
    if (e) Object.assign(e, { started: true, starts: (e.starts ?? 0) + 1 });
    // Awaited by the runtime before the handler runs: a start the runner died before sending was
    // not counted, so a handler that killed runners at once ran again and again, never as a
    // redelivery, never reaching --max-crashes.
    return this.#track(this.#starts.add(id), false);
  }

  aborted(id: string): void {
    const e = this.#live.get(id);
    if (e) e.aborts = (e.aborts ?? 0) + 1;
    this.#live.delete(id);
    this.#fencedAt.delete(id);
    // Stopped on purpose: another runner may take it at once.
    this.#background(
      () => this.#sql`UPDATE mrp_fleet_entries SET aborts = aborts + 1, lease_until = 0
      WHERE identity = ${this.identity} AND message_id = ${id} AND owner = ${this.runnerId}`,
    );
  }

  handled(id: string, reply: JournaledReply | null): Promise<void> {
    const e = this.#live.get(id);
    if (e) Object.assign(e, { state: 'handled', reply });
    return this.#track(this.#handleds.add({ id, text: JSON.stringify(reply) })).then((owned) => {
      if (!owned) {
        // The lease ran out and another runner took the message: it answers, this one must not.
        this.#live.delete(id);
        throw new AbortError(`message ${id} was taken over by another runner`);
      }
    });
  }

  replied(id: string, replyId: string): void {
    const e = this.#live.get(id);
    if (e) Object.assign(e, { state: 'replied', replyId });
    // Usually followed by `done` in the same turn: then only the `done` record is written (with the reply id).
    this.#replieds.set(id, replyId);
    this.#schedule();
  }

  done(id: string): void {
    const e = this.#live.get(id);
    this.#live.delete(id);
    const now = this.#clock.now();
    const expiresAt = e?.expiresAt ?? now + 30 * DAY;
    this.#remember(id, expiresAt);
    this.#fencedAt.delete(id);
    this.#dones.set(id, { expiresAt, replyId: this.#replieds.get(id) ?? e?.replyId ?? null });
    this.#replieds.delete(id);
    this.#schedule();
  }

  /**
   * Where one poller notes its polls (`TakeLog`): each take is recorded in the database before its
   * poll is sent (`begin` resolves then) and deleted once its page is claimed (`end`).
   */
  pollTakes(): TakeLog {
    let open: string | undefined;
    return {
      begin: (at, waitSeconds, id) => {
        open = id;
        return this.takeBegun(at, waitSeconds, id);
      },
      end: () => {
        if (open !== undefined) this.takeEnded(open);
        open = undefined;
      },
    };
  }

  /**
   * A poll with take `id` is about to be sent: resolves once the take is recorded under this
   * runner's lease (where a runner taking over would find it); rejects when the journal closed.
   */
  takeBegun(at: number, waitSeconds: number, id: string): Promise<void> {
    this.#openTakes.add(id);
    const wait = Math.max(0, Math.min(Math.floor(waitSeconds), 3600));
    return this.#write(
      () => this.#sql`INSERT INTO mrp_fleet_takes (identity, take_id, runner_id, at, wait_s, lease_until)
        VALUES (${this.identity}, ${id}, ${this.runnerId}, ${at}, ${wait}, ${this.#clock.now() + this.leaseMs})
        ON CONFLICT (identity, take_id) DO NOTHING`,
    ).then(
      () => undefined,
      (err: unknown) => {
        this.#openTakes.delete(id);
        throw err;
      },
    );
  }

  /** The poll's page is claimed (or it took nothing): its take is deleted (no one needs to look at it). */
  takeEnded(id: string): void {
    if (!this.#openTakes.delete(id) || this.#closed) return;
    this.#background(
      () => this.#sql`DELETE FROM mrp_fleet_takes
        WHERE identity = ${this.identity} AND take_id = ${id} AND runner_id = ${this.runnerId}`,
    );
  }

  /**
   * How this runner lists a take on the relay (`status=delivered&take=<id>`, through its own
   * client; any runner of the identity can, whatever its mode). Set, the heartbeat also takes over
   * the open takes of runners whose lease ran out and claims what they took as this runner's own.
   */
  recoverTakesWith(recover: TakeRecoverer): void {
    this.#recoverTake = recover;
  }

  /**
   * Takes over (one statement, so one runner only) the open takes whose lease ran out and whose
   * poll is over (its wait plus `takeSlackMs`: a relay that did not notice the lost connection
   * may still answer it until then).
   */
  async #scanTakes(): Promise<Array<{ id: string; at: number; waitSeconds: number }>> {
    const now = this.#clock.now();
    const rows = await this.#hb<Array<{ take_id: string; at: string | number; wait_s: number }>>`
      UPDATE mrp_fleet_takes SET runner_id = ${this.runnerId}, lease_until = ${now + this.leaseMs}
      WHERE identity = ${this.identity} AND take_id IN (
        SELECT take_id FROM mrp_fleet_takes
        WHERE identity = ${this.identity} AND lease_until < ${now}
          AND at + wait_s * 1000 + ${SHARED_JOURNAL_DEFAULTS.takeSlackMs} < ${now}
        ORDER BY at LIMIT ${SHARED_JOURNAL_DEFAULTS.takeScanLimit} FOR UPDATE SKIP LOCKED)
      AND lease_until < ${now}
      RETURNING take_id, at, wait_s`;
    return rows
      .filter((r) => !this.#recoveringTakes.has(r.take_id))
      .map((r) => ({ id: r.take_id, at: Number(r.at), waitSeconds: Number(r.wait_s) }));
  }

  /**
   * Lists a taken-over take on the relay and claims what it took (as `received` would: a message
   * another runner holds or finished is left alone), handing the claimed entries to the runtime.
   * Deleted once listed; when the relay could not be asked, its lease is ended so that it is
   * tried again at a later heartbeat (by any runner).
   */
  async #recoverOpenTake(take: { id: string; at: number; waitSeconds: number }): Promise<void> {
    const recover = this.#recoverTake;
    if (!recover) return;
    this.#recoveringTakes.add(take.id);
    let listed = false;
    try {
      // Rows come from every runner with access to the database: a malformed id lists nothing.
      listed = !TAKE_ID_RE.test(take.id) || (await recover(take, (messages) => this.#claimPolled(messages)));
    } catch {
      listed = false;
    } finally {
      this.#recoveringTakes.delete(take.id);
    }
    if (this.#closed) return;
    this.#background(() =>
      listed
        ? this.#sql`DELETE FROM mrp_fleet_takes
            WHERE identity = ${this.identity} AND take_id = ${take.id} AND runner_id = ${this.runnerId}`
        : this.#sql`UPDATE mrp_fleet_takes SET lease_until = 0
            WHERE identity = ${this.identity} AND take_id = ${take.id} AND runner_id = ${this.runnerId}`,
    );
  }

  /** Claims messages found in a dead runner's take and hands those now this runner's to the runtime. */
  async #claimPolled(messages: Message[]): Promise<void> {
    const claims = await Promise.all(
      messages.map((message) => {
        const parsed = Date.parse(message.expires_at);
        return this.#track(
          this.#claims.add({
            id: message.message_id,
            text: JSON.stringify(message),
            expiresAt: Number.isFinite(parsed) ? parsed : this.#clock.now() + 30 * DAY,
          }),
        );
      }),
    );
    const entries: JournalEntry[] = [];
    for (const claim of claims) {
      if (claim === 'done' || claim === 'held') continue;
      const entry = toEntry(claim);
      if (!entry || this.#live.has(entry.id)) continue;
      this.#live.set(entry.id, entry);
      entries.push(entry);
    }
    if (entries.length > 0 && !this.#closed) this.emit('recovered', entries);
  }

  /**
   * The fence before a reply is sent (docs/architecture.md §2 "shared journal", fencing): one
   * statement checks that this runner still owns the row and extends its lease to `t0 + lease`
   * (`t0`: the clock just before the statement). Nobody can take the row over before `t0 + lease`,
   * so a send that finishes — or is given up as "outcome unknown" — by `t0 + lease - margin` is
   * over before any taker starts; the `margin` (a third of the lease) leaves a request already
   * written to the relay time to land before the taker's thread check. Resolves with the
   * milliseconds the send may take, or `undefined` when the row is no longer this runner's (the
   * reply must not be sent: the taker answers). Fences made in one event-loop turn share one
   * statement. A fence that came back too late to leave a useful window is taken again.
   */
  async fence(id: string): Promise<number | undefined> {
    // The statement that journaled the reply checked ownership and extended the lease: when that
    // was recent enough, it is this send's fence (one round trip less per message).
    const journaledAt = this.#fencedAt.get(id);
    this.#fencedAt.delete(id);
    if (journaledAt !== undefined) {
      const windowMs = journaledAt + this.leaseMs - this.sendMarginMs - this.#clock.now();
      if (windowMs >= this.minSendWindowMs) return windowMs;
    }
    for (let attempt = 0; attempt < 3; attempt++) {
      const t0 = await this.#fenceOnce(id);
      if (t0 === undefined) {
        this.#live.delete(id);
        return undefined;
      }
      const windowMs = t0 + this.leaseMs - this.sendMarginMs - this.#clock.now();
      if (windowMs >= this.minSendWindowMs) return windowMs;
    }
    throw new MrpError(
      'network',
      'journal_unwritable',
      `the shared journal (${this.location}) answers too slowly to fence a reply within its lease; retrying`,
    );
  }

  /** Milliseconds of a lease kept free of sends after a fence (see `fence`). */
  get sendMarginMs(): number {
    return Math.floor(this.leaseMs / 3);
  }

  /** The shortest send window a fence hands out (shorter: fenced again). */
  get minSendWindowMs(): number {
    return Math.min(2000, Math.floor(this.leaseMs / 6));
  }

  /** When the statement that journaled a reply checked and extended its lease (a first fence). */
  readonly #fencedAt = new Map<string, number>();

  /** The clock time the lease of `id` was verified and extended from, or undefined when it is not this runner's. */
  #fenceOnce(id: string): Promise<number | undefined> {
    return this.#fences.add(id);
  }

  readonly #fences = new TurnBatch<string, number | undefined>((ids) =>
    this.#write(async () => {
      const t0 = this.#clock.now();
      const rows = await this.#sql<
        Array<{ message_id: string }>
      >`UPDATE mrp_fleet_entries SET lease_until = GREATEST(lease_until, ${t0 + this.leaseMs})
        WHERE identity = ${this.identity} AND owner = ${this.runnerId} AND state <> 'done' AND message_id = ANY(${[...new Set(ids)]}::text[])
        RETURNING message_id`;
      const owned = new Set(rows.map((r) => r.message_id));
      return ids.map((id) => (owned.has(id) ? t0 : undefined));
    }),
  );

  // ── Batching: the records of one event-loop turn go out as one statement per kind ──────────

  readonly #claims = new TurnBatch<{ id: string; text: string; expiresAt: number }, EntryRow | 'done' | 'held'>(
    (items) => this.#write(() => this.#claimAll(items)),
  );
  readonly #starts = new TurnBatch<string, void>(
    (ids) =>
      this.#write(async () => {
        const counts = new Map<string, number>();
        for (const id of ids) counts.set(id, (counts.get(id) ?? 0) + 1);
        await this.#sql`UPDATE mrp_fleet_entries e SET starts = e.starts + v.n
        FROM unnest(${[...counts.keys()]}::text[], ${[...counts.values()]}::int[]) AS v(id, n)
        WHERE e.identity = ${this.identity} AND e.message_id = v.id AND e.owner = ${this.runnerId}`;
        return ids.map(() => undefined);
      }, false),
    // A handler start is what counts crashes (`--max-crashes`): it leaves before the handler's
    // first await, not a turn later, and never waits for other batches.
    8,
    queueMicrotask,
  );
  readonly #handleds = new TurnBatch<{ id: string; text: string }, boolean>((items) =>
    this.#write(async () => {
      // Owned and extended in one statement: this is also the first fence of the reply (see `fence`).
      const t0 = this.#clock.now();
      const rows = await this.#sql<
        Array<{ message_id: string }>
      >`UPDATE mrp_fleet_entries e SET state = 'handled', reply = v.reply,
          lease_until = GREATEST(e.lease_until, ${t0 + this.leaseMs})
        FROM unnest(${items.map((i) => i.id)}::text[], ${items.map((i) => i.text)}::text[]) AS v(id, reply)
        WHERE e.identity = ${this.identity} AND e.message_id = v.id AND e.owner = ${this.runnerId} AND e.state = 'received'
        RETURNING e.message_id`;
      const owned = new Set(rows.map((r) => r.message_id));
      for (const id of owned) this.#fencedAt.set(id, t0);
      return items.map((i) => owned.has(i.id));
    }),
  );
  /** `replied` / `done` records of this turn (written by `#flushFinished`, nobody waits for them). */
  readonly #replieds = new Map<string, string>();
  readonly #dones = new Map<string, { expiresAt: number; replyId: string | null }>();
  #finishScheduled = false;

  #schedule(): void {
    if (this.#finishScheduled) return;
    this.#finishScheduled = true;
    setImmediate(() => {
      this.#finishScheduled = false;
      this.#flushFinished();
    });
  }

  #flushFinished(): void {
    const replied = [...this.#replieds];
    const done = [...this.#dones];
    this.#replieds.clear();
    this.#dones.clear();
    if (replied.length > 0) {
      this.#background(
        () => this.#sql`UPDATE mrp_fleet_entries e SET state = 'replied', reply_id = v.reply_id
        FROM unnest(${replied.map((r) => r[0])}::text[], ${replied.map((r) => r[1])}::text[]) AS v(id, reply_id)
        WHERE e.identity = ${this.identity} AND e.message_id = v.id AND e.state IN ('received', 'handled')`,
      );
    }
    if (done.length > 0) {
      const now = this.#clock.now();
      this.#background(
        () => this.#sql`
        INSERT INTO mrp_fleet_entries (identity, message_id, state, owner, lease_until, expires_at, received_at, done_at, reply_id)
        SELECT ${this.identity}, v.id, 'done', ${this.runnerId}, 0, v.expires_at, ${now}, ${now}, v.reply_id
        FROM unnest(${done.map((d) => d[0])}::text[], ${done.map((d) => d[1].expiresAt)}::bigint[], ${done.map((d) => d[1].replyId)}::text[]) AS v(id, expires_at, reply_id)
        ON CONFLICT (identity, message_id) DO UPDATE SET state = 'done', done_at = EXCLUDED.done_at, lease_until = 0,
          reply_id = COALESCE(EXCLUDED.reply_id, mrp_fleet_entries.reply_id)`,
      );
    }
  }

  /**
   * Claims many messages in one statement (a multi-row `INSERT … ON CONFLICT DO UPDATE … WHERE`);
   * those not claimed are looked up in a second one (done elsewhere, or held by a live runner).
   */
  async #claimAll(
    items: Array<{ id: string; text: string; expiresAt: number }>,
  ): Promise<Array<EntryRow | 'done' | 'held'>> {
    const now = this.#clock.now();
    const unique = [...new Map(items.map((i) => [i.id, i])).values()];
    const rows = await this.#sql<EntryRow[]>`
      INSERT INTO mrp_fleet_entries (identity, message_id, message, state, owner, lease_until, expires_at, received_at)
      SELECT ${this.identity}, v.id, v.message, 'received', ${this.runnerId}, ${now + this.leaseMs}, v.expires_at, ${now}
      FROM unnest(${unique.map((i) => i.id)}::text[], ${unique.map((i) => i.text)}::text[], ${unique.map((i) => i.expiresAt)}::bigint[]) AS v(id, message, expires_at)
      ON CONFLICT (identity, message_id) DO UPDATE SET owner = EXCLUDED.owner, lease_until = EXCLUDED.lease_until,
        message = COALESCE(mrp_fleet_entries.message, EXCLUDED.message)
      WHERE mrp_fleet_entries.state <> 'done'
        AND (mrp_fleet_entries.owner = EXCLUDED.owner OR mrp_fleet_entries.owner IS NULL OR mrp_fleet_entries.lease_until < ${now})
      RETURNING message_id, message, state, starts, aborts, reply, reply_id, expires_at`;
    const claimed = new Map(rows.map((r) => [r.message_id, r]));
    const missing = unique.filter((i) => !claimed.has(i.id)).map((i) => i.id);
    const states = new Map<string, string>();
    if (missing.length > 0) {
      const found = await this.#sql<Array<{ message_id: string; state: string }>>`
        SELECT message_id, state FROM mrp_fleet_entries WHERE identity = ${this.identity} AND message_id = ANY(${missing}::text[])`;
      for (const r of found) states.set(r.message_id, r.state);
    }
    return items.map((i) => claimed.get(i.id) ?? (states.get(i.id) === 'done' ? 'done' : 'held'));
  }

  durable(): Promise<void> {
    if (this.#closed) return Promise.reject(new AbortError('the journal is closed'));
    if (this.#awaited.size === 0) return Promise.resolve();
    return Promise.allSettled([...this.#awaited]).then(() => undefined);
  }

  flush(): void {
    // Every record is sent as it is made.
  }

  #remember(id: string, expiresAt: number): void {
    const now = this.#clock.now();
    this.#done.add(id, Math.max(expiresAt, now) + 3_600_000, now);
  }

  #drop(id: string, entry: JournalEntry): void {
    if (this.#live.get(id) === entry) this.#live.delete(id);
  }

  /** A batched record, tracked from the moment it is made (for `durable()` and `close()`). */
  #track<T>(p: Promise<T>, awaited = true): Promise<T> {
    this.#pending.add(p);
    if (awaited) this.#awaited.add(p);
    const untrack = (): void => {
      this.#pending.delete(p);
      this.#awaited.delete(p);
    };
    p.then(untrack, untrack);
    return p;
  }

  /** Runs a statement, retrying while the database is unreachable; tracked for `durable()`. */
  #write<T>(query: () => Promise<T>, awaited = true): Promise<T> {
    if (this.#closed) return Promise.reject(new AbortError('the journal is closed'));
    return this.#track(this.#retrying(query), awaited);
  }

  /** A record nobody waits for: a failure that is not transient is reported, never thrown. */
  #background(query: () => Promise<unknown>): void {
    this.#write(query, false).catch(() => undefined);
  }

  async #retrying<T>(query: () => Promise<T>): Promise<T> {
    for (;;) {
      try {
        const result = await query();
        this.#healthy();
        return result;
      } catch (err) {
        if (this.#closed || !isTransient(err)) throw err;
        const retryInMs = this.#retry.next();
        this.#fail(err, retryInMs);
        await new Promise<void>((resolve) => this.#clock.setTimeout(resolve, retryInMs));
        if (this.#closed) throw new AbortError('the journal closed before this record could be written');
      }
    }
  }

  #fail(err: unknown, retryInMs: number): void {
    const first = this.#failing === undefined;
    this.#failing = new MrpError(
      'internal',
      'journal_unwritable',
      `cannot write the shared journal (${this.location}: ${describe(err)}); retrying`,
      {
        cause: err,
        hint: 'check that the database is up and reachable; nothing is lost while it retries',
      },
    );
    if (first) this.emit('unwritable', { error: this.#failing, retryInMs, pendingBytes: 0 });
  }

  #healthy(): void {
    if (!this.#failing) return;
    this.#failing = undefined;
    this.#retry.reset();
    this.emit('writable');
  }

  /** Takes over up to `scanLimit` rows whose lease ran out, oldest first. */
  async #scan(): Promise<JournalEntry[]> {
    const now = this.#clock.now();
    // On the heartbeat's connection: a scan queued behind message writes would hold up heartbeats.
    const rows = await this.#hb<EntryRow[]>`
      UPDATE mrp_fleet_entries SET owner = ${this.runnerId}, lease_until = ${now + this.leaseMs}
      WHERE identity = ${this.identity} AND message_id IN (
        SELECT message_id FROM mrp_fleet_entries
        WHERE identity = ${this.identity} AND state <> 'done' AND lease_until < ${now} AND message IS NOT NULL
        ORDER BY received_at LIMIT ${SHARED_JOURNAL_DEFAULTS.scanLimit} FOR UPDATE SKIP LOCKED)
      AND state <> 'done' AND lease_until < ${now}
      RETURNING message_id, message, state, starts, aborts, reply, reply_id, expires_at`;
    const out: JournalEntry[] = [];
    for (const row of rows) {
      const entry = toEntry(row);
      if (entry && !this.#live.has(entry.id)) out.push(entry);
    }
    return out;
  }

  /**
   * One heartbeat: this runner is alive, its leases (rows and slot) are renewed, rows whose lease
   * ran out are taken over and handed to the runtime. Exposed for tests (which drive a manual clock).
   */
  tick(): Promise<void> {
    this.#ticking ??= this.#tick().finally(() => (this.#ticking = undefined));
    return this.#ticking;
  }

  async #tick(): Promise<void> {
    if (this.#closed) return;
    const now = this.#clock.now();
    const until = now + this.leaseMs;
    try {
      await this
        .#hb`UPDATE mrp_fleet_runners SET heartbeat_at = ${now}, mode = ${this.#mode} WHERE runner_id = ${this.runnerId}`;
      const ids = [...this.#live.keys()];
      if (ids.length > 0) {
        const kept = await this.#hb<Array<{ message_id: string }>>`UPDATE mrp_fleet_entries SET lease_until = ${until}
          WHERE identity = ${this.identity} AND owner = ${this.runnerId} AND message_id = ANY(${ids})
          RETURNING message_id`;
        // Rows another runner took over (this one stalled past its lease) are no longer this
        // runner's: `get` says so, and a reply still to be sent is checked against the thread first.
        const still = new Set(kept.map((r) => r.message_id));
        for (const id of ids) if (!still.has(id)) this.#live.delete(id);
      }
      const takes = [...this.#openTakes, ...this.#recoveringTakes];
      if (takes.length > 0) {
        await this.#hb`UPDATE mrp_fleet_takes SET lease_until = ${until}
          WHERE identity = ${this.identity} AND runner_id = ${this.runnerId} AND take_id = ANY(${takes}::text[])`;
      }
      if (this.#slot !== undefined) {
        const kept = await this.#hb`UPDATE mrp_fleet_slots SET lease_until = ${until}
          WHERE identity = ${this.identity} AND slot = ${this.#slot} AND runner_id = ${this.runnerId} RETURNING 1 AS ok`;
        if (kept.length === 0) this.#slot = undefined;
      }
      await this
        .#hb`DELETE FROM mrp_fleet_entries WHERE identity = ${this.identity} AND state = 'done' AND expires_at + 3600000 < ${now}`;
      await this
        .#hb`DELETE FROM mrp_fleet_runners WHERE identity = ${this.identity} AND heartbeat_at < ${now - SHARED_JOURNAL_DEFAULTS.keepDeadRunnersMs}`;
      this.#healthy();
      // Until the runtime has taken what was recovered at start, nothing more is taken over.
      if (this.#recovered !== undefined || this.#closed || this.listenerCount('recovered') === 0) return;
      const entries = [...this.#adopt.splice(0), ...(await this.#scan())];
      if (entries.length > 0) {
        for (const e of entries) this.#live.set(e.id, e);
        this.emit('recovered', entries);
      }
      // Dead runners' polls: listed on the relay outside the heartbeat (which must not wait for it).
      if (this.#recoverTake && !this.#closed)
        for (const take of await this.#scanTakes()) void this.#recoverOpenTake(take);
    } catch (err) {
      if (this.#closed) return;
      if (isTransient(err)) this.#fail(err, Math.floor(this.leaseMs / 3));
      else
        this.emit('unwritable', {
          error: unreachable(this.location, err),
          retryInMs: Math.floor(this.leaseMs / 3),
          pendingBytes: 0,
        });
    }
  }

  /** What the runtime skipped from a `recovered` hand-over (already working on it): not renewed. */
  skipped(id: string): void {
    this.#live.delete(id);
  }

  /** Records what this runner does, for `mrp fleet`. */
  setMode(mode: string): void {
    this.#mode = mode;
  }

  /** Takes a free WebSocket slot (or one whose lease ran out); its number, or undefined when both are held. */
  async acquireSlot(): Promise<number | undefined> {
    if (this.#slot !== undefined) return this.#slot;
    const now = this.#clock.now();
    for (let slot = 0; slot < SHARED_JOURNAL_DEFAULTS.slots; slot++) {
      const rows = await this.#sql`
        INSERT INTO mrp_fleet_slots (identity, slot, runner_id, lease_until)
        VALUES (${this.identity}, ${slot}, ${this.runnerId}, ${now + this.leaseMs})
        ON CONFLICT (identity, slot) DO UPDATE SET runner_id = EXCLUDED.runner_id, lease_until = EXCLUDED.lease_until
        WHERE mrp_fleet_slots.lease_until < ${now} OR mrp_fleet_slots.runner_id = EXCLUDED.runner_id
        RETURNING slot`;
      if (rows.length > 0) {
        this.#slot = slot;
        return slot;
      }
    }
    return undefined;
  }

  /** Waits (a heartbeat at a time) until a slot is free and takes it. Rejects when `signal` aborts or the journal closes. */
  async waitForSlot(signal?: AbortSignal): Promise<number> {
    const every = Math.max(100, Math.floor(this.leaseMs / 3));
    for (;;) {
      if (this.#closed) throw new AbortError('the journal closed');
      if (signal?.aborted) throw new AbortError('stopped while waiting for a WebSocket slot');
      const slot = await this.acquireSlot().catch((err: unknown) => {
        if (!isTransient(err)) throw err;
        return undefined;
      });
      if (slot !== undefined) return slot;
      // The pause ends early when `signal` aborts (a standby stopped with SIGTERM exits at once).
      await new Promise<void>((resolve) => {
        const done = (): void => {
          timer.cancel();
          signal?.removeEventListener('abort', done);
          resolve();
        };
        const timer = this.#clock.setTimeout(done, every);
        signal?.addEventListener('abort', done, { once: true });
      });
    }
  }

  /**
   * Ends the leases of what this runner still holds (others take over at once), gives back its
   * slot, removes its row and disconnects. Records still being written get a few seconds.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#heartbeat?.cancel();
    await this.#ticking?.catch(() => undefined);
    let timer: Timer | undefined;
    const late = new Promise<void>((resolve) => (timer = this.#clock.setTimeout(resolve, 5000)));
    await Promise.race([Promise.allSettled([...this.#pending]), late]);
    timer?.cancel();
    this.#flushFinished();
    let timer2: Timer | undefined;
    await Promise.race([
      Promise.allSettled([...this.#pending]),
      new Promise<void>((resolve) => (timer2 = this.#clock.setTimeout(resolve, 2000))),
    ]);
    timer2?.cancel(); // left running it would hold the process 2 s after the stop
    this.#closed = true;
    try {
      await this.#sql`UPDATE mrp_fleet_entries SET lease_until = 0
        WHERE identity = ${this.identity} AND owner = ${this.runnerId} AND state <> 'done'`;
      await this.#sql`DELETE FROM mrp_fleet_slots WHERE identity = ${this.identity} AND runner_id = ${this.runnerId}`;
      // A take still open (its poll could not be settled) is looked at by another runner at once.
      await this
        .#sql`UPDATE mrp_fleet_takes SET lease_until = 0 WHERE identity = ${this.identity} AND runner_id = ${this.runnerId}`;
      await this.#sql`DELETE FROM mrp_fleet_runners WHERE runner_id = ${this.runnerId}`;
    } catch {
      // Leases and the slot run out by themselves; the row shows a stale heartbeat.
    } finally {
      this.#slot = undefined;
      await this.#sql.end({ timeout: 2 }).catch(() => undefined);
      await this.#hb.end({ timeout: 1 }).catch(() => undefined);
    }
  }
}

/**
 * Group commit: the calls made while earlier batches of the same kind are in flight (at most
 * `inFlight` at a time), or in one event-loop turn, go out as one batch (`run` answers item by
 * item, in order); a failure rejects every call of the batch. Under load batches grow by
 * themselves; when idle a call waits only for the end of its turn.
 */
class TurnBatch<I, R> {
  readonly #run: (items: I[]) => Promise<R[]>;
  readonly #inFlight: number;
  #items: Array<{ item: I; resolve: (r: R) => void; reject: (err: unknown) => void }> = [];
  #running = 0;
  #scheduled = false;

  readonly #soon: (fn: () => void) => void;

  /** `soon`: when a batch goes out (default: the end of the event-loop turn). */
  constructor(run: (items: I[]) => Promise<R[]>, inFlight = 2, soon: (fn: () => void) => void = setImmediate) {
    this.#run = run;
    this.#inFlight = inFlight;
    this.#soon = soon;
  }

  add(item: I): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.#items.push({ item, resolve, reject });
      this.#kick();
    });
  }

  #kick(): void {
    if (this.#scheduled || this.#running >= this.#inFlight || this.#items.length === 0) return;
    this.#scheduled = true;
    this.#soon(() => {
      this.#scheduled = false;
      this.#flush();
    });
  }

  #flush(): void {
    if (this.#running >= this.#inFlight || this.#items.length === 0) return;
    const batch = this.#items.splice(0, 1000);
    this.#running++;
    this.#run(batch.map((b) => b.item))
      .then(
        (results) => {
          for (const [i, b] of batch.entries()) b.resolve(results[i] as R);
        },
        (err: unknown) => {
          for (const b of batch) b.reject(err);
        },
      )
      .finally(() => {
        this.#running--;
        this.#kick();
      });
  }
}

function connect(url: string, max: number): Sql {
  try {
    return postgres(url, {
      max,
      onnotice: () => undefined,
      connect_timeout: 10,
      idle_timeout: 60,
    }) as unknown as Sql;
  } catch {
    // The driver parses the URL synchronously ("Invalid URL", "URI malformed"): say which setting
    // and how to fix it. The URL is not repeated: an unparsable one cannot be redacted with certainty.
    throw new UsageError('--journal: not a valid postgres:// URL', {
      code: 'invalid_argument',
      hint: 'pass --journal postgres://user:password@host:port/database (percent-encode special characters in the password, e.g. %40 for @)',
    });
  }
}

/** Creates the tables (once per database; concurrent runners serialise on an advisory lock). */
async function migrate(sql: Sql): Promise<void> {
  // Up to date already: nothing to create, so a runner whose user may only read and write the
  // tables (the owner created them) starts too. CREATE … IF NOT EXISTS needs the right to create
  // even when the table exists.
  const [found] = await sql<Array<{ t: string | null }>>`SELECT to_regclass('mrp_fleet_schema')::text AS t`;
  if (found?.t) {
    const [row] = await sql<Array<{ version: number | null }>>`SELECT max(version) AS version FROM mrp_fleet_schema`;
    if (Number(row?.version ?? 0) === SHARED_JOURNAL_SCHEMA_VERSION) return;
  }
  await sql.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(727274001)`;
    for (const statement of SCHEMA) await tx.unsafe(statement);
    const [row] = await tx<Array<{ version: number }>>`SELECT max(version) AS version FROM mrp_fleet_schema`;
    const version = row?.version ?? 0;
    if (version > SHARED_JOURNAL_SCHEMA_VERSION) {
      throw new MrpError(
        'network',
        'journal_unreachable',
        `the shared journal's tables are version ${version}, newer than this mrp understands (${SHARED_JOURNAL_SCHEMA_VERSION})`,
        {
          hint: 'upgrade mrp on this machine to match the rest of the fleet',
        },
      );
    }
    if (version < SHARED_JOURNAL_SCHEMA_VERSION)
      await tx`INSERT INTO mrp_fleet_schema (version) VALUES (${SHARED_JOURNAL_SCHEMA_VERSION})`;
  });
}

function unreachable(where: string, err: unknown): MrpError {
  if (err instanceof MrpError) return err;
  const location = isPostgresUrl(where) ? describePostgresUrl(where) : where;
  return new MrpError(
    'network',
    'journal_unreachable',
    `cannot use the shared journal (${location}): ${describe(err)}`,
    {
      cause: err,
      hint: 'check --journal (postgres://user:password@host:port/database) and that the database accepts connections',
    },
  );
}

/** One runner of a fleet, as `mrp fleet` lists it. */
export interface FleetRunner {
  runner_id: string;
  identity: string;
  host: string;
  pid: number;
  mode: string;
  started_at: number;
  heartbeat_at: number;
  /** Milliseconds since its last heartbeat. */
  heartbeat_age_ms: number;
  /** Its own lease (`--lease`); the default lease for a row written before runners stored theirs. */
  lease_ms: number;
  /** Within its lease (heartbeat younger than its own lease). */
  alive: boolean;
  slot: number | null;
  /** Unfinished messages it holds under a live lease. */
  leased: number;
}

export interface FleetStatus {
  /** False when no runner has used this database yet (no `mrp_fleet_*` tables): nothing is created to list it. */
  initialized: boolean;
  runners: FleetRunner[];
  /** Unfinished messages: held under a live lease, and waiting for a takeover (lease ran out). */
  entries: { in_flight: number; expired: number; done: number };
}

/**
 * Reads who holds what (`identity`: one identity; all when undefined). A runner is alive while its
 * last heartbeat is younger than its own lease (as it registered it); `leaseMs` is the lease
 * assumed for a runner that did not record one (schema version 1; default: the default lease).
 */
export async function fleetStatus(
  url: string,
  options: { identity?: string; now?: number; leaseMs?: number } = {},
): Promise<FleetStatus> {
  const sql = connect(url, 1);
  try {
    // Read only: listing must not create tables (a mistyped database, a read-only monitoring user).
    const [found] = await sql<
      Array<{
        schema: string | null;
        runners: string | null;
        entries: string | null;
        slots: string | null;
        lease_ms: boolean;
      }>
    >`
      SELECT to_regclass('mrp_fleet_schema')::text AS schema, to_regclass('mrp_fleet_runners')::text AS runners,
        to_regclass('mrp_fleet_entries')::text AS entries, to_regclass('mrp_fleet_slots')::text AS slots,
        EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('mrp_fleet_runners')
          AND attname = 'lease_ms' AND NOT attisdropped) AS lease_ms`;
    if (!found?.schema || !found.runners || !found.entries || !found.slots) {
      return { initialized: false, runners: [], entries: { in_flight: 0, expired: 0, done: 0 } };
    }
    const [schema] = await sql<Array<{ version: number | null }>>`SELECT max(version) AS version FROM mrp_fleet_schema`;
    if ((schema?.version ?? 0) > SHARED_JOURNAL_SCHEMA_VERSION) {
      throw new MrpError(
        'network',
        'journal_unreachable',
        `the shared journal's tables are version ${schema?.version}, newer than this mrp understands (${SHARED_JOURNAL_SCHEMA_VERSION})`,
        { hint: 'upgrade mrp on this machine to match the rest of the fleet' },
      );
    }
    const now = options.now ?? Date.now();
    const lease = options.leaseMs ?? SHARED_JOURNAL_DEFAULTS.leaseMs;
    const identity = options.identity ?? null;
    // Tables of schema version 1 (not migrated yet: listing only reads) have no `lease_ms`.
    const leaseColumn = found.lease_ms ? sql`r.lease_ms` : sql`NULL::integer`;
    const runners = await sql<
      Array<Omit<FleetRunner, 'heartbeat_age_ms' | 'alive' | 'lease_ms'> & { lease_ms: number | null }>
    >`
      SELECT r.runner_id, r.identity, r.host, r.pid, r.mode, r.started_at, r.heartbeat_at, ${leaseColumn} AS lease_ms,
        (SELECT s.slot FROM mrp_fleet_slots s WHERE s.runner_id = r.runner_id AND s.lease_until >= ${now} LIMIT 1) AS slot,
        (SELECT count(*)::int FROM mrp_fleet_entries e WHERE e.identity = r.identity AND e.owner = r.runner_id
          AND e.state <> 'done' AND e.lease_until >= ${now}) AS leased
      FROM mrp_fleet_runners r WHERE (${identity}::text IS NULL OR r.identity = ${identity}::text)
      ORDER BY r.identity, r.started_at, r.runner_id`;
    const [counts] = await sql<Array<{ in_flight: number; expired: number; done: number }>>`
      SELECT count(*) FILTER (WHERE state <> 'done' AND lease_until >= ${now})::int AS in_flight,
        count(*) FILTER (WHERE state <> 'done' AND lease_until < ${now})::int AS expired,
        count(*) FILTER (WHERE state = 'done')::int AS done
      FROM mrp_fleet_entries WHERE (${identity}::text IS NULL OR identity = ${identity}::text)`;
    return {
      initialized: true,
      runners: runners.map((r) => {
        const leaseMs = r.lease_ms === null || !(Number(r.lease_ms) > 0) ? lease : Number(r.lease_ms);
        return {
          ...r,
          pid: Number(r.pid),
          started_at: Number(r.started_at),
          heartbeat_at: Number(r.heartbeat_at),
          heartbeat_age_ms: Math.max(0, now - Number(r.heartbeat_at)),
          lease_ms: leaseMs,
          alive: now - Number(r.heartbeat_at) < leaseMs,
          slot: r.slot === null ? null : Number(r.slot),
          leased: Number(r.leased),
        };
      }),
      entries: counts ?? { in_flight: 0, expired: 0, done: 0 },
    };
  } catch (err) {
    throw unreachable(url, err);
  } finally {
    await sql.end({ timeout: 1 }).catch(() => undefined);
  }
}
