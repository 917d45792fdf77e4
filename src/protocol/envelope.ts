/**
 * The error envelope (docs/protocol.md §6): `{"error":{"code","message","details?","request_id"}}`. The relay
 * builds it; clients turn it (or a frame's error object) into a RelayError.
 */
import { type RelayError, relayError } from '../core/errors.js';
import type { ErrorEnvelope, FrameError, JsonObject } from './types.js';
import { isPlainObject } from './validate.js';

/** HTTP status of every documented error code (§6) plus our own: `too_many_connections` (WebSocket), `request_timeout`, `webhook_url_refused`. */
export const ERROR_STATUS = {
  bad_request: 400,
  unauthorized: 401,
  invalid_signature: 401,
  timestamp_expired: 401,
  forbidden: 403,
  agent_suspended: 403,
  acl_denied: 403,
  not_found: 404,
  agent_not_found: 404,
  message_not_found: 404,
  blob_not_found: 404,
  request_timeout: 408,
  replay_detected: 409,
  blob_referenced: 409,
  payload_too_large: 413,
  unprocessable_entity: 422,
  webhook_url_refused: 422,
  rate_limit_exceeded: 429,
  too_many_connections: 429,
  internal_error: 500,
  service_unavailable: 503,
  insufficient_storage: 507,
} as const;

export type RelayErrorCode = keyof typeof ERROR_STATUS;

export function errorEnvelope(code: string, message: string, requestId: string, details?: JsonObject): ErrorEnvelope {
  return {
    error: details ? { code, message, details, request_id: requestId } : { code, message, request_id: requestId },
  };
}

/** Seconds from a `Retry-After` header (delta-seconds or HTTP date). */
export function parseRetryAfter(value: string | null | undefined, nowMs: number): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Number(trimmed);
  const at = Date.parse(trimmed);
  return Number.isFinite(at) ? Math.max(0, Math.ceil((at - nowMs) / 1000)) : undefined;
}

function retryAfterFromDetails(details: JsonObject | undefined): number | undefined {
  const v = details?.['retry_after'];
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : undefined;
}

/**
 * A RelayError from an HTTP error response. Bodies that are not an envelope (a proxy's HTML page,
 * an empty 502) still give a useful error with a code derived from the status.
 */
export function relayErrorFromResponse(
  status: number,
  bodyText: string,
  headers: { get(name: string): string | null },
  nowMs: number,
): RelayError {
  let parsed: unknown;
  try {
    parsed = bodyText ? JSON.parse(bodyText) : undefined;
  } catch {
    parsed = undefined;
  }
  const headerRetry = parseRetryAfter(headers.get('retry-after'), nowMs);
  const headerRequestId = headers.get('x-request-id') ?? undefined;
  const inner = isPlainObject(parsed) && isPlainObject(parsed['error']) ? parsed['error'] : undefined;
  if (inner && typeof inner['code'] === 'string') {
    const details = isPlainObject(inner['details']) ? (inner['details'] as JsonObject) : undefined;
    const requestId = typeof inner['request_id'] === 'string' ? inner['request_id'] : headerRequestId;
    const retryAfter = headerRetry ?? retryAfterFromDetails(details);
    return relayError(inner['code'], typeof inner['message'] === 'string' ? inner['message'] : inner['code'], {
      status,
      ...(details ? { details } : {}),
      ...(requestId ? { requestId } : {}),
      ...(retryAfter === undefined ? {} : { retryAfter }),
    });
  }
  const code = codeForStatus(status);
  const snippet = bodyText.replace(/\s+/g, ' ').trim().slice(0, 120);
  return relayError(code, `relay answered HTTP ${status}${snippet ? `: ${snippet}` : ''}`, {
    status,
    ...(headerRequestId ? { requestId: headerRequestId } : {}),
    ...(headerRetry === undefined ? {} : { retryAfter: headerRetry }),
  });
}

function codeForStatus(status: number): string {
  if (status === 401) return 'unauthorized';
  if (status === 403) return 'forbidden';
  if (status === 404) return 'not_found';
  if (status === 409) return 'conflict';
  if (status === 413) return 'payload_too_large';
  if (status === 422) return 'unprocessable_entity';
  if (status === 429) return 'rate_limit_exceeded';
  if (status >= 500) return 'internal_error';
  return 'bad_request';
}

/** A RelayError from a frame's error object (`auth_result`, `send_result`, `error`). */
export function relayErrorFromFrame(error: FrameError, requestId?: string): RelayError {
  const retryAfter = retryAfterFromDetails(error.details);
  const status = (ERROR_STATUS as Record<string, number>)[error.code];
  return relayError(error.code, error.message, {
    ...(error.details ? { details: error.details } : {}),
    ...(requestId ? { requestId } : {}),
    ...(retryAfter === undefined ? {} : { retryAfter }),
    ...(status === undefined ? {} : { status }),
  });
}
