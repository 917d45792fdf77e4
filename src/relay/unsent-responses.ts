/**
 * HTTP answers the client has not read. What the kernel does not take waits in the process (in
 * node:http's buffers, or as the rest of a large answer written piece by piece): a page of
 * messages can be 8 MiB, and keys are free, so many connections that ask and never read would add
 * up without bound (the WebSocket side has the hub's `maxOutboundBytes` for the same reason).
 *
 * - A relay-wide budget (`maxUnsentResponseBytes`): each answer is counted with what was still
 *   waiting in the process right after it was written (lowered as it drains), until it is
 *   finished (handed to the kernel) or its connection closes. Past the budget, the connection
 *   holding the most is cut until the total fits.
 * - A stall limit (`responseStallTimeoutMs`): an answer that makes no progress for that long is
 *   cut. Progress is less waiting than at the last look, or a `drain`. One large `write` would show
 *   neither until the kernel took its last byte (a slow reader of an 8 MiB page would look stalled
 *   for minutes), so large answers are written in pieces with backpressure (`reply.ts`), like
 *   streamed ones: each piece the client reads is a `drain`. A slow reader keeps its answer; one
 *   that stopped reading loses its connection, and with it the open blob or buffer it held.
 * - A per-address share (`maxUnsentResponseBytesPerAddress`): a client address (`addressKey`)
 *   whose unread answers already hold that much gets `503` for its next requests before any is
 *   built (`full`), so a client that asks and never reads stops costing the work and garbage of
 *   building pages too. Behind a reverse proxy every client has the proxy's address: raise it.
 */
import type { ServerResponse } from 'node:http';
import type { Clock, Timer } from '../core/clock.js';
import { addressKey } from './address.js';
import type { Logger } from './log.js';

interface Held {
  address: string;
  /** Bytes of the answer not yet handed to node (a large answer goes out piece by piece). */
  extra: number;
  /** What it counts against the budget: what waited when it was written, lowered at each look as it drains. */
  bytes: number;
  /** What was waiting at the last look. */
  left: number;
  progressAt: number;
  done(): void;
}

export interface UnsentResponsesOptions {
  maxBytes: number;
  maxBytesPerAddress: number;
  stallTimeoutMs: number;
  clock: Clock;
  logger: Logger;
}

const NOTHING = (): void => {};

export class UnsentResponses {
  readonly #o: UnsentResponsesOptions;
  readonly #held = new Map<ServerResponse, Held>();
  readonly #byAddress = new Map<string, number>();
  #total = 0;
  #timer: Timer | undefined;

  constructor(options: UnsentResponsesOptions) {
    this.#o = options;
  }

  /** Bytes of unfinished answers counted now (tests and diagnostics). */
  get bytes(): number {
    return this.#total;
  }

  /** True when the client at `remote` (a socket's remote address) already holds its share: its next requests are refused. */
  full(remote: string | undefined): boolean {
    if (this.#byAddress.size === 0) return false;
    return (this.#byAddress.get(addressKey(remote)) ?? 0) >= this.#o.maxBytesPerAddress;
  }

  #count(held: Held, bytes: number): void {
    this.#total += bytes;
    const left = (this.#byAddress.get(held.address) ?? 0) + bytes;
    if (left > 0) this.#byAddress.set(held.address, left);
    else this.#byAddress.delete(held.address);
  }

  /**
   * Watches `res` from now until it is finished or closed. `pending`: bytes of the answer still to
   * be written (a large answer is written piece by piece: the returned function is told what is
   * left after each piece); once an answer is written whole, 0, and nothing waiting then costs
   * nothing. Without `pending` (a streamed answer, as it starts) it is watched whatever waits.
   */
  watch(res: ServerResponse, pending?: number): (left: number) => void {
    if (res.writableFinished || res.destroyed || this.#held.has(res)) return NOTHING;
    if (pending === 0 && res.writableLength === 0) return NOTHING;
    const waiting = (pending ?? 0) + res.writableLength;
    const held: Held = {
      address: addressKey(res.req?.socket?.remoteAddress),
      extra: pending ?? 0,
      bytes: waiting,
      left: waiting,
      progressAt: this.#o.clock.now(),
      done: () => {
        res.off('finish', held.done);
        res.off('close', held.done);
        res.off('drain', onDrain);
        if (this.#held.delete(res)) this.#count(held, -held.bytes);
        if (this.#held.size === 0) this.#stopTimer();
      },
    };
    const onDrain = (): void => {
      held.progressAt = this.#o.clock.now();
    };
    res.on('finish', held.done);
    res.on('close', held.done);
    res.on('drain', onDrain);
    this.#held.set(res, held);
    this.#count(held, held.bytes);
    this.#startTimer();
    while (this.#total > this.#o.maxBytes) {
      let largest: [ServerResponse, Held] | undefined;
      for (const entry of this.#held) if (entry[1].bytes > (largest?.[1].bytes ?? 0)) largest = entry;
      if (!largest) break;
      this.#cut(largest[0], largest[1], 'http_outbound_budget');
    }
    return (left) => {
      held.extra = left;
    };
  }

  #cut(res: ServerResponse, held: Held, why: string): void {
    this.#o.logger.info(why, {
      remote: res.req?.socket?.remoteAddress,
      path: res.req?.url?.split('?')[0],
      bytes: held.bytes,
      waiting: held.extra + res.writableLength,
      total: this.#total,
    });
    held.done();
    res.destroy();
  }

  #startTimer(): void {
    if (this.#timer) return;
    // A look every quarter of the limit: an answer that stopped is cut within 1.25× of it.
    const every = Math.max(250, Math.floor(this.#o.stallTimeoutMs / 4));
    this.#timer = this.#o.clock.setInterval(() => this.#look(), every).unref();
  }

  #stopTimer(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
  }

  #look(): void {
    const now = this.#o.clock.now();
    for (const [res, held] of this.#held) {
      const waiting = held.extra + res.writableLength;
      // Nothing waiting means nothing waits on the client (a streamed answer's source may be slow).
      if (waiting === 0 || waiting < held.left) held.progressAt = now;
      held.left = waiting;
      // A reader's answer counts for what still waits, not for what it was.
      if (waiting < held.bytes) {
        this.#count(held, waiting - held.bytes);
        held.bytes = waiting;
      }
      if (now - held.progressAt >= this.#o.stallTimeoutMs) this.#cut(res, held, 'http_response_stalled');
    }
  }

  /** Stops watching (the relay is closing; its sockets go with it). */
  close(): void {
    for (const held of [...this.#held.values()]) held.done();
    this.#stopTimer();
  }
}
