/**
 * The bus of relay processes sharing one PostgreSQL database (external mode): `LISTEN/NOTIFY` on
 * one channel, payloads of ids only (docs/architecture.md §5.2).
 *
 * - Own events are delivered here at once and synchronously, like `InProcessBus` (the live push
 *   of a message this process just committed needs no round trip), and sent to the others with
 *   `pg_notify`, several events per notification (payloads stay under PostgreSQL's 8000 bytes),
 *   in publish order (one notify in flight at a time). A notification carrying this process's
 *   origin id is not delivered twice.
 * - When to NOTIFY: after the commit. `publish` is called after the commit it describes (by the
 *   batcher, by the directory after its store call), so a notification can never announce a
 *   rolled-back write. Sending it inside the commit transaction would only close the window in
 *   which a process dies between commit and publish — a window every subscriber already covers
 *   (a new connection reads its backlog, a long poll times out and polls, the store re-checks
 *   the policy at commit) — at the price of tying the store to the bus.
 * - Listening uses a connection of its own. When it is lost the bus reconnects (backoff 100 ms to
 *   5 s) and, once listening again, delivers a local `bus.resync`: whatever was published while it
 *   was away is caught up from the store (deliveries re-read their backlog, long polls poll,
 *   caches are dropped).
 * - Notifications are outside input: a payload is bounded (8000 bytes), parsed without throwing
 *   and every event checked field by field before a listener sees it.
 */
import { randomBytes } from 'node:crypto';
import type postgres from 'postgres';
import { type Bus, type BusEvent, type BusEventType, type BusListener, InProcessBus } from './bus.js';
import { type PgConnectOptions, redactUrl } from './store/pg-connect.js';

/** The channel every relay process of one database listens on. */
export const BUS_CHANNEL = 'mrp_bus';
/** Bytes of one NOTIFY payload at most (PostgreSQL refuses 8000 and more). */
const MAX_PAYLOAD = 7900;
/** Longest string field accepted from a notification (keys are 43, ids about 30 characters). */
const MAX_FIELD = 256;

export interface PgBusOptions extends Pick<PgConnectOptions, 'connectTimeoutSeconds'> {
  channel?: string;
  /** A listener threw (the relay logs it). */
  onListenerError?: (err: unknown, event: BusEvent) => void;
  /** The bus lost its connection, could not notify, or is back (`reconnected`); for logs. */
  onStatus?: (status: 'disconnected' | 'reconnected' | 'notify_failed', detail?: string) => void;
}

type Wire = { o: string; e: unknown[] };

export class PgBus implements Bus {
  /** This process's origin id in payloads. */
  readonly origin = randomBytes(9).toString('base64url');
  readonly #local: InProcessBus;
  readonly #pool: postgres.Sql;
  readonly #listener: postgres.Sql;
  readonly #channel: string;
  readonly #onStatus: NonNullable<PgBusOptions['onStatus']>;
  #outbox: string[] = [];
  #sending: Promise<void> | undefined;
  #closed = false;
  #connected = false;
  #retryMs = 100;
  #retryTimer: NodeJS.Timeout | undefined;

  private constructor(pool: postgres.Sql, listener: postgres.Sql, options: PgBusOptions) {
    this.#pool = pool;
    this.#listener = listener;
    this.#channel = options.channel ?? BUS_CHANNEL;
    this.#onStatus = options.onStatus ?? (() => {});
    this.#local = new InProcessBus(options.onListenerError ? { onListenerError: options.onListenerError } : {});
  }

  /**
   * Listens on `url` (a connection of its own) and notifies through `pool` (the store's).
   * Resolves once listening; rejects when the first LISTEN fails.
   */
  static async open(url: string, pool: postgres.Sql, options: PgBusOptions = {}): Promise<PgBus> {
    const { default: postgresJs } = await import('../../vendor/postgres/index.js');
    let bus: PgBus | undefined;
    const listener = postgresJs(url, {
      max: 1,
      idle_timeout: null,
      max_lifetime: null,
      connect_timeout: options.connectTimeoutSeconds ?? 10,
      fetch_types: false,
      onnotice: () => {},
      connection: { application_name: 'mrp-bus' },
      onnotify: (channel: string, payload: string) => bus?.receive(channel, payload),
      onclose: () => bus?.disconnected(),
    } as unknown as postgres.Options<Record<string, postgres.PostgresType>>);
    bus = new PgBus(pool, listener, options);
    try {
      await bus.#listen();
    } catch (err) {
      await listener.end({ timeout: 0 }).catch(() => {});
      throw new Error(`${redactUrl(url)}: cannot LISTEN (${(err as Error).message})`);
    }
    return bus;
  }

  get connected(): boolean {
    return this.#connected;
  }

  async #listen(): Promise<void> {
    await this.#listener.unsafe(`LISTEN "${this.#channel.replace(/"/g, '""')}"`);
    this.#connected = true;
    this.#retryMs = 100;
  }

  /** The listening connection closed (server restart, network, terminated backend). */
  private disconnected(): void {
    if (this.#closed || !this.#connected) return;
    this.#connected = false;
    this.#onStatus('disconnected');
    this.#scheduleReconnect();
  }

  #scheduleReconnect(): void {
    if (this.#closed || this.#retryTimer) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.#listen().then(
        () => {
          if (this.#closed) return;
          this.#onStatus('reconnected');
          this.#local.publish([{ type: 'bus.resync' }]);
        },
        () => {
          this.#retryMs = Math.min(this.#retryMs * 2, 5000);
          this.#scheduleReconnect();
        },
      );
    }, this.#retryMs);
    this.#retryTimer.unref();
  }

  publish(events: readonly BusEvent[]): void {
    if (this.#closed || events.length === 0) return;
    this.#local.publish(events);
    let chunk: string[] = [];
    let size = 0;
    const flush = (): void => {
      if (chunk.length === 0) return;
      this.#outbox.push(`{"o":"${this.origin}","e":[${chunk.join(',')}]}`);
      chunk = [];
      size = 0;
    };
    for (const event of events) {
      if (event.type === 'bus.resync') continue;
      const text = JSON.stringify(event);
      if (size + text.length + 64 > MAX_PAYLOAD) flush();
      chunk.push(text);
      size += text.length + 1;
    }
    flush();
    this.#sending ??= this.#drain();
  }

  /** Sends what is queued, a batch of notifications per round trip, in order. Never rejects. */
  async #drain(): Promise<void> {
    try {
      while (this.#outbox.length > 0 && !this.#closed) {
        const payloads = this.#outbox.splice(0, 64);
        try {
          await this.#pool.unsafe(
            'SELECT pg_notify($1, p) FROM unnest($2::text[]) WITH ORDINALITY AS x(p, n) ORDER BY n',
            [this.#channel, payloads] as never[],
          );
        } catch (err) {
          // The others miss these events; they catch up from the store (see the file comment).
          this.#onStatus('notify_failed', (err as Error)?.message ?? String(err));
        }
      }
    } finally {
      this.#sending = undefined;
    }
  }

  /** A notification: bounded, parsed without throwing, each event checked before delivery. */
  private receive(channel: string, payload: string): void {
    if (this.#closed || channel !== this.#channel || typeof payload !== 'string' || payload.length > 8000) return;
    let wire: Wire;
    try {
      wire = JSON.parse(payload) as Wire;
    } catch {
      return;
    }
    if (!wire || typeof wire !== 'object' || wire.o === this.origin || !Array.isArray(wire.e)) return;
    const events: BusEvent[] = [];
    for (const e of wire.e) {
      const event = checkEvent(e);
      if (event) events.push(event);
    }
    if (events.length > 0) this.#local.publish(events);
  }

  subscribe<T extends BusEventType>(type: T, listener: BusListener<T>): () => void {
    return this.#local.subscribe(type, listener);
  }

  /** Waits for queued notifications (at most 2 s), stops listening, closes the listening connection. */
  async close(): Promise<void> {
    if (this.#closed) return;
    if (this.#sending) await Promise.race([this.#sending, new Promise((r) => setTimeout(r, 2000).unref())]);
    this.#closed = true;
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    await this.#local.close();
    await this.#listener.end({ timeout: 2 }).catch(() => {});
  }
}

const str = (v: unknown): v is string => typeof v === 'string' && v.length > 0 && v.length <= MAX_FIELD;
const int = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v);

/** The event `e` describes, or undefined when it is not one this relay publishes. */
export function checkEvent(e: unknown): BusEvent | undefined {
  if (!e || typeof e !== 'object') return undefined;
  const x = e as Record<string, unknown>;
  switch (x['type']) {
    case 'message.stored':
      return str(x['recipient']) && str(x['message_id']) && int(x['created_at']) && int(x['seq'])
        ? {
            type: 'message.stored',
            recipient: x['recipient'],
            message_id: x['message_id'],
            created_at: x['created_at'],
            seq: x['seq'],
          }
        : undefined;
    case 'message.delivered':
      return str(x['recipient']) &&
        str(x['message_id']) &&
        (x['via'] === 'ack' || x['via'] === 'poll' || x['via'] === 'webhook')
        ? { type: 'message.delivered', recipient: x['recipient'], message_id: x['message_id'], via: x['via'] }
        : undefined;
    case 'agent.changed':
      return str(x['agent']) && (x['status'] === 'active' || x['status'] === 'suspended')
        ? { type: 'agent.changed', agent: x['agent'], status: x['status'] }
        : undefined;
    case 'agent.deleted':
      return str(x['agent']) ? { type: 'agent.deleted', agent: x['agent'] } : undefined;
    case 'acl.changed':
      return str(x['owner']) && str(x['peer'])
        ? { type: 'acl.changed', owner: x['owner'], peer: x['peer'] }
        : undefined;
    default:
      return undefined;
  }
}
