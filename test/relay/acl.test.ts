/** Conformance: inbox access control (§3.9) and ownership (§2.4). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { connect, newAgent, startRelay } from '../helpers/relay.js';
import { Api, expectError, expectOk, RFC3339_UTC_RE } from './_support.js';

describe('§3.9 ACL entries', () => {
  it('PUT → 200 entry; GET one; upsert keeps the id when switching type; DELETE → 204 then 404', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const peer = newAgent();
    const base = `/v1/agents/${a.publicKey}/acl`;
    const put = await api.put(a, base, { peer_key: peer.publicKey, entry_type: 'allow' });
    const entry = expectOk(put, 200);
    assert.deepEqual(Object.keys(entry).sort(), ['created_at', 'entry_type', 'id', 'owner_key', 'peer_key']);
    assert.ok(Number.isInteger(entry.id), 'id is an integer');
    assert.equal(entry.owner_key, a.publicKey);
    assert.equal(entry.peer_key, peer.publicKey);
    assert.equal(entry.entry_type, 'allow');
    assert.match(entry.created_at, RFC3339_UTC_RE);

    assert.deepEqual(expectOk(await api.get(a, `${base}/${peer.publicKey}`)), entry);

    const switched = expectOk(await api.put(a, base, { peer_key: peer.publicKey, entry_type: 'block' }));
    assert.equal(switched.id, entry.id);
    assert.equal(switched.entry_type, 'block');
    const list = expectOk(await api.get(a, base));
    assert.equal(list.entries.length, 1, 'one entry per (owner, peer)');

    const del = await api.delete(a, `${base}/${peer.publicKey}`);
    assert.equal(del.status, 204);
    assert.equal(del.text, '');
    expectError(await api.get(a, `${base}/${peer.publicKey}`), 404, 'not_found');
    expectError(await api.delete(a, `${base}/${peer.publicKey}`), 404, 'not_found');
    expectError(await api.get(a, `${base}/${newAgent().publicKey}`), 404, 'not_found');
  });

  it('list: shape, entry_type (and type) filter, limit bounds, pagination', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const base = `/v1/agents/${a.publicKey}/acl`;
    const allow: string[] = [];
    const block: string[] = [];
    for (let i = 0; i < 5; i++) {
      const k = newAgent().publicKey;
      (i % 2 ? block : allow).push(k);
      expectOk(await api.put(a, base, { peer_key: k, entry_type: i % 2 ? 'block' : 'allow' }));
    }
    const all = expectOk(await api.get(a, base));
    assert.deepEqual(Object.keys(all).sort(), ['entries', 'has_more', 'next_cursor']);
    assert.equal(all.entries.length, 5);
    assert.equal(all.has_more, false);
    assert.equal(all.next_cursor, null);
    const peers = (res: { entries: Array<{ peer_key: string }> }) => res.entries.map((e) => e.peer_key).sort();
    assert.deepEqual(peers(expectOk(await api.get(a, `${base}?entry_type=allow`))), [...allow].sort());
    assert.deepEqual(peers(expectOk(await api.get(a, `${base}?entry_type=block`))), [...block].sort());
    assert.deepEqual(peers(expectOk(await api.get(a, `${base}?type=block`))), [...block].sort());
    expectError(await api.get(a, `${base}?entry_type=maybe`), 400, 'bad_request');
    expectError(await api.get(a, `${base}?limit=0`), 400, 'bad_request');
    expectError(await api.get(a, `${base}?limit=1001`), 400, 'bad_request');
    expectOk(await api.get(a, `${base}?limit=1000`));

    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const target: string = `${base}?limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
      const page = expectOk(await api.get(a, target));
      seen.push(...page.entries.map((e: { peer_key: string }) => e.peer_key));
      cursor = page.has_more ? page.next_cursor : null;
      assert.ok(++pages < 10);
    } while (cursor);
    assert.equal(pages, 3);
    assert.equal(new Set(seen).size, 5);
    assert.deepEqual([...seen].sort(), [...allow, ...block].sort());
  });

  it('list: default limit is 100', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const base = `/v1/agents/${a.publicKey}/acl`;
    await Promise.all(
      Array.from({ length: 101 }, () =>
        api.put(a, base, { peer_key: newAgent().publicKey, entry_type: 'block' }).then((r) => expectOk(r)),
      ),
    );
    const page = expectOk(await api.get(a, base));
    assert.equal(page.entries.length, 100);
    assert.equal(page.has_more, true);
    const rest = expectOk(await api.get(a, `${base}?cursor=${encodeURIComponent(page.next_cursor)}`));
    assert.equal(rest.entries.length, 1);
    assert.equal(rest.has_more, false);
  });

  it('own only: another key → 403 forbidden for PUT, GET list, GET one, DELETE', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const b = newAgent();
    const peer = newAgent().publicKey;
    expectOk(await api.put(b, `/v1/agents/${b.publicKey}/acl`, { peer_key: peer, entry_type: 'block' }));
    const base = `/v1/agents/${b.publicKey}/acl`;
    expectError(await api.put(a, base, { peer_key: peer, entry_type: 'allow' }), 403, 'forbidden');
    expectError(await api.get(a, base), 403, 'forbidden');
    expectError(await api.get(a, `${base}/${peer}`), 403, 'forbidden');
    expectError(await api.delete(a, `${base}/${peer}`), 403, 'forbidden');
    // unchanged
    assert.equal(expectOk(await api.get(b, `${base}/${peer}`)).entry_type, 'block');
  });

  it('PUT validation: bad peer_key or entry_type → 400', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const base = `/v1/agents/${a.publicKey}/acl`;
    const e1 = expectError(await api.put(a, base, { peer_key: 'short', entry_type: 'allow' }), 400, 'bad_request');
    assert.equal(e1.details?.field, 'peer_key');
    const e2 = expectError(
      await api.put(a, base, { peer_key: newAgent().publicKey, entry_type: 'deny' }),
      400,
      'bad_request',
    );
    assert.equal(e2.details?.field, 'entry_type');
    expectError(await api.put(a, base, '{"peer_key"'), 400, 'bad_request');
  });

  it('entries may name keys that have no agent record', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const ghost = newAgent();
    const entry = expectOk(
      await api.put(a, `/v1/agents/${a.publicKey}/acl`, { peer_key: ghost.publicKey, entry_type: 'block' }),
    );
    assert.equal(entry.peer_key, ghost.publicKey);
    // The ghost still has no agent record.
    expectError(await api.get(a, `/v1/agents/${ghost.publicKey}`), 404, 'agent_not_found');
    // And once it shows up, the entry applies (default blocklist policy).
    expectError(await api.post(ghost, '/v1/messages', { recipient_key: a.publicKey, body: {} }), 403, 'acl_denied');
  });
});

describe('§3.9 inbox policies enforced at send time', () => {
  it('open: everyone; closed: nobody', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const r = newAgent();
    const s = newAgent();
    await api.profile(r, { inbox_policy: 'open' });
    await api.send(s, r.publicKey, { n: 1 });
    await api.profile(r, { inbox_policy: 'closed' });
    const err = expectError(
      await api.post(s, '/v1/messages', { recipient_key: r.publicKey, body: { n: 2 } }),
      403,
      'acl_denied',
    );
    assert.equal(typeof err.message, 'string');
    // An allow entry does not open a closed inbox.
    expectOk(await api.put(r, `/v1/agents/${r.publicKey}/acl`, { peer_key: s.publicKey, entry_type: 'allow' }));
    expectError(await api.post(s, '/v1/messages', { recipient_key: r.publicKey, body: { n: 3 } }), 403, 'acl_denied');
    // Nothing refused was stored.
    assert.equal(expectOk(await api.get(r, '/v1/messages')).messages.length, 1);
  });

  it('allowlist: only allowed keys; an empty allow list blocks everyone', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const r = newAgent();
    const friend = newAgent();
    const stranger = newAgent();
    await api.profile(r, { inbox_policy: 'allowlist' });
    expectError(await api.post(friend, '/v1/messages', { recipient_key: r.publicKey, body: {} }), 403, 'acl_denied');
    expectOk(await api.put(r, `/v1/agents/${r.publicKey}/acl`, { peer_key: friend.publicKey, entry_type: 'allow' }));
    await api.send(friend, r.publicKey, { hi: 1 });
    expectError(await api.post(stranger, '/v1/messages', { recipient_key: r.publicKey, body: {} }), 403, 'acl_denied');
    // A block entry is not an allow entry.
    expectOk(await api.put(r, `/v1/agents/${r.publicKey}/acl`, { peer_key: stranger.publicKey, entry_type: 'block' }));
    expectError(
      await api.post(stranger, '/v1/messages', { recipient_key: r.publicKey, body: { x: 2 } }),
      403,
      'acl_denied',
    );
    // Removing the allow entry closes the door again.
    assert.equal((await api.delete(r, `/v1/agents/${r.publicKey}/acl/${friend.publicKey}`)).status, 204);
    expectError(
      await api.post(friend, '/v1/messages', { recipient_key: r.publicKey, body: { x: 3 } }),
      403,
      'acl_denied',
    );
  });

  it('blocklist (the default): everyone except blocked keys', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const r = newAgent();
    const bad = newAgent();
    const good = newAgent();
    await api.touch(r);
    assert.equal(expectOk(await api.get(r, '/v1/agents/me')).inbox_policy, 'blocklist');
    await api.send(bad, r.publicKey, { n: 1 });
    expectOk(await api.put(r, `/v1/agents/${r.publicKey}/acl`, { peer_key: bad.publicKey, entry_type: 'block' }));
    expectError(await api.post(bad, '/v1/messages', { recipient_key: r.publicKey, body: { n: 2 } }), 403, 'acl_denied');
    await api.send(good, r.publicKey, { n: 3 });
    // An allow entry for the same peer replaces the block (upsert).
    expectOk(await api.put(r, `/v1/agents/${r.publicKey}/acl`, { peer_key: bad.publicKey, entry_type: 'allow' }));
    await api.send(bad, r.publicKey, { n: 4 });
    // Deleting a block entry unblocks.
    expectOk(await api.put(r, `/v1/agents/${r.publicKey}/acl`, { peer_key: good.publicKey, entry_type: 'block' }));
    expectError(
      await api.post(good, '/v1/messages', { recipient_key: r.publicKey, body: { n: 5 } }),
      403,
      'acl_denied',
    );
    assert.equal((await api.delete(r, `/v1/agents/${r.publicKey}/acl/${good.publicKey}`)).status, 204);
    await api.send(good, r.publicKey, { n: 6 });
  });

  it('a suspended recipient → 403 forbidden', async (t) => {
    const { url, relay } = await startRelay(t);
    const api = new Api(url);
    const r = newAgent();
    const s = newAgent();
    await api.profile(r, { inbox_policy: 'open' });
    await relay.setAgentStatus(r.publicKey, 'suspended');
    expectError(await api.post(s, '/v1/messages', { recipient_key: r.publicKey, body: {} }), 403, 'forbidden');
  });

  it('the policy applies to WebSocket inline sends too', async (t) => {
    const { url, wsUrl } = await startRelay(t);
    const api = new Api(url);
    const r = newAgent();
    const s = newAgent();
    await api.profile(r, { inbox_policy: 'closed' });
    const sock = await connect(t, wsUrl, s);
    sock.send({ type: 'send', request_id: 'x1', recipient_key: r.publicKey, body: {} });
    const res = await sock.next();
    assert.equal(res.type, 'send_result');
    assert.equal(res.status, 'error');
    assert.equal(res.request_id, 'x1');
    assert.equal(res.error.code, 'acl_denied');
  });

  it('a key with no agent record is treated as open; the message waits and is delivered on first poll', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const s = newAgent();
    const future = newAgent();
    const sent = await api.send(s, future.publicKey, { welcome: true });
    // Being written to does not create the agent.
    expectError(await api.get(s, `/v1/agents/${future.publicKey}`), 404, 'agent_not_found');
    const poll = expectOk(await api.get(future, '/v1/messages'));
    assert.deepEqual(
      poll.messages.map((m: { message_id: string }) => m.message_id),
      [sent.message_id],
    );
    assert.deepEqual(poll.messages[0].body, { welcome: true });
    // Now the agent exists with the defaults.
    assert.equal(expectOk(await api.get(s, `/v1/agents/${future.publicKey}`)).inbox_policy, 'blocklist');
  });

  it('a key with no agent record receives its queue when it first connects over WebSocket', async (t) => {
    const { url, wsUrl } = await startRelay(t);
    const api = new Api(url);
    const s = newAgent();
    const future = newAgent();
    const sent = await api.send(s, future.publicKey, { welcome: 'ws' });
    const sock = await connect(t, wsUrl, future);
    const f = await sock.next();
    assert.equal(f.type, 'message');
    assert.equal(f.message.message_id, sent.message_id);
  });
});
