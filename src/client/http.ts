/**
 * `RelayClient`: every HTTP endpoint of docs/protocol.md §3, signed per §2. Each attempt is signed afresh
 * (a reused signature is a replay), the request target is built once and signed exactly as sent,
 * error envelopes become typed errors, and retries follow §6: back off on network errors and
 * 5xx (unless `failFast`: then an unreachable relay is reported at once), honour `Retry-After`
 * on 429, re-sign on 409 replay_detected, never retry other 4xx.
 * A send whose answer was lost is not blindly retried: it fails with OutcomeUnknownError so the
 * caller can check before sending again.
 */
import { sleep } from '../core/async.js';
import { Backoff } from '../core/backoff.js';
import { type Clock, systemClock } from '../core/clock.js';
import {
  AbortError,
  isRetryable,
  NetworkError,
  OutcomeUnknownError,
  ProtocolError,
  RelayError,
  TimeoutError,
  UsageError,
} from '../core/errors.js';
import { withoutUrlCredentials } from '../core/printable.js';
import { HEADERS, LIMITS, PATHS, TIMING } from '../protocol/constants.js';
import { relayErrorFromResponse } from '../protocol/envelope.js';
import { type EncodedSend, encodeSendRequest, normalizeMessage } from '../protocol/frames.js';
import {
  elementSpans,
  type MessagePage,
  type RejectedMessage,
  readMessagePage,
  topLevelMemberSpan,
} from '../protocol/inbound.js';
import { memberSpans } from '../protocol/json.js';
import { bodyHash, canonicalRequest, type Keypair, signRequest, uniqueTimestamp } from '../protocol/signing.js';
import type {
  AclEntry,
  AclEntryType,
  AclListResponse,
  AgentCapabilitiesResponse,
  AgentProfile,
  BlobInfo,
  CapabilityTagsResponse,
  DiscoverResponse,
  HealthResponse,
  Message,
  MessageStatus,
  MessageStatusResponse,
  PollResponse,
  ProfilePatch,
  SendRequest,
  SendResponse,
  ThreadResponse,
  WebhookConfig,
} from '../protocol/types.js';
import { isPlainObject } from '../protocol/validate.js';
import {
  type BlobHead,
  type BlobInput,
  checkPathId,
  type DownloadOptions,
  deleteBlob,
  downloadBlob,
  downloadBlobBytes,
  headBlob,
  type UploadOptions,
  uploadBlob,
} from './blobs.js';
import { boundedText, MAX_SMALL_ANSWER_BYTES, readBounded } from './bounded.js';

/**
 * A poll's answer: the messages that can be handled (with the size of each one's text) and, in
 * `rejected`, those the relay delivered but that cannot be (too deep, malformed) — a poll marked
 * them delivered too, so they must be answered or at least reported, never silently dropped.
 */
export interface PollPage extends PollResponse {
  sizes: number[];
  rejected: RejectedMessage[];
  /**
   * The query's `take` id came back in `X-MRP-Take`: this relay records take ids (on a `sent`
   * poll) and filtered this listing by it (on a `delivered` one). Absent when no `take` was asked.
   */
  takeEchoed?: boolean;
}

/** Percent-encodes everything but unreserved characters, so no URL parser re-encodes after signing. */
export function encodeComponent(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

export type QueryValue = string | number | boolean | undefined | null | ReadonlyArray<string>;

/** `path?k=v&k=v` with strict encoding, in the given order, skipping undefined/null. */
export function buildTarget(path: string, query: Record<string, QueryValue> = {}): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined || v === null) continue;
    for (const item of Array.isArray(v) ? v : [v]) parts.push(`${encodeComponent(k)}=${encodeComponent(String(item))}`);
  }
  return parts.length ? `${path}?${parts.join('&')}` : path;
}

/** Rate-limit headers of the last response (§7). */
export interface RateInfo {
  limit: number;
  remaining: number;
  /** Unix seconds. */
  reset: number;
}

export interface RelayClientOptions {
  relayUrl: string;
  keypair: Keypair;
  clock?: Clock;
  /** Per-attempt timeout (default 30 s; long polls add their wait). */
  timeoutMs?: number;
  /** Attempts for retryable failures (default 4). */
  maxAttempts?: number;
  /** Longest `Retry-After` worth waiting for inside one call (default 60 s). */
  maxRetryAfterMs?: number;
  fetch?: typeof fetch;
  userAgent?: string;
  /**
   * Report an unreachable relay (refused, unknown host, timeout) at once instead of retrying with
   * backoff: right for one-shot commands, where a person is waiting (default false: long-running
   * callers ride out outages).
   */
  failFast?: boolean;
  /** Called after every HTTP attempt (for `--debug`); sees no signature headers and no key. */
  trace?: (event: HttpTrace) => void;
}

/** One HTTP attempt as `trace` sees it. Bodies are references, for `--log-payloads` only. */
export interface HttpTrace {
  method: string;
  /** The request target as signed and sent (path and query). */
  target: string;
  /** The HTTP status; undefined when no answer came. */
  status: number | undefined;
  ms: number;
  /** 1 for the first try, 2 for the first retry, … */
  attempt: number;
  requestId: string | undefined;
  /** The error code when the attempt failed. */
  error: string | undefined;
  requestBody: string | undefined;
  /** The parsed answer of a successful attempt. */
  response: unknown;
}

export interface RequestOptions {
  query?: Record<string, QueryValue>;
  body?: unknown;
  /** The request body as ready JSON text, sent (and signed) verbatim; instead of `body`. */
  bodyText?: string;
  signal?: AbortSignal | undefined;
  timeoutMs?: number;
  /** Retry network errors and 5xx (only safe when repeating the request is harmless). */
  idempotent?: boolean;
  /** Reads a successful answer's text (default: `JSON.parse`). */
  parse?: (text: string) => unknown;
  /** The body holds a secret: `trace` sees a placeholder instead (never `--log-payloads` output). */
  secretBody?: boolean;
  /** The longest answer read; longer is `response_too_large` (default and most: 256 MiB). */
  maxAnswerBytes?: number;
  /** One attempt, whatever fails (a 429 too): the caller retries with its own backoff, saying so. */
  once?: boolean;
}

/** What `trace` sees instead of a body that holds a secret. */
export const REDACTED_BODY = '"[redacted: the body holds a secret]"';
/** What `request` and `exchange` share: cancellation and whether repeating is harmless. */
export interface RetryOptions {
  signal?: AbortSignal | undefined;
  /** Retry network errors and 5xx (only safe when repeating the request is harmless). */
  idempotent?: boolean;
  /** The body holds a secret: `trace` sees `REDACTED_BODY` instead. */
  secretBody?: boolean;
  /** One attempt, whatever fails (a 429 or a replay verdict too): no retry inside the client. */
  once?: boolean;
}

export interface ExchangeOptions extends RetryOptions {
  /** SHA-256 of the body, base64url (§2.2); the empty body's hash when there is no body. */
  bodyHash?: string;
  /**
   * The body of one attempt (called again for each retry). `ended` aborts once that attempt
   * failed: fetch may still pull a failed attempt's body, so the body is stopped then, and
   * whatever it throws afterwards belongs to no attempt.
   */
  body?: (ended: AbortSignal) => Uint8Array | AsyncIterable<Uint8Array>;
  headers?: Record<string, string>;
  /** Idle limit in ms: no byte moved for this long fails the call (default: the client's timeout). */
  timeoutMs?: number;
}

/** A 2xx answer whose body is still to be read. */
export interface Exchange {
  response: globalThis.Response;
  requestId: string | undefined;
  /** Tells the idle limit a byte moved (call while reading the answer). */
  touch(): void;
  /** Ends the idle limit (call once the answer is read or dropped). */
  done(): void;
}

/** Passes chunks through, telling `touch` each time one is taken (upload progress). */
async function* progress(source: AsyncIterable<Uint8Array>, touch: () => void): AsyncGenerator<Uint8Array> {
  for await (const chunk of source) {
    touch();
    yield chunk;
  }
}

export interface Response<T> {
  status: number;
  data: T;
  rate: RateInfo | undefined;
  requestId: string | undefined;
  /** The `X-MRP-Take` header (docs/protocol.md §3.6, our extension), when the relay sent one. */
  take?: string | undefined;
}

/** Response headers as both transports expose them (names are case-insensitive). */
interface HeaderSource {
  get(name: string): string | null;
}

function rateOf(headers: HeaderSource): RateInfo | undefined {
  const limit = headers.get('x-ratelimit-limit');
  if (limit === null) return undefined;
  return {
    limit: Number(limit),
    remaining: Number(headers.get('x-ratelimit-remaining') ?? 0),
    reset: Number(headers.get('x-ratelimit-reset') ?? 0),
  };
}

/** A new TLS connection failed before its handshake completed: nothing was sent over it. */
const TLS_HANDSHAKE_FAILED = 'ERR_MRP_TLS_HANDSHAKE';

/**
 * Error codes a TLS connection can only fail with during its handshake: the certificate checks
 * and a peer that does not speak TLS at all. fetch (blob transfers, health) hands these over as
 * they are, without saying whether the connection was up (node:http requests are told by their
 * socket's events instead, see `#viaNodeHttp`).
 */
const HANDSHAKE_ONLY = new Set([
  'ERR_SSL_WRONG_VERSION_NUMBER',
  'ERR_SSL_PACKET_LENGTH_TOO_LONG',
  'ERR_SSL_UNSUPPORTED_PROTOCOL',
  'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE',
  'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** OpenSSL's certificate verdicts, as Node names them in `err.code` (handshake-only too). */
export const CERT_VERDICTS: ReadonlySet<string> = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_REVOKED',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_SIGNATURE_FAILURE',
  'CERT_CHAIN_TOO_LONG',
  'INVALID_CA',
  'HOSTNAME_MISMATCH',
]);
for (const code of CERT_VERDICTS) HANDSHAKE_ONLY.add(code);

/** What to check when a TLS handshake with the relay failed. */
export const TLS_HANDSHAKE_HINT =
  'check that the relay speaks HTTPS there (a local relay without TLS is http://), and its certificate';

/**
 * `TLS handshake failed: <code>, <reason>` when fetch's error (or its cause) is one a TLS
 * connection can only fail with in its handshake; otherwise undefined.
 */
export function fetchHandshakeFailure(err: unknown): string | undefined {
  const cause = ((err as { cause?: unknown })?.cause ?? err) as { code?: unknown } | undefined;
  return typeof cause?.code === 'string' && HANDSHAKE_ONLY.has(cause.code)
    ? handshakeFailure(cause).message
    : undefined;
}

/** Connection failures that prove nothing reached the relay. */
const NEVER_SENT = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_CONNECT_TIMEOUT',
  TLS_HANDSHAKE_FAILED,
]);

/**
 * Whether `err` is a failure to connect at all (refused, unknown host, unreachable, no connection
 * within the connect timeout): the request never reached the relay, so it changed nothing there.
 */
export function neverReachedRelay(err: unknown): boolean {
  if (!(err instanceof NetworkError)) return false;
  const cause = err.cause as { code?: unknown; cause?: { code?: unknown } } | undefined;
  const code = cause?.cause?.code ?? cause?.code;
  return typeof code === 'string' && NEVER_SENT.has(code);
}

/** How long a new connection may take to open (the WebSocket handshake's limit too, §5). */
const CONNECT_TIMEOUT_MS = TIMING.wsAuthTimeoutMs;

export const CLIENT_DEFAULTS = { timeoutMs: 30_000, maxAttempts: 4, maxRetryAfterMs: 60_000 } as const;

/**
 * The largest answer read whole (`request`), whatever was asked. Blobs are streamed elsewhere
 * (`exchange`), never read whole here. A poll asks for less (`pollAnswerMaxBytes`).
 */
const MAX_ANSWER_BYTES = 256 * 1024 * 1024;

/** What a relay may add to each message of a page besides its envelope (ids, keys, times, status). */
const PAGE_MESSAGE_EXTRA_BYTES = 16 * 1024;
/** A page's own JSON around its messages (`has_more`, `next_cursor`, …). */
const PAGE_EXTRA_BYTES = 64 * 1024;

/**
 * The largest poll answer read for a page of at most `limit` messages (our choice): each message
 * at most the protocol's envelope limit (2 MiB), plus twice the body limit for a relay that
 * re-escapes the body (`\u`-escaping non-ASCII makes it up to three times longer), plus what the
 * relay adds; never more than `MAX_ANSWER_BYTES`. A hostile relay cannot make a runner that asked
 * for one message buffer more than about 4 MiB; a longer answer is `response_too_large`.
 */
export function pollAnswerMaxBytes(limit: number): number {
  const n = Number.isSafeInteger(limit) && limit > 0 ? Math.min(limit, LIMITS.pollLimitMax) : LIMITS.pollLimitDefault;
  const perMessage = LIMITS.maxEnvelopeBytes + 2 * LIMITS.maxBodyBytes + PAGE_MESSAGE_EXTRA_BYTES;
  return Math.min(MAX_ANSWER_BYTES, n * perMessage + PAGE_EXTRA_BYTES);
}

/** TLS connections whose handshake completed (a reused one sends at once). */
const SECURED = new WeakSet<object>();

/**
 * `TLS handshake failed: <code>, <reason>`. OpenSSL's own message is long and internal: its
 * `reason` ("wrong version number", also found in the message) says it, as a certificate
 * verdict's message does ("self-signed certificate"). The WebSocket session says it the same way.
 */
export function handshakeFailureText(err: unknown): string {
  const e = err as (NodeJS.ErrnoException & { reason?: unknown }) | undefined;
  const code = typeof e?.code === 'string' ? e.code : '';
  const reason =
    typeof e?.reason === 'string'
      ? e.reason
      : (/SSL routines:[^:]*:([^:]+):/.exec(String(e?.message))?.[1] ??
        (CERT_VERDICTS.has(code) ? String(e?.message) : ''));
  const why = [code, reason].filter(Boolean).join(', ');
  return `TLS handshake failed: ${why || String(e?.message ?? err)}`;
}

/** The error of a TLS handshake that failed, marked as such (see `TLS_HANDSHAKE_FAILED`). */
function handshakeFailure(err: unknown): Error {
  // No `cause`: `#transportError` reads a wrapped error's cause first (fetch's shape).
  const failure = new Error(handshakeFailureText(err)) as NodeJS.ErrnoException;
  failure.code = TLS_HANDSHAKE_FAILED;
  return failure;
}

function tooLarge(method: string, target: string, limit: number): ProtocolError {
  return new ProtocolError(
    'response_too_large',
    `${method} ${target.split('?')[0]}: the relay's answer is larger than the ${limit} bytes this request allows; nothing of it was used`,
    { details: { limit_bytes: limit } },
  );
}

/** One attempt of a request, as the transports take it. */
interface Attempt {
  method: string;
  target: string;
  headers: Record<string, string>;
  bodyText: string | undefined;
  timeoutMs: number;
  userSignal: AbortSignal | undefined;
  /** The longest answer read. */
  maxBytes: number;
}

/** One answer, read whole: what `request` needs from either transport. */
interface Answer {
  status: number;
  headers: HeaderSource;
  text: string;
}

/** A transport failure and what is known about it (for `#transportError`). */
class TransportFailure {
  constructor(
    readonly error: unknown,
    /** The answer had begun to arrive (so the request surely reached the relay). */
    readonly sent: boolean,
    readonly timedOut: boolean,
  ) {}
}

type NodeHttp = typeof import('node:http');
type NodeHttps = typeof import('node:https');
/** node:http and node:https, loaded on the first request (`mrp --version` never loads them). */
let nodeHttp: Promise<{ http: NodeHttp; https: NodeHttps }> | undefined;
function loadNodeHttp(): Promise<{ http: NodeHttp; https: NodeHttps }> {
  nodeHttp ??= Promise.all([import('node:http'), import('node:https')]).then(([http, https]) => ({ http, https }));
  return nodeHttp;
}

/**
 * Where `request` sends: node:http(s) on a keep-alive agent of this client. Much cheaper per call
 * than `fetch` (no WHATWG streams, Headers, or AbortSignal per request), which matters to a
 * poll-mode runner: one request per poll and one per reply.
 */
interface NodeTransport {
  request: NodeHttp['request'];
  agent: import('node:http').Agent;
}

export class RelayClient {
  readonly relayUrl: string;
  readonly keypair: Keypair;
  readonly #clock: Clock;
  readonly #fetch: typeof fetch;
  /** `request` goes through `fetch` only when one was passed in (tests); node:http otherwise. */
  readonly #customFetch: boolean;
  readonly #hostname: string;
  readonly #port: string;
  readonly #secure: boolean;
  #transport: NodeTransport | undefined;
  readonly #timeoutMs: number;
  readonly #maxAttempts: number;
  readonly #maxRetryAfterMs: number;
  readonly #basePath: string;
  readonly #origin: string;
  readonly #userAgent: string | undefined;
  readonly #trace: ((event: HttpTrace) => void) | undefined;
  readonly #failFast: boolean;
  /** The last rate-limit headers seen, per counter ('send' or 'request'). */
  readonly lastRate = new Map<'send' | 'request', RateInfo>();
  #clockOffset: number | undefined;

  constructor(options: RelayClientOptions) {
    let url: URL;
    try {
      url = new URL(options.relayUrl);
    } catch {
      throw new UsageError(`relayUrl: "${withoutUrlCredentials(String(options.relayUrl))}" is not a URL`, {
        code: 'invalid_relay_url',
      });
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new UsageError(`relayUrl: "${withoutUrlCredentials(options.relayUrl)}" must be http:// or https://`, {
        code: 'invalid_relay_url',
      });
    }
    // Never sent (requests go to the origin) but printed wherever the URL is: refused, unechoed.
    if (url.username || url.password)
      throw new UsageError(
        `relayUrl: "${withoutUrlCredentials(options.relayUrl)}" must not contain a user name or password (MRP signs every request with the key)`,
        { code: 'invalid_relay_url' },
      );
    this.relayUrl = options.relayUrl.replace(/\/+$/, '');
    this.#origin = url.origin;
    this.#basePath = url.pathname.replace(/\/+$/, '');
    this.keypair = options.keypair;
    this.#clock = options.clock ?? systemClock;
    this.#fetch = options.fetch ?? fetch;
    this.#customFetch = options.fetch !== undefined;
    this.#secure = url.protocol === 'https:';
    // `[::1]` in a URL is `::1` to the socket layer.
    this.#hostname = url.hostname.replace(/^\[(.*)\]$/, '$1');
    this.#port = url.port;
    this.#timeoutMs = options.timeoutMs ?? CLIENT_DEFAULTS.timeoutMs;
    this.#maxAttempts = options.maxAttempts ?? CLIENT_DEFAULTS.maxAttempts;
    this.#maxRetryAfterMs = options.maxRetryAfterMs ?? CLIENT_DEFAULTS.maxRetryAfterMs;
    this.#userAgent = options.userAgent;
    this.#trace = options.trace;
    this.#failFast = options.failFast === true;
  }

  /** The WebSocket endpoint for this relay (`ws[s]://host[/base]/v1/ws`). */
  get wsUrl(): string {
    return `${this.#origin.replace(/^http/, 'ws')}${this.#basePath}${PATHS.ws}`;
  }

  get publicKey(): string {
    return this.keypair.publicKey;
  }

  /**
   * The relay's clock minus ours, in ms, estimated from the `Date` header of the latest answer
   * (whole seconds, so within about a second plus the request's latency); undefined until one
   * arrives.
   */
  get clockOffsetMs(): number | undefined {
    return this.#clockOffset;
  }

  /** One signed call with the retry policy of §6. */
  async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<Response<T>> {
    const target = this.#basePath + buildTarget(path, options.query);
    const bodyText = options.bodyText ?? (options.body === undefined ? undefined : JSON.stringify(options.body));
    return this.#retrying(method, target, bodyText, options, () => this.#attempt<T>(method, target, bodyText, options));
  }

  /**
   * One signed call whose body and answer stream (blobs, §3.7), with the retry policy of §6.
   * The body is signed by its hash (`bodyHash`, base64url of its SHA-256) and `body()` is called
   * again for every attempt. `timeoutMs` is an idle limit: the call fails when no byte moved for
   * that long, however long the whole transfer takes. Resolves with the 2xx answer unread (its
   * body streams; `signal` and the idle limit keep applying until `done()` is called); any other
   * answer becomes a typed error, as with `request`.
   */
  async exchange(method: string, path: string, options: ExchangeOptions = {}): Promise<Exchange> {
    const target = this.#basePath + path;
    return this.#retrying(method, target, undefined, options, async () => {
      const hash = options.bodyHash ?? bodyHash(undefined);
      const timestamp = uniqueTimestamp(this.#clock.now());
      const headers: Record<string, string> = {
        'X-M2M-Public-Key': this.keypair.publicKey,
        'X-M2M-Timestamp': timestamp,
        'X-M2M-Signature': this.keypair.sign(canonicalRequest(method, target, timestamp, hash)),
        ...options.headers,
      };
      if (this.#userAgent) headers['User-Agent'] = this.#userAgent;
      const idleMs = options.timeoutMs ?? this.#timeoutMs;
      const idle = new AbortController();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const touch = (): void => {
        clearTimeout(timer);
        timer = setTimeout(() => idle.abort(new Error(`no byte moved for ${idleMs} ms`)), idleMs);
        timer.unref?.();
      };
      const done = (): void => clearTimeout(timer);
      const signal = options.signal ? AbortSignal.any([options.signal, idle.signal]) : idle.signal;
      touch();
      const ended = new AbortController();
      const body = options.body?.(ended.signal);
      // Stops reading a failed attempt's body (fetch may keep pulling it): the retry reads afresh.
      const endBody = (): void => {
        ended.abort();
        if (body !== undefined && !(body instanceof Uint8Array))
          (body as AsyncGenerator<Uint8Array>).return?.(undefined)?.catch(() => undefined);
      };
      let res: globalThis.Response;
      try {
        // `redirect: 'error'`: a signed target cannot move anyway, and following redirects makes
        // fetch tee a streamed body to replay it — one branch never read, so it would hold the
        // whole upload in memory.
        const init: RequestInit & { duplex?: 'half' } = { method, headers, signal, redirect: 'error' };
        if (body !== undefined) {
          init.body = (body instanceof Uint8Array ? body : progress(body, touch)) as unknown as NonNullable<
            RequestInit['body']
          >;
          init.duplex = 'half';
        }
        res = await this.#fetch(this.#origin + target, init);
      } catch (err) {
        done();
        endBody();
        throw this.#transportError(err, method, target, options.signal, idle.signal.aborted, idleMs, false);
      }
      const rate = rateOf(res.headers);
      if (rate) this.lastRate.set('request', rate);
      if (res.status >= 200 && res.status < 300) {
        touch();
        return { response: res, touch, done, requestId: res.headers.get('x-request-id') ?? undefined };
      }
      // Refused (perhaps before the whole body was read): this attempt's body is done with.
      endBody();
      let text = '';
      try {
        // Bounded: a refusal that never ends must not take the process's memory with it.
        text = await boundedText(res, MAX_SMALL_ANSWER_BYTES);
      } catch {
        // The error envelope was cut off: the status still says what happened.
      } finally {
        done();
      }
      throw relayErrorFromResponse(res.status, text, res.headers, this.#clock.now());
    });
  }

  /** Tries `attempt` under the retry policy of §6 (see the file comment). */
  async #retrying<R>(
    method: string,
    target: string,
    bodyText: string | undefined,
    options: RetryOptions,
    attempt: () => Promise<R>,
  ): Promise<R> {
    const tracedBody = options.secretBody && bodyText !== undefined ? REDACTED_BODY : bodyText;
    const backoff = new Backoff();
    for (let n = 1; ; n++) {
      const started = performance.now();
      try {
        const res = await attempt();
        this.#traced(method, target, tracedBody, n, started, res as Response<unknown>);
        return res;
      } catch (err) {
        this.#traced(method, target, tracedBody, n, started, undefined, err);
        if (options.signal?.aborted || options.once === true || n >= this.#maxAttempts) throw err;
        let delay: number;
        // Every attempt is signed with a fresh unique timestamp: a replay verdict needs no wait.
        if (err instanceof RelayError && err.code === 'replay_detected') delay = 0;
        else if (err instanceof RelayError && err.code === 'rate_limit_exceeded') {
          delay = (err.retryAfter ?? 1) * 1000;
          if (delay > this.#maxRetryAfterMs) throw err;
        } else if (
          options.idempotent &&
          isRetryable(err) &&
          !(this.#failFast && (err instanceof NetworkError || err instanceof TimeoutError))
        ) {
          delay = backoff.next();
        } else throw err;
        await sleep(delay, { clock: this.#clock, signal: options.signal });
      }
    }
  }

  #traced(
    method: string,
    target: string,
    body: string | undefined,
    attempt: number,
    started: number,
    res?: Response<unknown>,
    err?: unknown,
  ): void {
    if (!this.#trace) return;
    const relayError = err instanceof RelayError ? err : undefined;
    this.#trace({
      method,
      target,
      status: res?.status ?? relayError?.status,
      ms: performance.now() - started,
      attempt,
      requestId: res?.requestId ?? relayError?.requestId,
      error: err === undefined ? undefined : ((err as { code?: string }).code ?? 'error'),
      requestBody: body,
      response: res?.data,
    });
  }

  /**
   * Signs one attempt with a `uniqueTimestamp`: identical requests repeated within a second, by
   * this process or by another one using the same key, never carry the same signature (which the
   * relay would refuse as a replay).
   */
  #sign(method: string, target: string, bodyText: string | undefined): ReturnType<typeof signRequest> {
    const now = this.#clock.now();
    return signRequest(this.keypair, method, target, bodyText, now, { timestamp: uniqueTimestamp(now) });
  }

  async #attempt<T>(
    method: string,
    target: string,
    bodyText: string | undefined,
    options: RequestOptions,
  ): Promise<Response<T>> {
    const headers: Record<string, string> = {
      ...this.#sign(method, target, bodyText),
      Accept: 'application/json',
    };
    if (bodyText !== undefined) headers['Content-Type'] = 'application/json';
    if (this.#userAgent) headers['User-Agent'] = this.#userAgent;
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    const maxBytes = Math.min(options.maxAnswerBytes ?? MAX_ANSWER_BYTES, MAX_ANSWER_BYTES);
    let res: Answer;
    try {
      const attempt = { method, target, headers, bodyText, timeoutMs, userSignal: options.signal, maxBytes };
      res = this.#customFetch ? await this.#viaFetch(attempt) : await this.#viaNodeHttp(attempt);
    } catch (err) {
      if (!(err instanceof TransportFailure)) throw err;
      throw this.#transportError(err.error, method, target, options.signal, err.timedOut, timeoutMs, err.sent);
    }
    const date = Date.parse(res.headers.get('date') ?? '');
    // The header is truncated to the second: its middle is the best guess.
    if (Number.isFinite(date)) this.#clockOffset = date + 500 - this.#clock.now();
    const rate = rateOf(res.headers);
    if (rate) this.lastRate.set(method === 'POST' && target.endsWith(PATHS.messages) ? 'send' : 'request', rate);
    const text = res.text;
    if (res.status >= 200 && res.status < 300) {
      let data: unknown;
      try {
        data = text ? (options.parse ?? JSON.parse)(text) : undefined;
      } catch (err) {
        throw new ProtocolError(
          'invalid_response',
          `${method} ${target.split('?')[0]}: unreadable answer from the relay (${(err as Error).message})`,
          { cause: err },
        );
      }
      const take = res.headers.get(HEADERS.take) ?? undefined;
      return {
        status: res.status,
        data: data as T,
        rate,
        requestId: res.headers.get('x-request-id') ?? undefined,
        ...(take === undefined ? {} : { take }),
      };
    }
    throw relayErrorFromResponse(res.status, text, res.headers, this.#clock.now());
  }

  /** One attempt through the `fetch` passed in; failures are `TransportFailure`s. */
  async #viaFetch({ method, target, headers, bodyText, timeoutMs, userSignal, maxBytes }: Attempt): Promise<Answer> {
    const timeout = AbortSignal.timeout(timeoutMs);
    // AbortSignal.any holds its sources weakly: no listener piles up on a long-lived signal.
    const signal = userSignal ? AbortSignal.any([userSignal, timeout]) : timeout;
    let res: globalThis.Response;
    try {
      res = await this.#fetch(this.#origin + target, {
        method,
        headers,
        ...(bodyText === undefined ? {} : { body: bodyText }),
        signal,
      });
    } catch (err) {
      throw new TransportFailure(err, false, timeout.aborted);
    }
    let answer: { text: string; cut: boolean };
    try {
      answer = await readBounded(res, maxBytes);
    } catch (err) {
      throw new TransportFailure(err, true, timeout.aborted);
    }
    if (answer.cut) throw tooLarge(method, target, maxBytes);
    return { status: res.status, headers: res.headers, text: answer.text };
  }

  async #nodeTransport(): Promise<NodeTransport> {
    if (this.#transport) return this.#transport;
    const { http, https } = await loadNodeHttp();
    // Keep-alive, most recently used socket first (the others may time out and close); the agent
    // drops an idle socket a second before the relay's `Keep-Alive: timeout` hint says it would.
    const options = { keepAlive: true, scheduling: 'lifo' as const };
    this.#transport ??= this.#secure
      ? { request: https.request, agent: new https.Agent(options) }
      : { request: http.request, agent: new http.Agent(options) };
    return this.#transport;
  }

  /**
   * One attempt over node:http(s); failures are `TransportFailure`s. `timeoutMs` bounds the whole
   * attempt (answer read included); `userSignal` cancels it.
   */
  async #viaNodeHttp({ method, target, headers, bodyText, timeoutMs, userSignal, maxBytes }: Attempt): Promise<Answer> {
    const transport = this.#transport ?? (await this.#nodeTransport());
    if (userSignal?.aborted) throw new TransportFailure(userSignal.reason, false, false);
    if (bodyText !== undefined) headers['Content-Length'] = String(Buffer.byteLength(bodyText, 'utf8'));
    return new Promise<Answer>((resolve, reject) => {
      let answered = false;
      let timedOut = false;
      let settled = false;
      const req = transport.request({
        hostname: this.#hostname,
        port: this.#port,
        path: target,
        method,
        headers,
        agent: transport.agent,
      });
      const onAbort = (): void => {
        req.destroy(userSignal?.reason instanceof Error ? userSignal.reason : new AbortError());
      };
      const timer = setTimeout(() => {
        timedOut = true;
        req.destroy(new Error(`no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      timer.unref?.();
      // A host that never answers the connection (a dropped SYN) is given up on like a refused
      // one, long before the request's own timeout (a long poll's is 50 s).
      if (timeoutMs > CONNECT_TIMEOUT_MS) req.once('socket', (socket) => this.#connectWithin(req, socket));
      userSignal?.addEventListener('abort', onAbort, { once: true });
      const settle = (): boolean => {
        if (settled) return false;
        settled = true;
        clearTimeout(timer);
        userSignal?.removeEventListener('abort', onAbort);
        return true;
      };
      // A fresh TLS connection is handshaking from its TCP connect until `secureConnect`: an error
      // then (EPROTO from a plain-HTTP server, a refused certificate) means nothing of the request
      // left. Before the TCP connect it is not a handshake (refused, unknown host: said as such).
      let handshaking = false;
      if (this.#secure)
        req.once('socket', (socket) => {
          if (SECURED.has(socket)) return;
          if (socket.connecting)
            socket.once('connect', () => {
              handshaking = !SECURED.has(socket);
            });
          else handshaking = true;
          socket.once('secureConnect', () => {
            SECURED.add(socket);
            handshaking = false;
          });
        });
      const fail = (err: unknown): void => {
        if (settle()) reject(new TransportFailure(handshaking ? handshakeFailure(err) : err, answered, timedOut));
      };
      req.on('error', fail);
      req.on('response', (res) => {
        answered = true;
        const chunks: Buffer[] = [];
        let bytes = 0;
        res.on('data', (chunk: Buffer) => {
          bytes += chunk.length;
          if (bytes <= maxBytes) {
            chunks.push(chunk);
            return;
          }
          // A relay that never stops answering must not take the process's memory with it.
          chunks.length = 0;
          if (settle()) reject(tooLarge(method, target, maxBytes));
          req.destroy();
        });
        res.on('error', fail);
        res.on('close', () => {
          if (!res.complete) fail(new Error('the connection closed before the whole answer arrived'));
        });
        res.on('end', () => {
          if (!settle()) return;
          const raw = res.headers;
          resolve({
            status: res.statusCode ?? 0,
            headers: {
              get(name: string): string | null {
                const v = raw[name.toLowerCase()];
                return v === undefined ? null : Array.isArray(v) ? v.join(', ') : v;
              },
            },
            text: chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks).toString('utf8'),
          });
        });
      });
      // A string body goes out in one write with the head (a Buffer would take a second one).
      if (bodyText === undefined) req.end();
      else req.end(bodyText, 'utf8');
    });
  }

  /** Destroys `req` with a connect timeout when its fresh `socket` has not connected in time. */
  #connectWithin(req: import('node:http').ClientRequest, socket: import('node:net').Socket): void {
    if (!socket.connecting) return;
    const timer = setTimeout(() => {
      const err = new Error(`no connection within ${CONNECT_TIMEOUT_MS} ms`) as NodeJS.ErrnoException;
      err.code = 'UND_ERR_CONNECT_TIMEOUT';
      req.destroy(err);
    }, CONNECT_TIMEOUT_MS);
    timer.unref?.();
    const clear = (): void => clearTimeout(timer);
    socket.once('connect', clear);
    socket.once('close', clear);
  }

  #transportError(
    err: unknown,
    method: string,
    target: string,
    userSignal: AbortSignal | undefined,
    timedOut: boolean,
    ms: number,
    sent: boolean,
  ): Error {
    if (userSignal?.aborted) return userSignal.reason instanceof Error ? userSignal.reason : new AbortError();
    const what = `${method} ${target.split('?')[0]}`;
    const unsafe = method === 'POST' || method === 'PUT' || method === 'PATCH' || method === 'DELETE';
    if (timedOut) {
      return unsafe
        ? new OutcomeUnknownError(`${what}: no answer within ${ms} ms; the relay may or may not have applied it`, {
            cause: err,
          })
        : new TimeoutError(`${what}: no answer from ${this.#origin} within ${ms} ms`, { cause: err });
    }
    // fetch wraps the socket's error in `cause`; node:http hands it over as it is.
    type Cause = { code?: string; message?: string };
    let cause = (err as { cause?: Cause }).cause ?? (err as Cause);
    // A handshake failure fetch reports (`https://` to a relay without TLS, a refused certificate)
    // is said as node:http's are: nothing of the request left.
    if (!sent && typeof cause?.code === 'string' && HANDSHAKE_ONLY.has(cause.code)) {
      cause = handshakeFailure(cause) as Cause;
      err = cause;
    }
    const code = cause?.code ?? '';
    const detail =
      code === TLS_HANDSHAKE_FAILED ? String(cause?.message) : code || cause?.message || (err as Error).message;
    // Only a failure to connect proves a request was never sent.
    const neverSent = sent ? false : NEVER_SENT.has(code);
    if (unsafe && !neverSent)
      return new OutcomeUnknownError(`${what}: the connection broke before the answer (${detail})`, { cause: err });
    return new NetworkError(`cannot reach the relay at ${this.#origin} (${detail})`, {
      cause: err,
      code: code === 'ECONNREFUSED' ? 'connection_refused' : 'network_error',
      hint:
        code === 'ECONNREFUSED'
          ? 'is the relay running? (`mrp relay` starts one locally)'
          : code === TLS_HANDSHAKE_FAILED
            ? TLS_HANDSHAKE_HINT
            : 'check the relay URL and your network',
    });
  }

  // ── §3.3 health ─────────────────────────────────────────────────────────────────────────────

  /** `GET /v1/health` (unauthenticated). */
  async health(signal?: AbortSignal): Promise<HealthResponse> {
    const timeout = AbortSignal.timeout(this.#timeoutMs);
    const started = performance.now();
    let res: globalThis.Response;
    try {
      res = await this.#fetch(`${this.#origin}${this.#basePath}${PATHS.health}`, {
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      });
    } catch (err) {
      throw this.#transportError(err, 'GET', PATHS.health, signal, timeout.aborted, this.#timeoutMs, false);
    }
    let text: string;
    try {
      text = await boundedText(res, MAX_SMALL_ANSWER_BYTES);
    } catch (err) {
      throw this.#transportError(err, 'GET', PATHS.health, signal, timeout.aborted, this.#timeoutMs, true);
    }
    this.#traced('GET', this.#basePath + PATHS.health, undefined, 1, started, {
      status: res.status,
      data: text,
      rate: undefined,
      requestId: res.headers.get('x-request-id') ?? undefined,
    });
    if (!res.ok) throw relayErrorFromResponse(res.status, text, res.headers, this.#clock.now());
    let health: unknown;
    try {
      health = JSON.parse(text);
    } catch {
      health = undefined;
    }
    if (!isPlainObject(health))
      throw new ProtocolError(
        'invalid_response',
        `GET ${PATHS.health}: the relay's answer is not a health record (not a JSON object, or over ${MAX_SMALL_ANSWER_BYTES} bytes)`,
      );
    return health as unknown as HealthResponse;
  }

  // ── §3.4 agents ─────────────────────────────────────────────────────────────────────────────

  async getAgent(key: string, signal?: AbortSignal): Promise<AgentProfile> {
    return (await this.request<AgentProfile>('GET', PATHS.agent(key), { signal, idempotent: true })).data;
  }

  /** PATCH of the own profile. */
  async updateProfile(patch: ProfilePatch, signal?: AbortSignal): Promise<AgentProfile> {
    return (
      await this.request<AgentProfile>('PATCH', PATHS.agent(this.publicKey), { body: patch, signal, idempotent: true })
    ).data;
  }

  async deleteAgent(signal?: AbortSignal): Promise<void> {
    await this.request('DELETE', PATHS.agent(this.publicKey), { signal, idempotent: true });
  }

  async capabilitiesOf(key: string, signal?: AbortSignal): Promise<AgentCapabilitiesResponse> {
    return (
      await this.request<AgentCapabilitiesResponse>('GET', PATHS.agentCapabilities(key), { signal, idempotent: true })
    ).data;
  }

  // ── §3.5 discovery ──────────────────────────────────────────────────────────────────────────

  async discover(
    query: {
      tag?: string[];
      q?: string;
      name?: string;
      active_since?: string;
      tag_prefix?: string;
      limit?: number;
      cursor?: string;
    },
    signal?: AbortSignal,
  ): Promise<DiscoverResponse> {
    return (await this.request<DiscoverResponse>('GET', PATHS.discover, { query, signal, idempotent: true })).data;
  }

  async capabilityTags(prefix?: string, signal?: AbortSignal): Promise<CapabilityTagsResponse> {
    return (
      await this.request<CapabilityTagsResponse>('GET', PATHS.capabilities, {
        query: { prefix },
        signal,
        idempotent: true,
      })
    ).data;
  }

  // ── §3.6 messages ───────────────────────────────────────────────────────────────────────────

  /**
   * Sends one message. A lost answer is an OutcomeUnknownError, never a silent resend. An
   * `EncodedSend`'s body goes out as its exact text. `once`: no retry inside the call (a rate
   * limit is thrown, not waited out here), for a caller that retries with its own budget
   * (`Agent.send`'s outbox).
   */
  async send(
    request: SendRequest | EncodedSend,
    signal?: AbortSignal,
    options: { once?: boolean } = {},
  ): Promise<SendResponse> {
    return (
      await this.request<SendResponse>('POST', PATHS.messages, {
        bodyText: encodeSendRequest(request),
        signal,
        ...(options.once ? { once: true } : {}),
      })
    ).data;
  }

  /** Polls the own inbox; `status=sent` (default) marks what it returns delivered. */
  async poll(
    query: {
      status?: MessageStatus;
      limit?: number;
      cursor?: string;
      sender_key?: string;
      in_reply_to?: string;
      thread_id?: string;
      since?: string;
      wait?: number;
      /** Our extension (docs/protocol.md §3.6): the take id to record, or to list by. */
      take?: string;
    } = {},
    signal?: AbortSignal,
    /** `once`: no retry inside the call, whatever the status (a poll loop retries with its own backoff, saying so). */
    options: { once?: boolean } = {},
  ): Promise<PollPage> {
    const waitMs = (query.wait ?? 0) * 1000;
    // A poll for `sent` messages is not idempotent: a lost answer loses what it marked delivered.
    const res = await this.request<MessagePage>('GET', PATHS.messages, {
      query,
      signal,
      timeoutMs: this.#timeoutMs + waitMs,
      idempotent: query.status !== undefined && query.status !== 'sent',
      once: options.once === true,
      maxAnswerBytes: pollAnswerMaxBytes(query.limit ?? LIMITS.pollLimitDefault),
      parse: readMessagePage,
    });
    const { messages, has_more, next_cursor, sizes, rejected } = res.data;
    return {
      messages,
      has_more,
      next_cursor,
      sizes,
      rejected,
      ...(query.take === undefined ? {} : { takeEchoed: res.take === query.take }),
    };
  }

  async getMessage(id: string, signal?: AbortSignal): Promise<Message> {
    checkPathId(id, 'message id');
    return normalizeMessage((await this.request<Message>('GET', PATHS.message(id), { signal, idempotent: true })).data);
  }

  async messageStatus(id: string, signal?: AbortSignal): Promise<MessageStatusResponse> {
    checkPathId(id, 'message id');
    return (await this.request<MessageStatusResponse>('GET', PATHS.messageStatus(id), { signal, idempotent: true }))
      .data;
  }

  /**
   * One page of a thread; entries that cannot be read (too deep, malformed) are in `rejected`.
   * `bodies: true` adds `bodyTexts`: each message's body exactly as the relay wrote it, by
   * message id (for comparing a sent body's text without re-serialising anything).
   */
  async thread(
    id: string,
    query: { limit?: number; cursor?: string } = {},
    signal?: AbortSignal,
    options: { bodies?: boolean } = {},
  ): Promise<ThreadResponse & { rejected: RejectedMessage[]; bodyTexts?: Map<string, string> }> {
    checkPathId(id, 'thread id');
    let bodyTexts: Map<string, string> | undefined;
    const parse = (text: string): MessagePage => {
      const page = readMessagePage(text);
      if (options.bodies) bodyTexts = bodyTextsOf(text);
      return page;
    };
    const res = await this.request<MessagePage>('GET', PATHS.thread(id), { query, signal, idempotent: true, parse });
    const { messages, has_more, next_cursor, rejected, extra } = res.data;
    const page = {
      thread_id: typeof extra['thread_id'] === 'string' ? extra['thread_id'] : id,
      messages,
      has_more,
      next_cursor,
      rejected,
    };
    return bodyTexts ? { ...page, bodyTexts } : page;
  }

  // ── §3.9 ACL ────────────────────────────────────────────────────────────────────────────────

  async putAcl(peer: string, type: AclEntryType, signal?: AbortSignal): Promise<AclEntry> {
    return (
      await this.request<AclEntry>('PUT', PATHS.acl(this.publicKey), {
        body: { peer_key: peer, entry_type: type },
        signal,
        idempotent: true,
      })
    ).data;
  }

  async getAcl(peer: string, signal?: AbortSignal): Promise<AclEntry> {
    return (await this.request<AclEntry>('GET', PATHS.aclEntry(this.publicKey, peer), { signal, idempotent: true }))
      .data;
  }

  async listAcl(
    query: { entry_type?: AclEntryType; limit?: number; cursor?: string } = {},
    signal?: AbortSignal,
  ): Promise<AclListResponse> {
    return (await this.request<AclListResponse>('GET', PATHS.acl(this.publicKey), { query, signal, idempotent: true }))
      .data;
  }

  async deleteAcl(peer: string, signal?: AbortSignal): Promise<void> {
    await this.request('DELETE', PATHS.aclEntry(this.publicKey, peer), { signal, idempotent: true });
  }

  // ── §3.8 Webhooks ───────────────────────────────────────────────────────────────────────────

  /** Registers or replaces this agent's webhook (re-enables it). The secret never reaches `trace`. */
  async setWebhook(url: string, secret: string, signal?: AbortSignal): Promise<WebhookConfig> {
    return (
      await this.request<WebhookConfig>('PUT', PATHS.webhook(this.publicKey), {
        body: { url, secret },
        signal,
        idempotent: true,
        secretBody: true,
      })
    ).data;
  }

  /** This agent's webhook (without its secret); `not_found` when none is registered. */
  async getWebhook(signal?: AbortSignal): Promise<WebhookConfig> {
    return (await this.request<WebhookConfig>('GET', PATHS.webhook(this.publicKey), { signal, idempotent: true })).data;
  }

  /** Removes this agent's webhook and its pending deliveries. */
  async deleteWebhook(signal?: AbortSignal): Promise<void> {
    await this.request('DELETE', PATHS.webhook(this.publicKey), { signal, idempotent: true });
  }

  // ── §3.7 blobs (./blobs.ts) ─────────────────────────────────────────────────────────────────

  /** `POST /v1/blobs`: uploads bytes or a stream that knows its size and hash (`fileBlobInput`). */
  uploadBlob(input: BlobInput, opts?: UploadOptions): Promise<BlobInfo> {
    return uploadBlob(this, input, opts);
  }

  /** `GET /v1/blobs/{id}`: headers now, bytes streaming; the body throws `blob_hash_mismatch` at its end if damaged. */
  downloadBlob(id: string, opts?: DownloadOptions): Promise<{ info: BlobHead; body: AsyncIterable<Uint8Array> }> {
    return downloadBlob(this, id, opts);
  }

  /** A whole (verified) blob in memory, refused past `maxBytes`. */
  downloadBlobBytes(
    id: string,
    opts: DownloadOptions & { maxBytes: number; onHead?: (info: BlobHead) => void },
  ): Promise<Buffer> {
    return downloadBlobBytes(this, id, opts);
  }

  /** `HEAD /v1/blobs/{id}`. */
  headBlob(id: string, signal?: AbortSignal): Promise<BlobHead> {
    return headBlob(this, id, signal);
  }

  /** `DELETE /v1/blobs/{id}` (yours only; 409 `blob_referenced` while an unexpired message lists it). */
  deleteBlob(id: string, signal?: AbortSignal): Promise<void> {
    return deleteBlob(this, id, signal);
  }
}

/** message id → the body's source text, for each entry of a page's `messages` (valid JSON text). */
function bodyTextsOf(text: string): Map<string, string> {
  const out = new Map<string, string>();
  const list = topLevelMemberSpan(text, 'messages');
  if (!list) return out;
  for (const { start, end } of elementSpans(text, list.start, list.end)) {
    const entry = text.slice(start, end);
    const spans = memberSpans(entry, [['message_id'], ['body']]);
    const id = spans.get('message_id');
    const body = spans.get('body');
    if (!id || !body) continue;
    const messageId = JSON.parse(entry.slice(id.start, id.end)) as unknown;
    if (typeof messageId === 'string') out.set(messageId, entry.slice(body.start, body.end));
  }
  return out;
}
