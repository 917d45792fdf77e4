/**
 * The end-to-end codec on its own (`client/e2e-codec.ts`): what it recognises, its bounds before
 * any crypto, one code for every failure to open (the reason kept), and seal/open round trips
 * checked against the independent reference HPKE.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { e2eCodec, isEncryptedMessage } from '../../src/client/e2e-codec.js';
import type { MrpError } from '../../src/core/errors.js';
import { Keypair } from '../../src/protocol/signing.js';
import type { JsonValue, Message } from '../../src/protocol/types.js';
import { edSeedToX25519, refAuthOpen, refAuthSeal, x25519Public } from '../helpers/hpke-reference.js';

const ENCRYPTED = 'application/x-m2m-encrypted';
const EMPTY = new Uint8Array(0);
const alice = Keypair.generate();
const bob = Keypair.generate();

function message(body: JsonValue, from = alice, contentType = ENCRYPTED): Message {
  return {
    message_id: 'msg_1772712000_0a1b2c3d4e5f',
    sender_key: from.publicKey,
    recipient_key: bob.publicKey,
    content_type: contentType,
    body,
    attachments: [],
    thread_id: null,
    in_reply_to: null,
    metadata: {},
    status: 'sent',
    created_at: '2026-03-05T12:00:00Z',
    expires_at: '2026-03-12T12:00:00Z',
    delivered_at: null,
  };
}

function refEnvelope(plaintext: string, contentType = 'application/json', from = alice, to = bob): JsonValue {
  const { enc, ct } = refAuthSeal(
    edSeedToX25519(from.exportSeed()),
    x25519Public(edSeedToX25519(to.exportSeed())),
    Buffer.from(plaintext),
    EMPTY,
    EMPTY,
  );
  return { v: 2, enc: enc.toString('base64url'), ct: ct.toString('base64url'), ct_content_type: contentType };
}

async function failure(promise: Promise<unknown>): Promise<{ code: string; reason: unknown; message: string }> {
  const err = (await promise.then(
    () => assert.fail('expected the codec to refuse'),
    (e: unknown) => e,
  )) as MrpError;
  return { code: err.code, reason: err.details?.['reason'], message: err.message };
}

describe('e2eCodec', () => {
  it('recognises encrypted messages by content type only; everything else passes through untouched', async () => {
    const codec = e2eCodec(bob);
    const plain = message({ v: 2, enc: 'x', ct: 'y', ct_content_type: 'application/json' }, alice, 'application/json');
    const opened = await codec.open(plain);
    assert.equal(opened.message, plain, 'the very object');
    assert.equal(opened.encrypted, false);
    assert.equal(isEncryptedMessage({ content_type: ' Application/X-M2M-Encrypted ' }), true);
    const sealed = await codec.seal(
      { bodyJson: '{"a":1}', contentType: 'application/json' },
      { to: alice.publicKey, encrypt: false },
    );
    assert.deepEqual(sealed, { bodyJson: '{"a":1}', contentType: 'application/json' });
  });

  it('opens what the reference seals (JSON and text), and the reference opens what it seals, byte for byte', async () => {
    const codec = e2eCodec(bob);
    const json = await codec.open(message(refEnvelope('{"q": "hi", "n": [1, 2]}')));
    assert.equal(json.encrypted, true);
    assert.deepEqual([json.message.body, json.message.content_type], [{ q: 'hi', n: [1, 2] }, 'application/json']);
    const text = await codec.open(message(refEnvelope('plain words', 'text/plain')));
    assert.deepEqual([text.message.body, text.message.content_type], ['plain words', 'text/plain']);

    const bodyJson = '{ "kept":  "as written" }';
    const out = await e2eCodec(alice).seal(
      { bodyJson, contentType: 'application/json' },
      { to: bob.publicKey, encrypt: true },
    );
    assert.equal(out.contentType, ENCRYPTED);
    const env = JSON.parse(out.bodyJson) as { enc: string; ct: string; ct_content_type: string; v: number };
    assert.equal(env.v, 2);
    const plain = refAuthOpen(
      edSeedToX25519(bob.exportSeed()),
      x25519Public(edSeedToX25519(alice.exportSeed())),
      Buffer.from(env.enc, 'base64url'),
      Buffer.from(env.ct, 'base64url'),
      EMPTY,
      EMPTY,
    );
    assert.equal(plain.toString('utf8'), bodyJson, 'the body text itself, not a re-serialisation');
  });

  it('every failure to open is decryption_failed, with the precise reason kept', async () => {
    const codec = e2eCodec(bob);
    const good = refEnvelope('{"a":1}') as Record<string, unknown>;
    const deep = `${'['.repeat(200)}${']'.repeat(200)}`;
    const cases: Array<[string, JsonValue, Keypair, string]> = [
      ['not an object', 'hello', alice, 'invalid_envelope'],
      ['version 1', { ...good, v: 1 } as JsonValue, alice, 'unsupported_encryption_version'],
      ['long enc', { ...good, enc: 'A'.repeat(65) } as JsonValue, alice, 'invalid_envelope'],
      ['short ct', { ...good, ct: 'AAAA' } as JsonValue, alice, 'invalid_envelope'],
      ['another sender', good as JsonValue, Keypair.generate(), 'decryption_failed'],
      ['too deep', refEnvelope(deep), alice, 'invalid_plaintext'],
    ];
    for (const [name, body, from, reason] of cases) {
      const f = await failure(codec.open(message(body, from)));
      assert.equal(f.code, 'decryption_failed', name);
      assert.equal(f.reason, reason, name);
      assert.match(f.message, /^cannot open the encrypted message: /, name);
    }
    // Invalid UTF-8 inside a valid ciphertext.
    const { enc, ct } = refAuthSeal(
      edSeedToX25519(alice.exportSeed()),
      x25519Public(edSeedToX25519(bob.exportSeed())),
      Buffer.from([0x22, 0xff, 0x22]),
      EMPTY,
      EMPTY,
    );
    const bad = {
      v: 2,
      enc: enc.toString('base64url'),
      ct: ct.toString('base64url'),
      ct_content_type: 'application/json',
    };
    assert.equal((await failure(codec.open(message(bad)))).reason, 'invalid_plaintext');
  });

  it('refuses an envelope larger than any sealed 1 MiB body before touching the crypto', async () => {
    const huge = { ...(refEnvelope('{}') as Record<string, unknown>), padding: 'x'.repeat(1_500_000) };
    const f = await failure(e2eCodec(bob).open(message(huge as JsonValue)));
    assert.deepEqual([f.code, f.reason], ['decryption_failed', 'invalid_envelope']);
  });

  it('seal fails with a code for an unusable recipient or a body too large once sealed', async () => {
    const codec = e2eCodec(alice);
    const notKey = await failure(
      codec.seal({ bodyJson: '1', contentType: 'application/json' }, { to: 'nope', encrypt: true }),
    );
    assert.equal(notKey.code, 'invalid_key');
    const big = JSON.stringify('x'.repeat(1024 * 1024 - 10));
    const tooBig = await failure(
      codec.seal({ bodyJson: big, contentType: 'application/json' }, { to: bob.publicKey, encrypt: true }),
    );
    assert.equal(tooBig.code, 'payload_too_large');
  });
});
