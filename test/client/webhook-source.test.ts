/**
 * `WebhookSource` (client/webhook-source.ts) over real HTTP on port 0, with the real runtime and
 * journal, and a real in-process relay for the replies. Deliveries are built and signed here
 * the way a relay does (docs/protocol.md §3.8: `webhookSignature` over the exact raw body,
 * `X-M2M-Webhook-Timestamp`, `X-M2M-Delivery-ID`), around messages the relay really stored.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { RelayClient } from '../../src/client/http.js';
import {
  deliveryIsFresh,
  readDelivery,
  registrationOutcome,
  WebhookSource,
  type WebhookSourceOptions,
} from '../../src/client/webhook-source.js';
import { ManualClock } from '../../src/core/clock.js';
import { NetworkError, RelayError } from '../../src/core/errors.js';
import { formatTimestamp, Keypair } from '../../src/protocol/signing.js';
import type { Message } from '../../src/protocol/types.js';
import { newDeliveryId, newWebhookSecret, webhookSignature } from '../../src/protocol/webhook.js';
import { journalTakes } from '../../src/runtime/assemble.js';
import type { Handler } from '../../src/runtime/handler.js';
import { Journal } from '../../src/runtime/journal.js';
import { Runtime, type RuntimeOptions } from '../../src/runtime/runtime.js';
import { gate, Peer } from '../helpers/agent.js';
import { startRelay, type TestRelay } from '../helpers/relay.js';

interface Setup {
  relay: TestRelay;
  peer: Peer;
  keypair: Keypair;
  client: RelayClient;
  source: WebhookSource;
  runtime: Runtime;
  secret: string;
  url: string;
  journalDir: string;
  calls: string[];
}

async function setUp(
  t: TestContext,
  handler: Handler,
  options: {
    source?: Partial<WebhookSourceOptions>;
    runtime?: Partial<RuntimeOptions>;
    /** Runs before the runtime starts (messages stored then wait on the relay). */
    before?: (peer: Peer, keypair: Keypair) => Promise<void>;
    /** The source's options that need the journal (its takes). */
    withJournal?: (journal: Journal) => Partial<WebhookSourceOptions>;
  } = {},
): Promise<Setup> {
  const relay = await startRelay(t);
  const peer = await Peer.connect(t, relay);
  const keypair = Keypair.generate();
  const client = new RelayClient({ relayUrl: relay.url, keypair });
  const journalDir = await mkdtemp(join(tmpdir(), 'mrp-webhook-'));
  t.after(() => rm(journalDir, { recursive: true, force: true }));
  const journal = Journal.open(journalDir, { fsync: false });
  const secret = newWebhookSecret();
  const calls: string[] = [];
  await options.before?.(peer, keypair);
  const source = new WebhookSource({
    client,
    secret,
    port: 0,
    ...options.source,
    ...options.withJournal?.(journal),
  });
  const runtime = new Runtime({
    handler: async (m, ctx) => {
      calls.push(m.message_id);
      return handler(m, ctx);
    },
    source,
    client,
    journal,
    ...options.runtime,
  });
  const url = await source.listen();
  const ready = runtime.next('connected');
  runtime.start();
  await ready;
  t.after(() => runtime.stop());
  return { relay, peer, keypair, client, source, runtime, secret, url, journalDir, calls };
}

/** A message the relay really stored for `to`, as the agent reads it. */
async function stored(s: Setup, body: unknown): Promise<Message> {
  const { message_id } = await s.peer.send(s.keypair.publicKey, body);
  return s.client.getMessage(message_id);
}

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One raw HTTP request (node:http, so headers and bodies are exactly what we say). */
function post(url: string, body: string | Buffer, headers: Record<string, string>, method = 'POST'): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, headers: { 'Content-Type': 'application/json', ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }),
      );
    });
    req.on('error', reject);
    req.end(body);
  });
}

function delivery(
  s: Setup,
  message: Message,
  options: { deliveryId?: string; at?: number; secret?: string; signature?: string | null } = {},
) {
  const deliveryId = options.deliveryId ?? newDeliveryId();
  const text = JSON.stringify({ delivery_id: deliveryId, message });
  const headers: Record<string, string> = {
    'X-M2M-Webhook-Timestamp': formatTimestamp(options.at ?? Date.now()),
    'X-M2M-Delivery-ID': deliveryId,
  };
  if (options.signature !== null)
    headers['X-M2M-Webhook-Signature'] = options.signature ?? webhookSignature(options.secret ?? s.secret, text);
  return { deliveryId, text, headers, send: () => post(`${s.url}/`, text, headers) };
}

async function journalText(dir: string): Promise<string> {
  const files = await readdir(dir);
  const parts = await Promise.all(
    files.filter((f) => f.startsWith('journal')).map((f) => readFile(join(dir, f), 'utf8')),
  );
  return parts.join('');
}

describe('WebhookSource', () => {
  it('answers 200 once the delivery is journaled; the handler runs; the threaded reply goes through the relay', async (t) => {
    const s = await setUp(t, async (m) => ({ echo: m.body }));
    const message = await stored(s, { text: 'hi' });
    const replies = s.peer.waitForReplies(1);
    const d = delivery(s, message);
    const res = await d.send();
    assert.equal(res.status, 200, res.body);
    assert.deepEqual(JSON.parse(res.body), { delivery_id: d.deliveryId, status: 'accepted' });
    // Journaled before the answer: the record is on disk now.
    assert.match(await journalText(s.journalDir), new RegExp(message.message_id));
    const [reply] = await replies;
    assert.equal(reply!.in_reply_to, message.message_id);
    assert.equal(reply!.thread_id, message.thread_id ?? message.message_id);
    assert.deepEqual(reply!.body, { echo: { text: 'hi' } });
    assert.deepEqual(s.calls, [message.message_id]);
    assert.equal(s.source.counts.delivered, 1);
  });

  it('the same delivery twice at once, again later, and the same message under a new delivery id: one handling, every answer 200', async (t) => {
    const release = gate();
    const s = await setUp(t, async () => {
      await release.wait;
      return { ok: true };
    });
    const message = await stored(s, { n: 1 });
    const d = delivery(s, message);
    const [a, b] = await Promise.all([d.send(), d.send()]);
    assert.equal(a.status, 200, a.body);
    assert.equal(b.status, 200, b.body);
    // While the handler still runs: a new delivery id for the same message is "in progress".
    const other = await delivery(s, message).send();
    assert.equal(other.status, 200, other.body);
    release.open();
    const replies = await s.peer.waitForReplies(1);
    // After it is done: the relay's retry of the first delivery, and a fresh one.
    assert.equal((await d.send()).status, 200);
    const again = await delivery(s, message).send();
    assert.equal(again.status, 200);
    assert.deepEqual(s.calls, [message.message_id], 'the handler ran once');
    assert.equal(replies.length, 1);
    const thread = await s.peer.client.thread(message.thread_id ?? message.message_id);
    assert.equal(
      thread.messages.filter((m) => m.in_reply_to === message.message_id).length,
      1,
      'one reply in the relay',
    );
    assert.ok(s.source.counts.duplicates >= 2);
  });

  it('a bad or missing signature, or a stale timestamp: 401 and nothing else happens', async (t) => {
    const s = await setUp(t, async () => ({ ok: true }));
    const message = await stored(s, { n: 1 });
    const cases = [
      delivery(s, message, { secret: newWebhookSecret() }),
      delivery(s, message, { signature: null }),
      delivery(s, message, { signature: 'A'.repeat(64) }),
      delivery(s, message, { at: Date.now() - 6 * 60_000 }),
      delivery(s, message, { at: Date.now() + 6 * 60_000 }),
    ];
    for (const d of cases) {
      const res = await d.send();
      assert.equal(res.status, 401, res.body);
    }
    // A body changed after signing (one byte): 401 too.
    const d = delivery(s, message);
    const forged = await post(`${s.url}/`, d.text.replace('"n":1', '"n":2'), d.headers);
    assert.equal(forged.status, 401);
    assert.equal(s.source.counts.unauthorized, 6);
    assert.deepEqual(s.calls, []);
    assert.doesNotMatch(await journalText(s.journalDir), new RegExp(message.message_id), 'nothing journaled');
    assert.equal(s.runtime.stats.received, 0);
  });

  it('a signed delivery replayed after its message expired (a fresh, unsigned timestamp): 400, never handled', async (t) => {
    const s = await setUp(t, async () => ({ ok: true }));
    const message = await stored(s, { n: 1 });
    // What a relay signed once, sent again days later: the journal may have forgotten the id by then.
    const expired = { ...message, expires_at: new Date(Date.now() - 6 * 60_000).toISOString() };
    const res = await delivery(s, expired).send();
    assert.equal(res.status, 400, res.body);
    assert.match(res.body, /expired/);
    assert.deepEqual(s.calls, []);
    assert.doesNotMatch(await journalText(s.journalDir), new RegExp(message.message_id), 'nothing journaled');
    // Within the clock tolerance of its expiry it is still taken (clocks differ a little).
    const replies = s.peer.waitForReplies(1);
    const justNow = { ...message, expires_at: new Date(Date.now() - 60_000).toISOString() };
    assert.equal((await delivery(s, justNow).send()).status, 200);
    await replies;
    assert.deepEqual(s.calls, [message.message_id]);
  });

  it('bounds the body (413, declared or streamed), refuses what is not a delivery (400), answers health on GET / and HEAD', async (t) => {
    const s = await setUp(t, async () => ({ ok: true }), { source: { maxBodyBytes: 4096 } });
    const big = Buffer.alloc(5000, 0x20);
    const declared = await post(`${s.url}/`, big, { 'X-M2M-Webhook-Signature': webhookSignature(s.secret, big) });
    assert.equal(declared.status, 413);
    assert.equal(declared.headers['connection'], 'close');
    const streamed = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(`${s.url}/`, { method: 'POST', headers: { 'Transfer-Encoding': 'chunked' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.write(Buffer.alloc(3000, 0x20));
      req.end(Buffer.alloc(3000, 0x20));
    });
    assert.equal(streamed, 413);
    for (const text of ['not json', '[]', '{"message":{}}', '{"delivery_id":"dlv_1","message":"x"}']) {
      const res = await post(`${s.url}/`, text, {
        'X-M2M-Webhook-Signature': webhookSignature(s.secret, text),
        'X-M2M-Webhook-Timestamp': formatTimestamp(Date.now()),
      });
      assert.equal(res.status, 400, `${text}: ${res.body}`);
    }
    assert.equal((await post(`${s.url}/elsewhere`, '{}', {})).status, 404);
    assert.equal((await post(`${s.url}/`, '', {}, 'PUT')).status, 405);
    const health = await post(`${s.url}/`, '', {}, 'GET');
    assert.equal(health.status, 200);
    const h = JSON.parse(health.body) as Record<string, unknown>;
    assert.equal(h['mode'], 'webhook');
    assert.equal(h['status'], 'ready');
    assert.equal(h['agent'], s.keypair.publicKey);
    assert.equal(h['in_flight'], 0);
    const head = await post(`${s.url}/`, '', {}, 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.body, '');
  });

  it('a message addressed to another agent is refused (400); one that cannot be handled is answered invalid_message and gets 200', async (t) => {
    const s = await setUp(t, async () => ({ ok: true }));
    const message = await stored(s, { n: 1 });
    const stray = await delivery(s, { ...message, recipient_key: Keypair.generate().publicKey }).send();
    assert.equal(stray.status, 400, stray.body);
    const replies = s.peer.waitForReplies(1);
    let deep: unknown = {};
    for (let i = 0; i < 200; i++) deep = [deep];
    const broken = { ...message, body: deep } as Message;
    const res = await delivery(s, broken).send();
    assert.equal(res.status, 200, res.body);
    const [reply] = await replies;
    assert.equal(reply!.in_reply_to, message.message_id);
    assert.equal(
      (reply!.body as { error?: { code: string } }).error?.code,
      'invalid_message',
      JSON.stringify(reply!.body),
    );
    assert.deepEqual(s.calls, []);

    // One that cannot be handled is still checked for its addressee and expiry first: neither is
    // answered (an error reply would go from this agent to whoever the message names as sender).
    const other = await stored(s, { n: 2 });
    const strayDeep = { ...other, body: deep, recipient_key: Keypair.generate().publicKey } as Message;
    const refused = await delivery(s, strayDeep).send();
    assert.equal(refused.status, 400, refused.body);
    assert.match(refused.body, /another agent/);
    const expiredDeep = { ...other, body: deep, expires_at: new Date(Date.now() - 6 * 60_000).toISOString() };
    const stale = await delivery(s, expiredDeep as Message).send();
    assert.equal(stale.status, 400, stale.body);
    assert.match(stale.body, /expired/);
    assert.doesNotMatch(await journalText(s.journalDir), new RegExp(other.message_id), 'nothing journaled');
    assert.equal(s.runtime.stats.received, 1, 'only the first broken one was taken');
  });

  it('full: 503 with Retry-After (nothing journaled), then 200 once there is room', async (t) => {
    const release = gate();
    const s = await setUp(
      t,
      async () => {
        await release.wait;
        return { ok: true };
      },
      { runtime: { concurrency: 1, maxQueued: 1 } },
    );
    const [m1, m2, m3] = [await stored(s, { n: 1 }), await stored(s, { n: 2 }), await stored(s, { n: 3 })];
    assert.equal((await delivery(s, m1!).send()).status, 200);
    assert.equal((await delivery(s, m2!).send()).status, 200);
    const d3 = delivery(s, m3!);
    const full = await d3.send();
    assert.equal(full.status, 503, full.body);
    assert.equal(full.headers['retry-after'], '5');
    assert.doesNotMatch(await journalText(s.journalDir), new RegExp(m3!.message_id));
    release.open();
    await s.peer.waitForReplies(2);
    // The relay's retry (same delivery id) is taken now.
    assert.equal((await d3.send()).status, 200);
    await s.peer.waitForReplies(3);
    assert.deepEqual([...s.calls].sort(), [m1!.message_id, m2!.message_id, m3!.message_id].sort());
  });

  it('draining: new deliveries get 503 with Retry-After, the running handler finishes, then the server closes', async (t) => {
    const release = gate();
    const s = await setUp(t, async () => {
      await release.wait;
      return { ok: true };
    });
    const m1 = await stored(s, { n: 1 });
    const m2 = await stored(s, { n: 2 });
    assert.equal((await delivery(s, m1).send()).status, 200);
    const draining = s.runtime.next('draining');
    const stopping = s.runtime.stop();
    await draining;
    const late = await delivery(s, m2).send();
    assert.equal(late.status, 503, late.body);
    assert.equal(late.headers['retry-after'], '5');
    release.open();
    await stopping;
    assert.equal(s.source.status, 'stopped');
    await assert.rejects(post(`${s.url}/`, '', {}, 'GET'), 'the server is closed');
    assert.deepEqual(s.calls, [m1.message_id]);
  });

  it("registers its delivery URL and secret once listening; the public URL's path is served", async (t) => {
    const seen: Array<{ url: string; secret: string }> = [];
    const s = await setUp(t, async () => ({ ok: true }), {
      source: {
        publicUrl: 'https://agent.example.com/hooks/mrp',
        register: async (url, secret) => void seen.push({ url, secret }),
      },
    });
    assert.deepEqual(seen, [{ url: 'https://agent.example.com/hooks/mrp', secret: s.secret }]);
    const message = await stored(s, { n: 1 });
    const d = delivery(s, message);
    assert.equal((await post(`${s.url}/hooks/mrp`, d.text, d.headers)).status, 200);
    assert.equal((await post(`${s.url}/other`, d.text, d.headers)).status, 404);
  });

  it('registering with a real relay: registered (no warning); a relay refusing the URL is fatal; the outcome table', async (t) => {
    const relay = await startRelay(t, { allowPrivateWebhooks: true });
    const keypair = Keypair.generate();
    const client = new RelayClient({ relayUrl: relay.url, keypair });
    const source = new WebhookSource({
      client,
      secret: newWebhookSecret(),
      port: 0,
      register: (url, secret) => client.setWebhook(url, secret).then(() => {}),
    });
    t.after(() => source.close());
    const warnings: Error[] = [];
    source.on('warning', (w) => void warnings.push(w));
    const ready = source.next('connected');
    source.start({ deliver: async () => ({ declined: 0 }), capacity: () => 1, hasRoom: () => true });
    await ready;
    const webhook = await client.getWebhook();
    assert.equal(webhook.url, source.deliveryUrl);
    assert.equal(webhook.enabled, true);
    assert.deepEqual(warnings, []);
    assert.equal(source.status, 'ready');

    // A relay that refuses loopback targets (the default): the registration is fatal, not retried.
    const strict = await startRelay(t);
    const strictClient = new RelayClient({ relayUrl: strict.url, keypair: Keypair.generate() });
    const refused = new WebhookSource({
      client: strictClient,
      secret: newWebhookSecret(),
      port: 0,
      register: (url, secret) => strictClient.setWebhook(url, secret).then(() => {}),
    });
    t.after(() => refused.close());
    const fatal = refused.next('fatal');
    refused.start({ deliver: async () => ({ declined: 0 }), capacity: () => 1, hasRoom: () => true });
    const [err] = (await fatal) as [RelayError];
    assert.equal(err.code, 'webhook_url_refused');
    assert.equal(refused.status, 'stopped');

    assert.equal(registrationOutcome(new RelayError('not_found', 'no', { status: 404 })), 'unsupported');
    assert.equal(registrationOutcome(new RelayError('bad_request', 'bad url', { status: 400 })), 'fatal');
    assert.equal(registrationOutcome(new RelayError('internal_error', 'oops', { status: 500 })), 'retry');
    assert.equal(registrationOutcome(new NetworkError('down')), 'retry');
  });

  it('catches up on what waited on the relay before it started: polls status=sent until has_more is false, each take journaled before its poll, each message handled once', async (t) => {
    const early: string[] = [];
    const takes: string[] = [];
    const s = await setUp(t, async () => ({ ok: true }), {
      before: async (peer, keypair) => {
        // More than fits at once (concurrency 1, 1 queued: polls of 1-2): the catch-up follows has_more.
        for (let n = 1; n <= 5; n++) early.push((await peer.send(keypair.publicKey, { n })).message_id);
      },
      runtime: { concurrency: 1, maxQueued: 1 },
      withJournal: (journal) => {
        const { takes: log } = journalTakes(journal);
        return {
          takes: {
            begin: (at, wait, id) => {
              log!.begin(at, wait, id);
              takes.push(`begin ${wait}`);
            },
            end: () => {
              log!.end();
              takes.push('end');
            },
          },
        };
      },
    });
    await s.peer.waitForReplies(5);
    assert.deepEqual([...s.calls].sort(), [...early].sort());
    assert.deepEqual(takes.slice(0, 2), ['begin 0', 'end'], 'a take id noted before each poll, closed after');
    assert.ok(takes.length >= 6, `more than one poll: ${takes.join(', ')}`);
    assert.equal(takes.filter((x) => x === 'end').length, takes.filter((x) => x !== 'end').length);
    assert.match(await journalText(s.journalDir), /"k":"take"/);
    // The same message by webhook as well (the relay pushed it while the poll took it): 200, no second run.
    const again = await s.client.getMessage(early[0]!);
    assert.equal((await delivery(s, again).send()).status, 200);
    assert.deepEqual([...s.calls].sort(), [...early].sort());
    assert.equal(s.source.health()['caught_up'], 5);
  });

  it('an open take whose look keeps failing is looked at again after its backoff, even once a declined delivery finds room (no busy loop)', async (t) => {
    // The source's client goes through a proxy that fails every look for a take (503) and
    // forwards the rest to the relay. Its clock never moves: every backoff waits until nudged.
    let looks = 0;
    let onLook: (() => void) | undefined;
    const nextLook = () => new Promise<void>((r) => (onLook = r));
    const looked = nextLook();
    const clock = new ManualClock(Date.now());
    let target = '';
    const proxy = createServer((req, res) => {
      if ((req.url ?? '').includes('take=')) {
        looks++;
        onLook?.();
        res.writeHead(503, { 'Content-Type': 'application/json' });
        res.end('{"error":{"code":"service_unavailable","message":"not now"}}');
        return;
      }
      const out = httpRequest(`${target}${req.url}`, { method: req.method, headers: req.headers }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      });
      out.on('error', () => res.destroy());
      req.pipe(out);
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    t.after(() => new Promise<void>((r) => proxy.close(() => r())));
    const proxied = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    const release = gate();
    let keypair!: Keypair;
    const s = await setUp(
      t,
      async () => {
        await release.wait;
        return { ok: true };
      },
      {
        before: async (_peer, k) => {
          keypair = k;
        },
        runtime: { concurrency: 1, maxQueued: 1 },
        withJournal: () => ({
          client: new RelayClient({ relayUrl: proxied, keypair }),
          clock,
          openTake: { at: Date.now() - 60_000, waitSeconds: 0, id: 'tk_open_from_before' },
        }),
      },
    );
    target = s.relay.url;
    await looked;
    const [m1, m2, m3] = [await stored(s, { n: 1 }), await stored(s, { n: 2 }), await stored(s, { n: 3 })];
    assert.equal((await delivery(s, m1!).send()).status, 200);
    assert.equal((await delivery(s, m2!).send()).status, 200);
    assert.equal((await delivery(s, m3!).send()).status, 503, 'full: declined');
    // Room again: a catch-up would go now, but the failed look waits out its backoff.
    release.open();
    await s.peer.waitForReplies(2);
    for (let i = 0; i < 20; i++) await fetch(`${proxied}/v1/health`).then((r) => r.arrayBuffer());
    assert.equal(looks, 1, `the open take was looked at ${looks} times with the clock standing still`);
    // Its backoff over, it is looked at again.
    const second = nextLook();
    clock.advance(120_000);
    await second;
    assert.equal(looks, 2);
  });

  it('every catchUpIntervalMs: registers again a webhook the relay disabled, then takes what waited', async (t) => {
    const registered: string[] = [];
    let disabled = false;
    const s = await setUp(t, async () => ({ ok: true }), {
      source: { register: async (url) => void registered.push(url), catchUpIntervalMs: 20 },
    });
    // The relay's view: our URL, disabled after 20 failures (its pending deliveries dropped).
    s.client.getWebhook = async () => ({
      url: registered[0]!,
      enabled: !disabled,
      consecutive_failures: disabled ? 20 : 0,
      created_at: new Date().toISOString(),
    });
    const warned = s.runtime.next('warning');
    disabled = true;
    const m = await stored(s, { n: 1 });
    const [warning] = await warned;
    assert.equal((warning as { code?: string }).code, 'webhook_reenabled');
    disabled = false;
    await s.peer.waitForReplies(1);
    assert.deepEqual(s.calls, [m.message_id]);
    assert.equal(registered.length, 2, 'registered at start, and again once');
  });

  it('pure parts: the timestamp window and reading a delivery', () => {
    const now = Date.parse('2026-03-05T12:00:00Z');
    assert.equal(deliveryIsFresh('2026-03-05T12:04:59Z', now), true);
    assert.equal(deliveryIsFresh('2026-03-05T11:54:59Z', now), false);
    assert.equal(deliveryIsFresh(undefined, now), false);
    assert.equal(deliveryIsFresh('yesterday', now), false);
    const spec = Buffer.from(
      '{"delivery_id":"dlv_0a1b2c3d4e5f","message":{"message_id":"msg_1772712000_0a1b2c3d4e5f","sender_key":"ebVWLo_mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ","content_type":"application/json","body":{"text":"Hello!"},"attachments":[]}}',
    );
    const read = readDelivery(spec);
    assert.ok(typeof read !== 'string');
    assert.equal(read.deliveryId, 'dlv_0a1b2c3d4e5f');
    assert.equal(read.batch.messages[0]!.message_id, 'msg_1772712000_0a1b2c3d4e5f');
    assert.equal(read.batch.taken, false);
    const deep = readDelivery(
      Buffer.from(
        `{"delivery_id":"d","message":{"message_id":"msg_1","sender_key":"ebVWLo_mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ","body":${'['.repeat(200)}${']'.repeat(200)}}}`,
      ),
    );
    assert.ok(typeof deep !== 'string');
    assert.equal(deep.batch.messages.length, 0);
    assert.equal(deep.batch.rejected![0]!.identity!.message_id, 'msg_1');
    assert.equal(readDelivery(Buffer.from([0x7b, 0xff, 0x7d])), 'the body is not UTF-8');
    assert.match(String(readDelivery(Buffer.from('{"delivery_id":"has space","message":{}}'))), /delivery_id/);
  });
});
