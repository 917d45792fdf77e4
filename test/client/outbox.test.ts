/**
 * The runtime's way out (`src/runtime/outbox.ts`): it waits out the relay's rate limits instead of
 * failing, stops at errors no retry can fix, and never sends a message twice — when a send's
 * outcome is unknown it looks in the thread first. Observed through `send()`, its `retry` events,
 * what the `send` function was asked to do, and what a real relay ends up holding.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { plainSend } from '../../src/client/codec.js';
import { RelayClient } from '../../src/client/http.js';
import { OutcomeUnknownError, RelayError } from '../../src/core/errors.js';
import type { EncodedSend } from '../../src/protocol/frames.js';
import { Keypair } from '../../src/protocol/signing.js';
import type { SendResponse } from '../../src/protocol/types.js';
import { Outbox } from '../../src/runtime/outbox.js';
import { startRelay } from '../helpers/relay.js';
import { WatchedClock } from './_support.js';

const T0 = Date.UTC(2026, 2, 5, 12, 0, 0);
const OK: SendResponse = {
  message_id: 'msg_1772712000_00000000000a',
  status: 'sent',
  created_at: '2026-03-05T12:00:00Z',
  expires_at: '2026-03-12T12:00:00Z',
};

/** A client that is never contacted (the outbox only reads its rate headers and identity). */
function idleClient(clock: WatchedClock): RelayClient {
  return new RelayClient({ relayUrl: 'http://127.0.0.1:9', keypair: Keypair.generate(), clock });
}

/** Everything addressed to `to` that is still waiting on the relay (taking it marks it delivered). */
async function inbox(
  relayUrl: string,
  to: Keypair,
  clock?: WatchedClock,
): Promise<Array<{ message_id: string; body: unknown }>> {
  const client = new RelayClient({ relayUrl, keypair: to, ...(clock ? { clock } : {}) });
  return (await client.poll({ limit: 100 })).messages;
}

describe('Outbox: many replies waiting at once', () => {
  it('40 replies waiting out a rate limit together print no MaxListenersExceededWarning (it would break the JSON log stream)', async (t) => {
    const clock = new WatchedClock(T0);
    const warnings: string[] = [];
    const onWarning = (w: Error): void => void warnings.push(w.name);
    process.on('warning', onWarning);
    t.after(() => process.off('warning', onWarning));
    let calls = 0;
    const outbox = new Outbox({
      send: async () => {
        calls++;
        throw new RelayError('rate_limit_exceeded', 'slow down', { status: 429, retryAfter: 30 });
      },
      client: idleClient(clock),
      clock,
    });
    const sends = Array.from({ length: 40 }, (_, n) =>
      outbox.send(plainSend({ recipient_key: Keypair.generate().publicKey, body: { n } })).catch((e: Error) => e),
    );
    while (calls < 40 || clock.delays.length < 40) await new Promise((r) => setImmediate(r));
    // Warnings are emitted on the next tick.
    await new Promise((r) => setImmediate(r));
    outbox.close();
    await Promise.all(sends);
    assert.deepEqual(warnings, []);
  });
});

describe('Outbox: rate limits', () => {
  it('waits for the relay’s window instead of failing, and each message arrives once', async (t) => {
    const clock = new WatchedClock(Date.now());
    const relay = await startRelay(t, { clock, sendRatePerMinute: 2 });
    const to = Keypair.generate();
    const client = new RelayClient({ relayUrl: relay.url, keypair: Keypair.generate(), clock });
    const outbox = new Outbox({ send: (r) => client.send(r), client, clock });
    const failures: string[] = [];
    outbox.on('retry', ({ error }) => failures.push(error.code));
    await outbox.send(plainSend({ recipient_key: to.publicKey, body: { n: 1 } }));
    await outbox.send(plainSend({ recipient_key: to.publicKey, body: { n: 2 } }));
    const before = clock.delays.length;
    const third = outbox.send(plainSend({ recipient_key: to.publicKey, body: { n: 3 } }));
    const wait = await clock.timer(before);
    assert.ok(wait > 55_000 && wait <= 61_000, `waits for the minute window (${wait} ms)`);
    assert.equal((await inbox(relay.url, to, clock)).length, 2, 'the third is held back meanwhile');
    await clock.advanceAsync(wait);
    const res = await third;
    const after = await inbox(relay.url, to, clock);
    assert.deepEqual(
      after.map((m) => [m.message_id, m.body]),
      [[res.message_id, { n: 3 }]],
      'sent once, after the wait',
    );
    assert.ok(
      failures.every((c) => c === 'rate_limit_exceeded'),
      `only rate limits were waited out: ${failures.join(', ')}`,
    );
  });

  it('a 429 from the send: waits Retry-After, then sends again', async () => {
    const clock = new WatchedClock(T0);
    let calls = 0;
    const outbox = new Outbox({
      send: async () => {
        calls++;
        if (calls === 1)
          throw new RelayError('rate_limit_exceeded', 'Too many messages', { status: 429, retryAfter: 5 });
        return OK;
      },
      client: idleClient(clock),
      clock,
    });
    const retry = outbox.next('retry');
    const sent = outbox.send(plainSend({ recipient_key: Keypair.generate().publicKey, body: 1 }));
    const [{ error, delayMs }] = await retry;
    assert.equal(error.code, 'rate_limit_exceeded');
    assert.equal(delayMs, 5000);
    await clock.advanceAsync(4999);
    assert.equal(calls, 1, 'not before Retry-After');
    await clock.advanceAsync(1);
    assert.deepEqual(await sent, OK);
    assert.equal(calls, 2);
  });

  it('a 429 holds back the sends queued behind it too', async () => {
    const clock = new WatchedClock(T0);
    const bodies: unknown[] = [];
    const outbox = new Outbox({
      send: async (r: EncodedSend) => {
        bodies.push(JSON.parse(r.body_json));
        if (bodies.length === 1)
          throw new RelayError('rate_limit_exceeded', 'Too many messages', { status: 429, retryAfter: 10 });
        return OK;
      },
      client: idleClient(clock),
      clock,
    });
    const retry = outbox.next('retry');
    const first = outbox.send(plainSend({ recipient_key: Keypair.generate().publicKey, body: 'first' }));
    await retry;
    const second = outbox.send(plainSend({ recipient_key: Keypair.generate().publicKey, body: 'second' }));
    await clock.advanceAsync(9_999);
    assert.deepEqual(bodies, ['first'], 'the second send waits for the same window');
    await clock.advanceAsync(1);
    await Promise.all([first, second]);
    assert.deepEqual(bodies.slice(1).sort(), ['first', 'second']);
  });
});

describe('Outbox: errors', () => {
  for (const [code, status] of [
    ['acl_denied', 403],
    ['payload_too_large', 413],
    ['bad_request', 400],
  ] as const) {
    it(`${status} ${code} is final: no retry`, async () => {
      const clock = new WatchedClock(T0);
      let calls = 0;
      const outbox = new Outbox({
        send: async () => {
          calls++;
          throw new RelayError(code, 'refused', { status });
        },
        client: idleClient(clock),
        clock,
      });
      let retries = 0;
      outbox.on('retry', () => retries++);
      await assert.rejects(
        outbox.send(plainSend({ recipient_key: Keypair.generate().publicKey, body: 1 })),
        (e: unknown) => e instanceof RelayError && e.code === code,
      );
      assert.equal(calls, 1);
      assert.equal(retries, 0);
      assert.equal(outbox.pending, 0);
    });
  }

  it('transient failures are retried with backoff until the send is accepted', async () => {
    const clock = new WatchedClock(T0);
    let calls = 0;
    const outbox = new Outbox({
      send: async () => {
        calls++;
        if (calls < 3) throw new RelayError('internal_error', 'boom', { status: 500 });
        return OK;
      },
      client: idleClient(clock),
      clock,
    });
    const delays: number[] = [];
    outbox.on('retry', ({ delayMs }) => {
      delays.push(delayMs);
      setImmediate(() => clock.advance(delayMs));
    });
    assert.deepEqual(await outbox.send(plainSend({ recipient_key: Keypair.generate().publicKey, body: 1 })), OK);
    assert.equal(calls, 3);
    assert.equal(delays.length, 2);
    assert.ok(delays.every((d) => d >= 250));
  });

  it('close() ends a send that is waiting, with an AbortError', async () => {
    const clock = new WatchedClock(T0);
    const outbox = new Outbox({
      send: async () => {
        throw new RelayError('rate_limit_exceeded', 'Too many messages', { status: 429, retryAfter: 30 });
      },
      client: idleClient(clock),
      clock,
    });
    const retry = outbox.next('retry');
    const sent = outbox.send(plainSend({ recipient_key: Keypair.generate().publicKey, body: 1 }));
    await retry;
    assert.equal(outbox.pending, 1);
    outbox.close();
    await assert.rejects(
      sent,
      (e: unknown) => (e as { kind?: string }).kind === 'aborted' && (e as { code?: string }).code === 'aborted',
    );
  });
});

describe('Outbox: never twice (the already-sent check)', () => {
  async function setup(t: import('node:test').TestContext) {
    const relay = await startRelay(t);
    const clock = new WatchedClock(Date.now());
    const to = Keypair.generate();
    const client = new RelayClient({ relayUrl: relay.url, keypair: Keypair.generate(), clock });
    return { relay, clock, to, client };
  }

  /** Moves the clock past every wait the outbox announces. */
  function autoAdvance(outbox: Outbox, clock: WatchedClock): void {
    outbox.on('retry', ({ delayMs }) => setImmediate(() => clock.advance(delayMs)));
  }

  it('an answer lost after the relay stored the message: found in the thread, not sent again', async (t) => {
    const { relay, clock, to, client } = await setup(t);
    let calls = 0;
    const outbox = new Outbox({
      send: async (r) => {
        calls++;
        const res = await client.send(r);
        if (calls === 1) throw new OutcomeUnknownError('the connection closed before the relay answered');
        return res;
      },
      client,
      clock,
    });
    autoAdvance(outbox, clock);
    const res = await outbox.send(
      plainSend({ recipient_key: to.publicKey, thread_id: 'thread-lost-answer', body: { answer: 42 } }),
      { threadId: 'thread-lost-answer' },
    );
    assert.equal(calls, 1, 'not sent a second time');
    const held = await inbox(relay.url, to);
    assert.deepEqual(
      held.map((m) => m.message_id),
      [res.message_id],
      'the one stored message is reported',
    );
  });

  it('a request lost before it reached the relay: nothing in the thread, so it is sent again, once', async (t) => {
    const { relay, clock, to, client } = await setup(t);
    let calls = 0;
    const outbox = new Outbox({
      send: async (r) => {
        calls++;
        if (calls === 1) throw new OutcomeUnknownError('the connection closed before the request was written');
        return client.send(r);
      },
      client,
      clock,
    });
    autoAdvance(outbox, clock);
    const res = await outbox.send(
      plainSend({ recipient_key: to.publicKey, thread_id: 'thread-lost-request', body: { answer: 42 } }),
      { threadId: 'thread-lost-request' },
    );
    assert.equal(calls, 2);
    assert.deepEqual(
      (await inbox(relay.url, to)).map((m) => m.message_id),
      [res.message_id],
    );
  });

  it('resuming after a crash (checkFirst): a reply already in the thread is not sent again', async (t) => {
    const { relay, clock, to, client } = await setup(t);
    const earlier = await client.send({
      recipient_key: to.publicKey,
      thread_id: 'thread-resume',
      in_reply_to: 'msg_1_000000000001',
      body: { done: true },
    });
    let calls = 0;
    const outbox = new Outbox({
      send: (r) => {
        calls++;
        return client.send(r);
      },
      client,
      clock,
    });
    const res = await outbox.send(
      plainSend({
        recipient_key: to.publicKey,
        thread_id: 'thread-resume',
        in_reply_to: 'msg_1_000000000001',
        body: { done: true },
      }),
      { threadId: 'thread-resume', checkFirst: true },
    );
    assert.equal(calls, 0);
    assert.equal(res.message_id, earlier.message_id);
    assert.equal((await inbox(relay.url, to)).length, 1);
  });

  it('a different message in the same thread (a progress update) is not mistaken for this one', async (t) => {
    const { relay, clock, to, client } = await setup(t);
    await client.send({
      recipient_key: to.publicKey,
      thread_id: 'thread-progress',
      in_reply_to: 'msg_1_000000000002',
      body: { progress: 0.5 },
    });
    let calls = 0;
    const outbox = new Outbox({
      send: (r) => {
        calls++;
        return client.send(r);
      },
      client,
      clock,
    });
    const res = await outbox.send(
      plainSend({
        recipient_key: to.publicKey,
        thread_id: 'thread-progress',
        in_reply_to: 'msg_1_000000000002',
        body: { result: 'final' },
      }),
      { threadId: 'thread-progress', checkFirst: true },
    );
    assert.equal(calls, 1, 'the final reply is sent');
    const held = await inbox(relay.url, to);
    assert.equal(held.length, 2);
    assert.deepEqual(held.find((m) => m.message_id === res.message_id)?.body, { result: 'final' });
  });

  it('compares the exact body text it sent: a fresh encoding of the same reply (a new seal) is a different message', async (t) => {
    const { relay, clock, to, client } = await setup(t);
    const sealed = (nonce: string) => ({
      recipient_key: to.publicKey,
      content_type: 'application/json',
      body_json: `{"sealed":"c2VjcmV0","nonce":"${nonce}"}`,
      thread_id: 'thread-sealed',
      in_reply_to: 'msg_1_000000000003',
    });
    const earlier = await client.send(sealed('n1'));
    const page = await client.thread('thread-sealed', {}, undefined, { bodies: true });
    assert.equal(
      page.bodyTexts?.get(earlier.message_id),
      sealed('n1').body_json,
      'the relay hands the body text back as sent',
    );
    let calls = 0;
    const outbox = new Outbox({
      send: (r) => {
        calls++;
        return client.send(r);
      },
      client,
      clock,
    });
    const same = await outbox.send(sealed('n1'), { threadId: 'thread-sealed', checkFirst: true });
    assert.equal(same.message_id, earlier.message_id, 'the journaled bytes are found');
    assert.equal(calls, 0);
    await outbox.send(sealed('n2'), { threadId: 'thread-sealed', checkFirst: true });
    assert.equal(calls, 1, 'other bytes are another message');
    assert.equal((await inbox(relay.url, to)).length, 2);
  });

  it('a relay that re-formats body text is still matched, by value', async (t) => {
    const { relay, clock, to, client } = await setup(t);
    // The same agent, reading threads through a relay that pretty-prints every answer.
    const reformatting: typeof fetch = async (input, init) => {
      const res = await fetch(input, init);
      if (!String(input).includes('/threads/')) return res;
      const text = JSON.stringify(JSON.parse(await res.text()), null, 2);
      return new Response(text, { status: res.status, headers: res.headers });
    };
    const reader = new RelayClient({ relayUrl: relay.url, keypair: client.keypair, clock, fetch: reformatting });
    const request = {
      recipient_key: to.publicKey,
      content_type: 'application/json',
      body_json: '{"done":true,"n":[1,2]}',
      thread_id: 'thread-pretty',
      in_reply_to: 'msg_1_000000000004',
    };
    const earlier = await client.send(request);
    let calls = 0;
    const outbox = new Outbox({
      send: (r) => {
        calls++;
        return reader.send(r);
      },
      client: reader,
      clock,
    });
    const res = await outbox.send(request, { threadId: 'thread-pretty', checkFirst: true });
    assert.equal(res.message_id, earlier.message_id);
    assert.equal(calls, 0);
    await outbox.send({ ...request, body_json: '{"done":false}' }, { threadId: 'thread-pretty', checkFirst: true });
    assert.equal(calls, 1, 'a different value is not mistaken for it');
    assert.equal((await inbox(relay.url, to)).length, 2);
  });
});
