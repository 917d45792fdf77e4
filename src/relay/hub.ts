/**
 * Live WebSocket connections (spec §5): the auth handshake with its 10 s deadline, the per-agent
 * connection limit, backlog then live pushes, acks, inline sends, JSON and control heartbeats.
 *
 * Each connection streams in one of two modes. `backlog`: pages of stored `sent` messages after
 * its cursor, bounded by count and by bytes, the next page only once the previous one has been
 * written to the socket (so a 100 000-message backlog never sits in memory). `live`: each
 * committed message is pushed as it is stored. A slow reader whose unsent bytes pass HIGH_WATER
 * falls back to backlog mode and catches up from the store, so nothing is skipped and nothing is
 * buffered without bound. A connection with more than MAX_BUFFERED bytes it has not read (pongs
 * and results it keeps asking for) is cut with 1008.
 *
 * Before authentication a connection is nearly free to open, so it gets almost nothing: at most
 * LIMITS.wsPreAuthBytes received (counted on the raw socket, so an unfinished large frame is cut
 * while it arrives: close 1009), and a pong that echoes only a short scalar `ts`.
 *
 * No exception leaves a socket listener: an unexpected one is logged and closes that connection
 * with 1011.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import type { Clock, Timer } from '../core/clock.js';
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
  parseClientFrame,
  type ParsedClientFrame,
} from '../protocol/frames.js';
import type { FrameError } from '../protocol/types.js';
import type { Authenticator } from './auth.js';
import type { Batcher } from './batcher.js';
import type { Directory } from './directory.js';
import { ApiError, isStorageFailure } from './errors.js';
import { connectionId } from './ids.js';
import type { Logger } from './log.js';
import { messageJson, type Messenger, sendResponse } from './messenger.js';
import type { MessageRecord, Store } from './store.js';

export interface HubOptions {
  authTimeoutMs: number;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  maxConnectionsPerAgent: number;
  maxEnvelopeBytes: number;
  maxBodyBytes: number;
}

export interface HubDeps {
  clock: Clock;
  auth: Authenticator;
  directory: Directory;
  messenger: Messenger;
  batcher: Batcher;
  store: Store;
  logger: Logger;
}

const BACKLOG_PAGE = 256;
/** Above this many unsent bytes a connection stops taking pushes and catches up from the store. */
const HIGH_WATER = 1024 * 1024;
/** A connection with more unsent bytes than this (it does not read) is cut. */
const MAX_BUFFERED = 8 * 1024 * 1024;
/** Close codes the relay uses beyond §5.6 (standard WebSocket codes). */
const CLOSE_TOO_BIG = 1009;
const CLOSE_SLOW_READER = 1008;
const CLOSE_INTERNAL = 1011;

class Connection {
  readonly id = connectionId();
  readonly ws: WebSocket;
  readonly remote: string;
  readonly opened: number;
  agent: string | undefined;
  mode: 'backlog' | 'live' = 'backlog';
  /** Store position of the last message pushed. */
  cursor = 0;
  lastSeen: number;
  authTimer: Timer | undefined;
  heartbeatTimer: Timer | undefined;
  closed = false;

  constructor(ws: WebSocket, remote: string, now: number) {
    this.ws = ws;
    this.remote = remote;
    this.opened = now;
    this.lastSeen = now;
  }

  send(frame: string, cb?: (err?: Error) => void): void {
    if (this.closed) return;
    this.ws.send(frame, cb);
  }

  stopTimers(): void {
    this.authTimer?.cancel();
    this.heartbeatTimer?.cancel();
  }
}

function frameError(err: ApiError): FrameError {
  return err.details ? { code: err.code, message: err.message, details: err.details } : { code: err.code, message: err.message };
}

export class Hub {
  readonly #deps: HubDeps;
  readonly #options: HubOptions;
  readonly #all = new Set<Connection>();
  readonly #byAgent = new Map<string, Set<Connection>>();

  constructor(deps: HubDeps, options: HubOptions) {
    this.#deps = deps;
    this.#options = options;
  }

  get connections(): number {
    return this.#all.size;
  }

  /** Authenticated connections of one agent. */
  connectionsOf(agent: string): number {
    return this.#byAgent.get(agent)?.size ?? 0;
  }

  /**
   * Takes over a freshly upgraded socket. `socket` is the raw connection under `ws` (its byte
   * count before authentication is bounded here); `headBytes` arrived with the upgrade request.
   */
  accept(ws: WebSocket, req: IncomingMessage, socket: Duplex, headBytes = 0): void {
    const { clock, logger } = this.#deps;
    const conn = new Connection(ws, req.socket.remoteAddress ?? '', clock.now());
    this.#all.add(conn);
    logger.debug('ws_open', { conn: conn.id, remote: conn.remote });
    conn.authTimer = clock.setTimeout(() => {
      this.#guard(conn, 'auth_timeout', () => {
        if (conn.agent || conn.closed) return;
        this.#send(conn, encodeAuthError({ code: 'unauthorized', message: 'no auth frame within 10 s' }));
        this.#close(conn, CLOSE_CODES.authFailed, 'auth timeout');
      });
    }, this.#options.authTimeoutMs);

    // ws has already attached its own 'data' listener, so a chunk that completes the auth frame
    // is handled (and the connection authenticated) before this listener counts it.
    let received = headBytes;
    const countPreAuth = (chunk: Buffer): void => {
      if (conn.agent || conn.closed) {
        socket.off('data', countPreAuth);
        return;
      }
      received += chunk.length;
      if (received <= LIMITS.wsPreAuthBytes) return;
      socket.off('data', countPreAuth);
      logger.info('ws_preauth_too_large', { conn: conn.id, remote: conn.remote, bytes: received });
      // Stop reading, say why, and cut the connection one turn later (once the close frame is
      // written): no close handshake for a peer that is still pushing bytes we would only discard.
      socket.pause();
      this.#close(conn, CLOSE_TOO_BIG, `at most ${LIMITS.wsPreAuthBytes} bytes before authentication`, false, 0);
    };
    socket.on('data', countPreAuth);

    ws.on('message', (data, isBinary) => {
      this.#guard(conn, 'ws_message', () => {
        conn.lastSeen = clock.now();
        if (isBinary) {
          this.#onBadFrame(conn, new FrameParseError('not_json', 'binary frames are not part of the protocol'));
          return;
        }
        const text = Array.isArray(data) ? Buffer.concat(data).toString('utf8') : Buffer.from(data as ArrayBuffer).toString('utf8');
        this.#onFrame(conn, text);
      });
    });
    ws.on('pong', () => {
      conn.lastSeen = clock.now();
    });
    ws.on('close', (code, reason) => this.#guard(conn, 'ws_close', () => this.#onClosed(conn, code, reason.toString())));
    // ws closes the connection itself after an error (1007 invalid UTF-8, 1009 too big, 1002 protocol).
    ws.on('error', (err) => logger.debug('ws_error', { conn: conn.id, error: err.message }));
  }

  /** Runs `fn` for `conn`; an unexpected throw is logged and closes that connection (1011), never escapes. */
  #guard(conn: Connection, where: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.#deps.logger.error('internal_error', { where, conn: conn.id, agent: conn.agent, error: (err as Error)?.stack ?? String(err) });
      try {
        this.#close(conn, CLOSE_INTERNAL, 'internal error', true);
      } catch {
        this.#forget(conn);
        conn.ws.terminate();
      }
    }
  }

  /**
   * Sends a frame that is not a pushed message (pong, results, errors). A peer that keeps asking
   * for them without reading the answers is cut once MAX_BUFFERED bytes wait for it.
   */
  #send(conn: Connection, frame: string, cb?: (err?: Error) => void): void {
    if (conn.closed) return;
    if (conn.ws.bufferedAmount > MAX_BUFFERED) {
      this.#deps.logger.info('ws_slow_reader', { conn: conn.id, agent: conn.agent, buffered: conn.ws.bufferedAmount });
      this.#close(conn, CLOSE_SLOW_READER, 'slow reader: too much unread data', true);
      return;
    }
    conn.send(frame, cb);
  }

  /** A pong; `ts` is echoed verbatim when short (before auth: only a short number or string). */
  #pong(conn: Connection, frame: Extract<ParsedClientFrame, { type: 'ping' }>): void {
    const ts = frame.ts_text;
    const max = conn.agent ? LIMITS.pongTsMaxBytes : LIMITS.pongTsMaxBytesPreAuth;
    const scalar = conn.agent || typeof frame.ts === 'number' || typeof frame.ts === 'string';
    const echo = ts !== undefined && scalar && ts.length <= max && Buffer.byteLength(ts) <= max;
    this.#send(conn, encodePong(echo ? ts : undefined));
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
      if (frame.type === 'auth') this.#onAuth(conn, frame);
      else if (frame.type === 'ping') this.#pong(conn, frame);
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
        return;
      case 'send':
        if (Buffer.byteLength(text) > this.#options.maxEnvelopeBytes) {
          this.#sendResult(conn, frame.request_id, new ApiError('payload_too_large', `the message is larger than ${this.#options.maxEnvelopeBytes} bytes`));
          return;
        }
        this.#onSend(conn, conn.agent, frame.request_id, frame.message);
        return;
      case 'ping':
        this.#pong(conn, frame);
        return;
      case 'pong':
        return;
      case 'auth':
        this.#send(conn, encodeErrorFrame({ code: 'bad_request', message: 'this connection is already authenticated' }));
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
        new ApiError('bad_request', err.message, { details: { field: '', reason: 'too_deep', limit: LIMITS.maxJsonDepth } }),
      );
      return;
    }
    if (err.reason === 'not_json' || err.reason === 'not_object' || err.reason === 'too_deep') {
      this.#send(conn, encodeErrorFrame({ code: 'bad_request', message: err.message, details: { reason: err.reason } }));
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
        ? new ApiError(v.code as 'bad_request', v.message, { status: v.status, details: { field: v.field, reason: v.reason } })
        : new ApiError('bad_request', err.message);
      this.#sendResult(conn, err.requestId, api);
      return;
    }
    const message = err.reason === 'unknown_type' ? 'unknown frame type' : err.message;
    this.#send(conn, encodeErrorFrame({ code: 'bad_request', message, ...(err.field ? { details: { field: err.field } } : {}) }, err.requestId || undefined));
  }

  #onAuth(conn: Connection, frame: Extract<ParsedClientFrame, { type: 'auth' }>): void {
    const { auth, directory, clock, logger } = this.#deps;
    let agent: string;
    try {
      agent = auth.ws(frame);
    } catch (err) {
      const api = ApiError.from(err);
      this.#send(conn, encodeAuthError(frameError(api)));
      logger.info('ws_auth_failed', { conn: conn.id, remote: conn.remote, code: api.code });
      this.#close(conn, CLOSE_CODES.authFailed, api.code);
      return;
    }
    const now = clock.now();
    const record = directory.ensure(agent, now);
    if (record.status === 'suspended') {
      this.#send(conn, encodeAuthError({ code: 'agent_suspended', message: 'this agent is suspended' }));
      this.#close(conn, CLOSE_CODES.suspended, 'agent suspended');
      return;
    }
    if (this.connectionsOf(agent) >= this.#options.maxConnectionsPerAgent) {
      this.#send(
        conn,
        encodeAuthError({
          code: 'too_many_connections',
          message: `at most ${this.#options.maxConnectionsPerAgent} connections per agent`,
        }),
      );
      logger.info('ws_auth_failed', { conn: conn.id, agent, code: 'too_many_connections' });
      this.#close(conn, CLOSE_CODES.tooManyConnections, 'too many connections');
      return;
    }
    conn.authTimer?.cancel();
    conn.agent = agent;
    let set = this.#byAgent.get(agent);
    if (!set) this.#byAgent.set(agent, (set = new Set()));
    set.add(conn);
    directory.touch(agent, now);
    this.#send(conn, encodeAuthOk(agent));
    logger.info('ws_auth', { conn: conn.id, agent, remote: conn.remote });
    this.#scheduleHeartbeat(conn);
    this.#drain(conn);
  }

  #onSend(conn: Connection, agent: string, requestId: string | undefined, message: Extract<ParsedClientFrame, { type: 'send' }>['message']): void {
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
            this.#deps.logger.error('send_failed', { conn: conn.id, agent, error: (err as Error)?.stack ?? String(err) });
          }
          this.#guard(conn, 'send_result', () => this.#sendResult(conn, requestId, api));
        },
      )
      .catch(() => {});
  }

  #sendResult(conn: Connection, requestId: string | undefined, err: ApiError): void {
    this.#send(conn, encodeSendResultError(requestId, frameError(err)));
  }

  /**
   * Streams the stored backlog after the cursor, then goes live. A page holds at most
   * BACKLOG_PAGE messages and about HIGH_WATER bytes less what is still unsent; the next page is
   * read once the last frame of this one has been written to the socket.
   */
  #drain(conn: Connection): void {
    if (conn.closed || !conn.agent) return;
    conn.mode = 'backlog';
    const now = this.#deps.clock.now();
    const budget = Math.max(1, HIGH_WATER - conn.ws.bufferedAmount);
    const page = this.#deps.store.pending(conn.agent, conn.cursor, BACKLOG_PAGE, now, budget);
    let bytes = 0;
    for (const record of page) bytes += record.body_json.length;
    const more = page.length === BACKLOG_PAGE || bytes >= budget;
    for (let i = 0; i < page.length; i++) {
      const record = page[i]!;
      conn.cursor = record.seq;
      const frame = encodeMessageFrame(messageJson(record, now));
      if (i === page.length - 1 && more) conn.send(frame, (err) => !err && this.#guard(conn, 'backlog', () => this.#drain(conn)));
      else conn.send(frame);
    }
    if (!more) conn.mode = 'live';
  }

  /** Pushes freshly committed messages to their recipients' live connections. */
  push(records: MessageRecord[]): void {
    const now = this.#deps.clock.now();
    for (const record of records) {
      const conns = this.#byAgent.get(record.recipient_key);
      if (!conns) continue;
      let frame: string | undefined;
      for (const conn of conns) {
        if (conn.mode !== 'live' || record.seq <= conn.cursor) continue;
        frame ??= encodeMessageFrame(messageJson(record, now));
        conn.cursor = record.seq;
        if (conn.ws.bufferedAmount > HIGH_WATER) {
          conn.mode = 'backlog';
          conn.send(frame, (err) => !err && this.#guard(conn, 'backlog', () => this.#drain(conn)));
        } else {
          conn.send(frame);
        }
      }
    }
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
    conn.ws.close(code, reason);
    this.#forget(conn);
    if (force) conn.ws.terminate();
    else if (graceMs === 0) setImmediate(() => conn.ws.terminate());
    else setTimeout(() => conn.ws.terminate(), graceMs).unref();
  }

  #forget(conn: Connection): void {
    if (conn.closed) return;
    conn.closed = true;
    conn.stopTimers();
    this.#all.delete(conn);
    if (conn.agent) {
      const set = this.#byAgent.get(conn.agent);
      set?.delete(conn);
      if (set?.size === 0) this.#byAgent.delete(conn.agent);
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
