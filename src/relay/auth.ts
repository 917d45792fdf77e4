/**
 * Request authentication exactly as spec §2.3, in its order: headers → timestamp window →
 * signature over the raw request target → replay cache. The same checks serve the WebSocket
 * auth frame (§5.1), sharing the replay cache.
 */
import type { KeyObject } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { Clock } from '../core/clock.js';
import { HEADERS } from '../protocol/constants.js';
import { decodePublicKey } from '../protocol/encoding.js';
import { bodyHash, canonicalRequest, parseTimestamp, publicKeyObject, verifySignature, wsAuthString } from '../protocol/signing.js';
import type { AuthFrame } from '../protocol/types.js';
import { ApiError } from './errors.js';

const SIGNATURE_RE = /^[A-Za-z0-9_-]{86}$/;
const MAX_KEYS = 10_000;

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  return typeof v === 'string' ? v : undefined;
}

export class Authenticator {
  readonly #clock: Clock;
  readonly toleranceMs: number;
  /** `public_key.signature` → when the entry may be forgotten. */
  readonly #seen = new Map<string, number>();
  readonly #keys = new Map<string, KeyObject>();

  constructor(clock: Clock, toleranceMs: number) {
    this.#clock = clock;
    this.toleranceMs = toleranceMs;
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

  /** Checks one signed statement; returns the public key or throws the §2.3 error. */
  #verify(publicKey: unknown, timestamp: unknown, signature: unknown, signed: (timestamp: string) => string): string {
    if (typeof publicKey !== 'string' || !decodePublicKey(publicKey)) {
      throw new ApiError('unauthorized', 'missing or malformed public key');
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
    const key = this.#key(publicKey);
    if (!key || !verifySignature(key, signed(timestamp), signature)) {
      throw new ApiError('invalid_signature', 'the signature does not verify');
    }
    const id = `${publicKey}.${signature}`;
    if (this.#seen.has(id)) throw new ApiError('replay_detected', 'this signature was already used; sign every request afresh');
    this.#seen.set(id, now + 2 * this.toleranceMs);
    return publicKey;
  }

  /** Authenticates an HTTP request; `target` is the raw, undecoded request target. */
  http(method: string, target: string, headers: IncomingHttpHeaders, body: Uint8Array): string {
    const hash = bodyHash(body);
    return this.#verify(header(headers, HEADERS.publicKey), header(headers, HEADERS.timestamp), header(headers, HEADERS.signature), (ts) =>
      canonicalRequest(method, target, ts, hash),
    );
  }

  /** Authenticates a WebSocket auth frame. */
  ws(frame: AuthFrame): string {
    return this.#verify(frame.public_key, frame.timestamp, frame.signature, wsAuthString);
  }

  /** Forgets replay entries older than twice the tolerance. */
  prune(): void {
    const now = this.#clock.now();
    for (const [id, until] of this.#seen) if (until <= now) this.#seen.delete(id);
  }

  get replayEntries(): number {
    return this.#seen.size;
  }
}
