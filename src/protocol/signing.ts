/**
 * Request authentication (docs/protocol.md §2). Signing and verifying use node:crypto (OpenSSL, about
 * 10x faster than pure JS: a poll-mode runner signs every request) and derive public keys;
 * @noble/ed25519 judges public keys (`publicKeyProblem`). Ed25519 is deterministic, so both produce the same
 * bytes: tests cross-check them on the §2.5 vectors and on random inputs.
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  sign as cryptoSign,
  verify as cryptoVerify,
  type KeyObject,
  randomBytes,
  randomInt,
} from 'node:crypto';
import * as ed from '@noble/ed25519';
import { isoInstant } from '../core/iso-time.js';
import { EMPTY_BODY_HASH } from './constants.js';
import { decodePublicKey, fromBase64Url, toBase64Url } from './encoding.js';

ed.hashes.sha512 = (message) => new Uint8Array(createHash('sha512').update(message).digest());

const encoder = new TextEncoder();

function bytesOf(data: Uint8Array | string): Uint8Array {
  return typeof data === 'string' ? encoder.encode(data) : data;
}

/** SHA-256 of `data`, base64url without padding (the canonical string's BODY_HASH). */
export function bodyHash(data: Uint8Array | string | undefined): string {
  if (data === undefined || data.length === 0) return EMPTY_BODY_HASH;
  return createHash('sha256').update(data).digest('base64url');
}

/** `METHOD\nPATH_WITH_QUERY\nTIMESTAMP\nBODY_HASH` (§2.2). `target` is signed exactly as given. */
export function canonicalRequest(method: string, target: string, timestamp: string, hash: string): string {
  return `${method.toUpperCase()}\n${target}\n${timestamp}\n${hash}`;
}

/** The string a WebSocket auth frame signs (§5.1). */
export function wsAuthString(timestamp: string): string {
  return `WS\n${timestamp}`;
}

/** RFC 3339, UTC, whole seconds, `Z` suffix: the form clients send. */
export function formatTimestamp(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

/**
 * RFC 3339 with milliseconds (`.000` left out), for timestamps the relay stores and returns;
 * several per message on the relay's path, so the seconds' part is cached (`isoInstant`).
 */
export function formatInstant(ms: number): string {
  return isoInstant(ms);
}

const RFC3339_RE = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$/;

/** Parses any RFC 3339 date-time; undefined for anything else. */
export function parseTimestamp(text: string): number | undefined {
  if (!RFC3339_RE.test(text)) return undefined;
  const ms = Date.parse(text.toUpperCase());
  return Number.isFinite(ms) ? ms : undefined;
}

/** PKCS#8 DER for an Ed25519 private key, up to the 32 seed bytes (RFC 8410). */
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

/**
 * An Ed25519 identity. The seed (and the node:crypto key object made from it) is kept in private
 * fields: it never appears in `inspect`, `JSON.stringify` or logs.
 */
export class Keypair {
  readonly #seed: Uint8Array;
  /** The private key as node:crypto holds it. */
  readonly #key: KeyObject;
  /** The 32 public key bytes. */
  readonly publicKeyBytes: Uint8Array;
  /** The public key, base64url (43 characters): the agent's address. */
  readonly publicKey: string;

  private constructor(seed: Uint8Array) {
    if (seed.length !== 32) throw new RangeError('an Ed25519 seed is exactly 32 bytes');
    this.#seed = Uint8Array.from(seed);
    // node:crypto derives the public key: ~0.05 ms, where @noble/ed25519's first derivation builds
    // its base-point tables (~45 ms and ~17 MB of short-lived objects, which grew every runner's
    // young generation at start-up).
    this.#key = Keypair.#privateKey(this.#seed);
    const spki = createPublicKey(this.#key).export({ format: 'der', type: 'spki' });
    this.publicKeyBytes = new Uint8Array(spki.subarray(spki.length - 32));
    this.publicKey = toBase64Url(this.publicKeyBytes);
  }

  static fromSeed(seed: Uint8Array): Keypair {
    return new Keypair(seed);
  }

  /** A new random identity. `random` is injectable for tests. */
  static generate(random: (n: number) => Uint8Array = randomBytes): Keypair {
    return new Keypair(random(32));
  }

  /** A copy of the 32 seed bytes, for writing the key file. Handle with care. */
  exportSeed(): Uint8Array {
    return Uint8Array.from(this.#seed);
  }

  /** Ed25519 signature of `message` (UTF-8 when a string), base64url. */
  sign(message: Uint8Array | string): string {
    const data = typeof message === 'string' ? Buffer.from(message, 'utf8') : message;
    return cryptoSign(null, data, this.#key).toString('base64url');
  }

  static #privateKey(seed: Uint8Array): KeyObject {
    const der = Buffer.concat([PKCS8_ED25519_PREFIX, seed]);
    try {
      return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
    } finally {
      der.fill(0);
    }
  }

  toJSON(): { public_key: string } {
    return { public_key: this.publicKey };
  }
}

export interface SignedHeaders {
  'X-M2M-Public-Key': string;
  'X-M2M-Timestamp': string;
  'X-M2M-Signature': string;
}

/**
 * Per-process state of `uniqueTimestamp`: a counter for the digits below the millisecond, started
 * at random so two processes signing in the same millisecond rarely pick the same digits.
 */
let subMillisecond = randomInt(1000);

/**
 * An RFC 3339 timestamp with six fractional digits for signing: the milliseconds of `nowMs`, then
 * three digits that differ from call to call. Ed25519 is deterministic, so two identical requests
 * signed with the same timestamp (whole seconds, §2.2) carry the same signature and the second is
 * refused as a replay; this makes every signature of a process unique, and those of processes
 * running side by side (two `mrp tail` started together) all but certainly so. Relays parse any
 * RFC 3339 fraction (ours and the official Go relay alike).
 */
export function uniqueTimestamp(nowMs: number): string {
  subMillisecond = (subMillisecond + 1) % 1000;
  return `${new Date(nowMs).toISOString().slice(0, 23)}${String(subMillisecond).padStart(3, '0')}Z`;
}

/**
 * The three auth headers for one request attempt (§2.1). Sign afresh on every attempt. The
 * timestamp is whole seconds (§2.2's form) unless `options.timestamp` gives one (clients pass
 * `uniqueTimestamp`).
 */
export function signRequest(
  keypair: Keypair,
  method: string,
  target: string,
  body: Uint8Array | string | undefined,
  nowMs: number,
  options: { timestamp?: string } = {},
): SignedHeaders {
  const timestamp = options.timestamp ?? formatTimestamp(nowMs);
  const signature = keypair.sign(canonicalRequest(method, target, timestamp, bodyHash(body)));
  return { 'X-M2M-Public-Key': keypair.publicKey, 'X-M2M-Timestamp': timestamp, 'X-M2M-Signature': signature };
}

/**
 * A WebSocket `auth` frame (§5.1), signed with a `uniqueTimestamp` so that two connections of
 * one key opened in the same second are not mistaken for a replay (`options.timestamp`
 * overrides it, e.g. for test vectors).
 */
export function authFrame(
  keypair: Keypair,
  nowMs: number,
  options: { timestamp?: string } = {},
): { type: 'auth'; public_key: string; timestamp: string; signature: string } {
  const timestamp = options.timestamp ?? uniqueTimestamp(nowMs);
  return { type: 'auth', public_key: keypair.publicKey, timestamp, signature: keypair.sign(wsAuthString(timestamp)) };
}

/**
 * Why a public key cannot be an identity, or undefined when it can:
 * - `malformed`: not 43 base64url characters (32 bytes);
 * - `not_on_curve`: the bytes decode to no Ed25519 point;
 * - `non_canonical`: a point written in a non-canonical form (y ≥ p, or x = 0 with the sign bit);
 * - `small_order`: one of the 8 points of small order (the identity among them). Anyone can make
 *   a signature that verifies under such a key for any message, so it proves nothing.
 */
export type PublicKeyProblem = 'malformed' | 'not_on_curve' | 'non_canonical' | 'small_order';

/** Verdicts per key string; bounded (cleared when full: a miss only costs one decompression). */
const keyVerdicts = new Map<string, PublicKeyProblem | null>();
const MAX_KEY_VERDICTS = 10_000;

export function publicKeyProblem(publicKey: string): PublicKeyProblem | undefined {
  const cached = keyVerdicts.get(publicKey);
  if (cached !== undefined) return cached ?? undefined;
  const bytes = decodePublicKey(publicKey);
  let verdict: PublicKeyProblem | null = null;
  if (!bytes) verdict = 'malformed';
  else {
    let point: InstanceType<typeof ed.Point> | undefined;
    try {
      point = ed.Point.fromBytes(bytes, false);
    } catch {
      try {
        ed.Point.fromBytes(bytes, true);
        verdict = 'non_canonical';
      } catch {
        verdict = 'not_on_curve';
      }
    }
    if (point?.isSmallOrder()) verdict = 'small_order';
  }
  if (keyVerdicts.size >= MAX_KEY_VERDICTS) keyVerdicts.clear();
  keyVerdicts.set(publicKey, verdict);
  return verdict ?? undefined;
}

/** A node:crypto public key object for `publicKey`; undefined if the string is not a key. */
export function publicKeyObject(publicKey: string): KeyObject | undefined {
  if (!decodePublicKey(publicKey)) return undefined;
  try {
    return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: publicKey }, format: 'jwk' });
  } catch {
    return undefined;
  }
}

/**
 * Verifies a base64url Ed25519 signature with node:crypto. `key` may be a prepared KeyObject
 * (the relay caches them) or the public key string.
 */
export function verifySignature(key: KeyObject | string, message: Uint8Array | string, signature: string): boolean {
  const keyObject = typeof key === 'string' ? publicKeyObject(key) : key;
  if (!keyObject) return false;
  const sig = signature.length === 86 ? fromBase64Url(signature) : undefined;
  if (sig?.length !== 64) return false;
  return cryptoVerify(null, bytesOf(message), keyObject, sig);
}

/** Verifies with @noble/ed25519 (used to cross-check node:crypto in tests and by clients). */
export function verifySignatureNoble(publicKey: string, message: Uint8Array | string, signature: string): boolean {
  const pub = decodePublicKey(publicKey);
  const sig = fromBase64Url(signature);
  if (!pub || !sig || sig.length !== 64) return false;
  try {
    return ed.verify(sig, bytesOf(message), pub);
  } catch {
    return false;
  }
}
