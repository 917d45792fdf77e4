/**
 * One HTTP request, start to end: route → body → authentication → admission (agent, suspension,
 * rate limits) → handler → reply. Every answer carries CORS headers and `X-Request-Id`; every
 * error is a §6 envelope; every request is logged and counted once.
 *
 * How the body is read depends on the route's body mode (`router.ts`). For `none` and `json`,
 * headers, key and timestamp are checked before a byte of the body is read (`Authenticator.claim`),
 * the body is hashed as it arrives, and the signature (then the replay cache) is checked once it
 * is in — before the handler runs. For `stream`, a signature already in the replay cache is
 * refused before the body is read; the handler runs while the body streams in, with the claimed
 * key; the signature check and admission run when the last byte is in, and the stream's end is
 * their verdict (a handler that answers 2xx without it is turned into a 500).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { LazyAbort } from '../core/async.js';
import type { Clock } from '../core/clock.js';
import { PATHS } from '../protocol/constants.js';
import { errorEnvelope } from '../protocol/envelope.js';
import type { Authenticator, Claim } from './auth.js';
import { type Body, type BodyGate, type BodyLimits, RequestStream, readBody } from './body.js';
import type { Directory } from './directory.js';
import { ApiError, isStorageFailure } from './errors.js';
import { CORS_HEADERS, PREFLIGHT_HEADERS, parseJsonBody } from './http.js';
import { requestId as newRequestId } from './ids.js';
import { limits, type RateLimiter, rateHeaders } from './limits.js';
import type { Logger } from './log.js';
import type { RelayMetrics } from './metrics.js';
import { writeBytes, writeJson, writeText } from './reply.js';
import type { JsonBody, Reply, Request, Route, Router } from './router.js';
import type { Services } from './services.js';
import type { UnsentResponses } from './unsent-responses.js';

export interface PipelineDeps {
  router: Router<Services>;
  services: Services;
  auth: Authenticator;
  directory: Directory;
  sendLimit: RateLimiter;
  requestLimit: RateLimiter;
  gate: BodyGate;
  clock: Clock;
  logger: Logger;
  metrics: RelayMetrics;
  maxEnvelopeBytes: number;
  bodyTimeoutMs: number;
  /** A JSON body must bring at least this many bytes (or its rest) in every `bodyRateWindowMs` (408 otherwise). */
  minBodyBytesPerWindow: number;
  bodyRateWindowMs: number;
  /** True once the relay is shutting down (new requests get 503). */
  closing(): boolean;
  /** Abort handles of requests in flight (long polls, streams), aborted at shutdown. */
  inFlight: Set<LazyAbort>;
  /** Answers written and not yet read by their clients (a budget and a stall limit). */
  unsent: UnsentResponses;
}

export type Handle = (req: IncomingMessage, res: ServerResponse) => Promise<void>;

export function createPipeline(deps: PipelineDeps): Handle {
  const { router, services, auth, directory, clock, logger, metrics } = deps;

  /** What follows a verified signature: the agent (created on first sight), suspension, activity, rate limits. */
  async function admit(caller: string, route: Route<Services>, headers: Record<string, string>): Promise<void> {
    const now = clock.now();
    const agent = await directory.ensure(caller, now);
    if (agent.status === 'suspended') throw new ApiError('agent_suspended', 'this agent is suspended');
    directory.touch(caller, now);
    if (route.send) {
      if (limits(deps.sendLimit)) Object.assign(headers, rateHeaders(await deps.sendLimit.peek(caller)));
      return;
    }
    if (!limits(deps.requestLimit)) return;
    const state = await deps.requestLimit.peek(caller);
    if (state.retryAfter > 0) {
      throw new ApiError('rate_limit_exceeded', `Too many requests; retry in ${state.retryAfter} s.`, {
        details: { limit: state.limit, window: '1m', retry_after: state.retryAfter },
        headers: { ...rateHeaders(state), 'Retry-After': String(state.retryAfter) },
      });
    }
    await deps.requestLimit.record(caller);
    Object.assign(headers, rateHeaders(await deps.requestLimit.peek(caller)));
  }

  const bodyLimits = (maxBytes: number): BodyLimits => ({
    maxBytes,
    timeoutMs: deps.bodyTimeoutMs,
    minBytesPerWindow: deps.minBodyBytesPerWindow,
    rateWindowMs: deps.bodyRateWindowMs,
  });

  return async function handle(req, res) {
    const started = performance.now();
    const id = newRequestId();
    const method = (req.method ?? 'GET').toUpperCase();
    const target = req.url ?? '/';
    const q = target.indexOf('?');
    const path = q < 0 ? target : target.slice(0, q);
    const headers: Record<string, string> = { ...CORS_HEADERS, 'X-Request-Id': id };
    let status = 500;
    let routeLabel = 'unmatched';
    /** The authenticated caller (logged); a stream route's handler gets the claimed key before that. */
    let caller: string | undefined;
    let claimed: string | undefined;
    let stream: RequestStream | undefined;
    // Watch for the client going away from the first moment: a long poll whose client left while
    // its body or auth was being handled must not take (and lose) messages.
    // Its AbortSignal is made only if the route asks (long polls, streams): making one per request
    // was ~3% of the relay's CPU under poll traffic.
    const abort = new LazyAbort();
    const onGone = (): void => abort.abort();
    res.on('close', onGone);
    deps.inFlight.add(abort);
    try {
      if (method === 'OPTIONS') {
        status = 204;
        writeJson(res, 204, undefined, { ...PREFLIGHT_HEADERS, 'X-Request-Id': id });
        return;
      }
      if (deps.closing()) {
        headers['Connection'] = 'close';
        throw new ApiError('service_unavailable', 'the relay is shutting down');
      }
      // Health checks stay answered (a small answer; a load balancer behind one address with a
      // client that does not read must not mark the relay down).
      if (!path.startsWith(PATHS.health) && deps.unsent.full(req.socket.remoteAddress)) {
        throw new ApiError('service_unavailable', 'answers sent to your address wait unread; read them first', {
          details: { reason: 'unread_answers', retry_after: 1 },
          headers: { 'Retry-After': '1' },
        });
      }
      let segments: string[];
      try {
        segments = path.split('/').map((s, i) => (i === 0 ? s : decodeURIComponent(s)));
      } catch {
        throw new ApiError('bad_request', 'malformed percent-encoding in the path');
      }
      if (path === PATHS.ws) {
        throw new ApiError('bad_request', 'this endpoint speaks WebSocket: send an Upgrade request', { status: 426 });
      }
      const found = router.match(method, segments);
      if (!found) throw new ApiError('not_found', `no route for ${path}`);
      if ('allowed' in found) {
        headers['Allow'] = found.allowed.join(', ');
        throw new ApiError('bad_request', `${method} is not allowed on ${path}`, { status: 405 });
      }
      const { route, params } = found;
      routeLabel = route.path;

      let body: Body | undefined;
      if (route.body.kind === 'stream') {
        const claim: Claim | undefined = route.auth ? auth.claim(req.headers) : undefined;
        // Our choice (docs/protocol.md §2.3): a stream (a blob upload, up to 100 MiB) whose
        // signature is already in the replay cache is refused before a byte of it is read, ahead
        // of the signature check. Buffered bodies keep the spec's order (below).
        if (claim) await auth.refuseKnownReplay(claim);
        const finish = async (hash: string): Promise<string> => {
          if (!claim) return '';
          const verified = await auth.verifyHttp(claim, method, target, hash);
          await admit(verified, route, headers);
          caller = verified;
          return verified;
        };
        stream = new RequestStream(
          req,
          { maxBytes: route.body.maxBytes, idleTimeoutMs: route.body.idleTimeoutMs ?? deps.bodyTimeoutMs },
          deps.gate,
          clock,
          abort.signal,
          finish,
        );
        claimed = claim?.publicKey;
      } else if (route.auth) {
        // Headers, key and timestamp are checked before a byte of the body is read; the body is
        // hashed as it arrives (under the usual limits) and then §2.3 in its order: the signature
        // (401 invalid_signature), then the replay cache (409 replay_detected).
        const claim = auth.claim(req.headers);
        const maxBytes =
          route.body.kind === 'json' ? (route.body.maxBytes ?? deps.maxEnvelopeBytes) : deps.maxEnvelopeBytes;
        body = await readBody(req, bodyLimits(maxBytes), deps.gate, clock);
        caller = await auth.verifyHttp(claim, method, target, body.hash);
        await admit(caller, route, headers);
      } else if (route.body.kind === 'json') {
        body = await readBody(req, bodyLimits(route.body.maxBytes ?? deps.maxEnvelopeBytes), deps.gate, clock);
      }

      const reply = await route.handler(
        requestOf(route, req, params, q < 0 ? '' : target.slice(q + 1), caller ?? claimed ?? '', abort, body, stream),
        services,
      );
      if (reply.kind !== route.reply)
        throw new Error(`route ${route.method} ${route.path} declares a ${route.reply} reply and gave ${reply.kind}`);
      if (stream && route.auth && reply.status < 400 && stream.caller === undefined) {
        throw new Error(`route ${route.method} ${route.path} answered before its stream body was verified`);
      }
      if (reply.kind === 'json' && reply.sendRate) Object.assign(headers, rateHeaders(reply.sendRate));
      status = reply.status;
      await write(res, reply, headers, method === 'HEAD', deps.unsent);
    } catch (err) {
      const api = ApiError.from(err);
      if (api.code === 'internal_error')
        logger.error('internal_error', { request_id: id, error: (err as Error)?.stack ?? String(err) });
      else if (isStorageFailure(err))
        logger.error('storage_error', {
          request_id: id,
          code: (err as { code?: string }).code,
          error: (err as Error).message,
        });
      status = api.status;
      writeJson(res, api.status, errorEnvelope(api.code, api.message, id, api.details), { ...headers, ...api.headers });
    } finally {
      stream?.release();
      res.off('close', onGone);
      deps.inFlight.delete(abort);
      metrics.request(method, routeLabel, status, (performance.now() - started) / 1000);
      if (logger.enabled('info')) {
        logger.info('request', {
          method,
          path,
          status,
          ms: Math.round((performance.now() - started) * 10) / 10,
          request_id: id,
          ...(caller ? { agent: caller } : {}),
        });
      }
    }
  };
}

function requestOf(
  route: Route<Services>,
  req: IncomingMessage,
  params: Record<string, string>,
  query: string,
  caller: string,
  abort: LazyAbort,
  body: Body | undefined,
  stream: RequestStream | undefined,
): Request {
  let json: JsonBody | undefined;
  return {
    method: req.method ?? 'GET',
    params,
    header(name) {
      const v = req.headers[name.toLowerCase()];
      return Array.isArray(v) ? v[0] : v;
    },
    query: new URLSearchParams(query),
    caller,
    get signal() {
      return abort.signal;
    },
    get aborted() {
      return abort.aborted;
    },
    json() {
      if (route.body.kind !== 'json') throw new Error(`route ${route.path} has no JSON body`);
      json ??= parseJsonBody(body?.bytes ?? Buffer.alloc(0));
      return json;
    },
    stream() {
      if (!stream) throw new Error(`route ${route.path} has no stream body`);
      return stream;
    },
  };
}

function write(
  res: ServerResponse,
  reply: Reply,
  headers: Record<string, string>,
  head: boolean,
  unsent: UnsentResponses,
): Promise<void> | void {
  switch (reply.kind) {
    case 'json':
      return writeJson(res, reply.status, reply.body, { ...headers, ...reply.headers }, head, unsent);
    case 'text':
      return writeText(
        res,
        reply.status,
        reply.text,
        reply.contentType ?? 'text/plain; charset=utf-8',
        { ...headers, ...reply.headers },
        head,
        unsent,
      );
    case 'bytes':
      unsent.watch(res);
      return writeBytes(res, reply, { ...headers, ...reply.headers }, head);
  }
}
