/**
 * Webhook delivery (docs/protocol.md §3.8) end to end: a real relay, a real HTTP receiver on port
 * 0, time driven by a manual clock (retries at 10 s, 30 s, … without waiting), events awaited
 * through the relay's log sink and the receiver's request queue — never a sleep.
 */
import assert from 'node:assert/strict';
import { EventEmitter, once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { checkWebhookTimestamp, verifyWebhookSignature } from '../../src/protocol/webhook.js';
import type { LogEntry } from '../../src/relay/log.js';
import type { RelayOptions } from '../../src/relay/options.js';
import { SqliteStore } from '../../src/relay/store/sqlite-store.js';
import { guardedLookup, isRefusedAddress } from '../../src/relay/webhook-target.js';
import { DISABLE_AFTER_FAILURES, retryDelayMs } from '../../src/relay/webhooks.js';
import { newAgent, startRelay } from '../helpers/relay.js';
import { Api, expectError, expectOk, MESSAGE_FIELDS } from './_support.js';

const SECRET = 'QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8';

interface Hit {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  res: ServerResponse;
}

/** A webhook receiver: every request is queued; `answer` decides (a status, or 'hold' to never answer). */
async function receiver(
  t: TestContext,
  answer: (hit: Hit) => number | 'hold' | ((res: ServerResponse) => void) = () => 200,
) {
  const queue: Hit[] = [];
  const waiters: Array<(h: Hit) => void> = [];
  const all: Hit[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const hit: Hit = { path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), res };
      all.push(hit);
      const a = answer(hit);
      if (typeof a === 'number') res.writeHead(a, a === 302 ? { Location: '/elsewhere' } : {}).end();
      else if (typeof a === 'function') a(res);
      const w = waiters.shift();
      if (w) w(hit);
      else queue.push(hit);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/incoming`,
    port: (server.address() as AddressInfo).port,
    all,
    next: (timeoutMs = 5000): Promise<Hit> => {
      const h = queue.shift();
      if (h) return Promise.resolve(h);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no webhook request arrived')), timeoutMs);
        waiters.push((hit) => {
          clearTimeout(timer);
          resolve(hit);
        });
      });
    },
  };
}

/** A relay on a manual clock whose log entries can be awaited by message. */
async function relayWithLog(t: TestContext, options: Partial<RelayOptions> = {}) {
  const clock = (options.clock as ManualClock | undefined) ?? new ManualClock();
  const events = new EventEmitter();
  const logs: LogEntry[] = [];
  const relay = await startRelay(t, {
    clock,
    allowPrivateWebhooks: true,
    logger: (e) => {
      logs.push(e);
      events.emit(e.msg, e);
    },
    ...options,
  });
  const api = new Api(relay.url, clock);
  const logged = (msg: string): Promise<LogEntry> => once(events, msg).then(([e]) => e as LogEntry);
  return { ...relay, clock, api, logs, logged };
}

describe('§3.8 webhook deliveries', () => {
  it('a delivery is signed over its exact body, carries the timestamp and delivery id, and the full message object', async (t) => {
    const hook = await receiver(t);
    const { api, clock } = await relayWithLog(t);
    const [a, b] = [newAgent(), newAgent()];
    expectOk(await api.put(b, `/v1/agents/${b.publicKey}/webhook`, { url: hook.url, secret: SECRET }));
    // Raw text, so the body's own spelling (1.50, key order) can be checked in the delivery.
    const sent = expectOk(
      await api.post(a, '/v1/messages', `{"recipient_key":"${b.publicKey}","body":{"text":"Hello!","n":1.50}}`),
      201,
    );
    const hit = await hook.next();
    assert.equal(hit.headers['content-type'], 'application/json');
    assert.ok(
      verifyWebhookSignature(SECRET, hit.body, hit.headers['x-m2m-webhook-signature'] as string),
      'signature verifies',
    );
    assert.ok(!verifyWebhookSignature(`${SECRET}x`, hit.body, hit.headers['x-m2m-webhook-signature'] as string));
    assert.equal(checkWebhookTimestamp(hit.headers['x-m2m-webhook-timestamp'] as string, clock.now()), 'ok');
    const payload = JSON.parse(hit.body);
    assert.deepEqual(Object.keys(payload), ['delivery_id', 'message']);
    assert.equal(payload.delivery_id, hit.headers['x-m2m-delivery-id']);
    assert.deepEqual(Object.keys(payload.message).sort(), MESSAGE_FIELDS);
    assert.equal(payload.message.message_id, sent.message_id);
    assert.ok(hit.body.includes('"body":{"text":"Hello!","n":1.50}'), 'the body is the sender text verbatim');
    assert.deepEqual(payload.message.attachments, []);
  });

  it('500 → retried with the same delivery id after 10 s, then 30 s; failures counted, a 200 resets them and delivers', async (t) => {
    let status = 500;
    const hook = await receiver(t, () => status);
    const { api, clock, logged } = await relayWithLog(t);
    const [a, b] = [newAgent(), newAgent()];
    const target = `/v1/agents/${b.publicKey}/webhook`;
    expectOk(await api.put(b, target, { url: hook.url, secret: SECRET }));
    const sent = expectOk(await api.post(a, '/v1/messages', { recipient_key: b.publicKey, body: { n: 1 } }), 201);
    const failed = logged('webhook_failed');
    const first = await hook.next();
    assert.equal((await failed).status, 500);
    assert.equal(expectOk(await api.get(b, target)).consecutive_failures, 1);
    // Still available to other channels meanwhile.
    assert.equal(expectOk(await api.get(a, `/v1/messages/${sent.message_id}/status`)).status, 'sent');

    await clock.advanceAsync(retryDelayMs(1) - 1);
    assert.equal(hook.all.length, 1, 'not before 10 s');
    const failedAgain = logged('webhook_failed');
    await clock.advanceAsync(1);
    const second = await hook.next();
    await failedAgain;
    assert.equal(
      second.headers['x-m2m-delivery-id'],
      first.headers['x-m2m-delivery-id'],
      'a retry keeps its delivery id',
    );
    assert.equal(expectOk(await api.get(b, target)).consecutive_failures, 2);

    status = 200;
    const delivered = logged('webhook_delivered');
    await clock.advanceAsync(retryDelayMs(2));
    const third = await hook.next();
    await delivered;
    assert.equal(third.headers['x-m2m-delivery-id'], first.headers['x-m2m-delivery-id']);
    assert.equal(expectOk(await api.get(b, target)).consecutive_failures, 0, 'a success resets the count');
    assert.equal(expectOk(await api.get(a, `/v1/messages/${sent.message_id}/status`)).status, 'delivered');
    assert.equal(expectOk(await api.get(b, '/v1/messages')).messages.length, 0, 'delivered: not handed out again');
  });

  it('only a message its commit gave a delivery wakes the worker: traffic to agents without a webhook claims nothing', async (t) => {
    const hook = await receiver(t);
    const dir = await mkdtemp(join(tmpdir(), 'mrp-hooks-'));
    let claims = 0;
    class CountingStore extends SqliteStore {
      override claimDeliveries(...args: Parameters<SqliteStore['claimDeliveries']>) {
        claims++;
        return super.claimDeliveries(...args);
      }
    }
    const store = new CountingStore(dir);
    t.after(async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    });
    const { api } = await relayWithLog(t, { store });
    const [a, plain, hooked] = [newAgent(), newAgent(), newAgent()];
    expectOk(await api.put(hooked, `/v1/agents/${hooked.publicKey}/webhook`, { url: hook.url, secret: SECRET }));
    const before = claims;
    // Each send is answered after its commit, whose wake-up (if any) runs in the next turn: by the
    // next answer it has happened.
    for (let i = 0; i < 5; i++)
      expectOk(await api.post(a, '/v1/messages', { recipient_key: plain.publicKey, body: { i } }), 201);
    expectOk(await api.get(plain, '/v1/messages?wait=0'));
    assert.equal(claims, before, 'no claim for messages to an agent without a webhook');
    expectOk(await api.post(a, '/v1/messages', { recipient_key: hooked.publicKey, body: { n: 1 } }), 201);
    await hook.next();
    assert.ok(claims > before, 'a message with a delivery wakes the worker');
  });

  it(`${DISABLE_AFTER_FAILURES} consecutive failures disable the webhook; nothing more is sent; messages stay pollable; re-PUT re-enables`, async (t) => {
    const hook = await receiver(t, () => 503);
    const dir = await mkdtemp(join(tmpdir(), 'mrp-hooks-'));
    const store = new SqliteStore(dir);
    t.after(async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    });
    const { api, clock, logged } = await relayWithLog(t, { store });
    const [a, b] = [newAgent(), newAgent()];
    const target = `/v1/agents/${b.publicKey}/webhook`;
    expectOk(await api.put(b, target, { url: hook.url, secret: SECRET }));
    expectOk(await api.post(a, '/v1/messages', { recipient_key: b.publicKey, body: { n: 1 } }), 201);
    let disabled: Promise<LogEntry> | undefined;
    for (let i = 1; i <= DISABLE_AFTER_FAILURES; i++) {
      const failed = logged('webhook_failed');
      if (i === DISABLE_AFTER_FAILURES) disabled = logged('webhook_disabled');
      await hook.next();
      assert.equal((await failed).attempt, i);
      if (i < DISABLE_AFTER_FAILURES) await clock.advanceAsync(retryDelayMs(i));
    }
    assert.equal((await disabled!).consecutive_failures, DISABLE_AFTER_FAILURES);
    const got = expectOk(await api.get(b, target));
    assert.equal(got.enabled, false);
    assert.equal(got.consecutive_failures, DISABLE_AFTER_FAILURES);
    assert.equal(await store.nextDeliveryAt(), undefined, 'no delivery pending');
    expectOk(await api.post(a, '/v1/messages', { recipient_key: b.publicKey, body: { n: 2 } }), 201);
    await clock.advanceAsync(2 * 3_600_000);
    assert.equal(await store.nextDeliveryAt(), undefined, 'a disabled webhook gets no new deliveries');
    assert.equal(hook.all.length, DISABLE_AFTER_FAILURES);
    assert.equal(expectOk(await api.get(b, '/v1/messages')).messages.length, 2, 'both still available to polls');
    const again = expectOk(await api.put(b, target, { url: hook.url, secret: SECRET }));
    assert.equal(again.enabled, true);
    assert.equal(again.consecutive_failures, 0);
  });

  it('after DELETE nothing more is delivered (pending retries dropped too)', async (t) => {
    const hook = await receiver(t, () => 500);
    const dir = await mkdtemp(join(tmpdir(), 'mrp-hooks-'));
    const store = new SqliteStore(dir);
    t.after(async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    });
    const { api, clock, logged } = await relayWithLog(t, { store });
    const [a, b] = [newAgent(), newAgent()];
    const target = `/v1/agents/${b.publicKey}/webhook`;
    expectOk(await api.put(b, target, { url: hook.url, secret: SECRET }));
    const failed = logged('webhook_failed');
    expectOk(await api.post(a, '/v1/messages', { recipient_key: b.publicKey, body: { n: 1 } }), 201);
    await hook.next();
    await failed;
    assert.notEqual(await store.nextDeliveryAt(), undefined);
    assert.equal((await api.delete(b, target)).status, 204);
    assert.equal(await store.nextDeliveryAt(), undefined);
    expectOk(await api.post(a, '/v1/messages', { recipient_key: b.publicKey, body: { n: 2 } }), 201);
    await clock.advanceAsync(retryDelayMs(1) + 1);
    assert.equal(await store.nextDeliveryAt(), undefined);
    assert.equal(hook.all.length, 1);
    expectError(await api.get(b, target), 404, 'not_found');
  });

  it('a message delivered through another channel drops its pending delivery', async (t) => {
    const hook = await receiver(t, () => 500);
    const { api, clock, logged } = await relayWithLog(t);
    const [a, b] = [newAgent(), newAgent()];
    expectOk(await api.put(b, `/v1/agents/${b.publicKey}/webhook`, { url: hook.url, secret: SECRET }));
    const failed = logged('webhook_failed');
    expectOk(await api.post(a, '/v1/messages', { recipient_key: b.publicKey, body: { n: 1 } }), 201);
    await hook.next();
    await failed;
    assert.equal(expectOk(await api.get(b, '/v1/messages')).messages.length, 1, 'polled: delivered');
    await clock.advanceAsync(retryDelayMs(1) + 1);
    await clock.advanceAsync(retryDelayMs(2) + 1);
    assert.equal(hook.all.length, 1);
  });

  it('a relay restarted on the same data directory still delivers a pending delivery', async (t) => {
    let status = 500;
    const hook = await receiver(t, () => status);
    const dataDir = await mkdtemp(join(tmpdir(), 'mrp-hooks-'));
    t.after(() => rm(dataDir, { recursive: true, force: true }));
    const clock = new ManualClock();
    const first = await relayWithLog(t, { dataDir, clock });
    const [a, b] = [newAgent(), newAgent()];
    expectOk(await first.api.put(b, `/v1/agents/${b.publicKey}/webhook`, { url: hook.url, secret: SECRET }));
    const failed = first.logged('webhook_failed');
    const sent = expectOk(await first.api.post(a, '/v1/messages', { recipient_key: b.publicKey, body: { n: 1 } }), 201);
    const before = await hook.next();
    await failed;
    await first.relay.close();

    status = 200;
    const second = await relayWithLog(t, { dataDir, clock });
    const delivered = second.logged('webhook_delivered');
    await clock.advanceAsync(retryDelayMs(1));
    const after = await hook.next();
    await delivered;
    assert.equal(after.headers['x-m2m-delivery-id'], before.headers['x-m2m-delivery-id']);
    assert.equal(expectOk(await second.api.get(a, `/v1/messages/${sent.message_id}/status`)).status, 'delivered');
  });

  it('a redirect is not followed and counts as a failure', async (t) => {
    const hook = await receiver(t, () => 302);
    const { api, logged } = await relayWithLog(t);
    const b = newAgent();
    expectOk(await api.put(b, `/v1/agents/${b.publicKey}/webhook`, { url: hook.url, secret: SECRET }));
    const failed = logged('webhook_failed');
    expectOk(await api.post(newAgent(), '/v1/messages', { recipient_key: b.publicKey, body: { n: 1 } }), 201);
    await hook.next();
    assert.equal((await failed).status, 302);
    assert.deepEqual(
      hook.all.map((h) => h.path),
      ['/incoming'],
      'the Location was not visited',
    );
    assert.equal(expectOk(await api.get(b, `/v1/agents/${b.publicKey}/webhook`)).consecutive_failures, 1);
  });

  it('a slow endpoint times out (configured timeout) and counts as a failure; its connection is cut', async (t) => {
    const hook = await receiver(t, () => 'hold');
    const { api, clock, logged } = await relayWithLog(t, { webhookTimeoutMs: 2000 });
    const b = newAgent();
    expectOk(await api.put(b, `/v1/agents/${b.publicKey}/webhook`, { url: hook.url, secret: SECRET }));
    const failed = logged('webhook_failed');
    expectOk(await api.post(newAgent(), '/v1/messages', { recipient_key: b.publicKey, body: { n: 1 } }), 201);
    const hit = await hook.next();
    const cut = once(hit.res, 'close');
    await clock.advanceAsync(2000);
    assert.equal((await failed).error, 'timeout');
    await cut;
  });

  it('a 200 with an endless body counts; the relay reads a few KiB and cuts the connection', async (t) => {
    const hook = await receiver(t, () => (res) => {
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      const chunk = 'x'.repeat(16 * 1024);
      const pump = (): void => {
        while (res.write(chunk)) {}
        res.once('drain', pump);
      };
      pump();
    });
    const { api, logged } = await relayWithLog(t);
    const b = newAgent();
    expectOk(await api.put(b, `/v1/agents/${b.publicKey}/webhook`, { url: hook.url, secret: SECRET }));
    const delivered = logged('webhook_delivered');
    expectOk(await api.post(newAgent(), '/v1/messages', { recipient_key: b.publicKey, body: { n: 1 } }), 201);
    const hit = await hook.next();
    await Promise.all([delivered, once(hit.res, 'close')]);
  });
});

describe('§3.8 webhook targets', () => {
  it('PUT refuses private, loopback, link-local and reserved targets without allowPrivateWebhooks (422 webhook_url_refused)', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const b = newAgent();
    const target = `/v1/agents/${b.publicKey}/webhook`;
    for (const bad of [
      'http://127.0.0.1:8080/in',
      'http://localhost/in',
      'http://app.localhost./in',
      'http://[::1]/in',
      'http://[::ffff:127.0.0.1]/in',
      'http://10.1.2.3/in',
      'http://172.16.0.1/in',
      'http://192.168.1.1/in',
      'http://169.254.169.254/latest/meta-data',
      'http://100.64.0.1/',
      'http://0.0.0.0/',
      'http://[fd00::1]/',
      'http://[fe80::1]/',
      'http://224.0.0.1/',
      'http://2130706433/',
    ]) {
      const err = expectError(await api.put(b, target, { url: bad, secret: SECRET }), 422, 'webhook_url_refused');
      assert.equal(err.details.field, 'url', bad);
    }
    expectOk(await api.put(b, target, { url: 'https://example.com/in', secret: SECRET }));
    expectOk(await api.put(b, target, { url: 'http://93.184.215.14/in', secret: SECRET }));
  });

  it('PUT validates url and secret (400 naming the field); own key only (403)', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const b = newAgent();
    const target = `/v1/agents/${b.publicKey}/webhook`;
    for (const [body, name] of [
      [{ url: 'ftp://example.com/x', secret: SECRET }, 'url'],
      [{ url: 'example.com/x', secret: SECRET }, 'url'],
      [{ url: 'https://user:pw@example.com/x', secret: SECRET }, 'url'],
      [{ url: `https://example.com/${'a'.repeat(2048)}`, secret: SECRET }, 'url'],
      [{ url: 42, secret: SECRET }, 'url'],
      [{ url: 'https://example.com/x', secret: 'short' }, 'secret'],
      [{ url: 'https://example.com/x', secret: 'x'.repeat(257) }, 'secret'],
      [{ url: 'https://example.com/x' }, 'secret'],
    ] as const) {
      const err = expectError(await api.put(b, target, body), 400, 'bad_request');
      assert.equal(err.details.field, name, JSON.stringify(body).slice(0, 80));
    }
    expectError(await api.put(newAgent(), target, { url: 'https://example.com/x', secret: SECRET }), 403, 'forbidden');
    expectError(await api.delete(newAgent(), target), 403, 'forbidden');
  });

  it('at delivery, a host name that resolves to a private address is refused (DNS rebinding); nothing is sent', async (t) => {
    const hook = await receiver(t);
    // The name passes the PUT check (it is not an address); it resolves to loopback at delivery.
    const resolver = (
      _h: string,
      _f: number,
      cb: (e: NodeJS.ErrnoException | null, a: Array<{ address: string; family: number }>) => void,
    ) => cb(null, [{ address: '127.0.0.1', family: 4 }]);
    const { api, logged } = await relayWithLog(t, { allowPrivateWebhooks: false, webhookResolver: resolver });
    const b = newAgent();
    expectOk(
      await api.put(b, `/v1/agents/${b.publicKey}/webhook`, {
        url: `http://rebind.example:${hook.port}/incoming`,
        secret: SECRET,
      }),
    );
    const failed = logged('webhook_failed');
    expectOk(await api.post(newAgent(), '/v1/messages', { recipient_key: b.publicKey, body: { n: 1 } }), 201);
    assert.equal((await failed).error, 'EWEBHOOKREFUSED');
    assert.equal(hook.all.length, 0);
  });

  it('address rules: refused and allowed examples; the guarded lookup refuses a mix of public and private', async () => {
    for (const a of [
      '127.0.0.1',
      '::1',
      '10.0.0.1',
      '::ffff:10.0.0.1',
      '::ffff:7f00:1',
      '169.254.1.1',
      '100.100.0.1',
      'fc00::1',
      'ff02::1',
      '0.0.0.0',
      '::',
      'nonsense',
      // IPv6 forms that carry a private IPv4 address to a gateway or the host: NAT64 (cloud NAT
      // gateways translate to private addresses), IPv4-compatible, IPv4-translated, 6to4.
      '64:ff9b::7f00:1',
      '64:ff9b::a9fe:a9fe',
      '64:ff9b::10.0.0.1',
      '64:ff9b:1::808:808',
      '::127.0.0.1',
      '::ffff:0:a00:1',
      '2002:a9fe:a9fe::1',
      '2001:0:4136:e378:8000:63bf:80ff:fffe',
    ])
      assert.equal(isRefusedAddress(a), true, a);
    for (const a of [
      '93.184.215.14',
      '8.8.8.8',
      '2606:4700::1111',
      '100.128.0.1',
      '172.32.0.1',
      '64:ff9b::808:808',
      '64:ff9b::8.8.8.8',
      '2002:808:808::1',
      '2001:db8:1::1',
    ])
      assert.equal(isRefusedAddress(a), false, a);
    const lookup = guardedLookup((_h, _f, cb) =>
      cb(null, [
        { address: '93.184.215.14', family: 4 },
        { address: '10.0.0.1', family: 4 },
      ]),
    );
    const err = await new Promise<Error | null>((resolve) => lookup('mixed.example', {}, (e) => resolve(e)));
    assert.equal((err as NodeJS.ErrnoException | null)?.code, 'EWEBHOOKREFUSED');
    const fine = guardedLookup((_h, _f, cb) => cb(null, [{ address: '93.184.215.14', family: 4 }]));
    const got = await new Promise<string>((resolve) =>
      fine('ok.example', {}, (_e, address) => resolve(address as string)),
    );
    assert.equal(got, '93.184.215.14');
  });
});
