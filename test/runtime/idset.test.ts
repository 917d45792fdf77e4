import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ExpiringIdSet, hash64, hashHex, PACKED_ENTRY_BYTES, parseHashHex } from '../../src/runtime/idset.js';

describe('ExpiringIdSet', () => {
  it('remembers ids until they expire, across growth', () => {
    const set = new ExpiringIdSet();
    const now = Date.UTC(2026, 0, 1);
    for (let i = 0; i < 50_000; i++)
      set.add(`msg_1772712000_${i.toString(16).padStart(12, '0')}`, now + (i % 2 ? 3_600_000 : 60_000), now);
    assert.equal(set.size, 50_000);
    assert.equal(set.has('msg_1772712000_000000000001', now), true);
    assert.equal(set.has('msg_1772712000_000000000000', now), true);
    assert.equal(set.has('msg_1772712000_ffffffffffff', now), false);
    const later = now + 10 * 60_000;
    assert.equal(set.has('msg_1772712000_000000000000', later), false, 'expired');
    assert.equal(set.has('msg_1772712000_000000000001', later), true);
    set.sweep(later);
    assert.equal(set.size, 25_000);
    assert.equal([...set.entries(later)].length, 25_000);
  });

  it('keeps the newest entries past its cap', () => {
    const set = new ExpiringIdSet(1000);
    const now = 1_000_000_000_000;
    for (let i = 0; i < 3000; i++) set.add(`id${i}`, now + (i + 1) * 60_000, now);
    set.sweep(now);
    assert.equal(set.size, 1000);
    assert.equal(set.has('id2999', now), true);
    assert.equal(set.has('id0', now), false);
  });

  it('packs its live entries into chunks and reads them back, expiries to the minute, expired ones left out', () => {
    const now = Date.UTC(2026, 0, 1);
    const set = new ExpiringIdSet();
    for (let i = 0; i < 10_000; i++) set.add(`m${i}`, now + (i % 3 === 0 ? 30_000 : (i + 1) * 60_000), now);
    const later = now + 60_000;
    const chunks = set.pack(later, 1000);
    const live = [...set.entries(later)].length;
    assert.equal(
      chunks.reduce((n, c) => n + c.length, 0),
      live * PACKED_ENTRY_BYTES,
    );
    assert.ok(chunks.every((c) => c.length <= 1000 * PACKED_ENTRY_BYTES));
    const copy = new ExpiringIdSet();
    for (const c of chunks) assert.equal(copy.addPacked(Buffer.from(c.toString('base64'), 'base64'), later), true);
    assert.equal(copy.size, live);
    assert.deepEqual(new Map(copy.entries(later)), new Map(set.entries(later)));
    assert.equal(copy.has('m0', later), false, 'expired before the pack');
    assert.equal(copy.has('m1', later), true);
    assert.equal(copy.has('m9998', now + 9_999 * 60_000 - 1), true);
    assert.equal(copy.has('m9998', now + 9_999 * 60_000), false, 'its expiry minute kept');
    assert.equal(copy.addPacked(Buffer.alloc(PACKED_ENTRY_BYTES + 1), later), false, 'not whole entries');
    assert.equal(copy.size, live);
  });

  it('reserves no more room than its cap keeps', () => {
    const before = process.memoryUsage().arrayBuffers;
    const set = new ExpiringIdSet(10);
    set.reserve(1_000_000, Date.now());
    assert.ok(process.memoryUsage().arrayBuffers - before < 1_000_000, 'a few KB, not ~36 MB');
  });

  it('hashes round-trip through hex and spread well', () => {
    const h = hash64('msg_1772712000_0a1b2c3d4e5f');
    assert.deepEqual(parseHashHex(hashHex(h)), h);
    assert.equal(parseHashHex('nope'), undefined);
    const seen = new Set<string>();
    for (let i = 0; i < 200_000; i++) seen.add(hashHex(hash64(`msg_${i}`)));
    assert.equal(seen.size, 200_000, 'no collisions');
  });
});
