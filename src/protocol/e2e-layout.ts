/**
 * The byte-layout choices of end-to-end encryption that the spec could not pin down (§8.3), one
 * named function each, plus the error codes every e2e module shares. They are ours until tested
 * against the official SDK (`pip install mrp-sdk[e2e]`); changing one is a one-function change
 * here, and `docs/protocol.md` lists them.
 *
 * Plaintext is defined on the body's JSON text, so a body that arrives as verbatim text (as the
 * relay forwards it) is sealed byte for byte instead of being re-serialised.
 */
import { ProtocolError, UsageError } from '../core/errors.js';
import { fromBase64, fromBase64Url, toBase64Url } from './encoding.js';
import { decodeUtf8, parseJson } from './json.js';
import type { JsonValue } from './types.js';

/** Stable codes of the errors thrown here (all `ProtocolError`, except caller mistakes: `UsageError`). */
export type E2eErrorCode =
  | 'invalid_key'
  | 'invalid_envelope'
  | 'unsupported_encryption_version'
  | 'decryption_failed'
  | 'invalid_plaintext'
  | 'invalid_body'
  | 'payload_too_large';

/** A `ProtocolError` with an e2e code: the peer or its data is at fault. */
export function e2eError(code: E2eErrorCode, message: string, cause?: unknown): ProtocolError {
  return new ProtocolError(code, message, cause === undefined ? {} : { cause });
}

/** A `UsageError` with an e2e code: the caller passed something unusable. */
export function e2eMisuse(code: E2eErrorCode, message: string, cause?: unknown): UsageError {
  return new UsageError(message, cause === undefined ? { code } : { code, cause });
}

/** Binary fields (`enc`, `ct`, `dek_enc`, `dek_ct`) inside JSON: base64url without padding. */
export function encodeBinary(bytes: Uint8Array): string {
  return toBase64Url(bytes);
}

/** Decodes base64url (padding tolerated) or standard base64; undefined for anything else. */
export function decodeBinary(text: string): Uint8Array | undefined {
  if (/^[A-Za-z0-9_-]*={0,2}$/.test(text)) {
    const bare = text.replace(/=+$/, '');
    const url = fromBase64Url(bare);
    if (url) return url;
  }
  return fromBase64(text);
}

/** HPKE `info`: empty. */
export function hpkeInfo(): Uint8Array {
  return new Uint8Array(0);
}

/** AEAD associated data: empty (single-shot seal, sequence 0). */
export function hpkeAad(): Uint8Array {
  return new Uint8Array(0);
}

/** True for `application/json` and any `…+json` media type (parameters and case ignored). */
export function isJsonContentType(contentType: string): boolean {
  const media = (contentType.split(';')[0] ?? '').trim().toLowerCase();
  return media === 'application/json' || media.endsWith('+json');
}

const encoder = new TextEncoder();

/**
 * The plaintext bytes of a body: for a JSON-like `contentType` the UTF-8 JSON serialisation of
 * the body; otherwise the body must be a JSON string and the plaintext is its UTF-8 bytes.
 * Throws `UsageError('invalid_body')` for a non-string body with a non-JSON content type.
 */
export function plaintextOf(body: JsonValue, contentType: string): Uint8Array {
  if (isJsonContentType(contentType)) {
    let text: string | undefined;
    try {
      text = JSON.stringify(body);
    } catch (err) {
      throw e2eMisuse('invalid_body', 'the body cannot be serialised as JSON', err);
    }
    if (text === undefined) throw e2eMisuse('invalid_body', 'the body is not a JSON value');
    return encoder.encode(text);
  }
  if (typeof body === 'string') return encoder.encode(body);
  throw e2eMisuse('invalid_body', `a body of content type ${contentType} must be a string to be encrypted`);
}

/**
 * `plaintextOf` for a body given as its exact JSON text (as a relay forwards it): for a JSON-like
 * content type the text's own UTF-8 bytes, never re-serialised, so a sealed body is exactly what
 * was written. The text is checked to be JSON within the depth limit.
 */
export function plaintextOfJson(json: string, contentType: string): Uint8Array {
  let value: unknown;
  try {
    value = parseJson(json);
  } catch (err) {
    throw e2eMisuse('invalid_body', `the body text is not acceptable JSON (${(err as Error).message})`, err);
  }
  return isJsonContentType(contentType) ? encoder.encode(json) : plaintextOf(value as JsonValue, contentType);
}

/** An opened body: the value, and its exact JSON text (the plaintext itself for JSON types). */
export interface OpenedBody {
  body: JsonValue;
  json: string;
}

/**
 * The body a plaintext stands for (the inverse of `plaintextOf`): strict UTF-8, then for a
 * JSON-like content type a depth-checked JSON parse, otherwise the text itself as a string.
 * Throws `ProtocolError('invalid_plaintext')`.
 */
export function bodyOf(plaintext: Uint8Array, contentType: string): OpenedBody {
  try {
    const text = decodeUtf8(plaintext);
    if (!isJsonContentType(contentType)) return { body: text, json: JSON.stringify(text) };
    return { body: parseJson(text) as JsonValue, json: text };
  } catch (err) {
    throw e2eError(
      'invalid_plaintext',
      `the decrypted ${contentType} body is malformed: ${(err as Error).message}`,
      err,
    );
  }
}
