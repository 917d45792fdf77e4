/**
 * Live WebSocket connections (spec §5): the auth handshake with its 10 s deadline, the per-agent
 * connection limit, backlog then live pushes, acks, inline sends, JSON and control heartbeats.
 *
 * Each connection streams in one of two modes. `backlog`: pages of stored `sent` messages after
 * its cursor, the next page only once the previous one has been written to the socket (so a
 * 100 000-message backlog never sits in memory). `live`: each committed message is pushed as it
 * is stored. A slow reader whose buffer fills falls back to backlog mode and catches up from the
 * store, so nothing is skipped and nothing is buffered without bound.
 */
import type { IncomingMessage } from 'node:http';
import type { WebSocket } from 'ws';
import type { Clock, Timer } from '../core/clock.js';
import { CLOSE_CODES } from '../protocol/constants.js';
import { FrameParseError, parseClientFrame, type ParsedClientFrame } from '../protocol/frames.js';
import type { FrameError, JsonObject } from '../protocol/types.js';
import type { Authenticator } from './auth.js';
import type { Batcher } from './batcher.js';
import type { Directory } from './directory.js';
import { ApiError } from './errors.js';
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
/** Above this many buffered bytes a connection stops taking live pushes and catches up from the store. */
const HIGH_WATER = 4 * 1024 * 1024;

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

function errorFrame(type: 'error' | 'auth_result', error: FrameError, extra: Record<string, unknown> = {}): string {
  return JSON.stringify(type === 'auth_result' ? { type, status: 'error', error } : { type, error, ...extra });
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

  /** Takes over a freshly upgraded socket. */
  accept(ws: WebSocket, req: IncomingMessage): void {
    const { clock, logger } = this.#deps;
    const conn = new Connection(ws, req.socket.remoteAddress ?? '', clock.now());
    this.#all.add(conn);
    logger.debug('ws_open', { conn: conn.id, remote: conn.remote });
    conn.authTimer = clock.setTimeout(() => {
      if (conn.agent || conn.closed) return;
      conn.send(errorFrame('auth_result', { code: 'unauthorized', message: 'no auth frame within 10 s' }));
      this.#close(conn, CLOSE_CODES.authFailed, 'auth timeout');
    }, this.#options.authTimeoutMs);

    ws.on('message', (data, isBinary) => {
      conn.lastSeen = clock.now();
      const text = Array.isArray(data) ? Buffer.concat(data).toString('utf8') : Buffer.from(data as ArrayBuffer).toString('utf8');
      this.#onFrame(conn, text, isBinary);
    });
    ws.on('pong', () => {
      conn.lastSeen = clock.now();
    });
    ws.on('close', (code, reason) => this.#onClosed(conn, code, reason.toString()));
    ws.on('error', (err) => logger.debug('ws_error', { conn: conn.id, error: err.message }));
  }

  #onFrame(conn: Connection, text: string, isBinary: boolean): void {
    let frame: ParsedClientFrame;
    try {
      if (isBinary) throw new FrameParseError('not_json', 'binary frames are not part of the protocol');
      frame = parseClientFrame(text, { maxBodyBytes: this.#options.maxBodyBytes });
    } catch (err) {
      this.#onBadFrame(conn, err);
      return;
    }
    if (!conn.agent) {
      if (frame.type === 'auth') this.#onAuth(conn, frame);
      else if (frame.type === 'ping') conn.send(JSON.stringify(frame.ts === undefined ? { type: 'pong' } : { type: 'pong', ts: frame.ts }));
      else {
        conn.send(errorFrame('error', { code: 'unauthorized', message: 'authenticate first: send an auth frame' }));
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
        conn.send(JSON.stringify(frame.ts === undefined ? { type: 'pong' } : { type: 'pong', ts: frame.ts }));
        return;
      case 'pong':
        return;
      case 'auth':
        conn.send(errorFrame('error', { code: 'bad_request', message: 'this connection is already authenticated' }));
        return;
    }
  }

  #onBadFrame(conn: Connection, err: unknown): void {
    if (!(err instanceof FrameParseError)) throw err;
    if (err.reason === 'not_json' || err.reason === 'not_object') {
      conn.send(errorFrame('error', { code: 'bad_request', message: err.message }));
      this.#close(conn, CLOSE_CODES.protocolError, 'malformed frame');
      return;
    }
    if (err.frameType === 'auth' && !conn.agent) {
      conn.send(errorFrame('auth_result', { code: 'unauthorized', message: err.message }));
      this.#close(conn, CLOSE_CODES.authFailed, 'malformed auth frame');
      return;
    }
    if (!conn.agent) {
      conn.send(errorFrame('error', { code: 'unauthorized', message: 'authenticate first: send an auth frame' }));
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
    const extra = err.requestId ? { request_id: err.requestId } : {};
    const message = err.reason === 'unknown_type' ? 'unknown frame type' : err.message;
    conn.send(errorFrame('error', { code: 'bad_request', message, ...(err.field ? { details: { field: err.field } } : {}) }, extra));
  }

  #onAuth(conn: Connection, frame: Extract<ParsedClientFrame, { type: 'auth' }>): void {
    const { auth, directory, clock, logger } = this.#deps;
    let agent: string;
    try {
      agent = auth.ws(frame);
    } catch (err) {
      const api = ApiError.from(err);
      conn.send(errorFrame('auth_result', frameError(api)));
      logger.info('ws_auth_failed', { conn: conn.id, remote: conn.remote, code: api.code });
      this.#close(conn, CLOSE_CODES.authFailed, api.code);
      return;
    }
    const now = clock.now();
    const record = directory.ensure(agent, now);
    if (record.status === 'suspended') {
      conn.send(errorFrame('auth_result', { code: 'agent_suspended', message: 'this agent is suspended' }));
      this.#close(conn, CLOSE_CODES.suspended, 'agent suspended');
      return;
    }
    if (this.connectionsOf(agent) >= this.#options.maxConnectionsPerAgent) {
      conn.send(
        errorFrame('auth_result', {
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
    conn.send(JSON.stringify({ type: 'auth_result', status: 'ok', public_key: agent }));
    logger.info('ws_auth', { conn: conn.id, agent, remote: conn.remote });
    this.#scheduleHeartbeat(conn);
    this.#drain(conn);
  }

  #onSend(conn: Connection, agent: string, requestId: string | undefined, message: Extract<ParsedClientFrame, { type: 'send' }>['message']): void {
    this.#deps.messenger.send(agent, message).then(
      ({ record }) => {
        const { message_id, created_at, expires_at } = sendResponse(record);
        const head = requestId === undefined ? { type: 'send_result' } : { type: 'send_result', request_id: requestId };
        conn.send(JSON.stringify({ ...head, status: 'ok', message_id, created_at, expires_at }));
      },
      (err: unknown) => this.#sendResult(conn, requestId, ApiError.from(err)),
    );
  }

  #sendResult(conn: Connection, requestId: string | undefined, err: ApiError): void {
    const frame: Record<string, unknown> = { type: 'send_result' };
    if (requestId !== undefined) frame['request_id'] = requestId;
    frame['status'] = 'error';
    frame['error'] = { code: err.code, message: err.message, details: (err.details ?? {}) as JsonObject };
    conn.send(JSON.stringify(frame));
  }

  /** Streams the stored backlog after the cursor, one page per socket write, then goes live. */
  #drain(conn: Connection): void {
    if (conn.closed || !conn.agent) return;
    conn.mode = 'backlog';
    const now = this.#deps.clock.now();
    const page = this.#deps.store.pending(conn.agent, conn.cursor, BACKLOG_PAGE, now);
    for (let i = 0; i < page.length; i++) {
      const record = page[i]!;
      conn.cursor = record.seq;
      const frame = `{"type":"message","message":${messageJson(record, now)}}`;
      if (i === page.length - 1 && page.length === BACKLOG_PAGE) conn.send(frame, (err) => !err && this.#drain(conn));
      else conn.send(frame);
    }
    if (page.length < BACKLOG_PAGE) conn.mode = 'live';
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
        frame ??= `{"type":"message","message":${messageJson(record, now)}}`;
        conn.cursor = record.seq;
        if (conn.ws.bufferedAmount > HIGH_WATER) {
          conn.mode = 'backlog';
          conn.send(frame, (err) => !err && this.#drain(conn));
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
        if (conn.closed) return;
        if (conn.lastSeen < pingedAt) {
          this.#deps.logger.info('ws_heartbeat_timeout', { conn: conn.id, agent: conn.agent });
          this.#close(conn, CLOSE_CODES.heartbeatTimeout, 'heartbeat timeout', true);
          return;
        }
        this.#scheduleHeartbeat(conn);
      }, this.#options.heartbeatTimeoutMs);
    }, this.#options.heartbeatIntervalMs);
  }

  /** Closes with a code; a peer that does not answer the close handshake is cut off. */
  #close(conn: Connection, code: number, reason: string, force = false): void {
    if (conn.closed) return;
    conn.ws.close(code, reason);
    this.#forget(conn);
    if (force) conn.ws.terminate();
    else setTimeout(() => conn.ws.terminate(), 2000).unref();
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
