/** Errors the relay answers with; each becomes one §6 envelope (HTTP) or frame error (WebSocket). */
import { ERROR_STATUS, type RelayErrorCode } from '../protocol/envelope.js';
import type { JsonObject } from '../protocol/types.js';
import { ValidationError } from '../protocol/validate.js';

export class ApiError extends Error {
  override name = 'ApiError';
  readonly status: number;
  readonly code: string;
  readonly details: JsonObject | undefined;
  /** Extra response headers (Retry-After, Allow, …). */
  readonly headers: Record<string, string>;

  constructor(
    code: RelayErrorCode,
    message: string,
    options: { details?: JsonObject; headers?: Record<string, string>; status?: number } = {},
  ) {
    super(message);
    this.code = code;
    this.status = options.status ?? ERROR_STATUS[code];
    this.details = options.details;
    this.headers = options.headers ?? {};
  }

  static from(err: unknown): ApiError {
    if (err instanceof ApiError) return err;
    if (err instanceof ValidationError) {
      return new ApiError(err.code as RelayErrorCode, err.message, {
        status: err.status,
        details: { field: err.field, reason: err.reason },
      });
    }
    if (isStorageFailure(err)) {
      // Disk full, I/O errors, a damaged file: retryable for the client, loud in the logs.
      const code = String((err as { code?: unknown }).code);
      return new ApiError('service_unavailable', 'storage is unavailable; retry later', {
        details: { reason: code === 'SQLITE_FULL' ? 'disk_full' : 'storage_error', retry_after: 5 },
        headers: { 'Retry-After': '5' },
      });
    }
    return new ApiError('internal_error', 'internal error');
  }
}

/** True for errors that say the storage itself is failing (not a constraint or a bug). */
export function isStorageFailure(err: unknown): boolean {
  const code = (err as { code?: unknown } | null | undefined)?.code;
  if (typeof code !== 'string') return false;
  if (/^SQLITE_(FULL|IOERR|CORRUPT|NOTADB|CANTOPEN|READONLY|BUSY|LOCKED|PERM|PROTOCOL|NOLFS)/.test(code)) return true;
  // PostgreSQL (postgres.js): lost or refused connections, SQLSTATE classes 08 (connection),
  // 53 (insufficient resources), 57P (shutdown), 58 (system error), 40001/40P01 (retry).
  return (
    /^(CONNECTION_(CLOSED|ENDED|DESTROYED)|CONNECT_TIMEOUT|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE)$/.test(code) ||
    /^(08|53|57P|58)[0-9A-Z]+$/.test(code) ||
    code === '40001' ||
    code === '40P01'
  );
}
