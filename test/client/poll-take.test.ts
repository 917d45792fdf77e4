/**
 * A poll's take id (docs/protocol.md §3.6, our extension): `RelayClient.poll` sends it and says
 * whether the relay echoed it; `Poller.recoverTake` lists exactly that take on a relay that
 * records take ids, and falls back to the poll's time window on one that ignores the parameter
 * (a real relay on a store that drops `take`, behind a fetch that drops `X-MRP-Take`: what an
 * older relay does).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { RelayClient } from '../../src/client/http.js';
import { Poller } from '../../src/client/poller.js';
import { Keypair } from '../../src/protocol/signing.js';
import type { Message } from '../../src/protocol/types.js';
import { SqliteStore } from '../../src/relay/index.js';
import type { InboxFilter, Store } from '../../src/relay/store/store.js';
import { Peer } from '../helpers/agent.js';
import { startRelay, type TestRelay } from '../helpers/relay.js';

/** A relay that never heard of take ids: its store drops `take` from every filter. */
async function relayIgnoringTake(t: TestContext): Promise<TestRelay> {
  const dataDir = await mkdtemp(join(tmpdir(), 'mrp-notake-'));
  const inner = new SqliteStore(dataDir);
  const strip = ({ take: _take, ...rest }: InboxFilter): InboxFilter => rest;
  const store = new Proxy(inner, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target) as unknown;
      if (prop === 'takeSent' || prop === 'listInbox') {
        return (recipient: string, filter: InboxFilter, ...rest: unknown[]) =>
          (value as (...a: unknown[]) => unknown).call(target, recipient, strip(filter), ...rest);
      }
      return typeof value === 'function' ? value.bind(target) : value;
    },
  }) as Store;
  t.after(async () => {
    await store.close();
    await rm(dataDir, { recursive: true, force: true });
  });
  return startRelay(t, { store, sendRatePerMinute: 0, receiveRatePerMinute: 0 });
}

/** `fetch` without the `X-MRP-Take` answer header. */
const fetchWithoutTakeEcho: typeof fetch = async (input, init) => {
  const res = await fetch(input, init);
  const headers = new Headers(res.headers);
  headers.delete('x-mrp-take');
  return new Response(res.body, { status: res.status, statusText: res.statusText, headers });
};

/** A poller whose consumer collects what recovery hands over. */
function recoverer(client: RelayClient): { poller: Poller; got: Message[] } {
  const got: Message[] = [];
  const poller = new Poller({ client, deliver: async (page) => void got.push(...page.messages) });
  return { poller, got };
}

const ids = (ms: Message[]) => ms.map((m) => m.message_id);

describe('poll take ids', () => {
  it('a take log whose begin returns a promise: the poll goes out only once it resolves; a stop meanwhile polls nothing', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0, receiveRatePerMinute: 0 });
    const keypair = Keypair.generate();
    const peer = await Peer.connect(t, relay);
    const sent = await peer.send(keypair.publicKey, { n: 1 });
    const events: string[] = [];
    /** A client that notes each poll it sends. */
    const noting = (): RelayClient => {
      const client = new RelayClient({ relayUrl: relay.url, keypair });
      const poll = client.poll.bind(client);
      client.poll = (...args: Parameters<RelayClient['poll']>) => {
        events.push('poll');
        return poll(...args);
      };
      return client;
    };
    let begun: () => void = () => undefined;
    const asked = new Promise<void>((resolve) => (begun = resolve));
    let record: () => void = () => undefined;
    const recorded = new Promise<void>((resolve) => (record = resolve));
    const got: Message[] = [];
    const poller = new Poller({
      client: noting(),
      waitSeconds: 0,
      takes: {
        begin: async () => {
          events.push('begin');
          begun();
          await recorded;
          events.push('recorded');
        },
        end: () => void events.push('end'),
      },
      deliver: async (page) => void got.push(...page.messages),
    });
    const caughtUp = poller.catchUp();
    await asked;
    assert.deepEqual(events, ['begin'], 'not polled while the take is being recorded');
    record();
    assert.equal(await caughtUp, true);
    assert.deepEqual(events, ['begin', 'recorded', 'poll', 'end']);
    assert.deepEqual(ids(got), [sent.message_id]);

    // A record that never lands (a database outage): stop() does not wait for it, and nothing is polled.
    events.length = 0;
    let begun2: () => void = () => undefined;
    const asked2 = new Promise<void>((resolve) => (begun2 = resolve));
    const stuck = new Poller({
      client: noting(),
      waitSeconds: 0,
      takes: {
        begin: () => {
          events.push('begin');
          begun2();
          return new Promise<void>(() => undefined);
        },
        end: () => void events.push('end'),
      },
      deliver: async () => assert.fail('nothing is polled'),
    });
    const stopped = stuck.catchUp();
    await asked2;
    await stuck.stop();
    assert.equal(await stopped, false);
    assert.deepEqual(events, ['begin', 'end']);
  });

  it('recovers exactly what the poll took, never what another poll took in the same window', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0, receiveRatePerMinute: 0 });
    const keypair = Keypair.generate();
    const client = new RelayClient({ relayUrl: relay.url, keypair });
    const peer = await Peer.connect(t, relay);
    const mine = await peer.send(keypair.publicKey, { n: 'mine' });
    const at = Date.now();
    const taken = await client.poll({ take: 'lost-poll_1' });
    assert.equal(taken.takeEchoed, true, 'our relay echoes X-MRP-Take');
    assert.deepEqual(ids(taken.messages), [mine.message_id]);
    // `recv`, in the same instant: a plain poll (no take id).
    const theirs = await peer.send(keypair.publicKey, { n: 'theirs' });
    const recv = await client.poll();
    assert.equal(recv.takeEchoed, undefined);
    assert.deepEqual(ids(recv.messages), [theirs.message_id]);

    const { poller, got } = recoverer(new RelayClient({ relayUrl: relay.url, keypair }));
    assert.equal(poller.recordsTakes, undefined);
    assert.equal(await poller.recoverTake({ at, waitSeconds: 20, id: 'lost-poll_1' }), true);
    assert.deepEqual(ids(got), [mine.message_id]);
    assert.equal(poller.recordsTakes, true);
    // An id nothing was taken under lists nothing (not the whole history).
    got.length = 0;
    assert.equal(await poller.recoverTake({ at, waitSeconds: 20, id: 'never-used' }), true);
    assert.deepEqual(got, []);
  });

  it('on a relay that ignores take, falls back to the poll window', { timeout: 30_000 }, async (t) => {
    const relay = await relayIgnoringTake(t);
    const keypair = Keypair.generate();
    const client = new RelayClient({ relayUrl: relay.url, keypair, fetch: fetchWithoutTakeEcho });
    const peer = await Peer.connect(t, relay);
    // Taken well before the lost poll: outside its window (margin 2 s on a known relay clock).
    const old = await peer.send(keypair.publicKey, { n: 'old' });
    assert.deepEqual(ids((await client.poll()).messages), [old.message_id]);
    const tookOld = Date.now();
    while (Date.now() < tookOld + 3000) await delay(100);

    const at = Date.now();
    const mine = await peer.send(keypair.publicKey, { n: 'mine' });
    const taken = await client.poll({ take: 'lost-poll_2' });
    assert.equal(taken.takeEchoed, false, 'no echo: this relay does not record take ids');
    assert.deepEqual(ids(taken.messages), [mine.message_id]);

    // Unknown yet: the take listing is tried, comes back unechoed (so unfiltered), and the
    // window decides — `old` is outside it (the take listing told the relay's clock).
    const { poller, got } = recoverer(new RelayClient({ relayUrl: relay.url, keypair, fetch: fetchWithoutTakeEcho }));
    assert.equal(await poller.recoverTake({ at, waitSeconds: 1, id: 'lost-poll_2' }), true);
    assert.deepEqual(ids(got), [mine.message_id], 'the window, not every delivered message');
    assert.equal(poller.recordsTakes, false);
  });
});
