import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  charLength,
  decodePublicKey,
  fromBase64,
  fromBase64Url,
  fromHex,
  isPublicKey,
  longerThan,
  shortKey,
  toBase64Url,
  toHex,
} from '../../src/protocol/encoding.js';

const KEY_A = 'ebVWLo_mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ';

describe('base64url', () => {
  it('round-trips without padding', () => {
    for (let n = 0; n < 70; n++) {
      const bytes = Uint8Array.from({ length: n }, (_, i) => (i * 37 + n) & 255);
      const text = toBase64Url(bytes);
      assert.ok(!text.includes('=') && !text.includes('+') && !text.includes('/'));
      assert.deepEqual(fromBase64Url(text), bytes);
    }
  });
  it('rejects padding, the standard alphabet and non-canonical trailing bits', () => {
    assert.equal(fromBase64Url('AQ=='), undefined);
    assert.equal(fromBase64Url('a+b/'), undefined);
    assert.equal(fromBase64Url('A'), undefined);
    assert.equal(fromBase64Url('AR'), undefined, 'AR has non-zero trailing bits; AQ is canonical');
    assert.deepEqual(fromBase64Url('AQ'), Uint8Array.of(1));
  });
  it('decodes standard base64 with or without padding', () => {
    assert.deepEqual(fromBase64('AQ=='), Uint8Array.of(1));
    assert.deepEqual(fromBase64('AQ'), Uint8Array.of(1));
    assert.equal(fromBase64('A-_='), undefined);
  });
  it('hex', () => {
    assert.equal(toHex(Uint8Array.of(0, 255, 16)), '00ff10');
    assert.deepEqual(fromHex('00FF10'), Uint8Array.of(0, 255, 16));
    assert.equal(fromHex('0'), undefined);
    assert.equal(fromHex('zz'), undefined);
  });
});

describe('public keys', () => {
  it('accepts exactly 43 canonical base64url characters', () => {
    assert.equal(isPublicKey(KEY_A), true);
    assert.equal(decodePublicKey(KEY_A)?.length, 32);
    assert.equal(isPublicKey(KEY_A.slice(1)), false);
    assert.equal(isPublicKey(`${KEY_A}=`), false);
    assert.equal(isPublicKey(KEY_A.replace('_', '/')), false);
    // Same bytes, different spelling (last character's unused bits set): one key, one spelling.
    assert.equal(isPublicKey(`${KEY_A.slice(0, 42)}R`), false);
    assert.equal(isPublicKey(42), false);
  });
  it('shortens for people', () => {
    assert.equal(shortKey(KEY_A), 'ebVWLo…ElmQ');
  });
  it('counts characters as code points (the spec\'s "chars"), lone surrogates as one each', () => {
    assert.equal(charLength(''), 0);
    assert.equal(charLength('abc'), 3);
    assert.equal(charLength('😀'.repeat(200)), 200);
    assert.equal(charLength('a😀b'), 3);
    assert.equal(charLength('\ud800x\udc00'), 3);
    assert.equal(charLength('😀'.repeat(1000), 10), 11, 'stops one past the limit');
    assert.ok(!longerThan('😀'.repeat(256), 256) && longerThan('😀'.repeat(257), 256));
    assert.ok(!longerThan('x'.repeat(256), 256) && longerThan('x'.repeat(257), 256));
  });
});
