/** HTTP plumbing: bounded body reads, JSON answers, CORS, query parameter parsing, cursors. */
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Clock } from '../core/clock.js';
import { EMPTY_BODY_HASH, LIMITS } from '../protocol/constants.js';
import { decodeUtf8, JsonInputError, parseJson } from '../protocol/json.js';
import { parseTimestamp } from '../protocol/signing.js';
import { fromBase64Url, isPublicKey, toBase64Url } from '../protocol/encoding.js';
import { isPlainObject } from '../protocol/validate.js';
import { ApiError } from './errors.js';

export const CORS_HEADERS: Record<string, string> = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Expose-Headers':
    'X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, Retry-After, X-Request-Id, X-M2M-Storage-Used, X-M2M-Storage-Limit, X-M2M-Blob-Hash',
};

export const PREFLIGHT_HEADERS: Record<string, string> = {
  ...CORS_HEADERS,
  'Access-Control-Allow-Methods': 'GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS',
  'Access-Control-Allow-Headers': 'Content-Type, X-M2M-Public-Key, X-M2M-Timestamp, X-M2M-Signature',
  'Access-Control-Max-Age': '86400',
};

/** Limits of one body read. */
export interface BodyLimits {
  /** Most bytes of one body (413 beyond). */
  maxBytes: number;
  /** Time allowed for the whole body to arrive once reading starts (408 beyond). */
  timeoutMs: number;
}

/**
 * Bounds the body reads in progress at once, by count and by bytes held, so stalled or slow
 * uploads cannot pile up memory: a read that would go past either is refused with `503` and
 * `Retry-After: 1`. The bytes of a body with a Content-Length are reserved up front.
 */
export class BodyGate {
  readonly maxActive: number;
  readonly maxBytes: number;
  active = 0;
  bytes = 0;

  constructor(maxActive: number, maxBytes: number) {
    this.maxActive = maxActive;
    this.maxBytes = maxBytes;
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

function tooLarge(max: number): ApiError {
  return new ApiError('payload_too_large', `the request body is larger than ${max} bytes`, { headers: { Connection: 'close' } });
}

/**
 * Reads a request body, hashing it as it arrives: refused with 413 past `maxBytes` (before any
 * byte is read when Content-Length says so), 408 when it takes longer than `timeoutMs`, 503 when
 * the gate is full. Never buffers more than `maxBytes`.
 */
export function readBody(req: IncomingMessage, limits: BodyLimits, gate: BodyGate, clock: Clock): Promise<Body> {
  const lengthHeader = req.headers['content-length'];
  const declared = lengthHeader === undefined ? Number.NaN : Number(lengthHeader);
  const chunked = req.headers['transfer-encoding'] !== undefined;
  if (!chunked && (lengthHeader === undefined || declared === 0)) {
    req.resume();
    return Promise.resolve(EMPTY_BODY);
  }
  if (Number.isFinite(declared) && declared > limits.maxBytes) return Promise.reject(tooLarge(limits.maxBytes));
  if (gate.active >= gate.maxActive) return Promise.reject(busy(`${gate.active} at once`));
  let reserved = chunked || !Number.isFinite(declared) ? 0 : declared;
  if (gate.bytes + reserved > gate.maxBytes) return Promise.reject(busy(`${gate.bytes} bytes held`));
  gate.active++;
  gate.bytes += reserved;

  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const finish = (err: ApiError | undefined): void => {
      if (settled) return;
      settled = true;
      timer.cancel();
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onGone);
      req.off('close', onGone);
      gate.active--;
      gate.bytes -= reserved;
      if (err) {
        req.pause();
        reject(err);
      } else {
        resolve(size === 0 ? EMPTY_BODY : { bytes: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size), hash: hash.digest('base64url') });
      }
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limits.maxBytes) return finish(tooLarge(limits.maxBytes));
      if (size > reserved) {
        if (gate.bytes + (size - reserved) > gate.maxBytes) return finish(busy(`${gate.bytes} bytes held`));
        gate.bytes += size - reserved;
        reserved = size;
      }
      hash.update(chunk);
      chunks.push(chunk);
    };
    const onEnd = (): void => finish(undefined);
    const onGone = (): void => finish(new ApiError('bad_request', 'the request body was cut off', { headers: { Connection: 'close' } }));
    const timer = clock.setTimeout(() => {
      finish(
        new ApiError('request_timeout', `the request body did not arrive within ${Math.round(limits.timeoutMs / 1000)} s`, {
          headers: { Connection: 'close' },
        }),
      );
    }, limits.timeoutMs);
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onGone);
    req.on('close', onGone);
  });
}

/** Writes a JSON answer (or an empty one for 204/HEAD); a string body is sent as it is. */
export function writeJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string>, head = false): void {
  if (res.headersSent || res.destroyed) return;
  if (status === 204 || body === undefined) {
    res.writeHead(status, headers);
    res.end();
    return;
  }
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, {
    ...headers,
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': String(Buffer.byteLength(text)),
  });
  res.end(head ? undefined : text);
}

/**
 * Parses a JSON request body (whatever the Content-Type says): strict UTF-8, nesting checked on
 * the text before parsing. Anything else is `400 bad_request` with `details.reason` one of
 * `empty`, `not_utf8`, `too_deep`, `not_json`. Returns the value and the decoded text.
 */
export function parseJsonBody(body: Buffer): { value: unknown; text: string } {
  if (body.length === 0) throw new ApiError('bad_request', 'a JSON request body is required', { details: { reason: 'empty' } });
  try {
    const text = decodeUtf8(body);
    return { value: parseJson(text), text };
  } catch (err) {
    const reason = err instanceof JsonInputError ? err.reason : 'not_json';
    const message =
      reason === 'not_utf8'
        ? 'the request body is not valid UTF-8'
        : reason === 'too_deep'
          ? `the request body is nested deeper than ${LIMITS.maxJsonDepth} levels`
          : 'the request body is not valid JSON';
    throw new ApiError('bad_request', message, {
      details: reason === 'too_deep' ? { reason, limit: LIMITS.maxJsonDepth } : { reason },
    });
  }
}

function badParam(name: string, reason: string): ApiError {
  return new ApiError('bad_request', `query parameter ${name}: ${reason}`, { details: { field: name, reason } });
}

/** An integer query parameter in [min, max]; out of range is 400, never clamped (§3.2). */
export function intParam(query: URLSearchParams, name: string, fallback: number, min: number, max: number): number {
  const raw = query.get(name);
  if (raw === null || raw === '') return fallback;
  if (!/^-?\d+$/.test(raw)) throw badParam(name, 'must be an integer');
  const n = Number(raw);
  if (n < min || n > max) throw badParam(name, `must be between ${min} and ${max}`);
  return n;
}

export function enumParam<T extends string>(query: URLSearchParams, name: string, allowed: readonly T[], fallback: T | undefined): T | undefined {
  const raw = query.get(name);
  if (raw === null || raw === '') return fallback;
  if (!(allowed as readonly string[]).includes(raw)) throw badParam(name, `must be one of ${allowed.join(', ')}`);
  return raw as T;
}

export function timeParam(query: URLSearchParams, name: string): number | undefined {
  const raw = query.get(name);
  if (raw === null || raw === '') return undefined;
  const ms = parseTimestamp(raw);
  if (ms === undefined) throw badParam(name, 'must be an RFC 3339 date-time');
  return ms;
}

export function keyParam(query: URLSearchParams, name: string): string | undefined {
  const raw = query.get(name);
  if (raw === null || raw === '') return undefined;
  if (!isPublicKey(raw)) throw badParam(name, 'must be a 43-character public key');
  return raw;
}

export function stringParam(query: URLSearchParams, name: string, max = 256): string | undefined {
  const raw = query.get(name);
  if (raw === null || raw === '') return undefined;
  if (raw.length > max) throw badParam(name, `must be at most ${max} characters`);
  return raw;
}

/** Opaque cursors: base64url of a small JSON object (§3.2, our choice). */
export function encodeCursor(value: Record<string, string | number>): string {
  return toBase64Url(Buffer.from(JSON.stringify(value)));
}

export function decodeCursor<T>(query: URLSearchParams, check: (value: Record<string, unknown>) => T | undefined): T | undefined {
  const raw = query.get('cursor');
  if (raw === null || raw === '') return undefined;
  const bytes = fromBase64Url(raw);
  let value: unknown;
  try {
    value = bytes ? parseJson(decodeUtf8(bytes)) : undefined;
  } catch {
    value = undefined;
  }
  const result = isPlainObject(value) ? check(value) : undefined;
  if (result === undefined) throw badParam('cursor', 'is not a cursor this relay issued');
  return result;
}

/** `{t: <created ms>, id: <message id>}` cursors for message lists. */
export function messageCursor(v: Record<string, unknown>): { t: number; id: string } | undefined {
  return typeof v['t'] === 'number' && Number.isFinite(v['t']) && typeof v['id'] === 'string' ? { t: v['t'], id: v['id'] } : undefined;
}
