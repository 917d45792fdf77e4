/**
 * A WebSocket session that stays connected (docs/protocol.md §5). Status is a typed union:
 *
 *   idle → connecting → authenticating → ready ⇄ reconnecting → … → closed
 *
 * Every connect signs a fresh auth frame. What happens after a close is decided in one table
 * keyed by close code (habit 8, after @discordjs/ws): auth failures and clock skew are explained
 * and retried with backoff only a few times, "too many connections" waits 30 s, a suspended agent
 * stops, everything else reconnects with exponential backoff and jitter. Inline sends are matched
 * to their `send_result` through one pending table; a drop fails them as "outcome unknown".
 */
import WebSocket from 'ws';
import { deferred } from '../core/async.js';
import { Backoff, type BackoffOptions } from '../core/backoff.js';
import { type Clock, systemClock, type Timer } from '../core/clock.js';
import { type Corkable, TurnCork } from '../core/cork.js';
import { TypedEmitter } from '../core/emitter.js';
import { MrpError, NetworkError, OutcomeUnknownError, type RelayError } from '../core/errors.js';
import { CLOSE_CODES, TIMING } from '../protocol/constants.js';
import { relayErrorFromFrame } from '../protocol/envelope.js';
import {
  type EncodedSend,
  encodeAckFrame,
  encodeAuthFrame,
  encodePingFrame,
  encodePongFrame,
  encodeSendFrame,
} from '../protocol/frames.js';
import { type RejectedMessage, readServerFrame } from '../protocol/inbound.js';
import { authFrame, type Keypair } from '../protocol/signing.js';
import type { Message, SendRequest, SendResponse } from '../protocol/types.js';
import { Heartbeat } from './heartbeat.js';
import { CERT_VERDICTS, handshakeFailureText } from './http.js';
import { PendingTable } from './pending.js';

/**
 * Largest frame read from the relay: a message is at most a 2 MiB envelope, which JSON escaping
 * can at most triple; anything bigger closes the connection (1009) instead of filling memory.
 */
export const MAX_FRAME_BYTES = 8 * 1024 * 1024;

/** How a `message` frame from a relay that writes `type` first begins (large ones are skipped unread when full). */
const MESSAGE_PREFIX = Buffer.from('{"type":"message"');

export type SessionStatus = 'idle' | 'connecting' | 'authenticating' | 'ready' | 'reconnecting' | 'closed';

export interface DisconnectInfo {
  code: number;
  reason: string;
  /** What happened and what the session does about it, for people. */
  explanation: string;
  willReconnect: boolean;
  delayMs: number;
  /** The relay's auth_result error, when authentication failed. */
  authError?: RelayError;
}

export interface SessionEvents extends Record<string, unknown[]> {
  status: [SessionStatus];
  ready: [{ publicKey: string; reconnected: boolean }];
  /** A pushed message, with the size of its frame's text. */
  message: [message: Message, bytes: number];
  /** A pushed message that cannot be handed over (too deep, malformed); identity null when unreadable. */
  rejected: [RejectedMessage];
  disconnect: [DisconnectInfo];
  /** A protocol oddity that did not end the session. */
  warning: [MrpError];
  /** The session gave up (suspended agent, repeated auth failures). */
  fatal: [MrpError];
}

export interface SessionOptions {
  /** `ws[s]://host/v1/ws`. */
  url: string;
  keypair: Keypair;
  clock?: Clock;
  backoff?: BackoffOptions;
  /** Connected this long, the backoff and auth-failure counters reset (default 60 s). */
  stableMs?: number;
  heartbeatIdleMs?: number;
  heartbeatTimeoutMs?: number;
  /** How long to wait for auth_result (default 10 s). */
  authTimeoutMs?: number;
  /** How long an inline send waits for its send_result (default 30 s). */
  sendTimeoutMs?: number;
  /** Consecutive auth failures before giving up (default 5). */
  maxAuthFailures?: number;
  /** Wait after close 4002 (default 30 s). */
  tooManyConnectionsDelayMs?: number;
  /** WebSocket factory (tests use it to reach scripted servers). */
  createSocket?: (url: string) => WebSocket;
  /** Called for every frame sent or received (for `--debug`). */
  trace?: (event: FrameTrace) => void;
}

/** One WebSocket frame as `trace` sees it. `text` is never given for `auth` (it holds a signature) or an unrecognised frame. */
export interface FrameTrace {
  direction: 'in' | 'out';
  type: string;
  bytes: number;
  /** The error code an incoming `error`, `send_result` or `auth_result` carries. */
  code: string | undefined;
  text: string | undefined;
}

function frameTrace(direction: 'in' | 'out', type: string, text: string, code?: string): FrameTrace {
  return {
    direction,
    type,
    bytes: Buffer.byteLength(text),
    code,
    text: type === 'auth' || type === 'unknown' ? undefined : text,
  };
}

export const SESSION_DEFAULTS = {
  stableMs: 60_000,
  heartbeatIdleMs: TIMING.heartbeatIntervalMs,
  heartbeatTimeoutMs: TIMING.heartbeatTimeoutMs,
  authTimeoutMs: TIMING.wsAuthTimeoutMs,
  sendTimeoutMs: 30_000,
  maxAuthFailures: 5,
  tooManyConnectionsDelayMs: 30_000,
} as const;

/** What to do after a close. */
export interface Recovery {
  action: 'reconnect' | 'stop';
  /** `immediate`: first retry at once; `backoff`: next backoff delay; a number: at least that long. */
  delay: 'immediate' | 'backoff' | number;
  authFailure: boolean;
  explanation: string;
}

/** Close code (§5.6) → recovery. The one place that decides. */
export function recoveryFor(
  code: number,
  authError: RelayError | undefined,
  options: { tooManyConnectionsDelayMs: number },
): Recovery {
  switch (code) {
    case CLOSE_CODES.normal:
      return {
        action: 'reconnect',
        delay: 'backoff',
        authFailure: false,
        explanation: 'the relay closed the connection',
      };
    case CLOSE_CODES.goingAway:
      return { action: 'reconnect', delay: 'backoff', authFailure: false, explanation: 'the relay is restarting' };
    case CLOSE_CODES.protocolError:
      return {
        action: 'reconnect',
        delay: 'backoff',
        authFailure: false,
        explanation: 'the relay refused a malformed frame',
      };
    case CLOSE_CODES.authFailed:
      return { action: 'reconnect', delay: 'backoff', authFailure: true, explanation: explainAuth(authError) };
    case CLOSE_CODES.tooManyConnections:
      return {
        action: 'reconnect',
        delay: options.tooManyConnectionsDelayMs,
        authFailure: false,
        explanation: 'another process is already connected with this key (the relay allows 2 connections per agent)',
      };
    case CLOSE_CODES.suspended:
      return {
        action: 'stop',
        delay: 'backoff',
        authFailure: false,
        explanation: 'the relay says this agent is suspended or deleted',
      };
    case CLOSE_CODES.heartbeatTimeout:
      return {
        action: 'reconnect',
        delay: 'immediate',
        authFailure: false,
        explanation: 'the relay missed our heartbeat',
      };
    default:
      return {
        action: 'reconnect',
        delay: 'backoff',
        authFailure: false,
        explanation: `connection lost (code ${code})`,
      };
  }
}

function explainAuth(err: RelayError | undefined): string {
  switch (err?.code) {
    case 'timestamp_expired':
      return "authentication refused: this machine's clock is more than 5 minutes off the relay's; fix the system clock (NTP)";
    case 'invalid_signature':
      return 'authentication refused: the relay could not verify our signature; check the key file';
    case 'replay_detected':
      return 'authentication refused: the auth frame was a replay';
    case 'agent_suspended':
      return 'authentication refused: this agent is suspended';
    default:
      return err ? `authentication refused (${err.code}: ${err.message})` : 'authentication failed or timed out';
  }
}

export class Session extends TypedEmitter<SessionEvents> {
  readonly #o: Required<Omit<SessionOptions, 'createSocket' | 'backoff' | 'clock' | 'trace'>> &
    Pick<SessionOptions, 'createSocket' | 'trace'>;
  readonly #clock: Clock;
  readonly #backoff: Backoff;
  readonly #pending: PendingTable<SendResponse>;
  readonly #heartbeat: Heartbeat;
  readonly #idPrefix = Math.random().toString(36).slice(2, 8);
  #status: SessionStatus = 'idle';
  #ws: WebSocket | undefined;
  #wanted = false;
  #nextId = 0;
  #authFailures = 0;
  #everReady = false;
  #authError: RelayError | undefined;
  #zombie = false;
  /** Why the socket failed (ECONNREFUSED, …), for the next disconnect's explanation. */
  #transportError: string | undefined;
  #timers: { auth?: Timer; stable?: Timer; reconnect?: Timer } = {};
  /**
   * The consumer has no room: pushed messages are dropped unread (they stay unacked on the
   * relay), so a flood of large messages costs no parsing. Other frames are read as usual.
   */
  dropMessages = false;
  #closed = deferred<void>();

  constructor(options: SessionOptions) {
    super();
    if (!/^wss?:\/\//.test(options.url))
      throw new TypeError(`Session: url must start with ws:// or wss:// (got ${options.url})`);
    this.#o = { ...SESSION_DEFAULTS, ...options };
    this.#clock = options.clock ?? systemClock;
    this.#backoff = new Backoff(options.backoff);
    this.#pending = new PendingTable(this.#clock);
    this.#heartbeat = new Heartbeat(
      this.#clock,
      {
        ping: () => this.#sendText(encodePingFrame(this.#clock.now())),
        dead: () => {
          this.#zombie = true;
          this.#ws?.terminate();
        },
      },
      { idleMs: this.#o.heartbeatIdleMs, timeoutMs: this.#o.heartbeatTimeoutMs },
    );
  }

  get status(): SessionStatus {
    return this.#status;
  }

  /** Sends waiting for their send_result. */
  get inFlight(): number {
    return this.#pending.size;
  }

  /** Starts connecting; reconnects until `close()`. */
  start(): void {
    if (this.#wanted || this.#status === 'closed') return;
    this.#wanted = true;
    this.#connect();
  }

  /** Resolves when the session is ready (or rejects if it closes first). */
  ready(signal?: AbortSignal): Promise<void> {
    if (this.#status === 'ready') return Promise.resolve();
    if (this.#status === 'closed') return Promise.reject(new NetworkError('session closed', { code: 'not_connected' }));
    return new Promise((resolve, reject) => {
      const onReady = (): void => done(resolve);
      const onStatus = (s: SessionStatus): void => {
        if (s === 'closed') done(() => reject(new NetworkError('session closed', { code: 'not_connected' })));
      };
      const onAbort = (): void => done(() => reject(signal?.reason));
      const done = (fn: () => void): void => {
        this.off('ready', onReady);
        this.off('status', onStatus);
        signal?.removeEventListener('abort', onAbort);
        fn();
      };
      this.on('ready', onReady);
      this.on('status', onStatus);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Inline send (§5.4). Fails fast when not connected; a drop before the answer is
   * OutcomeUnknownError. An `EncodedSend`'s body goes out as its exact text.
   */
  send(request: SendRequest | EncodedSend, options: { timeoutMs?: number } = {}): Promise<SendResponse> {
    if (this.#status !== 'ready' || !this.#ws) {
      return Promise.reject(new NetworkError('not connected to the relay', { code: 'not_connected' }));
    }
    const id = `${this.#idPrefix}-${++this.#nextId}`;
    const answer = this.#pending.add(id, options.timeoutMs ?? this.#o.sendTimeoutMs, 'inline send');
    this.#sendText(encodeSendFrame(id, request));
    return answer;
  }

  /** Acknowledges a message (§5.3); false when not connected (the relay will offer it again). */
  ack(messageId: string): boolean {
    if (this.#status !== 'ready') return false;
    return this.#sendText(encodeAckFrame(messageId));
  }

  /** Closes with 1000 and stops reconnecting. */
  async close(): Promise<void> {
    this.#wanted = false;
    this.#timers.reconnect?.cancel();
    const ws = this.#ws;
    if (ws && ws.readyState !== WebSocket.CLOSED) {
      ws.close(CLOSE_CODES.normal, 'client closing');
      const kill = setTimeout(() => ws.terminate(), 2000);
      await this.#closed.promise;
      clearTimeout(kill);
    } else {
      this.#finish();
    }
  }

  #setStatus(status: SessionStatus): void {
    if (this.#status === status) return;
    this.#status = status;
    this.emit('status', status);
  }

  #sendText(text: string): boolean {
    const ws = this.#ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    // `ws` exposes its socket only as `_socket`; without it (another implementation) frames go one by one.
    this.#cork.hold((ws as unknown as { _socket?: Corkable })._socket, text.length);
    ws.send(text);
    if (this.#o.trace) this.#o.trace(frameTrace('out', /^\{"type":"(\w+)"/.exec(text)?.[1] ?? 'unknown', text));
    return true;
  }

  /**
   * Frames sent while one batch of callbacks runs (the replies and acks of every message that
   * finished on one read from the relay) leave in one write instead of a syscall each.
   */
  readonly #cork = new TurnCork();

  #connect(): void {
    this.#setStatus(this.#everReady ? 'reconnecting' : 'connecting');
    this.#authError = undefined;
    this.#zombie = false;
    this.#transportError = undefined;
    let ws: WebSocket;
    try {
      ws = this.#o.createSocket
        ? this.#o.createSocket(this.#o.url)
        : new WebSocket(this.#o.url, {
            perMessageDeflate: false,
            handshakeTimeout: this.#o.authTimeoutMs,
            maxPayload: MAX_FRAME_BYTES,
          });
    } catch (err) {
      this.emit('fatal', new NetworkError(`cannot open ${this.#o.url}: ${(err as Error).message}`, { cause: err }));
      this.#finish();
      return;
    }
    this.#ws = ws;
    ws.on('open', () => {
      try {
        this.#setStatus('authenticating');
        this.#sendText(encodeAuthFrame(authFrame(this.#o.keypair, this.#clock.now())));
        this.#timers.auth = this.#clock.setTimeout(() => {
          if (this.#status === 'authenticating') ws.close(CLOSE_CODES.authFailed, 'no auth_result');
        }, this.#o.authTimeoutMs);
      } catch (err) {
        this.#warn(err);
      }
    });
    ws.on('message', (data) => {
      // Nothing thrown here may reach `ws`: an exception escaping this listener leaves the
      // socket reading no further frames while it still looks connected.
      try {
        this.#heartbeat.activity();
        const bytes = data as Buffer;
        if (this.dropMessages && bytes.length > 1024 && bytes.subarray(0, MESSAGE_PREFIX.length).equals(MESSAGE_PREFIX))
          return;
        this.#onFrame(bytes.toString());
      } catch (err) {
        this.#warn(err);
      }
    });
    ws.on('ping', () => this.#heartbeat.activity());
    ws.on('pong', () => this.#heartbeat.activity());
    ws.on('error', (err: NodeJS.ErrnoException) => {
      // Always followed by 'close', which decides what to do; remember why for the explanation.
      this.#transportError = tlsHandshakeFailure(this.#o.url, err) ?? err.code ?? err.message;
    });
    ws.on('close', (code, reason) => {
      try {
        this.#onClose(ws, code, reason.toString());
      } catch (err) {
        this.#warn(err);
      }
    });
  }

  #warn(err: unknown): void {
    try {
      const e =
        err instanceof MrpError
          ? err
          : new MrpError(
              'internal',
              'internal_error',
              `while reading a frame: ${(err as Error)?.message ?? String(err)}`,
              { cause: err },
            );
      this.emit('warning', e);
    } catch {
      // A listener failed while being told about a failure: nothing more to do.
    }
  }

  #onFrame(text: string): void {
    const read = readServerFrame(text);
    if (read.kind === 'error') {
      this.emit('warning', read.error);
      return;
    }
    if (read.kind === 'rejected') {
      if (this.#status === 'ready') this.emit('rejected', read.rejected);
      return;
    }
    const frame = read.frame;
    if (this.#o.trace)
      this.#o.trace(frameTrace('in', frame.type, text, (frame as { error?: { code?: string } }).error?.code));
    switch (frame.type) {
      case 'auth_result':
        if (frame.status === 'ok') this.#onReady();
        else this.#authError = relayErrorFromFrame(frame.error);
        return;
      case 'message':
        if (this.#status === 'ready') this.emit('message', frame.message, read.bytes);
        return;
      case 'send_result':
        if (frame.request_id === undefined) return;
        if (frame.status === 'ok') {
          this.#pending.resolve(frame.request_id, {
            message_id: frame.message_id,
            status: 'sent',
            created_at: frame.created_at,
            expires_at: frame.expires_at,
          });
        } else {
          this.#pending.reject(frame.request_id, relayErrorFromFrame(frame.error, frame.request_id));
        }
        return;
      case 'error':
        if (
          frame.request_id &&
          this.#pending.reject(frame.request_id, relayErrorFromFrame(frame.error, frame.request_id))
        )
          return;
        this.emit('warning', relayErrorFromFrame(frame.error));
        return;
      case 'ping':
        this.#sendText(encodePongFrame(frame.ts));
        return;
      case 'pong':
        return;
    }
  }

  #onReady(): void {
    this.#timers.auth?.cancel();
    const reconnected = this.#everReady;
    this.#everReady = true;
    this.#setStatus('ready');
    this.#heartbeat.start();
    this.#timers.stable = this.#clock.setTimeout(() => {
      this.#backoff.reset();
      this.#authFailures = 0;
    }, this.#o.stableMs);
    this.emit('ready', { publicKey: this.#o.keypair.publicKey, reconnected });
  }

  #onClose(ws: WebSocket, rawCode: number, reason: string): void {
    if (ws !== this.#ws) return;
    this.#ws = undefined;
    this.#heartbeat.stop();
    this.#timers.auth?.cancel();
    this.#timers.stable?.cancel();
    this.#pending.rejectAll(
      () =>
        new OutcomeUnknownError(
          'the connection closed before the relay answered; the send may or may not have happened',
        ),
    );
    const wasAuthenticating = this.#status === 'authenticating';
    if (!this.#wanted) {
      this.#finish();
      return;
    }
    const code = this.#zombie
      ? CLOSE_CODES.heartbeatTimeout
      : wasAuthenticating && rawCode === 1006 && this.#authError
        ? CLOSE_CODES.authFailed
        : rawCode;
    const recovery = recoveryFor(code, this.#authError, this.#o);
    if (this.#zombie)
      recovery.explanation = `no sign of life from the relay for ${Math.round((this.#o.heartbeatIdleMs + this.#o.heartbeatTimeoutMs) / 1000)} s`;
    else if (rawCode === 1006 && this.#transportError)
      recovery.explanation = `cannot reach the relay at ${this.#o.url} (${this.#transportError})`;
    if (recovery.authFailure) this.#authFailures++;
    const giveUp =
      recovery.action === 'stop' || (recovery.authFailure && this.#authFailures >= this.#o.maxAuthFailures);
    let delay = 0;
    if (!giveUp) {
      if (recovery.delay === 'immediate' && this.#backoff.attempt === 0) {
        delay = 0;
        this.#backoff.next();
      } else {
        delay = this.#backoff.next();
        if (typeof recovery.delay === 'number') delay = Math.max(delay, recovery.delay);
      }
    }
    this.emit('disconnect', {
      code: rawCode,
      reason,
      explanation: recovery.explanation,
      willReconnect: !giveUp,
      delayMs: delay,
      ...(this.#authError ? { authError: this.#authError } : {}),
    });
    if (giveUp) {
      const base = this.#authError ?? new NetworkError(recovery.explanation, { code: 'session_closed' });
      // The only `stop` is 4003: the relay refused this identity (suspended or deleted), whether at
      // auth or later on a live connection. It is an auth refusal (exit 4, not retryable), never a
      // network error, or a supervisor would restart the runner forever.
      this.emit(
        'fatal',
        recovery.authFailure
          ? new MrpError(
              'auth',
              this.#authError?.code ?? 'unauthorized',
              `${recovery.explanation} (${this.#authFailures} attempts)`,
              { cause: base },
            )
          : new MrpError(
              this.#authError || code === CLOSE_CODES.suspended ? 'auth' : 'network',
              this.#authError?.code ?? 'agent_suspended',
              recovery.explanation,
              { cause: base },
            ),
      );
      this.#wanted = false;
      this.#finish();
      return;
    }
    this.#setStatus('reconnecting');
    this.#timers.reconnect = this.#clock.setTimeout(() => {
      if (this.#wanted) this.#connect();
    }, delay);
  }

  #finish(): void {
    this.#heartbeat.stop();
    for (const t of Object.values(this.#timers)) t?.cancel();
    this.#setStatus('closed');
    this.#closed.resolve();
  }
}

/**
 * A wss:// connection that failed in its TLS handshake (wss:// to a relay without TLS, a refused
 * certificate), said as the HTTP transport says it: `TLS handshake failed: EPROTO, wrong version
 * number`. Undefined for any other failure (refused, unknown host: said by their code as before).
 */
export function tlsHandshakeFailure(
  url: string,
  err: NodeJS.ErrnoException & { reason?: unknown },
): string | undefined {
  if (!url.startsWith('wss:')) return undefined;
  const code = typeof err?.code === 'string' ? err.code : '';
  if (code !== 'EPROTO' && !/^ERR_(SSL|TLS)_/.test(code) && !CERT_VERDICTS.has(code)) return undefined;
  return handshakeFailureText(err);
}
