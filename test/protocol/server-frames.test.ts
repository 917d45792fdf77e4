/**
 * The relay's frame encoders (src/protocol/frames.ts): each frame the relay sends, as literal text,
 * and read back by the client's parser. The message object splices the body text verbatim.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  encodeAuthError,
  encodeAuthOk,
  encodeErrorFrame,
  encodeMessageFrame,
  encodeMessageObject,
  encodeMessagePage,
  encodePong,
  encodeSendResultError,
  encodeSendResultOk,
  type MessageParts,
  parseServerFrame,
} from '../../src/protocol/frames.js';

const KEY = 'ebVWLo_mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ';
const parts: MessageParts = {
  message_id: 'msg_1772712000_0a1b2c3d4e5f',
  sender_key: KEY,
  recipient_key: KEY,
  content_type: 'application/json',
  body_text: '{"n":12345678901234567890,"a":1,"a":2}',
  attachments: [],
  thread_id: null,
  in_reply_to: 'msg_"quoted"',
  metadata: { k: 'v' },
  status: 'sent',
  created_at: '2026-03-05T12:00:00.123Z',
  expires_at: '2026-03-12T12:00:00.123Z',
  delivered_at: null,
};

describe('frames the relay sends', () => {
  it('a message object keeps the body text verbatim and escapes the other strings', () => {
    const text = encodeMessageObject(parts);
    assert.ok(text.includes('"body":{"n":12345678901234567890,"a":1,"a":2},'));
    assert.ok(text.includes('"in_reply_to":"msg_\\"quoted\\""'));
    const frame = parseServerFrame(encodeMessageFrame(text));
    assert.equal(frame.type, 'message');
    assert.equal(frame.type === 'message' && frame.message.message_id, parts.message_id);
    assert.equal(
      encodeMessageObject({ ...parts, delivered_at: parts.created_at }).endsWith(
        `"delivered_at":"${parts.created_at}"}`,
      ),
      true,
    );
  });

  it('a page of messages splices the message texts; a thread page names its thread first', () => {
    assert.equal(
      encodeMessagePage({ messages: ['{"a":1}', '{"b":2}'], has_more: true, next_cursor: 'eyJ0Ijox' }),
      '{"messages":[{"a":1},{"b":2}],"has_more":true,"next_cursor":"eyJ0Ijox"}',
    );
    assert.equal(
      encodeMessagePage({ thread_id: 't"1', messages: [], has_more: false, next_cursor: null }),
      '{"thread_id":"t\\"1","messages":[],"has_more":false,"next_cursor":null}',
    );
  });

  it('auth_result, error, send_result and pong as literal text', () => {
    assert.equal(encodeAuthOk(KEY), `{"type":"auth_result","status":"ok","public_key":"${KEY}"}`);
    assert.equal(
      encodeAuthError({ code: 'unauthorized', message: 'no' }),
      '{"type":"auth_result","status":"error","error":{"code":"unauthorized","message":"no"}}',
    );
    assert.equal(
      encodeErrorFrame({ code: 'bad_request', message: 'x' }),
      '{"type":"error","error":{"code":"bad_request","message":"x"}}',
    );
    assert.equal(
      encodeErrorFrame({ code: 'bad_request', message: 'x' }, 'r1'),
      '{"type":"error","error":{"code":"bad_request","message":"x"},"request_id":"r1"}',
    );
    const ok = { message_id: 'msg_1_000000000000', created_at: 'c', expires_at: 'e' };
    assert.equal(
      encodeSendResultOk(undefined, ok),
      '{"type":"send_result","status":"ok","message_id":"msg_1_000000000000","created_at":"c","expires_at":"e"}',
    );
    assert.equal(
      encodeSendResultOk('7', ok),
      '{"type":"send_result","request_id":"7","status":"ok","message_id":"msg_1_000000000000","created_at":"c","expires_at":"e"}',
    );
    assert.equal(
      encodeSendResultError('7', { code: 'acl_denied', message: 'm' }),
      '{"type":"send_result","request_id":"7","status":"error","error":{"code":"acl_denied","message":"m","details":{}}}',
    );
    assert.equal(encodePong(), '{"type":"pong"}');
    assert.equal(encodePong('[1, 2]'), '{"type":"pong","ts":[1, 2]}');
    for (const text of [
      encodeAuthOk(KEY),
      encodeSendResultOk('7', ok),
      encodeSendResultError(undefined, { code: 'x', message: 'y' }),
      encodePong('1'),
    ]) {
      parseServerFrame(text);
    }
  });
});
