import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ExpiringIdSet, hash64, hashHex, parseHashHex } from '../../src/runtime/idset.js';

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

  it('hashes round-trip through hex and spread well', () => {
    const h = hash64('msg_1772712000_0a1b2c3d4e5f');
    assert.deepEqual(parseHashHex(hashHex(h)), h);
    assert.equal(parseHashHex('nope'), undefined);
    const seen = new Set<string>();
    for (let i = 0; i < 200_000; i++) seen.add(hashHex(hash64(`msg_${i}`)));
    assert.equal(seen.size, 200_000, 'no collisions');
  });
});
