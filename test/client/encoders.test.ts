/**
 * The client's way out is encoded in one place (`protocol/frames.ts`): every frame it writes
 * (auth, ack, send, ping, pong) and the `POST /v1/messages` body. Checked with literal text, read
 * back with the relay-side parser, and on the wire: an `EncodedSend`'s body goes out as its exact
 * text, inline over a socket and over HTTP.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RelayClient } from '../../src/client/http.js';
import { Session } from '../../src/client/session.js';
import { ManualClock } from '../../src/core/clock.js';
import {
  type EncodedSend,
  encodeAckFrame,
  encodeAuthFrame,
  encodePingFrame,
  encodePongFrame,
  encodeSendFrame,
  encodeSendRequest,
  parseClientFrame,
} from '../../src/protocol/frames.js';
import { authFrame, Keypair } from '../../src/protocol/signing.js';
import type { SendRequest } from '../../src/protocol/types.js';
import { json, scriptedHttp, scriptedWs } from './_support.js';

const TO = Keypair.generate().publicKey;
/** A body whose text no re-serialisation keeps: spacing, a number beyond doubles, an escape. */
const BODY_TEXT = '{ "n" : 12345678901234567890, "s": "\\u00e9" }';
const ENCODED: EncodedSend = {
  recipient_key: TO,
  content_type: 'application/json',
  body_json: BODY_TEXT,
  thread_id: 't1',
  in_reply_to: 'msg_1_000000000001',
};

describe('client → relay encoders', () => {
  it('ack, ping, pong and auth frames: exact text the relay parser reads back', () => {
    assert.equal(encodeAckFrame('msg_1_"x"'), '{"type":"ack","message_id":"msg_1_\\"x\\""}');
    assert.equal(encodePingFrame(), '{"type":"ping"}');
    assert.equal(encodePingFrame(1700000000000), '{"type":"ping","ts":1700000000000}');
    assert.equal(encodePongFrame(), '{"type":"pong"}');
    assert.equal(encodePongFrame({ a: [1] }), '{"type":"pong","ts":{"a":[1]}}');
    const kp = Keypair.generate();
    const auth = encodeAuthFrame(authFrame(kp, Date.UTC(2026, 2, 5)));
    assert.match(
      auth,
      /^\{"type":"auth","public_key":"[\w-]{43}","timestamp":"2026-03-05T00:00:00\.000\d{3}Z","signature":"[\w-]+"\}$/,
    );
    assert.deepEqual(parseClientFrame(auth), JSON.parse(auth));
    assert.deepEqual(parseClientFrame(encodeAckFrame('m1')), { type: 'ack', message_id: 'm1' });
  });

  it('a send: the encoded body verbatim, members in §3.6 order; a plain request as JSON.stringify writes it', () => {
    const members = `"recipient_key":"${TO}","content_type":"application/json","body":${BODY_TEXT},"thread_id":"t1","in_reply_to":"msg_1_000000000001"`;
    assert.equal(encodeSendRequest(ENCODED), `{${members}}`);
    assert.equal(encodeSendFrame('r-1', ENCODED), `{"type":"send","request_id":"r-1",${members}}`);
    const parsed = parseClientFrame(encodeSendFrame('r-1', ENCODED));
    assert.equal(parsed.type, 'send');
    const plain: SendRequest = { recipient_key: TO, body: { a: 1 }, metadata: { k: 'v' } };
    assert.equal(encodeSendRequest(plain), JSON.stringify(plain));
    assert.equal(encodeSendFrame('r-2', plain), `{"type":"send","request_id":"r-2",${JSON.stringify(plain).slice(1)}`);
    const full: EncodedSend = { ...ENCODED, attachments: [], expires_in: 60, metadata: { k: 'v' } };
    assert.match(
      encodeSendRequest(full),
      /"in_reply_to":"msg_1_000000000001","expires_in":60,"metadata":\{"k":"v"\}\}$/,
    );
    assert.match(
      encodeSendRequest(full),
      /"body":\{ "n" : 12345678901234567890, "s": "\\u00e9" \},"attachments":\[\],"thread_id"/,
    );
  });

  it('on the wire: the body text goes out exactly, inline over the socket and over HTTP', async (t) => {
    const frames: string[] = [];
    let gotTwo!: () => void;
    const two = new Promise<void>((resolve) => (gotTwo = resolve));
    const ws = await scriptedWs(t, (socket) => {
      socket.on('message', (data) => {
        const text = data.toString();
        frames.push(text);
        if (frames.length === 2) gotTwo();
        const frame = JSON.parse(text) as { type: string; request_id?: string };
        if (frame.type === 'send') {
          socket.send(
            JSON.stringify({
              type: 'send_result',
              request_id: frame.request_id,
              status: 'ok',
              message_id: 'msg_1_000000000009',
              created_at: '',
              expires_at: '',
            }),
          );
        }
      });
    });
    const session = new Session({ url: ws.url, keypair: Keypair.generate(), clock: new ManualClock(Date.now()) });
    t.after(() => session.close());
    session.start();
    await session.ready();
    assert.equal((await session.send(ENCODED)).message_id, 'msg_1_000000000009');
    session.ack('msg_1_000000000002');
    await two;
    assert.match(frames[0]!, /^\{"type":"send","request_id":"[\w-]+",/);
    assert.ok(frames[0]!.includes(`"body":${BODY_TEXT},`), frames[0]);
    assert.equal(frames[1], '{"type":"ack","message_id":"msg_1_000000000002"}');

    const http = await scriptedHttp(t, (_req, res) =>
      json(res, 201, { message_id: 'msg_1_000000000010', status: 'sent', created_at: '', expires_at: '' }),
    );
    const client = new RelayClient({ relayUrl: http.url, keypair: Keypair.generate() });
    await client.send(ENCODED);
    assert.equal(http.seen[0]!.body, encodeSendRequest(ENCODED), 'the signed HTTP body is the encoded text');
  });
});
