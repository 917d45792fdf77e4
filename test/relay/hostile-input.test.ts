/**
 * Issue 9, relay items 1, 5 and 7: hostile input gets a documented answer (never a crash),
 * bodies travel verbatim, small-order keys are refused. Real relays, real sockets.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { describe, it } from 'node:test';
import * as ed from '@noble/ed25519';
import { EMPTY_BODY_HASH, LIMITS } from '../../src/protocol/constants.js';
import { canonicalRequest, verifySignature, wsAuthString } from '../../src/protocol/signing.js';
import { Messenger } from '../../src/relay/messenger.js';
import { newAgent, PAIRED, startRelay } from '../helpers/relay.js';
import { deep, signedBytes, TextSocket } from './_raw.js';
import { Api, expectError, expectOk, freshAuthFrame, openSocket, roundTrip, wsConnect } from './_support.js';

const MiB = 1024 * 1024;

/** The relay still answers over HTTP and a fresh WebSocket. */
async function stillServing(t: Parameters<typeof startRelay>[0], url: string, wsUrl: string): Promise<void> {
  expectOk(await new Api(url).get(newAgent(), '/v1/agents/me'));
  await roundTrip(await wsConnect(t, wsUrl, newAgent()));
}

describe('item 1: nesting and size are bounded on every WebSocket frame', () => {
  it('before auth: a deeply nested ping is an error frame and close 4000 (or 1009 when over the pre-auth budget); the relay lives on', async (t) => {
    const { url, wsUrl } = await startRelay(t);
    const s = await openSocket(t, wsUrl);
    s.send(`{"type":"ping","ts":${deep(3000)}}`);
    const f = await s.next();
    assert.equal(f.type, 'error');
    assert.equal(f.error.code, 'bad_request');
    assert.equal((await s.closed).code, 4000);
    // The 12 KB frame: over the 8 KiB pre-auth budget as well, so either answer is documented.
    const big = await openSocket(t, wsUrl);
    big.send(`{"type":"ping","ts":${deep(6000)}}`);
    assert.ok([4000, 1009].includes((await big.closed).code));
    const send = await openSocket(t, wsUrl);
    send.send(`{"type":"send","request_id":"x","recipient_key":"${newAgent().publicKey}","body":${deep(2000)}}`);
    assert.equal((await send.next()).type, 'error');
    assert.equal((await send.closed).code, 4000);
    await stillServing(t, url, wsUrl);
  });

  it('after auth: a too-deep send (flat or nested) gets send_result bad_request and the connection stays; a too-deep ping closes 4000', async (t) => {
    const { url, wsUrl } = await startRelay(t);
    const s = await wsConnect(t, wsUrl, newAgent());
    const to = newAgent().publicKey;
    s.send(`{"type":"send","request_id":"d1","recipient_key":"${to}","body":${deep(6000)}}`);
    let r = await s.next();
    assert.equal(r.type, 'send_result');
    assert.equal(r.request_id, 'd1');
    assert.equal(r.status, 'error');
    assert.equal(r.error.code, 'bad_request');
    assert.equal(r.error.details.reason, 'too_deep');
    s.send(`{"type":"send","request_id":"d2","message":{"recipient_key":"${to}","body":{"a":${deep(200)}}}}`);
    r = await s.next();
    assert.equal(r.request_id, 'd2');
    assert.equal(r.error.code, 'bad_request');
    await roundTrip(s);
    // At the limit: the whole frame nests 128 levels.
    s.send(`{"type":"send","request_id":"ok","recipient_key":"${to}","body":${deep(LIMITS.maxJsonDepth - 1)}}`);
    r = await s.next();
    assert.equal(r.status, 'ok', JSON.stringify(r));
    s.send(`{"type":"ping","ts":${deep(20_000)}}`);
    assert.equal((await s.next()).error.code, 'bad_request');
    assert.equal((await s.closed).code, 4000);
    await stillServing(t, url, wsUrl);
  });

  it('pong echoes ts verbatim when short; before auth only a short number or string', async (t) => {
    const { wsUrl } = await startRelay(t);
    const pre = await TextSocket.open(t, wsUrl);
    pre.send('{"type":"ping","ts":12345678901234567890}');
    assert.equal(await pre.next(), '{"type":"pong","ts":12345678901234567890}');
    pre.send('{"type":"ping","ts":{"a":1}}');
    assert.equal(await pre.next(), '{"type":"pong"}');
    pre.send(`{"type":"ping","ts":"${'x'.repeat(100)}"}`);
    assert.equal(await pre.next(), '{"type":"pong"}');
    const kp = newAgent();
    const post = await TextSocket.open(t, wsUrl);
    post.send(JSON.stringify(freshAuthFrame(kp)));
    assert.match(await post.next(), /"status":"ok"/);
    post.send('{"type":"ping","ts":{"n": 1e999, "d":1, "d":2}}');
    assert.equal(await post.next(), '{"type":"pong","ts":{"n": 1e999, "d":1, "d":2}}');
    post.send(`{"type":"ping","ts":"${'y'.repeat(LIMITS.pongTsMaxBytes)}"}`);
    assert.equal(await post.next(), '{"type":"pong"}');
  });

  it('binary frames and text frames with invalid UTF-8: error + 4000, and 1007', async (t) => {
    const { url, wsUrl } = await startRelay(t);
    const bin = await TextSocket.open(t, wsUrl);
    bin.send(Buffer.from('{"type":"ping"}'), true);
    assert.match(await bin.next(), /"bad_request"/);
    assert.equal((await bin.closed).code, 4000);
    const bad = await TextSocket.open(t, wsUrl);
    bad.send(Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x7d]));
    assert.equal((await bad.closed).code, 1007);
    const kp = newAgent();
    const post = await TextSocket.open(t, wsUrl);
    post.send(JSON.stringify(freshAuthFrame(kp)));
    await post.next();
    post.send(
      Buffer.concat([
        Buffer.from(`{"type":"send","recipient_key":"${newAgent().publicKey}","body":"`),
        Buffer.from([0xc3, 0x28]),
        Buffer.from('"}'),
      ]),
    );
    assert.equal((await post.closed).code, 1007);
    await stillServing(t, url, wsUrl);
  });
});

describe('item 1: nesting and size are bounded on every HTTP body and query', () => {
  it('too-deep bodies are 400 bad_request (reason too_deep) on messages, profile, capabilities, ACL; never 500', async (t) => {
    const { url, wsUrl } = await startRelay(t);
    const kp = newAgent();
    const to = newAgent().publicKey;
    const cases: Array<[string, string, string]> = [
      ['POST', '/v1/messages', `{"recipient_key":"${to}","body":${deep(4100)}}`],
      ['POST', '/v1/messages', `{"recipient_key":"${to}","body":${deep(LIMITS.maxJsonDepth)}}`],
      ['PATCH', `/v1/agents/${kp.publicKey}`, `{"metadata":{"a":${deep(5000)}}}`],
      [
        'PATCH',
        `/v1/agents/${kp.publicKey}`,
        `{"capabilities":[{"name":"x","tags":["abc"],"input_schema":{"a":${deep(5000)}}}]}`,
      ],
      ['PUT', `/v1/agents/${kp.publicKey}/acl`, `{"peer_key":${deep(9000)}}`],
    ];
    for (const [method, target, body] of cases) {
      const err = expectError(await signedBytes(url, kp, method, target, body), 400, 'bad_request');
      assert.equal(err.details.reason, 'too_deep', `${method} ${target}`);
      assert.equal(err.details.limit, LIMITS.maxJsonDepth);
    }
    // One level less fits: stored and answered verbatim.
    const body = deep(LIMITS.maxJsonDepth - 1);
    const sent = expectOk(
      await signedBytes(url, kp, 'POST', '/v1/messages', `{"recipient_key":"${to}","body":${body}}`),
      201,
    );
    const got = await signedBytes(url, kp, 'GET', `/v1/messages/${sent.message_id}`, '');
    assert.ok(got.text.includes(`"body":${body},`));
    await stillServing(t, url, wsUrl);
  });

  it('invalid UTF-8 in a JSON body is 400 bad_request (reason not_utf8), never replaced', async (t) => {
    const { url } = await startRelay(t);
    const kp = newAgent();
    const bytes = Buffer.concat([
      Buffer.from(`{"recipient_key":"${newAgent().publicKey}","body":"a`),
      Buffer.from([0xff, 0xfe]),
      Buffer.from('"}'),
    ]);
    assert.equal(
      expectError(await signedBytes(url, kp, 'POST', '/v1/messages', bytes), 400, 'bad_request').details.reason,
      'not_utf8',
    );
    const patch = Buffer.concat([Buffer.from('{"display_name":"'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"}')]);
    assert.equal(
      expectError(await signedBytes(url, kp, 'PATCH', `/v1/agents/${kp.publicKey}`, patch), 400, 'bad_request').details
        .reason,
      'not_utf8',
    );
  });

  it('/v1/discover: more than 20 tags or 16 words is 400 with the limit; 1,100 tags too; 20 tags work', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const kp = newAgent();
    const tags = (n: number) => Array.from({ length: n }, (_, i) => `tag=t${i}x`).join('&');
    const err = expectError(await api.get(kp, `/v1/discover?${tags(1100)}`), 400, 'bad_request');
    assert.equal(err.details.field, 'tag');
    assert.equal(err.details.limit, LIMITS.discoverMaxTags);
    expectError(await api.get(kp, `/v1/discover?${tags(21)}`), 400, 'bad_request');
    expectOk(await api.get(kp, `/v1/discover?${tags(20)}`));
    const words = Array.from({ length: 17 }, (_, i) => `w${i}`).join('+');
    assert.equal(expectError(await api.get(kp, `/v1/discover?q=${words}`), 400, 'bad_request').details.field, 'q');
    // Repeats count once.
    expectOk(await api.get(kp, `/v1/discover?${Array.from({ length: 50 }, () => 'tag=same').join('&')}`));
  });
});

describe('item 5: bodies travel verbatim', () => {
  const BODY = '{"n":12345678901234567890,"x":1e999,"d":1,"d":2, "s":"\\u00e9\\ud83d\\ude00", "f":1.50}';

  it('HTTP and both WebSocket send forms: the recipient gets the exact text through push, poll, GET and thread', async (t) => {
    const { url, wsUrl } = await startRelay(t);
    const a = newAgent();
    const b = newAgent();
    const recv = await TextSocket.open(t, wsUrl);
    recv.send(JSON.stringify(freshAuthFrame(b)));
    assert.match(await recv.next(), /"status":"ok"/);

    const viaHttp = expectOk(
      await signedBytes(
        url,
        a,
        'POST',
        '/v1/messages',
        `{"recipient_key":"${b.publicKey}","thread_id":"th","body":${BODY}}`,
      ),
      201,
    );
    const sender = await TextSocket.open(t, wsUrl);
    sender.send(JSON.stringify(freshAuthFrame(a)));
    await sender.next();
    sender.send(`{"type":"send","request_id":"f","recipient_key":"${b.publicKey}","thread_id":"th","body":${BODY}}`);
    const flat = JSON.parse(await sender.next());
    sender.send(
      `{"type":"send","request_id":"n","message":{"recipient_key":"${b.publicKey}","thread_id":"th","body":${BODY}}}`,
    );
    const nested = JSON.parse(await sender.next());
    const ids = [viaHttp.message_id, flat.message_id, nested.message_id];
    assert.ok(
      ids.every((id) => typeof id === 'string'),
      JSON.stringify([flat, nested]),
    );

    for (const id of ids) {
      const push = await recv.nextMatching((f) => f.includes(id));
      assert.ok(push.includes(`"body":${BODY},`), push);
      const one = await signedBytes(url, b, 'GET', `/v1/messages/${id}`, '');
      assert.ok(one.text.includes(`"body":${BODY},`), one.text);
    }
    const thread = await signedBytes(url, b, 'GET', '/v1/messages/threads/th', '');
    assert.equal(thread.text.split(`"body":${BODY},`).length - 1, 3, thread.text);
    const poll = await signedBytes(url, b, 'GET', '/v1/messages', '');
    assert.equal(poll.status, 200);
    assert.equal(poll.text.split(`"body":${BODY},`).length - 1, 3, poll.text);
  });

  it('the 1 MiB body limit counts the bytes as sent (whitespace included)', async (t) => {
    const { url } = await startRelay(t);
    const kp = newAgent();
    const to = newAgent().publicKey;
    const padded = `[1${' '.repeat(MiB)}]`;
    const err = expectError(
      await signedBytes(url, kp, 'POST', '/v1/messages', `{"recipient_key":"${to}","body":${padded}}`),
      413,
      'payload_too_large',
    );
    assert.equal(err.details.field, 'body');
    expectOk(
      await signedBytes(url, kp, 'POST', '/v1/messages', `{"recipient_key":"${to}","body":[1${' '.repeat(MiB - 3)}]}`),
      201,
    );
  });
});

/** The 8 small-order points, and non-canonical encodings of small-order points (hex, 32 bytes). */
const SMALL_ORDER = [
  '0100000000000000000000000000000000000000000000000000000000000000',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0000000000000000000000000000000000000000000000000000000000000080',
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05',
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85',
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a',
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa',
  '0100000000000000000000000000000000000000000000000000000000000080',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff',
  'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff',
];
const b64 = (hex: string): string => Buffer.from(hex, 'hex').toString('base64url');
const IDENTITY = b64(SMALL_ORDER[0]!);

/** A signature that verifies under the identity key for any message: R = rB, S = r. */
function forgeForIdentity(): string {
  const r = 12345n;
  const R = ed.Point.BASE.multiply(r).toBytes();
  const S = Buffer.alloc(32);
  S.writeBigUInt64LE(r, 0);
  return Buffer.concat([Buffer.from(R), S]).toString('base64url');
}

describe('item 7: small-order and non-canonical public keys are refused', () => {
  it('a signature forged for the identity key verifies cryptographically, yet HTTP auth answers 401 unauthorized', async (t) => {
    const { url } = await startRelay(t);
    const sig = forgeForIdentity();
    const ts = new Date(Math.floor(Date.now() / 1000) * 1000).toISOString().replace('.000Z', 'Z');
    const target = '/v1/agents/me';
    assert.equal(
      verifySignature(IDENTITY, canonicalRequest('GET', target, ts, EMPTY_BODY_HASH), sig),
      true,
      'the forgery is valid Ed25519',
    );
    const res = await fetch(url + target, {
      headers: { 'X-M2M-Public-Key': IDENTITY, 'X-M2M-Timestamp': ts, 'X-M2M-Signature': sig },
    });
    const body = (await res.json()) as { error: { code: string; details?: { reason?: string } } };
    assert.equal(res.status, 401);
    assert.equal(body.error.code, 'unauthorized');
    assert.equal(body.error.details?.reason, 'small_order');
    for (const hex of SMALL_ORDER.slice(1)) {
      const r = await fetch(url + target, {
        headers: { 'X-M2M-Public-Key': b64(hex), 'X-M2M-Timestamp': ts, 'X-M2M-Signature': sig },
      });
      assert.equal(r.status, 401, hex);
      await r.arrayBuffer();
    }
  });

  it('WebSocket auth with a forged identity-key frame: auth_result unauthorized, close 4001', async (t) => {
    const { wsUrl } = await startRelay(t);
    const ts = new Date(Math.floor(Date.now() / 1000) * 1000).toISOString().replace('.000Z', 'Z');
    const sig = forgeForIdentity();
    assert.equal(verifySignature(IDENTITY, wsAuthString(ts), sig), true);
    const s = await openSocket(t, wsUrl);
    s.send({ type: 'auth', public_key: IDENTITY, timestamp: ts, signature: sig });
    const r = await s.next();
    assert.equal(r.type, 'auth_result');
    assert.equal(r.error.code, 'unauthorized');
    assert.equal((await s.closed).code, 4001);
  });

  it('as a recipient (HTTP and WebSocket) and as an ACL peer: 400 bad_request naming the field', async (t) => {
    const { url, wsUrl } = await startRelay(t);
    const api = new Api(url);
    const kp = newAgent();
    const s = await wsConnect(t, wsUrl, kp);
    for (const hex of SMALL_ORDER) {
      const key = b64(hex);
      assert.equal(
        expectError(await api.post(kp, '/v1/messages', { recipient_key: key, body: 1 }), 400, 'bad_request').details
          .field,
        'recipient_key',
      );
      assert.equal(
        expectError(
          await api.put(kp, `/v1/agents/${kp.publicKey}/acl`, { peer_key: key, entry_type: 'block' }),
          400,
          'bad_request',
        ).details.field,
        'peer_key',
      );
      s.send({ type: 'send', request_id: hex.slice(0, 8), recipient_key: key, body: 1 });
      const r = await s.next();
      assert.equal(r.error.code, 'bad_request');
      assert.equal(r.error.details.field, 'recipient_key');
    }
  });
});

describe('item 1: no exception escapes a listener', () => {
  it('an unexpected throw while handling a frame closes that connection 1011 and logs; over HTTP it is a 500; the relay lives on', async (t) => {
    const { url, wsUrl, logs } = await startRelay(t);
    const original = Messenger.prototype.send;
    Messenger.prototype.send = () => {
      throw new TypeError('injected failure');
    };
    t.after(() => {
      Messenger.prototype.send = original;
    });
    const s = await wsConnect(t, wsUrl, newAgent());
    s.send({ type: 'send', request_id: 'boom', recipient_key: newAgent().publicKey, body: 1 });
    assert.equal((await s.closed).code, 1011);
    assert.ok(logs.some((e) => e.msg === 'internal_error' && String(e['error']).includes('injected failure')));
    expectError(
      await new Api(url).post(newAgent(), '/v1/messages', { recipient_key: newAgent().publicKey, body: 1 }),
      500,
      'internal_error',
    );
    Messenger.prototype.send = original;
    await stillServing(t, url, wsUrl);
  });
});

/** Writes `bytes` on a fresh TCP connection and collects everything the relay sends until it closes. */
async function rawExchange(t: Parameters<typeof startRelay>[0], url: string, bytes: string): Promise<string> {
  const u = new URL(url);
  const s = connect(Number(u.port), u.hostname);
  t.after(() => s.destroy());
  let text = '';
  const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
  s.on('error', () => {});
  s.setEncoding('latin1').on('data', (d: string) => {
    text += d;
  });
  await new Promise<void>((resolve) => s.once('connect', () => resolve()));
  s.write(bytes);
  await closed;
  return text;
}

/** The parts of a raw HTTP/1.1 answer. */
function parseAnswer(text: string): { status: number; headers: Map<string, string>; body: any } {
  const end = text.indexOf('\r\n\r\n');
  assert.ok(end > 0, `a whole HTTP answer: ${JSON.stringify(text.slice(0, 200))}`);
  const [line, ...rest] = text.slice(0, end).split('\r\n');
  const headers = new Map(
    rest.map((h) => [h.slice(0, h.indexOf(':')).toLowerCase(), h.slice(h.indexOf(':') + 1).trim()] as const),
  );
  return { status: Number(line!.split(' ')[1]), headers, body: JSON.parse(text.slice(end + 4)) };
}

// Paired relays sit behind a test proxy whose own parser would answer these.
describe("errors of Node's HTTP parser get the §6 envelope too", { skip: PAIRED }, () => {
  const cases: Array<[string, (host: string) => string, number, string]> = [
    [
      'a 20 KB header → 431',
      (host) => `GET /v1/health HTTP/1.1\r\nHost: ${host}\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
      431,
      'bad_request',
    ],
    [
      'a URL over 16 KB → 431',
      (host) => `GET /v1/health?${'a'.repeat(17_000)} HTTP/1.1\r\nHost: ${host}\r\n\r\n`,
      431,
      'bad_request',
    ],
    [
      'Content-Length with Transfer-Encoding → 400',
      (host) =>
        `POST /v1/messages HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
      400,
      'bad_request',
    ],
    ['a garbage request line → 400', () => 'HELLO THERE\r\n\r\n', 400, 'bad_request'],
  ];
  for (const [name, request, status, code] of cases) {
    it(`${name}, with X-Request-Id, CORS and Connection: close; the relay lives on`, async (t) => {
      const { url, wsUrl, logs } = await startRelay(t);
      const answer = parseAnswer(await rawExchange(t, url, request(new URL(url).host)));
      assert.equal(answer.status, status);
      assert.equal(answer.headers.get('connection'), 'close');
      assert.equal(answer.headers.get('content-type'), 'application/json');
      assert.equal(answer.headers.get('access-control-allow-origin'), '*');
      const id = answer.headers.get('x-request-id');
      assert.match(id ?? '', /^req_[0-9a-f]{16}$/);
      assert.deepEqual(Object.keys(answer.body), ['error']);
      assert.equal(answer.body.error.code, code);
      assert.equal(answer.body.error.request_id, id);
      assert.equal(typeof answer.body.error.message, 'string');
      assert.ok(logs.some((e) => e.msg === 'client_error' && e['request_id'] === id));
      await stillServing(t, url, wsUrl);
    });
  }

  it('a peer that keeps trickling bytes after its parse error does not keep the socket (closed within the 5 s linger)', async (t) => {
    const { url } = await startRelay(t);
    const u = new URL(url);
    // allowHalfOpen: the peer never closes its side and keeps writing, one byte every 300 ms.
    const s = connect({ port: Number(u.port), host: u.hostname, allowHalfOpen: true });
    t.after(() => s.destroy());
    s.on('error', () => {});
    const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
    await new Promise<void>((resolve) => s.once('connect', () => resolve()));
    s.resume();
    s.write('GARBAGE\r\n\r\n');
    const started = Date.now();
    const trickle = setInterval(() => {
      if (!s.destroyed && s.writable) s.write('x');
    }, 300);
    t.after(() => clearInterval(trickle));
    const cut = await Promise.race([
      closed.then(() => true),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 15_000).unref()),
    ]);
    clearInterval(trickle);
    assert.ok(cut, 'the relay closed the socket');
    assert.ok(Date.now() - started < 10_000, `closed after ${Date.now() - started} ms`);
  });

  it('headers that do not arrive within headersTimeoutMs → 408 request_timeout', async (t) => {
    const { url } = await startRelay(t, { headersTimeoutMs: 200 });
    const answer = parseAnswer(await rawExchange(t, url, `GET /v1/health HTTP/1.1\r\nHost: x\r\n`));
    assert.equal(answer.status, 408);
    assert.equal(answer.body.error.code, 'request_timeout');
    assert.equal(answer.body.error.request_id, answer.headers.get('x-request-id'));
  });
});
