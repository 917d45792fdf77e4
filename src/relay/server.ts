/**
 * `createRelay(options)`: the assembly. It picks the storage and the process-local state (given
 * or default), wires the components together — store → batcher → bus → hub / long polls /
 * directory caches — and runs node:http and ws on one port, with the sweeper and a graceful
 * close. What a request goes through is `pipeline.ts`; the routes are `routes*.ts`; the options
 * and their defaults are `options.ts`.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import type { LazyAbort } from '../core/async.js';
import { CLOSE_CODES, PATHS, TIMING } from '../protocol/constants.js';
import { errorEnvelope } from '../protocol/envelope.js';
import { AddressCounter, addressKey } from './address.js';
import { Authenticator } from './auth.js';
import { Batcher } from './batcher.js';
import type { BlobStore } from './blobs/blob-store.js';
import { BodyGate } from './body.js';
import { InProcessBus, ScopedBus } from './bus.js';
import { MemoryConnectionRegistry } from './connections.js';
import { Directory, defaultCaches } from './directory.js';
import { CORS_HEADERS, clientErrorResponse, tooManySocketsResponse } from './http.js';
import { Hub } from './hub.js';
import { requestId as newRequestId } from './ids.js';
import { memoryRateLimiter } from './limits.js';
import { Logger } from './log.js';
import { Messenger } from './messenger.js';
import { relayMetrics } from './metrics.js';
import { type RelayOptions, resolveOptions } from './options.js';
import { createPipeline } from './pipeline.js';
import { MemoryReplayCache } from './replay-cache.js';
import { writeJson } from './reply.js';
import { Router } from './router.js';
import { relayRoutes } from './routes.js';
import type { Services } from './services.js';
import { SqliteStore } from './store/sqlite-store.js';
import type { StorageHealth } from './store/store.js';
import { blobSweep, Sweeper } from './sweeper.js';
import { UnsentResponses } from './unsent-responses.js';
import { WebhookWorker } from './webhooks.js';

export { RELAY_DEFAULTS, type RelayOptions } from './options.js';

export interface Relay {
  /** Starts listening; resolves with the base URL. */
  listen(): Promise<string>;
  /** Graceful stop: WebSockets closed with 1001, in-flight requests finished, storage flushed. */
  close(): Promise<void>;
  /** Base URL, e.g. `http://127.0.0.1:8080` (valid after `listen`). */
  readonly url: string;
  readonly port: number;
  /** Operator action: suspend or reactivate an agent (suspending closes its sockets, in every process sharing the bus). */
  setAgentStatus(publicKey: string, status: 'active' | 'suspended'): Promise<void>;
  /** Live WebSocket connections of this process. */
  readonly connections: number;
  /** Bytes of HTTP answers written and not yet taken by the kernel (see `maxUnsentResponseBytes`). */
  readonly unsentResponseBytes: number;
}

/** How long a socket answered from `clientError` may stay open for its peer to read and close. */
const CLIENT_ERROR_LINGER_MS = 5_000;

const errorText = (err: unknown): string => (err as Error)?.stack ?? String(err);

export function createRelay(options: RelayOptions): Relay {
  const o = resolveOptions(options);
  const clock = o.clock;
  const logger = new Logger(o.logger, o.logLevel);
  let hub!: Hub;
  const metrics = relayMetrics(o.metrics, { connections: () => hub.connections });
  const ownStore = o.store === undefined;
  const store = metrics.instrument(
    o.store ?? new SqliteStore(o.dataDir!, { synchronous: o.synchronous, minFreeBytes: o.minFreeDiskBytes }),
  );
  const onListenerError = (err: unknown, event: { type: string }): void =>
    logger.error('internal_error', { where: `bus_${event.type}`, error: errorText(err) });
  const sharedBus = o.bus ?? new InProcessBus({ onListenerError });
  const bus = new ScopedBus(sharedBus, onListenerError);
  const limiter = o.rateLimiter ?? memoryRateLimiter;
  const sendLimit = limiter('send', o.sendRatePerMinute, clock);
  const receiveLimit = limiter('receive', o.receiveRatePerMinute, clock);
  const requestLimit = limiter('request', o.requestRatePerMinute, clock);
  const replayCache = o.replayCache ?? new MemoryReplayCache(clock, o.maxReplayEntries);
  const registry = o.connectionRegistry ?? new MemoryConnectionRegistry();
  const caches = defaultCaches();

  const batcher = new Batcher(store, {
    now: () => clock.now(),
    bus,
    onCommit: (records) => metrics.accepted(records.length),
    onError: (err) => logger.error('storage_error', { error: (err as Error).message }),
  });
  const directory = new Directory({
    store,
    batcher,
    bus,
    caches: { agents: o.caches?.agents ?? caches.agents, acl: o.caches?.acl ?? caches.acl },
    onError: (err) =>
      logger.error('storage_error', { where: 'activity', error: (err as Error)?.message ?? String(err) }),
  });
  const messenger = new Messenger({ store, batcher, directory, bus, clock, sendLimit, receiveLimit });
  const auth = new Authenticator(clock, o.timestampToleranceMs, replayCache);
  hub = new Hub(
    { clock, auth, directory, messenger, batcher, store, bus, registry, logger },
    {
      authTimeoutMs: o.authTimeoutMs,
      heartbeatIntervalMs: o.heartbeatIntervalMs,
      heartbeatTimeoutMs: o.heartbeatTimeoutMs,
      maxConnectionsPerAgent: o.maxConnectionsPerAgent,
      maxEnvelopeBytes: o.maxEnvelopeBytes,
      maxBodyBytes: o.maxBodyBytes,
      maxInboundFrameBytes: o.maxInboundFrameBytes,
      maxOutboundBytes: o.maxOutboundBytes,
      partialFrameTimeoutMs: o.partialFrameTimeoutMs,
    },
  );

  let storageOpen = true;
  /** The storage probe touches the disk: its verdict is reused for a second, and one probe runs at a time. */
  let health: { at: number; value: StorageHealth } | undefined;
  let probing: Promise<StorageHealth> | undefined;
  const probe = async (now: number): Promise<StorageHealth> => {
    let value: StorageHealth;
    try {
      value = await store.health(now);
    } catch (err) {
      value = { ok: false, reason: 'probe_failed', detail: (err as Error).message };
    }
    if (!value.ok && (!health || health.value.ok))
      logger.error('storage_unhealthy', { reason: value.reason, detail: value.detail, file: store.location });
    health = { at: now, value };
    return value;
  };
  const storageHealth = async (): Promise<StorageHealth> => {
    if (!storageOpen) return { ok: false, reason: 'closed' };
    const now = clock.now();
    if (health && now - health.at < 1000 && now >= health.at) return health.value;
    probing ??= probe(now).finally(() => {
      probing = undefined;
    });
    return probing;
  };
  // Blob bytes: the given store, or files under the data directory, opened on first use
  // (createRelay is synchronous; `listen` starts the opening). Without either, no blobs.
  let blobStoreOpening: Promise<BlobStore | undefined> | undefined;
  const blobStore = (): Promise<BlobStore | undefined> => {
    blobStoreOpening ??= (async () => {
      if (o.blobStore) return o.blobStore;
      if (o.dataDir === undefined) return undefined;
      const { FsBlobStore } = await import('./blobs/fs-blob-store.js');
      return FsBlobStore.open({ dataDir: o.dataDir });
    })();
    // A failed opening (an unwritable directory) is tried again by the next request.
    blobStoreOpening.catch(() => {
      blobStoreOpening = undefined;
    });
    return blobStoreOpening;
  };
  const services: Services = {
    clock,
    store,
    blobs: {
      store: blobStore,
      maxBytes: o.maxBlobBytes,
      quota: { maxCount: o.maxBlobsPerAgent, maxBytes: o.maxBlobStorageBytes },
      ttlMs: o.blobTtlMs,
    },
    directory,
    messenger,
    version: o.version,
    maxBodyBytes: o.maxBodyBytes,
    logger,
    storageHealth,
    connections: () => hub.connections,
    allowPrivateWebhooks: o.allowPrivateWebhooks,
  };
  const webhooks = new WebhookWorker(
    { store, bus, clock, logger, onAttempt: (result) => metrics.webhook(result) },
    {
      timeoutMs: o.webhookTimeoutMs,
      concurrency: o.webhookConcurrency,
      perAgent: o.webhookConcurrencyPerAgent,
      allowPrivate: o.allowPrivateWebhooks,
      ...(o.webhookResolver ? { resolver: o.webhookResolver } : {}),
    },
  );

  /** Aborts the handlers of in-flight requests (long polls, streams) at shutdown. */
  const inFlightAborts = new Set<LazyAbort>();
  let closing = false;
  let inFlight = 0;
  let idle: (() => void) | undefined;
  const router = new Router(relayRoutes(o.routes, { maxBlobBytes: o.maxBlobBytes }));
  const unsent = new UnsentResponses({
    maxBytes: o.maxUnsentResponseBytes,
    maxBytesPerAddress: o.maxUnsentResponseBytesPerAddress,
    stallTimeoutMs: o.responseStallTimeoutMs,
    clock,
    logger,
  });
  const handle = createPipeline({
    router,
    services,
    auth,
    directory,
    sendLimit,
    requestLimit,
    gate: new BodyGate(o.maxConcurrentBodies, o.maxBodyBufferBytes, o.maxConcurrentBodiesPerAddress),
    clock,
    logger,
    metrics,
    maxEnvelopeBytes: o.maxEnvelopeBytes,
    bodyTimeoutMs: o.bodyTimeoutMs,
    minBodyBytesPerWindow: o.minBodyBytesPerWindow,
    bodyRateWindowMs: o.bodyRateWindowMs,
    closing: () => closing,
    inFlight: inFlightAborts,
    unsent,
  });

  /** Last resort when `handle` itself failed: a 500 if nothing was answered yet, else cut the connection. */
  const answerCrash = (res: Parameters<typeof handle>[1], err: unknown): void => {
    logger.error('internal_error', { error: errorText(err) });
    try {
      if (!res.headersSent)
        writeJson(res, 500, errorEnvelope('internal_error', 'internal error', newRequestId()), {
          ...CORS_HEADERS,
          Connection: 'close',
        });
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
      // A backstop for the whole request (headers and body); the body timer answers first. With a
      // stream route (a large upload reads for as long as bytes keep coming, each gap bounded by
      // the idle timeout) there is no total limit; JSON bodies keep their own total timeout.
      requestTimeout: router.routes.some((r) => r.body.kind === 'stream')
        ? 0
        : Math.max(o.headersTimeoutMs, o.bodyTimeoutMs) + 20_000,
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

  // Every TCP connection, HTTP or WebSocket, counts against a total and a per-address cap before
  // anything of it is read: idle keep-alive connections cost a file descriptor each, and one
  // address must not be able to hold them all. A connection beyond is answered 503 and closed.
  const tcpSockets = new AddressCounter(o.maxSockets, o.maxSocketsPerAddress);
  server.on('connection', (socket: Socket) => {
    try {
      const address = addressKey(socket.remoteAddress);
      const refused = tcpSockets.refusal(address);
      if (!refused) {
        tcpSockets.add(address);
        socket.once('close', () => tcpSockets.remove(address));
        return;
      }
      socket.pause(); // node:http's parser never sees a byte of it
      if (logger.enabled('info')) {
        logger.info('connection_refused', {
          remote: socket.remoteAddress,
          reason: refused === 'total' ? 'max_sockets' : 'max_sockets_per_address',
        });
      }
      socket.end(tooManySocketsResponse(refused, newRequestId()));
      const linger = setTimeout(() => socket.destroy(), CLIENT_ERROR_LINGER_MS).unref();
      socket.once('close', () => clearTimeout(linger));
    } catch {
      socket.destroy();
    }
  });

  // Requests Node's parser refuses (headers over its limit, a garbage request line, Content-Length
  // with Transfer-Encoding, a header or request timeout) never reach the pipeline: answer them here
  // with the §6 envelope like every other error, once, on a socket with no answer started. Never
  // throws: a socket that cannot take an answer (reset, already answering) is just destroyed.
  const answeredClientErrors = new WeakSet<Duplex>();
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    try {
      // The parser sees the bytes that follow and fails again: the first answer stands.
      if (answeredClientErrors.has(socket)) return;
      const answering = (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage;
      if (err.code === 'ECONNRESET' || !socket.writable || answering?.headersSent) {
        socket.destroy();
        return;
      }
      answeredClientErrors.add(socket);
      const id = newRequestId();
      const { status, text } = clientErrorResponse(err.code, id);
      if (logger.enabled('info')) logger.info('client_error', { status, code: err.code, request_id: id });
      socket.end(text);
      // A peer that never closes its side does not keep the socket: an absolute deadline (an idle
      // timeout would be reset by every byte a slowloris trickles in, each one a new parse error).
      const linger = setTimeout(() => socket.destroy(), CLIENT_ERROR_LINGER_MS).unref();
      socket.once('close', () => clearTimeout(linger));
    } catch {
      socket.destroy();
    }
  });

  const wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    clientTracking: false,
    // Oversized sends get a send_result payload_too_large; only frames past this cap are cut (1009).
    // Before authentication the hub allows far less (LIMITS.wsPreAuthBytes).
    maxPayload: 4 * o.maxEnvelopeBytes,
    // The hub answers control pings itself, so the answers count toward a peer's unread bytes.
    autoPong: false,
  });
  /** WebSocket connections (from the upgrade until the socket closes), in total and per client address. */
  const wsSockets = new AddressCounter(o.maxConnections, o.maxConnectionsPerAddress);
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    try {
      const path = (req.url ?? '').split('?')[0];
      if (path !== PATHS.ws || closing) {
        const status = closing ? '503 Service Unavailable' : '404 Not Found';
        socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
        return;
      }
      const address = addressKey(req.socket.remoteAddress);
      const refused = wsSockets.refusal(address);
      if (refused) {
        logger.info('ws_refused', {
          remote: req.socket.remoteAddress,
          reason: refused === 'total' ? 'max_connections' : 'max_connections_per_address',
        });
        const why = refused === 'total' ? 'too many connections' : 'too many connections from your address';
        socket.end(
          `HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 5\r\nContent-Type: text/plain\r\nContent-Length: ${why.length}\r\n\r\n${why}`,
        );
        return;
      }
      wsSockets.add(address);
      socket.once('close', () => wsSockets.remove(address));
      wss.handleUpgrade(req, socket, head, (ws) => {
        try {
          hub.accept(ws, req, socket);
        } catch (err) {
          logger.error('internal_error', { where: 'ws_accept', error: errorText(err) });
          ws.terminate();
        }
      });
    } catch (err) {
      logger.error('internal_error', { where: 'upgrade', error: errorText(err) });
      socket.destroy();
    }
  });

  const sweeper = new Sweeper(clock, o.sweepIntervalMs, logger, [
    {
      name: 'store',
      run: async (now) => {
        const { expired, purged } = await store.sweep(now, TIMING.expiredRetentionMs);
        if (expired || purged) logger.debug('sweep', { expired, purged });
      },
    },
    { name: 'replay_cache', run: () => replayCache.prune() },
    {
      name: 'rate_limits',
      run: async () => void (await Promise.all([sendLimit.prune(), receiveLimit.prune(), requestLimit.prune()])),
    },
    // A catch-up: deliveries whose bus event was lost (another process committed them) or whose lease ended.
    { name: 'webhooks', run: () => webhooks.wake() },
  ]);

  // Its own timer: blob deletes and orphan scans touch the disk or an object store and may take a
  // while; message expiry must not wait behind them (a tick that finds a sweep running is skipped).
  const blobSweeper = new Sweeper(clock, o.sweepIntervalMs, logger, [blobSweep(store, blobStore, logger)]);

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
    get unsentResponseBytes() {
      return unsent.bytes;
    },
    async setAgentStatus(publicKey, status) {
      // Suspending closes the agent's sockets: the hub that holds them hears `agent.changed`.
      await directory.setStatus(publicKey, status, clock.now());
    },
    listen() {
      return new Promise<string>((resolve, reject) => {
        server.once('error', reject);
        server.listen(o.port, o.host, () => {
          server.off('error', reject);
          port = (server.address() as AddressInfo).port;
          const host =
            o.host === '0.0.0.0' || o.host === '::' ? '127.0.0.1' : o.host.includes(':') ? `[${o.host}]` : o.host;
          url = `http://${host}:${port}`;
          sweeper.start();
          webhooks.start();
          blobSweeper.start();
          void blobStore().catch((err: unknown) =>
            logger.error('storage_error', { where: 'blob_store_open', error: (err as Error)?.message ?? String(err) }),
          );
          logger.info('listening', { url, ...(o.dataDir ? { data_dir: o.dataDir } : { store: store.location }) });
          resolve(url);
        });
      });
    },
    close() {
      closed ??= (async () => {
        closing = true;
        for (const a of inFlightAborts) a.abort();
        await sweeper.stop();
        await webhooks.close();
        await blobSweeper.stop();
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
        unsent.close();
        await serverClosed;
        await new Promise<void>((resolve) => wss.close(() => resolve()));
        await batcher.close();
        await bus.close();
        if (o.bus === undefined) await sharedBus.close();
        storageOpen = false;
        if (ownStore) await store.close();
        if (!o.blobStore && blobStoreOpening) await (await blobStoreOpening.catch(() => undefined))?.close();
        logger.info('closed', {});
      })();
      return closed;
    },
  };
}
