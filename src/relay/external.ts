/**
 * External mode (docs/protocol.md §10): everything a relay process needs to share one
 * PostgreSQL database with any number of others — the store, the bus, the replay cache, the rate
 * windows and the connection registry — opened together from one URL, to pass to `createRelay`
 * (which does not close injected parts: `close()` here does, after the relay has closed).
 * The driver is loaded lazily: nothing of this is imported in embedded mode.
 */
import { type Clock, systemClock } from '../core/clock.js';
import type { RelayOptions } from './options.js';
import { PgBus, type PgBusOptions } from './pg-bus.js';
import { PgConnectionRegistry, PgReplayCache, pgRateLimiter } from './pg-shared.js';
import { PgStore } from './store/pg-store.js';

export interface ExternalOptions {
  /** `postgres://user:password@host:5432/database`. */
  databaseUrl: string;
  /** The relay's clock (replay entries and rate windows); default the system clock. */
  clock?: Clock;
  /** Pool size of this process (default 10). */
  maxConnections?: number;
  /** Connection-slot lease of this process (default 15 s). */
  leaseMs?: number;
  connectTimeoutSeconds?: number;
  /** A failed heartbeat or notify, a lost or regained bus connection: for the log. */
  onEvent?: (what: string, detail?: string) => void;
  onListenerError?: PgBusOptions['onListenerError'];
}

export interface External {
  readonly store: PgStore;
  readonly bus: PgBus;
  readonly registry: PgConnectionRegistry;
  /** The `createRelay` options that make a relay use all of this. */
  readonly relayOptions: Pick<RelayOptions, 'store' | 'bus' | 'replayCache' | 'rateLimiter' | 'connectionRegistry'>;
  /** Closes the registry (its slots and lease), the bus and the store. Call after the relay closed. */
  close(): Promise<void>;
}

export async function openExternal(options: ExternalOptions): Promise<External> {
  const onEvent = options.onEvent ?? (() => {});
  const store = await PgStore.open(options.databaseUrl, {
    ...(options.maxConnections === undefined ? {} : { max: options.maxConnections }),
    ...(options.connectTimeoutSeconds === undefined ? {} : { connectTimeoutSeconds: options.connectTimeoutSeconds }),
  });
  let bus: PgBus | undefined;
  let registry: PgConnectionRegistry | undefined;
  try {
    bus = await PgBus.open(options.databaseUrl, store.sql, {
      ...(options.connectTimeoutSeconds === undefined ? {} : { connectTimeoutSeconds: options.connectTimeoutSeconds }),
      ...(options.onListenerError ? { onListenerError: options.onListenerError } : {}),
      onStatus: (status, detail) => onEvent(`bus_${status}`, detail),
    });
    registry = await PgConnectionRegistry.open(store.sql, {
      ...(options.leaseMs === undefined ? {} : { leaseMs: options.leaseMs }),
      onError: (err) => onEvent('lease_heartbeat_failed', (err as Error)?.message ?? String(err)),
    });
  } catch (err) {
    await bus?.close();
    await store.close();
    throw err;
  }
  const clock = options.clock ?? systemClock;
  const openedBus = bus;
  const openedRegistry = registry;
  let closed: Promise<void> | undefined;
  return {
    store,
    bus: openedBus,
    registry: openedRegistry,
    relayOptions: {
      store,
      bus: openedBus,
      replayCache: new PgReplayCache(store.sql, clock),
      rateLimiter: pgRateLimiter(store.sql),
      connectionRegistry: openedRegistry,
    },
    close() {
      closed ??= (async () => {
        await openedRegistry.close();
        await openedBus.close();
        await store.close();
      })();
      return closed;
    },
  };
}
