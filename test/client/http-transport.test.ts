/**
 * `RelayClient`'s own transport (node:http on a keep-alive agent; `fetch` only when one is passed
 * in) against real servers on port 0: connections are reused, a body goes out whole and signed as
 * sent, an answer split anywhere (even inside a UTF-8 character) reads back intact, and every way
 * an attempt can fail maps to the same errors as before: no answer in time (a timeout for a GET,
 * outcome unknown for a send), a cancel (the caller's reason, the request torn down), an answer
 * cut off half way (retried when idempotent, outcome unknown for a send).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import { neverReachedRelay, RelayClient } from '../../src/client/http.js';
import {
  NetworkError,
  OutcomeUnknownError,
  ProtocolError,
  RateLimitError,
  RelayError,
  TimeoutError,
} from '../../src/core/errors.js';
import { bodyHash, canonicalRequest, Keypair, verifySignature } from '../../src/protocol/signing.js';

interface Seen {
  method: string;
  url: string;
  body: string;
  socket: Socket;
  headers: IncomingMessage['headers'];
}

/** A server answering each request with `script`; `seen` lists what arrived, `closed` counts torn requests. */
async function server(
  t: TestContext,
  script: (req: Seen, res: ServerResponse, n: number) => void,
): Promise<{ url: string; seen: Seen[]; closed: () => number }> {
  const seen: Seen[] = [];
  let closed = 0;
  const s = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const r = {
        method: req.method ?? '',
        url: req.url ?? '',
        body: Buffer.concat(chunks).toString('utf8'),
        socket: req.socket,
        headers: req.headers,
      };
      seen.push(r);
      res.on('close', () => {
        if (!res.writableFinished) closed++;
      });
      script(r, res, seen.length - 1);
    });
  });
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  t.after(async () => {
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  });
  return { url: `http://127.0.0.1:${(s.address() as AddressInfo).port}`, seen, closed: () => closed };
}

function profileOf(key: string): Record<string, unknown> {
  return { public_key: key, display_name: null, status: 'active', capabilities: [], metadata: {} };
}

function answer(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

const sendRequest = () => ({ recipient_key: Keypair.generate().publicKey, body: { text: 'héllo ☃' } });
const SENT = { message_id: 'msg_1', status: 'sent', created_at: '2026-03-05T12:00:00Z', expires_at: null };

describe('RelayClient transport', () => {
  it('reuses one keep-alive connection for requests made one after another', async (t) => {
    const s = await server(t, (req, res) => answer(res, 200, profileOf(String(req.headers['x-m2m-public-key']))));
    const c = new RelayClient({ relayUrl: s.url, keypair: Keypair.generate() });
    for (let i = 0; i < 5; i++) await c.getAgent(c.publicKey);
    assert.equal(s.seen.length, 5);
    assert.ok(
      s.seen.every((r) => r.socket === s.seen[0]!.socket),
      'all five came over the first connection',
    );
  });

  it('sends a body whole, with its length, signed over exactly those bytes', async (t) => {
    const s = await server(t, (_req, res) => answer(res, 201, SENT));
    const c = new RelayClient({ relayUrl: s.url, keypair: Keypair.generate() });
    const request = sendRequest();
    assert.equal((await c.send(request)).message_id, 'msg_1');
    const [r] = s.seen;
    assert.equal(r!.body, JSON.stringify(request));
    assert.equal(Number(r!.headers['content-length']), Buffer.byteLength(r!.body));
    assert.equal(r!.headers['content-type'], 'application/json');
    const canonical = canonicalRequest('POST', r!.url, String(r!.headers['x-m2m-timestamp']), bodyHash(r!.body));
    assert.ok(verifySignature(c.publicKey, canonical, String(r!.headers['x-m2m-signature'])));
  });

  it('reads an answer that arrives in pieces split inside a UTF-8 character', async (t) => {
    const text = JSON.stringify({ ...profileOf('k'), display_name: '☃☃☃ snow' });
    const bytes = Buffer.from(text);
    const cut = bytes.indexOf(Buffer.from('☃')) + 1; // inside the first ☃
    const s = await server(t, (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': bytes.length });
      res.write(bytes.subarray(0, cut));
      setTimeout(() => res.end(bytes.subarray(cut)), 20);
    });
    const c = new RelayClient({ relayUrl: s.url, keypair: Keypair.generate() });
    assert.equal((await c.getAgent('k')).display_name, '☃☃☃ snow');
  });

  it('an answer that never ends is cut at 256 MiB as response_too_large, not read into memory', async (t) => {
    const mib = Buffer.alloc(1024 * 1024, 0x20);
    let written = 0;
    const s = await server(t, (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      const more = (): void => {
        while (!res.destroyed && written < 300 && res.write(mib)) written++;
        if (written >= 300) res.end();
        else if (!res.destroyed) res.once('drain', more);
      };
      more();
    });
    const c = new RelayClient({ relayUrl: s.url, keypair: Keypair.generate(), maxAttempts: 1 });
    const before = process.memoryUsage().rss;
    await assert.rejects(
      c.getAgent('k'),
      (e: unknown) =>
        e instanceof ProtocolError && e.code === 'response_too_large' && /268435456 bytes/.test(e.message),
    );
    assert.ok(written < 300, 'the request was torn down before the server finished');
    assert.ok(process.memoryUsage().rss - before < 400 * 1024 * 1024);
  });

  it('no answer within the timeout: a timeout for a GET, outcome unknown for a send', async (t) => {
    const s = await server(t, () => undefined); // never answers
    const c = new RelayClient({ relayUrl: s.url, keypair: Keypair.generate(), timeoutMs: 150, maxAttempts: 1 });
    await assert.rejects(
      c.getAgent(c.publicKey),
      (e: unknown) => e instanceof TimeoutError && /150 ms/.test(e.message),
    );
    await assert.rejects(c.send(sendRequest()), (e: unknown) => e instanceof OutcomeUnknownError);
  });

  it('neverReachedRelay: true for a refused connection (node:http and fetch), false once the request went out', async (t) => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const down = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`;
    await new Promise((resolve) => closed.close(resolve));
    for (const viaFetch of [false, true]) {
      const c = new RelayClient({
        relayUrl: down,
        keypair: Keypair.generate(),
        maxAttempts: 1,
        ...(viaFetch ? { fetch } : {}),
      });
      const err = await c.poll({ limit: 1 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(neverReachedRelay(err), `${viaFetch ? 'fetch' : 'node:http'}: ${String(err)}`);
    }
    const s = await server(t, (_req, res) => res.socket?.destroy());
    const c = new RelayClient({ relayUrl: s.url, keypair: Keypair.generate(), maxAttempts: 1 });
    const err = await c.poll({ limit: 1 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof Error && !neverReachedRelay(err), String(err));
  });

  it('https:// to a plain-HTTP server: a send (node:http), health and a streamed upload (fetch) fail as unreachable (nothing left), naming the TLS handshake, not outcome unknown', async (t) => {
    const s = await server(t, (_req, res) => answer(res, 201, SENT));
    const c = new RelayClient({
      relayUrl: s.url.replace('http:', 'https:'),
      keypair: Keypair.generate(),
      maxAttempts: 1,
    });
    const failure = (p: Promise<unknown>): Promise<unknown> =>
      p.then(
        () => undefined,
        (e: unknown) => e,
      );
    const errors = [
      await failure(c.send(sendRequest())),
      await failure(c.health()),
      await failure(
        c.exchange('POST', '/blobs', {
          body: () => new Uint8Array([1, 2, 3]),
          headers: { 'Content-Type': 'text/plain' },
        }),
      ),
    ];
    for (const err of errors) {
      assert.ok(err instanceof NetworkError && !(err instanceof OutcomeUnknownError), String(err));
      assert.match(err.message, /^cannot reach the relay at https:\/\/127\.0\.0\.1:\d+ \(TLS handshake failed: /);
      assert.match(String(err.hint), /a local relay without TLS is http:\/\//);
      assert.ok(neverReachedRelay(err));
    }
    assert.equal(s.seen.length, 0, 'nothing reached the server as a request');
  });

  it('https:// with nothing listening: connection refused (is the relay running?), not a TLS handshake failure', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const c = new RelayClient({ relayUrl: `https://127.0.0.1:${port}`, keypair: Keypair.generate(), maxAttempts: 1 });
    const err = await c.getAgent(c.publicKey).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof NetworkError, String(err));
    assert.equal(err.code, 'connection_refused');
    assert.equal(err.message, `cannot reach the relay at https://127.0.0.1:${port} (ECONNREFUSED)`);
    assert.match(String(err.hint), /is the relay running\?/);
    assert.ok(neverReachedRelay(err));
  });

  it('poll({ once }) is one request whatever the answer: a 429 with Retry-After is not waited out inside the client', async (t) => {
    const s = await server(t, (_req, res) => {
      const text = JSON.stringify({ error: { code: 'rate_limit_exceeded', message: 'slow down' } });
      res.writeHead(429, { 'Content-Type': 'application/json', 'Retry-After': '1' });
      res.end(text);
    });
    const c = new RelayClient({ relayUrl: s.url, keypair: Keypair.generate() });
    for (const query of [
      { status: 'delivered' as const, take: 'abc' },
      { limit: 1, take: 'def' },
    ]) {
      const before = s.seen.length;
      const started = Date.now();
      await assert.rejects(
        c.poll(query, undefined, { once: true }),
        (e: unknown) => e instanceof RateLimitError && e.retryAfter === 1,
      );
      assert.equal(s.seen.length - before, 1, `one request for ${JSON.stringify(query)}`);
      assert.ok(Date.now() - started < 900, 'the Retry-After was left to the caller');
    }
  });

  it('exchange(): a refusal whose body never ends is read only up to its first 64 KiB (the status says what happened)', async (t) => {
    const mib = Buffer.alloc(1024 * 1024, 0x20);
    let written = 0;
    const s = await server(t, (_req, res) => {
      res.writeHead(500, { 'Content-Type': 'application/json' });
      const more = (): void => {
        while (!res.destroyed && written < 32) {
          written++;
          if (!res.write(mib)) return void res.once('drain', more);
        }
        if (!res.destroyed) res.end();
      };
      more();
    });
    const c = new RelayClient({ relayUrl: s.url, keypair: Keypair.generate(), maxAttempts: 1 });
    const err = await c.exchange('GET', '/v1/blobs/b1').then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof RelayError && err.status === 500, String(err));
    assert.ok(written < 32, `the answer was torn down before the server finished (${written} of 32 MiB written)`);
  });

  it('health() and an upload read a small answer only up to 64 KiB: an endless one, or one that is not a record, is invalid_response', async (t) => {
    const mib = Buffer.alloc(1024 * 1024, 0x20);
    let written = 0;
    const s = await server(t, (req, res) => {
      // Last: a health answer that is short but no record.
      if (written === -1) return answer(res, 200, 'not a record');
      res.writeHead(req.method === 'POST' ? 201 : 200, { 'Content-Type': 'application/json' });
      res.write('{"status":"ok","pad":"');
      const more = (): void => {
        while (!res.destroyed && written < 32) {
          written++;
          if (!res.write(mib)) return void res.once('drain', more);
        }
        if (!res.destroyed) res.end('"}');
      };
      more();
    });
    const c = new RelayClient({ relayUrl: s.url, keypair: Keypair.generate(), maxAttempts: 1 });
    await assert.rejects(c.health(), (e: unknown) => e instanceof ProtocolError && e.code === 'invalid_response');
    assert.ok(written < 32, `the health answer was torn down early (${written} of 32 MiB written)`);
    written = 0;
    await assert.rejects(
      c.uploadBlob(Buffer.from('x'), { contentType: 'text/plain' }),
      (e: unknown) => e instanceof ProtocolError && e.code === 'invalid_response',
    );
    assert.ok(written < 32, `the upload's answer was torn down early (${written} of 32 MiB written)`);
    written = -1;
    await assert.rejects(c.health(), (e: unknown) => e instanceof ProtocolError && e.code === 'invalid_response');
  });

  it('the timeout also covers an answer that stops half way', async (t) => {
    const s = await server(t, (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': 1000 });
      res.write('{"public_key":');
    });
    const c = new RelayClient({ relayUrl: s.url, keypair: Keypair.generate(), timeoutMs: 150, maxAttempts: 1 });
    await assert.rejects(c.getAgent(c.publicKey), (e: unknown) => e instanceof TimeoutError);
  });

  it("a cancel rejects with the caller's reason at once and tears the request down", async (t) => {
    const s = await server(t, () => undefined);
    const c = new RelayClient({ relayUrl: s.url, keypair: Keypair.generate() });
    const controller = new AbortController();
    const reason = new Error('stop now');
    const polling = c.poll({ wait: 20 }, controller.signal);
    while (s.seen.length === 0) await new Promise((resolve) => setImmediate(resolve));
    controller.abort(reason);
    await assert.rejects(polling, (e: unknown) => e === reason);
    while (s.closed() === 0) await new Promise((resolve) => setImmediate(resolve));
    // Already cancelled: nothing is sent at all.
    await assert.rejects(c.poll({ wait: 20 }, controller.signal), (e: unknown) => e === reason);
    assert.equal(s.seen.length, 1);
  });

  it('an answer cut off half way: a GET is retried, a send is outcome unknown (never resent)', async (t) => {
    const s = await server(t, (req, res, n) => {
      if (n === 0 || req.method === 'POST') {
        res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': 1000 });
        res.write('{"message_id":');
        setImmediate(() => res.socket?.destroy());
      } else answer(res, 200, profileOf('k'));
    });
    const c = new RelayClient({ relayUrl: s.url, keypair: Keypair.generate() });
    assert.equal((await c.getAgent('k')).public_key, 'k');
    assert.equal(s.seen.length, 2);
    await assert.rejects(c.send(sendRequest()), (e: unknown) => e instanceof OutcomeUnknownError);
    assert.equal(s.seen.filter((r) => r.method === 'POST').length, 1);
  });

  it('many requests at once all complete, each on a connection of its own or a reused one', async (t) => {
    const s = await server(t, (_req, res) => setTimeout(() => answer(res, 201, SENT), 5));
    const c = new RelayClient({ relayUrl: s.url, keypair: Keypair.generate() });
    const results = await Promise.all(Array.from({ length: 50 }, () => c.send(sendRequest())));
    assert.equal(results.length, 50);
    for (let i = 0; i < 10; i++) await c.send(sendRequest());
    const sockets = new Set(s.seen.map((r) => r.socket));
    assert.ok(sockets.size <= 50, `${sockets.size} connections for 60 requests`);
    assert.equal(s.seen.length, 60);
  });

  it('goes through a fetch passed in, when there is one', async (t) => {
    const s = await server(t, (_req, res) => answer(res, 200, profileOf('k')));
    let calls = 0;
    const counting: typeof fetch = (input, init) => {
      calls++;
      return fetch(input, init);
    };
    const c = new RelayClient({ relayUrl: s.url, keypair: Keypair.generate(), fetch: counting });
    assert.equal((await c.getAgent('k')).public_key, 'k');
    assert.equal(calls, 1);
  });
});
