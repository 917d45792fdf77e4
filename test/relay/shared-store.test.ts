/**
 * Two relays sharing one store and one bus — what several processes on one database look like —
 * and the reason the WebSocket push no longer trusts store order: with two writers a message
 * with a smaller `seq` can commit after one with a larger `seq`.
 *
 * `HeldStore` wraps the SQLite store and holds chosen commits: the rows are written (their `seq`
 * assigned) but stay invisible to every read, and the commit does not resolve, until the test
 * releases it — exactly a transaction that took its sequence number early and committed late.
 * Reads can be held too, so an event can arrive while a backlog read is in flight.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { systemClock } from '../../src/core/clock.js';
import { InProcessBus } from '../../src/relay/bus.js';
import { MemoryConnectionRegistry } from '../../src/relay/connections.js';
import { MemoryReplayCache } from '../../src/relay/replay-cache.js';
import { SqliteStore } from '../../src/relay/store/sqlite-store.js';
import type {
  CommitResult,
  InboxFilter,
  MessagePosition,
  MessageRecord,
  ServeVerdict,
  Store,
  WriteBatch,
} from '../../src/relay/store/store.js';
import { newAgent, signed, startRelay } from '../helpers/relay.js';
import { Api, expectError, expectOk, freshAuthFrame, openSocket, wsConnect } from './_support.js';

interface Gate {
  promise: Promise<void>;
  open(): void;
}
function gate(): Gate {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

class HeldStore implements Store {
  readonly inner: SqliteStore;
  /** Ids written but not yet visible (their commit is held). */
  readonly hidden = new Set<string>();
  /** The next commit holding a message that matches is held until `release`. */
  holdCommitOf: ((m: MessageRecord) => boolean) | undefined;
  #commitGate: Gate | undefined;
  /** Set, the next `pending` read takes its snapshot at once and answers when released. */
  holdNextRead: Gate | undefined;
  readonly reads: string[] = [];

  constructor(inner: SqliteStore) {
    this.inner = inner;
  }

  get location(): string {
    return this.inner.location;
  }

  /** Makes the held commit visible and lets it resolve. */
  release(): void {
    this.hidden.clear();
    this.#commitGate?.open();
  }

  async commit(batch: WriteBatch, now: number): Promise<CommitResult> {
    const hold = this.holdCommitOf && batch.messages.some(this.holdCommitOf);
    const result = await this.inner.commit(batch, now);
    if (!hold) return result;
    this.holdCommitOf = undefined;
    for (const m of batch.messages) this.hidden.add(m.message_id);
    this.#commitGate = gate();
    await this.#commitGate.promise;
    return result;
  }

  #visible<T extends { message_id: string }>(records: T[]): T[] {
    return records.filter((r) => !this.hidden.has(r.message_id));
  }

  async pending(
    recipient: string,
    afterSeq: number,
    limit: number,
    now: number,
    maxBytes?: number,
  ): Promise<MessageRecord[]> {
    this.reads.push(`pending>${afterSeq}`);
    const page = this.#visible(await this.inner.pending(recipient, afterSeq, limit, now, maxBytes));
    const held = this.holdNextRead;
    this.holdNextRead = undefined;
    if (held) await held.promise;
    return page;
  }
  async getMessages(ids: readonly string[]): Promise<MessageRecord[]> {
    return this.#visible(await this.inner.getMessages(ids));
  }
  async getMessage(id: string): Promise<MessageRecord | undefined> {
    return this.hidden.has(id) ? undefined : this.inner.getMessage(id);
  }
  takeSent(
    recipient: string,
    filter: InboxFilter,
    limit: number,
    now: number,
    serve: (r: MessageRecord) => ServeVerdict,
  ) {
    return this.inner.takeSent(recipient, filter, limit, now, (r) =>
      this.hidden.has(r.message_id) ? 'skip' : serve(r),
    );
  }
  async listInbox(recipient: string, filter: InboxFilter, limit: number, now: number, maxBytes: number) {
    const page = await this.inner.listInbox(recipient, filter, limit, now, maxBytes);
    return { ...page, messages: this.#visible(page.messages) };
  }
  async thread(caller: string, threadId: string, after: MessagePosition | undefined, limit: number, maxBytes: number) {
    const page = await this.inner.thread(caller, threadId, after, limit, maxBytes);
    return { ...page, messages: this.#visible(page.messages) };
  }
  getAgent = (key: string) => this.inner.getAgent(key);
  ensureAgent = (...a: Parameters<Store['ensureAgent']>) => this.inner.ensureAgent(...a);
  saveAgent = (...a: Parameters<Store['saveAgent']>) => this.inner.saveAgent(...a);
  deleteAgent = (key: string) => this.inner.deleteAgent(key);
  discover = (...a: Parameters<Store['discover']>) => this.inner.discover(...a);
  capabilityTags = (prefix: string | undefined, limit: number) => this.inner.capabilityTags(prefix, limit);
  sweep = (now: number, retention: number) => this.inner.sweep(now, retention);
  insertBlob = (...a: Parameters<Store['insertBlob']>) => this.inner.insertBlob(...a);
  getBlob = (...a: Parameters<Store['getBlob']>) => this.inner.getBlob(...a);
  readableBlob = (...a: Parameters<Store['readableBlob']>) => this.inner.readableBlob(...a);
  blobUsage = (...a: Parameters<Store['blobUsage']>) => this.inner.blobUsage(...a);
  deleteBlob = (...a: Parameters<Store['deleteBlob']>) => this.inner.deleteBlob(...a);
  sweepBlobs = (...a: Parameters<Store['sweepBlobs']>) => this.inner.sweepBlobs(...a);
  putAcl = (...a: Parameters<Store['putAcl']>) => this.inner.putAcl(...a);
  getAcl = (owner: string, peer: string) => this.inner.getAcl(owner, peer);
  listAcl = (...a: Parameters<Store['listAcl']>) => this.inner.listAcl(...a);
  deleteAcl = (owner: string, peer: string) => this.inner.deleteAcl(owner, peer);
  putWebhook = (...a: Parameters<Store['putWebhook']>) => this.inner.putWebhook(...a);
  getWebhook = (agent: string) => this.inner.getWebhook(agent);
  deleteWebhook = (agent: string) => this.inner.deleteWebhook(agent);
  claimDeliveries = (...a: Parameters<Store['claimDeliveries']>) => this.inner.claimDeliveries(...a);
  nextDeliveryAt = () => this.inner.nextDeliveryAt();
  completeDelivery = (...a: Parameters<Store['completeDelivery']>) => this.inner.completeDelivery(...a);
  failDelivery = (...a: Parameters<Store['failDelivery']>) => this.inner.failDelivery(...a);
  ping = () => this.inner.ping();
  health = (now: number) => this.inner.health(now);
  close = () => this.inner.close();
}

/** Two relays on one store and one bus (and whatever else is passed, shared). */
async function twoRelays(t: TestContext, shared: Record<string, unknown> = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'mrp-shared-'));
  const store = new HeldStore(new SqliteStore(dir));
  const bus = new InProcessBus();
  t.after(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  const options = { store, bus, sendRatePerMinute: 0, receiveRatePerMinute: 0, requestRatePerMinute: 0, ...shared };
  const a = await startRelay(t, options);
  const b = await startRelay(t, options);
  return { store, bus, a, b };
}

const bodyOf = (f: { message: { body: unknown } }) => f.message.body;

describe('two relays on one store: commits out of store order', () => {
  it('a live socket gets both messages when the smaller seq commits last', async (t) => {
    const { store, a, b } = await twoRelays(t);
    const sender = newAgent();
    const recipient = newAgent();
    const sock = await wsConnect(t, b.wsUrl, recipient);
    store.holdCommitOf = (m) => JSON.parse(m.body_json).slow === true;
    // M1 through relay A: written first (smaller seq), its commit held.
    const slow = new Api(a.url).post(sender, '/v1/messages', {
      recipient_key: recipient.publicKey,
      body: { slow: true },
    });
    await until(() => store.hidden.size === 1);
    // M2 through relay B: larger seq, committed and pushed at once.
    const fast = expectOk(
      await new Api(b.url).post(sender, '/v1/messages', { recipient_key: recipient.publicKey, body: { fast: true } }),
      201,
    );
    const first = await sock.next();
    assert.deepEqual(bodyOf(first), { fast: true });
    const [m1] = await store.inner.getMessages([...store.hidden]);
    const m2 = await store.inner.getMessage(fast.message_id);
    assert.ok(m1!.seq < m2!.seq, `the held message has the smaller seq (${m1!.seq} < ${m2!.seq})`);
    // M1's commit completes: relay A publishes it, relay B's socket must get it although its seq is behind.
    store.release();
    expectOk(await slow, 201);
    const second = await sock.next();
    assert.deepEqual(bodyOf(second), { slow: true });
    assert.equal(second.message.message_id, m1!.message_id);
  });

  it('the backlog → live switch loses nothing: an event that arrives while a backlog read is in flight, for a seq behind the page', async (t) => {
    const { store, a, b } = await twoRelays(t);
    const sender = newAgent();
    const recipient = newAgent();
    store.holdCommitOf = (m) => JSON.parse(m.body_json).slow === true;
    const slow = new Api(a.url).post(sender, '/v1/messages', {
      recipient_key: recipient.publicKey,
      body: { slow: true },
    });
    await until(() => store.hidden.size === 1);
    expectOk(
      await new Api(b.url).post(sender, '/v1/messages', { recipient_key: recipient.publicKey, body: { stored: true } }),
      201,
    );
    // The socket's first backlog read sees only the stored message and answers late.
    const read = gate();
    store.holdNextRead = read;
    const sock = await openSocket(t, b.wsUrl);
    sock.send(freshAuthFrame(recipient));
    assert.equal((await sock.next()).type, 'auth_result');
    await until(() => store.reads.length > 0);
    // Meanwhile the held commit completes: its event reaches the connection mid-read.
    store.release();
    expectOk(await slow, 201);
    read.open();
    const got = [bodyOf(await sock.next()), bodyOf(await sock.next())];
    assert.deepEqual(got, [{ stored: true }, { slow: true }]);
  });

  it('a message sent through one relay is pushed by the other; polls on either see it once', async (t) => {
    const { a, b } = await twoRelays(t);
    const sender = newAgent();
    const r = newAgent();
    const sock = await wsConnect(t, b.wsUrl, r);
    const sent = expectOk(
      await new Api(a.url).post(sender, '/v1/messages', { recipient_key: r.publicKey, body: { via: 'a' } }),
      201,
    );
    const f = await sock.next();
    assert.equal(f.message.message_id, sent.message_id);
    const polled = expectOk(await new Api(a.url).get(r, '/v1/messages'));
    assert.deepEqual(
      polled.messages.map((m: { message_id: string }) => m.message_id),
      [sent.message_id],
    );
    assert.deepEqual(expectOk(await new Api(b.url).get(r, '/v1/messages')).messages, []);
  });

  it('a long poll on one relay is woken by a message committed through the other', async (t) => {
    const { a, b } = await twoRelays(t);
    const r = newAgent();
    const started = Date.now();
    const poll = new Api(b.url).get(r, '/v1/messages?wait=20');
    // Time for the poll to start waiting (had it not, it would answer at once: the test still holds).
    await new Promise((resolve) => setTimeout(resolve, 100));
    const sent = expectOk(
      await new Api(a.url).post(newAgent(), '/v1/messages', { recipient_key: r.publicKey, body: 1 }),
      201,
    );
    const res = expectOk(await poll);
    assert.deepEqual(
      res.messages.map((m: { message_id: string }) => m.message_id),
      [sent.message_id],
    );
    assert.ok(Date.now() - started < 10_000, 'woken, not timed out');
  });

  it('deleting or suspending an agent through one relay closes its sockets on the other (4003)', async (t) => {
    const { a, b } = await twoRelays(t);
    const gone = newAgent();
    const sock = await wsConnect(t, b.wsUrl, gone);
    expectOk(await new Api(a.url).delete(gone, `/v1/agents/${gone.publicKey}`), 204);
    assert.equal((await sock.closed).code, 4003);
    const suspended = newAgent();
    const sock2 = await wsConnect(t, b.wsUrl, suspended);
    await a.relay.setAgentStatus(suspended.publicKey, 'suspended');
    assert.equal((await sock2.closed).code, 4003);
  });

  it("a profile change through one relay is seen through the other (the other's cache is invalidated by the bus)", async (t) => {
    const { a, b } = await twoRelays(t);
    const x = newAgent();
    const viewer = newAgent();
    const [apiA, apiB] = [new Api(a.url), new Api(b.url)];
    await apiA.profile(x, { display_name: 'before' });
    assert.equal(expectOk(await apiB.get(viewer, `/v1/agents/${x.publicKey}`)).display_name, 'before');
    await apiA.profile(x, { display_name: 'after' });
    assert.equal(expectOk(await apiB.get(viewer, `/v1/agents/${x.publicKey}`)).display_name, 'after');
  });

  it('an ACL block through one relay refuses sends through the other at once', async (t) => {
    const { a, b } = await twoRelays(t);
    const owner = newAgent();
    const pest = newAgent();
    const apiA = new Api(a.url);
    const apiB = new Api(b.url);
    await apiA.profile(owner, { inbox_policy: 'blocklist' });
    expectOk(await apiB.post(pest, '/v1/messages', { recipient_key: owner.publicKey, body: 1 }), 201);
    expectOk(
      await apiA.put(owner, `/v1/agents/${owner.publicKey}/acl`, { peer_key: pest.publicKey, entry_type: 'block' }),
    );
    expectError(await apiB.post(pest, '/v1/messages', { recipient_key: owner.publicKey, body: 2 }), 403, 'acl_denied');
  });

  it('with a shared registry and replay cache: the connection cap and replay detection hold across both', async (t) => {
    const { a, b } = await twoRelays(t, {
      connectionRegistry: new MemoryConnectionRegistry(),
      replayCache: new MemoryReplayCache(systemClock),
    });
    const kp = newAgent();
    await wsConnect(t, a.wsUrl, kp);
    await wsConnect(t, b.wsUrl, kp);
    const third = await openSocket(t, a.wsUrl);
    third.send(freshAuthFrame(kp));
    const refused = await third.next();
    assert.equal(refused.error.code, 'too_many_connections');
    assert.equal((await third.closed).code, 4002);
    const at = Date.now();
    const first = await signed(a.url, kp, 'GET', '/v1/messages', undefined, { at });
    expectOk(first);
    expectError(await signed(b.url, kp, 'GET', '/v1/messages', undefined, { at }), 409, 'replay_detected');
  });
});

/** Resolves once `cond()` holds, checking every turn (no fixed sleeps). */
async function until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setImmediate(r));
  }
}

describe('a bus written elsewhere that fails to publish', () => {
  it('a committed send is still answered 201 and can be polled; the failure is logged, nothing is raised', async (t) => {
    const inner = new InProcessBus();
    let failing = true;
    const bus = {
      publish(events: Parameters<InProcessBus['publish']>[0]): void {
        if (failing) throw new Error('bus connection lost');
        inner.publish(events);
      },
      subscribe: inner.subscribe.bind(inner),
      close: () => inner.close(),
    };
    const relay = await startRelay(t, { bus });
    const sender = newAgent();
    const r = newAgent();
    const api = new Api(relay.url);
    for (const n of [1, 2]) {
      // Before: the first send got 500 although it was stored, the second an unhandled rejection.
      expectOk(await api.post(sender, '/v1/messages', { recipient_key: r.publicKey, body: { n } }), 201);
    }
    const polled = expectOk(await api.get(r, '/v1/messages'));
    assert.deepEqual(
      polled.messages.map((m: { body: unknown }) => m.body),
      [{ n: 1 }, { n: 2 }],
    );
    assert.ok(
      relay.logs.some((e) => e.level === 'error' && JSON.stringify(e).includes('bus connection lost')),
      'the failure is logged',
    );
    failing = false;
    const sock = await wsConnect(t, relay.wsUrl, r);
    const sent = expectOk(await api.post(sender, '/v1/messages', { recipient_key: r.publicKey, body: { n: 3 } }), 201);
    assert.equal((await sock.next()).message.message_id, sent.message_id, 'live pushes resume with the bus');
  });
});
