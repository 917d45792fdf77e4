import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isoInstant, isoTime } from '../../src/core/iso-time.js';
import { formatInstant } from '../../src/protocol/signing.js';

describe('cached ISO times', () => {
  it('are exactly toISOString (isoTime) and without .000 (isoInstant, formatInstant), cached or not', () => {
    const samples = [
      0,
      1,
      999,
      1000,
      Date.UTC(2026, 0, 1, 12, 0, 0),
      Date.UTC(2026, 0, 1, 12, 0, 0, 7),
      Date.UTC(2026, 0, 1, 12, 0, 0, 70),
      Date.UTC(2026, 0, 1, 12, 0, 0, 700),
      Date.UTC(2026, 11, 31, 23, 59, 59, 999),
      253_402_300_799_999,
      253_402_300_800_000,
      -1,
      -62_167_219_200_001,
      1.5,
      Date.now(),
    ];
    for (let i = 0; i < 500; i++) samples.push(Math.floor(Math.random() * 4_000_000_000_000));
    // Twice: the second pass is served from the cache of seconds.
    for (const pass of [1, 2])
      for (const ms of samples) {
        const reference = new Date(ms).toISOString();
        assert.equal(isoTime(ms), reference, `pass ${pass}: ${ms}`);
        assert.equal(isoInstant(ms), reference.replace('.000Z', 'Z'), `pass ${pass}: ${ms}`);
        assert.equal(formatInstant(ms), isoInstant(ms));
      }
  });
});
