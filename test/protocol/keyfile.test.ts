import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError } from '../../src/core/errors.js';
import { decodeKeyFile, encodeKeyFile } from '../../src/protocol/keyfile.js';
import { Keypair } from '../../src/protocol/signing.js';

const SEED = Buffer.from('0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20', 'hex');
const KEY_A = 'ebVWLo_mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ';

describe('key file codec', () => {
  it('writes exactly the 32-byte seed', () => {
    assert.deepEqual(Buffer.from(encodeKeyFile(Keypair.fromSeed(SEED))), SEED);
  });

  it('reads every accepted form', () => {
    const pub = Buffer.from(Keypair.fromSeed(SEED).publicKeyBytes);
    const forms: Array<[Uint8Array, string]> = [
      [SEED, 'raw-seed'],
      [Buffer.concat([SEED, pub]), 'raw-seed-public'],
      [Buffer.from(SEED.toString('hex')), 'hex'],
      [Buffer.from(`${SEED.toString('hex').toUpperCase()}\n`), 'hex'],
      [Buffer.from(SEED.toString('base64url')), 'base64url'],
      [Buffer.from(`  ${SEED.toString('base64')}\r\n`), 'base64'],
    ];
    for (const [bytes, format] of forms) {
      const decoded = decodeKeyFile(bytes, 'k');
      assert.equal(decoded.format, format);
      assert.equal(decoded.keypair.publicKey, KEY_A);
    }
  });

  it('tries text forms first: 64 hex characters are never raw bytes', () => {
    const hex = Buffer.from('aa'.repeat(32));
    assert.equal(hex.length, 64);
    assert.equal(decodeKeyFile(hex, 'k').format, 'hex');
  });

  it('refuses a 64-byte file whose public half does not match', () => {
    const bad = Buffer.concat([SEED, Buffer.alloc(32, 7)]);
    assert.throws(
      () => decodeKeyFile(bad, '/x/agent.key'),
      (e: unknown) => e instanceof ConfigError && e.code === 'key_invalid' && e.message.includes('/x/agent.key'),
    );
  });

  it('refuses other lengths with a message naming the file', () => {
    for (const size of [0, 31, 33, 63, 65, 1000]) {
      assert.throws(
        () => decodeKeyFile(Buffer.alloc(size, 200), '/k'),
        (e: unknown) => e instanceof ConfigError && e.code === 'key_invalid' && e.message.includes('/k'),
      );
    }
  });
});
