/**
 * Issue 9, relay items 2 and 3: memory is bounded without a key and by bytes. These tests check
 * behaviour (connections cut, requests answered 408/413/503, nothing lost); `bench/attacks.ts`
 * measures the relay's RSS under the same attacks.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { describe, it } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { LIMITS } from '../../src/protocol/constants.js';
import { type Keypair, signRequest, uniqueTimestamp } from '../../src/protocol/signing.js';
import { Lru } from '../../src/relay/lru.js';
import { newAgent, startRelay } from '../helpers/relay.js';
import { frameHeader, TextSocket, tcpWs, textFrame, write } from './_raw.js';
import { Api, expectError, expectOk, freshAuthFrame, roundTrip, wsConnect } from './_support.js';

const MiB = 1024 * 1024;

/** Resolves once `cond()` holds, checking after every turn of the event loop (no sleeping). */
async function until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

/** A raw HTTP request that sends its headers and `sent` body bytes, then stalls; returns the first response line. */
async function stalledPost(
  url: string,
  kp: Keypair,
  declared: number,
  sent: number,
): Promise<{ status: Promise<string>; destroy(): void }> {
  const u = new URL(url);
  const s = connect(Number(u.port), u.hostname);
  s.on('error', () => {});
  await new Promise<void>((r) => s.once('connect', () => r()));
  const headers = signRequest(kp, 'POST', '/v1/messages', `x${Math.random()}`, Date.now(), {
    timestamp: uniqueTimestamp(Date.now()),
  });
  const lines = Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  s.write(
    `POST /v1/messages HTTP/1.1\r\nHost: ${u.host}\r\nContent-Type: application/json\r\nContent-Length: ${declared}\r\n${lines}\r\n`,
  );
  if (sent > 0) s.write(Buffer.alloc(sent, 0x20));
  const status = new Promise<string>((resolve) => {
    let text = '';
    s.setEncoding('latin1').on('data', (d: string) => {
      text += d;
      if (text.includes('\r\n')) resolve(text.split('\r\n')[0]!);
    });
    s.once('close', () => resolve(text.split('\r\n')[0] ?? ''));
  });
  return { status, destroy: () => s.destroy() };
}

describe('item 2: without a key, almost nothing', () => {
  it('a large frame before auth is cut as it arrives: close 1009 after the pre-auth budget', async (t) => {
    const { url, wsUrl, logs } = await startRelay(t);
    const s = await tcpWs(t, wsUrl);
    // The header of a 15 MiB frame, then 64 KiB of it: never finished.
    await write(s.socket, frameHeader(15 * MiB));
    await write(s.socket, Buffer.alloc(64 * 1024, 0x20));
    assert.equal(await s.closeCode(), 1009);
    await s.gone;
    assert.ok(logs.some((e) => e.msg === 'ws_preauth_too_large'));
    // Many small frames add up the same way.
    const chatty = await TextSocket.open(t, wsUrl);
    for (let i = 0; i < 400; i++) chatty.send('{"type":"ping","ts":1}');
    assert.equal((await chatty.closed).code, 1009);
    // An honest client is unaffected.
    await roundTrip(await wsConnect(t, wsUrl, newAgent()));
    expectOk(await new Api(url).get(newAgent(), '/v1/agents/me'));
  });

  it('before auth the budget is per byte on the raw socket: a 1 MiB frame trickled in is cut within a piece of the budget', async (t) => {
    const { wsUrl, logs } = await startRelay(t);
    const s = await tcpWs(t, wsUrl);
    s.socket.setNoDelay(true);
    await write(s.socket, frameHeader(MiB));
    let sent = 0;
    const piece = Buffer.alloc(512, 0x20);
    // Trickle (a piece per millisecond, so the relay reads them one by one) until the relay cuts
    // the connection, or far past the budget, which fails below.
    while (sent < 256 * 1024 && (await write(s.socket, piece))) {
      sent += piece.length;
      await new Promise((r) => setTimeout(r, 1));
      if (s.received().length > 0) break;
    }
    assert.equal(await s.closeCode(), 1009);
    await s.gone;
    // The relay counts what it read; a loaded machine may coalesce a few pieces into one read.
    const entry = logs.find((e) => e.msg === 'ws_preauth_too_large');
    const read = entry?.['bytes'] as number;
    assert.ok(
      read > LIMITS.wsPreAuthBytes && read <= LIMITS.wsPreAuthBytes + 8 * piece.length,
      `cut after ${read} bytes read`,
    );
    assert.ok(sent < 64 * 1024, `${sent} bytes sent before the cut`);
  });

  it('before auth one large write is not parsed past the budget: 60 KB of pings in one write get no pong, close 1009', async (t) => {
    const { wsUrl } = await startRelay(t);
    const s = await tcpWs(t, wsUrl);
    const ping = textFrame('{"type":"ping","ts":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}');
    await write(s.socket, Buffer.concat(Array.from({ length: Math.floor(60_000 / ping.length) }, () => ping)));
    assert.equal(await s.closeCode(), 1009);
    await s.gone;
    const pongs = s.received().toString('latin1').split('"pong"').length - 1;
    // The kernel may split the write: pings in a first read within the budget are answered, no more.
    assert.ok(pongs * ping.length <= LIMITS.wsPreAuthBytes, `${pongs} pongs`);
  });

  it('the budget is for unauthenticated bytes only: an authenticated connection may send large frames', async (t) => {
    const { wsUrl } = await startRelay(t);
    const kp = newAgent();
    const s = await tcpWs(t, wsUrl);
    // Auth and a 200 KiB send in one write: the auth frame completes before the budget counts the rest.
    const send = `{"type":"send","request_id":"big","recipient_key":"${newAgent().publicKey}","body":"${'b'.repeat(200 * 1024)}"}`;
    await write(s.socket, Buffer.concat([textFrame(JSON.stringify(freshAuthFrame(kp))), textFrame(send)]));
    await until(() => s.received().includes('"request_id":"big"'), 'send_result');
    assert.ok(s.received().toString().includes('"status":"ok","message_id"'));
  });

  it('a request body that stalls is answered 408 request_timeout once bodyTimeoutMs passes (manual clock)', async (t) => {
    const clock = new ManualClock(Date.now());
    const { url } = await startRelay(t, { clock, bodyTimeoutMs: 10_000 });
    const before = clock.pending;
    const req = await stalledPost(url, newAgent(), 2 * MiB, 1000);
    t.after(() => req.destroy());
    await until(() => clock.pending > before, 'the body timer');
    clock.advance(10_001);
    assert.match(await req.status, /^HTTP\/1\.1 408/);
  });

  it('concurrent body reads are capped by count and by bytes held: past them a request waits its turn, past the queue 503 with Retry-After; bad headers never get a body read', async (t) => {
    const clock = new ManualClock(Date.now());
    const { url } = await startRelay(t, {
      clock,
      maxConcurrentBodies: 2,
      maxConcurrentBodiesPerAddress: 2,
      maxBodyBufferBytes: 2.5 * MiB,
    });
    const before = clock.pending;
    const open: Array<{ destroy(): void }> = [];
    t.after(() => {
      for (const h of open) h.destroy();
    });
    const stalled = async (declared: number): Promise<Awaited<ReturnType<typeof stalledPost>>> => {
      const p = await stalledPost(url, newAgent(), declared, 10);
      open.push(p);
      return p;
    };
    const held = [await stalled(MiB), await stalled(MiB)];
    await until(() => clock.pending === before + 2, 'two body reads');
    // A third waits its turn: each waiter has one timer (its wait), a reader two at most.
    const third = new Api(url).post(newAgent(), '/v1/messages', { recipient_key: newAgent().publicKey, body: 1 });
    await until(() => clock.pending === before + 3, 'the third waiting');
    // The queue from one address is 4 × its cap (8): seven more wait, the next is refused at once.
    for (let i = 0; i < 7; i++) await stalled(10);
    await until(() => clock.pending === before + 10, 'eight waiting');
    const refused = await stalled(10);
    assert.match(await refused.status, /^HTTP\/1\.1 503/);
    // A place frees up: the first waiter is read and stored.
    held[0]!.destroy();
    assert.equal((await third).status, 201);
    // Bytes: with 1 MiB still held, a declared 2 MiB body would pass 2.5 MiB held: it waits.
    for (const h of open.slice(2)) h.destroy();
    await until(() => clock.pending === before + 1, 'only the second held body left');
    const big = await stalled(2 * MiB);
    await until(() => clock.pending === before + 2, 'the big one waiting');
    // The held one's rate window ends first (10 bytes in 2 s: 408); the big one is read in its
    // place, so 2 s later it is cut the same way (408), long before its wait would end (503, 10 s).
    clock.advance(2001);
    assert.match(await held[1]!.status, /^HTTP\/1\.1 408/);
    await until(() => clock.pending === before + 1, 'the big one read');
    clock.advance(2001);
    assert.match(await big.status, /^HTTP\/1\.1 408/);
    // Headers that cannot be right are refused before any body byte is read.
    const u = new URL(url);
    const s = connect(Number(u.port), u.hostname);
    t.after(() => s.destroy());
    s.write(
      `POST /v1/messages HTTP/1.1\r\nHost: ${u.host}\r\nContent-Length: ${2 * MiB}\r\nX-M2M-Public-Key: nope\r\n\r\n`,
    );
    const line = await new Promise<string>((r) =>
      s.setEncoding('latin1').once('data', (d: string) => r(d.split('\r\n')[0]!)),
    );
    assert.match(line, /^HTTP\/1\.1 401/);
  });
});

describe('item 3: memory bounded by bytes', () => {
  it('a reader that stops reading: its backlog waits in storage, not memory, and arrives in full, in order, when it reads again', async (t) => {
    const { wsUrl } = await startRelay(t, { sendRatePerMinute: 0, receiveRatePerMinute: 0 });
    const victim = newAgent();
    const r = await tcpWs(t, wsUrl);
    await write(r.socket, textFrame(JSON.stringify(freshAuthFrame(victim))));
    await until(() => r.received().includes('"auth_result"'), 'auth');
    r.socket.pause();
    const sender = await wsConnect(t, wsUrl, newAgent());
    const body = 'm'.repeat(256 * 1024);
    for (let i = 0; i < 40; i++)
      sender.send({ type: 'send', request_id: `r${i}`, recipient_key: victim.publicKey, body: `${i}:${body}` });
    for (let i = 0; i < 40; i++) assert.equal((await sender.next()).status, 'ok');
    r.socket.resume();
    await until(
      () =>
        (
          r
            .received()
            .toString()
            .match(/"type":"message"/g) ?? []
        ).length === 40,
      '40 messages',
      20_000,
    );
    const order = [
      ...r
        .received()
        .toString()
        .matchAll(/"body":"(\d+):/g),
    ].map((m) => Number(m[1]));
    assert.deepEqual(
      order,
      Array.from({ length: 40 }, (_, i) => i),
    );
  });

  it('a client that asks for answers and never reads them is cut (1008) once 256 KiB of them wait unsent', async (t) => {
    const { logs, wsUrl } = await startRelay(t);
    const s = await tcpWs(t, wsUrl);
    await write(s.socket, textFrame(JSON.stringify(freshAuthFrame(newAgent()))));
    await until(() => s.received().includes('"auth_result"'), 'auth');
    s.socket.pause();
    const ping = textFrame(`{"type":"ping","ts":"${'p'.repeat(LIMITS.pongTsMaxBytes - 2)}"}`);
    const burst = Buffer.concat(Array.from({ length: 256 }, () => ping));
    let sent = 0;
    // Loopback socket buffers hold several MiB; keep asking until the relay gives up on us.
    while (sent < 400 * MiB && !logs.some((e) => e.msg === 'ws_slow_reader')) {
      if (!(await write(s.socket, burst))) break;
      sent += burst.length;
    }
    await until(() => logs.some((e) => e.msg === 'ws_slow_reader'), 'the slow-reader cut', 20_000);
  });

  it('the replay cache is capped: when full of live signatures, new signed requests get 503 with Retry-After; room returns as entries expire', async (t) => {
    const clock = new ManualClock(Math.floor(Date.now() / 1000) * 1000);
    const { url } = await startRelay(t, { clock, maxReplayEntries: 3 });
    const api = new Api(url, clock);
    const kp = newAgent();
    for (let i = 0; i < 3; i++) expectOk(await api.get(kp, `/v1/agents/me?i=${i}`));
    const full = await api.get(kp, '/v1/agents/me?i=3');
    const err = expectError(full, 503, 'service_unavailable');
    assert.equal(err.details.reason, 'replay_cache_full');
    assert.ok(Number(full.headers.get('retry-after')) >= 1);
    clock.advance(10 * 60_000 + 1000);
    const fresh = new Api(url, clock);
    expectOk(await fresh.get(kp, '/v1/agents/me?i=4'));
  });

  it('the LRU behind the profile and ACL caches holds at most its count and its bytes', () => {
    const lru = new Lru<string, string>(3, 100, (v) => v.length);
    lru.set('a', 'x'.repeat(40));
    lru.set('b', 'x'.repeat(40));
    lru.get('a');
    lru.set('c', 'x'.repeat(40));
    assert.equal(lru.has('b'), false, 'least recently used goes first');
    assert.ok(lru.bytes <= 100);
    lru.set('huge', 'x'.repeat(101));
    assert.equal(lru.has('huge'), false, 'a value over the byte cap is not kept');
    for (let i = 0; i < 10; i++) lru.set(`k${i}`, 'y');
    assert.equal(lru.size, 3);
  });
});

/** A raw WebSocket (bare TCP) authenticated with a fresh key. */
async function authedTcpWs(
  t: Parameters<typeof tcpWs>[0],
  wsUrl: string,
  localAddress?: string,
): Promise<Awaited<ReturnType<typeof tcpWs>>> {
  const s = await tcpWs(t, wsUrl, localAddress);
  await write(s.socket, textFrame(JSON.stringify(freshAuthFrame(newAgent()))));
  await until(() => s.received().includes('"status":"ok"'), 'auth_result ok');
  return s;
}

describe('free keys: relay-wide caps', () => {
  it('unfinished frames have one relay-wide budget: past it the connection holding the most is cut (1013); honest traffic goes on', async (t) => {
    const { wsUrl, relay, logs } = await startRelay(t, { maxInboundFrameBytes: 4 * MiB });
    const holders = [];
    for (let i = 0; i < 3; i++) holders.push(await authedTcpWs(t, wsUrl));
    // Two hold 1 MiB of a 3 MiB frame each (2 MiB in all, within the budget) …
    for (const s of holders.slice(0, 2)) {
      await write(s.socket, frameHeader(3 * MiB));
      await write(s.socket, Buffer.alloc(MiB, 0x20));
    }
    await until(
      () => logs.filter((e) => e.msg === 'ws_auth').length === 3 && relay.connections === 3,
      'three connections',
    );
    // … a third sends 3 MiB of a 4 MiB frame: past 4 MiB in all, it is the largest holder, and is cut.
    await write(holders[2]!.socket, frameHeader(4 * MiB));
    await write(holders[2]!.socket, Buffer.alloc(3 * MiB, 0x20));
    assert.equal(await holders[2]!.closeCode(), 1013);
    await holders[2]!.gone;
    const entry = logs.find((e) => e.msg === 'ws_inbound_budget');
    assert.ok(entry && (entry['bytes'] as number) > MiB, JSON.stringify(entry));
    // The other two keep their connections and can finish their frames (a send too big: its answer, not a cut).
    assert.equal(holders[0]!.socket.destroyed, false);
    await roundTrip(await wsConnect(t, wsUrl, newAgent()));
  });

  it('WebSocket connections are capped per client address and in total: 503 at the upgrade', async (t) => {
    const { wsUrl } = await startRelay(t, { host: '0.0.0.0', maxConnectionsPerAddress: 2, maxConnections: 3 });
    const url = wsUrl.replace('0.0.0.0', '127.0.0.1');
    await tcpWs(t, url, '127.0.0.1');
    await tcpWs(t, url, '127.0.0.1');
    await assert.rejects(tcpWs(t, url, '127.0.0.1'), /503/);
    // Another address still gets one, then the total (3) is reached.
    await tcpWs(t, url, '127.0.0.2');
    await assert.rejects(tcpWs(t, url, '127.0.0.3'), /503/);
  });

  it('TCP connections, idle ones and WebSockets alike, are capped per address and in total: 503 before a byte is read', async (t) => {
    const relay = await startRelay(t, { host: '0.0.0.0', maxSocketsPerAddress: 3, maxSockets: 5 });
    const port = Number(new URL(relay.url).port);
    /** A raw connection from `from` that sends `request` (if any) and collects what comes back until the relay closes it. */
    const open = async (from: string, request?: string) => {
      const socket = connect({ port, host: '127.0.0.1', localAddress: from });
      t.after(() => socket.destroy());
      socket.on('error', () => {});
      let text = '';
      socket.on('data', (d: Buffer) => {
        text += d.toString();
      });
      const ended = new Promise<string>((resolve) => socket.once('close', () => resolve(text)));
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', () => resolve());
        socket.once('error', reject);
      });
      if (request) socket.write(request);
      return { socket, ended };
    };
    const health = `GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n`;
    // One address: an idle connection, one that made a request and stays open (keep-alive), a WebSocket.
    const idle = await open('127.0.0.1');
    const kept = await open('127.0.0.1', health);
    await tcpWs(t, relay.url.replace('http', 'ws').replace('0.0.0.0', '127.0.0.1'), '127.0.0.1');
    const refused = await open('127.0.0.1', health);
    const answer = await refused.ended;
    assert.match(answer, /^HTTP\/1\.1 503 /);
    assert.match(answer, /Retry-After: 5\r\n/);
    const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as {
      error: { code: string; details: { reason: string } };
    };
    assert.equal(body.error.code, 'service_unavailable');
    assert.equal(body.error.details.reason, 'too_many_connections_from_address');
    assert.ok(relay.logs.some((e) => e.msg === 'connection_refused' && e['reason'] === 'max_sockets_per_address'));
    // Another address is served; then the total (5) is reached for everyone.
    const other = await open('127.0.0.2', health);
    await open('127.0.0.2');
    const full = await (await open('127.0.0.3', health)).ended;
    assert.match(full, /"reason":"too_many_connections"/);
    // Closing connections frees places (the relay counts a connection until it sees it close).
    idle.socket.destroy();
    other.socket.destroy();
    kept.socket.destroy();
    for (let attempt = 0; ; attempt++) {
      const again = await open('127.0.0.1', `GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      const text = await again.ended;
      if (text.startsWith('HTTP/1.1 200 ')) break;
      assert.ok(attempt < 50, `still refused after the others closed: ${text.slice(0, 40)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  });
});
