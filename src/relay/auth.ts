/**
 * Request authentication exactly as spec §2.3, in its order: headers → timestamp window →
 * signature over the raw request target → replay cache. The same checks serve the WebSocket
 * auth frame (§5.1), sharing the replay cache.
 *
 * HTTP requests are checked in two steps so a body is only read for a plausible caller: `claim`
 * checks the headers' shape, the key (a usable Ed25519 point) and the timestamp window before the
 * body is read; `verifyHttp` checks the signature over the body hash (computed while the body
 * streamed in) and the replay cache.
 *
 * The replay cache is bounded: at most `maxReplayEntries` signatures, each kept twice the
 * tolerance (§2.3). Evicting an entry that is still inside its window would let that request be
 * replayed, so when the cache is full of live entries new signed requests are refused with
 * `503 service_unavailable` (and `Retry-After`) instead. Entries are a 22-character prefix of
 * the signature's R half (132 bits): Ed25519 signatures are deterministic, so R identifies the
 * (key, message) pair, and a replay repeats it exactly.
 */
import type { KeyObject } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { Clock } from '../core/clock.js';
import { HEADERS } from '../protocol/constants.js';
import { canonicalRequest, parseTimestamp, publicKeyObject, publicKeyProblem, verifySignature, wsAuthString } from '../protocol/signing.js';
import type { AuthFrame } from '../protocol/types.js';
import { ApiError } from './errors.js';

const SIGNATURE_RE = /^[A-Za-z0-9_-]{86}$/;
const MAX_KEYS = 10_000;
/** Default cap of the replay cache: about 60 MB when full. */
export const DEFAULT_MAX_REPLAY_ENTRIES = 1_000_000;

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  return typeof v === 'string' ? v : undefined;
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
  readonly maxReplayEntries: number;
  /** Signature prefix → Unix second after which the entry may be forgotten. Insertion order ≈ expiry order. */
  readonly #seen = new Map<string, number>();
  readonly #keys = new Map<string, KeyObject>();
  #lastFullPrune = Number.NEGATIVE_INFINITY;

  constructor(clock: Clock, toleranceMs: number, maxReplayEntries: number = DEFAULT_MAX_REPLAY_ENTRIES) {
    this.#clock = clock;
    this.toleranceMs = toleranceMs;
    this.maxReplayEntries = maxReplayEntries;
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
      throw new ApiError('unauthorized', `the public key is not a usable Ed25519 key (${problem.replace('_', '-')} point)`, {
        details: { reason: problem },
      });
    }
    if (typeof timestamp !== 'string' || typeof signature !== 'string' || !SIGNATURE_RE.test(signature)) {
      throw new ApiError('unauthorized', 'missing or malformed timestamp or signature');
    }
    const at = parseTimestamp(timestamp);
    if (at === undefined) throw new ApiError('unauthorized', 'the timestamp is not RFC 3339');
    const now = this.#clock.now();
    if (Math.abs(now - at) > this.toleranceMs) {
      throw new ApiError('timestamp_expired', `the timestamp is more than ${Math.round(this.toleranceMs / 1000)} s away from the relay's clock`, {
        details: { server_time: new Date(Math.floor(now / 1000) * 1000).toISOString().replace('.000Z', 'Z') },
      });
    }
    return { publicKey, timestamp, signature };
  }

  /** §2.3 steps 3–5 for a claim: the signature over `signed`, then the replay cache. */
  #verify(claim: Claim, signed: string): string {
    const key = this.#key(claim.publicKey);
    if (!key || !verifySignature(key, signed, claim.signature)) {
      throw new ApiError('invalid_signature', 'the signature does not verify');
    }
    const id = claim.signature.slice(0, 22);
    if (this.#seen.has(id)) throw new ApiError('replay_detected', 'this signature was already used; sign every request afresh');
    this.#makeRoom();
    this.#seen.set(id, Math.ceil((this.#clock.now() + 2 * this.toleranceMs) / 1000));
    return claim.publicKey;
  }

  /** Forgets expired entries from the front; when still full, refuses (see the file comment). */
  #makeRoom(): void {
    const nowSec = this.#clock.now() / 1000;
    for (const [id, until] of this.#seen) {
      if (until > nowSec) break;
      this.#seen.delete(id);
    }
    if (this.#seen.size < this.maxReplayEntries) return;
    // Out-of-order expiries (a clock that moved back) are only found by a full scan: at most one a second.
    if (nowSec - this.#lastFullPrune >= 1) {
      this.#lastFullPrune = nowSec;
      this.prune();
      if (this.#seen.size < this.maxReplayEntries) return;
    }
    const oldest = this.#seen.values().next().value as number;
    const retryAfter = Math.max(1, Math.ceil(oldest - nowSec));
    throw new ApiError('service_unavailable', `the relay is handling too many signed requests; retry in ${retryAfter} s`, {
      details: { reason: 'replay_cache_full', retry_after: retryAfter },
      headers: { 'Retry-After': String(retryAfter) },
    });
  }

  /** HTTP, before the body is read: throws the §2.3 error for bad headers, key or timestamp. */
  claim(headers: IncomingHttpHeaders): Claim {
    return this.#claim(header(headers, HEADERS.publicKey), header(headers, HEADERS.timestamp), header(headers, HEADERS.signature));
  }

  /** HTTP, once the body's hash is known; `target` is the raw, undecoded request target. Returns the caller. */
  verifyHttp(claim: Claim, method: string, target: string, bodyHash: string): string {
    return this.#verify(claim, canonicalRequest(method, target, claim.timestamp, bodyHash));
  }

  /** Authenticates a WebSocket auth frame. */
  ws(frame: AuthFrame): string {
    const claim = this.#claim(frame.public_key, frame.timestamp, frame.signature);
    return this.#verify(claim, wsAuthString(claim.timestamp));
  }

  /** Forgets every expired replay entry. */
  prune(): void {
    const nowSec = this.#clock.now() / 1000;
    for (const [id, until] of this.#seen) if (until <= nowSec) this.#seen.delete(id);
  }

  get replayEntries(): number {
    return this.#seen.size;
  }
}
