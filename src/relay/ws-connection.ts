/**
 * One WebSocket connection's state, as the hub keeps it: who it is (once authenticated), the
 * frames held while its auth frame is checked, its registry slot, its delivery (what it is
 * pushed), its timers. Also the socket side `Delivery` writes to (`PushSink`): pushes are
 * flow-controlled there, by `buffered`; everything else the hub sends goes through its own
 * MAX_BUFFERED check.
 */
import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import type { Timer } from '../core/clock.js';
import type { Delivery, PushSink } from './delivery.js';
import { connectionId } from './ids.js';

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
  /** An ack arrived since the last ping: the next pong waits for it to be stored. */
  acked = false;
  /** Pongs waiting for stored acks, in order (later pings queue behind). */
  pongs: Promise<void> | undefined;

  constructor(ws: WebSocket, remote: string, now: number) {
    this.ws = ws;
    this.remote = remote;
    this.opened = now;
    this.lastSeen = now;
  }

  /** Unsent bytes (`PushSink`). */
  get buffered(): number {
    return this.ws.bufferedAmount;
  }

  /** A pushed message (`PushSink`): flow control is `Delivery`'s, by `buffered`. */
  write(frame: string, cb?: (err?: Error) => void): void {
    this.send(frame, cb);
  }

  send(frame: string, cb?: (err?: Error) => void): void {
    if (this.closed) {
      cb?.(new Error('connection closed'));
      return;
    }
    this.ws.send(frame, cb);
  }

  stopTimers(): void {
    this.authTimer?.cancel();
    this.heartbeatTimer?.cancel();
  }
}
