/** FrameScanner: frame boundaries in literal client bytes, however they are split into chunks. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FrameScanner } from '../../src/relay/frame-scan.js';
import { frameHeader, textFrame } from './_raw.js';

/** Feeds `bytes` one chunk per `cut` and returns `unfinished` after each chunk. */
function feed(bytes: Buffer, cuts: number[]): boolean[] {
  const s = new FrameScanner();
  const out: boolean[] = [];
  let from = 0;
  for (const to of [...cuts, bytes.length]) {
    s.push(bytes.subarray(from, to));
    out.push(s.unfinished);
    from = to;
  }
  return out;
}

describe('FrameScanner', () => {
  it('a whole frame ends at a boundary; any split of it is unfinished until its last byte', () => {
    const f = textFrame('{"type":"ping"}'); // 6-byte header (masked), 15-byte payload
    assert.deepEqual(feed(f, []), [false]);
    assert.deepEqual(feed(f, [1, 6, 20]), [true, true, true, false]);
  });

  it('16- and 64-bit lengths, and a frame that completes with the start of the next in one chunk', () => {
    const mid = Buffer.concat([frameHeader(300), Buffer.alloc(300, 0x20)]);
    const big = Buffer.concat([frameHeader(70_000), Buffer.alloc(70_000, 0x20)]);
    assert.deepEqual(feed(Buffer.concat([mid, big]), [3, mid.length + 5, mid.length + 14, mid.length + 14 + 69_999]), [
      true,
      true,
      true,
      true,
      false,
    ]);
    // A whole ping and 10 bytes of a 1000-byte frame in one chunk: unfinished.
    assert.deepEqual(feed(Buffer.concat([textFrame('{}'), frameHeader(1000), Buffer.alloc(10)]), []), [true]);
  });

  it('a fragmented message stays unfinished across its frames and interleaved control frames, until its FIN frame', () => {
    const first = textFrame('ab');
    first[0] = 0x01; // text, no FIN
    const cont = textFrame('cd');
    cont[0] = 0x00; // continuation, no FIN
    const ping = Buffer.concat([frameHeader(0, 9)]);
    const last = textFrame('ef');
    last[0] = 0x80; // continuation, FIN
    const all = Buffer.concat([first, ping, cont, last]);
    const a = first.length;
    const b = a + ping.length;
    const c = b + cont.length;
    assert.deepEqual(feed(all, [a, b, c]), [true, true, true, false]);
    // An empty control frame on its own is a boundary.
    assert.deepEqual(feed(ping, []), [false]);
  });
});
