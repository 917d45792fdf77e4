/**
 * Live WebSocket connections (docs/protocol.md §5): the auth handshake with its 10 s deadline, the per-agent
 * connection limit, pushes, acks, inline sends, JSON and control heartbeats.
 *
 * What each connection is pushed (backlog, then live, without assuming store order is commit
 * order) is `Delivery`'s business (`delivery.ts`); the hub routes the bus's `message.stored`
 * events to the connections of their recipient, and closes the sockets of agents the bus says
 * were deleted or suspended — wherever that happened. The per-agent limit is counted by a
 * `ConnectionRegistry` (shareable across processes); the sockets stay here.
 *
 * Authentication is asynchronous (replay cache, store, registry). Frames that arrive while it is
 * under way are held, in order, and handled once it succeeds — at most HELD_MAX_BYTES of them.
 *
 * Before authentication a connection is nearly free to open, so it gets almost nothing: at most
 * LIMITS.wsPreAuthBytes received up to its auth frame (counted on the raw socket before ws
 * parses it, so an unfinished large frame is cut while it arrives and one large write is not
 * parsed past the auth frame: close 1009), and a pong that echoes only a
 * short scalar `ts`. A connection with more than MAX_CONTROL_UNSENT bytes of answers it has not
 * read (pongs — JSON and control —, results, errors it keeps asking for), or more than
 * MAX_BUFFERED bytes unsent in all, is cut with 1008. Unsent bytes are also counted across all
 * connections (`maxOutboundBytes`): past that budget, the connection with the most is cut (1013).
 * An unfinished frame that makes no progress for `partialFrameTimeoutMs` is cut with 1008.
 *
 * No exception leaves a socket listener: an unexpected one is logged and closes that connection
 * with 1011.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import type { Clock } from '../core/clock.js';
import { CLOSE_CODES, LIMITS } from '../protocol/constants.js';
import {
  encodeAuthError,
  encodeAuthOk,
  encodeErrorFrame,
  encodeMessageFrame,
  encodePong,
  encodeSendResultError,
  encodeSendResultOk,
  FrameParseError,
  type ParsedClientFrame,
  parseClientFrame,
} from '../protocol/frames.js';
import type { FrameError } from '../protocol/types.js';
import type { Authenticator } from './auth.js';
import type { Batcher } from './batcher.js';
import type { Bus } from './bus.js';
import type { ConnectionRegistry } from './connections.js';
import { Delivery } from './delivery.js';
import type { Directory } from './directory.js';
import { ApiError, isStorageFailure } from './errors.js';
import type { Logger } from './log.js';
import { messageJson, sendResponse } from './message-json.js';
import type { Messenger } from './messenger.js';
import type { MessageRecord, Store } from './store/store.js';
import { Connection, type Outbound } from './ws-connection.js';

export interface HubOptions {
  authTimeoutMs: number;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  maxConnectionsPerAgent: number;
  maxEnvelopeBytes: number;
  maxBodyBytes: number;
  /** Bytes of unfinished inbound frames held across all connections; past it the largest holder is cut (1013). */
  maxInboundFrameBytes: number;
  /** Bytes written to sockets and not yet taken by the kernel, across all connections; past it the largest holder is cut (1013). */
  maxOutboundBytes: number;
  /** An unfinished inbound frame that gets no new byte for this long is cut (1008). */
  partialFrameTimeoutMs: number;
}

export interface HubDeps {
  clock: Clock;
  auth: Authenticator;
  directory: Directory;
  messenger: Messenger;
  batcher: Batcher;
  store: Store;
  bus: Bus;
  registry: ConnectionRegistry;
  logger: Logger;
}

/** A connection with more unsent bytes than this (it does not read) is cut. */
const MAX_BUFFERED = 8 * 1024 * 1024;
/** A connection with more unsent answers than this (pongs, results, errors: not pushes) is cut. */
export const MAX_CONTROL_UNSENT = 256 * 1024;
/** Close codes the relay uses beyond §5.6 (standard WebSocket codes). */
const CLOSE_TOO_BIG = 1009;
/** Policy violation (1008): a peer that does not read its answers, or stalls mid-frame. */
const CLOSE_SLOW_READER = 1008;
const CLOSE_INTERNAL = 1011;
/** The relay-wide budget of unfinished inbound frames is spent: retry later (standard "try again later"). */
const CLOSE_BUSY = 1013;
/** Frames held while authentication is under way, in bytes (a send frame and some). */
const HELD_MAX_BYTES = 4 * 1024 * 1024;

/** Whether a frame that arrived past the pre-auth budget is the auth frame (the one frame still accepted then). */
function isAuthFrame(text: string | null): boolean {
  if (text === null || text.length > LIMITS.wsPreAuthBytes) return false;
  try {
    return parseClientFrame(text, { maxBodyBytes: 0 }).type === 'auth';
  } catch (err) {
    return err instanceof FrameParseError && err.frameType === 'auth';
  }
}

function frameError(err: ApiError): FrameError {
  return err.details
    ? { code: err.code, message: err.message, details: err.details }
    : { code: err.code, message: err.message };
}

export class Hub {
  readonly #deps: HubDeps;
  readonly #options: HubOptions;
  readonly #all = new Set<Connection>();
  readonly #byAgent = new Map<string, Set<Connection>>();
  /** Bytes received on all connections since each one's last complete frame (see `#countInbound`). */
  #inbound = 0;
  /** Bytes written to all connections and not yet handed to the kernel (see `#overOutbound`). */
  #outbound = 0;
  readonly #ledger: Outbound = {
    grew: (_conn, bytes) => {
      this.#outbound += bytes;
      if (this.#outbound > this.#options.maxOutboundBytes) this.#overOutbound();
    },
    shrank: (bytes) => {
      this.#outbound -= bytes;
    },
  };

  constructor(deps: HubDeps, options: HubOptions) {
    this.#deps = deps;
    this.#options = options;
    deps.bus.subscribe('message.stored', (e) => {
      const conns = this.#byAgent.get(e.recipient);
      if (conns) for (const conn of conns) conn.delivery?.onStored(e);
    });
    deps.bus.subscribe('bus.resync', () => {
      for (const conns of this.#byAgent.values()) for (const conn of conns) conn.delivery?.resync();
    });
    deps.bus.subscribe('agent.deleted', (e) => this.closeAgent(e.agent, CLOSE_CODES.suspended, 'agent deleted'));
    deps.bus.subscribe('agent.changed', (e) => {
      if (e.status === 'suspended') this.closeAgent(e.agent, CLOSE_CODES.suspended, 'agent suspended');
    });
  }

  get connections(): number {
    return this.#all.size;
  }

  /** Bytes of unfinished inbound frames held now, across all connections (tests and diagnostics). */
  get inboundBytes(): number {
    return this.#inbound;
  }

  /** Bytes written to sockets and not yet taken by the kernel, across all connections (tests and diagnostics). */
  get outboundBytes(): number {
    return this.#outbound;
  }

  /**
   * The relay-wide budget of unsent bytes. Each connection is bounded (pushes pause at a window,
   * answers at MAX_CONTROL_UNSENT, all at MAX_BUFFERED), but keys are free: many connections that
   * do not read add up. Past the budget, the connection with the most unsent bytes is cut at once
   * (its socket destroyed, which frees them) with 1013 until the total fits.
   */
  #overOutbound(): void {
    while (this.#outbound > this.#options.maxOutboundBytes) {
      let largest: Connection | undefined;
      for (const c of this.#all) if (c.unsent > (largest?.unsent ?? 0)) largest = c;
      if (!largest) break;
      this.#deps.logger.info('ws_outbound_budget', {
        conn: largest.id,
        agent: largest.agent,
        remote: largest.remote,
        bytes: largest.unsent,
        total: this.#outbound,
      });
      this.#close(largest, CLOSE_BUSY, 'relay busy: too much unsent data', true);
    }
  }

  /**
   * The relay-wide budget of unfinished frames. ws's `maxPayload` bounds one frame per
   * connection, but keys are free: many connections each holding most of a large frame add up.
   * Bytes are counted on the raw socket before ws parses them and forgotten when a frame
   * completes (so a chunk that ends one frame and starts the next under-counts by at most that
   * chunk); past the budget, the connection holding the most is cut with 1013 until it fits.
   */
  #countInbound(conn: Connection, bytes: number): void {
    conn.partial += bytes;
    this.#inbound += bytes;
    while (this.#inbound > this.#options.maxInboundFrameBytes) {
      let largest: Connection | undefined;
      for (const c of this.#all) if (c.partial > (largest?.partial ?? 0)) largest = c;
      if (!largest) break;
      this.#deps.logger.info('ws_inbound_budget', {
        conn: largest.id,
        agent: largest.agent,
        remote: largest.remote,
        bytes: largest.partial,
        total: this.#inbound,
      });
      largest.socket?.pause();
      this.#close(largest, CLOSE_BUSY, 'relay busy: too many unfinished frames', false, 0);
    }
  }

  /**
   * Bytes arrived: progress. While the stream stops inside a frame (or a fragmented message), one
   * timer per connection looks again when the timeout could have run out; a frame still unfinished
   * with no byte since is cut (1008) — its bytes would otherwise be held until the heartbeat or the
   * inbound budget cuts it.
   */
  #watchPartial(conn: Connection, chunk: Buffer): void {
    const { clock } = this.#deps;
    conn.scan.push(chunk);
    conn.partialAt = clock.now();
    if (conn.partialTimer || !conn.scan.unfinished) return;
    const check = (): void => {
      conn.partialTimer = undefined;
      this.#guard(conn, 'partial_frame', () => {
        if (conn.closed || !conn.scan.unfinished) return;
        const idle = clock.now() - conn.partialAt;
        if (idle < this.#options.partialFrameTimeoutMs) {
          conn.partialTimer = clock.setTimeout(check, this.#options.partialFrameTimeoutMs - idle);
          return;
        }
        this.#deps.logger.info('ws_frame_stalled', {
          conn: conn.id,
          agent: conn.agent,
          remote: conn.remote,
          bytes: conn.partial,
        });
        conn.socket?.pause();
        this.#close(conn, CLOSE_SLOW_READER, 'unfinished frame stalled', false, 0);
      });
    };
    conn.partialTimer = clock.setTimeout(check, this.#options.partialFrameTimeoutMs);
  }

  /** A frame (data or control) completed on `conn`: its bytes no longer count as unfinished. */
  #frameDone(conn: Connection): void {
    this.#inbound -= conn.partial;
    conn.partial = 0;
  }

  /**
   * Takes over a freshly upgraded socket. `socket` is the raw connection under `ws` (its byte
   * count before authentication is bounded here).
   */
  accept(ws: WebSocket, req: IncomingMessage, socket: Duplex): void {
    const { clock, logger } = this.#deps;
    const conn = new Connection(ws, req.socket.remoteAddress ?? '', clock.now(), this.#ledger);
    this.#all.add(conn);
    logger.debug('ws_open', { conn: conn.id, remote: conn.remote });
    conn.authTimer = clock.setTimeout(() => {
      this.#guard(conn, 'auth_timeout', () => {
        if (conn.agent || conn.closed) return;
        const within = this.#options.authTimeoutMs;
        const message = `no auth frame within ${within % 1000 === 0 ? `${within / 1000} s` : `${within} ms`}`;
        this.#send(conn, encodeAuthError({ code: 'unauthorized', message }));
        this.#close(conn, CLOSE_CODES.authFailed, 'auth timeout');
      });
    }, this.#options.authTimeoutMs);

    // The pre-auth budget is counted on the raw socket, before ws parses a byte (a prepended
    // listener), so no amount of data sent in one write or trickled into one unfinished frame
    // gets past it. A chunk that crosses the budget is still handed to ws, because it may hold the
    // auth frame (an honest client may write auth and its first sends at once); within that chunk
    // only an auth frame is accepted (see `#preAuthOver`), and once ws has parsed it (the listener
    // after ws's own), a connection that is still unauthenticated is cut. ws buffers at most that
    // one chunk. The upgrade's `head` bytes are unshifted into the socket by ws and counted here
    // as they flow.
    let received = 0;
    const detach = (): void => {
      socket.off('data', countPreAuth);
      socket.off('data', judgePreAuth);
    };
    const pastAuth = (): boolean => conn.agent !== undefined || conn.held !== undefined || conn.closed;
    const countPreAuth = (chunk: Buffer): void => {
      if (pastAuth()) {
        detach();
        return;
      }
      received += chunk.length;
      if (received > LIMITS.wsPreAuthBytes) conn.preAuthOver = true;
    };
    const judgePreAuth = (): void => {
      if (!conn.preAuthOver) return;
      detach();
      if (pastAuth()) return;
      this.#cutPreAuth(conn, socket, received);
    };
    socket.prependListener('data', countPreAuth);
    socket.on('data', judgePreAuth);
    conn.socket = socket;
    socket.prependListener('data', (chunk: Buffer) => {
      if (conn.closed) return;
      this.#countInbound(conn, chunk.length);
      this.#watchPartial(conn, chunk);
    });

    ws.on('message', (data, isBinary) => {
      this.#frameDone(conn);
      this.#guard(conn, 'ws_message', () => {
        conn.lastSeen = clock.now();
        // ws hands a Buffer (binaryType 'nodebuffer'): decoded in place, not copied first.
        const text = isBinary
          ? null
          : Buffer.isBuffer(data)
            ? data.toString('utf8')
            : Array.isArray(data)
              ? Buffer.concat(data).toString('utf8')
              : Buffer.from(data).toString('utf8');
        if (conn.held) this.#hold(conn, text);
        else if (conn.preAuthOver && !conn.agent && !isAuthFrame(text)) this.#cutPreAuth(conn, socket, received);
        else this.#onMessage(conn, text);
      });
    });
    ws.on('pong', () => {
      this.#frameDone(conn);
      conn.lastSeen = clock.now();
    });
    // Control pings are answered here (the server turns ws's autoPong off), so the answers count
    // toward the connection's unread answers: a peer that pings without reading gets cut.
    ws.on('ping', (data) => {
      this.#frameDone(conn);
      this.#guard(conn, 'ws_ping', () => {
        if (this.#checkUnread(conn)) conn.pong(data);
      });
    });
    ws.on('close', (code, reason) =>
      this.#guard(conn, 'ws_close', () => this.#onClosed(conn, code, reason.toString())),
    );
    // ws closes the connection itself after an error (1007 invalid UTF-8, 1009 too big, 1002 protocol).
    ws.on('error', (err) => logger.debug('ws_error', { conn: conn.id, error: err.message }));
  }

  /** Past the pre-auth budget without an auth frame: stop reading, say why, cut one turn later. */
  #cutPreAuth(conn: Connection, socket: Duplex, bytes: number): void {
    if (conn.closed) return;
    this.#deps.logger.info('ws_preauth_too_large', { conn: conn.id, remote: conn.remote, bytes });
    // No close handshake for a peer that is still pushing bytes we would only discard: the close
    // frame is written, then the connection is destroyed.
    socket.pause();
    this.#close(conn, CLOSE_TOO_BIG, `at most ${LIMITS.wsPreAuthBytes} bytes before authentication`, false, 0);
  }

  /** Runs `fn` for `conn`; an unexpected throw is logged and closes that connection (1011), never escapes. */
  #guard(conn: Connection, where: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.#deps.logger.error('internal_error', {
        where,
        conn: conn.id,
        agent: conn.agent,
        error: (err as Error)?.stack ?? String(err),
      });
      try {
        this.#close(conn, CLOSE_INTERNAL, 'internal error', true);
      } catch {
        this.#forget(conn);
        conn.ws.terminate();
      }
    }
  }

  /** `#guard` for work that finishes later: a rejection is logged and closes the connection (1011). */
  #guardAsync(conn: Connection, where: string, work: Promise<void>): void {
    work.catch((err: unknown) => {
      if (isStorageFailure(err))
        this.#deps.logger.error('storage_error', {
          where,
          conn: conn.id,
          code: (err as { code?: string }).code,
          error: (err as Error).message,
        });
      this.#guard(conn, where, () => {
        throw err;
      });
    });
  }

  /** A frame that arrived while authentication is under way: kept for later, within HELD_MAX_BYTES. */
  #hold(conn: Connection, text: string | null): void {
    conn.heldBytes += text?.length ?? 0;
    if (conn.heldBytes > HELD_MAX_BYTES) {
      this.#close(conn, CLOSE_TOO_BIG, 'too much data while authenticating', false, 0);
      return;
    }
    conn.held!.push(text);
  }

  #onMessage(conn: Connection, text: string | null): void {
    if (text === null)
      this.#onBadFrame(conn, new FrameParseError('not_json', 'binary frames are not part of the protocol'));
    else this.#onFrame(conn, text);
  }

  /**
   * Sends a frame that is not a pushed message (pong, results, errors). A peer that keeps asking
   * for them without reading the answers is cut once MAX_BUFFERED bytes wait for it.
   */
  #send(conn: Connection, frame: string, cb?: (err?: Error) => void): void {
    if (conn.closed || !this.#checkUnread(conn)) return;
    conn.send(frame, cb);
  }

  /**
   * False (and the connection cut with 1008) when more than MAX_CONTROL_UNSENT bytes of answers,
   * or more than MAX_BUFFERED bytes in all, wait unread.
   *
   * "Unread" needs both counts: `controlUnsent` is released by write callbacks, which run only
   * after the turn that queued the frames, so a burst of answers the kernel took at once (a
   * thousand inline sends committed together get a thousand `send_result`s in one turn) would
   * look unread; `bufferedAmount` (what the socket still holds: the kernel refused it, or it waits
   * corked for the end of the turn, at most CORK_MAX_BYTES) then stays small. A client that
   * really does not read has both grow.
   */
  #checkUnread(conn: Connection): boolean {
    if (conn.closed) return false;
    const buffered = conn.ws.bufferedAmount;
    if ((conn.controlUnsent <= MAX_CONTROL_UNSENT || buffered <= MAX_CONTROL_UNSENT) && buffered <= MAX_BUFFERED)
      return true;
    this.#deps.logger.info('ws_slow_reader', {
      conn: conn.id,
      agent: conn.agent,
      buffered,
      answers: conn.controlUnsent,
    });
    this.#close(conn, CLOSE_SLOW_READER, 'slow reader: too much unread data', true);
    return false;
  }

  /** A pong; `ts` is echoed verbatim when short (before auth: only a short number or string). */
  #pong(conn: Connection, frame: Extract<ParsedClientFrame, { type: 'ping' }>): void {
    const ts = frame.ts_text;
    const max = conn.agent ? LIMITS.pongTsMaxBytes : LIMITS.pongTsMaxBytesPreAuth;
    const scalar = conn.agent || typeof frame.ts === 'number' || typeof frame.ts === 'string';
    const echo = ts !== undefined && scalar && ts.length <= max && Buffer.byteLength(ts) <= max;
    this.#send(conn, encodePong(echo ? ts : undefined));
  }

  /**
   * A pong after the acks the connection sent before its ping are stored (our choice): a client
   * can ping to know its acks are durable, and a read through any process then sees them. With an
   * asynchronous store that takes one group commit; without acks the pong goes at once.
   */
  #pongAfterAcks(conn: Connection, frame: Extract<ParsedClientFrame, { type: 'ping' }>): void {
    if (!conn.acked && !conn.pongs) {
      this.#pong(conn, frame);
      return;
    }
    const stored = conn.acked ? this.#deps.batcher.flush().catch(() => {}) : undefined;
    conn.acked = false;
    const chain: Promise<void> = Promise.all([conn.pongs, stored])
      .then(() => {
        if (conn.pongs === chain) conn.pongs = undefined;
        if (!conn.closed) this.#pong(conn, frame);
      })
      .catch(() => {});
    conn.pongs = chain;
  }

  #onFrame(conn: Connection, text: string): void {
    let frame: ParsedClientFrame;
    try {
      frame = parseClientFrame(text, { maxBodyBytes: this.#options.maxBodyBytes });
    } catch (err) {
      this.#onBadFrame(conn, err);
      return;
    }
    if (!conn.agent) {
      if (frame.type === 'auth') {
        conn.held = [];
        this.#guardAsync(conn, 'ws_auth', this.#onAuth(conn, frame));
      } else if (frame.type === 'ping') this.#pong(conn, frame);
      else {
        this.#send(conn, encodeErrorFrame({ code: 'unauthorized', message: 'authenticate first: send an auth frame' }));
        this.#close(conn, CLOSE_CODES.authFailed, 'not authenticated');
      }
      return;
    }
    this.#deps.directory.touch(conn.agent, this.#deps.clock.now());
    switch (frame.type) {
      case 'ack':
        this.#deps.batcher.addDelivered(frame.message_id, conn.agent);
        conn.acked = true;
        return;
      case 'send':
        if (Buffer.byteLength(text) > this.#options.maxEnvelopeBytes) {
          this.#sendResult(
            conn,
            frame.request_id,
            new ApiError('payload_too_large', `the message is larger than ${this.#options.maxEnvelopeBytes} bytes`),
          );
          return;
        }
        this.#onSend(conn, conn.agent, frame.request_id, frame.message);
        return;
      case 'ping':
        this.#pongAfterAcks(conn, frame);
        return;
      case 'pong':
        return;
      case 'auth':
        this.#send(
          conn,
          encodeErrorFrame({ code: 'bad_request', message: 'this connection is already authenticated' }),
        );
        return;
    }
  }

  #onBadFrame(conn: Connection, err: unknown): void {
    if (!(err instanceof FrameParseError)) throw err;
    if (err.reason === 'too_deep' && conn.agent && err.frameType === 'send') {
      // A send too deep to parse still gets its answer; the connection stays.
      this.#sendResult(
        conn,
        err.requestId,
        new ApiError('bad_request', err.message, {
          details: { field: '', reason: 'too_deep', limit: LIMITS.maxJsonDepth },
        }),
      );
      return;
    }
    if (err.reason === 'not_json' || err.reason === 'not_object' || err.reason === 'too_deep') {
      this.#send(
        conn,
        encodeErrorFrame({ code: 'bad_request', message: err.message, details: { reason: err.reason } }),
      );
      this.#close(conn, CLOSE_CODES.protocolError, 'malformed frame');
      return;
    }
    if (err.frameType === 'auth' && !conn.agent) {
      this.#send(conn, encodeAuthError({ code: 'unauthorized', message: err.message }));
      this.#close(conn, CLOSE_CODES.authFailed, 'malformed auth frame');
      return;
    }
    if (!conn.agent) {
      this.#send(conn, encodeErrorFrame({ code: 'unauthorized', message: 'authenticate first: send an auth frame' }));
      this.#close(conn, CLOSE_CODES.authFailed, 'not authenticated');
      return;
    }
    if (err.frameType === 'send') {
      const v = err.validation;
      const api = v
        ? new ApiError(v.code as 'bad_request', v.message, {
            status: v.status,
            details: { field: v.field, reason: v.reason },
          })
        : new ApiError('bad_request', err.message);
      this.#sendResult(conn, err.requestId, api);
      return;
    }
    const message = err.reason === 'unknown_type' ? 'unknown frame type' : err.message;
    this.#send(
      conn,
      encodeErrorFrame(
        { code: 'bad_request', message, ...(err.field ? { details: { field: err.field } } : {}) },
        err.requestId || undefined,
      ),
    );
  }

  /** The auth frame (§5.1): signature and replay, the agent (created on first sight), its status, a slot. */
  async #onAuth(conn: Connection, frame: Extract<ParsedClientFrame, { type: 'auth' }>): Promise<void> {
    const { auth, directory, registry, clock, logger } = this.#deps;
    const refuse = (code: number, error: FrameError, reason: string): void => {
      this.#send(conn, encodeAuthError(error));
      this.#close(conn, code, reason);
    };
    let agent: string;
    try {
      agent = await auth.ws(frame);
    } catch (err) {
      const api = ApiError.from(err);
      logger.info('ws_auth_failed', { conn: conn.id, remote: conn.remote, code: api.code });
      refuse(CLOSE_CODES.authFailed, frameError(api), api.code);
      return;
    }
    if (conn.closed) return;
    const record = await directory.ensure(agent, clock.now());
    if (conn.closed) return;
    if (record.status === 'suspended') {
      refuse(CLOSE_CODES.suspended, { code: 'agent_suspended', message: 'this agent is suspended' }, 'agent suspended');
      return;
    }
    const max = this.#options.maxConnectionsPerAgent;
    const acquired = await registry.tryAcquire(agent, conn.id, max);
    if (conn.closed) {
      if (acquired) void registry.release(agent, conn.id).catch(() => {});
      return;
    }
    if (!acquired) {
      logger.info('ws_auth_failed', { conn: conn.id, agent, code: 'too_many_connections' });
      refuse(
        CLOSE_CODES.tooManyConnections,
        { code: 'too_many_connections', message: `at most ${max} connections per agent` },
        'too many connections',
      );
      return;
    }
    conn.slot = true;
    conn.authTimer?.cancel();
    conn.agent = agent;
    // Routed events first, then the first backlog read: see `Delivery`, step 1.
    conn.delivery = new Delivery(agent, conn, this.#source, (err) =>
      this.#guardAsync(conn, 'push', Promise.reject(err)),
    );
    let set = this.#byAgent.get(agent);
    if (!set) this.#byAgent.set(agent, (set = new Set()));
    set.add(conn);
    directory.touch(agent, clock.now());
    this.#send(conn, encodeAuthOk(agent));
    logger.info('ws_auth', { conn: conn.id, agent, remote: conn.remote });
    this.#scheduleHeartbeat(conn);
    conn.delivery.start();
    const held = conn.held ?? [];
    conn.held = undefined;
    conn.heldBytes = 0;
    for (const text of held) {
      if (conn.closed) return;
      this.#onMessage(conn, text);
    }
  }

  /** Where deliveries read from: the store, and the one place a message frame is built. */
  readonly #source = {
    pending: (recipient: string, afterSeq: number, limit: number, now: number, maxBytes: number) =>
      this.#deps.store.pending(recipient, afterSeq, limit, now, maxBytes),
    fetchNow: (id: string) => this.#deps.batcher.justCommitted(id),
    fetch: async (ids: readonly string[]): Promise<MessageRecord[]> => {
      // What this process has just committed is still in hand (see `Batcher.justCommitted`).
      const found: MessageRecord[] = [];
      const missing: string[] = [];
      for (const id of ids) {
        const record = this.#deps.batcher.justCommitted(id);
        if (record) found.push(record);
        else missing.push(id);
      }
      return missing.length === 0 ? found : [...found, ...(await this.#deps.store.getMessages(missing))];
    },
    now: () => this.#deps.clock.now(),
    frame: (record: MessageRecord, now: number) => encodeMessageFrame(messageJson(record, now)),
  };

  #onSend(
    conn: Connection,
    agent: string,
    requestId: string | undefined,
    message: Extract<ParsedClientFrame, { type: 'send' }>['message'],
  ): void {
    this.#deps.messenger
      .send(agent, message)
      .then(
        ({ record }) =>
          this.#guard(conn, 'send_result', () => {
            this.#send(conn, encodeSendResultOk(requestId, sendResponse(record)));
          }),
        (err: unknown) => {
          const api = ApiError.from(err);
          if (api.code === 'internal_error' || isStorageFailure(err)) {
            this.#deps.logger.error('send_failed', {
              conn: conn.id,
              agent,
              error: (err as Error)?.stack ?? String(err),
            });
          }
          this.#guard(conn, 'send_result', () => this.#sendResult(conn, requestId, api));
        },
      )
      .catch(() => {});
  }

  #sendResult(conn: Connection, requestId: string | undefined, err: ApiError): void {
    this.#send(conn, encodeSendResultError(requestId, frameError(err)));
  }

  #scheduleHeartbeat(conn: Connection): void {
    const { clock } = this.#deps;
    conn.heartbeatTimer = clock.setTimeout(() => {
      if (conn.closed) return;
      const pingedAt = clock.now();
      try {
        conn.ws.ping();
      } catch {
        // The socket is already going away; the close handler cleans up.
      }
      conn.heartbeatTimer = clock.setTimeout(() => {
        this.#guard(conn, 'heartbeat', () => {
          if (conn.closed) return;
          if (conn.lastSeen < pingedAt) {
            this.#deps.logger.info('ws_heartbeat_timeout', { conn: conn.id, agent: conn.agent });
            this.#close(conn, CLOSE_CODES.heartbeatTimeout, 'heartbeat timeout', true);
            return;
          }
          this.#scheduleHeartbeat(conn);
        });
      }, this.#options.heartbeatTimeoutMs);
    }, this.#options.heartbeatIntervalMs);
  }

  /** Closes with a code; a peer that does not answer the close handshake is cut off. */
  /**
   * Closes with a code; a peer that does not answer the close handshake is cut off after
   * `graceMs` (`force`: at once, without waiting for the close frame to go out).
   */
  #close(conn: Connection, code: number, reason: string, force = false, graceMs = 2000): void {
    if (conn.closed) return;
    // What waits corked leaves before the close frame (and before a terminate could drop it).
    conn.uncork();
    conn.ws.close(code, reason);
    this.#forget(conn);
    if (force) conn.ws.terminate();
    else if (graceMs === 0) setImmediate(() => conn.ws.terminate());
    else setTimeout(() => conn.ws.terminate(), graceMs).unref();
  }

  #forget(conn: Connection): void {
    if (conn.closed) return;
    conn.closed = true;
    this.#frameDone(conn);
    conn.release();
    conn.stopTimers();
    this.#all.delete(conn);
    conn.held = undefined;
    if (conn.agent) {
      const set = this.#byAgent.get(conn.agent);
      set?.delete(conn);
      if (set?.size === 0) this.#byAgent.delete(conn.agent);
    }
    if (conn.slot) {
      conn.slot = false;
      this.#deps.registry.release(conn.agent!, conn.id).catch((err: unknown) => {
        this.#deps.logger.error('internal_error', {
          where: 'connection_release',
          conn: conn.id,
          error: (err as Error)?.message ?? String(err),
        });
      });
    }
  }

  #onClosed(conn: Connection, code: number, reason: string): void {
    const wasOpen = !conn.closed;
    this.#forget(conn);
    this.#deps.logger.info('ws_close', {
      conn: conn.id,
      agent: conn.agent,
      code,
      reason,
      by: wasOpen ? 'client' : 'relay',
      duration_ms: this.#deps.clock.now() - conn.opened,
    });
  }

  /** Closes every connection of an agent (deleted or suspended). */
  closeAgent(agent: string, code: number, reason: string): void {
    for (const conn of [...(this.#byAgent.get(agent) ?? [])]) this.#close(conn, code, reason);
  }

  /** Closes every connection (relay shutdown: 1001). */
  closeAll(code: number, reason: string): void {
    for (const conn of [...this.#all]) this.#close(conn, code, reason);
  }
}
