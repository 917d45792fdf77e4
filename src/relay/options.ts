/**
 * `createRelay`'s options: what can be set, the defaults (named once, here: `RELAY_DEFAULTS`,
 * which `mrp relay` uses too), and the one check that turns a bad option into an error naming it
 * (habit 6). Protocol numbers come from `protocol/constants.ts`.
 *
 * Storage and process-local state are injectable. Left out, each gets its one-process default:
 * the SQLite store in `dataDir`, the in-process bus, in-memory replay cache, rate windows,
 * connection registry and LRU caches. A relay that shares its database with other processes
 * passes shared ones (see docs/architecture.md §5 for what each must do).
 *
 * `dataDir` is required unless a `store` is given. It is the SQLite store's directory (mrp.db and
 * its lock file, `mrp.lock`); a relay on an injected store keeps no files of its own, so there is
 * nothing to lock, and blob bytes go to an injected `blobStore` or to `dataDir/blobs/blobs/` (without
either, the blob routes answer `404 not_found`: this relay keeps no blobs).
 * An injected store or bus belongs to the caller: the relay does not close it.
 */
import { type Clock, systemClock } from '../core/clock.js';
import { UsageError } from '../core/errors.js';
import type { MetricsFactory } from '../core/metrics.js';
import { LIMITS, RATE_LIMITS, TIMING } from '../protocol/constants.js';
import type { BlobStore } from './blobs/blob-store.js';
import type { Bus } from './bus.js';
import type { ConnectionRegistry } from './connections.js';
import type { AclCache, AgentCache } from './directory.js';
import type { RateLimiterFactory } from './limits.js';
import type { LogLevel, LogSink } from './log.js';
import { DEFAULT_MAX_REPLAY_ENTRIES, type ReplayCache } from './replay-cache.js';
import type { Route } from './router.js';
import type { Services } from './services.js';
import type { Store } from './store/store.js';
import type { HostResolver } from './webhook-target.js';

export interface RelayOptions {
  /** Where `mrp.db` lives (the official relay's `DATA_DIR`). Required unless `store` is given. */
  dataDir?: string;
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  clock?: Clock;
  version?: string;
  /** Allowed clock difference for signed requests (default 5 minutes). */
  timestampToleranceMs?: number;
  /** Per agent per minute; 0 = unlimited. */
  sendRatePerMinute?: number;
  receiveRatePerMinute?: number;
  requestRatePerMinute?: number;
  maxConnectionsPerAgent?: number;
  /** WebSocket connections held at once, in total (upgrades beyond get 503; default 10,000). */
  maxConnections?: number;
  /** WebSocket connections held at once from one client address (IPv4, or IPv6 /64; 503 beyond; default 256). */
  maxConnectionsPerAddress?: number;
  /**
   * TCP connections held open at once, HTTP and WebSocket together (default 20,000). A connection
   * beyond is answered 503 and closed before anything of it is read.
   */
  maxSockets?: number;
  /**
   * TCP connections held open at once from one client address (IPv4, or IPv6 /64), HTTP and
   * WebSocket together (default 512: room for its 256 WebSockets and as many requests). Idle
   * keep-alive connections count: without a cap one address could hold every file descriptor.
   * Raise it behind a reverse proxy, where every client shares the proxy's address.
   */
  maxSocketsPerAddress?: number;
  /**
   * Bytes of unfinished inbound WebSocket frames held across all connections (default 64 MiB):
   * past it, the connection holding the most is closed with 1013 (try again later).
   */
  maxInboundFrameBytes?: number;
  /**
   * Bytes written to WebSockets that their peers have not read yet (not taken by the kernel),
   * across all connections (default 256 MiB): past it, the connection with the most is closed
   * with 1013 (try again later).
   */
  maxOutboundBytes?: number;
  /** An unfinished inbound WebSocket frame that gets no new byte for this long is closed with 1008 (default 30 s). */
  partialFrameTimeoutMs?: number;
  /**
   * Bytes of HTTP answers written and not yet taken by the kernel, across all connections
   * (default 128 MiB): past it, the connection holding the most is cut (`unsent-responses.ts`).
   */
  maxUnsentResponseBytes?: number;
  /**
   * Bytes of unread HTTP answers one client address may hold (default 32 MiB): past it, its
   * next requests get 503 before they are handled. Raise it behind a reverse proxy.
   */
  maxUnsentResponseBytesPerAddress?: number;
  /** An HTTP answer its client has stopped reading (no progress for this long) is cut (default 30 s). */
  responseStallTimeoutMs?: number;
  authTimeoutMs?: number;
  heartbeatIntervalMs?: number;
  heartbeatTimeoutMs?: number;
  maxBodyBytes?: number;
  maxEnvelopeBytes?: number;
  sweepIntervalMs?: number;
  /**
   * SQLite durability (the default store only). `normal` (default): a stored message is written
   * to the OS before it is acknowledged, so it survives the relay process being killed (kill -9).
   * `full`: every commit is also fsynced, so it survives a power cut too, at the cost of one disk
   * sync per batch.
   */
  synchronous?: 'full' | 'normal';
  /** Time a request body may take to arrive once its headers are in (408 after; default 10 s); for streams, the longest gap between bytes. */
  bodyTimeoutMs?: number;
  /** Time the request headers may take to arrive (default 10 s; node:http answers 408). */
  headersTimeoutMs?: number;
  /** Request bodies being read at once, across all clients (503 beyond; default 64). */
  maxConcurrentBodies?: number;
  /**
   * Request bodies being read at once from one client address (an IPv4 address or an IPv6 /64;
   * 503 beyond; default 8). Behind a reverse proxy every client shares the proxy's address.
   */
  maxConcurrentBodiesPerAddress?: number;
  /** A JSON request body must bring at least this many bytes (or all that is left of it) in every `bodyRateWindowMs` (408 otherwise; default 16 KiB). */
  minBodyBytesPerWindow?: number;
  /** The window of `minBodyBytesPerWindow` (default 2 s). */
  bodyRateWindowMs?: number;
  /** Bytes of request bodies being read held at once (503 beyond; default 32 MiB). */
  maxBodyBufferBytes?: number;
  /** Signatures remembered for replay detection by the default replay cache (503 when full of live entries; default 1,000,000). */
  maxReplayEntries?: number;
  /** Largest blob in bytes (§3.7, §7: 100 MiB; one byte more → 413 `payload_too_large`). */
  maxBlobBytes?: number;
  /** Bytes of unexpired blobs per agent (1 GiB; beyond → 507 `insufficient_storage`). */
  maxBlobStorageBytes?: number;
  /** Unexpired blobs per agent (100; beyond → 507 `insufficient_storage`). */
  maxBlobsPerAgent?: number;
  /** A blob's lifetime from its upload (7 days; messages referencing it extend it). */
  blobTtlMs?: number;
  /** `/v1/health/ready` answers 503 below this much free disk space (default store; default 4 MiB). */
  minFreeDiskBytes?: number;
  /** Deliver webhooks to loopback, private, link-local and CGNAT addresses too (development only; default false). */
  allowPrivateWebhooks?: boolean;
  /** Time a webhook receiver has to answer `200` (default 10 s, §3.8). */
  webhookTimeoutMs?: number;
  /** Webhook requests in flight at once in this process (default 32). */
  webhookConcurrency?: number;
  /** Webhook requests in flight at once per agent in this process (default 2). */
  webhookConcurrencyPerAgent?: number;
  /** How webhook host names are resolved (default: the system's `dns.lookup`); every address is checked unless `allowPrivateWebhooks`. */
  webhookResolver?: HostResolver;
  logger?: LogSink;
  logLevel?: LogLevel;
  /** Where the relay's metrics go (requests, messages, sockets, store latency); default: nowhere. */
  metrics?: MetricsFactory;

  /**
   * Blob bytes (default: `FsBlobStore` under `dataDir`; external mode passes an `FsBlobStore` on a
   * shared directory or an `S3BlobStore`). Not closed by the relay.
   */
  blobStore?: BlobStore;
  /** The storage (default: `SqliteStore` in `dataDir`). Not closed by the relay. */
  store?: Store;
  /** Cross-connection events (default: `InProcessBus`). Not closed by the relay. */
  bus?: Bus;
  /** Replay detection (default: `MemoryReplayCache` of `maxReplayEntries`). */
  replayCache?: ReplayCache;
  /** Makes the send, receive and request windows (default: in-memory sliding windows). */
  rateLimiter?: RateLimiterFactory;
  /** Per-agent WebSocket connection counting (default: `MemoryConnectionRegistry`). */
  connectionRegistry?: ConnectionRegistry;
  /** The directory's caches (default: bounded LRUs); invalidated through the bus either way. */
  caches?: { agents?: AgentCache; acl?: AclCache };
  /** Extra routes, matched like the built-in ones (which win ties): extensions and tests. */
  routes?: Route<Services>[];
}

export const RELAY_DEFAULTS = {
  host: '127.0.0.1',
  port: 8080,
  /** Not a library default (the library needs a directory): what `mrp relay` uses without `--data-dir`/`DATA_DIR`. */
  dataDir: './data',
  version: '1.0.0',
  timestampToleranceMs: TIMING.timestampToleranceMs,
  sendRatePerMinute: RATE_LIMITS.sendPerMinute,
  receiveRatePerMinute: RATE_LIMITS.receivePerMinute,
  requestRatePerMinute: RATE_LIMITS.requestsPerMinute,
  maxConnectionsPerAgent: RATE_LIMITS.wsConnectionsPerAgent,
  maxConnections: 10_000,
  maxConnectionsPerAddress: 256,
  maxSockets: 20_000,
  maxSocketsPerAddress: 512,
  maxInboundFrameBytes: 64 * 1024 * 1024,
  maxOutboundBytes: 256 * 1024 * 1024,
  partialFrameTimeoutMs: 30_000,
  maxUnsentResponseBytes: 128 * 1024 * 1024,
  maxUnsentResponseBytesPerAddress: 32 * 1024 * 1024,
  responseStallTimeoutMs: 30_000,
  authTimeoutMs: TIMING.wsAuthTimeoutMs,
  heartbeatIntervalMs: TIMING.heartbeatIntervalMs,
  heartbeatTimeoutMs: TIMING.heartbeatTimeoutMs,
  maxBodyBytes: LIMITS.maxBodyBytes,
  maxEnvelopeBytes: LIMITS.maxEnvelopeBytes,
  sweepIntervalMs: 30_000,
  synchronous: 'normal',
  bodyTimeoutMs: 10_000,
  headersTimeoutMs: 10_000,
  maxConcurrentBodies: 64,
  maxConcurrentBodiesPerAddress: 8,
  minBodyBytesPerWindow: 16 * 1024,
  bodyRateWindowMs: 2_000,
  maxBodyBufferBytes: 32 * 1024 * 1024,
  maxReplayEntries: DEFAULT_MAX_REPLAY_ENTRIES,
  minFreeDiskBytes: 4 * 1024 * 1024,
  allowPrivateWebhooks: false,
  webhookTimeoutMs: 10_000,
  webhookConcurrency: 32,
  webhookConcurrencyPerAgent: 2,
  maxBlobBytes: LIMITS.maxBlobBytes,
  maxBlobStorageBytes: LIMITS.maxBlobStorageBytes,
  maxBlobsPerAgent: LIMITS.maxBlobsPerAgent,
  blobTtlMs: TIMING.blobTtlMs,
  logLevel: 'info',
} as const;

type Injected =
  | 'logger'
  | 'metrics'
  | 'store'
  | 'blobStore'
  | 'bus'
  | 'replayCache'
  | 'rateLimiter'
  | 'connectionRegistry'
  | 'caches'
  | 'blobStore'
  | 'routes'
  | 'webhookResolver'
  | 'dataDir';

/** Options after defaults: every number set; the injected parts as given (or absent). */
export type ResolvedOptions = Required<Omit<RelayOptions, Injected | 'clock'>> &
  Pick<RelayOptions, Injected> & { clock: Clock };

const NON_NEGATIVE = [
  'sendRatePerMinute',
  'receiveRatePerMinute',
  'requestRatePerMinute',
  'port',
  'minFreeDiskBytes',
  'minBodyBytesPerWindow',
] as const;
const POSITIVE = [
  'timestampToleranceMs',
  'maxConnectionsPerAgent',
  'maxConnections',
  'maxConnectionsPerAddress',
  'maxSockets',
  'maxSocketsPerAddress',
  'maxInboundFrameBytes',
  'maxOutboundBytes',
  'partialFrameTimeoutMs',
  'maxUnsentResponseBytes',
  'maxUnsentResponseBytesPerAddress',
  'responseStallTimeoutMs',
  'authTimeoutMs',
  'heartbeatIntervalMs',
  'heartbeatTimeoutMs',
  'maxBodyBytes',
  'maxEnvelopeBytes',
  'sweepIntervalMs',
  'bodyTimeoutMs',
  'headersTimeoutMs',
  'maxConcurrentBodies',
  'maxConcurrentBodiesPerAddress',
  'bodyRateWindowMs',
  'maxBodyBufferBytes',
  'maxReplayEntries',
  'webhookTimeoutMs',
  'webhookConcurrency',
  'webhookConcurrencyPerAgent',
  'maxBlobBytes',
  'maxBlobStorageBytes',
  'maxBlobsPerAgent',
  'blobTtlMs',
] as const;

function invalid(message: string): UsageError {
  return new UsageError(`createRelay: ${message}`, { code: 'invalid_option' });
}

/** Merges the defaults and checks every option; throws a `UsageError` naming the first bad one. */
export function resolveOptions(options: RelayOptions): ResolvedOptions {
  if (!options || typeof options !== 'object') throw invalid('options are required');
  if (options.store === undefined && (typeof options.dataDir !== 'string' || options.dataDir === '')) {
    throw invalid('options.dataDir is required (the directory for mrp.db) unless options.store is given');
  }
  if (options.dataDir !== undefined && (typeof options.dataDir !== 'string' || options.dataDir === '')) {
    throw invalid('options.dataDir must be a directory path');
  }
  // `RELAY_DEFAULTS.dataDir` is the command line's default, not the library's.
  const { dataDir: _commandLineDefault, ...defaults } = RELAY_DEFAULTS;
  const o = { ...defaults, clock: systemClock, ...options } as ResolvedOptions;
  for (const name of NON_NEGATIVE) {
    const v = o[name];
    if (!Number.isInteger(v) || v < 0) throw invalid(`options.${name} must be a whole number ≥ 0 (got ${v})`);
  }
  if (o.port > 65535) throw invalid(`options.port must be at most 65535 (got ${o.port})`);
  for (const name of POSITIVE) {
    const v = o[name];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0)
      throw invalid(`options.${name} must be a positive number (got ${v})`);
  }
  if (typeof o.allowPrivateWebhooks !== 'boolean')
    throw invalid(`options.allowPrivateWebhooks must be true or false (got ${o.allowPrivateWebhooks})`);
  for (const name of ['webhookConcurrency', 'webhookConcurrencyPerAgent'] as const) {
    if (!Number.isInteger(o[name])) throw invalid(`options.${name} must be a whole number (got ${o[name]})`);
  }
  for (const route of o.routes ?? []) {
    if (
      !route ||
      typeof route.path !== 'string' ||
      !route.path.startsWith('/') ||
      typeof route.handler !== 'function'
    ) {
      throw invalid('options.routes: each route needs a path starting with "/" and a handler');
    }
  }
  return o;
}
