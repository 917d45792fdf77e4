/**
 * Routes and how they are matched. A route declares, next to its handler, how its request body
 * is read and what kind of reply it gives, so the pipeline (`pipeline.ts`) can stream a 100 MiB
 * upload and a download without special cases:
 *
 * - body `none`: the handler gets no body. One that arrives anyway is read (bounded by the
 *   envelope limit) only to hash it for the signature, then dropped.
 * - body `json`: read whole, up to `maxBytes` (default: the envelope limit) and within the
 *   relay-wide body gate; `req.json()` parses it (depth-bounded, strict UTF-8) and keeps its
 *   verbatim text. Parsed only after authentication, when the handler asks.
 * - body `stream`: the handler gets the raw body as `AsyncIterable<Uint8Array>` while it arrives,
 *   never buffered, refused past `maxBytes`, SHA-256-hashed as it streams. The signature can only
 *   be checked once the last byte is in, so (authenticated routes) `req.caller` is the CLAIMED
 *   key until then, and the stream's end IS the verdict: iterating it to the end resolves only
 *   when the signature (and the replay cache, suspension and rate checks) passed, and throws the
 *   401/409/403/429 otherwise. The pattern for a blob upload:
 *
 *       const body = req.stream();
 *       const put = await blobs.put(req.caller, blobId, body, { maxBytes });  // stores nothing unless the stream ENDS
 *       const caller = await body.verified();                                 // settled already: the authenticated key
 *       await store.insertBlob(...);                                          // commit only now
 *
 *   A store that makes its write visible only when its source ends (BlobStore does) never keeps
 *   a forged upload. A handler that answers 2xx without having seen the verdict is a bug the
 *   pipeline turns into a 500.
 *
 * Replies: `json` (an object, or verbatim JSON text), `bytes` (a stream with a known length and
 * content type; HEAD gets the headers and the stream is cancelled unread), `text`. Errors are
 * always JSON envelopes, whatever the route's reply mode.
 *
 * Matching: literal segments beat parameters (`/v1/messages/threads/:thread` wins over
 * `/v1/messages/:id/status`); HEAD matches GET; a path with no route for the method → 405 with
 * `Allow`.
 */
import type { Span } from '../protocol/json.js';
import type { RateState } from './limits.js';

export type BodyMode =
  | { kind: 'none' }
  | { kind: 'json'; maxBytes?: number }
  /** `idleTimeoutMs`: 408 when no byte arrives for this long (default: the relay's body timeout). */
  | { kind: 'stream'; maxBytes: number; idleTimeoutMs?: number };

export type ReplyMode = 'json' | 'bytes' | 'text';

export type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** A request body read whole, as JSON. */
export interface JsonBody {
  value: unknown;
  /** The exact text received (bodies travel verbatim). */
  text: string;
  /** Where the root object's `body` member is in `text`, when it has one (a send's verbatim body). */
  body?: Span;
}

/** A request body as it streams in (see the file comment for the verdict). */
export interface StreamBody extends AsyncIterable<Uint8Array> {
  /** Bytes received so far. */
  readonly received: number;
  /**
   * The authenticated caller, once the whole body has arrived and its signature verified; reads
   * (and drops) whatever the handler left unread first. Rejects with the refusal otherwise.
   */
  verified(): Promise<string>;
}

export interface Request {
  method: string;
  params: Record<string, string>;
  query: URLSearchParams;
  /** The authenticated caller (authenticated routes); for `stream` routes the claimed key until verified. */
  caller: string;
  /** A request header (the first value if repeated), by case-insensitive name. */
  header(name: string): string | undefined;
  /** Aborts when the client goes away or the relay shuts down (long polls, streams). Made when first read. */
  signal: AbortSignal;
  /** Whether `signal` has aborted, without making it (a request that never waits needs no signal). */
  readonly aborted: boolean;
  /** `json` routes: the body parsed (once; 400 `bad_request` when it is not JSON). */
  json(): JsonBody;
  /** `stream` routes: the raw body. */
  stream(): StreamBody;
}

export interface JsonReply {
  kind: 'json';
  status: number;
  /** An object to serialise, or a string that already is JSON text (sent as it is). */
  body?: unknown;
  headers?: Record<string, string>;
  /** Rate state of the send counter, when this reply is for a send. */
  sendRate?: RateState | undefined;
}

export interface BytesReply {
  kind: 'bytes';
  status: number;
  contentType: string;
  /** Content-Length: exactly the bytes `body` yields. */
  length: number;
  body: AsyncIterable<Uint8Array>;
  /** Releases the source unread (HEAD, or a client gone before the first byte). */
  cancel?(): void;
  headers?: Record<string, string>;
}

export interface TextReply {
  kind: 'text';
  status: number;
  text: string;
  contentType?: string;
  headers?: Record<string, string>;
}

export type Reply = JsonReply | BytesReply | TextReply;

export interface Route<S = unknown> {
  method: Method;
  /** `/v1/agents/:key`: `:name` segments become `params.name` (percent-decoded). */
  path: string;
  auth: boolean;
  /** Counted against the send limit instead of the general request limit. */
  send?: boolean;
  summary: string;
  body: BodyMode;
  reply: ReplyMode;
  handler(req: Request, svc: S): Reply | Promise<Reply>;
}

export const NO_BODY: BodyMode = { kind: 'none' };
export const JSON_BODY: BodyMode = { kind: 'json' };

interface Compiled<S> {
  route: Route<S>;
  parts: string[];
  literals: number;
}

export type Match<S> = { route: Route<S>; params: Record<string, string> } | { allowed: string[] };

export class Router<S> {
  readonly routes: readonly Route<S>[];
  readonly #compiled: Compiled<S>[];

  /** Earlier routes win ties (same number of literal segments). */
  constructor(routes: readonly Route<S>[]) {
    this.routes = routes;
    this.#compiled = routes.map((route) => {
      const parts = route.path.split('/');
      return { route, parts, literals: parts.filter((p) => !p.startsWith(':')).length };
    });
  }

  /** The route for `method` (HEAD → GET) and decoded path segments, the methods allowed, or undefined. */
  match(method: string, segments: string[]): Match<S> | undefined {
    const wanted = method === 'HEAD' ? 'GET' : method;
    const allowed: string[] = [];
    let best: { route: Route<S>; params: Record<string, string>; literals: number } | undefined;
    for (const c of this.#compiled) {
      const params = matchParts(c.parts, segments);
      if (!params) continue;
      if (c.route.method !== wanted) {
        allowed.push(c.route.method);
        continue;
      }
      if (!best || c.literals > best.literals) best = { route: c.route, params, literals: c.literals };
    }
    if (best) return { route: best.route, params: best.params };
    return allowed.length ? { allowed: [...new Set(allowed)] } : undefined;
  }
}

function matchParts(parts: string[], segments: string[]): Record<string, string> | undefined {
  if (parts.length !== segments.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i]!;
    if (p.startsWith(':')) params[p.slice(1)] = segments[i]!;
    else if (p !== segments[i]) return undefined;
  }
  return params;
}
