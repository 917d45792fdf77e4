/**
 * HTTP plumbing shared by routes: CORS headers, the JSON body parser, query parameter parsing,
 * opaque cursors. Reading bodies is `body.ts`; writing replies is `reply.ts`.
 */
import { STATUS_CODES } from 'node:http';
import { LIMITS } from '../protocol/constants.js';
import { fromBase64Url, isPublicKey, toBase64Url } from '../protocol/encoding.js';
import { errorEnvelope } from '../protocol/envelope.js';
import { decodeUtf8, JsonInputError, parseJson, parseJsonMember } from '../protocol/json.js';
import { parseTimestamp } from '../protocol/signing.js';
import { isPlainObject } from '../protocol/validate.js';
import { ApiError } from './errors.js';
import type { JsonBody } from './router.js';

export const CORS_HEADERS: Record<string, string> = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Expose-Headers':
    'X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, Retry-After, X-Request-Id, X-M2M-Storage-Used, X-M2M-Storage-Limit, X-M2M-Blob-Hash, X-MRP-Take',
};

/**
 * The answer to a request Node's HTTP parser refused before the relay saw it (`clientError`): a
 * whole HTTP/1.1 response with the §6 envelope, `X-Request-Id`, the CORS headers and
 * `Connection: close`. Headers (or a request line) too large → `431`; a timeout of the headers or
 * the request → `408 request_timeout`; anything else the parser rejects (a garbage request line,
 * `Content-Length` with `Transfer-Encoding`, a bad chunk) → `400 bad_request`.
 */
export function clientErrorResponse(code: string | undefined, requestId: string): { status: number; text: string } {
  const [status, errorCode, message] =
    code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'bad_request', 'the request line or headers are too large']
      : code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'request_timeout', 'the request did not arrive in time']
        : [400, 'bad_request', 'malformed HTTP request'];
  return { status, text: rawAnswer(status, errorEnvelope(errorCode, message, requestId), requestId) };
}

/**
 * The answer to a connection over `maxSockets` (`'total'`) or `maxSocketsPerAddress`
 * (`'address'`), written before anything of it is read: `503 service_unavailable`,
 * `details.reason` `too_many_connections` or `too_many_connections_from_address`.
 */
export function tooManySocketsResponse(refused: 'total' | 'address', requestId: string): string {
  const [reason, message] =
    refused === 'total'
      ? ['too_many_connections', 'the relay holds as many connections as it takes; try again later']
      : ['too_many_connections_from_address', 'your address holds as many connections as it may; close some first'];
  const body = errorEnvelope('service_unavailable', message, requestId, { reason, retry_after: 5 });
  return rawAnswer(503, body, requestId, { 'Retry-After': '5' });
}

/** A whole HTTP/1.1 answer as text, for a socket node:http does not answer itself. */
function rawAnswer(status: number, envelope: unknown, requestId: string, extra: Record<string, string> = {}): string {
  const body = JSON.stringify(envelope);
  const headers: Record<string, string> = {
    'Content-Type': 'application/json',
    'Content-Length': String(Buffer.byteLength(body)),
    Connection: 'close',
    'X-Request-Id': requestId,
    ...extra,
    ...CORS_HEADERS,
  };
  const head = Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  return `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n${head}\r\n${body}`;
}

export const PREFLIGHT_HEADERS: Record<string, string> = {
  ...CORS_HEADERS,
  'Access-Control-Allow-Methods': 'GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS',
  'Access-Control-Allow-Headers': 'Content-Type, X-M2M-Public-Key, X-M2M-Timestamp, X-M2M-Signature',
  'Access-Control-Max-Age': '86400',
};

/**
 * Parses a JSON request body (whatever the Content-Type says): strict UTF-8, nesting checked on
 * the text before parsing. Anything else is `400 bad_request` with `details.reason` one of
 * `empty`, `not_utf8`, `too_deep`, `not_json`. Returns the value and the decoded text.
 */
export function parseJsonBody(body: Buffer): JsonBody {
  if (body.length === 0)
    throw new ApiError('bad_request', 'a JSON request body is required', { details: { reason: 'empty' } });
  try {
    const text = decodeUtf8(body);
    const { value, span } = parseJsonMember(text, 'body');
    return span ? { value, text, body: span } : { value, text };
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

export function enumParam<T extends string>(
  query: URLSearchParams,
  name: string,
  allowed: readonly T[],
  fallback: T | undefined,
): T | undefined {
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

export function decodeCursor<T>(
  query: URLSearchParams,
  check: (value: Record<string, unknown>) => T | undefined,
): T | undefined {
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
  return typeof v['t'] === 'number' && Number.isFinite(v['t']) && typeof v['id'] === 'string'
    ? { t: v['t'], id: v['id'] }
    : undefined;
}
