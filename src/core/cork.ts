/**
 * Writes made during one event-loop turn leave in one `writev`: the first write of the turn corks
 * the socket, and a `process.nextTick` uncorks it (after the turn's microtasks, before any timer
 * can fire, so a frame never waits here while something times out). Past `maxBytes` corked, the
 * socket is uncorked at once. Used by the relay's connections and the client's session, both on
 * `ws`'s raw socket.
 */

/** What can be corked: a `net.Socket` (or any Writable). */
export interface Corkable {
  cork(): void;
  uncork(): void;
  readonly destroyed?: boolean;
}

export class TurnCork {
  readonly #maxBytes: number;
  /** The socket corked this turn (each cork is matched by exactly one uncork). */
  #socket: Corkable | undefined;
  #bytes = 0;
  readonly #flushSoon = (): void => this.flush();

  constructor(maxBytes = Number.POSITIVE_INFINITY) {
    this.#maxBytes = maxBytes;
  }

  /** Bytes written since the socket was corked (0: not corked). */
  get bytes(): number {
    return this.#bytes;
  }

  /** Before writing `bytes` to `socket`: corks it for the rest of the turn (once per turn). */
  hold(socket: Corkable | undefined, bytes: number): void {
    if (!this.#socket) {
      if (!socket || typeof socket.cork !== 'function' || socket.destroyed) return;
      socket.cork();
      this.#socket = socket;
      process.nextTick(this.#flushSoon);
    }
    this.#bytes += bytes;
  }

  /** After a write: past `maxBytes` corked, hands it all to the kernel now. */
  check(): void {
    if (this.#bytes > this.#maxBytes) this.flush();
  }

  /** Hands what waits corked to the kernel now (one write). */
  flush(): void {
    const socket = this.#socket;
    this.#socket = undefined;
    this.#bytes = 0;
    socket?.uncork();
  }
}
