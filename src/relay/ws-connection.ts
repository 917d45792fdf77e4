/**
 * One WebSocket connection's state, as the hub keeps it: who it is (once authenticated), the
 * frames held while its auth frame is checked, its registry slot, its delivery (what it is
 * pushed), its timers. Also the socket side `Delivery` writes to (`PushSink`): pushes are
 * flow-controlled there, by `buffered`; everything else the hub sends goes through its own
 * checks (`controlUnsent`, MAX_BUFFERED).
 *
 * Every frame written here is counted until ws has handed it to the kernel (its write callback):
 * `unsent` in all, `controlUnsent` for what is not a pushed message (pongs, results, errors),
 * and the relay-wide total through `Outbound` (the hub's outbound budget).
 *
 * Frames written during one turn leave together (`TurnCork`, core/cork.ts: the first one corks
 * the raw socket, a `process.nextTick` uncorks it), so the turn's frames (a commit's thousand
 * `send_result`s and pushes) cost one `writev` instead of one each. At most CORK_MAX_BYTES wait
 * corked (past that the socket is uncorked at once): corked bytes count in `buffered` like
 * refused ones, and a burst of answers a reader takes at once still stays far below the hub's
 * MAX_CONTROL_UNSENT. The hub uncorks before it closes or destroys a socket, so a close frame and
 * what preceded it still leave first.
 */
import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import type { Timer } from '../core/clock.js';
import { TurnCork } from '../core/cork.js';
import type { Delivery, PushSink } from './delivery.js';
import { FrameScanner } from './frame-scan.js';
import { connectionId } from './ids.js';

/** The relay-wide count of unsent bytes (the hub's): told each frame queued and each one written or dropped. */
export interface Outbound {
  grew(conn: Connection, bytes: number): void;
  shrank(bytes: number): void;
}

/**
 * What one queued frame costs beyond its payload: its header (at most 10 bytes; the relay never
 * masks) and the write request, callback and buffers that hold it until the kernel takes it — so
 * a flood of tiny answers (control pongs) is counted near what it really holds.
 */
const FRAME_OVERHEAD_BYTES = 128;

/** Bytes written corked in one turn before the socket is uncorked early (see the file comment). */
export const CORK_MAX_BYTES = 64 * 1024;

export class Connection implements PushSink {
  readonly id = connectionId();
  readonly ws: WebSocket;
  readonly remote: string;
  readonly opened: number;
  agent: string | undefined;
  /** Set while an auth frame is being checked; frames meanwhile are held (`null`: a binary frame). */
  held: Array<string | null> | undefined;
  heldBytes = 0;
  /** More than the pre-auth budget arrived before authentication: only an auth frame is still accepted. */
  preAuthOver = false;
  /** Bytes received since the last complete frame (the hub's relay-wide budget of unfinished frames). */
  partial = 0;
  /** The raw socket under `ws`. */
  socket: Duplex | undefined;
  /** Holds a slot of the connection registry (given back when the connection goes). */
  slot = false;
  delivery: Delivery | undefined;
  lastSeen: number;
  authTimer: Timer | undefined;
  heartbeatTimer: Timer | undefined;
  closed = false;
  /** Bytes written to `ws` that it has not handed to the kernel yet. */
  unsent = 0;
  /** The part of `unsent` that is not pushed messages (pongs, results, errors, control pongs). */
  controlUnsent = 0;
  /** Frame boundaries in what the peer sends (is it stopped inside a frame?). */
  readonly scan = new FrameScanner();
  /** When the peer's last byte arrived, and the timer that cuts a stalled unfinished frame. */
  partialAt = 0;
  partialTimer: Timer | undefined;
  readonly #outbound: Outbound | undefined;
  #released = false;
  /** An ack arrived since the last ping: the next pong waits for it to be stored. */
  acked = false;
  /** Pongs waiting for stored acks, in order (later pings queue behind). */
  pongs: Promise<void> | undefined;
  /** The turn's frames, corked together (see the file comment). */
  readonly #cork = new TurnCork(CORK_MAX_BYTES);

  constructor(ws: WebSocket, remote: string, now: number, outbound?: Outbound) {
    this.ws = ws;
    this.remote = remote;
    this.opened = now;
    this.lastSeen = now;
    this.#outbound = outbound;
  }

  /** Unsent bytes (`PushSink`), corked ones included. */
  get buffered(): number {
    return this.ws.bufferedAmount;
  }

  /** Hands what waits corked to the kernel now (one write). */
  uncork(): void {
    this.#cork.flush();
  }

  /** A pushed message (`PushSink`): flow control is `Delivery`'s, by `buffered`. */
  write(frame: string, cb?: (err?: Error) => void): void {
    this.send(frame, cb, false);
  }

  /** A text frame; `control` (default): not a pushed message, so it counts toward `controlUnsent`. */
  send(frame: string, cb?: (err?: Error) => void, control = true): void {
    if (this.closed) {
      cb?.(new Error('connection closed'));
      return;
    }
    const bytes = Buffer.byteLength(frame) + FRAME_OVERHEAD_BYTES;
    this.#queued(bytes, control);
    this.#cork.hold(this.socket, bytes);
    this.ws.send(frame, (err) => {
      this.#written(bytes, control);
      cb?.(err);
    });
    this.#cork.check();
  }

  /** Answers a control ping (the relay does it, not ws's autoPong, so the answer is counted). */
  pong(data: Buffer): void {
    if (this.closed) return;
    const bytes = data.length + FRAME_OVERHEAD_BYTES;
    this.#queued(bytes, true);
    this.#cork.hold(this.socket, bytes);
    this.ws.pong(data, false, () => this.#written(bytes, true));
    this.#cork.check();
  }

  #queued(bytes: number, control: boolean): void {
    this.unsent += bytes;
    if (control) this.controlUnsent += bytes;
    this.#outbound?.grew(this, bytes);
  }

  #written(bytes: number, control: boolean): void {
    if (this.#released) return;
    this.unsent -= bytes;
    if (control) this.controlUnsent -= bytes;
    this.#outbound?.shrank(bytes);
  }

  /** The connection is gone: what it still had unsent no longer counts (its socket is being destroyed). */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#outbound?.shrank(this.unsent);
    this.unsent = 0;
    this.controlUnsent = 0;
  }

  stopTimers(): void {
    this.authTimer?.cancel();
    this.heartbeatTimer?.cancel();
    this.partialTimer?.cancel();
  }
}
