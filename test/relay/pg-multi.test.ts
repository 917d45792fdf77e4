/**
 * External mode: relay processes sharing one PostgreSQL database behave as one relay
 * (docs/protocol.md §10, docs/architecture.md §5). Two relays in this process, each with its own
 * pool, bus connection, registry lease and caches (everything a second process would have), on
 * one fresh database per test; one test spawns `mrp relay --database-url` as a child process and
 * SIGKILLs it while traffic flows. One throwaway cluster for the file; skipped without PostgreSQL.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import type { Keypair } from '../../src/protocol/signing.js';
import { FsBlobStore } from '../../src/relay/blobs/fs-blob-store.js';
import { type External, openExternal } from '../../src/relay/external.js';
import { createRelay, type RelayOptions } from '../../src/relay/index.js';
import type { LogEntry } from '../../src/relay/log.js';
import { type PostgresCluster, postgresAvailable, startPostgres } from '../helpers/postgres.js';
import { connect, newAgent, type RawResponse, signed } from '../helpers/relay.js';
import { expectError, expectOk, freshAuthFrame, openSocket, spawnRelay } from './_support.js';

const skip = postgresAvailable();
const UNLIMITED = { sendRatePerMinute: 0, receiveRatePerMinute: 0, requestRatePerMinute: 0 };
let cluster: PostgresCluster;

interface Node {
  url: string;
  wsUrl: string;
  ext: External;
  logs: LogEntry[];
}

/** A relay on `databaseUrl` with its own shared-state connections; closed when the test ends. */
async function startNode(
  t: TestContext,
  databaseUrl: string,
  options: Partial<RelayOptions> = {},
  leaseMs?: number,
): Promise<Node> {
  const ext = await openExternal({ databaseUrl, maxConnections: 4, ...(leaseMs ? { leaseMs } : {}) });
  const logs: LogEntry[] = [];
  const relay = createRelay({ port: 0, logger: (e) => logs.push(e), ...options, ...ext.relayOptions });
  const url = await relay.listen();
  t.after(async () => {
    await relay.close();
    await ext.close();
  });
  return { url, wsUrl: `${url.replace(/^http/, 'ws')}/v1/ws`, ext, logs };
}

async function pair(t: TestContext, options: Partial<RelayOptions> = {}): Promise<[Node, Node, string]> {
  const db = await cluster.database(t);
  const [a, b] = await Promise.all([startNode(t, db, options), startNode(t, db, options)]);
  return [a, b, db];
}

/**
 * Signed requests to any of the processes, never repeating a signature by accident (one set for
 * all of them: the same signature sent to two processes IS a replay now).
 */
class Api {
  static readonly #used = new Set<string>();
  constructor(readonly url: string) {}
  req(kp: Keypair, method: string, target: string, body?: unknown): Promise<RawResponse> {
    const text = body === undefined ? '' : JSON.stringify(body);
    let sec = Math.floor(Date.now() / 1000);
    while (Api.#used.has(`${kp.publicKey} ${method} ${target} ${sec} ${text}`)) sec--;
    Api.#used.add(`${kp.publicKey} ${method} ${target} ${sec} ${text}`);
    return signed(this.url, kp, method, target, body, { at: sec * 1000 });
  }
  get(kp: Keypair, target: string) {
    return this.req(kp, 'GET', target);
  }
  post(kp: Keypair, target: string, body: unknown) {
    return this.req(kp, 'POST', target, body);
  }
  patch(kp: Keypair, target: string, body: unknown) {
    return this.req(kp, 'PATCH', target, body);
  }
  put(kp: Keypair, target: string, body: unknown) {
    return this.req(kp, 'PUT', target, body);
  }
  async send(kp: Keypair, to: string, body: unknown): Promise<any> {
    return expectOk(await this.post(kp, '/v1/messages', { recipient_key: to, body }), 201);
  }
}

/**
 * One sender per entry of `nodes`, each sending through its node in a loop to one recipient until
 * `stop()`, which then checks that every answer was 201 or a 5xx (a request may fail while the
 * database is away; the relay must answer it, and live). `createdReaches(n)` waits for the n-th 201.
 */
function sendsThrough(nodes: Node[]) {
  const rcpt = newAgent();
  const statuses = new Map<number, number>();
  let created = 0;
  let stopping = false;
  let wake: (() => void) | undefined;
  const senders = nodes.map(async (node, i) => {
    const kp = newAgent();
    const api = new Api(node.url);
    for (let n = 0; !stopping; n++) {
      const res = await api.post(kp, '/v1/messages', { recipient_key: rcpt.publicKey, body: { i, n } });
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      if (res.status === 201) created++;
      wake?.();
    }
  });
  return {
    created: () => created,
    createdReaches: (n: number) =>
      new Promise<void>((resolve) => {
        wake = () => created >= n && resolve();
        wake();
      }),
    async stop() {
      stopping = true;
      await Promise.all(senders);
      for (const status of statuses.keys()) assert.ok(status === 201 || status >= 500, `status ${status}`);
    },
  };
}

/** A message sent through each process is pushed live to a socket on the other (the bus works). */
async function pushesBothWays(t: TestContext, one: Node, two: Node): Promise<void> {
  for (const [from, to] of [
    [one, two],
    [two, one],
  ] as const) {
    const kp = newAgent();
    const sock = await connect(t, to.wsUrl, kp);
    const sent = await new Api(from.url).send(newAgent(), kp.publicKey, { after: 'outage' });
    assert.equal((await sock.next(15_000)).message.message_id, sent.message_id);
  }
}

/** Waits (polling the condition, bounded) for something another process does asynchronously. */
async function until(what: string, cond: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

if (skip) {
  describe('external mode (PostgreSQL)', { skip }, () => {
    it('needs PostgreSQL', () => {});
  });
} else {
  before(async () => {
    cluster = await startPostgres();
  });
  after(() => cluster?.stop());

  describe('external mode: two relay processes on one PostgreSQL database', () => {
    it('a message sent through one process is pushed live to a socket held by the other', async (t) => {
      const [one, two] = await pair(t);
      const sender = newAgent();
      const rcpt = newAgent();
      const sock = await connect(t, two.wsUrl, rcpt);
      const sent = expectOk(
        await new Api(one.url).post(sender, '/v1/messages', { recipient_key: rcpt.publicKey, body: { n: 1e21 } }),
        201,
      );
      const frame = await sock.next();
      assert.equal(frame.type, 'message');
      assert.equal(frame.message.message_id, sent.message_id);
      // And back: the other direction, through the other process.
      const back = await connect(t, one.wsUrl, sender);
      const reply = await new Api(two.url).send(rcpt, sender.publicKey, { re: sent.message_id });
      assert.equal((await back.next()).message.message_id, reply.message_id);
    });

    it('the 2-connections-per-agent cap holds across processes: the third gets 4002 wherever it lands; a closed one frees its slot', async (t) => {
      const [one, two] = await pair(t);
      const kp = newAgent();
      const c1 = await connect(t, one.wsUrl, kp);
      await connect(t, two.wsUrl, kp);
      for (const node of [one, two]) {
        const c3 = await openSocket(t, node.wsUrl);
        c3.send(freshAuthFrame(kp));
        const res = await c3.next();
        assert.equal(res.error?.code, 'too_many_connections');
        assert.equal((await c3.closed).code, 4002);
      }
      c1.close();
      await c1.closed;
      await until('the slot to be released', async () => (await one.ext.registry.count(kp.publicKey)) === 1);
      await connect(t, two.wsUrl, kp);
    });

    it("a SIGKILLed process's slots free up after its lease", async (t) => {
      const db = await cluster.database(t);
      const one = await startNode(t, db, {}, 400);
      const kp = newAgent();
      // A "process" that takes both slots and then dies without a word: its lease is never renewed.
      const dead = await openExternal({ databaseUrl: db, maxConnections: 2, leaseMs: 400 });
      assert.ok(await dead.registry.tryAcquire(kp.publicKey, 'x1', 2));
      assert.ok(await dead.registry.tryAcquire(kp.publicKey, 'x2', 2));
      await dead.bus.close();
      await dead.store.sql.unsafe(
        "UPDATE relay_processes SET lease_until = clock_timestamp() + interval '1 hour' WHERE process_id <> $1",
        [dead.registry.processId],
      );
      // Simulate the kill: stop the heartbeat without releasing anything.
      (dead.registry as unknown as { close(): Promise<void> }).close = async () => {};
      const c = await openSocket(t, one.wsUrl);
      c.send(freshAuthFrame(kp));
      assert.equal((await c.next()).error?.code, 'too_many_connections');
      await dead.store.close();
      await until('the dead lease to run out', async () => {
        try {
          const s = await connect(t, one.wsUrl, kp);
          s.close();
          return true;
        } catch {
          return false;
        }
      });
    });

    it('a request replayed to the other process gets 409 replay_detected', async (t) => {
      const [one, two] = await pair(t);
      const kp = newAgent();
      const at = Date.now();
      expectOk(await signed(one.url, kp, 'GET', '/v1/messages?limit=7', undefined, { at }));
      expectError(await signed(two.url, kp, 'GET', '/v1/messages?limit=7', undefined, { at }), 409, 'replay_detected');
      const body = { recipient_key: newAgent().publicKey, body: { x: 1 } };
      expectOk(await signed(two.url, kp, 'POST', '/v1/messages', body, { at: at + 1 }), 201);
      expectError(await signed(one.url, kp, 'POST', '/v1/messages', body, { at: at + 1 }), 409, 'replay_detected');
    });

    it('rate limits hold across processes', async (t) => {
      const [one, two] = await pair(t, { sendRatePerMinute: 3 });
      const kp = newAgent();
      const to = newAgent().publicKey;
      const apis = [new Api(one.url), new Api(two.url)];
      for (let i = 0; i < 3; i++)
        expectOk(await apis[i % 2]!.post(kp, '/v1/messages', { recipient_key: to, body: { i } }), 201);
      for (const api of apis) {
        const res = await api.post(kp, '/v1/messages', { recipient_key: to, body: { over: true } });
        expectError(res, 429, 'rate_limit_exceeded');
        assert.equal(res.headers.get('x-ratelimit-remaining'), '0');
      }
    });

    it('a poll page is claimed by exactly one process under concurrency', async (t) => {
      const [one, two] = await pair(t, UNLIMITED);
      const sender = newAgent();
      const rcpt = newAgent();
      const apis = [new Api(one.url), new Api(two.url)];
      const sent = new Set<string>();
      for (let i = 0; i < 40; i++) sent.add((await apis[i % 2]!.send(sender, rcpt.publicKey, { i })).message_id);
      const got: string[] = [];
      for (let round = 0; round < 10 && got.length < sent.size; round++) {
        const pages = await Promise.all(
          Array.from({ length: 8 }, (_, i) => apis[i % 2]!.get(rcpt, `/v1/messages?limit=3`)),
        );
        for (const p of pages) for (const m of expectOk(p).messages) got.push(m.message_id);
      }
      assert.equal(got.length, new Set(got).size, 'no message handed out twice');
      assert.deepEqual(new Set(got), sent);
    });

    it("caches are invalidated across processes: a policy changed through one is enforced by the other's cache", async (t) => {
      const [one, two] = await pair(t);
      const sender = newAgent();
      const rcpt = newAgent();
      const a2 = new Api(two.url);
      await a2.send(sender, rcpt.publicKey, { warm: 'cache' }); // two caches rcpt's profile (open)
      expectOk(await new Api(one.url).patch(rcpt, '/v1/agents/me', { inbox_policy: 'closed' }));
      await until(
        'the other process to refuse',
        async () => (await a2.post(sender, '/v1/messages', { recipient_key: rcpt.publicKey, body: {} })).status === 403,
      );
      expectOk(await new Api(one.url).patch(rcpt, '/v1/agents/me', { inbox_policy: 'open' }));
      await until(
        'the other process to accept',
        async () => (await a2.post(sender, '/v1/messages', { recipient_key: rcpt.publicKey, body: {} })).status === 201,
      );
    });

    it('the bus reconnects after losing its connection and catches up (a message published meanwhile still arrives)', async (t) => {
      const [one, two] = await pair(t);
      const sender = newAgent();
      const rcpt = newAgent();
      const sock = await connect(t, two.wsUrl, rcpt);
      const reconnected = new Promise<void>((resolve) => two.ext.bus.subscribe('bus.resync', () => resolve()));
      // Kill every bus connection of the cluster (both processes listen with application_name mrp-bus).
      await cluster.psql(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'mrp-bus'`);
      const sent = await new Api(one.url).send(sender, rcpt.publicKey, { during: 'outage' });
      await reconnected;
      const frame = await sock.next(10_000);
      assert.equal(frame.message.message_id, sent.message_id);
      const later = await new Api(one.url).send(sender, rcpt.publicKey, { after: 'outage' });
      // The resync may re-push the first one (at-least-once); the later one arrives either way.
      let f = await sock.next(10_000);
      while (f.message?.message_id === sent.message_id) f = await sock.next(10_000);
      assert.equal(f.message.message_id, later.message_id);
    });

    it('a webhook delivery is claimed by exactly one of two relays, both running a worker', async (t) => {
      // The receiver holds its first answers until 4 requests are in flight at once: each process
      // sends at most 2 per agent at a time (webhookConcurrencyPerAgent), so both must be delivering.
      const held: ServerResponse[] = [];
      const hits = new Map<string, number>();
      let released = false;
      const server = createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          const id = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { message: { message_id: string } }).message
            .message_id;
          hits.set(id, (hits.get(id) ?? 0) + 1);
          if (released) return void res.writeHead(200).end();
          held.push(res);
          if (held.length >= 4) {
            released = true;
            for (const r of held) r.writeHead(200).end();
          }
        });
      });
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      t.after(() => {
        server.closeAllConnections();
        server.close();
      });
      const hookUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/in`;
      const [one, two] = await pair(t, {
        ...UNLIMITED,
        allowPrivateWebhooks: true,
        webhookConcurrencyPerAgent: 2,
        logLevel: 'debug',
      });
      const sender = newAgent();
      const rcpt = newAgent();
      const apis = [new Api(one.url), new Api(two.url)];
      expectOk(
        await apis[0]!.put(rcpt, `/v1/agents/${rcpt.publicKey}/webhook`, {
          url: hookUrl,
          secret: 'QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8',
        }),
      );
      const sent: string[] = [];
      for (let i = 0; i < 20; i++) sent.push((await apis[i % 2]!.send(sender, rcpt.publicKey, { i })).message_id);
      await until(
        'every message delivered by webhook',
        async () => {
          if ((await one.ext.store.nextDeliveryAt()) !== undefined) return false;
          const stored = await one.ext.store.getMessages(sent);
          return stored.length === sent.length && stored.every((m) => m.status === 'delivered');
        },
        20_000,
      );
      // No delivery is pending or leased any more, so no further request can start: the count is final.
      assert.deepEqual([...hits.keys()].sort(), [...sent].sort());
      for (const [id, n] of hits) assert.equal(n, 1, `${id} was delivered ${n} times`);
      const delivered = (node: Node) => node.logs.filter((e) => e.msg === 'webhook_delivered').length;
      assert.ok(
        delivered(one) > 0 && delivered(two) > 0,
        `both processes delivered (${delivered(one)} + ${delivered(two)})`,
      );
      assert.equal(delivered(one) + delivered(two), sent.length);
    });

    it('a blob uploaded through one relay is downloadable through the other (FsBlobStore on one shared directory)', async (t) => {
      const dir = await mkdtemp(join(tmpdir(), 'mrp-pg-blobs-'));
      t.after(() => rm(dir, { recursive: true, force: true }));
      const db = await cluster.database(t);
      const stores = await Promise.all([1, 2].map(() => FsBlobStore.open({ dataDir: dir })));
      t.after(async () => {
        for (const b of stores) await b.close();
      });
      const one = await startNode(t, db, { ...UNLIMITED, blobStore: stores[0]! });
      const two = await startNode(t, db, { ...UNLIMITED, blobStore: stores[1]! });
      const [a, b] = [newAgent(), newAgent()];
      const bytes = `shared bytes ${Date.now()}`;
      const blob = expectOk(
        await signed(one.url, a, 'POST', '/v1/blobs', bytes, { headers: { 'Content-Type': 'text/plain' } }),
        201,
      );
      assert.equal(blob.hash, createHash('sha256').update(bytes).digest('hex'));
      const [api1, api2] = [new Api(one.url), new Api(two.url)];
      const got = await api2.get(a, `/v1/blobs/${blob.blob_id}`);
      assert.equal(got.status, 200);
      assert.equal(got.text, bytes);
      // Attached to a message sent through the second relay, readable by the recipient through the first.
      expectError(await api1.get(b, `/v1/blobs/${blob.blob_id}`), 404, 'blob_not_found');
      const sent = expectOk(
        await api2.post(a, '/v1/messages', {
          recipient_key: b.publicKey,
          body: { see: 'attached' },
          attachments: [{ blob_id: blob.blob_id }],
        }),
        201,
      );
      assert.equal((await one.ext.store.getMessage(sent.message_id))?.attachments[0]?.blob_id, blob.blob_id);
      const forB = await api1.get(b, `/v1/blobs/${blob.blob_id}`);
      assert.equal(forB.status, 200);
      assert.equal(forB.text, bytes);
      // Referenced: the owner cannot delete it through either relay.
      expectError(await api1.req(a, 'DELETE', `/v1/blobs/${blob.blob_id}`), 409, 'blob_referenced');
    });

    it('the database killing every connection of both processes, three times mid-traffic, costs requests, never a process', async (t) => {
      // A database restart or failover as the relays see it. The driver used to throw from a timer
      // when a transaction's connection died under it (vendor/postgres/README.md), which killed the process.
      const [one, two, db] = await pair(t, UNLIMITED);
      const name = new URL(db).pathname.slice(1);
      const traffic = sendsThrough([one, two, one, two]);
      for (let k = 1; k <= 3; k++) {
        await traffic.createdReaches(k * 30);
        const killed = await cluster.psql(
          `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '${name}' AND pid <> pg_backend_pid()`,
        );
        assert.ok(Number(killed) > 0);
      }
      await traffic.createdReaches(120); // both processes serve again after the last kill
      await traffic.stop();
      await pushesBothWays(t, one, two);
    });

    it('the database server crashing and restarting under traffic costs requests, never a process; both serve after', {
      timeout: 60_000,
    }, async (t) => {
      const [one, two] = await pair(t, UNLIMITED);
      const traffic = sendsThrough([one, two]);
      await traffic.createdReaches(20);
      await cluster.restart(); // every connection refused for a while, then a fresh server
      await traffic.createdReaches(traffic.created() + 40);
      await traffic.stop();
      await pushesBothWays(t, one, two);
    });

    it('one process SIGKILLed while traffic flows loses nothing acknowledged', async (t) => {
      const db = await cluster.database(t);
      const survivor = await startNode(t, db, UNLIMITED);
      const child = await spawnRelay(t, [
        '--port',
        '0',
        '--json',
        '--database-url',
        db,
        '--db-pool',
        '4',
        '--log-level',
        'error',
        '--send-rate',
        '0',
        '--receive-rate',
        '0',
        '--request-rate',
        '0',
      ]);
      const started = JSON.parse(child.stdout().split('\n')[0]!) as { mode: string; database: string };
      assert.equal(started.mode, 'external');
      assert.equal(started.database, db);
      const sender = newAgent();
      const rcpt = newAgent();
      const api = new Api(child.url);
      const acked = new Set<string>();
      let stop = false;
      const senders = Array.from({ length: 4 }, async () => {
        while (!stop) {
          try {
            const res = await api.post(sender, '/v1/messages', {
              recipient_key: rcpt.publicKey,
              body: { t: Date.now() },
            });
            if (res.status === 201) acked.add(res.body.message_id);
          } catch {
            return; // the process is gone: the connection failed
          }
        }
      });
      await until('some traffic', async () => acked.size >= 100);
      child.child.kill('SIGKILL');
      stop = true;
      await Promise.all(senders);
      await child.exited;
      const got = new Set<string>();
      const rApi = new Api(survivor.url);
      for (;;) {
        const page = expectOk(await rApi.get(rcpt, '/v1/messages?limit=100'));
        for (const m of page.messages) got.add(m.message_id);
        if (page.messages.length === 0) break;
      }
      for (const id of acked) assert.ok(got.has(id), `acknowledged ${id} was lost`);
    });
  });
}
