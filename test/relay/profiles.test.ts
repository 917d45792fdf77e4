/** Conformance: agent profiles (§3.4), ownership (§2.4), the `me` alias (§3.1). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { newAgent, startRelay } from '../helpers/relay.js';
import { Api, expectError, expectOk, RFC3339_UTC_RE } from './_support.js';

const CAP = {
  name: 'translate',
  description: 'Translate text between languages',
  tags: ['text', 'i18n'],
  input_schema: { type: 'object', properties: { text: { type: 'string' } } },
  version: '1.0',
};

describe('§3.4 GET /v1/agents/{publicKey}', () => {
  it('reads own and other profiles; unknown key → 404 agent_not_found', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const b = newAgent();
    await api.profile(b, { display_name: 'Bee', metadata: { role: 'x' } });
    const other = expectOk(await api.get(a, `/v1/agents/${b.publicKey}`));
    assert.equal(other.public_key, b.publicKey);
    assert.equal(other.display_name, 'Bee');
    assert.deepEqual(other.metadata, { role: 'x' });
    // private agents are still readable by key
    assert.equal(other.visibility, 'private');
    const own = expectOk(await api.get(a, `/v1/agents/${a.publicKey}`));
    assert.equal(own.public_key, a.publicKey);
    expectError(await api.get(a, `/v1/agents/${newAgent().publicKey}`), 404, 'agent_not_found');
  });

  it('`me` is an alias for the caller in every /v1/agents/{publicKey} route', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const peer = newAgent();
    const me = expectOk(await api.get(a, '/v1/agents/me'));
    assert.equal(me.public_key, a.publicKey);
    const patched = expectOk(await api.patch(a, '/v1/agents/me', { display_name: 'Me' }));
    assert.equal(patched.public_key, a.publicKey);
    assert.equal(patched.display_name, 'Me');
    const caps = expectOk(await api.get(a, '/v1/agents/me/capabilities'));
    assert.equal(caps.public_key, a.publicKey);
    const entry = expectOk(await api.put(a, '/v1/agents/me/acl', { peer_key: peer.publicKey, entry_type: 'block' }));
    assert.equal(entry.owner_key, a.publicKey);
    expectOk(await api.get(a, `/v1/agents/me/acl/${peer.publicKey}`));
    const list = expectOk(await api.get(a, '/v1/agents/me/acl'));
    assert.equal(list.entries.length, 1);
    assert.equal((await api.delete(a, `/v1/agents/me/acl/${peer.publicKey}`)).status, 204);
  });

  it('GET /v1/agents/{key}/capabilities → {public_key, capabilities}', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const b = newAgent();
    await api.profile(b, { capabilities: [CAP, 'chat'] });
    const res = expectOk(await api.get(a, `/v1/agents/${b.publicKey}/capabilities`));
    assert.deepEqual(res, {
      public_key: b.publicKey,
      capabilities: [CAP, { name: 'chat', description: '', tags: ['chat'] }],
    });
    const empty = expectOk(await api.get(a, `/v1/agents/${a.publicKey}/capabilities`));
    assert.deepEqual(empty, { public_key: a.publicKey, capabilities: [] });
    expectError(await api.get(a, `/v1/agents/${newAgent().publicKey}/capabilities`), 404, 'agent_not_found');
  });
});

describe('§3.4 PATCH /v1/agents/{publicKey}', () => {
  it('returns the full updated profile; partial update leaves omitted fields untouched', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const full = await api.profile(a, {
      display_name: 'TranslatorBot',
      visibility: 'public',
      inbox_policy: 'allowlist',
      metadata: { role: 'translator', v: '1.0' },
      capabilities: [CAP],
    });
    assert.equal(full.public_key, a.publicKey);
    assert.equal(full.display_name, 'TranslatorBot');
    assert.equal(full.visibility, 'public');
    assert.equal(full.inbox_policy, 'allowlist');
    assert.equal(full.status, 'active');
    assert.deepEqual(full.metadata, { role: 'translator', v: '1.0' });
    assert.deepEqual(full.capabilities, [CAP]);
    assert.match(String(full.created_at), RFC3339_UTC_RE);
    assert.match(String(full.last_active_at), RFC3339_UTC_RE);

    // Only visibility changes.
    const p2 = await api.profile(a, { visibility: 'private' });
    assert.equal(p2.visibility, 'private');
    assert.equal(p2.display_name, 'TranslatorBot');
    assert.equal(p2.inbox_policy, 'allowlist');
    assert.deepEqual(p2.metadata, { role: 'translator', v: '1.0' });
    assert.deepEqual(p2.capabilities, [CAP]);

    // An empty patch changes nothing.
    const p3 = await api.profile(a, {});
    assert.deepEqual({ ...p3, last_active_at: null }, { ...p2, last_active_at: null });

    // And the GET agrees with the PATCH answer.
    const got = expectOk(await api.get(a, `/v1/agents/${a.publicKey}`));
    assert.deepEqual({ ...got, last_active_at: null }, { ...p2, last_active_at: null });
  });

  it('metadata and capabilities, when present, replace the stored value entirely', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    await api.profile(a, {
      metadata: { a: '1', b: '2' },
      capabilities: [CAP, { name: 'x', description: 'y', tags: ['zzz'] }],
    });
    const p = await api.profile(a, {
      metadata: { c: '3' },
      capabilities: [{ name: 'only', description: 'one', tags: ['one'] }],
    });
    assert.deepEqual(p.metadata, { c: '3' });
    assert.deepEqual(p.capabilities, [{ name: 'only', description: 'one', tags: ['one'] }]);
    const cleared = await api.profile(a, { metadata: {}, capabilities: [] });
    assert.deepEqual(cleared.metadata, {});
    assert.deepEqual(cleared.capabilities, []);
  });

  it('display_name: null clears the name', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    assert.equal((await api.profile(a, { display_name: 'Named' })).display_name, 'Named');
    const p = await api.profile(a, { display_name: null });
    assert.equal(p.display_name, null);
    assert.equal(expectOk(await api.get(a, '/v1/agents/me')).display_name, null);
  });

  it('bare string capabilities are normalised to {name, description: "", tags: [s]}', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const p = await api.profile(a, { capabilities: ['chat', 'code:review'] });
    assert.deepEqual(p.capabilities, [
      { name: 'chat', description: '', tags: ['chat'] },
      { name: 'code:review', description: '', tags: ['code:review'] },
    ]);
  });

  it('PATCH someone else → 403 forbidden, and nothing changes', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const b = newAgent();
    await api.profile(b, { display_name: 'B' });
    expectError(await api.patch(a, `/v1/agents/${b.publicKey}`, { display_name: 'hacked' }), 403, 'forbidden');
    assert.equal(expectOk(await api.get(a, `/v1/agents/${b.publicKey}`)).display_name, 'B');
    // Also for a key with no agent record.
    expectError(await api.patch(a, `/v1/agents/${newAgent().publicKey}`, { display_name: 'x' }), 403, 'forbidden');
  });

  it('validation errors → 400 bad_request or 422 unprocessable_entity with details.field', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const target = `/v1/agents/${a.publicKey}`;
    const check = async (patch: unknown, field: RegExp, statuses: number[] = [400, 422]) => {
      const res = await api.patch(a, target, patch);
      assert.ok(statuses.includes(res.status), `${JSON.stringify(patch).slice(0, 80)} → ${res.status} ${res.text}`);
      const err = expectError(res, res.status, res.status === 400 ? 'bad_request' : 'unprocessable_entity');
      assert.ok(err.details && typeof err.details.field === 'string', `details.field missing: ${res.text}`);
      assert.match(err.details.field, field);
      assert.equal(typeof err.details.reason, 'string');
    };
    await check({ display_name: 'x'.repeat(257) }, /^display_name$/);
    await check({ display_name: 42 }, /^display_name$/, [400]);
    await check({ visibility: 'hidden' }, /^visibility$/);
    await check({ inbox_policy: 'friends' }, /^inbox_policy$/);
    await check({ metadata: 'nope' }, /^metadata$/, [400]);
    await check({ metadata: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v'])) }, /^metadata/);
    await check({ metadata: { k: 'v'.repeat(257) } }, /^metadata/);
    await check({ metadata: { k: 5 } }, /^metadata/);
    await check({ metadata: { '': 'empty key' } }, /^metadata/);
    await check({ metadata: { ['k'.repeat(65)]: 'long key' } }, /^metadata/);
    await check({ capabilities: 'chat' }, /^capabilities$/, [400]);
    await check({ capabilities: Array.from({ length: 21 }, (_, i) => `tag${i}`) }, /^capabilities/);
    await check({ capabilities: ['ab'] }, /^capabilities/); // tag shorter than 3
    await check({ capabilities: ['has space'] }, /^capabilities/);
    await check({ capabilities: [{ name: 'n', description: 'd', tags: ['x'.repeat(65)] }] }, /^capabilities/);
    await check({ capabilities: [{ name: '', description: 'd', tags: [] }] }, /^capabilities/);
    await check({ capabilities: [{ name: 'x'.repeat(65), description: 'd', tags: [] }] }, /^capabilities/);
    await check({ capabilities: [{ name: 'n', description: 'd'.repeat(1025), tags: [] }] }, /^capabilities/);
    await check(
      { capabilities: [{ name: 'n', description: 'd', tags: [], version: 'v'.repeat(33) }] },
      /^capabilities/,
    );
    await check(
      { capabilities: [{ name: 'n', description: 'd', tags: [], input_schema: { big: 'x'.repeat(17 * 1024) } }] },
      /^capabilities/,
    );
    // Not an object at all, and invalid JSON: 400.
    expectError(await api.patch(a, target, [1, 2]), 400, 'bad_request');
    expectError(await api.patch(a, target, '{"display_name": '), 400, 'bad_request');
    // Nothing was applied by the failed patches.
    const p = expectOk(await api.get(a, target));
    assert.equal(p.display_name, null);
    assert.equal(p.visibility, 'private');
    assert.deepEqual(p.metadata, {});
    assert.deepEqual(p.capabilities, []);
  });

  it('limits at the edge are accepted (256-char name, 16 metadata keys, 20 capabilities, 64-char tag)', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const p = await api.profile(a, {
      display_name: 'n'.repeat(256),
      metadata: Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${i}`, 'v'.repeat(256)])),
      capabilities: [
        ...Array.from({ length: 19 }, (_, i) => `tag${i}`),
        { name: 'n', description: '', tags: ['t'.repeat(64), 'a:b.c-d_e'] },
      ],
    });
    assert.equal((p.display_name as string).length, 256);
    assert.equal(Object.keys(p.metadata as object).length, 16);
    assert.equal((p.capabilities as unknown[]).length, 20);
  });
});

describe('§3.4 DELETE /v1/agents/{publicKey}', () => {
  it('→ 204 with no body; the next signed request recreates a fresh, empty agent', async (t) => {
    const clock = new ManualClock();
    const { url } = await startRelay(t, { clock });
    const api = new Api(url, clock);
    const a = newAgent();
    const b = newAgent();
    const peer = newAgent();
    const before = await api.profile(a, {
      display_name: 'Old',
      visibility: 'public',
      inbox_policy: 'open',
      metadata: { x: 'y' },
      capabilities: ['chat'],
    });
    expectOk(await api.put(a, `/v1/agents/${a.publicKey}/acl`, { peer_key: peer.publicKey, entry_type: 'block' }));
    await api.send(b, a.publicKey, { queued: true });
    clock.advance(120_000);

    const del = await api.delete(a, `/v1/agents/${a.publicKey}`);
    assert.equal(del.status, 204);
    assert.equal(del.text, '');
    assert.match(del.headers.get('x-request-id') ?? '', /^req_/);

    // Gone for others.
    expectError(await api.get(b, `/v1/agents/${a.publicKey}`), 404, 'agent_not_found');
    // No longer discoverable.
    const found = expectOk(await api.get(b, '/v1/discover?tag=chat'));
    assert.equal(found.agents.length, 0);

    // The next signed request silently creates a fresh, empty agent.
    const fresh = expectOk(await api.get(a, `/v1/agents/${a.publicKey}`));
    assert.equal(fresh.display_name, null);
    assert.equal(fresh.visibility, 'private');
    assert.equal(fresh.inbox_policy, 'blocklist');
    assert.equal(fresh.status, 'active');
    assert.deepEqual(fresh.metadata, {});
    assert.deepEqual(fresh.capabilities, []);
    assert.notEqual(fresh.created_at, before.created_at);
    // ACL entries and queued messages are gone.
    const acl = expectOk(await api.get(a, `/v1/agents/${a.publicKey}/acl`));
    assert.deepEqual(acl.entries, []);
    const poll = expectOk(await api.get(a, '/v1/messages'));
    assert.deepEqual(poll.messages, []);
  });

  it('DELETE someone else → 403 forbidden, and nothing is deleted', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const b = newAgent();
    await api.profile(b, { display_name: 'Still here' });
    expectError(await api.delete(a, `/v1/agents/${b.publicKey}`), 403, 'forbidden');
    assert.equal(expectOk(await api.get(a, `/v1/agents/${b.publicKey}`)).display_name, 'Still here');
  });
});

describe('§3.5 last_active_at', () => {
  it('is updated by authenticated requests, at most once per minute', async (t) => {
    const clock = new ManualClock();
    const { url } = await startRelay(t, { clock });
    const api = new Api(url, clock);
    const a = newAgent();
    const b = newAgent();
    await api.touch(a);
    const first = expectOk(await api.get(b, `/v1/agents/${a.publicKey}`)).last_active_at;
    assert.equal(Date.parse(first), clock.now());
    clock.advance(30_000);
    await api.touch(a); // within the minute: no update
    assert.equal(expectOk(await api.get(b, `/v1/agents/${a.publicKey}`)).last_active_at, first);
    clock.advance(31_000);
    await api.touch(a); // 61 s later: updated
    const later = expectOk(await api.get(b, `/v1/agents/${a.publicKey}`)).last_active_at;
    assert.equal(Date.parse(later), clock.now());
  });

  it('a PATCH within the minute also leaves last_active_at alone (at most once per minute)', async (t) => {
    const clock = new ManualClock();
    const { url } = await startRelay(t, { clock });
    const api = new Api(url, clock);
    const a = newAgent();
    await api.touch(a);
    const first = expectOk(await api.get(a, `/v1/agents/${a.publicKey}`)).last_active_at;
    clock.advance(20_000);
    const p = await api.profile(a, { display_name: 'x' });
    assert.equal(p.last_active_at, first);
  });
});
