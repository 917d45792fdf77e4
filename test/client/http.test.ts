/**
 * `RelayClient` against a real, scripted `node:http` server on port 0 (§2, §6): every attempt is
 * signed afresh and verifies; error envelopes become typed errors with the stable code;
 * `Retry-After` is honoured on 429; 5xx and network errors are retried with backoff (idempotent
 * calls only); other 4xx never are. Time runs on a watched manual clock: the test sees each wait
 * the client schedules and moves time past it.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RelayClient } from '../../src/client/http.js';
import { NetworkError, OutcomeUnknownError, RateLimitError, RelayError } from '../../src/core/errors.js';
import { relayErrorFromFrame } from '../../src/protocol/envelope.js';
import { bodyHash, canonicalRequest, Keypair, parseTimestamp, verifySignature } from '../../src/protocol/signing.js';
import type { AgentProfile } from '../../src/protocol/types.js';
import { startRelay } from '../helpers/relay.js';
import { envelope, json, type SeenRequest, scriptedHttp, WatchedClock } from './_support.js';

const T0 = Date.UTC(2026, 2, 5, 12, 0, 0);

function profile(key: string): AgentProfile {
  return {
    public_key: key,
    display_name: null,
    status: 'active',
    visibility: 'private',
    inbox_policy: 'blocklist',
    created_at: '2026-03-05T12:00:00Z',
    last_active_at: '2026-03-05T12:00:00Z',
    metadata: {},
    capabilities: [],
  };
}

function client(url: string, clock: WatchedClock, keypair = Keypair.generate()): RelayClient {
  return new RelayClient({ relayUrl: url, keypair, clock });
}

/** The three auth headers of a request, checked to verify over exactly what was sent. */
function auth(req: SeenRequest): { key: string; timestamp: string; signature: string } {
  const key = req.headers['x-m2m-public-key'] as string;
  const timestamp = req.headers['x-m2m-timestamp'] as string;
  const signature = req.headers['x-m2m-signature'] as string;
  const canonical = canonicalRequest(req.method, req.url, timestamp, bodyHash(req.body));
  assert.ok(verifySignature(key, canonical, signature), `signature verifies over ${JSON.stringify(canonical)}`);
  return { key, timestamp, signature };
}

describe('RelayClient: signing every attempt', () => {
  it('a retried request carries a new timestamp and a new signature, both valid', async (t) => {
    const server = await scriptedHttp(t, (req, res, n) => {
      if (n === 0) json(res, 503, envelope('service_unavailable', 'restarting'));
      else json(res, 200, profile(req.headers['x-m2m-public-key'] as string));
    });
    const clock = new WatchedClock(T0);
    const c = client(server.url, clock);
    const result = c.getAgent(c.publicKey);
    const delay = await clock.nextTimer();
    assert.ok(delay >= 250 && delay <= 1000, `first backoff delay ${delay} ms`);
    assert.equal(server.seen.length, 1, 'waits before retrying');
    await clock.advanceAsync(delay);
    assert.equal((await result).public_key, c.publicKey);
    const [a, b] = [auth(server.seen[0]!), auth(server.seen[1]!)];
    assert.equal(server.seen[0]!.url, server.seen[1]!.url);
    assert.equal(a.key, c.publicKey);
    assert.notEqual(a.timestamp, b.timestamp, 'fresh timestamp');
    assert.notEqual(a.signature, b.signature, 'fresh signature (a reused one is a replay)');
    assert.match(a.timestamp, /^2026-03-05T12:00:00\.000\d{3}Z$/, 'RFC 3339 UTC with a unique sub-millisecond tail');
    assert.equal(Math.floor(parseTimestamp(b.timestamp) ?? Number.NaN), T0 + delay);
  });

  it('signs the exact request target it sends, query and body included', async (t) => {
    const server = await scriptedHttp(t, (_req, res) =>
      json(res, 201, { message_id: 'msg_1_000000000001', status: 'sent', created_at: 'c', expires_at: 'e' }),
    );
    const clock = new WatchedClock(T0);
    const c = client(server.url, clock);
    await c.discover({ tag: ['a b', "it's"], q: 'x&y=z', limit: 5 });
    await c.send({ recipient_key: Keypair.generate().publicKey, body: { text: 'héllo' } });
    const [get, post] = server.seen as [SeenRequest, SeenRequest];
    assert.equal(get.url, '/v1/discover?tag=a%20b&tag=it%27s&q=x%26y%3Dz&limit=5');
    auth(get);
    assert.equal(post.method, 'POST');
    assert.deepEqual(JSON.parse(post.body).body, { text: 'héllo' });
    auth(post);
  });

  it('the same request twice in the same millisecond: different timestamps and signatures', async (t) => {
    const server = await scriptedHttp(t, (req, res) =>
      json(res, 200, profile(req.headers['x-m2m-public-key'] as string)),
    );
    const clock = new WatchedClock(T0 + 250);
    const c = client(server.url, clock);
    await c.getAgent(c.publicKey);
    await c.getAgent(c.publicKey);
    const [a, b] = [auth(server.seen[0]!), auth(server.seen[1]!)];
    assert.match(a.timestamp, /^2026-03-05T12:00:00\.250\d{3}Z$/);
    assert.match(b.timestamp, /^2026-03-05T12:00:00\.250\d{3}Z$/);
    assert.notEqual(a.timestamp, b.timestamp);
    assert.notEqual(a.signature, b.signature);
  });

  it('409 replay_detected: re-signs at once with a fresh timestamp', async (t) => {
    const server = await scriptedHttp(t, (req, res, n) => {
      if (n === 0) json(res, 409, envelope('replay_detected', 'this signature was already used'));
      else json(res, 200, profile(req.headers['x-m2m-public-key'] as string));
    });
    const clock = new WatchedClock(T0 + 400);
    const c = client(server.url, clock);
    const result = c.getAgent(c.publicKey);
    assert.equal(await clock.nextTimer(), 0, 'no wait: a unique timestamp cannot repeat');
    await clock.advanceAsync(0);
    await result;
    const [a, b] = [auth(server.seen[0]!), auth(server.seen[1]!)];
    assert.notEqual(a.timestamp, b.timestamp);
    assert.notEqual(a.signature, b.signature);
  });
});

describe('RelayClient: errors', () => {
  it('maps the error envelope to a RelayError with the stable code, details and request id', async (t) => {
    const server = await scriptedHttp(t, (_req, res) =>
      json(
        res,
        422,
        envelope('unprocessable_entity', 'capabilities[0].tags[1]: bad tag', {
          field: 'capabilities[0].tags[1]',
          reason: 'bad tag',
        }),
      ),
    );
    const c = client(server.url, new WatchedClock(T0));
    const err = await c.updateProfile({ display_name: 'x' }).then(
      () => assert.fail('should fail'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof RelayError);
    assert.equal(err.code, 'unprocessable_entity');
    assert.equal(err.kind, 'api');
    assert.equal(err.status, 422);
    assert.equal(err.requestId, 'req_0123456789abcdef');
    assert.deepEqual(err.details, { field: 'capabilities[0].tags[1]', reason: 'bad tag' });
    assert.match(err.message, /bad tag/);
  });

  it('authentication refusals are errors of kind auth', async (t) => {
    const server = await scriptedHttp(t, (_req, res) => json(res, 401, envelope('timestamp_expired', 'clock skew')));
    const c = client(server.url, new WatchedClock(T0));
    await assert.rejects(
      c.getAgent(c.publicKey),
      (e: unknown) => e instanceof RelayError && e.code === 'timestamp_expired' && e.kind === 'auth',
    );
  });

  it('a body that is not an envelope still gives a code derived from the status', async (t) => {
    const server = await scriptedHttp(t, (_req, res) => {
      res.writeHead(404, { 'Content-Type': 'text/html', 'X-Request-Id': 'req_from_header' });
      res.end('<html><body>Not Found</body></html>');
    });
    const c = client(server.url, new WatchedClock(T0));
    const err = await c.getMessage('msg_1_000000000001').catch((e: unknown) => e);
    assert.ok(err instanceof RelayError);
    assert.equal(err.code, 'not_found');
    assert.equal(err.status, 404);
    assert.equal(err.requestId, 'req_from_header');
    assert.match(err.message, /HTTP 404/);
  });

  for (const [status, code] of [
    [400, 'bad_request'],
    [401, 'invalid_signature'],
    [403, 'acl_denied'],
    [404, 'agent_not_found'],
    [413, 'payload_too_large'],
    [422, 'unprocessable_entity'],
  ] as const) {
    it(`never retries ${status} ${code}, even for an idempotent call`, async (t) => {
      const server = await scriptedHttp(t, (_req, res) => json(res, status, envelope(code)));
      const clock = new WatchedClock(T0);
      const c = client(server.url, clock);
      await assert.rejects(
        c.getAgent(c.publicKey),
        (e: unknown) => e instanceof RelayError && e.code === code && e.status === status,
      );
      assert.equal(server.seen.length, 1);
      assert.deepEqual(clock.delays, [], 'no wait was scheduled');
    });
  }
});

describe('RelayClient: retries', () => {
  it('429: waits exactly Retry-After, then retries (a send too: a 429 was not acted on)', async (t) => {
    const server = await scriptedHttp(t, (_req, res, n) => {
      if (n === 0)
        json(
          res,
          429,
          envelope('rate_limit_exceeded', 'Too many messages', { limit: 30, window: '1m', retry_after: 7 }),
          { 'Retry-After': '7' },
        );
      else json(res, 201, { message_id: 'msg_1_000000000002', status: 'sent', created_at: 'c', expires_at: 'e' });
    });
    const clock = new WatchedClock(T0);
    const c = client(server.url, clock);
    const result = c.send({ recipient_key: Keypair.generate().publicKey, body: { n: 1 } });
    assert.equal(await clock.nextTimer(), 7000);
    await clock.advanceAsync(6999);
    assert.equal(server.seen.length, 1, 'not before Retry-After');
    await clock.advanceAsync(1);
    assert.equal((await result).message_id, 'msg_1_000000000002');
    assert.equal(server.seen.length, 2);
    assert.notEqual(auth(server.seen[0]!).signature, auth(server.seen[1]!).signature);
  });

  it('429 without Retry-After uses details.retry_after', async (t) => {
    const server = await scriptedHttp(t, (req, res, n) => {
      if (n === 0) json(res, 429, envelope('rate_limit_exceeded', 'slow down', { retry_after: 3 }));
      else json(res, 200, profile(req.headers['x-m2m-public-key'] as string));
    });
    const clock = new WatchedClock(T0);
    const c = client(server.url, clock);
    const result = c.getAgent(c.publicKey);
    assert.equal(await clock.nextTimer(), 3000);
    await clock.advanceAsync(3000);
    await result;
  });

  it('429 with a Retry-After longer than the client waits inside one call: thrown with retryAfter', async (t) => {
    const server = await scriptedHttp(t, (_req, res) =>
      json(res, 429, envelope('rate_limit_exceeded'), { 'Retry-After': '120' }),
    );
    const clock = new WatchedClock(T0);
    const c = client(server.url, clock);
    await assert.rejects(
      c.getAgent(c.publicKey),
      (e: unknown) =>
        e instanceof RateLimitError &&
        e instanceof RelayError &&
        e.name === 'RateLimitError' &&
        e.code === 'rate_limit_exceeded' &&
        e.retryAfter === 120,
    );
    assert.equal(server.seen.length, 1);
  });

  it('a real relay over its send rate: RateLimitError with retryAfter (HTTP), and the same class from a frame; other errors are not', async (t) => {
    const { url } = await startRelay(t, { sendRatePerMinute: 1 });
    const c = new RelayClient({ relayUrl: url, keypair: Keypair.generate(), maxAttempts: 1 });
    const to = Keypair.generate().publicKey;
    await c.send({ recipient_key: to, body: { n: 1 } });
    await assert.rejects(
      c.send({ recipient_key: to, body: { n: 2 } }),
      (e: unknown) =>
        e instanceof RateLimitError && e.status === 429 && typeof e.retryAfter === 'number' && e.retryAfter > 0,
    );
    const framed = relayErrorFromFrame({ code: 'too_many_connections', message: 'two already' });
    assert.ok(framed instanceof RateLimitError);
    assert.equal(framed.status, 429);
    await assert.rejects(
      c.getMessage('msg_1_000000000000'),
      (e: unknown) => e instanceof RelayError && !(e instanceof RateLimitError),
    );
  });

  it('5xx: backs off with growing delays and gives up after 4 attempts', async (t) => {
    const server = await scriptedHttp(t, (_req, res) => json(res, 500, envelope('internal_error', 'boom')));
    const clock = new WatchedClock(T0);
    const c = client(server.url, clock);
    const result = c.getAgent(c.publicKey).catch((e: unknown) => e);
    for (let i = 0; i < 3; i++) {
      const delay = await clock.timer(i);
      assert.equal(server.seen.length, i + 1, 'one request per wait');
      await clock.advanceAsync(delay);
    }
    const err = await result;
    assert.ok(err instanceof RelayError);
    assert.equal(err.code, 'internal_error');
    assert.equal(server.seen.length, 4);
    const [d1, d2, d3] = clock.delays as [number, number, number];
    assert.ok(d1 >= 250 && d1 <= 1000, `first ${d1}`);
    assert.ok(d2 >= 1000 && d2 <= 2000, `second ${d2}`);
    assert.ok(d3 >= 2000 && d3 <= 4000, `third ${d3}`);
  });

  it('a broken connection on an idempotent call is retried with backoff', async (t) => {
    const server = await scriptedHttp(t, (req, res, n) => {
      if (n === 0) res.socket?.destroy();
      else json(res, 200, profile(req.headers['x-m2m-public-key'] as string));
    });
    const clock = new WatchedClock(T0);
    const c = client(server.url, clock);
    const result = c.getAgent(c.publicKey);
    await clock.advanceAsync(await clock.nextTimer());
    assert.equal((await result).public_key, c.publicKey);
    assert.equal(server.seen.length, 2);
  });

  it('a send is not retried on 5xx: the relay may have stored it', async (t) => {
    const server = await scriptedHttp(t, (_req, res) => json(res, 503, envelope('service_unavailable')));
    const clock = new WatchedClock(T0);
    const c = client(server.url, clock);
    await assert.rejects(
      c.send({ recipient_key: Keypair.generate().publicKey, body: 1 }),
      (e: unknown) => e instanceof RelayError && e.status === 503,
    );
    assert.equal(server.seen.length, 1);
    assert.deepEqual(clock.delays, []);
  });

  it('a send whose connection broke before the answer is outcome unknown, not resent', async (t) => {
    const server = await scriptedHttp(t, (_req, res) => res.socket?.destroy());
    const clock = new WatchedClock(T0);
    const c = client(server.url, clock);
    await assert.rejects(
      c.send({ recipient_key: Keypair.generate().publicKey, body: 1 }),
      (e: unknown) => e instanceof OutcomeUnknownError && e.code === 'outcome_unknown',
    );
    assert.equal(server.seen.length, 1);
  });

  it('a relay that is not listening is a network error that says so (and a send is not retried)', async (t) => {
    const c = client(await deadPort(t), new WatchedClock(T0));
    await assert.rejects(
      c.send({ recipient_key: Keypair.generate().publicKey, body: 1 }),
      (e: unknown) =>
        e instanceof NetworkError && e.code === 'connection_refused' && /is the relay running/.test(e.hint ?? ''),
    );
  });
});

/** A URL on which nothing listens: a server is opened on port 0 and closed again. */
async function deadPort(t: import('node:test').TestContext): Promise<string> {
  const { createServer } = await import('node:net');
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as import('node:net').AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  t.diagnostic(`dead port ${port}`);
  return `http://127.0.0.1:${port}`;
}
