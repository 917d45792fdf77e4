/**
 * The bench's NATS anchor (bench/nats.ts) against a real nats-server: the echo responder answers
 * everything, and the requester counts what a misbehaving responder drops or answers twice.
 * Skipped when nats-server is not installed (CI does not need it; the bench is not in CI).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { cleanupAll } from '../../bench/lib.js';
import { type NatsAnchor, NatsRequester, natsAvailable, startNats } from '../../bench/nats.js';

const available = await natsAvailable();
const skip = 'skipped' in available ? available.skipped : false;

describe('bench NATS anchor', { skip }, () => {
  let anchor: NatsAnchor;
  before(async () => {
    anchor = await startNats('k'.repeat(43));
  });
  after(async () => {
    await anchor?.responder.stop();
    await anchor?.server.stop();
    cleanupAll();
  });

  it('round-trips every request through nats-server and the echo responder, with a window', async () => {
    const requester = await NatsRequester.open(anchor.url, anchor.subject);
    try {
      const one = await requester.exchange(20, 1, 30_000);
      assert.equal(one.lost, 0);
      assert.equal(one.duplicates, 0);
      assert.equal(one.timedOut, false);
      assert.ok(one.p50 > 0 && one.p50 <= one.p99);
      const many = await requester.exchange(2000, 200, 30_000);
      assert.deepEqual([many.lost, many.duplicates, many.timedOut], [0, 0, false]);
      assert.ok(many.perSecond > 0);
    } finally {
      requester.close();
    }
  });

  it('counts replies that never come as lost and second replies as duplicates', async () => {
    const { connect } = await import('nats');
    const nc = await connect({ servers: anchor.url });
    const subject = 'mrp.bench.misbehaving';
    const encoder = new TextEncoder();
    const decoder = new TextDecoder();
    // Drops every request with n % 10 === 3, answers every n % 10 === 5 twice.
    nc.subscribe(subject, {
      callback: (_err, msg) => {
        const body = JSON.parse(decoder.decode(msg.data)) as { n: number };
        if (body.n % 10 === 3) return;
        const reply = encoder.encode(JSON.stringify({ echo: body, from: 'x', message_id: 'm' }));
        msg.respond(reply);
        if (body.n % 10 === 5) msg.respond(reply);
      },
    });
    await nc.flush();
    const requester = await NatsRequester.open(anchor.url, subject);
    try {
      // Nothing signals "the dropped ones will never come": the exchange ends at its deadline.
      const r = await requester.exchange(100, 100, 5000);
      assert.equal(r.timedOut, true);
      assert.equal(r.lost, 10);
      assert.equal(r.duplicates, 10);
    } finally {
      requester.close();
      await nc.close();
    }
  });
});
