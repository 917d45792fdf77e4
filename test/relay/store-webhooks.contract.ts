/**
 * The webhook part of the store contract (called from `storeContract`, store.contract.ts): the
 * config per agent, the pending delivery created in the commit that stores the message, claims
 * under a lease that concurrent claimers never share, and the outcome of an attempt (success
 * marks the message delivered and resets the failure count; failures reschedule, then disable).
 * Imports nothing of the relay but types.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ClaimOptions, MessageRecord, Store, WriteBatch } from '../../src/relay/store/store.js';

export interface WebhookContractTools {
  store(): Store;
  newKey(): string;
  message(sender: string, recipient: string, over?: Partial<MessageRecord>): MessageRecord;
  T0: number;
}

const LEASE = 60_000;
const claim = (over: Partial<ClaimOptions> = {}): ClaimOptions => ({
  limit: 10,
  leaseMs: LEASE,
  perAgent: 10,
  inFlight: new Map(),
  ...over,
});
const batch = (messages: MessageRecord[], over: Partial<WriteBatch> = {}): WriteBatch => ({
  messages,
  delivered: [],
  active: new Map(),
  ...over,
});

export function webhookContract(t: WebhookContractTools): void {
  const { newKey, message, T0 } = t;

  describe('webhooks', () => {
    it('put (replace re-enables and resets failures), get, delete; none → undefined/false', async () => {
      const store = t.store();
      const a = newKey();
      assert.equal(await store.getWebhook(a), undefined);
      const put = await store.putWebhook(a, 'https://x.example/in', 'secret-secret-secret', T0);
      assert.deepEqual(put, {
        agent_key: a,
        url: 'https://x.example/in',
        secret: 'secret-secret-secret',
        enabled: true,
        consecutive_failures: 0,
        created_at: T0,
      });
      assert.deepEqual(await store.getWebhook(a), put);
      const [m] = [message(newKey(), a)];
      await store.commit(batch([m!]), T0);
      const [c] = await store.claimDeliveries(T0, claim());
      for (let i = 0; i < 3; i++) await store.failDelivery(c!.delivery_id, T0, T0 + 1, 20);
      assert.equal((await store.getWebhook(a))!.consecutive_failures, 3);
      const again = await store.putWebhook(a, 'https://y.example/in', 'other-secret-other', T0 + 5);
      assert.deepEqual(await store.getWebhook(a), again);
      assert.equal(again.consecutive_failures, 0);
      assert.equal(await store.deleteWebhook(a), true);
      assert.equal(await store.deleteWebhook(a), false);
      assert.equal(await store.getWebhook(a), undefined);
      assert.deepEqual(await store.claimDeliveries(T0 + 10 * LEASE, claim()), [], 'delete drops pending deliveries');
    });

    it('commit creates a delivery only for recipients with an enabled webhook; claim hands it out once, under a lease', async () => {
      const store = t.store();
      const [a, hooked, plain] = [newKey(), newKey(), newKey()];
      await store.putWebhook(hooked, 'https://x.example/in', 'secret-secret-secret', T0);
      assert.equal(await store.nextDeliveryAt(), undefined);
      const m1 = message(a, hooked, { body_json: '{"text":"hi"}' });
      const m2 = message(a, plain);
      const committed = await store.commit(batch([m1, m2]), T0 + 1);
      // A store that says which messages got a delivery (SQLite) says it exactly.
      if (committed.webhooks) assert.deepEqual([...committed.webhooks], [m1.message_id]);
      assert.equal(await store.nextDeliveryAt(), T0 + 1);
      assert.deepEqual(await store.claimDeliveries(T0, claim()), [], 'not due before the commit time');
      const claims = await store.claimDeliveries(T0 + 1, claim());
      assert.equal(claims.length, 1);
      const c = claims[0]!;
      assert.match(c.delivery_id, /^dlv_[0-9a-f]{12}$/);
      assert.equal(c.attempts, 0);
      assert.equal(c.url, 'https://x.example/in');
      assert.equal(c.secret, 'secret-secret-secret');
      assert.equal(c.message.message_id, m1.message_id);
      assert.equal(c.message.body_json, '{"text":"hi"}');
      assert.equal(c.message.status, 'sent');
      assert.deepEqual(
        await store.claimDeliveries(T0 + 2, claim()),
        [],
        'claimed: not handed out again during the lease',
      );
      assert.equal(await store.nextDeliveryAt(), T0 + 1 + LEASE);
      const after = await store.claimDeliveries(T0 + 1 + LEASE, claim());
      assert.deepEqual(
        after.map((x) => x.delivery_id),
        [c.delivery_id],
        'a claimer that died: due again after the lease, same id',
      );
    });

    it('concurrent claims never overlap; limit and per-agent limits (counting what is in flight) hold', async () => {
      const store = t.store();
      const [s, r1, r2] = [newKey(), newKey(), newKey()];
      await store.putWebhook(r1, 'https://one.example/', 'secret-secret-secret', T0);
      await store.putWebhook(r2, 'https://two.example/', 'secret-secret-secret', T0);
      const ms = [
        ...Array.from({ length: 6 }, () => message(s, r1)),
        ...Array.from({ length: 6 }, () => message(s, r2)),
      ];
      await store.commit(batch(ms), T0);
      const perAgent = await store.claimDeliveries(T0, claim({ perAgent: 2, inFlight: new Map([[r1, 1]]) }));
      const byAgent = (list: typeof perAgent, key: string) =>
        list.filter((c) => c.message.recipient_key === key).length;
      assert.equal(byAgent(perAgent, r1), 1, 'r1 had one in flight already');
      assert.equal(byAgent(perAgent, r2), 2);
      const results = await Promise.all(
        Array.from({ length: 4 }, () => store.claimDeliveries(T0, claim({ limit: 3 }))),
      );
      const all = [...perAgent, ...results.flat()].map((c) => c.delivery_id);
      assert.equal(new Set(all).size, all.length, 'no delivery handed out twice');
      assert.equal(all.length, 12);
      for (const r of results) assert.ok(r.length <= 3);
    });

    it('complete: removes the delivery, marks the message delivered, resets failures; a message delivered elsewhere is dropped', async () => {
      const store = t.store();
      const [s, r] = [newKey(), newKey()];
      await store.putWebhook(r, 'https://x.example/', 'secret-secret-secret', T0);
      const [m1, m2] = [message(s, r), message(s, r)];
      await store.commit(batch([m1, m2]), T0);
      const [c1] = await store.claimDeliveries(T0, claim({ limit: 1 }));
      await store.failDelivery(c1!.delivery_id, T0, T0 + 10, 20);
      assert.equal((await store.getWebhook(r))!.consecutive_failures, 1);
      const done = await store.completeDelivery(c1!.delivery_id, T0 + 20);
      assert.deepEqual(done, { recipient_key: r, message_id: c1!.message.message_id, delivered: true });
      const stored = await store.getMessage(c1!.message.message_id);
      assert.equal(stored!.status, 'delivered');
      assert.equal(stored!.delivered_at, T0 + 20);
      assert.equal((await store.getWebhook(r))!.consecutive_failures, 0);
      assert.equal(await store.completeDelivery(c1!.delivery_id, T0 + 21), undefined, 'already gone');
      // The other message is acknowledged on another channel: its delivery is dropped at the next claim.
      const other = c1!.message.message_id === m1.message_id ? m2 : m1;
      await store.commit(batch([], { delivered: [{ message_id: other.message_id, recipient_key: r }] }), T0 + 30);
      assert.deepEqual(await store.claimDeliveries(T0 + 30, claim()), []);
      assert.equal(await store.nextDeliveryAt(), undefined, 'dropped, not just skipped');
    });

    it('fail: reschedules (same id, attempts counted), null drops it; the threshold disables and clears the agent', async () => {
      const store = t.store();
      const [s, r] = [newKey(), newKey()];
      await store.putWebhook(r, 'https://x.example/', 'secret-secret-secret', T0);
      const [m1, m2] = [message(s, r), message(s, r)];
      await store.commit(batch([m1, m2]), T0);
      const [c] = await store.claimDeliveries(T0, claim({ limit: 1 }));
      assert.deepEqual(await store.failDelivery(c!.delivery_id, T0, T0 + 10_000, 3), {
        consecutive_failures: 1,
        disabled: false,
      });
      const both = await store.claimDeliveries(T0 + 10_000, claim());
      assert.equal(both.length, 2);
      const again = both.find((x) => x.delivery_id === c!.delivery_id);
      const other = both.find((x) => x.delivery_id !== c!.delivery_id);
      assert.equal(again!.attempts, 1, 'same id, one failed attempt so far');
      assert.equal(other!.attempts, 0);
      assert.deepEqual(await store.failDelivery(again!.delivery_id, T0, null, 3), {
        consecutive_failures: 2,
        disabled: false,
      });
      assert.equal(await store.failDelivery(again!.delivery_id, T0, T0, 3), undefined, 'dropped');
      assert.deepEqual(await store.failDelivery(other!.delivery_id, T0, T0 + 20_000, 3), {
        consecutive_failures: 3,
        disabled: true,
      });
      const hook = await store.getWebhook(r);
      assert.equal(hook!.enabled, false);
      assert.equal(await store.nextDeliveryAt(), undefined);
      // A disabled webhook gets no new deliveries either; the messages stay `sent` for polls.
      await store.commit(batch([message(s, r)]), T0 + 30_000);
      assert.deepEqual(await store.claimDeliveries(T0 + 100_000, claim()), []);
      assert.equal((await store.getMessage(m2.message_id))!.status, 'sent');
      await store.putWebhook(r, 'https://x.example/', 'secret-secret-secret', T0 + 200_000);
      assert.equal((await store.getWebhook(r))!.enabled, true);
    });

    it('expired messages are not delivered; deleting the agent removes its webhook; sweep drops dead deliveries', async () => {
      const store = t.store();
      const [s, r] = [newKey(), newKey()];
      await store.putWebhook(r, 'https://x.example/', 'secret-secret-secret', T0);
      await store.commit(batch([message(s, r, { expires_at: T0 + 100 })]), T0);
      assert.deepEqual(await store.claimDeliveries(T0 + 100, claim()), []);
      await store.commit(batch([message(s, r, { expires_at: T0 + 100 })]), T0);
      await store.sweep(T0 + 200, 3_600_000);
      assert.equal(await store.nextDeliveryAt(), undefined);
      await store.commit(batch([message(s, r)]), T0);
      await store.deleteAgent(r);
      assert.equal(await store.getWebhook(r), undefined);
      assert.equal(await store.nextDeliveryAt(), undefined);
    });
  });
}
