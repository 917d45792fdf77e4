import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FrameParseError, normalizeMessage, parseClientFrame, parseServerFrame } from '../../src/protocol/frames.js';

const KEY_A = 'ebVWLo_mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ';
const KEY_B = '5_FioQvsVZr-oZXk3OhLaVaNXSywlj60RsBoXisX8vA';

function parseError(fn: () => unknown): FrameParseError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof FrameParseError, String(err));
    return err;
  }
  assert.fail('expected a FrameParseError');
}

describe('client → relay frames', () => {
  it('auth', () => {
    const text = `{"type":"auth","public_key":"${KEY_A}","timestamp":"2026-03-05T12:00:00Z","signature":"sig"}`;
    assert.deepEqual(parseClientFrame(text), {
      type: 'auth',
      public_key: KEY_A,
      timestamp: '2026-03-05T12:00:00Z',
      signature: 'sig',
    });
    const e = parseError(() => parseClientFrame('{"type":"auth","public_key":"x","timestamp":"t"}'));
    assert.equal(e.reason, 'invalid');
    assert.equal(e.field, 'signature');
    assert.equal(e.frameType, 'auth');
  });

  it('ack, ping, pong', () => {
    assert.deepEqual(parseClientFrame('{"type":"ack","message_id":"msg_1_abc"}'), {
      type: 'ack',
      message_id: 'msg_1_abc',
    });
    assert.deepEqual(parseClientFrame('{"type":"ping"}'), { type: 'ping' });
    assert.deepEqual(parseClientFrame('{"type":"ping","ts":123}'), { type: 'ping', ts: 123, ts_text: '123' });
    assert.deepEqual(parseClientFrame('{"type":"ping","ts": 1e999 }'), {
      type: 'ping',
      ts: Infinity,
      ts_text: '1e999',
    });
    assert.deepEqual(parseClientFrame('{"type":"pong","ts":"x"}'), { type: 'pong', ts: 'x' });
    assert.equal(parseError(() => parseClientFrame('{"type":"ack"}')).field, 'message_id');
  });

  it('send, flat and nested, with defaults applied', () => {
    const flat = parseClientFrame(
      `{"type":"send","request_id":"c-17","recipient_key":"${KEY_B}","body":{"text":"Hi"}}`,
    );
    assert.deepEqual(flat, {
      type: 'send',
      request_id: 'c-17',
      message: {
        recipient_key: KEY_B,
        content_type: 'application/json',
        body: { text: 'Hi' },
        body_text: '{"text":"Hi"}',
        attachments: [],
        thread_id: null,
        in_reply_to: null,
        expires_in: 604800,
        metadata: {},
      },
    });
    const nested = parseClientFrame(
      `{"type":"send","request_id":"c-18","message":{"recipient_key":"${KEY_B}","body":1,"expires_in":5}}`,
    );
    assert.equal(nested.type, 'send');
    if (nested.type === 'send') {
      assert.equal(nested.message.body, 1);
      assert.equal(nested.message.body_text, '1');
      assert.equal(nested.message.expires_in, 5);
      assert.equal(nested.request_id, 'c-18');
    }
  });

  it('an invalid send keeps its request_id and the HTTP-equivalent status', () => {
    const e = parseError(() => parseClientFrame(`{"type":"send","request_id":"r1","recipient_key":"nope","body":{}}`));
    assert.equal(e.requestId, 'r1');
    assert.equal(e.validation?.status, 400);
    assert.equal(e.validation?.code, 'bad_request');
    assert.equal(e.field, 'recipient_key');
    const big = parseError(() =>
      parseClientFrame(`{"type":"send","recipient_key":"${KEY_B}","body":"${'x'.repeat(100)}"}`, { maxBodyBytes: 50 }),
    );
    assert.equal(big.validation?.status, 413);
    assert.equal(big.validation?.code, 'payload_too_large');
  });

  it('distinguishes garbage, non-objects and unknown types', () => {
    assert.equal(parseError(() => parseClientFrame('not json')).reason, 'not_json');
    assert.equal(parseError(() => parseClientFrame('[1,2]')).reason, 'not_object');
    assert.equal(parseError(() => parseClientFrame('"auth"')).reason, 'not_object');
    assert.equal(parseError(() => parseClientFrame('{"no":"type"}')).reason, 'invalid');
    const unknown = parseError(() => parseClientFrame('{"type":"subscribe"}'));
    assert.equal(unknown.reason, 'unknown_type');
    assert.equal(unknown.frameType, 'subscribe');
    assert.equal(unknown.code, 'invalid_frame');
  });
});

describe('client frames: bounded and verbatim', () => {
  const deep = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;

  it("a frame nested deeper than 128 levels is refused before parsing: too_deep, with the send's request_id when readable", () => {
    const ping = parseError(() => parseClientFrame(`{"type":"ping","ts":${deep(6000)}}`));
    assert.equal(ping.reason, 'too_deep');
    assert.equal(ping.frameType, 'ping');
    const flat = parseError(() =>
      parseClientFrame(`{"type":"send","request_id":"d1","recipient_key":"${KEY_B}","body":${deep(5000)}}`),
    );
    assert.equal(flat.reason, 'too_deep');
    assert.equal(flat.frameType, 'send');
    assert.equal(flat.requestId, 'd1');
    const nested = parseError(() =>
      parseClientFrame(`{"message":{"recipient_key":"${KEY_B}","body":${deep(200)}},"request_id":7,"type":"send"}`),
    );
    assert.equal(nested.reason, 'too_deep');
    assert.equal(nested.requestId, '7');
    // Exactly at the limit: the whole frame may nest 128 levels (the body one less).
    const ok = parseClientFrame(`{"type":"send","recipient_key":"${KEY_B}","body":${deep(127)}}`);
    assert.equal(ok.type, 'send');
    assert.equal(
      parseError(() => parseClientFrame(`{"type":"send","recipient_key":"${KEY_B}","body":${deep(128)}}`)).reason,
      'too_deep',
    );
  });

  it('keeps the body text exactly as sent: big integers, 1e999, duplicate keys, spacing', () => {
    const body = '{ "n": 12345678901234567890, "x": 1e999, "d": 1, "d": 2, "s": "\\u00e9" }';
    for (const text of [
      `{"type":"send","recipient_key":"${KEY_B}","body":${body}}`,
      `{"type":"send","message":{"recipient_key":"${KEY_B}","body":${body}}}`,
      `{"body":"decoy","type":"send","message":{"body":0,"recipient_key":"${KEY_B}","body":${body}}}`,
    ]) {
      const f = parseClientFrame(text);
      assert.ok(f.type === 'send');
      if (f.type === 'send') assert.equal(f.message.body_text, body);
    }
  });

  it('counts the body limit in bytes of the text as sent', () => {
    const text = (pad: string) => `{"type":"send","recipient_key":"${KEY_B}","body":[1${pad}]}`;
    // 1000 spaces of padding: tiny once parsed, 1003 bytes as sent.
    assert.equal(
      parseError(() => parseClientFrame(text(' '.repeat(1000)), { maxBodyBytes: 1000 })).validation?.status,
      413,
    );
    assert.equal(parseClientFrame(text(' '.repeat(997)), { maxBodyBytes: 1000 }).type, 'send');
  });

  it('refuses small-order and non-canonical recipient keys (400, recipient_key)', () => {
    for (const hex of [
      '01'.padEnd(64, '0'),
      `${'ec'.padEnd(62, 'f')}7f`,
      '0'.repeat(64),
      `${'ee'.padEnd(62, 'f')}7f`,
    ]) {
      const key = Buffer.from(hex, 'hex').toString('base64url');
      const e = parseError(() =>
        parseClientFrame(`{"type":"send","request_id":"k","recipient_key":"${key}","body":1}`),
      );
      assert.equal(e.field, 'recipient_key');
      assert.equal(e.validation?.status, 400);
    }
  });
});

describe('relay → client frames', () => {
  it('auth_result ok and error', () => {
    assert.deepEqual(parseServerFrame(`{"type":"auth_result","status":"ok","public_key":"${KEY_A}"}`), {
      type: 'auth_result',
      status: 'ok',
      public_key: KEY_A,
    });
    assert.deepEqual(
      parseServerFrame('{"type":"auth_result","status":"error","error":{"code":"invalid_signature","message":"bad"}}'),
      { type: 'auth_result', status: 'error', error: { code: 'invalid_signature', message: 'bad' } },
    );
    assert.equal(parseError(() => parseServerFrame('{"type":"auth_result","status":"maybe"}')).field, 'status');
    assert.equal(parseError(() => parseServerFrame('{"type":"auth_result","status":"error"}')).field, 'error');
  });

  it('message: a documented subset is filled to the full shape', () => {
    const frame = parseServerFrame(
      `{"type":"message","message":{"message_id":"msg_1_a","sender_key":"${KEY_A}","body":{"text":"hi"}}}`,
    );
    assert.deepEqual(frame, {
      type: 'message',
      message: {
        message_id: 'msg_1_a',
        sender_key: KEY_A,
        recipient_key: '',
        content_type: 'application/json',
        body: { text: 'hi' },
        attachments: [],
        thread_id: null,
        in_reply_to: null,
        metadata: {},
        status: 'sent',
        created_at: '',
        expires_at: '',
        delivered_at: null,
      },
    });
    assert.equal(
      parseError(() => parseServerFrame('{"type":"message","message":{"sender_key":"x"}}')).field,
      'message.message_id',
    );
    assert.equal(parseError(() => parseServerFrame('{"type":"message"}')).field, 'message');
  });

  it('keeps unknown message fields (forward compatible)', () => {
    const m = normalizeMessage({ message_id: 'm', sender_key: 'k', priority: 5 });
    assert.equal((m as unknown as Record<string, unknown>)['priority'], 5);
  });

  it('send_result ok and error, error, ping, pong', () => {
    assert.deepEqual(
      parseServerFrame(
        '{"type":"send_result","request_id":"c-17","status":"ok","message_id":"msg_1","created_at":"a","expires_at":"b"}',
      ),
      { type: 'send_result', status: 'ok', request_id: 'c-17', message_id: 'msg_1', created_at: 'a', expires_at: 'b' },
    );
    assert.deepEqual(
      parseServerFrame(
        '{"type":"send_result","request_id":"c-17","status":"error","error":{"code":"acl_denied","message":"no","details":{}}}',
      ),
      {
        type: 'send_result',
        status: 'error',
        request_id: 'c-17',
        error: { code: 'acl_denied', message: 'no', details: {} },
      },
    );
    assert.equal(parseError(() => parseServerFrame('{"type":"send_result","status":"ok"}')).field, 'message_id');
    assert.deepEqual(
      parseServerFrame('{"type":"error","error":{"code":"bad_request","message":"unknown frame type"}}'),
      {
        type: 'error',
        error: { code: 'bad_request', message: 'unknown frame type' },
      },
    );
    assert.deepEqual(parseServerFrame('{"type":"ping","ts":1}'), { type: 'ping', ts: 1 });
    assert.deepEqual(parseServerFrame('{"type":"pong"}'), { type: 'pong' });
    assert.equal(parseError(() => parseServerFrame('{"type":"hello"}')).reason, 'unknown_type');
    assert.equal(parseError(() => parseServerFrame('{')).reason, 'not_json');
  });
});
