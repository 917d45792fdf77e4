/** Conformance: discovery (§3.5) and capability tags. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import type { Keypair } from '../../src/protocol/signing.js';
import { CAPABILITY_TAGS_MAX, DISCOVER_PAGE_BYTES } from '../../src/relay/store/store.js';
import { newAgent, startRelay } from '../helpers/relay.js';
import { Api, expectError, expectOk } from './_support.js';

const MIN = 60_000;

async function setup(t: Parameters<typeof startRelay>[0]) {
  const clock = new ManualClock();
  const { url } = await startRelay(t, { clock });
  const api = new Api(url, clock);
  const searcher = newAgent(); // private, never listed
  return { clock, api, searcher, url };
}

async function publish(api: Api, kp: Keypair, patch: Record<string, unknown>): Promise<void> {
  await api.profile(kp, { visibility: 'public', ...patch });
}

const keys = (res: any): string[] => res.agents.map((a: { public_key: string }) => a.public_key);

describe('§3.5 GET /v1/discover', () => {
  it('returns only public agents, with the documented shape', async (t) => {
    const { api, searcher } = await setup(t);
    const pub = newAgent();
    const priv = newAgent();
    const cap = { name: 'translate', description: 'Translate text', tags: ['translate', 'text'] };
    await publish(api, pub, { display_name: 'PolyglotBot', capabilities: [cap], metadata: { secret: 'x' } });
    await api.profile(priv, { display_name: 'Hidden', capabilities: [cap] }); // default visibility private
    const res = expectOk(await api.get(searcher, '/v1/discover'));
    assert.deepEqual(Object.keys(res).sort(), ['agents', 'has_more', 'next_cursor']);
    assert.equal(res.has_more, false);
    assert.equal(res.next_cursor, null);
    assert.equal(res.agents.length, 1);
    const [a] = res.agents;
    assert.deepEqual(Object.keys(a).sort(), ['capabilities', 'display_name', 'last_active_at', 'public_key']);
    assert.equal(a.public_key, pub.publicKey);
    assert.equal(a.display_name, 'PolyglotBot');
    assert.deepEqual(a.capabilities, [cap]);
    // tag search does not reveal the private one either
    assert.deepEqual(keys(expectOk(await api.get(searcher, '/v1/discover?tag=translate'))), [pub.publicKey]);
    // switching back to private hides it
    await api.profile(pub, { visibility: 'private' });
    assert.deepEqual(expectOk(await api.get(searcher, '/v1/discover?limit=5')).agents, []);
  });

  it('orders by last_active_at descending, then public_key ascending', async (t) => {
    const { api, searcher, clock } = await setup(t);
    const early = newAgent();
    await publish(api, early, { display_name: 'early' });
    clock.advance(2 * MIN);
    const tied = [newAgent(), newAgent(), newAgent()];
    for (const kp of tied) await publish(api, kp, { display_name: 'tied' });
    clock.advance(2 * MIN);
    const late = newAgent();
    await publish(api, late, { display_name: 'late' });
    const res = expectOk(await api.get(searcher, '/v1/discover'));
    const tiedSorted = tied.map((k) => k.publicKey).sort();
    assert.deepEqual(keys(res), [late.publicKey, ...tiedSorted, early.publicKey]);
    const times = res.agents.map((a: { last_active_at: string }) => Date.parse(a.last_active_at));
    assert.deepEqual(
      times,
      [...times].sort((x, y) => y - x),
    );
  });

  it('tag is repeatable and ANDed', async (t) => {
    const { api, searcher } = await setup(t);
    const both = newAgent();
    const onlyX = newAgent();
    const onlyY = newAgent();
    await publish(api, both, {
      capabilities: [
        { name: 'a', description: '', tags: ['xxx'] },
        { name: 'b', description: '', tags: ['yyy'] },
      ],
    });
    await publish(api, onlyX, { capabilities: ['xxx'] });
    await publish(api, onlyY, { capabilities: ['yyy'] });
    assert.deepEqual(keys(expectOk(await api.get(searcher, '/v1/discover?tag=xxx&tag=yyy'))), [both.publicKey]);
    assert.deepEqual(
      keys(expectOk(await api.get(searcher, '/v1/discover?tag=xxx'))).sort(),
      [both.publicKey, onlyX.publicKey].sort(),
    );
    assert.deepEqual(keys(expectOk(await api.get(searcher, '/v1/discover?tag=zzz'))), []);
    // tags match exactly, not as substrings
    assert.deepEqual(keys(expectOk(await api.get(searcher, '/v1/discover?tag=xx'))), []);
  });

  it('q searches capability names, capability descriptions and display names', async (t) => {
    const { api, searcher } = await setup(t);
    const byName = newAgent();
    const byCap = newAgent();
    const byDesc = newAgent();
    const none = newAgent();
    await publish(api, byName, { display_name: 'PolyglotBot' });
    await publish(api, byCap, {
      display_name: 'Bob',
      capabilities: [{ name: 'summarize', description: 'shorten', tags: ['text'] }],
    });
    await publish(api, byDesc, {
      display_name: 'Carl',
      capabilities: [{ name: 'law', description: 'Reads legal documents', tags: ['text'] }],
    });
    await publish(api, none, {
      display_name: 'Dora',
      capabilities: [{ name: 'paint', description: 'pictures', tags: ['img'] }],
    });
    assert.deepEqual(keys(expectOk(await api.get(searcher, '/v1/discover?q=polyglot'))), [byName.publicKey]);
    assert.deepEqual(keys(expectOk(await api.get(searcher, '/v1/discover?q=summarize'))), [byCap.publicKey]);
    assert.deepEqual(keys(expectOk(await api.get(searcher, '/v1/discover?q=legal'))), [byDesc.publicKey]);
    assert.deepEqual(keys(expectOk(await api.get(searcher, '/v1/discover?q=legal%20documents'))), [byDesc.publicKey]);
    assert.deepEqual(keys(expectOk(await api.get(searcher, '/v1/discover?q=nothingmatches'))), []);
    // combined with a tag filter
    assert.deepEqual(keys(expectOk(await api.get(searcher, '/v1/discover?q=legal&tag=img'))), []);
  });

  it('name is a case-insensitive substring of the display name (only)', async (t) => {
    const { api, searcher } = await setup(t);
    const poly = newAgent();
    const other = newAgent();
    await publish(api, poly, { display_name: 'PolyglotBot' });
    await publish(api, other, {
      display_name: 'Helper',
      capabilities: [{ name: 'polyglot', description: 'polyglot', tags: ['poly'] }],
    });
    assert.deepEqual(keys(expectOk(await api.get(searcher, '/v1/discover?name=GLOTb'))), [poly.publicKey]);
    assert.deepEqual(keys(expectOk(await api.get(searcher, '/v1/discover?name=polyglot'))), [poly.publicKey]);
    assert.deepEqual(keys(expectOk(await api.get(searcher, '/v1/discover?name=xyz'))), []);
  });

  it('active_since keeps agents active at or after the instant', async (t) => {
    const { api, searcher, clock } = await setup(t);
    const old = newAgent();
    await publish(api, old, { display_name: 'old' });
    clock.advance(10 * MIN);
    const recent = newAgent();
    await publish(api, recent, { display_name: 'recent' });
    const at = new Date(clock.now()).toISOString().replace('.000Z', 'Z');
    assert.deepEqual(keys(expectOk(await api.get(searcher, `/v1/discover?active_since=${at}`))), [recent.publicKey]);
    const before = new Date(clock.now() - 11 * MIN).toISOString().replace('.000Z', 'Z');
    assert.deepEqual(keys(expectOk(await api.get(searcher, `/v1/discover?active_since=${before}`))), [
      recent.publicKey,
      old.publicKey,
    ]);
    const after = new Date(clock.now() + 1000).toISOString().replace('.000Z', 'Z');
    assert.deepEqual(keys(expectOk(await api.get(searcher, `/v1/discover?active_since=${after}`))), []);
    expectError(await api.get(searcher, '/v1/discover?active_since=yesterday'), 400, 'bad_request');
  });

  it('tag_prefix matches capability tags by prefix', async (t) => {
    const { api, searcher } = await setup(t);
    const review = newAgent();
    const lint = newAgent();
    const codex = newAgent();
    await publish(api, review, { capabilities: ['code:review'] });
    await publish(api, lint, { capabilities: ['code:lint'] });
    await publish(api, codex, { capabilities: ['codex'] });
    assert.deepEqual(
      keys(expectOk(await api.get(searcher, '/v1/discover?tag_prefix=code%3A'))).sort(),
      [review.publicKey, lint.publicKey].sort(),
    );
    assert.deepEqual(keys(expectOk(await api.get(searcher, '/v1/discover?tag_prefix=code'))).length, 3);
    assert.deepEqual(keys(expectOk(await api.get(searcher, '/v1/discover?tag_prefix=zz'))), []);
  });

  it('limit: default 20, bounds 1–100 (0 and 101 → 400)', async (t) => {
    const { api, searcher } = await setup(t);
    for (let i = 0; i < 22; i++) await publish(api, newAgent(), { display_name: `a${i}` });
    const def = expectOk(await api.get(searcher, '/v1/discover'));
    assert.equal(def.agents.length, 20);
    assert.equal(def.has_more, true);
    assert.equal(typeof def.next_cursor, 'string');
    assert.equal(expectOk(await api.get(searcher, '/v1/discover?limit=1')).agents.length, 1);
    assert.equal(expectOk(await api.get(searcher, '/v1/discover?limit=100')).agents.length, 22);
    for (const bad of ['0', '101', '-1', 'abc', '1.5']) {
      const err = expectError(await api.get(searcher, `/v1/discover?limit=${bad}`), 400, 'bad_request');
      assert.equal(err.details?.field, 'limit');
    }
  });

  it('pagination with next_cursor until has_more is false, no duplicates, same order', async (t) => {
    const { api, searcher, clock } = await setup(t);
    const all: string[] = [];
    for (let i = 0; i < 25; i++) {
      const kp = newAgent();
      all.push(kp.publicKey);
      await publish(api, kp, { display_name: `agent${i}` });
      if (i % 3 === 0) clock.advance(2 * MIN); // a mix of distinct times and ties
    }
    const full = keys(expectOk(await api.get(searcher, '/v1/discover?limit=100')));
    assert.equal(full.length, 25);
    assert.deepEqual([...full].sort(), [...all].sort());
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const target: string = `/v1/discover?limit=7${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
      const page = expectOk(await api.get(searcher, target));
      pages++;
      assert.ok(page.agents.length <= 7);
      seen.push(...keys(page));
      if (page.has_more) assert.equal(typeof page.next_cursor, 'string');
      else assert.equal(page.next_cursor, null);
      cursor = page.has_more ? page.next_cursor : null;
      assert.ok(pages < 10, 'pagination does not terminate');
    } while (cursor);
    assert.equal(pages, 4);
    assert.equal(new Set(seen).size, seen.length, 'duplicates across pages');
    assert.deepEqual(seen, full);
  });

  it('a page stops at DISCOVER_PAGE_BYTES of heavy profiles, with a cursor for the rest', async (t) => {
    const { api, searcher, clock } = await setup(t);
    // 20 capabilities with an input_schema of almost 16 KiB each: ~330 KB an agent.
    const schema = { description: 'x'.repeat(16 * 1024 - 100) };
    const heavy = Array.from({ length: 20 }, (_, i) => ({
      name: `c${i}`,
      description: '',
      tags: ['heavy'],
      input_schema: schema,
    }));
    const all: string[] = [];
    for (let i = 0; i < 6; i++) {
      const kp = newAgent();
      all.push(kp.publicKey);
      await publish(api, kp, { capabilities: heavy });
      clock.advance(2 * MIN);
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res = await api.get(
        searcher,
        `/v1/discover?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
      );
      const page = expectOk(res);
      pages++;
      assert.ok(page.agents.length >= 1);
      // At most the budget, plus one agent and the envelope.
      assert.ok(res.text.length <= DISCOVER_PAGE_BYTES + 400_000, `page of ${res.text.length} bytes`);
      seen.push(...keys(page));
      cursor = page.has_more ? page.next_cursor : null;
      if (page.has_more) assert.equal(typeof cursor, 'string');
      assert.ok(pages < 10, 'pagination does not terminate');
    } while (cursor);
    assert.ok(pages >= 2, 'six heavy agents do not fit one page');
    assert.deepEqual(seen, [...all].reverse());
  });

  it('a garbage cursor → 400 bad_request', async (t) => {
    const { api, searcher } = await setup(t);
    expectError(await api.get(searcher, '/v1/discover?cursor=not-a-cursor'), 400, 'bad_request');
  });
});

describe('§3.5 GET /v1/capabilities', () => {
  it('counts public agents per tag, sorted by count desc then tag; private excluded; prefix filter', async (t) => {
    const { api, searcher } = await setup(t);
    await publish(api, newAgent(), { capabilities: ['translate', 'code:review'] });
    await publish(api, newAgent(), { capabilities: ['translate', 'code:lint'] });
    await publish(api, newAgent(), { capabilities: ['translate', 'code:review', 'alpha'] });
    await publish(api, newAgent(), {
      capabilities: [
        { name: 'x', description: '', tags: ['beta', 'beta2'] },
        { name: 'y', description: '', tags: ['beta'] },
      ],
    });
    // private agents do not count
    await api.profile(newAgent(), { capabilities: ['translate', 'secret'] });
    const res = expectOk(await api.get(searcher, '/v1/capabilities'));
    assert.deepEqual(res, {
      capabilities: [
        { tag: 'translate', agent_count: 3 },
        { tag: 'code:review', agent_count: 2 },
        { tag: 'alpha', agent_count: 1 },
        { tag: 'beta', agent_count: 1 },
        { tag: 'beta2', agent_count: 1 },
        { tag: 'code:lint', agent_count: 1 },
      ],
      has_more: false,
    });
    const pre = expectOk(await api.get(searcher, '/v1/capabilities?prefix=code%3A'));
    assert.deepEqual(pre, {
      capabilities: [
        { tag: 'code:review', agent_count: 2 },
        { tag: 'code:lint', agent_count: 1 },
      ],
      has_more: false,
    });
    assert.deepEqual(expectOk(await api.get(searcher, '/v1/capabilities?prefix=zzz')), {
      capabilities: [],
      has_more: false,
    });
  });

  it(`answers at most CAPABILITY_TAGS_MAX (${CAPABILITY_TAGS_MAX}) of the most used tags, with has_more; limit narrows`, async (t) => {
    const { api, searcher } = await setup(t);
    // Three agents with 400 distinct tags each (20 capabilities × 20 tags): 1200 tags in use.
    for (let a = 0; a < 3; a++) {
      const capabilities = Array.from({ length: 20 }, (_, c) => ({
        name: `c${c}`,
        description: '',
        tags: Array.from({ length: 20 }, (_, i) => `t${a}-${c}-${i}`),
      }));
      await publish(api, newAgent(), { capabilities });
    }
    // One tag everyone shares: it is the most used, so it comes first.
    await publish(api, newAgent(), { capabilities: ['shared'] });
    await publish(api, newAgent(), { capabilities: ['shared'] });
    const all = expectOk(await api.get(searcher, '/v1/capabilities'));
    assert.equal(all.capabilities.length, CAPABILITY_TAGS_MAX);
    assert.equal(all.has_more, true);
    assert.deepEqual(all.capabilities[0], { tag: 'shared', agent_count: 2 });
    const top = expectOk(await api.get(searcher, '/v1/capabilities?limit=2'));
    assert.deepEqual(top, {
      capabilities: [
        { tag: 'shared', agent_count: 2 },
        { tag: 't0-0-0', agent_count: 1 },
      ],
      has_more: true,
    });
    // A prefix that matches fewer than the cap: all of them, nothing more.
    const one = expectOk(await api.get(searcher, '/v1/capabilities?prefix=t1-'));
    assert.equal(one.capabilities.length, 400);
    assert.equal(one.has_more, false);
    for (const bad of ['0', String(CAPABILITY_TAGS_MAX + 1), 'x'])
      expectError(await api.get(searcher, `/v1/capabilities?limit=${bad}`), 400, 'bad_request');
  });
});
