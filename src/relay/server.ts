/**
 * `createRelay(options)`: node:http and ws on one port, SQLite behind the Store interface.
 * Options are checked once, here, with errors that name the option (habit 6).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import { type Clock, systemClock, type Timer } from '../core/clock.js';
import { UsageError } from '../core/errors.js';
import { CLOSE_CODES, LIMITS, PATHS, RATE_LIMITS, TIMING } from '../protocol/constants.js';
import { errorEnvelope } from '../protocol/envelope.js';
import { Authenticator, DEFAULT_MAX_REPLAY_ENTRIES } from './auth.js';
import { Batcher } from './batcher.js';
import { Directory } from './directory.js';
import { ApiError, isStorageFailure } from './errors.js';
import { type Body, BodyGate, CORS_HEADERS, PREFLIGHT_HEADERS, readBody, writeJson } from './http.js';
import { Hub } from './hub.js';
import { requestId as newRequestId } from './ids.js';
import { rateHeaders, type RateState, SlidingWindow } from './limits.js';
import { Logger, type LogLevel, type LogSink } from './log.js';
import { Messenger } from './messenger.js';
import { type MetricsFactory, relayMetrics } from './metrics.js';
import { PUBLIC_ROUTES, type Reply, type Route, ROUTES, type Services } from './routes.js';
import { SqliteStore } from './sqlite-store.js';
import type { StorageHealth, Store } from './store.js';

export interface RelayOptions {
  /** Where `mrp.db` lives (the official relay's `DATA_DIR`). */
  dataDir: string;
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
  authTimeoutMs?: number;
  heartbeatIntervalMs?: number;
  heartbeatTimeoutMs?: number;
  maxBodyBytes?: number;
  maxEnvelopeBytes?: number;
  sweepIntervalMs?: number;
  /**
   * SQLite durability. `normal` (default): a stored message is written to the OS before it is
   * acknowledged, so it survives the relay process being killed (kill -9). `full`: every commit
   * is also fsynced, so it survives a power cut too, at the cost of one disk sync per batch.
   */
  synchronous?: 'full' | 'normal';
  /** Time a request body may take to arrive once its headers are in (408 after; default 10 s). */
  bodyTimeoutMs?: number;
  /** Time the request headers may take to arrive (default 10 s; node:http answers 408). */
  headersTimeoutMs?: number;
  /** Request bodies being read at once, across all clients (503 beyond; default 64). */
  maxConcurrentBodies?: number;
  /** Bytes of request bodies being read held at once (503 beyond; default 32 MiB). */
  maxBodyBufferBytes?: number;
  /** Signatures remembered for replay detection (503 when full of live entries; default 1,000,000). */
  maxReplayEntries?: number;
  /** `/v1/health/ready` answers 503 below this much free disk space (default 4 MiB). */
  minFreeDiskBytes?: number;
  logger?: LogSink;
  logLevel?: LogLevel;
  /** Where the relay's metrics go (requests, messages, sockets, store latency); default: nowhere. */
  metrics?: MetricsFactory;
}

export const RELAY_DEFAULTS = {
  host: '127.0.0.1',
  port: 8080,
  version: '1.0.0',
  timestampToleranceMs: TIMING.timestampToleranceMs,
  sendRatePerMinute: RATE_LIMITS.sendPerMinute,
  receiveRatePerMinute: RATE_LIMITS.receivePerMinute,
  requestRatePerMinute: RATE_LIMITS.requestsPerMinute,
  maxConnectionsPerAgent: RATE_LIMITS.wsConnectionsPerAgent,
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
  maxBodyBufferBytes: 32 * 1024 * 1024,
  maxReplayEntries: DEFAULT_MAX_REPLAY_ENTRIES,
  minFreeDiskBytes: 4 * 1024 * 1024,
  logLevel: 'info',
} as const;

type Resolved = Required<Omit<RelayOptions, 'logger' | 'clock' | 'metrics'>> & Pick<RelayOptions, 'logger' | 'metrics'> & { clock: Clock };

function check(options: RelayOptions): Resolved {
  if (!options || typeof options.dataDir !== 'string' || options.dataDir === '') {
    throw new UsageError('createRelay: options.dataDir is required (the directory for mrp.db)', { code: 'invalid_option' });
  }
  const o = { ...RELAY_DEFAULTS, clock: systemClock, ...options } as Resolved;
  const nonNegative = [
    'sendRatePerMinute',
    'receiveRatePerMinute',
    'requestRatePerMinute',
    'port',
    'minFreeDiskBytes',
  ] as const;
  for (const name of nonNegative) {
    const v = o[name];
    if (!Number.isInteger(v) || v < 0) throw new UsageError(`createRelay: options.${name} must be a whole number ≥ 0 (got ${v})`, { code: 'invalid_option' });
  }
  if (o.port > 65535) throw new UsageError(`createRelay: options.port must be at most 65535 (got ${o.port})`, { code: 'invalid_option' });
  const positive = [
    'timestampToleranceMs',
    'maxConnectionsPerAgent',
    'authTimeoutMs',
    'heartbeatIntervalMs',
    'heartbeatTimeoutMs',
    'maxBodyBytes',
    'maxEnvelopeBytes',
    'sweepIntervalMs',
    'bodyTimeoutMs',
    'headersTimeoutMs',
    'maxConcurrentBodies',
    'maxBodyBufferBytes',
    'maxReplayEntries',
  ] as const;
  for (const name of positive) {
    const v = o[name];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      throw new UsageError(`createRelay: options.${name} must be a positive number (got ${v})`, { code: 'invalid_option' });
    }
  }
  return o;
}

export interface Relay {
  /** Starts listening; resolves with the base URL. */
  listen(): Promise<string>;
  /** Graceful stop: WebSockets closed with 1001, in-flight requests finished, storage flushed. */
  close(): Promise<void>;
  /** Base URL, e.g. `http://127.0.0.1:8080` (valid after `listen`). */
  readonly url: string;
  readonly port: number;
  /** Operator action: suspend or reactivate an agent. */
  setAgentStatus(publicKey: string, status: 'active' | 'suspended'): void;
  /** Live WebSocket connections. */
  readonly connections: number;
}

function matchPath(pattern: string, segments: string[]): Record<string, string> | undefined {
  const parts = pattern.split('/');
  if (parts.length !== segments.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i]!;
    if (p.startsWith(':')) params[p.slice(1)] = segments[i]!;
    else if (p !== segments[i]) return undefined;
  }
  return params;
}

/** Literal segments first, so `/v1/messages/threads/:thread` wins over `/v1/messages/:id/status`. */
const ALL_ROUTES = [...PUBLIC_ROUTES, ...ROUTES];

function findRoute(method: string, segments: string[]): { route: Route; params: Record<string, string> } | { allowed: string[] } | undefined {
  const allowed: string[] = [];
  let best: { route: Route; params: Record<string, string>; literals: number } | undefined;
  for (const route of ALL_ROUTES) {
    const params = matchPath(route.path, segments);
    if (!params) continue;
    const literals = route.path.split('/').filter((p) => !p.startsWith(':')).length;
    if (route.method !== method) {
      allowed.push(route.method);
      continue;
    }
    if (!best || literals > best.literals) best = { route, params, literals };
  }
  if (best) return best;
  return allowed.length ? { allowed } : undefined;
}

export function createRelay(options: RelayOptions): Relay {
  const o = check(options);
  const clock = o.clock;
  const logger = new Logger(o.logger, o.logLevel);
  /** Runs `fn`; an unexpected throw becomes an error log line, never an exception out of a listener. */
  const guard = (where: string, fn: () => void): void => {
    try {
      fn();
    } catch (err) {
      logger.error('internal_error', { where, error: (err as Error)?.stack ?? String(err) });
    }
  };
  let hub!: Hub;
  const metrics = relayMetrics(o.metrics, { connections: () => hub.connections });
  const store: Store = metrics.instrument(new SqliteStore(o.dataDir, { synchronous: o.synchronous, minFreeBytes: o.minFreeDiskBytes }));
  let messenger!: Messenger;
  const batcher = new Batcher(store, {
    now: () => clock.now(),
    onCommit: (records) => {
      metrics.accepted(records.length);
      // Each consumer on its own: a failure in one must neither stop the other nor the commit's waiters.
      guard('push', () => hub.push(records));
      guard('notify', () => messenger.notify(records));
    },
    onError: (err) => logger.error('storage_error', { error: (err as Error).message }),
  });
  const directory = new Directory(store, batcher);
  messenger = new Messenger(store, batcher, directory, clock, {
    sendPerMinute: o.sendRatePerMinute,
    receivePerMinute: o.receiveRatePerMinute,
  });
  const auth = new Authenticator(clock, o.timestampToleranceMs, o.maxReplayEntries);
  hub = new Hub(
    { clock, auth, directory, messenger, batcher, store, logger },
    {
      authTimeoutMs: o.authTimeoutMs,
      heartbeatIntervalMs: o.heartbeatIntervalMs,
      heartbeatTimeoutMs: o.heartbeatTimeoutMs,
      maxConnectionsPerAgent: o.maxConnectionsPerAgent,
      maxEnvelopeBytes: o.maxEnvelopeBytes,
      maxBodyBytes: o.maxBodyBytes,
    },
  );
  const requestLimit = new SlidingWindow(o.requestRatePerMinute, clock);
  const bodyGate = new BodyGate(o.maxConcurrentBodies, o.maxBodyBufferBytes);
  let storageOpen = true;
  /** The storage probe touches the disk: its verdict is reused for a second. */
  let health: { at: number; value: StorageHealth } | undefined;
  const storageHealth = (): StorageHealth => {
    if (!storageOpen) return { ok: false, reason: 'closed' };
    const now = clock.now();
    if (health && now - health.at < 1000 && now >= health.at) return health.value;
    let value: StorageHealth;
    try {
      value = store.health(now);
    } catch (err) {
      value = { ok: false, reason: 'probe_failed', detail: (err as Error).message };
    }
    if (!value.ok && (!health || health.value.ok)) logger.error('storage_unhealthy', { reason: value.reason, detail: value.detail, file: store.location });
    health = { at: now, value };
    return value;
  };
  const services: Services = {
    clock,
    store,
    directory,
    messenger,
    hub,
    auth,
    version: o.version,
    maxBodyBytes: o.maxBodyBytes,
    logger,
    storageHealth,
  };

  /** Aborts the handlers of in-flight requests (long polls) at shutdown. */
  const inFlightAborts = new Set<AbortController>();
  let closing = false;
  let inFlight = 0;
  let idle: (() => void) | undefined;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    const id = newRequestId();
    const method = (req.method ?? 'GET').toUpperCase();
    const target = req.url ?? '/';
    const q = target.indexOf('?');
    const path = q < 0 ? target : target.slice(0, q);
    const headers: Record<string, string> = { ...CORS_HEADERS, 'X-Request-Id': id };
    let status = 500;
    let routeLabel = 'unmatched';
    let caller: string | undefined;
    // Watch for the client going away from the first moment: a long poll whose client left while
    // its body or auth was being handled must not take (and lose) messages.
    const abort = new AbortController();
    const onGone = (): void => abort.abort();
    res.on('close', onGone);
    inFlightAborts.add(abort);
    const fail = (err: unknown): void => {
      const api = ApiError.from(err);
      if (api.code === 'internal_error') logger.error('internal_error', { request_id: id, error: (err as Error)?.stack ?? String(err) });
      else if (isStorageFailure(err)) logger.error('storage_error', { request_id: id, code: (err as { code?: string }).code, error: (err as Error).message });
      status = api.status;
      writeJson(res, api.status, errorEnvelope(api.code, api.message, id, api.details), { ...headers, ...api.headers });
    };
    try {
      if (method === 'OPTIONS') {
        status = 204;
        writeJson(res, 204, undefined, { ...PREFLIGHT_HEADERS, 'X-Request-Id': id });
        return;
      }
      if (closing) {
        headers['Connection'] = 'close';
        throw new ApiError('service_unavailable', 'the relay is shutting down');
      }
      let segments: string[];
      try {
        segments = path.split('/').map((s, i) => (i === 0 ? s : decodeURIComponent(s)));
      } catch {
        throw new ApiError('bad_request', 'malformed percent-encoding in the path');
      }
      if (path === PATHS.ws) {
        throw new ApiError('bad_request', 'this endpoint speaks WebSocket: send an Upgrade request', { status: 426 });
      }
      const found = findRoute(method === 'HEAD' ? 'GET' : method, segments);
      if (!found) throw new ApiError('not_found', `no route for ${path}`);
      if ('allowed' in found) {
        headers['Allow'] = [...new Set(found.allowed)].join(', ');
        throw new ApiError('bad_request', `${method} is not allowed on ${path}`, { status: 405 });
      }
      const { route, params } = found;
      routeLabel = route.path;
      let body: Body | undefined;
      let generalRate: RateState | undefined;
      if (route.auth) {
        // Headers, key and timestamp are checked before a byte of the body is read; the body is
        // hashed as it arrives and the signature checked once it is in.
        const claim = auth.claim(req.headers);
        body = await readBody(req, { maxBytes: o.maxEnvelopeBytes, timeoutMs: o.bodyTimeoutMs }, bodyGate, clock);
        caller = auth.verifyHttp(claim, method, target, body.hash);
        const now = clock.now();
        const agent = directory.ensure(caller, now);
        if (agent.status === 'suspended') throw new ApiError('agent_suspended', 'this agent is suspended');
        directory.touch(caller, now);
        if (route.send) {
          if (messenger.sendLimit.enabled) Object.assign(headers, rateHeaders(messenger.sendLimit.peek(caller)));
        } else if (requestLimit.enabled) {
          generalRate = requestLimit.peek(caller);
          if (generalRate.retryAfter > 0) {
            throw new ApiError('rate_limit_exceeded', `Too many requests; retry in ${generalRate.retryAfter} s.`, {
              details: { limit: generalRate.limit, window: '1m', retry_after: generalRate.retryAfter },
              headers: { ...rateHeaders(generalRate), 'Retry-After': String(generalRate.retryAfter) },
            });
          }
          requestLimit.record(caller);
          Object.assign(headers, rateHeaders(requestLimit.peek(caller)));
        }
      }
      const reply: Reply = await route.handler(
        {
          method,
          params,
          query: new URLSearchParams(q < 0 ? '' : target.slice(q + 1)),
          body: body?.bytes ?? Buffer.alloc(0),
          caller: caller ?? '',
          signal: abort.signal,
        },
        services,
      );
      if (reply.sendRate) Object.assign(headers, rateHeaders(reply.sendRate));
      status = reply.status;
      writeJson(res, reply.status, reply.body, { ...headers, ...reply.headers }, method === 'HEAD');
    } catch (err) {
      fail(err);
    } finally {
      res.off('close', onGone);
      inFlightAborts.delete(abort);
      metrics.request(method, routeLabel, status, (performance.now() - started) / 1000);
      if (logger.enabled('info')) {
        logger.info('request', {
          method,
          path,
          status,
          ms: Math.round((performance.now() - started) * 10) / 10,
          request_id: id,
          ...(caller ? { agent: caller } : {}),
        });
      }
    }
  }

  /** Last resort when `handle` itself failed: a 500 if nothing was answered yet, else cut the connection. */
  const answerCrash = (res: ServerResponse, err: unknown): void => {
    logger.error('internal_error', { error: (err as Error)?.stack ?? String(err) });
    try {
      if (!res.headersSent) writeJson(res, 500, errorEnvelope('internal_error', 'internal error', newRequestId()), { ...CORS_HEADERS, Connection: 'close' });
      else res.destroy();
    } catch {
      res.destroy();
    }
  };

  const server: Server = createServer(
    {
      // Longer than the usual load balancer idle timeout (60 s), so the balancer closes first.
      keepAliveTimeout: 65_000,
      headersTimeout: o.headersTimeoutMs,
      // A backstop for the whole request (headers and body); the body timer answers first.
      requestTimeout: Math.max(o.headersTimeoutMs, o.bodyTimeoutMs) + 20_000,
      // How often node:http enforces those timeouts (its default of 30 s would let stalled requests linger).
      connectionsCheckingInterval: 1_000,
    },
    (req, res) => {
      inFlight++;
      let running: Promise<void>;
      try {
        running = handle(req, res);
      } catch (err) {
        running = Promise.reject(err);
      }
      running
        .catch((err: unknown) => answerCrash(res, err))
        .finally(() => {
          inFlight--;
          if (inFlight === 0) idle?.();
          // A body we refused to read must not stall the connection.
          if (!req.complete) req.socket.destroySoon?.();
        })
        .catch(() => {});
    },
  );

  const wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    clientTracking: false,
    // Oversized sends get a send_result payload_too_large; only frames past this cap are cut (1009).
    // Before authentication the hub allows far less (LIMITS.wsPreAuthBytes).
    maxPayload: 4 * o.maxEnvelopeBytes,
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    try {
      const path = (req.url ?? '').split('?')[0];
      if (path !== PATHS.ws || closing) {
        const status = closing ? '503 Service Unavailable' : '404 Not Found';
        socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => {
        try {
          hub.accept(ws, req, socket, head.length);
        } catch (err) {
          logger.error('internal_error', { where: 'ws_accept', error: (err as Error)?.stack ?? String(err) });
          ws.terminate();
        }
      });
    } catch (err) {
      logger.error('internal_error', { where: 'upgrade', error: (err as Error)?.stack ?? String(err) });
      socket.destroy();
    }
  });

  let sweeper: Timer | undefined;
  const sweep = (): void => {
    try {
      const { expired, purged } = store.sweep(clock.now(), TIMING.expiredRetentionMs);
      if (expired || purged) logger.debug('sweep', { expired, purged });
    } catch (err) {
      logger.error('storage_error', { error: (err as Error).message });
    }
    guard('sweep', () => {
      auth.prune();
      messenger.pruneLimits();
      requestLimit.prune();
    });
  };

  let url = '';
  let port = o.port;
  let closed: Promise<void> | undefined;

  return {
    get url() {
      return url;
    },
    get port() {
      return port;
    },
    get connections() {
      return hub.connections;
    },
    setAgentStatus(publicKey, status) {
      directory.setStatus(publicKey, status, clock.now());
      if (status === 'suspended') hub.closeAgent(publicKey, CLOSE_CODES.suspended, 'agent suspended');
    },
    listen() {
      return new Promise<string>((resolve, reject) => {
        server.once('error', reject);
        server.listen(o.port, o.host, () => {
          server.off('error', reject);
          port = (server.address() as AddressInfo).port;
          const host = o.host === '0.0.0.0' || o.host === '::' ? '127.0.0.1' : o.host.includes(':') ? `[${o.host}]` : o.host;
          url = `http://${host}:${port}`;
          sweeper = clock.setInterval(sweep, o.sweepIntervalMs).unref();
          logger.info('listening', { url, data_dir: o.dataDir });
          resolve(url);
        });
      });
    },
    close() {
      closed ??= (async () => {
        closing = true;
        for (const a of inFlightAborts) a.abort();
        sweeper?.cancel();
        hub.closeAll(CLOSE_CODES.goingAway, 'relay shutting down');
        const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        if (inFlight > 0) {
          await Promise.race([
            new Promise<void>((resolve) => (idle = resolve)),
            new Promise<void>((resolve) => setTimeout(resolve, 10_000).unref()),
          ]);
        }
        server.closeAllConnections();
        await serverClosed;
        await new Promise<void>((resolve) => wss.close(() => resolve()));
        batcher.close();
        storageOpen = false;
        store.close();
        logger.info('closed', {});
      })();
      return closed;
    },
  };
}
