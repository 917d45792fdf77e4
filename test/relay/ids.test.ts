/** The ids the relay mints (docs/protocol.md §0, our choice): their shape, and message ids' order within a second. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { blobId, connectionId, messageId, requestId } from '../../src/relay/ids.js';

describe('relay ids', () => {
  it('have the documented shapes', () => {
    assert.match(messageId(Date.now()), /^msg_\d+_[0-9a-f]{12}$/);
    assert.match(requestId(), /^req_[0-9a-f]{16}$/);
    assert.match(blobId(), /^blob_[0-9a-f]{12}$/);
    assert.match(connectionId(), /^ws_[0-9a-f]{12}$/);
  });

  it('message ids carry their second and ascend within it, each unique', () => {
    const second = 1_772_712_000;
    const minted = Array.from({ length: 20_000 }, (_, i) => messageId(second * 1000 + (i % 1000)));
    for (const id of minted) assert.ok(id.startsWith(`msg_${second}_`), id);
    for (let i = 1; i < minted.length; i++) assert.ok(minted[i - 1]! < minted[i]!, `${minted[i - 1]} < ${minted[i]}`);
    assert.equal(new Set(minted).size, minted.length);
  });

  it('each second starts its count at a fresh random point below 2^19', () => {
    const starts = new Set<string>();
    for (let s = 0; s < 200; s++) {
      const second = 1_772_712_000 + s;
      const first = messageId(second * 1000);
      assert.match(first, /^msg_\d+_[0-9a-f]{12}$/);
      starts.add(first.slice(-12, -7));
      assert.ok(messageId(second * 1000 + 999) > first);
    }
    // 200 draws from 2^19: a few may coincide, not many.
    assert.ok(starts.size >= 190, String(starts.size));
    const leading = new Set([...starts].map((h) => h[0]));
    assert.ok(
      [...leading].every((d) => '01234567'.includes(d!)),
      [...leading].join(''),
    );
    assert.ok(leading.size >= 4, [...leading].join(''));
  });

  it('a message id cannot be told from its neighbours: its last 28 bits are random', () => {
    const second = 1_772_713_000;
    const minted = Array.from({ length: 1000 }, () => messageId(second * 1000));
    const tails = minted.map((id) => id.slice(-7));
    assert.ok(new Set(tails).size >= 995, 'tails repeat');
    // As numbers, neighbours are not one apart (a plain counter's ids would be, every time).
    let adjacent = 0;
    for (let i = 1; i < minted.length; i++)
      if (Number.parseInt(minted[i]!.slice(-12), 16) - Number.parseInt(minted[i - 1]!.slice(-12), 16) === 1) adjacent++;
    assert.ok(adjacent < 5, String(adjacent));
  });
});
