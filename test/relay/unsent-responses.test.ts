/**
 * HTTP answers nobody reads (issue 9, memory bounded by bytes): a page of messages can be
 * megabytes, keys are free, and node:http keeps what the kernel does not take. A relay-wide
 * budget cuts the connection holding the most; an answer whose client stopped reading is cut
 * after `responseStallTimeoutMs`; a client that reads gets its whole answer.
 */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { type Keypair, signRequest, uniqueTimestamp } from '../../src/protocol/signing.js';
import type { RelayOptions } from '../../src/relay/options.js';
import { newAgent, signed, startRelay, type TestRelay } from '../helpers/relay.js';

const THREAD = 'big';
const MESSAGES = 6;
/** Each message's body: ~1 MB of JSON string, so the thread's page is ~6 MB. */
const BIG = 'x'.repeat(1_000_000);

async function relayWithBigThread(
  t: TestContext,
  options: Partial<RelayOptions>,
  clock?: ManualClock,
  messages = MESSAGES,
): Promise<{ r: TestRelay; kp: Keypair }> {
  const r = await startRelay(t, { sendRatePerMinute: 0, requestRatePerMinute: 0, ...options });
  const kp = newAgent();
  const base = clock?.now() ?? Date.now();
  for (let i = 0; i < messages; i++) {
    const res = await signed(
      r.url,
      kp,
      'POST',
      '/v1/messages',
      { recipient_key: kp.publicKey, thread_id: THREAD, body: BIG },
      // Whole-second timestamps: a distinct second for each, or the second send is a replay.
      { at: base - i * 1000 },
    );
    assert.equal(res.status, 201, `send ${i}: ${res.text}`);
  }
  return { r, kp };
}

interface Unread {
  socket: Socket;
  /** Resolves when the relay closes the connection. */
  closed: Promise<void>;
  /** Bytes that reached this client (it reads nothing until `read()`). */
  received(): number;
  read(): void;
}

/** A signed GET of the thread on a raw socket that reads nothing. */
async function unreadGet(url: string, kp: Keypair, at: number): Promise<Unread> {
  const u = new URL(url);
  const target = `/v1/messages/threads/${THREAD}?limit=100`;
  const headers = signRequest(kp, 'GET', target, '', at, { timestamp: uniqueTimestamp(at) });
  const socket = connect({ port: Number(u.port), host: u.hostname });
  socket.on('error', () => {});
  await new Promise<void>((r) => socket.once('connect', () => r()));
  let got = 0;
  socket.on('data', (d: Buffer) => (got += d.length));
  socket.pause();
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`);
  socket.write(`GET ${target} HTTP/1.1\r\nHost: ${u.host}\r\n${lines.join('')}\r\n`);
  return { socket, closed, received: () => got, read: () => socket.resume() };
}

async function until(cond: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

describe('HTTP answers nobody reads', () => {
  it('past the relay-wide budget, the connection holding the most is cut; the relay goes on', async (t) => {
    // Room for one unread page of ~6 MB, not two.
    const { r, kp } = await relayWithBigThread(t, { maxUnsentResponseBytes: 8 * 1024 * 1024 });
    const first = await unreadGet(r.url, kp, Date.now());
    await until(() => r.relay.unsentResponseBytes > 4_000_000, 'the first answer to be written');
    const second = await unreadGet(r.url, kp, Date.now() + 1000);
    await until(() => r.logs.some((e) => e.msg === 'http_outbound_budget'), 'the cut');
    const cut = r.logs.find((e) => e.msg === 'http_outbound_budget')!;
    assert.ok(Number(cut['bytes']) > 4_000_000, `it held ${cut['bytes']} bytes`);
    assert.ok(r.relay.unsentResponseBytes <= 8 * 1024 * 1024, `${r.relay.unsentResponseBytes} still counted`);
    assert.ok(r.relay.unsentResponseBytes > 4_000_000, 'the other answer is kept');

    // Both read now: the one cut gets what the kernel had taken, then the end; the other, everything.
    first.read();
    second.read();
    const whole = (u: Unread): boolean => u.received() > MESSAGES * BIG.length;
    await until(() => [first, second].some(whole), 'the kept answer to arrive whole');
    const lost = whole(first) ? second : first;
    await lost.closed;
    assert.ok(!whole(lost), `the cut client got ${lost.received()} bytes`);
    await until(() => r.relay.unsentResponseBytes === 0, 'the budget to be released');

    // The relay goes on: the same page, for a client that reads.
    const page = await signed(r.url, kp, 'GET', `/v1/messages/threads/${THREAD}?limit=100`);
    assert.equal(page.status, 200);
    assert.equal(page.body.messages.length, MESSAGES);
    first.socket.destroy();
    second.socket.destroy();
  });

  it('a slow reader keeps its answer past responseStallTimeoutMs: each piece it reads is progress (manual clock)', async (t) => {
    const clock = new ManualClock(Date.now());
    // Eight 1 MB bodies: about half of the page is still in the relay once the kernel's buffers are full.
    const { r, kp } = await relayWithBigThread(t, { clock, responseStallTimeoutMs: 30_000 }, clock, 8);
    const whole = 8 * BIG.length;
    const slow = await unreadGet(r.url, kp, clock.now());
    await until(() => r.relay.unsentResponseBytes > 1_000_000, 'the answer to start');
    // Manual time in 10 s steps; between steps the client reads ~512 KiB (a slow link: ~50 KB/s).
    for (let step = 0; step < 30 && slow.received() < whole; step++) {
      // About 512 KiB, then paused again: what the relay still holds takes over a minute of manual time.
      const had = slow.received();
      slow.socket.resume();
      await until(() => slow.received() >= had + 512 * 1024 || slow.received() > whole, 'a read');
      slow.socket.pause();
      await clock.advanceAsync(10_000);
      assert.equal(slow.socket.destroyed, false, `cut after ${(step + 1) * 10} s of slow reading`);
    }
    assert.ok(!r.logs.some((e) => e.msg === 'http_response_stalled'), 'never taken for stalled');
    slow.read();
    await until(() => slow.received() > whole, 'the whole answer');
    await until(() => r.relay.unsentResponseBytes === 0, 'the budget to be released');
    slow.socket.destroy();
  });

  it('an address whose unread answers hold its share gets 503 before its next request is handled; reading frees it', async (t) => {
    const { r, kp } = await relayWithBigThread(t, { maxUnsentResponseBytesPerAddress: 4 * 1024 * 1024 });
    const unread = await unreadGet(r.url, kp, Date.now());
    await until(() => r.relay.unsentResponseBytes > 4 * 1024 * 1024, 'the answer to be written');
    const refused = await signed(r.url, kp, 'GET', `/v1/messages/threads/${THREAD}?limit=100`);
    assert.equal(refused.status, 503);
    assert.equal(refused.body.error.code, 'service_unavailable');
    assert.equal(refused.body.error.details.reason, 'unread_answers');
    assert.equal(refused.headers.get('retry-after'), '1');
    assert.equal((await fetch(`${r.url}/v1/health`)).status, 200, 'health checks stay answered');
    unread.read();
    await until(() => r.relay.unsentResponseBytes === 0, 'the answer to be read');
    const page = await signed(r.url, kp, 'GET', `/v1/messages/threads/${THREAD}?limit=100`);
    assert.equal(page.status, 200);
    assert.equal(page.body.messages.length, MESSAGES);
    unread.socket.destroy();
  });

  it('an answer whose client stopped reading is cut after responseStallTimeoutMs; a reader keeps its own', async (t) => {
    const clock = new ManualClock(Date.now());
    const { r, kp } = await relayWithBigThread(t, { clock, responseStallTimeoutMs: 30_000 }, clock);
    const stalled = await unreadGet(r.url, kp, clock.now());
    await until(() => r.relay.unsentResponseBytes > 0, 'the answer to be written');
    const held = r.relay.unsentResponseBytes;
    assert.ok(held > 1_000_000, `${held} bytes wait for the client`);

    // Within the limit, nothing is cut.
    await clock.advanceAsync(20_000);
    assert.ok(!r.logs.some((e) => e.msg === 'http_response_stalled'));
    assert.equal(stalled.socket.destroyed, false);

    // A client that reads makes progress and keeps its connection past the limit.
    const reader = await unreadGet(r.url, kp, clock.now() + 1);
    await until(() => r.relay.unsentResponseBytes > held, 'the second answer to be written');
    reader.read();
    await clock.advanceAsync(15_000);
    await until(() => reader.received() > 6_000_000, 'the reader to get its whole answer');
    assert.equal(reader.socket.destroyed, false);

    await clock.advanceAsync(20_000);
    await until(() => r.logs.some((e) => e.msg === 'http_response_stalled'), 'the stalled answer to be cut');
    stalled.read();
    await stalled.closed;
    assert.ok(stalled.received() < 6_000_000);
    await until(() => r.relay.unsentResponseBytes === 0, 'the budget to be released');
    reader.socket.destroy();
  });
});
