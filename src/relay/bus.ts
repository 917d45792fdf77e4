/**
 * The bus: everything that crosses connections goes through it, so that a second relay process
 * sharing the store can subscribe (Postgres `LISTEN/NOTIFY`: `pg-bus.ts`). Nothing in
 * the relay calls from one connection into another: the batcher publishes after its commit, and
 * the hub (live pushes, sockets of deleted or suspended agents), long polls (wake-ups) and the
 * directory (cache invalidation) subscribe.
 *
 * Events carry ids, never records: a subscriber fetches what it needs from the store, so an event
 * fits in a NOTIFY payload and a subscriber never acts on a stale copy. Publishing happens after
 * the commit it describes; a bus may deliver late or (across processes) lose an event when a
 * process dies between commit and publish, so every subscriber also has a way to catch up from
 * the store (the next WebSocket connection reads the backlog; a long poll times out and polls).
 *
 * The in-process bus delivers synchronously, in publish order. Subscribers must not rely on that
 * (a shared bus delivers later); they may rely on one publisher's events arriving in order.
 * A listener that throws is reported and skipped: publishing never throws.
 */

/** Who marked a message delivered. */
export type DeliveredVia = 'ack' | 'poll' | 'webhook';

export type BusEvent =
  /** A message was committed for `recipient` (`seq`: its store order, see `Store`). Also the long-poll wake-up. */
  | {
      type: 'message.stored';
      recipient: string;
      message_id: string;
      created_at: number;
      seq: number;
      /** False: its commit made no webhook delivery for it. Absent: not known (e.g. from another process). */
      webhook?: boolean;
    }
  /** A message left `sent` for `delivered`. */
  | { type: 'message.delivered'; recipient: string; message_id: string; via: DeliveredVia }
  /** An agent was created or its profile or status changed. */
  | { type: 'agent.changed'; agent: string; status: 'active' | 'suspended' }
  /** An agent and everything it owned were deleted. */
  | { type: 'agent.deleted'; agent: string }
  /** `owner`'s ACL entry for `peer` was added, changed or removed. */
  | { type: 'acl.changed'; owner: string; peer: string }
  /**
   * Local only, never sent to other processes: events may have been missed (a shared bus lost its
   * connection and is back). Subscribers catch up from the store: deliveries re-read their
   * backlog, long polls poll again, caches are dropped.
   */
  | { type: 'bus.resync' };

export type BusEventType = BusEvent['type'];
export type BusEventOf<T extends BusEventType> = Extract<BusEvent, { type: T }>;
export type BusListener<T extends BusEventType> = (event: BusEventOf<T>) => void;

export interface Bus {
  /** Publishes events (after the commit they describe). Never throws. */
  publish(events: readonly BusEvent[]): void;
  /** Calls `listener` for every event of `type` from now on; returns the unsubscribe function. */
  subscribe<T extends BusEventType>(type: T, listener: BusListener<T>): () => void;
  /** Stops delivering; a shared bus releases its connection. */
  close(): Promise<void>;
}

export interface InProcessBusOptions {
  /** Told about a listener that threw (the relay logs it); the other listeners still run. */
  onListenerError?: (err: unknown, event: BusEvent) => void;
}

/** The bus of one relay process: a listener list per event type. */
export class InProcessBus implements Bus {
  readonly #listeners = new Map<BusEventType, Set<(event: BusEvent) => void>>();
  readonly #onError: (err: unknown, event: BusEvent) => void;
  #closed = false;

  constructor(options: InProcessBusOptions = {}) {
    this.#onError = options.onListenerError ?? (() => {});
  }

  publish(events: readonly BusEvent[]): void {
    if (this.#closed) return;
    for (const event of events) {
      const listeners = this.#listeners.get(event.type);
      if (!listeners) continue;
      for (const listener of listeners) {
        try {
          listener(event);
        } catch (err) {
          try {
            this.#onError(err, event);
          } catch {
            // A failing error reporter must not make publishing throw either.
          }
        }
      }
    }
  }

  subscribe<T extends BusEventType>(type: T, listener: BusListener<T>): () => void {
    let set = this.#listeners.get(type);
    if (!set) {
      set = new Set();
      this.#listeners.set(type, set);
    }
    // A wrapper per subscription, so subscribing the same function twice gives two subscriptions.
    const wrapped = (event: BusEvent): void => listener(event as BusEventOf<T>);
    set.add(wrapped);
    return () => {
      set.delete(wrapped);
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#listeners.clear();
  }
}

/**
 * A relay's view of a bus it may share with others (tests run two relays on one bus; a shared
 * bus outlives a relay): every subscription made through it is guarded (a throwing listener is
 * reported, never raised into the publisher) and dropped at once by `close()`, which leaves the
 * underlying bus open. A bus whose `publish` throws after all (one written elsewhere, a lost
 * connection) is reported the same way: what it announces is already committed, and every
 * subscriber catches up from the store (docs/architecture.md §5.2), so the publisher — a commit
 * whose senders wait for their answer — never sees the failure.
 */
export class ScopedBus implements Bus {
  readonly #bus: Bus;
  readonly #onListenerError: (err: unknown, event: BusEvent) => void;
  readonly #subscriptions = new Set<() => void>();

  constructor(bus: Bus, onListenerError: (err: unknown, event: BusEvent) => void) {
    this.#bus = bus;
    this.#onListenerError = onListenerError;
  }

  publish(events: readonly BusEvent[]): void {
    if (events.length === 0) return;
    try {
      this.#bus.publish(events);
    } catch (err) {
      this.#onListenerError(err, events[0]!);
    }
  }

  subscribe<T extends BusEventType>(type: T, listener: BusListener<T>): () => void {
    const off = this.#bus.subscribe(type, (event) => {
      try {
        listener(event);
      } catch (err) {
        this.#onListenerError(err, event);
      }
    });
    const unsubscribe = (): void => {
      off();
      this.#subscriptions.delete(unsubscribe);
    };
    this.#subscriptions.add(unsubscribe);
    return unsubscribe;
  }

  async close(): Promise<void> {
    for (const unsubscribe of [...this.#subscriptions]) unsubscribe();
  }
}
