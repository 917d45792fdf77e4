import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import {
  checkWebhookTimestamp,
  encodeWebhookDelivery,
  isWebhookSecret,
  newDeliveryId,
  newWebhookSecret,
  verifyWebhookSignature,
  webhookKey,
  webhookSignature,
} from '../../src/protocol/webhook.js';

// docs/protocol.md §3.8, byte for byte.
const SECRET = 'QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8';
const BODY =
  '{"delivery_id":"dlv_0a1b2c3d4e5f","message":{"message_id":"msg_1772712000_0a1b2c3d4e5f","sender_key":"ebVWLo_mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ","content_type":"application/json","body":{"text":"Hello!"},"attachments":[]}}';
const SIGNATURE = '8d8e2b5b9dab8d92317d28b6207792140a996b33fa1d5f7faaea6c78bb9fc0e8';
const ALTERNATIVE = '6102599d7d594b28afed1cc3d084b1b377c308580fcce3590f2ca5253b3df91e';

describe('webhook signatures (§3.8)', () => {
  it('reproduces the spec vector (key = UTF-8 bytes of the secret)', () => {
    assert.deepEqual(webhookKey(SECRET), new Uint8Array(Buffer.from(SECRET, 'utf8')));
    assert.equal(webhookSignature(SECRET, BODY), SIGNATURE);
    assert.equal(webhookSignature(SECRET, Buffer.from(BODY)), SIGNATURE, 'bytes or string');
  });

  it('the documented alternative key (base64url-decoded secret) gives the other vector', () => {
    const alternative = createHmac('sha256', Buffer.from(SECRET, 'base64url')).update(BODY).digest('hex');
    assert.equal(alternative, ALTERNATIVE);
    assert.equal(verifyWebhookSignature(SECRET, BODY, ALTERNATIVE), false);
  });

  it('the delivery body is encoded in one place, around the message text verbatim: the spec body and signature', () => {
    const message = BODY.slice(BODY.indexOf('"message":') + '"message":'.length, -1);
    const body = encodeWebhookDelivery('dlv_0a1b2c3d4e5f', message);
    assert.equal(body, BODY);
    assert.equal(webhookSignature(SECRET, body), SIGNATURE);
    assert.equal(
      JSON.parse(encodeWebhookDelivery('dlv_"x', '{"a":1}')).delivery_id,
      'dlv_"x',
      'the id is JSON-escaped',
    );
  });

  it('verifies the exact body only', () => {
    assert.equal(verifyWebhookSignature(SECRET, BODY, SIGNATURE), true);
    assert.equal(verifyWebhookSignature(SECRET, Buffer.from(BODY), SIGNATURE), true);
    assert.equal(verifyWebhookSignature(SECRET, `${BODY}\n`, SIGNATURE), false);
    assert.equal(verifyWebhookSignature(SECRET, BODY.replace('Hello', 'Hallo'), SIGNATURE), false);
    assert.equal(verifyWebhookSignature(`${SECRET}x`, BODY, SIGNATURE), false);
  });

  it('refuses wrong, uppercase, short, long, padded and missing signatures', () => {
    for (const bad of [
      SIGNATURE.toUpperCase(),
      SIGNATURE.slice(0, 63),
      SIGNATURE.slice(0, 62),
      `${SIGNATURE}00`,
      ` ${SIGNATURE}`,
      `sha256=${SIGNATURE}`,
      SIGNATURE.replace(/.$/, 'g'),
      SIGNATURE.replace(/^8/, '9'),
      '',
      null,
      undefined,
    ]) {
      assert.equal(verifyWebhookSignature(SECRET, BODY, bad), false, String(bad));
    }
  });

  it('timestamps: within the tolerance either way', () => {
    const now = Date.parse('2026-03-05T12:00:00Z');
    assert.equal(checkWebhookTimestamp('2026-03-05T12:00:00Z', now), 'ok');
    assert.equal(checkWebhookTimestamp('2026-03-05T11:55:00Z', now), 'ok');
    assert.equal(checkWebhookTimestamp('2026-03-05T12:05:00.000Z', now), 'ok');
    assert.equal(checkWebhookTimestamp('2026-03-05T11:54:59Z', now), 'too_old');
    assert.equal(checkWebhookTimestamp('2026-03-05T12:05:01Z', now), 'too_new');
    assert.equal(checkWebhookTimestamp('2026-03-05T12:00:30Z', now, 10_000), 'too_new');
    assert.equal(checkWebhookTimestamp('2026-03-05T13:00:00+01:00', now), 'ok');
    assert.equal(checkWebhookTimestamp('yesterday', now), 'malformed');
    assert.equal(checkWebhookTimestamp('1772712000', now), 'malformed');
    assert.equal(checkWebhookTimestamp('', now), 'missing');
    assert.equal(checkWebhookTimestamp(undefined, now), 'missing');
    assert.equal(checkWebhookTimestamp(null, now), 'missing');
  });

  it('secrets and delivery ids', () => {
    const secret = newWebhookSecret();
    assert.match(secret, /^[A-Za-z0-9_-]{43}$/);
    assert.notEqual(newWebhookSecret(), secret);
    assert.equal(
      newWebhookSecret((n) => new Uint8Array(n).fill(0x40)),
      'QEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEA',
    );
    assert.ok(isWebhookSecret(secret));
    assert.ok(isWebhookSecret('x'.repeat(16)) && isWebhookSecret('x'.repeat(256)));
    assert.ok(!isWebhookSecret('x'.repeat(15)) && !isWebhookSecret('x'.repeat(257)) && !isWebhookSecret(42));
    // Characters, not UTF-16 units: 200 emoji are 200 characters; 10 are too few.
    assert.ok(isWebhookSecret('😀'.repeat(200)) && isWebhookSecret('😀'.repeat(256)));
    assert.ok(!isWebhookSecret('😀'.repeat(10)) && !isWebhookSecret('😀'.repeat(257)));
    assert.match(newDeliveryId(), /^dlv_[0-9a-f]{12}$/);
    assert.equal(
      newDeliveryId((n) => Uint8Array.from({ length: n }, (_, i) => i)),
      'dlv_000102030405',
    );
  });
});
