/**
 * Reading request bodies, bounded where they enter. Two ways, chosen by the route (`router.ts`):
 *
 * - `readBody`: the whole body into memory, hashed as it arrives, for JSON routes: 413 past
 *   `maxBytes` (before any byte is read when Content-Length says so), 408 when it takes longer
 *   than the body timeout, 503 when the relay-wide gate is full. Never buffers more than
 *   `maxBytes`.
 * - `openStream`: the raw body as an async iterable for stream routes: never buffered (one
 *   chunk at a time, with TCP backpressure), refused past `maxBytes`, 408 after an idle gap,
 *   hashed as it streams, and its end is the signature verdict (see `StreamBody`).
 *
 * `BodyGate` bounds the body reads in progress at once, by count and by bytes held, so stalled or
 * slow uploads cannot pile up memory. A read that would go past either waits its turn in a short
 * queue (a few times the per-address cap from one address, `MAX_WAITING` in all), for at most
 * the body timeout: a client that fires many sends or uploads at once is served as places free
 * up (an honest body takes milliseconds), not refused. Past the queue, or after the wait, it is
 * refused with `503` and `Retry-After: 1`. A waiting request holds its socket and nothing else
 * (its bytes wait in the kernel). The bytes of a body with a Content-Length are reserved up
 * front; a stream holds a chunk at a time and reserves STREAM_RESERVE.
 *
 * The gate is shared by every client, and a body is read before its signature can be checked, so
 * one client must not be able to hold all of it: each client address (`addressKey`: an IPv4
 * address, or an IPv6 /64, the block one host usually has) holds at most `maxPerAddress` places,
 * and a JSON body must keep arriving at `minBytesPerWindow` (or what is left of it) in every
 * `rateWindowMs`, or it is cut with 408 — a body that never comes gives its place back within
 * one window instead of after the whole body timeout. Behind a reverse proxy every client has
 * the proxy's address: raise `maxConcurrentBodiesPerAddress` there.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Clock, Timer } from '../core/clock.js';
import { EMPTY_BODY_HASH } from '../protocol/constants.js';
import { AddressCounter, addressKey } from './address.js';
import { ApiError } from './errors.js';
import type { StreamBody } from './router.js';

/** Limits of one body read. */
export interface BodyLimits {
  /** Most bytes of one body (413 beyond). */
  maxBytes: number;
  /** Time allowed for the whole body to arrive once reading starts (408 beyond). */
  timeoutMs: number;
  /** At least this many bytes (or the rest of the body) must arrive in every `rateWindowMs` (408 otherwise). */
  minBytesPerWindow: number;
  rateWindowMs: number;
}

/** Requests waiting for a place, from all addresses together. */
export const MAX_WAITING = 1024;
/** Requests waiting for a place from one address, as a multiple of the per-address cap. */
const WAITING_PER_PLACE = 4;

interface Waiter {
  address: string;
  bytes: number;
  granted(): void;
  timer: Timer;
}

/** See the file comment. */
export class BodyGate {
  readonly maxActive: number;
  readonly maxBytes: number;
  readonly maxPerAddress: number;
  active = 0;
  bytes = 0;
  readonly #reads: AddressCounter;
  readonly #waiting: Waiter[] = [];

  constructor(maxActive: number, maxBytes: number, maxPerAddress: number = maxActive) {
    this.maxActive = maxActive;
    this.maxBytes = maxBytes;
    this.maxPerAddress = maxPerAddress;
    this.#reads = new AddressCounter(maxActive, maxPerAddress);
  }

  /** Body reads in progress for `address` (an `addressKey`). */
  heldBy(address: string): number {
    return this.#reads.count(address);
  }

  #fits(address: string, bytes: number): boolean {
    return (
      this.heldBy(address) < this.maxPerAddress && this.active < this.maxActive && this.bytes + bytes <= this.maxBytes
    );
  }

  #take(address: string, bytes: number): void {
    this.active++;
    this.bytes += bytes;
    this.#reads.add(address);
  }

  /**
   * Takes a place for `address`, reserving `bytes`: at once when one is free (and nobody from
   * that address waits before it), else in turn within `waitMs`. Rejects with 503 when the
   * queue is full or the wait ends first.
   */
  acquire(address: string, bytes: number, clock: Clock, waitMs: number): Promise<void> {
    let queued = 0;
    for (const w of this.#waiting) if (w.address === address) queued++;
    if (queued === 0 && this.#fits(address, bytes)) {
      this.#take(address, bytes);
      return Promise.resolve();
    }
    if (queued >= this.maxPerAddress * WAITING_PER_PLACE || this.#waiting.length >= MAX_WAITING) {
      const mine = this.heldBy(address);
      return Promise.reject(
        busy(
          mine >= this.maxPerAddress
            ? `${mine} at once from your address and ${queued} waiting`
            : `${this.active} at once and ${this.#waiting.length} waiting`,
        ),
      );
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        address,
        bytes,
        granted: resolve,
        timer: clock.setTimeout(() => {
          const i = this.#waiting.indexOf(waiter);
          if (i >= 0) this.#waiting.splice(i, 1);
          reject(busy(`no place came free within ${Math.round(waitMs / 1000)} s`));
        }, waitMs),
      };
      this.#waiting.push(waiter);
    });
  }

  /** Gives back a place taken with `acquire` and the bytes it holds now; the next waiters that fit get theirs. */
  release(address: string, bytes: number): void {
    this.active--;
    this.bytes -= bytes;
    this.#reads.remove(address);
    for (let i = 0; i < this.#waiting.length && this.active < this.maxActive; ) {
      const w = this.#waiting[i]!;
      if (!this.#fits(w.address, w.bytes)) {
        i++;
        continue;
      }
      this.#waiting.splice(i, 1);
      w.timer.cancel();
      this.#take(w.address, w.bytes);
      w.granted();
    }
  }
}

/** A request body and the SHA-256 (base64url) of its bytes, hashed while it streamed in. */
export interface Body {
  bytes: Buffer;
  hash: string;
}

const EMPTY_BODY: Body = { bytes: Buffer.alloc(0), hash: EMPTY_BODY_HASH };

function busy(what: string): ApiError {
  return new ApiError('service_unavailable', `the relay is reading too many request bodies (${what}); retry shortly`, {
    details: { reason: 'too_many_uploads', retry_after: 1 },
    headers: { 'Retry-After': '1', Connection: 'close' },
  });
}

function timedOut(message: string): ApiError {
  return new ApiError('request_timeout', message, { headers: { Connection: 'close' } });
}

function cutOff(): ApiError {
  return new ApiError('bad_request', 'the request body was cut off', { headers: { Connection: 'close' } });
}

function tooLarge(max: number): ApiError {
  return new ApiError('payload_too_large', `the request body is larger than ${max} bytes`, {
    headers: { Connection: 'close' },
  });
}

/**
 * Reads a request body, hashing it as it arrives: refused with 413 past `maxBytes` (before any
 * byte is read when Content-Length says so), 408 when it takes longer than `timeoutMs`, 503 when
 * the gate is full. Never buffers more than `maxBytes`.
 */
export async function readBody(req: IncomingMessage, limits: BodyLimits, gate: BodyGate, clock: Clock): Promise<Body> {
  const lengthHeader = req.headers['content-length'];
  const declared = lengthHeader === undefined ? Number.NaN : Number(lengthHeader);
  const chunked = req.headers['transfer-encoding'] !== undefined;
  if (!chunked && (lengthHeader === undefined || declared === 0)) {
    req.resume();
    return EMPTY_BODY;
  }
  if (Number.isFinite(declared) && declared > limits.maxBytes) throw tooLarge(limits.maxBytes);
  const address = addressKey(req.socket.remoteAddress);
  let reserved = chunked || !Number.isFinite(declared) ? 0 : declared;
  await gate.acquire(address, reserved, clock, limits.timeoutMs);
  // It may have waited: a client gone meanwhile gives its place back at once.
  if (req.destroyed || req.socket.destroyed) {
    gate.release(address, reserved);
    throw cutOff();
  }
  const started = clock.now();

  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    let timer: Timer | undefined;
    const finish = (err: ApiError | undefined): void => {
      if (settled) return;
      settled = true;
      timer?.cancel();
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onGone);
      req.off('close', onGone);
      gate.release(address, reserved);
      if (err) {
        req.pause();
        reject(err);
      } else {
        resolve(
          size === 0
            ? EMPTY_BODY
            : { bytes: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size), hash: hash.digest('base64url') },
        );
      }
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limits.maxBytes) {
        finish(tooLarge(limits.maxBytes));
        return;
      }
      if (size > reserved) {
        if (gate.bytes + (size - reserved) > gate.maxBytes) {
          finish(busy(`${gate.bytes} bytes held`));
          return;
        }
        gate.bytes += size - reserved;
        reserved = size;
      }
      hash.update(chunk);
      chunks.push(chunk);
    };
    const onEnd = (): void => finish(undefined);
    const onGone = (): void => finish(cutOff());
    // One timer at a time: the end of the current rate window, or the body deadline if sooner.
    const deadline = started + limits.timeoutMs;
    let windowStart = started;
    let sizeAtWindow = 0;
    const check = (): void => {
      const now = clock.now();
      if (now >= deadline) {
        finish(timedOut(`the request body did not arrive within ${Math.round(limits.timeoutMs / 1000)} s`));
        return;
      }
      if (now - windowStart >= limits.rateWindowMs) {
        const left = Number.isFinite(declared) && !chunked ? declared - sizeAtWindow : Number.POSITIVE_INFINITY;
        if (size - sizeAtWindow < Math.min(limits.minBytesPerWindow, left)) {
          finish(
            timedOut(
              `the request body arrives too slowly (${size - sizeAtWindow} bytes in ${Math.round(limits.rateWindowMs / 100) / 10} s; at least ${limits.minBytesPerWindow} needed)`,
            ),
          );
          return;
        }
        windowStart = now;
        sizeAtWindow = size;
      }
      timer = clock.setTimeout(check, Math.max(1, Math.min(windowStart + limits.rateWindowMs, deadline) - now));
    };
    timer = clock.setTimeout(check, Math.min(limits.rateWindowMs, limits.timeoutMs));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onGone);
    req.on('close', onGone);
  });
}

/** Gate bytes a stream holds at most at once (about one socket read). */
export const STREAM_RESERVE = 64 * 1024;

export interface StreamLimits {
  /** Most bytes of the body (413 beyond, as soon as it is passed). */
  maxBytes: number;
  /** 408 when no byte arrives for this long while the handler waits for one. */
  idleTimeoutMs: number;
}

/**
 * The body of a stream route. Iterate it once. Its last step runs `finish` with the body's hash
 * (the signature check and what follows authentication); the iteration ends only if that passes,
 * otherwise it throws — so a consumer that reached the end saw an authentic body.
 */
export class RequestStream implements StreamBody {
  readonly #req: IncomingMessage;
  readonly #limits: StreamLimits;
  readonly #gate: BodyGate;
  readonly #clock: Clock;
  readonly #signal: AbortSignal;
  readonly #finish: (hash: string) => Promise<string>;
  readonly #address: string;
  #received = 0;
  #state: 'new' | 'reading' | 'done' = 'new';
  /** The gate place is taken when reading starts (it may wait its turn), and given back by `release`. */
  #holdsGate = false;
  /** The caller once verified. */
  caller: string | undefined;
  readonly #verdict: Promise<string>;
  #settle!: { resolve(caller: string): void; reject(err: unknown): void };

  /** 413 at once when Content-Length is over the limit; the gate place is taken when reading starts. */
  constructor(
    req: IncomingMessage,
    limits: StreamLimits,
    gate: BodyGate,
    clock: Clock,
    signal: AbortSignal,
    finish: (hash: string) => Promise<string>,
  ) {
    const declared = Number(req.headers['content-length'] ?? Number.NaN);
    if (Number.isFinite(declared) && declared > limits.maxBytes) throw tooLarge(limits.maxBytes);
    this.#address = addressKey(req.socket.remoteAddress);
    this.#req = req;
    this.#limits = limits;
    this.#gate = gate;
    this.#clock = clock;
    this.#signal = signal;
    this.#finish = finish;
    this.#verdict = new Promise<string>((resolve, reject) => (this.#settle = { resolve, reject }));
    this.#verdict.catch(() => {});
  }

  get received(): number {
    return this.#received;
  }

  /** Gives the gate place back (the pipeline calls it when the request ends, read or not). */
  release(): void {
    if (!this.#holdsGate) return;
    this.#holdsGate = false;
    this.#gate.release(this.#address, STREAM_RESERVE);
  }

  verified(): Promise<string> {
    if (this.#state === 'new') {
      return (async () => {
        for await (const _chunk of this) {
          // Read to the end (and dropped): only the verdict is wanted.
        }
        return this.#verdict;
      })();
    }
    return this.#verdict;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array, void, undefined> {
    if (this.#state !== 'new') throw new Error('a stream body can be read once');
    this.#state = 'reading';
    const hash = createHash('sha256');
    const source = this.#req[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    let ended = false;
    try {
      if (!this.#signal.aborted) {
        await this.#gate.acquire(this.#address, STREAM_RESERVE, this.#clock, this.#limits.idleTimeoutMs);
        this.#holdsGate = true;
      }
      for (;;) {
        const next = await this.#next(source);
        if (next.done) break;
        const chunk = next.value;
        this.#received += chunk.length;
        if (this.#received > this.#limits.maxBytes) throw tooLarge(this.#limits.maxBytes);
        hash.update(chunk);
        yield chunk;
      }
      ended = true;
      this.release();
      const caller = await this.#finish(this.#received === 0 ? EMPTY_BODY_HASH : hash.digest('base64url'));
      this.caller = caller;
      this.#settle.resolve(caller);
    } catch (err) {
      const api = err instanceof ApiError ? err : ended ? err : cutOff();
      this.#settle.reject(api);
      throw api;
    } finally {
      this.release();
      this.#state = 'done';
      // A consumer that stopped early leaves the rest unread: the pipeline closes the connection.
      this.#settle.reject(new ApiError('bad_request', 'the request body was not read to its end'));
    }
  }

  /** The next chunk, or 408 after an idle gap, or 503 when the relay stops. */
  #next(source: AsyncIterator<Buffer>): Promise<IteratorResult<Buffer>> {
    if (this.#signal.aborted) return Promise.reject(cutOff());
    return new Promise((resolve, reject) => {
      const done = (): void => {
        timer.cancel();
        this.#signal.removeEventListener('abort', onAbort);
      };
      const onAbort = (): void => {
        done();
        reject(cutOff());
      };
      const timer = this.#clock.setTimeout(() => {
        done();
        reject(
          new ApiError(
            'request_timeout',
            `no byte of the request body arrived for ${Math.round(this.#limits.idleTimeoutMs / 1000)} s`,
            {
              headers: { Connection: 'close' },
            },
          ),
        );
      }, this.#limits.idleTimeoutMs);
      this.#signal.addEventListener('abort', onAbort, { once: true });
      source.next().then(
        (r) => {
          done();
          resolve(r);
        },
        (err: unknown) => {
          done();
          reject(err);
        },
      );
    });
  }
}
