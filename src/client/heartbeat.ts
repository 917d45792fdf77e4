/**
 * Client-side liveness (docs/protocol.md §5.5, our choice): after `idleMs` without any frame from the relay,
 * send a JSON ping; if nothing at all arrives within `timeoutMs` more, the connection is a zombie.
 * Takes a tiny target interface and a clock, so tests drive it without sockets or sleeps.
 */
import type { Clock, Timer } from '../core/clock.js';

export interface HeartbeatTarget {
  ping(): void;
  dead(): void;
}

export class Heartbeat {
  readonly #clock: Clock;
  readonly #target: HeartbeatTarget;
  readonly #idleMs: number;
  readonly #timeoutMs: number;
  #last = 0;
  #timer: Timer | undefined;

  constructor(clock: Clock, target: HeartbeatTarget, options: { idleMs: number; timeoutMs: number }) {
    this.#clock = clock;
    this.#target = target;
    this.#idleMs = options.idleMs;
    this.#timeoutMs = options.timeoutMs;
  }

  start(): void {
    this.#last = this.#clock.now();
    this.#schedule(this.#idleMs);
  }

  /** Something arrived from the relay (any frame, control ping or pong). */
  activity(): void {
    this.#last = this.#clock.now();
  }

  stop(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
  }

  #schedule(ms: number): void {
    this.#timer?.cancel();
    this.#timer = this.#clock.setTimeout(() => this.#check(), ms);
  }

  #check(): void {
    const idle = this.#clock.now() - this.#last;
    if (idle < this.#idleMs) {
      this.#schedule(this.#idleMs - idle);
      return;
    }
    const pingedAt = this.#clock.now();
    this.#target.ping();
    this.#timer = this.#clock.setTimeout(() => {
      if (this.#last >= pingedAt) this.#schedule(Math.max(0, this.#idleMs - (this.#clock.now() - this.#last)));
      else {
        this.#timer = undefined;
        this.#target.dead();
      }
    }, this.#timeoutMs);
  }
}
