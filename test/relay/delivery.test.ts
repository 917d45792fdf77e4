/**
 * `Delivery` (src/relay/delivery.ts) on a fake store and socket: what a connection is pushed when
 * events and backlog reads overlap, arrive late, overflow the queue, or name messages that are no
 * longer `sent`. The relay-level cases (two writers committing out of order) are in
 * shared-store.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Delivery, type DeliverySource, MAX_QUEUED, type PushSink } from '../../src/relay/delivery.js';
import type { MessageRecord } from '../../src/relay/store/store.js';

const AGENT = 'agent';

function record(seq: number, over: Partial<MessageRecord> = {}): MessageRecord {
  return {
    seq,
    message_id: `m${seq}`,
    sender_key: 's',
    recipient_key: AGENT,
    content_type: 'application/json',
    body_json: '1',
    attachments: [],
    thread_id: null,
    in_reply_to: null,
    metadata: {},
    status: 'sent',
    created_at: 0,
    expires_at: Number.MAX_SAFE_INTEGER,
    delivered_at: null,
    ...over,
  };
}

/** A store of committed records (by seq), with reads that can be held, and a socket that records frames. */
class Fake implements DeliverySource, PushSink {
  readonly rows = new Map<number, MessageRecord>();
  readonly frames: string[] = [];
  closed = false;
  buffered = 0;
  holdReads = false;
  readonly #held: Array<() => void> = [];
  reads = 0;

  commit(...records: MessageRecord[]): void {
    for (const r of records) this.rows.set(r.seq, r);
  }
  async pending(recipient: string, afterSeq: number, limit: number): Promise<MessageRecord[]> {
    this.reads++;
    const page = [...this.rows.values()]
      .filter((r) => r.recipient_key === recipient && r.status === 'sent' && r.seq > afterSeq)
      .sort((x, y) => x.seq - y.seq)
      .slice(0, limit);
    if (this.holdReads) await new Promise<void>((resolve) => this.#held.push(resolve));
    return page;
  }
  releaseReads(): void {
    this.holdReads = false;
    for (const r of this.#held.splice(0)) r();
  }
  /** Ids this "process" has just committed (lent without a fetch). */
  readonly inHand = new Set<string>();
  fetchNow(id: string): MessageRecord | undefined {
    return this.inHand.has(id) ? [...this.rows.values()].find((r) => r.message_id === id) : undefined;
  }
  async fetch(ids: readonly string[]): Promise<MessageRecord[]> {
    return [...this.rows.values()].filter((r) => ids.includes(r.message_id));
  }
  now(): number {
    return 1;
  }
  frame(r: MessageRecord): string {
    return r.message_id;
  }
  write(frame: string, cb?: (err?: Error) => void): void {
    this.frames.push(frame);
    if (cb) setImmediate(cb);
  }
}

const settle = async (): Promise<void> => {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
};

function start(fake: Fake): Delivery {
  const d = new Delivery(AGENT, fake, fake, (err) => {
    throw err;
  });
  d.start();
  return d;
}

describe('Delivery', () => {
  it('backlog in seq order, then live events in event order; a message read and announced is pushed once', async () => {
    const fake = new Fake();
    fake.commit(record(3), record(1));
    const d = start(fake);
    await settle();
    assert.deepEqual(fake.frames, ['m1', 'm3']);
    assert.equal(d.mode, 'live');
    // A late event for a message the backlog already pushed, then out-of-order live events.
    d.onStored({ message_id: 'm3', seq: 3 });
    fake.commit(record(7), record(5));
    d.onStored({ message_id: 'm7', seq: 7 });
    d.onStored({ message_id: 'm5', seq: 5 });
    await settle();
    assert.deepEqual(fake.frames, ['m1', 'm3', 'm7', 'm5']);
  });

  it('a record in hand is pushed at once (no fetch, no turn) — unless something is queued before it', async () => {
    const fake = new Fake();
    const d = start(fake);
    await settle();
    fake.commit(record(1));
    fake.inHand.add('m1');
    d.onStored({ message_id: 'm1', seq: 1 });
    assert.deepEqual(fake.frames, ['m1'], 'written synchronously');
    fake.commit(record(2), record(3));
    fake.inHand.add('m3');
    d.onStored({ message_id: 'm2', seq: 2 });
    d.onStored({ message_id: 'm3', seq: 3 });
    assert.deepEqual(fake.frames, ['m1'], 'm3 waits behind m2, which must be fetched');
    await settle();
    assert.deepEqual(fake.frames, ['m1', 'm2', 'm3']);
  });

  it('skips what is no longer sent, has expired, or is not for this agent', async () => {
    const fake = new Fake();
    const d = start(fake);
    await settle();
    fake.commit(
      record(1, { status: 'delivered' }),
      record(2, { expires_at: 0 }),
      record(3, { recipient_key: 'other' }),
      record(4),
    );
    for (const seq of [1, 2, 3, 4]) d.onStored({ message_id: `m${seq}`, seq });
    d.onStored({ message_id: 'gone', seq: 9 });
    await settle();
    assert.deepEqual(fake.frames, ['m4']);
  });

  it('events during a held backlog read: newer ones come from the store or by id, none twice, none lost', async () => {
    const fake = new Fake();
    fake.commit(record(2));
    fake.holdReads = true;
    const d = start(fake);
    await settle();
    // While the first read is in flight: a commit behind the page (seq 1) and one ahead of it (seq 3).
    fake.commit(record(1), record(3));
    d.onStored({ message_id: 'm1', seq: 1 });
    d.onStored({ message_id: 'm3', seq: 3 });
    fake.releaseReads();
    await settle();
    assert.deepEqual(fake.frames.slice().sort(), ['m1', 'm2', 'm3']);
    assert.equal(new Set(fake.frames).size, fake.frames.length);
  });

  it('a full queue falls back to re-reading from the smallest seq it dropped: nothing lost', async () => {
    const fake = new Fake();
    fake.holdReads = true;
    const d = start(fake);
    await settle();
    const n = MAX_QUEUED + 50;
    for (let seq = 1; seq <= n; seq++) {
      fake.commit(record(seq));
      d.onStored({ message_id: `m${seq}`, seq });
    }
    fake.releaseReads();
    await settle();
    for (let i = 0; i < 200 && new Set(fake.frames).size < n; i++) await settle();
    assert.equal(new Set(fake.frames).size, n, `${new Set(fake.frames).size} of ${n} pushed`);
  });

  it('a socket over the high-water mark goes back to the store and resumes once drained', async () => {
    const fake = new Fake();
    const d = start(fake);
    await settle();
    fake.buffered = 2 * 1024 * 1024;
    fake.commit(record(1), record(2), record(3));
    for (const seq of [1, 2, 3]) d.onStored({ message_id: `m${seq}`, seq });
    await settle();
    fake.buffered = 0;
    await settle();
    assert.deepEqual(fake.frames, ['m1', 'm2', 'm3']);
    assert.equal(d.mode, 'live');
  });
});
