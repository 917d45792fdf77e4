/**
 * The one contract every relay `Store` passes (SQLite runs it in store-sqlite.test.ts; a store
 * written anywhere else runs it the same way — see docs/architecture.md §5.1):
 *
 *     import { storeContract } from './store.contract.js';
 *     storeContract('mine', async () => ({ store: await openMine(), close: () => dropMine() }));
 *
 * What it proves: the atomic steps the relay relies on (a poll page taken by one caller only,
 * the inbox policy re-checked inside the commit, insert-if-absent agents), the two orders
 * (`seq` for the WebSocket backlog; `(created_at, message_id)` with cursors for polls and
 * threads), sweeping, ACLs, what deleting an agent removes, discovery filters and capability
 * tags, blobs (quota check and insert as one step, references from messages: access, expiry,
 * deletion refused, commit refusing a missing blob, sweeping). Every test gets a fresh store from `open` and passes every time explicitly: a store
 * never reads a clock.
 *
 * This file imports nothing from the relay but types, so it runs against any implementation.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { Capability } from '../../src/protocol/types.js';
import type {
  AgentRecord,
  BlobRecord,
  MessageRecord,
  ServeVerdict,
  Store,
  WriteBatch,
} from '../../src/relay/store/store.js';
import { webhookContract } from './store-webhooks.contract.js';

export interface StoreHarness {
  store: Store;
  /** Closes the store and removes what it left (files, schema). */
  close(): Promise<void>;
}

const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);
const HOUR = 3_600_000;
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z$/;

/** A fresh random public key (43 base64url characters). */
export const newKey = (): string => randomBytes(32).toString('base64url');
let counter = 0;
const newId = (at: number): string =>
  `msg_${Math.floor(at / 1000)}_${(++counter).toString(16).padStart(4, '0')}${randomBytes(4).toString('hex')}`;

export function agent(key: string, over: Partial<AgentRecord> = {}): AgentRecord {
  return {
    public_key: key,
    display_name: null,
    status: 'active',
    visibility: 'private',
    inbox_policy: 'open',
    created_at: T0,
    last_active_at: T0,
    metadata: {},
    capabilities: [],
    ...over,
  };
}

export function message(sender: string, recipient: string, over: Partial<MessageRecord> = {}): MessageRecord {
  const created = over.created_at ?? T0;
  return {
    seq: 0,
    message_id: newId(created),
    sender_key: sender,
    recipient_key: recipient,
    content_type: 'application/json',
    body_json: '{"n":1}',
    attachments: [],
    thread_id: null,
    in_reply_to: null,
    metadata: {},
    status: 'sent',
    created_at: created,
    expires_at: created + 24 * HOUR,
    delivered_at: null,
    ...over,
  };
}

const batch = (messages: MessageRecord[], over: Partial<WriteBatch> = {}): WriteBatch => ({
  messages,
  delivered: [],
  active: new Map(),
  ...over,
});
const cap = (name: string, tags: string[], description = ''): Capability => ({ name, description, tags });
const takeAll = (): ServeVerdict => 'taken';
const ids = (records: Array<{ message_id: string }>): string[] => records.map((m) => m.message_id);

export function storeContract(name: string, open: () => Promise<StoreHarness>): void {
  describe(`Store contract: ${name}`, () => {
    let h: StoreHarness;
    let store: Store;
    beforeEach(async () => {
      h = await open();
      store = h.store;
    });
    afterEach(() => h.close());

    /** Commits messages and returns them (seq assigned). */
    const put = async (...messages: MessageRecord[]): Promise<MessageRecord[]> => {
      const result = await store.commit(batch(messages), T0);
      assert.equal(result.refused.size, 0, 'nothing refused');
      return messages;
    };

    describe('agents', () => {
      it('ensureAgent inserts once and never overwrites; concurrent calls create exactly one', async () => {
        const k = newKey();
        assert.equal(await store.getAgent(k), undefined);
        const first = await store.ensureAgent(agent(k, { display_name: 'first' }));
        assert.equal(first.created, true);
        const second = await store.ensureAgent(agent(k, { display_name: 'second' }));
        assert.equal(second.created, false);
        assert.equal(second.agent.display_name, 'first');
        const racers = newKey();
        const results = await Promise.all(
          Array.from({ length: 8 }, (_, i) => store.ensureAgent(agent(racers, { display_name: `r${i}` }))),
        );
        assert.equal(results.filter((r) => r.created).length, 1);
        const stored = (await store.getAgent(racers))!;
        assert.ok(results.every((r) => r.agent.display_name === stored.display_name));
      });

      it('saveAgent replaces the profile; last_active_at never moves backwards', async () => {
        const k = newKey();
        const caps = [cap('translate', ['lang:es'], 'Translates text')];
        await store.saveAgent(
          agent(k, { last_active_at: T0 + 1000, metadata: { a: 'b' }, capabilities: caps, inbox_policy: 'allowlist' }),
        );
        await store.saveAgent(
          agent(k, {
            last_active_at: T0,
            display_name: 'Bot',
            metadata: { c: 'd' },
            capabilities: caps,
            inbox_policy: 'allowlist',
          }),
        );
        const got = (await store.getAgent(k))!;
        assert.equal(got.display_name, 'Bot');
        assert.deepEqual(got.metadata, { c: 'd' });
        assert.deepEqual(got.capabilities, caps);
        assert.equal(got.inbox_policy, 'allowlist');
        assert.equal(got.last_active_at, T0 + 1000);
      });

      it('activity stamps in a batch move last_active_at forward only', async () => {
        const k = newKey();
        await store.saveAgent(agent(k, { last_active_at: T0 + 5000 }));
        await store.commit(batch([], { active: new Map([[k, T0 + 1000]]) }), T0);
        assert.equal((await store.getAgent(k))!.last_active_at, T0 + 5000);
        await store.commit(batch([], { active: new Map([[k, T0 + 9000]]) }), T0);
        assert.equal((await store.getAgent(k))!.last_active_at, T0 + 9000);
      });

      it('deleteAgent removes the agent, its tags, the ACL it owns and the messages addressed to it — nothing else', async () => {
        const [a, b, c] = [newKey(), newKey(), newKey()];
        await store.saveAgent(agent(a, { visibility: 'public', capabilities: [cap('x', ['tag:deleted'])] }));
        await store.saveAgent(agent(b));
        await store.putAcl(a, b, 'block', T0);
        await store.putAcl(c, a, 'allow', T0);
        const [toA, fromA] = await put(message(b, a), message(a, b));
        await store.deleteAgent(a);
        assert.equal(await store.getAgent(a), undefined);
        assert.equal(await store.getMessage(toA!.message_id), undefined);
        assert.ok(await store.getMessage(fromA!.message_id), 'messages it sent stay with their recipients');
        assert.equal(await store.getAcl(a, b), undefined);
        assert.ok(await store.getAcl(c, a), "others' entries about it stay");
        assert.deepEqual(await store.capabilityTags('tag:deleted', 100), []);
        assert.ok(await store.getAgent(b));
      });
    });

    describe('discovery', () => {
      it('public, active agents only; tags (all), tag prefix, name, words, activity; most recent first, then key; cursor and limit', async () => {
        const ns = `ns${randomBytes(3).toString('hex')}`;
        const keys = Array.from({ length: 5 }, newKey);
        const [k0, k1, k2, k3, k4] = keys as [string, string, string, string, string];
        await store.saveAgent(
          agent(k0, {
            visibility: 'public',
            display_name: 'Alpha Translator',
            last_active_at: T0 + 3000,
            capabilities: [cap('translate', [`${ns}:a`, `${ns}:b`], 'Spanish and French')],
          }),
        );
        await store.saveAgent(
          agent(k1, {
            visibility: 'public',
            display_name: 'Beta',
            last_active_at: T0 + 2000,
            capabilities: [cap('summarise', [`${ns}:a`], 'Short texts')],
          }),
        );
        await store.saveAgent(
          agent(k2, {
            visibility: 'public',
            display_name: 'Gamma',
            last_active_at: T0 + 2000,
            capabilities: [cap('ocr', [`${ns}:c`], 'Images')],
          }),
        );
        await store.saveAgent(
          agent(k3, { visibility: 'private', display_name: 'Hidden', capabilities: [cap('x', [`${ns}:a`])] }),
        );
        await store.saveAgent(
          agent(k4, { visibility: 'public', status: 'suspended', capabilities: [cap('x', [`${ns}:a`])] }),
        );
        const page = (over: Partial<Parameters<Store['discover']>[0]>) =>
          store.discover({ tags: [], words: [], limit: 50, maxBytes: 1 << 20, tag_prefix: `${ns}:`, ...over });
        const q = async (over: Partial<Parameters<Store['discover']>[0]>) => (await page(over)).agents;
        const tied = [k1, k2].sort();
        assert.deepEqual(ids2(await q({})), [k0, ...tied]);
        assert.deepEqual(ids2(await q({ tags: [`${ns}:a`] })), [k0, k1]);
        assert.deepEqual(ids2(await q({ tags: [`${ns}:a`, `${ns}:b`] })), [k0]);
        assert.deepEqual(ids2(await q({ name: 'TRANSLATOR' })), [k0]);
        assert.deepEqual(ids2(await q({ words: ['spanish', 'french'] })), [k0]);
        assert.deepEqual(ids2(await q({ words: ['spanish', 'images'] })), []);
        assert.deepEqual(ids2(await q({ active_since: T0 + 2500 })), [k0]);
        const page1 = await page({ limit: 2 });
        assert.deepEqual(ids2(page1.agents), [k0, tied[0]]);
        assert.equal(page1.hasMore, true);
        const last = page1.agents[1]!;
        const page2 = await page({ limit: 2, after: { t: last.last_active_at, k: last.public_key } });
        assert.deepEqual(ids2(page2.agents), [tied[1]]);
        assert.equal(page2.hasMore, false);
        assert.equal((await page({ limit: 3 })).hasMore, false);
      });

      it('a page stops at maxBytes of capabilities (at least one agent), with hasMore', async () => {
        const ns = `nb${randomBytes(3).toString('hex')}`;
        const heavy = (i: number) => [cap(`c${i}`, [`${ns}:t`], 'x'.repeat(1000))];
        const keys = Array.from({ length: 4 }, newKey);
        for (const [i, k] of keys.entries())
          await store.saveAgent(
            agent(k, { visibility: 'public', last_active_at: T0 + 10 - i, capabilities: heavy(i) }),
          );
        const page = (maxBytes: number, after?: { t: number; k: string }) =>
          store.discover({ tags: [`${ns}:t`], words: [], limit: 100, maxBytes, ...(after ? { after } : {}) });
        // One agent weighs a little over 1000 bytes: 2500 holds two, 10 still one.
        const two = await page(2500);
        assert.deepEqual(ids2(two.agents), keys.slice(0, 2));
        assert.equal(two.hasMore, true);
        const one = await page(10);
        assert.deepEqual(ids2(one.agents), keys.slice(0, 1));
        assert.equal(one.hasMore, true);
        const last = two.agents[1]!;
        const rest = await page(2500, { t: last.last_active_at, k: last.public_key });
        assert.deepEqual(ids2(rest.agents), keys.slice(2));
        assert.equal(rest.hasMore, false);
      });

      it('capability tags of public, active agents with counts, most used first, then by tag; by prefix', async () => {
        const ns = `cap${randomBytes(3).toString('hex')}`;
        await store.saveAgent(
          agent(newKey(), { visibility: 'public', capabilities: [cap('a', [`${ns}:x`, `${ns}:y`])] }),
        );
        await store.saveAgent(
          agent(newKey(), { visibility: 'public', capabilities: [cap('b', [`${ns}:y`]), cap('c', [`${ns}:y`])] }),
        );
        await store.saveAgent(agent(newKey(), { visibility: 'private', capabilities: [cap('d', [`${ns}:z`])] }));
        assert.deepEqual(await store.capabilityTags(`${ns}:`, 100), [
          { tag: `${ns}:y`, agent_count: 2 },
          { tag: `${ns}:x`, agent_count: 1 },
        ]);
        assert.deepEqual(await store.capabilityTags(`${ns}:x`, 100), [{ tag: `${ns}:x`, agent_count: 1 }]);
        // `limit` keeps the most used.
        assert.deepEqual(await store.capabilityTags(`${ns}:`, 1), [{ tag: `${ns}:y`, agent_count: 2 }]);
      });
    });

    describe('commit', () => {
      it('stores messages with increasing seq; getMessage and getMessages by id (unknown ids left out)', async () => {
        const [a, b] = [newKey(), newKey()];
        const [m1, m2] = await put(
          message(a, b, {
            body_json: '{"big":12345678901234567890}',
            metadata: { k: [1] },
            thread_id: 't',
            in_reply_to: 'msg_0_x',
          }),
          message(a, b),
        );
        assert.ok(m1!.seq > 0 && m2!.seq > m1!.seq, `seq ${m1!.seq} then ${m2!.seq}`);
        const got = (await store.getMessage(m1!.message_id))!;
        assert.deepEqual(got, m1, 'stored exactly, body text verbatim');
        assert.equal(await store.getMessage('msg_0_unknown'), undefined);
        const many = await store.getMessages([m2!.message_id, 'msg_0_unknown', m1!.message_id]);
        assert.deepEqual(ids(many).sort(), [m1!.message_id, m2!.message_id].sort());
        assert.deepEqual(await store.getMessages([]), []);
      });

      it('re-checks the inbox policy inside the transaction: closed, allowlist, blocklist, suspended, self, unknown recipient', async () => {
        const [s, closed, allow, block, suspended, unknown] = Array.from({ length: 6 }, newKey) as [
          string,
          string,
          string,
          string,
          string,
          string,
        ];
        await store.saveAgent(agent(closed, { inbox_policy: 'closed' }));
        await store.saveAgent(agent(allow, { inbox_policy: 'allowlist' }));
        await store.saveAgent(agent(block, { inbox_policy: 'blocklist' }));
        await store.saveAgent(agent(suspended, { status: 'suspended' }));
        await store.putAcl(block, s, 'block', T0);
        const refusedOf = async (m: MessageRecord) => (await store.commit(batch([m]), T0)).refused.get(m.message_id);
        assert.equal(await refusedOf(message(s, closed)), 'acl_denied');
        assert.equal(await refusedOf(message(closed, closed)), undefined, 'to yourself is always allowed');
        assert.equal(await refusedOf(message(s, allow)), 'acl_denied');
        await store.putAcl(allow, s, 'allow', T0);
        assert.equal(await refusedOf(message(s, allow)), undefined);
        assert.equal(await refusedOf(message(s, block)), 'acl_denied');
        assert.equal(await refusedOf(message(newKey(), block)), undefined);
        assert.equal(await refusedOf(message(s, suspended)), 'forbidden');
        assert.equal(await refusedOf(message(s, unknown)), undefined, 'no agent record: open');
        // A refused message is not stored; the others of its batch are.
        const refused = message(s, closed);
        const fine = message(s, unknown);
        const result = await store.commit(batch([refused, fine]), T0);
        assert.deepEqual([...result.refused.keys()], [refused.message_id]);
        assert.equal(await store.getMessage(refused.message_id), undefined);
        assert.ok(await store.getMessage(fine.message_id));
      });

      it('an ACL change committed before the message decides it (no stale check)', async () => {
        const [s, r] = [newKey(), newKey()];
        await store.saveAgent(agent(r, { inbox_policy: 'blocklist' }));
        const before = message(s, r);
        assert.equal((await store.commit(batch([before]), T0)).refused.size, 0);
        await store.putAcl(r, s, 'block', T0);
        const after = message(s, r);
        assert.equal((await store.commit(batch([after]), T0)).refused.get(after.message_id), 'acl_denied');
        await store.deleteAcl(r, s);
        const again = message(s, r);
        assert.equal((await store.commit(batch([again]), T0)).refused.size, 0);
      });

      it('all or nothing: a batch that fails stores none of its messages', async () => {
        const [a, b] = [newKey(), newKey()];
        const m = message(a, b);
        await assert.rejects(store.commit(batch([message(a, b), m, { ...m }]), T0));
        assert.equal((await store.takeSent(b, { status: 'sent' }, 10, T0, takeAll)).messages.length, 0);
      });

      it('acks mark sent, unexpired messages of that recipient delivered, and say which took effect', async () => {
        const [a, b] = [newKey(), newKey()];
        const [m1, m2, m3] = await put(message(a, b), message(a, b, { expires_at: T0 + 10 }), message(a, b));
        const result = await store.commit(
          batch([], {
            delivered: [
              { message_id: m1!.message_id, recipient_key: b },
              { message_id: m2!.message_id, recipient_key: b },
              { message_id: m3!.message_id, recipient_key: a },
              { message_id: 'msg_0_unknown', recipient_key: b },
            ],
          }),
          T0 + 100,
        );
        assert.deepEqual(result.delivered, [{ message_id: m1!.message_id, recipient_key: b }]);
        const d = (await store.getMessage(m1!.message_id))!;
        assert.equal(d.status, 'delivered');
        assert.equal(d.delivered_at, T0 + 100);
        assert.equal((await store.getMessage(m2!.message_id))!.status, 'sent', 'expired: not delivered');
        assert.equal((await store.getMessage(m3!.message_id))!.status, 'sent', 'not the recipient: ignored');
        const twice = await store.commit(
          batch([], { delivered: [{ message_id: m1!.message_id, recipient_key: b }] }),
          T0 + 200,
        );
        assert.deepEqual(twice.delivered, []);
        assert.equal((await store.getMessage(m1!.message_id))!.delivered_at, T0 + 100);
      });
    });

    describe('polls (takeSent) and inbox views', () => {
      it('oldest first by (created_at, message_id); marks what it takes; limit and has_more', async () => {
        const [a, b] = [newKey(), newKey()];
        const same = T0 + 5;
        const ms = await put(
          message(a, b, { created_at: T0 + 9 }),
          message(a, b, { created_at: same }),
          message(a, b, { created_at: same }),
          message(a, b, { created_at: T0 + 1 }),
        );
        const order = [...ms].sort((x, y) => x.created_at - y.created_at || (x.message_id < y.message_id ? -1 : 1));
        const first = await store.takeSent(b, { status: 'sent' }, 3, T0 + 50, takeAll);
        assert.deepEqual(ids(first.messages), ids(order.slice(0, 3)));
        assert.equal(first.hasMore, true);
        for (const m of first.messages) {
          assert.equal(m.status, 'delivered');
          assert.equal(m.delivered_at, T0 + 50);
        }
        assert.equal((await store.getMessage(order[0]!.message_id))!.status, 'delivered');
        const second = await store.takeSent(b, { status: 'sent' }, 3, T0 + 50, takeAll);
        assert.deepEqual(ids(second.messages), ids(order.slice(3)));
        assert.equal(second.hasMore, false);
        assert.deepEqual((await store.takeSent(b, { status: 'sent' }, 3, T0 + 50, takeAll)).messages, []);
      });

      it('N concurrent takes never hand out the same message, and together hand out all', async () => {
        const [a, b] = [newKey(), newKey()];
        const all = await put(...Array.from({ length: 60 }, (_, i) => message(a, b, { created_at: T0 + i })));
        const pages = await Promise.all(
          Array.from({ length: 12 }, () => store.takeSent(b, { status: 'sent' }, 7, T0 + 100, takeAll)),
        );
        let taken = pages.flatMap((p) => ids(p.messages));
        while (taken.length < all.length) {
          const more = await store.takeSent(b, { status: 'sent' }, 7, T0 + 100, takeAll);
          if (more.messages.length === 0) break;
          taken = [...taken, ...ids(more.messages)];
        }
        assert.equal(new Set(taken).size, taken.length, 'a message was taken twice');
        assert.deepEqual(new Set(taken), new Set(ids(all)));
      });

      it('serve decides: skip leaves a message sent (named in skipped), full ends the page with has_more', async () => {
        const [a, b] = [newKey(), newKey()];
        const [m1, m2, m3] = await put(
          message(a, b, { created_at: T0 + 1 }),
          message(a, b, { created_at: T0 + 2 }),
          message(a, b, { created_at: T0 + 3 }),
        );
        const page = await store.takeSent(b, { status: 'sent' }, 10, T0 + 10, (r) =>
          r.message_id === m1!.message_id ? 'skip' : r.message_id === m3!.message_id ? 'full' : 'taken',
        );
        assert.deepEqual(ids(page.messages), [m2!.message_id]);
        assert.deepEqual(page.skipped, [m1!.message_id]);
        assert.equal(page.hasMore, true);
        assert.equal((await store.getMessage(m1!.message_id))!.status, 'sent');
        assert.equal((await store.getMessage(m3!.message_id))!.status, 'sent');
      });

      it('filters: sender, in_reply_to, thread (root included), since, cursor; expired messages are not taken', async () => {
        const [a, b, c] = [newKey(), newKey(), newKey()];
        const root = message(a, b, { created_at: T0 + 1 });
        const [, reply, other, fromC, late] = await put(
          root,
          message(a, b, { created_at: T0 + 2, thread_id: root.message_id, in_reply_to: root.message_id }),
          message(a, b, { created_at: T0 + 3 }),
          message(c, b, { created_at: T0 + 4 }),
          message(a, b, { created_at: T0 + 5, expires_at: T0 + 6 }),
        );
        const peek = async (f: Partial<Parameters<Store['listInbox']>[1]>) =>
          ids((await store.listInbox(b, { status: 'sent', ...f }, 10, T0 + 5, 1 << 20)).messages);
        assert.deepEqual(await peek({ sender_key: c }), [fromC!.message_id]);
        assert.deepEqual(await peek({ in_reply_to: root.message_id }), [reply!.message_id]);
        assert.deepEqual(await peek({ thread_id: root.message_id }), [root.message_id, reply!.message_id]);
        assert.deepEqual(await peek({ since: T0 + 3 }), [fromC!.message_id, late!.message_id]);
        assert.deepEqual(await peek({ after: { t: reply!.created_at, id: reply!.message_id } }), [
          other!.message_id,
          fromC!.message_id,
          late!.message_id,
        ]);
        const taken = await store.takeSent(b, { status: 'sent', sender_key: a }, 10, T0 + 10, takeAll);
        assert.deepEqual(
          ids(taken.messages),
          [root.message_id, reply!.message_id, other!.message_id],
          'the expired one is not taken',
        );
        assert.equal((await store.getMessage(fromC!.message_id))!.status, 'sent', 'filtered out: untouched');
      });

      it('take ids: a take records its id on what it marks delivered; a delivered view by take shows exactly those', async () => {
        const [a, b] = [newKey(), newKey()];
        const [m1, m2, m3] = await put(
          message(a, b, { created_at: T0 + 1 }),
          message(a, b, { created_at: T0 + 2 }),
          message(a, b, { created_at: T0 + 3 }),
        );
        await store.takeSent(b, { status: 'sent', take: 'takeOne' }, 2, T0 + 5, takeAll);
        await store.takeSent(b, { status: 'sent' }, 10, T0 + 5, takeAll);
        const one = await store.listInbox(b, { status: 'delivered', take: 'takeOne' }, 10, T0 + 10, 1 << 20);
        assert.deepEqual(ids(one.messages), [m1!.message_id, m2!.message_id]);
        assert.deepEqual(
          (await store.listInbox(b, { status: 'delivered', take: 'other' }, 10, T0 + 10, 1 << 20)).messages,
          [],
        );
        assert.deepEqual(
          (await store.listInbox(a, { status: 'delivered', take: 'takeOne' }, 10, T0 + 10, 1 << 20)).messages,
          [],
          'another recipient sees none',
        );
        assert.deepEqual(
          ids((await store.listInbox(b, { status: 'delivered' }, 10, T0 + 10, 1 << 20)).messages),
          ids([m1!, m2!, m3!]),
        );
      });

      it('inbox views: delivered history, expired (stored or overdue), paged by (created_at, message_id), bounded by bytes', async () => {
        const [a, b] = [newKey(), newKey()];
        const [d1, d2, overdue] = await put(
          message(a, b, { created_at: T0 + 1, body_json: `"${'x'.repeat(1000)}"` }),
          message(a, b, { created_at: T0 + 2, body_json: `"${'y'.repeat(1000)}"` }),
          message(a, b, { created_at: T0 + 3, expires_at: T0 + 4 }),
        );
        await store.takeSent(b, { status: 'sent' }, 2, T0, takeAll);
        const delivered = await store.listInbox(b, { status: 'delivered' }, 10, T0 + 10, 1 << 20);
        assert.deepEqual(ids(delivered.messages), [d1!.message_id, d2!.message_id]);
        const small = await store.listInbox(b, { status: 'delivered' }, 10, T0 + 10, 1500);
        assert.deepEqual(ids(small.messages), [d1!.message_id], 'stops before passing the byte budget');
        assert.equal(small.hasMore, true);
        const tiny = await store.listInbox(b, { status: 'delivered' }, 10, T0 + 10, 1);
        assert.equal(tiny.messages.length, 1, 'at least one message per page');
        const paged = await store.listInbox(
          b,
          { status: 'delivered', after: { t: d1!.created_at, id: d1!.message_id } },
          10,
          T0 + 10,
          1 << 20,
        );
        assert.deepEqual(ids(paged.messages), [d2!.message_id]);
        assert.deepEqual(ids((await store.listInbox(b, { status: 'expired' }, 10, T0 + 10, 1 << 20)).messages), [
          overdue!.message_id,
        ]);
      });

      it('the WebSocket backlog (pending): sent and unexpired, in seq order after a position, bounded by count and bytes', async () => {
        const [a, b] = [newKey(), newKey()];
        const ms = await put(
          message(a, b, { created_at: T0 + 9 }),
          message(a, b, { created_at: T0 + 1, body_json: `"${'z'.repeat(2000)}"` }),
          message(a, b, { created_at: T0 + 5, expires_at: T0 + 6 }),
          message(a, b, { created_at: T0 + 3 }),
        );
        const [m0, m1, , m3] = ms;
        const all = await store.pending(b, 0, 10, T0 + 10);
        assert.deepEqual(ids(all), [m0!.message_id, m1!.message_id, m3!.message_id], 'seq order, expired left out');
        assert.deepEqual(ids(await store.pending(b, m1!.seq, 10, T0 + 10)), [m3!.message_id]);
        assert.deepEqual(ids(await store.pending(b, 0, 1, T0 + 10)), [m0!.message_id]);
        assert.deepEqual(
          ids(await store.pending(b, 0, 10, T0 + 10, 100)),
          [m0!.message_id, m1!.message_id],
          'stops once the bodies reach the budget',
        );
        await store.commit(batch([], { delivered: [{ message_id: m0!.message_id, recipient_key: b }] }), T0 + 10);
        assert.deepEqual(
          ids(await store.pending(b, 0, 10, T0 + 10)),
          [m1!.message_id, m3!.message_id],
          'delivered left out',
        );
      });

      it('threads: only for a participant, root included, oldest first, with a cursor and a byte bound', async () => {
        const [a, b, c] = [newKey(), newKey(), newKey()];
        const root = message(a, b, { created_at: T0 + 1 });
        const [, r1, r2] = await put(
          root,
          message(b, a, { created_at: T0 + 2, thread_id: root.message_id }),
          message(a, b, { created_at: T0 + 3, thread_id: root.message_id }),
          message(c, b, { created_at: T0 + 4, thread_id: root.message_id }),
        );
        const page = await store.thread(a, root.message_id, undefined, 10, 1 << 20);
        assert.deepEqual(
          ids(page.messages),
          [root.message_id, r1!.message_id, r2!.message_id],
          "c's message is not a's to see",
        );
        assert.equal((await store.thread(c, root.message_id, undefined, 10, 1 << 20)).messages.length, 1);
        assert.deepEqual((await store.thread(newKey(), root.message_id, undefined, 10, 1 << 20)).messages, []);
        const first = await store.thread(a, root.message_id, undefined, 2, 1 << 20);
        assert.equal(first.hasMore, true);
        const last = first.messages[1]!;
        assert.deepEqual(
          ids(
            (await store.thread(a, root.message_id, { t: last.created_at, id: last.message_id }, 2, 1 << 20)).messages,
          ),
          [r2!.message_id],
        );
      });
    });

    describe('sweep', () => {
      it('expires overdue sent messages, purges delivered ones past expiry and expired ones past retention', async () => {
        const [a, b] = [newKey(), newKey()];
        const [overdue, deliveredOld, fresh] = await put(
          message(a, b, { expires_at: T0 + 10 }),
          message(a, b, { expires_at: T0 + 10 }),
          message(a, b, { expires_at: T0 + HOUR }),
        );
        await store.commit(
          batch([], { delivered: [{ message_id: deliveredOld!.message_id, recipient_key: b }] }),
          T0 + 5,
        );
        const first = await store.sweep(T0 + 20, HOUR);
        assert.deepEqual(first, { expired: 1, purged: 1 });
        assert.equal((await store.getMessage(overdue!.message_id))!.status, 'expired');
        assert.equal(await store.getMessage(deliveredOld!.message_id), undefined);
        assert.equal((await store.getMessage(fresh!.message_id))!.status, 'sent');
        assert.deepEqual(
          await store.sweep(T0 + 20 + HOUR / 2, HOUR),
          { expired: 0, purged: 0 },
          'expired ones are kept for the retention',
        );
        assert.deepEqual(await store.sweep(T0 + 11 + HOUR, HOUR), { expired: 1, purged: 1 });
        assert.equal(await store.getMessage(overdue!.message_id), undefined);
      });
    });

    describe('ACL', () => {
      it('put (insert, then change keeping id and created_at), get, list by id with type and cursor, delete', async () => {
        const owner = newKey();
        const [p1, p2, p3] = [newKey(), newKey(), newKey()];
        const e1 = await store.putAcl(owner, p1, 'allow', T0);
        assert.equal(e1.owner_key, owner);
        assert.equal(e1.peer_key, p1);
        assert.equal(e1.entry_type, 'allow');
        assert.match(e1.created_at, RFC3339);
        assert.equal(Date.parse(e1.created_at), T0);
        const e2 = await store.putAcl(owner, p2, 'block', T0 + 1000);
        await store.putAcl(owner, p3, 'allow', T0 + 2000);
        const changed = await store.putAcl(owner, p1, 'block', T0 + 5000);
        assert.equal(changed.id, e1.id);
        assert.equal(changed.created_at, e1.created_at);
        assert.equal(changed.entry_type, 'block');
        assert.deepEqual(await store.getAcl(owner, p1), changed);
        assert.equal(await store.getAcl(owner, newKey()), undefined);
        assert.deepEqual(
          (await store.listAcl(owner, undefined, 0, 10)).map((e) => e.peer_key),
          [p1, p2, p3],
        );
        assert.deepEqual(
          (await store.listAcl(owner, 'block', 0, 10)).map((e) => e.peer_key),
          [p1, p2],
        );
        assert.deepEqual(
          (await store.listAcl(owner, undefined, e2.id, 10)).map((e) => e.peer_key),
          [p3],
        );
        assert.deepEqual(
          (await store.listAcl(owner, undefined, 0, 1)).map((e) => e.peer_key),
          [p1],
        );
        assert.deepEqual(await store.listAcl(newKey(), undefined, 0, 10), []);
        assert.equal(await store.deleteAcl(owner, p2), true);
        assert.equal(await store.deleteAcl(owner, p2), false);
        assert.equal(await store.getAcl(owner, p2), undefined);
      });
    });

    webhookContract({ store: () => store, newKey, message, T0 });
    describe('blobs', () => {
      const DAY = 24 * HOUR;
      const QUOTA = { maxCount: 3, maxBytes: 1000 };
      let blobCounter = 0;
      const blob = (owner: string, over: Partial<BlobRecord> = {}): BlobRecord => ({
        blob_id: `blob_${(++blobCounter).toString(16).padStart(4, '0')}${randomBytes(4).toString('hex')}`,
        owner_key: owner,
        hash: 'ab'.repeat(32),
        size: 100,
        content_type: 'application/pdf',
        created_at: T0,
        expires_at: T0 + 7 * DAY,
        ...over,
      });
      const withBlob = (m: MessageRecord, ...ids: string[]): MessageRecord => ({
        ...m,
        attachments: ids.map((blob_id) => ({ blob_id })),
      });

      it('insertBlob stores metadata and refuses past the count or bytes quota; usage counts unexpired blobs only', async () => {
        const owner = newKey();
        const first = blob(owner, { size: 600 });
        assert.deepEqual(await store.insertBlob(first, QUOTA, T0), { inserted: true, usage: { count: 1, bytes: 600 } });
        assert.deepEqual(await store.getBlob(first.blob_id), first);
        assert.deepEqual(await store.insertBlob(blob(owner, { size: 401 }), QUOTA, T0), {
          inserted: false,
          reason: 'bytes',
          usage: { count: 1, bytes: 600 },
        });
        assert.equal((await store.insertBlob(blob(owner, { size: 400 }), QUOTA, T0)).inserted, true);
        assert.equal((await store.insertBlob(blob(owner, { size: 0 }), QUOTA, T0)).inserted, true);
        assert.deepEqual(await store.insertBlob(blob(owner, { size: 0 }), QUOTA, T0), {
          inserted: false,
          reason: 'count',
          usage: { count: 3, bytes: 1000 },
        });
        // Another agent has its own quota; expired blobs no longer count.
        assert.equal((await store.insertBlob(blob(newKey()), QUOTA, T0)).inserted, true);
        assert.deepEqual(await store.blobUsage(owner, T0 + 7 * DAY), { count: 0, bytes: 0 });
        assert.equal(await store.getBlob('blob_000000000000'), undefined);
      });

      it('insertBlob is atomic: concurrent inserts of one owner never go over the quota together', async () => {
        const owner = newKey();
        const results = await Promise.all(
          Array.from({ length: 10 }, () => store.insertBlob(blob(owner, { size: 10 }), QUOTA, T0)),
        );
        assert.equal(results.filter((r) => r.inserted).length, 3);
        assert.deepEqual(await store.blobUsage(owner, T0), { count: 3, bytes: 30 });
      });

      it('a committed message references its blobs: readable by its sender and recipient, extends expiry, blocks deletion', async () => {
        const a = newKey();
        const b = newKey();
        const stranger = newKey();
        const x = blob(a);
        await store.insertBlob(x, QUOTA, T0);
        assert.deepEqual(await store.readableBlob(x.blob_id, a, T0), x);
        assert.equal(await store.readableBlob(x.blob_id, b, T0), undefined);
        const m = withBlob(message(a, b, { expires_at: T0 + 30 * DAY }), x.blob_id);
        assert.equal((await store.commit(batch([m]), T0)).refused.size, 0);
        assert.equal((await store.readableBlob(x.blob_id, b, T0))?.blob_id, x.blob_id);
        assert.equal(await store.readableBlob(x.blob_id, stranger, T0), undefined);
        assert.equal((await store.getBlob(x.blob_id))?.expires_at, T0 + 30 * DAY);
        assert.equal(await store.deleteBlob(b, x.blob_id, T0), 'not_found');
        assert.equal(await store.deleteBlob(a, x.blob_id, T0), 'referenced');
        // Once the message expired, the recipient loses access and the owner may delete.
        const later = T0 + 30 * DAY;
        assert.equal(await store.readableBlob(x.blob_id, b, later), undefined);
        assert.equal(await store.deleteBlob(a, x.blob_id, later), 'deleted');
        assert.equal(await store.getBlob(x.blob_id), undefined);
        assert.equal(await store.deleteBlob(a, x.blob_id, later), 'not_found');
      });

      it("commit refuses a message whose blob is missing, someone else's or expired ({ blob_missing }), storing nothing of it", async () => {
        const a = newKey();
        const b = newKey();
        const mine = blob(a);
        const theirs = blob(b);
        const old = blob(a, { expires_at: T0 });
        for (const x of [mine, theirs, old]) await store.insertBlob(x, { maxCount: 10, maxBytes: 10_000 }, T0 - 1);
        const ok = withBlob(message(a, b), mine.blob_id);
        const missing = withBlob(message(a, b), mine.blob_id, 'blob_ffffffffffff');
        const foreign = withBlob(message(a, b), theirs.blob_id);
        const expired = withBlob(message(a, b), old.blob_id);
        const result = await store.commit(batch([ok, missing, foreign, expired]), T0);
        assert.deepEqual(result.refused.get(missing.message_id), { blob_missing: 'blob_ffffffffffff' });
        assert.deepEqual(result.refused.get(foreign.message_id), { blob_missing: theirs.blob_id });
        assert.deepEqual(result.refused.get(expired.message_id), { blob_missing: old.blob_id });
        assert.equal(result.refused.has(ok.message_id), false);
        assert.equal(await store.getMessage(missing.message_id), undefined);
        assert.equal(await store.readableBlob(theirs.blob_id, a, T0), undefined);
        assert.deepEqual((await store.getMessage(ok.message_id))?.attachments, [{ blob_id: mine.blob_id }]);
      });

      it('sweepBlobs removes expired, unreferenced metadata (bounded by limit) and returns it for the bytes', async () => {
        const a = newKey();
        const b = newKey();
        const keep = blob(a);
        const gone1 = blob(a, { expires_at: T0 + HOUR });
        const gone2 = blob(a, { expires_at: T0 + HOUR });
        const held = blob(a, { expires_at: T0 + HOUR });
        for (const x of [keep, gone1, gone2, held]) await store.insertBlob(x, { maxCount: 10, maxBytes: 10_000 }, T0);
        await store.commit(batch([withBlob(message(a, b, { expires_at: T0 + 2 * DAY }), held.blob_id)]), T0);
        const at = T0 + 2 * HOUR;
        const first = await store.sweepBlobs(at, 1);
        const second = await store.sweepBlobs(at, 10);
        assert.deepEqual([...first, ...second].map((g) => g.blob_id).sort(), [gone1.blob_id, gone2.blob_id].sort());
        assert.deepEqual(
          [...first, ...second].map((g) => g.owner_key),
          [a, a],
        );
        assert.deepEqual(await store.sweepBlobs(at, 10), []);
        assert.ok(await store.getBlob(keep.blob_id));
        assert.ok(await store.getBlob(held.blob_id), 'referenced by an unexpired message: its expiry was extended');
        // After the message expired and the message sweep ran, the blob goes too.
        const end = T0 + 8 * DAY;
        await store.sweep(end, HOUR);
        assert.deepEqual(
          (await store.sweepBlobs(end, 10)).map((g) => g.blob_id).sort(),
          [keep.blob_id, held.blob_id].sort(),
        );
      });

      it('deleteAgent removes its blobs and the references of messages to and from it', async () => {
        const a = newKey();
        const b = newKey();
        const x = blob(a);
        const y = blob(b);
        await store.insertBlob(x, QUOTA, T0);
        await store.insertBlob(y, QUOTA, T0);
        await store.commit(batch([withBlob(message(b, a), y.blob_id)]), T0);
        assert.ok(await store.readableBlob(y.blob_id, a, T0));
        await store.deleteAgent(a);
        assert.equal(await store.getBlob(x.blob_id), undefined);
        assert.deepEqual(await store.blobUsage(a, T0), { count: 0, bytes: 0 });
        assert.equal(await store.readableBlob(y.blob_id, a, T0), undefined);
        assert.equal(
          await store.deleteBlob(b, y.blob_id, T0),
          'deleted',
          'the message to the deleted agent is gone, so is its reference',
        );
      });
    });

    describe('health', () => {
      it('ping resolves; health says ok', async () => {
        await store.ping();
        assert.deepEqual(await store.health(T0), { ok: true });
      });
    });
  });
}

const ids2 = (agents: AgentRecord[]): string[] => agents.map((a) => a.public_key);
