/**
 * One error hierarchy for the whole project. The `code` is the contract (stable, snake_case, one
 * table in `./codes.ts`, printed into the README); the message is for people. `kind` groups codes
 * into the few categories the CLI maps to exit codes and the runtime maps to recovery decisions.
 */
import { errorCodeInfo } from './codes.js';

/** Broad category of an error; decides exit codes and whether a retry can help. */
export type ErrorKind =
  | 'usage' // a bad flag, argument or option value
  | 'config' // a bad or missing local file: key, contacts, manifest, config, handler
  | 'auth' // the relay refused our identity: bad signature, clock skew, suspended
  | 'api' // any other error answered by the relay
  | 'network' // the relay could not be reached or the connection broke
  | 'timeout' // an operation took longer than allowed
  | 'protocol' // a peer sent something that breaks the protocol
  | 'handler' // a user handler failed
  | 'aborted' // cancelled by the caller (signal, shutdown)
  | 'internal'; // a bug

export interface MrpErrorOptions {
  cause?: unknown;
  /** Extra machine-readable facts (field names, limits, …). Never secrets. */
  details?: Record<string, unknown>;
  /** What the user can do about it, in one short sentence. */
  hint?: string;
}

/** Base class of every error this project throws on purpose. */
export class MrpError extends Error {
  override name = 'MrpError';
  readonly code: string;
  readonly kind: ErrorKind;
  readonly details: Record<string, unknown> | undefined;
  readonly hint: string | undefined;

  constructor(kind: ErrorKind, code: string, message: string, options: MrpErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.kind = kind;
    this.code = code;
    this.details = options.details;
    this.hint = options.hint;
  }
}

/** A bad command-line flag, argument or option passed to a library constructor. */
export class UsageError extends MrpError {
  override name = 'UsageError';
  constructor(message: string, options: MrpErrorOptions & { code?: string } = {}) {
    super('usage', options.code ?? 'usage', message, options);
  }
}

/** A bad or missing local file (key, contacts, manifest, config, handler module). */
export class ConfigError extends MrpError {
  override name = 'ConfigError';
  /** The file at fault, when there is one. */
  readonly file: string | undefined;
  constructor(code: string, message: string, options: MrpErrorOptions & { file?: string } = {}) {
    super('config', code, message, options);
    this.file = options.file;
  }
}

/** An error answered by the relay (HTTP error envelope, `send_result` or `auth_result` error). */
export class RelayError extends MrpError {
  override name = 'RelayError';
  /** HTTP status, when the error came over HTTP. */
  readonly status: number | undefined;
  readonly requestId: string | undefined;
  /** Seconds to wait before retrying, from `Retry-After` or `details.retry_after`. */
  readonly retryAfter: number | undefined;

  constructor(
    code: string,
    message: string,
    options: MrpErrorOptions & { status?: number; requestId?: string; retryAfter?: number } = {},
  ) {
    super(errorCodeInfo(code)?.kind === 'auth' ? 'auth' : 'api', code, message, options);
    this.status = options.status;
    this.requestId = options.requestId;
    this.retryAfter = options.retryAfter;
  }
}

/**
 * The relay refused for too many requests or connections (HTTP 429, `rate_limit_exceeded`,
 * `too_many_connections`): `retryAfter` says how many seconds to wait, when the relay said so.
 * A `RelayError` like any other (branch on `code` or on the class).
 */
export class RateLimitError extends RelayError {
  override name = 'RateLimitError';
}

/** Whether a relay error with this code (or HTTP status) is a `RateLimitError`. */
export function isRateLimit(code: string, status?: number): boolean {
  return status === 429 || code === 'rate_limit_exceeded' || code === 'too_many_connections';
}

/** A `RelayError`, or a `RateLimitError` when the code or status says so. */
export function relayError(
  code: string,
  message: string,
  options: ConstructorParameters<typeof RelayError>[2] = {},
): RelayError {
  return isRateLimit(code, options.status)
    ? new RateLimitError(code, message, options)
    : new RelayError(code, message, options);
}

/** The relay could not be reached, or the connection broke before an answer. */
export class NetworkError extends MrpError {
  override name = 'NetworkError';
  constructor(message: string, options: MrpErrorOptions & { code?: string } = {}) {
    super('network', options.code ?? 'network_error', message, options);
  }
}

/** An operation did not finish in time. */
export class TimeoutError extends MrpError {
  override name = 'TimeoutError';
  constructor(message: string, options: MrpErrorOptions & { code?: string } = {}) {
    super('timeout', options.code ?? 'timeout', message, options);
  }
}

/**
 * A request was written to a connection that then dropped before its answer arrived: the relay
 * may or may not have acted on it. Safe to retry only where the receiver de-duplicates.
 */
export class OutcomeUnknownError extends MrpError {
  override name = 'OutcomeUnknownError';
  constructor(message: string, options: MrpErrorOptions = {}) {
    super('network', 'outcome_unknown', message, options);
  }
}

/** A peer (relay or client) sent something that breaks the protocol. */
export class ProtocolError extends MrpError {
  override name = 'ProtocolError';
  constructor(code: string, message: string, options: MrpErrorOptions = {}) {
    super('protocol', code, message, options);
  }
}

/** The operation was cancelled through an AbortSignal or by shutdown. */
export class AbortError extends MrpError {
  override name = 'AbortError';
  constructor(message = 'operation aborted', options: MrpErrorOptions = {}) {
    super('aborted', 'aborted', message, options);
  }
}

/**
 * The one place that decides whether trying again can help. Network trouble, timeouts, an
 * unknown outcome, 5xx answers, `429` and `409 replay_detected` (only with a fresh signature)
 * are retryable; every other 4xx and local error is not.
 */
export function isRetryable(err: unknown): boolean {
  if (!(err instanceof MrpError)) return false;
  if (err.kind === 'network' || err.kind === 'timeout') return true;
  if (err instanceof RelayError) {
    if (err.code === 'rate_limit_exceeded' || err.code === 'replay_detected') return true;
    if (err.code === 'internal_error') return true;
    const status = err.status ?? 0;
    return status >= 500 && status !== 507;
  }
  return false;
}

/** Turns anything thrown into an MrpError, keeping MrpErrors as they are. */
export function toMrpError(err: unknown): MrpError {
  if (err instanceof MrpError) return err;
  if (err instanceof Error) return new MrpError('internal', 'internal_error', err.message, { cause: err });
  return new MrpError('internal', 'internal_error', String(err));
}
