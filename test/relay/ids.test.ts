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

  it('each second starts its count at a fresh random point', () => {
    const starts = new Set<string>();
    for (let s = 0; s < 200; s++) {
      const second = 1_772_712_000 + s;
      const first = messageId(second * 1000);
      assert.match(first, /^msg_\d+_[0-9a-f]{12}$/);
      starts.add(first.slice(-12));
      assert.ok(messageId(second * 1000 + 999) > first);
    }
    assert.equal(starts.size, 200);
    // 47 random bits: the first hex digit is 0–7, and 200 starts do not all fall in one eighth.
    const leading = new Set([...starts].map((h) => h[0]));
    assert.ok([...leading].every((d) => '01234567'.includes(d!)));
    assert.ok(leading.size >= 4, [...leading].join(''));
  });
});
