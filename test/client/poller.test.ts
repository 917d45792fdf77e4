/**
 * Poll mode (§3.6, §5.7): against a real relay on port 0 for the normal path (what is waiting,
 * what arrives during a long poll, the consumer's capacity), and against a scripted server for
 * what the real relay will not do (ignore `wait`, refuse it, a long Retry-After, refuse our key).
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pollAnswerMaxBytes, RelayClient } from '../../src/client/http.js';
import { Poller } from '../../src/client/poller.js';
import { ManualClock } from '../../src/core/clock.js';
import { Keypair } from '../../src/protocol/signing.js';
import { startRelay } from '../helpers/relay.js';
import { envelope, json, scriptedHttp, WatchedClock } from './_support.js';

const EMPTY = { messages: [], has_more: false, next_cursor: null };

function message(n: number, to: string): Record<string, unknown> {
  return {
    message_id: `msg_1772712000_${String(n).padStart(12, '0')}`,
    sender_key: Keypair.generate().publicKey,
    recipient_key: to,
    content_type: 'application/json',
    body: { n },
    attachments: [],
    thread_id: null,
    in_reply_to: null,
    metadata: {},
    status: 'delivered',
    created_at: '2026-03-05T12:00:00Z',
    expires_at: '2026-03-12T12:00:00Z',
    delivered_at: '2026-03-05T12:00:00Z',
  };
}

function poller(t: import('node:test').TestContext, options: ConstructorParameters<typeof Poller>[0]): Poller {
  const p = new Poller(options);
  t.after(async () => {
    // Stopping mid-poll settles on the injected clock (the relay gets a moment to notice the
    // cancelled request): a manual clock has to be moved for stop() to finish.
    let done = false;
    const stopped = p.stop().finally(() => (done = true));
    const clock = options.clock;
    for (let i = 0; i < 600 && !done && clock instanceof ManualClock; i++) await clock.advanceAsync(100);
    await stopped;
  });
  return p;
}

describe('Poller against a real relay', () => {
  it('hands over what is waiting, then what arrives during the long poll; the relay marks them delivered', async (t) => {
    const relay = await startRelay(t);
    const me = Keypair.generate();
    const peer = new RelayClient({ relayUrl: relay.url, keypair: Keypair.generate() });
    const waiting = [
      await peer.send({ recipient_key: me.publicKey, body: { n: 1 } }),
      await peer.send({ recipient_key: me.publicKey, body: { n: 2 } }),
    ];
    const p = poller(t, { client: new RelayClient({ relayUrl: relay.url, keypair: me }), waitSeconds: 10 });
    const first = p.next('batch');
    p.start();
    const [batch1] = await first;
    assert.deepEqual(batch1.map((m) => m.message_id).sort(), waiting.map((m) => m.message_id).sort());
    assert.deepEqual(
      batch1.map((m) => m.body).sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))),
      [{ n: 1 }, { n: 2 }],
    );
    for (const m of waiting) assert.equal((await peer.messageStatus(m.message_id)).status, 'delivered');
    assert.equal(p.mode, 'long-poll');

    const second = p.next('batch');
    const later = await peer.send({ recipient_key: me.publicKey, body: { n: 3 } });
    const [batch2] = await second;
    assert.deepEqual(
      batch2.map((m) => m.message_id),
      [later.message_id],
    );
    assert.equal(batch2[0]!.recipient_key, me.publicKey);
  });

  it('never asks for more than the consumer has room for, and waits for wake() when it has none', async (t) => {
    const relay = await startRelay(t);
    const me = Keypair.generate();
    const peer = new RelayClient({ relayUrl: relay.url, keypair: Keypair.generate() });
    const sent = [];
    for (let n = 1; n <= 3; n++) sent.push(await peer.send({ recipient_key: me.publicKey, body: { n } }));
    let room = 0;
    const p = poller(t, {
      client: new RelayClient({ relayUrl: relay.url, keypair: me }),
      waitSeconds: 5,
      capacity: () => room,
    });
    const batches: string[][] = [];
    p.on('batch', (ms) => {
      batches.push(ms.map((m) => m.message_id));
      room = 0; // the consumer is busy again
    });
    p.start();
    const first = p.next('batch');
    room = 1;
    p.wake();
    await first;
    assert.equal(batches[0]!.length, 1, 'one message for one free slot');
    const statuses = await Promise.all(sent.map((m) => peer.messageStatus(m.message_id).then((s) => s.status)));
    assert.deepEqual(statuses.filter((s) => s === 'delivered').length, 1, 'the other two were not taken');
    const second = p.next('batch');
    room = 10;
    p.wake();
    await second;
    assert.deepEqual([...batches[0]!, ...batches[1]!].sort(), sent.map((m) => m.message_id).sort());
  });
});

describe('Poller against a scripted relay', () => {
  it('a relay that drops every connection: each failure, the look at what a lost poll took included, is one attempt and one retry event, backing off', {
    timeout: 10_000,
  }, async (t) => {
    const server = await scriptedHttp(t, (_req, res) => res.socket?.destroy());
    const clock = new WatchedClock(Date.now());
    const client = new RelayClient({ relayUrl: server.url, keypair: Keypair.generate(), clock });
    const p = poller(t, { client, clock, waitSeconds: 0, limit: 1 });
    const warnings: unknown[] = [];
    p.on('warning', (e) => warnings.push(e));
    const first = p.next('retry');
    p.start();
    const [a] = await first;
    assert.equal(server.seen.length, 1);
    assert.doesNotMatch(server.seen[0]!.url, /status=delivered/);
    // The poll's answer may have been lost: after the backoff, the relay is asked what it took,
    // once; that failing is the next retry event (not a warning), with a longer delay.
    const second = p.next('retry');
    await clock.advanceAsync(a.delayMs);
    const [b] = await second;
    assert.equal(server.seen.length, 2, 'one request, no retries inside the client');
    assert.match(server.seen[1]!.url, /status=delivered/);
    assert.equal(b.error.kind, 'network');
    assert.ok(b.delayMs > a.delayMs);
    assert.deepEqual(warnings, []);
  });

  it('a poll answer longer than the page it asked for: response_too_large read no further than the bound, then backs off and polls again', async (t) => {
    const mib = Buffer.alloc(1024 * 1024, 0x20);
    const written: number[] = [];
    const server = await scriptedHttp(t, (req, res, n) => {
      // Recovery listings (what the cut-off poll may have taken) are answered honestly.
      if (/[?&]status=delivered/.test(req.url)) return json(res, 200, EMPTY);
      written[n] = 0;
      res.writeHead(200, { 'Content-Type': 'application/json' });
      // 64 MiB of blanks for a page of one message, as fast as the client reads.
      const more = (): void => {
        while (!res.destroyed && written[n]! < 64 && res.write(mib)) written[n]!++;
        if (written[n]! >= 64) res.end();
        else if (!res.destroyed) res.once('drain', more);
      };
      more();
    });
    const clock = new WatchedClock(Date.now());
    const client = new RelayClient({ relayUrl: server.url, keypair: Keypair.generate(), clock });
    const p = poller(t, { client, clock, waitSeconds: 0, limit: 1 });
    const retry = p.next('retry');
    p.start();
    const [{ error, delayMs }] = await retry;
    assert.equal(error.code, 'response_too_large', error.message);
    assert.equal(error.details?.['limit_bytes'], pollAnswerMaxBytes(1));
    assert.ok(pollAnswerMaxBytes(1) < 5 * 1024 * 1024, `a page of one message is bounded (${pollAnswerMaxBytes(1)})`);
    assert.match(server.seen[0]!.url, /[?&]limit=1(&|$)/);
    // Torn down at the bound: the server got no further than the bound and the socket's buffers.
    assert.ok(written[0]! < 16, `the server wrote ${written[0]} MiB before the poll was cut`);
    assert.ok(delayMs > 0);
    // It keeps going: after the backoff, the next poll (of a page) goes out.
    const again = p.next('retry');
    await clock.advanceAsync(delayMs);
    const [second] = await again;
    assert.equal(second.error.code, 'response_too_large');
    assert.ok(second.delayMs >= delayMs, 'backing off further');
    assert.equal(server.seen.filter((r) => !/status=delivered/.test(r.url)).length, 2);
  });

  it('a relay that ignores `wait` (an empty answer at once): switches to interval polling', async (t) => {
    const server = await scriptedHttp(t, (_req, res) => json(res, 200, EMPTY));
    const clock = new WatchedClock(Date.now());
    const client = new RelayClient({ relayUrl: server.url, keypair: Keypair.generate(), clock });
    const p = poller(t, { client, clock, waitSeconds: 20, intervalMs: 2000 });
    const mode = p.next('mode');
    p.start();
    assert.deepEqual(await mode, ['interval']);
    assert.match(server.seen[0]!.url, /[?&]wait=20(&|$)/);
    assert.equal(p.mode, 'interval');
    assert.equal(await clock.timer(0), 2000, 'then pauses for the interval');
    assert.equal(server.seen.length, 1);
    await clock.advanceAsync(2000);
    const next = await server.request(1);
    assert.doesNotMatch(next.url, /wait=/, 'no more long polls');
  });

  it('a relay that refuses `wait` with 400: polls again at once without it', async (t) => {
    const server = await scriptedHttp(t, (_req, res, n) => {
      if (n === 0)
        json(res, 400, envelope('bad_request', 'query parameter wait: unknown parameter', { field: 'wait' }));
      else json(res, 200, EMPTY);
    });
    const clock = new WatchedClock(Date.now());
    const client = new RelayClient({ relayUrl: server.url, keypair: Keypair.generate(), clock });
    const p = poller(t, { client, clock, waitSeconds: 20 });
    const mode = p.next('mode');
    p.start();
    assert.deepEqual(await mode, ['interval']);
    const next = await server.request(1);
    assert.doesNotMatch(next.url, /wait=/);
  });

  it('hands over a batch a scripted relay returns, whole and in order', async (t) => {
    const me = Keypair.generate();
    const page = { messages: [message(1, me.publicKey), message(2, me.publicKey)], has_more: false, next_cursor: null };
    const server = await scriptedHttp(t, (_req, res, n) => json(res, 200, n === 0 ? page : EMPTY));
    const clock = new WatchedClock(Date.now());
    const p = poller(t, {
      client: new RelayClient({ relayUrl: server.url, keypair: me, clock }),
      clock,
      waitSeconds: 0,
      limit: 7,
    });
    const batch = p.next('batch');
    p.start();
    const [messages] = await batch;
    assert.deepEqual(
      messages.map((m) => m.body),
      [{ n: 1 }, { n: 2 }],
    );
    assert.match(server.seen[0]!.url, /[?&]limit=7(&|$)/);
  });

  // 120 s is longer than the client would wait inside one call; 5 s is shorter, and still the
  // poller's to wait (one request, a retry event saying it), not waited out silently in the client.
  for (const seconds of [120, 5]) {
    it(`a Retry-After of ${seconds} s: one request, a retry event with that delay, then the poll again`, {
      timeout: 10_000,
    }, async (t) => {
      const server = await scriptedHttp(t, (_req, res, n) => {
        if (n === 0)
          json(res, 429, envelope('rate_limit_exceeded', 'Too many requests'), { 'Retry-After': String(seconds) });
        else json(res, 200, EMPTY);
      });
      const clock = new WatchedClock(Date.now());
      const client = new RelayClient({ relayUrl: server.url, keypair: Keypair.generate(), clock });
      const p = poller(t, { client, clock, waitSeconds: 0, backoff: { random: () => 0 } });
      const retry = p.next('retry');
      const recovered = p.next('recovered');
      p.start();
      const [{ error, delayMs }] = await retry;
      assert.equal(error.code, 'rate_limit_exceeded');
      assert.equal(delayMs, seconds * 1000);
      assert.equal(server.seen.length, 1);
      await clock.advanceAsync(seconds * 1000 - 1);
      assert.equal(server.seen.length, 1, 'not before Retry-After');
      await clock.advanceAsync(1);
      await recovered;
      assert.equal(server.seen.length, 2);
    });
  }

  it('gives up after repeated authentication refusals, with the relay’s code', async (t) => {
    const server = await scriptedHttp(t, (_req, res) =>
      json(res, 401, envelope('invalid_signature', 'the signature does not verify')),
    );
    const clock = new WatchedClock(Date.now());
    const client = new RelayClient({ relayUrl: server.url, keypair: Keypair.generate(), clock });
    const p = poller(t, { client, clock, waitSeconds: 0, maxAuthFailures: 3, backoff: { random: () => 0 } });
    const delays: number[] = [];
    p.on('retry', ({ delayMs }) => {
      delays.push(delayMs);
      setImmediate(() => clock.advance(delayMs));
    });
    const fatal = p.next('fatal');
    p.start();
    const [err] = await fatal;
    assert.equal(err.code, 'invalid_signature');
    assert.equal(err.kind, 'auth');
    assert.equal(server.seen.length, 3);
    assert.equal(delays.length, 2, 'backed off between attempts');
    assert.ok(delays[1]! > delays[0]!, 'with growing delays');
  });

  it('stop() cancels a waiting long poll, and nothing after it takes messages', async (t) => {
    // Long polls (status=sent) are held forever; read-only looks (status=delivered) get an empty page.
    const server = await scriptedHttp(t, (req, res) => {
      if (/[?&]status=delivered(&|$)/.test(req.url)) json(res, 200, EMPTY);
    });
    const p = new Poller({
      client: new RelayClient({ relayUrl: server.url, keypair: Keypair.generate() }),
      waitSeconds: 30,
    });
    p.start();
    await server.request(0);
    const started = performance.now();
    await p.stop();
    assert.ok(performance.now() - started < 5000, 'does not sit out the 30 s long poll');
    const after = server.seen.slice(1);
    assert.ok(
      after.every((r) => /[?&]status=delivered(&|$)/.test(r.url)),
      `after the cancelled poll only read-only looks: ${after.map((r) => r.url).join(', ')}`,
    );
  });
});
