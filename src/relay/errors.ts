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

  constructor(code: RelayErrorCode, message: string, options: { details?: JsonObject; headers?: Record<string, string>; status?: number } = {}) {
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
    return new ApiError('internal_error', 'internal error');
  }
}
