/**
 * The two sources against a real relay, driven by a consumer the test plays: what each hands over
 * (taken or not), its status, and the transport-specific work that lives inside it — the
 * WebSocket source's catch-up poll after the consumer declined pushes, and the poll source's take
 * that stays open until a hand-off succeeded.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { RelayClient } from '../../src/client/http.js';
import {
  type Batch,
  type DeliveryReceipt,
  PollSource,
  type SourceConsumer,
  type SourceStatus,
  WebSocketSource,
} from '../../src/client/source.js';
import { ManualClock } from '../../src/core/clock.js';
import { Keypair } from '../../src/protocol/signing.js';
import { startRelay } from '../helpers/relay.js';

/** A consumer whose answers the test sets; `until` waits for a condition on what it was handed. */
class TestConsumer implements SourceConsumer {
  readonly batches: Batch[] = [];
  room = true;
  answer: (batch: Batch) => Promise<DeliveryReceipt> = async () => ({ declined: 0 });
  #waiters: Array<{ test: () => boolean; resolve: () => void }> = [];

  async deliver(batch: Batch): Promise<DeliveryReceipt> {
    this.batches.push(batch);
    try {
      return await this.answer(batch);
    } finally {
      for (const w of this.#waiters.filter((x) => x.test())) w.resolve();
      this.#waiters = this.#waiters.filter((x) => !x.test());
    }
  }

  capacity(): number {
    return this.room ? 100 : 0;
  }

  hasRoom(): boolean {
    return this.room;
  }

  until(test: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
    if (test()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), timeoutMs);
      this.#waiters.push({
        test,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
  }

  ids(filter: (b: Batch) => boolean): string[] {
    return this.batches.filter(filter).flatMap((b) => b.messages.map((m) => m.message_id));
  }
}

describe('message sources', () => {
  it('WebSocket: pushes are not taken; declined ones are fetched by a catch-up poll once there is room; status follows', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0 });
    const agent = Keypair.generate();
    const source = new WebSocketSource(new RelayClient({ relayUrl: relay.url, keypair: agent }));
    t.after(() => source.close());
    const statuses: SourceStatus[] = [];
    source.on('status', (s) => statuses.push(s));
    const consumer = new TestConsumer();
    consumer.room = false;
    consumer.answer = async (batch) => ({ declined: batch.taken ? 0 : batch.messages.length });
    assert.equal(source.status, 'idle');
    const ready = source.next('connected');
    source.start(consumer);
    await ready;
    assert.equal(source.status, 'ready');

    const sender = new RelayClient({ relayUrl: relay.url, keypair: Keypair.generate() });
    const sent = [
      await sender.send({ recipient_key: agent.publicKey, body: { n: 1 } }),
      await sender.send({ recipient_key: agent.publicKey, body: { n: 2 } }),
    ];
    const ids = sent.map((s) => s.message_id);
    await consumer.until(() => consumer.ids((b) => !b.taken).length >= 2, 'both pushes');
    assert.deepEqual(
      consumer.ids((b) => !b.taken),
      ids,
      'pushed, not taken, declined',
    );

    consumer.room = true;
    source.wake();
    await consumer.until(() => consumer.ids((b) => b.taken).length >= 2, 'the catch-up poll');
    assert.deepEqual(
      consumer.ids((b) => b.taken),
      ids,
      'fetched by a poll (which marked them delivered): taken',
    );

    await source.stopIntake();
    assert.equal(source.status, 'draining');
    await source.close();
    assert.deepEqual(statuses, ['connecting', 'ready', 'draining', 'stopped']);
  });

  it('WebSocket: each catch-up poll notes its take before it is sent and closes it once handed over (the journal)', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0 });
    const agent = Keypair.generate();
    const log: string[] = [];
    const source = new WebSocketSource(new RelayClient({ relayUrl: relay.url, keypair: agent }), {
      takes: { begin: (_at, _wait, id) => void log.push(`begin ${id}`), end: () => log.push('end') },
    });
    t.after(() => source.close());
    const consumer = new TestConsumer();
    consumer.room = false;
    consumer.answer = async (batch) => {
      if (batch.taken) log.push(`taken ${batch.messages.length}`);
      return { declined: batch.taken ? 0 : batch.messages.length };
    };
    const ready = source.next('connected');
    source.start(consumer);
    await ready;
    const sender = new RelayClient({ relayUrl: relay.url, keypair: Keypair.generate() });
    await sender.send({ recipient_key: agent.publicKey, body: { n: 1 } });
    await consumer.until(() => consumer.ids((b) => !b.taken).length >= 1, 'the push');
    // The source hears "declined" once deliver's promise settles, a few microtasks after the push.
    await new Promise((r) => setImmediate(r));
    consumer.room = true;
    source.wake();
    await consumer.until(() => consumer.ids((b) => b.taken).length >= 1, 'the catch-up poll');
    await source.stopIntake();
    // begin → the page handed over → end; an empty page says caught up.
    assert.match(log[0]!, /^begin \S+$/);
    assert.deepEqual(log.slice(1, 3), ['taken 1', 'end']);
  });

  it('WebSocket: a catch-up poll the previous run had in flight when it died is settled at start: its messages come again, taken', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0 });
    const agent = Keypair.generate();
    const client = new RelayClient({ relayUrl: relay.url, keypair: agent });
    const sender = new RelayClient({ relayUrl: relay.url, keypair: Keypair.generate() });
    const id = (await sender.send({ recipient_key: agent.publicKey, body: { lost: true } })).message_id;
    // The dead run's poll: the relay marked the message delivered under this take; its answer was lost.
    const at = Date.now();
    const lost = await client.poll({ limit: 10, take: 'dead-run-take' });
    assert.deepEqual(
      lost.messages.map((m) => m.message_id),
      [id],
    );
    const ended: string[] = [];
    const source = new WebSocketSource(client, {
      takes: { begin: () => void ended.push('begin'), end: () => ended.push('end') },
      openTake: { at, waitSeconds: 0, id: 'dead-run-take' },
    });
    t.after(() => source.close());
    const consumer = new TestConsumer();
    source.start(consumer);
    await consumer.until(() => consumer.ids((b) => b.taken).includes(id), 'the recovered message');
    await source.stopIntake();
    assert.deepEqual(ended, ['end'], 'the open take is closed once its messages are handed over');
  });

  it("WebSocket: a stop while the previous run's open take cannot be settled (relay down) returns at once, not after the backoff", {
    timeout: 10_000,
  }, async (t) => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const down = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const clock = new ManualClock(Date.now());
    const ended: string[] = [];
    const source = new WebSocketSource(new RelayClient({ relayUrl: down, keypair: Keypair.generate(), clock }), {
      clock,
      takes: { begin: () => void ended.push('begin'), end: () => ended.push('end') },
      openTake: { at: clock.now(), waitSeconds: 0, id: 'dead-run-take' },
    });
    t.after(() => source.close());
    const warned = source.next('warning');
    source.start(new TestConsumer());
    const [warning] = await warned;
    assert.match(
      warning.message,
      /catching up on messages waiting on the relay \(a poll\) failed: cannot reach the relay/,
    );
    // The next look is a backoff away on the (manual) clock, which never moves here: the stop
    // must not wait for it.
    await source.stopIntake();
    assert.deepEqual(ended, [], 'the take stays open for the next start');
  });

  it('WebSocket: a consumer that throws instead of rejecting is a warning; later pushes still arrive', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0 });
    const agent = Keypair.generate();
    const source = new WebSocketSource(new RelayClient({ relayUrl: relay.url, keypair: agent }));
    t.after(() => source.close());
    const consumer = new TestConsumer();
    let throwNext = true;
    const deliver = consumer.deliver.bind(consumer);
    consumer.deliver = (batch: Batch): Promise<DeliveryReceipt> => {
      if (throwNext) {
        throwNext = false;
        throw new Error('consumer broke');
      }
      return deliver(batch);
    };
    const ready = source.next('connected');
    source.start(consumer);
    await ready;
    const warned = source.next('warning');
    const sender = new RelayClient({ relayUrl: relay.url, keypair: Keypair.generate() });
    await sender.send({ recipient_key: agent.publicKey, body: { n: 1 } });
    const [warning] = await warned;
    assert.match(warning.message, /consumer broke/);
    const second = await sender.send({ recipient_key: agent.publicKey, body: { n: 2 } });
    await consumer.until(() => consumer.ids(() => true).includes(second.message_id), 'the next push');
  });

  it('poll: every batch is taken, and a poll’s take closes only after a hand-off succeeded', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0, receiveRatePerMinute: 0 });
    const agent = Keypair.generate();
    const log: string[] = [];
    let closed!: () => void;
    const takeClosed = new Promise<void>((resolve) => (closed = resolve));
    const source = new PollSource(new RelayClient({ relayUrl: relay.url, keypair: agent }), {
      waitSeconds: 1,
      takes: {
        begin: () => void log.push('begin'),
        end: () => {
          log.push('end');
          closed();
        },
      },
    });
    t.after(() => source.close());
    const sender = new RelayClient({ relayUrl: relay.url, keypair: Keypair.generate() });
    const sent = await sender.send({ recipient_key: agent.publicKey, body: { n: 1 } });

    const consumer = new TestConsumer();
    let first = true;
    consumer.answer = async () => {
      if (first) {
        first = false;
        log.push('deliver: rejected');
        throw new Error('the journal closed');
      }
      log.push('deliver: ok');
      return { declined: 0 };
    };
    source.start(consumer);
    await takeClosed;
    assert.deepEqual(
      log.slice(0, 4),
      ['begin', 'deliver: rejected', 'deliver: ok', 'end'],
      'the take stayed open until the hand-off worked',
    );
    assert.deepEqual(
      consumer.ids(() => true),
      [sent.message_id, sent.message_id],
      'handed over again from the same window',
    );
    assert.ok(consumer.batches.every((b) => b.taken));
    assert.equal(source.status, 'ready');
  });
});
