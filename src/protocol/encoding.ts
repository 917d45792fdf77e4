/**
 * base64url without padding (RFC 4648 §5) is the encoding of every key, signature and header
 * hash in MRP. Decoding is strict: no padding, no foreign characters, and the string must be the
 * canonical encoding of its bytes (so one key has exactly one spelling).
 */
import { PUBLIC_KEY_RE } from './constants.js';

const B64URL_RE = /^[A-Za-z0-9_-]*$/;

export function toBase64Url(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');
}

/** Decodes strict, canonical base64url; returns undefined for anything else. */
export function fromBase64Url(text: string): Uint8Array | undefined {
  if (!B64URL_RE.test(text) || text.length % 4 === 1) return undefined;
  const bytes = Buffer.from(text, 'base64url');
  if (bytes.toString('base64url') !== text) return undefined;
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Decodes standard base64 (with or without padding); returns undefined for anything else. */
export function fromBase64(text: string): Uint8Array | undefined {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.replace(/=+$/, '').length % 4 === 1) return undefined;
  const bytes = Buffer.from(text, 'base64');
  const canonical = bytes.toString('base64');
  if (canonical !== text && canonical.replace(/=+$/, '') !== text) return undefined;
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/** Decodes hex of even length (either case); returns undefined for anything else. */
export function fromHex(text: string): Uint8Array | undefined {
  if (!/^(?:[0-9a-fA-F]{2})*$/.test(text)) return undefined;
  const bytes = Buffer.from(text, 'hex');
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** True for a well-formed public key string: 43 base64url characters encoding 32 bytes. */
export function isPublicKey(value: unknown): value is string {
  return typeof value === 'string' && PUBLIC_KEY_RE.test(value) && fromBase64Url(value)?.length === 32;
}

/** The 32 bytes of a public key string, or undefined when it is not one. */
export function decodePublicKey(key: string): Uint8Array | undefined {
  if (!PUBLIC_KEY_RE.test(key)) return undefined;
  const bytes = fromBase64Url(key);
  return bytes?.length === 32 ? bytes : undefined;
}

/** A shortened key for human output: first 6 and last 4 characters. */
export function shortKey(key: string): string {
  return key.length > 12 ? `${key.slice(0, 6)}…${key.slice(-4)}` : key;
}

/**
 * A string's length in characters (Unicode code points), as the spec's "≤ 256 chars" limits
 * count it: an emoji is one character, not the two UTF-16 units `.length` gives. Counts only
 * up to `stopAbove + 1`, so a limit check on a long string stays cheap.
 */
export function charLength(text: string, stopAbove = Number.POSITIVE_INFINITY): number {
  let n = 0;
  for (let i = 0; i < text.length && n <= stopAbove; i++, n++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
  }
  return n;
}

/** True when `text` has more than `max` characters (code points); `.length` alone decides most strings. */
export function longerThan(text: string, max: number): boolean {
  return text.length > max && charLength(text, max) > max;
}
