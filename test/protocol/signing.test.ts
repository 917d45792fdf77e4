import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey, sign as cryptoSign, randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { inspect } from 'node:util';
import * as ed from '@noble/ed25519';
import { EMPTY_BODY_HASH } from '../../src/protocol/constants.js';
import {
  authFrame,
  bodyHash,
  canonicalRequest,
  formatTimestamp,
  Keypair,
  parseTimestamp,
  signRequest,
  uniqueTimestamp,
  verifySignature,
  verifySignatureNoble,
  wsAuthString,
} from '../../src/protocol/signing.js';

// docs/protocol.md §2.5, byte for byte.
const SEED_A = Buffer.from('0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20', 'hex');
const SEED_B = Buffer.from(Array.from({ length: 32 }, (_, i) => 0x21 + i));
const KEY_A = 'ebVWLo_mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ';
const KEY_B = '5_FioQvsVZr-oZXk3OhLaVaNXSywlj60RsBoXisX8vA';
const TS = '2026-03-05T12:00:00Z';
const BODY = '{"recipient_key":"5_FioQvsVZr-oZXk3OhLaVaNXSywlj60RsBoXisX8vA","body":{"text":"hi"}}';
const BODY_HASH = 'QBJsd29SW6dA3r7xslWgcZ5hufAEJpYTVxHSt0RRsAg';
const CANONICAL_POST = `POST\n/v1/messages\n${TS}\n${BODY_HASH}`;
const SIG_POST = 'BS7lT1o75cp3N9KVK9Od-GrUonoOcnifS-iVQSd1romGbc8oW30pBCMYeqvQbNoTtka1yOn4bMJYA_AaDm1ODg';
const SIG_GET = 'qlalK4frFg4bSEIGs0b804IK3b91pjPO2K9V0ajkHlpTqlKi4ISJUeNhlCGlccyEeNbJ6HdmLBxrPI2uGVybBw';
const SIG_WS = 'mU2pX-1VWqvOUSK5ro3ldrBSFSFI2HMM7gOvkPcFdCgT956JIJT1KRt6MJtrq0ebonfuIc1yGR07l3_uvGQIAA';

/** Public key by node:crypto alone (independent of @noble/ed25519). */
function nodePublicKey(seed: Uint8Array): string {
  const der = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]);
  const jwk = createPublicKey(createPrivateKey({ key: der, format: 'der', type: 'pkcs8' })).export({ format: 'jwk' });
  return jwk.x!;
}

function nodeSign(seed: Uint8Array, message: string): string {
  const der = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]);
  return cryptoSign(null, Buffer.from(message), createPrivateKey({ key: der, format: 'der', type: 'pkcs8' })).toString(
    'base64url',
  );
}

describe('§2.5 signing vectors', () => {
  const a = Keypair.fromSeed(SEED_A);

  it('derives the documented public keys', () => {
    assert.equal(a.publicKey, KEY_A);
    assert.equal(Keypair.fromSeed(SEED_B).publicKey, KEY_B);
    assert.equal(nodePublicKey(SEED_A), KEY_A);
    assert.equal(nodePublicKey(SEED_B), KEY_B);
    assert.equal(Buffer.from(SEED_A).toString('base64url'), 'AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA');
  });

  it('hashes the body and the empty body', () => {
    assert.equal(bodyHash(BODY), BODY_HASH);
    assert.equal(bodyHash(Buffer.from(BODY)), BODY_HASH);
    assert.equal(bodyHash(''), EMPTY_BODY_HASH);
    assert.equal(bodyHash(undefined), '47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU');
  });

  it('builds the canonical string with no trailing newline', () => {
    assert.equal(canonicalRequest('post', '/v1/messages', TS, BODY_HASH), CANONICAL_POST);
  });

  it('signs POST /v1/messages', () => {
    assert.equal(a.sign(CANONICAL_POST), SIG_POST);
    const headers = signRequest(a, 'POST', '/v1/messages', BODY, Date.parse(TS));
    assert.deepEqual(headers, { 'X-M2M-Public-Key': KEY_A, 'X-M2M-Timestamp': TS, 'X-M2M-Signature': SIG_POST });
  });

  it('signs GET with a query and an empty body', () => {
    const headers = signRequest(a, 'GET', '/v1/messages?limit=10&status=sent', undefined, Date.parse(TS) + 999);
    assert.equal(headers['X-M2M-Timestamp'], TS, 'whole seconds');
    assert.equal(headers['X-M2M-Signature'], SIG_GET);
  });

  it('signs the WebSocket auth string', () => {
    assert.equal(wsAuthString(TS), 'WS\n2026-03-05T12:00:00Z');
    assert.equal(a.sign(wsAuthString(TS)), SIG_WS);
    assert.deepEqual(authFrame(a, Date.parse(TS), { timestamp: TS }), {
      type: 'auth',
      public_key: KEY_A,
      timestamp: TS,
      signature: SIG_WS,
    });
  });

  it('signs with unique sub-millisecond timestamps: the same request twice never has the same signature', () => {
    const at = Date.parse(TS) + 250;
    const [f1, f2] = [authFrame(a, at), authFrame(a, at)];
    assert.match(f1.timestamp, /^2026-03-05T12:00:00\.250\d{3}Z$/);
    assert.notEqual(f1.timestamp, f2.timestamp);
    assert.notEqual(f1.signature, f2.signature);
    assert.equal(parseTimestamp(f1.timestamp), at, 'parses back to the millisecond');
    assert.equal(verifySignature(KEY_A, wsAuthString(f2.timestamp), f2.signature), true);
    const stamps = new Set(Array.from({ length: 1000 }, () => uniqueTimestamp(at)));
    assert.equal(stamps.size, 1000, 'a thousand in one millisecond, all different');
  });

  it('matches node:crypto signing on the vectors', () => {
    assert.equal(nodeSign(SEED_A, CANONICAL_POST), SIG_POST);
    assert.equal(nodeSign(SEED_A, wsAuthString(TS)), SIG_WS);
  });

  it('verifies the vectors with node:crypto and with noble', () => {
    for (const [msg, sig] of [
      [CANONICAL_POST, SIG_POST],
      [canonicalRequest('GET', '/v1/messages?limit=10&status=sent', TS, EMPTY_BODY_HASH), SIG_GET],
      [wsAuthString(TS), SIG_WS],
    ] as const) {
      assert.equal(verifySignature(KEY_A, msg, sig), true);
      assert.equal(verifySignatureNoble(KEY_A, msg, sig), true);
      assert.equal(verifySignature(KEY_B, msg, sig), false, 'wrong key');
      assert.equal(verifySignatureNoble(KEY_B, msg, sig), false, 'wrong key');
    }
  });

  it('rejects tampered messages, signatures and malformed inputs', () => {
    assert.equal(verifySignature(KEY_A, `${CANONICAL_POST}x`, SIG_POST), false);
    const flipped = (SIG_POST[0] === 'A' ? 'B' : 'A') + SIG_POST.slice(1);
    assert.equal(verifySignature(KEY_A, CANONICAL_POST, flipped), false);
    assert.equal(verifySignature(KEY_A, CANONICAL_POST, SIG_POST.slice(1)), false);
    assert.equal(verifySignature(KEY_A, CANONICAL_POST, `${SIG_POST}==`), false);
    assert.equal(verifySignature('not-a-key', CANONICAL_POST, SIG_POST), false);
    assert.equal(verifySignatureNoble('not-a-key', CANONICAL_POST, SIG_POST), false);
  });
});

/** A signature by @noble/ed25519 alone (independent of node:crypto's signing). */
function nobleSign(seed: Uint8Array, message: Uint8Array | string): string {
  const bytes = typeof message === 'string' ? Buffer.from(message) : message;
  return Buffer.from(ed.sign(bytes, seed)).toString('base64url');
}

describe('Keypair.sign (node:crypto) matches @noble/ed25519 byte for byte', () => {
  it('on the §2.5 vectors', () => {
    const a = Keypair.fromSeed(SEED_A);
    assert.equal(a.sign(CANONICAL_POST), SIG_POST);
    assert.equal(nobleSign(SEED_A, CANONICAL_POST), SIG_POST);
    assert.equal(a.sign(wsAuthString(TS)), SIG_WS);
    assert.equal(nobleSign(SEED_A, wsAuthString(TS)), SIG_WS);
  });
  it('on random seeds and messages, strings (UTF-8) and bytes', () => {
    for (let i = 0; i < 100; i++) {
      const seed = randomBytes(32);
      const kp = Keypair.fromSeed(seed);
      const bytes = randomBytes(i * 7);
      assert.equal(kp.sign(bytes), nobleSign(seed, bytes));
      const text = `POST\n/v1/x?q=${encodeURIComponent('é☃')}${i}\n${TS}\n€ ${bytes.toString('base64')}`;
      assert.equal(kp.sign(text), nobleSign(seed, text));
      assert.equal(kp.sign(text), kp.sign(Buffer.from(text)), 'a string is signed as its UTF-8 bytes');
    }
  });
  it('keeps working after the seed passed in is wiped (it holds its own copy)', () => {
    const seed = Buffer.from(SEED_A);
    const kp = Keypair.fromSeed(seed);
    seed.fill(0);
    assert.equal(kp.sign(CANONICAL_POST), SIG_POST);
  });
});

describe('noble and node:crypto agree on random inputs', () => {
  it('sign with one, verify with the other, 300 times', () => {
    for (let i = 0; i < 300; i++) {
      const seed = randomBytes(32);
      const kp = Keypair.fromSeed(seed);
      assert.equal(kp.publicKey, nodePublicKey(seed));
      // Keypair derives with node:crypto; @noble/ed25519 is the independent check.
      assert.deepEqual(kp.publicKeyBytes, ed.getPublicKey(seed));
      const message = randomBytes(1 + (i % 200)).toString('latin1');
      const nobleSig = nobleSign(seed, Buffer.from(message, 'latin1'));
      assert.equal(verifySignature(kp.publicKey, Buffer.from(message, 'latin1'), nobleSig), true);
      const text = `GET\n/v1/x?i=${i}\n${TS}\n${bodyHash(message)}`;
      const nodeSig = nodeSign(seed, text);
      assert.equal(nodeSig, kp.sign(text), 'Ed25519 is deterministic');
      assert.equal(verifySignatureNoble(kp.publicKey, text, nodeSig), true);
      const other = Keypair.generate();
      assert.equal(verifySignature(other.publicKey, text, nodeSig), false);
      assert.equal(verifySignatureNoble(other.publicKey, text, nodeSig), false);
    }
  });
});

describe('timestamps', () => {
  it('formats whole seconds with Z', () => {
    assert.equal(formatTimestamp(Date.parse('2026-03-05T12:00:00.999Z')), TS);
  });
  it('parses any RFC 3339 form and nothing else', () => {
    assert.equal(parseTimestamp(TS), Date.parse(TS));
    assert.equal(parseTimestamp('2026-03-05T12:00:00.5Z'), Date.parse(TS) + 500);
    assert.equal(parseTimestamp('2026-03-05T13:00:00+01:00'), Date.parse(TS));
    assert.equal(parseTimestamp('2026-03-05t12:00:00z'), Date.parse(TS));
    for (const bad of ['2026-03-05', '2026-03-05 12:00:00Z', 'Thu, 05 Mar 2026 12:00:00 GMT', '1772712000', '']) {
      assert.equal(parseTimestamp(bad), undefined, bad);
    }
  });
});

describe('Keypair', () => {
  it('never exposes the seed through JSON or inspect, before or after signing', async () => {
    const kp = Keypair.fromSeed(SEED_A);
    const before = inspect(kp, { depth: 5, showHidden: true });
    kp.sign('x'); // makes the private key object
    const seedForms = [Buffer.from(SEED_A).toString('hex'), Buffer.from(SEED_A).toString('base64url'), '1, 2, 3, 4, 5'];
    const after = inspect(kp, { depth: 5, showHidden: true });
    assert.equal(after, before, 'the key object made for signing is not visible');
    assert.ok(!/KeyObject|pkcs8|302e0201/i.test(after), after);
    for (const text of [JSON.stringify(kp), after, String(kp), JSON.stringify({ kp }), `${kp}`]) {
      for (const form of seedForms) assert.ok(!text.includes(form), text);
    }
    assert.deepEqual(JSON.parse(JSON.stringify(kp)), { public_key: KEY_A });
  });
});
