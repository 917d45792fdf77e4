/**
 * Request authentication exactly as docs/protocol.md §2.3, in its order: headers → timestamp window →
 * signature over the raw request target → replay cache. The same checks serve the WebSocket
 * auth frame (§5.1), sharing the replay cache.
 *
 * HTTP requests are checked in two steps so a body is only read for a plausible caller: `claim`
 * checks the headers' shape, the key (a usable Ed25519 point) and the timestamp window before the
 * body is read; `verifyHttp` checks the signature over the body hash (computed while the body
 * streamed in) and the replay cache.
 *
 * The replay cache is a `ReplayCache` (`replay-cache.ts`: in memory by default, shareable across
 * processes), each entry kept twice the tolerance (§2.3). Entries are a 22-character prefix of
 * the signature's R half (132 bits): Ed25519 signatures are deterministic, so R identifies the
 * (key, message) pair, and a replay repeats it exactly. The verified key objects are a cache of
 * this process only (they are derived from the key alone).
 */
import type { KeyObject } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { Clock } from '../core/clock.js';
import { HEADERS } from '../protocol/constants.js';
import {
  canonicalRequest,
  parseTimestamp,
  publicKeyObject,
  publicKeyProblem,
  verifySignature,
  wsAuthString,
} from '../protocol/signing.js';
import type { AuthFrame } from '../protocol/types.js';
import { ApiError } from './errors.js';
import type { ReplayCache } from './replay-cache.js';

const SIGNATURE_RE = /^[A-Za-z0-9_-]{86}$/;
const MAX_KEYS = 10_000;

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  return typeof v === 'string' ? v : undefined;
}

/** The replay cache's id of a signature (see the file comment). */
function replayId(claim: Claim): string {
  return claim.signature.slice(0, 22);
}

function replayed(): ApiError {
  return new ApiError('replay_detected', 'this signature was already used; sign every request afresh');
}

/** Headers that passed the checks possible before the body is read. */
export interface Claim {
  publicKey: string;
  timestamp: string;
  signature: string;
}

export class Authenticator {
  readonly #clock: Clock;
  readonly toleranceMs: number;
  readonly #replay: ReplayCache;
  readonly #keys = new Map<string, KeyObject>();

  constructor(clock: Clock, toleranceMs: number, replay: ReplayCache) {
    this.#clock = clock;
    this.toleranceMs = toleranceMs;
    this.#replay = replay;
  }

  #key(publicKey: string): KeyObject | undefined {
    let key = this.#keys.get(publicKey);
    if (!key) {
      key = publicKeyObject(publicKey);
      if (!key) return undefined;
      if (this.#keys.size >= MAX_KEYS) this.#keys.delete(this.#keys.keys().next().value as string);
      this.#keys.set(publicKey, key);
    }
    return key;
  }

  /** §2.3 steps 1–2: the three values present and well-formed, a usable key, the timestamp in the window. */
  #claim(publicKey: unknown, timestamp: unknown, signature: unknown): Claim {
    if (typeof publicKey !== 'string' || publicKeyProblem(publicKey) === 'malformed') {
      throw new ApiError('unauthorized', 'missing or malformed public key');
    }
    const problem = publicKeyProblem(publicKey);
    if (problem) {
      throw new ApiError(
        'unauthorized',
        `the public key is not a usable Ed25519 key (${problem.replace('_', '-')} point)`,
        {
          details: { reason: problem },
        },
      );
    }
    if (typeof timestamp !== 'string' || typeof signature !== 'string' || !SIGNATURE_RE.test(signature)) {
      throw new ApiError('unauthorized', 'missing or malformed timestamp or signature');
    }
    const at = parseTimestamp(timestamp);
    if (at === undefined) throw new ApiError('unauthorized', 'the timestamp is not RFC 3339');
    const now = this.#clock.now();
    if (Math.abs(now - at) > this.toleranceMs) {
      throw new ApiError(
        'timestamp_expired',
        `the timestamp is more than ${Math.round(this.toleranceMs / 1000)} s away from the relay's clock`,
        {
          details: { server_time: new Date(Math.floor(now / 1000) * 1000).toISOString().replace('.000Z', 'Z') },
        },
      );
    }
    return { publicKey, timestamp, signature };
  }

  /** §2.3 steps 3–5 for a claim: the signature over `signed`, then the replay cache. */
  async #verify(claim: Claim, signed: string): Promise<string> {
    const key = this.#key(claim.publicKey);
    if (!key || !verifySignature(key, signed, claim.signature)) {
      throw new ApiError('invalid_signature', 'the signature does not verify');
    }
    if (!(await this.#replay.remember(replayId(claim), this.#clock.now() + 2 * this.toleranceMs))) throw replayed();
    return claim.publicKey;
  }

  /** HTTP, before the body is read: throws the §2.3 error for bad headers, key or timestamp. */
  claim(headers: IncomingHttpHeaders): Claim {
    return this.#claim(
      header(headers, HEADERS.publicKey),
      header(headers, HEADERS.timestamp),
      header(headers, HEADERS.signature),
    );
  }

  /**
   * HTTP, before a streamed body is read: refuses a signature the replay cache already holds
   * (when the cache can tell without remembering), so a replayed upload does not get read. This
   * answers 409 ahead of §2.3's signature check; buffered bodies do not use it (docs/protocol.md §2.3).
   */
  async refuseKnownReplay(claim: Claim): Promise<void> {
    if (this.#replay.seen && (await this.#replay.seen(replayId(claim)))) throw replayed();
  }

  /** HTTP, once the body's hash is known; `target` is the raw, undecoded request target. Returns the caller. */
  verifyHttp(claim: Claim, method: string, target: string, bodyHash: string): Promise<string> {
    return this.#verify(claim, canonicalRequest(method, target, claim.timestamp, bodyHash));
  }

  /** Authenticates a WebSocket auth frame. */
  async ws(frame: AuthFrame): Promise<string> {
    const claim = this.#claim(frame.public_key, frame.timestamp, frame.signature);
    return this.#verify(claim, wsAuthString(claim.timestamp));
  }
}
