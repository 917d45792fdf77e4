/**
 * The `MessageSource` contract is enough to write a new source without touching the runtime
 * (docs/architecture.md rule 4). The source here is just batches the test pushes, answering the way a
 * webhook source would answer its relay: 200 only once `deliver` resolved with nothing declined,
 * 503 when the runtime declined a message, could not journal it, or is draining. It shows that
 * the hand-off resolves only after the batch is on disk, that acks and sends go through the
 * source, and what draining does to batches offered meanwhile.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { RelayClient } from '../../src/client/http.js';
import type { Batch, MessageSource, SourceConsumer, SourceEvents, SourceStatus } from '../../src/client/source.js';
import { ManualClock } from '../../src/core/clock.js';
import { TypedEmitter } from '../../src/core/emitter.js';
import * as mrp from '../../src/index.js';
import { type EncodedSend, normalizeMessage } from '../../src/protocol/frames.js';
import { Keypair } from '../../src/protocol/signing.js';
import type { Message, SendResponse } from '../../src/protocol/types.js';
import { Journal, type JournalFs } from '../../src/runtime/journal.js';
import { Runtime } from '../../src/runtime/runtime.js';
import { gate } from '../helpers/agent.js';
import { tempDir } from '../helpers/cli.js';

/** A source that is an array of batches pushed by hand; `offer` answers like a webhook would. */
class ArraySource extends TypedEmitter<SourceEvents> implements MessageSource {
  readonly acks: string[] = [];
  readonly sent: EncodedSend[] = [];
  readonly lifecycle: string[] = [];
  consumer: SourceConsumer | undefined;
  #status: SourceStatus = 'idle';

  get status(): SourceStatus {
    return this.#status;
  }

  #set(status: SourceStatus): void {
    this.#status = status;
    this.emit('status', status);
  }

  start(consumer: SourceConsumer): void {
    this.lifecycle.push('start');
    this.consumer = consumer;
    this.#set('ready');
    this.emit('connected', { reconnected: false, detail: 'array' });
  }

  /** 200 once the batch is journaled; 503 (try again later) otherwise. */
  async offer(batch: Batch): Promise<200 | 503> {
    if (!this.consumer || this.#status !== 'ready') return 503;
    try {
      const receipt = await this.consumer.deliver(batch);
      return receipt.declined === 0 ? 200 : 503;
    } catch {
      return 503;
    }
  }

  async stopIntake(): Promise<void> {
    this.lifecycle.push('stopIntake');
    this.#set('draining');
  }

  async close(): Promise<void> {
    this.lifecycle.push('close');
    this.#set('stopped');
  }

  ack(messageId: string): void {
    this.acks.push(messageId);
  }

  async send(request: EncodedSend): Promise<SendResponse> {
    this.sent.push(request);
    return {
      message_id: `msg_1_${String(this.sent.length).padStart(12, '0')}`,
      status: 'sent',
      created_at: '',
      expires_at: '',
    };
  }

  wake(): void {}
}

const SENDER = Keypair.generate().publicKey;

function msg(id: string, body: unknown = { id }): Message {
  return normalizeMessage({
    message_id: id,
    sender_key: SENDER,
    body,
    expires_at: new Date(Date.now() + 86_400_000).toISOString(),
  });
}

/** node:fs, except that writes fail with ENOSPC while `full`. */
function flakyDisk(): { fs: JournalFs; full: boolean } {
  const disk = {
    full: false,
    fs: {
      ...(fs as unknown as JournalFs),
      writeSync: (fd: number, buffer: Uint8Array, offset: number, length: number) => {
        if (disk.full) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
        return fs.writeSync(fd, buffer, offset, length);
      },
    },
  };
  return disk;
}

const client = new RelayClient({ relayUrl: 'http://127.0.0.1:9', keypair: Keypair.generate() });

describe('a MessageSource written outside the runtime', () => {
  it('a batch is handed off (200) only once it is journaled; replies and acks go through the source', async (t) => {
    const dir = await tempDir(t);
    const clock = new ManualClock(Date.now());
    const disk = flakyDisk();
    const journal = Journal.open(dir, { clock, fs: disk.fs, retryBackoff: { random: () => 0 } });
    const source = new ArraySource();
    const runtime = new Runtime({ handler: (m) => ({ echo: m.body }), source, client, journal });
    t.after(() => runtime.stop());
    runtime.start();
    assert.equal(source.status, 'ready');

    const both = new Promise<void>((resolve) => runtime.on('handled', () => runtime.stats.handled === 2 && resolve()));
    disk.full = true;
    let answer: number | undefined;
    const offered = source
      .offer({ messages: [msg('m1'), msg('m2', { n: 2 })], taken: false })
      .then((a) => (answer = a));
    await journal.next('unwritable');
    await new Promise((r) => setImmediate(r));
    assert.equal(answer, undefined, 'nothing is on disk, so the source cannot say 200 yet');
    assert.doesNotMatch(readFileSync(journal.path, 'utf8'), /"m1"/);

    disk.full = false;
    clock.advance(250); // the journal's retry writes the records
    assert.equal(await offered, 200);
    const onDisk = readFileSync(journal.path, 'utf8');
    assert.match(onDisk, /"k":"recv","id":"m1"/);
    assert.match(onDisk, /"k":"recv","id":"m2"/);

    await both;
    assert.deepEqual(source.acks.sort(), ['m1', 'm2']);
    const replies = source.sent.map((r) => [r.in_reply_to, r.body_json]).sort();
    assert.deepEqual(replies, [
      ['m1', '{"echo":{"id":"m1"}}'],
      ['m2', '{"echo":{"n":2}}'],
    ]);

    // Offered again after it is done (a webhook retry): acked again, 200, not handled twice.
    const dup = runtime.next('duplicate');
    assert.equal(await source.offer({ messages: [msg('m1')], taken: false }), 200);
    assert.equal((await dup)[0].reason, 'done');
    assert.deepEqual(source.acks.filter((id) => id === 'm1').length, 2);
    assert.equal(source.sent.length, 2, 'no second reply');
  });

  it('a full runtime declines what the relay will offer again (503), never what it already took', async (t) => {
    const dir = await tempDir(t);
    const source = new ArraySource();
    const busy = gate();
    const runtime = new Runtime({
      handler: async () => {
        await busy.wait;
        return 'ok';
      },
      source,
      client,
      journal: Journal.open(dir),
      concurrency: 1,
      maxQueued: 1,
    });
    t.after(() => runtime.stop());
    runtime.start();
    // a1 is queued (then runs); the queue holds one, so a2 and a3 stay on the relay.
    const receipt = await source.consumer!.deliver({ messages: [msg('a1'), msg('a2'), msg('a3')], taken: false });
    assert.deepEqual(receipt, { declined: 2 }, 'one fits; two stay on the relay');
    assert.equal(
      await source.offer({ messages: [msg('a4')], taken: false }),
      200,
      'a1 runs: room for one in the queue',
    );
    assert.equal(await source.offer({ messages: [msg('a5')], taken: false }), 503, 'the queue is full');
    assert.deepEqual(
      await source.consumer!.deliver({ messages: [msg('t1'), msg('t2')], taken: true }),
      { declined: 0 },
      'taken: kept even when full',
    );
    const all = new Promise<void>((resolve) => runtime.on('handled', () => runtime.stats.handled === 4 && resolve()));
    busy.open();
    await all;
    assert.deepEqual(source.acks.sort(), ['a1', 'a4', 't1', 't2']);
  });

  it('draining: the source is told to stop intake, batches offered meanwhile are declined unless taken, then it is closed', async (t) => {
    const dir = await tempDir(t);
    const source = new ArraySource();
    const busy = gate();
    const started = gate();
    const runtime = new Runtime({
      handler: async () => {
        started.open();
        await busy.wait;
        return 'ok';
      },
      source,
      client,
      journal: Journal.open(dir),
    });
    runtime.start();
    assert.equal(await source.offer({ messages: [msg('d1')], taken: false }), 200);
    await started.wait;
    const draining = runtime.next('draining');
    const stopped = runtime.stop();
    await draining;
    assert.equal(source.status, 'draining');
    assert.equal(
      await source.offer({ messages: [msg('d2')], taken: false }),
      503,
      'a webhook source answers 503 while draining',
    );
    const consumer = source.consumer!;
    assert.deepEqual(
      await consumer.deliver({ messages: [msg('d3')], taken: false }),
      { declined: 1 },
      'left on the relay',
    );
    assert.deepEqual(
      await consumer.deliver({ messages: [msg('d4')], taken: true }),
      { declined: 0 },
      'journaled for the next start',
    );
    busy.open();
    await stopped;
    assert.deepEqual(source.lifecycle, ['start', 'stopIntake', 'close']);
    assert.equal(source.status, 'stopped');
    assert.deepEqual(source.acks, ['d1'], 'the running handler finished and its message was acked');

    const again = Journal.open(dir);
    t.after(() => again.close());
    assert.deepEqual(
      again.takeRecovered().map((e) => [e.id, e.state]),
      [['d4', 'received']],
      'only the taken message waits for the next start',
    );
  });
});

describe('a MessageSource written outside the project, against the package entry point', () => {
  it('can be built on the TypedEmitter `mrp` exports, or on any emitter with on/off/once (node:events here)', async (t) => {
    assert.equal(typeof mrp.TypedEmitter, 'function', '`mrp` exports TypedEmitter for source authors');

    /** Events through node's EventEmitter: the contract asks only on/off/once (a type error before). */
    class NodeEventsSource implements mrp.MessageSource {
      readonly #events = new EventEmitter();
      status: mrp.SourceStatus = 'idle';
      consumer: mrp.SourceConsumer | undefined;
      readonly acks: string[] = [];
      on<K extends keyof mrp.SourceEvents>(event: K, listener: (...args: mrp.SourceEvents[K]) => void): this {
        this.#events.on(event as string, listener as (...args: unknown[]) => void);
        return this;
      }
      off<K extends keyof mrp.SourceEvents>(event: K, listener: (...args: mrp.SourceEvents[K]) => void): this {
        this.#events.off(event as string, listener as (...args: unknown[]) => void);
        return this;
      }
      once<K extends keyof mrp.SourceEvents>(event: K, listener: (...args: mrp.SourceEvents[K]) => void): this {
        this.#events.once(event as string, listener as (...args: unknown[]) => void);
        return this;
      }
      start(consumer: mrp.SourceConsumer): void {
        this.consumer = consumer;
        this.status = 'ready';
        this.#events.emit('status', 'ready');
      }
      async stopIntake(): Promise<void> {
        this.status = 'draining';
      }
      async close(): Promise<void> {
        this.status = 'stopped';
      }
      ack(messageId: string): void {
        this.acks.push(messageId);
      }
      async send(): Promise<SendResponse> {
        return { message_id: 'msg_1_000000000001', status: 'sent', created_at: '', expires_at: '' };
      }
      wake(): void {}
    }
    /** The same source on the exported TypedEmitter. */
    class EmitterSource extends mrp.TypedEmitter<mrp.SourceEvents> implements mrp.MessageSource {
      readonly inner = new NodeEventsSource();
      get status(): mrp.SourceStatus {
        return this.inner.status;
      }
      start(consumer: mrp.SourceConsumer): void {
        this.inner.start(consumer);
        this.emit('status', 'ready');
      }
      stopIntake = () => this.inner.stopIntake();
      close = () => this.inner.close();
      ack = (id: string) => this.inner.ack(id);
      send = () => this.inner.send();
      wake(): void {}
    }

    for (const source of [new NodeEventsSource(), new EmitterSource()]) {
      const dir = await tempDir(t);
      const journal = mrp.Journal.open(dir);
      const runtime = new mrp.Runtime({ handler: (m) => ({ echo: m.body }), source, client, journal });
      const handled = runtime.next('handled');
      runtime.start();
      const consumer = source instanceof NodeEventsSource ? source.consumer : source.inner.consumer;
      assert.deepEqual(await consumer!.deliver({ messages: [msg('x1')], taken: true }), { declined: 0 });
      await handled;
      await runtime.stop();
      const acks = source instanceof NodeEventsSource ? source.acks : source.inner.acks;
      assert.deepEqual(acks, ['x1']);
    }
  });
});
